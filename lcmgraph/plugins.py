"""Loading node packs: from Python entry points and from plugin directories.

A pack is a Python module (or package) that defines:

* ``NODES`` — an iterable of :class:`lcmgraph.Node` subclasses (required);
* ``SERVICES`` — optional ``{name: factory(engine)}``: per-engine helpers such
  as a model manager, created lazily and never shared between engines;
* ``BUILTIN_FILES`` — optional ``{(folder, name): provider(engine) -> Path}``
  for files addressed as ``builtin:NAME`` (e.g. a shipped model);
* ``FILE_SCHEMES`` — optional ``{scheme: handler}`` for file names written
  ``scheme:rest`` (e.g. ``hub:org/model``); a handler has
  ``check(engine, folder, rest) -> sentence | None`` (validation, must not
  download), ``resolve(engine, folder, rest) -> Path`` and
  ``identity(engine, folder, rest) -> str`` (cache key);
* ``COMFY_MAPPINGS`` — optional ``{ComfyUI class name: lcmgraph.comfy.ComfyMapping}``:
  how ComfyUI workflows using that class import (and export back);
* ``CLI_COMMANDS`` — optional list of ``add(subparsers)`` functions, each adding
  ``lcmgraph`` subcommand(s) to the argparse subparsers and setting on each
  ``handler=run`` (``parser.set_defaults(handler=run)``), ``run(args) -> exit
  status``. Only installed (entry-point) packs add commands: the command line
  is built before ``--plugins`` is read (see :func:`cli_commands`).

Built-in packs (``nodes/`` in the source tree) are found through the very
same entry-point group as third-party ones.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from .registry import NodeRegistry, PackInfo, RegistryError

ENTRY_POINT_GROUP = "lcmgraph.nodes"
PLUGIN_PATH_ENV = "LCMGRAPH_PLUGINS"


def register_module(registry: NodeRegistry, name: str, module: ModuleType, source: str) -> PackInfo:
    nodes = getattr(module, "NODES", None)
    if nodes is None:
        raise RegistryError(f"pack {name!r} ({source}) defines no NODES list")
    return registry.register_pack(
        name,
        nodes,
        source=source,
        services=getattr(module, "SERVICES", None),
        builtin_files=getattr(module, "BUILTIN_FILES", None),
        file_schemes=getattr(module, "FILE_SCHEMES", None),
        comfy_mappings=getattr(module, "COMFY_MAPPINGS", None),
        cli_commands=getattr(module, "CLI_COMMANDS", None),
    )


def _guarded(registry: NodeRegistry, name: str, source: str, load) -> PackInfo:
    """Import and register one pack; a failure is recorded, never raised."""
    try:
        module = load()
        return register_module(registry, name, module, source)
    except RegistryError as exc:
        return registry.record_failed_pack(name, source, str(exc))
    except BaseException as exc:  # noqa: BLE001 - a broken plugin must not take the engine down
        if isinstance(exc, KeyboardInterrupt):
            raise
        return registry.record_failed_pack(name, source, traceback.format_exc())


def load_entry_point_packs(registry: NodeRegistry, group: str = ENTRY_POINT_GROUP) -> list[PackInfo]:
    eps = sorted(metadata.entry_points(group=group), key=lambda ep: (ep.name != "core", ep.name))
    loaded = []
    for ep in eps:
        dist = getattr(ep, "dist", None)
        source = f"entry point {ep.value}" + (f" ({dist.name})" if dist else "")
        loaded.append(_guarded(registry, ep.name, source, lambda ep=ep: _as_module(ep.load())))
    return loaded


def cli_commands(group: str = ENTRY_POINT_GROUP) -> list[tuple[str, Callable[[Any], Any]]]:
    """``(pack name, add(subparsers))`` for the ``CLI_COMMANDS`` of the installed
    packs, loaded as an engine loads them (a broken pack adds nothing; the
    engine reports it when one is made)."""
    registry = NodeRegistry()
    load_entry_point_packs(registry, group)
    return registry.cli_commands()


def _as_module(obj) -> ModuleType:
    if isinstance(obj, ModuleType):
        return obj
    wrapper = ModuleType("lcmgraph_pack_object")
    wrapper.NODES = obj
    return wrapper


def _import_path(module_name: str, path: Path) -> ModuleType:
    if path.is_dir():
        init = path / "__init__.py"
        spec = importlib.util.spec_from_file_location(
            module_name, init, submodule_search_locations=[str(path)]
        )
    else:
        spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def discover_directory(directory: Path) -> list[Path]:
    """Packs in a plugin directory: ``pack.py`` files and ``pack/__init__.py`` folders."""
    found = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_dir() and (entry / "__init__.py").is_file():
            found.append(entry)
        elif entry.is_file() and entry.suffix == ".py":
            found.append(entry)
    return found


def load_directory_packs(registry: NodeRegistry, directory: str | Path) -> list[PackInfo]:
    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        return [registry.record_failed_pack(str(directory), str(directory), "plugin directory does not exist")]
    # A private module namespace per directory: two engines, or two directories
    # with a pack of the same name, never share module objects by accident.
    prefix = "lcmgraph_plugin_" + hashlib.sha1(str(directory).encode()).hexdigest()[:10]
    loaded = []
    for path in discover_directory(directory):
        name = path.stem
        module_name = f"{prefix}_{name}"
        loaded.append(_guarded(registry, name, str(path), lambda p=path, m=module_name: _import_path(m, p)))
    return loaded


def plugin_dirs_from_env() -> list[Path]:
    raw = os.environ.get(PLUGIN_PATH_ENV, "")
    return [Path(p) for p in raw.split(os.pathsep) if p.strip()]


def load_all(
    registry: NodeRegistry,
    plugin_dirs: Iterable[str | Path] = (),
    entry_points: bool = True,
    env: bool = True,
) -> list[PackInfo]:
    loaded: list[PackInfo] = []
    if entry_points:
        loaded += load_entry_point_packs(registry)
    dirs = list(plugin_dirs) + (plugin_dirs_from_env() if env else [])
    for directory in dirs:
        loaded += load_directory_packs(registry, directory)
    return loaded
