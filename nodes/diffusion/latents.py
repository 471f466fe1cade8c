"""LATENT nodes as ComfyUI computes them: upscale (to a size or by a factor),
composite, blend, crop, flip, rotate, and picking or repeating batch images.

Sizes and positions are given in image pixels and act on latent cells of 8
pixels (x // 8), as in ComfyUI. lcmgraph's latents are scaled by the VAE's
factor and ComfyUI's are not; every operation here is linear in the values
(bislerp scales with them), so both give the same latent. ``batch_index``
(which images of the original batch these are) travels as in ComfyUI.

A noise mask (SetLatentNoiseMask) travels too: resizes, composites and blends
keep it as it is (it is resized to the latent when sampling, as in ComfyUI);
picking and repeating batch images pick and repeat its images; flips,
rotations and crops, which ComfyUI leaves the mask out of, flip, rotate and
crop it with the latent so that it still covers the same content.
"""

from __future__ import annotations

from dataclasses import replace

from lcmgraph_nodes.image.ops.resample import CROPS, LATENT_METHODS, resize, scaled

from lcmgraph import Input, Node, Output
from lcmgraph import types as T
from lcmgraph.budget import Estimate

from .models import costs
from .models.values import Latent

MAX_RESOLUTION = 16384  # ComfyUI's widget limit; a server's --max-pixels sets the real one
CELL = 8
_PIXELS = dict(min=0, max=MAX_RESOLUTION, step=8)
_METHOD = dict(choices=LATENT_METHODS, default="nearest-exact")


def _mask_batch(latent: Latent):
    """The noise mask with one image per latent image (None stays None; one mask for all stays one)."""
    mask = latent.noise_mask
    batch = latent.samples.shape[0]
    if mask is None or mask.shape[0] in (1, batch):
        return mask
    return mask.repeat(-(-batch // mask.shape[0]), 1, 1, 1)[:batch]


def _size(upstream, name: str = "latent") -> costs.Size | None:
    size = upstream.get(name)
    return size if isinstance(size, costs.Size) else None


def _cells(size: costs.Size) -> tuple[int, int]:
    return size.width // CELL, size.height // CELL


def _latent_size(batch: int, cells_w: int, cells_h: int) -> costs.Size:
    return costs.Size(batch, cells_h * CELL, cells_w * CELL)


def _same(upstream, name: str = "latent") -> Estimate | None:
    size = _size(upstream, name)
    return Estimate({"latent": size}) if size is not None else None


def _resized(size: costs.Size, cells_w: int, cells_h: int, input_name: str) -> Estimate:
    out = _latent_size(size.batch, cells_w, cells_h)
    return Estimate({"latent": out}, (costs.pixels(out, "an upscaled latent", input_name),))


def upscale_cells(cells_w: int, cells_h: int, width: int, height: int) -> tuple[int, int] | None:
    """LatentUpscale's target in cells (None: both 0, the latent passes through).
    A side of 0 follows the other; each side is at least 64 pixels."""
    if width == 0 and height == 0:
        return None
    if width == 0:
        height = max(64, height)
        width = max(64, round(cells_w * height / cells_h))
    elif height == 0:
        width = max(64, width)
        height = max(64, round(cells_h * width / cells_w))
    else:
        width, height = max(64, width), max(64, height)
    return width // CELL, height // CELL


class LatentUpscale(Node):
    """Resize latents to width x height pixels (latent cells of 8). A side of 0
    follows the other (aspect ratio kept), both 0 passes the latent through;
    sides are at least 64. crop "center" first cuts to the new aspect ratio.
    bislerp interpolates the channel vectors spherically."""

    category = "latent"
    inputs = (
        Input("latent", T.LATENT),
        Input("upscale_method", T.ENUM, **_METHOD),
        Input("width", T.INT, default=512, **_PIXELS, description="pixels; 0 keeps the aspect ratio"),
        Input("height", T.INT, default=512, **_PIXELS, description="pixels; 0 keeps the aspect ratio"),
        Input("crop", T.ENUM, choices=CROPS, default="disabled"),
    )
    outputs = (Output("latent", T.LATENT),)

    def execute(self, ctx, latent: Latent, upscale_method, width, height, crop):
        samples = latent.samples
        target = upscale_cells(samples.shape[3], samples.shape[2], width, height)
        if target is None:
            return {"latent": latent}
        return {"latent": replace(latent, samples=resize(samples, *target, upscale_method, crop))}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = _size(upstream)
        width, height = literals["width"], literals["height"]
        if width == 0 and height == 0:
            return _same(upstream)
        if size is None:  # the batch is unknown, and so is a side of 0; the rest limits anyway
            if width == 0 or height == 0:
                return None
            out = _latent_size(1, *upscale_cells(1, 1, width, height))
            return Estimate({}, (costs.pixels(out, "an upscaled latent", "width"),))
        return _resized(size, *upscale_cells(*_cells(size), width, height), "width")


class LatentUpscaleBy(Node):
    """Resize latents by a factor (each side's cells rounded)."""

    category = "latent"
    inputs = (
        Input("latent", T.LATENT),
        Input("upscale_method", T.ENUM, **_METHOD),
        Input("scale_by", T.FLOAT, default=1.5, min=0.01, max=8.0, step=0.01),
    )
    outputs = (Output("latent", T.LATENT),)

    def execute(self, ctx, latent: Latent, upscale_method, scale_by):
        samples = latent.samples
        width, height = scaled(samples.shape[3], samples.shape[2], scale_by)
        return {"latent": replace(latent, samples=resize(samples, width, height, upscale_method))}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = _size(upstream)
        if size is None:
            return None
        return _resized(size, *scaled(*_cells(size), literals["scale_by"]), "scale_by")


def _region(to_shape, from_shape, x: int, y: int) -> tuple[int, int] | None:
    """(height, width) of the part of ``from`` pasted at cell (x, y) of ``to``, or
    None when (x, y) lies past ``to``'s edge."""
    to_h, to_w = to_shape[-2:]
    if x >= to_w or y >= to_h:
        return None
    return min(from_shape[-2], to_h - y), min(from_shape[-1], to_w - x)


def _batches(to, source, what: str):
    if source.shape[0] not in (1, to.shape[0]):
        raise ValueError(f"a batch of {source.shape[0]} {what} does not fit a batch of {to.shape[0]}")


class LatentComposite(Node):
    """Paste ``latent_from`` into ``latent_to`` with its top-left corner at
    (x, y) pixels (cells of 8); the part past the edge is dropped. feather
    (pixels) fades the pasted edges that lie inside ``latent_to`` linearly
    over feather / 8 cells."""

    category = "latent"
    inputs = (
        Input("latent_to", T.LATENT),
        Input("latent_from", T.LATENT),
        Input("x", T.INT, default=0, **_PIXELS),
        Input("y", T.INT, default=0, **_PIXELS),
        Input("feather", T.INT, default=0, **_PIXELS),
    )
    outputs = (Output("latent", T.LATENT),)

    def execute(self, ctx, latent_to: Latent, latent_from: Latent, x, y, feather):
        import torch

        x, y, feather = x // CELL, y // CELL, feather // CELL
        to, source = latent_to.samples, latent_from.samples
        out = to.clone()
        region = _region(to.shape, source.shape, x, y)
        if region is not None:
            _batches(to, source, "latents to paste")
            h, w = region
            source = source[:, :, :h, :w]
            if feather == 0:
                out[:, :, y:y + h, x:x + w] = source
            else:
                mask = torch.ones_like(source)
                for t in range(feather):
                    fade = (1.0 / feather) * (t + 1)
                    if y != 0:
                        mask[:, :, t:t + 1, :] *= fade
                    if y + h < to.shape[2]:
                        mask[:, :, h - 1 - t:h - t, :] *= fade
                    if x != 0:
                        mask[:, :, :, t:t + 1] *= fade
                    if x + w < to.shape[3]:
                        mask[:, :, :, w - 1 - t:w - t] *= fade
                out[:, :, y:y + h, x:x + w] = source * mask + out[:, :, y:y + h, x:x + w] * (torch.ones_like(mask) - mask)
        return {"latent": replace(latent_to, samples=out)}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return _same(upstream, "latent_to")


class LatentBlend(Node):
    """latent1 x blend_factor + latent2 x (1 - blend_factor); latent2 is first
    resized (bicubic, centre crop) to latent1's size when they differ."""

    category = "latent"
    inputs = (
        Input("latent1", T.LATENT),
        Input("latent2", T.LATENT),
        Input("blend_factor", T.FLOAT, default=0.5, min=0.0, max=1.0, step=0.01),
    )
    outputs = (Output("latent", T.LATENT),)

    def execute(self, ctx, latent1: Latent, latent2: Latent, blend_factor):
        first, second = latent1.samples, latent2.samples
        if first.shape != second.shape:
            second = resize(second, first.shape[3], first.shape[2], "bicubic", "center")
        return {"latent": replace(latent1, samples=first * blend_factor + second * (1 - blend_factor))}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return _same(upstream, "latent1")


class LatentFromBatch(Node):
    """``length`` images of a latent batch from ``batch_index`` on (both kept
    inside the batch). They remember which images they were, so a sampler
    can give them the noise they had in the whole batch."""

    category = "latent/batch"
    version = 2  # carries the noise mask
    inputs = (
        Input("latent", T.LATENT),
        Input("batch_index", T.INT, default=0, min=0, max=63),
        Input("length", T.INT, default=1, min=1, max=64),
    )
    outputs = (Output("latent", T.LATENT),)

    @staticmethod
    def span(batch: int, batch_index: int, length: int) -> tuple[int, int]:
        start = min(batch - 1, batch_index)
        return start, min(batch - start, length)

    def execute(self, ctx, latent: Latent, batch_index, length):
        samples = latent.samples
        start, length = self.span(samples.shape[0], batch_index, length)
        if latent.batch_index is None:
            indices = tuple(range(start, start + length))
        else:
            indices = tuple(latent.batch_index[start:start + length])
        mask = _mask_batch(latent)
        if mask is not None and mask.shape[0] > 1:
            mask = mask[start:start + length].clone()
        return {"latent": replace(latent, samples=samples[start:start + length].clone(), batch_index=indices,
                                  noise_mask=mask)}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = _size(upstream)
        if size is None:
            return None
        _, length = cls.span(size.batch, literals["batch_index"], literals["length"])
        return Estimate({"latent": costs.Size(length, size.height, size.width)})


class RepeatLatentBatch(Node):
    """The latent batch repeated ``amount`` times (batch_index continues past
    the original images, as in ComfyUI)."""

    category = "latent/batch"
    version = 2  # carries the noise mask
    inputs = (Input("latent", T.LATENT), Input("amount", T.INT, default=1, min=1, max=64))
    outputs = (Output("latent", T.LATENT),)

    def execute(self, ctx, latent: Latent, amount):
        indices = latent.batch_index
        if indices is not None:
            offset = max(indices) - min(indices) + 1
            indices = tuple(indices) + tuple(x + i * offset for i in range(1, amount) for x in indices)
        mask = _mask_batch(latent)
        if mask is not None and mask.shape[0] > 1:
            mask = mask.repeat((amount, 1, 1, 1))
        return {"latent": replace(latent, samples=latent.samples.repeat((amount, 1, 1, 1)), batch_index=indices,
                                  noise_mask=mask)}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = _size(upstream)
        if size is None:
            return None
        out = costs.Size(size.batch * literals["amount"], size.height, size.width)
        return Estimate({"latent": out}, (costs.batch(out, "amount"),))


FLIPS = ("x-axis: vertically", "y-axis: horizontally")
ROTATIONS = ("none", "90 degrees", "180 degrees", "270 degrees")


class LatentFlip(Node):
    """Mirror latents: "x-axis: vertically" flips top and bottom,
    "y-axis: horizontally" left and right."""

    category = "latent/transform"
    version = 2  # carries the noise mask
    inputs = (Input("latent", T.LATENT), Input("flip_method", T.ENUM, choices=FLIPS, default=FLIPS[0]))
    outputs = (Output("latent", T.LATENT),)

    def execute(self, ctx, latent: Latent, flip_method):
        import torch

        dim = 2 if flip_method.startswith("x") else 3
        mask = None if latent.noise_mask is None else torch.flip(latent.noise_mask, dims=[dim])
        return {"latent": replace(latent, samples=torch.flip(latent.samples, dims=[dim]), noise_mask=mask)}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return _same(upstream)


class LatentRotate(Node):
    """Rotate latents clockwise by a quarter turn, a half or three quarters."""

    category = "latent/transform"
    version = 2  # carries the noise mask
    inputs = (Input("latent", T.LATENT), Input("rotation", T.ENUM, choices=ROTATIONS, default="none"))
    outputs = (Output("latent", T.LATENT),)

    def execute(self, ctx, latent: Latent, rotation):
        import torch

        turns = ROTATIONS.index(rotation)
        mask = None if latent.noise_mask is None else torch.rot90(latent.noise_mask, k=turns, dims=[3, 2])
        return {"latent": replace(latent, samples=torch.rot90(latent.samples, k=turns, dims=[3, 2]), noise_mask=mask)}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = _size(upstream)
        if size is None or ROTATIONS.index(literals["rotation"]) % 2 == 0:
            return _same(upstream)
        return Estimate({"latent": costs.Size(size.batch, size.width, size.height)})


class LatentCrop(Node):
    """Cut width x height pixels at (x, y) out of latents (cells of 8). As in
    ComfyUI, x and y are kept at least 8 cells (64 pixels) from the far edge."""

    category = "latent/transform"
    version = 2  # carries the noise mask
    inputs = (
        Input("latent", T.LATENT),
        Input("width", T.INT, default=512, min=64, max=MAX_RESOLUTION, step=8),
        Input("height", T.INT, default=512, min=64, max=MAX_RESOLUTION, step=8),
        Input("x", T.INT, default=0, **_PIXELS),
        Input("y", T.INT, default=0, **_PIXELS),
    )
    outputs = (Output("latent", T.LATENT),)

    @staticmethod
    def box(cells_w: int, cells_h: int, width: int, height: int, x: int, y: int) -> tuple[slice, slice]:
        """(rows, columns) of the crop, as ComfyUI slices them."""
        x, y = min(x // CELL, cells_w - 8), min(y // CELL, cells_h - 8)
        return slice(y, y + height // CELL), slice(x, x + width // CELL)

    def execute(self, ctx, latent: Latent, width, height, x, y):
        samples = latent.samples
        rows, cols = self.box(samples.shape[3], samples.shape[2], width, height, x, y)
        mask = latent.noise_mask
        if mask is not None:  # the same part of the picture, at the mask's own resolution
            fy, fx = mask.shape[-2] / samples.shape[2], mask.shape[-1] / samples.shape[3]
            r = range(samples.shape[2])[rows]
            c = range(samples.shape[3])[cols]
            mask = mask[:, :, round(r.start * fy):round(r.stop * fy), round(c.start * fx):round(c.stop * fx)]
        return {"latent": replace(latent, samples=samples[:, :, rows, cols], noise_mask=mask)}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = _size(upstream)
        if size is None:
            return None
        cells_w, cells_h = _cells(size)
        rows, cols = cls.box(cells_w, cells_h, literals["width"], literals["height"], literals["x"], literals["y"])
        out_h, out_w = len(range(cells_h)[rows]), len(range(cells_w)[cols])
        return Estimate({"latent": _latent_size(size.batch, out_w, out_h)})


NODES = [LatentUpscale, LatentUpscaleBy, LatentComposite, LatentBlend, LatentFromBatch, RepeatLatentBatch,
         LatentFlip, LatentRotate, LatentCrop]
