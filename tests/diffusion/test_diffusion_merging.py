"""Model merging as ComfyUI computes it (comfy_extras/nodes_model_merging.py:
add_patches(model2's weights, strength_patch, strength_model) ->
w1 * strength_model + strength_patch * w2 in float32), realised by the model
manager on the shared modules and undone bitwise; CheckpointSave writes the
realised weights as a single file LoadCheckpoint reads back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lcmgraph_nodes.diffusion.builtin import tiny, tiny_addons
from lcmgraph_nodes.diffusion.models.merging import ldm_names

from ..helpers import assert_close_portable
from .diffusion_helpers import (
    Flow,
    image_of,
    link,
    max_diff,
    new_engine,
    reference,
    txt2img,
    value_of,
)


@pytest.fixture(scope="module")
def extra(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("merge-models")
    tiny.build_checkpoint(root / "tiny-b", "sd15", seed=7)
    tiny.build_checkpoint(root / "tiny-xl-b", "sdxl", seed=8)
    return root


@pytest.fixture(scope="module")
def engine(models, extra, tmp_path_factory):
    return new_engine(models, tmp_path_factory.mktemp("merge"),
                      folders={"checkpoints": [models / "checkpoints", extra]})


def _weights(module) -> dict[str, torch.Tensor]:
    return {k.replace(".base_layer", ""): v.detach().clone() for k, v in module.state_dict().items() if "lora_" not in k}


def _base_unets(models, extra, a="tiny", b="tiny-b"):
    folders = {"tiny": models / "checkpoints", "tiny-xl": models / "checkpoints", "tiny-b": extra, "tiny-xl-b": extra}
    from diffusers import UNet2DConditionModel

    load = lambda name: _weights(UNet2DConditionModel.from_pretrained(folders[name] / name / "unet"))  # noqa: E731
    return load(a), load(b)


def _realise(engine, flow: Flow, node: str, output: str = "model"):
    manager = engine.service("diffusion.models")
    ref = value_of(engine, flow, node, output)
    if output == "model":
        return _weights(manager.realise_unet(ref).unet)
    loaded = manager.realise_text(ref)
    return {n: _weights(e) for n, e in loaded.text_encoders().items()}


def _flow(ckpt="tiny", other="tiny-b") -> Flow:
    f = Flow()
    f.add("a", "LoadCheckpoint", checkpoint=ckpt)
    f.add("b", "LoadCheckpoint", checkpoint=other)
    return f


def _comfy(w1, w2, strength_model, strength_patch):
    """ComfyUI's calculate_weight for one 'diff' patch."""
    w = w1.float()
    if strength_model != 1.0:
        w = w * strength_model
    if strength_patch != 0.0:
        w = w + strength_patch * w2.float()
    return w


def test_merge_simple_is_comfyuis_formula_and_is_undone_bitwise(engine, models, extra):
    w1, w2 = _base_unets(models, extra)
    f = _flow()
    f.add("merge", "ModelMergeSimple", model1=link("a", "model"), model2=link("b", "model"), ratio=0.3)
    merged = _realise(engine, f, "merge")
    for key in w1:
        assert torch.equal(merged[key], _comfy(w1[key], w2[key], 0.3, 0.7)), key
    assert all(torch.equal(v, w1[k]) for k, v in _realise(engine, f, "a").items())  # the cached base, untouched
    assert all(torch.equal(v, w2[k]) for k, v in _realise(engine, f, "b").items())


def test_add_and_subtract(engine, models, extra):
    w1, w2 = _base_unets(models, extra)
    f = _flow()
    f.add("add", "ModelMergeAdd", model1=link("a", "model"), model2=link("b", "model"))
    f.add("sub", "ModelMergeSubtract", model1=link("a", "model"), model2=link("b", "model"), multiplier=0.5)
    added, subtracted = _realise(engine, f, "add"), _realise(engine, f, "sub")
    for key in w1:
        assert torch.equal(added[key], _comfy(w1[key], w2[key], 1.0, 1.0))
        assert torch.equal(subtracted[key], _comfy(w1[key], w2[key], 0.5, -0.5))  # (w1 - w2) * 0.5, ComfyUI's way


def test_ldm_block_names(models):
    unet = reference(models, "tiny").unet
    names = ldm_names(unet)
    # layers_per_block 1: input_blocks 0 conv_in, 1 down0, 2 down0's downsampler, 3 down1.
    assert names["conv_in.weight"] == "input_blocks.0.0.weight"
    assert names["down_blocks.0.downsamplers.0.conv.weight"] == "input_blocks.2.0.op.weight"
    assert names["down_blocks.1.attentions.0.proj_in.weight"] == "input_blocks.3.1.proj_in.weight"
    assert names["mid_block.resnets.1.conv1.weight"] == "middle_block.2.in_layers.2.weight"
    assert names["up_blocks.1.resnets.1.conv1.weight"] == "output_blocks.3.0.in_layers.2.weight"
    assert names["conv_out.weight"] == "out.2.weight"
    assert names["time_embedding.linear_1.weight"] == "time_embed.0.weight"


def test_merge_blocks_ratio_per_block(engine, models, extra):
    w1, w2 = _base_unets(models, extra)
    f = _flow()
    f.add("merge", "ModelMergeBlocks", model1=link("a", "model"), model2=link("b", "model"),
          input=0.2, middle=0.5, out=0.9)
    merged = _realise(engine, f, "merge")

    def ratio(key: str) -> float:
        if key.startswith(("down_blocks", "conv_in", "time_embedding")):  # time_embed: the first ratio, the default
            return 0.2
        if key.startswith("mid_block"):
            return 0.5
        return 0.9  # up_blocks (output_blocks) and conv_norm_out / conv_out (out)

    for key in w1:
        r = ratio(key)
        assert torch.equal(merged[key], _comfy(w1[key], w2[key], r, 1.0 - r)), key


def test_merge_sdxl_per_block(engine, models, extra):
    w1, w2 = _base_unets(models, extra, "tiny-xl", "tiny-xl-b")
    f = _flow("tiny-xl", "tiny-xl-b")
    f.add("merge", "ModelMergeSDXL", model1=link("a", "model"), model2=link("b", "model"),
          label_emb=0.25, input_blocks_2=0.0, middle_block_1=0.5, output_blocks_3=0.75)
    merged = _realise(engine, f, "merge")
    expected = {"add_embedding.": 0.25, "down_blocks.0.downsamplers.": 0.0, "mid_block.attentions.0.": 0.5,
                "up_blocks.1.resnets.1.": 0.75, "up_blocks.1.attentions.1.": 0.75}
    for key in w1:
        r = next((v for k, v in expected.items() if key.startswith(k)), 1.0)
        assert torch.equal(merged[key], _comfy(w1[key], w2[key], r, 1.0 - r)), key


def test_loras_before_and_after_a_merge(engine, models, extra):
    """A LoRA on model1 is merged with it (ComfyUI's patch order); a LoRA after the merge adds on top;
    a model merged with a LoRA version of itself reads the original weights, not the merged ones."""
    from diffusers import StableDiffusionPipeline

    lora = models / "loras" / "a.safetensors"
    pipe = StableDiffusionPipeline.from_pretrained(models / "checkpoints" / "tiny", safety_checker=None)
    plain = _weights(pipe.unet)
    pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="a")
    pipe.set_adapters(["a"], [0.8])
    pipe.fuse_lora(components=["unet"], lora_scale=1.0, adapter_names=["a"])
    patched = _weights(pipe.unet)
    _, w2 = _base_unets(models, extra)

    f = _flow()
    f.add("lora", "ApplyLoRA", model=link("a", "model"), lora="a.safetensors", weight=0.8)
    f.add("merge", "ModelMergeSimple", model1=link("lora", "model"), model2=link("b", "model"), ratio=0.6)
    merged = _realise(engine, f, "merge")
    for key in plain:
        assert_close_portable(merged[key], _comfy(patched[key], w2[key], 0.6, 0.4), key)

    f.add("self", "ModelMergeSimple", model1=link("a", "model"), model2=link("lora", "model"), ratio=0.5)
    mixed = _realise(engine, f, "self")
    for key in plain:
        assert_close_portable(mixed[key], _comfy(plain[key], patched[key], 0.5, 0.5), key)

    # A LoRA after the merge: the image equals the merge's with the LoRA live on top (peft, unfused).
    f2 = txt2img(steps=2)
    f2.add("b", "LoadCheckpoint", checkpoint="tiny-b")
    f2.add("merge", "ModelMergeSimple", model1=link("ckpt", "model"), model2=link("b", "model"), ratio=0.5)
    f2.add("lora", "ApplyLoRA", model=link("merge", "model"), lora="a.safetensors", weight=1.0)
    f2.nodes["sampler"]["inputs"]["model"] = link("lora", "model")
    with_lora = image_of(engine, f2)
    f2.nodes["sampler"]["inputs"]["model"] = link("merge", "model")
    without = image_of(engine, f2)
    assert max_diff(with_lora, without) > 1e-3
    f2.nodes["sampler"]["inputs"]["model"] = link("ckpt", "model")
    base = image_of(engine, f2)
    f2.nodes["sampler"]["inputs"]["model"] = link("lora", "model")
    assert max_diff(image_of(engine, f2), with_lora) == 0.0  # back and forth: the same image
    assert max_diff(base, without) > 1e-3


def test_clip_merges(engine, models, extra):
    from transformers import CLIPTextModel

    t1 = _weights(CLIPTextModel.from_pretrained(models / "checkpoints" / "tiny" / "text_encoder"))
    t2 = _weights(CLIPTextModel.from_pretrained(extra / "tiny-b" / "text_encoder"))
    f = _flow()
    f.add("simple", "CLIPMergeSimple", clip1=link("a", "clip"), clip2=link("b", "clip"), ratio=0.25)
    f.add("add", "CLIPMergeAdd", clip1=link("a", "clip"), clip2=link("b", "clip"))
    f.add("sub", "CLIPMergeSubtract", clip1=link("a", "clip"), clip2=link("b", "clip"), multiplier=2.0)
    for node, sm, sp in (("simple", 0.25, 0.75), ("add", 1.0, 1.0), ("sub", 2.0, -2.0)):
        got = _realise(engine, f, node, "clip")["text_encoder"]
        for key, value in t1.items():
            if key.endswith("position_ids"):
                continue
            assert torch.equal(got[key], _comfy(value, t2[key], sm, sp)), (node, key)
    f.add("text", "TextEncode", clip=link("simple", "clip"), text="a red cat")
    f.add("plain", "TextEncode", clip=link("a", "clip"), text="a red cat")
    merged, plain = value_of(engine, f, "text", "conditioning"), value_of(engine, f, "plain", "conditioning")
    assert not torch.equal(merged.embeds, plain.embeds)
    f.nodes["plain"]["inputs"]["text"] = "a red cat "  # not cached: encoded again after the merge
    again = value_of(engine, f, "plain", "conditioning")
    assert torch.equal(again.embeds, plain.embeds)


def test_merges_count_against_the_memory_budget(models, extra, tmp_path):
    engine = new_engine(models, tmp_path, folders={"checkpoints": [models / "checkpoints", extra]})
    manager = engine.service("diffusion.models")
    f = _flow()
    f.add("merge", "ModelMergeSimple", model1=link("a", "model"), model2=link("b", "model"), ratio=0.41)
    ref = value_of(engine, f, "merge", "model")  # both checkpoints loaded
    before = manager.bytes_used
    loaded = manager.realise_unet(ref)
    unet_bytes = sum(p.numel() * p.element_size() for p in loaded.unet.parameters())
    assert manager.bytes_used - before == loaded.merges["unet"].nbytes == unet_bytes  # the originals' copies


def test_checkpoint_save_writes_a_loadable_merged_checkpoint(engine, models, extra, tmp_path):
    f = txt2img(steps=2)
    f.add("b", "LoadCheckpoint", checkpoint="tiny-b")
    f.add("merge", "ModelMergeSimple", model1=link("ckpt", "model"), model2=link("b", "model"), ratio=0.5)
    f.add("clipmerge", "CLIPMergeSimple", clip1=link("ckpt", "clip"), clip2=link("b", "clip"), ratio=0.5)
    f.nodes["sampler"]["inputs"]["model"] = link("merge", "model")
    f.nodes["pos"]["inputs"]["clip"] = link("clipmerge", "clip")
    expected = image_of(engine, f)
    f.add("save", "CheckpointSave", model=link("merge", "model"), clip=link("clipmerge", "clip"),
          vae=link("ckpt", "vae"), filename_prefix="checkpoints/merged")
    out = tmp_path / "out"
    first = engine.run(f.doc("save"), output_dir=out).outputs["save"]["checkpoints"][0]
    second = engine.run(f.doc("save"), output_dir=out).outputs["save"]["checkpoints"][0]
    assert (first["filename"], second["filename"]) == ("checkpoints/merged_00001_.safetensors",
                                                      "checkpoints/merged_00002_.safetensors")
    assert not list((out / "checkpoints").glob(".*"))  # no temporary file left behind

    reader = new_engine(models, tmp_path / "reader", folders={"checkpoints": [out / "checkpoints"]})
    f.nodes["ckpt"]["inputs"]["checkpoint"] = "merged_00001_.safetensors"
    f.nodes["sampler"]["inputs"]["model"] = link("ckpt", "model")
    f.nodes["pos"]["inputs"]["clip"] = link("ckpt", "clip")
    del f.nodes["save"], f.nodes["merge"], f.nodes["clipmerge"], f.nodes["b"]
    assert max_diff(image_of(reader, f), expected) < 1e-4


def test_merging_different_architectures_is_refused(engine):
    f = _flow("tiny", "tiny-xl")
    f.add("merge", "ModelMergeSimple", model1=link("a", "model"), model2=link("b", "model"))
    with pytest.raises(Exception, match="cannot merge a sd15 model with a sdxl one"):
        value_of(engine, f, "merge", "model")


def test_the_lora_addon_exists(models):
    assert tiny_addons.save_lora(models / "loras" / "a.safetensors").is_file()


def test_merges_and_fused_loras_restore_each_other_exactly(models, extra, tmp_path):
    """With the LoRA fusion on (the GPU fast path), a merge and a fused LoRA take turns on
    one UNet: every image equals the one an engine without fusion makes, and the base
    weights come back bitwise."""
    folders = {"checkpoints": [models / "checkpoints", extra]}
    fused = new_engine(models, tmp_path / "fused", folders=folders, fuse_lora=True)
    plain = new_engine(models, tmp_path / "plain", folders=folders)
    f = txt2img(steps=2)
    f.add("b", "LoadCheckpoint", checkpoint="tiny-b")
    f.add("lora", "ApplyLoRA", model=link("ckpt", "model"), lora="a.safetensors", weight=0.9)
    f.add("merge", "ModelMergeSimple", model1=link("lora", "model"), model2=link("b", "model"), ratio=0.7)
    f.add("after", "ApplyLoRA", model=link("merge", "model"), lora="b_peft.safetensors", weight=0.5)
    for model in ("lora", "after", "merge", "lora", "ckpt", "after", "ckpt"):
        f.nodes["sampler"]["inputs"]["model"] = link(model, "model")
        assert max_diff(image_of(fused, f), image_of(plain, f)) < 1e-5, model
    manager = fused.service("diffusion.models")
    base = _weights(manager.realise_unet(value_of(fused, f, "ckpt", "model")).unet)
    w1, _ = _base_unets(models, extra)
    assert all(torch.equal(base[k], w1[k]) for k in w1)
