"""Checkpoint, VAE and LoRA nodes. They return handles (models/values.py); the
model manager holds the weights, so loading the same file twice shares one model."""

from __future__ import annotations

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from .formats.vae_files import LATENT_FORMATS
from .models.manager import SERVICE
from .models.values import ClipRef, LoraPatch, ModelRef, UnetFile, VaeRef


class LoadCheckpoint(Node):
    """Load a Stable Diffusion 1.5 / SDXL checkpoint (a diffusers folder, a
    single .safetensors file, or builtin:tiny-random / builtin:tiny-random-xl)."""

    category = "loaders"
    record_parameters = True
    inputs = (Input("checkpoint", T.STRING, default="builtin:tiny-random", folder="checkpoints",
                    description="a file or diffusers folder in checkpoints/, builtin:NAME, or hub:org/name"),)
    outputs = (Output("model", T.MODEL), Output("clip", T.CLIP), Output("vae", T.VAE))
    # Jobs on different checkpoints are not worth batching: their samplers cannot merge.
    batch_inputs = ()

    def execute(self, ctx, checkpoint):
        path = str(ctx.resolve_file("checkpoints", checkpoint))
        identity = ctx.file_identity("checkpoints", checkpoint)
        # Load now: a broken file fails in this node, and the load's progress shows here.
        loaded = ctx.service(SERVICE).checkpoint(ModelRef(path, identity, ""), ctx)
        arch = loaded.arch
        return {
            "model": ModelRef(path, identity, arch),
            "clip": ClipRef(path, identity, arch),
            "vae": VaeRef(path, identity, arch),
        }


class LoadVAE(Node):
    """Load a VAE of its own (a diffusers folder, or a single .safetensors in the
    original or diffusers layout: vae-ft-mse, sdxl-vae-fp16-fix...) to use in
    place of a checkpoint's VAE wherever a VAE input takes it.

    lcmgraph's latents are scaled by the VAE's factor, so the VAE must know
    which model made the latents: latent_format "auto" takes a folder's
    config, else the file's own pinned value, else "xl" in the name (or the
    file's metadata) for SDXL, else SD1.5; say sd15 or sdxl when that guess
    is wrong."""

    category = "loaders"
    record_parameters = True
    inputs = (
        Input("vae", T.STRING, folder="vae", description="a .safetensors file or diffusers folder in vae/, or builtin:NAME"),
        Input("latent_format", T.ENUM, choices=LATENT_FORMATS, default="auto",
              description="whose latents it decodes (its scaling factor): sd15 0.18215, sdxl 0.13025"),
    )
    outputs = (Output("vae", T.VAE),)
    batch_inputs = ()

    def execute(self, ctx, vae, latent_format):
        path = str(ctx.resolve_file("vae", vae))
        identity = ctx.file_identity("vae", vae)
        # Load now: a broken file fails in this node, and "auto" is decided here.
        loaded = ctx.service(SERVICE).vae_file(path, identity, latent_format, ctx)
        return {"vae": VaeRef(path, identity, loaded.arch, standalone=True, latent_format=latent_format)}


class ApplyLoRA(Node):
    """Add a LoRA (peft/diffusers or kohya format) to a model and its text encoder.

    Returns new MODEL/CLIP values that list the LoRA; nothing is patched in
    place, so other branches using the inputs are unaffected. Chain several
    to stack them (e.g. an LCM-LoRA at 1.0 and a style LoRA at 0.8).
    """

    category = "loaders"
    record_parameters = True
    inputs = (
        Input("model", T.MODEL),
        Input("clip", T.CLIP, optional=True),
        Input("lora", T.STRING, folder="loras", description="a .safetensors file in the loras folder, or builtin:NAME"),
        Input("weight", T.FLOAT, default=1.0, min=-10.0, max=10.0, step=0.05),
        Input("clip_weight", T.FLOAT, default=1.0, min=-10.0, max=10.0, step=0.05),
    )
    # The CLIP value lists only the CLIP patches: a new UNet ``weight`` must not
    # re-run the text encoders downstream.
    outputs = (Output("model", T.MODEL), Output("clip", T.CLIP, depends_on=("clip", "lora", "clip_weight")))

    batch_inputs = ()  # another LoRA or weight is another model: samplers cannot merge

    def execute(self, ctx, model: ModelRef, clip: ClipRef | None, lora, weight, clip_weight):
        path = str(ctx.resolve_file("loras", lora))
        identity = ctx.file_identity("loras", lora)
        manager = ctx.service(SERVICE)
        # Load the adapter now so that a LoRA that does not fit fails in this node.
        manager.ensure_lora(manager.denoiser(model, ctx), LoraPatch(path, identity, weight),
                            protect={p.adapter_name for p in model.loras})
        out_clip = None
        if clip is not None:
            if clip.identity != model.identity:
                raise ValueError("model and clip come from different checkpoints; give this LoRA one checkpoint's pair")
            out_clip = clip.with_lora(LoraPatch(path, identity, clip_weight))
        return {"model": model.with_lora(LoraPatch(path, identity, weight)), "clip": out_clip}


class LoadUNet(Node):
    """Replace a checkpoint's UNet with a UNet-only file: SDXL-Lightning's
    ``*_unet.safetensors``, Hyper-SDXL's 1-step UNet, DMD2's UNet (as .safetensors).

    Diffusers layout (UNet2DConditionModel keys, or a UNet folder with its
    config.json) or the original LDM layout (input_blocks..., as ComfyUI's UNet
    loader reads). The file takes the checkpoint's UNet shape; a file of the
    other architecture, a LoRA, a VAE or a whole checkpoint is refused with a
    sentence. The text encoders and VAE stay the checkpoint's, and LoRAs
    applied to the MODEL (before or after) go on the new UNet.
    """

    category = "loaders"
    record_parameters = True
    inputs = (
        Input("model", T.MODEL),
        Input("unet", T.STRING, folder="unet",
              description="a UNet .safetensors file or diffusers UNet folder in unet/, or builtin:NAME"),
    )
    outputs = (Output("model", T.MODEL),)
    batch_inputs = ()

    def execute(self, ctx, model: ModelRef, unet):
        path = str(ctx.resolve_file("unet", unet))
        out = model.with_unet(UnetFile(path, ctx.file_identity("unet", unet)))
        ctx.service(SERVICE).denoiser(out, ctx)  # load now: a file that does not fit fails in this node
        return {"model": out}


NODES = [LoadCheckpoint, LoadVAE, ApplyLoRA, LoadUNet]
