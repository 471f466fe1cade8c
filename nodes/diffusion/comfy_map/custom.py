"""ComfyUI's custom sampling nodes -> Sampler.

SamplerCustom and SamplerCustomAdvanced take their sampler (KSamplerSelect,
ComfyUI-TCD's TCDModelSamplingDiscrete), their sigmas (BasicScheduler,
KarrasScheduler, SDTurboScheduler, HyperSDXL1StepUnetScheduler, SplitSigmas
of one of those), their noise (RandomNoise, DisableNoise) and their guider
(CFGGuider, BasicGuider) from other nodes. Those nodes become no lcmgraph node;
the sampler node reads them and becomes one Sampler running the same
timesteps: a schedule and step count where one gives them, else custom
timesteps or sigmas, refused (naming both) where the sampler takes none.
"""

from __future__ import annotations

import math

from lcmgraph.comfy import SEED_CONTROL, ComfyMapping, ConversionError, Converted, Through

from ..models import schedules as S
from .common import present
from .samplers import (
    END_ALL,
    keep_fraction,
    prediction_for,
    sampler_name,
    schedule_name,
    truncation,
)

#: The SD noise schedule's sigma range (KarrasScheduler's defaults are these, rounded).
SIGMA_MAX, SIGMA_MIN = 14.614642, 0.0291675


def _source(ctx, node, name: str, classes: tuple[str, ...]):
    ref = node.inputs.get(name)
    source = ctx.node(ref)
    if source is None:
        raise ConversionError(f"input {name!r} must come from a node ({', '.join(classes)})")
    if source.class_type not in classes:
        raise ConversionError(f"input {name!r} comes from {source.class_type} (node {source.id}), which lcmgraph "
                              f"cannot read; it reads {', '.join(classes)}")
    return source, ref


SAMPLER_SOURCES = ("KSamplerSelect", "TCDModelSamplingDiscrete")
SIGMA_SOURCES = ("BasicScheduler", "KarrasScheduler", "SDTurboScheduler", "SplitSigmas", "TCDModelSamplingDiscrete",
                 "HyperSDXL1StepUnetScheduler")


def _sampler(ctx, node) -> tuple[str, dict]:
    source, _ = _source(ctx, node, "sampler", SAMPLER_SOURCES)
    if source.class_type == "TCDModelSamplingDiscrete":
        return "tcd", {"eta": ctx.literal(source, "eta", 0.3)}
    return sampler_name(ctx, ctx.literal(source, "sampler_name")), {}


def _schedule(ctx, node, sampler: str) -> dict:
    """Sampler inputs giving the timesteps of the sigmas input (a SplitSigmas half: start/end step)."""
    source, ref = _source(ctx, node, "sigmas", SIGMA_SOURCES)
    split = None
    if source.class_type == "SplitSigmas":
        split = (ctx.literal(source, "step"), ref.index)
        source, _ = _source(ctx, source, "sigmas", tuple(c for c in SIGMA_SOURCES if c != "SplitSigmas"))
    out = _base_schedule(ctx, source, sampler)
    if split is not None:
        step, half = split
        steps = out["steps"]
        if half == 0:  # the high sigmas: the first `step` steps, returned with their leftover noise
            out["end_step"] = min(step, steps) if step < steps else END_ALL
        else:
            if step >= steps:
                raise ConversionError(f"SplitSigmas at step {step} leaves none of the {steps} steps")
            out["start_step"] = step
    return out


def _base_schedule(ctx, source, sampler: str) -> dict:
    kind = source.class_type
    if kind == "BasicScheduler":
        steps, denoise = ctx.literal(source, "steps"), ctx.literal(source, "denoise", 1.0)
        schedule = schedule_name(ctx, sampler, ctx.literal(source, "scheduler"), steps)
        total, ours = truncation(steps, denoise) if denoise < 1 else (steps, 1.0)
        return {"schedule": schedule, "steps": total, "denoise": ours}
    if kind == "TCDModelSamplingDiscrete":
        if sampler != "tcd":
            raise ConversionError("TCDModelSamplingDiscrete's sigmas with a sampler other than its own TCD sampler "
                                  "have no lcmgraph equivalent")
        steps, denoise = ctx.literal(source, "steps", 4), ctx.literal(source, "denoise", 1.0)
        if ctx.literal(source, "scheduler", "simple") != "simple":
            ctx.note("ComfyUI-TCD's sgm_uniform picks slightly other timesteps than TCD's own schedule, which "
                     "lcmgraph runs (its simple equals it)")
        if denoise < 1:
            ctx.note("ComfyUI-TCD's denoise cuts a longer schedule; lcmgraph uses TCD's own strength, whose "
                     "first timestep may be one grid step lower")
        return {"schedule": "auto", "steps": steps, "denoise": denoise}
    if kind == "HyperSDXL1StepUnetScheduler":
        return _custom_timesteps(sampler, [800], "HyperSDXL1StepUnetScheduler")
    if kind == "KarrasScheduler":
        steps = ctx.literal(source, "steps")
        hi, lo, rho = (float(ctx.literal(source, n, d)) for n, d in (
            ("sigma_max", SIGMA_MAX), ("sigma_min", SIGMA_MIN), ("rho", 7.0)))
        if rho == 7.0 and math.isclose(hi, SIGMA_MAX, rel_tol=1e-4) and math.isclose(lo, SIGMA_MIN, rel_tol=1e-3):
            if not S.fits(sampler, "karras"):
                schedule_name(ctx, sampler, "karras")  # raises the sentence
            return {"schedule": "karras", "steps": steps}
        ramp = [i / (steps - 1) for i in range(steps)] if steps > 1 else [0.0]
        sigmas = [(hi ** (1 / rho) + r * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho for r in ramp] + [0.0]
        if not S.SAMPLERS[sampler].custom_sigmas:
            raise ConversionError(f"KarrasScheduler with sigma_max {hi}, sigma_min {lo}, rho {rho} (not the model's "
                                  f"own karras schedule) with sampler {sampler}: only euler takes custom sigmas")
        return {"schedule": "auto", "steps": steps, "sigmas": ",".join(f"{x:.6g}" for x in sigmas)}
    # SDTurboScheduler (comfy_extras/nodes_custom_sampler.py): timesteps 999, 899, ... from 10 - int(10 * denoise)
    steps, denoise = ctx.literal(source, "steps"), ctx.literal(source, "denoise", 1.0)
    start = 10 - int(10 * denoise)
    timesteps = [999 - 100 * k for k in range(start, min(start + steps, 10))]
    if not timesteps:
        raise ConversionError(f"SDTurboScheduler at denoise {denoise} leaves no timestep")
    if start == 0 and len(timesteps) == 1:  # [999]: one trailing step
        return {"schedule": "simple", "steps": 1}
    if start + len(timesteps) == 10 and S.fits(sampler, "simple"):  # the tail of trailing's 10-step grid
        return {"schedule": "simple", "steps": 10, "denoise": keep_fraction(len(timesteps), 10)}
    return _custom_timesteps(sampler, timesteps, "SDTurboScheduler")


def _custom_timesteps(sampler: str, timesteps: list[int], where: str) -> dict:
    if not S.SAMPLERS[sampler].custom_timesteps:
        takers = ", ".join(n for n, s in S.SAMPLERS.items() if s.custom_timesteps and n != "dpmpp_2m_karras")
        raise ConversionError(f"{where}'s timesteps {timesteps} with sampler {sampler}: diffusers' "
                              f"{S.SAMPLERS[sampler].cls} takes no custom timesteps; these do: {takers}")
    return {"schedule": "auto", "steps": len(timesteps), "timesteps": ",".join(str(t) for t in timesteps)}


def _noise(add: bool, out: dict) -> dict:
    """SamplerCustom's add_noise against Sampler's rule: noise exactly when it starts at step 0
    (or never with add_noise off, ComfyUI's zero noise)."""
    start = out.get("start_step", 0)
    if not add and start == 0:
        out["add_noise"] = False
    if add and start > 0:  # noise added at a later step: the truncated schedule of Sampler's denoise
        steps = out["steps"]
        out["denoise"] = keep_fraction(steps - start, steps)
        if out.get("end_step", END_ALL) != END_ALL:
            out["end_step"] -= start
        out["start_step"] = 0
    return out


def _convert(ctx, node, model, positive, negative, cfg, seed, add_noise: bool) -> Converted:
    sampler, extra = _sampler(ctx, node)
    schedule = _noise(add_noise, _schedule(ctx, node, sampler))
    prediction = prediction_for(ctx, sampler, model, sampler)
    inputs = present(model=model, positive=positive, negative=negative, latent=node.inputs.get("latent_image"),
                     seed=seed, scheduler=sampler, cfg=cfg, prediction=prediction, **extra, **schedule)
    return Converted("Sampler", inputs, {0: "latent"})


def sampler_custom(ctx, node) -> Converted:
    get = node.inputs.get
    return _convert(ctx, node, get("model"), get("positive"), get("negative"), get("cfg"), get("noise_seed"),
                    bool(ctx.literal(node, "add_noise", True)))


def sampler_custom_advanced(ctx, node) -> Converted:
    noise, _ = _source(ctx, node, "noise", ("RandomNoise", "DisableNoise"))
    guider, _ = _source(ctx, node, "guider", ("CFGGuider", "BasicGuider"))
    get = guider.inputs.get
    if guider.class_type == "CFGGuider":
        model, positive, negative, cfg = get("model"), get("positive"), get("negative"), get("cfg")
    else:
        model, positive, negative, cfg = get("model"), get("conditioning"), None, 1.0
    seed = noise.inputs.get("noise_seed") if noise.class_type == "RandomNoise" else 0
    return _convert(ctx, node, model, positive, negative, cfg, seed, noise.class_type == "RandomNoise")


def _nothing(ctx, node) -> Converted:
    return Converted(None)


def _through_model(ctx, node) -> Converted:
    return Converted(None, outputs={0: Through("model")})


#: Read by the sampler nodes; no lcmgraph node of their own.
_READ = ComfyMapping(convert=_nothing)
MAPPINGS = {
    "SamplerCustom": ComfyMapping(
        "Sampler", outputs=("latent",), widgets=("add_noise", "noise_seed", SEED_CONTROL, "cfg"),
        ignore=("control_after_generate",), title="SamplerCustom", convert=sampler_custom),
    "SamplerCustomAdvanced": ComfyMapping(
        "Sampler", outputs=("latent",), title="SamplerCustomAdvanced", convert=sampler_custom_advanced),
    "KSamplerSelect": ComfyMapping(widgets=("sampler_name",), title="KSamplerSelect", convert=_nothing),
    "BasicScheduler": ComfyMapping(widgets=("scheduler", "steps", "denoise"), title="BasicScheduler",
                                   convert=_nothing),
    "KarrasScheduler": ComfyMapping(widgets=("steps", "sigma_max", "sigma_min", "rho"), title="KarrasScheduler",
                                    convert=_nothing),
    "SDTurboScheduler": ComfyMapping(widgets=("steps", "denoise"), title="SDTurboScheduler", convert=_nothing),
    "SplitSigmas": ComfyMapping(widgets=("step",), title="SplitSigmas", convert=_nothing),
    "RandomNoise": ComfyMapping(widgets=("noise_seed", SEED_CONTROL), ignore=("control_after_generate",),
                                title="RandomNoise", convert=_nothing),
    "DisableNoise": ComfyMapping(title="DisableNoise", convert=_nothing),
    "CFGGuider": ComfyMapping(widgets=("cfg",), title="CFGGuider", convert=_nothing),
    "BasicGuider": ComfyMapping(title="BasicGuider", convert=_nothing),
    # Custom nodes: ComfyUI-TCD (JettHu) and Hyper-SD's 1-step UNet scheduler.
    "TCDModelSamplingDiscrete": ComfyMapping(widgets=("steps", "scheduler", "denoise", "eta"),
                                             title="TCD Model Sampling Discrete", convert=_through_model),
    "HyperSDXL1StepUnetScheduler": ComfyMapping(widgets=("steps",), title="HyperSDXL1StepUnetScheduler",
                                                convert=_nothing),
}
