"""Regional prompting, ComfyUI's nodes of the same names: combine
conditionings into one list, and say where (area, mask) and when (a part of
the steps) each entry acts and how strongly. The sampler runs every entry on
its window of the latent and blends the predictions per region
(models/regions.py has the formula)."""

from __future__ import annotations

from dataclasses import replace

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from .models.values import Conditioning

_MAX = 16384  # ComfyUI's MAX_RESOLUTION
_STRENGTH = dict(default=1.0, min=0.0, max=10.0, step=0.01)


class ConditioningCombine(Node):
    """Both conditionings as one list: the sampler runs each entry separately
    and averages their predictions (weighted by strength, area and mask)."""

    category = "conditioning"
    inputs = (Input("conditioning_1", T.CONDITIONING), Input("conditioning_2", T.CONDITIONING))
    outputs = (Output("conditioning", T.CONDITIONING),)

    def execute(self, ctx, conditioning_1: Conditioning, conditioning_2: Conditioning):
        if conditioning_1.arch != conditioning_2.arch:
            raise ValueError(f"cannot combine a {conditioning_1.arch} conditioning with a {conditioning_2.arch} one: "
                             "they come from different text encoders")
        return {"conditioning": Conditioning.combine([conditioning_1, conditioning_2])}


class ConditioningSetArea(Node):
    """The conditioning acts on a rectangle only (pixels, on the latent's cells
    of 8), its prediction fading in over 8 cells at edges inside the image."""

    category = "conditioning"
    inputs = (
        Input("conditioning", T.CONDITIONING),
        Input("width", T.INT, default=64, min=64, max=_MAX, step=8),
        Input("height", T.INT, default=64, min=64, max=_MAX, step=8),
        Input("x", T.INT, default=0, min=0, max=_MAX, step=8),
        Input("y", T.INT, default=0, min=0, max=_MAX, step=8),
        Input("strength", T.FLOAT, **_STRENGTH),
    )
    outputs = (Output("conditioning", T.CONDITIONING),)

    def execute(self, ctx, conditioning: Conditioning, width, height, x, y, strength):
        area = ("latent", height // 8, width // 8, y // 8, x // 8)
        return {"conditioning": conditioning.map(
            lambda e: replace(e, area=area, strength=float(strength), mask_bounds=False))}


class ConditioningSetAreaPercentage(Node):
    """ConditioningSetArea with the rectangle as fractions of the image (any size)."""

    category = "conditioning"
    inputs = (
        Input("conditioning", T.CONDITIONING),
        Input("width", T.FLOAT, default=1.0, min=0.0, max=1.0, step=0.01),
        Input("height", T.FLOAT, default=1.0, min=0.0, max=1.0, step=0.01),
        Input("x", T.FLOAT, default=0.0, min=0.0, max=1.0, step=0.01),
        Input("y", T.FLOAT, default=0.0, min=0.0, max=1.0, step=0.01),
        Input("strength", T.FLOAT, **_STRENGTH),
    )
    outputs = (Output("conditioning", T.CONDITIONING),)

    def execute(self, ctx, conditioning: Conditioning, width, height, x, y, strength):
        area = ("fraction", float(height), float(width), float(y), float(x))
        return {"conditioning": conditioning.map(
            lambda e: replace(e, area=area, strength=float(strength), mask_bounds=False))}


class ConditioningSetAreaStrength(Node):
    """How much the conditioning weighs against others where they overlap."""

    category = "conditioning"
    inputs = (Input("conditioning", T.CONDITIONING), Input("strength", T.FLOAT, **_STRENGTH))
    outputs = (Output("conditioning", T.CONDITIONING),)

    def execute(self, ctx, conditioning: Conditioning, strength):
        return {"conditioning": conditioning.map(lambda e: replace(e, strength=float(strength)))}


class ConditioningSetMask(Node):
    """The conditioning weighted by a mask (resized to the latent) times
    strength. "mask bounds" also runs it on the mask's bounding box only
    (sharper small regions); "default" runs it on the whole image."""

    category = "conditioning"
    inputs = (
        Input("conditioning", T.CONDITIONING),
        Input("mask", T.MASK),
        Input("strength", T.FLOAT, **_STRENGTH),
        Input("set_cond_area", T.ENUM, default="default", choices=("default", "mask bounds")),
    )
    outputs = (Output("conditioning", T.CONDITIONING),)

    def execute(self, ctx, conditioning: Conditioning, mask, strength, set_cond_area):
        import torch

        mask = mask.reshape(-1, mask.shape[-2], mask.shape[-1]).to(torch.float32)
        bounds = set_cond_area != "default"
        return {"conditioning": conditioning.map(
            lambda e: replace(e, mask=mask, mask_strength=float(strength), mask_bounds=bounds))}


class ConditioningSetTimestepRange(Node):
    """The conditioning acts from ``start`` to ``end`` of the sampling only
    (fractions of the noise schedule, as ComfyUI: 0 the noisiest step)."""

    category = "conditioning"
    inputs = (
        Input("conditioning", T.CONDITIONING),
        Input("start", T.FLOAT, default=0.0, min=0.0, max=1.0, step=0.001),
        Input("end", T.FLOAT, default=1.0, min=0.0, max=1.0, step=0.001),
    )
    outputs = (Output("conditioning", T.CONDITIONING),)

    def execute(self, ctx, conditioning: Conditioning, start, end):
        span = (float(start), float(end))
        return {"conditioning": conditioning.map(lambda e: replace(e, timestep_range=span))}


NODES = [ConditioningCombine, ConditioningSetArea, ConditioningSetAreaPercentage, ConditioningSetAreaStrength,
         ConditioningSetMask, ConditioningSetTimestepRange]
