"""Build diffusers/transformers models from a single-file LDM checkpoint, offline.

Key conversion is diffusers' own (``diffusers.loaders.single_file_utils``);
only its config lookup, which asks the hub, is replaced by
:mod:`single_file_arch`. Models are created with empty (meta) weights and the
converted tensors are *assigned* as their parameters, so each weight exists
once: read from the file in its final dtype, never copied again.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .single_file_arch import (
    SD15_CLIP,
    SDXL_CLIP,
    SDXL_OPENCLIP,
    LayoutError,
    detect_arch,
    infer_configs,
)
from .single_file_reader import LazyStateDict
from .single_file_tokenizer import (
    CLIP_VOCAB_SIZE,
    MIN_VOCAB_SIZE,
    clip_tokenizer,
    tokenizer_from_json,
)

# Buffers some exporters save that current models recompute.
_IGNORED_SUFFIXES = ("position_ids",)


def load_single_file(path: Path, torch_dtype: torch.dtype, text_dtype: torch.dtype | None = None) -> dict:
    """Components of the checkpoint at ``path``: the fields of ``Checkpoint`` plus ``configs``.
    The text encoders come in ``text_dtype`` when given (read from the file in it,
    never through ``torch_dtype``), the UNet and VAE in ``torch_dtype``.

    Raises LayoutError (what the file is and why it cannot be loaded) and
    SafetensorsFormatError (a damaged file).
    """
    sd = LazyStateDict(path, dtype=torch_dtype)
    arch = detect_arch(sd.keys())
    configs = infer_configs(sd, arch)
    out = {"arch": arch, "configs": configs, "scheduler_config": dict(configs["scheduler"])}
    out["unet"] = _build_unet(sd, configs["unet"], torch_dtype)
    out["vae"] = _build_vae(sd, configs["vae"], torch_dtype)
    text_dtype = text_dtype or torch_dtype
    text_sd = sd.as_dtype(text_dtype)
    if arch == "sdxl":
        out["text_encoder"] = _build_clip(text_sd, SDXL_CLIP, configs["text_encoder"], text_dtype)
        out["text_encoder_2"] = _build_clip(text_sd, SDXL_OPENCLIP, configs["text_encoder_2"], text_dtype,
                                            projection=True)
        out["tokenizer_2"], out["tokenizer_2_source"] = _tokenizer(path, "tokenizer_2", configs, sd.metadata)
    else:
        out["text_encoder"] = _build_clip(text_sd, SD15_CLIP, configs["text_encoder"], text_dtype)
    out["tokenizer"], out["tokenizer_source"] = _tokenizer(path, "tokenizer", configs, sd.metadata)
    out["mapped"] = sd  # the file's map, whose pages views of it can hand back (LazyStateDict.release)
    return out


def _empty(factory):
    from accelerate import init_empty_weights

    # Parameters on the meta device cost nothing; buffers stay real because
    # checkpoints do not carry them (e.g. CLIP's position ids).
    with init_empty_weights(include_buffers=False):
        return factory()


def _assign(model, state_dict: dict, what: str, torch_dtype):
    state_dict = {k: v for k, v in state_dict.items() if not k.endswith(_IGNORED_SUFFIXES)}
    expected = set(model.state_dict().keys())
    missing, unexpected = sorted(expected - state_dict.keys()), sorted(state_dict.keys() - expected)
    if missing or unexpected:
        detail = "; ".join(
            f"{label} {len(names)} (e.g. {', '.join(names[:3])})"
            for label, names in (("missing", missing), ("unexpected", unexpected))
            if names
        )
        raise LayoutError(f"the {what} tensors do not fit the architecture read from the file: {detail}")
    try:
        model.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as exc:
        raise LayoutError(f"the {what} tensors do not fit the architecture read from the file: "
                          f"{str(exc).strip().splitlines()[-1].strip()}") from exc
    # nn.Module.to, not diffusers' override, which warns about fp32-pinned
    # modules these models do not have; it only reaches buffers here, the
    # parameters were read in torch_dtype already.
    return torch.nn.Module.to(model, torch_dtype).eval()


def _build_unet(sd, config: dict, torch_dtype):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    model = _empty(lambda: UNet2DConditionModel.from_config(config))
    return _assign(model, convert_ldm_unet_checkpoint(sd, config), "UNet", torch_dtype)


def _build_vae(sd, config: dict, torch_dtype):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    model = _empty(lambda: AutoencoderKL.from_config(config))
    return _assign(model, convert_ldm_vae_checkpoint(sd, config), "VAE", torch_dtype)


def _build_clip(sd, prefix: str, config: dict, torch_dtype, projection: bool = False):
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_open_clip_checkpoint,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    model = _empty(lambda: cls(CLIPTextConfig(**config)))
    if prefix == SDXL_OPENCLIP:
        converted = convert_open_clip_checkpoint(model, _Prefixed(sd, prefix), prefix=prefix)
    else:
        # diffusers strips both SD1.5's and SDXL's CLIP-L prefix by itself.
        converted = convert_ldm_clip_checkpoint(_Prefixed(sd, prefix))
        converted = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in converted.items()}
    # transformers >= 5.6 flattened CLIPTextModel (no ``text_model.`` level);
    # CLIPTextModelWithProjection still has it.
    if not hasattr(model, "text_model"):
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    what = "second text encoder" if projection else "text encoder"
    return _assign(model, converted, what, torch_dtype)


class _Prefixed:
    """The keys of ``sd`` under one prefix: diffusers' CLIP converters scan and
    read every key they are given, and must not read the UNet's."""

    def __init__(self, sd, prefix: str):
        self._sd, self._keys = sd, [k for k in sd if k.startswith(prefix)]
        self._set = set(self._keys)

    def keys(self):
        return list(self._keys)

    def __contains__(self, key):
        return key in self._set

    def __getitem__(self, key):
        return self._sd[key]

    def get(self, key, default=None):
        return self._sd[key] if key in self else default


def _tokenizer(path: Path, name: str, configs: dict, metadata: dict):
    """First a tokenizer folder beside the file (``<stem>.<name>/``), then one
    stored in the file's metadata (``lcmgraph.<name>``, see single_file_export),
    else the CLIP BPE vocabulary cut to the text encoder's embedding rows."""
    from transformers import CLIPTokenizer

    sidecar = path.with_name(f"{path.stem}.{name}")
    if sidecar.is_dir():
        return CLIPTokenizer.from_pretrained(str(sidecar), local_files_only=True), str(sidecar)
    if f"lcmgraph.{name}" in metadata:
        try:
            return tokenizer_from_json(metadata[f"lcmgraph.{name}"]), "metadata"
        except (ValueError, TypeError, KeyError) as exc:
            raise LayoutError(f"the lcmgraph.{name} metadata is not a valid tokenizer ({exc})") from exc
    te_config = configs["text_encoder" + name[len("tokenizer"):]]
    vocab = te_config["vocab_size"]
    if vocab < MIN_VOCAB_SIZE:
        raise LayoutError(f"the text encoder has only {vocab} token embeddings, too few for the CLIP vocabulary; "
                          f"put a tokenizer folder for it at {sidecar}")
    # Extra rows past the CLIP vocabulary (merged textual inversions) keep
    # their weights but no text maps to them without a sidecar tokenizer.
    tok_config = configs[name]
    tokenizer = clip_tokenizer(min(vocab, CLIP_VOCAB_SIZE), tok_config["model_max_length"], tok_config["pad_token"])
    return tokenizer, f"clip-bpe[{min(vocab, CLIP_VOCAB_SIZE)}]"
