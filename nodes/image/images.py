"""IMAGE nodes as ComfyUI computes them: resizing (ImageScale, ImageScaleBy,
ImageScaleToTotalPixels), ImageCrop, ImagePadForOutpaint, ImageInvert,
ImageBatch and EmptyImage. IMAGE is ``[B, H, W, C]`` float 0..1 on the CPU."""

from __future__ import annotations

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from .ops import sizes
from .ops.resample import CROPS, IMAGE_METHODS, keep_aspect, resize, scaled, total_pixels
from .ops.sizes import Size

MAX_RESOLUTION = 16384  # ComfyUI's widget limit; a server's --max-pixels sets the real one
_SIDE = dict(min=0, max=MAX_RESOLUTION, step=1)
_METHOD = dict(choices=IMAGE_METHODS, default="nearest-exact")


def resize_image(image, width: int, height: int, method: str, crop: str = "disabled"):
    """``[B,H,W,C]`` resized (channels moved to where torch resizes them and back)."""
    return resize(image.movedim(-1, 1), width, height, method, crop).movedim(1, -1)


def _resized(upstream, target, input_name: str):
    """The estimate of a resize to ``target(width, height)`` of the input image's size."""
    size = sizes.upstream_size(upstream, "image")
    if size is None:
        return None
    width, height = target(size.width, size.height)
    return sizes.sized("image", Size(size.batch, height, width), "a resized image", input_name)


class ImageScale(Node):
    """Resize images to width x height. A side of 0 follows the other (aspect
    ratio kept); both 0 passes the image through. crop "center" first cuts the
    image to the new aspect ratio."""

    category = "image/upscaling"
    inputs = (
        Input("image", T.IMAGE),
        Input("upscale_method", T.ENUM, **_METHOD),
        Input("width", T.INT, default=512, **_SIDE, description="pixels; 0 keeps the aspect ratio"),
        Input("height", T.INT, default=512, **_SIDE, description="pixels; 0 keeps the aspect ratio"),
        Input("crop", T.ENUM, choices=CROPS, default="disabled"),
    )
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, image, upscale_method, width, height, crop):
        if width == 0 and height == 0:
            return {"image": image}
        width, height = keep_aspect(image.shape[2], image.shape[1], width, height)
        return {"image": resize_image(image, width, height, upscale_method, crop)}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = sizes.upstream_size(upstream, "image")
        width, height = literals["width"], literals["height"]
        if width == 0 and height == 0:
            return sizes.same_size("image", upstream, "image")
        if width == 0 or height == 0:
            if size is None:
                return None
            width, height = keep_aspect(size.width, size.height, width, height)
        batch = size.batch if size is not None else 1
        return sizes.sized("image", Size(batch, height, width), "a resized image", "width")


class ImageScaleBy(Node):
    """Resize images by a factor (each side rounded)."""

    category = "image/upscaling"
    inputs = (
        Input("image", T.IMAGE),
        Input("upscale_method", T.ENUM, **_METHOD),
        Input("scale_by", T.FLOAT, default=1.0, min=0.01, max=8.0, step=0.01),
    )
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, image, upscale_method, scale_by):
        width, height = scaled(image.shape[2], image.shape[1], scale_by)
        return {"image": resize_image(image, width, height, upscale_method)}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return _resized(upstream, lambda w, h: scaled(w, h, literals["scale_by"]), "scale_by")


class ImageScaleToTotalPixels(Node):
    """Resize images to about ``megapixels`` x 1024 x 1024 pixels, keeping the
    aspect ratio; each side is rounded to a multiple of ``resolution_steps``."""

    category = "image/upscaling"
    inputs = (
        Input("image", T.IMAGE),
        Input("upscale_method", T.ENUM, **_METHOD),
        Input("megapixels", T.FLOAT, default=1.0, min=0.01, max=16.0, step=0.01),
        Input("resolution_steps", T.INT, default=1, min=1, max=256, description="round each side to a multiple of this"),
    )
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, image, upscale_method, megapixels, resolution_steps):
        width, height = total_pixels(image.shape[2], image.shape[1], megapixels, resolution_steps)
        return {"image": resize_image(image, width, height, upscale_method)}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return _resized(upstream, lambda w, h: total_pixels(w, h, literals["megapixels"], literals["resolution_steps"]),
                        "megapixels")


class ImageCrop(Node):
    """Cut a width x height rectangle at (x, y) out of each image; it ends at
    the image's edge, and x / y past the edge move to its last column / row."""

    category = "image/transform"
    inputs = (
        Input("image", T.IMAGE),
        Input("width", T.INT, default=512, min=1, max=MAX_RESOLUTION),
        Input("height", T.INT, default=512, min=1, max=MAX_RESOLUTION),
        Input("x", T.INT, default=0, min=0, max=MAX_RESOLUTION),
        Input("y", T.INT, default=0, min=0, max=MAX_RESOLUTION),
    )
    outputs = (Output("image", T.IMAGE),)

    @staticmethod
    def box(image_w: int, image_h: int, width: int, height: int, x: int, y: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the crop, inside the image."""
        x, y = min(x, image_w - 1), min(y, image_h - 1)
        return x, y, min(x + width, image_w), min(y + height, image_h)

    def execute(self, ctx, image, width, height, x, y):
        left, top, right, bottom = self.box(image.shape[2], image.shape[1], width, height, x, y)
        return {"image": image[:, top:bottom, left:right, :]}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = sizes.upstream_size(upstream, "image")
        if size is None:
            return None
        left, top, right, bottom = cls.box(size.width, size.height, literals["width"], literals["height"],
                                           literals["x"], literals["y"])
        return sizes.Estimate({"image": Size(size.batch, bottom - top, right - left)})


class ImagePadForOutpaint(Node):
    """Pad images with grey (0.5) on each side, and make the outpainting mask:
    1 over the new border, and inside the old image a ramp over the last
    ``feathering`` pixels toward each padded side (((f - d) / f)^2 at distance
    d from it), as ComfyUI does when 2 x feathering fits in the image."""

    category = "image"
    inputs = (
        Input("image", T.IMAGE),
        Input("left", T.INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
        Input("top", T.INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
        Input("right", T.INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
        Input("bottom", T.INT, default=0, min=0, max=MAX_RESOLUTION, step=8),
        Input("feathering", T.INT, default=40, min=0, max=MAX_RESOLUTION),
    )
    outputs = (Output("image", T.IMAGE), Output("mask", T.MASK))

    def execute(self, ctx, image, left, top, right, bottom, feathering):
        import torch

        b, h, w, c = image.shape
        padded = torch.full((b, h + top + bottom, w + left + right, c), 0.5, dtype=torch.float32)
        padded[:, top:top + h, left:left + w, :] = image
        mask = torch.ones((1, h + top + bottom, w + left + right), dtype=torch.float32)
        mask[0, top:top + h, left:left + w] = _outpaint_ramp(h, w, left, top, right, bottom, feathering)
        return {"image": padded, "mask": mask}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = sizes.upstream_size(upstream, "image")
        if size is None:
            return None
        grown = Size(size.batch, size.height + literals["top"] + literals["bottom"],
                     size.width + literals["left"] + literals["right"])
        estimate = sizes.sized("image", grown, "a padded image", "left")
        return sizes.Estimate({"image": grown, "mask": Size(1, grown.height, grown.width)}, estimate.usage)


def _outpaint_ramp(h: int, w: int, left: int, top: int, right: int, bottom: int, feathering: int):
    """The mask inside the old image: 0, rising toward the padded sides."""
    import torch

    ramp = torch.zeros((h, w), dtype=torch.float64)
    if not (feathering > 0 and feathering * 2 < h and feathering * 2 < w):
        return ramp.float()
    rows = torch.arange(h, dtype=torch.float64)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=torch.float64)[None, :].expand(h, w)
    # The distance to the nearest padded side (sides without padding do not
    # count: ComfyUI measures them as the image's size, never under the feathering).
    d = torch.full((h, w), float(h + w), dtype=torch.float64)
    for distance, padded in ((rows, top), (h - rows, bottom), (cols, left), (w - cols, right)):
        if padded:
            d = torch.minimum(d, distance)
    v = (feathering - d) / feathering
    ramp = torch.where(d < feathering, v * v, ramp)
    return ramp.float()


class ImageInvert(Node):
    """1 - image."""

    category = "image"
    inputs = (Input("image", T.IMAGE),)
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, image):
        return {"image": 1.0 - image}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        return sizes.same_size("image", upstream, "image")


class ImageBatch(Node):
    """Two image batches as one; image2 is first resized (bilinear, centre crop)
    to image1's size when they differ."""

    category = "image"
    inputs = (Input("image1", T.IMAGE), Input("image2", T.IMAGE))
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, image1, image2):
        import torch

        if image1.shape[3] != image2.shape[3]:
            raise ValueError(f"image1 has {image1.shape[3]} channels and image2 {image2.shape[3]}")
        if image1.shape[1:] != image2.shape[1:]:
            image2 = resize_image(image2, image1.shape[2], image1.shape[1], "bilinear", "center")
        return {"image": torch.cat((image1, image2), dim=0)}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        first, second = sizes.upstream_size(upstream, "image1"), sizes.upstream_size(upstream, "image2")
        if first is None or second is None:
            return None
        size = Size(first.batch + second.batch, first.height, first.width)
        return sizes.Estimate({"image": size}, (sizes.batch(size, "image2"),))


class EmptyImage(Node):
    """Images of one colour (0xRRGGBB)."""

    category = "image"
    inputs = (
        Input("width", T.INT, default=512, min=1, max=MAX_RESOLUTION),
        Input("height", T.INT, default=512, min=1, max=MAX_RESOLUTION),
        Input("batch", T.INT, default=1, min=1, max=4096),
        Input("color", T.INT, default=0, min=0, max=0xFFFFFF, description="0xRRGGBB"),
    )
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, width, height, batch, color):
        import torch

        rgb = [((color >> shift) & 0xFF) / 0xFF for shift in (16, 8, 0)]
        return {"image": torch.tensor(rgb, dtype=torch.float32).expand(batch, height, width, 3).contiguous()}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = Size(literals["batch"], literals["height"], literals["width"])
        return sizes.sized("image", size, "an image", "width", batch_input="batch")


NODES = [ImageScale, ImageScaleBy, ImageScaleToTotalPixels, ImageCrop, ImagePadForOutpaint, ImageInvert, ImageBatch,
         EmptyImage]
