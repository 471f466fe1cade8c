"""The ``lcmgraph`` command line."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from . import sweep
from . import workflow as wf
from .cluster.options import add_ray_arguments, ray_options_from_args
from .comfy import import_notes, read_any
from .comfy.cli import COMMANDS as COMFY_COMMANDS
from .comfy.cli import add_comfy_parsers
from .context import RunControl
from .engine import Engine, EngineConfig
from .events import fan_out
from .model_flags import add_model_arguments, apply_threads, model_options
from .plugins import cli_commands
from .problems import WorkflowInvalid
from .progress import JsonLines, ProgressBars
from .results import NodeFailed, RunInterrupted
from .server.cli import add_serve_parser, serve_main

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


class UsageError(Exception):
    pass


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugins", action="append", default=[], metavar="DIR",
                   help="load node packs from DIR (repeatable; also $LCMGRAPH_PLUGINS)")
    p.add_argument("--models-dir", metavar="DIR", help="root of checkpoints/, loras/, controlnet/, input/ (default ./models)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    add_model_arguments(p)
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lcmgraph", description="Node-graph engine for fast few-step image generation.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="validate and run a workflow (.json or PNG, lcmgraph's or ComfyUI's)")
    run.add_argument("workflow")
    run.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE",
                     help="override a literal input (value parsed as JSON, else a string)")
    run.add_argument("--output", action="append", default=None, metavar="NODE",
                     help="run only these output nodes (repeatable)")
    run.add_argument("--sweep", action="append", default=[], metavar="NODE.INPUT=v1,v2,...",
                     help="run every combination of these values (repeatable), sharing the cached prefix")
    run.add_argument("--grid", metavar="PNG", help="with --sweep: write a labelled grid of the results")
    run.add_argument("--out", default="outputs", metavar="DIR", help="where output nodes write files")
    run.add_argument("--cache-dir", metavar="DIR", help="on-disk cache shared between processes")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--json-events", action="store_true", help="print one JSON event per line on stdout")
    _engine_args(run)
    add_ray_arguments(run)  # a sweep's cells over Ray workers (lcmgraph/cluster/sweep_run.py)

    val = sub.add_parser("validate", help="check a workflow without running it")
    val.add_argument("workflow")
    val.add_argument("--json", action="store_true", help="print problems as JSON")
    _engine_args(val)

    nodes = sub.add_parser("nodes", help="list node types")
    nodes.add_argument("--json", action="store_true", help="print the machine-readable node schema")
    nodes.add_argument("--markdown", action="store_true", help="print the node reference as Markdown")
    _engine_args(nodes)

    sub.add_parser("schema", help="print the JSON Schema of the workflow format")
    add_serve_parser(sub)
    add_comfy_parsers(sub)
    _add_pack_commands(sub)
    return parser


def _add_pack_commands(sub) -> None:
    """Subcommands of the installed node packs (their CLI_COMMANDS, e.g. the
    diffusion pack's ``train``), after the built-in ones."""
    for pack, add in cli_commands():
        try:
            add(sub)
        except Exception as exc:  # noqa: BLE001 - a broken pack must not take the CLI down
            print(f"warning: node pack {pack!r}: its commands were not added: {exc}", file=sys.stderr)


def _quiet_library_bars() -> None:
    """Our own bars report loading and sampling; the libraries' duplicates go."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("diffusers", "transformers"):
        module = sys.modules.get(name) or __import__(name)
        module.utils.logging.disable_progress_bar()
        module.utils.logging.set_verbosity_error()


def _make_engine(args, **extra) -> Engine:
    config = EngineConfig(
        device=args.device,
        plugin_dirs=list(args.plugins),
        models_dir=args.models_dir,
        options=model_options(args),
        **extra,
    )
    engine = Engine(config)
    for pack in engine.registry.packs:
        if not pack.ok:
            first_line = pack.error.strip().splitlines()[-1] if pack.error else ""
            print(f"warning: node pack {pack.name!r} ({pack.source}) was not loaded: {first_line}", file=sys.stderr)
            if getattr(args, "debug", False):
                print(pack.error, file=sys.stderr)
    return engine


def _load(args, registry) -> dict:
    # lcmgraph's workflows, and ComfyUI's (API or UI JSON, PNGs) converted on the way in.
    document = read_any(args.workflow, registry)
    for note in import_notes(document):
        print(f"note: {note}", file=sys.stderr)
    assignments = dict(wf.parse_assignment(s) for s in getattr(args, "set", []) or [])
    if assignments:
        document = wf.apply_overrides(document, assignments)
    return document


def cmd_run(args) -> int:
    apply_threads(args)
    engine = _make_engine(args, cache_dir=args.cache_dir, output_dir=args.out)
    document = _load(args, engine.registry)
    if not args.debug:
        _quiet_library_bars()
    sinks = []
    if args.json_events:
        sinks.append(JsonLines())
    elif not args.quiet:
        sinks.append(ProgressBars())
    control = RunControl()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):  # first Ctrl-C stops cleanly between steps; a second one kills
        control.interrupt()
        signal.signal(signal.SIGINT, previous)

    axes = [sweep.parse_axis(a) for a in args.sweep]
    if args.grid and not axes:
        raise UsageError("--grid needs at least one --sweep")
    # Every variant is validated before the first one runs: a bad sweep value
    # is reported at once, not after minutes of sampling.
    prepared = []
    for assignment, variant in sweep.sweep_documents(document, axes):
        try:
            prepared.append((assignment, engine.prepare(variant, args.output)))
        except WorkflowInvalid:
            if assignment:
                label = " ".join(f"{k}={v}" for k, v in assignment.items())
                print(f"error: in the sweep variant {label}:", file=sys.stderr)
            raise

    sink = fan_out(*sinks)
    signal.signal(signal.SIGINT, on_sigint)
    try:
        if getattr(args, "ray", None) is not None:
            from .cluster.sweep_run import run_cells

            results = run_cells(ray_options_from_args(args), engine.config, Path(args.out), prepared,
                                sink=sink if args.json_events else None, control=control,
                                note=None if args.quiet or args.json_events else _note)
        else:
            results = [(assignment, engine.run(run, sink=sink, control=control)) for assignment, run in prepared]
    finally:
        signal.signal(signal.SIGINT, previous)
    if not args.json_events:
        for assignment, result in results:
            prefix = " ".join(f"{k}={v}" for k, v in assignment.items())
            for path in sweep.images_of(result):
                print(f"{prefix + ': ' if prefix else ''}wrote {path}")
    if args.grid:
        grid = sweep.make_grid([(a, sweep.images_of(r)) for a, r in results], axes, Path(args.grid))
        print(f"wrote grid {grid}")
    return EXIT_OK


def _note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_validate(args) -> int:
    engine = _make_engine(args)
    document = _load(args, engine.registry)
    problems = engine.validate(document)
    if args.json:
        print(json.dumps({"ok": not problems, "problems": [p.to_json() for p in problems]}, indent=2))
    elif problems:
        print(WorkflowInvalid(problems), file=sys.stderr)
    else:
        print(f"{args.workflow}: ok")
    return EXIT_INVALID if problems else EXIT_OK


def cmd_nodes(args) -> int:
    engine = _make_engine(args)
    schema = engine.registry.schema()
    if args.json:
        print(json.dumps(schema, indent=2))
        return EXIT_OK
    if args.markdown:
        from .nodedocs import markdown

        print(markdown(schema), end="")
        return EXIT_OK
    by_category: dict[str, list[dict]] = {}
    for node in schema["nodes"].values():
        by_category.setdefault(node["category"], []).append(node)
    for category in sorted(by_category):
        print(f"{category}:")
        for node in by_category[category]:
            ins = ", ".join(f"{i['name']}:{i['type']}" for i in node["inputs"])
            outs = ", ".join(f"{o['name']}:{o['type']}" for o in node["outputs"])
            summary = (node["description"].splitlines() or [""])[0]
            print(f"  {node['type']}({ins}) -> ({outs})  [{node['pack']}]")
            if summary:
                print(f"      {summary}")
    return EXIT_OK


def cmd_schema(args) -> int:
    print(json.dumps(wf.json_schema(), indent=2))
    return EXIT_OK


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "nodes": cmd_nodes, "schema": cmd_schema,
            "serve": serve_main, **COMFY_COMMANDS}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    debug = getattr(args, "debug", False)
    try:
        # A pack's command set its own handler (plugins.py: CLI_COMMANDS).
        return (COMMANDS.get(args.command) or args.handler)(args)
    except WorkflowInvalid as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except (wf.WorkflowFileError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except NodeFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        if debug:
            print(exc.traceback, file=sys.stderr)
        else:
            print("(run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILED
    except RunInterrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one readable paragraph, not a traceback
        if debug:
            raise
        print(f"error: {type(exc).__name__}: {exc}\n(run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
