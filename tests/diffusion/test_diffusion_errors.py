"""Broken inputs fail with a sentence that names the node, before or during
the run, and leave the engine working."""

from __future__ import annotations

import shutil

import pytest

from lcmgraph import NodeFailed, WorkflowInvalid

from .diffusion_helpers import image_of, link, max_diff, new_engine, txt2img, value_of


@pytest.fixture
def extra(models, tmp_path):
    """A second models root (for broken files) searched after the session's."""
    root = tmp_path / "extra"
    for folder in ("checkpoints", "loras", "controlnet", "input"):
        (root / folder).mkdir(parents=True)
    engine = new_engine(models, tmp_path, folders={
        folder: [models / folder, root / folder] for folder in ("checkpoints", "loras", "controlnet", "input")
    })
    return engine, root


def _base_still_works(engine, make_engine):
    flow = txt2img(prompt="a sun", seed=21, steps=2)
    assert max_diff(image_of(engine, flow), image_of(make_engine(), flow)) == 0.0


def test_missing_checkpoint_is_reported_before_running(fresh_engine):
    f = txt2img(ckpt="nope")
    f.add("save", "SaveImage", image=link("decode", "image"))
    with pytest.raises(WorkflowInvalid) as info:
        fresh_engine.run(f.doc())
    (problem,) = [p for p in info.value.problems if p.code == "missing_file"]
    assert (problem.node, problem.input) == ("ckpt", "checkpoint") and "nope" in problem.message
    assert fresh_engine.service("diffusion.models").loads == 0


def test_unknown_builtin_is_reported(fresh_engine):
    problems = fresh_engine.validate(txt2img(ckpt="builtin:nope").doc())
    assert any(p.node == "ckpt" and "tiny-random" in p.message for p in problems)


def test_corrupt_safetensors_checkpoint_names_the_node(extra, models, make_engine):
    engine, root = extra
    broken = root / "checkpoints" / "broken"
    shutil.copytree(models / "checkpoints" / "tiny", broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 64 + b"not safetensors")
    with pytest.raises(NodeFailed) as info:
        image_of(engine, txt2img(ckpt="broken"))
    assert info.value.node_id == "ckpt" and "broken" in str(info.value)
    _base_still_works(engine, make_engine)


def test_corrupt_lora_names_the_node(extra, make_engine):
    engine, root = extra
    (root / "loras" / "junk.safetensors").write_bytes(b"{garbage")
    f = txt2img()
    f.add("lora", "ApplyLoRA", model=link("ckpt", "model"), lora="junk.safetensors")
    f.nodes["sampler"]["inputs"]["model"] = link("lora", "model")
    with pytest.raises(NodeFailed) as info:
        image_of(engine, f)
    assert info.value.node_id == "lora" and "junk.safetensors" in str(info.value)
    _base_still_works(engine, make_engine)


def test_a_file_that_is_not_a_lora_is_refused(extra, models):
    engine, root = extra
    shutil.copy(models / "checkpoints" / "tiny" / "vae" / "diffusion_pytorch_model.safetensors", root / "loras" / "vae.safetensors")
    f = txt2img()
    f.add("lora", "ApplyLoRA", model=link("ckpt", "model"), lora="vae.safetensors")
    f.nodes["sampler"]["inputs"]["model"] = link("lora", "model")
    with pytest.raises(NodeFailed, match="not a LoRA") as info:
        image_of(engine, f)
    assert info.value.node_id == "lora"


def test_a_lora_for_another_architecture_fails_cleanly(fresh_engine, make_engine):
    f = txt2img(prompt="a sun", seed=21, steps=2)
    f.add("lora", "ApplyLoRA", model=link("ckpt", "model"), clip=link("ckpt", "clip"), lora="xl.safetensors")
    f.nodes["sampler"]["inputs"]["model"] = link("lora", "model")
    with pytest.raises(NodeFailed, match="does not fit this sd15 model") as info:
        image_of(fresh_engine, f)
    assert info.value.node_id == "lora" and "wrong shape" in str(info.value)
    # Nothing of the failed adapter is left behind: the base image is bitwise the base image,
    loaded = fresh_engine.service("diffusion.models").checkpoint(value_of(fresh_engine, txt2img(), "ckpt", "model"))
    assert loaded.adapters == {}
    _base_still_works(fresh_engine, make_engine)
    # and a LoRA that fits still loads on the same model.
    f.nodes["lora"]["inputs"]["lora"] = "a.safetensors"
    assert image_of(fresh_engine, f).shape == (1, 64, 64, 3)


def test_controlnet_for_the_wrong_architecture_names_the_apply_node(fresh_engine, make_engine):
    f = txt2img(prompt="a sun", seed=21, steps=2)
    f.add("cn", "LoadControlNet", controlnet="cn-xl")
    f.add("hint", "LoadImage", image="hint.png")
    f.add("apply", "ApplyControlNet", conditioning=link("pos", "conditioning"), control_net=link("cn", "control_net"),
          image=link("hint", "image"))
    f.nodes["sampler"]["inputs"]["positive"] = link("apply", "conditioning")
    with pytest.raises(NodeFailed, match="made for sdxl models") as info:
        image_of(fresh_engine, f)
    assert info.value.node_id == "apply"
    _base_still_works(fresh_engine, make_engine)


def test_a_folder_that_is_not_a_controlnet(extra):
    engine, root = extra
    (root / "controlnet" / "empty").mkdir()
    f = txt2img()
    f.add("cn", "LoadControlNet", controlnet="empty")
    f.add("capture", "Capture", value=link("cn", "control_net"))
    with pytest.raises(NodeFailed, match="config.json") as info:
        engine.run(f.doc("capture"))
    assert info.value.node_id == "cn"


def test_conditioning_from_another_architecture_names_the_sampler(fresh_engine):
    f = txt2img(steps=2)
    f.add("xl", "LoadCheckpoint", checkpoint="tiny-xl")
    f.nodes["pos"]["inputs"]["clip"] = link("xl", "clip")
    with pytest.raises(NodeFailed, match="sdxl text encoder but the model is sd15") as info:
        image_of(fresh_engine, f)
    assert info.value.node_id == "sampler"


def test_a_file_that_is_not_an_image(extra):
    engine, root = extra
    (root / "input" / "fake.png").write_bytes(b"hello")
    f = txt2img()
    f.add("load", "LoadImage", image="fake.png")
    f.add("capture", "Capture", value=link("load", "image"))
    with pytest.raises(NodeFailed, match="is not a PNG, JPEG, WEBP, GIF, BMP image") as info:
        engine.run(f.doc("capture"))
    assert info.value.node_id == "load"


def test_sampler_settings_are_checked_before_running(fresh_engine):
    bad = txt2img(steps=8, denoise=0.1)
    problems = fresh_engine.validate(bad.doc())
    assert any(p.node == "sampler" and p.input == "steps" for p in problems)
    split = txt2img(sampler="Sampler", start_step=3, end_step=2)
    assert any(p.node == "sampler" and p.input == "start_step" for p in fresh_engine.validate(split.doc()))
    f = txt2img()
    f.add("cn", "LoadControlNet", controlnet="cn")
    f.add("hint", "LoadImage", image="hint.png")
    f.add("apply", "ApplyControlNet", conditioning=link("pos", "conditioning"), control_net=link("cn", "control_net"),
          image=link("hint", "image"), start=0.8, end=0.2)
    assert any(p.node == "apply" and p.input == "start" for p in fresh_engine.validate(f.doc()))
    assert fresh_engine.service("diffusion.models").loads == 0
