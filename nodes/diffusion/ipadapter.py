"""IP-Adapter: an image as a prompt (ComfyUI_IPAdapter_plus's loaders and
apply nodes, and ComfyUI's CLIPVisionLoader). The adapter's image tokens are
attended to beside the text in every cross-attention layer, per layer
weighted by ``weight_type`` and only between ``start_at`` and ``end_at``
(models/ipadapter.py has the formulas).

IPAdapterUnifiedLoader finds the files by IPAdapter_plus's preset patterns
(``ip-adapter_sd15.safetensors``, ``CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors``,
...) in the ``ipadapter`` and ``clip_vision`` folders."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from .formats.clip_vision_files import FOLDER as CLIP_VISION_FOLDER
from .formats.ipadapter_files import FOLDER as IPADAPTER_FOLDER
from .models.ipadapter import COMBINE, EMBEDS_SCALING, WEIGHT_TYPES
from .models.ipadapter_embeds import load_adapter, load_clip_vision, make_patch
from .models.manager import SERVICE
from .models.values import ClipVisionRef, IPAdapterRef, ModelRef

CLIP_VISION = "CLIP_VISION"
IPADAPTER = "IPADAPTER"


class CLIPVisionLoader(Node):
    """Load a CLIP vision model (transformers' CLIPVisionModelWithProjection layout,
    e.g. CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors) from the clip_vision folder."""

    category = "loaders"
    inputs = (Input("clip_name", T.STRING, folder=CLIP_VISION_FOLDER,
                    description="a CLIP vision .safetensors in clip_vision/, or builtin:tiny-clip-vision"),)
    outputs = (Output("clip_vision", CLIP_VISION),)
    batch_inputs = ()

    def execute(self, ctx, clip_name):
        ref = ClipVisionRef(str(ctx.resolve_file(CLIP_VISION_FOLDER, clip_name)),
                            ctx.file_identity(CLIP_VISION_FOLDER, clip_name))
        load_clip_vision(ctx.service(SERVICE), ref.path, ref.identity, ctx)  # a file that does not fit fails here
        return {"clip_vision": ref}


class IPAdapterModelLoader(Node):
    """Load an IP-Adapter (.safetensors, or .bin read with weights_only) from the ipadapter folder:
    basic, plus, plus-face and full-face adapters for SD1.5 and SDXL."""

    category = "loaders"
    inputs = (Input("ipadapter_file", T.STRING, folder=IPADAPTER_FOLDER,
                    description="an IP-Adapter file in ipadapter/, or builtin:tiny-ip-adapter"),)
    outputs = (Output("ipadapter", IPADAPTER),)
    batch_inputs = ()

    def execute(self, ctx, ipadapter_file):
        ref = IPAdapterRef(str(ctx.resolve_file(IPADAPTER_FOLDER, ipadapter_file)),
                           ctx.file_identity(IPADAPTER_FOLDER, ipadapter_file))
        load_adapter(ctx.service(SERVICE), ref.path, ref.identity, ctx)
        return {"ipadapter": ref}


#: IPAdapter_plus's presets: (SD1.5 patterns, SDXL patterns) for the adapter file (first match wins).
PRESETS = {
    "LIGHT - SD1.5 only (low strength)": ((r"sd15.light.v11\.(safetensors|bin)$", r"sd15.light\.(safetensors|bin)$"),
                                          ()),
    "STANDARD (medium strength)": ((r"ip.adapter.sd15\.(safetensors|bin)$",),
                                   (r"ip.adapter.sdxl.vit.h\.(safetensors|bin)$",)),
    "VIT-G (medium strength)": ((r"sd15.vit.g\.(safetensors|bin)$",), (r"ip.adapter.sdxl\.(safetensors|bin)$",)),
    "PLUS (high strength)": ((r"ip.adapter.plus.sd15\.(safetensors|bin)$",),
                             (r"plus.sdxl.vit.h\.(safetensors|bin)$",)),
    "PLUS FACE (portraits)": ((r"plus.face.sd15\.(safetensors|bin)$",), (r"plus.face.sdxl.vit.h\.(safetensors|bin)$",)),
    "FULL FACE - SD1.5 only (portraits stronger)": ((r"full.face.sd15\.(safetensors|bin)$",), ()),
}
#: The CLIP vision file per preset family: ViT-bigG for VIT-G, ViT-H for the rest.
CLIP_PATTERNS = {"vit-g": r"(ViT.bigG.14.*39B.b160k|ipadapter.*sdxl|sdxl.*model)\.(bin|safetensors)",
                 "other": r"(ViT.H.14.*s32B.b79K|ipadapter.*sd15|sd1.?5.*model)\.(bin|safetensors)"}


def find_preset_file(names: list[str], patterns: tuple[str, ...]) -> str | None:
    for pattern in patterns:
        for name in names:
            if re.search(pattern, name, re.IGNORECASE):
                return name
    return None


class IPAdapterUnifiedLoader(Node):
    """Find the IP-Adapter and CLIP vision files of a preset (IPAdapter_plus's file
    names) for the model's architecture; the model passes through unchanged."""

    category = "loaders"
    inputs = (Input("model", T.MODEL), Input("preset", T.ENUM, choices=tuple(PRESETS), default="STANDARD (medium strength)"),
              Input("ipadapter", IPADAPTER, optional=True, description="ignored: files are looked up by the preset"))
    outputs = (Output("model", T.MODEL), Output("ipadapter", IPADAPTER))
    batch_inputs = ()

    def execute(self, ctx, model: ModelRef, preset, ipadapter=None):
        sdxl = model.arch == "sdxl"
        patterns = PRESETS[preset][1 if sdxl else 0]
        if not patterns:
            raise ValueError(f"preset {preset!r} has no {'SDXL' if sdxl else 'SD1.5'} IP-Adapter")
        files = ctx.runtime.files
        adapter = find_preset_file(files.list(IPADAPTER_FOLDER), patterns)
        if adapter is None:
            raise FileNotFoundError(f"preset {preset!r}: no IP-Adapter file in {IPADAPTER_FOLDER}/ matches "
                                    f"{' or '.join(patterns)} (e.g. "
                                    f"{'ip-adapter_sdxl_vit-h' if sdxl else 'ip-adapter_sd15'}.safetensors)")
        family = "vit-g" if preset.lower().startswith("vit-g") else "other"
        vision = find_preset_file(files.list(CLIP_VISION_FOLDER), (CLIP_PATTERNS[family],))
        if vision is None:
            raise FileNotFoundError(f"preset {preset!r}: no CLIP vision file in {CLIP_VISION_FOLDER}/ matches "
                                    f"{CLIP_PATTERNS[family]} (e.g. CLIP-ViT-"
                                    f"{'bigG-14-laion2B-39B-b160k' if family == 'vit-g' else 'H-14-laion2B-s32B-b79K'}"
                                    ".safetensors)")
        manager = ctx.service(SERVICE)
        clip = ClipVisionRef(str(files.resolve(CLIP_VISION_FOLDER, vision)), files.identity(CLIP_VISION_FOLDER, vision))
        ref = IPAdapterRef(str(files.resolve(IPADAPTER_FOLDER, adapter)), files.identity(IPADAPTER_FOLDER, adapter),
                           clip)
        load_adapter(manager, ref.path, ref.identity, ctx)
        load_clip_vision(manager, clip.path, clip.identity, ctx)
        return {"model": model, "ipadapter": ref}


def _apply(ctx, model: ModelRef, ipadapter: IPAdapterRef, image, *, clip_vision=None, image_negative=None,
           attn_mask=None, weight, weight_type, combine_embeds="concat", start_at=0.0, end_at=1.0,
           embeds_scaling="V only", missing_vision: str):
    vision = clip_vision or ipadapter.clip_vision
    if vision is None:
        raise ValueError(missing_vision)
    manager = ctx.service(SERVICE)
    adapter = manager.activate(load_adapter(manager, ipadapter.path, ipadapter.identity, ctx), "ipadapter")
    tower = manager.activate(load_clip_vision(manager, vision.path, vision.identity, ctx), "clipvision").model
    real_width = adapter.layers[0][0].shape[1] in (768, 2048)  # SD1.5's / SDXL's text width (tiny ones: neither)
    if real_width and model.arch in ("sd15", "sdxl") and adapter.sdxl != (model.arch == "sdxl"):
        raise ValueError(f"IP-Adapter {adapter.label!r} is for {'SDXL' if adapter.sdxl else 'SD1.5'}, "
                         f"the model is {model.arch.upper()}")
    patch = make_patch(adapter, tower, image, image_negative, weight=weight, weight_type=weight_type,
                       combine_embeds=combine_embeds, start=start_at, end=end_at, scaling=embeds_scaling,
                       sdxl=model.arch == "sdxl", mask=attn_mask, vision_label=Path(vision.path).name)
    return {"model": replace(model, patches=(*model.patches, patch.as_patch()))}


class IPAdapterAdvanced(Node):
    """Condition the model on reference images through an IP-Adapter, as
    IPAdapter_plus's IPAdapterAdvanced: per-layer weight_type, several images
    combined or side by side, an optional negative image, a mask, a step range,
    and how the weight scales keys and values."""

    category = "ipadapter"
    inputs = (
        Input("model", T.MODEL), Input("ipadapter", IPADAPTER), Input("image", T.IMAGE),
        Input("weight", T.FLOAT, default=1.0, min=-1.0, max=5.0, step=0.05),
        Input("weight_type", T.ENUM, choices=WEIGHT_TYPES, default="linear"),
        Input("combine_embeds", T.ENUM, choices=COMBINE, default="concat"),
        Input("start_at", T.FLOAT, default=0.0, min=0.0, max=1.0, step=0.001),
        Input("end_at", T.FLOAT, default=1.0, min=0.0, max=1.0, step=0.001),
        Input("embeds_scaling", T.ENUM, choices=EMBEDS_SCALING, default="V only"),
        Input("image_negative", T.IMAGE, optional=True),
        Input("attn_mask", T.MASK, optional=True),
        Input("clip_vision", CLIP_VISION, optional=True),
    )
    outputs = (Output("model", T.MODEL),)
    batch_inputs = ()

    def execute(self, ctx, model, ipadapter, image, weight, weight_type, combine_embeds, start_at, end_at,
                embeds_scaling, image_negative=None, attn_mask=None, clip_vision=None):
        return _apply(ctx, model, ipadapter, image, clip_vision=clip_vision, image_negative=image_negative,
                      attn_mask=attn_mask, weight=weight, weight_type=weight_type, combine_embeds=combine_embeds,
                      start_at=start_at, end_at=end_at, embeds_scaling=embeds_scaling,
                      missing_vision="no CLIP vision model: connect clip_vision (CLIPVisionLoader), or load the "
                                     "IP-Adapter with IPAdapterUnifiedLoader, which finds one")


#: The simple node's weight types -> IPAdapterAdvanced's.
SIMPLE_TYPES = {"standard": "linear", "prompt is more important": "ease out", "style transfer": "style transfer"}


class IPAdapter(Node):
    """IPAdapter_plus's simple node: IPAdapterAdvanced with concat, 'V only', no
    negative image; weight_type standard = linear, 'prompt is more important' =
    ease out. Needs the unified loader's IP-Adapter (it carries the CLIP vision model)."""

    category = "ipadapter"
    inputs = (
        Input("model", T.MODEL), Input("ipadapter", IPADAPTER), Input("image", T.IMAGE),
        Input("weight", T.FLOAT, default=1.0, min=-1.0, max=3.0, step=0.05),
        Input("start_at", T.FLOAT, default=0.0, min=0.0, max=1.0, step=0.001),
        Input("end_at", T.FLOAT, default=1.0, min=0.0, max=1.0, step=0.001),
        Input("weight_type", T.ENUM, choices=tuple(SIMPLE_TYPES), default="standard"),
        Input("attn_mask", T.MASK, optional=True),
    )
    outputs = (Output("model", T.MODEL),)
    batch_inputs = ()

    def execute(self, ctx, model, ipadapter, image, weight, start_at, end_at, weight_type, attn_mask=None):
        return _apply(ctx, model, ipadapter, image, attn_mask=attn_mask, weight=weight,
                      weight_type=SIMPLE_TYPES[weight_type], start_at=start_at, end_at=end_at,
                      missing_vision="the IPAdapter node reads its CLIP vision model from IPAdapterUnifiedLoader's "
                                     "ipadapter output; with IPAdapterModelLoader use IPAdapterAdvanced and its "
                                     "clip_vision input")


NODES = [CLIPVisionLoader, IPAdapterModelLoader, IPAdapterUnifiedLoader, IPAdapterAdvanced, IPAdapter]
