"""The one prepare step: parse, validate, and keep what validation worked out.

Every way into a run goes through here (``Engine.run`` / ``run_batch``, the
CLI and its sweeps, the server at submit time), so a document is parsed and
validated once, and what the executor needs (requested outputs, the nodes
they depend on in order) is computed once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from . import workflow as wf
from .budget import Budget, over_budget
from .problems import Problem, WorkflowInvalid
from .registry import NodeRegistry
from .validation import FileCheck, needed_order, validate
from .workflow import Workflow


@dataclass(frozen=True)
class Prepared:
    """A workflow that passed validation, ready to run (any number of times)."""

    #: The document as given (saved images embed it).
    document: Mapping[str, Any] = field(repr=False)
    workflow: Workflow = field(repr=False)
    #: The output nodes to run.
    outputs: tuple[str, ...]
    #: The nodes the outputs need, in a topological order.
    order: tuple[str, ...]
    #: (node, input, folder, name) of every input naming a file, to check again
    #: when a run starts later than its validation (a queued server job).
    file_inputs: tuple[tuple[str, str, str, str], ...] = ()

    @cached_property
    def signature(self) -> str:
        """Equal for workflows that can walk in lockstep: same node ids, types, links and outputs."""
        return graph_signature(self.workflow, self.outputs)

    def file_problems(self, file_check: FileCheck) -> list[Problem]:
        """The file inputs that no longer resolve (a file removed since validation)."""
        problems = []
        for node_id, name, folder, value in self.file_inputs:
            missing = file_check(folder, value)
            if missing:
                problems.append(Problem(missing, node=node_id, input=name, code="missing_file"))
        return problems


def graph_signature(workflow: Workflow, outputs: Iterable[str]) -> str:
    nodes = {
        node_id: [spec.type, {name: [ln.node, ln.output] for name, ln in spec.links().items()}]
        for node_id, spec in workflow.nodes.items()
    }
    return json.dumps([nodes, list(outputs)], sort_keys=True, separators=(",", ":"))


def check(
    registry: NodeRegistry,
    document: Any,
    outputs: Iterable[str] | None = None,
    file_check: FileCheck | None = None,
    budget: tuple[Budget, Callable[[str, str], Path]] | None = None,
) -> tuple[Prepared | None, list[Problem]]:
    """Parse and validate ``document``: a Prepared run, or None and every problem.
    With a ``budget`` (and a file resolver for the estimates), a valid
    workflow whose estimated cost exceeds it is refused too."""
    workflow, problems = wf.parse(document)
    checked = validate(workflow, registry, outputs, file_check)
    problems += checked.problems
    if problems:
        return None, problems
    order = needed_order(workflow, checked.order, checked.outputs)
    needed = set(order)
    files = tuple(f for f in checked.file_inputs if f[0] in needed)
    prepared = Prepared(document, workflow, tuple(checked.outputs), tuple(order), files)
    if budget is not None:
        limits, resolve = budget
        problems = over_budget(workflow, order, registry, limits, resolve)
        if problems:
            return None, problems
    return prepared, []


def prepare(
    registry: NodeRegistry,
    document: Any,
    outputs: Iterable[str] | None = None,
    file_check: FileCheck | None = None,
    budget: tuple[Budget, Callable[[str, str], Path]] | None = None,
) -> Prepared:
    """Like ``check``, but raises WorkflowInvalid listing every problem."""
    prepared, problems = check(registry, document, outputs, file_check, budget)
    if prepared is None:
        raise WorkflowInvalid(problems)
    return prepared

