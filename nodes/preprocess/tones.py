"""Hints from the image's tones, as comfyui_controlnet_aux computes them.

* ``binary``: BinaryDetector. At the detect size (``edges.resize_with_pad``),
  OpenCV's grey (RGB2GRAY); pixels brighter than ``bin_threshold`` white, the
  rest black. A threshold of 0 or 255 picks Otsu's threshold instead.
* ``color``: ColorDetector (the T2I colour adapter's palette). The shorter
  side resized to ``resolution`` with INTER_AREA (up or down), shrunk 64
  times with INTER_CUBIC and blown back up with INTER_NEAREST: blocks of
  64x64 pixels of one colour.
"""

from __future__ import annotations

from .edges import resize_with_pad
from .pixels import three_channels


def binary(image, threshold: int, resolution: int):
    """One uint8 ``[H, W, 3]`` image -> its binary hint at the detect size."""
    import cv2

    padded, (height, width) = resize_with_pad(image, resolution, cv2.INTER_CUBIC)
    gray = cv2.cvtColor(padded, cv2.COLOR_RGB2GRAY)
    if threshold in (0, 255):
        _, dark = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    else:
        _, dark = cv2.threshold(gray, threshold, 255, cv2.THRESH_BINARY_INV)
    return three_channels((255 - dark)[:height, :width].copy())


def color(image, resolution: int):
    """One uint8 ``[H, W, 3]`` image -> its colour-palette hint (shorter side ``resolution``)."""
    import cv2

    h, w = image.shape[:2]
    if h < w:
        h, w = resolution, int(round(w / h * resolution))
    else:
        h, w = int(round(h / w * resolution)), resolution
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    blocks = cv2.resize(resized, (w // 64, h // 64), interpolation=cv2.INTER_CUBIC)
    return three_channels(cv2.resize(blocks, (w, h), interpolation=cv2.INTER_NEAREST))
