"""Which ComfyUI class is which diffusion-pack node (``COMFY_MAPPINGS``, read by lcmgraph.comfy).

Most classes map one to one (renamed inputs, outputs by index, widget order
of ComfyUI's UI format). The samplers do not, and their conversions follow
what ComfyUI computes rather than what its widgets are called:

* KSampler with sampler ``lcm`` -> LCMSampler (LCM's schedule and boundary
  conditions: what ComfyUI does with ModelSamplingDiscrete 'lcm', which
  therefore converts to nothing). Its ``denoise`` is carried as is: ComfyUI
  and LCMSampler both run every step over the low-noise part of the schedule.
* Other samplers -> Sampler with the scheduler of the same algorithm. ComfyUI's
  ``denoise`` d with S steps runs the last S steps of an int(S/d)-step
  schedule; Sampler truncates its own schedule, so it gets steps int(S/d)
  and the denoise that keeps exactly S of them (``truncation``).
* KSamplerAdvanced -> Sampler with start/end steps (base -> refiner); the
  add_noise / leftover-noise combinations Sampler cannot express are refused.

docs/comfyui.md lists every mapping and the differences that remain.
"""

from __future__ import annotations

import math

from lcmgraph.comfy import SEED_CONTROL, ComfyMapping, ConversionError, Converted, Through
from lcmgraph.comfy.export import ADDED, default_export
from lcmgraph.comfy.graph import Ref

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
def _present(**inputs) -> dict:
    return {k: v for k, v in inputs.items() if v is not None}


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
    return ours, _present(model=get("model"), positive=get("positive"), negative=get("negative"),
                          latent=get("latent_image"), seed=get(seed_input))


def _ksampler(ctx, node) -> Converted:
    ours, inputs = _sampler_common(ctx, node, "seed")
    get = node.inputs.get
    if ours == "lcm":
        inputs.update(_present(steps=get("steps"), guidance=get("cfg"), denoise=get("denoise", 1.0)))
        return Converted("LCMSampler", inputs, {0: "latent"})
    steps, denoise = get("steps"), get("denoise", 1.0)
    if isinstance(denoise, Ref) or denoise < 1:
        steps, denoise = truncation(ctx.literal(node, "steps"), ctx.literal(node, "denoise"))
    inputs.update(_present(scheduler=ours, steps=steps, cfg=get("cfg"), denoise=denoise))
    return Converted("Sampler", inputs, {0: "latent"})


def _ksampler_advanced(ctx, node) -> Converted:
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
    inputs.update(_present(scheduler=ours, steps=steps, cfg=node.inputs.get("cfg"), denoise=denoise,
                           start_step=start, end_step=end))
    return Converted("Sampler", inputs, {0: "latent"})


def _model_sampling(ctx, node) -> Converted:
    sampling, zsnr = ctx.literal(node, "sampling"), ctx.literal(node, "zsnr", False)
    if zsnr:
        raise ConversionError("zsnr (zero terminal SNR) has no lcmgraph equivalent")
    if sampling not in ("lcm", "eps"):
        raise ConversionError(f"sampling {sampling!r} has no lcmgraph equivalent (lcmgraph takes the prediction "
                              "type from the checkpoint; 'eps' and 'lcm' convert)")
    return Converted(None, outputs={0: Through("model")})


def _clip_skip(ctx, node) -> Converted:
    layer = ctx.literal(node, "stop_at_clip_layer", -1)
    if layer != -1:
        raise ConversionError(f"stop_at_clip_layer {layer} (CLIP skip) has no lcmgraph equivalent; "
                              "-1, the last layer, converts")
    return Converted(None, outputs={0: Through("clip")})


def _text_encode(ctx, node) -> Converted:
    if node.meta.get(ADDED) and node.inputs.get("text") == "":
        return Converted(None)  # the empty negative export added: lcmgraph's sampler default
    return Converted("TextEncode", _present(clip=node.inputs.get("clip"), text=node.inputs.get("text")), {0: "conditioning"})


def _text_encode_sdxl(ctx, node) -> Converted:
    text_g, text_l = ctx.literal(node, "text_g", ""), ctx.literal(node, "text_l", "")
    if text_g != text_l:
        raise ConversionError("different text_g and text_l: lcmgraph's TextEncode gives both encoders one text")
    get = node.inputs.get
    return Converted("TextEncode", _present(
        clip=get("clip"), text=text_g, original_width=get("width"), original_height=get("height"),
        crop_left=get("crop_w"), crop_top=get("crop_h"), target_width=get("target_width"),
        target_height=get("target_height")), {0: "conditioning"})


def _controlnet_apply(ctx, node) -> Converted:
    ctx.note("ComfyUI's ControlNetApply hints the positive prompt only; lcmgraph hints both halves of the CFG "
             "batch (as ControlNetApplyAdvanced does), so images differ when cfg > 1")
    get = node.inputs.get
    return Converted("ApplyControlNet", _present(conditioning=get("conditioning"), control_net=get("control_net"),
                                                 image=get("image"), strength=get("strength")), {0: "conditioning"})


def _controlnet_apply_advanced(ctx, node) -> Converted:
    get = node.inputs.get
    inputs = _present(conditioning=get("positive"), control_net=get("control_net"), image=get("image"),
                      strength=get("strength"), start=get("start_percent"), end=get("end_percent"))
    # The negative comes out unchanged: lcmgraph's sampler applies the positive's
    # hints to both CFG halves, which is what this node's hinted negative does.
    return Converted("ApplyControlNet", inputs, {0: "conditioning", 1: Through("negative")})


def _tiled(node_type: str, comfy_input: str, our_input: str, output: str):
    def convert(ctx, node) -> Converted:
        ctx.note("tile size and overlap are not carried over (lcmgraph tiles with diffusers' VAE tiling)")
        inputs = _present(vae=node.inputs.get("vae"), tiled=True, **{our_input: node.inputs.get(comfy_input)})
        return Converted(node_type, inputs, {0: output})
    return convert


# -- export --------------------------------------------------------------------
def _literal(ctx, spec, name):
    value = ctx.value(spec, name)
    if not isinstance(value, int | float | str | bool):
        raise ConversionError(f"input {name!r} must be a value, not a link, for the ComfyUI export to compute with it")
    return value


def _thread(ctx, positive, negative_ref) -> tuple[list, list]:
    """(positive, negative) refs for a ComfyUI sampler: ApplyControlNet nodes
    behind the positive become ControlNetApplyAdvanced nodes that hint the
    negative too, as lcmgraph's sampler does with their hints."""
    source = ctx.source(positive)
    if source is None or source.type != "ApplyControlNet":
        return ctx.ref(positive), negative_ref
    up_pos, up_neg = _thread(ctx, ctx.value(source, "conditioning"), negative_ref)
    memo = ctx.memo.setdefault("controlnet_threads", {})
    key = (source.id, tuple(up_pos), tuple(up_neg) if isinstance(up_neg, list) else None)
    if key not in memo:
        comfy_id = ctx.unique_id(source.id) if ctx.is_done(source.id) else source.id
        ctx.claim(source.id)
        _emit_controlnet(ctx, source, comfy_id, up_pos, up_neg)
        memo[key] = ([comfy_id, 0], [comfy_id, 1])
    return memo[key]


def _emit_controlnet(ctx, spec, comfy_id, positive, negative) -> None:
    v = lambda name: ctx.ref(ctx.value(spec, name))  # noqa: E731
    ctx.emit(comfy_id, "ControlNetApplyAdvanced", {
        "positive": positive, "negative": negative, "control_net": v("control_net"), "image": v("image"),
        "strength": v("strength"), "start_percent": v("start"), "end_percent": v("end")}, ctx.title(spec.id))
    if comfy_id == spec.id:
        ctx.expose(spec.id, "conditioning", comfy_id, 0)


def _export_controlnet_alone(ctx, spec) -> None:
    """An ApplyControlNet no sampler's positive reaches: its negative socket gets the same conditioning."""
    conditioning = ctx.ref(ctx.value(spec, "conditioning"))
    _emit_controlnet(ctx, spec, spec.id, conditioning, conditioning)


def _empty_negative(ctx, spec, positive) -> list:
    source = ctx.source(positive)
    while source is not None and source.type == "ApplyControlNet":
        source = ctx.source(ctx.value(source, "conditioning"))
    if source is None or source.type != "TextEncode":
        raise ConversionError("ComfyUI's samplers need a negative prompt and no TextEncode behind the positive "
                              "gives a CLIP to encode an empty one with; connect a negative")
    comfy_id = ctx.unique_id(f"{spec.id}.negative")
    ctx.emit(comfy_id, "CLIPTextEncode", {"text": "", "clip": ctx.ref(ctx.value(source, "clip"))},
             "empty negative (added by lcmgraph)", added=True)
    return [comfy_id, 0]


def _sampler_inputs(ctx, spec, scheduler: str, latent: list | None = None) -> dict:
    negative = ctx.value(spec, "negative")
    positive = ctx.value(spec, "positive")
    neg = ctx.ref(negative) if negative is not None else _empty_negative(ctx, spec, positive)
    pos, neg = _thread(ctx, positive, neg)
    model = ctx.ref(ctx.value(spec, "model"))
    if scheduler == "lcm":  # LCM's schedule is a model patch in ComfyUI
        patch = ctx.emit(ctx.unique_id(f"{spec.id}.model_sampling"), "ModelSamplingDiscrete",
                         {"model": model, "sampling": "lcm", "zsnr": False}, added=True)
        model = [patch, 0]
    sampler_name, comfy_scheduler = EXPORT_SAMPLERS[scheduler]
    latent = latent or ctx.ref(ctx.value(spec, "latent"))
    return {"model": model, "positive": pos, "negative": neg, "latent_image": latent,
            "sampler_name": sampler_name, "scheduler": comfy_scheduler}


def _export_lcm_sampler(ctx, spec) -> None:
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


def _export_sampler(ctx, spec) -> None:
    scheduler = _literal(ctx, spec, "scheduler")
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
    steps, denoise, start, end = (_literal(ctx, spec, n) for n in ("steps", "denoise", "start_step", "end_step"))
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


def _image_size(ctx, spec) -> tuple[int, int] | None:
    """(width, height) of the EmptyLatent every sampler using this TextEncode starts from."""
    sizes, frontier, seen = set(), [spec.id], set()
    while frontier:
        node_id = frontier.pop()
        for other in ctx.workflow.nodes.values():
            if other.id in seen or not any(getattr(v, "node", None) == node_id for v in other.inputs.values()):
                continue
            seen.add(other.id)
            if other.type == "ApplyControlNet":
                frontier.append(other.id)
            elif other.type in ("LCMSampler", "Sampler"):
                latent = ctx.source(ctx.value(other, "latent"))
                if latent is None or latent.type != "EmptyLatent":
                    return None
                sizes.add((ctx.value(latent, "width"), ctx.value(latent, "height")))
    if len(sizes) != 1:
        return None
    size = sizes.pop()
    return size if all(isinstance(s, int) for s in size) else None


def _export_text(ctx, spec) -> None:
    names = ("original_width", "original_height", "crop_left", "crop_top", "target_width", "target_height")
    sizes = {n: _literal(ctx, spec, n) for n in names}
    if not any(sizes.values()):
        default_export(ctx, spec, "CLIPTextEncode", COMFY_MAPPINGS["CLIPTextEncode"])
        return
    if 0 in (sizes["original_width"], sizes["original_height"], sizes["target_width"], sizes["target_height"]):
        # 0 means "the image size", which CLIPTextEncodeSDXL has to be told.
        size = _image_size(ctx, spec)
        if size is None:
            raise ConversionError("SDXL sizes of 0 mean the image size, which ComfyUI's CLIPTextEncodeSDXL needs "
                                  "written out and lcmgraph cannot tell here; set the original and target sizes")
        for prefix in ("original", "target"):
            if not sizes[f"{prefix}_width"] or not sizes[f"{prefix}_height"]:
                sizes[f"{prefix}_width"], sizes[f"{prefix}_height"] = size
    text, clip = ctx.ref(ctx.value(spec, "text")), ctx.ref(ctx.value(spec, "clip"))
    ctx.emit(spec.id, "CLIPTextEncodeSDXL", {
        "clip": clip, "width": sizes["original_width"], "height": sizes["original_height"],
        "crop_w": sizes["crop_left"], "crop_h": sizes["crop_top"], "target_width": sizes["target_width"],
        "target_height": sizes["target_height"], "text_g": text, "text_l": text}, ctx.title(spec.id))
    ctx.expose(spec.id, "conditioning", spec.id, 0)


def _export_lora(ctx, spec) -> None:
    if ctx.value(spec, "clip") is None:  # clip_weight means nothing without a CLIP
        default_export(ctx, spec, "LoraLoaderModelOnly", COMFY_MAPPINGS["LoraLoaderModelOnly"], drop=("clip_weight",))
    else:
        default_export(ctx, spec, "LoraLoader", COMFY_MAPPINGS["LoraLoader"])


_TILES = {"tile_size": 512, "overlap": 64, "temporal_size": 64, "temporal_overlap": 8}


def _export_vae(plain: str, tiled: str):
    def export(ctx, spec) -> None:
        if _literal(ctx, spec, "tiled"):
            default_export(ctx, spec, tiled, COMFY_MAPPINGS[plain], extra=dict(_TILES), drop=("tiled",))
        else:
            default_export(ctx, spec, plain, COMFY_MAPPINGS[plain])
    return export


# -- the table -------------------------------------------------------------------
_SAMPLER_WIDGETS = ("seed", SEED_CONTROL, "steps", "cfg", "sampler_name", "scheduler", "denoise")
_ADVANCED_WIDGETS = ("add_noise", "noise_seed", SEED_CONTROL, "steps", "cfg", "sampler_name", "scheduler",
                     "start_at_step", "end_at_step", "return_with_leftover_noise")
_TILE_WIDGETS = tuple(_TILES)

COMFY_MAPPINGS: dict[str, ComfyMapping] = {
    "CheckpointLoaderSimple": ComfyMapping(
        "LoadCheckpoint", {"ckpt_name": "checkpoint"}, ("model", "clip", "vae"), ("ckpt_name",),
        title="Load Checkpoint", export=True),
    "CLIPTextEncode": ComfyMapping(
        "TextEncode", {"clip": "clip", "text": "text"}, ("conditioning",), ("text",),
        title="CLIP Text Encode (Prompt)", convert=_text_encode, export=_export_text),
    "CLIPTextEncodeSDXL": ComfyMapping(
        "TextEncode", outputs=("conditioning",), title="CLIPTextEncodeSDXL", convert=_text_encode_sdxl,
        widgets=("width", "height", "crop_w", "crop_h", "target_width", "target_height", "text_g", "text_l")),
    "CLIPSetLastLayer": ComfyMapping(outputs=(Through("clip"),), widgets=("stop_at_clip_layer",),
                                     title="CLIP Set Last Layer", convert=_clip_skip),
    "EmptyLatentImage": ComfyMapping(
        "EmptyLatent", {"width": "width", "height": "height", "batch_size": "batch"}, ("latent",),
        ("width", "height", "batch_size"), title="Empty Latent Image", export=True),
    "KSampler": ComfyMapping("LCMSampler", outputs=("latent",), widgets=_SAMPLER_WIDGETS, title="KSampler",
                             ignore=("control_after_generate",), convert=_ksampler, export=_export_lcm_sampler,
                             export_types=("Img2Img",)),
    "KSamplerAdvanced": ComfyMapping(
        "Sampler", outputs=("latent",), widgets=_ADVANCED_WIDGETS, title="KSampler (Advanced)",
        ignore=("control_after_generate",), convert=_ksampler_advanced, export=_export_sampler),
    "ModelSamplingDiscrete": ComfyMapping(
        outputs=(Through("model"),), widgets=("sampling", "zsnr"), title="ModelSamplingDiscrete",
        convert=_model_sampling),
    "VAEDecode": ComfyMapping("VAEDecode", {"samples": "latent", "vae": "vae"}, ("image",), title="VAE Decode",
                              export=_export_vae("VAEDecode", "VAEDecodeTiled")),
    "VAEEncode": ComfyMapping("VAEEncode", {"pixels": "image", "vae": "vae"}, ("latent",), title="VAE Encode",
                              export=_export_vae("VAEEncode", "VAEEncodeTiled")),
    "VAEDecodeTiled": ComfyMapping("VAEDecode", outputs=("image",), widgets=_TILE_WIDGETS,
                                   title="VAE Decode (Tiled)", convert=_tiled("VAEDecode", "samples", "latent", "image")),
    "VAEEncodeTiled": ComfyMapping("VAEEncode", outputs=("latent",), widgets=_TILE_WIDGETS,
                                   title="VAE Encode (Tiled)", convert=_tiled("VAEEncode", "pixels", "image", "latent")),
    "LoadImage": ComfyMapping("LoadImage", {"image": "image"}, ("image", "mask"), ("image", "upload"),
                              ignore=("upload",), title="Load Image", export=True),
    "SaveImage": ComfyMapping("SaveImage", {"images": "image", "filename_prefix": "filename_prefix"}, (),
                              ("filename_prefix",), title="Save Image", export=True),
    "PreviewImage": ComfyMapping("PreviewImage", {"images": "image"}, title="Preview Image", export=True),
    "LoraLoader": ComfyMapping(
        "ApplyLoRA", {"model": "model", "clip": "clip", "lora_name": "lora", "strength_model": "weight",
                      "strength_clip": "clip_weight"}, ("model", "clip"),
        ("lora_name", "strength_model", "strength_clip"), title="Load LoRA", export=_export_lora),
    "LoraLoaderModelOnly": ComfyMapping(
        "ApplyLoRA", {"model": "model", "lora_name": "lora", "strength_model": "weight"}, ("model",),
        ("lora_name", "strength_model"), title="LoraLoaderModelOnly"),
    "ControlNetLoader": ComfyMapping("LoadControlNet", {"control_net_name": "controlnet"}, ("control_net",),
                                     ("control_net_name",), title="Load ControlNet Model", export=True),
    "ControlNetApply": ComfyMapping("ApplyControlNet", outputs=("conditioning",), widgets=("strength",),
                                    title="Apply ControlNet (OLD)", convert=_controlnet_apply),
    "ControlNetApplyAdvanced": ComfyMapping(
        "ApplyControlNet", outputs=("conditioning", Through("negative")),
        widgets=("strength", "start_percent", "end_percent"), ignore=("vae",), title="Apply ControlNet",
        convert=_controlnet_apply_advanced, export=_export_controlnet_alone),
    # ComfyUI's core primitive nodes (comfy_extras/nodes_primitive.py) are the core pack's value nodes.
    "PrimitiveInt": ComfyMapping("Int", {"value": "value"}, ("value",), ("value", SEED_CONTROL),
                                 ignore=("control_after_generate",), title="Int", export=True),
    "PrimitiveFloat": ComfyMapping("Float", {"value": "value"}, ("value",), ("value",), title="Float", export=True),
    "PrimitiveString": ComfyMapping("String", {"value": "value"}, ("value",), ("value",), title="String"),
    "PrimitiveStringMultiline": ComfyMapping("String", {"value": "value"}, ("value",), ("value",),
                                             title="String (Multiline)", export=True),
    "PrimitiveBoolean": ComfyMapping("Boolean", {"value": "value"}, ("value",), ("value",), title="Boolean",
                                     export=True),
}
