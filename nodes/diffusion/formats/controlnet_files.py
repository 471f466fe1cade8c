"""Single-file ControlNets (``.safetensors``, SD1.5 / SDXL), read offline.

Two key layouts:

- the original one (lllyasviel's ControlNet 1.0/1.1 releases, ComfyUI):
  ``control_model.input_blocks.*``, ``zero_convs.*``, ``input_hint_block.*``,
  ``middle_block.*``, ``middle_block_out.*`` (SDXL adds ``label_emb.*``); the
  ``control_model.`` prefix is optional;
- a diffusers ``ControlNetModel`` state dict in one file
  (``controlnet_cond_embedding.*``, ``down_blocks.*``, ``controlnet_down_blocks.*``).

Original-layout names are converted by diffusers' own
``convert_controlnet_checkpoint`` (what ``ControlNetModel.from_single_file``
uses); only its config lookup, which asks the hub, is replaced. The
architecture is read from tensor shapes *after* renaming, so one reader
serves both layouts. Values no shape shows come from the shipped SD1.5/SDXL
UNet configs (a ControlNet copies its UNet's, see ``ControlNetModel.from_unet``)
and ControlNetModel's defaults (those of the reference ControlNets); a file may
pin any of them in its ``lcmgraph.configs`` metadata under ``"controlnet"``,
as single-file checkpoints do (single_file_arch). As in single_file_loader,
the model is built on the meta device and each tensor is read once, in its
final dtype.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from pathlib import Path

import torch

from .single_file_arch import (
    LayoutError,
    _indices,
    _pinned,
    input_levels,
    shipped_configs,
    unet_heads,
)
from .single_file_reader import LazyStateDict, SafetensorsFormatError

LDM_PREFIX = "control_model."
PINNED = "controlnet"  # the component name in the lcmgraph.configs metadata
_PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class ControlNetFileError(ValueError):
    """A file that cannot be loaded as a ControlNet; the message says why in a sentence."""


def controlnet_file_config(path: str | Path) -> dict:
    """The diffusers ``ControlNetModel`` config of the file at ``path``, from its header alone."""
    path = Path(path)
    with _errors(path):
        return controlnet_config(_open(path, None))


def controlnet_config(sd) -> dict:
    """The config of the ControlNet in ``sd`` (a LazyStateDict, or anything with its
    ``keys``/``shape``/``metadata``); reads no tensor data. Raises LayoutError."""
    return _config(sd, _convert(sd, meta=True))


def load_controlnet_file(path: str | Path, torch_dtype=None):
    """A ``ControlNetModel`` from the file at ``path``, on the CPU in ``torch_dtype`` (default float32)."""
    from diffusers import ControlNetModel

    from .single_file_loader import _assign, _empty

    path, torch_dtype = Path(path), torch_dtype or torch.float32
    with _errors(path):
        sd = _open(path, torch_dtype)
        config = controlnet_config(sd)  # the architecture is known before any tensor is read
        model = _empty(lambda: ControlNetModel.from_config(config))
        return _assign(model, _convert(sd, meta=False), "ControlNet", torch_dtype)


@contextlib.contextmanager
def _errors(path: Path):
    """LayoutError / SafetensorsFormatError -> ControlNetFileError naming the file."""
    try:
        yield
    except SafetensorsFormatError as exc:
        raise ControlNetFileError(str(exc)) from exc
    except LayoutError as exc:
        raise ControlNetFileError(f"{path.name!r}: {exc}") from exc


def _open(path: Path, dtype) -> LazyStateDict:
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise ControlNetFileError(f"{path.name!r}: pickled files ({path.suffix}) can run arbitrary code when loaded; "
                                  "convert it to .safetensors first")
    return LazyStateDict(path, dtype=dtype)


def _layout(keys) -> tuple[str, str]:
    """(key prefix, "ldm" or "diffusers"), or a LayoutError saying what the file is instead."""
    keys = set(keys)
    if "controlnet_cond_embedding.conv_in.weight" in keys:
        return "", "diffusers"
    for prefix in (LDM_PREFIX, ""):
        if prefix + "input_hint_block.0.weight" in keys and prefix + "zero_convs.0.0.weight" in keys:
            return prefix, "ldm"
    raise LayoutError(_not_a_controlnet(keys))


def _not_a_controlnet(keys: set) -> str:
    def has(*prefixes):
        return any(k.startswith(prefixes) for k in keys)

    if "lora_controlnet" in keys:
        what = "a Control-LoRA (low-rank changes to the model's own UNet); only full ControlNets are supported"
    elif has("lora_unet_", "lora_te") or any(".lora_" in k or "lora_A" in k for k in keys):
        what = "a LoRA, not a ControlNet: apply it to a model with ApplyLoRA"
    elif has("model.diffusion_model."):
        what = "a Stable Diffusion checkpoint (a UNet), not a ControlNet: load it with LoadCheckpoint"
    elif has("up_blocks.", "output_blocks.", "out.2.", "conv_out."):
        what = "a UNet (it has decoder/output blocks and no ControlNet hint encoder), not a ControlNet"
    else:
        sample = ", ".join(sorted(keys)[:3]) or "no tensors at all"
        what = (f"not a ControlNet: it has neither input_hint_block.* (original layout) nor "
                f"controlnet_cond_embedding.* (diffusers layout) tensors (its first keys: {sample})")
    return "this is " + what


class _Renamed:
    """The keys under ``prefix`` without it, read on access; ``meta`` gives shape-only
    tensors instead, so that diffusers' converter can rename from the header alone."""

    def __init__(self, sd: LazyStateDict, prefix: str, meta: bool):
        self._sd, self._prefix, self._meta = sd, prefix, meta
        self._keys = [k[len(prefix):] for k in sd if k.startswith(prefix)]
        self._set = set(self._keys)

    def keys(self):
        return list(self._keys)

    def __iter__(self):
        return iter(self._keys)

    def __contains__(self, key):
        return key in self._set

    def __getitem__(self, key):
        if self._meta:
            return torch.empty(self._sd.shape(self._prefix + key), device="meta")
        return self._sd[self._prefix + key]

    def get(self, key, default=None):
        return self[key] if key in self else default


def _convert(sd: LazyStateDict, meta: bool) -> dict:
    """The file's tensors under diffusers ``ControlNetModel`` names; what is missing is left out
    (the converter's ``None``s), for the model's key check to name."""
    from diffusers.loaders.single_file_utils import (
        DIFFUSERS_TO_LDM_MAPPING,
        convert_controlnet_checkpoint,
    )

    prefix, kind = _layout(sd.keys())
    view = _Renamed(sd, prefix, meta)
    if kind == "diffusers":
        return {k: view[k] for k in view}
    _, per_level = input_levels(view.keys(), "ControlNet")
    # The view has no prefix left, so the converter takes its no-prefix path and reads each tensor lazily, once.
    out = convert_controlnet_checkpoint(view, {"layers_per_block": per_level})
    # diffusers' converter has no SDXL ControlNet in this layout and drops label_emb;
    # its own name table for it (the UNet's) completes the conversion.
    for new, old in DIFFUSERS_TO_LDM_MAPPING["controlnet"]["addition_embed_type"].items():
        if old in view:
            out[new] = view[old]
    return {k: v for k, v in out.items() if v is not None}


@functools.cache
def _controlnet_params() -> frozenset:
    from diffusers import ControlNetModel

    return frozenset(inspect.signature(ControlNetModel.__init__).parameters) - {"self"}


def _config(sd: LazyStateDict, tensors: dict) -> dict:
    """ControlNetModel config: shipped UNet values < shapes < the file's pinned metadata."""
    keys = list(tensors)

    def shape(key: str) -> tuple[int, ...]:
        if key not in tensors:
            raise LayoutError(f"the ControlNet has no {key} tensor")
        return tuple(tensors[key].shape)

    arch = "sdxl" if "add_embedding.linear_1.weight" in tensors else "sd15"
    base = {k: v for k, v in shipped_configs(arch)["unet"].items() if k in _controlnet_params()}
    levels = _indices(keys, "down_blocks.")
    if not levels:
        raise LayoutError("the ControlNet has no down blocks")
    channels = [shape(f"down_blocks.{i}.resnets.0.conv1.weight")[0] for i in levels]
    attn = [any(k.startswith(f"down_blocks.{i}.attentions.") for k in keys) for i in levels]
    depth = [len(_indices(keys, f"down_blocks.{i}.attentions.0.transformer_blocks.")) if a else 1
             for i, a in zip(levels, attn, strict=True)]
    cross = sorted(k for k in keys if k.startswith("down_blocks.") and k.endswith(".attn2.to_k.weight"))
    if not cross:
        raise LayoutError("the ControlNet has no cross-attention blocks; not an SD1.5 or SDXL ControlNet")
    first_attn = levels[attn.index(True)]
    hint = [shape("controlnet_cond_embedding.conv_in.weight")[0]]
    hint += [shape(f"controlnet_cond_embedding.blocks.{j}.weight")[0]
             for j in _indices(keys, "controlnet_cond_embedding.blocks.") if j % 2 == 1]
    config = {
        **base,
        "in_channels": shape("conv_in.weight")[1],
        "conditioning_channels": shape("controlnet_cond_embedding.conv_in.weight")[1],
        "conditioning_embedding_out_channels": hint,
        "block_out_channels": channels,
        "layers_per_block": len(_indices(keys, "down_blocks.0.resnets.")),
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "mid_block_type": "UNetMidBlock2DCrossAttn" if any(k.startswith("mid_block.attentions.") for k in keys)
        else "UNetMidBlock2D",
        "cross_attention_dim": shape(cross[0])[1],
        "use_linear_projection": len(shape(f"down_blocks.{first_attn}.attentions.0.proj_in.weight")) == 2,
        "transformer_layers_per_block": depth if arch == "sdxl" else depth[attn.index(True)],
        "attention_head_dim": unet_heads(arch, channels, base["attention_head_dim"]),
    }
    if arch == "sd15" and len({d for d, a in zip(depth, attn, strict=True) if a}) > 1:
        raise LayoutError("an SD1.5 ControlNet with different transformer depths per level is not supported")
    pinned = _pinned(sd.metadata)
    if set(pinned) - {PINNED}:
        raise LayoutError(f"the lcmgraph.configs metadata of a ControlNet may only hold {PINNED!r}, not {sorted(pinned)}")
    if arch == "sdxl":
        adm = shape("add_embedding.linear_1.weight")[1]
        # addition_time_embed_dim (the width per size/crop value) stays the shipped SDXL one: no weight shows it.
        config.update(addition_embed_type="text_time", projection_class_embeddings_input_dim=adm)
    # The ControlNet 1.1 shuffle model pools its output, which no tensor shows; its
    # releases are known by name, as ComfyUI knows them.
    if Path(getattr(sd, "path", "")).stem.lower().endswith(("_shuffle", "_shuffle_fp16")):
        config["global_pool_conditions"] = True
    config.update(pinned.get(PINNED, {}))
    if arch == "sdxl" and adm - 6 * config["addition_time_embed_dim"] <= 0:
        # The width is pooled text + 6 size/crop values; it leaves no room for the text at SDXL's value width.
        raise LayoutError(f"this SDXL ControlNet's size/crop conditioning width {adm} is smaller than real SDXL's and "
                          "its width per value cannot be read from the tensors; pin addition_time_embed_dim "
                          "in its lcmgraph.configs metadata")
    return config
