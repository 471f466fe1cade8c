"""The denoising loop shared by LCMSampler, Sampler and Img2Img, for one
request or a batch of them (``sample_batch``: the server's batching).

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
* A noise mask on the latent (SetLatentNoiseMask, VAEEncodeForInpaint)
  follows StableDiffusionInpaintPipeline for a 4-channel UNet: after every
  step the unmasked part is set back to the source latent noised to the next
  timestep (clean after the last step), ``(1 - m) * source_t + m * latents``.
  The mask is resized to the latent bilinearly (ComfyUI's prepare_mask), and a
  masked latent at ``denoise == 1`` starts from pure noise (the pipeline's
  ``strength == 1``): the masked part owes nothing to what was there.
* An inpainting UNet (9 input channels: SD1.5-/SDXL-inpainting) gets
  ``cat([latents, mask, masked_image_latents])`` at every call, as in
  StableDiffusionInpaintPipeline's 9-channel loop; mask and masked image come
  from the positive conditioning (InpaintModelConditioning, ComfyUI's
  ``concat_mask`` / ``concat_latent_image``), the mask resized bilinearly to the
  latent and rounded (ComfyUI's concat_cond). Without them such a UNet is
  refused; a 4-channel UNet ignores them, as ComfyUI does. At ``denoise == 1``
  it starts from pure noise (the pipeline's ``strength == 1``).
* Noise is drawn in float32 on a CPU generator seeded with ``seed`` and then
  moved to the device, so a seed means the same image everywhere.
* A batch of requests shares the UNet (and ControlNet) calls only: each
  request keeps its own generator (initial noise and the noise LCM / Euler
  ancestral / TCD add between steps), scheduler instance and CFG mix, so its
  image is its single run's up to the batched arithmetic of the UNet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from . import cfg_pp, schedules
from .control import ControlRunner
from .interrupt import checked_inside
from .ipadapter import mark_rows
from .manager import SERVICE
from .preview import latent_preview
from .regional_step import RegionalStep
from .schedules import SAMPLERS
from .unet_patches import rescale_cfg
from .values import Conditioning, Latent, ModelRef, match_token_lengths

log = logging.getLogger(__name__)

#: Sampler name -> diffusers scheduler (schedules.py: ComfyUI's names, schedules, what runs).
SCHEDULERS = SAMPLERS

#: How ``denoise`` < 1 picks the part of the schedule that runs.
#: "lcm": LCMScheduler.set_timesteps(strength=...) — all ``steps`` steps run, spread
#: over the lower-noise part (LatentConsistencyModelImg2ImgPipeline).
#: "truncate": the full ``steps`` schedule is cut to its last int(steps*denoise)
#: steps (StableDiffusionImg2ImgPipeline.get_timesteps). TCD always uses its own
#: (TCDScheduler.set_timesteps(strength=...), the same rule as LCM's).
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
    #: ComfyUI's schedule name (schedules.SCHEDULES); "auto": the checkpoint's config.
    schedule: str = "auto"
    #: "auto" (the checkpoint's) or a diffusers prediction_type.
    prediction: str = "auto"
    #: Custom timesteps / sigmas (with the final sigma) replacing the schedule; steps = their count.
    timesteps: tuple[int, ...] | None = None
    sigmas: tuple[float, ...] | None = None
    #: False: ComfyUI's add_noise disable: the noise is zeros, so a run from step 0 starts from the
    #: latent itself at the first timestep (add_noise of zeros: the scheduler's own scaling).
    add_noise: bool = True


def make_scheduler(req: SampleRequest, config: dict):
    return schedules.make_scheduler(req.scheduler, config, req.schedule, req.prediction, req.steps, seed=req.seed,
                                    custom=bool(req.timesteps or req.sigmas),
                                    original_inference_steps=req.original_inference_steps)


def plan_timesteps(scheduler: Any, req: SampleRequest, device: str):
    """Set up ``scheduler`` and return (timesteps to run, index of the first, index past the last).

    start_step / end_step count steps; for samplers with several UNet passes per
    step (Heun, DPM-2, DPM++ SDE: ``order`` 2) they index every ``order``-th entry."""
    from diffusers import LCMScheduler, TCDScheduler

    consistency = isinstance(scheduler, LCMScheduler | TCDScheduler)  # original_inference_steps: in the config
    order = schedules.order(scheduler)
    begin = 0
    if req.timesteps or req.sigmas:
        if req.timesteps:
            scheduler.set_timesteps(device=device, timesteps=list(req.timesteps))
        else:
            scheduler.set_timesteps(device=device, sigmas=list(req.sigmas))
        timesteps = scheduler.timesteps
    elif consistency and (req.strength_mode == "lcm" or isinstance(scheduler, TCDScheduler)):
        scheduler.set_timesteps(req.steps, device=device, strength=req.denoise)
        timesteps = scheduler.timesteps
    else:
        scheduler.set_timesteps(req.steps, device=device)
        init = min(int(req.steps * req.denoise), req.steps)
        begin = max(req.steps - init, 0) * order
        timesteps = scheduler.timesteps[begin:]
    if len(timesteps) == 0:
        raise ValueError(f"denoise {req.denoise} with {req.steps} steps leaves no step to run; raise either")
    total = len(timesteps)
    start, end = max(req.start_step, 0) * order, min(req.end_step * order, total)
    if start >= end:
        raise ValueError(f"start_step {req.start_step} must be below end_step {req.end_step} and the "
                         f"{-(-total // order)} steps")
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin + start)
    return timesteps, start, end


def _check_arch(name: str, cond: Conditioning | None, arch: str) -> None:
    if cond is not None and cond.arch == "svd":
        raise ValueError(f"the {name} conditioning is a video model's (SVD_img2vid_Conditioning) but the model is "
                         f"an {arch} image model")
    if cond is not None and cond.arch != arch:
        raise ValueError(f"the {name} conditioning was encoded by a {cond.arch} text encoder but the model is {arch}")


def sample(ctx: Any, req: SampleRequest):
    """Run the loop; returns the resulting latents ``[B, 4, h, w]`` (float32, CPU)."""
    if req.model.arch == "svd":  # a video model: its own loop (models/svd.py)
        from . import svd

        return svd.sample(ctx, req)

    def report(step: int, total: int, previews: list) -> None:
        ctx.progress(step, total, preview=previews[0])

    return _denoise(ctx, [req], report)[0]


def sample_batch(ctx: Any, reqs: list[SampleRequest]) -> list | None:
    """One loop for several requests (``ctx``: a BatchContext, one entry per
    request): the UNet runs on all their latents at once, while noise, seeds,
    scheduler state and CFG stay per request, so each result is what ``sample``
    gives for it alone, up to the UNet's batched arithmetic. None when the
    requests cannot share a loop (different model, schedule or size)."""
    why = "video models sample one job at a time" if reqs[0].model.arch == "svd" else batch_mismatch(reqs)
    if why is None:
        latents = _denoise(ctx, reqs, lambda step, total, previews: ctx.progress(step, total, previews=previews))
        if latents is not None:
            return latents
        why = "the loaded model needs CFG for some of them only"
    log.info("%s: sampling %d inputs one by one: %s", ctx.node_id, len(reqs), why)
    return None


#: What requests sharing one loop must agree on (seed, prompts and guidance may differ).
_SHARED = ("model", "scheduler", "steps", "denoise", "start_step", "end_step", "original_inference_steps",
           "strength_mode", "schedule", "prediction", "timesteps", "sigmas")


def batch_mismatch(reqs: list[SampleRequest]) -> str | None:
    """Why these requests cannot share one denoising loop, or None."""
    first = reqs[0]
    for req in reqs[1:]:
        for name in _SHARED:
            if getattr(req, name) != getattr(first, name):
                return f"different {name}"
        if tuple(req.latent.samples.shape[1:]) != tuple(first.latent.samples.shape[1:]):
            return "different latent sizes"
        if not _same_hints(req.positive.controls, first.positive.controls):
            return "different ControlNet hints"
    if len(reqs) > 1 and any(h.image.shape[0] != 1 for h in first.positive.controls):
        return "a ControlNet hint of several images"
    return None


def _same_hints(a, b) -> bool:
    import torch

    def same(x, y) -> bool:
        if (x.controlnet, x.strength, x.start, x.end) != (y.controlnet, y.strength, y.start, y.end):
            return False
        return x.image is y.image or (x.image.shape == y.image.shape and bool(torch.equal(x.image, y.image)))

    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))


@dataclass
class _Run:
    """One request's part of a loop: its own scheduler, generator, latents and conditioning."""

    req: SampleRequest
    scheduler: Any
    plan: tuple
    extra: dict
    latents: Any
    embeds: Any
    added: dict | None
    timestep_cond: Any
    #: Noise mask ``[B, 1, h, w]`` with the source latent and the noise it is re-noised with; None: no mask.
    mask: Any = None
    source: Any = None
    noise: Any = None
    #: An inpainting UNet's extra channels ``[B, 5, h, w]`` (mask, masked image latents); None: a 4-channel UNet.
    concat: Any = None


def latent_mask(latent: Latent, device=None, dtype=None):
    """The latent's noise mask as ``[B, 1, h, w]`` at its size (bilinear, as
    ComfyUI's prepare_mask), repeated over the batch; None without one."""
    if latent.noise_mask is None:
        return None
    import torch

    samples = latent.samples
    mask = latent.noise_mask.to(torch.float32)
    mask = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])
    if tuple(mask.shape[-2:]) != tuple(samples.shape[-2:]):
        mask = torch.nn.functional.interpolate(mask, size=tuple(samples.shape[-2:]), mode="bilinear")
    batch = samples.shape[0]
    if mask.shape[0] != batch:  # ComfyUI's repeat_to_batch_size
        mask = mask.repeat(-(-batch // mask.shape[0]), 1, 1, 1)[:batch]
    return mask.to(device=device, dtype=dtype)


def inpaint_channels(unet) -> bool:
    """Whether ``unet`` is an inpainting UNet (9 input channels); other counts than 4 are refused."""
    channels = int(unet.config.in_channels)
    if channels not in (4, 9):
        raise ValueError(f"the UNet takes {channels} input channels; only 4 (plain) and 9 (inpainting) are supported")
    return channels == 9


def inpaint_concat(req: SampleRequest, shape, device=None, dtype=None):
    """``[B, 5, h, w]``: the inpaint conditioning's mask (bilinear to the latent,
    rounded) and masked image latents (bilinear if of another size), repeated to
    the batch — ComfyUI's concat_cond; a ValueError that says what to do without it."""
    import torch

    concat = req.positive.inpaint
    if concat is None and req.negative is not None:
        concat = req.negative.inpaint
    if concat is None:
        raise ValueError("this is an inpainting model (its UNet takes 9 input channels: latents, mask and masked "
                         "image); give it the image and mask through InpaintModelConditioning's positive and "
                         "negative outputs, or use a plain (4-channel) model with SetLatentNoiseMask")
    batch, size = shape[0], tuple(shape[-2:])

    def fit(x, round_it: bool):
        x = x.to(torch.float32)
        if tuple(x.shape[-2:]) != size:
            x = torch.nn.functional.interpolate(x, size=size, mode="bilinear")
        if round_it:
            x = x.round()
        if x.shape[0] != batch:  # ComfyUI's resize_to_batch_size for whole multiples
            x = x.repeat(-(-batch // x.shape[0]), 1, 1, 1)[:batch]
        return x

    mask = concat.mask.reshape(-1, 1, concat.mask.shape[-2], concat.mask.shape[-1])
    out = torch.cat([fit(mask, True), fit(concat.latent, False)], dim=1)
    return out.to(device=device, dtype=dtype)


def _prepare(req: SampleRequest, loaded: Any, cfg: bool, device, dtype) -> _Run:
    import torch

    unet, pipe = loaded.unet, loaded.pipe
    scheduler = make_scheduler(req, loaded.scheduler_config)
    timesteps, start, end = plan_timesteps(scheduler, req, device)
    init = req.latent.samples
    batch = init.shape[0]
    generator = torch.Generator("cpu").manual_seed(int(req.seed))
    extra = _step_kwargs(scheduler, generator, req.eta)
    mask = latent_mask(req.latent, device, dtype)
    concat = inpaint_concat(req, init.shape, device, dtype) if inpaint_channels(unet) else None
    noise = None
    if start > 0:  # resuming a partly denoised latent (base -> refiner)
        latents = init.to(device=device, dtype=dtype)
        if mask is not None:
            noise = _initial_noise(req, init.shape, generator, device, dtype)
    else:
        noise = _initial_noise(req, init.shape, generator, device, dtype)
        if not req.add_noise:  # ComfyUI's noise_scaling(sigma, zeros, latent): the latent is x at the first sigma
            latents = scheduler.add_noise(init.to(device=device, dtype=dtype), noise, timesteps[:1].repeat(batch))
        elif req.denoise >= 1.0 and (mask is not None or concat is not None or not bool(init.any())):
            latents = noise * scheduler.init_noise_sigma
        else:
            first = timesteps[:1].repeat(batch)
            latents = scheduler.add_noise(init.to(device=device, dtype=dtype), noise, first)
    embeds, added = _conditioning(req, loaded, batch, cfg, init.shape, device, dtype)
    timestep_cond = None
    if unet.config.time_cond_proj_dim is not None:
        w = torch.tensor(req.guidance - 1).repeat(batch)
        timestep_cond = pipe.get_guidance_scale_embedding(w, embedding_dim=unet.config.time_cond_proj_dim)
        timestep_cond = timestep_cond.to(device=device, dtype=dtype)
    source = None if mask is None else init.to(device=device, dtype=dtype)
    return _Run(req, scheduler, (timesteps, start, end), extra, latents, embeds, added, timestep_cond,
                mask, source, noise, concat)


def _initial_noise(req: SampleRequest, shape, generator, device, dtype):
    import torch

    if not req.add_noise:
        return torch.zeros(shape, device=device, dtype=dtype)
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


def _denoise(ctx: Any, reqs: list[SampleRequest], report) -> list | None:
    """The loop for requests that passed ``batch_mismatch``; None if they turn
    out unable to share it. ``report(step, total, previews)`` after each step."""
    import torch

    for req in reqs:
        if req.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {req.scheduler!r}")
    manager = ctx.service(SERVICE)
    loaded = manager.realise_unet(reqs[0].model, ctx)
    for req in reqs:
        _check_arch("positive", req.positive, loaded.arch)
        _check_arch("negative", req.negative, loaded.arch)
    unet = loaded.unet
    device, dtype = unet.device, unet.dtype
    plus = SCHEDULERS[reqs[0].scheduler].cfg_pp  # CFG++ needs the unconditional pass at every cfg
    if plus and unet.config.time_cond_proj_dim is not None:
        raise ValueError(f"sampler {reqs[0].scheduler} needs an unconditional prediction, which this UNet "
                         "(an LCM-distilled one, guidance embedded) does not make; use euler")
    modes = {(plus or req.guidance > 1.0) and unet.config.time_cond_proj_dim is None for req in reqs}
    if len(modes) > 1:
        return None
    cfg = modes.pop()
    k = 2 if cfg else 1  # blocks per request along the UNet batch: [negative; positive] under CFG

    # checked_inside: an interrupt also stops a long UNet call between its blocks.
    with torch.no_grad(), checked_inside([unet], ctx.check_interrupt):
        runs = [_prepare(req, loaded, cfg, device, dtype) for req in reqs]
        timesteps, start, end = runs[0].plan  # equal for all: batch_mismatch compared what sets it
        sizes = [r.latents.shape[0] for r in runs]
        embeds = _stack([r.embeds for r in runs], k)
        added = None
        if runs[0].added is not None:
            added = {name: _stack([r.added[name] for r in runs], k) for name in runs[0].added}
        timestep_cond = None if runs[0].timestep_cond is None else _stack([r.timestep_cond for r in runs], 1)
        concat = None
        if runs[0].concat is not None:  # the same for the negative and positive halves, as in the pipeline
            concat = torch.cat([r.concat for r in runs])
            concat = torch.cat([concat, concat]) if cfg else concat
        shape = (sum(sizes), *runs[0].latents.shape[1:])
        regional = None  # conditionings with areas, masks, ranges or several entries: blended per region
        if any(req.positive.regional or (cfg and req.negative is not None and req.negative.regional) for req in reqs):
            regional = RegionalStep(ctx, manager, loaded, runs, cfg, len(timesteps), device, dtype)
        else:
            controls = ControlRunner(ctx, manager, loaded, reqs[0].positive.controls, shape, sum(sizes), cfg,
                                     len(timesteps))

        offsets = [sum(sizes[:index]) for index in range(len(sizes))]
        total = sum(sizes)
        run = timesteps[start:end]
        for i, t in enumerate(run):
            if regional is not None:
                inputs = [r.scheduler.scale_model_input(r.latents, t) for r in runs]
                predictions = regional.predict(unet, inputs, t, start + i)
            else:
                x = torch.cat([r.scheduler.scale_model_input(r.latents, t) for r in runs])
                model_input = torch.cat([x, x]) if cfg else x  # _stack's layout: all negatives, then all positives
                down, mid = controls.residuals(start + i, model_input, t, embeds, added)
                if concat is not None:  # an inpainting UNet: the ControlNet saw the latents alone
                    model_input = torch.cat([model_input, concat], dim=1)
                mark_rows(unet, [True] * total + [False] * total if cfg else None)  # for IP-Adapter hooks
                noise_pred = unet(
                    model_input, t, encoder_hidden_states=embeds, timestep_cond=timestep_cond,
                    added_cond_kwargs=added, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid, return_dict=False,
                )[0]
                mark_rows(unet, None)
                predictions = [(noise_pred[o:o + n], noise_pred[total + o:total + o + n]) if cfg
                               else (None, noise_pred[o:o + n]) for o, n in zip(offsets, sizes, strict=True)]
            previews = []
            for r, (uncond, own) in zip(runs, predictions, strict=True):
                if cfg:
                    cond = own
                    own = rescale_cfg(uncond + r.req.guidance * (cond - uncond), cond, r.req.model.rescale_cfg)
                if plus:
                    out = cfg_pp.step(r.scheduler, own, uncond, t, r.latents, **r.extra)
                else:
                    out = r.scheduler.step(own, t, r.latents, **r.extra, return_dict=True)
                r.latents = out.prev_sample
                if r.mask is not None:
                    r.latents = _keep_unmasked(r, timesteps, start + i + 1)
                x0 = getattr(out, "denoised", None)
                if x0 is None:
                    x0 = getattr(out, "pred_original_sample", None)
                previews.append(latent_preview(x0 if x0 is not None else r.latents, loaded.arch))
            report(i + 1, len(run), previews)
    return [r.latents.to(dtype=torch.float32, device="cpu") for r in runs]


def _keep_unmasked(r: _Run, timesteps, following: int):
    """StableDiffusionInpaintPipeline's 4-channel step: outside the mask, the
    source latent noised to the following timestep (clean after the last)."""
    proper = r.source
    if following < len(timesteps):
        proper = r.scheduler.add_noise(r.source, r.noise, timesteps[following:following + 1])
    latents = (1 - r.mask) * proper + r.mask * r.latents
    return latents


def _stack(parts: list, k: int):
    """Per-request tensors of ``k`` equal blocks each (negative block first under
    CFG) as one batch: every request's first block in order, then every second
    block — the layout of a single request's own batch, widened."""
    if len(parts) == 1:
        return parts[0]
    import torch

    blocks = [part.chunk(k) for part in parts]
    return torch.cat([b[h] for h in range(k) for b in blocks])


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
        neg, embeds = match_token_lengths(neg, embeds)  # prompts of several chunks: repeated as ComfyUI does
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
