"""Real SD1.5 / SDXL layouts, checked without weights: models built on the meta
device give the key names and shapes of a real file, and the configs read
from those shapes must be the shipped real configs."""

from __future__ import annotations

import functools

import pytest
from lcmgraph_nodes.diffusion.formats.single_file_arch import (
    detect_arch,
    infer_configs,
    shipped_configs,
)
from lcmgraph_nodes.diffusion.formats.single_file_export import to_ldm
from lcmgraph_nodes.diffusion.formats.single_file_tokenizer import CLIP_VOCAB_SIZE, clip_tokenizer


class Shapes(dict):
    """The part of LazyStateDict that architecture inference uses."""

    metadata: dict = {}

    def shape(self, key):
        return tuple(self[key].shape)


@functools.cache
def _real_layout(arch: str) -> Shapes:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    c = shipped_configs(arch)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(c["unet"])
        vae = AutoencoderKL.from_config(c["vae"])
        te = CLIPTextModel(CLIPTextConfig(**c["text_encoder"]))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**c["text_encoder_2"])) if arch == "sdxl" else None
    return Shapes(to_ldm(unet, vae, te, te2))


def _norm(v):
    return list(v) if isinstance(v, tuple | list) else v


@pytest.mark.parametrize(("arch", "n_tensors", "n_params"), [("sd15", 1130, 1_066_235_307),
                                                            ("sdxl", 2513, 3_468_837_867)])
def test_real_layout_is_read_back_as_the_real_configs(arch, n_tensors, n_params):
    sd = _real_layout(arch)
    # SD1.5's v1-5-pruned has 1131 tensors and SDXL base 1.0 2515: the same
    # plus position ids (and OpenCLIP's logit scale), which loading ignores.
    assert len(sd) == n_tensors and sum(t.numel() for t in sd.values()) == n_params
    assert detect_arch(sd) == arch
    inferred, real = infer_configs(sd, arch), shipped_configs(arch)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if name in real:
            diff = {k: (v, inferred[name].get(k)) for k, v in real[name].items()
                    if not k.startswith("_") and k != "architectures" and _norm(v) != _norm(inferred[name].get(k))}
            assert diff == {}, name


def test_real_key_names():
    """Spot checks against key names of the released SD1.5 and SDXL files."""
    sd15, sdxl = _real_layout("sd15"), _real_layout("sdxl")
    for key in ("model.diffusion_model.output_blocks.11.0.skip_connection.weight",
                "model.diffusion_model.output_blocks.2.1.conv.weight",
                "model.diffusion_model.output_blocks.5.2.conv.weight",
                "model.diffusion_model.input_blocks.3.0.op.weight",
                "first_stage_model.decoder.up.3.upsample.conv.weight",
                "cond_stage_model.transformer.text_model.final_layer_norm.weight"):
        assert key in sd15, key
    assert sd15.shape("first_stage_model.encoder.mid.attn_1.q.weight") == (512, 512, 1, 1)
    for key in ("conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias",
                "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight",
                "model.diffusion_model.label_emb.0.0.weight"):
        assert key in sdxl, key
    assert sdxl.shape("conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight") == (3840, 1280)
    assert sdxl.shape("model.diffusion_model.label_emb.0.0.weight") == (1280, 2816)


def test_shipped_vocabulary_is_openai_clip():
    tok = clip_tokenizer()
    assert len(tok) == CLIP_VOCAB_SIZE and tok.pad_token_id == 49407
    # Ids of openai/clip-vit-large-patch14, the tokenizer SD1.5 and SDXL were trained with.
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok("an astronaut riding a horse").input_ids == [49406, 550, 18376, 6765, 320, 4558, 49407]
    assert clip_tokenizer(pad_token="!").pad_token_id == 0


def test_cut_vocabulary_is_a_prefix_of_the_full_one():
    full, cut = clip_tokenizer(), clip_tokenizer(1000)
    assert len(cut) == 1000 and cut.bos_token_id == 998 and cut.eos_token_id == 999
    full_vocab = full.get_vocab()
    assert all(full_vocab[t] == i for t, i in cut.get_vocab().items() if i < 998)
    ids = cut("a photo of a cat").input_ids
    assert ids[0] == 998 and ids[-1] == 999 and all(i < 998 for i in ids[1:-1])
