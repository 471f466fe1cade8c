"""Image files: LoadImage, SaveImage (workflow embedded in the PNG), PreviewImage."""

from __future__ import annotations

from pathlib import Path

from lcmgraph import Input, Node, Output
from lcmgraph import types as T
from lcmgraph.budget import Estimate

from .formats.image_files import (
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIDE,
    open_image,
    pil_to_image,
    write_animation,
    write_pngs,
)
from .models import costs


class LoadImage(Node):
    """Load an image from the input folder; its alpha becomes the mask (1 = transparent)."""

    category = "image"
    inputs = (Input("image", T.STRING, folder="input", description="a file in the input folder, or builtin:NAME"),)
    outputs = (Output("image", T.IMAGE), Output("mask", T.MASK))

    def execute(self, ctx, image):
        options = ctx.runtime.options
        path = ctx.resolve_file("input", image)
        with open_image(path, image, options.get("max_image_pixels", MAX_IMAGE_PIXELS),
                        options.get("max_image_side", MAX_IMAGE_SIDE)) as pil:
            pil.load()
            rgb, mask = pil_to_image(pil)
        return {"image": rgb, "mask": mask}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        # The header alone gives the size; open_image refuses what execute would refuse.
        with open_image(ctx.resolve_file("input", literals["image"]), literals["image"]) as pil:
            size = costs.Size(1, pil.height, pil.width)
        return Estimate({"image": size}, (costs.pixels(size, "an input image", "image"),))


class SaveImage(Node):
    """Save images as PNG in the output folder (never overwriting), with the
    workflow and generation parameters embedded so the PNG can be re-run."""

    category = "image"
    output_node = True
    inputs = (
        Input("image", T.IMAGE),
        Input("filename_prefix", T.STRING, default="lcmgraph"),
    )
    #: It runs once per job (an output node): in a batch each job saves its own
    #: files, with its own workflow embedded.
    batch_inputs = ("filename_prefix",)

    def execute(self, ctx, image, filename_prefix):
        ctx.add_result(images=write_pngs(ctx, image, Path(ctx.output_dir), filename_prefix, "output"))
        return {}


class PreviewImage(Node):
    """Show images without keeping them: PNGs in the engine's temp folder."""

    category = "image"
    output_node = True
    inputs = (Input("image", T.IMAGE),)

    def execute(self, ctx, image):
        folder = Path(ctx.runtime.home) / "temp" / ctx.run_id
        ctx.add_result(images=write_pngs(ctx, image, folder, f"preview_{ctx.node_id}", "temp"))
        return {}


#: ComfyUI's SaveAnimatedWEBP methods: PIL's WEBP ``method`` (effort 0..6).
WEBP_METHODS = {"default": 4, "fastest": 0, "slowest": 6}


class SaveAnimatedWEBP(Node):
    """Save the images as the frames of one animated WEBP (a decoded video's frames),
    never overwriting, with the workflow in its EXIF (as ComfyUI's node)."""

    category = "image/animation"
    output_node = True
    inputs = (
        Input("image", T.IMAGE),
        Input("filename_prefix", T.STRING, default="lcmgraph"),
        Input("fps", T.FLOAT, default=6.0, min=0.01, max=1000.0, step=0.01, description="playback frames per second"),
        Input("lossless", T.BOOLEAN, default=True),
        Input("quality", T.INT, default=80, min=0, max=100),
        Input("method", T.ENUM, choices=tuple(WEBP_METHODS), default="default",
              description="encoder effort (PIL's method 4 / 0 / 6)"),
    )
    batch_inputs = ("filename_prefix",)

    def execute(self, ctx, image, filename_prefix, fps, lossless, quality, method):
        ctx.add_result(images=[write_animation(ctx, image, Path(ctx.output_dir), filename_prefix, "output", "webp",
                                               fps, lossless=bool(lossless), quality=int(quality),
                                               method=WEBP_METHODS[method])])
        return {}


class SaveAnimatedPNG(Node):
    """Save the images as the frames of one animated PNG (APNG), with the workflow embedded."""

    category = "image/animation"
    output_node = True
    inputs = (
        Input("image", T.IMAGE),
        Input("filename_prefix", T.STRING, default="lcmgraph"),
        Input("fps", T.FLOAT, default=6.0, min=0.01, max=1000.0, step=0.01, description="playback frames per second"),
        Input("compress_level", T.INT, default=4, min=0, max=9),
    )
    batch_inputs = ("filename_prefix",)

    def execute(self, ctx, image, filename_prefix, fps, compress_level):
        ctx.add_result(images=[write_animation(ctx, image, Path(ctx.output_dir), filename_prefix, "output", "png",
                                               fps, compress_level=int(compress_level))])
        return {}

NODES = [LoadImage, SaveImage, PreviewImage, SaveAnimatedWEBP, SaveAnimatedPNG]
