"""Tiny, deterministic SD1.5- and SDXL-shaped diffusers models.

They exist so that everything — loading, LoRA, ControlNet, sampling,
workflows — runs offline and in seconds on a CPU. Shapes follow diffusers'
own test fixtures (``block_out_channels=(32, 64)``, ``cross_attention_dim=32``)
but the VAE keeps SD's 8x downscale so latent/image sizes relate as in the
real models. Weights come from a fixed seed under ``fork_rng`` so each build is
bitwise identical and the caller's global RNG is left alone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..formats.single_file_tokenizer import word_vocab_and_merges

#: Bump when a builder changes: built-in folders are keyed by it.
#: 2: the tokenizer's merges spell every listed word as one token (green, tree, landscape did not).
BUILD_VERSION = 2

SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
    "steps_offset": 1,
}

_WORDS = (
    "a an the of and in on with photo painting portrait landscape red green blue "
    "circle square cat dog house tree sky sun city night blurry ugly low quality"
).split()


# -- tokenizer ------------------------------------------------------------------
def tokenizer_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A small CLIP BPE vocabulary: every byte, a few common words as one token each."""
    return word_vocab_and_merges(_WORDS)


def make_tokenizer(pad_token: str = "<|endoftext|>"):
    from transformers import CLIPTokenizer

    vocab, merges = tokenizer_vocab()
    return CLIPTokenizer(vocab=vocab, merges=merges, pad_token=pad_token, model_max_length=77)


def _text_config(vocab_size: int, bos: int, eos: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=bos, eos_token_id=eos, pad_token_id=eos, hidden_size=32, intermediate_size=37,
        layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=5, vocab_size=vocab_size,
        max_position_embeddings=77, hidden_act="gelu", projection_dim=32,
    )


# -- models -----------------------------------------------------------------------
def _seeded(seed: int, build: Callable):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def unet_config(arch: str = "sd15", time_cond_proj_dim: int | None = None, in_channels: int = 4) -> dict:
    """``in_channels=9``: an inpainting UNet (latents, mask, masked image latents)."""
    common = dict(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=in_channels, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), time_cond_proj_dim=time_cond_proj_dim,
    )
    if arch == "sdxl":
        return dict(
            common, attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=80, cross_attention_dim=64,
        )
    return dict(common, cross_attention_dim=32, attention_head_dim=8)


def make_unet(arch: str = "sd15", seed: int = 0, time_cond_proj_dim: int | None = None, in_channels: int = 4):
    from diffusers import UNet2DConditionModel

    return _seeded(seed, lambda: UNet2DConditionModel(**unet_config(arch, time_cond_proj_dim, in_channels)))


def make_vae(arch: str = "sd15", seed: int = 1):
    from diffusers import AutoencoderKL

    return _seeded(seed, lambda: AutoencoderKL(
        block_out_channels=(8, 16, 32, 32), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=8, sample_size=32,
        scaling_factor=0.13025 if arch == "sdxl" else 0.18215,
        force_upcast=arch == "sdxl",
    ))


def make_text_encoders(arch: str = "sd15", seed: int = 0) -> dict:
    """``{"text_encoder": ..., ["text_encoder_2": ...], "tokenizer": ..., ...}`` for ``arch``."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = make_tokenizer()
    vocab = tokenizer.get_vocab()
    config = _text_config(len(vocab), vocab["<|startoftext|>"], vocab["<|endoftext|>"])
    parts = {"tokenizer": tokenizer, "text_encoder": _seeded(seed + 2, lambda: CLIPTextModel(config))}
    if arch == "sdxl":
        parts["tokenizer_2"] = make_tokenizer(pad_token="!")
        parts["text_encoder_2"] = _seeded(seed + 3, lambda: CLIPTextModelWithProjection(config))
    return parts


def make_pipeline(arch: str = "sd15", seed: int = 0, time_cond_proj_dim: int | None = None, in_channels: int = 4):
    """An in-memory pipeline; ``seed`` picks a different (still fixed) set of weights;
    ``in_channels=9`` an inpainting UNet (saved as a plain pipeline: its folder loads as any checkpoint)."""
    from diffusers import EulerDiscreteScheduler

    parts = dict(
        make_text_encoders(arch, seed), unet=make_unet(arch, seed, time_cond_proj_dim, in_channels),
        vae=make_vae(arch, seed + 1), scheduler=EulerDiscreteScheduler(**SCHEDULER_CONFIG),
    )
    if arch == "sdxl":
        from diffusers import StableDiffusionXLPipeline

        return StableDiffusionXLPipeline(**parts)
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def make_controlnet(unet, seed: int = 5):
    """A ControlNet grown from ``unet``; its zero-initialised output convs get
    small random weights so that the control actually changes the image."""
    import torch
    from diffusers import ControlNetModel

    def build():
        net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32))  # 8x down, as the VAE
        with torch.no_grad():
            for conv in [*net.controlnet_down_blocks, net.controlnet_mid_block]:
                conv.weight.normal_(0.0, 0.05)
        return net

    return _seeded(seed, build)


# -- saving ----------------------------------------------------------------------------
def save_pipeline(pipe, target: Path) -> Path:
    pipe.save_pretrained(target, safe_serialization=True)
    return target


def build_atomically(target: Path, build: Callable[[Path], object]) -> Path:
    """Build ``target`` (a file or folder) once; concurrent builders never see half of it."""
    target = Path(target)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        staged = tmp / target.name
        build(staged)
        try:
            os.rename(staged, target)
        except OSError:
            if not target.exists():  # anything but "someone else finished first"
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_checkpoint(target: Path, arch: str = "sd15", seed: int = 0, time_cond_proj_dim: int | None = None,
                     in_channels: int = 4) -> Path:
    return build_atomically(target, lambda p: save_pipeline(make_pipeline(arch, seed, time_cond_proj_dim, in_channels), p))
