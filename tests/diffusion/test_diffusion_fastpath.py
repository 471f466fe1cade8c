"""The fast-path switches (fastpath.py, lora_fuse.py), checked on the CPU.

Speed is the GPU benchmark's business (bench/gpu.py); here each switch must
give the image it should: the default CPU path untouched, LoRA fusion close to
peft's unfused adapters and undone bitwise, channels_last / fused QKV / other
attention kernels / bf16 close, and compilation wired (eager backend).
"""

from __future__ import annotations

import os

import pytest
import torch
from lcmgraph_nodes.diffusion.models import fastpath
from lcmgraph_nodes.diffusion.models.manager import SERVICE

from .diffusion_helpers import image_of, link, max_diff, run_to, txt2img

#: fp32 on the CPU: reordered sums (fused weights, fused projections, another
#: memory layout) move pixels by ~1e-6; a missing or doubled LoRA moves them by >1e-3.
CLOSE = 1e-5


def _lora_flow(seed: int = 1, loras=(("a.safetensors", 1.0),), ckpt: str = "tiny"):
    f = txt2img(ckpt=ckpt, prompt="a red circle", seed=seed, steps=4)
    model = link("ckpt", "model")
    for i, (name, weight) in enumerate(loras):
        f.add(f"lora{i}", "ApplyLoRA", model=model, lora=name, weight=weight)
        model = link(f"lora{i}", "model")
    f.nodes["sampler"]["inputs"]["model"] = model
    return f


def _base_flow(seed: int = 1, ckpt: str = "tiny"):
    return txt2img(ckpt=ckpt, prompt="a red circle", seed=seed, steps=4)


def _state(engine):
    manager = engine.service(SERVICE)
    (loaded,) = [manager._entries[k] for k in manager.loaded_keys() if k.startswith("ckpt:")]
    return manager, loaded


def _unet_weights(engine) -> dict:
    _, loaded = _state(engine)
    return {k: v.clone() for k, v in loaded.unet.state_dict().items() if "lora_" not in k}


# -- option resolution ---------------------------------------------------------------------
def test_defaults_keep_the_cpu_path_plain_and_turn_the_gpu_tricks_on():
    cpu = fastpath.resolve({}, "cpu", "/tmp/home")
    assert cpu.dtype is torch.float32
    assert not (cpu.channels_last or cpu.fused_qkv or cpu.fuse_lora or cpu.compiling or cpu.compile_vae)
    assert cpu.attention == "sdpa" and cpu.compile_cache is None
    gpu = fastpath.resolve({}, "cuda", "/tmp/home")
    assert gpu.dtype is torch.float16 and gpu.fuse_lora
    assert gpu.compile == "reduce-overhead" and gpu.compile_after == 1
    assert gpu.channels_last and gpu.fused_qkv and gpu.compile_vae
    assert str(gpu.compile_cache) == "/tmp/home/compile"
    # Offload moves weights every image: no CUDA graphs then.
    assert fastpath.resolve({"offload": True}, "cuda").compile == "default"
    assert fastpath.resolve({"offload": True, "compile": "reduce-overhead"}, "cuda").compile == "default"
    eager = fastpath.resolve({"compile": "off"}, "cuda:1")
    assert not (eager.compiling or eager.channels_last or eager.fused_qkv) and eager.fuse_lora
    assert fastpath.resolve({"dtype": "bf16"}, "cpu").dtype is torch.bfloat16
    # channels_last for bf16 on a CPU (oneDNN's faster layout there); fp32 stays diffusers' own layout
    assert fastpath.resolve({"dtype": "bf16"}, "cpu").channels_last
    assert not fastpath.resolve({"dtype": "bf16", "channels_last": "off"}, "cpu").channels_last
    assert not fastpath.resolve({"dtype": "fp32"}, "cpu").channels_last
    # bf16 on a CPU keeps the text encoders in fp32 (README: the quality table); elsewhere they follow
    assert fastpath.resolve({"dtype": "bf16"}, "cpu").text_torch_dtype is torch.float32
    assert fastpath.resolve({"dtype": "bf16", "text_dtype": "model"}, "cpu").text_torch_dtype is torch.bfloat16
    assert fastpath.resolve({"dtype": "fp32"}, "cpu").text_torch_dtype is torch.float32
    assert fastpath.resolve({}, "cuda").text_torch_dtype is torch.float16
    assert fastpath.resolve({"text_dtype": "bf16"}, "cpu").text_torch_dtype is torch.bfloat16
    assert fastpath.resolve({"dtype": "float16"}, "cpu").dtype is torch.float16
    assert fastpath.resolve({"compile_cache": "off", "compile": "default"}, "cpu").compile_cache is None
    for bad in ({"dtype": "fp8"}, {"compile": "fast"}, {"attention": "xformers"},
                {"fuse_lora": "maybe"}, {"compile_after": "soon"}, {"vae_dtype": "int8"}, {"text_dtype": "fp64"}):
        with pytest.raises(fastpath.FastPathOptionError, match=next(iter(bad))):
            fastpath.resolve(bad, "cpu")


def test_the_default_cpu_engine_applies_no_switch(make_engine):
    engine = make_engine()
    image_of(engine, _lora_flow(seed=3))
    manager, loaded = _state(engine)
    assert manager.fast.summary()["fuse_lora"] is False
    assert not fastpath.is_compiled(loaded.unet) and not fastpath.qkv_fused_now(loaded.unet)
    assert loaded.unet.conv_in.weight.is_contiguous()
    assert loaded.fused.builds == 0 and not loaded.fused.unwrapped


# -- LoRA fusion ------------------------------------------------------------------------------
def test_fused_lora_matches_unfused_and_is_undone_bitwise(make_engine):
    plain = make_engine()
    unfused = image_of(plain, _lora_flow(seed=1))
    base = image_of(plain, _base_flow(seed=1))
    fresh = make_engine()  # an engine that never saw a LoRA
    image_of(fresh, _base_flow(seed=1))
    pristine = _unet_weights(fresh)

    engine = make_engine(fuse_lora=True)
    fused = image_of(engine, _lora_flow(seed=1))
    diff = max_diff(fused, unfused)
    print(f"fused vs unfused LoRA image: max diff {diff:.3g}")
    assert diff <= CLOSE
    assert max_diff(fused, base) > 1e-3  # the LoRA is really in
    _, loaded = _state(engine)
    assert loaded.fused.builds == 1 and loaded.fused.unwrapped  # peft's wrappers are out of the tree

    # Same patch list, new seed: the fusion is reused, not rebuilt.
    again = image_of(engine, _lora_flow(seed=2))
    assert loaded.fused.builds == 1 and loaded.fused.hits == 1
    assert max_diff(again, image_of(plain, _lora_flow(seed=2))) <= CLOSE

    # No LoRA after the LoRA: the original weights, bitwise, and the base image, bitwise.
    after = image_of(engine, _base_flow(seed=1))
    assert loaded.fused.restores == 1 and loaded.fused.signature == ()
    assert max_diff(after, base) == 0.0
    weights = _unet_weights(engine)
    assert weights.keys() == pristine.keys()
    assert all(torch.equal(weights[k], pristine[k]) for k in pristine)


def test_changing_the_patch_list_refuses_and_counts(make_engine):
    plain = make_engine()
    engine = make_engine(fuse_lora=True)
    stack = (("a.safetensors", 1.0), ("b_peft.safetensors", 0.8))
    for seed, loras in [(1, stack[:1]), (2, stack), (3, (("a.safetensors", 0.5),)), (4, stack)]:
        ours = image_of(engine, _lora_flow(seed=seed, loras=loras))
        assert max_diff(ours, image_of(plain, _lora_flow(seed=seed, loras=loras))) <= CLOSE
    _, loaded = _state(engine)
    assert (loaded.fused.builds, loaded.fused.hits, loaded.fused.restores) == (4, 0, 3)


def test_loading_another_adapter_while_fused_keeps_both_right(make_engine):
    plain = make_engine()
    engine = make_engine(fuse_lora=True)
    first = image_of(engine, _lora_flow(seed=5))
    # ApplyLoRA loads b while a is fused: peft needs its wrappers back for that.
    value = run_to(engine, _lora_flow(seed=6, loras=(("b_peft.safetensors", 1.0),)), "lora0", "model")
    assert value.values["lora0"]["model"].loras
    _, loaded = _state(engine)
    assert len(loaded.adapters) == 2
    b_image = image_of(engine, _lora_flow(seed=6, loras=(("b_peft.safetensors", 1.0),)))
    assert max_diff(b_image, image_of(plain, _lora_flow(seed=6, loras=(("b_peft.safetensors", 1.0),)))) <= CLOSE
    a_again = image_of(engine, _lora_flow(seed=7))
    assert max_diff(a_again, image_of(plain, _lora_flow(seed=7))) <= CLOSE
    assert max_diff(first, image_of(plain, _lora_flow(seed=5))) <= CLOSE


def test_fused_lora_with_offload_and_sdxl(make_engine):
    plain = make_engine()
    engine = make_engine(fuse_lora=True, offload=True)
    flow = _lora_flow(seed=2, loras=(("xl.safetensors", 1.0),), ckpt="tiny-xl")
    assert max_diff(image_of(engine, flow), image_of(plain, flow)) <= CLOSE
    assert max_diff(image_of(engine, _base_flow(seed=2, ckpt="tiny-xl")),
                    image_of(plain, _base_flow(seed=2, ckpt="tiny-xl"))) == 0.0


# -- memory format, fused projections, attention kernels, dtypes -----------------------------
def test_channels_last_and_fused_qkv_give_close_images(make_engine):
    plain = make_engine()
    base, lora = image_of(plain, _base_flow(seed=4)), image_of(plain, _lora_flow(seed=4))
    for options in ({"channels_last": True}, {"fused_qkv": True},
                    {"channels_last": True, "fused_qkv": True, "fuse_lora": True}):
        engine = make_engine(**options)
        d_base = max_diff(image_of(engine, _base_flow(seed=4)), base)
        d_lora = max_diff(image_of(engine, _lora_flow(seed=4)), lora)
        print(f"{options}: max diff {d_base:.3g} (no LoRA), {d_lora:.3g} (LoRA)")
        assert d_base <= CLOSE and d_lora <= CLOSE
        _, loaded = _state(engine)
        if options.get("channels_last"):
            assert loaded.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        if options.get("fused_qkv"):
            # Fused projections are in use whenever no unfused adapter needs to_q/to_k/to_v.
            assert fastpath.qkv_fused_now(loaded.vae)
            assert fastpath.qkv_fused_now(loaded.unet) == bool(options.get("fuse_lora"))


def test_fused_qkv_follows_a_fused_lora_in_and_out(make_engine):
    plain = make_engine()
    engine = make_engine(fused_qkv=True, fuse_lora=True)
    assert max_diff(image_of(engine, _lora_flow(seed=8)), image_of(plain, _lora_flow(seed=8))) <= CLOSE
    assert max_diff(image_of(engine, _base_flow(seed=8)), image_of(plain, _base_flow(seed=8))) <= CLOSE
    _, loaded = _state(engine)
    for attn in fastpath._attention_modules(loaded.unet):
        if getattr(attn, "to_qkv", None) is not None:
            qkv = torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight])
            assert torch.equal(attn.to_qkv.weight, qkv)  # refreshed to the restored weights


@pytest.mark.parametrize("kernel", ["math", "flash"])
def test_pinned_attention_kernels(make_engine, kernel):
    plain = make_engine()
    engine = make_engine(attention=kernel)
    image = image_of(engine, _base_flow(seed=9))  # torch has math and flash kernels for the CPU
    assert max_diff(image, image_of(plain, _base_flow(seed=9))) <= CLOSE
    _, loaded = _state(engine)
    assert all(isinstance(a.processor, fastpath.KernelChoice) for a in fastpath._attention_modules(loaded.unet))


def test_bf16_runs_on_the_cpu(make_engine):
    plain = image_of(make_engine(), _lora_flow(seed=2))
    engine = make_engine(dtype="bf16", fuse_lora=True)
    image = image_of(engine, _lora_flow(seed=2))
    _, loaded = _state(engine)
    assert loaded.unet.dtype is torch.bfloat16 and loaded.vae.dtype is torch.bfloat16
    assert loaded.pipe.text_encoder.dtype is torch.float32  # read from the file in fp32, not via bf16
    assert torch.isfinite(torch.from_numpy(image)).all()
    print(f"bf16 vs fp32 image: max diff {max_diff(image, plain):.3g}")
    assert max_diff(image, plain) < 0.25


def test_sdxl_vae_kept_out_of_fp16(make_engine):
    fp32 = image_of(make_engine(), _base_flow(seed=3, ckpt="tiny-xl"))
    engine = make_engine(dtype="fp16")
    image = image_of(engine, _base_flow(seed=3, ckpt="tiny-xl"))
    _, loaded = _state(engine)
    # auto: an fp16 SDXL VAE that asks for upcasting stays fp32-resident (bf16 on CUDA cards with it)
    assert loaded.unet.dtype is torch.float16 and loaded.vae.dtype is torch.float32
    assert max_diff(image, fp32) < 0.05
    bf16 = make_engine(vae_dtype="bf16")
    image = image_of(bf16, _base_flow(seed=3, ckpt="tiny-xl"))
    _, loaded = _state(bf16)
    assert loaded.vae.dtype is torch.bfloat16 and loaded.unet.dtype is torch.float32
    print(f"bf16 VAE decode vs fp32: max diff {max_diff(image, fp32):.3g}")
    assert max_diff(image, fp32) < 0.05
    keep = make_engine(dtype="fp16", vae_dtype="model")
    image_of(keep, _base_flow(seed=3, ckpt="tiny-xl"))
    assert _state(keep)[1].vae.dtype is torch.float16  # vae.py then upcasts per call, as diffusers


# -- compilation --------------------------------------------------------------------------------
def _isolate_compile_env(monkeypatch):
    for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE",
                 "TORCHINDUCTOR_AUTOGRAD_CACHE"):
        monkeypatch.setenv(name, "x")  # recorded, so the test's changes are undone
        monkeypatch.delenv(name)


def test_compile_is_wired_with_a_persistent_cache(make_engine, monkeypatch, tmp_path):
    import torch._inductor.config as inductor_config

    _isolate_compile_env(monkeypatch)
    monkeypatch.setattr(inductor_config, "fx_graph_cache", False)
    calls, saved, seen = [], [], []
    real_compile = torch.compile

    def counting(fn, **kwargs):
        calls.append((getattr(fn, "__self__", None), kwargs))
        compiled = real_compile(fn, **kwargs)

        def watched(*args, **kw):  # compilation happens in these calls: the cache settings must hold here
            seen.append((os.environ.get("TORCHINDUCTOR_CACHE_DIR"), os.environ.get("TRITON_CACHE_DIR"),
                         inductor_config.fx_graph_cache))
            return compiled(*args, **kw)

        return watched

    monkeypatch.setattr(torch, "compile", counting)
    monkeypatch.setattr(fastpath, "save_artifacts", lambda d: saved.append(d) or True)
    plain = make_engine()
    cache = tmp_path / "compile-cache"
    engine = make_engine(compile="default", compile_backend="eager", compile_after=1, compile_cache=str(cache))
    first = image_of(engine, _base_flow(seed=1))  # eager: a one-image run never compiles
    manager, loaded = _state(engine)
    assert calls == [] and not loaded.compiled
    second = image_of(engine, _base_flow(seed=2))
    assert loaded.compiled and fastpath.is_compiled(loaded.unet) and fastpath.is_compiled(loaded.vae.decoder)
    assert [c[0] for c in calls] == [loaded.unet, loaded.vae.decoder]
    assert calls[0][1] == {"backend": "eager", "dynamic": False, "fullgraph": False}
    assert seen and set(seen) == {(str(cache), str(cache / "triton"), True)} and cache.is_dir()
    # ...and only there: the process's environment (torch may write its own default there, never
    # ours) and Inductor's config are left as they were.
    assert str(cache) not in (os.environ.get("TORCHINDUCTOR_CACHE_DIR"), os.environ.get("TRITON_CACHE_DIR"))
    assert inductor_config.fx_graph_cache is False
    assert saved == []
    third = image_of(engine, _lora_flow(seed=3))  # the run after the first compiled one saves the mega-cache
    assert saved == [cache]
    assert len(calls) == 2  # compiled once per model, whatever runs next
    # compile="default" turns channels_last and fused QKV on: close to, not equal to, the plain path
    for seed, image, flow in ((1, first, _base_flow), (2, second, _base_flow), (3, third, _lora_flow)):
        assert max_diff(image, image_of(plain, flow(seed=seed))) <= CLOSE


def test_a_cache_dir_the_user_chose_wins(monkeypatch, tmp_path):
    _isolate_compile_env(monkeypatch)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert fastpath.configure_compile_cache(tmp_path / "ours") == tmp_path / "mine"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")


def test_mega_cache_round_trip(monkeypatch, tmp_path):
    stored = {}
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: (b"artifacts", None))
    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", lambda data: stored.setdefault("data", data))
    assert fastpath.save_artifacts(tmp_path)
    assert fastpath.load_artifacts(tmp_path) and stored["data"] == b"artifacts"
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: None)
    assert not fastpath.save_artifacts(tmp_path / "empty")


# -- text encodings ---------------------------------------------------------------------------
def test_text_encodings_come_from_the_engine_cache(make_engine):
    engine = make_engine(fuse_lora=True)
    run_to(engine, _lora_flow(seed=1), "decode", "image")
    second = run_to(engine, _lora_flow(seed=2), "decode", "image")
    assert "pos" in second.cached and "pos" not in second.executed


def test_an_unfusable_lora_runs_unfused_and_is_not_retried_every_image(make_engine, monkeypatch):
    from lcmgraph_nodes.diffusion.models import lora_fuse

    calls = []

    def refuse(self, unet, wanted):
        calls.append(1)
        raise lora_fuse.CannotFuse("a layer kind fusion does not handle")

    monkeypatch.setattr(lora_fuse.FusedLora, "fuse", refuse)
    plain = make_engine()
    engine = make_engine(fuse_lora=True)
    for seed in (1, 2):
        ours = image_of(engine, _lora_flow(seed=seed))
        assert max_diff(ours, image_of(plain, _lora_flow(seed=seed))) == 0.0  # peft's unfused path
    assert len(calls) == 1  # the second image with the same list does not try again
    # And the base model afterwards is the base model.
    assert max_diff(image_of(engine, _base_flow(seed=1)), image_of(plain, _base_flow(seed=1))) == 0.0
