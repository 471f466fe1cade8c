"""ComfyUI's latent nodes (nodes.py) <-> the diffusion pack's latents.py: one
to one, both ways, ComfyUI's ``samples`` sockets being lcmgraph's ``latent``."""

from __future__ import annotations

from lcmgraph.comfy import ComfyMapping


def _latent(node: str, widgets: tuple[str, ...], title: str, sockets: dict[str, str] | None = None) -> ComfyMapping:
    inputs = {**(sockets or {"samples": "latent"}), **{w: w for w in widgets}}
    return ComfyMapping(node, inputs, ("latent",), widgets, title=title, export=True)


LATENTS: dict[str, ComfyMapping] = {
    "LatentUpscale": _latent("LatentUpscale", ("upscale_method", "width", "height", "crop"), "Upscale Latent"),
    "LatentUpscaleBy": _latent("LatentUpscaleBy", ("upscale_method", "scale_by"), "Upscale Latent By"),
    "LatentComposite": _latent("LatentComposite", ("x", "y", "feather"), "Latent Composite",
                               {"samples_to": "latent_to", "samples_from": "latent_from"}),
    "LatentBlend": _latent("LatentBlend", ("blend_factor",), "Latent Blend",
                           {"samples1": "latent1", "samples2": "latent2"}),
    "LatentFromBatch": _latent("LatentFromBatch", ("batch_index", "length"), "Latent From Batch"),
    "RepeatLatentBatch": _latent("RepeatLatentBatch", ("amount",), "Repeat Latent Batch"),
    "LatentFlip": _latent("LatentFlip", ("flip_method",), "Flip Latent"),
    "LatentRotate": _latent("LatentRotate", ("rotation",), "Rotate Latent"),
    "LatentCrop": _latent("LatentCrop", ("width", "height", "x", "y"), "Crop Latent"),
    "SetLatentNoiseMask": _latent("SetLatentNoiseMask", (), "Set Latent Noise Mask",
                                  {"samples": "latent", "mask": "mask"}),
}
