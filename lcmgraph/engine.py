"""The Engine: owns a registry, caches, file folders and per-engine services.

There is no module-level state anywhere in lcmgraph: two engines in one
process never share caches, models or plugins.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import batch, plugins
from . import events as E
from . import workflow as wf
from .batch import Outcome, RunRequest
from .cache import DEFAULT_CACHE_BYTES, OutputCache
from .context import RunControl
from .executor import RunResult, execute
from .files import DEFAULT_FOLDERS, ModelFolders
from .problems import Problem, WorkflowInvalid
from .registry import NodeRegistry
from .validation import requested_outputs, validate


def default_home() -> Path:
    return Path(os.environ.get("LCMGRAPH_HOME", Path.home() / ".cache" / "lcmgraph")).expanduser()


@dataclass
class EngineConfig:
    device: str = "auto"
    cache_bytes: int = DEFAULT_CACHE_BYTES
    cache_dir: str | Path | None = None
    plugin_dirs: list[str | Path] = field(default_factory=list)
    load_entry_points: bool = True
    plugins_from_env: bool = True
    #: Folder name -> search roots. Missing folders default to ``models_dir/<name>``.
    folders: dict[str, list[str | Path]] = field(default_factory=dict)
    models_dir: str | Path | None = None
    output_dir: str | Path = "outputs"
    #: Scratch space for built-in files that are generated on first use.
    home: str | Path | None = None
    #: Free-form settings for services (e.g. {"dtype": "float16"}).
    options: dict[str, Any] = field(default_factory=dict)


class Engine:
    def __init__(self, config: EngineConfig | None = None, registry: NodeRegistry | None = None):
        self.config = config or EngineConfig()
        self.home = Path(self.config.home or default_home()).expanduser()
        if registry is None:
            registry = NodeRegistry()
            plugins.load_all(
                registry,
                self.config.plugin_dirs,
                entry_points=self.config.load_entry_points,
                env=self.config.plugins_from_env,
            )
        self.registry = registry
        self.cache = OutputCache(self.config.cache_bytes, self.config.cache_dir)
        models_dir = Path(self.config.models_dir or "models")
        roots: dict[str, list[str | Path]] = {name: [models_dir / name] for name in DEFAULT_FOLDERS}
        roots.update(self.config.folders)
        self.files = ModelFolders(roots, registry, owner=self)
        self._services: dict[str, Any] = {}
        self._service_lock = threading.Lock()
        self._run_lock = threading.Lock()

    # -- services -----------------------------------------------------------
    def service(self, name: str) -> Any:
        """A per-engine helper provided by a pack (created on first use)."""
        with self._service_lock:
            if name not in self._services:
                factory = self.registry.service_factory(name)
                if factory is None:
                    raise KeyError(f"no loaded node pack provides the service {name!r}")
                self._services[name] = factory(self)
            return self._services[name]

    # -- workflows ----------------------------------------------------------
    def parse(self, document: Any) -> tuple[wf.Workflow, list[Problem]]:
        return wf.parse(document)

    def validate(self, document: Any, outputs: Iterable[str] | None = None) -> list[Problem]:
        workflow, problems = wf.parse(document)
        return problems + validate(workflow, self.registry, outputs, self.files.check)

    def run(
        self,
        document: Mapping[str, Any],
        outputs: Iterable[str] | None = None,
        sink: E.EventSink | None = None,
        control: RunControl | None = None,
        output_dir: str | Path | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        """Validate, then execute. Raises WorkflowInvalid before touching any model."""
        workflow, problems = wf.parse(document)
        problems += validate(workflow, self.registry, outputs, self.files.check)
        if problems:
            raise WorkflowInvalid(problems)
        wanted = requested_outputs(workflow, self.registry, outputs)
        with self._run_lock:  # one run at a time per engine: models are shared state
            return execute(
                self,
                workflow,
                wanted,
                sink=sink or E.null_sink,
                control=control,
                output_dir=Path(output_dir) if output_dir else None,
                workflow_json=dict(document),
                run_id=run_id,
            )

    def run_batch(self, requests: Sequence[RunRequest]) -> list[Outcome]:
        """Run several workflows; those with the same graph (node ids, types,
        links, outputs) run in lockstep, sharing equal nodes and calling the
        nodes' ``execute_batch`` hooks (see lcmgraph.batch). Returns, per
        request and in order, its RunResult or the exception ``run`` would have
        raised for it (WorkflowInvalid, NodeFailed, RunInterrupted); one
        request failing never fails the others."""
        prepared = [batch.prepare(self, request) for request in requests]
        with self._run_lock:
            return batch.run_prepared(self, prepared)
