"""Workflows in PNG text chunks: lcmgraph's own, or ComfyUI's ``prompt`` (API
format, the values that ran) and ``workflow`` (UI format, with the layout)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..pngmeta import WORKFLOW_KEY, read_text_chunks
from ..workflow import WorkflowFileError

COMFY_PROMPT, COMFY_WORKFLOW = "prompt", "workflow"


class NoEmbeddedWorkflow(WorkflowFileError):
    """The image carries none of the text chunks a workflow is kept in."""


def document_from_png(path: str | Path) -> Any:
    """The workflow document a PNG file carries (see document_from_text)."""
    return document_from_text(read_text_chunks(path), str(path))


def document_from_text(chunks: Mapping[str, str], source: str) -> Any:
    """The workflow document in a PNG's text chunks; ``source`` names the
    image in errors. For ComfyUI's pair it is shaped like the body ComfyUI's
    /prompt endpoint receives, which load_any reads as "the UI workflow, with
    the values of the prompt that ran"."""
    if WORKFLOW_KEY in chunks:
        return _json(source, WORKFLOW_KEY, chunks[WORKFLOW_KEY])
    prompt = _json(source, COMFY_PROMPT, chunks[COMFY_PROMPT]) if COMFY_PROMPT in chunks else None
    ui = _json(source, COMFY_WORKFLOW, chunks[COMFY_WORKFLOW]) if COMFY_WORKFLOW in chunks else None
    if isinstance(ui, dict) and isinstance(prompt, dict):
        return {"prompt": prompt, "extra_data": {"extra_pnginfo": {"workflow": ui}}}
    if ui is not None or prompt is not None:
        return ui if ui is not None else prompt
    raise NoEmbeddedWorkflow(f"{source}: this PNG has no embedded workflow (neither lcmgraph's nor ComfyUI's)")


def _json(source: str, key: str, text: str) -> Any:
    try:
        return json.loads(text)  # ComfyUI may write NaN: Python's json reads it
    except json.JSONDecodeError as exc:
        raise WorkflowFileError(f"{source}: the PNG's {key!r} text is not JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise WorkflowFileError(f"{source}: the PNG's {key!r} text is JSON nested too deeply to read") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise WorkflowFileError(f"{source}: the PNG's {key!r} text has an unreadable number ({exc})") from None
