"""Files that cannot be loaded fail with a CheckpointError that says why, in a sentence."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from lcmgraph_nodes.diffusion.formats.checkpoint_files import CheckpointError, load_checkpoint
from safetensors.torch import load_file, save_file


def _rewrite(src, dst, edit):
    """A copy of safetensors file ``src`` with its tensors passed through ``edit``."""
    tensors = edit(load_file(str(src)))
    save_file(tensors, str(dst), metadata={"format": "pt"})
    return dst


def _error(source) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(source)
    return str(info.value)


def test_missing_file(tmp_path):
    message = _error(tmp_path / "nowhere.safetensors")
    assert "nowhere.safetensors" in message and "no such file" in message


def test_missing_relative_file_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "no such file" in _error("models/nowhere.safetensors")


def test_truncated_file(tiny_sd15, tmp_path):
    path = tmp_path / "truncated.safetensors"
    data = tiny_sd15.file.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = _error(path)
    assert str(path) in message and "not a valid safetensors file" in message


def test_garbage_bytes(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(bytes(range(256)) * 64)
    assert "not a valid safetensors file" in _error(path)


def test_header_that_is_not_json(tmp_path):
    path = tmp_path / "badheader.safetensors"
    header = b"{not json at all" + b" " * 16
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    assert "not a valid safetensors file" in _error(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    assert "not a valid safetensors file" in _error(path)


def test_unknown_layout(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"backbone.layer1.weight": torch.zeros(4, 4), "head.bias": torch.zeros(4)}, str(path))
    message = _error(path)
    assert "not an SD1.5 or SDXL checkpoint" in message and "backbone.layer1.weight" in message


def test_lora_file_is_named_as_such(tmp_path):
    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8)}, str(path))
    assert "is a LoRA" in _error(path)


def test_diffusers_unet_weights_are_named_as_such(tiny_sd15, tmp_path):
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file(tiny_sd15.pipe.unet.state_dict(), str(path))
    assert "diffusers-format UNet weight file" in _error(path)


def test_sd2_checkpoint_is_refused_by_name(tiny_sd15, tmp_path):
    def to_sd2(t):
        t = {k: v for k, v in t.items() if not k.startswith("cond_stage_model.")}
        t["cond_stage_model.model.token_embedding.weight"] = torch.zeros(1000, 32)
        return t

    message = _error(_rewrite(tiny_sd15.file, tmp_path / "sd2.safetensors", to_sd2))
    assert "Stable Diffusion 2.x" in message


def test_checkpoint_without_vae(tiny_sd15, tmp_path):
    path = _rewrite(tiny_sd15.file, tmp_path / "novae.safetensors",
                    lambda t: {k: v for k, v in t.items() if not k.startswith("first_stage_model.")})
    message = _error(path)
    assert "no VAE (first_stage_model.*)" in message


def test_sdxl_without_its_second_text_encoder(tiny_sdxl, tmp_path):
    path = _rewrite(tiny_sdxl.file, tmp_path / "half-xl.safetensors",
                    lambda t: {k: v for k, v in t.items() if not k.startswith("conditioner.embedders.1.")})
    assert "no SDXL OpenCLIP text encoder (conditioner.embedders.1.model.*)" in _error(path)


def test_missing_unet_tensor(tiny_sd15, tmp_path):
    gone = "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_v.weight"

    def drop(t):
        assert gone in t
        return {k: v for k, v in t.items() if k != gone}

    message = _error(_rewrite(tiny_sd15.file, tmp_path / "hole.safetensors", drop))
    assert "UNet tensors do not fit" in message and "missing 1" in message and "attn2.to_v.weight" in message


def test_tensor_of_the_wrong_shape(tiny_sd15, tmp_path):
    key = "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight"

    def bend(t):
        t[key] = torch.zeros(t[key].shape[0], t[key].shape[1] + 1)
        return t

    message = _error(_rewrite(tiny_sd15.file, tmp_path / "bent.safetensors", bend))
    assert "UNet tensors do not fit" in message and "size mismatch" in message


def test_pinned_config_that_is_not_json(tiny_sd15, tmp_path):
    path = tmp_path / "badmeta.safetensors"
    save_file(load_file(str(tiny_sd15.file)), str(path), metadata={"lcmgraph.configs": "{oops"})
    assert "lcmgraph.configs metadata is not valid JSON" in _error(path)


def test_too_small_vocabulary_needs_a_tokenizer(tiny_sd15, tmp_path):
    key = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"

    def shrink(t):
        t[key] = t[key][:300].clone()
        return t

    path = _rewrite(tiny_sd15.file, tmp_path / "small.safetensors", shrink)
    message = _error(path)
    assert "only 300 token embeddings" in message and "small.tokenizer" in message


def test_pickled_checkpoint_is_refused(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"\x80\x04not really a pickle")
    assert "pickled checkpoints" in _error(path)


def test_folder_without_model_index(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({}))
    assert "model_index.json" in _error(tmp_path)
