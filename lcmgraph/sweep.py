"""Parameter sweeps: run every combination of ``NODE.INPUT=v1,v2,...`` through
one engine (so the unchanged prefix — model load, text encoding — is computed
once) and lay the images out in a labelled grid."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import workflow as wf


@dataclass(frozen=True)
class Axis:
    target: str  # "node.input"
    values: tuple[Any, ...]

    @property
    def label(self) -> str:
        node, _, name = self.target.rpartition(".")
        return name if name else self.target


def parse_axis(text: str) -> Axis:
    """``"sampler.steps=1,2,4,8"`` -> Axis("sampler.steps", (1, 2, 4, 8))."""
    target, sep, raw = text.partition("=")
    if not sep or "." not in target or not raw:
        raise wf.WorkflowFileError(f"--sweep {text!r}: expected NODE.INPUT=v1,v2,...")
    values = tuple(wf.parse_scalar(v.strip()) for v in raw.split(","))
    return Axis(target.strip(), values)


def variants(axes: Sequence[Axis]) -> list[dict[str, Any]]:
    return [dict(zip([a.target for a in axes], combo, strict=True))
            for combo in itertools.product(*(a.values for a in axes))]


def sweep_documents(document: dict, axes: Sequence[Axis]) -> list[tuple[dict, dict]]:
    """Every combination of the axes' values, as (assignment, document); without axes, the document."""
    if not axes:
        return [({}, document)]
    return [(assignment, wf.apply_overrides(document, assignment)) for assignment in variants(axes)]


def images_of(result: Any) -> list[Path]:
    paths = []
    for node_results in result.outputs.values():
        for image in node_results.get("images", []):
            path = image.get("path") if isinstance(image, dict) else image
            if path:
                paths.append(Path(path))
    return paths


def make_grid(rows: list[tuple[dict, list[Path]]], axes: Sequence[Axis], path: Path, cell: int = 256) -> Path:
    """One column per value of the last axis, one row per combination of the others."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    cols = len(axes[-1].values) if axes else 1
    n_rows = max(1, len(rows) // cols)
    label_h = 18
    grid = Image.new("RGB", (cols * cell, n_rows * (cell + label_h)), "white")
    draw = ImageDraw.Draw(grid)
    for index, (assignment, images) in enumerate(rows):
        r, c = divmod(index, cols)
        x, y = c * cell, r * (cell + label_h)
        if images:
            with Image.open(images[0]) as im:
                thumb = im.convert("RGB")
                thumb.thumbnail((cell, cell), Image.Resampling.NEAREST if max(im.size) < cell else Image.Resampling.LANCZOS)
                if max(thumb.size) < cell:  # tiny test images: scale up crisply
                    scale = cell // max(thumb.size)
                    thumb = thumb.resize((thumb.width * scale, thumb.height * scale), Image.Resampling.NEAREST)
                grid.paste(thumb, (x + (cell - thumb.width) // 2, y + label_h + (cell - thumb.height) // 2))
        label = "  ".join(f"{t.rpartition('.')[2]}={v}" for t, v in assignment.items())
        draw.text((x + 4, y + 3), label, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
