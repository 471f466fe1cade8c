"""ComfyUI's own node definitions, as far as the UI format needs them: every
input of each core class in ``INPUT_TYPES`` order (required, then optional),
which of them are widgets, and what the frontend adds after a widget.

The UI format saves ``widgets_values`` by position, so reading them needs the
class's widget order exactly as ComfyUI declares it (nodes.py and
comfy_extras/). The frontend adds two kinds of values of its own:

* ``control_after_generate`` after seed-like INT widgets ("fixed",
  "increment", "decrement", "randomize"; a boolean in files from the first
  frontend, absent in others);
* the upload button after image-choosing widgets (LoadImage's "upload",
  saved as the word "image"; the API format of older versions has it as
  "choose file to upload").

Every mapping reads its class's widgets from this table. A pack that maps a
class ComfyUI core does not define gives the order in ``ComfyMapping.widgets``.

The declarations: inputs separated by spaces, ``@name`` a socket (a link),
``name`` a widget, ``name+`` a widget followed by control_after_generate,
``name^`` a widget with an upload button (which the frontend puts after all the widgets).
"""

from __future__ import annotations

from dataclasses import dataclass

from .mapping import SEED_CONTROL, SEED_CONTROL_VALUES

#: In widget layouts: the upload button's value (consumed when present).
UPLOAD = "<upload>"
#: Inputs the frontend adds, which the API format of some versions carries too.
UPLOAD_NAMES = frozenset({"upload", "choose file to upload"})
CONTROL_NAMES = frozenset({"control_after_generate"})

_DECLARED = {
    # nodes.py
    "CheckpointLoaderSimple": "ckpt_name",
    "CLIPTextEncode": "text @clip",
    "CLIPSetLastLayer": "@clip stop_at_clip_layer",
    "ConditioningAverage": "@conditioning_to @conditioning_from conditioning_to_strength",
    "ConditioningConcat": "@conditioning_to @conditioning_from",
    "ConditioningZeroOut": "@conditioning",
    "ControlNetApply": "@conditioning @control_net @image strength",
    "ControlNetApplyAdvanced": "@positive @negative @control_net @image strength start_percent end_percent @vae",
    "ControlNetLoader": "control_net_name",
    "EmptyImage": "width height batch_size color",
    "EmptyLatentImage": "width height batch_size",
    "ImageBatch": "@image1 @image2",
    "ImageCrop": "@image width height x y",
    "ImageInvert": "@image",
    "ImagePadForOutpaint": "@image left top right bottom feathering",
    "ImageScale": "@image upscale_method width height crop",
    "ImageScaleBy": "@image upscale_method scale_by",
    "KSampler": "@model seed+ steps cfg sampler_name scheduler @positive @negative @latent_image denoise",
    "KSamplerAdvanced": ("@model add_noise noise_seed+ steps cfg sampler_name scheduler @positive @negative "
                         "@latent_image start_at_step end_at_step return_with_leftover_noise"),
    "LatentBlend": "@samples1 @samples2 blend_factor",
    "LatentComposite": "@samples_to @samples_from x y feather",
    "LatentCrop": "@samples width height x y",
    "LatentFlip": "@samples flip_method",
    "LatentFromBatch": "@samples batch_index length",
    "LatentRotate": "@samples rotation",
    "LatentUpscale": "@samples upscale_method width height crop",
    "LatentUpscaleBy": "@samples upscale_method scale_by",
    "LoadImage": "image^",
    "LoadImageMask": "image^ channel",
    "LoraLoader": "@model @clip lora_name strength_model strength_clip",
    "LoraLoaderModelOnly": "@model lora_name strength_model",
    "PreviewImage": "@images",
    "RepeatLatentBatch": "@samples amount",
    "SaveImage": "@images filename_prefix",
    "VAEDecode": "@samples @vae",
    "VAEDecodeTiled": "@samples @vae tile_size overlap temporal_size temporal_overlap",
    "VAEEncode": "@pixels @vae",
    "VAEEncodeTiled": "@pixels @vae tile_size overlap temporal_size temporal_overlap",
    "VAELoader": "vae_name",
    # comfy_extras/
    "CLIPTextEncodeSDXL": "width height crop_w crop_h target_width target_height text_g @clip text_l",
    "CLIPTextEncodeSDXLRefiner": "ascore width height text @clip",
    "FeatherMask": "@mask left top right bottom",
    "GrowMask": "@mask expand tapered_corners",
    "ImageScaleToTotalPixels": "@image upscale_method megapixels resolution_steps",
    "ImageToMask": "@image channel",
    "InvertMask": "@mask",
    "MaskComposite": "@destination @source x y operation",
    "MaskToImage": "@mask",
    "ModelSamplingDiscrete": "@model sampling zsnr",
    "PrimitiveBoolean": "value",
    "PrimitiveFloat": "value",
    "PrimitiveInt": "value+",
    "PrimitiveString": "value",
    "PrimitiveStringMultiline": "value",
    "SolidMask": "value width height",
}


@dataclass(frozen=True)
class ComfyInput:
    name: str
    widget: bool
    control: bool = False
    upload: bool = False


def _parse(spec: str) -> tuple[ComfyInput, ...]:
    out = []
    for word in spec.split():
        if word.startswith("@"):
            out.append(ComfyInput(word[1:], widget=False))
            continue
        name = word.rstrip("+^")
        out.append(ComfyInput(name, widget=True, control=word.endswith("+"), upload=word.endswith("^")))
    return tuple(out)


#: ComfyUI class -> its inputs in INPUT_TYPES order.
COMFY_NODES: dict[str, tuple[ComfyInput, ...]] = {name: _parse(spec) for name, spec in _DECLARED.items()}


def widget_layout(class_type: str) -> tuple[str, ...] | None:
    """The class's ``widgets_values`` layout: widget names, with SEED_CONTROL
    and UPLOAD where the frontend adds its own values (None: not a core class)."""
    inputs = COMFY_NODES.get(class_type)
    if inputs is None:
        return None
    layout: list[str] = []
    upload = False
    for spec in inputs:
        if spec.widget:
            layout.append(spec.name)
            if spec.control:
                layout.append(SEED_CONTROL)
            upload = upload or spec.upload
    # The frontend adds the upload button after the node's own widgets: a saved
    # LoadImageMask is ["mask.png", "alpha", "image"], file, channel, then upload.
    return (*layout, UPLOAD) if upload else tuple(layout)


def frontend_only(class_type: str) -> frozenset[str]:
    """Input names the frontend adds to this class (dropped on import)."""
    inputs = COMFY_NODES.get(class_type, ())
    names: set[str] = set()
    if any(i.control for i in inputs):
        names |= CONTROL_NAMES
    if any(i.upload for i in inputs):
        names |= UPLOAD_NAMES
    return frozenset(names)


def is_control_value(value) -> bool:
    """A saved control_after_generate: one of its words, or the first frontend's boolean."""
    return isinstance(value, bool) or (isinstance(value, str) and value in SEED_CONTROL_VALUES)


def read_widgets(layout: tuple[str, ...], values: list) -> tuple[dict, int]:
    """Widget name -> value by position; returns the values consumed, so the
    caller can name values that fit no widget."""
    out, i = {}, 0
    for name in layout:
        if i >= len(values):
            break
        if name == SEED_CONTROL:
            if is_control_value(values[i]):
                i += 1
            continue
        if name == UPLOAD:
            if isinstance(values[i], str):
                i += 1
            continue
        out[name] = values[i]
        i += 1
    return out, i


def set_widget(layout: tuple[str, ...], values: list, name: str, value) -> bool:
    """Replace widget ``name``'s value in ``values`` (in place); False if it has no position there."""
    i = 0
    for widget in layout:
        if i >= len(values):
            return False
        if widget in (SEED_CONTROL, UPLOAD):
            if is_control_value(values[i]) if widget == SEED_CONTROL else isinstance(values[i], str):
                i += 1
            continue
        if widget == name:
            values[i] = value
            return True
        i += 1
    return False
