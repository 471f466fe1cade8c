"""ControlNets during sampling: each hint's residuals, step by step, added up
(MultiControlNetModel). What hints are and when they act: controlnet.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class ControlRunner:
    """Per-sampling state: loaded ControlNets and their prepared hint images."""

    def __init__(self, ctx, manager, loaded, hints, latent_shape, batch: int, cfg: bool, total_steps: int):
        self.items: list[tuple[Any, Any, float, float, float]] = []
        self.total = total_steps
        if not hints:
            return
        import torch

        factor = loaded.pipe.vae_scale_factor
        size = (int(latent_shape[2]) * factor, int(latent_shape[3]) * factor)
        unet = loaded.unet
        for hint in hints:
            net = manager.controlnet(hint.controlnet, ctx, keep={loaded.key})
            for key in ("cross_attention_dim", "addition_embed_type"):
                if net.config.get(key) != unet.config.get(key):
                    raise ValueError(
                        f"ControlNet {Path(hint.controlnet.path).name!r} does not fit this {loaded.arch} model "
                        f"({key}: {net.config.get(key)} vs {unet.config.get(key)})"
                    )
            image = hint.image.permute(0, 3, 1, 2).to(torch.float32)
            if tuple(image.shape[2:]) != size:
                image = torch.nn.functional.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)
            image = image.repeat_interleave(batch if image.shape[0] == 1 else 1, dim=0)
            image = image.to(device=unet.device, dtype=unet.dtype)
            if cfg:
                image = torch.cat([image] * 2)
            self.items.append((net, image, hint.strength, hint.start, hint.end))

    def residuals(self, index: int, model_input, t, embeds, added):
        down = mid = None
        n = self.total
        for net, image, strength, start, end in self.items:
            keep = 1.0 - float(index / n < start or (index + 1) / n > end)
            if keep == 0.0:
                continue  # its residuals would be exact zeros
            d, m = net(
                model_input, t, encoder_hidden_states=embeds, controlnet_cond=image,
                conditioning_scale=strength * keep, added_cond_kwargs=added, return_dict=False,
            )
            if down is None:
                down, mid = list(d), m
            else:
                down = [a + b for a, b in zip(down, d, strict=True)]
                mid = mid + m
        return down, mid
