"""Canny edges, two ways ComfyUI users get them.

* ``aux_canny``: comfyui_controlnet_aux's CannyDetector. The image is resized
  so its shorter side is ``resolution`` (``resize_image_with_pad``: INTER_CUBIC
  up, INTER_AREA down, sides rounded), edge-padded to multiples of 64, run
  through OpenCV's Canny with 8-bit thresholds, and cut back: the hint comes out
  at that size, not the input's.
* ``kornia_canny``: ComfyUI's core Canny node calls kornia.filters.canny
  (thresholds on 0..1 gradient magnitudes). Written here in torch step for step:
  gray (0.299, 0.587, 0.114), 5x5 Gaussian of sigma 1 (reflected border),
  unnormalised Sobel (replicated border), magnitude sqrt(gx² + gy² + 1e-6),
  non-maximum suppression along the gradient angle rounded to 45°, double
  threshold (weak 0.5, strong 1) and hysteresis that grows strong edges into
  8-connected weak ones until nothing changes.
"""

from __future__ import annotations

from .pixels import three_channels

#: OpenCV: what comfyui_controlnet_aux itself runs (cv2.Canny, cv2.resize), so its hints come out
#: the same; a well-kept wheel (opencv-python-headless) without GUI libraries.


def detect_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """controlnet_aux's detect size: the shorter side becomes ``resolution``, sides rounded."""
    k = float(resolution) / float(min(height, width))
    return int(round(height * k)), int(round(width * k))


def resize_with_pad(image, resolution: int, upscale: int):
    """(the image resized to the detect size and edge-padded to multiples of 64, (height, width) to cut back)."""
    import cv2
    import numpy as np

    height, width = detect_size(image.shape[0], image.shape[1], resolution)
    enlarge = height > image.shape[0]
    image = cv2.resize(image, (width, height), interpolation=upscale if enlarge else cv2.INTER_AREA)
    pad_h, pad_w = -height % 64, -width % 64
    return np.pad(image, [[0, pad_h], [0, pad_w], [0, 0]], mode="edge"), (height, width)


def aux_canny(image, low: int, high: int, resolution: int):
    """One uint8 ``[H, W, 3]`` image -> its Canny hint at the detect size (uint8, 3 equal channels)."""
    import cv2

    padded, (height, width) = resize_with_pad(image, resolution, cv2.INTER_CUBIC)
    edges = cv2.Canny(padded, low, high)
    return three_channels(edges[:height, :width].copy())


def _gaussian_5x5(gray):
    import torch
    import torch.nn.functional as F

    x = torch.arange(5, dtype=gray.dtype) - 2
    kernel = torch.exp(-(x**2) / 2.0)
    kernel = kernel / kernel.sum()
    out = F.conv2d(F.pad(gray, (2, 2, 0, 0), mode="reflect"), kernel.view(1, 1, 1, 5))
    return F.conv2d(F.pad(out, (0, 0, 2, 2), mode="reflect"), kernel.view(1, 1, 5, 1))


def _sobel(blurred):
    import torch
    import torch.nn.functional as F

    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=blurred.dtype)
    kernels = torch.stack([sobel, sobel.t()]).unsqueeze(1)  # d/dx, d/dy
    grads = F.conv2d(F.pad(blurred, (1, 1, 1, 1), mode="replicate"), kernels)
    return grads[:, :1], grads[:, 1:]


#: The eight neighbours as (dy, dx), counter-clockwise from the right in image rows (0°, 45°, ... of
#: atan2(gy, gx) with y pointing down), the order kornia's non-maximum-suppression kernels use.
_NEIGHBOURS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


def _shifted(x, dy: int, dx: int):
    """``x`` at each pixel's (dy, dx) neighbour, 0 outside (a zero-padded 3x3 convolution)."""
    import torch.nn.functional as F

    padded = F.pad(x, (1, 1, 1, 1))
    height, width = x.shape[-2:]
    return padded[..., 1 + dy:1 + dy + height, 1 + dx:1 + dx + width]


def kornia_canny(images, low: float, high: float):
    """IMAGE ``[B, H, W, C]`` -> ``[B, H, W]`` edges (0 or 1), kornia's canny with hysteresis."""
    import torch

    x = images.movedim(-1, 1).to(torch.float32)
    if x.shape[1] == 3:
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    gx, gy = _sobel(_gaussian_5x5(x[:, :1]))
    magnitude = torch.sqrt(gx * gx + gy * gy + 1e-6)
    direction = (torch.round(torch.rad2deg(torch.atan2(gy, gx)) / 45) % 8).long()
    differences = torch.cat([magnitude - _shifted(magnitude, dy, dx) for dy, dx in _NEIGHBOURS], dim=1)
    ahead = torch.gather(differences, 1, direction)
    behind = torch.gather(differences, 1, (direction + 4) % 8)
    magnitude = magnitude * (torch.minimum(ahead, behind) > 0)
    edges = (magnitude > low) * 0.5 + (magnitude > high) * 0.5
    while True:
        weak, strong = edges == 0.5, edges == 1.0
        near_strong = torch.zeros_like(strong)
        for dy, dx in _NEIGHBOURS:
            near_strong |= _shifted(strong.float(), dy, dx) == 1
        grown = strong | (weak & near_strong)
        following = grown.float() + (weak & ~grown) * 0.5
        if torch.equal(following, edges):
            return grown.float()[:, 0]
        edges = following
