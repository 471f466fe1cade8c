"""Depth Anything against the original network, written out here from its
published structure (DINOv2 with LayerScale, the DPT head with refinenets,
depth_anything/dpt.py) and run on a tiny checkpoint with the original key
names: our loader renames them to transformers' model, and both must give the
same depth. The pipelines follow comfyui_controlnet_aux's native detectors."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lcmgraph_nodes.preprocess import depth_anything as DA
from lcmgraph_nodes.preprocess import nodes

from .annotator_files import CHANNELS, FEATURES, GRID, WIDTH, original_state


def reference_depth(s: dict, x: torch.Tensor, taps) -> torch.Tensor:
    """The original DPT_DINOv2 forward (64-wide heads, as DINOv2's)."""
    b, _, height, width = x.shape
    rows, cols = height // 14, width // 14
    tokens = F.conv2d(x, s["pretrained.patch_embed.proj.weight"], s["pretrained.patch_embed.proj.bias"], stride=14)
    tokens = torch.cat([s["pretrained.cls_token"].expand(b, -1, -1), tokens.flatten(2).transpose(1, 2)], 1)
    pos = s["pretrained.pos_embed"]
    grid = pos[:, 1:].reshape(1, GRID, GRID, WIDTH).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((rows + 0.1) / GRID, (cols + 0.1) / GRID), mode="bicubic")
    tokens = tokens + torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, rows * cols, WIDTH)], 1)
    outs = []
    for i in range(max(taps) + 1):
        p = f"pretrained.blocks.{i}."
        y = F.layer_norm(tokens, (WIDTH,), s[p + "norm1.weight"], s[p + "norm1.bias"], eps=1e-6)
        heads = WIDTH // 64
        q, k, v = (t.reshape(b, -1, heads, 64).transpose(1, 2)
                   for t in F.linear(y, s[p + "attn.qkv.weight"], s[p + "attn.qkv.bias"]).chunk(3, -1))
        att = (torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(64), -1) @ v).transpose(1, 2).reshape(b, -1, WIDTH)
        tokens = tokens + s[p + "ls1.gamma"] * F.linear(att, s[p + "attn.proj.weight"], s[p + "attn.proj.bias"])
        y = F.layer_norm(tokens, (WIDTH,), s[p + "norm2.weight"], s[p + "norm2.bias"], eps=1e-6)
        y = F.linear(F.gelu(F.linear(y, s[p + "mlp.fc1.weight"], s[p + "mlp.fc1.bias"])), s[p + "mlp.fc2.weight"],
                     s[p + "mlp.fc2.bias"])
        tokens = tokens + s[p + "ls2.gamma"] * y
        if i in taps:
            outs.append(F.layer_norm(tokens, (WIDTH,), s["pretrained.norm.weight"], s["pretrained.norm.bias"], eps=1e-6))
    h = "depth_head."
    layers = []
    for i, t in enumerate(outs):
        m = t[:, 1:].transpose(1, 2).reshape(b, WIDTH, rows, cols)
        m = F.conv2d(m, s[f"{h}projects.{i}.weight"], s[f"{h}projects.{i}.bias"])
        if i == 0:
            m = F.conv_transpose2d(m, s[f"{h}resize_layers.0.weight"], s[f"{h}resize_layers.0.bias"], stride=4)
        elif i == 1:
            m = F.conv_transpose2d(m, s[f"{h}resize_layers.1.weight"], s[f"{h}resize_layers.1.bias"], stride=2)
        elif i == 3:
            m = F.conv2d(m, s[f"{h}resize_layers.3.weight"], s[f"{h}resize_layers.3.bias"], stride=2, padding=1)
        layers.append(F.conv2d(m, s[f"{h}scratch.layer{i + 1}_rn.weight"], padding=1))

    def unit(n, u, z):
        p = f"{h}scratch.refinenet{n}.resConfUnit{u}."
        y = F.conv2d(F.relu(z), s[p + "conv1.weight"], s[p + "conv1.bias"], padding=1)
        return F.conv2d(F.relu(y), s[p + "conv2.weight"], s[p + "conv2.bias"], padding=1) + z

    def fuse(n, z, skip=None, size=None):
        if skip is not None:
            z = z + unit(n, 1, skip)
        z = unit(n, 2, z)
        z = F.interpolate(z, size=size, scale_factor=None if size else 2, mode="bilinear", align_corners=True)
        return F.conv2d(z, s[f"{h}scratch.refinenet{n}.out_conv.weight"], s[f"{h}scratch.refinenet{n}.out_conv.bias"])

    path = fuse(4, layers[3], size=layers[2].shape[2:])
    path = fuse(3, path, layers[2], size=layers[1].shape[2:])
    path = fuse(2, path, layers[1], size=layers[0].shape[2:])
    path = fuse(1, path, layers[0])
    out = F.conv2d(path, s[f"{h}scratch.output_conv1.weight"], s[f"{h}scratch.output_conv1.bias"], padding=1)
    out = F.interpolate(out, (rows * 14, cols * 14), mode="bilinear", align_corners=True)
    out = F.relu(F.conv2d(out, s[f"{h}scratch.output_conv2.0.weight"], s[f"{h}scratch.output_conv2.0.bias"], padding=1))
    return F.relu(F.conv2d(out, s[f"{h}scratch.output_conv2.2.weight"], s[f"{h}scratch.output_conv2.2.bias"]))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("annotators")
    state = original_state()
    torch.save(state, folder / "depth_anything_vitl14.pth")
    torch.save(original_state(1), folder / "depth_anything_v2_vitl.pth")
    return folder, state


def picture(height=60, width=80):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x + y) % 37 * 6], -1).astype(np.uint8)
    image[20:40, 30:60] = (230, 40, 40)
    return image


def test_the_loader_gives_the_original_networks_depth(files):
    folder, state = files
    model = DA.load_model(folder / "depth_anything_vitl14.pth", 1)
    assert model.config.backbone_config.out_indices == [1, 2, 3, 4]  # V1: the last four blocks
    x = DA.network_input(picture())  # non-square: the positional grid is interpolated
    assert x.shape == (1, 3, 518, 686)
    with torch.no_grad():
        ours = model(pixel_values=x).predicted_depth
        expected = reference_depth(state, x, taps=(0, 1, 2, 3))[:, 0]
    assert ours.shape == expected.shape == (1, 518, 686)
    assert float(expected.std()) > 0.01
    scale = float(expected.abs().max())  # random weights: depths up to ~1e3; fp32 sums differ by ~1e-7 of that
    torch.testing.assert_close(ours, expected, atol=1e-5 * scale, rtol=1e-4)


def test_v2_taps_the_blocks_its_release_names():
    config = DA._config(original_state(depth=12), 2)
    assert config.backbone_config.out_indices == [3, 6, 9, 12]  # blocks 2, 5, 8, 11 of a ViT-S/B
    assert DA._config(original_state(depth=12), 1).backbone_config.out_indices == [9, 10, 11, 12]
    assert config.neck_hidden_sizes == list(CHANNELS) and config.fusion_hidden_size == FEATURES


@pytest.mark.parametrize(("size", "expected"), [((480, 640), (518, 686)), ((518, 518), (518, 518)),
                                                 ((1000, 300), (1722, 518)), ((64, 64), (518, 518))])
def test_the_input_is_at_least_518_in_multiples_of_14(size, expected):
    x = DA.network_input(np.zeros((*size, 3), np.uint8))
    assert tuple(x.shape[2:]) == expected
    torch.testing.assert_close(x[0, :, 0, 0], -torch.tensor(DA._MEAN) / torch.tensor(DA._STD))  # ImageNet-normalised


def test_v1_hint_is_the_depth_at_the_detect_size_scaled_to_8_bits(files):
    folder, state = files
    model = DA.load_model(folder / "depth_anything_vitl14.pth", 1)
    image = picture()
    hint = DA.depth_v1(image, model, 64)
    with torch.no_grad():
        depth = reference_depth(state, DA.network_input(image), taps=(0, 1, 2, 3))
    depth = F.interpolate(depth, size=(64, 85), mode="bilinear", align_corners=False)[0, 0]
    expected = ((depth - depth.min()) / (depth.max() - depth.min()) * 255).numpy().astype(np.uint8)
    assert hint.shape == (64, 85, 3) and np.array_equal(hint[:, :, 0], hint[:, :, 2])
    assert hint.min() == 0 and hint.max() == 255
    assert np.abs(hint[:, :, 0].astype(int) - expected).max() <= 1  # 8-bit truncation of values 1e-4 apart


def test_v2_hint_is_resized_from_the_full_image(files):
    folder, _ = files
    model = DA.load_model(folder / "depth_anything_v2_vitl.pth", 2)
    image = picture()
    hint = DA.depth_v2(image, model, 128)
    with torch.no_grad():
        depth = model(pixel_values=DA.network_input(image)).predicted_depth[:, None]
    full = F.interpolate(depth, size=(60, 80), mode="bilinear", align_corners=True)[0, 0]
    full = ((full - full.min()) / (full.max() - full.min()) * 255).numpy().astype(np.uint8)
    expected = cv2.resize(np.repeat(full[:, :, None], 3, 2), (171, 128), interpolation=cv2.INTER_CUBIC)
    assert hint.shape == (128, 171, 3)
    assert np.array_equal(hint, expected)


class Ctx:
    def __init__(self, folder):
        self.folder = folder

    def resolve_file(self, folder, name):
        assert folder == "annotators"
        if not (self.folder / name).is_file():
            raise FileNotFoundError(f"no file {name!r} in folder {folder!r}")
        return self.folder / name


def test_the_nodes_find_their_files_and_name_what_is_wrong(files, tmp_path):
    folder, _ = files
    image = torch.from_numpy(picture().astype(np.float32) / 255)[None].repeat(2, 1, 1, 1)
    out = nodes.DepthAnythingPreprocessor().execute(Ctx(folder), image=image, ckpt_name="depth_anything_vitl14.pth",
                                                    resolution=64)["image"]
    assert out.shape == (2, 64, 85, 3) and torch.equal(out[0], out[1])
    out = nodes.DepthAnythingV2Preprocessor().execute(Ctx(folder), image=image, ckpt_name="depth_anything_v2_vitl.pth",
                                                      resolution=64)["image"]
    assert out.shape == (2, 64, 85, 3)
    with pytest.raises(FileNotFoundError, match=r"DepthAnythingPreprocessor needs depth_anything_vits14.pth \(LiheYoung"):
        nodes.DepthAnythingPreprocessor().execute(Ctx(folder), image=image, ckpt_name="depth_anything_vits14.pth",
                                                  resolution=64)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "depth_anything_vits14.pth")
    with pytest.raises(DA.DepthAnythingFileError, match="'depth_anything_vits14.pth' misses 'pretrained.cls_token'"):
        DA.load_model(tmp_path / "depth_anything_vits14.pth", 1)
    broken = original_state()
    del broken["depth_head.scratch.refinenet2.out_conv.bias"]
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(DA.DepthAnythingFileError, match="not a Depth Anything checkpoint: Missing key.*fusion_stage"):
        DA.load_model(tmp_path / "broken.pth", 1)


def test_a_giant_file_is_named_as_such(tmp_path):
    state = original_state()
    state["pretrained.blocks.0.mlp.w12.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "depth_anything_v2_vitg.pth")
    with pytest.raises(DA.DepthAnythingFileError, match="'depth_anything_v2_vitg.pth' is a ViT-g file"):
        DA.load_model(tmp_path / "depth_anything_v2_vitg.pth", 2)
