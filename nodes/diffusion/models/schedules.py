"""Samplers and schedules under ComfyUI's names, onto diffusers' schedulers.

``SAMPLERS`` maps each sampler name (ComfyUI's KSampler ``sampler_name``
where diffusers can express it) to a diffusers scheduler class and config
overrides; ``SCHEDULES`` maps each schedule name (ComfyUI's ``scheduler``)
to diffusers' ``timestep_spacing`` / ``use_*_sigmas`` flags. ``problems``
says, in sentences, which combinations diffusers cannot run, so that the
Sampler refuses them at validation rather than failing mid-run; the tests
run every combination it accepts.

The schedules, measured against ComfyUI's formulas (comfy/samplers.py:
``simple_scheduler``, ``normal_scheduler``, ``ddim_scheduler``;
comfy/k_diffusion/sampling.py: ``get_sigmas_karras``) in
tests/diffusion/test_diffusion_schedules.py:

* ``simple`` = trailing: the same timesteps for step counts dividing 1000
  (1, 2, 4, 5, 8, 10, 20, 25, 50, ...); elsewhere ComfyUI floors where
  diffusers rounds (3 steps: 999, 666, 333 vs 999, 666, 332).
* ``sgm_uniform`` = trailing too: ComfyUI keeps fractional timesteps
  (4 steps: 999, 749.25, 499.5, 249.75), diffusers rounds them.
* ``normal`` = linspace (1 step: trailing, because diffusers' linspace puts a
  single step at t=0 where ComfyUI puts it at t=999). Equal timesteps;
  diffusers interpolates sigma linearly between integer timesteps, ComfyUI
  log-linearly.
* ``ddim_uniform`` = leading with steps_offset 1: the same timesteps when the
  step count divides 1000 (ComfyUI runs one step more at 6, 7, 9, ... steps).
* ``karras`` / ``exponential``: ComfyUI's sigma_min .. sigma_max with rho 7
  (the spacing is set to linspace, so the Euler family's range is the
  model's full range, as ComfyUI's); ``beta``: diffusers' Beta(0.6, 0.6)
  quantiles in sigma, ComfyUI's in timestep (not the same sigmas).

The multistep DPM-Solver family (dpmpp_2m*, dpmpp_3m_sde, uni_pc*, deis) and
dpmpp_2s_ancestral space ``normal`` and ``ddim_uniform`` their own way
(an N+1-point grid without its last point), so only simple / sgm_uniform and
the sigma schedules give ComfyUI's timesteps with them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

#: ComfyUI's scheduler names (plus ``auto``: the checkpoint's own config).
SCHEDULES: dict[str, dict] = {
    "auto": {},
    "normal": {"timestep_spacing": "linspace"},
    "karras": {"timestep_spacing": "linspace", "use_karras_sigmas": True},
    "exponential": {"timestep_spacing": "linspace", "use_exponential_sigmas": True},
    "sgm_uniform": {"timestep_spacing": "trailing"},
    "simple": {"timestep_spacing": "trailing"},
    "ddim_uniform": {"timestep_spacing": "leading", "steps_offset": 1},
    "beta": {"timestep_spacing": "linspace", "use_beta_sigmas": True},
}
SIGMA_SCHEDULES = ("karras", "exponential", "beta")
SPACING_SCHEDULES = ("normal", "sgm_uniform", "simple", "ddim_uniform")
_SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")

PREDICTIONS = ("auto", "epsilon", "v_prediction", "sample")

#: ETA < 0 on the Sampler: the sampler's own default (ETA_DEFAULTS, else 0).
ETA_AUTO = -1.0
ETA_DEFAULTS = {"tcd": 0.3}  # TCD's authors: "a value of 0.3 often yields good results"
ETA_SAMPLERS = ("ddim", "tcd")


@dataclass(frozen=True)
class SamplerSpec:
    cls: str
    overrides: dict = field(default_factory=dict)
    #: How it relates to ComfyUI's sampler of the same name (docs/samplers.md).
    comfy: str = ""
    #: The spacing schedules it follows (diffusers' ``timestep_spacing``).
    spacing: tuple[str, ...] = ("normal", "sgm_uniform", "simple", "ddim_uniform")
    #: Has diffusers' use_karras / exponential / beta sigmas.
    sigma_schedules: bool = True
    custom_timesteps: bool = False
    custom_sigmas: bool = False
    #: Its own skipping-step schedule over original_inference_steps (LCM, TCD).
    consistency: bool = False
    #: A package the scheduler imports (checked at validation).
    needs: str | None = None
    #: Prediction types its step() cannot take.
    no_prediction: tuple[str, ...] = ()
    #: Smallest step count it runs (multistep solvers of higher order need more).
    min_steps: int = 1
    #: CFG++: steps towards the guided x0 along the unconditional direction (models/cfg_pp.py);
    #: the unconditional pass runs at every cfg.
    cfg_pp: bool = False

    def init_keys(self) -> frozenset[str]:
        """The config keys its class takes."""
        return _init_keys(self.cls)


_KEYS: dict[str, frozenset[str]] = {}


def _init_keys(cls: str) -> frozenset[str]:
    if cls not in _KEYS:
        import inspect

        import diffusers

        _KEYS[cls] = frozenset(inspect.signature(getattr(diffusers, cls).__init__).parameters)
    return _KEYS[cls]


_DPM = "DPMSolverMultistepScheduler"
#: Latent diffusion never clips x0 to [-1, 1] (SD1.5's and SDXL's configs say so); a config
#: without the key would get DDIM's / DDPM's pixel-space default. DDIM's last step goes to
#: alphas_cumprod[0], as in those configs and PCM's card (set_alpha_to_one=False).
_LATENT = {"clip_sample": False}
SAMPLERS: dict[str, SamplerSpec] = {
    "euler": SamplerSpec(
        "EulerDiscreteScheduler", custom_timesteps=True, custom_sigmas=True,
        comfy="the same Euler step on the same sigmas (ComfyUI's s_churn 0)"),
    "euler_ancestral": SamplerSpec(
        "EulerAncestralDiscreteScheduler", sigma_schedules=False, no_prediction=("sample",),
        comfy="the same ancestral step (eta 1, s_noise 1); the added noise is drawn from the seed's generator, "
              "so the same distribution but other draws than ComfyUI's"),
    "euler_cfg_pp": SamplerSpec(
        "EulerDiscreteScheduler", custom_timesteps=True, custom_sigmas=True, cfg_pp=True,
        comfy="ComfyUI's CFG++ Euler: the guided x0 as target, the unconditional prediction as direction, cfg as "
              "given and the unconditional pass at every cfg (cfg 1 too)"),
    "euler_ancestral_cfg_pp": SamplerSpec(
        "EulerAncestralDiscreteScheduler", sigma_schedules=False, no_prediction=("sample",), cfg_pp=True,
        comfy="ComfyUI's CFG++ Euler ancestral (eta 1, s_noise 1); the added noise is drawn from the seed's "
              "generator, so the same distribution but other draws than ComfyUI's"),
    "heun": SamplerSpec(
        "HeunDiscreteScheduler", custom_timesteps=True,
        comfy="the same 2nd-order Heun step, 2 UNet passes per step except the last, as ComfyUI"),
    "dpm_2": SamplerSpec(
        "KDPM2DiscreteScheduler", no_prediction=("sample",),
        comfy="k-diffusion's DPM-2 (log-midpoint sigma), 2 UNet passes per step; the same sigmas"),
    "dpm_2_ancestral": SamplerSpec(
        "KDPM2AncestralDiscreteScheduler", no_prediction=("sample",),
        comfy="k-diffusion's DPM-2 ancestral; the same sigmas, noise from the seed's generator"),
    "lms": SamplerSpec(
        "LMSDiscreteScheduler",
        comfy="linear multistep of order 4, as ComfyUI's; the same sigmas"),
    "dpmpp_2m": SamplerSpec(
        _DPM, {"algorithm_type": "dpmsolver++", "solver_order": 2}, custom_timesteps=True,
        comfy="DPM-Solver++(2M); diffusers takes first-order final steps below 15 steps (lower_order_final), "
              "ComfyUI only the very last"),
    "dpmpp_2m_sde": SamplerSpec(
        _DPM, {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}, custom_timesteps=True,
        comfy="DPM-Solver++(2M) SDE, midpoint; Gaussian noise per step where ComfyUI draws it from a Brownian tree"),
    "dpmpp_3m_sde": SamplerSpec(
        _DPM, {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}, custom_timesteps=True,
        comfy="DPM-Solver++(3M) SDE; Gaussian noise per step where ComfyUI draws it from a Brownian tree"),
    "dpmpp_sde": SamplerSpec(
        "DPMSolverSDEScheduler", needs="torchsde", no_prediction=("sample",),
        comfy="DPM-Solver++ SDE (2 UNet passes per step) with a torchsde Brownian tree seeded by the seed, "
              "as ComfyUI's; not the same draws"),
    "dpmpp_2s_ancestral": SamplerSpec(
        "DPMSolverSinglestepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
        spacing=("sgm_uniform", "simple"), custom_timesteps=True,
        comfy="diffusers' single-step DPM-Solver++(2S) in its SDE form: the same solver, stochastic like "
              "ComfyUI's ancestral version but with another noise rule"),
    "ddpm": SamplerSpec(
        "DDPMScheduler", _LATENT, sigma_schedules=False, custom_timesteps=True,
        comfy="the DDPM posterior step, as ComfyUI's ddpm; noise from the seed's generator"),
    "ddim": SamplerSpec(
        "DDIMScheduler", {**_LATENT, "set_alpha_to_one": False}, sigma_schedules=False,
        comfy="DDIM; at eta 0 it equals ComfyUI's ddim (which is Euler on the same sigmas); eta > 0 has no "
              "ComfyUI equivalent"),
    "uni_pc": SamplerSpec(
        "UniPCMultistepScheduler", {"solver_type": "bh1", "final_sigmas_type": "sigma_min", "solver_order": 3},
        comfy="UniPC with the B(h)=h variant (bh1) of order 3 (lower on the first and last steps), as ComfyUI's "
              "uni_pc; its last step ends at the model's smallest sigma, not 0 (diffusers' bh1 step to sigma 0 "
              "divides by infinity)"),
    "uni_pc_bh2": SamplerSpec(
        "UniPCMultistepScheduler", {"solver_type": "bh2", "solver_order": 3},
        comfy="UniPC with B(h)=expm1(h) (bh2) of order 3 (lower on the first and last steps), as ComfyUI's "
              "uni_pc_bh2 (min(3, steps - 1)); ComfyUI ends at sigma 0.001, diffusers at 0"),
    "deis": SamplerSpec(
        "DEISMultistepScheduler", {"solver_order": 3},
        comfy="DEIS of order 3 (ComfyUI's default max_order); diffusers' log-rho coefficients, ComfyUI's tabulated "
              "ones; its last step ends at the model's smallest sigma, not 0"),
    "lcm": SamplerSpec(
        "LCMScheduler", spacing=(), sigma_schedules=False, custom_timesteps=True, consistency=True,
        comfy="LCM's skipping-step schedule and boundary conditions, what ComfyUI does with "
              "ModelSamplingDiscrete 'lcm'; noise from the seed's generator"),
    "tcd": SamplerSpec(
        "TCDScheduler", spacing=(), sigma_schedules=False, custom_timesteps=True, consistency=True,
        comfy="TCD's strategic stochastic sampling (eta = gamma), as the ComfyUI-TCD node; ComfyUI itself has none"),
    # Older workflows' name for dpmpp_2m with schedule karras.
    "dpmpp_2m_karras": SamplerSpec(
        _DPM, {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}, spacing=(),
        comfy="dpmpp_2m with schedule karras (the name older lcmgraph workflows use)"),
}

#: ComfyUI samplers diffusers cannot run, and the closest one it can.
UNSUPPORTED = {
    "heunpp2": "heun",
    "dpm_fast": "dpmpp_2m", "dpm_adaptive": "dpmpp_2m", "dpmpp_2s_ancestral_cfg_pp": "dpmpp_2s_ancestral",
    "dpmpp_2m_cfg_pp": "dpmpp_2m", "ipndm": "deis", "ipndm_v": "deis", "res_multistep": "dpmpp_2m",
    "res_multistep_cfg_pp": "dpmpp_2m", "res_multistep_ancestral": "dpmpp_2m_sde",
    "res_multistep_ancestral_cfg_pp": "dpmpp_2m_sde", "gradient_estimation": "euler", "er_sde": "dpmpp_2m_sde",
    "seeds_2": "dpmpp_sde", "seeds_3": "dpmpp_sde", "sa_solver": "dpmpp_2m_sde", "sa_solver_pece": "dpmpp_2m_sde",
    "lcm_cfg_pp": "lcm",
}
UNSUPPORTED_SCHEDULES = {"linear_quadratic": "normal", "kl_optimal": "karras", "AYS": "karras"}

#: ComfyUI's *_gpu samplers differ only in where the Brownian noise is drawn.
GPU_ALIASES = {"dpmpp_sde_gpu": "dpmpp_sde", "dpmpp_2m_sde_gpu": "dpmpp_2m_sde", "dpmpp_3m_sde_gpu": "dpmpp_3m_sde"}


def resolve_eta(sampler: str, eta: float) -> float:
    return ETA_DEFAULTS.get(sampler, 0.0) if eta < 0 else eta


def parse_list(text: str, kind: type) -> list:
    """``"999, 749,499"`` -> [999, 749, 499]; raises ValueError with a sentence."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p.strip()]
    try:
        return [kind(float(p)) if kind is int and float(p).is_integer() else kind(p) for p in parts]
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of {'whole numbers' if kind is int else 'numbers'}") from None


def custom_problems(sampler: str, timesteps: str, sigmas: str, schedule: str, train_steps: int = 1000
                    ) -> list[tuple[str, str]]:
    """Problems with the custom ``timesteps`` / ``sigmas`` inputs, as (input, sentence)."""
    spec = SAMPLERS.get(sampler)
    out: list[tuple[str, str]] = []
    if timesteps and sigmas:
        return [("sigmas", "give custom timesteps or custom sigmas, not both")]
    if timesteps:
        try:
            values = parse_list(timesteps, int)
        except ValueError as exc:
            return [("timesteps", str(exc))]
        if not values:
            return [("timesteps", "no timesteps given")]
        if any(not 0 <= t < train_steps for t in values):
            out.append(("timesteps", f"timesteps must lie in 0..{train_steps - 1}"))
        elif any(a <= b for a, b in zip(values, values[1:], strict=False)):
            out.append(("timesteps", "timesteps must be strictly descending (999,749,499,249)"))
        if spec is not None and not spec.custom_timesteps:
            takers = ", ".join(n for n, s in SAMPLERS.items() if s.custom_timesteps and n != "dpmpp_2m_karras")
            out.append(("timesteps", f"sampler {sampler} takes no custom timesteps in diffusers "
                                     f"({spec.cls}); these do: {takers}"))
    if sigmas:
        try:
            values = parse_list(sigmas, float)
        except ValueError as exc:
            return [("sigmas", str(exc))]
        if len(values) < 2:
            out.append(("sigmas", "give at least two sigmas: the first step's and the last one (usually 0)"))
        elif any(a <= b for a, b in zip(values, values[1:], strict=False)) or values[-1] < 0:
            out.append(("sigmas", "sigmas must be strictly descending and not negative (14.6,3.2,0.45,0)"))
        if spec is not None and not spec.custom_sigmas:
            out.append(("sigmas", f"sampler {sampler} takes no custom sigmas in diffusers ({spec.cls}); "
                                  "euler does, or give timesteps"))
    if (timesteps or sigmas) and schedule != "auto":
        out.append(("schedule", f"custom {'timesteps' if timesteps else 'sigmas'} replace the schedule; "
                                f"set schedule to auto instead of {schedule}"))
    return out


def problems(sampler: str, schedule: str = "auto", prediction: str = "auto", steps: int | None = None,
             eta: float | None = None) -> list[tuple[str, str]]:
    """What diffusers cannot run in this combination, as (input, sentence); [] when it runs."""
    spec = SAMPLERS.get(sampler)
    if spec is None:
        return []  # the choices check names it
    out: list[tuple[str, str]] = []
    if not fits(sampler, schedule):
        usable = " or ".join(s for s in SCHEDULES if fits(sampler, s))
        if spec.consistency:
            why = f"{sampler} spaces its steps over original_inference_steps itself"
            usable += ", or custom timesteps"
        elif schedule in SIGMA_SCHEDULES:
            why = f"diffusers' {spec.cls} has no use_{schedule}_sigmas"
            usable += f"; euler takes {schedule} sigmas"
        elif sampler == "dpmpp_2m_karras":
            why = "dpmpp_2m_karras always uses karras sigmas"
            usable += f"; or sampler dpmpp_2m with schedule {schedule}"
        else:
            why = f"diffusers' {spec.cls} has no timestep_spacing {SCHEDULES[schedule]['timestep_spacing']!r}"
        out.append(("schedule", f"schedule {schedule} with sampler {sampler} has no diffusers equivalent: "
                                f"{why}; use schedule {usable}"))
    if prediction in spec.no_prediction:
        out.append(("prediction", f"prediction {prediction} with sampler {sampler}: diffusers' {spec.cls} "
                                  "cannot step on it; use euler or ddim"))
    if steps is not None and steps < spec.min_steps:
        out.append(("steps", f"sampler {sampler} needs at least {spec.min_steps} steps"))
    if eta is not None and eta > 0 and sampler not in ETA_SAMPLERS:
        out.append(("eta", f"eta applies to {' and '.join(ETA_SAMPLERS)} only; sampler {sampler} takes none "
                           "(set it to -1 or 0)"))
    if spec.needs and importlib.util.find_spec(spec.needs) is None:
        out.append(("scheduler", f"sampler {sampler} needs the {spec.needs} package, which is not installed "
                                 f"(pip install {spec.needs})"))
    return out


def fits(sampler: str, schedule: str) -> bool:
    """Whether diffusers can run ``sampler`` on ``schedule``."""
    spec = SAMPLERS[sampler]
    if schedule == "auto":
        return True
    if sampler == "dpmpp_2m_karras":
        return schedule == "karras"
    if schedule in SPACING_SCHEDULES:
        return schedule in spec.spacing
    return spec.sigma_schedules and schedule in SCHEDULES


def config_for(sampler: str, schedule: str, prediction: str, steps: int, base: dict, seed: int | None = None,
               custom: bool = False, original_inference_steps: int | None = None) -> dict:
    """The overrides on the checkpoint's scheduler config for this sampler, schedule and prediction."""
    spec = SAMPLERS[sampler]
    overrides = dict(spec.overrides)
    flags = dict(SCHEDULES[schedule])
    if steps == 1 and flags.get("timestep_spacing") == "linspace":
        flags["timestep_spacing"] = "trailing"  # diffusers' 1-step linspace is t=0; ComfyUI's normal is t=999
    if "timestep_spacing" not in spec.init_keys():
        flags.pop("timestep_spacing", None)
        flags.pop("steps_offset", None)
    overrides.update(flags)
    if schedule != "auto" or custom:
        # An explicit schedule owns the sigmas: the checkpoint's own flags would fight it.
        for flag in _SIGMA_FLAGS:
            if flag in spec.init_keys() and flag not in flags and flag not in spec.overrides:
                overrides[flag] = False
    if prediction != "auto":
        overrides["prediction_type"] = prediction
    if spec.consistency and original_inference_steps is not None:
        # In the config, not set_timesteps: TCDScheduler reads an explicit argument as "any
        # timestep" (999, 749, ...) instead of the k-grid (999, 759, ...) LCM and TCD's authors use.
        overrides["original_inference_steps"] = int(original_inference_steps)
    if sampler == "dpmpp_sde" and seed is not None:
        overrides["noise_sampler_seed"] = int(seed) % 2**63  # the Brownian tree follows the seed
    return overrides


def make_scheduler(sampler: str, base: dict, schedule: str = "auto", prediction: str = "auto", steps: int = 1,
                   seed: int | None = None, custom: bool = False, original_inference_steps: int | None = None) -> Any:
    import diffusers

    spec = SAMPLERS[sampler]
    return getattr(diffusers, spec.cls).from_config(
        base, **config_for(sampler, schedule, prediction, steps, base, seed, custom, original_inference_steps))


def order(scheduler: Any) -> int:
    """UNet passes per step in the timestep list (Heun, DPM-2, DPM++ SDE: 2)."""
    return int(getattr(scheduler, "order", 1) or 1)
