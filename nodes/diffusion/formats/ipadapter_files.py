"""IP-Adapter files (ComfyUI's ``ipadapter`` folder): ``ip-adapter_sd15.safetensors``,
``ip-adapter-plus_sdxl_vit-h.safetensors``, ... as h94/IP-Adapter publishes them.

A file holds two parts: ``image_proj`` (the image-embedding projection) and
``ip_adapter`` (per cross-attention layer ``N.to_k_ip.weight`` /
``N.to_v_ip.weight``, N = 1, 3, 5, ... in the UNet's attention-processor order:
down blocks, up blocks, mid block). ``.safetensors`` files store them as flat
``image_proj.*`` / ``ip_adapter.*`` names; ``.bin`` files as a dict of the two
(read only with ``torch.load(weights_only=True)``).

Kinds, told apart by the projection's tensors (as diffusers and ComfyUI's
IPAdapter_plus do): ``basic`` (``proj.weight``: one pooled image embedding ->
4 tokens), ``plus`` (a resampler with ``latents``: the penultimate hidden
states -> 16 tokens), ``full`` (``proj.3.weight``: every hidden state -> 257
tokens). FaceID files need a face-analysis model (insightface) lcmgraph does
not have: refused by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FOLDER = "ipadapter"
#: kind -> does it read the CLIP tower's penultimate hidden states (else its projected image embeds)
HIDDEN_STATES = {"basic": False, "plus": True, "full": True}


class IPAdapterFileError(ValueError):
    """An IP-Adapter file that cannot be used; the message names it."""


def read_ipadapter(path: str | Path) -> dict[str, dict]:
    """``{"image_proj": {...}, "ip_adapter": {...}}`` of the file (float32, CPU)."""

    from lcmgraph.weight_files import WeightFileError, read_weights

    path = Path(path)
    label = path.name
    try:
        data, _ = read_weights(path)
    except WeightFileError as exc:
        raise IPAdapterFileError(f"IP-Adapter {label!r} {exc}") from exc
    if path.suffix.lower() == ".safetensors":  # flat names: image_proj.*, ip_adapter.*
        parts: Any = {"image_proj": {}, "ip_adapter": {}}
        for key, value in data.items():
            head, _, rest = key.partition(".")
            head = "ip_adapter" if head == "adapter_modules" else head  # an older name ComfyUI accepts
            if head in parts:
                parts[head][rest] = value
    else:  # a dict of the two parts
        parts = data
        if isinstance(parts, dict) and "adapter_modules" in parts and "ip_adapter" not in parts:
            parts["ip_adapter"] = parts.pop("adapter_modules")
    if not isinstance(parts, dict) or not parts.get("image_proj") or not parts.get("ip_adapter"):
        raise IPAdapterFileError(f"{label!r} is not an IP-Adapter file (it needs image_proj.* and ip_adapter.* "
                                 "tensors)")
    return {name: {k: v.float() for k, v in parts[name].items()} for name in ("image_proj", "ip_adapter")}


def adapter_kind(parts: dict[str, dict], label: str) -> str:
    proj = parts["image_proj"]
    if "perceiver_resampler.proj_in.weight" in proj or "norm.weight" in proj and "proj.weight" not in proj:
        raise IPAdapterFileError(f"{label!r} is an IP-Adapter FaceID model: it needs a face-analysis model "
                                 "(insightface), which lcmgraph does not have; FaceID is not supported yet")
    if "proj.weight" in proj:
        return "basic"
    if "proj.3.weight" in proj:
        return "full"
    if "latents" in proj:
        return "plus"
    raise IPAdapterFileError(f"{label!r}: unknown IP-Adapter projection (tensors {sorted(proj)[:4]})")


def layer_weights(parts: dict[str, dict], label: str) -> list[tuple[Any, Any]]:
    """``(to_k_ip, to_v_ip)`` weights per cross-attention layer, in processor order."""
    layers = parts["ip_adapter"]
    out = []
    key = 1
    while f"{key}.to_k_ip.weight" in layers:
        out.append((layers[f"{key}.to_k_ip.weight"], layers[f"{key}.to_v_ip.weight"]))
        key += 2
    if not out:
        raise IPAdapterFileError(f"{label!r} has no ip_adapter.1.to_k_ip.weight")
    return out
