"""Grounding DINO: the released checkpoint layout loads onto transformers' model
(every tensor where it belongs), the input and the boxes follow
comfyui_segment_anything's groundingdino_predict, checked against transformers'
own image processor and post-processing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lcmgraph_nodes.segment import grounding_dino as G

from .tiny_files import ORIGINAL_KEYS, SWIN, original_state, save_tokenizer, tiny_grounding_dino


@pytest.fixture(scope="module")
def source():
    return tiny_grounding_dino()


@pytest.fixture(scope="module")
def checkpoint(source, tmp_path_factory):
    folder = tmp_path_factory.mktemp("grounding-dino")
    state = original_state(source)
    assert set(ORIGINAL_KEYS) <= set(state)  # the names GroundingDINO's modules give
    torch.save({"model": {"module." + k: v for k, v in state.items()}}, folder / "groundingdino_swint_ogc.pth")
    return folder / "groundingdino_swint_ogc.pth"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return G.load_tokenizer(save_tokenizer(tmp_path_factory.mktemp("bert")))


def picture(height=60, width=90):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 2, y * 4, (x + y) % 200], -1).astype(np.uint8)


def test_every_tensor_lands_where_it_was(source, checkpoint):
    model = G.load_model(checkpoint)
    config = model.config
    assert config.backbone_config.depths == [1, 1, 2, 1] and config.backbone_config.num_heads == [1, 1, 2, 2]
    assert (config.d_model, config.num_queries, config.encoder_n_points, config.decoder_layers) == (64, 12, 2, 2)
    theirs = source.state_dict()
    for key, value in model.state_dict().items():
        if not key.startswith(SWIN + "swin.layernorm."):
            assert torch.equal(value, theirs[key]), key


def test_the_input_is_the_packs_800_by_at_most_1333():
    assert G.model_input(picture(60, 90)).shape == (1, 3, 800, 1200)
    assert G.model_input(picture(100, 300)).shape == (1, 3, 444, 1332)  # capped: 1333 * 100 / 300 -> 444
    assert G.model_input(picture(800, 640)).shape == (1, 3, 1000, 800)


def test_the_input_matches_transformers_image_processor():
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil,
    )

    image = picture(60, 90)
    theirs = GroundingDinoImageProcessorPil()(images=image, return_tensors="pt")["pixel_values"]
    ours = G.model_input(image)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, atol=2e-2, rtol=0)  # same PIL resize; rounding to 8 bits may differ


def test_captions_are_lower_case_and_end_with_a_full_stop():
    assert G.caption("  Red Block ") == "red block."
    assert G.caption("face.") == "face."


def test_boxes_are_the_queries_above_the_threshold_in_pixels(checkpoint, tokenizer):
    from transformers import GroundingDinoProcessor
    from transformers.models.grounding_dino.image_processing_pil_grounding_dino import (
        GroundingDinoImageProcessorPil,
    )

    model = G.load_model(checkpoint)
    image = picture()
    tokens = tokenizer(["red block."], padding="longest", return_tensors="pt")
    with torch.no_grad():
        out = model(pixel_values=G.model_input(image), **tokens)
    scores = out.logits[0].sigmoid().max(1).values
    threshold = float(scores.median())  # about half the queries pass
    boxes = G.detect(model, tokenizer, image, "Red block", threshold)
    processor = GroundingDinoProcessor(GroundingDinoImageProcessorPil(), tokenizer)
    expected = processor.post_process_grounded_object_detection(out, tokens["input_ids"], threshold=threshold,
                                                                target_sizes=[(60, 90)])[0]["boxes"]
    assert 0 < len(boxes) < 12 and len(boxes) == int((scores > threshold).sum())
    torch.testing.assert_close(boxes, expected)
    assert len(G.detect(model, tokenizer, image, "red block", 1.0)) == 0  # strictly above: nothing passes 1.0


def test_files_that_cannot_be_used_are_named(tmp_path, checkpoint):
    other = tmp_path / "groundingdino_swinb_cogcoor.pth"
    torch.save({"model": {"backbone.0.patch_embed.proj.weight": torch.zeros(8, 3, 4, 4)}}, other)
    with pytest.raises(G.GroundingDinoFileError, match="'groundingdino_swinb_cogcoor.pth' misses 'backbone.0.layers"):
        G.load_model(other)
    state = torch.load(checkpoint, weights_only=True)["model"]
    state["transformer.extra.weight"] = torch.zeros(1)
    torch.save({"model": state}, tmp_path / "extra.pth")
    with pytest.raises(G.GroundingDinoFileError, match="not a Grounding DINO checkpoint: unexpected"):
        G.load_model(tmp_path / "extra.pth")
