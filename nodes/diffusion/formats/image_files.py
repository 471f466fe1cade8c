"""Image files: RGB(A) pictures <-> IMAGE / MASK tensors, and PNGs written
without ever overwriting, with the workflow and its generation parameters
embedded (``lcmgraph run image.png`` and the editor read them back)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

# Input images are read by the image pack's helpers (LoadImageMask reads them
# too, and that pack does not import diffusers); re-exported for LoadImage.
from lcmgraph_nodes.image.ops.files import (  # noqa: F401
    IMAGE_FORMATS,
    MAX_IMAGE_PIXELS,
    MAX_IMAGE_SIDE,
    ImageRefused,
    open_image,
    pil_to_image,
)

from lcmgraph.pngmeta import pnginfo


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
        name, counter = _publish(_write_part(target, pil, info), target, stem, "png", counter)
        counter += 1
        results.append({"filename": f"{sub}/{name}" if sub else name, "path": str(target / name), "type": kind})
    return results


def _publish(part: Path, target: Path, stem: str, suffix: str, counter: int) -> tuple[str, int]:
    """Give the finished ``part`` the first free name ``stem_NNNNN.suffix`` from ``counter`` on:
    a hard link publishes the complete file atomically and fails if the name exists, so never
    a half-written file, never an overwrite. (name, the counter it used)."""
    try:
        while True:
            name = f"{stem}_{counter:05d}.{suffix}"
            try:
                os.link(part, target / name)
                return name, counter
            except FileExistsError:
                counter += 1
    finally:
        part.unlink(missing_ok=True)


def write_animation(ctx, image, folder: Path, prefix: str, kind: str, fmt: str, fps: float, **options) -> dict:
    """All frames of ``image`` as one animated file (``fmt`` "webp" or "png": APNG), never
    overwriting; the workflow embedded (APNG: as in our PNGs; WEBP: EXIF text, as ComfyUI)."""
    sub, stem = _safe_prefix(prefix)
    target = folder / sub if sub else folder
    target.mkdir(parents=True, exist_ok=True)
    frames = image_to_pils(image)
    save = dict(save_all=True, append_images=frames[1:], duration=int(1000.0 / fps), loop=0, **options)
    if fmt == "png":
        save["pnginfo"] = pnginfo(ctx.workflow_json, parameters(ctx.workflow_json, ctx.runtime.registry))
    elif ctx.workflow_json is not None:
        import json

        from PIL import Image

        exif = Image.Exif()
        exif[0x010F] = "workflow:" + json.dumps(ctx.workflow_json, separators=(",", ":"))
        save["exif"] = exif
    part = _write_part(target, frames[0], None, fmt=fmt, **save)
    name, _ = _publish(part, target, stem, fmt, _next_counter(target, stem, fmt))
    return {"filename": f"{sub}/{name}" if sub else name, "path": str(target / name), "type": kind,
            "frames": len(frames)}


def _write_part(folder: Path, pil, info, fmt: str = "png", **save) -> Path:
    """The PNG, complete and flushed to disk, under a hidden temporary name in ``folder``."""
    handle, name = tempfile.mkstemp(dir=folder, prefix=".", suffix=f".{fmt}.part")
    part = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            if fmt == "png" and not save:
                pil.save(out, format="PNG", pnginfo=info, compress_level=4)
            else:
                pil.save(out, format=fmt.upper(), **save)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return part


def _next_counter(folder: Path, stem: str, suffix: str = "png") -> int:
    pattern = re.compile(re.escape(stem) + r"_(\d+)\." + suffix + "$")
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name))]
    return max(numbers, default=0) + 1
