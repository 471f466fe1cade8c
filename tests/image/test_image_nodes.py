"""The image pack's nodes against ComfyUI's formulas on small tensors:
resizing (each method, crop, aspect ratio, total pixels), crop, outpaint
padding and its feathered mask, batch, invert, empty images, and the mask
nodes (channels, composite operations, grow/shrink, feather)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lcmgraph_nodes.image import images, masks
from lcmgraph_nodes.image.ops import resample
from lcmgraph_nodes.image.ops.sizes import Size
from PIL import Image


def run(cls, **inputs):
    return cls().execute(None, **inputs)


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# -- resizing ------------------------------------------------------------------------
@pytest.mark.parametrize("method", resample.INTERPOLATE)
def test_interpolating_methods_are_torchs_modes(method):
    image = rand(2, 5, 7, 3)
    out = run(images.ImageScale, image=image, upscale_method=method, width=11, height=9, crop="disabled")["image"]
    expected = torch.nn.functional.interpolate(image.movedim(-1, 1), size=(9, 11), mode=method).movedim(1, -1)
    assert out.shape == (2, 9, 11, 3)
    assert torch.equal(out, expected)


def test_lanczos_is_pils_filter_on_8_bit_pictures():
    image = rand(1, 6, 8, 3)
    out = run(images.ImageScale, image=image, upscale_method="lanczos", width=13, height=5, crop="disabled")["image"]
    pil = Image.fromarray(np.clip(255.0 * image[0].numpy(), 0, 255).astype(np.uint8))  # truncated, not rounded
    expected = np.asarray(pil.resize((13, 5), Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
    assert np.array_equal(out[0].numpy(), expected)


def test_center_crop_cuts_to_the_new_aspect_ratio_first():
    image = torch.arange(4 * 8, dtype=torch.float32).reshape(1, 4, 8, 1)
    # 8x4 -> 4x4: x = round((8 - 8 * (1 / 2)) / 2) = 2 columns off each side
    out = run(images.ImageScale, image=image, upscale_method="nearest-exact", width=4, height=4, crop="center")["image"]
    assert torch.equal(out, image[:, :, 2:6, :])
    tall = torch.arange(9 * 3, dtype=torch.float32).reshape(1, 9, 3, 1)
    out = run(images.ImageScale, image=tall, upscale_method="nearest-exact", width=3, height=3, crop="center")["image"]
    assert torch.equal(out, tall[:, 3:6])


def test_a_zero_side_keeps_the_aspect_ratio_and_both_zero_pass_through():
    image = rand(1, 30, 40, 3)
    assert run(images.ImageScale, image=image, upscale_method="bilinear", width=0, height=15, crop="disabled")[
        "image"].shape == (1, 15, 20, 3)
    assert run(images.ImageScale, image=image, upscale_method="bilinear", width=10, height=0, crop="disabled")[
        "image"].shape == (1, 8, 10, 3)  # round(30 * 10 / 40) = round(7.5) = 8
    assert run(images.ImageScale, image=image, upscale_method="bilinear", width=0, height=0, crop="center")[
        "image"] is image


def test_scale_by_rounds_each_side():
    image = rand(1, 5, 7, 3)
    out = run(images.ImageScaleBy, image=image, upscale_method="area", scale_by=1.5)["image"]
    assert out.shape == (1, round(5 * 1.5), round(7 * 1.5), 3) == (1, 8, 10, 3)  # round(7.5) = 8, round(10.5) = 10


@pytest.mark.parametrize("w, h, mp, steps", [(640, 480, 1.0, 1), (100, 300, 0.25, 1), (640, 480, 1.0, 64)])
def test_total_pixels_keeps_the_aspect_ratio(w, h, mp, steps):
    scale = math.sqrt(mp * 1024 * 1024 / (w * h))
    expected = (round(w * scale / steps) * steps, round(h * scale / steps) * steps)
    assert resample.total_pixels(w, h, mp, steps) == expected
    out = run(images.ImageScaleToTotalPixels, image=rand(1, 12, 16, 3), upscale_method="bilinear", megapixels=0.0003,
              resolution_steps=1)["image"]
    assert out.shape[1:3] == resample.total_pixels(16, 12, 0.0003)[::-1]


# -- bislerp ------------------------------------------------------------------------------
def _slerp_ref(a, b, t):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    ua = a / na if na else np.zeros_like(a)
    ub = b / nb if nb else np.zeros_like(b)
    dot = float(ua @ ub)
    if dot > 1 - 1e-5:
        return a
    if dot < 1e-5 - 1:
        return a * (1 - t) + b * t
    omega = math.acos(dot)
    out = math.sin((1 - t) * omega) / math.sin(omega) * ua + math.sin(t * omega) / math.sin(omega) * ub
    return out * (na * (1 - t) + nb * t)


def _axis_ref(old, new):
    """Left / right neighbour and fraction for each output position (torch's
    bilinear sampling, corners not aligned)."""
    out = []
    for o in range(new):
        p = min(max((o + 0.5) * old / new - 0.5, 0.0), old - 1)
        left = int(math.floor(p))
        out.append((left, min(left + 1, old - 1), p - left))
    return out


def test_bislerp_slerps_channel_vectors_along_width_then_height():
    x = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(3))
    out = resample.resize(x, 8, 7, "bislerp").double().numpy()
    data = x.double().numpy()
    for n in range(2):
        rows = np.stack([[_slerp_ref(data[n, :, r, a], data[n, :, r, b], t) for a, b, t in _axis_ref(5, 8)]
                         for r in range(3)])  # [3, 8, C]
        ref = np.stack([[_slerp_ref(rows[a, c], rows[b, c], t) for c in range(8)] for a, b, t in _axis_ref(3, 7)])
        assert np.abs(ref - out[n].transpose(1, 2, 0)).max() < 1e-5


def test_bislerp_scales_with_the_values():
    # lcmgraph's latents are ComfyUI's times the VAE's factor: the resize commutes with it.
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(resample.resize(x * 0.18215, 6, 6, "bislerp"), resample.resize(x, 6, 6, "bislerp") * 0.18215,
                          atol=1e-6)


# -- crop, pad, batch, invert, empty ---------------------------------------------------------
def test_crop_stops_at_the_edge_and_clamps_its_corner():
    image = rand(1, 10, 12, 3)
    assert torch.equal(run(images.ImageCrop, image=image, width=5, height=4, x=3, y=2)["image"], image[:, 2:6, 3:8])
    assert torch.equal(run(images.ImageCrop, image=image, width=5, height=4, x=50, y=50)["image"], image[:, 9:10, 11:12])


def _outpaint_reference(h, w, left, top, right, bottom, feathering):
    """ComfyUI's double loop over the old image."""
    t = np.zeros((h, w), dtype=np.float32)
    if feathering > 0 and feathering * 2 < h and feathering * 2 < w:
        for i in range(h):
            for j in range(w):
                d = min(i if top != 0 else h, h - i if bottom != 0 else h, j if left != 0 else w, w - j if right != 0 else w)
                if d < feathering:
                    v = (feathering - d) / feathering
                    t[i, j] = v * v
    mask = np.ones((h + top + bottom, w + left + right), dtype=np.float32)
    mask[top:top + h, left:left + w] = t
    return mask


@pytest.mark.parametrize("pads, feathering", [((8, 0, 16, 8), 3), ((0, 8, 0, 0), 4), ((8, 8, 8, 8), 10),
                                              ((8, 0, 0, 0), 0)])
def test_outpaint_padding_and_its_feathered_mask(pads, feathering):
    left, top, right, bottom = pads
    image = rand(2, 12, 14, 3)
    out = run(images.ImagePadForOutpaint, image=image, left=left, top=top, right=right, bottom=bottom,
              feathering=feathering)
    padded, mask = out["image"], out["mask"]
    assert padded.shape == (2, 12 + top + bottom, 14 + left + right, 3)
    assert torch.equal(padded[:, top:top + 12, left:left + 14], image)
    border = torch.ones(padded.shape[1:3], dtype=torch.bool)
    border[top:top + 12, left:left + 14] = False
    assert torch.all(padded[:, border] == 0.5)
    assert mask.shape == (1, *padded.shape[1:3])
    assert np.array_equal(mask[0].numpy(), _outpaint_reference(12, 14, left, top, right, bottom, feathering))


def test_batch_resizes_the_second_images_to_the_first():
    one, two = rand(1, 8, 8, 3), rand(2, 4, 6, 3, seed=1)
    out = run(images.ImageBatch, image1=one, image2=two)["image"]
    assert out.shape == (3, 8, 8, 3)
    expected = resample.resize(resample.center_crop(two.movedim(-1, 1), 8, 8), 8, 8, "bilinear").movedim(1, -1)
    assert torch.equal(out[1:], expected)


def test_invert_and_empty_image():
    image = rand(1, 2, 2, 3)
    assert torch.equal(run(images.ImageInvert, image=image)["image"], 1.0 - image)
    out = run(images.EmptyImage, width=3, height=2, batch=2, color=0xFF8000)["image"]
    assert out.shape == (2, 2, 3, 3)
    assert out[0, 0, 0].tolist() == pytest.approx([1.0, 128 / 255, 0.0])


# -- masks ----------------------------------------------------------------------------
def test_image_and_mask_channels():
    image = rand(2, 3, 4, 3)
    assert torch.equal(run(masks.ImageToMask, image=image, channel="green")["mask"], image[..., 1])
    with pytest.raises(ValueError, match="no alpha channel"):
        run(masks.ImageToMask, image=image, channel="alpha")
    mask = rand(2, 3, 4)
    grey = run(masks.MaskToImage, mask=mask)["image"]
    assert grey.shape == (2, 3, 4, 3) and all(torch.equal(grey[..., c], mask) for c in range(3))
    assert torch.equal(run(masks.InvertMask, mask=mask)["mask"], 1.0 - mask)
    solid = run(masks.SolidMask, value=0.25, width=3, height=2)["mask"]
    assert solid.shape == (1, 2, 3) and torch.all(solid == 0.25)


@pytest.mark.parametrize("operation, expected", [
    ("multiply", [[0.5, 0.0], [0.0, 0.0]]),
    ("add", [[1.0, 0.6], [0.0, 1.0]]),       # 1.5 clamped
    ("subtract", [[0.0, 0.0], [0.0, 0.0]]),  # negatives clamped
    ("and", [[0.0, 0.0], [0.0, 0.0]]),       # 0.5 rounds to 0 (half to even), as torch.round does
    ("or", [[1.0, 1.0], [0.0, 1.0]]),        # 0.6 rounds to 1
    ("xor", [[1.0, 1.0], [0.0, 1.0]]),
])
def test_mask_composite_operations(operation, expected):
    destination = torch.tensor([[[0.0, 0.2, 0.2], [0.0, 0.5, 0.0], [0.0, 0.0, 0.0]]])
    source = torch.tensor([[[1.0, 0.6], [0.0, 1.0], [9.0, 9.0]]])  # its last row falls off the edge
    out = run(masks.MaskComposite, destination=destination, source=source, x=1, y=1, operation=operation)["mask"]
    assert torch.equal(out[0, 0], destination[0, 0]) and torch.equal(out[0, :, 0], destination[0, :, 0])
    assert torch.allclose(out[0, 1:, 1:], torch.tensor(expected))


def test_mask_composite_past_the_edge_changes_nothing_but_the_clamp():
    destination = torch.tensor([[[2.0, 0.5]]])
    out = run(masks.MaskComposite, destination=destination, source=torch.ones(1, 1, 1), x=5, y=0, operation="add")
    assert out["mask"].tolist() == [[[1.0, 0.5]]]


def _grey(mask, expand, tapered):
    """scipy.ndimage grey dilation / erosion with a 3x3 footprint, edges repeated ('reflect' mode at radius 1)."""
    out = mask.copy()
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if not (tapered and dy and dx)]
    h, w = out.shape
    for _ in range(abs(expand)):
        new = np.empty_like(out)
        for i in range(h):
            for j in range(w):
                values = [out[min(max(i + dy, 0), h - 1), min(max(j + dx, 0), w - 1)] for dy, dx in offsets]
                new[i, j] = max(values) if expand > 0 else min(values)
        out = new
    return out


@pytest.mark.parametrize("expand", [2, -1, -3, 0])
@pytest.mark.parametrize("tapered", [True, False])
def test_grow_mask_dilates_or_erodes(expand, tapered):
    mask = (rand(2, 7, 9, seed=5) > 0.7).float() * rand(2, 7, 9, seed=6)
    out = run(masks.GrowMask, mask=mask, expand=expand, tapered_corners=tapered)["mask"]
    for b in range(2):
        assert np.array_equal(out[b].numpy(), _grey(mask[b].numpy(), expand, tapered))


def test_grow_mask_stops_at_a_fixed_point():
    mask = torch.zeros(1, 5, 5)
    mask[0, 2, 2] = 1.0
    out = run(masks.GrowMask, mask=mask, expand=16384, tapered_corners=False)["mask"]
    assert torch.all(out == 1.0)


def test_feather_mask_follows_comfyuis_indices():
    mask = torch.ones(1, 4, 6)
    out = run(masks.FeatherMask, mask=mask, left=2, top=0, right=3, bottom=0)["mask"][0, 0]
    # left: col 0 x 1/2, col 1 x 2/2; right: col -0 (= col 0) x 1/3, col -1 x 2/3, col -2 x 3/3
    assert out.tolist() == pytest.approx([1 / 2 * 1 / 3, 1.0, 1.0, 1.0, 1.0, 2 / 3])
    # top: row 0 x 1/1; bottom: row -0 (= row 0) x 1/2, row -1 x 2/2
    out = run(masks.FeatherMask, mask=torch.ones(1, 5, 2), left=0, top=1, right=0, bottom=2)["mask"][0, :, 0]
    assert out.tolist() == pytest.approx([1 / 2, 1.0, 1.0, 1.0, 1.0])


# -- sizes for budgets ----------------------------------------------------------------------
def test_sizes_propagate_through_resizes():
    src = {"image": Size(2, 1024, 1024)}
    est = images.ImageScaleBy.estimate(None, {"upscale_method": "bilinear", "scale_by": 8.0}, src)
    assert est.outputs["image"] == Size(2, 8192, 8192)
    assert [(u.quantity, u.amount, u.input) for u in est.usage] == [("pixels", 8192 * 8192, "scale_by")]
    est = images.ImageScale.estimate(None, {"width": 0, "height": 512, "upscale_method": "area", "crop": "disabled"},
                                     {"image": Size(1, 1024, 2048)})
    assert est.outputs["image"] == Size(1, 512, 1024)
    est = images.ImagePadForOutpaint.estimate(None, dict(left=8, top=0, right=8, bottom=16, feathering=4),
                                              {"image": Size(1, 64, 64)})
    assert est.outputs == {"image": Size(1, 80, 80), "mask": Size(1, 80, 80)}
    assert images.ImageCrop.estimate(None, dict(width=100, height=10, x=60, y=0), {"image": Size(1, 64, 64)}).outputs[
        "image"] == Size(1, 10, 4)
