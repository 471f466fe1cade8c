"""ComfyUI_IPAdapter_plus's PrepImageForClipVision: a reference image cut (or
zero-padded) to a square, resized to 224x224 by PIL with the chosen filter,
optionally sharpened by contrast-adaptive sharpening (AMD FidelityFX CAS as
the pack writes it). As the pack does, the image passes through 8-bit PIL
images on the way (truncated, as torchvision's ToPILImage truncates)."""

from __future__ import annotations

from lcmgraph import Input, Node, Output
from lcmgraph import types as T

from .ops import sizes

FILTERS = ("LANCZOS", "BICUBIC", "HAMMING", "BILINEAR", "BOX", "NEAREST")
POSITIONS = ("top", "bottom", "left", "right", "center", "pad")
SIZE = 224


def square(images, position: str):
    """``[B, C, H, W]`` cut to its short side at ``position``, or zero-padded to its long side ("pad")."""
    import torch.nn.functional as F

    _, _, height, width = images.shape
    if position == "pad":
        if height > width:
            side = (height - width) // 2
            return F.pad(images, (side, side, 0, 0))
        if width > height:
            side = (width - height) // 2
            return F.pad(images, (0, 0, side, side))
        return images
    crop = min(height, width)
    x, y = (width - crop) // 2, (height - crop) // 2
    if position == "top":
        y = 0
    elif position == "bottom":
        y = height - crop
    elif position == "left":
        x = 0
    elif position == "right":
        x = width - crop
    return images[:, :, y:y + crop, x:x + crop]


def contrast_adaptive_sharpening(images, amount: float):
    """CAS on ``[B, C, H, W]`` in 0..1: each pixel pulled away from its 4 neighbours by a
    weight that shrinks where the 3x3 neighbourhood already has contrast."""
    import torch
    import torch.nn.functional as F

    padded = F.pad(images, (1, 1, 1, 1))
    at = lambda dy, dx: padded[..., 1 + dy:padded.shape[-2] - 1 + dy, 1 + dx:padded.shape[-1] - 1 + dx]  # noqa: E731
    a, b, c = at(-1, -1), at(-1, 0), at(-1, 1)
    d, e, f = at(0, -1), at(0, 0), at(0, 1)
    g, h, i = at(1, -1), at(1, 0), at(1, 1)
    cross = torch.stack((b, d, e, f, h))
    diag = torch.stack((a, c, g, i))
    low = cross.min(0)[0].clamp(min=0) + diag.min(0)[0].clamp(min=0)
    high = cross.max(0)[0].clamp(max=1) + diag.max(0)[0].clamp(max=1)
    amp = torch.sqrt(torch.reciprocal(high) * torch.minimum(low, 2 - high))
    w = -amp * (amount * (1 / 5 - 1 / 8) + 1 / 8)
    out = ((b + d + f + h) * w + e) * torch.reciprocal(1 + 4 * w)
    return torch.nan_to_num(out).clamp(0, 1)


class PrepImageForClipVision(Node):
    """Prepare a reference image for a CLIP vision model (IP-Adapter): square crop at
    crop_position (or pad), 224x224 with a PIL filter, optional sharpening."""

    category = "ipadapter"
    inputs = (
        Input("image", T.IMAGE),
        Input("interpolation", T.ENUM, choices=FILTERS, default="LANCZOS"),
        Input("crop_position", T.ENUM, choices=POSITIONS, default="center"),
        Input("sharpening", T.FLOAT, default=0.0, min=0.0, max=1.0, step=0.05),
    )
    outputs = (Output("image", T.IMAGE),)

    def execute(self, ctx, image, interpolation, crop_position, sharpening):
        import numpy as np
        import torch
        from PIL import Image

        squared = square(image[..., :3].movedim(-1, 1), crop_position)
        out = []
        for picture in squared:
            pixels = (picture.movedim(0, -1) * 255).to(torch.uint8).numpy()  # ToPILImage: mul(255).byte()
            resized = Image.fromarray(pixels).resize((SIZE, SIZE), resample=Image.Resampling[interpolation])
            out.append(torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0).movedim(-1, 0))
        result = torch.stack(out)
        if sharpening > 0:
            result = contrast_adaptive_sharpening(result, sharpening)
        return {"image": result.movedim(1, -1).contiguous()}

    @classmethod
    def estimate(cls, ctx, literals, upstream):
        size = sizes.upstream_size(upstream, "image")
        if size is None:
            return None
        return sizes.sized("image", sizes.Size(size.batch, SIZE, SIZE), "a CLIP vision image", None)


NODES = [PrepImageForClipVision]
