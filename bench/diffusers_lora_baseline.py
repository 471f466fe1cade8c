# ruff: noqa
# Copied unchanged from ../shared/bench/ (the issue #8 reference baseline); only these two lines added.
"""Baseline: plain diffusers SDXL with an LCM-LoRA of the real shape (rank 64 on
the LCM-LoRA recipe's target modules, random weights), loaded the way the LCM-LoRA
announcement blog does (load_lora_weights), then fused. 1024x1024, 4 steps, guidance 1.
TINY=1 runs a tiny config on the CPU to check the code path.

Reference on one NVIDIA H200 (torch 2.11, diffusers 0.42.1, fp16): no LoRA
0.427 s; LoRA loaded (196.75 M params) 0.756 s; after fuse_lora() 0.469 s;
load_lora_weights 1.5 s; peak VRAM 13.1 GB.
"""
import json, os, sys, tempfile, time

import torch
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel, AutoencoderKL
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from transformers import CLIPTextModel, CLIPTextModelWithProjection

sys.path.insert(0, os.path.dirname(__file__))
import diffusers_baseline as g  # noqa: E402

TINY = os.environ.get("TINY") == "1"
DEV, DT = ("cpu", torch.float32) if TINY else ("cuda", torch.float16)
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj",
           "ff.net.2", "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv",
           "upsamplers.0.conv", "time_emb_proj"]


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def build():
    tok = g.tokenizer()
    if TINY:
        from transformers import CLIPTextConfig
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=16,
            attention_head_dim=(2, 4), cross_attention_dim=64, norm_num_groups=8,
            transformer_layers_per_block=(1, 2), use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=80,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
        vae = AutoencoderKL(block_out_channels=(32, 64), norm_num_groups=8,
                            down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4)
        c = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                 num_hidden_layers=2, vocab_size=1000, projection_dim=32)
        te, te2 = CLIPTextModel(CLIPTextConfig(**c)), CLIPTextModelWithProjection(CLIPTextConfig(**c))
        size = 64
    else:
        torch.set_default_device(DEV)
        unet, vae = g.sdxl_unet(), g.vae(0.13025)
        te, te2 = CLIPTextModel(g.clip_l()), CLIPTextModelWithProjection(g.clip_g())
        torch.set_default_device("cpu")
        size = 1024
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te, text_encoder_2=te2,
                                     tokenizer=tok, tokenizer_2=tok, unet=unet,
                                     scheduler=g.sched()).to(DEV, DT)
    pipe.vae.config.force_upcast = False
    pipe.set_progress_bar_config(disable=True)
    return pipe, size


def make_lora(pipe, d):
    cfg = LoraConfig(r=64, lora_alpha=64, target_modules=TARGETS, init_lora_weights=False)
    pipe.unet.add_adapter(cfg, adapter_name="tmp")
    sd = get_peft_model_state_dict(pipe.unet, adapter_name="tmp")
    n = sum(v.numel() for v in sd.values())
    StableDiffusionXLPipeline.save_lora_weights(d, unet_lora_layers=sd)
    pipe.unet.delete_adapters("tmp")
    return n


def timed(pipe, size, reps):
    def run():
        return pipe("a photo", num_inference_steps=4, guidance_scale=1.0, height=size,
                    width=size, generator=torch.Generator("cpu").manual_seed(0)).images
    run(); run()
    ts = []
    for _ in range(reps):
        sync(); t0 = time.perf_counter(); run(); sync(); ts.append(time.perf_counter() - t0)
    ts.sort()
    return round(ts[len(ts) // 2], 4)


@torch.inference_mode()
def main():
    pipe, size = build()
    reps = 2 if TINY else 7
    out = {"no_lora_s": timed(pipe, size, reps)}
    with tempfile.TemporaryDirectory() as d:
        with torch.inference_mode(False):
            out["lora_params"] = make_lora(pipe, d)
        t0 = time.perf_counter()
        pipe.load_lora_weights(d, adapter_name="lcm")
        out["load_lora_s"] = round(time.perf_counter() - t0, 3)
    out["lora_unfused_s"] = timed(pipe, size, reps)
    t0 = time.perf_counter(); pipe.fuse_lora(); out["fuse_s"] = round(time.perf_counter() - t0, 3)
    out["lora_fused_s"] = timed(pipe, size, reps)
    if DEV == "cuda":
        out["peak_vram_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        out["device"] = torch.cuda.get_device_name(0)
    print(json.dumps({"what": "sdxl_lcm_lora", "size": size, **out}), flush=True)


if __name__ == "__main__":
    main()
