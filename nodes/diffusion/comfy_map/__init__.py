"""Which ComfyUI class is which diffusion-pack node: ``COMFY_MAPPINGS``, the
table lcmgraph.comfy reads (through the pack) to import ComfyUI workflows
and export lcmgraph ones to ComfyUI's API format.

Most classes map one to one: renamed inputs, outputs by index, and the
order of the class's widgets in ComfyUI's UI format. The others convert
through functions (samplers.py, custom.py, conditioning.py, models.py) that follow
what ComfyUI computes and refuse, naming the setting, what lcmgraph cannot
compute the same way. docs/comfyui.md lists every mapping and the
differences that remain.
"""

from __future__ import annotations

from dataclasses import replace

from lcmgraph.comfy import SEED_CONTROL, ComfyMapping, Through

from . import conditioning as cond
from . import custom, models, samplers, third_party
from .ipadapter import IPADAPTER
from .latents import LATENTS
from .merging import MERGING, UNSUPPORTED
from .video import VIDEO

_SAMPLER_WIDGETS = ("seed", SEED_CONTROL, "steps", "cfg", "sampler_name", "scheduler", "denoise")
_ADVANCED_WIDGETS = ("add_noise", "noise_seed", SEED_CONTROL, "steps", "cfg", "sampler_name", "scheduler",
                     "start_at_step", "end_at_step", "return_with_leftover_noise")
_TILE_WIDGETS = tuple(models.TILES)
_VALUE = {"value": "value"}

COMFY_MAPPINGS: dict[str, ComfyMapping] = {
    "CheckpointLoaderSimple": ComfyMapping(
        "LoadCheckpoint", {"ckpt_name": "checkpoint"}, ("model", "clip", "vae"), ("ckpt_name",),
        title="Load Checkpoint", export=True),
    "CLIPTextEncode": replace(cond.TEXT_ENCODE, convert=cond.text_encode, export=cond.export_text),
    "CLIPTextEncodeSDXL": ComfyMapping(
        "TextEncode", outputs=("conditioning",), title="CLIPTextEncodeSDXL", convert=cond.text_encode_sdxl,
        widgets=("width", "height", "crop_w", "crop_h", "target_width", "target_height", "text_g", "text_l")),
    "CLIPSetLastLayer": models.CLIP_LAYER,
    **cond.ARITHMETIC,
    **cond.REGIONS,
    "EmptyLatentImage": ComfyMapping(
        "EmptyLatent", {"width": "width", "height": "height", "batch_size": "batch"}, ("latent",),
        ("width", "height", "batch_size"), title="Empty Latent Image", export=True),
    "KSampler": ComfyMapping(
        "LCMSampler", outputs=("latent",), widgets=_SAMPLER_WIDGETS, title="KSampler",
        ignore=("control_after_generate",), convert=samplers.ksampler, export=samplers.export_lcm_sampler,
        export_types=("Img2Img",)),
    "KSamplerAdvanced": ComfyMapping(
        "Sampler", outputs=("latent",), widgets=_ADVANCED_WIDGETS, title="KSampler (Advanced)",
        ignore=("control_after_generate",), convert=samplers.ksampler_advanced, export=samplers.export_sampler,
        export_types=("FewStepSampler",)),
    **LATENTS,
    **VIDEO,
    "ModelSamplingDiscrete": ComfyMapping(
        outputs=(Through("model"),), widgets=("sampling", "zsnr"), title="ModelSamplingDiscrete",
        convert=models.model_sampling),
    "VAEDecode": replace(models.VAE["VAEDecode"], export=models.export_vae("VAEDecode", "VAEDecodeTiled")),
    "VAEEncode": replace(models.VAE["VAEEncode"], export=models.export_vae("VAEEncode", "VAEEncodeTiled")),
    "VAEEncodeForInpaint": models.VAE["VAEEncodeForInpaint"],
    "InpaintModelConditioning": cond.INPAINT,
    "VAEDecodeTiled": ComfyMapping(
        "VAEDecode", outputs=("image",), widgets=_TILE_WIDGETS, title="VAE Decode (Tiled)",
        convert=models.tiled("VAEDecode", "samples", "latent", "image")),
    "VAEEncodeTiled": ComfyMapping(
        "VAEEncode", outputs=("latent",), widgets=_TILE_WIDGETS, title="VAE Encode (Tiled)",
        convert=models.tiled("VAEEncode", "pixels", "image", "latent")),
    "LoadImage": ComfyMapping("LoadImage", {"image": "image"}, ("image", "mask"), ("image", "upload"),
                              ignore=("upload",), title="Load Image", export=True),
    "SaveImage": ComfyMapping("SaveImage", {"images": "image", "filename_prefix": "filename_prefix"}, (),
                              ("filename_prefix",), title="Save Image", export=True),
    "PreviewImage": ComfyMapping("PreviewImage", {"images": "image"}, title="Preview Image", export=True),
    "VAELoader": replace(models.VAE_LOADER, convert=models.vae_loader, export=models.export_vae_loader),
    "LoraLoader": replace(models.LORA, export=models.export_lora),
    "LoraLoaderModelOnly": models.LORA_MODEL_ONLY,
    "ControlNetLoader": ComfyMapping("LoadControlNet", {"control_net_name": "controlnet"}, ("control_net",),
                                     ("control_net_name",), title="Load ControlNet Model", export=True),
    "ControlNetApply": ComfyMapping("ApplyControlNet", outputs=("conditioning",), widgets=("strength",),
                                    title="Apply ControlNet (OLD)", convert=cond.controlnet_apply),
    "ControlNetApplyAdvanced": ComfyMapping(
        "ApplyControlNet", outputs=("conditioning", Through("negative")),
        widgets=("strength", "start_percent", "end_percent"), ignore=("vae",), title="Apply ControlNet",
        convert=cond.controlnet_apply_advanced, export=cond.export_controlnet_alone),
    # ComfyUI's core primitive nodes (comfy_extras/nodes_primitive.py) are the core pack's value nodes.
    "PrimitiveInt": ComfyMapping("Int", _VALUE, ("value",), ("value", SEED_CONTROL),
                                 ignore=("control_after_generate",), title="Int", export=True),
    "PrimitiveFloat": ComfyMapping("Float", _VALUE, ("value",), ("value",), title="Float", export=True),
    "PrimitiveString": ComfyMapping("String", _VALUE, ("value",), ("value",), title="String"),
    "PrimitiveStringMultiline": ComfyMapping("String", _VALUE, ("value",), ("value",), title="String (Multiline)",
                                             export=True),
    "PrimitiveBoolean": ComfyMapping("Boolean", _VALUE, ("value",), ("value",), title="Boolean", export=True),
    **MERGING,
    **IPADAPTER,
    # Model kinds lcmgraph does not load: refused by name (all at once, with their node ids).
    **UNSUPPORTED,
    # SamplerCustom(Advanced) and the sampler / sigmas / noise / guider nodes they read.
    **custom.MAPPINGS,
    # Single nodes of third-party packs with an exact lcmgraph meaning (WAS Seed, YANC's > Save Image).
    **third_party.MAPPINGS,
}

__all__ = ["COMFY_MAPPINGS"]
