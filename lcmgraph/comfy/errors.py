"""Errors of the ComfyUI import/export: every problem at once, one per line."""

from __future__ import annotations

from ..workflow import WorkflowFileError

#: Problems the message lists (``.problems`` has them all).
MAX_LISTED = 50
ALLOW_MISSING_HINT = "(lcmgraph import-comfy --allow-missing keeps unknown node types as placeholders for the editor)"


class ComfyError(WorkflowFileError):
    """A ComfyUI workflow that cannot be converted. A WorkflowFileError, so the
    CLI reports it like any unreadable workflow (exit code 2)."""

    what = "the ComfyUI workflow cannot be converted"

    def __init__(self, problems: list[str], hint: str = ""):
        self.problems = list(problems)
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"{self.what} ({count} problem{'s' if count != 1 else ''}):"
        lines = [head, *(f"  - {p}" for p in self.problems[:MAX_LISTED])]
        if count > MAX_LISTED:
            lines.append(f"  (and {count - MAX_LISTED} more; .problems lists them all)")
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


class ComfyImportError(ComfyError):
    what = "the ComfyUI workflow cannot be imported"


class ComfyExportError(ComfyError):
    what = "the workflow cannot be exported to ComfyUI's API format"
