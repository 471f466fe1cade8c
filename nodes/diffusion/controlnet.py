"""ControlNet nodes: loading one, and attaching a hint to a conditioning.

Hints are attached to a CONDITIONING (stackable); the sampler runs the
*positive* conditioning's hints on the whole CFG batch, as diffusers'
StableDiffusionControlNetPipeline does (hints on the negative are not used).
Several hints add their residuals (MultiControlNetModel). ``start``/``end``
are fractions of the run, with diffusers' ``control_guidance_start/end`` rule
(models/control.py runs them).
"""

from __future__ import annotations

from pathlib import Path

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from .formats.controlnet_config import controlnet_arch, read_controlnet_config
from .models.values import Conditioning, ControlHint, ControlNetRef


class LoadControlNet(Node):
    """Load a ControlNet: a diffusers ControlNetModel folder, or one .safetensors file
    (original ControlNet or diffusers key layout, SD1.5 or SDXL)."""

    category = "loaders"
    inputs = (Input("controlnet", T.STRING, folder="controlnet", description="a folder or .safetensors file in the controlnet folder, or builtin:NAME"),)
    outputs = (Output("control_net", T.CONTROL_NET),)
    batch_inputs = ()  # jobs on different ControlNets cannot share a sampler call

    def execute(self, ctx, controlnet):
        path = ctx.resolve_file("controlnet", controlnet)
        arch = controlnet_arch(read_controlnet_config(path))
        identity = ctx.file_identity("controlnet", controlnet)
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


NODES = [LoadControlNet, ApplyControlNet]
