"""Textual-inversion embeddings (``embedding:NAME`` in a prompt), found and read
as ComfyUI's ``load_embed`` (comfy/sd1_clip.py) does.

A name is looked up in the ``embeddings`` folder as written, then with
``.safetensors``, ``.pt`` and ``.bin`` appended (ComfyUI also searches every
subfolder for a bare name; here a subfolder is part of the name). ``.safetensors`` files are read as they are; ``.pt`` / ``.bin``
only with ``torch.load(weights_only=True)`` (no pickled code runs). The
vectors are, in this order: A1111's ``string_to_param`` entry; SDXL's
``clip_l`` / ``clip_g`` entry for that encoder; the first tensor. SD1.5
files hold one set (``emb_params`` or ``string_to_param``), SDXL files one
per encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FOLDER = "embeddings"
SUFFIXES = (".safetensors", ".pt", ".bin")


class EmbeddingError(Exception):
    """An embedding file that cannot be used; the message names it."""


def find(check: Any, name: str) -> str | None:
    """The file name (relative to the embeddings folder) ``name`` refers to, or
    None; ``check(folder, name)`` is the engine's file check (None: it resolves).
    Subfolders are named in the name (``embedding:styles/foo``)."""
    if not name or ":" in name or "\x00" in name:
        return None  # no builtin:/hub: schemes or drive letters inside a prompt
    for candidate in (name, *(name + s for s in SUFFIXES)):
        if check(FOLDER, candidate) is None:
            return candidate
    return None


def load_vectors(path: str | Path, key: str, width: int) -> Any:
    """The embedding's vectors ``[n, width]`` (float32, CPU) for the encoder
    ``key`` ("clip_l" or "clip_g") whose token embeddings are ``width`` wide."""
    from lcmgraph.weight_files import WeightFileError, read_weights

    path = Path(path)
    label = path.name
    try:
        data, _ = read_weights(path)
    except WeightFileError as exc:
        raise EmbeddingError(f"embedding {label!r} {exc}") from exc
    vectors = _pick(data, key, width)
    if vectors is None:
        raise EmbeddingError(f"embedding {label!r} holds no tensors")
    vectors = vectors.detach().float()
    if vectors.ndim == 1:
        vectors = vectors[None]
    if vectors.shape[-1] != width:
        raise EmbeddingError(f"embedding {label!r} has vectors {vectors.shape[-1]} wide, but this text encoder's "
                             f"({key}) are {width} wide: it was made for another model")
    return vectors.reshape(-1, width)


def _pick(data: Any, key: str, width: int) -> Any:
    import torch

    if isinstance(data, torch.Tensor):
        return data
    if isinstance(data, dict):
        if isinstance(data.get("string_to_param"), dict) and data["string_to_param"]:
            return next(iter(data["string_to_param"].values()))
        if key in data:
            return data[key]
        tensors = [v for v in data.values() if isinstance(v, torch.Tensor)]
        return tensors[0] if tensors else None
    if isinstance(data, list):  # a list of {name: tensor}: the tensors of this width, in order
        parts = [t.reshape(-1, t.shape[-1]) for d in data if isinstance(d, dict)
                 for t in d.values() if isinstance(t, torch.Tensor) and t.shape[-1] == width]
        return torch.cat(parts) if parts else None
    return None
