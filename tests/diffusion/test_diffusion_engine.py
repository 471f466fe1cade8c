"""The diffusion pack inside the engine: caching, shared models, LoRA
isolation, eviction, progress, interruption, saved files."""

from __future__ import annotations

import pytest
import torch

from lcmgraph import RunControl, RunInterrupted
from lcmgraph.pngmeta import PARAMETERS_KEY, read_text_chunks, workflow_from_png
from tests.helpers import IMAGE_ATOL, assert_close_portable

from .diffusion_helpers import Flow, image_of, link, max_diff, run_to, txt2img, value_of


def _manager(engine):
    return engine.service("diffusion.models")


def _lora_flow(weight: float) -> Flow:
    """An LCM-LoRA on the model only: the prompt is encoded by the base CLIP."""
    f = txt2img(prompt="a red circle", seed=1, steps=4)
    f.add("lora", "ApplyLoRA", model=link("ckpt", "model"), lora="a.safetensors", weight=weight)
    f.nodes["sampler"]["inputs"]["model"] = link("lora", "model")
    return f


def test_changing_only_the_lora_weight_reruns_only_the_sampler_and_after(fresh_engine):
    first = run_to(fresh_engine, _lora_flow(1.0), "decode", "image")
    second = run_to(fresh_engine, _lora_flow(0.5), "decode", "image")
    assert set(second.executed) == {"lora", "sampler", "decode", "capture"}
    assert {"ckpt", "pos", "empty"} <= set(second.cached)
    manager = _manager(fresh_engine)
    assert manager.loads == 1
    (loaded,) = [manager.checkpoint(r) for r in [second.values["lora"]["model"]]]
    assert len(loaded.adapters) == 1  # the adapter was loaded once, only its weight changed
    assert max_diff(first.values["decode"]["image"].numpy(), second.values["decode"]["image"].numpy()) > 1e-4


def _clip_lora_flow(weight: float, clip_weight: float) -> Flow:
    """A LoRA on the model and the text encoder; the prompt goes through the LoRA's CLIP."""
    f = txt2img(prompt="a red circle", seed=1, steps=2)
    f.add("lora", "ApplyLoRA", model=link("ckpt", "model"), clip=link("ckpt", "clip"), lora="b_kohya.safetensors",
          weight=weight, clip_weight=clip_weight)
    f.nodes["sampler"]["inputs"]["model"] = link("lora", "model")
    f.nodes["pos"]["inputs"]["clip"] = link("lora", "clip")
    return f


def test_a_new_unet_lora_weight_does_not_re_encode_the_prompt(fresh_engine):
    first = run_to(fresh_engine, _clip_lora_flow(1.0, 1.0), "decode", "image")
    assert "pos" in first.executed
    # the UNet weight changes: ApplyLoRA's CLIP output keeps its key, the encoding comes from the cache
    second = run_to(fresh_engine, _clip_lora_flow(0.5, 1.0), "decode", "image")
    assert set(second.executed) == {"lora", "sampler", "decode", "capture"}
    assert "pos" in second.cached
    assert max_diff(first.values["decode"]["image"].numpy(), second.values["decode"]["image"].numpy()) > 1e-4
    # the CLIP weight changes: now the prompt is encoded again, with the new weight
    third = run_to(fresh_engine, _clip_lora_flow(0.5, 0.25), "decode", "image")
    assert {"lora", "pos", "sampler"} <= set(third.executed)
    assert not third.values["pos"]["conditioning"].embeds.equal(second.values["pos"]["conditioning"].embeds)


def test_a_no_lora_branch_gets_the_untouched_base_image(fresh_engine, make_engine):
    base = image_of(make_engine(), txt2img(prompt="a cat", seed=5, steps=4))  # an engine that never saw a LoRA
    f = txt2img(prompt="a cat", seed=5, steps=4)
    f.add("lora", "ApplyLoRA", model=link("ckpt", "model"), clip=link("ckpt", "clip"), lora="b_kohya.safetensors",
          weight=1.0, clip_weight=1.0)
    f.add("lora_pos", "TextEncode", clip=link("lora", "clip"), text="a cat")
    f.add("lora_sampler", "LCMSampler", model=link("lora", "model"), positive=link("lora_pos", "conditioning"),
          latent=link("empty", "latent"), seed=5, steps=4)
    f.add("lora_decode", "VAEDecode", vae=link("ckpt", "vae"), latent=link("lora_sampler", "latent"))
    f.add("cap_lora", "Capture", value=link("lora_decode", "image"))
    f.add("cap_base", "Capture", value=link("decode", "image"))
    result = fresh_engine.run(f.doc("cap_lora", "cap_base"))
    with_lora = result.values["lora_decode"]["image"].numpy()
    assert max_diff(result.values["decode"]["image"].numpy(), base) == 0.0
    assert max_diff(with_lora, base) > 1e-4
    # And after the LoRA branch ran last: a new base run is still bitwise the base image.
    again = image_of(fresh_engine, txt2img(prompt="a cat", seed=5, steps=4, guidance=1.0, original_inference_steps=49))
    reference = image_of(make_engine(), txt2img(prompt="a cat", seed=5, steps=4, original_inference_steps=49))
    assert max_diff(again, reference) == 0.0


def test_one_checkpoint_is_loaded_once_per_engine(fresh_engine, make_engine):
    f = txt2img(seed=2, steps=2)
    f.add("ckpt2", "LoadCheckpoint", checkpoint="tiny")
    f.nodes["decode"]["inputs"]["vae"] = link("ckpt2", "vae")
    run_to(fresh_engine, f, "decode", "image")
    assert _manager(fresh_engine).loads == 1
    other = make_engine()
    assert _manager(other) is not _manager(fresh_engine)
    assert _manager(other).loads == 0  # engines never share models


def test_models_are_evicted_under_the_memory_budget_and_reloaded(make_engine):
    probe = make_engine()
    image_of(probe, txt2img(seed=3, steps=2))
    one_model = _manager(probe).bytes_used
    engine = make_engine(model_memory_bytes=int(one_model * 1.5))
    first = image_of(engine, txt2img(seed=3, steps=2))
    image_of(engine, txt2img(ckpt="tiny-lcm", seed=3, steps=2))
    manager = _manager(engine)
    assert manager.loads == 2 and len(manager.loaded_keys()) == 1 and manager.bytes_used <= manager.budget
    # The cached MODEL handle still works: the checkpoint is simply loaded again.
    again = image_of(engine, txt2img(seed=3, steps=2, guidance=1.0, original_inference_steps=40))
    assert manager.loads == 3
    assert max_diff(again, image_of(probe, txt2img(seed=3, steps=2, original_inference_steps=40))) == 0.0
    assert first.shape == again.shape


def test_sampler_reports_each_step_with_a_small_preview(fresh_engine):
    events = []
    run_to(fresh_engine, txt2img(seed=4, steps=3, size=64), "sampler", "latent", sink=events.append)
    steps = [e for e in events if e.kind == "node_progress" and e.node == "sampler"]
    assert [e.data["step"] for e in steps] == [1, 2, 3] and {e.data["total"] for e in steps} == {3}
    assert all(e.preview is not None and e.preview.size == (8, 8) for e in steps)


def test_interrupting_a_sampler_stops_the_run_and_the_engine_still_works(fresh_engine):
    control = RunControl()

    def sink(event):
        if event.kind == "node_progress" and event.node == "sampler" and event.data["step"] == 1:
            control.interrupt()

    with pytest.raises(RunInterrupted) as info:
        run_to(fresh_engine, txt2img(seed=6, steps=4), "decode", "image", sink=sink, control=control)
    assert info.value.node_id == "sampler"
    image = image_of(fresh_engine, txt2img(seed=6, steps=4))
    assert image.shape == (1, 64, 64, 3)


def _interrupt_after_first_block(module, control):
    """Hooks that interrupt ``control`` once ``module``'s first block ran, and
    count the calls of ``module`` that got to the end."""
    finished = []
    first = module.up_blocks[0] if hasattr(module, "up_blocks") else module.down_blocks[0]
    handles = [first.register_forward_hook(lambda *_: control.interrupt()),
               module.register_forward_hook(lambda *_: finished.append(1))]
    return finished, handles


@pytest.mark.parametrize("part", ["unet", "decoder"])
def test_an_interrupt_stops_a_model_call_between_its_blocks(fresh_engine, part):
    flow = txt2img(seed=4, steps=2)
    loaded = _manager(fresh_engine).checkpoint(value_of(fresh_engine, txt2img(), "ckpt", "model"))
    module = loaded.unet if part == "unet" else loaded.vae.decoder
    control = RunControl()
    finished, handles = _interrupt_after_first_block(module, control)
    events = []
    try:
        with pytest.raises(RunInterrupted) as info:
            run_to(fresh_engine, flow, "decode", "image", control=control, sink=events.append)
    finally:
        for handle in handles:
            handle.remove()
    # the call that was running never finished: the interrupt acted inside it
    assert finished == []
    assert info.value.node_id == ("sampler" if part == "unet" else "decode")
    sampler_steps = [e.data["step"] for e in events if e.kind == "node_progress" and e.node == "sampler"]
    assert sampler_steps == ([] if part == "unet" else [1, 2])  # the UNet's first call never completed a step
    assert ("node_done", info.value.node_id) not in [(e.kind, e.node) for e in events]
    # nothing is left half-patched: the engine runs the workflow to the end afterwards
    assert run_to(fresh_engine, flow, "decode", "image").executed[-1] == "capture"


def test_same_workflow_and_seed_give_the_same_image_on_two_engines(make_engine):
    flow = txt2img(prompt="a dog", seed=9, steps=2, batch=2)
    assert max_diff(image_of(make_engine(), flow), image_of(make_engine(), flow)) == 0.0


def test_save_image_never_overwrites_and_embeds_the_workflow(fresh_engine):
    f = txt2img(seed=42, steps=2, batch=2)
    f.add("save", "SaveImage", image=link("decode", "image"), filename_prefix="runs/test")
    doc = f.doc("save")
    first = fresh_engine.run(doc).outputs["save"]["images"]
    second = fresh_engine.run(doc).outputs["save"]["images"]  # output nodes always run
    names = [i["filename"] for i in first + second]
    assert names == ["runs/test_00001.png", "runs/test_00002.png", "runs/test_00003.png", "runs/test_00004.png"]
    assert workflow_from_png(second[0]["path"]) == doc
    import json

    params = json.loads(read_text_chunks(second[0]["path"])[PARAMETERS_KEY])
    assert params["sampler"]["seed"] == 42 and params["pos"]["text"] == "a red circle"


def test_save_image_prefix_cannot_leave_the_output_folder(fresh_engine, tmp_path):
    f = txt2img(seed=1, steps=1)
    f.add("save", "SaveImage", image=link("decode", "image"), filename_prefix="../../escape")
    (image,) = fresh_engine.run(f.doc("save")).outputs["save"]["images"]
    assert (tmp_path / "out") in __import__("pathlib").Path(image["path"]).resolve().parents


def test_preview_image_goes_to_the_temp_folder(fresh_engine, tmp_path):
    f = txt2img(seed=1, steps=1)
    f.add("preview", "PreviewImage", image=link("decode", "image"))
    (image,) = fresh_engine.run(f.doc("preview")).outputs["preview"]["images"]
    assert image["type"] == "temp" and str(tmp_path / "home" / "temp") in image["path"]


def test_load_image_turns_alpha_into_a_mask(fresh_engine, models):
    import numpy as np
    from PIL import Image

    rgba = np.zeros((16, 24, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:, :12, 3] = 255  # left half opaque, right half transparent
    Image.fromarray(rgba, mode="RGBA").save(models / "input" / "alpha.png")
    f = Flow()
    f.add("load", "LoadImage", image="alpha.png")
    f.add("capture", "Capture", value=link("load", "mask"))
    values = fresh_engine.run(f.doc("capture")).values["load"]
    image, mask = values["image"], values["mask"]
    assert tuple(image.shape) == (1, 16, 24, 3) and float(image[..., 0].min()) == 1.0
    assert tuple(mask.shape) == (1, 16, 24)
    assert float(mask[0, :, :12].max()) == 0.0 and float(mask[0, :, 12:].min()) == 1.0


def test_tiled_vae_matches_diffusers_tiling_and_leaves_the_vae_untiled(fresh_engine, models):
    import torch
    from diffusers import AutoencoderKL
    from diffusers.image_processor import VaeImageProcessor
    from PIL import Image

    f = txt2img(seed=1, steps=2)
    f.add("load", "LoadImage", image="hint.png")
    f.add("encode", "VAEEncode", vae=link("ckpt", "vae"), image=link("load", "image"), tiled=True)
    f.nodes["decode"]["inputs"].update(latent=link("encode", "latent"), tiled=True)
    latent = value_of(fresh_engine, f, "encode", "latent").samples
    image = image_of(fresh_engine, f)

    vae = AutoencoderKL.from_pretrained(models / "checkpoints" / "tiny" / "vae")
    pixels = VaeImageProcessor().preprocess(Image.open(models / "input" / "hint.png"))
    with torch.no_grad():
        plain = vae.encode(pixels).latent_dist.mode()
        vae.enable_tiling()  # 32-pixel tiles on a 64-pixel image: the tiled path really runs
        ref_latent = vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
        ref_image = (vae.decode(ref_latent / vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    assert max_diff(latent.numpy(), ref_latent.numpy()) <= 1e-6
    assert max_diff(image, ref_image.permute(0, 2, 3, 1).numpy()) <= 1e-5
    assert max_diff(latent.numpy(), (plain * vae.config.scaling_factor).numpy()) > 1e-3
    assert _manager(fresh_engine).checkpoint(value_of(fresh_engine, f, "ckpt", "vae")).vae.use_tiling is False


def test_vae_encode_crops_to_a_multiple_of_eight(fresh_engine, models):
    from PIL import Image

    Image.new("RGB", (70, 45), (10, 200, 30)).save(models / "input" / "odd.png")
    f = Flow()
    f.add("ckpt", "LoadCheckpoint", checkpoint="tiny")
    f.add("load", "LoadImage", image="odd.png")
    f.add("encode", "VAEEncode", vae=link("ckpt", "vae"), image=link("load", "image"))
    assert tuple(value_of(fresh_engine, f, "encode", "latent").samples.shape) == (1, 4, 5, 8)


def test_values_survive_the_disk_cache_tier(models, tmp_path):
    """A second process (engine) reads the latent/conditioning/handles back from
    disk; a handle whose model is not loaded yet is simply loaded on use."""
    cache = tmp_path / "cache"
    first = _with_disk(models, tmp_path / "a", cache)
    second = _with_disk(models, tmp_path / "b", cache)
    flow = txt2img(prompt="a tree", seed=31, steps=2)
    run_to(first, flow, "sampler", "latent")  # the first engine never decodes
    result = run_to(second, flow, "decode", "image")
    assert "sampler" in result.cached and result.executed == ["decode", "capture"]
    assert second.cache.stats.disk_hits >= 2  # the latent and the VAE handle
    fresh = run_to(_with_disk(models, tmp_path / "c", None), flow, "decode", "image")  # no disk tier
    # The latent read back is the computed one, bit for bit: a data round trip.
    assert torch.equal(result.values["sampler"]["latent"].samples, fresh.values["sampler"]["latent"].samples)
    # But it is read in at its offset in the cache file, not into a 64-byte aligned buffer: a kernel
    # reading it in place may take another MKL path, so the decoded images are equal up to rounding.
    assert_close_portable(result.values["decode"]["image"], fresh.values["decode"]["image"],
                          "image decoded from the disk-cached latent", atol=IMAGE_ATOL)


def _with_disk(models, tmp, cache):
    from lcmgraph import Engine, EngineConfig

    from .diffusion_helpers import PACKS

    return Engine(EngineConfig(home=tmp / "home", models_dir=models, output_dir=tmp / "out", plugins_from_env=False,
                               plugin_dirs=[PACKS], device="cpu", cache_dir=cache))


def test_device_and_dtype_choice():
    import torch
    from lcmgraph_nodes.diffusion.models.manager import pick_device, pick_dtype

    assert pick_device("cpu") == "cpu" and pick_device("cuda:1") == "cuda:1"
    assert pick_device("auto") in ("cuda", "mps", "cpu")
    assert pick_dtype("cuda") is torch.float16 and pick_dtype("cuda:1") is torch.float16
    assert pick_dtype("cpu") is torch.float32 and pick_dtype("mps") is torch.float32
    assert pick_dtype("cuda", "bfloat16") is torch.bfloat16


def test_least_recently_used_lora_adapters_are_unloaded(make_engine):
    engine = make_engine(max_lora_adapters=1)
    manager = _manager(engine)

    def flow(lora, seed):
        f = _lora_flow(1.0)
        f.nodes["lora"]["inputs"]["lora"] = lora
        f.nodes["sampler"]["inputs"]["seed"] = seed
        return f

    image_of(engine, flow("a.safetensors", 1))
    image_of(engine, flow("b_peft.safetensors", 1))
    (loaded,) = [manager.checkpoint(value_of(engine, flow("a.safetensors", 1), "ckpt", "model"))]
    assert len(loaded.adapters) == 1
    again = image_of(engine, flow("a.safetensors", 2))  # reloads the unloaded adapter
    assert max_diff(again, image_of(make_engine(), flow("a.safetensors", 2))) == 0.0
    # A stack of two is never split, even over the limit.
    stacked = _lora_flow(1.0)
    stacked.add("lora2", "ApplyLoRA", model=link("lora", "model"), lora="b_peft.safetensors", weight=0.5)
    stacked.nodes["sampler"]["inputs"]["model"] = link("lora2", "model")
    assert max_diff(image_of(engine, stacked), image_of(make_engine(), stacked)) == 0.0


def test_auto_dtype_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch):
    import torch
    from lcmgraph_nodes.diffusion.models import cpu
    from lcmgraph_nodes.diffusion.models.fastpath import resolve_dtype

    epyc = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n" * 2
    older = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
    graviton3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
    mixed = epyc + older  # a CPU set where one core lacks it: not native for the process
    assert [cpu.flags_have_bf16(t) for t in (epyc, older, graviton3, mixed, "")] == [True, False, True, False, False]
    monkeypatch.setenv("LCMGRAPH_CPU_BF16", "1")
    assert resolve_dtype("cpu") is torch.bfloat16 and resolve_dtype("cpu", "fp32") is torch.float32
    assert resolve_dtype("cuda") is torch.float16 and resolve_dtype("mps") is torch.float32
    monkeypatch.setenv("LCMGRAPH_CPU_BF16", "0")
    assert resolve_dtype("cpu") is torch.float32
