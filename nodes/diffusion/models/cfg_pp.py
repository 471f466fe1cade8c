"""CFG++ (ComfyUI's euler_cfg_pp and euler_ancestral_cfg_pp) on diffusers'
Euler schedulers.

ComfyUI's sample_euler_ancestral_cfg_pp (comfy/k_diffusion/sampling.py; its
euler_cfg_pp is the same with eta 0) takes the guided prediction as the step's
target and the *unconditional* one as its direction; for the eps / v models
lcmgraph loads (alpha = 1 in k-diffusion's variance-exploding form)::

    d      = (x - x0_uncond) / sigma
    x_next = x0_cfg + sigma_down * d  (+ noise * sigma_up, ancestral only)

ComfyUI reads x0_uncond through a post-CFG hook with the cfg-1 shortcut off,
so the unconditional pass runs at every cfg, cfg 1 included, and cfg is used
as given. diffusers' Euler step on the unconditional output computes
``x0_uncond + sigma_down * d (+ noise * sigma_up)``; adding
``x0_cfg - x0_uncond`` gives the CFG++ step exactly, and keeps the scheduler's
sigmas, step counter and ancestral noise its own. x0 is affine in the model
output with the slope ``x0_slope`` below (EulerDiscreteScheduler.step's
conversion), so the difference needs no second step.
"""

from __future__ import annotations

from typing import Any


def x0_slope(prediction_type: str, sigma):
    """d x0 / d model_output at ``sigma`` for diffusers' Euler schedulers."""
    if prediction_type == "epsilon":
        return -sigma
    if prediction_type == "v_prediction":
        return -sigma / (sigma**2 + 1) ** 0.5
    if prediction_type == "sample":
        return 1.0
    raise ValueError(f"prediction type {prediction_type!r} has no CFG++ step")


def step(scheduler: Any, guided, uncond, t, sample, **kwargs) -> Any:
    """One CFG++ step: ``scheduler.step`` on the unconditional output, moved to
    the guided prediction's x0. Returns the scheduler's output with
    ``prev_sample`` and ``pred_original_sample`` (the guided x0) replaced."""
    out = scheduler.step(uncond, t, sample, **kwargs, return_dict=True)
    sigma = scheduler.sigmas[scheduler.step_index - 1].to(sample.device, sample.dtype)
    shift = x0_slope(scheduler.config.prediction_type, sigma) * (guided - uncond)
    out.prev_sample = out.prev_sample + shift
    out.pred_original_sample = out.pred_original_sample + shift
    return out
