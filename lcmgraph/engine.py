"""The Engine: the front door to a Runtime (registry, caches, file folders,
services): prepare, validate and run workflows.

There is no module-level state anywhere in lcmgraph: two engines in one
process never share caches, models or plugins.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import events as E
from . import plugins
from . import prepare as P
from .budget import Budget
from .cache import DEFAULT_CACHE_BYTES, OutputCache
from .context import RunControl
from .executor import RunRequest, run_prepared
from .files import DEFAULT_FOLDERS
from .problems import Problem, WorkflowInvalid
from .registry import NodeRegistry
from .results import Outcome, RunResult
from .runtime import Runtime, default_home

__all__ = ["Engine", "EngineConfig", "default_home"]


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
    #: Limits on what one workflow may cost (lcmgraph/budget.py); None: unlimited.
    budget: Budget | None = None
    #: False for a server: problems and errors name folder + file, never host paths.
    reveal_paths: bool = True


class Engine:
    def __init__(self, config: EngineConfig | None = None, registry: NodeRegistry | None = None):
        self.config = config = config or EngineConfig()
        if registry is None:
            registry = NodeRegistry()
            plugins.load_all(registry, config.plugin_dirs, entry_points=config.load_entry_points,
                             env=config.plugins_from_env)
        models_dir = Path(config.models_dir or "models")
        roots: dict[str, list[str | Path]] = {name: [models_dir / name] for name in DEFAULT_FOLDERS}
        roots.update(config.folders)
        self.runtime = Runtime(registry, OutputCache(config.cache_bytes, config.cache_dir), roots,
                               home=config.home, device=config.device, options=config.options,
                               output_dir=config.output_dir, reveal_paths=config.reveal_paths)
        self._run_lock = threading.Lock()

    # What the runtime holds, under the names callers use.
    @property
    def registry(self) -> NodeRegistry:
        return self.runtime.registry

    @property
    def cache(self) -> OutputCache:
        return self.runtime.cache

    @property
    def files(self):
        return self.runtime.files

    @property
    def home(self) -> Path:
        return self.runtime.home

    def service(self, name: str) -> Any:
        """A per-engine helper provided by a pack (created on first use)."""
        return self.runtime.service(name)

    # -- workflows ----------------------------------------------------------
    def check(self, document: Any, outputs: Iterable[str] | None = None) -> tuple[P.Prepared | None, list[Problem]]:
        """Parse and validate (and check the budget): a prepared run, or None and every problem."""
        prepared, problems = P.check(self.registry, document, outputs, self.files.check, self._budget())
        if problems and not self.runtime.reveal_paths:
            problems = [replace(p, message=self.runtime.redact(p.message)) for p in problems]
        return prepared, problems

    def prepare(self, document: Any, outputs: Iterable[str] | None = None) -> P.Prepared:
        """Parse and validate once; raises WorkflowInvalid listing every problem.
        The result runs any number of times (``run``, ``run_batch``)."""
        prepared, problems = self.check(document, outputs)
        if prepared is None:
            raise WorkflowInvalid(problems)
        return prepared

    def _budget(self):
        budget = self.config.budget
        return None if budget is None else (budget, self.files.resolve)

    def validate(self, document: Any, outputs: Iterable[str] | None = None) -> list[Problem]:
        return self.check(document, outputs)[1]

    def run(
        self,
        document: Mapping[str, Any] | P.Prepared,
        outputs: Iterable[str] | None = None,
        sink: E.EventSink | None = None,
        control: RunControl | None = None,
        output_dir: str | Path | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        """Validate, then execute (a batch of one). Raises WorkflowInvalid
        before touching any model, NodeFailed or RunInterrupted."""
        request = RunRequest(document, list(outputs) if outputs is not None else None, sink, control,
                             output_dir, run_id)
        outcome = self.run_batch([request])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def run_batch(self, requests: Sequence[RunRequest]) -> list[Outcome]:
        """Run several workflows; those with the same graph (node ids, types,
        links, outputs) walk it in lockstep, sharing equal nodes and calling
        the nodes' ``execute_batch`` hooks (see lcmgraph.executor). Returns,
        per request and in order, its RunResult or the exception ``run`` would
        have raised for it (WorkflowInvalid, NodeFailed, RunInterrupted); one
        request failing never fails the others."""
        outcomes: list[Outcome | None] = []
        ready: list[tuple[int, P.Prepared, RunRequest]] = []
        for index, request in enumerate(requests):
            prepared, problems = self._prepared(request)
            outcomes.append(WorkflowInvalid(problems) if problems else None)
            if prepared is not None:
                ready.append((index, prepared, request))
        with self._run_lock:  # one walk at a time per engine: models are shared state
            results = run_prepared(self.runtime, [p for _, p, _ in ready], [r for _, _, r in ready])
        for (index, _, _), outcome in zip(ready, results, strict=True):
            outcomes[index] = outcome
        return outcomes  # type: ignore[return-value]

    def free(self, unload_models: bool = True, free_memory: bool = False) -> dict[str, int]:
        """Unload models / empty the output cache (``Runtime.free``), between runs:
        it waits for a running walk to end, as ComfyUI applies /free between prompts."""
        with self._run_lock:
            return self.runtime.free(unload_models, free_memory)

    def _prepared(self, request: RunRequest) -> tuple[P.Prepared | None, list[Problem]]:
        if isinstance(request.document, P.Prepared):
            if request.outputs is not None and tuple(request.outputs) != request.document.outputs:
                raise ValueError("a prepared run carries its outputs; prepare it again to choose others")
            problems = [replace(p, message=self.runtime.redact(p.message))
                        for p in request.document.file_problems(self.files.check)]
            return (None, problems) if problems else (request.document, [])
        return self.check(request.document, request.outputs)
