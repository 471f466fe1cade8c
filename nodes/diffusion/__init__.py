"""Diffusion pack: checkpoints, VAEs, LoRA, text encoding, LCM sampling, latents,
ControlNet, images.

The node classes are the modules here (loaders, text, conditioning, samplers,
fewstep, img2img, latents, vae, controlnet, images, merging, patches, upscale, ipadapter, video); what they stand on lives below:
``formats/`` (files on disk), ``models/`` (the model manager and the sampling loop), ``builtin/``
(the shipped and the tiny built-in models), ``comfy_map/`` (ComfyUI import /
export tables) and ``train/`` (the trainers behind ``lcmgraph train``).
"""

from . import (
    conditioning,
    controlnet,
    fewstep,
    images,
    img2img,
    inpaint,
    ipadapter,
    latents,
    loaders,
    merging,
    patches,
    samplers,
    text,
    upscale,
    vae,
    video,
)
from .builtin import BUILTIN_FILES
from .comfy_map import COMFY_MAPPINGS
from .formats.hub_files import FILE_SCHEMES
from .models.manager import SERVICE, factory
from .train.cli import add_train_parser
from .train.lora_cli import add_lora_parsers

NODES = [*loaders.NODES, *text.NODES, *conditioning.NODES, *samplers.NODES, *fewstep.NODES, *img2img.NODES,
         *inpaint.NODES, *latents.NODES, *vae.NODES, *controlnet.NODES, *images.NODES, *merging.NODES,
         *patches.NODES, *upscale.NODES, *ipadapter.NODES, *video.NODES]

SERVICES = {SERVICE: factory}

#: ``lcmgraph train``, ``lcmgraph train-lcm-lora`` and ``lcmgraph train-lora``.
CLI_COMMANDS = [add_train_parser, add_lora_parsers]

__all__ = ["BUILTIN_FILES", "CLI_COMMANDS", "COMFY_MAPPINGS", "FILE_SCHEMES", "NODES", "SERVICES"]
