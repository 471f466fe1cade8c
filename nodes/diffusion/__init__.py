"""Diffusion pack: checkpoints, LoRA, text encoding, LCM sampling, ControlNet, VAE, images."""

from . import controlnet, images, img2img, loaders, samplers, text, vae
from .builtin import BUILTIN_FILES
from .comfy_map import COMFY_MAPPINGS
from .formats.hub_files import FILE_SCHEMES
from .models.manager import SERVICE, factory

NODES = [*loaders.NODES, *text.NODES, *samplers.NODES, *img2img.NODES, *vae.NODES, *controlnet.NODES, *images.NODES]

SERVICES = {SERVICE: factory}

__all__ = ["BUILTIN_FILES", "COMFY_MAPPINGS", "FILE_SCHEMES", "NODES", "SERVICES"]
