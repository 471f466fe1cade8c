"""Building the diffusers pipeline from trained parts, sampling, and scoring prompts."""

from __future__ import annotations

import time

SCHEDULERS = {
    "euler": "EulerDiscreteScheduler",
    "ddim": "DDIMScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "lcm": "LCMScheduler",
}

SCHEDULER_CONFIG = {
    "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "timestep_spacing": "leading", "steps_offset": 1, "clip_sample": False,
    "set_alpha_to_one": False,
}


def make_scheduler(name: str = "euler"):
    import diffusers

    return getattr(diffusers, SCHEDULERS[name]).from_config(SCHEDULER_CONFIG)


def make_pipeline(unet, vae, text_encoder, tokenizer, scheduler: str = "euler"):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=make_scheduler(scheduler),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def set_scheduler(pipe, name: str):
    pipe.scheduler = make_scheduler(name)
    return pipe


def generate(pipe, prompts: list[str], seeds: list[int], steps: int, guidance: float = 1.0, batch: int = 16, **call):
    """Images ``[N, 3, H, W]`` in [-1, 1]; noise for prompt ``i`` from CPU generator ``seeds[i]``."""
    import torch

    out = []
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds[i:i + batch]]
        with torch.no_grad():
            images = pipe(prompts[i:i + batch], num_inference_steps=steps, guidance_scale=guidance, generator=gens,
                          height=size, width=size, output_type="pt", **call).images
        out.append(images.cpu() * 2 - 1)
    return torch.cat(out)


def prompt_accuracy(pipe, evaluator, prompts_scenes, steps: int, guidance: float = 1.0, seed: int = 0,
                    batch: int = 16, **call) -> dict:
    """Generate one image per (prompt, scene), read it with ``evaluator``: accuracies and seconds/image."""
    from .evaluator import accuracy, predict

    prompts = [p for p, _ in prompts_scenes]
    scenes = [s for _, s in prompts_scenes]
    start = time.perf_counter()
    images = generate(pipe, prompts, [seed + i for i in range(len(prompts))], steps, guidance, batch, **call)
    seconds = (time.perf_counter() - start) / len(prompts)
    acc = accuracy(predict(evaluator, images), scenes)
    return {**acc, "seconds_per_image": seconds, "images": images}
