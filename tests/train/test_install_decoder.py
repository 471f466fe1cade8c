"""`lcmgraph train install-decoder`: a decoder fine-tuned in its own run folder goes into an
exported model (the recipe's last step: the decoder trains on the CPU beside the UNet)."""

from __future__ import annotations

import json
import shutil

import torch
from diffusers import AutoencoderKL
from lcmgraph_nodes.diffusion.train.cli import builtin_dir
from lcmgraph_nodes.diffusion.train.common import load_state, save_state
from lcmgraph_nodes.diffusion.train.seed import seed_from_shipped

from lcmgraph.cli import main


def _model_and_run(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(builtin_dir() / "tiny-shapes", model)
    run = seed_from_shipped(tmp_path / "run", builtin_dir())
    return model, run


def _decoder_state(model, shift: float) -> dict:
    vae = AutoencoderKL.from_pretrained(model / "vae")
    return {k: v + shift for k, v in vae.decoder.state_dict().items()}


def test_the_runs_decoder_replaces_the_models_and_the_encoder_stays(tmp_path, capsys):
    model, run = _model_and_run(tmp_path)
    before = AutoencoderKL.from_pretrained(model / "vae").state_dict()
    config = (model / "vae" / "config.json").read_text()
    unet_steps = json.loads((model / "training.json").read_text())["unet_steps"]
    save_state(run / "decoder.pt", dict(decoder=_decoder_state(model, 0.01), train={"outline": 0.5}, step=7))

    assert main(["train", "install-decoder", "--run", str(run), "--out", str(model)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"decoder_installed": str(model)}
    after = AutoencoderKL.from_pretrained(model / "vae").state_dict()
    for name, tensor in after.items():
        if name.startswith("decoder."):
            assert torch.allclose(tensor, before[name] + 0.01), name
        else:
            assert torch.equal(tensor, before[name]), name
    note = json.loads((model / "training.json").read_text())
    assert note["decoder_steps"] == 7 and note["decoder_outline"] == 0.5 and note["unet_steps"] == unet_steps
    assert sorted(p.name for p in model.iterdir() if p.name.startswith("vae")) == ["vae"]  # no leftovers
    assert (model / "vae" / "config.json").read_text() == config  # no run's path written into the model


def test_a_decoder_of_another_encoder_is_refused_and_the_model_is_untouched(tmp_path, capsys):
    model, run = _model_and_run(tmp_path)
    state = load_state(run / "vae.pt")
    state["model"]["encoder.conv_in.weight"] = state["model"]["encoder.conv_in.weight"] + 1e-3
    save_state(run / "vae.pt", state)
    save_state(run / "decoder.pt", dict(decoder=_decoder_state(model, 0.01), train={}, step=7))
    weights = (model / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()

    assert main(["train", "install-decoder", "--run", str(run), "--out", str(model)]) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        f"error: ValueError: {run}'s encoder differs from {model}'s (encoder.conv_in.weight): "
        "its decoder reads other latents")
    assert (model / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == weights


def test_install_decoder_says_what_is_missing(tmp_path, capsys):
    model, run = _model_and_run(tmp_path)
    assert main(["train", "install-decoder", "--run", str(run), "--out", str(model)]) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        f"error: FileNotFoundError: {run / 'decoder.pt'} does not exist: train one with "
        f"`lcmgraph train decoder --run {run}`")
    save_state(run / "decoder.pt", dict(decoder=_decoder_state(model, 0.0), train={}, step=1))
    assert main(["train", "install-decoder", "--run", str(run), "--out", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        f"error: FileNotFoundError: {tmp_path / 'nowhere' / 'vae'} does not exist: "
        "--out must be an exported model folder")


def test_a_run_without_its_vae_is_refused_by_name(tmp_path, capsys):
    model, run = _model_and_run(tmp_path)
    save_state(run / "decoder.pt", dict(decoder=_decoder_state(model, 0.0), train={}, step=1))
    (run / "vae.pt").unlink()
    assert main(["train", "install-decoder", "--run", str(run), "--out", str(model)]) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        f"error: FileNotFoundError: {run / 'vae.pt'} does not exist: the decoder's run starts from "
        f"`lcmgraph train seed --run {run}`")
