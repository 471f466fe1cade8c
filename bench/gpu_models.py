"""Random-weight models for bench/gpu.py, saved as files the engine loads like real ones.

Full size: the real SD1.5 / SDXL architectures (the component configs lcmgraph
ships for single-file loading, nodes/diffusion/formats/configs/*.json, which are the
official ones), CLIP tokenizers from the shipped BPE table, saved as diffusers
folders; plus an LCM-LoRA of the real shape: rank 64 on the layers the
LCM-LoRA recipe targets (the same list as diffusers_lora_baseline.py), saved
as a diffusers LoRA ``.safetensors``. Speed does not depend on weight values.

Tiny (``tiny=True``): the test models of nodes/diffusion/builtin/tiny.py, rank 4, the
same saving and LoRA code.
"""

from __future__ import annotations

import time
from pathlib import Path

#: The LCM-LoRA recipe's target modules (as in diffusers_lora_baseline.py).
LCM_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj",
                    "ff.net.2", "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv",
                    "upsamplers.0.conv", "time_emb_proj"]


def real_pipeline(arch: str, device: str):
    """A pipeline with the real architecture of ``arch`` and random weights (fp32)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from lcmgraph_nodes.diffusion.formats.single_file_arch import shipped_configs
    from lcmgraph_nodes.diffusion.formats.single_file_tokenizer import clip_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = shipped_configs(arch)
    torch.manual_seed(0)
    with torch.device(device):  # random init on the GPU takes seconds, not minutes
        unet = UNet2DConditionModel.from_config(cfg["unet"])
        vae = AutoencoderKL.from_config(cfg["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig.from_dict(cfg["text_encoder"]))
        text_encoder_2 = None
        if arch == "sdxl":
            text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_dict(cfg["text_encoder_2"]))
    parts = dict(
        unet=unet, vae=vae, text_encoder=text_encoder,
        tokenizer=clip_tokenizer(text_encoder.config.vocab_size, pad_token=cfg["tokenizer"]["pad_token"]),
        scheduler=EulerDiscreteScheduler.from_config(cfg["scheduler"]),
    )
    if arch == "sdxl":
        from diffusers import StableDiffusionXLPipeline

        tok2 = clip_tokenizer(text_encoder_2.config.vocab_size, pad_token=cfg["tokenizer_2"]["pad_token"])
        return StableDiffusionXLPipeline(**parts, text_encoder_2=text_encoder_2, tokenizer_2=tok2)
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def save_lcm_lora(pipe, path: Path, rank: int, seed: int = 1) -> int:
    """Write a rank-``rank`` LoRA on the LCM-LoRA targets of ``pipe.unet``; returns its parameter count."""
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = pipe.unet
    targets = [t for t in LCM_LORA_TARGETS if any(n == t or n.endswith("." + t) for n, _ in unet.named_modules())]
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet.add_adapter(config, adapter_name="bench_lcm")
    state = get_peft_model_state_dict(unet, adapter_name="bench_lcm")
    count = sum(v.numel() for v in state.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(str(path.parent), unet_lora_layers=state, weight_name=path.name,
                                 safe_serialization=True)
    unet.delete_adapters("bench_lcm")
    return count


def build(models_dir: Path, arch: str, tiny: bool, device: str, dtype_name: str = "float16") -> dict:
    """Save checkpoints/<arch>/ and loras/lcm-lora-<arch>.safetensors under ``models_dir``."""
    import torch

    t0 = time.perf_counter()
    if tiny:
        from lcmgraph_nodes.diffusion.builtin import tiny as tiny_models

        pipe = tiny_models.make_pipeline(arch, seed=0)
        rank = 4
    else:
        pipe = real_pipeline(arch, device)
        rank = 64
    dtype = getattr(torch, dtype_name)
    pipe.to(device=device, dtype=dtype)
    built_s = time.perf_counter() - t0
    unet_params = sum(p.numel() for p in pipe.unet.parameters())
    folder = models_dir / "checkpoints" / arch
    pipe.save_pretrained(folder, safe_serialization=True)
    lora = models_dir / "loras" / f"lcm-lora-{arch}.safetensors"
    lora_params = save_lcm_lora(pipe, lora, rank)
    size = sum(p.stat().st_size for p in folder.rglob("*.safetensors"))
    return {"what": "build", "arch": arch, "tiny": tiny, "unet_params": unet_params,
            "lora_rank": rank, "lora_params": lora_params, "checkpoint_gb": round(size / 1e9, 3),
            "lora_mb": round(lora.stat().st_size / 1e6, 1), "build_s": round(built_s, 1),
            "total_s": round(time.perf_counter() - t0, 1)}
