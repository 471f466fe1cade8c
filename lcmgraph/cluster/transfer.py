"""What crosses between a cluster worker and the server: events and output files.

On the worker, results name files by host path; those under the worker's
job output folder or its temp folder are sent as (folder, relative name,
bytes) before the message that names them, which names them as
``{"remote_file": [folder, name]}``. The server writes each file to the same
relative name under its own folder and gives the message its own path back,
so the relay, history and file index see what one process would have made.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import events as E

REMOTE = "remote_file"


class ProgressGate:
    """Drops progress the server's relay would drop anyway (the first, second
    and last step always pass), so a fast GPU worker does not flood the link."""

    def __init__(self, interval: float):
        self.interval = interval
        self._last = 0.0

    def due(self, event: E.Event) -> bool:
        step, total = event.data.get("step"), event.data.get("total")
        now = time.monotonic()
        if step in (0, 1) or step == total or now - self._last >= self.interval:
            self._last = now
            return True
        return False


def pack_event(event: E.Event, preview_side: int) -> dict[str, Any]:
    preview = event.preview
    if preview is not None and hasattr(preview, "thumbnail"):
        preview = preview.copy()
        preview.thumbnail((preview_side, preview_side))
    return {"kind": event.kind, "run_id": event.run_id, "node": event.node, "node_type": event.node_type,
            "data": event.data, "time": event.time, "preview": preview}


def unpack_event(packed: dict[str, Any]) -> E.Event:
    return E.Event(packed["kind"], packed["run_id"], packed["node"], packed["node_type"], packed["data"],
                   preview=packed["preview"], time=packed["time"])


class Shipper:
    """Worker side: results with host paths -> results naming sent files."""

    def __init__(self, roots: dict[str, Path], send: bool = True):
        self.roots = {folder: Path(root).resolve() for folder, root in roots.items()}
        #: False: the server reads these folders itself (shared storage); names only.
        self.send = send
        self._sent: set[str] = set()

    def ship(self, value: Any) -> tuple[Any, list[tuple[str, str, bytes]]]:
        files: list[tuple[str, str, bytes]] = []
        return self._walk(value, files), files

    def _walk(self, value: Any, files: list) -> Any:
        if isinstance(value, dict):
            if "path" in value:
                return self._entry(value, files)
            return {k: self._walk(v, files) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v, files) for v in value]
        return value

    def _entry(self, entry: dict, files: list) -> dict:
        out = {k: v for k, v in entry.items() if k != "path"}
        path = Path(str(entry["path"])).resolve()
        for folder, root in self.roots.items():
            try:
                rel = path.relative_to(root).as_posix()
            except ValueError:
                continue
            out[REMOTE] = [folder, rel]
            if self.send and str(path) not in self._sent and path.is_file():
                files.append((folder, rel, path.read_bytes()))
                self._sent.add(str(path))
            break
        return out


def land(roots: dict[str, list[Path]], folder: str, rel: str, data: bytes) -> Path:
    """Server side: write a sent file under ``folder``'s first root (atomically)."""
    parts = rel.split("/")
    if folder not in roots or not rel or any(p in ("", ".", "..") for p in parts) or "\\" in rel:
        raise ValueError(f"a worker sent a file with an unusable name: {folder}/{rel!r}")
    target = Path(roots[folder][0]).joinpath(*parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staged = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(staged, target)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
    return target


def localize(value: Any, roots: dict[str, list[Path]]) -> Any:
    """Server side: ``remote_file`` entries name the server's copies by path again."""
    if isinstance(value, dict):
        if REMOTE in value:
            folder, rel = value[REMOTE]
            out = {k: v for k, v in value.items() if k != REMOTE}
            if folder in roots:
                out["path"] = str(Path(roots[folder][0]).joinpath(*rel.split("/")))
            return out
        return {k: localize(v, roots) for k, v in value.items()}
    if isinstance(value, list):
        return [localize(v, roots) for v in value]
    return value
