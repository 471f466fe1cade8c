"""Prompt encoding with the checkpoint's text encoder(s), through the
pipeline's own ``encode_prompt`` so the embeddings are diffusers' exactly;
CLIPSetLastLayer picks another encoder layer (models/clip_layers.py)."""

from __future__ import annotations

from dataclasses import replace

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from .models.clip_layers import encode_at_layer
from .models.manager import SERVICE
from .models.values import ClipRef, Conditioning

_SIZE = dict(default=0, min=0, max=16384, step=8)


def encode_text(loaded, text: str, layer: int | None = None) -> Conditioning:
    import torch

    pipe = loaded.pipe
    if layer is not None:
        embeds, pooled = encode_at_layer(pipe, loaded.arch, text, layer)
        if loaded.arch == "sdxl":
            return Conditioning("sdxl", _cpu(embeds), pooled=_cpu(pooled))
        # Unlike diffusers' pipeline, which encodes its own negative at the last
        # layer whatever clip_skip says, the empty prompt uses the same layer.
        negative, _ = encode_at_layer(pipe, loaded.arch, "", layer)
        return Conditioning("sd15", _cpu(embeds), default_negative=_cpu(negative))
    device = pipe.unet.device
    with torch.no_grad():
        if loaded.arch == "sdxl":
            # The negative is zeros (force_zeros_for_empty_prompt): nothing to keep.
            embeds, _, pooled, _ = pipe.encode_prompt(
                text, None, device, 1, do_classifier_free_guidance=False, negative_prompt=None
            )
            return Conditioning("sdxl", _cpu(embeds), pooled=_cpu(pooled))
        embeds, negative = pipe.encode_prompt(text, device, 1, do_classifier_free_guidance=True, negative_prompt=None)
    return Conditioning("sd15", _cpu(embeds), default_negative=_cpu(negative))


def _cpu(tensor):
    import torch

    # fp16 -> fp32 is exact, so the sampler gets back the very same values.
    return tensor.detach().to(device="cpu", dtype=torch.float32)


class TextEncode(Node):
    """Encode a prompt for the sampler (SD1.5: CLIP-L; SDXL: both encoders + pooled).

    The size inputs are SDXL's micro-conditioning; 0 means "the image size",
    as in diffusers. SD1.5 ignores them.
    """

    category = "conditioning"
    record_parameters = True
    inputs = (
        Input("clip", T.CLIP),
        Input("text", T.STRING, default="", multiline=True),
        Input("original_width", T.INT, **_SIZE),
        Input("original_height", T.INT, **_SIZE),
        Input("crop_left", T.INT, default=0, min=0, max=16384),
        Input("crop_top", T.INT, default=0, min=0, max=16384),
        Input("target_width", T.INT, **_SIZE),
        Input("target_height", T.INT, **_SIZE),
    )
    outputs = (Output("conditioning", T.CONDITIONING),)

    def execute(self, ctx, clip: ClipRef, text, original_width, original_height, crop_left, crop_top,
                target_width, target_height):
        if clip is None:
            raise ValueError("no CLIP given (an ApplyLoRA without a clip input passes none on)")
        loaded = ctx.service(SERVICE).realise_text(clip, ctx)
        cond = encode_text(loaded, text, clip.layer)
        if cond.arch == "sdxl":
            cond = replace(
                cond,
                original_size=(original_height, original_width) if original_width and original_height else None,
                crop=(crop_top, crop_left),
                target_size=(target_height, target_width) if target_width and target_height else None,
            )
        return {"conditioning": cond}


class CLIPSetLastLayer(Node):
    """Encode prompts with an earlier layer of the text encoder ("CLIP skip"):
    -1 is the last layer, -2 the penultimate (what many SD1.5 fine-tunes
    expect), and so on. As in ComfyUI: SD1.5 takes the layer through the
    final layer norm; SDXL takes both encoders' layer without it, so -1 there
    is not SDXL's default (the penultimate, -2)."""

    category = "conditioning"
    record_parameters = True
    inputs = (
        Input("clip", T.CLIP),
        Input("stop_at_clip_layer", T.INT, default=-1, min=-24, max=-1),
    )
    outputs = (Output("clip", T.CLIP),)

    def execute(self, ctx, clip: ClipRef, stop_at_clip_layer):
        if clip is None:
            raise ValueError("no CLIP given (an ApplyLoRA without a clip input passes none on)")
        return {"clip": replace(clip, layer=stop_at_clip_layer)}


NODES = [TextEncode, CLIPSetLastLayer]
