"""ControlNet hint preprocessors: ComfyUI's own Canny, and comfyui_controlnet_aux's
CannyEdgePreprocessor, TilePreprocessor, BinaryPreprocessor, ColorPreprocessor,
LineartStandardPreprocessor (no model weights), LineArtPreprocessor (its
small generator network, lllyasviel/Annotators' sk_model.pth in the
``annotators`` folder) and DepthAnything(V2)Preprocessor (DINOv2 + DPT from
transformers, the released .pth files in ``annotators``). It needs torch,
numpy, OpenCV (opencv-python-headless) and, for depth, transformers; never
diffusers.

``edges.py``, ``tile.py`` and ``tones.py`` compute the hints, ``nodes.py`` declares the
nodes, ``comfy_map.py`` is the ComfyUI import/export table. ``lineart.py`` and
``depth_anything.py`` hold the networks. Preprocessors that run other large
networks (MiDaS, normals, pose, segmentation) are not here yet: ComfyUI files using them import with a "no lcmgraph equivalent" error
naming each node.
"""

from . import nodes
from .comfy_map import COMFY_MAPPINGS

NODES = nodes.NODES

__all__ = ["COMFY_MAPPINGS", "NODES"]
