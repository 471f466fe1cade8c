"""The few-step families run the way their model cards prescribe: FewStepSampler
(and Sampler with the same settings) against diffusers set up as each card
says, max |pixel difference| <= 1e-5 in fp32 on the CPU, with LoRAs in the
layouts those families ship (kohya and diffusers/peft). Each README "few-step
families" row is one case here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lcmgraph_nodes.diffusion.builtin import tiny, tiny_addons
from lcmgraph_nodes.diffusion.models.presets import PRESETS

from lcmgraph import NodeFailed
from tests.helpers import IMAGE_ATOL, assert_close_portable

from .diffusion_helpers import gen, image_of, link, max_diff, reference, txt2img

TOL = 1e-5
PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def extra_files(models):
    """An SDXL LoRA in kohya layout and UNet-only files (the session's models folder)."""
    tiny_addons.save_lora(models / "loras" / "xl_kohya.safetensors", arch="sdxl", seed=13, kohya=True)
    tiny_addons.save_unet(models / "unet" / "xl_unet.safetensors", "sdxl", seed=31)
    tiny_addons.save_unet(models / "unet" / "sd_unet_ldm.safetensors", "sd15", seed=32, layout="ldm")
    return models


def _pipe(models, ckpt: str, scheduler: str, lora: str | None = None, unet_seed: int | None = None, **config):
    import diffusers

    pipe = reference(models, ckpt)
    if unet_seed is not None:
        pipe.unet = tiny.make_unet("sdxl" if "xl" in ckpt else "sd15", unet_seed)
    pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config, **config)
    if lora:
        pipe.load_lora_weights(str(models / "loras"), weight_name=lora, adapter_name="few")
    return pipe


def _flow(ckpt: str, lora: str | None = None, unet: str | None = None, **sampler):
    f = txt2img(ckpt=ckpt, prompt=PROMPT, **sampler)
    model = link("ckpt", "model")
    if unet:
        f.add("unet", "LoadUNet", model=model, unet=unet)
        model = link("unet", "model")
    if lora:
        f.add("lora", "ApplyLoRA", model=model, clip=link("ckpt", "clip"), lora=lora)
        model = link("lora", "model")
        f.nodes["pos"]["inputs"]["clip"] = link("lora", "clip")
    f.nodes["sampler"]["inputs"]["model"] = model
    return f


#: preset, steps -> checkpoint, LoRA file (layout), UNet file, and the card's diffusers setup.
CASES = {
    ("lcm", 4): ("tiny", "b_kohya.safetensors", None, "LCMScheduler", {}, {"guidance_scale": 1.0}),
    ("tcd", 4): ("tiny", "a.safetensors", None, "TCDScheduler", {}, {"guidance_scale": 0, "eta": 0.3}),
    ("hyper-sd", 4): ("tiny-xl", "xl_kohya.safetensors", None, "DDIMScheduler",
                      {"timestep_spacing": "trailing", "clip_sample": False, "set_alpha_to_one": False},
                      {"guidance_scale": 0}),
    ("hyper-sd", 1): ("tiny-xl", "xl_kohya.safetensors", None, "TCDScheduler", {}, {"guidance_scale": 0, "eta": 1.0}),
    ("hyper-sd-unet", 1): ("tiny-xl", None, "xl_unet.safetensors", "LCMScheduler", {},
                           {"guidance_scale": 0, "timesteps": [800]}),
    ("lightning", 4): ("tiny-xl", "xl.safetensors", None, "EulerDiscreteScheduler", {"timestep_spacing": "trailing"},
                       {"guidance_scale": 0}),
    ("lightning", 1): ("tiny-xl", None, "xl_unet.safetensors", "EulerDiscreteScheduler",
                       {"timestep_spacing": "trailing", "prediction_type": "sample"}, {"guidance_scale": 0}),
    ("pcm", 2): ("tiny", "a.safetensors", None, "DDIMScheduler",
                 {"timestep_spacing": "trailing", "clip_sample": False, "set_alpha_to_one": False},
                 {"guidance_scale": 0}),
    ("dmd2", 4): ("tiny-xl", "xl_kohya.safetensors", None, "LCMScheduler", {},
                  {"guidance_scale": 0, "timesteps": [999, 749, 499, 249]}),
    ("dmd2", 1): ("tiny-xl", None, "xl_unet.safetensors", "LCMScheduler", {}, {"guidance_scale": 0, "timesteps": [399]}),
    ("turbo", 1): ("tiny-xl", None, None, "EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"},
                   {"guidance_scale": 0.0}),
}


def test_every_preset_has_a_parity_case():
    assert {name for name, _ in CASES} == set(PRESETS)


@pytest.mark.parametrize("preset, steps", sorted(CASES), ids=[f"{p}-{s}" for p, s in sorted(CASES)])
def test_preset_matches_the_model_cards_diffusers_recipe(engine, extra_files, preset, steps):
    ckpt, lora, unet, scheduler, config, call = CASES[(preset, steps)]
    ours = image_of(engine, _flow(ckpt, lora, unet, sampler="FewStepSampler", preset=preset, steps=steps, seed=21))
    pipe = _pipe(extra_files, ckpt, scheduler, lora, unet_seed=31 if unet else None, **config)
    kwargs = dict(call)
    if "timesteps" not in kwargs:
        kwargs["num_inference_steps"] = steps
    ref = pipe(PROMPT, height=64, width=64, generator=gen(21), output_type="np", **kwargs).images
    assert max_diff(ours, ref) <= TOL
    assert ours.std() > 1e-3


def test_lightning_needs_trailing_leading_is_another_image(engine, extra_files):
    """What lcmgraph did before: the checkpoint's leading spacing, silently wrong for Lightning."""
    trailing = image_of(engine, _flow("tiny-xl", "xl.safetensors", sampler="Sampler", scheduler="euler",
                                      schedule="sgm_uniform", steps=4, cfg=1.0, seed=21))
    leading = image_of(engine, _flow("tiny-xl", "xl.safetensors", sampler="Sampler", scheduler="euler", steps=4,
                                     cfg=1.0, seed=21))
    assert max_diff(trailing, leading) > 1e-3


def test_custom_timesteps_and_sigmas_match_diffusers(engine, sd_pipe):
    import diffusers

    ours = image_of(engine, txt2img(prompt=PROMPT, sampler="Sampler", scheduler="dpmpp_2m", timesteps="999,749,499,249",
                                    cfg=2.0, seed=4))
    pipe = sd_pipe
    pipe.scheduler = diffusers.DPMSolverMultistepScheduler.from_config(pipe.base_config)
    ref = pipe(PROMPT, timesteps=[999, 749, 499, 249], guidance_scale=2.0, height=64, width=64, generator=gen(4),
               output_type="np").images
    assert max_diff(ours, ref) <= TOL
    sigmas = [14.6146, 2.0, 0.5, 0.0]
    ours = image_of(engine, txt2img(prompt=PROMPT, sampler="Sampler", scheduler="euler", sigmas="14.6146,2,0.5,0",
                                    cfg=1.0, seed=4))
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.base_config)
    ref = pipe(PROMPT, sigmas=sigmas, guidance_scale=1.0, height=64, width=64, generator=gen(4), output_type="np").images
    assert max_diff(ours, ref) <= TOL


@pytest.fixture(scope="module")
def sd_pipe(models):
    pipe = reference(models, "tiny")
    pipe.base_config = dict(pipe.scheduler.config)
    return pipe


@pytest.mark.parametrize("sampler, schedule, cls, config", [
    ("dpmpp_2m", "karras", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    ("euler", "karras", "EulerDiscreteScheduler", {"use_karras_sigmas": True, "timestep_spacing": "linspace"}),
    ("uni_pc", "normal", "UniPCMultistepScheduler",
     {"solver_type": "bh1", "final_sigmas_type": "sigma_min", "solver_order": 3, "timestep_spacing": "linspace"}),
    ("dpmpp_sde", "karras", "DPMSolverSDEScheduler",
     {"use_karras_sigmas": True, "timestep_spacing": "linspace", "noise_sampler_seed": 6}),
    ("heun", "simple", "HeunDiscreteScheduler", {"timestep_spacing": "trailing"}),
    ("dpmpp_2m_sde", "exponential", "DPMSolverMultistepScheduler",
     {"algorithm_type": "sde-dpmsolver++", "use_exponential_sigmas": True}),
])
def test_samplers_on_schedules_match_diffusers(engine, sd_pipe, sampler, schedule, cls, config):
    import diffusers

    ours = image_of(engine, txt2img(prompt=PROMPT, negative="blurry", sampler="Sampler", scheduler=sampler,
                                    schedule=schedule, steps=5, cfg=3.0, seed=6))
    sd_pipe.scheduler = getattr(diffusers, cls).from_config(sd_pipe.base_config, **config)
    ref = sd_pipe(PROMPT, negative_prompt="blurry", num_inference_steps=5, guidance_scale=3.0, height=64, width=64,
                  generator=gen(6), output_type="np").images
    assert max_diff(ours, ref) <= TOL


def test_dpmpp_sde_is_deterministic_per_seed(engine, make_engine):
    flow = lambda seed: txt2img(prompt=PROMPT, sampler="Sampler", scheduler="dpmpp_sde", steps=3, cfg=1.0, seed=seed)  # noqa: E731
    first = image_of(engine, flow(3))
    assert np.array_equal(first, image_of(make_engine(), flow(3)))
    assert max_diff(first, image_of(engine, flow(4))) > 1e-3


def test_tcd_img2img_uses_tcds_own_strength(engine, sd_pipe, models):
    """Sampler tcd at denoise 0.6: TCDScheduler.set_timesteps(4, strength=0.6), all 4 steps over the
    lower-noise part of the 50-step grid, the input noised to the first of them."""
    import diffusers

    from .test_diffusion_parity import _encoded, _img2img_flow

    ours = image_of(engine, _img2img_flow("tiny", "Sampler", scheduler="tcd", seed=9, steps=4, cfg=1.0, denoise=0.6))
    pipe = sd_pipe
    scheduler = diffusers.TCDScheduler.from_config(pipe.base_config)
    scheduler.set_timesteps(4, strength=0.6)
    assert len(scheduler.timesteps) == 4 and int(scheduler.timesteps[0]) < 600
    with torch.no_grad():
        embeds = pipe.encode_prompt("a photo of a tree", "cpu", 1, False)[0]
        generator = gen(9)
        init = _encoded(pipe, models)
        noise = torch.randn(init.shape, generator=generator)
        latents = scheduler.add_noise(init, noise, scheduler.timesteps[:1])
        for t in scheduler.timesteps:
            eps = pipe.unet(scheduler.scale_model_input(latents, t), t, encoder_hidden_states=embeds).sample
            latents = scheduler.step(eps, t, latents, eta=0.3, generator=generator).prev_sample
        ref = pipe.image_processor.postprocess(pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample,
                                               output_type="np")
    assert max_diff(ours, ref) <= TOL


def test_load_unet_ldm_and_diffusers_layouts_agree(engine, extra_files, tmp_path):
    tiny_addons.save_unet(extra_files / "unet" / "sd_unet.safetensors", "sd15", seed=32)
    f = _flow("tiny", unet="sd_unet_ldm.safetensors", sampler="Sampler", scheduler="euler", steps=2, cfg=1.0, seed=2)
    ldm = image_of(engine, f)
    f.nodes["unet"]["inputs"]["unet"] = "sd_unet.safetensors"
    # the same weights mapped at two files' offsets: MKL may sum in another order (tests/helpers.py)
    assert_close_portable(image_of(engine, f), ldm, "UNet file, diffusers vs LDM layout", atol=IMAGE_ATOL)
    base = image_of(engine, txt2img(prompt=PROMPT, sampler="Sampler", scheduler="euler", steps=2, cfg=1.0, seed=2))
    assert max_diff(base, ldm) > 1e-3


@pytest.mark.parametrize("make, message", [
    (lambda m, p: tiny_addons.save_unet(p, "sdxl", seed=3), "the UNet is SDXL-shaped but the checkpoint it replaces is SD1.5"),
    (lambda m, p: p.write_bytes((m / "loras" / "a.safetensors").read_bytes()), "this is a LoRA, not a UNet"),
    (lambda m, p: p.write_bytes((m / "checkpoints" / "tiny" / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()),
     "this is a VAE, not a UNet"),
    (lambda m, p: p.write_bytes(tiny_addons.save_unet(p.with_name("whole.safetensors"), "sd15").read_bytes()[:5000]),
     "safetensors"),
])
def test_load_unet_refuses_what_does_not_fit_naming_the_node(engine, extra_files, make, message):
    target = extra_files / "unet" / f"bad_{abs(hash(message))}.safetensors"
    make(extra_files, target)
    f = _flow("tiny", unet=target.name, sampler="Sampler", scheduler="euler", steps=2)
    with pytest.raises(NodeFailed) as info:
        image_of(engine, f)
    assert info.value.node_id == "unet" and message in str(info.value), str(info.value)


def test_fewstep_refuses_step_counts_the_family_has_no_checkpoint_for(engine):
    f = txt2img(sampler="FewStepSampler", preset="dmd2", steps=3)
    f.add("capture", "Capture", value=link("decode", "image"))
    (problem,) = engine.validate(f.doc("capture"))
    assert (problem.node, problem.input) == ("sampler", "steps")
    assert "preset dmd2 is made for 1, 4 steps, not 3" in problem.message


@pytest.mark.parametrize("sampler, cls, prediction", [
    ("euler", "EulerDiscreteScheduler", "v_prediction"), ("ddim", "DDIMScheduler", "v_prediction"),
    ("dpmpp_2m", "DPMSolverMultistepScheduler", "sample"),
])
def test_prediction_override_matches_diffusers(engine, sd_pipe, sampler, cls, prediction):
    """What a v-prediction fine-tune or an x0 model needs, on a checkpoint whose config says epsilon."""
    import diffusers

    ours = image_of(engine, txt2img(prompt=PROMPT, sampler="Sampler", scheduler=sampler, schedule="sgm_uniform",
                                    prediction=prediction, steps=3, cfg=1.0, seed=8))
    extra = {"clip_sample": False, "set_alpha_to_one": False} if sampler == "ddim" else {}
    sd_pipe.scheduler = getattr(diffusers, cls).from_config(
        sd_pipe.base_config, timestep_spacing="trailing", prediction_type=prediction, **extra)
    ref = sd_pipe(PROMPT, num_inference_steps=3, guidance_scale=1.0, height=64, width=64, generator=gen(8),
                  output_type="np").images
    assert max_diff(ours, ref) <= TOL
    eps = image_of(engine, txt2img(prompt=PROMPT, sampler="Sampler", scheduler=sampler, schedule="sgm_uniform",
                                   steps=3, cfg=1.0, seed=8))
    assert max_diff(ours, eps) > 1e-3
