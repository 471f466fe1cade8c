"""The SAM loader and predictor against Meta's original code: a tiny SAM built
with segment-anything's own modules is saved as its checkpoints are (a plain
state dict under the original names), loaded by lcmgraph onto transformers'
SamModel, and both draw the masks for the same boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lcmgraph_nodes.segment import sam as S

from .reference_sam import tiny_sam


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    reference = tiny_sam()
    path = tmp_path_factory.mktemp("sams") / "sam_vit_b_01ec64.pth"
    torch.save(reference.state_dict(), path)
    return path, reference


def picture(height=48, width=80):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 3, y * 5, (x * y) % 251], -1).astype(np.uint8)
    image[10:30, 20:50] = (250, 30, 30)
    return image


def test_the_config_is_read_from_the_tensors(checkpoint):
    path, _ = checkpoint
    model = S.load_model(path)
    vision = model.config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (32, 2, 2)
    assert (vision.image_size, vision.patch_size, vision.window_size, vision.global_attn_indexes) == (64, 8, 4, [1])
    assert model.config.mask_decoder_config.hidden_size == 16


def test_masks_equal_the_original_predictors(checkpoint):
    path, reference = checkpoint
    model = S.load_model(path)
    image = picture()
    boxes = torch.tensor([[18.0, 8.0, 52.0, 31.0], [0.0, 0.0, 30.0, 40.0]])
    ours = S.segment(model, image, boxes)

    pixels, (new_h, new_w) = S.model_input(image, 64)
    assert (new_h, new_w) == (38, 64)  # longer side to 64: int(48 * 0.8 + 0.5)
    scaled = boxes * torch.tensor([new_w / 80, new_h / 48, new_w / 80, new_h / 48])
    resized = torch.from_numpy(np.asarray(
        __import__("PIL.Image", fromlist=["Image"]).fromarray(image).resize((new_w, new_h), 2), np.float32)).permute(2, 0, 1)
    with torch.no_grad():
        out = reference([{"image": resized, "original_size": (48, 80), "boxes": scaled}], multimask_output=False)[0]
    expected = out["masks"][:, 0].any(dim=0)
    assert ours.shape == expected.shape == (48, 80)
    assert 0.02 < float(expected.float().mean()) < 0.98  # a real partition, not all or nothing
    # masks threshold logits at 0; values within fp32 noise of it may fall either way
    assert float((ours != expected).float().mean()) < 0.002

    with torch.no_grad():
        theirs = out["low_res_logits"][:, 0]
        mine = model(pixel_values=pixels, input_boxes=scaled[None], multimask_output=False).pred_masks[0, :, 0]
    torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)


def test_no_box_is_an_empty_mask(checkpoint):
    path, _ = checkpoint
    mask = S.segment(S.load_model(path), picture(), torch.zeros(0, 4))
    assert mask.shape == (48, 80) and not mask.any()


def test_other_files_are_named(tmp_path, checkpoint):
    path, _ = checkpoint
    hq = tmp_path / "sam_hq_vit_b.pth"
    hq.write_bytes(path.read_bytes())
    with pytest.raises(S.SamFileError, match="'sam_hq_vit_b.pth' is a SAM-HQ checkpoint"):
        S.load_model(hq)
    other = tmp_path / "sam_vit_l_0b3195.pth"
    torch.save({"encoder.weight": torch.zeros(2)}, other)
    with pytest.raises(S.SamFileError, match="SAM file 'sam_vit_l_0b3195.pth' misses 'image_encoder.patch_embed"):
        S.load_model(other)
