"""Upscale models (ComfyUI's UpscaleModelLoader and ImageUpscaleWithModel):
ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, SPAN... through spandrel
(formats/upscale_files.py), run in tiles as ComfyUI does."""

from __future__ import annotations

from lcmgraph_nodes.image.ops import sizes

from lcmgraph import Input, Node, Output
from lcmgraph.budget import Estimate

from .formats.upscale_files import FOLDER, UpscaleFileError, load_upscale_model, upscale_tiled
from .models.manager import SERVICE
from .models.values import UpscaleModelRef

UPSCALE_MODEL = "UPSCALE_MODEL"


class UpscaleModelLoader(Node):
    """Load an upscale model (.safetensors, or .pth read with weights_only) from
    the upscale_models folder; spandrel recognises the architecture."""

    category = "loaders"
    inputs = (Input("model_name", "STRING", folder=FOLDER,
                    description="a .safetensors or .pth file in upscale_models/, or builtin:tiny-upscale-2x"),)
    outputs = (Output("upscale_model", UPSCALE_MODEL),)
    batch_inputs = ()

    def execute(self, ctx, model_name):
        ref = UpscaleModelRef(str(ctx.resolve_file(FOLDER, model_name)), ctx.file_identity(FOLDER, model_name))
        ctx.service(SERVICE).upscaler(ref.path, ref.identity, ctx)  # load now: a file that does not fit fails here
        return {"upscale_model": ref}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        # The scale is the model's: reading the file is the only way to know it.
        try:
            scale = load_upscale_model(ctx.resolve_file(FOLDER, literals["model_name"])).scale
        except (UpscaleFileError, OSError):
            return None
        return Estimate({"upscale_model": scale})


class ImageUpscaleWithModel(Node):
    """Upscale images with an upscale model, in tiles of tile x tile pixels
    overlapping by overlap (ComfyUI's tiled_scale, its masks blending the
    overlaps). Interrupts stop between tiles."""

    category = "image/upscaling"
    inputs = (
        Input("upscale_model", UPSCALE_MODEL),
        Input("image", "IMAGE"),
        Input("tile", "INT", default=512, min=16, max=8192, step=8, description="tile size in input pixels"),
        Input("overlap", "INT", default=32, min=0, max=512, step=8, description="overlap between tiles"),
    )
    outputs = (Output("image", "IMAGE"),)
    batch_inputs = ()

    @classmethod
    def check_inputs(cls, literals):
        if literals.get("overlap", 0) >= literals.get("tile", 512):
            return [("overlap", "overlap must be smaller than tile")]
        return []

    def execute(self, ctx, upscale_model: UpscaleModelRef, image, tile, overlap):
        manager = ctx.service(SERVICE)
        loaded = manager.activate(manager.upscaler(upscale_model.path, upscale_model.identity, ctx), "upscale")
        device = next(loaded.descriptor.model.parameters()).device
        out = upscale_tiled(loaded.descriptor, image, tile, overlap, device, loaded.dtype,
                            progress=lambda done, total: ctx.progress(done, total, stage="upscaling"))
        return {"image": out}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size, scale = sizes.upstream_size(upstream, "image"), upstream.get("upscale_model")
        if size is None or scale is None:
            return None
        out = sizes.Size(size.batch, round(size.height * scale), round(size.width * scale))
        return sizes.sized("image", out, "an upscaled image", None)


NODES = [UpscaleModelLoader, ImageUpscaleWithModel]
