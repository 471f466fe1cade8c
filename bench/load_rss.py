"""Peak resident memory while loading a single-file checkpoint.

Builds an SD1.5- or SDXL-shaped LDM ``.safetensors`` with random weights (the
real VAE and text encoders, a UNet of ``--channels`` base width; 320 is the
real one) in a temporary folder, then loads it in fresh subprocesses:

- ours: ``load_checkpoint(path, torch_dtype=<file dtype>)``;
- baseline, same run: diffusers' ``StableDiffusion(XL)Pipeline.from_single_file``
  with a local config folder (offline), the usual way to read such a file.

Each subprocess resets its peak-RSS counter after its imports
(``/proc/self/clear_refs``), so "load peak" is the memory the load itself
added, and the ratio is that over the file size. Not a test: numbers go in
the README.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

CHILD = r"""
import json, os, resource, sys, time, torch
torch.set_num_threads(2)
mode, path, config_dir, dtype = sys.argv[1:5]  # dtype: the one to load in
dtype = getattr(torch, dtype)
# Imports both loaders need are not part of the load.
import accelerate  # noqa: F401
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: F401
if mode != "ours":
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from diffusers.loaders import single_file_utils  # noqa: F401
from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401
from lcmgraph_nodes.diffusion.formats.checkpoint_files import load_checkpoint

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
before = status("VmRSS")
try:
    open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS
    reset = True
except OSError:
    reset = False
t0 = time.perf_counter()
if mode == "ours":
    pipe = load_checkpoint(path, torch_dtype=dtype)
else:
    xl = os.path.exists(os.path.join(config_dir, "text_encoder_2"))
    cls = StableDiffusionXLPipeline if xl else StableDiffusionPipeline
    pipe = cls.from_single_file(path, config=config_dir, local_files_only=True, torch_dtype=dtype,
                                **({} if xl else {"safety_checker": None}))
models = [m for m in (pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)) if m is not None]
seconds = time.perf_counter() - t0
def peak_rss():
    return status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
peak = peak_rss()
# Weights still backed by an untouched file mapping are not resident yet; read
# every one once, as the first image would, and take the peak again.
with torch.no_grad():
    for m in models:
        for p in m.parameters():
            p.reshape(-1)[::512].float().sum()  # one element per 1-2 KiB: every page, no big temporary
params = sum(p.numel() * p.element_size() for m in models for p in m.parameters())
print(json.dumps({"before": before, "peak": peak, "peak_used": peak_rss(), "params_bytes": params,
                  "seconds": seconds, "reset": reset}))
"""


def build(folder: Path, arch: str, channels: int, dtype: torch.dtype, tiny: bool = False) -> tuple[Path, Path]:
    """The checkpoint file, and a diffusers config folder (no weights) for the baseline."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from lcmgraph_nodes.diffusion.formats.single_file_arch import shipped_configs
    from lcmgraph_nodes.diffusion.formats.single_file_export import to_ldm
    from lcmgraph_nodes.diffusion.formats.single_file_tokenizer import clip_tokenizer
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    xl = arch == "sdxl"
    configs = shipped_configs(arch)
    widths = [channels * m for m in ((1, 2, 4) if xl else (1, 2, 4, 4))]
    configs["unet"]["block_out_channels"] = widths
    if xl:  # SDXL's heads are 64 wide
        configs["unet"]["attention_head_dim"] = [max(1, w // 64) for w in widths]
    if tiny:  # only to check that the script works
        configs["vae"]["block_out_channels"] = [32, 32, 32, 32]
        for name in ("text_encoder", "text_encoder_2"):
            if name in configs:
                configs[name].update(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=1, projection_dim=64)
        if xl:
            configs["unet"].update(cross_attention_dim=128, projection_class_embeddings_input_dim=64 + 6 * 256)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(configs["unet"])
        vae = AutoencoderKL.from_config(configs["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**configs["text_encoder"]))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**configs["text_encoder_2"])) if xl else None
    gen = torch.Generator().manual_seed(0)
    shapes = to_ldm(unet, vae, text_encoder, text_encoder_2)
    weights = {k: (torch.randn(v.shape, generator=gen) * 0.02).to(dtype) for k, v in shapes.items()}
    path = folder / f"{arch}-shaped.safetensors"
    save_file(weights, str(path), metadata={"format": "pt"})
    del weights

    config_dir = folder / "config"
    unet.save_config(config_dir / "unet")
    vae.save_config(config_dir / "vae")
    text_encoder.config.save_pretrained(config_dir / "text_encoder")
    clip_tokenizer().save_pretrained(config_dir / "tokenizer")
    scheduler = configs["scheduler"].pop("_class_name")
    (config_dir / "scheduler").mkdir()
    (config_dir / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({"_class_name": scheduler, **configs["scheduler"]}))
    index = {"scheduler": ["diffusers", scheduler], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    if xl:
        text_encoder_2.config.save_pretrained(config_dir / "text_encoder_2")
        clip_tokenizer(pad_token="!").save_pretrained(config_dir / "tokenizer_2")
        index.update(_class_name="StableDiffusionXLPipeline", text_encoder_2=["transformers", "CLIPTextModelWithProjection"],
                     tokenizer_2=["transformers", "CLIPTokenizer"])
    else:
        index.update(_class_name="StableDiffusionPipeline", feature_extractor=[None, None],
                     safety_checker=[None, None], requires_safety_checker=False)
    (config_dir / "model_index.json").write_text(json.dumps(index))
    return path, config_dir


def measure(mode: str, path: Path, config_dir: Path, dtype_name: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error"}
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), str(config_dir), dtype_name],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=["sd15", "sdxl"], default="sd15")
    parser.add_argument("--channels", type=int, default=160, help="UNet base width (real: 320)")
    parser.add_argument("--dtype", choices=["float16", "float32", "bfloat16"], default="float16")
    parser.add_argument("--load-dtype", choices=["float16", "float32", "bfloat16"],
                        help="load in this dtype (default: the file's)")
    parser.add_argument("--no-baseline", action="store_true", help="skip diffusers' from_single_file")
    parser.add_argument("--tiny", action="store_true", help="shrink the VAE and text encoder too (a smoke test)")
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    mib = 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="lcmgraph-rss-") as tmp:
        t0 = time.perf_counter()
        path, config_dir = build(Path(tmp), args.arch, args.channels, dtype, args.tiny)
        size = path.stat().st_size
        print(f"file: {args.arch}-shaped, UNet width {args.channels}, {args.dtype}, {size / mib:.0f} MiB "
              f"(built in {time.perf_counter() - t0:.1f} s); loaded as {args.load_dtype or args.dtype}")
        modes = ["ours"] + ([] if args.no_baseline else ["diffusers"])
        results = {}
        for mode in modes:
            r = results[mode] = measure(mode, path, config_dir, args.load_dtype or args.dtype)
            if "error" in r:
                print(f"{mode:>9}: failed: {r['error']}")
                continue
            added, used = r["peak"] - r["before"], r["peak_used"] - r["before"]
            print(f"{mode:>9}: load peak +{added / mib:.0f} MiB = {added / size:.2f} x file; "
                  f"after touching every weight +{used / mib:.0f} MiB = {used / size:.2f} x file "
                  f"(after imports {r['before'] / mib:.0f} MiB; weights {r['params_bytes'] / mib:.0f} MiB; "
                  f"load {r['seconds']:.1f} s)")
        ours, base = results.get("ours", {}), results.get("diffusers", {})
        if "peak" in ours and "peak" in base:
            for key, what in (("peak", "load peak"), ("peak_used", "peak once used")):
                ratio = (ours[key] - ours["before"]) / (base[key] - base["before"])
                print(f"ours / diffusers, {what}: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
