"""Tiny IP-Adapter parts with fixed random weights, for tests and the corpus:
a CLIP vision tower (transformers' layout) and IP-Adapters (basic and plus)
that fit the tiny UNets, written in h94/IP-Adapter's file layout (flat
``image_proj.*`` / ``ip_adapter.N.to_k_ip.weight`` names) so that the real
loading path reads them."""

from __future__ import annotations

from pathlib import Path

#: The tiny tower: 32-pixel images in 8-pixel patches (17 tokens), 64 wide, projected to 32.
VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2, image_size=32,
              patch_size=8, projection_dim=32, hidden_act="gelu", layer_norm_eps=1e-5)
RESAMPLER_DIM, RESAMPLER_QUERIES, RESAMPLER_DEPTH = 64, 4, 4


def make_clip_vision(seed: int = 40):
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPVisionModelWithProjection(CLIPVisionConfig(**VISION)).eval()


def save_clip_vision(target: Path, seed: int = 40) -> Path:
    from ..formats.clip_vision_files import save_clip_vision as save

    return save(make_clip_vision(seed), target)


def attn2_widths(arch: str) -> tuple[list[int], int]:
    """Widths of the tiny UNet's cross-attention layers (processor order), and its text width."""
    from ..models.ipadapter import cross_attentions
    from . import tiny

    unet = tiny.make_unet(arch)
    return [m.to_q.out_features for m in cross_attentions(unet)], unet.config.cross_attention_dim


def ip_adapter_state(arch: str = "sd15", kind: str = "basic", seed: int = 41) -> dict:
    """The flat tensors of a tiny IP-Adapter file (``image_proj.*``, ``ip_adapter.*``)."""
    import torch

    widths, context = attn2_widths(arch)
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=None):
        scale = scale if scale is not None else shape[-1] ** -0.5
        return torch.randn(*shape, generator=gen) * scale

    out = {}
    if kind == "basic":
        out.update({"image_proj.proj.weight": rand(4 * context, VISION["projection_dim"]),
                    "image_proj.proj.bias": rand(4 * context, scale=0.02),
                    "image_proj.norm.weight": torch.ones(context), "image_proj.norm.bias": torch.zeros(context)})
    elif kind == "plus":
        dim, inner = RESAMPLER_DIM, 64  # one 64-wide head: diffusers reads heads as to_q rows // 64
        out.update({"image_proj.latents": rand(1, RESAMPLER_QUERIES, dim, scale=dim ** -0.5),
                    "image_proj.proj_in.weight": rand(dim, VISION["hidden_size"]),
                    "image_proj.proj_in.bias": torch.zeros(dim),
                    "image_proj.proj_out.weight": rand(context, dim), "image_proj.proj_out.bias": torch.zeros(context),
                    "image_proj.norm_out.weight": torch.ones(context), "image_proj.norm_out.bias": torch.zeros(context)})
        for i in range(RESAMPLER_DEPTH):
            p = f"image_proj.layers.{i}."
            out.update({p + "0.norm1.weight": torch.ones(dim), p + "0.norm1.bias": torch.zeros(dim),
                        p + "0.norm2.weight": torch.ones(dim), p + "0.norm2.bias": torch.zeros(dim),
                        p + "0.to_q.weight": rand(inner, dim), p + "0.to_kv.weight": rand(2 * inner, dim),
                        p + "0.to_out.weight": rand(dim, inner),
                        p + "1.0.weight": torch.ones(dim), p + "1.0.bias": torch.zeros(dim),
                        p + "1.1.weight": rand(4 * dim, dim), p + "1.3.weight": rand(dim, 4 * dim)})
    else:
        raise ValueError(f"unknown tiny IP-Adapter kind {kind!r}")
    for i, width in enumerate(widths):
        out[f"ip_adapter.{2 * i + 1}.to_k_ip.weight"] = rand(width, context)
        out[f"ip_adapter.{2 * i + 1}.to_v_ip.weight"] = rand(width, context)
    return out


def save_ip_adapter(target: Path, arch: str = "sd15", kind: str = "basic", seed: int = 41) -> Path:
    from safetensors.torch import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in ip_adapter_state(arch, kind, seed).items()}, str(target))
    return target
