"""comfyui_controlnet_aux's TilePreprocessor (TileDetector): a blurred copy
for tile ControlNets. The sides are rounded to multiples of 64, the image is
shrunk by 2^pyrUp_iters with INTER_AREA and brought back with as many
Gaussian pyramid steps up (cv2.pyrUp), so the hint comes out at the rounded
size. The node's ``resolution`` widget reaches TileDetector unused."""

from __future__ import annotations

from .pixels import three_channels


def tile_size(height: int, width: int) -> tuple[int, int]:
    """The hint's size: each side rounded to a multiple of 64 (numpy's round, half to even)."""
    import numpy as np

    return int(np.round(height / 64.0)) * 64, int(np.round(width / 64.0)) * 64


def tile_blur(image, pyr_up_iters: int):
    """One uint8 ``[H, W, 3]`` image -> its tile hint (uint8 ``[H', W', 3]``, sides multiples of 64)."""
    import cv2

    height, width = tile_size(image.shape[0], image.shape[1])
    factor = 2**pyr_up_iters
    small = three_channels(cv2.resize(image, (width // factor, height // factor), interpolation=cv2.INTER_AREA))
    for _ in range(pyr_up_iters):
        small = cv2.pyrUp(small)
    return small
