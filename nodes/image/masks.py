"""MASK nodes as ComfyUI computes them. MASK is ``[B, H, W]`` float 0..1,
1 = the area to change (a PNG's transparent pixels)."""

from __future__ import annotations

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from .images import MAX_RESOLUTION
from .ops import sizes
from .ops.files import MASK_CHANNELS, open_image, open_limited, pil_to_mask
from .ops.sizes import Size

_EDGE = dict(default=0, min=0, max=MAX_RESOLUTION)


def as_batch(mask):
    """Any mask as ``[B, H, W]`` (ComfyUI's nodes accept ``[H, W]`` too)."""
    return mask.reshape((-1, mask.shape[-2], mask.shape[-1]))


class LoadImageMask(Node):
    """Load one channel of an input-folder image as a mask: red, green or blue
    as they are, alpha inverted (transparent = 1 = the area to change)."""

    category = "mask"
    inputs = (
        Input("image", T.STRING, folder="input", description="a file in the input folder, or builtin:NAME"),
        Input("channel", T.ENUM, choices=MASK_CHANNELS, default="alpha"),
    )
    outputs = (Output("mask", T.MASK),)

    def execute(self, ctx, image, channel):
        with open_limited(ctx, "input", image) as pil:
            pil.load()
            return {"mask": pil_to_mask(pil, channel)}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        # The header alone gives the size; open_image refuses what execute would refuse.
        with open_image(ctx.resolve_file("input", literals["image"]), literals["image"]) as pil:
            size = Size(1, pil.height, pil.width)
        return sizes.sized("mask", size, "an input image", "image")


class ImageToMask(Node):
    """One channel of images as a mask (alpha needs an RGBA image)."""

    category = "mask"
    inputs = (Input("image", T.IMAGE), Input("channel", T.ENUM, choices=("red", "green", "blue", "alpha"), default="red"))
    outputs = (Output("mask", T.MASK),)

    def execute(self, ctx, image, channel):
        index = ("red", "green", "blue", "alpha").index(channel)
        if index >= image.shape[-1]:
            raise ValueError(f"the image has {image.shape[-1]} channels, so no {channel} channel")
        return {"mask": image[:, :, :, index]}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return sizes.same_size("mask", upstream, "image")


class MaskToImage(Node):
    """Masks as grey images (the mask in all three channels)."""

    category = "mask"
    inputs = (Input("mask", T.MASK),)
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, mask):
        return {"image": as_batch(mask)[..., None].expand(-1, -1, -1, 3).contiguous()}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return sizes.same_size("image", upstream, "mask")


class InvertMask(Node):
    """1 - mask."""

    category = "mask"
    inputs = (Input("mask", T.MASK),)
    outputs = (Output("mask", T.MASK),)

    def execute(self, ctx, mask):
        return {"mask": 1.0 - mask}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return sizes.same_size("mask", upstream, "mask")


class SolidMask(Node):
    """A mask of one value."""

    category = "mask"
    inputs = (
        Input("value", T.FLOAT, default=1.0, min=0.0, max=1.0, step=0.01),
        Input("width", T.INT, default=512, min=1, max=MAX_RESOLUTION),
        Input("height", T.INT, default=512, min=1, max=MAX_RESOLUTION),
    )
    outputs = (Output("mask", T.MASK),)

    def execute(self, ctx, value, width, height):
        import torch

        return {"mask": torch.full((1, height, width), value, dtype=torch.float32)}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return sizes.sized("mask", Size(1, literals["height"], literals["width"]), "a mask", "width")


OPERATIONS = ("multiply", "add", "subtract", "and", "or", "xor")


class MaskComposite(Node):
    """Combine ``source`` into ``destination`` with its top-left corner at
    (x, y): multiply, add, subtract, or and / or / xor of the rounded masks;
    the part of the source past the destination's edge is dropped, and the
    result is clamped to 0..1."""

    category = "mask"
    inputs = (
        Input("destination", T.MASK),
        Input("source", T.MASK),
        Input("x", T.INT, **_EDGE),
        Input("y", T.INT, **_EDGE),
        Input("operation", T.ENUM, choices=OPERATIONS, default="multiply"),
    )
    outputs = (Output("mask", T.MASK),)

    def execute(self, ctx, destination, source, x, y, operation):
        import torch

        destination, source = as_batch(destination), as_batch(source)
        output = destination.clone()
        height, width = destination.shape[-2:]
        if x < width and y < height:
            right, bottom = min(x + source.shape[-1], width), min(y + source.shape[-2], height)
            if source.shape[0] not in (1, destination.shape[0]):
                raise ValueError(f"a batch of {source.shape[0]} source masks does not fit a batch of "
                                 f"{destination.shape[0]} destination masks")
            src = source[:, :bottom - y, :right - x]
            dst = destination[:, y:bottom, x:right]
            if operation == "multiply":
                out = dst * src
            elif operation == "add":
                out = dst + src
            elif operation == "subtract":
                out = dst - src
            else:
                logic = {"and": torch.bitwise_and, "or": torch.bitwise_or, "xor": torch.bitwise_xor}[operation]
                out = logic(dst.round().bool(), src.round().bool()).float()
            output[:, y:bottom, x:right] = out
        return {"mask": torch.clamp(output, 0.0, 1.0)}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return sizes.same_size("mask", upstream, "destination")


class GrowMask(Node):
    """Grow (expand > 0) or shrink (expand < 0) masks by one pixel per step:
    the greatest (or least) value in each pixel's 3x3 neighbourhood, the
    corners left out when tapered (scipy's grey dilation / erosion, edges
    repeated, as ComfyUI computes it)."""

    category = "mask"
    inputs = (
        Input("mask", T.MASK),
        Input("expand", T.INT, default=0, min=-MAX_RESOLUTION, max=MAX_RESOLUTION),
        Input("tapered_corners", T.BOOLEAN, default=True),
    )
    outputs = (Output("mask", T.MASK),)

    def execute(self, ctx, mask, expand, tapered_corners):
        import torch
        import torch.nn.functional as F

        out = as_batch(mask)
        offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                   if not (tapered_corners and dy and dx)]
        pick = torch.amax if expand > 0 else torch.amin
        h, w = out.shape[-2:]
        for _ in range(abs(expand)):
            padded = F.pad(out[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
            shifted = torch.stack([padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in offsets])
            grown = pick(shifted, dim=0)
            if torch.equal(grown, out):
                break  # a fixed point: more steps change nothing
            out = grown
        return {"mask": out}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return sizes.same_size("mask", upstream, "mask")


class FeatherMask(Node):
    """Fade masks toward their edges over left/top/right/bottom pixels: the
    n-th pixel from the edge multiplied by n / width of the fade. As in
    ComfyUI, the right and bottom fades start at index 0 (-0), so they dim
    the first column / row once and stop one pixel short of the edge."""

    category = "mask"
    inputs = (
        Input("mask", T.MASK),
        Input("left", T.INT, **_EDGE),
        Input("top", T.INT, **_EDGE),
        Input("right", T.INT, **_EDGE),
        Input("bottom", T.INT, **_EDGE),
    )
    outputs = (Output("mask", T.MASK),)

    def execute(self, ctx, mask, left, top, right, bottom):
        out = as_batch(mask).clone()
        height, width = out.shape[-2:]
        left, right, top, bottom = min(left, width), min(right, width), min(top, height), min(bottom, height)
        # Column by column in ComfyUI's order, so each pixel is rounded as there.
        for i in range(left):
            out[:, :, i] *= (i + 1.0) / left
        for i in range(right):
            out[:, :, -i] *= (i + 1) / right
        for i in range(top):
            out[:, i, :] *= (i + 1) / top
        for i in range(bottom):
            out[:, -i, :] *= (i + 1) / bottom
        return {"mask": out}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return sizes.same_size("mask", upstream, "mask")


NODES = [LoadImageMask, ImageToMask, MaskToImage, InvertMask, SolidMask, MaskComposite, GrowMask, FeatherMask]
