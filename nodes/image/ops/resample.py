"""Resizing IMAGE / MASK / LATENT tensors as ComfyUI's ``common_upscale`` does.

Tensors are ``[B, C, H, W]``. The methods are torch's ``interpolate`` modes
(nearest-exact, bilinear, area, bicubic: no antialiasing, corners not
aligned), ``lanczos`` (PIL's filter on the picture quantised to 8 bits, as
ComfyUI does) and ``bislerp`` (for latents: along each axis, spherical
interpolation of the channel vectors between the two nearest cells, their
lengths interpolated linearly). ``crop="center"`` first cuts the source to the
target's aspect ratio, centred.

Every method except lanczos is linear in the values, or (bislerp) scales with
them, so a latent scaled by its VAE's factor (lcmgraph) resizes to the same
latent, scaled, that ComfyUI's unscaled latent gives.
"""

from __future__ import annotations

INTERPOLATE = ("nearest-exact", "bilinear", "area", "bicubic")
IMAGE_METHODS = (*INTERPOLATE, "lanczos")
LATENT_METHODS = (*INTERPOLATE, "bislerp")
CROPS = ("disabled", "center")


def center_crop(samples, width: int, height: int):
    """Cut ``samples`` to the aspect ratio of ``width`` x ``height``, centred."""
    old_h, old_w = samples.shape[-2], samples.shape[-1]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    return samples[..., y:old_h - y, x:old_w - x]


def resize(samples, width: int, height: int, method: str, crop: str = "disabled"):
    """``samples`` [B,C,H,W] resized to ``height`` x ``width``."""
    import torch

    if width < 1 or height < 1:
        raise ValueError(f"cannot resize to {width}x{height}: both sides must be at least 1")
    if crop == "center":
        samples = center_crop(samples, width, height)
    elif crop != "disabled":
        raise ValueError(f"crop {crop!r} is not one of {', '.join(CROPS)}")
    if method == "bislerp":
        return bislerp(samples, width, height)
    if method == "lanczos":
        return lanczos(samples, width, height)
    if method not in INTERPOLATE:
        raise ValueError(f"upscale method {method!r} is not one of {', '.join(INTERPOLATE + ('lanczos', 'bislerp'))}")
    return torch.nn.functional.interpolate(samples, size=(height, width), mode=method)


def lanczos(samples, width: int, height: int):
    """PIL's Lanczos filter per picture, on the values quantised to 8 bits
    (clipped to 0..255 and truncated, as ComfyUI does), back to 0..1."""
    import numpy as np
    import torch
    from PIL import Image

    out = []
    for picture in samples:
        array = np.clip(255.0 * picture.movedim(0, -1).cpu().numpy(), 0, 255).astype(np.uint8)
        squeeze = array.shape[-1] == 1
        pil = Image.fromarray(array[..., 0] if squeeze else array)
        resized = np.asarray(pil.resize((width, height), resample=Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
        tensor = torch.from_numpy(resized)
        out.append(tensor[None] if squeeze else tensor.movedim(-1, 0))
    return torch.stack(out).to(samples.device, samples.dtype)


def _slerp(a, b, t):
    """Rows of ``a`` and ``b`` ([N, C]) interpolated by ``t`` ([N, 1]): the
    directions spherically, the lengths linearly; equal directions give ``a``,
    opposite ones the straight line."""
    import torch

    channels = a.shape[-1]
    norm_a, norm_b = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    unit_a = torch.where(norm_a.expand(-1, channels) == 0, 0.0, a / norm_a)
    unit_b = torch.where(norm_b.expand(-1, channels) == 0, 0.0, b / norm_b)
    dot = (unit_a * unit_b).sum(1)
    omega = torch.acos(dot)
    sin_omega = torch.sin(omega)
    r = t.squeeze(1)
    out = (torch.sin((1.0 - r) * omega) / sin_omega).unsqueeze(1) * unit_a \
        + (torch.sin(r * omega) / sin_omega).unsqueeze(1) * unit_b
    out = out * (norm_a * (1.0 - t) + norm_b * t).expand(-1, channels)
    out = torch.where((dot > 1 - 1e-5).unsqueeze(1), a, out)
    return torch.where((dot < 1e-5 - 1).unsqueeze(1), a * (1.0 - t) + b * t, out)


def _neighbours(old: int, new: int, device):
    """For each of ``new`` positions along an axis of ``old`` cells: the fraction
    past the left neighbour, the left neighbour and the right one (bilinear
    sampling of the cell indices, so the positions are torch's own)."""
    import torch
    import torch.nn.functional as F

    index = torch.arange(old, dtype=torch.float32, device=device).reshape(1, 1, 1, -1)
    left = F.interpolate(index, size=(1, new), mode="bilinear")
    fraction = left - left.floor()
    shifted = index + 1
    shifted[..., -1] -= 1
    right = F.interpolate(shifted, size=(1, new), mode="bilinear")
    return fraction, left.to(torch.int64), right.to(torch.int64)


def bislerp(samples, width: int, height: int):
    """Bilinear resize that slerps the channel vectors (ComfyUI's ``bislerp``):
    along the width first, then along the height."""
    dtype = samples.dtype
    x = samples.float()
    n, c, h, w = x.shape

    fraction, left, right = _neighbours(w, width, x.device)
    a = x.gather(-1, left.expand(n, c, h, -1)).movedim(1, -1).reshape(-1, c)
    b = x.gather(-1, right.expand(n, c, h, -1)).movedim(1, -1).reshape(-1, c)
    t = fraction.expand(n, 1, h, -1).movedim(1, -1).reshape(-1, 1)
    x = _slerp(a, b, t).reshape(n, h, width, c).movedim(-1, 1)

    fraction, left, right = _neighbours(h, height, x.device)
    left = left.reshape(1, 1, -1, 1).expand(n, c, -1, width)
    right = right.reshape(1, 1, -1, 1).expand(n, c, -1, width)
    a = x.gather(-2, left).movedim(1, -1).reshape(-1, c)
    b = x.gather(-2, right).movedim(1, -1).reshape(-1, c)
    t = fraction.reshape(1, 1, -1, 1).expand(n, 1, -1, width).movedim(1, -1).reshape(-1, 1)
    x = _slerp(a, b, t).reshape(n, height, width, c).movedim(-1, 1)
    return x.to(dtype)


# -- the sizes ComfyUI's resize nodes compute -----------------------------------------
def keep_aspect(old_w: int, old_h: int, width: int, height: int, minimum: int = 1) -> tuple[int, int]:
    """ImageScale's target: a side of 0 follows the other, keeping the aspect ratio."""
    if width == 0:
        width = max(minimum, round(old_w * height / old_h))
    elif height == 0:
        height = max(minimum, round(old_h * width / old_w))
    return width, height


def scaled(old_w: int, old_h: int, scale_by: float) -> tuple[int, int]:
    """The *ScaleBy nodes' target (each side rounded)."""
    return round(old_w * scale_by), round(old_h * scale_by)


def total_pixels(old_w: int, old_h: int, megapixels: float, steps: int = 1) -> tuple[int, int]:
    """ImageScaleToTotalPixels' target: megapixels x 1024 x 1024 pixels, the
    aspect ratio kept, each side rounded to a multiple of ``steps``."""
    import math

    scale_by = math.sqrt(megapixels * 1024 * 1024 / (old_w * old_h))
    return round(old_w * scale_by / steps) * steps, round(old_h * scale_by / steps) * steps
