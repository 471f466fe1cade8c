"""Inpainting checkpoints (9-channel UNets) with InpaintModelConditioning equal
diffusers' StableDiffusionInpaintPipeline; they load from folders and single
files; a plain UNet ignores the inpaint conditioning."""

from __future__ import annotations

import numpy as np
import pytest

from lcmgraph import NodeFailed

from .diffusion_helpers import Flow, gen, image_of, link, max_diff, reference, value_of

TOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def inputs(models):
    """The 9-channel tiny model and a mask: right half white, on 8-pixel cells so that any resize agrees."""
    from lcmgraph_nodes.diffusion.builtin import tiny, tiny_addons

    tiny.build_checkpoint(models / "checkpoints" / "tiny-inpaint", "sd15", seed=30, in_channels=9)
    tiny_addons.save_mask(models / "input" / "half.png")
    return models


def _flow(sampler="LCMSampler", ckpt="tiny-inpaint", noise_mask=False, conditioned=True, **inputs) -> Flow:
    f = Flow()
    f.add("ckpt", "LoadCheckpoint", checkpoint=ckpt)
    f.add("pos", "TextEncode", clip=link("ckpt", "clip"), text="a red circle")
    f.add("neg", "TextEncode", clip=link("ckpt", "clip"), text="")
    f.add("load", "LoadImage", image="hint.png")
    f.add("mask", "LoadImageMask", image="half.png", channel="red")
    f.add("cond", "InpaintModelConditioning", positive=link("pos", "conditioning"),
          negative=link("neg", "conditioning"), vae=link("ckpt", "vae"), image=link("load", "image"),
          mask=link("mask", "mask"), noise_mask=noise_mask)
    pos, neg = (link("cond", "positive"), link("cond", "negative")) if conditioned else (
        link("pos", "conditioning"), link("neg", "conditioning"))
    f.add("sampler", sampler, model=link("ckpt", "model"), positive=pos, negative=neg,
          latent=link("cond", "latent"), **inputs)
    f.add("decode", "VAEDecode", vae=link("ckpt", "vae"), latent=link("sampler", "latent"))
    return f


def _reference(models, engine, scheduler, seed, **kwargs):
    import diffusers
    from diffusers import StableDiffusionInpaintPipeline
    from PIL import Image

    base = reference(models, "tiny-inpaint")
    pipe = StableDiffusionInpaintPipeline(**base.components)
    pipe.scheduler = getattr(diffusers, scheduler).from_config(base.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    f = _flow(steps=1)
    cond = value_of(engine, f, "cond", "positive").inpaint
    source = value_of(engine, f, "cond", "latent").samples
    # Our encodings as latents (the pipeline's own VAE encode would draw from the generator).
    return pipe("a red circle", image=source, masked_image_latents=cond.latent,
                mask_image=Image.open(models / "input" / "half.png"), height=64, width=64, generator=gen(seed),
                output_type="np", **kwargs).images


def test_lcm_sampler_matches_the_inpaint_pipeline(engine, models):
    ours = image_of(engine, _flow(seed=3, steps=4, guidance=1.0))
    ref = _reference(models, engine, "LCMScheduler", 3, num_inference_steps=4, guidance_scale=1.0, strength=1.0)
    assert max_diff(ours, ref) <= TOL


def test_lcm_partial_denoise_matches(engine, models):
    ours = image_of(engine, _flow("Sampler", scheduler="lcm", seed=5, steps=4, cfg=1.0, denoise=0.5))
    ref = _reference(models, engine, "LCMScheduler", 5, num_inference_steps=4, guidance_scale=1.0, strength=0.5)
    assert max_diff(ours, ref) <= TOL


def test_euler_cfg_matches_the_inpaint_pipeline(engine, models):
    ours = image_of(engine, _flow("Sampler", scheduler="euler", seed=9, steps=6, cfg=2.0, denoise=1.0))
    ref = _reference(models, engine, "EulerDiscreteScheduler", 9, num_inference_steps=6, guidance_scale=2.0,
                     strength=1.0)
    assert max_diff(ours, ref) <= TOL
    ours = image_of(engine, _flow("Sampler", scheduler="euler", seed=9, steps=6, cfg=2.0, denoise=0.6))
    ref = _reference(models, engine, "EulerDiscreteScheduler", 9, num_inference_steps=6, guidance_scale=2.0,
                     strength=0.6)
    assert max_diff(ours, ref) <= TOL


def test_the_node_masks_and_keeps_the_source(engine):
    f = _flow(steps=4, noise_mask=True)
    cond = value_of(engine, f, "cond", "positive").inpaint
    latent = value_of(engine, f, "cond", "latent")
    assert cond.mask.shape == (1, 1, 64, 64) and latent.noise_mask is not None
    assert cond.latent.shape == latent.samples.shape == (1, 4, 8, 8)
    assert float((cond.latent - latent.samples).abs().max()) > 1e-3  # the masked half is grey there
    # with the noise mask the unmasked half of the latent stays the source's
    out = value_of(engine, _flow(seed=3, steps=4, guidance=1.0, noise_mask=True), "sampler", "latent")
    assert float((out.samples[..., :4] - latent.samples[..., :4]).abs().max()) <= 1e-6
    assert float((out.samples[..., 4:] - latent.samples[..., 4:]).abs().max()) > 1e-2


def test_an_inpainting_model_without_its_conditioning_is_refused(engine):
    with pytest.raises(NodeFailed) as info:
        image_of(engine, _flow(seed=3, steps=2, conditioned=False))
    assert info.value.node_id == "sampler" and "InpaintModelConditioning" in str(info.value)


def test_a_plain_model_ignores_the_inpaint_conditioning(engine):
    ours = image_of(engine, _flow(ckpt="tiny", seed=3, steps=3, guidance=1.0, denoise=0.6))
    plain = image_of(engine, _flow(ckpt="tiny", seed=3, steps=3, guidance=1.0, denoise=0.6, conditioned=False))
    assert np.array_equal(ours, plain)


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_inpainting_single_files_load(engine, models, arch):
    from lcmgraph_nodes.diffusion.builtin import tiny
    from lcmgraph_nodes.diffusion.formats.single_file_arch import infer_configs
    from lcmgraph_nodes.diffusion.formats.single_file_export import save_single_file
    from lcmgraph_nodes.diffusion.formats.single_file_reader import LazyStateDict

    target = models / "checkpoints" / f"tiny-inpaint-{arch}.safetensors"
    if arch == "sd15":
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(models / "checkpoints" / "tiny-inpaint", local_files_only=True)
    else:
        pipe = tiny.make_pipeline("sdxl", seed=30, in_channels=9)
    if not target.exists():
        save_single_file(target, pipe.unet, pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None),
                         tokenizer=pipe.tokenizer, tokenizer_2=getattr(pipe, "tokenizer_2", None))
    assert infer_configs(LazyStateDict(target), arch)["unet"]["in_channels"] == 9
    if arch == "sd15":
        single = image_of(engine, _flow(ckpt=target.name, seed=3, steps=2, guidance=1.0))
        folder = image_of(engine, _flow(seed=3, steps=2, guidance=1.0))
        assert max_diff(single, folder) <= TOL


def test_builtin_inpaint_model(tmp_path):
    from types import SimpleNamespace

    from diffusers import UNet2DConditionModel
    from lcmgraph_nodes.diffusion.builtin import BUILTIN_FILES

    runtime = SimpleNamespace(home=tmp_path)
    folder = BUILTIN_FILES[("checkpoints", "tiny-random-inpaint")](runtime)
    assert UNet2DConditionModel.load_config(folder / "unet")["in_channels"] == 9
    mask = BUILTIN_FILES[("input", "tiny-mask.png")](runtime)
    from PIL import Image

    pixels = np.asarray(Image.open(mask))
    assert pixels[:, :32].max() == 0 and pixels[:, 32:].min() == 255


def test_comfy_mapping_both_ways(engine, models):
    from lcmgraph.comfy import load_any, to_api

    api = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-inpaint"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "hint.png"}},
        "5": {"class_type": "LoadImageMask", "inputs": {"image": "half.png", "channel": "red"}},
        "6": {"class_type": "InpaintModelConditioning", "inputs": {
            "positive": ["2", 0], "negative": ["3", 0], "vae": ["1", 2], "pixels": ["4", 0], "mask": ["5", 0],
            "noise_mask": False}},
        "7": {"class_type": "KSampler", "inputs": {"seed": 3, "steps": 2, "cfg": 1.0, "sampler_name": "lcm",
                                                  "scheduler": "sgm_uniform", "denoise": 1.0, "model": ["1", 0],
                                                  "positive": ["6", 0], "negative": ["6", 1],
                                                  "latent_image": ["6", 2]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }
    doc = load_any(api, engine.registry)
    node = doc["nodes"]["6"]
    assert node["type"] == "InpaintModelConditioning"
    assert node["inputs"] == {"positive": link("2", "conditioning"), "negative": link("3", "conditioning"),
                              "vae": link("1", "vae"), "image": link("4", "image"), "mask": link("5", "mask"),
                              "noise_mask": False}
    assert doc["nodes"]["7"]["inputs"]["latent"] == link("6", "latent")
    prompt = to_api(doc, engine.registry)
    assert prompt["6"]["class_type"] == "InpaintModelConditioning"
    assert prompt["6"]["inputs"] == api["6"]["inputs"]
    result = engine.run(doc)
    assert result.values["8"]["image"].shape == (1, 64, 64, 3)
