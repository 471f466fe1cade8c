"""Conditioning arithmetic as ComfyUI computes it: ConditioningZeroOut,
ConditioningAverage and ConditioningConcat act on every entry of a
conditioning (ConditioningCombine makes several: regions.py), the
``conditioning_from`` of the last two being its first entry, as ComfyUI's."""

from __future__ import annotations

from dataclasses import replace

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from .models.values import Conditioning, match_token_lengths
from .regions import NODES as REGION_NODES


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

        def zero(entry: Conditioning) -> Conditioning:
            pooled = None if entry.pooled is None else torch.zeros_like(entry.pooled)
            return replace(entry, embeds=torch.zeros_like(entry.embeds), pooled=pooled)

        return {"conditioning": conditioning.map(zero)}


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

        source_entry = conditioning_from.entries[0]
        strength = conditioning_to_strength

        def average(entry: Conditioning) -> Conditioning:
            _pair(entry, source_entry, "average")
            to, source = entry.embeds, source_entry.embeds[:, :entry.embeds.shape[1]]
            if source.shape[1] < to.shape[1]:
                pad = torch.zeros((1, to.shape[1] - source.shape[1], to.shape[2]), dtype=source.dtype)
                source = torch.cat([source, pad], dim=1)
            embeds = torch.mul(to, strength) + torch.mul(source, 1.0 - strength)
            pooled_from = source_entry.pooled
            pooled_to = entry.pooled if entry.pooled is not None else pooled_from
            pooled = entry.pooled
            if pooled_from is not None and pooled_to is not None:
                pooled = torch.mul(pooled_to, strength) + torch.mul(pooled_from, 1.0 - strength)
            return replace(entry, embeds=embeds, pooled=pooled)

        return {"conditioning": conditioning_to.map(average)}


class ConditioningConcat(Node):
    """conditioning_from's tokens appended to conditioning_to's (a longer
    prompt, attended to as one); the rest is conditioning_to's."""

    category = "conditioning"
    inputs = (Input("conditioning_to", T.CONDITIONING), Input("conditioning_from", T.CONDITIONING))
    outputs = (Output("conditioning", T.CONDITIONING),)

    def execute(self, ctx, conditioning_to: Conditioning, conditioning_from: Conditioning):
        import torch

        source = conditioning_from.entries[0]

        def concat(entry: Conditioning) -> Conditioning:
            _pair(entry, source, "concatenate")
            embeds = torch.cat((entry.embeds, source.embeds), dim=1)
            negative = entry.default_negative
            if negative is not None:
                # The empty prompt CFG uses without a negative, repeated to the new
                # length: attention over it is unchanged, and the CFG batch fits.
                negative, embeds = match_token_lengths(negative, embeds)
            return replace(entry, embeds=embeds, default_negative=negative)

        return {"conditioning": conditioning_to.map(concat)}


NODES = [ConditioningZeroOut, ConditioningAverage, ConditioningConcat, *REGION_NODES]
