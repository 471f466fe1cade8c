"""Regional conditioning as ComfyUI computes it (comfy/samplers.py: the
conditioning list's areas, masks, strengths and timestep ranges).

A CONDITIONING is a list of entries (``Conditioning.entries``). Each entry of
each CFG half is one UNet call per step on its window of the latent (its area,
or all of it); the predictions are added up per latent cell weighted by the
entry's multiplier — strength, times its mask (resized to the latent), or, for
an area without a mask, ones whose first and last rows and columns fade in
over up to 8 cells on every side that does not touch the latent's border —
and divided by the summed weights (+1e-37). A cell no entry of a half covers
gets that half's prediction of a clean latent equal to zero, as ComfyUI's
zero sum of denoised predictions there (sampling has to turn it into the
UNet's own prediction type: ``zero_image_prediction``).

Before sampling, as ComfyUI's process_conds: fractional areas become cells
(``max(1, round(h * H))``...), masks are resized to the latent (bilinear)
and "mask bounds" turn into the mask's bounding box (at least 8 cells wide);
every area of one half that the other half lacks gets a copy there — the
area, mask, strength, range and hints of the original with the prompt of the
other half's smallest entry enclosing it (or its first entry without an
area); and the positive's hints reach the negative's entries without an area
(lcmgraph's ApplyControlNet hints both CFG halves, as ControlNetApplyAdvanced).

A timestep range (start, end) keeps an entry for the steps whose timestep t
lies in [(1 - end) * 999, (1 - start) * 999]: ComfyUI's percent_to_sigma
compared in timesteps, which order as sigmas do.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .values import Conditioning

#: Cells over which an area without a mask fades in at each inner edge (ComfyUI's fuzz).
FADE = 8
#: What ComfyUI adds to the summed weights before dividing by them.
EPSILON = 1e-37
POSITIVE, NEGATIVE = 0, 1


@dataclass(frozen=True)
class Part:
    """One entry of one CFG half, resolved to the latent (``size``: its cells h, w)."""

    entry: Conditioning
    half: int
    #: (h, w, y, x) in latent cells (what sticks out of the latent is cut when sampling); None: all of it.
    box: tuple[int, int, int, int] | None
    #: The entry's mask at the latent's size ``[B, h, w]`` (float32); None without one.
    mask: Any = None

    def active(self, t: float) -> bool:
        """Whether the entry acts at timestep ``t`` (its timestep range)."""
        span = self.entry.timestep_range
        if span is None:
            return True
        start, end = span
        if start >= 1.0 or end <= 0.0:  # ComfyUI: sigma 0 as the start, an infinite one as the end
            return False
        if start > 0.0 and t > (1.0 - start) * 999.0:
            return False
        return not (end < 1.0 and t < (1.0 - end) * 999.0)

    def window(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """(h, w, y, x) of the latent this part's UNet call sees."""
        if self.box is None:
            return (size[0], size[1], 0, 0)
        h, w, y, x = self.box
        return (min(size[0] - y, h), min(size[1] - x, w), y, x)  # ComfyUI cuts what sticks out

    def weight(self, batch: int, channels: int, size: tuple[int, int]):
        """The multiplier ``[batch, channels, h, w]`` (float32) of this part's prediction on its window."""
        import torch

        h, w, y, x = self.window(size)
        if self.mask is not None:
            mask = self.mask[:batch, y:y + h, x:x + w] * self.entry.mask_strength
            mult = mask.unsqueeze(1).repeat(batch // mask.shape[0], channels, 1, 1)
        else:
            mult = torch.ones((batch, channels, h, w), dtype=torch.float32)
        mult = mult * self.entry.strength
        if self.mask is None and self.box is not None:
            # In place and in this order, as ComfyUI: narrow windows multiply their overlapping rows twice.
            for dim, (extent, offset, full) in enumerate(((h, y, size[0]), (w, x, size[1]))):
                fade = min(FADE, extent // 4)
                for t in range(fade if offset != 0 else 0):
                    mult.narrow(dim + 2, t, 1).mul_((1.0 / fade) * (t + 1))
                for t in range(fade if offset + extent < full else 0):
                    mult.narrow(dim + 2, extent - 1 - t, 1).mul_((1.0 / fade) * (t + 1))
        return mult


def resolve(entry: Conditioning, half: int, size: tuple[int, int]) -> Part:
    """The entry's area in cells (fractions rounded, clamped to the latent) and its mask at the latent's size."""
    import torch

    height, width = size
    box, mask = None, None
    if entry.area is not None:
        unit, h, w, y, x = entry.area
        if unit == "fraction":
            h, w, y, x = max(1, round(h * height)), max(1, round(w * width)), round(y * height), round(x * width)
        box = (int(h), int(w), int(y), int(x))
    if entry.mask is not None:
        mask = entry.mask.to(torch.float32)
        mask = mask.reshape(-1, mask.shape[-2], mask.shape[-1])
        if tuple(mask.shape[-2:]) != (height, width):
            mask = torch.nn.functional.interpolate(mask.unsqueeze(1), size=(height, width), mode="bilinear").squeeze(1)
        if entry.mask_bounds:
            box = _bounds(mask)
    if box is not None and (box[2] >= height or box[3] >= width):
        raise ValueError(f"a conditioning area at ({box[3] * 8}, {box[2] * 8}) px lies outside the "
                         f"{width * 8}x{height * 8} image; move it inside")
    return Part(entry, half, box, mask)


def _bounds(mask) -> tuple[int, int, int, int]:
    """The bounding box (h, w, y, x) of the mask's non-zero cells over its batch, at least 8 x 8
    (ComfyUI's set_area_to_bounds); an all-zero mask gives 8 x 8 at the corner (it weighs nothing)."""
    import torch

    nonzero = torch.nonzero(mask.abs().amax(dim=0))
    if nonzero.numel() == 0:
        return (8, 8, 0, 0)
    (y0, x0), (y1, x1) = nonzero.amin(dim=0).tolist(), nonzero.amax(dim=0).tolist()
    return (max(8, y1 - y0 + 1), max(8, x1 - x0 + 1), y0, x0)


def parts(positive: Conditioning, negative: Conditioning | None, cfg: bool, size: tuple[int, int]) -> list[Part]:
    """Every part a step may run: the positive's entries, and under CFG the
    negative's (``negative``: the negative the sampler uses, never None under CFG)
    with the copies that pair areas across the halves and the hints the negative gets."""
    pos = [resolve(e, POSITIVE, size) for e in positive.entries]
    if not cfg:
        return pos
    neg = [resolve(e, NEGATIVE, size) for e in negative.entries]
    for part in list(pos):
        _pair_area(neg, part, NEGATIVE)
    for part in list(neg):
        _pair_area(pos, part, POSITIVE)
    return pos + _hint_negative(pos, neg)


def _inside(box, other) -> bool:
    h, w, y, x = box
    oh, ow, oy, ox = other
    return y >= oy and x >= ox and y + h <= oy + oh and x + w <= ox + ow


def _pair_area(half: list[Part], part: Part, which: int) -> None:
    """ComfyUI's create_cond_with_same_area_if_none: ``part``'s area, in ``half``,
    with the prompt of that half's smallest entry enclosing it."""
    if part.box is None:
        return
    smallest = None
    for other in half:
        if other.box is not None:
            if _inside(part.box, other.box) and (smallest is None or smallest.box is None
                                                 or smallest.box[0] * smallest.box[1] > other.box[0] * other.box[1]):
                smallest = other
        elif smallest is None:
            smallest = other
    if smallest is None or smallest.box == part.box:
        return
    half.append(replace(part, half=which, entry=with_prompt_of(part.entry, smallest.entry)))


def with_prompt_of(entry: Conditioning, source: Conditioning) -> Conditioning:
    """``entry`` with ``source``'s prompt (its model inputs); where and when it acts stay ``entry``'s."""
    return replace(entry, arch=source.arch, embeds=source.embeds, pooled=source.pooled,
                   default_negative=source.default_negative, original_size=source.original_size, crop=source.crop,
                   target_size=source.target_size, inpaint=source.inpaint)


def _hint_negative(pos: list[Part], neg: list[Part]) -> list[Part]:
    """ComfyUI's apply_empty_x_to_equal_area for hints: unless a negative entry
    without an area has hints of its own, the hints of the positive's entries
    without an area go to the negative's, in turn (the last one given wins)."""
    hinted = [p.entry.controls for p in pos if p.box is None and p.entry.controls]
    plain = [i for i, p in enumerate(neg) if p.box is None]
    if not hinted or not plain or any(neg[i].entry.controls for i in plain):
        return neg
    out = list(neg)
    for n, controls in enumerate(hinted):
        index = plain[n % len(plain)]
        out[index] = replace(neg[index], entry=replace(neg[index].entry, controls=controls))
    return out


def zero_image_prediction(scheduler, x_t, t):
    """What the UNet would predict for a clean latent of zeros at ``x_t`` (the
    UNet's input) and timestep ``t``, in the scheduler's prediction type: where
    no entry covers a cell, ComfyUI's blended denoised latent is zero."""
    import torch

    kind = scheduler.config.get("prediction_type", "epsilon")
    if kind == "sample":
        return torch.zeros_like(x_t)
    sigmas, index = getattr(scheduler, "sigmas", None), getattr(scheduler, "step_index", None)
    if sigmas is not None and index is not None:  # k-diffusion style: alpha_bar = 1 / (1 + sigma^2)
        sigma = float(sigmas[index])
        alpha_bar = 1.0 / (1.0 + sigma * sigma)
    else:
        alpha_bar = float(scheduler.alphas_cumprod[int(t)])
    if kind == "v_prediction":  # x0 = sqrt(ab) x_t - sqrt(1 - ab) v = 0
        return x_t * ((alpha_bar / (1.0 - alpha_bar)) ** 0.5)
    return x_t / ((1.0 - alpha_bar) ** 0.5)  # epsilon: x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab) = 0
