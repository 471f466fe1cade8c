"""Latent creation and the sampler nodes (the loop itself is in models/sampling.py)."""

from __future__ import annotations

from lcmgraph import Input, Node, Output
from lcmgraph import types as T
from lcmgraph.budget import Estimate

from .models import costs, schedules
from .models.sampling import SCHEDULERS, SampleRequest, sample, sample_batch
from .models.values import Latent

_SEED = dict(default=0, min=0, max=2**63 - 1, description="noise is drawn on the CPU: a seed means the same image on every device")

#: What every sampler takes before its own settings.
_SAMPLER_INPUTS = (
    Input("model", T.MODEL),
    Input("positive", T.CONDITIONING),
    Input("negative", T.CONDITIONING, optional=True),
    Input("latent", T.LATENT),
    Input("seed", T.INT, **_SEED),
)


class EmptyLatent(Node):
    """An all-zero latent batch to start text-to-image from (1/8 of the image size)."""

    category = "latent"
    record_parameters = True
    inputs = (
        Input("width", T.INT, default=512, min=64, max=8192, step=8),
        Input("height", T.INT, default=512, min=64, max=8192, step=8),
        Input("batch", T.INT, default=1, min=1, max=64),
    )
    outputs = (Output("latent", T.LATENT),)
    batch_inputs = ()  # jobs batched together have the same size

    def execute(self, ctx, width, height, batch):
        import torch

        return {"latent": Latent(torch.zeros(batch, 4, height // 8, width // 8))}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = costs.Size(literals["batch"], literals["height"] // 8 * 8, literals["width"] // 8 * 8)
        return Estimate({"latent": size}, (costs.pixels(size, "an image", "width"), costs.batch(size, "batch")))


class LCMSampler(Node):
    """Few-step sampling with the LCM scheduler (an LCM checkpoint or any model + LCM-LoRA).

    guidance 1.0 disables CFG (one UNet pass per step, the negative is
    ignored); 1.0-2.0 is the useful range with an LCM-LoRA. LCM-distilled
    UNets with a guidance embedding take guidance through it instead of CFG.

    denoise < 1 (img2img) uses LCM's own strength semantics
    (LatentConsistencyModelImg2ImgPipeline): the skipping-step schedule is
    laid over the first ``denoise`` of the original_inference_steps grid and
    all ``steps`` steps still run, rather than cutting a 4-step schedule down
    to int(4 * denoise) steps.
    """

    category = "sampling"
    version = 2
    record_parameters = True
    inputs = (
        *_SAMPLER_INPUTS,
        Input("steps", T.INT, default=4, min=1, max=50),
        Input("guidance", T.FLOAT, default=1.0, min=0.0, max=30.0, step=0.1),
        Input("original_inference_steps", T.INT, default=50, min=1, max=1000),
        Input("denoise", T.FLOAT, default=1.0, min=0.0, max=1.0, step=0.01),
    )
    outputs = (Output("latent", T.LATENT),)
    #: Jobs batched together share one denoising loop: only these may differ (and the prompts).
    batch_inputs = ("seed", "guidance")

    @classmethod
    def check_inputs(cls, literals):
        steps, ois = literals.get("steps"), literals.get("original_inference_steps")
        denoise = literals.get("denoise")
        if None in (steps, ois, denoise):
            return []
        if int(ois * denoise) < steps:
            return [("steps", f"{steps} steps do not fit in original_inference_steps x denoise = {int(ois * denoise)}")]
        return []

    def execute(self, ctx, **inputs):
        req = self.request(**inputs)
        return {"latent": sampled(req, sample(ctx, req))}

    def execute_batch(self, ctx, inputs_list):
        return _batched(ctx, [self.request(**inputs) for inputs in inputs_list])

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return costs.sampler(literals, upstream)

    @staticmethod
    def request(model, positive, negative, latent, seed, steps, guidance, original_inference_steps, denoise):
        return SampleRequest(
            model, positive, negative, latent, seed, steps, guidance, scheduler="lcm", denoise=denoise,
            original_inference_steps=original_inference_steps, strength_mode="lcm",
        )


class Sampler(Node):
    """General sampler: every ComfyUI KSampler sampler diffusers can run, on ComfyUI's schedules.

    ``scheduler`` names the sampler (ComfyUI's sampler_name: euler, dpmpp_2m,
    uni_pc, lcm, tcd, ...) and ``schedule`` the timesteps (ComfyUI's scheduler:
    normal, karras, sgm_uniform, simple, ddim_uniform, ...; ``auto`` keeps the
    checkpoint's own timestep_spacing). Few-step LoRAs need their authors'
    schedule: sgm_uniform (trailing) for SDXL-Lightning, Hyper-SD and PCM.
    ``timesteps`` (999,749,499,249) or ``sigmas`` replace the schedule (DMD2,
    Hyper-SD's 1-step UNet at 800); ``prediction`` overrides the checkpoint's
    prediction type (sample for Lightning's 1-step x0 UNet). Combinations
    diffusers cannot run are refused before the run, each with a sentence.

    denoise < 1 follows StableDiffusionImg2ImgPipeline: the ``steps``-step
    schedule is cut to its last int(steps * denoise) steps (tcd: TCD's own
    strength, which spreads all steps over the lower-noise part like LCM).
    start_step / end_step run part of the schedule for base -> refiner: a run
    that stops early returns the latent with its leftover noise, and a run that
    starts late (start_step > 0) takes such a latent and adds no noise.
    add_noise off makes the noise zeros (ComfyUI's add_noise disable): a run
    from step 0 then starts from the latent as it is, at the first timestep.
    euler_cfg_pp / euler_ancestral_cfg_pp are ComfyUI's CFG++ samplers
    (models/cfg_pp.py): they run the negative prompt at every cfg.
    """

    category = "sampling"
    version = 3
    record_parameters = True
    inputs = (
        *_SAMPLER_INPUTS,
        Input("scheduler", T.ENUM, default="euler", choices=tuple(SCHEDULERS),
              description="the sampler, by ComfyUI's sampler_name (docs/samplers.md)"),
        Input("steps", T.INT, default=20, min=1, max=1000),
        Input("cfg", T.FLOAT, default=7.0, min=0.0, max=30.0, step=0.1),
        Input("denoise", T.FLOAT, default=1.0, min=0.0, max=1.0, step=0.01),
        Input("start_step", T.INT, default=0, min=0, max=10000),
        Input("end_step", T.INT, default=10000, min=1, max=10000),
        Input("eta", T.FLOAT, default=schedules.ETA_AUTO, min=-1.0, max=1.0, step=0.01,
              description="stochasticity of ddim / tcd (TCD's gamma); -1: the sampler's default (tcd 0.3, ddim 0)"),
        Input("schedule", T.ENUM, default="auto", choices=tuple(schedules.SCHEDULES),
              description="ComfyUI's scheduler names; auto: the checkpoint's timestep_spacing"),
        Input("timesteps", T.STRING, default="",
              description="custom timesteps replacing the schedule, e.g. 999,749,499,249 (steps = their count)"),
        Input("sigmas", T.STRING, default="",
              description="custom sigmas with the final one, e.g. 14.6,3.2,0.45,0 (euler)"),
        Input("prediction", T.ENUM, default="auto", choices=schedules.PREDICTIONS,
              description="the UNet's prediction type; auto: the checkpoint's"),
        Input("original_inference_steps", T.INT, default=50, min=1, max=1000,
              description="lcm / tcd: the grid their few steps are taken from"),
        Input("add_noise", T.BOOLEAN, default=True,
              description="off: no noise at the start, the latent is the sample at the first step's noise level "
                          "(ComfyUI KSamplerAdvanced add_noise disable); a run from start_step > 0 adds none anyway"),
    )
    outputs = (Output("latent", T.LATENT),)
    batch_inputs = ("seed", "cfg", "eta")

    @classmethod
    def check_inputs(cls, literals):
        start, end = literals.get("start_step"), literals.get("end_step")
        out = []
        if start is not None and end is not None and start >= end:
            out.append(("start_step", f"start_step {start} must be below end_step {end}"))
        sampler = literals.get("scheduler")
        if not isinstance(sampler, str):
            return out
        schedule, prediction = literals.get("schedule", "auto"), literals.get("prediction", "auto")
        timesteps, sigmas = literals.get("timesteps", ""), literals.get("sigmas", "")
        if not all(isinstance(v, str) for v in (schedule, prediction, timesteps, sigmas)):
            return out
        custom = schedules.custom_problems(sampler, timesteps.strip(), sigmas.strip(), schedule)
        out += custom
        steps = literals.get("steps")
        if not custom and (timesteps.strip() or sigmas.strip()):
            steps = len(schedules.parse_list(timesteps or sigmas, float)) - (0 if timesteps.strip() else 1)
            denoise = literals.get("denoise", 1.0)
            if isinstance(denoise, int | float) and denoise < 1:
                out.append(("denoise", "custom timesteps set where the run starts: leave out the high-noise ones "
                                       "instead of lowering denoise"))
        eta = literals.get("eta")
        out += schedules.problems(sampler, schedule, prediction, steps if isinstance(steps, int) else None,
                                  eta if isinstance(eta, int | float) else None)
        spec = schedules.SAMPLERS.get(sampler)
        ois, denoise = literals.get("original_inference_steps"), literals.get("denoise", 1.0)
        if spec is not None and spec.consistency and not (timesteps or sigmas) and None not in (steps, ois, denoise):
            if int(ois * (denoise if sampler == "tcd" else 1.0)) < steps:
                out.append(("steps", f"{steps} {sampler} steps do not fit in original_inference_steps "
                                     f"{'x denoise ' if sampler == 'tcd' else ''}= "
                                     f"{int(ois * (denoise if sampler == 'tcd' else 1.0))}"))
        return out

    def execute(self, ctx, **inputs):
        req = self.request(**inputs)
        return {"latent": sampled(req, sample(ctx, req))}

    def execute_batch(self, ctx, inputs_list):
        return _batched(ctx, [self.request(**inputs) for inputs in inputs_list])

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return costs.sampler(literals, upstream)

    @staticmethod
    def request(model, positive, negative, latent, seed, scheduler, steps, cfg, denoise, start_step, end_step,
                eta, schedule="auto", timesteps="", sigmas="", prediction="auto", original_inference_steps=50,
                add_noise=True):
        custom_t = tuple(schedules.parse_list(timesteps, int)) if timesteps.strip() else None
        custom_s = tuple(schedules.parse_list(sigmas, float)) if sigmas.strip() else None
        if custom_t or custom_s:
            steps = len(custom_t) if custom_t else len(custom_s) - 1
        return SampleRequest(
            model, positive, negative, latent, seed, steps, cfg, scheduler=scheduler, denoise=denoise,
            start_step=start_step, end_step=end_step, eta=schedules.resolve_eta(scheduler, eta),
            strength_mode="truncate", original_inference_steps=original_inference_steps, schedule=schedule,
            prediction=prediction, timesteps=custom_t, sigmas=custom_s, add_noise=bool(add_noise),
        )


def _batched(ctx, reqs: list[SampleRequest]) -> list[dict] | None:
    """The samplers' execute_batch: one loop for all, or None (run one by one)."""
    latents = sample_batch(ctx, reqs)
    return None if latents is None else [{"latent": sampled(r, x)} for r, x in zip(reqs, latents, strict=True)]


def sampled(req: SampleRequest, samples) -> Latent:
    """A sampler's result: the new samples, keeping the input's noise mask (as ComfyUI's KSampler)."""
    return Latent(samples, noise_mask=req.latent.noise_mask)


NODES = [EmptyLatent, LCMSampler, Sampler]
