"""``lcmgraph serve``: arguments, the bind policy, and running the server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from ..argtypes import number
from ..cluster.options import add_ray_arguments, ray_options_from_args
from ..engine import Engine, EngineConfig
from ..model_flags import add_model_arguments, apply_threads, model_options
from .batching import AUTO_BATCH_CUDA, AUTO_BATCH_OTHER, auto_batch
from .config import Limits, ServerConfig
from .job_limits import add_job_limit_arguments, budget_from_args, engine_options
from .serve_options import ServeOptionError, add_access_arguments, apply_access_options

EXIT_OK, EXIT_USAGE = 0, 2
MIN_TOKEN = 16
MAX_BATCH = 64


def add_serve_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``serve`` sub-command to the main CLI's sub-parsers."""
    parser = sub.add_parser("serve", help="run the HTTP/WebSocket API server (and the editor)")
    add_serve_arguments(parser)
    return parser


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    limits = Limits()
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; others need --token or --insecure)")
    p.add_argument("--port", type=int, default=8188, help="port (default 8188; 0 picks a free one)")
    p.add_argument("--token", default=None,
                   help="require this bearer token on every API request (default $LCMGRAPH_TOKEN); "
                        "visible to other local users in `ps`: prefer --token-file or $LCMGRAPH_TOKEN")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host without a token (anyone who can reach it runs jobs)")
    p.add_argument("--data-dir", default="lcmgraph-data", metavar="DIR",
                   help="job database and outputs (default ./lcmgraph-data)")
    p.add_argument("--output-dir", metavar="DIR", help="where jobs write files (default DATA_DIR/outputs)")
    p.add_argument("--workflows-dir", metavar="DIR", help="example workflows served by /api/workflows")
    p.add_argument("--web-dir", metavar="DIR", help="static editor files (default web/dist or web/)")
    p.add_argument("--frontend", choices=["lcmgraph", "comfy"], default="lcmgraph",
                   help="the editor at /: lcmgraph's (default) or ComfyUI's official frontend (needs "
                        "pip install 'lcmgraph[comfy-frontend]'; see docs/api.md)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also accept this Host name (DNS-rebinding guard; '*' accepts any)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="also accept state-changing requests from this browser origin")
    p.add_argument("--max-queue", type=int, default=limits.max_queue, metavar="N",
                   help=f"waiting jobs before submissions get 429 (default {limits.max_queue})")
    p.add_argument("--max-upload-mb", type=float, default=limits.max_upload_bytes / 2**20, metavar="MB",
                   help="largest uploaded image file")
    p.add_argument("--plugins", action="append", default=[], metavar="DIR",
                   help="load node packs from DIR (repeatable; also $LCMGRAPH_PLUGINS)")
    p.add_argument("--no-entry-points", action="store_true",
                   help="do not load installed node packs (only --plugins / $LCMGRAPH_PLUGINS)")
    p.add_argument("--models-dir", metavar="DIR", help="root of checkpoints/, loras/, input/, ... (default ./models)")
    p.add_argument("--cache-dir", metavar="DIR", help="on-disk cache tier shared between processes")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
    add_model_arguments(p)
    p.add_argument("--batch", type=number(int, f"'auto' or a whole number from 1 to {MAX_BATCH}", low=1, high=MAX_BATCH, auto=True), default="auto", metavar="N",
                   help=f"run up to N queued jobs of the same graph as one batch (different prompts and "
                        f"seeds, one sampler call); 1 turns batching off (default auto: "
                        f"{AUTO_BATCH_CUDA} on CUDA, {AUTO_BATCH_OTHER} elsewhere)")
    add_job_limit_arguments(p)
    p.add_argument("--debug", action="store_true", help="verbose log with access lines (tokens redacted)")
    add_access_arguments(p)
    add_ray_arguments(p)



def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_problem(host: str, token: object, insecure: bool) -> str | None:
    """Why this bind is refused, or None."""
    if is_loopback(host) or token or insecure:
        return None
    return (f"refusing to listen on {host!r} without a token: anyone who can reach it could run "
            f"workflows and read every output. Pass --token T (or set LCMGRAPH_TOKEN), or --insecure "
            f"to accept that.")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    limits = Limits(max_queue=max(1, args.max_queue), max_upload_bytes=int(args.max_upload_mb * 2**20))
    return apply_access_options(args, ServerConfig(
        host=args.host, port=args.port, token=args.token or os.environ.get("LCMGRAPH_TOKEN") or None,
        insecure=args.insecure, data_dir=Path(args.data_dir),
        output_dir=Path(args.output_dir) if args.output_dir else None,
        workflows_dir=Path(args.workflows_dir) if args.workflows_dir else None,
        web_dir=Path(args.web_dir) if args.web_dir else _frontend_dir(args.frontend),
        frontend=args.frontend,
        allow_hosts=tuple(args.allow_host), allow_origins=tuple(args.allow_origin), limits=limits,
        max_batch=auto_batch(args.device) if args.batch == "auto" else args.batch,
        ray=ray_options_from_args(args),
    ))


def _frontend_dir(frontend: str) -> Path | None:
    if frontend != "comfy":
        return None
    from .routes.comfy_frontend import FrontendMissing, frontend_root

    try:
        return frontend_root()
    except FrontendMissing as exc:
        raise ServeOptionError(str(exc)) from None


def engine_config(args: argparse.Namespace, config: ServerConfig) -> EngineConfig:
    """The engine a server runs: its job budget, no downloads unless allowed,
    input images under the upload limits, and no host paths in what clients see."""
    return EngineConfig(device=args.device, plugin_dirs=list(args.plugins),
                        load_entry_points=not args.no_entry_points, models_dir=args.models_dir,
                        output_dir=config.outputs_path, cache_dir=args.cache_dir,
                        options={**model_options(args), **engine_options(args, config.limits)},
                        budget=budget_from_args(args), reveal_paths=False)


def serve_main(args: argparse.Namespace) -> int:
    """Run ``lcmgraph serve`` with parsed arguments; returns the exit code."""
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .connections import redact_logs

    redact_logs()
    try:
        config = config_from_args(args)
    except ServeOptionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    problem = bind_problem(config.host, config.token or config.users, config.insecure)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if config.token and len(config.token) < MIN_TOKEN:
        print(f"warning: the token is shorter than {MIN_TOKEN} characters; use a long random one",
              file=sys.stderr)
    if not is_loopback(config.host) and not (config.token or config.users):
        print(f"warning: serving {config.host} without a token (--insecure)", file=sys.stderr)
    apply_threads(args)
    engine = Engine(engine_config(args, config))
    for pack in engine.registry.packs:
        if not pack.ok:
            last = pack.error.strip().splitlines()[-1] if pack.error else ""
            print(f"warning: node pack {pack.name!r} ({pack.source}) was not loaded: {last}", file=sys.stderr)
    from .app import ServerApp
    from .store import StoreError

    try:
        server = ServerApp(config, engine)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_serve(server, config, access_log=args.debug))
    except KeyboardInterrupt:
        return EXIT_OK


async def _serve(server, config: ServerConfig, access_log: bool) -> int:
    from aiohttp import web

    from .application import web_application
    from .connections import limit_connections, runner_options

    runner = web.AppRunner(web_application(server), handle_signals=False,
                           **runner_options(config.limits, logging.getLogger("aiohttp.access") if access_log
                                            else None))
    await runner.setup()
    limit_connections(runner.server, config.limits.max_connections)
    site = web.TCPSite(runner, config.host, config.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        print(f"error: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    host, port = runner.addresses[0][:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"lcmgraph serving on http://{shown}:{port}/ (data in {config.data_dir})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("lcmgraph: shutting down", file=sys.stderr, flush=True)
    await runner.cleanup()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lcmgraph serve", description="Run the lcmgraph API server.")
    add_serve_arguments(parser)
    return serve_main(parser.parse_args(argv))
