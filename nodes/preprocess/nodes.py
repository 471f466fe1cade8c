"""The preprocessor nodes. Each maps one ComfyUI class (comfy_map.py); inputs
keep that class's names, ranges and defaults."""

from __future__ import annotations

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from . import depth_anything, edges, lineart, tile, tones
from .pixels import to_image, to_uint8

#: controlnet_aux's resolution widget (create_node_input_types): the detect size's shorter side.
_RESOLUTION = Input("resolution", T.INT, default=512, min=64, max=16384, step=64,
                    description="the hint's shorter side in pixels (the hint comes out at that size)")


class Canny(Node):
    """ComfyUI's Canny node (kornia's canny): edges where the blurred image's
    gradient passes the thresholds (0..1 of the gradient magnitude), as white
    lines on black in all three channels."""

    category = "image/preprocessors"
    inputs = (
        Input("image", T.IMAGE),
        Input("low_threshold", T.FLOAT, default=0.4, min=0.01, max=0.99, step=0.01),
        Input("high_threshold", T.FLOAT, default=0.8, min=0.01, max=0.99, step=0.01),
    )
    outputs = (Output("image", T.IMAGE),)

    @classmethod
    def check_inputs(cls, literals):
        low, high = literals.get("low_threshold"), literals.get("high_threshold")
        if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
            return [("low_threshold", f"low_threshold {low} is above high_threshold {high}")]
        return []

    def execute(self, ctx, image, low_threshold, high_threshold):
        found = edges.kornia_canny(image, float(low_threshold), float(high_threshold))
        return {"image": found.unsqueeze(-1).repeat(1, 1, 1, 3)}


class CannyEdgePreprocessor(Node):
    """comfyui_controlnet_aux's Canny Edge: OpenCV's Canny on 0..255 gradients,
    at ``resolution`` (the shorter side), as white lines on black."""

    category = "image/preprocessors"
    inputs = (
        Input("image", T.IMAGE),
        Input("low_threshold", T.INT, default=100, min=0, max=255),
        Input("high_threshold", T.INT, default=200, min=0, max=255),
        _RESOLUTION,
    )
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, image, low_threshold, high_threshold, resolution):
        hints = [edges.aux_canny(to_uint8(one), low_threshold, high_threshold, resolution) for one in image]
        return {"image": to_image(hints)}


class TilePreprocessor(Node):
    """comfyui_controlnet_aux's Tile: the image blurred by shrinking it by
    2^pyrUp_iters and growing it back with Gaussian pyramid steps; sides
    rounded to multiples of 64."""

    category = "image/preprocessors"
    inputs = (
        Input("image", T.IMAGE),
        Input("pyrUp_iters", T.INT, default=3, min=1, max=10),
    )
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, image, pyrUp_iters):  # noqa: N803 - controlnet_aux's input name
        height, width = tile.tile_size(image.shape[1], image.shape[2])
        if min(height, width) < 2**pyrUp_iters:
            raise ValueError(f"the image ({image.shape[2]}x{image.shape[1]}) is too small for pyrUp_iters "
                             f"{pyrUp_iters}: its sides, rounded to multiples of 64, must be at least "
                             f"{2 ** pyrUp_iters} pixels")
        return {"image": to_image([tile.tile_blur(to_uint8(one), pyrUp_iters) for one in image])}


class BinaryPreprocessor(Node):
    """comfyui_controlnet_aux's Binary Lines: white where the grey image is
    brighter than ``bin_threshold`` (0 or 255: Otsu's threshold), black elsewhere."""

    category = "image/preprocessors"
    inputs = (
        Input("image", T.IMAGE),
        Input("bin_threshold", T.INT, default=100, min=0, max=255),
        _RESOLUTION,
    )
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, image, bin_threshold, resolution):
        return {"image": to_image([tones.binary(to_uint8(one), bin_threshold, resolution) for one in image])}


class ColorPreprocessor(Node):
    """comfyui_controlnet_aux's Color Pallete (T2I colour adapter): the image as
    blocks of 64x64 pixels of one colour, at ``resolution`` (the shorter side)."""

    category = "image/preprocessors"
    inputs = (Input("image", T.IMAGE), _RESOLUTION)
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, image, resolution):
        return {"image": to_image([tones.color(to_uint8(one), resolution) for one in image])}


class LineartStandardPreprocessor(Node):
    """comfyui_controlnet_aux's Standard Lineart (no model): how much darker each pixel is
    than its Gaussian blur, normalised by the median of the strong ones; white on black."""

    category = "preprocessors"
    inputs = (
        Input("image", T.IMAGE),
        # (the misspelling is controlnet_aux's widget name, which saved workflows carry)
        Input("guassian_sigma", T.FLOAT, default=6.0, min=0.0, max=100.0, step=0.01, description="blur sigma"),
        Input("intensity_threshold", T.INT, default=8, min=0, max=16),
        _RESOLUTION,
    )
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, image, guassian_sigma, intensity_threshold, resolution):
        return {"image": to_image([lineart.standard(to_uint8(one), guassian_sigma, intensity_threshold, resolution)
                                   for one in image])}


class LineArtPreprocessor(Node):
    """comfyui_controlnet_aux's Realistic Lineart: the informative-drawings generator
    (``sk_model.pth``, or ``sk_model2.pth`` when coarse, from lllyasviel/Annotators, in the
    annotators folder) at ``resolution``; white lines on black."""

    category = "preprocessors"
    inputs = (Input("image", T.IMAGE), Input("coarse", T.ENUM, choices=("disable", "enable"), default="disable"),
              _RESOLUTION)
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, image, coarse, resolution):
        name = lineart.FILES[coarse == "enable"]
        try:
            path = ctx.resolve_file(lineart.FOLDER, name)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"LineArtPreprocessor needs {name} (lllyasviel/Annotators on Hugging Face) in "
                                    f"the {lineart.FOLDER} model folder: {exc}") from exc
        net = lineart.load_generator(path)
        return {"image": to_image([lineart.realistic(to_uint8(one), net, resolution) for one in image])}


def _device(ctx) -> str:
    """The engine's device ("auto": CUDA where there is one); the networks run in float32."""
    requested = getattr(ctx, "device", "cpu") or "cpu"
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _depth_hints(node: str, version: int, ctx, image, ckpt_name: str, resolution: int):
    try:
        path = ctx.resolve_file(depth_anything.FOLDER, ckpt_name)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{node} needs {ckpt_name} ({depth_anything.WHERE[version]}) in the "
                                f"{depth_anything.FOLDER} model folder: {exc}") from exc
    model = depth_anything.load_model(path, version).to(_device(ctx))
    run = depth_anything.depth_v1 if version == 1 else depth_anything.depth_v2
    return {"image": to_image([run(to_uint8(one), model, resolution) for one in image])}


class DepthAnythingPreprocessor(Node):
    """comfyui_controlnet_aux's Depth Anything: relative depth (near is bright) from the
    Depth Anything V1 network (``depth_anything_vit{l,b,s}14.pth`` in the annotators
    folder), computed at 518 pixels and resized to ``resolution``."""

    category = "preprocessors"
    inputs = (Input("image", T.IMAGE),
              Input("ckpt_name", T.ENUM, choices=depth_anything.V1_FILES, default=depth_anything.V1_FILES[0]),
              _RESOLUTION)
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, image, ckpt_name, resolution):
        return _depth_hints("DepthAnythingPreprocessor", 1, ctx, image, ckpt_name, resolution)


class DepthAnythingV2Preprocessor(Node):
    """comfyui_controlnet_aux's Depth Anything V2 - Relative: relative depth (near is
    bright) from the Depth Anything V2 network (``depth_anything_v2_vit{l,b,s}.pth`` in the
    annotators folder), computed at 518 pixels, resized to ``resolution``."""

    category = "preprocessors"
    inputs = (Input("image", T.IMAGE),
              Input("ckpt_name", T.ENUM, choices=depth_anything.V2_FILES, default=depth_anything.V2_FILES[0]),
              _RESOLUTION)
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, image, ckpt_name, resolution):
        return _depth_hints("DepthAnythingV2Preprocessor", 2, ctx, image, ckpt_name, resolution)


NODES = [Canny, CannyEdgePreprocessor, TilePreprocessor, BinaryPreprocessor, ColorPreprocessor,
         LineartStandardPreprocessor, LineArtPreprocessor,
         DepthAnythingPreprocessor, DepthAnythingV2Preprocessor]
