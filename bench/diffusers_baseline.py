# ruff: noqa
# Copied unchanged from ../shared/bench/ (the issue #8 reference baseline); only these two lines added.
"""Baseline: plain diffusers + LCMScheduler on real-size SD1.5 / SDXL
architectures with random weights (speed does not depend on weight values).

Needs a CUDA GPU. Prints one JSON line per measurement. Run it in the same
process/machine session as lcmgraph's own GPU benchmark so the two are
compared as a ratio on the same card.

Reference figures on one NVIDIA H200 (torch 2.11, diffusers 0.42.1, fp16):
  SDXL 1024x1024, 4 LCM steps, guidance 1, batch 1: 0.452 s eager, 0.307 s
  with torch.compile(unet); batch 4: 0.172 s/image.
  SDXL UNet forward 82.7 ms (6.76 TFLOP), VAE decode 85.8 ms (10.47 TFLOP).
  SD1.5 512x512, 4 steps: 0.169 s batch 1; 0.036 s/image at batch 16.
"""
import json, os, sys, time

import torch
from diffusers import (AutoencoderKL, LCMScheduler, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from transformers import (CLIPTextConfig, CLIPTextModel,
                          CLIPTextModelWithProjection, CLIPTokenizer)

DEV, DT = "cuda", torch.float16
T_START = time.time()


def emit(**kw):
    kw["t"] = round(time.time() - T_START, 1)
    print(json.dumps(kw), flush=True)


def tokenizer():
    d = "/tmp/tok"
    os.makedirs(d, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    json.dump(vocab, open(f"{d}/vocab.json", "w"))
    open(f"{d}/merges.txt", "w").write("#version: 0.2\n")
    return CLIPTokenizer(f"{d}/vocab.json", f"{d}/merges.txt", model_max_length=77)


def clip_l():
    return CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                          num_attention_heads=12, num_hidden_layers=12,
                          max_position_embeddings=77, hidden_act="quick_gelu",
                          projection_dim=768)


def clip_g():
    return CLIPTextConfig(vocab_size=49408, hidden_size=1280, intermediate_size=5120,
                          num_attention_heads=20, num_hidden_layers=32,
                          max_position_embeddings=77, hidden_act="gelu",
                          projection_dim=1280)


UNET_COMMON = dict(act_fn="silu", center_input_sample=False, flip_sin_to_cos=True,
                   freq_shift=0, in_channels=4, out_channels=4, layers_per_block=2,
                   norm_eps=1e-5, norm_num_groups=32, downsample_padding=1,
                   mid_block_scale_factor=1)


def sd15_unet():
    return UNet2DConditionModel(
        **UNET_COMMON, sample_size=64, block_out_channels=(320, 640, 1280, 1280),
        attention_head_dim=8, cross_attention_dim=768,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)


def sdxl_unet():
    return UNet2DConditionModel(
        **UNET_COMMON, sample_size=128, block_out_channels=(320, 640, 1280),
        attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
        transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))


def vae(scaling):
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                         block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                         down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4,
                         norm_num_groups=32, scaling_factor=scaling)


def sched():
    return LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                        num_train_timesteps=1000, timestep_spacing="leading",
                        steps_offset=1, set_alpha_to_one=False, clip_sample=False)


def count_flops(fn):
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def timed(fn, reps):
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2], ts[0]


def bench_pipe(name, pipe, size, steps=4, batch=1, reps=7):
    def run():
        return pipe(["a photo"] * batch, num_inference_steps=steps, guidance_scale=1.0,
                    height=size, width=size, output_type="pil",
                    generator=torch.Generator("cpu").manual_seed(0)).images
    run(); run()
    med, best = timed(run, reps)
    emit(what="pipeline", name=name, size=size, steps=steps, batch=batch,
         median_s=round(med, 4), best_s=round(best, 4),
         per_image_s=round(med / batch, 4))


@torch.inference_mode()
def main():
    torch.set_default_device(DEV)
    props = torch.cuda.get_device_properties(0)
    emit(what="device", name=props.name, torch=torch.__version__,
         mem_gb=round(props.total_memory / 2**30, 1))
    tok = tokenizer()

    # ---- SDXL (1024x1024) ----
    torch.manual_seed(0)
    unet = sdxl_unet().to(DEV, DT)
    pipe = StableDiffusionXLPipeline(
        vae=vae(0.13025).to(DEV, DT), text_encoder=CLIPTextModel(clip_l()).to(DEV, DT),
        text_encoder_2=CLIPTextModelWithProjection(clip_g()).to(DEV, DT),
        tokenizer=tok, tokenizer_2=tok, unet=unet, scheduler=sched())
    torch.set_default_device("cpu")
    pipe.vae.config.force_upcast = False
    pipe.set_progress_bar_config(disable=True)
    emit(what="params", unet_sdxl=sum(p.numel() for p in unet.parameters()))

    x = torch.randn(1, 4, 128, 128, device=DEV, dtype=DT)
    t = torch.tensor([999], device=DEV)
    ehs = torch.randn(1, 77, 2048, device=DEV, dtype=DT)
    added = {"text_embeds": torch.randn(1, 1280, device=DEV, dtype=DT),
             "time_ids": torch.tensor([[1024, 1024, 0, 0, 1024, 1024]], device=DEV, dtype=DT)}
    f_unet = count_flops(lambda: unet(x, t, ehs, added_cond_kwargs=added))
    lat = torch.randn(1, 4, 128, 128, device=DEV, dtype=DT)
    f_vae = count_flops(lambda: pipe.vae.decode(lat))
    emit(what="flops", model="sdxl", unet_fwd_tflop=round(f_unet / 1e12, 3),
         vae_decode_tflop=round(f_vae / 1e12, 3))
    med, best = timed(lambda: unet(x, t, ehs, added_cond_kwargs=added), 10)
    emit(what="unet_fwd", model="sdxl", median_s=round(med, 4),
         tflops_achieved=round(f_unet / med / 1e12, 1))
    med, best = timed(lambda: pipe.vae.decode(lat), 5)
    emit(what="vae_decode", model="sdxl", median_s=round(med, 4),
         tflops_achieved=round(f_vae / med / 1e12, 1))
    bench_pipe("sdxl_lcm_eager", pipe, 1024)
    bench_pipe("sdxl_lcm_eager", pipe, 1024, batch=4, reps=3)

    if time.time() - T_START < 200:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.unet = torch.compile(pipe.unet, fullgraph=True)
        t0 = time.time()
        try:
            bench_pipe("sdxl_lcm_compiled", pipe, 1024, reps=5)
            emit(what="compile_s", seconds=round(time.time() - t0, 1))
        except Exception as e:  # noqa: BLE001
            emit(what="compile_failed", err=repr(e)[:300])
    del pipe, unet
    torch.cuda.empty_cache()

    # ---- SD1.5 (512x512) ----
    torch.manual_seed(0)
    torch.set_default_device(DEV)
    unet = sd15_unet().to(DEV, DT)
    pipe = StableDiffusionPipeline(
        vae=vae(0.18215).to(DEV, DT), text_encoder=CLIPTextModel(clip_l()).to(DEV, DT),
        tokenizer=tok, unet=unet, scheduler=sched(), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    torch.set_default_device("cpu")
    pipe.set_progress_bar_config(disable=True)
    x = torch.randn(1, 4, 64, 64, device=DEV, dtype=DT)
    ehs = torch.randn(1, 77, 768, device=DEV, dtype=DT)
    f_unet = count_flops(lambda: unet(x, t, ehs))
    emit(what="flops", model="sd15", unet_fwd_tflop=round(f_unet / 1e12, 3),
         unet_params=sum(p.numel() for p in unet.parameters()))
    bench_pipe("sd15_lcm_eager", pipe, 512)
    bench_pipe("sd15_lcm_eager", pipe, 512, batch=16, reps=3)
    emit(what="done")


if __name__ == "__main__":
    sys.exit(main())
