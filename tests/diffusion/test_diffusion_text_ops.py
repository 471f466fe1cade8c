"""CLIPSetLastLayer (CLIP skip, as ComfyUI computes it; diffusers' clip_skip
where it means the same) and the conditioning arithmetic nodes
(ConditioningZeroOut, ConditioningAverage, ConditioningConcat)."""

from __future__ import annotations

import pytest
import torch
from lcmgraph_nodes.diffusion import conditioning as C
from lcmgraph_nodes.diffusion.models.values import Conditioning, match_token_lengths

from .diffusion_helpers import Flow, link, max_diff, reference, txt2img, value_of


def encoded(engine, text="a red circle", layer=None, ckpt="tiny"):
    flow = Flow()
    flow.add("ckpt", "LoadCheckpoint", checkpoint=ckpt)
    clip = link("ckpt", "clip")
    if layer is not None:
        flow.add("skip", "CLIPSetLastLayer", clip=clip, stop_at_clip_layer=layer)
        clip = link("skip", "clip")
    flow.add("pos", "TextEncode", clip=clip, text=text)
    return value_of(engine, flow, "pos", "conditioning")


def hidden_states(pipe, text, encoder="text_encoder", tokenizer="tokenizer"):
    tok = getattr(pipe, tokenizer)
    ids = tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return getattr(pipe, encoder)(ids, output_hidden_states=True)


def test_sd15_last_layer_is_the_default_and_others_are_normed_hidden_states(engine, models):
    assert torch.equal(encoded(engine, layer=-1).embeds, encoded(engine).embeds)
    assert torch.equal(encoded(engine, layer=-6).embeds, encoded(engine).embeds)  # past the 5 layers: the last
    pipe = reference(models, "tiny")
    norm = getattr(pipe.text_encoder, "text_model", pipe.text_encoder).final_layer_norm
    out = hidden_states(pipe, "a red circle")
    for layer in (-2, -3, -5):
        cond = encoded(engine, layer=layer)
        with torch.no_grad():
            expected = norm(out.hidden_states[layer])
        assert torch.allclose(cond.embeds, expected, atol=1e-6), layer
        assert max_diff(cond.embeds.numpy(), encoded(engine).embeds.numpy()) > 1e-3
    # CFG's default negative is the empty prompt at the same layer.
    cond = encoded(engine, layer=-2)
    with torch.no_grad():
        empty = norm(hidden_states(pipe, "").hidden_states[-2])
    assert torch.allclose(cond.default_negative, empty, atol=1e-6)


@pytest.mark.parametrize("layer, clip_skip", [(-2, None), (-1, -1), (-3, 1), (-4, 2)])
def test_sdxl_layers_are_diffusers_clip_skip_plus_two(engine, models, layer, clip_skip):
    pipe = reference(models, "tiny-xl")
    embeds, _, pooled, _ = pipe.encode_prompt("a red circle", device="cpu", num_images_per_prompt=1,
                                              do_classifier_free_guidance=False, clip_skip=clip_skip)
    cond = encoded(engine, layer=layer, ckpt="tiny-xl")
    assert torch.allclose(cond.embeds, embeds, atol=1e-6)
    assert torch.allclose(cond.pooled, pooled, atol=1e-6)
    if layer == -2:
        assert torch.equal(cond.embeds, encoded(engine, ckpt="tiny-xl").embeds)


def test_a_lora_keeps_the_layer_and_the_layer_changes_the_image(engine):
    flow = txt2img(prompt="a red circle", seed=2, steps=2, guidance=1.5)
    flow.add("skip", "CLIPSetLastLayer", clip=link("ckpt", "clip"), stop_at_clip_layer=-2)
    flow.add("lora", "ApplyLoRA", model=link("ckpt", "model"), clip=link("skip", "clip"), lora="b_peft.safetensors")
    assert value_of(engine, flow, "lora", "clip").layer == -2
    flow.nodes["pos"]["inputs"]["clip"] = link("skip", "clip")
    with_skip = value_of(engine, flow, "decode", "image").numpy()
    plain = value_of(engine, txt2img(prompt="a red circle", seed=2, steps=2, guidance=1.5), "decode", "image").numpy()
    assert max_diff(with_skip, plain) > 1e-4


# -- conditioning arithmetic -------------------------------------------------------------
def cond(seed, arch="sdxl", tokens=77, pooled=True, **extra):
    g = torch.Generator().manual_seed(seed)
    return Conditioning(arch, torch.randn(1, tokens, 8, generator=g),
                        pooled=torch.randn(1, 4, generator=g) if pooled else None, **extra)


def run(cls, **inputs):
    return cls().execute(None, **inputs)["conditioning"]


def test_zero_out_keeps_everything_but_the_embeddings():
    c = cond(1, original_size=(64, 64))
    out = run(C.ConditioningZeroOut, conditioning=c)
    assert torch.all(out.embeds == 0) and torch.all(out.pooled == 0)
    assert out.original_size == (64, 64) and out.arch == "sdxl"


def test_average_mixes_tokens_and_pooled_as_comfyui_does():
    to, source = cond(1), cond(2, tokens=100)
    out = run(C.ConditioningAverage, conditioning_to=to, conditioning_from=source, conditioning_to_strength=0.3)
    assert torch.allclose(out.embeds, to.embeds * 0.3 + source.embeds[:, :77] * 0.7)
    assert torch.allclose(out.pooled, to.pooled * 0.3 + source.pooled * 0.7)
    short = cond(3, tokens=40)
    out = run(C.ConditioningAverage, conditioning_to=to, conditioning_from=short, conditioning_to_strength=0.5)
    assert torch.allclose(out.embeds[:, :40], to.embeds[:, :40] * 0.5 + short.embeds * 0.5)
    assert torch.allclose(out.embeds[:, 40:], to.embeds[:, 40:] * 0.5)  # padded with zeros
    # A conditioning without a pooled embedding takes the other's.
    out = run(C.ConditioningAverage, conditioning_to=cond(4, pooled=False), conditioning_from=source,
              conditioning_to_strength=0.5)
    assert torch.allclose(out.pooled, source.pooled)
    with pytest.raises(ValueError, match="different text encoders"):
        run(C.ConditioningAverage, conditioning_to=to, conditioning_from=cond(5, arch="sd15"), conditioning_to_strength=1.0)


def test_concat_appends_tokens_and_stretches_the_default_negative():
    negative = torch.randn(1, 77, 8)
    to = cond(1, arch="sd15", pooled=False, default_negative=negative)
    out = run(C.ConditioningConcat, conditioning_to=to, conditioning_from=cond(2, arch="sd15", pooled=False))
    assert out.embeds.shape == (1, 154, 8) and torch.equal(out.embeds[:, :77], to.embeds)
    assert torch.equal(out.default_negative, negative.repeat(1, 2, 1))
    assert [e.shape[1] for e in match_token_lengths(torch.zeros(1, 77, 2), torch.zeros(1, 154, 2))] == [154, 154]


def test_a_prompt_concatenated_with_itself_attends_as_the_prompt(engine):
    # Cross-attention over tokens repeated is attention over the tokens: the same image,
    # with CFG against the (stretched) default negative too.
    flow = txt2img(prompt="a red circle", seed=4, steps=2, guidance=1.6)
    flow.add("twice", "ConditioningConcat", conditioning_to=link("pos", "conditioning"),
             conditioning_from=link("pos", "conditioning"))
    plain = value_of(engine, flow, "decode", "image").numpy()
    flow.nodes["sampler"]["inputs"]["positive"] = link("twice", "conditioning")
    assert max_diff(value_of(engine, flow, "decode", "image").numpy(), plain) < 1e-5


def test_a_zeroed_negative_is_the_sdxl_pipelines_default(engine):
    flow = txt2img(ckpt="tiny-xl", prompt="a red circle", seed=6, steps=2, cfg=2.0, sampler="Sampler",
                   scheduler="euler")
    flow.add("zero", "ConditioningZeroOut", conditioning=link("pos", "conditioning"))
    flow.nodes["sampler"]["inputs"]["negative"] = link("zero", "conditioning")
    zeroed = value_of(engine, flow, "decode", "image").numpy()
    del flow.nodes["sampler"]["inputs"]["negative"]
    default = value_of(engine, flow, "decode", "image").numpy()  # SDXL: zeros (force_zeros_for_empty_prompt)
    assert max_diff(zeroed, default) < 1e-6
