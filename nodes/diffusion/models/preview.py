"""Cheap per-step previews: a linear latent -> RGB projection, no VAE.

The factors are the well-known least-squares fits for SD1.5 and SDXL latents
(as used by ComfyUI's latent previewer); they apply to the scaled latents the
UNet works on. One image of the batch, at most PREVIEW_SIZE pixels a side.
"""

from __future__ import annotations

PREVIEW_SIZE = 128

_FACTORS = {
    "sd15": (
        ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721), (-0.2120, -0.2616, -0.7177)),
        (0.0, 0.0, 0.0),
    ),
    "sdxl": (
        ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362), (-0.3165, -0.2492, -0.2188)),
        (0.1084, -0.0175, -0.0011),
    ),
}


def latent_preview(latents, arch: str = "sd15"):
    """First latent of the batch as a small PIL image."""
    import torch
    from PIL import Image

    factors, bias = _FACTORS.get(arch, _FACTORS["sd15"])
    x = latents[0].detach().to(device="cpu", dtype=torch.float32)
    if x.shape[0] != len(factors):
        return None  # a latent layout these factors do not describe
    rgb = torch.einsum("chw,cr->hwr", x, torch.tensor(factors)) + torch.tensor(bias)
    rgb = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    image = Image.fromarray(rgb, mode="RGB")
    if max(image.size) > PREVIEW_SIZE:
        image.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
    return image
