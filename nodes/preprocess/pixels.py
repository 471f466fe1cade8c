"""IMAGE tensors (``[B, H, W, C]`` float 0..1) to and from the 8-bit arrays
OpenCV works on, as comfyui_controlnet_aux converts them
(``common_annotator_call``: ``np.asarray(image * 255., dtype=np.uint8)``
truncates, and ``HWC3`` gives three channels, blending alpha onto white)."""

from __future__ import annotations


def to_uint8(image):
    """One image ``[H, W, C]`` as an ``[H, W, 3]`` uint8 array."""
    import numpy as np

    return three_channels(np.asarray(image.detach().cpu().numpy() * 255.0, dtype=np.uint8))


def three_channels(x):
    """controlnet_aux's HWC3: gray repeated, RGBA composited on white."""
    import numpy as np

    if x.ndim == 2:
        x = x[:, :, None]
    if x.shape[2] == 3:
        return x
    if x.shape[2] == 1:
        return np.concatenate([x, x, x], axis=2)
    color, alpha = x[:, :, :3].astype(np.float32), x[:, :, 3:4].astype(np.float32) / 255.0
    return (color * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).astype(np.uint8)


def to_image(arrays):
    """uint8 ``[H, W, 3]`` arrays of one size as an IMAGE batch."""
    import numpy as np
    import torch

    return torch.from_numpy(np.stack(arrays).astype(np.float32) / 255.0)
