"""The trainers' command line: --threads travels as an argument (the environment
variable is only the flag's default), and the device rule is the model manager's."""

from __future__ import annotations

import argparse
import os

import torch
from lcmgraph_nodes.diffusion.models.manager import pick_device
from lcmgraph_nodes.diffusion.train import evaluator, lora
from lcmgraph_nodes.diffusion.train.cli import add_train_parser, run_train
from lcmgraph_nodes.diffusion.train.common import setup_torch
from lcmgraph_nodes.diffusion.train.lora_cli import add_lora_parsers, run_lora


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_train_parser(sub)
    add_lora_parsers(sub)
    return parser


def test_train_threads_reach_the_trainer(monkeypatch, tmp_path):
    got = []
    monkeypatch.setattr(evaluator, "train_evaluator", lambda run, device, threads, tc=None: got.append(threads))
    monkeypatch.delenv("LCMGRAPH_TRAIN_THREADS", raising=False)
    args = _parser().parse_args(["train", "evaluator", "--run", str(tmp_path), "--threads", "3"])
    assert run_train(args) == 0 and args.threads == 3
    assert "LCMGRAPH_TRAIN_THREADS" not in os.environ  # nothing travels through the environment
    run_train(_parser().parse_args(["train", "evaluator", "--run", str(tmp_path)]))
    monkeypatch.setenv("LCMGRAPH_TRAIN_THREADS", "2")
    run_train(_parser().parse_args(["train", "evaluator", "--run", str(tmp_path)]))
    assert got == [3, 1, 2]


def test_lora_threads_reach_the_trainer(monkeypatch, tmp_path):
    got = []

    def fake_train(run, base, tc, minutes, device, evaluate, threads, keep_every):
        got.append(threads)
        return None, 0

    monkeypatch.setattr(lora, "train_lora", fake_train)
    monkeypatch.setattr(lora, "save_lora", lambda pipe, path: path)
    monkeypatch.delenv("LCMGRAPH_TRAIN_THREADS", raising=False)
    assert run_lora(_parser().parse_args(["train-lora", "--run", str(tmp_path), "--threads", "4"])) == 0
    assert run_lora(_parser().parse_args(["train-lcm-lora", "--run", str(tmp_path)])) == 0
    assert got == [4, 1]


def test_setup_torch_sets_threads_and_picks_the_device_as_the_manager_does():
    old = torch.get_num_threads()
    try:
        assert setup_torch(2, "cpu") == torch.device("cpu") and torch.get_num_threads() == 2
        assert setup_torch(1) == torch.device(pick_device("auto")) and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(old)


def test_seed_starts_a_run_from_the_shipped_vae_and_evaluator(tmp_path):
    """`train seed` then the later stages: the VAE and evaluator stages are finished (they load, they
    do not train) and hold the shipped weights; a second seed into the same run is refused."""
    import pytest
    from lcmgraph_nodes.diffusion.train import vae as V
    from lcmgraph_nodes.diffusion.train.cli import builtin_dir
    from safetensors.torch import load_file

    run = tmp_path / "run"
    assert run_train(_parser().parse_args(["train", "seed", "--run", str(run)])) == 0
    loaded = V.train_vae(run, tc=V.VaeTrain(steps=0), quiet=True)  # what `train unet` does: load only
    shipped = load_file(str(builtin_dir() / "tiny-shapes" / "vae" / "diffusion_pytorch_model.safetensors"))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in shipped.items())
    judge = evaluator.train_evaluator(run, quiet=True)  # finished: returns the shipped judge untouched
    reference = load_file(str(builtin_dir() / "tiny-shapes-evaluator.safetensors"))
    assert all(torch.equal(judge.state_dict()[k].cpu(), v) for k, v in reference.items())
    with pytest.raises(FileExistsError, match="vae.pt exists"):
        run_train(_parser().parse_args(["train", "seed", "--run", str(run)]))


def test_style_judge_stage_writes_the_judge_beside_the_export(monkeypatch, tmp_path):
    """`train style-judge --out FOLDER` writes FOLDER-style-judge.safetensors, which bench/quality.py
    and pick_lora.py load with load_style_judge."""
    net = evaluator._net(evaluator.STYLE_HEADS)
    monkeypatch.setattr(evaluator, "train_style_judge", lambda run, device, threads: net)  # 300 steps: minutes
    out = tmp_path / "model"
    assert run_train(_parser().parse_args(["train", "style-judge", "--run", str(tmp_path), "--out", str(out)])) == 0
    loaded = evaluator.load_style_judge(tmp_path / "model-style-judge.safetensors")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())


def test_unet_options_reach_a_new_run(monkeypatch, tmp_path):
    """--init-from / --batch / --lr go into the UNet recipe (a new run's; a resumed run keeps its own)."""
    from lcmgraph_nodes.diffusion.train import cli, unet

    got = {}
    monkeypatch.setattr(cli, "_latents", lambda args, vae: (None, 1.0))
    monkeypatch.setattr(cli, "_vae", lambda args, train=True: None)
    monkeypatch.setattr(unet, "train_unet", lambda run, latents, scale, tc, **kw: got.setdefault("tc", tc))
    args = _parser().parse_args(["train", "unet", "--run", str(tmp_path), "--init-from", str(tmp_path / "export"),
                                 "--batch", "256", "--lr", "3e-4", "--eval-every", "0", "--pyramid-noise", "0.8"])
    run_train(args)
    tc = got["tc"]
    assert (tc.init_from, tc.batch, tc.lr, tc.pyramid_noise) == (str(tmp_path / "export"), 256, 3e-4, 0.8)
    got.clear()
    run_train(_parser().parse_args(["train", "unet", "--run", str(tmp_path), "--eval-every", "0"]))
    assert (got["tc"].init_from, got["tc"].batch, got["tc"].lr) == ("", 32, 1e-3)


def test_new_run_options_on_an_existing_run_are_refused_not_ignored(tmp_path):
    """A run folder with unet.pt resumes with its stored recipe: --init-from / --batch / --lr that
    differ from it would be silently dropped, so the command says so and stops."""
    from dataclasses import asdict

    import pytest
    from lcmgraph_nodes.diffusion.train.common import save_state
    from lcmgraph_nodes.diffusion.train.unet import UnetTrain

    save_state(tmp_path / "unet.pt", {"train": asdict(UnetTrain(batch=32, lr=1e-3))})
    args = _parser().parse_args(["train", "unet", "--run", str(tmp_path), "--init-from", "/x/export",
                                 "--batch", "256", "--eval-every", "0"])
    with pytest.raises(SystemExit, match=r"unet.pt exists and resumes with its own recipe; --batch 256 \(the run "
                                         r"has 32\), --init-from /x/export \(the run has ''\) would be ignored: "
                                         r"use a new --run folder"):
        run_train(args)


def test_an_evaluator_trained_in_its_own_run_goes_beside_the_out_folder(monkeypatch, tmp_path, capsys):
    """The recipe trains the evaluator on the CPU beside the UNet's run; --out puts it where
    bench/quality.py and pick_lora look (MODEL-evaluator.safetensors), and only then."""
    net = evaluator._net()
    monkeypatch.setattr(evaluator, "train_evaluator", lambda run, device, threads, tc=None: net)
    assert run_train(_parser().parse_args(["train", "evaluator", "--run", str(tmp_path / "e")])) == 0
    assert not list(tmp_path.glob("*.safetensors"))
    out = tmp_path / "model"
    assert run_train(_parser().parse_args(["train", "evaluator", "--run", str(tmp_path / "e"), "--out", str(out)])) == 0
    written = tmp_path / "model-evaluator.safetensors"
    assert capsys.readouterr().out.splitlines()[-1] == f'{{"evaluator": "{written}"}}'
    loaded = evaluator.load_evaluator(written)
    for name, tensor in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
