"""Job budgets: what a workflow would cost, estimated before it runs.

A node may declare ``Node.estimate``: given its literal inputs and what is
known of its linked inputs (the *facts* upstream estimates produced, e.g. a
latent's batch and size), it returns the facts of its own outputs and the
``Usage`` of running it (pixels, batch, steps, bytes of memory, ...). The
engine walks a prepared workflow in order, and any usage above the
``Budget`` a server (or an embedding application) set is a validation
problem naming the node, the input and the limit, so the job is refused
before anything is loaded.

The engine knows no quantity: a budget is a mapping of names to maxima,
and a usage names its quantity. Nodes that declare nothing produce no facts:
what they feed is unknown and not limited (a plugin without estimates is
never refused for lack of one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .node import literal_inputs
from .problems import Problem
from .workflow import Link, Workflow

if TYPE_CHECKING:
    from .registry import NodeRegistry


@dataclass(frozen=True)
class Usage:
    """What running one node needs of one quantity."""

    quantity: str
    amount: float
    #: What it is, for the message ("a 8192x8192 image, batch 64").
    what: str
    #: The input whose value decides it (named in the problem), if one does.
    input: str | None = None


@dataclass(frozen=True)
class Estimate:
    """A node's estimate: facts about its outputs (by name) and what it uses."""

    outputs: Mapping[str, Any] = field(default_factory=dict)
    usage: tuple[Usage, ...] = ()


@dataclass(frozen=True)
class Limit:
    maximum: float
    #: How the limit is set, for the message ("--max-pixels").
    setting: str = ""
    #: How amounts print ("{:,.0f} pixels", a function of the amount).
    unit: Callable[[float], str] = field(default=lambda amount: f"{amount:,.0f}")


@dataclass(frozen=True)
class Budget:
    limits: Mapping[str, Limit]

    def check(self, usage: Usage) -> str | None:
        limit = self.limits.get(usage.quantity)
        if limit is None or usage.amount <= limit.maximum:
            return None
        setting = f" ({limit.setting})" if limit.setting else ""
        return (f"{usage.what} needs {limit.unit(usage.amount)}, above this server's limit of "
                f"{limit.unit(limit.maximum)}{setting}")


class EstimateContext:
    """What ``Node.estimate`` may use: resolve file inputs (e.g. to read an image's size)."""

    def __init__(self, resolve: Callable[[str, str], Path]):
        self._resolve = resolve

    def resolve_file(self, folder: str, name: str) -> Path:
        return self._resolve(folder, name)


def over_budget(workflow: Workflow, order: Iterable[str], registry: NodeRegistry, budget: Budget,
                resolve: Callable[[str, str], Path]) -> list[Problem]:
    """Walk the nodes in ``order`` with their estimates; a problem per usage above the budget."""
    ctx = EstimateContext(resolve)
    facts: dict[tuple[str, str], Any] = {}
    problems: list[Problem] = []
    for node_id in order:
        spec = workflow.nodes[node_id]
        cls = registry.get(spec.type)
        if not cls.has_estimate:
            continue
        upstream = {name: facts.get((value.node, value.output)) for name, value in spec.inputs.items()
                    if isinstance(value, Link)}
        try:
            estimate = cls.estimate(ctx, literal_inputs(cls, spec.inputs), upstream)
        except Exception as exc:  # noqa: BLE001 - an estimate that cannot be made is a problem, not a crash
            problems.append(Problem(f"the job's cost could not be estimated: {exc}", node=node_id, code="over_budget"))
            continue
        if estimate is None:
            continue
        for name, value in estimate.outputs.items():
            facts[(node_id, name)] = value
        for usage in estimate.usage:
            message = budget.check(usage)
            if message:
                problems.append(Problem(message, node=node_id, input=usage.input, code="over_budget"))
    return problems
