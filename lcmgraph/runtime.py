"""What running a workflow needs of an engine, and nothing more.

The executor, node contexts, file resolution and the services packs provide
(the model manager) depend on this small interface, not on ``Engine``: a
registry, the output cache, the file folders, per-runtime services, and the
settings a pack reads (device, options, home, output folder). ``Engine``
builds one and adds the front door (parse, validate, run, batches).
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .cache import OutputCache
from .files import ModelFolders
from .registry import NodeRegistry


def default_home() -> Path:
    """Scratch space for built-in files and compile caches (``LCMGRAPH_HOME``)."""
    return Path(os.environ.get("LCMGRAPH_HOME", Path.home() / ".cache" / "lcmgraph")).expanduser()


class Runtime:
    def __init__(
        self,
        registry: NodeRegistry,
        cache: OutputCache,
        folders: Mapping[str, Iterable[str | Path]],
        *,
        home: str | Path | None = None,
        device: str = "auto",
        options: Mapping[str, Any] | None = None,
        output_dir: str | Path = "outputs",
        reveal_paths: bool = True,
    ):
        self.registry = registry
        self.cache = cache
        self.home = Path(home or default_home()).expanduser()
        #: The device nodes should use ("auto", "cpu", "cuda", ...).
        self.device = device
        #: Free-form settings for services (e.g. {"dtype": "float16"}).
        self.options: dict[str, Any] = dict(options or {})
        self.output_dir = Path(output_dir)
        #: False (a server): messages name folder + file, never the host's paths.
        self.reveal_paths = reveal_paths
        # Built-in file providers and file schemes receive this runtime.
        self.files = ModelFolders(folders, registry, owner=self, reveal_paths=reveal_paths)
        self._path_labels: list[tuple[str, str]] | None = None
        self._services: dict[str, Any] = {}
        self._service_lock = threading.Lock()

    def redact(self, text: str) -> str:
        """``text`` as clients may see it: with ``reveal_paths`` off, every
        configured folder's host path becomes its folder name
        (``/srv/models/loras/x.safetensors`` -> ``loras/x.safetensors``)."""
        if self.reveal_paths or not text:
            return text
        if self._path_labels is None:
            labels: dict[str, str] = {}
            places = [(folder, root) for folder, roots in self.files.roots.items() for root in roots]
            places += [("<lcmgraph home>", self.home), ("<outputs>", self.output_dir), ("~", Path.home())]
            for label, path in places:
                for form in {str(path), str(path.resolve())}:
                    labels.setdefault(form.rstrip("/"), label)
            # Longest first: a folder inside the home is named by its folder, not "~/...".
            self._path_labels = sorted(labels.items(), key=lambda item: -len(item[0]))
        for path, label in self._path_labels:
            if path and path != "/":
                text = text.replace(path, label)
        return text

    def service(self, name: str) -> Any:
        """A per-runtime helper provided by a pack, created on first use
        (its factory receives this runtime)."""
        with self._service_lock:
            if name not in self._services:
                factory = self.registry.service_factory(name)
                if factory is None:
                    raise KeyError(f"no loaded node pack provides the service {name!r}")
                self._services[name] = factory(self)
            return self._services[name]

    def free(self, unload_models: bool, free_memory: bool) -> dict[str, int]:
        """Give memory back (ComfyUI's POST /free): ``unload_models`` asks every service
        created so far that has ``unload_all()`` (the model manager) to drop what it
        holds; ``free_memory`` empties the output cache's memory tier (the disk tier,
        shared between processes, stays). Counts of what went."""
        freed = {"models": 0, "cached_values": 0}
        if unload_models:
            with self._service_lock:
                services = list(self._services.values())
            for service in services:
                unload = getattr(service, "unload_all", None)
                if callable(unload):
                    freed["models"] += int(unload() or 0)
        if free_memory:
            freed["cached_values"] = len(self.cache.memory)
            self.cache.memory.clear()
        gc.collect()
        return freed
