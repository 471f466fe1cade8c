"""Image files: RGB(A) pictures <-> IMAGE / MASK tensors, and PNGs written
without ever overwriting, with the workflow and its generation parameters
embedded (``lcmgraph run image.png`` and the editor read them back)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from lcmgraph.pngmeta import pnginfo

#: What LoadImage opens, whatever the file is called: PIL knows dozens of
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


def image_to_pils(image) -> list:
    import numpy as np
    from PIL import Image

    arrays = (image.clamp(0, 1).mul(255).round().to("cpu").numpy()).astype(np.uint8)
    return [Image.fromarray(a[..., :3] if a.shape[-1] >= 3 else a[..., 0]) for a in arrays]


def parameters(workflow: dict | None, registry) -> dict[str, Any]:
    """Literal settings of the generation nodes (``record_parameters`` on their
    class), by node id (links resolved one hop through primitive nodes such as
    a shared Seed)."""
    nodes = (workflow or {}).get("nodes") or {}
    out: dict[str, Any] = {}
    for node_id, node in nodes.items():
        kind = node.get("type") if isinstance(node, dict) else None
        cls = registry.get(kind) if isinstance(kind, str) else None
        if cls is None or not cls.record_parameters:
            continue
        values = {"type": node["type"]}
        for name, value in (node.get("inputs") or {}).items():
            if isinstance(value, dict) and "link" in value:
                source = nodes.get(value["link"][0]) if isinstance(value["link"], list) else None
                value = ((source or {}).get("inputs") or {}).get("value") if isinstance(source, dict) else None
                if value is None:
                    continue
            values[name] = value
        out[node_id] = values
    return out


def _safe_prefix(prefix: str) -> tuple[str, str]:
    """(sub-folder, file stem) from a prefix like "portraits/lcm"; never leaves the output folder."""
    parts = [p for p in re.split(r"[\\/]+", prefix) if p not in ("", ".", "..")]
    parts = [re.sub(r"[^A-Za-z0-9_.\- ]", "_", p) for p in parts] or ["lcmgraph"]
    return "/".join(parts[:-1]), parts[-1]


def write_pngs(ctx, image, folder: Path, prefix: str, kind: str) -> list[dict]:
    sub, stem = _safe_prefix(prefix)
    target = folder / sub if sub else folder
    target.mkdir(parents=True, exist_ok=True)
    info = pnginfo(ctx.workflow_json, parameters(ctx.workflow_json, ctx.runtime.registry))
    results = []
    counter = _next_counter(target, stem)
    for pil in image_to_pils(image):
        part = _write_part(target, pil, info)
        try:
            while True:
                name = f"{stem}_{counter:05d}.png"
                path = target / name
                try:
                    # A hard link publishes the complete file under its name atomically and
                    # fails if the name exists: never a half-written PNG, never an overwrite.
                    os.link(part, path)
                except FileExistsError:
                    counter += 1
                    continue
                break
        finally:
            part.unlink(missing_ok=True)
        counter += 1
        results.append({"filename": f"{sub}/{name}" if sub else name, "path": str(path), "type": kind})
    return results


def _write_part(folder: Path, pil, info) -> Path:
    """The PNG, complete and flushed to disk, under a hidden temporary name in ``folder``."""
    handle, name = tempfile.mkstemp(dir=folder, prefix=".", suffix=".png.part")
    part = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            pil.save(out, format="PNG", pnginfo=info, compress_level=4)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return part


def _next_counter(folder: Path, stem: str) -> int:
    pattern = re.compile(re.escape(stem) + r"_(\d+)\.png$")
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return max(numbers, default=0) + 1
