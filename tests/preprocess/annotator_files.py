"""Tiny annotator files under the released checkpoints' own key names, for the
preprocessor tests and the corpus (which names the real files)."""

from __future__ import annotations

from pathlib import Path

import torch

WIDTH, DEPTH, GRID, FEATURES, CHANNELS = 128, 4, 4, 16, (8, 16, 32, 64)  # two 64-wide heads, as DINOv2's


def original_state(seed=0, depth=DEPTH) -> dict:
    """Random weights under the released files' names (pretrained.*, depth_head.*)."""
    gen = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return torch.randn(shape, generator=gen) * scale

    s = {"pretrained.cls_token": r(1, 1, WIDTH), "pretrained.mask_token": r(1, WIDTH),
         "pretrained.pos_embed": r(1, 1 + GRID * GRID, WIDTH),
         "pretrained.patch_embed.proj.weight": r(WIDTH, 3, 14, 14, scale=0.05), "pretrained.patch_embed.proj.bias": r(WIDTH),
         "pretrained.norm.weight": 1 + r(WIDTH), "pretrained.norm.bias": r(WIDTH)}
    for i in range(depth):
        b = f"pretrained.blocks.{i}."
        s |= {b + "norm1.weight": 1 + r(WIDTH), b + "norm1.bias": r(WIDTH),
              b + "attn.qkv.weight": r(3 * WIDTH, WIDTH), b + "attn.qkv.bias": r(3 * WIDTH),
              b + "attn.proj.weight": r(WIDTH, WIDTH), b + "attn.proj.bias": r(WIDTH), b + "ls1.gamma": r(WIDTH, scale=0.5),
              b + "norm2.weight": 1 + r(WIDTH), b + "norm2.bias": r(WIDTH),
              b + "mlp.fc1.weight": r(4 * WIDTH, WIDTH), b + "mlp.fc1.bias": r(4 * WIDTH),
              b + "mlp.fc2.weight": r(WIDTH, 4 * WIDTH), b + "mlp.fc2.bias": r(WIDTH), b + "ls2.gamma": r(WIDTH, scale=0.5)}
    h = "depth_head."
    for i, c in enumerate(CHANNELS):
        s |= {f"{h}projects.{i}.weight": r(c, WIDTH, 1, 1), f"{h}projects.{i}.bias": r(c),
              f"{h}scratch.layer{i + 1}_rn.weight": r(FEATURES, c, 3, 3)}
    for i, (c, k) in {0: (CHANNELS[0], 4), 1: (CHANNELS[1], 2)}.items():  # ConvTranspose: [in, out, k, k]
        s |= {f"{h}resize_layers.{i}.weight": r(c, c, k, k), f"{h}resize_layers.{i}.bias": r(c)}
    s |= {f"{h}resize_layers.3.weight": r(CHANNELS[3], CHANNELS[3], 3, 3), f"{h}resize_layers.3.bias": r(CHANNELS[3])}
    for n in range(1, 5):
        p = f"{h}scratch.refinenet{n}."
        s |= {p + "out_conv.weight": r(FEATURES, FEATURES, 1, 1), p + "out_conv.bias": r(FEATURES)}
        for unit in (1, 2):
            for conv in (1, 2):
                s |= {f"{p}resConfUnit{unit}.conv{conv}.weight": r(FEATURES, FEATURES, 3, 3),
                      f"{p}resConfUnit{unit}.conv{conv}.bias": r(FEATURES)}
    s |= {f"{h}scratch.output_conv1.weight": r(FEATURES // 2, FEATURES, 3, 3), f"{h}scratch.output_conv1.bias": r(FEATURES // 2),
          f"{h}scratch.output_conv2.0.weight": r(32, FEATURES // 2, 3, 3), f"{h}scratch.output_conv2.0.bias": r(32),
          f"{h}scratch.output_conv2.2.weight": r(1, 32, 1, 1), f"{h}scratch.output_conv2.2.bias": 1 + r(1)}
    return s


def save_annotators(folder: Path) -> Path:
    """``folder`` with tiny stand-ins for the annotator files the corpus names."""
    from lcmgraph_nodes.preprocess import lineart

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(lineart.generator().state_dict(), folder / "sk_model.pth")
    for name in ("depth_anything_vitl14.pth", "depth_anything_v2_vitl.pth"):
        torch.save(original_state(), folder / name)
    return folder
