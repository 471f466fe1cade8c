"""The preprocess pack on small images, against what ComfyUI and
comfyui_controlnet_aux compute: ComfyUI's Canny (kornia's algorithm),
controlnet_aux's CannyEdgePreprocessor (OpenCV's Canny at the detect
resolution) and TilePreprocessor (shrink, then Gaussian pyramid steps up)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from lcmgraph_nodes.preprocess import edges, nodes, tile


def run(cls, **inputs):
    return cls().execute(None, **inputs)["image"]


def step_image(height=16, width=16, at=8, batch=1):
    """Black left of column ``at``, white from it on: one vertical edge."""
    image = torch.zeros(batch, height, width, 3)
    image[:, :, at:] = 1.0
    return image


# -- ComfyUI's Canny (kornia) -----------------------------------------------------------
def test_canny_finds_a_step_edge_as_one_line():
    out = run(nodes.Canny, image=step_image(), low_threshold=0.4, high_threshold=0.8)
    assert out.shape == (1, 16, 16, 3) and torch.equal(out[..., 0], out[..., 2])
    assert set(out.unique().tolist()) == {0.0, 1.0}
    columns = out[0, 4:12, :, 0].nonzero()[:, 1].unique().tolist()
    # The blurred step's gradient peaks on both sides of the boundary equally: the
    # ±45° rounding keeps exactly one column, the first white one (kornia's tie rule).
    assert len(columns) == 1 and columns[0] in (7, 8)
    assert out[0, 4:12, columns[0], 0].eq(1).all()


def test_canny_magnitude_is_kornias_gradient():
    # A unit step blurred by the 5x5 Gaussian of sigma 1 and differentiated by the
    # unnormalised Sobel peaks at 4 * (g(0) + g(1)) / sum(g) for the 1-D Gaussian g, ~2.44.
    g = np.exp(-np.arange(-2, 3) ** 2 / 2.0)
    g /= g.sum()
    peak = 4 * (g[2] + g[1])
    below = run(nodes.Canny, image=step_image(), low_threshold=0.01, high_threshold=0.99)
    assert below.sum() > 0
    image = step_image() * (0.99 / peak) * 0.98  # a step whose gradient peaks just under 0.99
    assert run(nodes.Canny, image=image, low_threshold=0.01, high_threshold=0.99).sum() == 0
    image = step_image() * (0.99 / peak) * 1.02
    assert run(nodes.Canny, image=image, low_threshold=0.01, high_threshold=0.99).sum() > 0


def test_canny_hysteresis_keeps_weak_edges_only_next_to_strong_ones():
    # One vertical edge whose contrast fades from 1 (strong) at the top to 0.15 (weak) at the bottom.
    image = torch.zeros(1, 24, 24, 3)
    image[:, :, 12:] = torch.linspace(1.0, 0.15, 24).view(1, 24, 1, 1)
    found = edges.kornia_canny(image, 0.3, 0.99)
    assert found[0, 2:22].sum(dim=1).eq(1).all()  # the whole line, its weak part through hysteresis
    weak_alone = edges.kornia_canny(image[:, 18:], 0.3, 0.99)  # the faded part (contrast < 0.34) without a strong one
    assert weak_alone.sum() == 0


def test_canny_refuses_crossed_thresholds():
    assert nodes.Canny.check_inputs({"low_threshold": 0.8, "high_threshold": 0.4})[0][0] == "low_threshold"


# -- controlnet_aux's CannyEdgePreprocessor ---------------------------------------------
def test_canny_edge_preprocessor_is_opencvs_canny_at_the_detect_size():
    image = torch.rand(1, 40, 60, 3, generator=torch.Generator().manual_seed(0))
    out = run(nodes.CannyEdgePreprocessor, image=image, low_threshold=80, high_threshold=250, resolution=64)
    # The shorter side becomes 64: 40x60 -> 64x96 (enlarged: INTER_CUBIC), padded to 64 multiples, cut back.
    assert out.shape == (1, 64, 96, 3)
    pixels = np.asarray(image[0].numpy() * 255.0, dtype=np.uint8)
    big = cv2.resize(pixels, (96, 64), interpolation=cv2.INTER_CUBIC)
    padded = np.pad(big, [[0, 0], [0, 32], [0, 0]], mode="edge")  # width 96 -> 128
    expected = cv2.Canny(padded, 80, 250)[:, :96]
    ours = (out[0, ..., 0].numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(ours, expected)
    assert not np.array_equal(ours, cv2.Canny(big, 80, 250))  # the padding shows at the right border
    assert torch.equal(out[..., 0], out[..., 1]) and set(out.unique().tolist()) <= {0.0, 1.0}


def test_canny_edge_preprocessor_shrinks_with_area_and_pads_with_edges():
    image = step_image(100, 150, at=70)
    out = run(nodes.CannyEdgePreprocessor, image=image, low_threshold=100, high_threshold=200, resolution=64)
    assert out.shape == (1, 64, 96, 3)  # 100x150 -> 64x96
    padded, (h, w) = edges.resize_with_pad(np.asarray(image[0].numpy() * 255, dtype=np.uint8), 64, cv2.INTER_CUBIC)
    assert (h, w) == (64, 96) and padded.shape == (64, 128, 3)  # 96 -> 128: replicated columns
    assert np.array_equal(padded[:, 96:], np.repeat(padded[:, 95:96], 32, axis=1))
    columns = out[0, 10:50, :, 0].nonzero()[:, 1].unique().tolist()
    assert columns and all(40 <= c <= 50 for c in columns)  # the edge at 70/150 of the width, ~45 of 96


def test_thresholds_are_on_opencvs_8_bit_gradients():
    # Steps of 10, 40 and 80 grey levels: OpenCV's Sobel (L1) gives 4x that, 40, 160 and 320.
    image = torch.zeros(1, 64, 64, 3)
    for start, level in ((16, 10), (32, 50), (48, 130)):
        image[:, :, start:] = (level + 0.5) / 255  # + 0.5: exact after controlnet_aux's truncation to 8 bits

    def lines(low, high):
        out = run(nodes.CannyEdgePreprocessor, image=image, low_threshold=low, high_threshold=high, resolution=64)
        return len(out[0, 32, :, 0].nonzero())

    assert (lines(30, 35), lines(100, 200), lines(330, 400)) == (3, 1, 0)


# -- controlnet_aux's TilePreprocessor -------------------------------------------------
def test_tile_is_area_shrink_then_pyramid_up_at_sides_rounded_to_64():
    image = torch.rand(2, 70, 100, 3, generator=torch.Generator().manual_seed(2))
    out = run(nodes.TilePreprocessor, image=image, pyrUp_iters=2)
    assert out.shape == (2, 64, 128, 3)  # round(70/64)=1, round(100/64)=2
    pixels = np.asarray(image[1].numpy() * 255.0, dtype=np.uint8)
    expected = cv2.pyrUp(cv2.pyrUp(cv2.resize(pixels, (32, 16), interpolation=cv2.INTER_AREA)))
    assert np.array_equal((out[1].numpy() * 255).round().astype(np.uint8), expected)


def test_tile_blurs_more_with_more_iterations():
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(3))
    detail = [run(nodes.TilePreprocessor, image=image, pyrUp_iters=n).diff(dim=2).abs().mean().item() for n in (1, 3)]
    assert detail[0] > detail[1]


def test_tile_refuses_images_too_small_for_its_iterations():
    with pytest.raises(ValueError, match="too small for pyrUp_iters 7"):
        run(nodes.TilePreprocessor, image=torch.rand(1, 70, 70, 3), pyrUp_iters=7)
    assert tile.tile_size(31, 96) == (0, 128)  # why: a side under 32 rounds to 0


# -- controlnet_aux's BinaryPreprocessor and ColorPreprocessor --------------------------
def test_binary_is_white_above_the_threshold_on_opencvs_grey():
    image = torch.zeros(1, 64, 64, 3)
    image[:, :, 32:, 0] = (200 + 0.5) / 255  # red 200: OpenCV grey 0.299 * 200 = 60
    low = run(nodes.BinaryPreprocessor, image=image, bin_threshold=50, resolution=64)
    high = run(nodes.BinaryPreprocessor, image=image, bin_threshold=70, resolution=64)
    assert low.shape == (1, 64, 64, 3)
    assert low[0, :, 32:].eq(1).all() and low[0, :, :32].eq(0).all() and high.eq(0).all()
    otsu = run(nodes.BinaryPreprocessor, image=image, bin_threshold=0, resolution=64)
    assert torch.equal(otsu, low)  # Otsu splits the two tones


def test_color_is_blocks_of_64_pixels_at_the_detect_size():
    image = torch.rand(1, 96, 160, 3, generator=torch.Generator().manual_seed(4))
    out = run(nodes.ColorPreprocessor, image=image, resolution=128)
    assert out.shape == (1, 128, 213, 3)  # shorter side 128, 160 * 128 / 96 = 213.3
    pixels = np.asarray(image[0].numpy() * 255.0, dtype=np.uint8)
    resized = cv2.resize(pixels, (213, 128), interpolation=cv2.INTER_AREA)
    blocks = cv2.resize(resized, (3, 2), interpolation=cv2.INTER_CUBIC)
    expected = cv2.resize(blocks, (213, 128), interpolation=cv2.INTER_NEAREST)
    assert np.array_equal((out[0].numpy() * 255).round().astype(np.uint8), expected)
    assert len(np.unique(expected.reshape(-1, 3), axis=0)) <= 6
