"""Node outputs <-> safetensors files, for the on-disk cache tier.

Tensors (and numpy arrays, PIL images) go into the safetensors payload; the
structure around them (dicts, lists, tuples, scalars, frozen dataclasses of
already-imported modules) is JSON in the file's metadata. Values that cannot
be written this way (model handles) stay in memory only.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any


class NotSerializable(Exception):
    pass


def _encode(value: Any, tensors: dict) -> Any:
    import numpy as np
    import torch
    from PIL import Image

    if value is None or isinstance(value, (bool, int, float, str)):
        return {"s": value}
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().to("cpu").contiguous()
        return {"tensor": key, "device": str(value.device)}
    if isinstance(value, np.ndarray):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value))
        return {"ndarray": key}
    if isinstance(value, Image.Image):
        key = f"t{len(tensors)}"
        tensors[key] = torch.from_numpy(np.asarray(value).copy())
        return {"image": key, "mode": value.mode}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise NotSerializable("dict with non-string keys")
        return {"dict": {k: _encode(v, tensors) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        tag = "list" if isinstance(value, list) else "tuple"
        return {tag: [_encode(v, tensors) for v in value]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {
            "dataclass": f"{cls.__module__}:{cls.__qualname__}",
            "fields": {f.name: _encode(getattr(value, f.name), tensors) for f in dataclasses.fields(value)},
        }
    raise NotSerializable(type(value).__name__)


def _decode(node: Any, tensors: dict) -> Any:
    import torch
    from PIL import Image

    if "s" in node:
        return node["s"]
    if "tensor" in node:
        return tensors[node["tensor"]]
    if "ndarray" in node:
        return tensors[node["ndarray"]].numpy()
    if "image" in node:
        return Image.fromarray(tensors[node["image"]].numpy(), mode=node["mode"]) if node["mode"] in ("RGB", "RGBA", "L") else Image.fromarray(tensors[node["image"]].numpy())
    if "dict" in node:
        return {k: _decode(v, tensors) for k, v in node["dict"].items()}
    if "list" in node:
        return [_decode(v, tensors) for v in node["list"]]
    if "tuple" in node:
        return tuple(_decode(v, tensors) for v in node["tuple"])
    if "dataclass" in node:
        module_name, _, qualname = node["dataclass"].partition(":")
        # Only classes of modules already imported: reading a cache file never imports code.
        module = sys.modules.get(module_name)
        cls = module
        for part in qualname.split("."):
            cls = getattr(cls, part, None)
        if module is None or cls is None or not dataclasses.is_dataclass(cls):
            raise NotSerializable(f"unknown dataclass {node['dataclass']}")
        return cls(**{k: _decode(v, tensors) for k, v in node["fields"].items()})
    del torch, Image
    raise NotSerializable("unknown entry")


def save(value: Any, path: Path) -> None:
    from safetensors.torch import save_file

    tensors: dict = {}
    tree = _encode(value, tensors)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(tensors, str(tmp), metadata={"lcmgraph_tree": json.dumps(tree)})
    tmp.replace(path)  # atomic: a reader never sees half a file


def load(path: Path) -> Any:
    from safetensors import safe_open

    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        tree = json.loads(f.metadata()["lcmgraph_tree"])
        for key in f.keys():
            tensors[key] = f.get_tensor(key)
    return _decode(tree, tensors)
