"""Reading weight files the one safe way: ``.safetensors`` as they are, anything
else (``.pt``, ``.pth``, ``.bin``, ``.ckpt``) only with
``torch.load(weights_only=True)``, so no pickled code runs. Packs turn the
``WeightFileError`` into their own message naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class WeightFileError(ValueError):
    """The file could not be read; the message says why (without the file's name)."""


def read_weights(path: str | Path) -> tuple[Any, dict[str, str]]:
    """(the file's tensors — a dict, or whatever plain structure a pickle holds —, its
    safetensors metadata (empty for pickles)); tensors on the CPU as stored."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        import torch

        return torch.load(str(path), map_location="cpu", weights_only=True), {}
    except Exception as exc:
        raise WeightFileError(f"could not be read (only .safetensors, and .pt/.pth/.bin files holding plain "
                              f"tensors, are read): {type(exc).__name__}: {exc}") from exc
