"""A workflow's image equals the diffusers pipeline's for the same weights and seed.

All in fp32 on the CPU; the bound is 1e-5 on 0..1 pixels. The engine and the
reference load the same checkpoint folder independently.
"""

from __future__ import annotations

import pytest

from .diffusion_helpers import gen, image_of, link, max_diff, reference, txt2img, value_of

TOL = 1e-5


@pytest.fixture(scope="module")
def sd(models):
    return reference(models, "tiny")


def _with(pipe, scheduler: str = "LCMScheduler", **overrides):
    """``pipe`` with a scheduler made from the checkpoint's own scheduler config."""
    import diffusers

    config = pipe.scheduler.config
    base = getattr(pipe, "_base_scheduler_config", None) or config
    pipe._base_scheduler_config = base
    pipe.scheduler = getattr(diffusers, scheduler).from_config(base, **overrides)
    return pipe


def _lcm(pipe):
    return _with(pipe)


def test_txt2img_lcm_batch(engine, sd):
    ours = image_of(engine, txt2img(prompt="a red circle", batch=2, seed=7, steps=4, guidance=1.0))
    ref = _lcm(sd)("a red circle", height=64, width=64, num_inference_steps=4, guidance_scale=1.0,
                   num_images_per_prompt=2, generator=gen(7), output_type="np").images
    assert max_diff(ours, ref) <= TOL
    # Not a degenerate model: the two images of the batch and another seed differ.
    assert max_diff(ours[0], ours[1]) > 1e-3
    other = image_of(engine, txt2img(prompt="a red circle", seed=8, steps=4))
    assert max_diff(other[0], ours[0]) > 1e-3


def test_lcm_cfg_with_negative_prompt(engine, sd):
    ours = image_of(engine, txt2img(prompt="a cat", negative="blurry", seed=3, steps=4, guidance=1.8))
    ref = _lcm(sd)("a cat", negative_prompt="blurry", height=64, width=64, num_inference_steps=4,
                   guidance_scale=1.8, generator=gen(3), output_type="np").images
    assert max_diff(ours, ref) <= TOL
    no_cfg = image_of(engine, txt2img(prompt="a cat", negative="blurry", seed=3, steps=4, guidance=1.0))
    assert max_diff(no_cfg, ours) > 1e-4


def test_lcm_cfg_without_negative_uses_the_empty_prompt(engine, sd):
    ours = image_of(engine, txt2img(prompt="a dog", seed=4, steps=3, guidance=1.5))
    ref = _lcm(sd)("a dog", height=64, width=64, num_inference_steps=3, guidance_scale=1.5,
                   generator=gen(4), output_type="np").images
    assert max_diff(ours, ref) <= TOL


def test_original_inference_steps(engine, sd):
    ours = image_of(engine, txt2img(seed=5, steps=2, original_inference_steps=20))
    pipe = _with(sd, original_inference_steps=20)
    ref = pipe("a red circle", height=64, width=64, num_inference_steps=2, guidance_scale=1.0,
               generator=gen(5), output_type="np").images
    assert max_diff(ours, ref) <= TOL


SCHEDULER_CLASSES = {
    "lcm": ("LCMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "ddim": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False}),
    "tcd": ("TCDScheduler", {}),
}


@pytest.mark.parametrize("name", sorted(SCHEDULER_CLASSES))
def test_sampler_schedulers_with_cfg(engine, sd, name):
    ours = image_of(engine, txt2img(prompt="a house", negative="ugly", sampler="Sampler", scheduler=name,
                                    seed=11, steps=4, cfg=3.0))
    cls, overrides = SCHEDULER_CLASSES[name]
    eta = {"eta": 0.3} if name == "tcd" else {}  # Sampler's eta -1: TCD's own default, 0.3
    ref = _with(sd, cls, **overrides)("a house", negative_prompt="ugly", height=64, width=64, num_inference_steps=4, guidance_scale=3.0,
             generator=gen(11), output_type="np", **eta).images
    assert max_diff(ours, ref) <= TOL


def test_lcm_distilled_unet_takes_guidance_as_embedding(engine, models):
    from diffusers import LatentConsistencyModelPipeline

    pipe = _lcm(reference(models, "tiny-lcm", LatentConsistencyModelPipeline))
    ours = image_of(engine, txt2img(ckpt="tiny-lcm", negative="ignored", seed=2, steps=4, guidance=6.0))
    ref = pipe("a red circle", height=64, width=64, num_inference_steps=4, guidance_scale=6.0,
               generator=gen(2), output_type="np").images
    assert max_diff(ours, ref) <= TOL
    plain = image_of(engine, txt2img(ckpt="tiny-lcm", seed=2, steps=4, guidance=1.0))
    assert max_diff(plain, ours) > 1e-4


def _img2img_flow(ckpt, sampler, **inputs):
    f = txt2img(ckpt=ckpt, prompt="a photo of a tree", sampler=sampler, **inputs)
    f.add("load", "LoadImage", image="hint.png")
    f.add("encode", "VAEEncode", vae=link("ckpt", "vae"), image=link("load", "image"))
    f.nodes["sampler"]["inputs"]["latent"] = link("encode", "latent")
    return f


def _encoded(pipe, models):
    """The hint image encoded as VAEEncode does it: the distribution's mode, scaled."""
    import torch
    from diffusers.image_processor import VaeImageProcessor
    from PIL import Image

    pixels = VaeImageProcessor().preprocess(Image.open(models / "input" / "hint.png"))
    with torch.no_grad():
        return pipe.vae.encode(pixels).latent_dist.mode() * pipe.vae.config.scaling_factor


def test_vae_encode_matches_diffusers(engine, sd, models):
    f = _img2img_flow("tiny", "LCMSampler")
    latent = value_of(engine, f, "encode", "latent").samples
    assert max_diff(latent.numpy(), _encoded(sd, models).numpy()) <= 1e-6


def test_img2img_lcm_uses_lcm_strength_semantics(engine, models):
    """LCMSampler denoise == LatentConsistencyModelImg2ImgPipeline strength."""
    from diffusers import LatentConsistencyModelImg2ImgPipeline

    pipe = _lcm(reference(models, "tiny-lcm", LatentConsistencyModelImg2ImgPipeline))
    ours = image_of(engine, _img2img_flow("tiny-lcm", "LCMSampler", seed=9, steps=4, guidance=1.5, denoise=0.6))
    ref = pipe("a photo of a tree", image=_encoded(pipe, models), strength=0.6, num_inference_steps=4,
               guidance_scale=1.5, generator=gen(9), output_type="np").images
    assert max_diff(ours, ref) <= TOL


def test_img2img_sampler_uses_truncating_strength_semantics(engine, sd, models):
    """Sampler denoise == StableDiffusionImg2ImgPipeline strength."""
    from diffusers import StableDiffusionImg2ImgPipeline

    pipe = StableDiffusionImg2ImgPipeline(**_with(sd, "EulerDiscreteScheduler").components)
    pipe.set_progress_bar_config(disable=True)
    ours = image_of(engine, _img2img_flow("tiny", "Sampler", scheduler="euler", seed=9, steps=6, cfg=2.0, denoise=0.5))
    ref = pipe("a photo of a tree", image=_encoded(sd, models), strength=0.5, num_inference_steps=6,
               guidance_scale=2.0, generator=gen(9), output_type="np").images
    assert max_diff(ours, ref) <= TOL


def test_split_run_equals_full_run(engine):
    """Base -> refiner hand-over: steps [0, 2) then [2, 4) equals the 4-step run."""
    full = txt2img(sampler="Sampler", scheduler="euler", seed=1, steps=4, cfg=2.0)
    f = txt2img(sampler="Sampler", scheduler="euler", seed=1, steps=4, cfg=2.0, end_step=2)
    f.add("second", "Sampler", model=link("ckpt", "model"), positive=link("pos", "conditioning"),
          latent=link("sampler", "latent"), scheduler="euler", seed=1, steps=4, cfg=2.0, start_step=2)
    f.nodes["decode"]["inputs"]["latent"] = link("second", "latent")
    assert max_diff(image_of(engine, f), image_of(engine, full)) <= TOL
    leftover = value_of(engine, f, "sampler", "latent").samples
    assert leftover.std() > 0.5  # still noisy: returned with its leftover noise


def test_controlnet_parity(engine, sd, models):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    from PIL import Image

    f = txt2img(prompt="a city at night", seed=6, steps=4, guidance=1.0)
    f.add("cn", "LoadControlNet", controlnet="cn")
    f.add("hint", "LoadImage", image="hint.png")
    f.add("apply", "ApplyControlNet", conditioning=link("pos", "conditioning"), control_net=link("cn", "control_net"),
          image=link("hint", "image"), strength=0.9)
    f.nodes["sampler"]["inputs"]["positive"] = link("apply", "conditioning")
    ours = image_of(engine, f)
    net = ControlNetModel.from_pretrained(models / "controlnet" / "cn")
    pipe = _lcm(StableDiffusionControlNetPipeline(**sd.components, controlnet=net))
    pipe.set_progress_bar_config(disable=True)
    hint = Image.open(models / "input" / "hint.png")
    ref = pipe("a city at night", image=hint, controlnet_conditioning_scale=0.9, height=64, width=64,
               num_inference_steps=4, guidance_scale=1.0, generator=gen(6), output_type="np").images
    assert max_diff(ours, ref) <= TOL
    plain = image_of(engine, txt2img(prompt="a city at night", seed=6, steps=4, guidance=1.0))
    assert max_diff(plain, ours) > 1e-4  # the control does something


def test_stacked_controlnets_with_windows_and_cfg(engine, sd, models):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    from PIL import Image

    f = txt2img(prompt="a sun", negative="blurry", seed=8, steps=4, guidance=1.6)
    f.add("hint", "LoadImage", image="hint.png")
    previous = link("pos", "conditioning")
    settings = [("cn", 0.8, 0.0, 1.0), ("cn2", 0.5, 0.25, 0.75)]
    for i, (name, strength, start, end) in enumerate(settings):
        f.add(f"load{i}", "LoadControlNet", controlnet=name)
        f.add(f"apply{i}", "ApplyControlNet", conditioning=previous, control_net=link(f"load{i}", "control_net"),
              image=link("hint", "image"), strength=strength, start=start, end=end)
        previous = link(f"apply{i}", "conditioning")
    f.nodes["sampler"]["inputs"]["positive"] = previous
    ours = image_of(engine, f)
    nets = [ControlNetModel.from_pretrained(models / "controlnet" / n) for n, *_ in settings]
    pipe = _lcm(StableDiffusionControlNetPipeline(**sd.components, controlnet=nets))
    pipe.set_progress_bar_config(disable=True)
    hint = Image.open(models / "input" / "hint.png")
    ref = pipe("a sun", negative_prompt="blurry", image=[hint, hint], height=64, width=64,
               controlnet_conditioning_scale=[s for _, s, _, _ in settings],
               control_guidance_start=[s for *_, s, _ in settings], control_guidance_end=[e for *_, e in settings],
               num_inference_steps=4, guidance_scale=1.6, generator=gen(8), output_type="np").images
    assert max_diff(ours, ref) <= TOL


def _lora_flow(loras, **sampler_inputs):
    f = txt2img(prompt="a blue square", seed=12, steps=4, **sampler_inputs)
    model, clip = link("ckpt", "model"), link("ckpt", "clip")
    for i, (name, weight) in enumerate(loras):
        f.add(f"lora{i}", "ApplyLoRA", model=model, clip=clip, lora=name, weight=weight, clip_weight=weight)
        model, clip = link(f"lora{i}", "model"), link(f"lora{i}", "clip")
    f.nodes["sampler"]["inputs"]["model"] = model
    f.nodes["pos"]["inputs"]["clip"] = clip
    return f


def test_two_lora_stack_parity(engine, models):
    ours = image_of(engine, _lora_flow([("a.safetensors", 1.0), ("b_kohya.safetensors", 0.8)], guidance=1.0))
    pipe = _lcm(reference(models, "tiny"))
    pipe.load_lora_weights(str(models / "loras"), weight_name="a.safetensors", adapter_name="a")
    pipe.load_lora_weights(str(models / "loras"), weight_name="b_kohya.safetensors", adapter_name="b")
    pipe.set_adapters(["a", "b"], adapter_weights=[1.0, 0.8])
    ref = pipe("a blue square", height=64, width=64, num_inference_steps=4, guidance_scale=1.0,
               generator=gen(12), output_type="np").images
    assert max_diff(ours, ref) <= TOL
    base = image_of(engine, txt2img(prompt="a blue square", seed=12, steps=4))
    assert max_diff(base, ours) > 1e-4


def test_kohya_and_peft_files_of_one_lora_agree(engine):
    kohya = image_of(engine, _lora_flow([("b_kohya.safetensors", 0.7)]))
    peft = image_of(engine, _lora_flow([("b_peft.safetensors", 0.7)]))
    assert max_diff(kohya, peft) <= TOL


def test_sdxl_txt2img_lcm(engine, models):
    pipe = _lcm(reference(models, "tiny-xl"))
    ours = image_of(engine, txt2img(ckpt="tiny-xl", prompt="a landscape", seed=13, steps=4, guidance=1.0))
    ref = pipe("a landscape", height=64, width=64, num_inference_steps=4, guidance_scale=1.0,
               generator=gen(13), output_type="np").images
    assert max_diff(ours, ref) <= TOL


def test_sdxl_cfg_zero_negative_and_micro_conditioning(engine, models):
    pipe = _lcm(reference(models, "tiny-xl"))
    f = txt2img(ckpt="tiny-xl", prompt="a portrait", seed=14, steps=4, guidance=1.7)
    f.nodes["pos"]["inputs"].update(original_width=128, original_height=96, crop_left=8, crop_top=16,
                                    target_width=64, target_height=64)
    ours = image_of(engine, f)
    ref = pipe("a portrait", height=64, width=64, num_inference_steps=4, guidance_scale=1.7,
               original_size=(96, 128), crops_coords_top_left=(16, 8), target_size=(64, 64),
               generator=gen(14), output_type="np").images
    assert max_diff(ours, ref) <= TOL
    default = image_of(engine, txt2img(ckpt="tiny-xl", prompt="a portrait", seed=14, steps=4, guidance=1.7))
    assert max_diff(default, ours) > 1e-5  # the micro-conditioning reaches the UNet


def test_sdxl_lora_on_unet_and_both_text_encoders(engine, models):
    f = txt2img(ckpt="tiny-xl", prompt="a sky", seed=15, steps=4, guidance=1.0)
    f.add("lora", "ApplyLoRA", model=link("ckpt", "model"), clip=link("ckpt", "clip"), lora="xl.safetensors",
          weight=0.9, clip_weight=0.9)
    f.nodes["sampler"]["inputs"]["model"] = link("lora", "model")
    f.nodes["pos"]["inputs"]["clip"] = link("lora", "clip")
    ours = image_of(engine, f)
    pipe = _lcm(reference(models, "tiny-xl"))
    pipe.load_lora_weights(str(models / "loras"), weight_name="xl.safetensors", adapter_name="xl")
    assert set(pipe.get_list_adapters()) == {"unet", "text_encoder", "text_encoder_2"}
    pipe.set_adapters(["xl"], adapter_weights=[0.9])
    ref = pipe("a sky", height=64, width=64, num_inference_steps=4, guidance_scale=1.0,
               generator=gen(15), output_type="np").images
    assert max_diff(ours, ref) <= TOL


def test_lora_text_encoder_weight_is_separate(engine, models):
    f = txt2img(prompt="a green tree", seed=16, steps=4)
    f.add("lora", "ApplyLoRA", model=link("ckpt", "model"), clip=link("ckpt", "clip"), lora="a.safetensors",
          weight=0.6, clip_weight=1.5)
    f.nodes["sampler"]["inputs"]["model"] = link("lora", "model")
    f.nodes["pos"]["inputs"]["clip"] = link("lora", "clip")
    ours = image_of(engine, f)
    pipe = _lcm(reference(models, "tiny"))
    pipe.load_lora_weights(str(models / "loras"), weight_name="a.safetensors", adapter_name="a")
    pipe.set_adapters(["a"], adapter_weights=[{"unet": 0.6, "text_encoder": 1.5}])
    ref = pipe("a green tree", height=64, width=64, num_inference_steps=4, guidance_scale=1.0,
               generator=gen(16), output_type="np").images
    assert max_diff(ours, ref) <= TOL
