"""The tiny built-in models: deterministic, offline, built once."""

from __future__ import annotations

import hashlib

from lcmgraph_nodes.diffusion.builtin import tiny


def _digest(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_builds_are_bitwise_identical(tmp_path, models):
    import torch

    torch.manual_seed(123)
    before = torch.rand(1)
    again = tiny.build_checkpoint(tmp_path / "again", "sd15")
    digests = _digest(again)
    assert any(name.endswith(".safetensors") for name in digests)
    assert digests == _digest(models / "checkpoints" / "tiny")
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)  # building left the caller's RNG alone


def test_seeds_give_different_weights(models):
    a = _digest(models / "checkpoints" / "tiny")["unet/diffusion_pytorch_model.safetensors"]
    b = _digest(models / "checkpoints" / "tiny-lcm")["unet/diffusion_pytorch_model.safetensors"]
    assert a != b


def test_tokenizer_is_local_and_clip_shaped():
    tok = tiny.make_tokenizer()
    ids = tok("a photo of a cat", padding="max_length", max_length=tok.model_max_length).input_ids
    assert tok.model_max_length == 77 and len(ids) == 77
    vocab = tok.get_vocab()
    assert ids[0] == vocab["<|startoftext|>"] and ids[-1] == vocab["<|endoftext|>"]
    assert tok.convert_ids_to_tokens(ids[1:6]) == ["a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>"]
    assert len(tok("zebra!").input_ids) > 3  # unknown words still tokenize, byte by byte


def test_builtin_files_are_built_once_under_home(fresh_engine, tmp_path):
    path = fresh_engine.files.resolve("checkpoints", "builtin:tiny-random")
    assert (path / "model_index.json").is_file() and (tmp_path / "home") in path.parents
    stamp = (path / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    fresh_engine.files._builtin_paths.clear()  # forget the memo: the provider must reuse the folder
    assert fresh_engine.files.resolve("checkpoints", "builtin:tiny-random") == path
    assert (path / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no staging left behind
    assert set(fresh_engine.files.list("loras")) >= {"builtin:tiny-lcm-lora", "builtin:tiny-style-lora"}
