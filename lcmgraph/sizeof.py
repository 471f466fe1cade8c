"""How many bytes a node's output holds, for the byte-bounded cache."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

_MAX_DEPTH = 6


def nbytes(value: Any, _depth: int = 0) -> int:
    """Approximate memory held by ``value``: exact for tensors, arrays and images."""
    if _depth > _MAX_DEPTH or value is None or isinstance(value, (bool, int, float)):
        return 0
    custom = getattr(value, "__lcmgraph_nbytes__", None)
    if callable(custom):
        return int(custom())
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return int(value.nbytes)
    image_mod = sys.modules.get("PIL.Image")
    if image_mod is not None and isinstance(value, image_mod.Image):
        return value.width * value.height * len(value.getbands())
    if isinstance(value, (str, bytes, bytearray)):
        return len(value)
    if isinstance(value, dict):
        return sum(nbytes(v, _depth + 1) for v in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(nbytes(v, _depth + 1) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(nbytes(getattr(value, f.name), _depth + 1) for f in dataclasses.fields(value))
    return 0
