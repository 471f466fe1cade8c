"""Input images: opened only as the formats an input image needs, with the
size checked from the header before a pixel is decoded, and turned into
IMAGE / MASK tensors. LoadImage (diffusion pack) and LoadImageMask (image
pack) both read through here."""

from __future__ import annotations

#: What the loaders open, whatever the file is called: PIL knows dozens of
#: formats (some with decoders that were exploitable); an input image needs these.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
#: Default decode limits (the server passes its own upload limits as engine options).
MAX_IMAGE_PIXELS = 40_000_000
MAX_IMAGE_SIDE = 16384


class ImageRefused(ValueError):
    """An input image that is not one of the formats read, or too large to decode."""


def open_image(path, name: str, max_pixels: int = MAX_IMAGE_PIXELS, max_side: int = MAX_IMAGE_SIDE):
    """Open ``path`` (header only) as one of IMAGE_FORMATS and check its size
    before any pixel is decoded. ``name`` is what messages call it."""
    from PIL import Image, UnidentifiedImageError

    try:
        pil = Image.open(path, formats=IMAGE_FORMATS)
    except UnidentifiedImageError:
        raise ImageRefused(f"{name!r} is not a {', '.join(IMAGE_FORMATS)} image") from None
    except Image.DecompressionBombError as exc:
        raise ImageRefused(f"{name!r} is too large to decode: {exc}") from None
    width, height = pil.size
    if width * height > max_pixels or max(width, height) > max_side:
        pil.close()
        raise ImageRefused(f"{name!r} is {width}x{height}, larger than the {max_pixels:,}-pixel "
                           f"(at most {max_side} per side) limit for input images")
    return pil


def open_limited(ctx, folder: str, name: str):
    """``open_image`` on an input-folder file with the engine's limits (server options)."""
    options = ctx.runtime.options
    return open_image(ctx.resolve_file(folder, name), name, options.get("max_image_pixels", MAX_IMAGE_PIXELS),
                      options.get("max_image_side", MAX_IMAGE_SIDE))


def pil_to_image(pil):
    """PIL -> (IMAGE [1,H,W,3] 0..1, MASK [1,H,W] with 1 where transparent)."""
    import numpy as np
    import torch
    from PIL import ImageOps

    pil = ImageOps.exif_transpose(pil)
    rgb = torch.from_numpy(np.asarray(pil.convert("RGB"), dtype=np.float32) / 255.0)[None]
    if "A" in pil.getbands():
        alpha = torch.from_numpy(np.asarray(pil.getchannel("A"), dtype=np.float32) / 255.0)
        mask = 1.0 - alpha
    else:
        mask = torch.zeros(rgb.shape[1], rgb.shape[2])
    return rgb, mask[None]


#: LoadImageMask's channels, as ComfyUI names them.
MASK_CHANNELS = ("alpha", "red", "green", "blue")


def pil_to_mask(pil, channel: str):
    """One channel of a picture as a MASK ``[1,H,W]``, as ComfyUI's LoadImageMask
    reads it: the picture as RGBA (32-bit integer pictures scaled by 1/255
    first), the channel / 255, and alpha inverted (1 = transparent = to change)."""
    import numpy as np
    import torch
    from PIL import ImageOps

    if channel not in MASK_CHANNELS:
        raise ValueError(f"channel {channel!r} is not one of {', '.join(MASK_CHANNELS)}")
    pil = ImageOps.exif_transpose(pil)
    if pil.getbands() != ("R", "G", "B", "A"):
        if pil.mode == "I":
            pil = pil.point(lambda v: v * (1 / 255))
        pil = pil.convert("RGBA")
    band = channel[0].upper()
    mask = torch.from_numpy(np.asarray(pil.getchannel(band), dtype=np.float32) / 255.0)
    if band == "A":
        mask = 1.0 - mask
    return mask[None]
