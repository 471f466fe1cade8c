"""Reading checkpoints from disk: diffusers folders, single-file LDM
``.safetensors`` (SD1.5 / SDXL, offline), Hugging Face hub ids.

Every source ends up as the same :class:`Checkpoint`: diffusers components
plus the architecture name, so nothing downstream cares where weights came from.

Sources, in the order they are tried:

- an existing folder with ``model_index.json``: a diffusers pipeline folder;
- an existing ``.safetensors`` file: an LDM single-file checkpoint (see
  ``single_file_loader``); its tokenizers come from the shipped CLIP
  vocabulary, or from ``<stem>.tokenizer/`` / ``<stem>.tokenizer_2/`` beside it;
- ``org/name`` (a diffusers repo) or ``org/name/path/file.safetensors`` (a
  single file in a repo) that is not a local path: the Hugging Face hub,
  through its local cache. ``HF_HUB_OFFLINE=1`` uses the cache only;
  ``HF_HUB_CACHE`` / ``HF_HOME`` choose the cache. Both are read at each call.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ARCH_SD15 = "sd15"
ARCH_SDXL = "sdxl"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(/.+)?$")
_SINGLE_FILE_SUFFIXES = (".safetensors", ".sft")
_PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
# Only what a diffusers pipeline folder needs: not the root-level single files
# many repos also carry, nor duplicate weight variants.
_HUB_ALLOW = ["model_index.json", "*/*.json", "*/*.txt", "*/*.safetensors"]
_HUB_IGNORE = ["*.fp16.*", "*.non_ema.*", "*.ema.*", "safety_checker/*"]


class CheckpointError(Exception):
    """A checkpoint that cannot be loaded; the message says why in a sentence."""


@dataclass
class Checkpoint:
    arch: str  # ARCH_SD15 or ARCH_SDXL
    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict
    text_encoder_2: Any = None
    tokenizer_2: Any = None
    # "format" ("folder" / "single_file"), "path"; single files add "configs"
    # (every component config used) and "tokenizer_source"; hub ids "hub_id".
    extra: dict = field(default_factory=dict)


def load_checkpoint(source: str | Path, torch_dtype=None, text_dtype=None) -> Checkpoint:
    """Load a checkpoint on the CPU in ``torch_dtype`` (default float32), its text
    encoders in ``text_dtype`` (default: ``torch_dtype``)."""
    import torch

    torch_dtype = torch_dtype or torch.float32
    text_dtype = text_dtype or torch_dtype
    path = Path(source).expanduser()
    if path.is_dir():
        return _load_folder(path, torch_dtype, text_dtype)
    if path.is_file():
        return _load_file(path, torch_dtype, text_dtype)
    if isinstance(source, str) and _looks_like_hub_id(source):
        local = _resolve_hub(source)
        if local.is_dir() and not (local / "model_index.json").is_file():
            raise CheckpointError(f"{source}: the repository is not a diffusers pipeline (no model_index.json); "
                                  "for a single file in it, name the file: org/name/path/file.safetensors")
        checkpoint = load_checkpoint(local, torch_dtype, text_dtype)
        checkpoint.extra["hub_id"] = source
        return checkpoint
    raise CheckpointError(f"{source}: no such file or folder")


def _looks_like_hub_id(source: str) -> bool:
    if source.startswith((".", "/", "~")) or "\\" in source or not _HUB_ID.match(source):
        return False
    parts = source.split("/")
    # "models/foo.safetensors" is a missing local file, not repo "models/foo.safetensors".
    return not (len(parts) == 2 and parts[1].endswith(_SINGLE_FILE_SUFFIXES + _PICKLE_SUFFIXES))


def _load_file(path: Path, torch_dtype, text_dtype) -> Checkpoint:
    from .single_file_arch import LayoutError
    from .single_file_loader import load_single_file
    from .single_file_reader import SafetensorsFormatError

    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise CheckpointError(f"{path}: pickled checkpoints ({path.suffix}) can run arbitrary code when loaded; "
                              "convert it to .safetensors first")
    try:
        parts = load_single_file(path, torch_dtype, text_dtype)
    except SafetensorsFormatError as exc:
        raise CheckpointError(str(exc)) from exc
    except LayoutError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    return Checkpoint(
        arch=parts["arch"],
        unet=parts["unet"],
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        scheduler_config=parts["scheduler_config"],
        text_encoder_2=parts.get("text_encoder_2"),
        tokenizer_2=parts.get("tokenizer_2"),
        extra={
            "format": "single_file",
            "path": str(path),
            "configs": parts["configs"],
            "tokenizer_source": parts["tokenizer_source"],
            "mapped": parts["mapped"],
            **({"tokenizer_2_source": parts["tokenizer_2_source"]} if "tokenizer_2_source" in parts else {}),
        },
    )


def _load_folder(path: Path, torch_dtype, text_dtype) -> Checkpoint:
    from diffusers import DiffusionPipeline

    if not (path / "model_index.json").is_file():
        raise CheckpointError(f"{path}: a diffusers folder needs a model_index.json")
    index = json.loads((path / "model_index.json").read_text())
    # Only pipelines that declare a safety checker accept safety_checker=None.
    kwargs = {"safety_checker": None} if "safety_checker" in index else {}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated", category=FutureWarning)
            # diffusers takes a dtype per component: {"default": ..., "text_encoder": ...}
            dtypes = torch_dtype if text_dtype == torch_dtype else {
                "default": torch_dtype, "text_encoder": text_dtype, "text_encoder_2": text_dtype}
            pipe = DiffusionPipeline.from_pretrained(path, torch_dtype=dtypes, local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: the diffusers folder cannot be loaded ({exc})") from exc
    if getattr(pipe, "unet", None) is None or getattr(pipe, "vae", None) is None:
        raise CheckpointError(f"{path}: not a Stable Diffusion pipeline (no UNet or VAE)")
    arch = ARCH_SDXL if getattr(pipe, "text_encoder_2", None) is not None else ARCH_SD15
    return Checkpoint(
        arch=arch,
        unet=pipe.unet,
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        scheduler_config=dict(pipe.scheduler.config),
        text_encoder_2=getattr(pipe, "text_encoder_2", None),
        tokenizer_2=getattr(pipe, "tokenizer_2", None),
        extra={"format": "folder", "path": str(path)},
    )


def _hub_env() -> tuple[bool, str | None]:
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    cache = os.environ.get("HF_HUB_CACHE")
    if not cache and os.environ.get("HF_HOME"):
        cache = os.path.join(os.environ["HF_HOME"], "hub")
    return offline, cache


def _resolve_hub(source: str, local_only: bool = False) -> Path:
    """A local path for a hub id: the cached snapshot folder, or the cached single file.

    ``local_only`` never touches the network (validation and cache keys use it)."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    offline, cache = _hub_env()
    offline = offline or local_only
    parts = source.split("/", 2)
    repo_id, filename = "/".join(parts[:2]), (parts[2] if len(parts) == 3 else "")
    where = f"the hub cache ({cache or 'default location'})"
    try:
        if filename:
            return Path(hf_hub_download(repo_id, filename, cache_dir=cache, local_files_only=offline))
        return Path(snapshot_download(repo_id, cache_dir=cache, local_files_only=offline,
                                      allow_patterns=_HUB_ALLOW, ignore_patterns=_HUB_IGNORE))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        if local_only:
            raise CheckpointError(f"{source}: not in {where}") from exc
        if offline or isinstance(exc, OfflineModeIsEnabled):
            raise CheckpointError(f"{source}: not in {where}, and the hub is offline (HF_HUB_OFFLINE); "
                                  "download it once while online") from exc
        raise CheckpointError(f"{source}: cannot be fetched from the hub and is not in {where} ({exc})") from exc
    except (RepositoryNotFoundError, EntryNotFoundError) as exc:
        raise CheckpointError(f"{source}: no such repository or file on the hub") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise CheckpointError(f"{source}: hub download failed ({exc})") from exc


# Public names for the ``hub:`` file scheme (hub_files.py).
looks_like_hub_id = _looks_like_hub_id
resolve_hub = _resolve_hub
hub_offline = lambda: _hub_env()[0]  # noqa: E731
