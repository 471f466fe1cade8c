"""Model-side classes: model sampling (no lcmgraph node), CLIP skip, VAE files,
LoRA loaders, tiled VAE."""

from __future__ import annotations

from lcmgraph.comfy import ComfyMapping, ConversionError, Converted, Through
from lcmgraph.comfy.export import default_export

from .common import literal, present

LORA = ComfyMapping(
    "ApplyLoRA", {"model": "model", "clip": "clip", "lora_name": "lora", "strength_model": "weight",
                  "strength_clip": "clip_weight"}, ("model", "clip"), ("lora_name", "strength_model", "strength_clip"),
    title="Load LoRA")
LORA_MODEL_ONLY = ComfyMapping(
    "ApplyLoRA", {"model": "model", "lora_name": "lora", "strength_model": "weight"}, ("model",),
    ("lora_name", "strength_model"), title="LoraLoaderModelOnly")
VAE = {
    "VAEDecode": ComfyMapping("VAEDecode", {"samples": "latent", "vae": "vae"}, ("image",), title="VAE Decode"),
    "VAEEncode": ComfyMapping("VAEEncode", {"pixels": "image", "vae": "vae"}, ("latent",), title="VAE Encode"),
    "VAEEncodeForInpaint": ComfyMapping("VAEEncodeForInpaint", {"pixels": "image", "vae": "vae", "mask": "mask",
                                                                "grow_mask_by": "grow_mask_by"}, ("latent",),
                                        ("grow_mask_by",), title="VAE Encode (for Inpainting)", export=True),
}

TILES = {"tile_size": 512, "overlap": 64, "temporal_size": 64, "temporal_overlap": 8}


def model_sampling(ctx, node) -> Converted:
    """No node: the samplers read it (samplers.prediction_for: eps, v_prediction, x0 -> prediction; lcm -> LCM)."""
    sampling, zsnr = ctx.literal(node, "sampling"), ctx.literal(node, "zsnr", False)
    if zsnr:
        raise ConversionError("zsnr (zero terminal SNR) has no lcmgraph equivalent")
    if sampling not in ("lcm", "eps", "v_prediction", "x0"):
        raise ConversionError(f"sampling {sampling!r} has no lcmgraph equivalent ('eps', 'v_prediction', 'x0' "
                              "become the sampler's prediction type, 'lcm' LCM's schedule)")
    return Converted(None, outputs={0: Through("model")})


CLIP_LAYER = ComfyMapping("CLIPSetLastLayer", {"clip": "clip", "stop_at_clip_layer": "stop_at_clip_layer"}, ("clip",),
                          ("stop_at_clip_layer",), title="CLIP Set Last Layer", export=True)

VAE_LOADER = ComfyMapping("LoadVAE", {"vae_name": "vae"}, ("vae",), ("vae_name",), title="Load VAE")

#: ComfyUI's VAELoader also offers TAESD approximations, built from vae_approx/ files.
_TAESD = ("taesd", "taesdxl", "taesd3", "taef1")


def vae_loader(ctx, node) -> Converted:
    name = ctx.literal(node, "vae_name")
    if name in _TAESD:
        raise ConversionError(f"vae_name {name!r} (a TAESD approximation) has no lcmgraph equivalent; name a VAE file")
    return Converted("LoadVAE", present(vae=name), {0: "vae"})


def export_vae_loader(ctx, spec) -> None:
    # ComfyUI scales latents inside the model, so its VAELoader needs no latent format.
    default_export(ctx, spec, "VAELoader", VAE_LOADER, drop=("latent_format",))


def tiled(node_type: str, comfy_input: str, our_input: str, output: str):
    def convert(ctx, node) -> Converted:
        ctx.note("tile size and overlap are not carried over (lcmgraph tiles with diffusers' VAE tiling)")
        inputs = present(vae=node.inputs.get("vae"), tiled=True, **{our_input: node.inputs.get(comfy_input)})
        return Converted(node_type, inputs, {0: output})
    return convert


def export_lora(ctx, spec) -> None:
    if ctx.value(spec, "clip") is None:  # clip_weight means nothing without a CLIP
        default_export(ctx, spec, "LoraLoaderModelOnly", LORA_MODEL_ONLY, drop=("clip_weight",))
    else:
        default_export(ctx, spec, "LoraLoader", LORA)


def export_vae(plain: str, tiled: str):
    def export(ctx, spec) -> None:
        if literal(ctx, spec, "tiled"):
            default_export(ctx, spec, tiled, VAE[plain], extra=dict(TILES), drop=("tiled",))
        else:
            default_export(ctx, spec, plain, VAE[plain])
    return export
