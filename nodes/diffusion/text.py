"""Prompt encoding with the checkpoint's text encoder(s). A prompt in
ComfyUI's syntax (weights, embeddings, more than 75 tokens) is encoded as
ComfyUI does (models/prompt_encode.py); a plain prompt of one chunk goes
through the pipeline's own ``encode_prompt``, so its embeddings are
diffusers' exactly. CLIPSetLastLayer picks another encoder layer
(models/clip_layers.py)."""

from __future__ import annotations

from dataclasses import replace

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from .formats import embedding_files
from .models.clip_layers import encode_at_layer
from .models.manager import SERVICE
from .models.prompt_syntax import embedding_names, is_plain, resolve_names
from .models.values import ClipRef, Conditioning, match_token_lengths

#: TextEncode's ``syntax``: "comfy" reads ComfyUI's prompt syntax, "plain" encodes the text as written.
SYNTAXES = ("comfy", "plain")

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


def encode_comfy(loaded, text: str, layer: int | None, find=None, load=None) -> Conditioning:
    """``text`` in ComfyUI's syntax: weights, ``embedding:NAME`` and chunks of
    75 tokens. ``find(name)`` gives the embedding file a name refers to (None:
    not found), ``load(file, key, width)`` its vectors. A plain prompt of one
    chunk is ``encode_text``'s, bit for bit."""
    from .models.prompt_encode import encode_pieces, fits_one_chunk

    pipe, arch = loaded.pipe, loaded.arch
    if is_plain(text) and fits_one_chunk(pipe, arch, text):
        return encode_text(loaded, text, layer)
    try:
        pieces = resolve_names(text, find or (lambda name: None))
    except KeyError as exc:
        raise ValueError(f"embedding:{exc.args[0]} was not found in the embeddings folder (as it is, or with "
                         f"{', '.join(embedding_files.SUFFIXES)})") from None
    embeds, pooled = encode_pieces(pipe, arch, pieces, layer, load)
    if arch == "sdxl":
        return Conditioning("sdxl", embeds, pooled=pooled)
    negative = encode_text(loaded, "", layer).default_negative
    # The empty prompt CFG uses without a negative, repeated to the prompt's length
    # (attention over a repeated prompt is the same), so that the CFG batch fits.
    negative, embeds = match_token_lengths(negative, embeds)
    return Conditioning("sd15", embeds, default_negative=negative)


def _cpu(tensor):
    import torch

    # fp16 -> fp32 is exact, so the sampler gets back the very same values.
    return tensor.detach().to(device="cpu", dtype=torch.float32)


class TextEncode(Node):
    """Encode a prompt for the sampler (SD1.5: CLIP-L; SDXL: both encoders + pooled).

    syntax "comfy" reads prompts as ComfyUI does: (word:1.2) sets a weight,
    (word) multiplies it by 1.1, \\( and \\) are literal parentheses,
    embedding:NAME is a textual inversion from the embeddings folder, and a
    prompt longer than 75 tokens is encoded in chunks of 75 and concatenated.
    A prompt without any of this is encoded exactly as with "plain", which
    takes the text as written (cut at 77 tokens, as diffusers does).

    The size inputs are SDXL's micro-conditioning; 0 means "the image size",
    as in diffusers. SD1.5 ignores them.
    """

    category = "conditioning"
    record_parameters = True
    #: 2: ComfyUI's prompt syntax (``syntax``), embeddings and long prompts.
    version = 2
    inputs = (
        Input("clip", T.CLIP),
        Input("text", T.STRING, default="", multiline=True),
        Input("syntax", T.ENUM, choices=SYNTAXES, default="comfy",
              description="comfy: (word:1.2) weights, embedding:NAME, 75-token chunks, as ComfyUI; plain: as written"),
        Input("original_width", T.INT, **_SIZE),
        Input("original_height", T.INT, **_SIZE),
        Input("crop_left", T.INT, default=0, min=0, max=16384),
        Input("crop_top", T.INT, default=0, min=0, max=16384),
        Input("target_width", T.INT, **_SIZE),
        Input("target_height", T.INT, **_SIZE),
    )
    outputs = (Output("conditioning", T.CONDITIONING),)

    @classmethod
    def referenced_files(cls, literals, file_check):
        if literals.get("syntax", "comfy") != "comfy":
            return []
        if "text" not in literals:  # linked: whichever embeddings the text will name
            return [("text", embedding_files.FOLDER, None)]
        return [("text", embedding_files.FOLDER, _find_embedding(file_check, name) or name.strip(",") or name)
                for name in embedding_names(literals["text"])]

    def execute(self, ctx, clip: ClipRef, text, syntax, original_width, original_height, crop_left, crop_top,
                target_width, target_height):
        if clip is None:
            raise ValueError("no CLIP given (an ApplyLoRA without a clip input passes none on)")
        loaded = ctx.service(SERVICE).realise_text(clip, ctx)
        if syntax == "plain":
            cond = encode_text(loaded, text, clip.layer)
        else:
            check = ctx.runtime.files.check
            cond = encode_comfy(loaded, text, clip.layer, lambda name: embedding_files.find(check, name),
                                lambda name, key, width: embedding_files.load_vectors(
                                    ctx.resolve_file(embedding_files.FOLDER, name), key, width))
        ctx.service(SERVICE).release_text(loaded)
        if cond.arch == "sdxl":
            cond = replace(
                cond,
                original_size=(original_height, original_width) if original_width and original_height else None,
                crop=(crop_top, crop_left),
                target_size=(target_height, target_width) if target_width and target_height else None,
            )
        return {"conditioning": cond}


def _find_embedding(file_check, name: str) -> str | None:
    """The embeddings-folder file ``embedding:NAME`` names (commas stripped as ComfyUI does), or None."""
    found = embedding_files.find(file_check, name)
    stripped = name.strip(",")
    if found is None and stripped and stripped != name:
        found = embedding_files.find(file_check, stripped)
    return found


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
