"""The model-manager flags of ``lcmgraph run`` / ``serve`` become engine options."""

from __future__ import annotations

from lcmgraph.cli import build_parser
from lcmgraph.model_flags import model_options


def test_auto_flags_pass_nothing_on():
    args = build_parser().parse_args(["run", "w.json"])
    assert model_options(args) == {}


def test_run_flags_become_engine_options():
    args = build_parser().parse_args([
        "run", "w.json", "--offload", "--dtype", "bf16", "--compile", "max-autotune", "--compile-after", "0",
        "--compile-cache", "off", "--attention", "flash", "--channels-last", "on", "--fused-qkv", "off",
        "--fuse-lora", "on", "--vae-dtype", "fp32", "--text-dtype", "model",
    ])
    assert model_options(args) == {
        "offload": True, "dtype": "bf16", "compile": "max-autotune", "compile_after": 0,
        "compile_cache": "off", "attention": "flash", "channels_last": "on", "fused_qkv": "off",
        "fuse_lora": "on", "vae_dtype": "fp32", "text_dtype": "model",
    }


def test_serve_takes_the_same_flags_and_the_options_resolve():
    from lcmgraph_nodes.diffusion.models import fastpath

    args = build_parser().parse_args(["serve", "--offload", "--compile", "off", "--fuse-lora", "on"])
    options = model_options(args)
    assert options == {"offload": True, "compile": "off", "fuse_lora": "on"}
    fast = fastpath.resolve(options, "cuda")
    assert not fast.compiling and fast.fuse_lora and fast.dtype.is_floating_point
