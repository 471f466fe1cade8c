"""One denoising step's UNet predictions for conditionings with regions
(regions.py says what is blended how): every active part of every request
runs on its window of the latent, the parts with windows of one size (and the
same ControlNet hints) in one UNet call, and each request gets its blended
(negative, positive) predictions back for CFG and its scheduler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import regions
from .control import ControlRunner
from .ipadapter import mark_rows
from .values import Conditioning, match_token_lengths


def sampler_negative(positive: Conditioning, negative: Conditioning | None) -> Conditioning:
    """The negative CFG uses: the given one, or (as the plain sampler) the
    encoded empty prompt for SD1.5 and zeros for SDXL, with the positive's sizes."""
    if negative is not None:
        return negative
    import torch

    first = positive.entries[0]
    embeds = first.default_negative if first.default_negative is not None else torch.zeros_like(first.embeds)
    pooled = None if first.pooled is None else torch.zeros_like(first.pooled)
    return Conditioning(first.arch, embeds, pooled=pooled, original_size=first.original_size, crop=first.crop,
                        target_size=first.target_size)


@dataclass
class _Prepared:
    """A part with what its UNet calls take, on the device."""

    part: regions.Part
    run: int
    window: tuple[int, int, int, int]
    weight: Any  # [B, C, h, w] float32
    embeds: Any
    added: dict | None
    group: Any  # parts of one group key may share a UNet call


class RegionalStep:
    """Per-sampling state: every request's parts, prepared once."""

    def __init__(self, ctx, manager, loaded, runs, cfg: bool, total_steps: int, device, dtype):
        self.ctx, self.manager, self.loaded = ctx, manager, loaded
        self.runs, self.cfg, self.total = runs, cfg, total_steps
        self.controls: dict = {}
        self.prepared: list[_Prepared] = []
        for index, run in enumerate(runs):
            batch, channels, height, width = run.latents.shape
            negative = sampler_negative(run.req.positive, run.req.negative) if cfg else None
            first = run.req.positive.entries[0]
            for part in regions.parts(run.req.positive, negative, cfg, (height, width)):
                window = part.window((height, width))
                weight = part.weight(batch, channels, (height, width)).to(device)
                embeds, added = _prompt(part, first, loaded, batch, (height, width), device, dtype)
                hints = part.entry.controls
                # Entries hinted by the same ApplyControlNet nodes share calls (each has its own tuple of them).
                group = tuple(map(id, hints)) if all(h.image.shape[0] == 1 for h in hints) else object()
                self.prepared.append(_Prepared(part, index, window, weight, embeds, added, group))

    def predict(self, unet, inputs: list, t, step: int) -> list[tuple[Any, Any]]:
        """Per request, (negative, positive) blended predictions (negative None
        without CFG) for the UNet inputs ``inputs`` (one per request) at ``t``."""
        import torch

        sums, counts = {}, {}
        for index, x in enumerate(inputs):
            for half in (regions.POSITIVE, regions.NEGATIVE) if self.cfg else (regions.POSITIVE,):
                sums[index, half] = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
                counts[index, half] = torch.full(x.shape, regions.EPSILON, dtype=torch.float32, device=x.device)
        active = [p for p in self.prepared if p.part.active(float(t))]
        groups: dict = {}
        for p in active:
            groups.setdefault((p.window[:2], p.group), []).append(p)
        for members in groups.values():
            outputs = self._call(unet, members, inputs, t, step)
            for p, out in zip(members, outputs, strict=True):
                h, w, y, x = p.window
                key = (p.run, p.part.half)
                sums[key][:, :, y:y + h, x:x + w] += out.to(torch.float32) * p.weight
                counts[key][:, :, y:y + h, x:x + w] += p.weight
        results = []
        for index, x in enumerate(inputs):
            blended = [self._blend(sums[index, half], counts[index, half], index, x, t) if (index, half) in sums
                       else None for half in (regions.NEGATIVE, regions.POSITIVE)]
            results.append((blended[0], blended[1]))
        return results

    def _blend(self, total, count, index, x, t):
        import torch

        out = total / count
        uncovered = count <= regions.EPSILON
        if bool(uncovered.any()):
            zero = regions.zero_image_prediction(self.runs[index].scheduler, x.to(torch.float32), t)
            out = torch.where(uncovered, zero, out)
        return out.to(x.dtype)

    def _call(self, unet, members: list[_Prepared], inputs: list, t, step: int):
        import torch

        crops, concats = [], []
        for p in members:
            h, w, y, x = p.window
            crops.append(inputs[p.run][:, :, y:y + h, x:x + w])
            concat = self.runs[p.run].concat
            if concat is not None:  # an inpainting UNet: its mask and image, cut to the window (ComfyUI's c_concat)
                concats.append(concat[:, :, y:y + h, x:x + w])
        model_input = torch.cat(crops)
        embeds = torch.cat(match_token_lengths(*(p.embeds for p in members)))
        added = None
        if members[0].added is not None:
            added = {name: torch.cat([p.added[name] for p in members]) for name in members[0].added}
        timestep_cond = None
        if self.runs[members[0].run].timestep_cond is not None:
            timestep_cond = torch.cat([self.runs[p.run].timestep_cond for p in members])
        down = mid = None
        hints = members[0].part.entry.controls
        if hints:
            runner = self._runner(hints, model_input.shape)
            down, mid = runner.residuals(step, model_input, t, embeds, added)
        if concats:
            model_input = torch.cat([model_input, torch.cat(concats)], dim=1)
        mark_rows(unet, [p.part.half == regions.NEGATIVE for p, c in zip(members, crops, strict=True)
                         for _ in range(c.shape[0])])
        out = unet(model_input, t, encoder_hidden_states=embeds, timestep_cond=timestep_cond, added_cond_kwargs=added,
                   down_block_additional_residuals=down, mid_block_additional_residual=mid, return_dict=False)[0]
        mark_rows(unet, None)
        return out.split([c.shape[0] for c in crops])

    def _runner(self, hints, shape) -> ControlRunner:
        """The hints' ControlNets with their images at the window's size (ComfyUI resizes the whole hint to it)."""
        key = (tuple(map(id, hints)), tuple(shape))
        if key not in self.controls:
            self.controls[key] = (hints, ControlRunner(self.ctx, self.manager, self.loaded, hints, shape, shape[0],
                                                       False, self.total))
        return self.controls[key][1]


def _prompt(part: regions.Part, first: Conditioning, loaded, batch: int, size, device, dtype):
    """The part's prompt embeddings ``[B, T, D]`` and SDXL's added conditioning
    (pooled embedding, size ids of the whole image), as the plain sampler builds them."""
    import torch

    entry = part.entry
    embeds = entry.embeds.to(device=device, dtype=dtype).repeat(batch, 1, 1)
    if loaded.arch != "sdxl":
        return embeds, None
    factor = loaded.pipe.vae_scale_factor
    image_size = (int(size[0]) * factor, int(size[1]) * factor)
    own_sizes = part.half == regions.POSITIVE or (entry.original_size is not None and entry.target_size is not None)
    sizes = entry if own_sizes else first
    ids = list((sizes.original_size or image_size) + tuple(sizes.crop) + (sizes.target_size or image_size))
    return embeds, {"text_embeds": entry.pooled.to(device=device, dtype=dtype).repeat(batch, 1),
                    "time_ids": torch.tensor([ids], dtype=dtype).to(device).repeat(batch, 1)}
