"""Image decoding under per-request limits: uploads, thumbnails, previews.

PIL's global ``Image.MAX_IMAGE_PIXELS`` is left alone; each decode checks
the size the header declares against the limits it is given before any pixel
is decoded, and only formats named here are ever opened.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import bad_request, too_large

UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
#: Text chunks kept when re-encoding an upload (an lcmgraph PNG keeps its workflow).
KEPT_TEXT = ("lcmgraph.workflow", "lcmgraph.parameters")
MAX_KEPT_TEXT = 1024 * 1024


@dataclass(frozen=True)
class PixelLimits:
    max_pixels: int
    max_side: int


@dataclass(frozen=True)
class Reencoded:
    png: bytes
    width: int
    height: int
    source_format: str


def open_checked(data: bytes | Path, limits: PixelLimits, what: str, formats=UPLOAD_FORMATS):
    from PIL import Image, UnidentifiedImageError

    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        image = Image.open(source, formats=list(formats))
    except UnidentifiedImageError:
        raise bad_request(f"{what} is not an image in a supported format ({', '.join(formats)})",
                          code="not_an_image") from None
    except Image.DecompressionBombError as exc:  # past PIL's own global ceiling: refused before ours
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{found.group(1)} pixels" if found else "too many pixels"
        raise too_large(f"{what} is {size}; the limits are {limits.max_pixels} pixels and "
                        f"{limits.max_side} pixels a side", code="image_too_large",
                        max_pixels=limits.max_pixels, max_side=limits.max_side) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise bad_request(f"{what} could not be read as an image: {exc}", code="not_an_image") from None
    width, height = image.size
    if width < 1 or height < 1:
        image.close()
        raise bad_request(f"{what} has an empty size {width}x{height}", code="not_an_image")
    if width > limits.max_side or height > limits.max_side or width * height > limits.max_pixels:
        image.close()
        raise too_large(f"{what} is {width}x{height} = {width * height} pixels; the limits are "
                        f"{limits.max_pixels} pixels and {limits.max_side} pixels a side",
                        code="image_too_large", max_pixels=limits.max_pixels, max_side=limits.max_side)
    return image


def reencode_upload(data: bytes, limits: PixelLimits, what: str) -> Reencoded:
    """Decode untrusted bytes fully and re-encode as PNG (first frame only)."""
    from PIL.PngImagePlugin import PngInfo

    image = open_checked(data, limits, what)
    try:
        source_format = image.format or "?"
        try:
            image.seek(0)
            image.load()
        except Exception as exc:  # noqa: BLE001 - truncated or corrupt data, in any decoder
            raise bad_request(f"{what} is damaged and could not be decoded: {exc}", code="not_an_image") from None
        if image.size[0] * image.size[1] > limits.max_pixels:  # a decoder that changed size while loading
            raise too_large(f"{what} decodes to more than {limits.max_pixels} pixels", code="image_too_large")
        info = PngInfo()
        for key in KEPT_TEXT:
            text = (getattr(image, "text", None) or {}).get(key) if source_format == "PNG" else None
            if isinstance(text, str) and len(text) <= MAX_KEPT_TEXT and _is_json(text):
                info.add_itxt(key, text, zip=True)
        converted = _png_mode(image)
        out = io.BytesIO()
        converted.save(out, format="PNG", pnginfo=info, compress_level=4)
        return Reencoded(out.getvalue(), image.size[0], image.size[1], source_format)
    finally:
        image.close()


def with_mask_alpha(original: Path, mask: bytes, limits: PixelLimits, what: str, *,
                    require_alpha: bool) -> Reencoded:
    """``original``'s pixels with ``mask``'s alpha channel as their alpha, as a PNG (the
    original's text chunks kept, bounded).

    The editor's mask painter (``POST /api/upload`` with ``mask_of``, which requires an
    alpha channel) and ComfyUI's ``/upload/mask`` (where a mask without one is opaque)
    send only the mask: a browser canvas premultiplies alpha, so the colour of every
    fully transparent pixel it exported would be lost. LoadImage reads the result's
    mask as 1 - alpha: painted (transparent) pixels are the ones to repaint."""
    from PIL.PngImagePlugin import PngInfo

    base = open_checked(original, limits, f"the original of {what}")
    overlay = open_checked(mask, limits, what)
    try:
        try:
            base.load()
            overlay.seek(0)
            overlay.load()
        except Exception as exc:  # noqa: BLE001 - damaged data, in any decoder
            raise bad_request(f"{what} could not be decoded: {exc}", code="not_an_image") from None
        if overlay.size != base.size:
            raise bad_request(f"{what} is {overlay.size[0]}x{overlay.size[1]} but the image it masks is "
                              f"{base.size[0]}x{base.size[1]}; paint the mask at the image's size",
                              code="size_mismatch")
        has_alpha = "A" in overlay.getbands() or (overlay.mode == "P" and "transparency" in overlay.info)
        if require_alpha and not has_alpha:
            raise bad_request(f"{what} has no alpha channel: the mask is the image's alpha (0 = repaint)",
                              code="invalid_field", field="image")
        info, kept = PngInfo(), 0
        for key, value in (getattr(base, "text", None) or {}).items():
            if isinstance(value, str) and kept + len(value) <= MAX_KEPT_TEXT:
                info.add_itxt(key, value, zip=True)
                kept += len(value)
        combined = base.convert("RGB")
        combined.putalpha(overlay.convert("RGBA").getchannel("A"))
        out = io.BytesIO()
        combined.save(out, format="PNG", pnginfo=info, compress_level=4)
        return Reencoded(out.getvalue(), base.size[0], base.size[1], base.format or "?")
    finally:
        base.close()
        overlay.close()


def _png_mode(image: Any) -> Any:
    if image.mode in ("RGB", "RGBA", "L", "LA"):
        return image
    if image.mode == "PA" or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return image.convert("L")
    return image.convert("RGB")


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def thumbnail_jpeg(path: Path, side: int, limits: PixelLimits, what: str) -> bytes:
    image = open_checked(path, limits, what, formats=("PNG", "JPEG", "WEBP"))
    try:
        try:
            image.draft("RGB", (side, side))  # JPEG: decode at a reduced scale
            image.thumbnail((side, side))
        except Exception as exc:  # noqa: BLE001
            raise bad_request(f"{what} could not be decoded: {exc}", code="not_an_image") from None
        return _jpeg(image, quality=85)
    finally:
        image.close()


def preview_jpeg(image: Any, side: int, quality: int) -> bytes:
    """A step preview (PIL image) as a small JPEG."""
    if max(image.size) > side:
        image = image.copy()
        image.thumbnail((side, side))
    return _jpeg(image, quality)


def _jpeg(image: Any, quality: int) -> bytes:
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    elif image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()
