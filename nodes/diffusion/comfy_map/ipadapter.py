"""IP-Adapter: ComfyUI_IPAdapter_plus's loaders and apply nodes and ComfyUI's
CLIPVisionLoader, one to one both ways (the lcmgraph nodes keep their names
and inputs; nodes/diffusion/ipadapter.py follows their semantics)."""

from __future__ import annotations

from lcmgraph.comfy import ComfyMapping

_ADVANCED_WIDGETS = ("weight", "weight_type", "combine_embeds", "start_at", "end_at", "embeds_scaling")
_SIMPLE_WIDGETS = ("weight", "start_at", "end_at", "weight_type")


def _same(node: str, sockets: tuple[str, ...], widgets: tuple[str, ...], outputs: tuple[str, ...],
          title: str) -> ComfyMapping:
    names = {name: name for name in (*sockets, *widgets)}
    return ComfyMapping(node, names, outputs, widgets, title=title, export=True)


IPADAPTER: dict[str, ComfyMapping] = {
    "CLIPVisionLoader": _same("CLIPVisionLoader", (), ("clip_name",), ("clip_vision",), "Load CLIP Vision"),
    "IPAdapterModelLoader": _same("IPAdapterModelLoader", (), ("ipadapter_file",), ("ipadapter",),
                                  "IPAdapter Model Loader"),
    "IPAdapterUnifiedLoader": _same("IPAdapterUnifiedLoader", ("model", "ipadapter"), ("preset",),
                                    ("model", "ipadapter"), "IPAdapter Unified Loader"),
    "IPAdapterAdvanced": _same("IPAdapterAdvanced", ("model", "ipadapter", "image", "image_negative", "attn_mask",
                                                     "clip_vision"), _ADVANCED_WIDGETS, ("model",),
                               "IPAdapter Advanced"),
    "IPAdapter": _same("IPAdapter", ("model", "ipadapter", "image", "attn_mask"), _SIMPLE_WIDGETS, ("model",),
                       "IPAdapter"),
}
