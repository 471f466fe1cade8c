"""The LoRA trainers: LCM distillation learns, resumes, and its file loads through
ApplyLoRA as diffusers loads it; the plain trainer runs on SDXL's architecture and
on a folder of captioned images; bad settings get clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from lcmgraph_nodes.diffusion.train import lora as L

from lcmgraph import Engine, EngineConfig

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = ROOT / "nodes" / "diffusion" / "builtin"
SHAPES = BUILTIN / "tiny-shapes"
PACKS = ROOT / "tests" / "diffusion" / "packs"


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "lora.log.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.fixture(scope="module")
def lcm_run(tmp_path_factory):
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("lcm")
    # 64px (8x8 latents) keeps it fast; the base model draws at any size.
    tc = L.LoraTrain(kind="lcm", steps=30, batch=8, pool=32, rank=4, lr=3e-3, warmup=1, log_every=1,
                     checkpoint_every=10, resolution=64)
    pipe, step = L.train_lora(run, SHAPES, tc, device="cpu", quiet=True, keep_every=10)
    lora = L.save_lora(pipe, run / "out" / "lcm.safetensors")
    return run, pipe, step, lora


def test_lcm_distillation_loss_decreases(lcm_run):
    run, _, step, _ = lcm_run
    losses = _losses(run)
    assert step == 30 and len(losses) == 30
    # The student starts as the teacher (peft's B = 0); the consistency loss between
    # t_{n+k} and the DDIM-solved t_n must fall as the adapter learns.
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10]), losses


def test_snapshots_are_kept_and_one_is_picked_on_held_out_prompts(lcm_run, tmp_path, capsys, monkeypatch):
    """--keep-every writes lora-STEP.safetensors; bench/pick_lora.py scores each on held-out prompts
    and copies the best (the last snapshot is the final LoRA)."""
    import importlib.util

    from safetensors.torch import load_file

    run, _, _, lora = lcm_run
    snaps = sorted(run.glob("lora-*.safetensors"))
    assert [p.name for p in snaps] == ["lora-00010.safetensors", "lora-00020.safetensors", "lora-00030.safetensors"]
    final, last = load_file(str(lora)), load_file(str(snaps[-1]))
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)
    assert not all(torch.equal(load_file(str(snaps[0]))[k], last[k]) for k in last)

    spec = importlib.util.spec_from_file_location("pick_lora", ROOT / "bench" / "pick_lora.py")
    pick = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pick)
    from lcmgraph_nodes.diffusion.train import generate

    seeds = []
    real = generate.prompt_accuracy
    monkeypatch.setattr(generate, "prompt_accuracy",
                        lambda *a, seed=0, **kw: seeds.append(seed) or real(*a, seed=seed, **kw))
    best = tmp_path / "best.safetensors"
    assert pick.main(["--base", str(SHAPES), "--kind", "lcm", "--prompts", "4", "--batch", "4", "--device", "cpu",
                      "--noise-seed", "100", "--by", "size", *map(str, snaps[:2]), "--copy-best", str(best)]) == 0
    out = capsys.readouterr().out
    assert "noise seeds 100..103" in out and seeds == [100, 100]  # each snapshot's prompt i: seed 100 + i
    assert out.count("colour+shape by size: small ") == 2  # under each of the two rows
    assert "lora-00010.safetensors" in out and "lora-00020.safetensors" in out and "picked" in out
    assert best.read_bytes() in (snaps[0].read_bytes(), snaps[1].read_bytes())
    rows = [(Path("a"), {"colour_shape": 0.5, "style": 0.9}), (Path("b"), {"colour_shape": 0.7, "style": 0.5}),
            (Path("c"), {"colour_shape": 0.6, "style": 0.85})]
    assert pick.pick(rows, "lcm", 0.8) == Path("b")
    assert pick.pick(rows, "style", 0.8) == Path("c")  # styled enough, then the best colour+shape
    assert pick.pick(rows, "style", 0.95) == Path("a")  # none styled enough: the most styled


def test_resuming_continues_from_the_checkpoint(lcm_run):
    run, _, _, _ = lcm_run
    tc = L.LoraTrain(kind="lcm", steps=32, batch=8, pool=32, rank=4, lr=3e-3, warmup=1, log_every=1,
                     resolution=64)
    _, step = L.train_lora(run, SHAPES, tc, device="cpu", quiet=True)
    assert step == 32
    assert len(_losses(run)) == 32  # two more steps, not a restart


def test_a_run_folder_keeps_its_kind(lcm_run):
    run, _, _, _ = lcm_run
    with pytest.raises(ValueError, match=r"holds a 'lcm' LoRA run, not 'style'; use another --run folder"):
        L.train_lora(run, SHAPES, L.LoraTrain(kind="style", steps=1), device="cpu", quiet=True)
    with pytest.raises(ValueError, match=r"unknown LoRA kind 'turbo'; one of lcm, style"):
        L.train_lora(run, SHAPES, L.LoraTrain(kind="turbo"), device="cpu", quiet=True)


def _flow(lora: str | None, seed: int = 3) -> dict:
    def link(node, out):
        return {"link": [node, out]}

    model = link("ckpt", "model")
    nodes = {"ckpt": ("LoadCheckpoint", {"checkpoint": "tiny-shapes"})}
    if lora:
        nodes["lora"] = ("ApplyLoRA", {"model": model, "lora": lora, "weight": 1.0})
        model = link("lora", "model")
    nodes |= {
        "pos": ("TextEncode", {"clip": link("ckpt", "clip"), "text": "a large red circle on a blue background"}),
        "empty": ("EmptyLatent", {"width": 128, "height": 128, "batch": 1}),
        "sampler": ("LCMSampler", {"model": model, "positive": link("pos", "conditioning"),
                                   "latent": link("empty", "latent"), "seed": seed, "steps": 4, "guidance": 1.0}),
        "decode": ("VAEDecode", {"vae": link("ckpt", "vae"), "latent": link("sampler", "latent")}),
        "capture": ("Capture", {"value": link("decode", "image")}),
    }
    return {"format": "lcmgraph.workflow", "version": 1, "outputs": ["capture"],
            "nodes": {k: {"type": t, "inputs": i} for k, (t, i) in nodes.items()}}


def test_the_trained_lora_loads_through_apply_lora_as_trained(lcm_run, tmp_path):
    """The file, through LoadCheckpoint -> ApplyLoRA -> LCMSampler, draws what the trainer's
    own live adapter draws, and what diffusers' load_lora_weights draws: every layer made it."""
    from diffusers import LCMScheduler, StableDiffusionPipeline

    _, trained, _, lora = lcm_run
    engine = Engine(EngineConfig(
        folders={"checkpoints": [BUILTIN], "loras": [lora.parent]}, home=tmp_path / "home",
        models_dir=tmp_path / "models", output_dir=tmp_path / "out", plugins_from_env=False,
        plugin_dirs=[PACKS], device="cpu"))
    ours = engine.run(_flow(lora.name)).values["decode"]["image"].numpy()
    base = engine.run(_flow(None)).values["decode"]["image"].numpy()

    def draw(pipe):
        pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        return pipe("a large red circle on a blue background", num_inference_steps=4, guidance_scale=1.0,
                    generator=torch.Generator().manual_seed(3), height=128, width=128, output_type="np").images

    live = draw(trained)
    fresh = StableDiffusionPipeline.from_pretrained(str(SHAPES), safety_checker=None, requires_safety_checker=False)
    fresh.load_lora_weights(str(lora.parent), weight_name=lora.name)
    assert np.abs(ours - live).max() <= 1e-5
    assert np.abs(draw(fresh) - live).max() <= 1e-5
    assert np.abs(ours - base).max() > 1e-2  # the adapter does something


def test_plain_lora_on_sdxl_architecture_and_an_image_folder(tmp_path):
    from lcmgraph_nodes.diffusion.builtin import tiny
    from PIL import Image

    torch.set_num_threads(1)
    base = tiny.build_checkpoint(tmp_path / "xl", "sdxl")
    data = tmp_path / "data"
    data.mkdir()
    for i, colour in enumerate(["red", "blue", "green"]):
        Image.new("RGB", (80, 60), colour).save(data / f"{i}.png")
        (data / f"{i}.txt").write_text(f"a {colour} square")
    tc = L.LoraTrain(kind="style", steps=2, batch=2, rank=2, data=str(data), resolution=64, log_every=1)
    pipe, step = L.train_lora(tmp_path / "run", base, tc, device="cpu", quiet=True)
    assert step == 2
    pool = torch.load(tmp_path / "run" / "lora-latents.pt", weights_only=False)
    assert pool["captions"] == ["a red square", "a blue square", "a green square"]
    assert pool["latents"].shape[0] == 3
    path = L.save_lora(pipe, tmp_path / "xl-style.safetensors")
    from safetensors.torch import load_file

    keys = load_file(str(path))
    assert keys and all(k.startswith("unet.") for k in keys)
    assert any(".conv1." in k for k in keys) and any("to_q" in k for k in keys)


def test_an_empty_image_folder_is_a_clear_error(tmp_path):
    (tmp_path / "data").mkdir()
    tc = L.LoraTrain(kind="style", steps=1, data=str(tmp_path / "data"))
    with pytest.raises(FileNotFoundError, match=r"no images \(\.png, \.jpg, \.jpeg, \.webp\) in .*data"):
        L.train_lora(tmp_path / "run", SHAPES, tc, device="cpu", quiet=True)


def test_boundary_conditions_match_lcm_scheduler():
    from diffusers import LCMScheduler

    sched = LCMScheduler(timestep_scaling=10.0)
    t = torch.tensor([0, 19, 499, 999])
    c_skip, c_out = L.boundary_scalings(t)
    for i, ti in enumerate(t.tolist()):
        skip, out = sched.get_scalings_for_boundary_condition_discrete(ti)
        assert abs(float(c_skip[i]) - float(skip)) < 1e-6 and abs(float(c_out[i]) - float(out)) < 1e-6
