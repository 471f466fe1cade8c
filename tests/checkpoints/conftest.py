"""Tiny SD1.5- and SDXL-shaped pipelines, as diffusers folders and as LDM
single files, built once per test session from fixed seeds.

Every parameter gets its own random values (not the ones/zeros of fresh
norms and biases): a loader that swapped two same-shaped tensors would
otherwise still pass a weight comparison.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lcmgraph_nodes.diffusion.formats.single_file_arch import shipped_configs
from lcmgraph_nodes.diffusion.formats.single_file_export import save_single_file
from lcmgraph_nodes.diffusion.formats.single_file_tokenizer import clip_tokenizer

VOCAB = 1000


def _randomise(*models, seed: int):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for model in models:
            for p in model.parameters():
                p.copy_(p + 0.05 * torch.randn(p.shape, generator=gen))


def _clip(hidden: int, layers: int, act: str, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        hidden_size=hidden, intermediate_size=37, num_attention_heads=4, num_hidden_layers=layers,
        vocab_size=VOCAB, bos_token_id=VOCAB - 2, eos_token_id=VOCAB - 1, pad_token_id=1,
        max_position_embeddings=77, hidden_act=act, projection_dim=hidden,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _vae(scaling_factor: float):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        norm_num_groups=32, scaling_factor=scaling_factor,
    )


def build_sd15(seed: int = 0):
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8,
    )
    vae, text_encoder = _vae(0.18215), _clip(32, 3, "quick_gelu")
    _randomise(unet, vae, text_encoder, seed=seed)
    return StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(VOCAB),
        scheduler=PNDMScheduler.from_config(shipped_configs("sd15")["scheduler"]),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def build_sdxl(seed: int = 0):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
    )
    vae = _vae(0.13025)
    text_encoder, text_encoder_2 = _clip(32, 2, "quick_gelu"), _clip(32, 3, "gelu", projection=True)
    _randomise(unet, vae, text_encoder, text_encoder_2, seed=seed)
    return StableDiffusionXLPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=clip_tokenizer(VOCAB), tokenizer_2=clip_tokenizer(VOCAB, pad_token="!"),
        scheduler=EulerDiscreteScheduler.from_config(shipped_configs("sdxl")["scheduler"]),
    )


class Tiny:
    """One tiny model in both forms: ``folder`` (diffusers) and ``file`` (LDM single file)."""

    def __init__(self, arch: str, pipe, root: Path):
        self.arch, self.pipe = arch, pipe
        self.folder = root / f"{arch}-folder"
        self.file = root / f"{arch}.safetensors"
        pipe.save_pretrained(self.folder, safe_serialization=True)
        save_single_file(self.file, pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None))


@pytest.fixture(scope="session")
def tiny_sd15(tmp_path_factory) -> Tiny:
    return Tiny("sd15", build_sd15(), tmp_path_factory.mktemp("sd15"))


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Tiny:
    return Tiny("sdxl", build_sdxl(), tmp_path_factory.mktemp("sdxl"))


@pytest.fixture(params=["sd15", "sdxl"])
def tiny(request) -> Tiny:
    return request.getfixturevalue(f"tiny_{request.param}")
