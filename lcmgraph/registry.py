"""The node registry: which node types an engine knows, and from which pack."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import types as T
from .node import Node
from .workflow import NODE_ID_PATTERN

SCHEMA_VERSION = 1


@dataclass
class PackInfo:
    """A node pack as loaded: where it came from and what it registered."""

    name: str
    source: str
    nodes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class RegistryError(Exception):
    pass


class NodeRegistry:
    """Node types by name. Owned by an Engine; never global."""

    def __init__(self) -> None:
        self._nodes: dict[str, type[Node]] = {}
        self._pack_of: dict[str, str] = {}
        self._services: dict[str, Callable[[Any], Any]] = {}
        self._file_providers: dict[tuple[str, str], Callable[[Any], Any]] = {}
        self._file_schemes: dict[str, Any] = {}
        self._comfy: dict[str, Any] = {}
        self._cli: list[tuple[str, Callable[[Any], Any]]] = []
        self.packs: list[PackInfo] = []

    # -- node types ---------------------------------------------------------
    def register_pack(
        self,
        name: str,
        nodes: Iterable[type[Node]],
        source: str = "",
        services: dict[str, Callable[[Any], Any]] | None = None,
        builtin_files: dict[tuple[str, str], Callable[[Any], Any]] | None = None,
        file_schemes: dict[str, Any] | None = None,
        comfy_mappings: dict[str, Any] | None = None,
        cli_commands: Iterable[Callable[[Any], Any]] | None = None,
    ) -> PackInfo:
        """Register a whole pack atomically: all of its nodes, or none."""
        nodes = list(nodes)
        for cls in nodes:
            if not (isinstance(cls, type) and issubclass(cls, Node)):
                raise RegistryError(f"pack {name!r}: {cls!r} is not a Node subclass")
            if cls.execute is Node.execute:
                raise RegistryError(f"pack {name!r}: node {cls.type_name!r} does not implement execute()")
        seen: dict[str, type[Node]] = {}
        for cls in nodes:
            other = self._pack_of.get(cls.type_name)
            if other is not None:
                raise RegistryError(
                    f"node type {cls.type_name!r} from pack {name!r} collides with the one "
                    f"already registered by pack {other!r}; pack {name!r} was not loaded"
                )
            if cls.type_name in seen and seen[cls.type_name] is not cls:
                raise RegistryError(f"pack {name!r} declares node type {cls.type_name!r} twice")
            seen[cls.type_name] = cls
        for svc in services or {}:
            if svc in self._services:
                raise RegistryError(f"pack {name!r}: service {svc!r} is already provided")
        for scheme in file_schemes or {}:
            if scheme in self._file_schemes or scheme == "builtin":
                raise RegistryError(f"pack {name!r}: file scheme {scheme!r}: is already provided")
        for comfy_class in comfy_mappings or {}:
            if comfy_class in self._comfy:
                raise RegistryError(f"pack {name!r}: ComfyUI class {comfy_class!r} is already mapped")
        cli_commands = list(cli_commands or ())
        for add in cli_commands:
            if not callable(add):
                raise RegistryError(f"pack {name!r}: CLI_COMMANDS holds {add!r}, not a function of the subparsers")
        info = PackInfo(name=name, source=source, nodes=sorted(seen))
        for type_name, cls in seen.items():
            self._nodes[type_name] = cls
            self._pack_of[type_name] = name
        self._services.update(services or {})
        self._file_providers.update(builtin_files or {})
        self._file_schemes.update(file_schemes or {})
        self._comfy.update(comfy_mappings or {})
        self._cli += [(name, add) for add in cli_commands]
        self.packs.append(info)
        return info

    def record_failed_pack(self, name: str, source: str, error: str) -> PackInfo:
        info = PackInfo(name=name, source=source, error=error)
        self.packs.append(info)
        return info

    def get(self, type_name: str) -> type[Node] | None:
        return self._nodes.get(type_name)

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def names(self) -> list[str]:
        return sorted(self._nodes)

    def pack_of(self, type_name: str) -> str | None:
        return self._pack_of.get(type_name)

    # -- services and built-in files ----------------------------------------
    def service_factory(self, name: str) -> Callable[[Any], Any] | None:
        return self._services.get(name)

    def builtin_file_provider(self, folder: str, name: str) -> Callable[[Any], Any] | None:
        return self._file_providers.get((folder, name))

    def file_scheme(self, scheme: str) -> Any | None:
        return self._file_schemes.get(scheme)

    def comfy_mappings(self) -> dict[str, Any]:
        """ComfyUI class name -> how it maps to this registry's nodes (lcmgraph.comfy reads them)."""
        return dict(self._comfy)

    def cli_commands(self) -> list[tuple[str, Callable[[Any], Any]]]:
        """``(pack name, add(subparsers))`` for each command-line hook, in load order."""
        return list(self._cli)

    def builtin_folders(self) -> set[str]:
        return {f for f, _ in self._file_providers}

    def builtin_files(self, folder: str) -> list[str]:
        return sorted(n for f, n in self._file_providers if f == folder)

    # -- schema -------------------------------------------------------------
    def schema(self) -> dict[str, Any]:
        """The machine-readable description the editor and API clients read."""
        nodes = {}
        for name in self.names():
            entry = self._nodes[name].schema()
            entry["pack"] = self._pack_of[name]
            nodes[name] = entry
        return {
            "schema_version": SCHEMA_VERSION,
            "literal_types": sorted(T.LITERAL_TYPES),
            "link_rules": T.link_rules(),
            "node_id_pattern": NODE_ID_PATTERN,
            "nodes": nodes,
            "packs": [
                {"name": p.name, "source": p.source, "nodes": p.nodes, "error": p.error}
                for p in self.packs
            ],
        }
