"""Segment pack: comfyui_segment_anything's text-prompted segmentation —
Grounding DINO boxes, Segment Anything masks — on transformers' models,
loading the released checkpoints as they are. It needs torch and
transformers, never diffusers.

``sam.py`` and ``grounding_dino.py`` convert the files and run the networks,
``service.py`` keeps loaded models per engine, ``nodes.py`` declares the nodes,
``comfy_map.py`` is the ComfyUI import/export table.
"""

from . import nodes
from .comfy_map import COMFY_MAPPINGS
from .service import SERVICE, factory

NODES = nodes.NODES
SERVICES = {SERVICE: factory}

__all__ = ["COMFY_MAPPINGS", "NODES", "SERVICES"]
