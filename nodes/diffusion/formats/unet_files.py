"""UNet-only weights that replace a checkpoint's UNet (LoadUNet), offline.

Distilled few-step models often ship as a UNet alone: SDXL-Lightning's
``sdxl_lightning_4step_unet.safetensors`` and Hyper-SDXL's
``Hyper-SDXL-1step-Unet.safetensors`` in diffusers layout (the keys of
``UNet2DConditionModel``), ComfyUI's UNet files in the original LDM layout
(``input_blocks.*``, with or without ``model.diffusion_model.``). The shape
comes from the checkpoint whose UNet is replaced: a UNet-only file carries
no config, and these models keep their base's architecture. A diffusers UNet
folder (``config.json`` + weights, or a pipeline folder's ``unet/``) brings
its own config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LDM_PREFIX = "model.diffusion_model."
_PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class UnetFileError(Exception):
    """A UNet file that cannot replace this checkpoint's UNet; the message says why."""


def unet_arch(keys, layout: str) -> str:
    """``"sdxl"`` when the UNet has SDXL's added (pooled text + size) embedding, else ``"sd15"``."""
    marker = "add_embedding.linear_1.weight" if layout == "diffusers" else "label_emb.0.0.weight"
    return "sdxl" if any(k.endswith(marker) for k in keys) else "sd15"


def layout_of(keys) -> str:
    """``"diffusers"`` or ``"ldm"``; UnetFileError naming what the file is otherwise."""
    keys = list(keys)
    sample = ", ".join(sorted(keys)[:3]) or "no tensors at all"
    if any("lora" in k.lower() for k in keys):
        raise UnetFileError("this is a LoRA, not a UNet: apply it with ApplyLoRA")
    if any(k.startswith(("first_stage_model.", "cond_stage_model.", "conditioner.")) for k in keys):
        raise UnetFileError("this is a full checkpoint (UNet, VAE and text encoders), not a UNet-only file: "
                            "load it with LoadCheckpoint")
    if "conv_in.weight" in keys and any(k.startswith("down_blocks.") for k in keys):
        if any(k.startswith("encoder.down_blocks.") for k in keys) or "quant_conv.weight" in keys:
            raise UnetFileError("this is a VAE, not a UNet")
        if any(k.startswith("controlnet_") for k in keys):
            raise UnetFileError("this is a ControlNet, not a UNet: load it with LoadControlNet")
        return "diffusers"
    if any(k.startswith(("input_blocks.", LDM_PREFIX + "input_blocks.")) for k in keys):
        return "ldm"
    if any(k.startswith(("encoder.", "decoder.")) for k in keys):
        raise UnetFileError("this is a VAE, not a UNet")
    raise UnetFileError(f"this is not a UNet: none of its {len(keys)} tensors are named like one (e.g. {sample})")


def load_unet_file(path: str | Path, base_config: Mapping[str, Any], base_arch: str, torch_dtype) -> Any:
    """A UNet2DConditionModel from ``path`` shaped like the checkpoint's UNet (``base_config``)."""
    path = Path(path)
    if path.is_dir():
        return _load_folder(path, base_arch, torch_dtype)
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise UnetFileError(f"{path.name}: pickled weights ({path.suffix}) can run arbitrary code when loaded; "
                            "convert the file to .safetensors first")
    from .single_file_arch import LayoutError
    from .single_file_loader import _assign, _empty
    from .single_file_reader import LazyStateDict, SafetensorsFormatError

    try:
        sd = LazyStateDict(path, dtype=torch_dtype)
    except SafetensorsFormatError as exc:
        raise UnetFileError(str(exc)) from exc
    try:
        layout = layout_of(sd.keys())
    except UnetFileError as exc:
        raise UnetFileError(f"{path.name}: {exc}") from exc
    arch = unet_arch(sd.keys(), layout)
    if arch != base_arch:
        raise UnetFileError(f"{path.name}: the UNet is {_NAMES[arch]}-shaped but the checkpoint it replaces is "
                            f"{_NAMES[base_arch]}; load it onto a {_NAMES[arch]} checkpoint")
    from diffusers import UNet2DConditionModel

    config = dict(base_config)
    model = _empty(lambda: UNet2DConditionModel.from_config(config))
    try:
        if layout == "ldm":
            from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

            state = convert_ldm_unet_checkpoint(_WithPrefix(sd), config)
        else:
            state = {k: sd[k] for k in sd.keys()}
        return _assign(model, state, "UNet", torch_dtype)
    except SafetensorsFormatError as exc:
        raise UnetFileError(str(exc)) from exc
    except (LayoutError, KeyError, RuntimeError, ValueError) as exc:
        raise UnetFileError(f"{path.name}: {exc} (is it made for another {_NAMES[base_arch]} architecture?)") from exc


_NAMES = {"sd15": "SD1.5", "sdxl": "SDXL"}


def _load_folder(path: Path, base_arch: str, torch_dtype) -> Any:
    from diffusers import UNet2DConditionModel

    folder = path / "unet" if (path / "model_index.json").is_file() else path
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise UnetFileError(f"{path.name}: a UNet folder needs a config.json (diffusers layout)")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as exc:
        raise UnetFileError(f"{path.name}: config.json cannot be read ({exc})") from exc
    if config.get("_class_name") not in (None, "UNet2DConditionModel"):
        raise UnetFileError(f"{path.name}: this is a {config.get('_class_name')}, not a UNet2DConditionModel")
    arch = "sdxl" if config.get("addition_embed_type") == "text_time" else "sd15"
    if arch != base_arch:
        raise UnetFileError(f"{path.name}: the UNet is {_NAMES[arch]}-shaped but the checkpoint it replaces is "
                            f"{_NAMES[base_arch]}; load it onto a {_NAMES[arch]} checkpoint")
    try:
        return UNet2DConditionModel.from_pretrained(folder, torch_dtype=torch_dtype, local_files_only=True).eval()
    except (OSError, ValueError, RuntimeError) as exc:
        raise UnetFileError(f"{path.name}: the UNet folder cannot be loaded ({exc})") from exc


class _WithPrefix(Mapping):
    """LDM UNet keys under ``model.diffusion_model.`` (diffusers' converter expects a full checkpoint)."""

    def __init__(self, sd: Mapping):
        self._sd = sd
        self._keys = {(k if k.startswith(LDM_PREFIX) else LDM_PREFIX + k): k for k in sd.keys()}

    def __getitem__(self, key: str):
        return self._sd[self._keys[key]]

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self):
        return list(self._keys)
