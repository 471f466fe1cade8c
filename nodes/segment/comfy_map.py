"""comfyui_segment_anything's class names (with their " (segment anything)"
suffix) to the segment pack's nodes, both ways; its InvertMask is the image
pack's (1 - mask), so it imports as that and exports as ComfyUI's core one."""

from __future__ import annotations

from lcmgraph.comfy import ComfyMapping

_SUFFIX = " (segment anything)"

COMFY_MAPPINGS: dict[str, ComfyMapping] = {
    "SAMModelLoader" + _SUFFIX: ComfyMapping("SAMModelLoader", {"model_name": "model_name"}, ("sam_model",),
                                             ("model_name",), title="SAMModelLoader", export=True),
    "GroundingDinoModelLoader" + _SUFFIX: ComfyMapping(
        "GroundingDinoModelLoader", {"model_name": "model_name"}, ("grounding_dino_model",), ("model_name",),
        title="GroundingDinoModelLoader", export=True),
    "GroundingDinoSAMSegment" + _SUFFIX: ComfyMapping(
        "GroundingDinoSAMSegment",
        {"sam_model": "sam_model", "grounding_dino_model": "grounding_dino_model", "image": "image",
         "prompt": "prompt", "threshold": "threshold"},
        ("image", "mask"), ("prompt", "threshold"), title="GroundingDinoSAMSegment", export=True),
    "InvertMask" + _SUFFIX: ComfyMapping("InvertMask", {"mask": "mask"}, ("mask",), (), title="InvertMask"),
}

__all__ = ["COMFY_MAPPINGS"]
