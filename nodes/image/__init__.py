"""Image pack: IMAGE and MASK nodes as ComfyUI computes them (resize, crop,
pad for outpainting, invert, batch, masks and their arithmetic). It needs
torch and PIL, never diffusers.

The node classes are ``images.py``, ``masks.py`` and ``clip_prep.py`` (IPAdapter_plus's
PrepImageForClipVision); ``ops/`` holds what they
stand on (resampling, input files, size facts for budgets), which the
diffusion pack shares; ``comfy_map.py`` is the ComfyUI import/export table.
"""

from . import clip_prep, images, masks
from .comfy_map import COMFY_MAPPINGS

NODES = [*images.NODES, *masks.NODES, *clip_prep.NODES]

__all__ = ["COMFY_MAPPINGS", "NODES"]
