"""ControlNet hint preprocessors that need no model weights: ComfyUI's own
Canny, and comfyui_controlnet_aux's CannyEdgePreprocessor, TilePreprocessor,
BinaryPreprocessor and ColorPreprocessor. It needs torch, numpy and OpenCV
(opencv-python-headless), never diffusers.

``edges.py``, ``tile.py`` and ``tones.py`` compute the hints, ``nodes.py`` declares the
nodes, ``comfy_map.py`` is the ComfyUI import/export table. Preprocessors
that run a network (depth, line art, normals, pose, segmentation) are not
here: ComfyUI files using them import with a "no lcmgraph equivalent" error
naming each node.
"""

from . import nodes
from .comfy_map import COMFY_MAPPINGS

NODES = nodes.NODES

__all__ = ["COMFY_MAPPINGS", "NODES"]
