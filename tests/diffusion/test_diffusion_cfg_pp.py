"""ComfyUI's CFG++ samplers (euler_cfg_pp, euler_ancestral_cfg_pp) and
KSamplerAdvanced's add_noise disable, against ComfyUI's formulas.

CFG++ (comfy/k_diffusion/sampling.py, sample_euler_ancestral_cfg_pp; alpha = 1
for eps / v models): ``x' = x0_cfg + sigma_down * (x - x0_uncond) / sigma
(+ noise * sigma_up)``, with eta 0 for euler_cfg_pp.
add_noise disable (nodes.py common_ksampler, comfy/samplers.py KSAMPLER.sample):
the noise is zeros, so ``noise_scaling(sigma, 0, latent)`` starts from the latent.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lcmgraph_nodes.diffusion.builtin import tiny
from lcmgraph_nodes.diffusion.models import cfg_pp

from .diffusion_helpers import image_of, link, reference, run_to, txt2img, value_of


def _x0(prediction: str, model_output, x, sigma):
    """k-diffusion's denoised for the model output (ComfyUI's EPS / V_PREDICTION / X0 calculate_denoised)."""
    if prediction == "epsilon":
        return x - sigma * model_output
    if prediction == "v_prediction":
        return x / (sigma**2 + 1) - model_output * sigma / (sigma**2 + 1) ** 0.5
    return model_output


def _scheduler(name: str, prediction: str, steps: int = 4):
    import diffusers

    scheduler = getattr(diffusers, name).from_config(dict(tiny.SCHEDULER_CONFIG), prediction_type=prediction,
                                                     timestep_spacing="trailing")
    scheduler.set_timesteps(steps)
    return scheduler


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_euler_cfg_pp_step_is_comfyuis_formula(prediction):
    scheduler = _scheduler("EulerDiscreteScheduler", prediction)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 3, 3, generator=gen, dtype=torch.float64) * float(scheduler.init_noise_sigma)
    sigmas = scheduler.sigmas.double()
    for i, t in enumerate(scheduler.timesteps):
        guided, uncond = (torch.randn(x.shape, generator=gen, dtype=torch.float64) for _ in range(2))
        sigma, following = sigmas[i], sigmas[i + 1]
        x0_cfg, x0_uncond = _x0(prediction, guided, x, sigma), _x0(prediction, uncond, x, sigma)
        expected = x0_cfg + following * (x - x0_uncond) / sigma
        x = cfg_pp.step(scheduler, guided, uncond, t, x).prev_sample.double()
        torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)
    assert float(sigmas[-1]) == 0.0  # so the last step returned x0_cfg itself, as ComfyUI's "denoising step"


def test_euler_ancestral_cfg_pp_step_is_comfyuis_formula():
    scheduler = _scheduler("EulerAncestralDiscreteScheduler", "epsilon")
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 3, 3, generator=gen) * float(scheduler.init_noise_sigma)
    sigmas = scheduler.sigmas
    for i, t in enumerate(scheduler.timesteps):
        guided, uncond = torch.randn(x.shape, generator=gen), torch.randn(x.shape, generator=gen)
        sigma, following = sigmas[i], sigmas[i + 1]
        # get_ancestral_step with eta 1
        up = min(following, (following**2 * (sigma**2 - following**2) / sigma**2) ** 0.5)
        down = (following**2 - up**2) ** 0.5
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(10 + i))
        expected = (x - sigma * guided) + down * uncond + noise * up  # d = (x - x0_uncond) / sigma = uncond (eps)
        step_gen = torch.Generator().manual_seed(10 + i)
        x = cfg_pp.step(scheduler, guided, uncond, t, x, generator=step_gen).prev_sample
        torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-5)


def test_cfg_pp_with_the_same_prompt_for_both_halves_is_euler(engine):
    """With uncond == cond, CFG++ has nothing to separate: its step is Euler's."""
    same = dict(prompt="a red circle", negative="a red circle", sampler="Sampler", seed=3, steps=3, cfg=4.0)
    plus = image_of(engine, txt2img(scheduler="euler_cfg_pp", **same))
    euler = image_of(engine, txt2img(scheduler="euler", **same))
    np.testing.assert_allclose(plus, euler, atol=1e-5)
    other = image_of(engine, txt2img(scheduler="euler_cfg_pp", **{**same, "negative": "blue squares"}))
    assert np.abs(other - plus).max() > 1e-3


def test_cfg_pp_runs_the_unconditional_pass_at_cfg_1(engine):
    """ComfyUI turns its cfg-1 shortcut off for CFG++: the negative prompt still steers the direction."""
    base = dict(prompt="a red circle", sampler="Sampler", scheduler="euler_cfg_pp", seed=3, steps=3, cfg=1.0)
    a = image_of(engine, txt2img(negative="blue squares", **base))
    b = image_of(engine, txt2img(negative="a green field", **base))
    assert np.abs(a - b).max() > 1e-3


def _two_stage(add_noise: bool, seed: int):
    """A first Sampler makes a latent; a second one (euler, 2 steps, cfg 1) continues from it."""
    flow = txt2img(sampler="Sampler", scheduler="euler", seed=1, steps=2, cfg=1.0)
    flow.add("second", "Sampler", model=link("ckpt", "model"), positive=link("pos", "conditioning"),
             latent=link("sampler", "latent"), seed=seed, scheduler="euler", steps=2, cfg=1.0,
             schedule="sgm_uniform", add_noise=add_noise)
    return flow


def test_add_noise_off_starts_from_the_latent_at_the_first_sigma(engine, models):
    flow = _two_stage(False, seed=5)
    start = value_of(engine, flow, "sampler", "latent").samples
    ours = value_of(engine, flow, "second", "latent").samples
    # The same with another seed: no noise is drawn into the start.
    assert torch.equal(ours, value_of(engine, _two_stage(False, seed=6), "second", "latent").samples)
    assert not torch.equal(ours, value_of(engine, _two_stage(True, seed=5), "second", "latent").samples)

    # ComfyUI's Euler from x = latent at sigma_0 (no noise), on the same UNet and prompt.
    pipe = reference(models, "tiny")
    scheduler = _scheduler("EulerDiscreteScheduler", "epsilon", steps=2)
    embeds = pipe.encode_prompt("a red circle", "cpu", 1, False)[0]
    x = start.clone()
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            sigma, following = scheduler.sigmas[i], scheduler.sigmas[i + 1]
            eps = pipe.unet(x / (sigma**2 + 1) ** 0.5, t, encoder_hidden_states=embeds).sample
            x = x + (following - sigma) * eps  # Euler: x + d * dt with d = eps
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-4)
    run_to(engine, flow, "second", "latent")  # the workflow as a whole validates and runs
