"""Stable Video Diffusion (image to video) as ComfyUI runs it: the model is an
EDM-parameterised v-prediction UNet over all frames at once (frames are the
batch), conditioned on the init image's CLIP embedding, its VAE latent
concatenated to every frame, and the micro-conditioning (fps - 1, motion
bucket, augmentation level); guidance may grow linearly over the frames
(VideoLinearCFGGuidance); the temporal VAE decodes the frames as one clip.

diffusers' StableVideoDiffusionPipeline computes the same thing (the tests
compare them); its defaults differ from ComfyUI's (fps 7, noise augmentation
0.02, a 224-pixel squash for CLIP, the image's noise drawn before the latents').
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..formats.svd_files import SCALING_FACTOR
from .values import ClipVisionRef, Latent, ModelRef, VaeRef, VideoConditioning

ARCH = "svd"
SIGMA_MIN, SIGMA_MAX = 0.002, 700.0  # ComfyUI's SVD_img2vid sampling settings; sigma_data 1
SAMPLERS = ("euler",)
SCHEDULES = {"auto": "karras", "karras": "karras", "exponential": "exponential", "normal": "exponential"}


@dataclass
class LoadedSvd:
    key: str
    model: Any  # a ModuleDict with "unet" and "vae"
    nbytes: int
    #: which of them each stage needs on the device (the manager's offload)
    stages: Any = None

    def __post_init__(self):
        if self.stages is None:
            self.stages = {"denoise": ("unet",), "vae": ("vae",)}

    @property
    def unet(self):
        return self.model["unet"]

    @property
    def vae(self):
        return self.model["vae"]


def load(manager: Any, path: str, identity: str, ctx: Any = None) -> LoadedSvd:
    """The UNet and VAE of an SVD checkpoint, held by the model manager (budget, eviction, offload)."""
    from .manager import ModelLoadError

    key = "svd:" + identity

    def build() -> LoadedSvd:
        import torch

        from ..formats.svd_files import SvdFileError, load_svd

        try:
            unet, vae = load_svd(path)
        except SvdFileError as exc:
            raise ModelLoadError(str(exc)) from exc
        if str(manager.device).startswith("cuda"):  # the UNet in the engine's dtype (fp16); the VAE stays fp32
            unet.to(manager.dtype)
        model = torch.nn.ModuleDict({"unet": unet, "vae": vae})
        model.to("cpu" if manager.offload else manager.device)
        return LoadedSvd(key, model, sum(p.numel() * p.element_size() for p in model.parameters()))

    return manager.standalone(key, path, "loading Stable Video Diffusion", ctx, build)


def refs(path: str, identity: str) -> tuple[ModelRef, ClipVisionRef, VaeRef]:
    return ModelRef(path, identity, ARCH), ClipVisionRef(path, identity), VaeRef(path, identity, ARCH)


# -- conditioning ---------------------------------------------------------------------------
def encode_latent(vae, pixels):
    """IMAGE ``[B, H, W, 3]`` -> the VAE's latent mean ``[B, 4, h, w]``, unscaled (as ComfyUI's
    SVD conditioning keeps it: the UNet reads it as it is)."""
    import torch

    first = next(vae.parameters())
    x = pixels.movedim(-1, 1).to(device=first.device, dtype=first.dtype) * 2.0 - 1.0
    with torch.no_grad():
        return vae.encode(x).latent_dist.mode().float().cpu()


def conditioning(clip_vision, encode_vae, init_image, width: int, height: int, frames: int, motion_bucket_id: int,
                 fps: int, augmentation_level: float) -> tuple[VideoConditioning, VideoConditioning, Latent]:
    """SVD_img2vid_Conditioning: (positive, negative, the empty video latent); ``encode_vae``
    turns pixels into the unscaled latent (``encode_latent`` with the checkpoint's VAE)."""
    import torch
    from lcmgraph_nodes.image.ops.resample import resize

    from .ipadapter_embeds import encode

    embeds = encode(clip_vision, init_image, hidden_states=False)[None]  # [1, B, D]: B images -> B tokens
    pixels = resize(init_image[..., :3].movedim(-1, 1), width, height, "bilinear", "center").movedim(1, -1)
    if augmentation_level > 0:  # ComfyUI adds it in 0..1 pixels (its own draw is unseeded; this one is fixed)
        pixels = pixels + torch.randn(pixels.shape, generator=torch.Generator().manual_seed(0)) * augmentation_level
    latent = encode_vae(pixels)
    common = dict(fps=int(fps), motion_bucket_id=int(motion_bucket_id), augmentation_level=float(augmentation_level))
    positive = VideoConditioning(embeds, latent, **common)
    negative = VideoConditioning(torch.zeros_like(embeds), torch.zeros_like(latent), **common)
    empty = Latent(torch.zeros(frames, 4, height // 8, width // 8))
    return positive, negative, empty


# -- sampling -------------------------------------------------------------------------------
def sigmas_for(schedule: str, steps: int, denoise: float = 1.0):
    """ComfyUI's sigmas for the EDM range (float32, the final 0 appended); denoise < 1
    keeps the last int(steps * denoise) steps, as every lcmgraph sampler (ComfyUI's
    KSampler(n, d) imports as steps n / d, so it is ComfyUI's n-step run)."""
    import torch

    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r} is not one SVD sampling supports "
                         f"({', '.join(sorted(SCHEDULES))}; normal is exponential for SVD's continuous sigmas)")
    total = steps
    # ComfyUI reads its range off a float32 table of 1000 log-spaced sigmas.
    table = torch.exp(torch.linspace(math.log(SIGMA_MIN), math.log(SIGMA_MAX), 1000))
    low, high = float(table[0]), float(table[-1])
    if SCHEDULES[schedule] == "karras":
        ramp = torch.linspace(0, 1, total)
        rho = 7.0
        sigmas = (high ** (1 / rho) + ramp * (low ** (1 / rho) - high ** (1 / rho))) ** rho
    else:
        sigmas = torch.linspace(math.log(high), math.log(low), total).exp()
    sigmas = torch.cat([sigmas, sigmas.new_zeros([1])]).float()
    return sigmas[-(int(steps * denoise) + 1):] if denoise < 1 else sigmas


def _frames(value, frames: int):
    """ComfyUI's resize_to_batch_size for the concat latent: B init images stretched over
    the frames by nearest index (2 over 4 frames: 0, 0, 1, 1), or picked evenly when fewer."""
    count = value.shape[0]
    if count == frames:
        return value
    if frames <= 1:
        return value[:frames]
    if frames < count:
        scale = (count - 1) / (frames - 1)
        index = [min(round(i * scale), count - 1) for i in range(frames)]
    else:
        scale = count / frames
        index = [min(math.floor((i + 0.5) * scale), count - 1) for i in range(frames)]
    return value[index]


def _sized(latent, size):
    """The init image's latent at the noise's size (ComfyUI: bilinear, centre-cropped)."""
    if tuple(latent.shape[-2:]) == tuple(size):
        return latent
    from lcmgraph_nodes.image.ops.resample import resize

    return resize(latent, int(size[1]), int(size[0]), "bilinear", "center")


def _check(req) -> None:
    if req.scheduler not in SAMPLERS:
        raise ValueError(f"sampler {req.scheduler!r} does not run Stable Video Diffusion here; use "
                         f"{', '.join(SAMPLERS)} (ComfyUI's SVD examples use euler with karras)")
    for name, cond in (("positive", req.positive), ("negative", req.negative)):
        if cond is None:
            raise ValueError(f"a Stable Video Diffusion model needs a {name} conditioning: connect "
                             f"SVD_img2vid_Conditioning's {name} output")
        if not isinstance(cond, VideoConditioning):
            raise ValueError(f"the {name} conditioning of a Stable Video Diffusion model must come from "
                             "SVD_img2vid_Conditioning (an image's), not from a text encoder")
    model = req.model
    other = [p[0] for p in model.patches if p[0] != "video_linear_cfg"]
    if other or model.rescale_cfg or model.base is not None or model.loras or model.unet is not None:
        what = other or (["RescaleCFG"] if model.rescale_cfg else ["model merging"] if model.base is not None
                         else ["LoRA"] if model.loras else ["LoadUNet"])
        raise ValueError(f"{', '.join(what)} on a Stable Video Diffusion model is not supported: only "
                         "VideoLinearCFGGuidance changes how it samples")
    if req.timesteps or req.sigmas:
        raise ValueError("custom timesteps / sigmas are not supported for Stable Video Diffusion")


def min_cfg(model: ModelRef) -> float | None:
    """VideoLinearCFGGuidance's min_cfg on this MODEL, if applied."""
    for patch in model.patches:
        if patch[0] == "video_linear_cfg":
            return float(patch[1])
    return None


def sample(ctx: Any, req) -> Any:
    """The sampler for an SVD MODEL: returns the video latents ``[F, 4, h, w]`` (float32, CPU)."""
    import torch

    from .manager import SERVICE

    _check(req)
    manager = ctx.service(SERVICE)
    loaded = manager.activate(load(manager, req.model.checkpoint, req.model.identity, ctx), "denoise")
    samples = req.latent.samples.float()
    sigmas = sigmas_for(req.schedule, req.steps, req.denoise)
    end = min(req.end_step, len(sigmas) - 1)
    sigmas = sigmas[min(req.start_step, end):end + 1]
    if len(sigmas) < 2:  # denoise 0, or a start at the end: nothing to sample
        return samples.clone()
    # A run that starts late continues a latent that has its noise already (KSamplerAdvanced's
    # second half), as the other samplers do; add_noise off gives zeros too.
    fresh = req.add_noise and req.start_step == 0
    noise = torch.randn(samples.shape, generator=torch.Generator().manual_seed(int(req.seed))) if fresh \
        else torch.zeros_like(samples)
    return denoise(loaded.unet, samples, req.positive, req.negative, sigmas, noise, float(req.guidance),
                   min_cfg(req.model), lambda step, total: ctx.progress(step, total))


def denoise(unet, samples, positive: VideoConditioning, negative: VideoConditioning, sigmas, noise, cfg: float,
            first_cfg: float | None = None, progress=None):
    """ComfyUI's KSampler (euler) on SVD: EDM v-prediction (sigma_data 1), the concat latent and
    micro-conditioning per frame, cfg per frame from ``first_cfg`` to ``cfg`` when given."""
    import torch

    device, dtype = next(unet.parameters()).device, next(unet.parameters()).dtype
    frames = samples.shape[0]
    first = float(sigmas[0])
    max_denoise = math.isclose(first, SIGMA_MAX, rel_tol=1e-5) or first > SIGMA_MAX
    x = samples + noise * (math.sqrt(1.0 + first**2) if max_denoise else first)
    scale = torch.linspace(first_cfg, cfg, frames) if first_cfg is not None else torch.full((frames,), cfg)
    use_uncond = not (math.isclose(cfg, 1.0) and first_cfg is None)  # ComfyUI's cfg-1 shortcut
    conds = [negative, positive] if use_uncond else [positive]
    concat = torch.stack([_frames(_sized(c.concat_latent, samples.shape[-2:]), frames) for c in conds]).to(
        device, dtype)
    hidden = torch.cat([c.image_embeds for c in conds]).to(device, dtype)
    # float32 ids and timesteps: the UNet embeds them first, then casts (fp16 would round ids like 127.5)
    ids = torch.tensor([[c.fps - 1, c.motion_bucket_id, c.augmentation_level] for c in conds], device=device,
                       dtype=torch.float32)
    x = x.to(device)
    scale = scale.to(device).view(frames, 1, 1, 1)
    total = len(sigmas) - 1
    for i in range(total):
        sigma, following = float(sigmas[i]), float(sigmas[i + 1])
        x_in = (x / math.sqrt(sigma**2 + 1.0)).to(dtype)
        model_in = torch.cat([x_in[None].expand(len(conds), -1, -1, -1, -1), concat], dim=2)
        t = torch.full((len(conds),), 0.25 * math.log(sigma), device=device, dtype=torch.float32)
        with torch.no_grad():
            v = unet(model_in, t, encoder_hidden_states=hidden, added_time_ids=ids).sample.float()
        denoised = x / (sigma**2 + 1.0) - v * (sigma / math.sqrt(sigma**2 + 1.0))  # [conds, F, 4, h, w]
        guided = denoised[0] + scale * (denoised[1] - denoised[0]) if use_uncond else denoised[0]
        x = x + (x - guided) / sigma * (following - sigma)
        if progress is not None:
            progress(i + 1, total)
    return x.float().cpu()


# -- decoding -------------------------------------------------------------------------------
def decode(loaded: LoadedSvd, samples):
    """Video latents ``[F, 4, h, w]`` -> IMAGE ``[F, H, W, 3]``: all frames as one clip."""
    import torch

    vae = loaded.vae
    first = next(vae.parameters())
    z = (samples / SCALING_FACTOR).to(first.device, first.dtype)
    chunk = z.shape[0]
    if first.device.type == "cuda":  # ComfyUI's rule: frames per chunk by free memory, each chunk a clip
        free, _ = torch.cuda.mem_get_info(first.device)
        per_frame = 2178 * z.shape[-2] * z.shape[-1] * 64 * first.element_size()
        chunk = max(1, min(chunk, int(free // per_frame)))
    parts = []
    with torch.no_grad():
        for start in range(0, z.shape[0], chunk):
            part = z[start:start + chunk]
            parts.append(vae.decode(part, num_frames=part.shape[0]).sample.float().cpu())
    return ((torch.cat(parts) + 1.0) / 2.0).clamp(0, 1).movedim(1, -1)
