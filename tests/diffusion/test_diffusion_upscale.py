"""Upscale models through spandrel: the built-in tiny 2x ESRGAN, tiles laid and
blended as ComfyUI's tiled_scale does, .pth read with weights_only, progress
and interrupts between tiles, and the job budget seeing the upscaled size."""

from __future__ import annotations

import argparse
import itertools

import pytest
import torch

from lcmgraph import Engine, EngineConfig, RunControl, RunInterrupted, WorkflowInvalid

from .diffusion_helpers import PACKS, Flow, link, new_engine, value_of


def _flow(model="builtin:tiny-upscale-2x", size=(48, 64), **inputs) -> Flow:
    f = Flow()
    f.add("model", "UpscaleModelLoader", model_name=model)
    f.add("image", "EmptyImage", width=size[1], height=size[0], batch=2, color=0x336699)
    f.add("up", "ImageUpscaleWithModel", upscale_model=link("model", "upscale_model"), image=link("image", "image"),
          **inputs)
    return f


def _descriptor(engine):
    manager = engine.service("diffusion.models")
    ref = value_of(engine, _flow(), "model", "upscale_model")
    return manager.upscaler(ref.path, ref.identity).descriptor


def _comfy_tiled(function, samples, tile, overlap, scale):
    """ComfyUI's tiled_scale (comfy/utils.py) for 2-D images, written out."""
    out_all = torch.empty((samples.shape[0], 3, round(samples.shape[2] * scale), round(samples.shape[3] * scale)))
    for b in range(samples.shape[0]):
        s = samples[b:b + 1]
        if s.shape[2] <= tile and s.shape[3] <= tile:
            out_all[b:b + 1] = function(s)
            continue
        out = torch.zeros((1, 3, out_all.shape[2], out_all.shape[3]))
        div = torch.zeros_like(out)
        positions = [range(0, max(1, s.shape[d] - overlap), tile - overlap) for d in (2, 3)]
        for it in itertools.product(*positions):
            s_in, ups = s, []
            for d in range(2):
                pos = max(0, min(s.shape[d + 2] - overlap, it[d]))
                length = min(tile, s.shape[d + 2] - pos)
                s_in = s_in.narrow(d + 2, pos, length)
                ups.append(round(pos * scale))
            ps = function(s_in)
            mask = torch.ones_like(ps)
            feather = round(overlap * scale)
            for t in range(feather):
                for d in (2, 3):
                    mask.narrow(d, t, 1).mul_((1.0 / feather) * (t + 1))
                    mask.narrow(d, mask.shape[d] - 1 - t, 1).mul_((1.0 / feather) * (t + 1))
            o, o_d = out, div
            for d in range(2):
                o, o_d = o.narrow(d + 2, ups[d], mask.shape[d + 2]), o_d.narrow(d + 2, ups[d], mask.shape[d + 2])
            o += ps * mask
            o_d += mask
        out_all[b:b + 1] = out / div
    return out_all


@pytest.fixture
def image():
    return torch.rand(2, 48, 64, 3, generator=torch.Generator().manual_seed(0))


def test_the_tiny_upscaler_doubles_an_image(engine, image):
    descriptor = _descriptor(engine)
    assert (descriptor.architecture.name, descriptor.scale) == ("ESRGAN", 2)
    f = _flow()
    out = value_of(engine, f, "up", "image")
    assert out.shape == (2, 96, 128, 3) and 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    pixels = value_of(engine, f, "image", "image").movedim(-1, 1)
    with torch.no_grad():  # one tile: the model on each image whole
        whole = torch.cat([descriptor.model(pixels[i:i + 1]) for i in range(2)])
    assert torch.equal(out, whole.movedim(1, -1).clamp(0, 1))


@pytest.mark.parametrize("tile, overlap", [(32, 8), (40, 16), (64, 0)])
def test_tiles_are_laid_and_blended_as_comfyui_does(engine, image, tile, overlap):
    from lcmgraph_nodes.diffusion.formats.upscale_files import tile_count, upscale_tiled

    descriptor = _descriptor(engine)
    calls = []
    out = upscale_tiled(descriptor, image, tile, overlap, "cpu", torch.float32, lambda d, t: calls.append((d, t)))
    with torch.no_grad():
        expected = _comfy_tiled(lambda x: descriptor.model(x), image.movedim(-1, 1), tile, overlap, 2)
    assert torch.equal(out, expected.movedim(1, -1).clamp(0, 1))
    assert calls[-1] == (2 * tile_count(48, 64, tile, overlap),) * 2 and len(calls) == calls[-1][0]


def test_pth_files_load_with_weights_only(engine, tmp_path):
    from safetensors.torch import load_file

    descriptor = _descriptor(engine)
    folder = tmp_path / "upscale_models"
    folder.mkdir()
    path = engine.runtime.files.resolve("upscale_models", "builtin:tiny-upscale-2x")
    torch.save(load_file(str(path)), folder / "2x.pth")
    torch.save({"params": load_file(str(path)), "extra": Payload()}, folder / "evil.pth")
    other = new_engine(engine.config.models_dir, tmp_path / "e", folders={"upscale_models": [folder]})
    f = _flow("2x.pth", tile=32, overlap=8)
    assert value_of(other, f, "up", "image").shape == (2, 96, 128, 3)
    assert other.service("diffusion.models").upscaler(str(folder / "2x.pth"), "x").descriptor.scale == descriptor.scale
    with pytest.raises(Exception, match="weights_only|could not be read"):
        value_of(other, _flow("evil.pth"), "up", "image")


class Payload:
    """Any class: weights_only loading refuses to build it."""


def test_upscaling_reports_tiles_and_stops_between_them(fresh_engine):
    control, events = RunControl(), []

    def sink(event):
        if event.kind == "node_progress" and event.node == "up":
            events.append(event.data)
            if event.data.get("stage") == "upscaling" and event.data["step"] == 2:
                control.interrupt()

    f = _flow(tile=32, overlap=8)
    f.add("capture", "Capture", value=link("up", "image"))
    with pytest.raises(RunInterrupted) as info:
        fresh_engine.run(f.doc("capture"), sink=sink, control=control)
    assert info.value.node_id == "up"
    steps = [e["step"] for e in events if e.get("stage") == "upscaling"]
    assert steps == [1, 2] and events[-1]["total"] == 2 * 6


def test_the_budget_sees_the_upscaled_size(models, tmp_path):
    from lcmgraph.server.job_limits import budget_from_args

    args = argparse.Namespace(device="cpu", max_pixels=128 * 128, max_batch=None, max_steps=150, max_memory=4.0)
    engine = Engine(EngineConfig(home=tmp_path / "home", models_dir=models, output_dir=tmp_path / "out",
                                 plugins_from_env=False, plugin_dirs=[PACKS], device="cpu",
                                 budget=budget_from_args(args)))
    f = _flow(size=(96, 96))
    f.add("save", "SaveImage", image=link("up", "image"))
    with pytest.raises(WorkflowInvalid) as info:
        engine.run(f.doc("save"))
    assert any("an upscaled image of 192x192" in str(p) for p in info.value.problems)
