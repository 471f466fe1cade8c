# ruff: noqa
# Copied unchanged from ../shared/bench/ (the issue #8 reference baseline); only these two lines added.
"""How far plain diffusers gets with every standard trick: fused QKV,
channels_last, torch.compile(mode="reduce-overhead") on the UNet and compiled
VAE decode. SDXL 1024², 4 LCM steps, guidance 1, batch 1 (no LoRA: a fused and
unloaded LoRA costs nothing at run time). The bar lcmgraph must clear.

Reference on one NVIDIA H200 (torch 2.11, diffusers 0.42.1, fp16): eager
0.436 s; fused QKV + channels_last alone 0.486 s; all tricks 0.169 s after
107 s of compilation.
"""
import json, time

import torch

import diffusers_baseline as g
from diffusers import StableDiffusionXLPipeline
from transformers import CLIPTextModel, CLIPTextModelWithProjection


def main():
    torch.set_default_device("cuda")
    unet, vae = g.sdxl_unet(), g.vae(0.13025)
    te, te2 = CLIPTextModel(g.clip_l()), CLIPTextModelWithProjection(g.clip_g())
    torch.set_default_device("cpu")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te, text_encoder_2=te2,
                                     tokenizer=g.tokenizer(), tokenizer_2=g.tokenizer(),
                                     unet=unet, scheduler=g.sched()).to("cuda", torch.float16)
    pipe.vae.config.force_upcast = False
    pipe.set_progress_bar_config(disable=True)

    def run():
        return pipe("a photo", num_inference_steps=4, guidance_scale=1.0, height=1024,
                    width=1024, generator=torch.Generator("cpu").manual_seed(0)).images

    def med(reps=7):
        ts = []
        for _ in range(reps):
            torch.cuda.synchronize(); t0 = time.perf_counter(); run()
            torch.cuda.synchronize(); ts.append(time.perf_counter() - t0)
        return round(sorted(ts)[reps // 2], 4)

    with torch.inference_mode():
        run(); run()
        out = {"eager_s": med()}
        pipe.fuse_qkv_projections()
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        run(); out["fused_qkv_channels_last_s"] = med()
        pipe.unet = torch.compile(pipe.unet, mode="reduce-overhead", fullgraph=True)
        pipe.vae.decode = torch.compile(pipe.vae.decode)
        t0 = time.time(); run(); run(); run()
        out["compile_s"] = round(time.time() - t0, 1)
        out["all_tricks_s"] = med()
    out["device"] = torch.cuda.get_device_name(0)
    print(json.dumps({"what": "sdxl_ceiling", **out}), flush=True)


if __name__ == "__main__":
    main()
