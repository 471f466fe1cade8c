"""Test pack: the diffusion pack's ComfyUI mappings, until the pack exports
them itself (``from .comfy_map import COMFY_MAPPINGS`` in
nodes/diffusion/__init__.py); then this pack provides nothing."""

import lcmgraph_nodes.diffusion as diffusion
from lcmgraph_nodes.diffusion.comfy_map import COMFY_MAPPINGS as _MAPPINGS

NODES = []
COMFY_MAPPINGS = {} if hasattr(diffusion, "COMFY_MAPPINGS") else _MAPPINGS
