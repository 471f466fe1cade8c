"""Problems found in a workflow, each naming where it is."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow: where (node, input) and what, in a sentence."""

    message: str
    node: str | None = None
    input: str | None = None
    code: str = "invalid"

    def __str__(self) -> str:
        where = []
        if self.node is not None:
            where.append(f"node {self.node!r}")
        if self.input is not None:
            where.append(f"input {self.input!r}")
        return (" ".join(where) + ": " if where else "") + self.message

    def to_json(self) -> dict:
        return asdict(self)


class WorkflowInvalid(Exception):
    """Raised instead of running a workflow that failed validation."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"the workflow has {count} problem{'s' if count != 1 else ''}:\n{lines}")
