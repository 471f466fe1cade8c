"""``lcmgraph import-comfy`` and ``lcmgraph export-comfy`` (wired into lcmgraph.cli)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK = 0


def add_comfy_parsers(sub: argparse._SubParsersAction) -> None:
    imp = sub.add_parser("import-comfy", help="convert a ComfyUI workflow (API or UI JSON, or a ComfyUI PNG)")
    imp.add_argument("workflow", help="ComfyUI .json (API or UI format) or a PNG saved by ComfyUI")
    imp.add_argument("-o", "--output", metavar="OUT.json", help="write here (default: stdout)")
    imp.add_argument("--allow-missing", action="store_true",
                     help="keep unknown node types as placeholders (the editor shows them; the workflow "
                          "runs once they are replaced)")
    imp.add_argument("--plugins", action="append", default=[], metavar="DIR", help="load node packs from DIR")
    exp = sub.add_parser("export-comfy", help="write a workflow in ComfyUI's API format")
    exp.add_argument("workflow", help="lcmgraph workflow (.json or a PNG made by lcmgraph)")
    exp.add_argument("-o", "--output", metavar="OUT.json", help="write here (default: stdout)")
    exp.add_argument("--plugins", action="append", default=[], metavar="DIR", help="load node packs from DIR")


def _registry(plugin_dirs):
    from .. import plugins
    from ..registry import NodeRegistry

    registry = NodeRegistry()
    plugins.load_all(registry, plugin_dirs)
    return registry


def _write(document: dict, output: str | None) -> None:
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
        print(f"wrote {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def import_main(args) -> int:
    from . import import_notes, read_any

    document = read_any(args.workflow, _registry(args.plugins), allow_missing=args.allow_missing)
    for note in import_notes(document):
        print(f"note: {note}", file=sys.stderr)
    _write(document, args.output)
    return EXIT_OK


def export_main(args) -> int:
    from .. import workflow as wf
    from . import to_api

    _write(to_api(wf.read_file(args.workflow), _registry(args.plugins)), args.output)
    return EXIT_OK


COMMANDS = {"import-comfy": import_main, "export-comfy": export_main}
