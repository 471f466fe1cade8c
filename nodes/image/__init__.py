"""Image pack: IMAGE and MASK nodes as ComfyUI computes them (resize, crop,
pad for outpainting, invert, batch, masks and their arithmetic). It needs
torch and PIL, never diffusers.

The node classes are ``images.py`` and ``masks.py``; ``ops/`` holds what they
stand on (resampling, input files, size facts for budgets), which the
diffusion pack shares; ``comfy_map.py`` is the ComfyUI import/export table.
"""

from . import images, masks
from .comfy_map import COMFY_MAPPINGS

NODES = [*images.NODES, *masks.NODES]

__all__ = ["COMFY_MAPPINGS", "NODES"]
