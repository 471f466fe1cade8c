"""MODEL patches as ComfyUI's FreeU, FreeU_V2 (comfy_extras/nodes_freelunch.py)
and RescaleCFG (nodes_model_advanced.py): each returns a new MODEL value that
lists the patch; the model manager hooks FreeU into the UNet right before
sampling (models/unet_patches.py), and the sampler reads rescale_cfg."""

from __future__ import annotations

from dataclasses import replace

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from .models.values import ModelRef

_FACTOR = dict(min=0.0, max=10.0, step=0.01)


def _freeu_inputs(b1: float, b2: float):
    return (Input("model", T.MODEL),
            Input("b1", T.FLOAT, default=b1, **_FACTOR, description="backbone factor, the deepest decoder blocks"),
            Input("b2", T.FLOAT, default=b2, **_FACTOR, description="backbone factor, the next decoder blocks"),
            Input("s1", T.FLOAT, default=0.9, **_FACTOR, description="skip factor for b1's blocks (low frequencies)"),
            Input("s2", T.FLOAT, default=0.2, **_FACTOR, description="skip factor for b2's blocks (low frequencies)"))


class FreeU(Node):
    """FreeU (arXiv:2309.11497) as ComfyUI applies it: where the decoder meets a
    skip connection, the decoder features' first half of channels times b and the
    skip's low frequencies times s, in the blocks at 4x (b1, s1) and 2x (b2, s2)
    the UNet's base channel count. Chained FreeU nodes apply in turn."""

    category = "model_patches"
    inputs = _freeu_inputs(1.1, 1.2)
    outputs = (Output("model", T.MODEL),)
    batch_inputs = ()
    kind = "freeu"

    def execute(self, ctx, model: ModelRef, b1, b2, s1, s2):
        return {"model": replace(model, patches=(*model.patches, (self.kind, b1, b2, s1, s2)))}


class FreeU_V2(FreeU):  # noqa: N801 - ComfyUI's name
    """FreeU's second version: the backbone factor weighted by the decoder
    features' channel mean (scaled to 0..1 per image), (b - 1) x mean + 1."""

    inputs = _freeu_inputs(1.3, 1.4)
    kind = "freeu_v2"


class RescaleCFG(Node):
    """Rescale the CFG result to the positive prediction's standard deviation and
    mix by multiplier (diffusers' guidance_rescale, arXiv:2305.08891 3.4): tames
    overexposure at high guidance, for v-prediction models especially. Acts only
    when CFG runs (guidance > 1)."""

    category = "model_patches"
    inputs = (Input("model", T.MODEL), Input("multiplier", T.FLOAT, default=0.7, min=0.0, max=1.0, step=0.01))
    outputs = (Output("model", T.MODEL),)
    batch_inputs = ()

    def execute(self, ctx, model: ModelRef, multiplier):
        return {"model": replace(model, rescale_cfg=float(multiplier))}


NODES = [FreeU, FreeU_V2, RescaleCFG]
