"""Workflows embedded in PNG text chunks, so an image can be re-run or
dropped on the editor to restore the graph that made it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WORKFLOW_KEY = "lcmgraph.workflow"
PARAMETERS_KEY = "lcmgraph.parameters"


def pnginfo(workflow: dict | None, parameters: dict | None = None):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    if workflow is not None:
        # iTXt (zip=True) keeps non-ASCII prompts intact and compresses big graphs.
        info.add_itxt(WORKFLOW_KEY, json.dumps(workflow, separators=(",", ":")), zip=True)
    if parameters:
        info.add_itxt(PARAMETERS_KEY, json.dumps(parameters, separators=(",", ":")), zip=True)
    return info


def read_text_chunks(path: str | Path) -> dict[str, str]:
    from PIL import Image

    with Image.open(path) as image:
        image.load()  # text chunks after the image data are only read on load
        return {k: v for k, v in getattr(image, "text", {}).items() if isinstance(v, str)}


def workflow_from_png(path: str | Path) -> Any | None:
    text = read_text_chunks(path).get(WORKFLOW_KEY)
    return json.loads(text) if text else None
