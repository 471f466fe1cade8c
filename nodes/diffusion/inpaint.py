"""Inpainting nodes: a noise mask on a latent (SetLatentNoiseMask), and the
samplers keep everything outside it (models/sampling.py, StableDiffusionInpaintPipeline's
4-channel loop)."""

from __future__ import annotations

from dataclasses import replace

from lcmgraph import Input, Node, Output
from lcmgraph import types as T
from lcmgraph.budget import Estimate

from .models import costs
from .models.values import Latent, noise_mask


class SetLatentNoiseMask(Node):
    """Let the samplers change only the masked area (1) of this latent.

    The mask may have any size (it is resized to the latent, bilinear, when
    sampling); outside it, each step puts back the source latent noised to
    the step's level, so the result keeps the source there up to the VAE's
    round trip. With denoise 1 the masked area starts from pure noise."""

    category = "latent/inpaint"
    inputs = (Input("latent", T.LATENT), Input("mask", T.MASK))
    outputs = (Output("latent", T.LATENT),)

    def execute(self, ctx, latent: Latent, mask):
        return {"latent": replace(latent, noise_mask=noise_mask(mask))}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = upstream.get("latent")
        return Estimate({"latent": size}) if isinstance(size, costs.Size) else None


NODES = [SetLatentNoiseMask]
