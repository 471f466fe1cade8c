"""ControlNet hint preprocessors: ComfyUI's own Canny, and comfyui_controlnet_aux's
CannyEdgePreprocessor, TilePreprocessor, BinaryPreprocessor, ColorPreprocessor,
LineartStandardPreprocessor (no model weights) and LineArtPreprocessor (its
small generator network, lllyasviel/Annotators' sk_model.pth in the
``annotators`` folder). It needs torch, numpy and OpenCV
(opencv-python-headless), never diffusers.

``edges.py``, ``tile.py`` and ``tones.py`` compute the hints, ``nodes.py`` declares the
nodes, ``comfy_map.py`` is the ComfyUI import/export table. Preprocessors
that run a large network (depth, normals, pose, segmentation) are not here
yet: ComfyUI files using them import with a "no lcmgraph equivalent" error
naming each node.
"""

from . import nodes
from .comfy_map import COMFY_MAPPINGS

NODES = nodes.NODES

__all__ = ["COMFY_MAPPINGS", "NODES"]
