"""ComfyUI's declarations of the classes whose inputs no rename table describes.

``/object_info`` presents each mapped ComfyUI class with its inputs as
ComfyUI declares them (object_info.py). Where a mapping renames a ComfyUI
input to an lcmgraph input, that input's declaration (type, default, range,
choices, file folder) is lcmgraph's own and nothing is written here. The
classes below convert through functions (KSampler's sampler/scheduler pair,
the custom-sampling family, tiled VAE...), so their inputs are declared here:
a ComfyUI type, ComfyUI's options, or ``like``: the lcmgraph input whose
range and choices apply once converted (so a client offered these values
builds graphs lcmgraph accepts). A class named here whose ``like`` node is
not registered is left out, as is any mapped class that neither a rename
table nor this table describes (the refused model kinds, custom nodes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEED_MAX = 2**64 - 1  # ComfyUI's; ``like`` a sampler's seed gives lcmgraph's narrower range


@dataclass(frozen=True)
class Declared:
    """One ComfyUI input. ``type``: a socket or widget type (``COMBO`` with
    ``choices``); ``like``: "Node.input" whose declaration supplies type,
    range, default and choices (``drop`` leaves choices out); ``options``
    are ComfyUI's own, applied last."""

    type: str = ""
    like: str = ""
    drop: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    optional: bool = False


@dataclass(frozen=True)
class DeclaredClass:
    inputs: dict[str, Declared]
    #: Output types; with ``output_names`` where ComfyUI names them (RETURN_NAMES).
    outputs: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    category: str = ""
    description: str = ""


def link(kind: str, optional: bool = False) -> Declared:
    return Declared(kind, optional=optional)


def like(target: str, drop: tuple[str, ...] = (), **options: Any) -> Declared:
    return Declared(like=target, drop=drop, options=options)


def number(kind: str, default: float, low: float, high: float, step: float | None = None, **options: Any) -> Declared:
    spec = {"default": default, "min": low, "max": high, **({"step": step} if step is not None else {}), **options}
    return Declared(kind, options=spec)


def combo(*choices: str, default: str | None = None) -> Declared:
    return Declared("COMBO", choices=choices, options={"default": default or choices[0]})


SEED = like("Sampler.seed", control_after_generate=True)
STEPS = like("Sampler.steps")
CFG = like("Sampler.cfg")
SAMPLER_NAME = like("Sampler.scheduler", drop=("dpmpp_2m_karras", "tcd"))  # lcmgraph names ComfyUI lacks
SCHEDULER = like("Sampler.schedule", drop=("auto",),  # auto: lcmgraph's checkpoint spacing, not ComfyUI's
                 tooltip="the noise schedule, by ComfyUI's scheduler names (sampler lcm: LCM's own schedule)")
DENOISE = like("Sampler.denoise")
TILES = {"tile_size": number("INT", 512, 64, 4096, 32), "overlap": number("INT", 64, 0, 4096, 32),
         "temporal_size": number("INT", 64, 8, 4096, 4), "temporal_overlap": number("INT", 8, 4, 4096, 4)}
CUSTOM = "sampling/custom_sampling"

DECLARED: dict[str, DeclaredClass] = {
    "KSampler": DeclaredClass({
        "model": link("MODEL"), "seed": SEED, "steps": STEPS, "cfg": CFG, "sampler_name": SAMPLER_NAME,
        "scheduler": SCHEDULER, "positive": link("CONDITIONING"), "negative": link("CONDITIONING"),
        "latent_image": link("LATENT"), "denoise": DENOISE}, ("LATENT",), category="sampling",
        description="Denoise the latent image with the model and the positive and negative conditioning."),
    "KSamplerAdvanced": DeclaredClass({
        "model": link("MODEL"), "add_noise": combo("enable", "disable"), "noise_seed": SEED, "steps": STEPS,
        "cfg": CFG, "sampler_name": SAMPLER_NAME, "scheduler": SCHEDULER, "positive": link("CONDITIONING"),
        "negative": link("CONDITIONING"), "latent_image": link("LATENT"),
        "start_at_step": like("Sampler.start_step"), "end_at_step": like("Sampler.end_step", min=0),
        "return_with_leftover_noise": combo("disable", "enable")}, ("LATENT",), category="sampling"),
    "ModelSamplingDiscrete": DeclaredClass({
        "model": link("MODEL"), "sampling": combo("eps", "v_prediction", "lcm", "x0"),
        "zsnr": Declared("BOOLEAN", options={"default": False})}, category="advanced/model",
        description="lcm: LCM's schedule for the sampler; eps, v_prediction, x0: the model's prediction type."),
    "CLIPTextEncodeSDXL": DeclaredClass({
        "clip": link("CLIP"), "width": number("INT", 1024, 0, 16384), "height": number("INT", 1024, 0, 16384),
        "crop_w": number("INT", 0, 0, 16384), "crop_h": number("INT", 0, 0, 16384),
        "target_width": number("INT", 1024, 0, 16384), "target_height": number("INT", 1024, 0, 16384),
        "text_g": Declared("STRING", options={"multiline": True, "dynamicPrompts": True}),
        "text_l": Declared("STRING", options={"multiline": True, "dynamicPrompts": True})},
        ("CONDITIONING",), category="advanced/conditioning"),
    "VAEDecodeTiled": DeclaredClass({"samples": link("LATENT"), "vae": link("VAE"), **TILES}, ("IMAGE",),
                                    category="_for_testing"),
    "VAEEncodeTiled": DeclaredClass({"pixels": link("IMAGE"), "vae": link("VAE"), **TILES}, ("LATENT",),
                                    category="_for_testing"),
    "ControlNetApply": DeclaredClass({
        "conditioning": link("CONDITIONING"), "control_net": link("CONTROL_NET"), "image": link("IMAGE"),
        "strength": like("ApplyControlNet.strength")}, ("CONDITIONING",), category="conditioning/controlnet"),
    "ControlNetApplyAdvanced": DeclaredClass({
        "positive": link("CONDITIONING"), "negative": link("CONDITIONING"), "control_net": link("CONTROL_NET"),
        "image": link("IMAGE"), "strength": like("ApplyControlNet.strength"),
        "start_percent": like("ApplyControlNet.start"), "end_percent": like("ApplyControlNet.end"),
        "vae": link("VAE", optional=True)}, ("CONDITIONING", "CONDITIONING"), ("positive", "negative"),
        category="conditioning/controlnet"),
    # The custom-sampling family: SamplerCustom(Advanced) read the others, which become no node.
    "SamplerCustom": DeclaredClass({
        "model": link("MODEL"), "add_noise": Declared("BOOLEAN", options={"default": True}), "noise_seed": SEED,
        "cfg": CFG, "positive": link("CONDITIONING"), "negative": link("CONDITIONING"), "sampler": link("SAMPLER"),
        "sigmas": link("SIGMAS"), "latent_image": link("LATENT")}, ("LATENT", "LATENT"),
        ("output", "denoised_output"), category=CUSTOM),
    "SamplerCustomAdvanced": DeclaredClass({
        "noise": link("NOISE"), "guider": link("GUIDER"), "sampler": link("SAMPLER"), "sigmas": link("SIGMAS"),
        "latent_image": link("LATENT")}, ("LATENT", "LATENT"), ("output", "denoised_output"), category=CUSTOM),
    "KSamplerSelect": DeclaredClass({"sampler_name": SAMPLER_NAME}, ("SAMPLER",), category=f"{CUSTOM}/samplers"),
    "BasicScheduler": DeclaredClass({"model": link("MODEL"), "scheduler": SCHEDULER, "steps": STEPS,
                                     "denoise": DENOISE}, ("SIGMAS",), category=f"{CUSTOM}/schedulers"),
    "KarrasScheduler": DeclaredClass({
        "steps": STEPS, "sigma_max": number("FLOAT", 14.614642, 0.0, 5000.0, 0.01, round=False),
        "sigma_min": number("FLOAT", 0.0291675, 0.0, 5000.0, 0.01, round=False),
        "rho": number("FLOAT", 7.0, 0.0, 100.0, 0.01, round=False)}, ("SIGMAS",), category=f"{CUSTOM}/schedulers"),
    "SDTurboScheduler": DeclaredClass({"model": link("MODEL"), "steps": number("INT", 1, 1, 10),
                                       "denoise": DENOISE}, ("SIGMAS",), category=f"{CUSTOM}/schedulers"),
    "SplitSigmas": DeclaredClass({"sigmas": link("SIGMAS"), "step": number("INT", 0, 0, 10000)},
                                 ("SIGMAS", "SIGMAS"), ("high_sigmas", "low_sigmas"), category=f"{CUSTOM}/sigmas"),
    "RandomNoise": DeclaredClass({"noise_seed": SEED}, ("NOISE",), category=f"{CUSTOM}/noise"),
    "DisableNoise": DeclaredClass({}, ("NOISE",), category=f"{CUSTOM}/noise"),
    "CFGGuider": DeclaredClass({"model": link("MODEL"), "positive": link("CONDITIONING"),
                                "negative": link("CONDITIONING"), "cfg": CFG}, ("GUIDER",),
                               category=f"{CUSTOM}/guiders"),
    "BasicGuider": DeclaredClass({"model": link("MODEL"), "conditioning": link("CONDITIONING")}, ("GUIDER",),
                                 category=f"{CUSTOM}/guiders"),
}
