"""A lazy, copy-once view of a ``.safetensors`` file.

Why not ``safetensors.torch.load_file`` or ``safe_open(...).get_tensor``: both
go through a memory map, and every page of the map that a read touches counts
in the process's resident set until the map is closed, on top of the tensor
copied out of it — about twice the file at peak. Here each tensor is read with
plain file reads straight into its own (final) buffer, so the page cache holds
the file and the process holds each weight once.

``safe_open`` is still used once, to validate the header the way the format's
own implementation does (truncated data, overlapping or out-of-range offsets).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


class SafetensorsFormatError(ValueError):
    """The file is not a readable safetensors file; the message says why."""


class LazyStateDict(Mapping):
    """``key -> tensor`` over a safetensors file; a tensor is read when asked for.

    Floating-point tensors come back in ``dtype`` (when given); each access
    reads the file again, so callers take each key once and keep the tensor.
    """

    def __init__(self, path: str | Path, dtype: torch.dtype | None = None):
        self.path = Path(path)
        self.dtype = dtype
        self._entries, self.metadata, self._data_start = _read_header(self.path)

    def __getitem__(self, key: str) -> torch.Tensor:
        dtype_name, shape, (begin, end) = self._entries[key]
        raw = torch.empty(end - begin, dtype=torch.uint8)
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self._data_start + begin)
            got = f.readinto(raw.numpy()) if end > begin else 0
        if got != end - begin:
            raise SafetensorsFormatError(f"{self.path}: file ended while reading tensor {key!r}")
        tensor = raw.view(_DTYPES[dtype_name]).reshape(shape)
        if self.dtype is not None and tensor.is_floating_point() and tensor.dtype != self.dtype:
            tensor = tensor.to(self.dtype)
        return tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def shape(self, key: str) -> tuple[int, ...]:
        """The tensor's shape, from the header alone."""
        return tuple(self._entries[key][1])

    def file_dtype(self, key: str) -> torch.dtype:
        return _DTYPES[self._entries[key][0]]


def _read_header(path: Path) -> tuple[dict, dict, int]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt"):
            pass
    except SafetensorError as exc:
        raise SafetensorsFormatError(f"{path}: not a valid safetensors file ({exc})") from exc
    except OSError as exc:
        raise SafetensorsFormatError(f"{path}: cannot be read ({exc})") from exc

    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    metadata = header.pop("__metadata__", None) or {}
    entries = {}
    for key, info in header.items():
        dtype_name, shape, offsets = info["dtype"], list(info["shape"]), tuple(info["data_offsets"])
        if dtype_name not in _DTYPES:
            raise SafetensorsFormatError(f"{path}: tensor {key!r} has unsupported dtype {dtype_name}")
        itemsize = torch.empty((), dtype=_DTYPES[dtype_name]).element_size()
        if offsets[1] - offsets[0] != math.prod(shape) * itemsize:
            raise SafetensorsFormatError(f"{path}: tensor {key!r} has a size that does not match its shape")
        entries[key] = (dtype_name, shape, offsets)
    return entries, metadata, 8 + header_len
