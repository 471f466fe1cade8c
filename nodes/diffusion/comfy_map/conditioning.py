"""Prompts and ControlNet hints: CLIPTextEncode(SDXL) <-> TextEncode,
ControlNetApply(Advanced) <-> ApplyControlNet; conditioning arithmetic one to one.

lcmgraph's sampler applies the positive's hints to both halves of the CFG
batch, which is what ComfyUI's ControlNetApplyAdvanced does when the sampler
takes both of its outputs; the export writes it that way (``thread``).
"""

from __future__ import annotations

from lcmgraph.comfy import ComfyMapping, ConversionError, Converted, Through
from lcmgraph.comfy.export import ADDED, default_export

from ..models.prompt_syntax import embedding_names
from .common import literal, present

_TO_FROM = {"conditioning_to": "conditioning_to", "conditioning_from": "conditioning_from"}
ARITHMETIC = {
    "ConditioningZeroOut": ComfyMapping("ConditioningZeroOut", {"conditioning": "conditioning"}, ("conditioning",),
                                        title="ConditioningZeroOut", export=True),
    # ComfyUI's display-name table misspells this class ("ConditioningAverage "), so its title is the class name.
    "ConditioningAverage": ComfyMapping("ConditioningAverage", {**_TO_FROM, "conditioning_to_strength": "conditioning_to_strength"},
                                        ("conditioning",), ("conditioning_to_strength",), title="ConditioningAverage",
                                        export=True),
    "ConditioningConcat": ComfyMapping("ConditioningConcat", _TO_FROM, ("conditioning",), title="Conditioning (Concat)",
                                       export=True),
}

_COND = {"conditioning": "conditioning"}
_AREA = ("width", "height", "x", "y", "strength")


def _region(node: str, inputs: dict, widgets: tuple[str, ...], title: str) -> ComfyMapping:
    return ComfyMapping(node, {**inputs, **{w: w for w in widgets}}, ("conditioning",), widgets, title=title,
                        export=True)


#: Regional prompting (models/regions.py blends the entries as ComfyUI's sampler): one to one, both ways.
REGIONS = {
    "ConditioningCombine": _region("ConditioningCombine", {"conditioning_1": "conditioning_1",
                                                           "conditioning_2": "conditioning_2"}, (),
                                   "Conditioning (Combine)"),
    "ConditioningSetArea": _region("ConditioningSetArea", _COND, _AREA, "Conditioning (Set Area)"),
    "ConditioningSetAreaPercentage": _region("ConditioningSetAreaPercentage", _COND, _AREA,
                                             "Conditioning (Set Area with Percentage)"),
    "ConditioningSetAreaStrength": _region("ConditioningSetAreaStrength", _COND, ("strength",),
                                           "ConditioningSetAreaStrength"),
    "ConditioningSetMask": _region("ConditioningSetMask", {**_COND, "mask": "mask"}, ("strength", "set_cond_area"),
                                   "Conditioning (Set Mask)"),
    "ConditioningSetTimestepRange": _region("ConditioningSetTimestepRange", _COND, ("start", "end"),
                                            "ConditioningSetTimestepRange"),
}

#: The masked image and mask ride on the conditioning for an inpainting (9-channel) model, as in ComfyUI.
INPAINT = ComfyMapping(
    "InpaintModelConditioning", {"positive": "positive", "negative": "negative", "vae": "vae", "pixels": "image",
                                 "mask": "mask", "noise_mask": "noise_mask"},
    ("positive", "negative", "latent"), ("noise_mask",), title="InpaintModelConditioning", export=True)

TEXT_ENCODE = ComfyMapping(
    "TextEncode", {"clip": "clip", "text": "text"}, ("conditioning",), ("text",), title="CLIP Text Encode (Prompt)")

def text_encode(ctx, node) -> Converted:
    text = node.inputs.get("text")
    if node.meta.get(ADDED) and text == "":
        return Converted(None)  # the empty negative export added: lcmgraph's sampler default
    # TextEncode's default syntax, "comfy", reads weights, embeddings and long prompts as ComfyUI does.
    return Converted("TextEncode", present(clip=node.inputs.get("clip"), text=text), {0: "conditioning"})


def text_encode_sdxl(ctx, node) -> Converted:
    text_g, text_l = ctx.literal(node, "text_g", ""), ctx.literal(node, "text_l", "")
    if text_g != text_l:
        raise ConversionError("different text_g and text_l: lcmgraph's TextEncode gives both encoders one text")
    get = node.inputs.get
    return Converted("TextEncode", present(
        clip=get("clip"), text=text_g, original_width=get("width"), original_height=get("height"),
        crop_left=get("crop_w"), crop_top=get("crop_h"), target_width=get("target_width"),
        target_height=get("target_height")), {0: "conditioning"})


def controlnet_apply(ctx, node) -> Converted:
    ctx.note("ComfyUI's ControlNetApply hints the positive prompt only; lcmgraph hints both halves of the CFG "
             "batch (as ControlNetApplyAdvanced does), so images differ when cfg > 1")
    get = node.inputs.get
    return Converted("ApplyControlNet", present(conditioning=get("conditioning"), control_net=get("control_net"),
                                                image=get("image"), strength=get("strength")), {0: "conditioning"})


def controlnet_apply_advanced(ctx, node) -> Converted:
    get = node.inputs.get
    inputs = present(conditioning=get("positive"), control_net=get("control_net"), image=get("image"),
                     strength=get("strength"), start=get("start_percent"), end=get("end_percent"))
    # The negative comes out unchanged: lcmgraph's sampler applies the positive's
    # hints to both CFG halves, which is what this node's hinted negative does.
    return Converted("ApplyControlNet", inputs, {0: "conditioning", 1: Through("negative")})


# -- export --------------------------------------------------------------------
def thread(ctx, positive, negative_ref) -> tuple[list, list]:
    """(positive, negative) refs for a ComfyUI sampler: ApplyControlNet nodes
    behind the positive become ControlNetApplyAdvanced nodes that hint the
    negative too, as lcmgraph's sampler does with their hints. Iterative: the
    chain of ApplyControlNet nodes may be long."""
    chain, seen = [], set()
    source = ctx.source(positive)
    while source is not None and source.type == "ApplyControlNet" and source.id not in seen:  # a cycle ends it
        seen.add(source.id)
        chain.append(source)
        positive = ctx.value(source, "conditioning")
        source = ctx.source(positive)
    up_pos, up_neg = ctx.ref(positive), negative_ref
    memo = ctx.memo.setdefault("controlnet_threads", {})
    for source in reversed(chain):  # the one nearest the conditioning first
        key = (source.id, tuple(up_pos) if isinstance(up_pos, list) else None,
               tuple(up_neg) if isinstance(up_neg, list) else None)
        if key not in memo:
            comfy_id = ctx.unique_id(source.id) if ctx.is_done(source.id) else source.id
            ctx.claim(source.id)
            _emit_controlnet(ctx, source, comfy_id, up_pos, up_neg)
            memo[key] = ([comfy_id, 0], [comfy_id, 1])
        up_pos, up_neg = memo[key]
    return up_pos, up_neg


def _emit_controlnet(ctx, spec, comfy_id, positive, negative) -> None:
    v = lambda name: ctx.ref(ctx.value(spec, name))  # noqa: E731
    ctx.emit(comfy_id, "ControlNetApplyAdvanced", {
        "positive": positive, "negative": negative, "control_net": v("control_net"), "image": v("image"),
        "strength": v("strength"), "start_percent": v("start"), "end_percent": v("end")}, ctx.title(spec.id))
    if comfy_id == spec.id:
        ctx.expose(spec.id, "conditioning", comfy_id, 0)


def export_controlnet_alone(ctx, spec) -> None:
    """An ApplyControlNet no sampler's positive reaches: its negative socket gets the same conditioning."""
    conditioning = ctx.ref(ctx.value(spec, "conditioning"))
    _emit_controlnet(ctx, spec, spec.id, conditioning, conditioning)


#: The conditioning input a node's output derives from, to find the TextEncode (and its CLIP) behind it.
_UPSTREAM = ("conditioning", "conditioning_1", "conditioning_to")


def empty_negative(ctx, spec, positive) -> list:
    source, seen = ctx.source(positive), set()
    while source is not None and source.type != "TextEncode" and source.id not in seen:
        seen.add(source.id)
        name = next((n for n in _UPSTREAM if n in source.inputs), None)
        source = None if name is None else ctx.source(ctx.value(source, name))
    if source is None or source.type != "TextEncode":
        raise ConversionError("ComfyUI's samplers need a negative prompt and no TextEncode behind the positive "
                              "gives a CLIP to encode an empty one with; connect a negative")
    comfy_id = ctx.unique_id(f"{spec.id}.negative")
    ctx.emit(comfy_id, "CLIPTextEncode", {"text": "", "clip": ctx.ref(ctx.value(source, "clip"))},
             "empty negative (added by lcmgraph)", added=True)
    return [comfy_id, 0]


def _image_size(ctx, spec) -> tuple[int, int] | None:
    """(width, height) of the EmptyLatent every sampler using this TextEncode starts from."""
    sizes, frontier, seen = set(), [spec.id], set()
    while frontier:
        node_id = frontier.pop()
        for other in ctx.workflow.nodes.values():
            if other.id in seen or not any(getattr(v, "node", None) == node_id for v in other.inputs.values()):
                continue
            seen.add(other.id)
            if other.type == "ApplyControlNet":
                frontier.append(other.id)
            elif other.type in ("LCMSampler", "Sampler"):
                latent = ctx.source(ctx.value(other, "latent"))
                if latent is None or latent.type != "EmptyLatent":
                    return None
                sizes.add((ctx.value(latent, "width"), ctx.value(latent, "height")))
    if len(sizes) != 1:
        return None
    size = sizes.pop()
    return size if all(isinstance(s, int) for s in size) else None


def _comfy_text(ctx, spec):
    """The prompt as ComfyUI reads it: TextEncode's "plain" text with its
    parentheses escaped (an embedding: reference cannot be escaped)."""
    text = ctx.value(spec, "text")
    if ctx.value(spec, "syntax") != "plain":
        return ctx.ref(text)
    if not isinstance(text, str):
        raise ConversionError("syntax 'plain' with a linked text: ComfyUI reads prompt syntax in it, and lcmgraph "
                              "cannot escape a text it does not know; give the text here or use syntax 'comfy'")
    escaped = text.replace("(", "\\(").replace(")", "\\)")
    if embedding_names(escaped):
        raise ConversionError("syntax 'plain' with 'embedding:' in the text: ComfyUI would load an embedding "
                              "there and has no escape for it")
    return escaped


def export_text(ctx, spec) -> None:
    names = ("original_width", "original_height", "crop_left", "crop_top", "target_width", "target_height")
    sizes = {n: literal(ctx, spec, n) for n in names}
    if not any(sizes.values()):
        default_export(ctx, spec, "CLIPTextEncode", TEXT_ENCODE, extra={"text": _comfy_text(ctx, spec)},
                       drop=("syntax",))
        return
    if 0 in (sizes["original_width"], sizes["original_height"], sizes["target_width"], sizes["target_height"]):
        # 0 means "the image size", which CLIPTextEncodeSDXL has to be told.
        size = _image_size(ctx, spec)
        if size is None:
            raise ConversionError("SDXL sizes of 0 mean the image size, which ComfyUI's CLIPTextEncodeSDXL needs "
                                  "written out and lcmgraph cannot tell here; set the original and target sizes")
        for prefix in ("original", "target"):
            if not sizes[f"{prefix}_width"] or not sizes[f"{prefix}_height"]:
                sizes[f"{prefix}_width"], sizes[f"{prefix}_height"] = size
    text, clip = _comfy_text(ctx, spec), ctx.ref(ctx.value(spec, "clip"))
    ctx.emit(spec.id, "CLIPTextEncodeSDXL", {
        "clip": clip, "width": sizes["original_width"], "height": sizes["original_height"],
        "crop_w": sizes["crop_left"], "crop_h": sizes["crop_top"], "target_width": sizes["target_width"],
        "target_height": sizes["target_height"], "text_g": text, "text_l": text}, ctx.title(spec.id))
    ctx.expose(spec.id, "conditioning", spec.id, 0)
