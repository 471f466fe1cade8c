"""ControlNet: loading, attaching to a conditioning, and running in the sampler.

Hints are attached to a CONDITIONING (stackable); the sampler runs the
*positive* conditioning's hints on the whole CFG batch, as diffusers'
StableDiffusionControlNetPipeline does (hints on the negative are not used).
Several hints add their residuals (MultiControlNetModel). ``start``/``end``
are fractions of the run, with diffusers' ``control_guidance_start/end`` rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from .values import Conditioning, ControlHint, ControlNetRef


def controlnet_arch(config: dict) -> str:
    return "sdxl" if config.get("addition_embed_type") == "text_time" else "sd15"


def _read_config(path: Path) -> dict:
    if path.is_file():  # a single-file ControlNet: the config is read from its tensor shapes
        from .controlnet_files import controlnet_file_config

        return controlnet_file_config(path)
    config = path / "config.json" if path.is_dir() else None
    if config is None or not config.is_file():
        raise ValueError(f"{path.name!r} is not a diffusers ControlNet folder (it needs a config.json)")
    try:
        data = json.loads(config.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name!r}: unreadable config.json: {exc}") from exc
    if data.get("_class_name") not in (None, "ControlNetModel"):
        raise ValueError(f"{path.name!r} holds a {data.get('_class_name')}, not a ControlNetModel")
    return data


class LoadControlNet(Node):
    """Load a ControlNet: a diffusers ControlNetModel folder, or one .safetensors file
    (original ControlNet or diffusers key layout, SD1.5 or SDXL)."""

    category = "loaders"
    inputs = (Input("controlnet", T.STRING, folder="controlnet", description="a folder or .safetensors file in the controlnet folder, or builtin:NAME"),)
    outputs = (Output("control_net", T.CONTROL_NET),)
    batch_inputs = ()  # jobs on different ControlNets cannot share a sampler call

    def execute(self, ctx, controlnet):
        path = ctx.resolve_file("controlnet", controlnet)
        arch = controlnet_arch(_read_config(path))
        identity = ctx.engine.files.identity("controlnet", controlnet)
        ref = ControlNetRef(str(path), identity, arch)
        ctx.service("diffusion.models").controlnet(ref, ctx)  # fail here, not in the sampler
        return {"control_net": ref}


class ApplyControlNet(Node):
    """Attach a ControlNet hint to a conditioning; chain several to stack them.
    The sampler applies the positive conditioning's hints to the whole CFG batch."""

    category = "conditioning"
    inputs = (
        Input("conditioning", T.CONDITIONING),
        Input("control_net", T.CONTROL_NET),
        Input("image", T.IMAGE, description="the hint image (edges, depth, pose...), 0..1"),
        Input("strength", T.FLOAT, default=1.0, min=0.0, max=10.0, step=0.01),
        Input("start", T.FLOAT, default=0.0, min=0.0, max=1.0, step=0.01, description="fraction of the run where it starts"),
        Input("end", T.FLOAT, default=1.0, min=0.0, max=1.0, step=0.01, description="fraction of the run where it stops"),
    )
    outputs = (Output("conditioning", T.CONDITIONING),)

    @classmethod
    def check_inputs(cls, literals):
        start, end = literals.get("start", 0.0), literals.get("end", 1.0)
        if start is not None and end is not None and start > end:
            return [("start", f"start {start} is after end {end}")]
        return []

    def execute(self, ctx, conditioning: Conditioning, control_net: ControlNetRef, image, strength, start, end):
        if control_net.arch != conditioning.arch:
            raise ValueError(
                f"ControlNet {Path(control_net.path).name!r} is made for {control_net.arch} models "
                f"but the conditioning comes from a {conditioning.arch} model"
            )
        hint = ControlHint(control_net, image, float(strength), float(start), float(end))
        return {"conditioning": conditioning.with_control(hint)}


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


NODES = [LoadControlNet, ApplyControlNet]
