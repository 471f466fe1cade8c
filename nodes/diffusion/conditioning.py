"""Conditioning arithmetic as ComfyUI computes it: ConditioningZeroOut,
ConditioningAverage and ConditioningConcat. (ConditioningCombine, which
samples each conditioning separately and averages the predictions, needs
the sampler's area/region machinery and is not here.)"""

from __future__ import annotations

from dataclasses import replace

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from .models.values import Conditioning, match_token_lengths


def _pair(to: Conditioning, source: Conditioning, what: str) -> None:
    if to.arch != source.arch or to.embeds.shape[-1] != source.embeds.shape[-1]:
        raise ValueError(f"cannot {what} a {source.arch} conditioning ({source.embeds.shape[-1]} wide) with a "
                         f"{to.arch} one ({to.embeds.shape[-1]} wide): they come from different text encoders")


class ConditioningZeroOut(Node):
    """The conditioning with its embeddings (and SDXL's pooled embedding) all
    zero; hints and sizes stay. A common SDXL negative."""

    category = "conditioning"
    inputs = (Input("conditioning", T.CONDITIONING),)
    outputs = (Output("conditioning", T.CONDITIONING),)

    def execute(self, ctx, conditioning: Conditioning):
        import torch

        pooled = None if conditioning.pooled is None else torch.zeros_like(conditioning.pooled)
        return {"conditioning": replace(conditioning, embeds=torch.zeros_like(conditioning.embeds), pooled=pooled)}


class ConditioningAverage(Node):
    """conditioning_to x strength + conditioning_from x (1 - strength), token by
    token (conditioning_from cut, or padded with zeros, to conditioning_to's
    length) and for SDXL's pooled embedding; the rest is conditioning_to's."""

    category = "conditioning"
    inputs = (
        Input("conditioning_to", T.CONDITIONING),
        Input("conditioning_from", T.CONDITIONING),
        Input("conditioning_to_strength", T.FLOAT, default=1.0, min=0.0, max=1.0, step=0.01),
    )
    outputs = (Output("conditioning", T.CONDITIONING),)

    def execute(self, ctx, conditioning_to: Conditioning, conditioning_from: Conditioning, conditioning_to_strength):
        import torch

        _pair(conditioning_to, conditioning_from, "average")
        strength = conditioning_to_strength
        to, source = conditioning_to.embeds, conditioning_from.embeds[:, :conditioning_to.embeds.shape[1]]
        if source.shape[1] < to.shape[1]:
            pad = torch.zeros((1, to.shape[1] - source.shape[1], to.shape[2]), dtype=source.dtype)
            source = torch.cat([source, pad], dim=1)
        embeds = torch.mul(to, strength) + torch.mul(source, 1.0 - strength)
        pooled_from = conditioning_from.pooled
        pooled_to = conditioning_to.pooled if conditioning_to.pooled is not None else pooled_from
        pooled = conditioning_to.pooled
        if pooled_from is not None and pooled_to is not None:
            pooled = torch.mul(pooled_to, strength) + torch.mul(pooled_from, 1.0 - strength)
        return {"conditioning": replace(conditioning_to, embeds=embeds, pooled=pooled)}


class ConditioningConcat(Node):
    """conditioning_from's tokens appended to conditioning_to's (a longer
    prompt, attended to as one); the rest is conditioning_to's."""

    category = "conditioning"
    inputs = (Input("conditioning_to", T.CONDITIONING), Input("conditioning_from", T.CONDITIONING))
    outputs = (Output("conditioning", T.CONDITIONING),)

    def execute(self, ctx, conditioning_to: Conditioning, conditioning_from: Conditioning):
        import torch

        _pair(conditioning_to, conditioning_from, "concatenate")
        embeds = torch.cat((conditioning_to.embeds, conditioning_from.embeds), dim=1)
        negative = conditioning_to.default_negative
        if negative is not None:
            # The empty prompt CFG uses without a negative, repeated to the new
            # length: attention over it is unchanged, and the CFG batch fits.
            negative, embeds = match_token_lengths(negative, embeds)
        return {"conditioning": replace(conditioning_to, embeds=embeds, default_negative=negative)}


NODES = [ConditioningZeroOut, ConditioningAverage, ConditioningConcat]
