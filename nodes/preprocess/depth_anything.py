"""Depth Anything (V1 and V2) depth hints as comfyui_controlnet_aux's native
detectors computed them (the pipeline the depth ControlNets were trained on).

* V1 (DepthAnythingPreprocessor): the full-size image in 0..1, resized with
  cubic interpolation so that both sides reach 518 and are multiples of 14
  ("lower bound"), ImageNet-normalised; the network's relative depth resized
  (bilinear) to the detect size, min-max scaled to 0..255 and truncated to
  8 bits. Near is bright.
* V2 (DepthAnythingV2Preprocessor): the same input; the depth resized back to
  the full image size (bilinear, corners aligned), scaled to 8 bits, then
  resized to the detect size as every hint is (area when shrinking).

The network is DINOv2 + the DPT head. It is built from transformers'
``DepthAnythingForDepthEstimation`` with the sizes read from the file (width,
depth, head features, neck channels), so ViT-S/B/L files and the tiny test
files load alike. The released ``.pth`` files (``depth_anything_vit{s,b,l}14.pth``,
``depth_anything_v2_vit{s,b,l}.pth``) keep the original module names; they are
renamed here to transformers' (after transformers' own conversion script:
``qkv`` split into query, key, value by rows; ``refinenet{i}`` is fusion layer
``4 - i``) and loaded strictly, through ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from .edges import detect_size, resize_with_pad

FOLDER = "annotators"
V1_FILES = ("depth_anything_vitl14.pth", "depth_anything_vitb14.pth", "depth_anything_vits14.pth")
V2_FILES = ("depth_anything_v2_vitl.pth", "depth_anything_v2_vitg.pth", "depth_anything_v2_vitb.pth",
            "depth_anything_v2_vits.pth")
WHERE = {1: "LiheYoung/Depth-Anything (a Hugging Face space, checkpoints/)",
         2: "depth-anything/Depth-Anything-V2-Small / -Base / -Large on Hugging Face"}
INPUT_SIDE = 518  # the network's training size (37 x 37 patches of 14)
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# V2 taps these blocks (0-based) of a 12 / 24 / 40-block ViT; V1 taps the last four.
_V2_TAPS = {12: (2, 5, 8, 11), 24: (4, 11, 17, 23), 40: (9, 19, 29, 39)}


class DepthAnythingFileError(ValueError):
    """A Depth Anything file that cannot be used; the message names it."""


def _to_transformers(state: dict) -> dict:
    """The original checkpoint's names -> transformers' DepthAnythingForDepthEstimation names."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        block = re.match(r"pretrained\.blocks\.(\d+)\.(.+)", key)
        if block:
            i, rest = block.groups()
            prefix = f"backbone.encoder.layer.{i}."
            if rest.startswith("attn.qkv."):
                kind = rest.rsplit(".", 1)[1]
                for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0), strict=True):
                    out[f"{prefix}attention.{name}.{kind}"] = part
                continue
            rest = (rest.replace("attn.proj.", "attention.o_proj.").replace("ls1.gamma", "layer_scale1.lambda1")
                    .replace("ls2.gamma", "layer_scale2.lambda1"))
            out[prefix + rest] = value
            continue
        simple = {"pretrained.cls_token": "backbone.embeddings.cls_token",
                  "pretrained.mask_token": "backbone.embeddings.mask_token",
                  "pretrained.pos_embed": "backbone.embeddings.position_embeddings"}
        if key in simple:
            out[simple[key]] = value
            continue
        for old, new in (("pretrained.patch_embed.proj.", "backbone.embeddings.patch_embeddings.projection."),
                         ("pretrained.norm.", "backbone.layernorm."),
                         ("depth_head.scratch.output_conv1.", "head.conv1."),
                         ("depth_head.scratch.output_conv2.0.", "head.conv2."),
                         ("depth_head.scratch.output_conv2.2.", "head.conv3.")):
            if key.startswith(old):
                out[new + key[len(old):]] = value
                break
        else:
            out[_head_key(key)] = value
    return out


def _head_key(key: str) -> str:
    if m := re.match(r"depth_head\.projects\.(\d)\.(.+)", key):
        return f"neck.reassemble_stage.layers.{m[1]}.projection.{m[2]}"
    if m := re.match(r"depth_head\.resize_layers\.(\d)\.(.+)", key):
        return f"neck.reassemble_stage.layers.{m[1]}.resize.{m[2]}"
    if m := re.match(r"depth_head\.scratch\.layer(\d)_rn\.(.+)", key):
        return f"neck.convs.{int(m[1]) - 1}.{m[2]}"
    if m := re.match(r"depth_head\.scratch\.refinenet(\d)\.(.+)", key):
        rest = m[2].replace("out_conv.", "projection.")
        rest = re.sub(r"resConfUnit(\d)\.conv(\d)", r"residual_layer\1.convolution\2", rest)
        return f"neck.fusion_stage.layers.{4 - int(m[1])}.{rest}"
    return key  # unknown: the strict load names it


def _config(state: dict, version: int):
    """transformers' config for the network whose original weights are ``state``."""
    from transformers import DepthAnythingConfig, Dinov2Config

    if "pretrained.blocks.0.mlp.w12.weight" in state:
        raise DepthAnythingFileError("is a ViT-g file (SwiGLU blocks), which was never released and is not supported")
    try:
        width = state["pretrained.cls_token"].shape[-1]
        grid = math.isqrt(state["pretrained.pos_embed"].shape[1] - 1)
        depth = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("pretrained.blocks."))
        features = state["depth_head.scratch.layer1_rn.weight"].shape[0]
        channels = [state[f"depth_head.projects.{i}.weight"].shape[0] for i in range(4)]
        hidden = state["pretrained.blocks.0.mlp.fc1.weight"].shape[0]
    except (KeyError, ValueError, IndexError) as exc:
        raise DepthAnythingFileError(f"misses {exc} of a Depth Anything checkpoint") from exc
    if version == 1 or depth < 4:
        taps = range(depth - 4, depth)
    else:
        taps = _V2_TAPS.get(depth) or tuple(round((i + 1) * depth / 4) - 1 for i in range(4))
    backbone = Dinov2Config(hidden_size=width, num_hidden_layers=depth, num_attention_heads=max(1, width // 64),
                            mlp_ratio=hidden // width, image_size=grid * 14, patch_size=14,
                            out_indices=[t + 1 for t in taps], apply_layernorm=True, reshape_hidden_states=False)
    return DepthAnythingConfig(backbone_config=backbone, fusion_hidden_size=features, neck_hidden_sizes=channels,
                               reassemble_hidden_size=width, patch_size=14, depth_estimation_type="relative",
                               max_depth=1)


def _original_position_interpolation(embeddings) -> None:
    """DINOv2's own positional-embedding resize (bicubic by scale factor (n + 0.1) / grid), which
    the Depth Anything weights were used with; transformers resizes to a size, ~1e-3 apart."""
    import torch
    import torch.nn.functional as F

    def interpolate(tokens, height: int, width: int):
        table = embeddings.position_embeddings
        grid = math.isqrt(table.shape[1] - 1)
        rows, cols = height // 14, width // 14
        if rows * cols == grid * grid and rows == cols:
            return table
        patch = table[:, 1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2).float()
        patch = F.interpolate(patch, scale_factor=((rows + 0.1) / grid, (cols + 0.1) / grid), mode="bicubic")
        patch = patch.to(table.dtype).permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return torch.cat([table[:, :1], patch], dim=1)

    embeddings.interpolate_pos_encoding = interpolate


def load_model(path: str | Path, version: int):
    """The depth network with the weights of ``path`` (eval mode, float32, CPU)."""
    from transformers import DepthAnythingForDepthEstimation

    from lcmgraph.weight_files import WeightFileError, read_weights

    path = Path(path)
    try:
        state, _ = read_weights(path)
        state = {k.removeprefix("module."): v for k, v in dict(state).items()}
        config = _config(state, version)
    except (WeightFileError, DepthAnythingFileError) as exc:
        raise DepthAnythingFileError(f"Depth Anything file {path.name!r} {exc}") from exc
    model = DepthAnythingForDepthEstimation(config)
    try:
        model.load_state_dict({k: v.float() for k, v in _to_transformers(state).items()}, strict=True)
    except RuntimeError as exc:  # "Error(s) in loading ...:\n\tMissing key(s) ...": the second line says what
        lines = str(exc).splitlines()
        detail = (lines[1] if len(lines) > 1 else lines[0]).strip()[:300]
        raise DepthAnythingFileError(f"{path.name!r} is not a Depth Anything checkpoint: {detail}") from exc
    _original_position_interpolation(model.backbone.embeddings)
    return model.eval()


def network_input(image):
    """uint8 ``[H, W, 3]`` -> the network's input ``[1, 3, h, w]``: both sides >= 518 and
    multiples of 14, scaled by the larger factor, cubic, ImageNet-normalised."""
    import cv2
    import numpy as np
    import torch

    height, width = image.shape[:2]
    scale = max(INPUT_SIDE / height, INPUT_SIDE / width)

    def side(x: int) -> int:
        n = round(scale * x / 14) * 14
        return n if n >= INPUT_SIDE else math.ceil(scale * x / 14) * 14

    x = cv2.resize(image.astype(np.float32) / 255.0, (side(width), side(height)), interpolation=cv2.INTER_CUBIC)
    x = (x - np.array(_MEAN, np.float32)) / np.array(_STD, np.float32)
    return torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()


def _relative_depth(model, image):
    import torch

    device = next(model.parameters()).device
    with torch.no_grad():
        return model(pixel_values=network_input(image).to(device)).predicted_depth[:, None].float().cpu()


def _to_uint8(depth):
    import numpy as np

    depth = (depth - depth.min()) / (depth.max() - depth.min()) * 255.0
    return np.repeat(depth.numpy().astype(np.uint8)[:, :, None], 3, axis=2)


def depth_v1(image, model, resolution: int):
    """One uint8 ``[H, W, 3]`` image -> its V1 depth hint at the detect size (uint8, 3 equal channels)."""
    import torch.nn.functional as F

    size = detect_size(image.shape[0], image.shape[1], resolution)
    depth = F.interpolate(_relative_depth(model, image), size=size, mode="bilinear", align_corners=False)
    return _to_uint8(depth[0, 0])


def depth_v2(image, model, resolution: int):
    """One uint8 ``[H, W, 3]`` image -> its V2 depth hint at the detect size (uint8, 3 equal channels)."""
    import cv2
    import torch.nn.functional as F

    depth = F.interpolate(_relative_depth(model, image), size=image.shape[:2], mode="bilinear", align_corners=True)
    padded, (height, width) = resize_with_pad(_to_uint8(depth[0, 0]), resolution, cv2.INTER_CUBIC)
    return padded[:height, :width].copy()
