"""PrepImageForClipVision (ComfyUI_IPAdapter_plus) against its recipe on small
pictures: the square cut at each position or the zero padding, PIL's filters
on 8-bit (truncated) pictures at 224x224, and contrast-adaptive sharpening
written out pixel by pixel from its formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lcmgraph_nodes.image import clip_prep
from PIL import Image


def prep(image, interpolation="LANCZOS", crop_position="center", sharpening=0.0):
    return clip_prep.PrepImageForClipVision().execute(None, image=image, interpolation=interpolation,
                                                      crop_position=crop_position, sharpening=sharpening)["image"]


def picture(height=6, width=10, seed=0):
    return torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("position,rows,cols", [("center", (0, 6), (2, 8)), ("top", (0, 6), (2, 8)),
                                                ("left", (0, 6), (0, 6)), ("right", (0, 6), (4, 10)),
                                                ("bottom", (0, 6), (2, 8))])
def test_square_cut_positions_then_pils_filter(position, rows, cols):
    image = picture()
    out = prep(image, "BICUBIC", position)
    part = image[0, rows[0]:rows[1], cols[0]:cols[1]]
    eight_bit = (part.numpy() * 255).astype(np.uint8)  # torchvision's ToPILImage truncates
    expected = np.asarray(Image.fromarray(eight_bit).resize((224, 224), Image.Resampling.BICUBIC), np.float32) / 255
    assert out.shape == (1, 224, 224, 3)
    assert torch.equal(out[0], torch.from_numpy(expected))


def test_tall_cut_and_pad_to_square():
    tall = picture(10, 4, seed=1)
    top = prep(tall, "NEAREST", "top")
    expected = np.asarray(Image.fromarray((tall[0, :4].numpy() * 255).astype(np.uint8)).resize(
        (224, 224), Image.Resampling.NEAREST), np.float32) / 255
    assert torch.equal(top[0], torch.from_numpy(expected))
    padded = prep(tall, "NEAREST", "pad")  # 3 black columns each side, then 10x10 -> 224x224
    square = np.zeros((10, 10, 3), np.uint8)
    square[:, 3:7] = (tall[0].numpy() * 255).astype(np.uint8)
    expected = np.asarray(Image.fromarray(square).resize((224, 224), Image.Resampling.NEAREST), np.float32) / 255
    assert torch.equal(padded[0], torch.from_numpy(expected))
    assert float(padded[0, :, :60].max()) == 0.0 and float(padded[0, :, 100:124].min()) > 0.0


def _cas_reference(x, amount):
    """CAS, one pixel at a time, zero outside the picture."""
    channels, height, width = x.shape
    out = np.zeros_like(x)
    v = lambda c, y, z: x[c, y, z] if 0 <= y < height and 0 <= z < width else 0.0  # noqa: E731
    for c in range(channels):
        for y in range(height):
            for z in range(width):
                cross = [v(c, y - 1, z), v(c, y, z - 1), v(c, y, z), v(c, y, z + 1), v(c, y + 1, z)]
                diag = [v(c, y - 1, z - 1), v(c, y - 1, z + 1), v(c, y + 1, z - 1), v(c, y + 1, z + 1)]
                low = max(min(cross), 0) + max(min(diag), 0)
                high = min(max(cross), 1) + min(max(diag), 1)
                amp = np.sqrt(min(low, 2 - high) / high) if high > 0 else 0.0
                w = -amp * (amount * (1 / 5 - 1 / 8) + 1 / 8)
                out[c, y, z] = np.clip((sum(cross) - cross[2]) * w / (1 + 4 * w) + cross[2] / (1 + 4 * w), 0, 1)
    return out


def test_contrast_adaptive_sharpening_follows_its_formula():
    x = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(2))
    ours = clip_prep.contrast_adaptive_sharpening(x, 0.6)[0].numpy()
    assert np.allclose(ours, _cas_reference(x[0].numpy().astype(np.float64), 0.6), atol=1e-6)
    assert not np.allclose(ours, x[0].numpy(), atol=1e-3)  # it does sharpen
    flat = torch.full((1, 3, 4, 4), 0.5)  # no contrast: interior pixels unchanged
    assert torch.allclose(clip_prep.contrast_adaptive_sharpening(flat, 1.0)[..., 1:-1, 1:-1], flat[..., 1:-1, 1:-1])
