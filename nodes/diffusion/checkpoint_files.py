"""Reading checkpoints from disk: diffusers folders, single-file LDM
``.safetensors`` (SD1.5 / SDXL, offline), Hugging Face hub ids.

Every source ends up as the same :class:`Checkpoint`: diffusers components
plus the architecture name, so nothing downstream cares where weights came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ARCH_SD15 = "sd15"
ARCH_SDXL = "sdxl"


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
    extra: dict = field(default_factory=dict)


def load_checkpoint(source: str | Path, torch_dtype=None) -> Checkpoint:
    """Load a checkpoint on the CPU in ``torch_dtype`` (default float32)."""
    import torch

    torch_dtype = torch_dtype or torch.float32
    path = Path(source)
    if path.is_dir():
        return _load_folder(path, torch_dtype)
    raise CheckpointError(f"{source}: not a diffusers folder (single-file loading is not implemented yet)")


def _load_folder(path: Path, torch_dtype) -> Checkpoint:
    from diffusers import DiffusionPipeline

    if not (path / "model_index.json").is_file():
        raise CheckpointError(f"{path}: a diffusers folder needs a model_index.json")
    pipe = DiffusionPipeline.from_pretrained(path, torch_dtype=torch_dtype, local_files_only=True, safety_checker=None)
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
    )
