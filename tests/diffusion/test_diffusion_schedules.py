"""Schedules against ComfyUI's own formulas, and every sampler x schedule pair
either runs or is refused at validation with a sentence (none fails mid-run).

The references below are ComfyUI's schedule functions written out for the SD
noise schedule (scaled_linear betas 0.00085..0.012, 1000 steps):
comfy/samplers.py ``simple_scheduler``, ``ddim_scheduler`` and
``normal_scheduler`` (``sgm=True`` for sgm_uniform), comfy/k_diffusion/sampling.py
``get_sigmas_karras`` (rho 7, between the model's sigma_min and sigma_max).
"""

from __future__ import annotations

import inspect
import json
import logging
import warnings

import numpy as np
import pytest
import torch
from lcmgraph_nodes.diffusion.builtin import tiny
from lcmgraph_nodes.diffusion.models import schedules as S

from .diffusion_helpers import image_of, link, txt2img

CONFIG = dict(tiny.SCHEDULER_CONFIG)
STEPS = (1, 2, 4, 8)


def _sigmas() -> torch.Tensor:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas = torch.cumprod(1 - betas, 0)
    return ((1 - alphas) / alphas) ** 0.5


def comfy_timesteps(name: str, steps: int) -> list[float]:
    """The timesteps of ComfyUI's schedule ``name`` (its sigmas are the model's at these)."""
    if name == "simple":  # sigs += [s.sigmas[-(1 + int(x * ss))]] with ss = len(sigmas) / steps
        ss = 1000 / steps
        return [999 - int(x * ss) for x in range(steps)]
    if name == "ddim_uniform":  # x = 1, 1 + ss, ... < len(sigmas) with ss = len(sigmas) // steps, reversed
        ss, x, out = max(1000 // steps, 1), 1, []
        while x < 1000:
            out.append(x)
            x += ss
        return out[::-1]
    if name == "normal":  # linspace(t(sigma_max), t(sigma_min), steps)
        return torch.linspace(999, 0, steps, dtype=torch.float64).tolist()
    if name == "sgm_uniform":  # linspace(t(sigma_max), t(sigma_min), steps + 1)[:-1]
        return torch.linspace(999, 0, steps + 1, dtype=torch.float64)[:-1].tolist()
    raise KeyError(name)


def comfy_karras(steps: int) -> np.ndarray:
    sigmas = _sigmas()
    lo, hi, rho = float(sigmas[0]), float(sigmas[-1]), 7.0
    ramp = np.linspace(0, 1, steps)
    return (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho


def _validate(engine, flow) -> list:
    flow.add("capture", "Capture", value=link("decode", "image"))
    try:
        return engine.validate(flow.doc("capture"))
    finally:
        del flow.nodes["capture"]


def _scheduler(sampler: str, schedule: str, steps: int, **kwargs):
    logging.getLogger("diffusers").setLevel(logging.ERROR)
    scheduler = S.make_scheduler(sampler, CONFIG, schedule, steps=steps, **kwargs)
    scheduler.set_timesteps(steps)
    return scheduler


def _main(scheduler) -> np.ndarray:
    """The timesteps of the steps (2-pass samplers list an intermediate one between them)."""
    return scheduler.timesteps.numpy().astype(np.float64)[::S.order(scheduler)]


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("name", ["simple", "ddim_uniform", "normal"])
def test_timesteps_equal_comfyuis(name, steps):
    ours = _main(_scheduler("euler", name, steps))
    assert np.abs(ours - np.array(comfy_timesteps(name, steps))).max() < 1e-3, (ours, comfy_timesteps(name, steps))


@pytest.mark.parametrize("steps", STEPS)
def test_sgm_uniform_is_comfyuis_rounded_down(steps):
    ours = _main(_scheduler("euler", "sgm_uniform", steps))
    ref = np.array(comfy_timesteps("sgm_uniform", steps))
    assert np.array_equal(ours, np.floor(ref)) and np.abs(ours - ref).max() < 1


@pytest.mark.parametrize("steps", STEPS)
@pytest.mark.parametrize("sampler", ["euler", "heun", "lms", "dpm_2", "dpmpp_2m", "dpmpp_sde", "uni_pc_bh2", "deis"])
def test_karras_sigmas_equal_comfyuis(sampler, steps):
    scheduler = _scheduler(sampler, "karras", steps)
    sigmas = scheduler.sigmas.numpy().astype(np.float64)
    ours = sigmas[:-1][::S.order(scheduler)] if S.order(scheduler) > 1 else sigmas[:steps]
    np.testing.assert_allclose(ours[:steps], comfy_karras(steps), rtol=2e-4)
    assert sigmas[-1] == (sigmas[-2] if sampler == "deis" else 0.0)  # diffusers' DEIS stops at sigma_min


@pytest.mark.parametrize("sampler", [n for n, s in S.SAMPLERS.items() if "simple" in s.spacing])
def test_simple_gives_comfyuis_timesteps_with_every_sampler(sampler):
    for steps in STEPS:
        ours = _main(_scheduler(sampler, "simple", steps))
        assert np.abs(ours - np.array(comfy_timesteps("simple", steps))).max() <= 1.0, (sampler, steps, ours)


def test_auto_keeps_the_checkpoints_spacing():
    assert CONFIG["timestep_spacing"] == "leading"
    assert _main(_scheduler("euler", "auto", 4)).tolist() == [751, 501, 251, 1]
    assert _main(_scheduler("euler", "sgm_uniform", 4)).tolist() == [999, 749, 499, 249]


# -- every pair runs or is refused ---------------------------------------------------
PAIRS = [(sampler, schedule) for sampler in S.SAMPLERS for schedule in S.SCHEDULES]


@pytest.mark.parametrize("sampler, schedule", PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_every_sampler_schedule_pair_runs_or_is_refused(engine, sampler, schedule):
    flow = txt2img(sampler="Sampler", scheduler=sampler, schedule=schedule, seed=5, steps=2, cfg=1.0)
    problems = _validate(engine, flow)
    if S.fits(sampler, schedule):
        assert problems == []
        image = image_of(engine, flow)
        assert np.isfinite(image).all() and image.std() > 1e-4
    else:
        (problem,) = problems
        assert (problem.node, problem.input) == ("sampler", "schedule")
        assert f"schedule {schedule} with sampler {sampler}" in problem.message, problem.message
        assert "use schedule" in problem.message


def _run_fake(sampler: str, prediction: str, steps: int, **kwargs) -> torch.Tensor:
    """The loop of models/sampling.py with a random stand-in for the UNet."""
    scheduler = _scheduler(sampler, "auto", steps, prediction=prediction, seed=1, **kwargs)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=gen) * scheduler.init_noise_sigma
    accepted = set(inspect.signature(scheduler.step).parameters)
    extra = {k: v for k, v in (("generator", gen), ("eta", 0.3)) if k in accepted}
    for t in scheduler.timesteps:
        scheduler.scale_model_input(x, t)
        x = scheduler.step(torch.randn(x.shape, generator=gen) * 0.5, t, x, **extra).prev_sample
    return x


@pytest.mark.parametrize("prediction", S.PREDICTIONS)
@pytest.mark.parametrize("sampler", list(S.SAMPLERS))
def test_every_prediction_type_runs_or_is_refused(sampler, prediction):
    refused = S.problems(sampler, "auto", prediction)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for steps in (1, 3):
            if refused:
                assert refused[0][0] == "prediction" and sampler in refused[0][1]
                with pytest.raises(NotImplementedError):
                    _run_fake(sampler, prediction, steps)
            else:
                assert torch.isfinite(_run_fake(sampler, prediction, steps)).all()


def test_refusals_name_the_closest_alternative(engine):
    cases = {
        ("euler_ancestral", "karras"): "euler takes karras sigmas",
        ("dpmpp_2s_ancestral", "normal"): "use schedule auto or karras or exponential or sgm_uniform or simple or beta",
        ("lcm", "karras"): "or custom timesteps",
        ("dpmpp_2m_karras", "simple"): "sampler dpmpp_2m with schedule simple",
    }
    for (sampler, schedule), hint in cases.items():
        (problem,) = _validate(engine, txt2img(sampler="Sampler", scheduler=sampler, schedule=schedule))
        assert hint in problem.message, problem.message


@pytest.mark.parametrize("inputs, where, text", [
    ({"scheduler": "ddim", "timesteps": "999,499"}, "timesteps", "takes no custom timesteps"),
    ({"scheduler": "euler", "timesteps": "999,x"}, "timesteps", "not a comma-separated list"),
    ({"scheduler": "euler", "timesteps": "499,999"}, "timesteps", "strictly descending"),
    ({"scheduler": "euler", "timesteps": "1000"}, "timesteps", "0..999"),
    ({"scheduler": "euler", "timesteps": "999", "schedule": "karras"}, "schedule", "set schedule to auto"),
    ({"scheduler": "euler", "timesteps": "999", "sigmas": "1,0"}, "sigmas", "not both"),
    ({"scheduler": "dpmpp_2m", "sigmas": "14,1,0"}, "sigmas", "takes no custom sigmas"),
    ({"scheduler": "euler", "timesteps": "999", "denoise": 0.5}, "denoise", "leave out the high-noise ones"),
    ({"scheduler": "euler_ancestral", "prediction": "sample"}, "prediction", "cannot step on it"),
    ({"scheduler": "euler", "eta": 0.5}, "eta", "applies to ddim and tcd only"),
    ({"scheduler": "tcd", "steps": 40, "denoise": 0.5}, "steps", "do not fit"),
])
def test_settings_diffusers_cannot_run_are_refused_before_running(engine, inputs, where, text):
    problems = _validate(engine, txt2img(sampler="Sampler", **{"steps": 4, **inputs}))
    assert [(p.node, p.input) for p in problems] == [("sampler", where)], problems
    assert text in problems[0].message


def test_schedule_changes_the_image_and_auto_is_todays(engine):
    auto = image_of(engine, txt2img(sampler="Sampler", scheduler="euler", seed=2, steps=4, cfg=1.0))
    leading = image_of(engine, txt2img(sampler="Sampler", scheduler="euler", schedule="ddim_uniform", seed=2, steps=4,
                                       cfg=1.0))
    trailing = image_of(engine, txt2img(sampler="Sampler", scheduler="euler", schedule="sgm_uniform", seed=2, steps=4,
                                        cfg=1.0))
    assert np.array_equal(auto, leading)  # the tiny checkpoint's config is leading, steps_offset 1
    assert np.abs(auto - trailing).max() > 1e-3


def test_scheduler_config_is_json_clean():
    for sampler in S.SAMPLERS:
        for schedule in S.SCHEDULES:
            json.dumps(S.config_for(sampler, schedule, "auto", 4, CONFIG, seed=3))


def test_docs_list_every_sampler_with_its_comfyui_note():
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "samplers.md").read_text()
    for name, spec in S.SAMPLERS.items():
        assert f"| {name} | `{spec.cls}`" in docs and spec.comfy in docs, name
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    from lcmgraph_nodes.diffusion.models.presets import PRESETS

    for name in PRESETS:
        assert f"| `{name}`" in readme, name
