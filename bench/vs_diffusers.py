"""lcmgraph vs plain diffusers on the same weights, in one process.

Builds a small SD1.5-shaped model (random weights, bigger than the test
models so the denoiser dominates), then times, warm, per image:

* diffusers: ``StableDiffusionPipeline(...)(prompt, 4 steps, guidance 1)`` with
  LCMScheduler, then ``image.save(png)`` — it encodes the prompt on every call;
* lcmgraph, new prompt each image (nothing to reuse: the fair ratio, goal <= 1.05);
* lcmgraph, same prompt, new seed (text encoding and model load come from the cache).

Also checks that both produce the same pixels. Prints JSON lines and a summary.
Usage: python bench/vs_diffusers.py [--size 256] [--images 5] [--width 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def build_model(target: Path, width: int) -> Path:
    from diffusers import AutoencoderKL, LCMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from lcmgraph_nodes.diffusion.builtin import tiny
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(width, width * 2, width * 4), layers_per_block=2, sample_size=32,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=256, attention_head_dim=8,
    )
    vae = AutoencoderKL(block_out_channels=(32, 64, 64, 64), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, norm_num_groups=32)
    tokenizer = tiny.make_tokenizer()
    vocab = tokenizer.get_vocab()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=256, intermediate_size=1024, num_hidden_layers=6,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"], projection_dim=256))
    scheduler = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                             num_train_timesteps=1000, prediction_type="epsilon")
    pipe = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(target, safe_serialization=True)
    return target


def workflow(prompt: str, seed: int, size: int) -> dict:
    def link(n, o):
        return {"link": [n, o]}

    return {"format": "lcmgraph.workflow", "version": 1, "nodes": {
        "ckpt": {"type": "LoadCheckpoint", "inputs": {"checkpoint": "bench"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": link("ckpt", "clip"), "text": prompt}},
        "empty": {"type": "EmptyLatent", "inputs": {"width": size, "height": size, "batch": 1}},
        "sampler": {"type": "LCMSampler", "inputs": {"model": link("ckpt", "model"),
                                                     "positive": link("pos", "conditioning"),
                                                     "latent": link("empty", "latent"), "seed": seed,
                                                     "steps": 4, "guidance": 1.0}},
        "decode": {"type": "VAEDecode", "inputs": {"vae": link("ckpt", "vae"), "latent": link("sampler", "latent")}},
        "save": {"type": "SaveImage", "inputs": {"image": link("decode", "image"), "filename_prefix": "bench"}},
    }}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--width", type=int, default=64, help="UNet base channels")
    args = parser.parse_args()

    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as dlog

    from lcmgraph import Engine, EngineConfig

    dlog.disable_progress_bar()
    root = Path(tempfile.mkdtemp(prefix="lcmgraph-bench-"))
    folder = build_model(root / "models" / "checkpoints" / "bench", args.width)
    engine = Engine(EngineConfig(models_dir=root / "models", home=root / "home", output_dir=root / "out",
                                 device="cpu", plugins_from_env=False))
    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)

    saved = root / "diffusers-out"
    saved.mkdir()

    def diffusers_image(prompt: str, seed: int) -> np.ndarray:
        # What a hand-written script does: generate, then save the PNG (as SaveImage does).
        image = pipe(prompt, num_inference_steps=4, guidance_scale=1.0, height=args.size, width=args.size,
                     generator=torch.Generator("cpu").manual_seed(seed)).images[0]
        image.save(saved / f"{seed}.png")
        return np.asarray(image, dtype=np.float32) / 255.0

    def lcmgraph_image(prompt: str, seed: int) -> np.ndarray:
        result = engine.run(workflow(prompt, seed, args.size))
        # the same 8-bit rounding as diffusers' PIL output, for the pixel comparison
        image = result.values["decode"]["image"][0].numpy()
        return (image * 255).round().astype(np.float32) / 255.0

    # warm-up both (first call pays loading and allocator growth), and compare pixels
    diff = float(np.abs(diffusers_image("warm up", 0) - lcmgraph_image("warm up", 0)).max())

    def timed(fn, prompts_seeds):
        times = []
        for prompt, seed in prompts_seeds:
            t0 = time.perf_counter()
            fn(prompt, seed)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    rows = []
    new_prompts = [(f"a shape number {i}", 100 + i) for i in range(args.images)]
    # Interleave the two so drift in machine load hits both alike.
    d_times, l_times = [], []
    for prompt, seed in new_prompts:
        d_times.append(timed(diffusers_image, [(prompt, seed)]))
        l_times.append(timed(lcmgraph_image, [(prompt + " ", seed)]))
    d, l_new = statistics.median(d_times), statistics.median(l_times)
    l_seed = timed(lcmgraph_image, [("a fixed prompt", 200 + i) for i in range(args.images)])
    rows.append({"measure": "diffusers_s_per_image", "value": round(d, 4)})
    rows.append({"measure": "lcmgraph_new_prompt_s_per_image", "value": round(l_new, 4)})
    rows.append({"measure": "lcmgraph_new_seed_s_per_image", "value": round(l_seed, 4)})
    rows.append({"measure": "max_abs_pixel_diff", "value": diff})
    for row in rows:
        print(json.dumps(row))
    print(f"\nSD1.5-shaped model (UNet width {args.width}), {args.size}x{args.size}, 4 LCM steps, CPU, "
          f"median of {args.images}")
    print(f"  plain diffusers             {d:.3f} s/image")
    print(f"  lcmgraph, new prompt        {l_new:.3f} s/image   ratio {l_new / d:.3f} (goal <= 1.05)")
    print(f"  lcmgraph, same prompt, new seed {l_seed:.3f} s/image   ratio {l_seed / d:.3f} (text encoding cached)")
    print(f"  max |pixel difference|      {diff:.2e}")


if __name__ == "__main__":
    main()
