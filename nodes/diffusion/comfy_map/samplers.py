"""KSampler and KSamplerAdvanced <-> LCMSampler and Sampler.

The conversions follow what ComfyUI computes rather than what its widgets
are called:

* KSampler with sampler ``lcm`` <-> LCMSampler (LCM's schedule and boundary
  conditions: what ComfyUI does with ModelSamplingDiscrete 'lcm', which
  converts to nothing and is added on export). ``denoise`` carries over as
  is: ComfyUI and LCMSampler both run every step over the low-noise part of
  the schedule.
* Other samplers -> Sampler with the scheduler of the same algorithm.
  ComfyUI's ``denoise`` d with S steps runs the last S steps of an
  int(S/d)-step schedule; Sampler truncates its own schedule, so it gets
  steps int(S/d) and the denoise that keeps exactly S of them (``truncation``).
* KSamplerAdvanced <-> Sampler with start/end steps (base -> refiner); the
  add_noise / leftover-noise combinations Sampler cannot express are refused.
"""

from __future__ import annotations

import math

from lcmgraph.comfy import ConversionError, Converted
from lcmgraph.comfy.graph import Ref

from .common import literal, present
from .conditioning import empty_negative, thread

UNIFORM = ("normal", "simple", "sgm_uniform", "ddim_uniform")


#: ComfyUI sampler_name -> {ComfyUI scheduler: Sampler.scheduler}. lcmgraph's
#: schedulers space timesteps as the checkpoint's scheduler config says, which
#: ComfyUI's evenly spaced schedulers approximate; karras exists for DPM++ 2M only.
SAMPLERS = {
    "lcm": dict.fromkeys(UNIFORM, "lcm"),
    "euler": dict.fromkeys(UNIFORM, "euler"),
    "euler_ancestral": dict.fromkeys(UNIFORM, "euler_ancestral"),
    "dpmpp_2m": {**dict.fromkeys(UNIFORM, "dpmpp_2m"), "karras": "dpmpp_2m_karras"},
    "ddim": dict.fromkeys(UNIFORM, "ddim"),
}


#: Sampler.scheduler -> (sampler_name, scheduler) on export (tcd: ComfyUI has none).
EXPORT_SAMPLERS = {
    "lcm": ("lcm", "sgm_uniform"), "euler": ("euler", "normal"), "euler_ancestral": ("euler_ancestral", "normal"),
    "dpmpp_2m": ("dpmpp_2m", "normal"), "dpmpp_2m_karras": ("dpmpp_2m", "karras"), "ddim": ("ddim", "ddim_uniform"),
}


END_ALL = 10000  # ComfyUI's and Sampler's default end step: "to the end"


LCM_ORIGINAL_STEPS = 50  # ModelSamplingDiscrete 'lcm' (original_timesteps=50)


# -- numbers -------------------------------------------------------------------
def keep_fraction(keep: int, total: int) -> float:
    """The shortest denoise x with int(total * x) == keep: the Sampler denoise
    that runs the last ``keep`` of ``total`` steps."""
    if keep >= total:
        return 1.0
    for digits in range(2, 10):
        near = round(keep / total, digits)
        # keep/total itself may land a hair low in floating point (int(100 * 0.29) == 28).
        for x in (near, round(near + 10.0**-digits, digits)):
            if int(total * x) == keep:
                return x
    raise ValueError(f"no denoise keeps {keep} of {total} steps")


def truncation(steps: int, denoise: float) -> tuple[int, float]:
    """ComfyUI KSampler (steps, denoise) -> Sampler (steps, denoise) running the same steps."""
    if denoise <= 0:
        raise ConversionError("denoise 0 runs no step (ComfyUI passes the latent through); lcmgraph's samplers always run one")
    total = int(steps / denoise) if denoise < 1 else steps  # ComfyUI's own arithmetic
    return (total, keep_fraction(steps, total)) if total > steps else (steps, 1.0)


def comfy_denoise(keep: int, total: int) -> float:
    """The ComfyUI denoise d with int(keep / d) == total (the inverse of ``truncation``)."""
    d = keep / total
    while int(keep / d) < total:
        d = math.nextafter(d, 0.0)
    while int(keep / d) > total:
        d = math.nextafter(d, 1.0)
    return d


# -- import --------------------------------------------------------------------
def _scheduler(sampler: str, scheduler: str) -> str:
    table = SAMPLERS.get(sampler)
    if table is None:
        raise ConversionError(f"sampler {sampler!r} has no lcmgraph equivalent (lcmgraph has {', '.join(SAMPLERS)})")
    if scheduler not in table:
        raise ConversionError(f"scheduler {scheduler!r} with sampler {sampler!r} has no lcmgraph equivalent "
                              f"({sampler} works with {', '.join(table)})")
    return table[scheduler]


def _lcm_patch(ctx, model) -> object | None:
    """The ModelSamplingDiscrete 'lcm' node behind a MODEL link (through LoRA loaders), if any."""
    node, hops = ctx.node(model), 0
    while node is not None and hops < 1000:
        if node.class_type == "ModelSamplingDiscrete":
            return node if node.inputs.get("sampling") == "lcm" else None
        if node.class_type not in ("LoraLoader", "LoraLoaderModelOnly"):
            return None
        node, hops = ctx.node(node.inputs.get("model")), hops + 1
    return None


def _sampler_common(ctx, node, seed_input: str) -> tuple[str, dict]:
    ours = _scheduler(ctx.literal(node, "sampler_name"), ctx.literal(node, "scheduler"))
    patch = _lcm_patch(ctx, node.inputs.get("model"))
    if ours == "lcm" and patch is None:
        ctx.note("sampler 'lcm' on a model without ModelSamplingDiscrete 'lcm': ComfyUI then uses the model's "
                 "plain noise schedule, lcmgraph always LCM's own (as ModelSamplingDiscrete 'lcm' does)")
    if ours != "lcm" and patch is not None:
        raise ConversionError(f"sampler {ctx.literal(node, 'sampler_name')!r} on a model patched by "
                              f"ModelSamplingDiscrete 'lcm' (node {patch.id}) has no lcmgraph equivalent; use sampler 'lcm'")
    get = node.inputs.get
    return ours, present(model=get("model"), positive=get("positive"), negative=get("negative"),
                         latent=get("latent_image"), seed=get(seed_input))


def ksampler(ctx, node) -> Converted:
    ours, inputs = _sampler_common(ctx, node, "seed")
    get = node.inputs.get
    if ours == "lcm":
        inputs.update(present(steps=get("steps"), guidance=get("cfg"), denoise=get("denoise", 1.0)))
        return Converted("LCMSampler", inputs, {0: "latent"})
    steps, denoise = get("steps"), get("denoise", 1.0)
    if isinstance(denoise, Ref) or denoise < 1:
        steps, denoise = truncation(ctx.literal(node, "steps"), ctx.literal(node, "denoise"))
    inputs.update(present(scheduler=ours, steps=steps, cfg=get("cfg"), denoise=denoise))
    return Converted("Sampler", inputs, {0: "latent"})


def ksampler_advanced(ctx, node) -> Converted:
    ours, inputs = _sampler_common(ctx, node, "noise_seed")
    lit = lambda name, default: ctx.literal(node, name, default)  # noqa: E731
    steps, start, end = ctx.literal(node, "steps"), lit("start_at_step", 0), lit("end_at_step", END_ALL)
    add_noise, leftover = lit("add_noise", "enable"), lit("return_with_leftover_noise", "disable")
    for name, value in (("add_noise", add_noise), ("return_with_leftover_noise", leftover)):
        if value not in ("enable", "disable"):
            raise ConversionError(f"{name} {value!r} is neither 'enable' nor 'disable'")
    if leftover == "disable" and end < steps:
        raise ConversionError(f"return_with_leftover_noise 'disable' with end_at_step {end} below steps {steps}: "
                              "ComfyUI then denoises fully in its last step, lcmgraph's Sampler returns the "
                              "leftover noise; set return_with_leftover_noise to 'enable'")
    denoise = 1.0
    if add_noise == "disable" and start == 0:
        raise ConversionError("add_noise 'disable' with start_at_step 0 has no lcmgraph equivalent "
                              "(lcmgraph's Sampler adds noise whenever it starts at step 0)")
    if add_noise == "enable" and start > 0:
        # Noise added at a later step: the truncated schedule of Sampler's denoise.
        if start >= steps:
            raise ConversionError(f"start_at_step {start} leaves none of the {steps} steps")
        denoise, end = keep_fraction(steps - start, steps), (end - start if end < steps else END_ALL)
        start = 0
    inputs.update(present(scheduler=ours, steps=steps, cfg=node.inputs.get("cfg"), denoise=denoise,
                          start_step=start, end_step=end))
    return Converted("Sampler", inputs, {0: "latent"})


# -- export --------------------------------------------------------------------
def _sampler_inputs(ctx, spec, scheduler: str, latent: list | None = None) -> dict:
    negative = ctx.value(spec, "negative")
    positive = ctx.value(spec, "positive")
    neg = ctx.ref(negative) if negative is not None else empty_negative(ctx, spec, positive)
    pos, neg = thread(ctx, positive, neg)
    model = ctx.ref(ctx.value(spec, "model"))
    if scheduler == "lcm":  # LCM's schedule is a model patch in ComfyUI
        patch = ctx.emit(ctx.unique_id(f"{spec.id}.model_sampling"), "ModelSamplingDiscrete",
                         {"model": model, "sampling": "lcm", "zsnr": False}, added=True)
        model = [patch, 0]
    sampler_name, comfy_scheduler = EXPORT_SAMPLERS[scheduler]
    latent = latent or ctx.ref(ctx.value(spec, "latent"))
    return {"model": model, "positive": pos, "negative": neg, "latent_image": latent,
            "sampler_name": sampler_name, "scheduler": comfy_scheduler}


def export_lcm_sampler(ctx, spec) -> None:
    ois = ctx.value(spec, "original_inference_steps")
    if ois != LCM_ORIGINAL_STEPS:
        raise ConversionError(f"original_inference_steps {ois!r}: ComfyUI's LCM schedule always uses {LCM_ORIGINAL_STEPS}")
    v = lambda name: ctx.ref(ctx.value(spec, name))  # noqa: E731
    if spec.type == "Img2Img":  # its two-node form: VAEEncode, then the sampler at denoise = strength
        encode = ctx.emit(ctx.unique_id(f"{spec.id}.encode"), "VAEEncode", {"pixels": v("image"), "vae": v("vae")},
                          added=True)
        inputs = _sampler_inputs(ctx, spec, "lcm", latent=[encode, 0])
        inputs.update(denoise=v("strength"))
    else:
        inputs = _sampler_inputs(ctx, spec, "lcm")
        inputs.update(denoise=v("denoise"))
    inputs.update(seed=v("seed"), steps=v("steps"), cfg=v("guidance"))
    ctx.emit(spec.id, "KSampler", inputs, ctx.title(spec.id))
    ctx.expose(spec.id, "latent", spec.id, 0)


def export_sampler(ctx, spec) -> None:
    scheduler = literal(ctx, spec, "scheduler")
    if scheduler not in EXPORT_SAMPLERS:
        raise ConversionError(f"scheduler {scheduler!r} has no ComfyUI equivalent")
    eta = ctx.value(spec, "eta")
    if scheduler == "ddim" and eta != 0:
        raise ConversionError(f"eta {eta!r}: ComfyUI's ddim sampler is deterministic (eta 0)")
    v = lambda name: ctx.ref(ctx.value(spec, name))  # noqa: E731
    denoise, start, end = (ctx.value(spec, n) for n in ("denoise", "start_step", "end_step"))
    if scheduler != "lcm" and denoise == 1 and start == 0 and end == END_ALL:
        inputs = _sampler_inputs(ctx, spec, scheduler)  # the plain case: steps may stay a link
        inputs.update(seed=v("seed"), steps=v("steps"), cfg=v("cfg"), denoise=1.0)
        ctx.emit(spec.id, "KSampler", inputs, ctx.title(spec.id))
        ctx.expose(spec.id, "latent", spec.id, 0)
        return
    steps, denoise, start, end = (literal(ctx, spec, n) for n in ("steps", "denoise", "start_step", "end_step"))
    keep = min(int(steps * denoise), steps)
    if keep == 0:
        raise ConversionError(f"denoise {denoise} leaves none of the {steps} steps")
    inputs = _sampler_inputs(ctx, spec, scheduler)
    if scheduler != "lcm" and start == 0 and end >= keep:
        # KSampler's denoise runs all its steps of a longer schedule; ours keeps `keep` of `steps`.
        comfy_d = 1.0 if keep == steps else comfy_denoise(keep, steps)
        inputs.update(seed=v("seed"), steps=keep, cfg=v("cfg"), denoise=comfy_d)
        ctx.emit(spec.id, "KSampler", inputs, ctx.title(spec.id))
    else:
        # LCM's schedule comes from ModelSamplingDiscrete, whose KSampler denoise differs: always Advanced.
        begin = steps - keep  # truncated steps come first in ComfyUI's full schedule
        early = end < keep
        inputs.update(add_noise="enable" if start == 0 else "disable", noise_seed=v("seed"), steps=steps,
                      cfg=v("cfg"), start_at_step=begin + start, end_at_step=begin + end if early else END_ALL,
                      return_with_leftover_noise="enable" if early else "disable")
        ctx.emit(spec.id, "KSamplerAdvanced", inputs, ctx.title(spec.id))
    ctx.expose(spec.id, "latent", spec.id, 0)
