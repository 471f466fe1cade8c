"""ComfyUI interoperability: import ComfyUI workflows (API format, UI format,
PNGs saved by ComfyUI) as lcmgraph workflows, and export lcmgraph workflows
to ComfyUI's API format.

Which ComfyUI class becomes which lcmgraph node is the node packs' knowledge:
each pack may declare ``COMFY_MAPPINGS`` (see mapping.py); this package only
reads the formats and applies those tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .detect import COMFY_API, COMFY_UI, LCMGRAPH, detect, is_api_prompt
from .errors import ComfyError, ComfyExportError, ComfyImportError
from .mapping import SEED_CONTROL, ComfyMapping, ConversionError, Converted, Through

if TYPE_CHECKING:
    from ..registry import NodeRegistry

__all__ = [
    "COMFY_API", "COMFY_UI", "LCMGRAPH", "SEED_CONTROL", "ComfyError", "ComfyExportError", "ComfyImportError",
    "ComfyMapping", "ConversionError", "Converted", "Through", "detect", "import_notes", "load_any", "read_any",
    "to_api",
]


def load_any(document: Any, registry: NodeRegistry, allow_missing: bool = False) -> Any:
    """An lcmgraph workflow document from any workflow document: lcmgraph's
    (returned as is), ComfyUI's API or UI format, or the /prompt body
    (API prompt + UI workflow in extra_data). Anything else is returned as is,
    for the workflow parser to say what is wrong with it.

    Raises ComfyImportError (a WorkflowFileError) naming every node that
    cannot be converted; with ``allow_missing`` unknown node types become
    placeholders instead (``comfy:ClassName`` nodes, which do not validate)."""
    kind = detect(document)
    if kind not in (COMFY_API, COMFY_UI):
        return document
    try:
        return _load(document, kind, registry.comfy_mappings(), allow_missing)
    except RecursionError:  # only values nested nearly as deep as Python allows; graphs are walked iteratively
        raise ComfyImportError(["the workflow's values are nested too deeply to convert"]) from None


def _load(document: dict, kind: str, mappings: dict, allow_missing: bool) -> Any:
    from .api_format import read_api
    from .convert import convert
    from .ui_format import read_ui

    if kind == COMFY_UI:
        graph = read_ui(document, mappings)
    elif is_api_prompt(document.get("prompt")):
        prompt = document["prompt"]
        extra = document.get("extra_data") if isinstance(document.get("extra_data"), dict) else {}
        pnginfo = extra.get("extra_pnginfo") if isinstance(extra.get("extra_pnginfo"), dict) else {}
        ui = pnginfo.get("workflow")
        graph = read_ui(ui, mappings, values=prompt) if detect(ui) == COMFY_UI else read_api(prompt)
    else:
        graph = read_api(document)
    return convert(graph, mappings, allow_missing)


def read_any(path: str | Path, registry: NodeRegistry, allow_missing: bool = False) -> Any:
    """``workflow.read_file`` that also reads ComfyUI JSON files and PNGs."""
    from .. import workflow as wf

    path = Path(path)
    try:
        with path.open("rb") as handle:
            is_png = handle.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        is_png = False  # read_file says what is wrong with the path
    if is_png:
        from .png import document_from_png

        document = document_from_png(path)
    else:
        document = wf.read_file(path)
    return load_any(document, registry, allow_missing)


def import_notes(document: Any) -> list[str]:
    """The semantic differences an import noted (for the CLI to print as warnings)."""
    meta = document.get("meta") if isinstance(document, dict) else None
    comfy = meta.get("comfy_import") if isinstance(meta, dict) else None
    notes = comfy.get("notes") if isinstance(comfy, dict) else None
    return [str(n) for n in notes] if isinstance(notes, list) else []


def to_api(document: Any, registry: NodeRegistry) -> dict:
    """The workflow in ComfyUI's API format (what ComfyUI's /prompt takes as "prompt")."""
    from .export import export

    try:
        return export(document, registry)
    except RecursionError:  # only values nested nearly as deep as Python allows; graphs are walked iteratively
        raise ComfyExportError(["the workflow's values are nested too deeply to export"]) from None
