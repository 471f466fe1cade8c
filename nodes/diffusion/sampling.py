"""The denoising loop shared by LCMSampler and Sampler.

It follows diffusers' StableDiffusionPipeline / StableDiffusionXLPipeline
step for step (prompt batching, CFG, guidance embedding for LCM-distilled
UNets, SDXL added conditioning, ControlNet residuals) so that a workflow's
image equals the pipeline's for the same weights and seed; the parity tests
in tests/diffusion hold it to that.

Semantics chosen (and documented on the nodes):

* CFG: ``guidance > 1`` runs the negative and positive in one batch
  (``uncond + g * (cond - uncond)``), unless the UNet embeds guidance itself
  (``time_cond_proj_dim``: LCM-distilled checkpoints), which then gets
  ``w = guidance - 1`` and one pass per step — StableDiffusionPipeline
  semantics, which equal LatentConsistencyModelPipeline's for such UNets.
* txt2img vs img2img: a full-strength run (``denoise == 1``) on an all-zero
  latent starts from ``noise * init_noise_sigma`` (txt2img pipeline); any
  other latent is noised to the first timestep with ``add_noise`` (img2img).
* Noise is drawn in float32 on a CPU generator seeded with ``seed`` and then
  moved to the device, so a seed means the same image everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .controlnet import ControlRunner
from .manager import SERVICE
from .preview import latent_preview
from .values import Conditioning, Latent, ModelRef

SCHEDULERS = {
    "lcm": ("LCMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "dpmpp_2m_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "ddim": ("DDIMScheduler", {}),
    "tcd": ("TCDScheduler", {}),
}

#: How ``denoise`` < 1 picks the part of the schedule that runs.
#: "lcm": LCMScheduler.set_timesteps(strength=...) — all ``steps`` steps run, spread
#: over the lower-noise part (LatentConsistencyModelImg2ImgPipeline).
#: "truncate": the full ``steps`` schedule is cut to its last int(steps*denoise)
#: steps (StableDiffusionImg2ImgPipeline.get_timesteps).
STRENGTH_MODES = ("lcm", "truncate")


@dataclass(frozen=True)
class SampleRequest:
    model: ModelRef
    positive: Conditioning
    negative: Conditioning | None
    latent: Latent
    seed: int
    steps: int
    guidance: float
    scheduler: str = "lcm"
    denoise: float = 1.0
    start_step: int = 0
    end_step: int = 10000
    original_inference_steps: int = 50
    eta: float = 0.0
    strength_mode: str = "truncate"


def make_scheduler(name: str, config: dict):
    import diffusers

    class_name, overrides = SCHEDULERS[name]
    return getattr(diffusers, class_name).from_config(config, **overrides)


def plan_timesteps(scheduler: Any, req: SampleRequest, device: str):
    """Set up ``scheduler`` and return (timesteps to run, index of the first in the schedule)."""
    is_lcm = type(scheduler).__name__ == "LCMScheduler"
    kwargs = {"original_inference_steps": req.original_inference_steps} if is_lcm else {}
    begin = 0
    if is_lcm and req.strength_mode == "lcm":
        scheduler.set_timesteps(req.steps, device=device, strength=req.denoise, **kwargs)
        timesteps = scheduler.timesteps
    else:
        scheduler.set_timesteps(req.steps, device=device, **kwargs)
        init = min(int(req.steps * req.denoise), req.steps)
        begin = max(req.steps - init, 0) * scheduler.order
        timesteps = scheduler.timesteps[begin:]
    if len(timesteps) == 0:
        raise ValueError(f"denoise {req.denoise} with {req.steps} steps leaves no step to run; raise either")
    total = len(timesteps)
    start, end = max(req.start_step, 0), min(req.end_step, total)
    if start >= end:
        raise ValueError(f"start_step {req.start_step} must be below end_step {req.end_step} and the {total} steps")
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin + start)
    return timesteps, start, end


def _check_arch(name: str, cond: Conditioning | None, arch: str) -> None:
    if cond is not None and cond.arch != arch:
        raise ValueError(f"the {name} conditioning was encoded by a {cond.arch} text encoder but the model is {arch}")


def sample(ctx: Any, req: SampleRequest):
    """Run the loop; returns the resulting latents ``[B, 4, h, w]`` (float32, CPU)."""
    import torch

    if req.scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {req.scheduler!r}")
    manager = ctx.service(SERVICE)
    loaded = manager.realise_unet(req.model, ctx)
    _check_arch("positive", req.positive, loaded.arch)
    _check_arch("negative", req.negative, loaded.arch)
    unet, pipe = loaded.unet, loaded.pipe
    device, dtype = unet.device, unet.dtype

    scheduler = make_scheduler(req.scheduler, loaded.scheduler_config)
    timesteps, start, end = plan_timesteps(scheduler, req, device)
    init = req.latent.samples
    batch = init.shape[0]
    generator = torch.Generator("cpu").manual_seed(int(req.seed))
    extra = _step_kwargs(scheduler, generator, req.eta)

    with torch.no_grad():
        if start > 0:  # resuming a partly denoised latent (base -> refiner)
            latents = init.to(device=device, dtype=dtype)
        else:
            noise = torch.randn(init.shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
            if req.denoise >= 1.0 and not bool(init.any()):
                latents = noise * scheduler.init_noise_sigma
            else:
                first = timesteps[:1].repeat(batch)
                latents = scheduler.add_noise(init.to(device=device, dtype=dtype), noise, first)

        cfg = req.guidance > 1.0 and unet.config.time_cond_proj_dim is None
        embeds, added = _conditioning(req, loaded, batch, cfg, init.shape, device, dtype)
        timestep_cond = None
        if unet.config.time_cond_proj_dim is not None:
            w = torch.tensor(req.guidance - 1).repeat(batch)
            timestep_cond = pipe.get_guidance_scale_embedding(w, embedding_dim=unet.config.time_cond_proj_dim)
            timestep_cond = timestep_cond.to(device=device, dtype=dtype)
        controls = ControlRunner(ctx, manager, loaded, req.positive.controls, init.shape, batch, cfg, len(timesteps))

        run = timesteps[start:end]
        for i, t in enumerate(run):
            model_input = torch.cat([latents] * 2) if cfg else latents
            model_input = scheduler.scale_model_input(model_input, t)
            down, mid = controls.residuals(start + i, model_input, t, embeds, added)
            noise_pred = unet(
                model_input, t, encoder_hidden_states=embeds, timestep_cond=timestep_cond,
                added_cond_kwargs=added, down_block_additional_residuals=down,
                mid_block_additional_residual=mid, return_dict=False,
            )[0]
            if cfg:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + req.guidance * (cond - uncond)
            out = scheduler.step(noise_pred, t, latents, **extra, return_dict=True)
            latents = out.prev_sample
            x0 = getattr(out, "denoised", None)
            if x0 is None:
                x0 = getattr(out, "pred_original_sample", None)
            ctx.progress(i + 1, len(run), preview=latent_preview(x0 if x0 is not None else latents, loaded.arch))
    return latents.to(dtype=torch.float32, device="cpu")


def _step_kwargs(scheduler: Any, generator: Any, eta: float) -> dict:
    import inspect

    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "generator" in accepted:
        kwargs["generator"] = generator
    if "eta" in accepted:
        kwargs["eta"] = eta
    return kwargs


def _conditioning(req: SampleRequest, loaded: Any, batch: int, cfg: bool, shape, device, dtype):
    """Prompt embeddings (negative first under CFG) and SDXL's added conditioning."""
    import torch

    pos = req.positive
    embeds = pos.embeds.to(device=device, dtype=dtype).repeat(batch, 1, 1)
    neg = None
    if cfg:
        neg = req.negative.embeds if req.negative is not None else pos.default_negative
        neg = torch.zeros_like(embeds) if neg is None else neg.to(device=device, dtype=dtype).repeat(batch, 1, 1)
        embeds = torch.cat([neg, embeds])
    if loaded.arch != "sdxl":
        return embeds, None

    factor = loaded.pipe.vae_scale_factor
    image_size = (int(shape[2]) * factor, int(shape[3]) * factor)

    def time_ids(c: Conditioning):
        ids = list((c.original_size or image_size) + tuple(c.crop) + (c.target_size or image_size))
        return torch.tensor([ids], dtype=dtype)

    pooled = pos.pooled.to(device=device, dtype=dtype).repeat(batch, 1)
    ids = time_ids(pos)
    if cfg:
        negative = req.negative
        neg_pooled = negative.pooled if negative is not None else None
        neg_pooled = torch.zeros_like(pooled) if neg_pooled is None else neg_pooled.to(device=device, dtype=dtype).repeat(batch, 1)
        own_sizes = negative is not None and negative.original_size is not None and negative.target_size is not None
        ids = torch.cat([time_ids(negative) if own_sizes else ids, ids])
        pooled = torch.cat([neg_pooled, pooled])
    return embeds, {"text_embeds": pooled, "time_ids": ids.to(device).repeat(batch, 1)}
