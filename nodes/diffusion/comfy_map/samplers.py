"""KSampler and KSamplerAdvanced <-> LCMSampler and Sampler.

The conversions follow what ComfyUI computes rather than what its widgets
are called:

* KSampler with sampler ``lcm`` <-> LCMSampler (LCM's schedule and boundary
  conditions: what ComfyUI does with ModelSamplingDiscrete 'lcm', which
  converts to nothing and is added on export). ``denoise`` carries over as
  is: ComfyUI and LCMSampler both run every step over the low-noise part of
  the schedule.
* Other samplers -> Sampler under the same sampler and schedule names
  (models/schedules.py maps them onto diffusers; what diffusers cannot run is
  refused naming the closest alternative). ModelSamplingDiscrete eps /
  v_prediction / x0 in front of the model become the prediction type.
  ComfyUI's ``denoise`` d with S steps runs the last S steps of an
  int(S/d)-step schedule; Sampler truncates its own schedule, so it gets
  steps int(S/d) and the denoise that keeps exactly S of them (``truncation``).
* KSamplerAdvanced <-> Sampler with start/end steps (base -> refiner) and
  add_noise (disable at step 0: Sampler's add_noise off); the leftover-noise
  combinations Sampler cannot express are refused. Steps linked from value
  nodes (PrimitiveInt) are read through them and stay links.
* On export, schedule ``auto`` (the checkpoint's spacing, unknown to ComfyUI)
  is written as ddim_uniform and marked in ``_meta`` to come back as auto;
  Sampler tcd becomes ComfyUI-TCD's node feeding SamplerCustom.
"""

from __future__ import annotations

import math

from lcmgraph.comfy import ConversionError, Converted
from lcmgraph.comfy.graph import Ref

from ..models import schedules as S
from .common import literal, present
from .conditioning import empty_negative, thread

#: lcm takes LCM's own schedule (ModelSamplingDiscrete 'lcm') from these ComfyUI schedulers.
UNIFORM = ("normal", "simple", "sgm_uniform", "ddim_uniform")

#: ModelSamplingDiscrete ``sampling`` -> Sampler.prediction ("lcm": LCM's schedule, see below).
PREDICTIONS = {"eps": "epsilon", "v_prediction": "v_prediction", "x0": "sample"}
SAMPLINGS = {v: k for k, v in PREDICTIONS.items()}

#: Sampler.scheduler -> the ComfyUI scheduler ``schedule`` auto exports as (auto: the checkpoint's
#: timestep_spacing, which ComfyUI cannot read: ddim_uniform is the leading spacing of single-file
#: checkpoints, SDXL base and the built-ins). The export marks it so it re-imports as auto.
AUTO_EXPORT = {"lcm": "sgm_uniform", "dpmpp_2m_karras": "karras", "dpmpp_2s_ancestral": "simple"}
AUTO_MARK = "lcmgraph_schedule"


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
def sampler_name(ctx, comfy: str) -> str:
    """ComfyUI's sampler_name -> Sampler.scheduler (the same name where diffusers has it)."""
    if comfy in S.GPU_ALIASES:
        ctx.note(f"sampler {comfy!r} runs as {S.GPU_ALIASES[comfy]!r} (the _gpu variants only draw their "
                 "Brownian noise on the GPU)")
        return S.GPU_ALIASES[comfy]
    if comfy in S.SAMPLERS and comfy != "dpmpp_2m_karras":
        return comfy
    if comfy in S.UNSUPPORTED:
        raise ConversionError(f"sampler {comfy!r} has no diffusers equivalent in lcmgraph; the closest is "
                              f"{S.UNSUPPORTED[comfy]!r}")
    known = ", ".join(n for n in S.SAMPLERS if n != "dpmpp_2m_karras")
    raise ConversionError(f"sampler {comfy!r} is not one lcmgraph knows (it has {known})")


def schedule_name(ctx, sampler: str, comfy: str, steps=None) -> str:
    """ComfyUI's scheduler -> Sampler.schedule for ``sampler`` (lcm: LCM's own, "auto")."""
    if sampler == "lcm":
        if comfy not in UNIFORM:
            raise ConversionError(f"scheduler {comfy!r} with sampler 'lcm' has no lcmgraph equivalent (lcm works "
                                  f"with {', '.join(UNIFORM)}: LCM's own schedule)")
        return "auto"
    if comfy in S.UNSUPPORTED_SCHEDULES:
        raise ConversionError(f"scheduler {comfy!r} has no diffusers equivalent in lcmgraph; the closest is "
                              f"{S.UNSUPPORTED_SCHEDULES[comfy]!r}")
    if comfy not in S.SCHEDULES or comfy == "auto":
        raise ConversionError(f"scheduler {comfy!r} is not one lcmgraph knows (it has "
                              f"{', '.join(s for s in S.SCHEDULES if s != 'auto')})")
    for _, message in S.problems(sampler, comfy):
        if message.startswith("schedule "):
            raise ConversionError(message)
    if comfy == "ddim_uniform" and isinstance(steps, int) and steps > 0 and -(-999 // max(1000 // steps, 1)) != steps:
        ctx.note(f"ComfyUI's ddim_uniform runs {-(-999 // max(1000 // steps, 1))} steps when asked for {steps}; "
                 f"lcmgraph runs {steps} (leading spacing)")
    return comfy


def _scheduler(ctx, node) -> tuple[str, str]:
    """(Sampler.scheduler, Sampler.schedule) of a KSampler-like node; an exported ``auto`` comes back."""
    ours = sampler_name(ctx, ctx.literal(node, "sampler_name"))
    comfy = ctx.literal(node, "scheduler")
    steps = node.inputs.get("steps")
    schedule = schedule_name(ctx, ours, comfy, steps if isinstance(steps, int) else None)
    if node.meta.get(AUTO_MARK) == "auto" and comfy_names(ours, "auto") == (ours, comfy):
        schedule = "auto"
    if node.meta.get("lcmgraph_sampler") == "dpmpp_2m_karras" and (ours, comfy) == ("dpmpp_2m", "karras"):
        ours, schedule = "dpmpp_2m_karras", "auto"
    return ours, schedule


def model_sampling_of(ctx, model) -> object | None:
    """The ModelSamplingDiscrete behind a MODEL link (through LoRA loaders), if any."""
    node, hops = ctx.node(model), 0
    while node is not None and hops < 1000:
        if node.class_type == "ModelSamplingDiscrete":
            return node
        if node.class_type not in ("LoraLoader", "LoraLoaderModelOnly", "TCDModelSamplingDiscrete"):
            return None
        node, hops = ctx.node(node.inputs.get("model")), hops + 1
    return None


def prediction_for(ctx, ours: str, model, name: str) -> str:
    """Sampler.prediction from the model's ModelSamplingDiscrete; refuses what lcmgraph cannot run."""
    patch = model_sampling_of(ctx, model)
    sampling = patch.inputs.get("sampling") if patch is not None else None
    if ours == "lcm" and sampling != "lcm":
        ctx.note("sampler 'lcm' on a model without ModelSamplingDiscrete 'lcm': ComfyUI then uses the model's "
                 "plain noise schedule, lcmgraph always LCM's own (as ModelSamplingDiscrete 'lcm' does)")
    if ours != "lcm" and sampling == "lcm":
        raise ConversionError(f"sampler {name!r} on a model patched by ModelSamplingDiscrete 'lcm' "
                              f"(node {patch.id}) has no lcmgraph equivalent; use sampler 'lcm'")
    return PREDICTIONS.get(sampling, "auto")


def _sampler_common(ctx, node, seed_input: str) -> tuple[str, dict]:
    ours, schedule = _scheduler(ctx, node)
    get = node.inputs.get
    prediction = prediction_for(ctx, ours, get("model"), ctx.literal(node, "sampler_name"))
    inputs = present(model=get("model"), positive=get("positive"), negative=get("negative"),
                     latent=get("latent_image"), seed=get(seed_input))
    if ours != "lcm" or prediction != "auto":
        inputs.update(schedule=schedule, prediction=prediction)
    return ours, inputs


def ksampler(ctx, node) -> Converted:
    ours, inputs = _sampler_common(ctx, node, "seed")
    get = node.inputs.get
    if ours == "lcm" and "prediction" not in inputs:
        inputs.update(present(steps=get("steps"), guidance=get("cfg"), denoise=get("denoise", 1.0)))
        return Converted("LCMSampler", inputs, {0: "latent"})
    steps, denoise = get("steps"), get("denoise", 1.0)
    if isinstance(denoise, Ref) or denoise < 1:
        steps, denoise = truncation(ctx.literal(node, "steps"), ctx.literal(node, "denoise"))
    inputs.update(present(scheduler=ours, steps=steps, cfg=get("cfg"), denoise=denoise))
    return Converted("Sampler", inputs, {0: "latent"})


def ksampler_advanced(ctx, node) -> Converted:
    ours, inputs = _sampler_common(ctx, node, "noise_seed")
    # Steps may come from value nodes (PrimitiveInt): read for the decisions, linked where passed on as they are.
    const = lambda name, default: ctx.constant(node, name, default)  # noqa: E731
    steps, start, end = const("steps", None), const("start_at_step", 0), const("end_at_step", END_ALL)
    add_noise, leftover = const("add_noise", "enable"), const("return_with_leftover_noise", "disable")
    for name, value in (("add_noise", add_noise), ("return_with_leftover_noise", leftover)):
        if value not in ("enable", "disable"):
            raise ConversionError(f"{name} {value!r} is neither 'enable' nor 'disable'")
    for name, value in (("steps", steps), ("start_at_step", start), ("end_at_step", end)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConversionError(f"{name} {value!r} is not a whole number")
    if leftover == "disable" and end < steps:
        raise ConversionError(f"return_with_leftover_noise 'disable' with end_at_step {end} below steps {steps}: "
                              "ComfyUI then denoises fully in its last step, lcmgraph's Sampler returns the "
                              "leftover noise; set return_with_leftover_noise to 'enable'")
    denoise, noise = 1.0, None
    start_out, end_out = start, end
    if add_noise == "disable" and start == 0:
        noise = False  # ComfyUI's zero noise: the latent itself at the first sigma
    if add_noise == "enable" and start > 0:
        # Noise added at a later step: the truncated schedule of Sampler's denoise.
        if start >= steps:
            raise ConversionError(f"start_at_step {start} leaves none of the {steps} steps")
        denoise, end_out = keep_fraction(steps - start, steps), (end - start if end < steps else END_ALL)
        start_out = 0
    def keep(name, value, out):
        """The input as ComfyUI has it (a link stays a link) where the conversion passes it on unchanged."""
        given = node.inputs.get(name, out)
        if isinstance(given, Ref) and out != value:
            raise ConversionError(f"input {name!r} comes from node {given.node} and lcmgraph's conversion changes "
                                  f"it ({value} -> {out}); give it as a value")
        return given if out == value else out

    inputs.update(present(scheduler=ours, steps=node.inputs.get("steps"), cfg=node.inputs.get("cfg"),
                          denoise=denoise, start_step=keep("start_at_step", start, start_out),
                          end_step=keep("end_at_step", end, end_out), add_noise=noise))
    return Converted("Sampler", inputs, {0: "latent"})


# -- export --------------------------------------------------------------------
def comfy_names(scheduler: str, schedule: str) -> tuple[str, str]:
    """Sampler (scheduler, schedule) -> ComfyUI (sampler_name, scheduler)."""
    name = "dpmpp_2m" if scheduler == "dpmpp_2m_karras" else scheduler
    if schedule == "auto":
        return name, AUTO_EXPORT.get(scheduler, "ddim_uniform")
    return name, schedule


def _sampler_inputs(ctx, spec, scheduler: str, latent: list | None = None) -> dict:
    negative = ctx.value(spec, "negative")
    positive = ctx.value(spec, "positive")
    neg = ctx.ref(negative) if negative is not None else empty_negative(ctx, spec, positive)
    pos, neg = thread(ctx, positive, neg)
    model = ctx.ref(ctx.value(spec, "model"))
    prediction = ctx.value(spec, "prediction") if spec.type == "Sampler" else "auto"
    if scheduler == "lcm":  # LCM's schedule is a model patch in ComfyUI
        if prediction not in (None, "auto"):
            raise ConversionError(f"prediction {prediction!r} with sampler lcm: ComfyUI's ModelSamplingDiscrete "
                                  "'lcm' fixes the prediction type")
        patch = ctx.emit(ctx.unique_id(f"{spec.id}.model_sampling"), "ModelSamplingDiscrete",
                         {"model": model, "sampling": "lcm", "zsnr": False}, added=True)
        model = [patch, 0]
    elif prediction not in (None, "auto"):
        patch = ctx.emit(ctx.unique_id(f"{spec.id}.model_sampling"), "ModelSamplingDiscrete",
                         {"model": model, "sampling": SAMPLINGS[prediction], "zsnr": False}, added=True)
        model = [patch, 0]
    schedule = literal(ctx, spec, "schedule") if spec.type == "Sampler" else "auto"
    if schedule == "auto" and _video_model(ctx, ctx.value(spec, "model")):
        schedule = "karras"  # what an SVD model's auto runs (models/svd.py)
    sampler_name, comfy_scheduler = comfy_names(scheduler, schedule)
    latent = latent or ctx.ref(ctx.value(spec, "latent"))
    return {"model": model, "positive": pos, "negative": neg, "latent_image": latent,
            "sampler_name": sampler_name, "scheduler": comfy_scheduler}


def _video_model(ctx, model) -> bool:
    """Whether a MODEL link comes from ImageOnlyCheckpointLoader (through model patches)."""
    for _ in range(32):
        source = ctx.source(model)
        if source is None:
            return False
        if source.type == "ImageOnlyCheckpointLoader":
            return True
        model = ctx.value(source, "model") if "model" in source.inputs else None
    return False


def _mark(ctx, spec, scheduler: str) -> None:
    """Note on the ComfyUI node what its names do not say (auto, dpmpp_2m_karras), for the way back."""
    if spec.type == "Sampler" and scheduler != "lcm" and literal(ctx, spec, "schedule") == "auto":
        ctx.prompt[spec.id]["_meta"][AUTO_MARK] = "auto"
        if scheduler == "dpmpp_2m_karras":
            ctx.prompt[spec.id]["_meta"]["lcmgraph_sampler"] = scheduler


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


def preset_as_sampler(ctx, spec):
    """FewStepSampler -> the Sampler its preset sets up (what the export writes; it comes back as Sampler)."""
    from ..fewstep import settings_for
    from ..models.presets import PRESETS

    name, steps = literal(ctx, spec, "preset"), literal(ctx, spec, "steps")
    inputs = {k: v for k, v in spec.inputs.items() if k not in ("preset", "steps")}
    settings = settings_for(name, steps or PRESETS[name].default_steps, ctx.value(spec, "denoise"))
    inputs.update({k: v for k, v in settings.items() if k != "denoise"})
    return spec._replace(type="Sampler", inputs=inputs, linked=None)


def export_sampler(ctx, spec) -> None:
    if spec.type == "FewStepSampler":
        spec = preset_as_sampler(ctx, spec)
    scheduler = literal(ctx, spec, "scheduler")
    if scheduler not in S.SAMPLERS:
        raise ConversionError(f"scheduler {scheduler!r} has no ComfyUI equivalent")
    for name in ("timesteps", "sigmas"):
        if str(ctx.value(spec, name) or "").strip():
            raise ConversionError(f"custom {name} have no ComfyUI KSampler equivalent")
    if scheduler == "tcd":
        export_tcd(ctx, spec)
        return
    eta = ctx.value(spec, "eta")
    if scheduler == "ddim" and isinstance(eta, int | float) and eta > 0:
        raise ConversionError(f"eta {eta!r}: ComfyUI's ddim sampler is deterministic (eta 0)")
    ois = ctx.value(spec, "original_inference_steps")
    if scheduler == "lcm" and ois != LCM_ORIGINAL_STEPS:
        raise ConversionError(f"original_inference_steps {ois!r}: ComfyUI's LCM schedule always uses {LCM_ORIGINAL_STEPS}")
    v = lambda name: ctx.ref(ctx.value(spec, name))  # noqa: E731
    denoise, start, end = (ctx.value(spec, n) for n in ("denoise", "start_step", "end_step"))
    add_noise = ctx.value(spec, "add_noise") if spec.type == "Sampler" else True
    if not isinstance(add_noise, bool):
        raise ConversionError("input 'add_noise' must be a value, not a link, for the ComfyUI export")
    if scheduler != "lcm" and denoise == 1 and start == 0 and end == END_ALL and add_noise:
        inputs = _sampler_inputs(ctx, spec, scheduler)  # the plain case: steps may stay a link
        inputs.update(seed=v("seed"), steps=v("steps"), cfg=v("cfg"), denoise=1.0)
        ctx.emit(spec.id, "KSampler", inputs, ctx.title(spec.id))
        _mark(ctx, spec, scheduler)
        ctx.expose(spec.id, "latent", spec.id, 0)
        return
    steps, denoise, start, end = (literal(ctx, spec, n) for n in ("steps", "denoise", "start_step", "end_step"))
    keep = min(int(steps * denoise), steps)
    if keep == 0:
        raise ConversionError(f"denoise {denoise} leaves none of the {steps} steps")
    inputs = _sampler_inputs(ctx, spec, scheduler)
    if scheduler != "lcm" and start == 0 and end >= keep and add_noise:
        # KSampler's denoise runs all its steps of a longer schedule; ours keeps `keep` of `steps`.
        comfy_d = 1.0 if keep == steps else comfy_denoise(keep, steps)
        inputs.update(seed=v("seed"), steps=keep, cfg=v("cfg"), denoise=comfy_d)
        ctx.emit(spec.id, "KSampler", inputs, ctx.title(spec.id))
    else:
        # LCM's schedule comes from ModelSamplingDiscrete, whose KSampler denoise differs: always Advanced.
        begin = steps - keep  # truncated steps come first in ComfyUI's full schedule
        early = end < keep
        inputs.update(add_noise="enable" if start == 0 and add_noise else "disable", noise_seed=v("seed"), steps=steps,
                      cfg=v("cfg"), start_at_step=begin + start, end_at_step=begin + end if early else END_ALL,
                      return_with_leftover_noise="enable" if early else "disable")
        ctx.emit(spec.id, "KSamplerAdvanced", inputs, ctx.title(spec.id))
    _mark(ctx, spec, scheduler)
    ctx.expose(spec.id, "latent", spec.id, 0)


def export_tcd(ctx, spec) -> None:
    """Sampler tcd -> the ComfyUI-TCD custom node (TCDModelSamplingDiscrete) feeding SamplerCustom."""
    steps, denoise, start, end, eta, ois = (literal(ctx, spec, n) for n in (
        "steps", "denoise", "start_step", "end_step", "eta", "original_inference_steps"))
    if start != 0 or end != END_ALL:
        raise ConversionError("start_step / end_step with tcd have no ComfyUI-TCD equivalent")
    if denoise != 1:
        raise ConversionError(f"denoise {denoise} with tcd: ComfyUI-TCD cuts a longer schedule where TCD spreads "
                              "its steps (TCDScheduler strength); they pick other timesteps")
    if ois != LCM_ORIGINAL_STEPS:
        raise ConversionError(f"original_inference_steps {ois!r}: ComfyUI-TCD always uses {LCM_ORIGINAL_STEPS}")
    if ctx.value(spec, "prediction") not in (None, "auto"):
        raise ConversionError("a prediction override with tcd has no ComfyUI-TCD equivalent")
    v = lambda name: ctx.ref(ctx.value(spec, name))  # noqa: E731
    negative, positive = ctx.value(spec, "negative"), ctx.value(spec, "positive")
    neg = ctx.ref(negative) if negative is not None else empty_negative(ctx, spec, positive)
    pos, neg = thread(ctx, positive, neg)
    tcd = ctx.emit(ctx.unique_id(f"{spec.id}.tcd"), "TCDModelSamplingDiscrete", {
        "model": v("model"), "steps": steps, "scheduler": "simple", "denoise": 1.0,
        "eta": S.resolve_eta("tcd", eta)}, added=True)
    ctx.emit(spec.id, "SamplerCustom", {
        "model": [tcd, 0], "add_noise": True, "noise_seed": v("seed"), "cfg": v("cfg"), "positive": pos,
        "negative": neg, "sampler": [tcd, 1], "sigmas": [tcd, 2], "latent_image": v("latent")}, ctx.title(spec.id))
    ctx.expose(spec.id, "latent", spec.id, 0)
