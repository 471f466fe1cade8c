"""The few-step families' recipes, as their authors publish them.

Each preset gives, for a step count, the Sampler settings the family's
model card prescribes (diffusers' scheduler and its options, steps,
guidance, eta). ``guidance_scale=0`` in a card is cfg 1.0 here: both
mean one UNet pass per step without CFG. The README's "few-step families"
table is this table; the tests run every row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    scheduler: str
    schedule: str = "auto"
    cfg: float = 1.0
    eta: float = -1.0  # the sampler's default
    timesteps: str = ""
    prediction: str = "auto"


@dataclass(frozen=True)
class Preset:
    #: What the family is, in a line.
    what: str
    #: Step counts the family's checkpoints are made for.
    steps: tuple[int, ...]
    #: The step count of the card's example.
    default_steps: int
    #: The model card the settings come from.
    source: str
    #: The settings, per step count (a step count missing here uses ``default``).
    default: Recipe
    per_steps: dict[int, Recipe] | None = None
    #: The card's diffusers call, for the docs.
    recipe: str = ""

    def at(self, steps: int) -> Recipe:
        return (self.per_steps or {}).get(steps, self.default)


_DMD2_TIMESTEPS = {4: "999,749,499,249", 1: "399"}

PRESETS: dict[str, Preset] = {
    "lcm": Preset(
        "LCM-LoRA / LCM-distilled checkpoints", tuple(range(1, 9)), 4,
        "latent-consistency/lcm-lora-sdxl, lcm-lora-sdv1-5 model cards",
        Recipe("lcm"),
        recipe="LCMScheduler, num_inference_steps=4, guidance_scale=1.0 (SD1.5 card: 0)"),
    "tcd": Preset(
        "TCD-LoRA (Trajectory Consistency Distillation)", tuple(range(1, 17)), 4,
        "h1t/TCD-SDXL-LoRA, h1t/TCD-SD15-LoRA model cards",
        Recipe("tcd", eta=0.3),
        recipe="TCDScheduler, num_inference_steps=4, guidance_scale=0, eta=0.3 (higher eta for more steps)"),
    "hyper-sd": Preset(
        "Hyper-SD N-step LoRAs (1-step: the unified LoRA)", (1, 2, 4, 8), 4,
        "ByteDance/Hyper-SD model card",
        Recipe("ddim", "sgm_uniform"),
        {1: Recipe("tcd", eta=1.0)},
        recipe="DDIMScheduler timestep_spacing='trailing', guidance_scale=0; 1 step: TCDScheduler, eta=1.0"),
    "hyper-sd-unet": Preset(
        "Hyper-SDXL 1-step UNet", (1,), 1,
        "ByteDance/Hyper-SD model card (Hyper-SDXL-1step-Unet) and its ComfyUI HyperSDXL1StepUnetScheduler",
        Recipe("lcm", timesteps="800"),
        recipe="LCMScheduler, num_inference_steps=1, guidance_scale=0, timesteps=[800]"),
    "lightning": Preset(
        "SDXL-Lightning UNets and LoRAs (1-step: the x0 UNet)", (1, 2, 4, 8), 4,
        "ByteDance/SDXL-Lightning model card",
        Recipe("euler", "sgm_uniform"),
        {1: Recipe("euler", "sgm_uniform", prediction="sample")},
        recipe="EulerDiscreteScheduler timestep_spacing='trailing', guidance_scale=0; "
               "1 step: prediction_type='sample'"),
    "pcm": Preset(
        "PCM (Phased Consistency Model) LoRAs, small-CFG kind", (2, 4, 8, 16), 4,
        "wangfuyun/PCM_Weights model card",
        Recipe("ddim", "sgm_uniform"),
        recipe="DDIMScheduler timestep_spacing='trailing', clip_sample=False, set_alpha_to_one=False; "
               "small-CFG LoRAs at CFG 1 (normal-CFG ones: 2.5-3.5 at 4 steps)"),
    "dmd2": Preset(
        "DMD2 (Improved Distribution Matching Distillation) UNets and LoRA", (1, 4), 4,
        "tianweiy/DMD2 model card",
        Recipe("lcm", timesteps=_DMD2_TIMESTEPS[4]),
        {1: Recipe("lcm", timesteps=_DMD2_TIMESTEPS[1])},
        recipe="LCMScheduler, guidance_scale=0, timesteps=[999, 749, 499, 249]; 1 step: timesteps=[399]"),
    "turbo": Preset(
        "SD-Turbo / SDXL-Turbo (ADD)", (1, 2, 3, 4), 1,
        "stabilityai/sdxl-turbo and sd-turbo model cards and their scheduler_config.json",
        Recipe("euler_ancestral", "sgm_uniform"),
        recipe="the repo's EulerAncestralDiscreteScheduler (timestep_spacing 'trailing'), "
               "num_inference_steps=1, guidance_scale=0.0"),
}


def problems(name: str, steps: int) -> list[str]:
    preset = PRESETS.get(name)
    if preset is None or steps in preset.steps:
        return []
    made = ", ".join(str(s) for s in preset.steps)
    if len(preset.steps) > 4:
        made = f"{preset.steps[0]} to {preset.steps[-1]}"
    return [f"preset {name} is made for {made} steps, not {steps}: use the checkpoint or LoRA made for the step "
            "count you want"]
