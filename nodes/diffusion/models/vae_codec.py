"""Latents <-> images through a checkpoint's VAE, as diffusers' pipelines do it:
SDXL VAEs flagged ``force_upcast`` run in fp32 when the model is fp16 (the
SDXL pipelines do this; SD1.5's decode in fp16), and SDXL latents mean/std
are honoured when the VAE config has them."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def _vae_mode(vae, tiled: bool, arch: str):
    """Upcast and tiling for this call only: the shared module is put back as
    it was, since other branches use it too."""
    import torch

    old_dtype, old_tiling = vae.dtype, getattr(vae, "use_tiling", False)
    upcast = arch == "sdxl" and vae.dtype == torch.float16 and vae.config.get("force_upcast", False)
    if upcast:
        vae.to(dtype=torch.float32)
    vae.use_tiling = tiled
    try:
        yield vae.dtype
    finally:
        vae.use_tiling = old_tiling
        if upcast:
            vae.to(dtype=old_dtype)


def _stats(vae, like):
    import torch

    mean, std = vae.config.get("latents_mean"), vae.config.get("latents_std")
    if mean is None or std is None:
        return None, None
    view = (1, len(mean), 1, 1)
    return (torch.tensor(mean).view(view).to(like.device, like.dtype),
            torch.tensor(std).view(view).to(like.device, like.dtype))


def decode(vae, samples, tiled: bool = False, arch: str = "sd15"):
    """Scaled latents ``[B,4,h,w]`` -> IMAGE ``[B,H,W,3]`` in 0..1 (float32, CPU)."""
    import torch

    with torch.no_grad(), _vae_mode(vae, tiled, arch) as dtype:
        latents = samples.to(device=vae.device, dtype=dtype)
        mean, std = _stats(vae, latents)
        sf = vae.config.scaling_factor
        latents = latents * std / sf + mean if mean is not None else latents / sf
        image = vae.decode(latents, return_dict=False)[0]
        image = (image / 2 + 0.5).clamp(0, 1)
    return image.permute(0, 2, 3, 1).to(device="cpu", dtype=torch.float32)


def encode(vae, image, tiled: bool = False, arch: str = "sd15"):
    """IMAGE ``[B,H,W,C]`` in 0..1 -> scaled latents (the distribution's mode: no randomness)."""
    import torch

    with torch.no_grad(), _vae_mode(vae, tiled, arch) as dtype:
        pixels = image[..., :3].permute(0, 3, 1, 2).to(device=vae.device, dtype=dtype) * 2.0 - 1.0
        latents = vae.encode(pixels).latent_dist.mode()
        mean, std = _stats(vae, latents)
        sf = vae.config.scaling_factor
        latents = (latents - mean) * sf / std if mean is not None else latents * sf
    return latents.to(device="cpu", dtype=torch.float32)


def crop_to_multiple(image, factor: int):
    """Centre-crop so both sides divide by the VAE's downscale factor."""
    h, w = image.shape[1], image.shape[2]
    nh, nw = h // factor * factor, w // factor * factor
    if nh == 0 or nw == 0:
        raise ValueError(f"a {w}x{h} image is smaller than the VAE's {factor}-pixel cell")
    top, left = (h - nh) // 2, (w - nw) // 2
    return image[:, top:top + nh, left:left + nw, :]
