"""CLIP vision models (ComfyUI's ``clip_vision`` folder): the image encoders
IP-Adapters read, e.g. ``CLIP-ViT-H-14-laion2B-s32B-b79K.safetensors``
(h94/IP-Adapter's ``models/image_encoder``) or ``CLIP-ViT-bigG-14-...``.

The files use transformers' ``CLIPVisionModelWithProjection`` names
(``vision_model.*``, ``visual_projection.weight``), optionally under a
``clip_vision.`` prefix (as inside unCLIP checkpoints). The architecture is
read from the tensor shapes; the head count, which shapes do not show, from
the width (every published CLIP vision tower has 64-, 80- or 104-wide heads:
ViT-L 1024/16, ViT-H 1280/16, ViT-bigG 1664/16, ViT-B 768/12) or from the
file's ``heads`` metadata. OpenAI's ViT-L/14 uses quick-GELU, the LAION
towers GELU (ComfyUI's clip_vision_config_*.json say the same).

``.safetensors`` files are read as they are; ``.bin`` / ``.pt`` / ``.pth``
only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

FOLDER = "clip_vision"
#: CLIP's image normalisation (ComfyUI's clip_preprocess, transformers' CLIPImageProcessor).
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
_HEADS = {768: 12, 1024: 16, 1280: 16, 1664: 16}
_LAYER = re.compile(r"vision_model\.encoder\.layers\.(\d+)\.")


class ClipVisionFileError(ValueError):
    """A CLIP vision file that cannot be used; the message names it."""


#: Where a CLIP vision tower's tensors may sit in a file (its own, an unCLIP or SVD checkpoint's).
_TOWER_PREFIXES = ("vision_model.", "visual_projection.", "clip_vision.", "conditioner.embedders.0.open_clip.model.visual.",
                   "visual.")


def tower_bytes(path: str | Path) -> int | None:
    """Bytes of the tower's tensors in a ``.safetensors`` file, from its header (a 9 GB SVD
    checkpoint holds a 1.3 GB tower); None for other files (their size is the estimate)."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        return None
    from .single_file_reader import LazyStateDict

    try:
        sd = LazyStateDict(path, map_file=False)
    except Exception:  # noqa: BLE001 - unreadable: the load names the problem
        return None
    return sum(e[2][1] - e[2][0] for k, e in sd._entries.items() if k.startswith(_TOWER_PREFIXES))


def read_tensors(path: Path, label: str) -> tuple[dict, dict]:
    """(tensors, safetensors metadata) of a ``.safetensors`` or plain-tensor ``.bin``/``.pt`` file;
    of a ``.safetensors`` only the tower's tensors are read."""
    from lcmgraph.weight_files import WeightFileError, read_weights

    if Path(path).suffix.lower() == ".safetensors":
        from .single_file_reader import LazyStateDict, SafetensorsFormatError

        try:
            sd = LazyStateDict(path)
        except SafetensorsFormatError as exc:
            raise ClipVisionFileError(f"{label!r} {exc}") from exc
        return {k: sd[k] for k in sd if k.startswith(_TOWER_PREFIXES)}, dict(sd.metadata or {})

    try:
        data, metadata = read_weights(path)
    except WeightFileError as exc:
        raise ClipVisionFileError(f"{label!r} {exc}") from exc
    if not isinstance(data, dict):
        raise ClipVisionFileError(f"{label!r} holds a {type(data).__name__}, not a dict of tensors")
    return data, metadata


#: Where open_clip's image tower sits: its own files (``visual.``), Stable Video Diffusion's checkpoints.
OPEN_CLIP_PREFIXES = ("conditioner.embedders.0.open_clip.model.visual.", "visual.")


def vision_state(tensors: dict, label: str) -> tuple[dict, str | None]:
    """(the tensors under transformers' names, the activation the layout implies or None):
    a ``clip_vision.`` prefix removed; open_clip's layout converted, with GELU (the LAION towers')."""
    if any(k.startswith("clip_vision.") for k in tensors):
        tensors = {k[len("clip_vision."):]: v for k, v in tensors.items() if k.startswith("clip_vision.")}
    if "vision_model.embeddings.patch_embedding.weight" not in tensors:
        for prefix in OPEN_CLIP_PREFIXES:
            if prefix + "conv1.weight" in tensors:
                return from_open_clip({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}), "gelu"
        raise ClipVisionFileError(f"{label!r} is not a CLIP vision model (no "
                                  "vision_model.embeddings.patch_embedding.weight, nor open_clip's visual.conv1)")
    return tensors, None


_OPEN_CLIP = (("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("attn.out_proj.", "self_attn.out_proj."),
              ("mlp.c_fc.", "mlp.fc1."), ("mlp.c_proj.", "mlp.fc2."))


def from_open_clip(visual: dict) -> dict:
    """open_clip's image tower (``conv1``, ``transformer.resblocks.N``, ``proj``...) under
    transformers' CLIPVisionModelWithProjection names, as ComfyUI converts it: the fused
    q/k/v split in thirds, the projection transposed."""
    out = {"vision_model.embeddings.class_embedding": visual["class_embedding"],
           "vision_model.embeddings.patch_embedding.weight": visual["conv1.weight"],
           "vision_model.embeddings.position_embedding.weight": visual["positional_embedding"]}
    for key, value in visual.items():
        if key.startswith(("ln_pre.", "ln_post.")):
            side = "pre_layrnorm" if key.startswith("ln_pre.") else "post_layernorm"
            out[f"vision_model.{side}.{key.split('.', 1)[1]}"] = value
        elif m := re.match(r"transformer\.resblocks\.(\d+)\.(.*)", key):
            layer, rest = f"vision_model.encoder.layers.{m[1]}.", m[2]
            if rest.startswith("attn.in_proj_"):
                kind = rest.rsplit("_", 1)[1]
                for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0), strict=True):
                    out[f"{layer}self_attn.{name}.{kind}"] = part
                continue
            for old, new in _OPEN_CLIP:
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
            out[layer + rest] = value
    if "proj" in visual:
        out["visual_projection.weight"] = visual["proj"].t().contiguous()
    return out


def vision_config(state: dict, metadata: dict | None = None) -> Any:
    """transformers' CLIPVisionConfig of the tower whose weights are ``state``."""
    from transformers import CLIPVisionConfig

    metadata = metadata or {}
    patch = state["vision_model.embeddings.patch_embedding.weight"]
    hidden, patch_size = int(patch.shape[0]), int(patch.shape[-1])
    positions = int(state["vision_model.embeddings.position_embedding.weight"].shape[0])
    side = round((positions - 1) ** 0.5)
    layers = 1 + max(int(m.group(1)) for m in map(_LAYER.match, state) if m)
    heads = int(metadata.get("heads") or _HEADS.get(hidden) or max(1, hidden // 64))
    projection = state.get("visual_projection.weight")
    quick = hidden == 1024 and layers == 24  # OpenAI's ViT-L/14
    return CLIPVisionConfig(
        hidden_size=hidden, intermediate_size=int(state["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
        num_hidden_layers=layers, num_attention_heads=heads, image_size=side * patch_size, patch_size=patch_size,
        projection_dim=int(projection.shape[0]) if projection is not None else hidden,
        hidden_act=metadata.get("hidden_act") or ("quick_gelu" if quick else "gelu"), layer_norm_eps=1e-5)


def load_clip_vision(path: str | Path) -> Any:
    """A ``CLIPVisionModelWithProjection`` in eval mode (float32, CPU)."""
    import torch
    from transformers import CLIPVisionModelWithProjection

    path = Path(path)
    label = path.name
    tensors, metadata = read_tensors(path, label)
    state, activation = vision_state(tensors, label)
    if activation:
        metadata = {**metadata, "hidden_act": activation}
    config = vision_config(state, metadata)
    with torch.device("meta"):
        model = CLIPVisionModelWithProjection(config)
    state = {k: v.float() for k, v in state.items() if not k.endswith("position_ids")}
    if "visual_projection.weight" not in state:  # a tower without projection: identity, as its embeds
        state["visual_projection.weight"] = torch.eye(config.hidden_size)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ClipVisionFileError(f"{label!r} does not match a CLIP vision tower: missing {sorted(missing)[:3]}, "
                                  f"unexpected {sorted(unexpected)[:3]}")
    model.vision_model.embeddings.register_buffer(
        "position_ids", torch.arange(model.vision_model.embeddings.num_positions).expand((1, -1)), persistent=False)
    return model.eval()


def save_clip_vision(model: Any, target: Path) -> Path:
    """Write ``model`` in the layout ``load_clip_vision`` reads (the tiny built-in uses it)."""
    from safetensors.torch import save_file

    cfg = model.config
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(target), metadata={"heads": str(cfg.num_attention_heads), "hidden_act": cfg.hidden_act})
    return target


def preprocess(image: Any, size: int, crop: bool = True) -> Any:
    """IMAGE ``[B, H, W, C]`` in 0..1 -> CLIP's ``pixel_values`` ``[B, 3, size, size]``, as
    ComfyUI's ``clip_preprocess``: the short side (crop) or both sides scaled to ``size``
    (bicubic, antialiased), centre-cropped, quantised to 8 bits, normalised."""
    import torch
    import torch.nn.functional as F

    x = image.float()
    if x.shape[-1] < 3:  # grey (and grey + alpha): the grey channel as R, G and B
        x = x[..., :1].expand(*x.shape[:-1], 3)
    x = x[..., :3].movedim(-1, 1)
    if crop:
        scale = size / min(x.shape[2], x.shape[3])
        scaled = (round(scale * x.shape[2]), round(scale * x.shape[3]))
    else:
        scaled = (size, size)
    x = F.interpolate(x, size=scaled, mode="bicubic", antialias=True)
    top, left = (x.shape[2] - size) // 2, (x.shape[3] - size) // 2
    x = x[:, :, top:top + size, left:left + size]
    x = torch.clip(255.0 * x, 0, 255).round() / 255.0
    mean = torch.tensor(MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
