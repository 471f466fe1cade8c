"""Model merging (comfy_extras/nodes_model_merging*.py), FreeU, RescaleCFG and
upscale models one to one, both ways, and the ComfyUI model kinds lcmgraph does not load yet, refused by name."""

from __future__ import annotations

from lcmgraph.comfy import ComfyMapping, ConversionError

from ..merging import SD1_BLOCKS, SDXL_BLOCKS

_MODELS = {"model1": "model1", "model2": "model2"}
_CLIPS = {"clip1": "clip1", "clip2": "clip2"}


def _merge(node: str, sockets: dict, widgets: tuple[str, ...], output: str, title: str | None = None) -> ComfyMapping:
    return ComfyMapping(node, {**sockets, **{w: w for w in widgets}}, (output,), widgets, title=title or node,
                        export=True)


def _blocks(node: str, blocks, export: bool = True) -> ComfyMapping:
    # ComfyUI's inputs are the LDM prefixes ("input_blocks.4." for SD1, "input_blocks.4" for SDXL).
    comfy_names = dict(blocks)
    inputs = {**_MODELS, **{comfy_names[name]: name for name, _ in blocks}}
    return ComfyMapping(node, inputs, ("model",), tuple(comfy_names[name] for name, _ in blocks), title=node,
                        export=export)


MERGING: dict[str, ComfyMapping] = {
    "ModelMergeSimple": _merge("ModelMergeSimple", _MODELS, ("ratio",), "model"),
    "ModelMergeBlocks": _merge("ModelMergeBlocks", _MODELS, ("input", "middle", "out"), "model"),
    "ModelMergeAdd": _merge("ModelMergeAdd", _MODELS, (), "model"),
    "ModelMergeSubtract": _merge("ModelMergeSubtract", _MODELS, ("multiplier",), "model"),
    "ModelMergeSD1": _blocks("ModelMergeSD1", SD1_BLOCKS),
    "ModelMergeSD2": _blocks("ModelMergeSD1", SD1_BLOCKS, export=False),  # SD2's blocks are SD1's
    "ModelMergeSDXL": _blocks("ModelMergeSDXL", SDXL_BLOCKS),
    "CLIPMergeSimple": _merge("CLIPMergeSimple", _CLIPS, ("ratio",), "clip"),
    "CLIPMergeAdd": _merge("CLIPMergeAdd", _CLIPS, (), "clip"),
    "CLIPMergeSubtract": _merge("CLIPMergeSubtract", _CLIPS, ("multiplier",), "clip"),
    "FreeU": _merge("FreeU", {"model": "model"}, ("b1", "b2", "s1", "s2"), "model"),
    "FreeU_V2": _merge("FreeU_V2", {"model": "model"}, ("b1", "b2", "s1", "s2"), "model"),
    "RescaleCFG": _merge("RescaleCFG", {"model": "model"}, ("multiplier",), "model"),
    "UpscaleModelLoader": ComfyMapping("UpscaleModelLoader", {"model_name": "model_name"}, ("upscale_model",),
                                       ("model_name",), title="Load Upscale Model", export=True),
    "ImageUpscaleWithModel": ComfyMapping("ImageUpscaleWithModel", {"upscale_model": "upscale_model", "image": "image"},
                                          ("image",), title="Upscale Image (using Model)", export=True),
    "CheckpointSave": ComfyMapping("CheckpointSave", {"model": "model", "clip": "clip", "vae": "vae",
                                                      "filename_prefix": "filename_prefix"},
                                   (), ("filename_prefix",), title="Save Checkpoint", export=True),
}


#: ComfyUI classes for model kinds lcmgraph does not load: class -> what is missing.
NOT_SUPPORTED = {
    "unCLIPCheckpointLoader": "unCLIP checkpoints (SD2.1 unCLIP) are not supported yet",
    "unCLIPConditioning": "unCLIP / revision conditioning (image embeddings from a CLIP vision model) is not supported yet",
    "CLIPVisionEncode": "CLIP vision outputs (for unCLIP and style models) are not supported yet",
    "StyleModelLoader": "style models (T2I-Adapter style, CLIP vision) are not supported yet",
    "StyleModelApply": "style models (T2I-Adapter style, CLIP vision) are not supported yet",
    "GLIGENLoader": "GLIGEN models are not supported yet",
    "GLIGENTextBoxApply": "GLIGEN models are not supported yet",
    "HypernetworkLoader": "hypernetworks are not supported yet",
    # IPAdapter_plus's FaceID family reads face embeddings from insightface, which lcmgraph does not have.
    **{kind: "IP-Adapter FaceID (it needs insightface's face analysis) is not supported yet"
       for kind in ("IPAdapterFaceID", "IPAdapterFaceIDKolors", "IPAdapterUnifiedLoaderFaceID", "IPAdapterInsightFaceLoader",
                    "InsightFaceLoader", "PrepImageForInsightFace")},
    "ModelSamplingContinuousEDM": "continuous EDM model sampling (Playground v2.5, CosXL...) is not supported yet",
    "ModelSamplingContinuousV": "continuous v-prediction model sampling is not supported yet",
}

#: Enough widget names for any version of these classes: the node must reach its
#: conversion (which names it) rather than fail on its widget count.
_ANY_WIDGETS = tuple(f"widget_{i}" for i in range(64))


def _refuse(why: str):
    def convert(ctx, node):
        raise ConversionError(f"{why} in lcmgraph")
    return convert


UNSUPPORTED: dict[str, ComfyMapping] = {
    kind: ComfyMapping(widgets=_ANY_WIDGETS, title=kind, convert=_refuse(why)) for kind, why in NOT_SUPPORTED.items()
}
