"""What output nodes report, made public: absolute paths become API URLs."""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path
from typing import Any

from .folders import ServedFolders, file_url


def public_results(results: dict[str, Any], folders: ServedFolders,
                   thumbnail_side: int) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """(results with "path" replaced by folder/name/url, [(folder, name, node)] of files)."""
    public: dict[str, Any] = {}
    files: list[tuple[str, str, str]] = []
    for node, kinds in (results or {}).items():
        if not isinstance(kinds, dict):
            public[node] = kinds
            continue
        out: dict[str, Any] = {}
        for kind, entries in kinds.items():
            if not isinstance(entries, list):
                out[kind] = entries
                continue
            out[kind] = [_entry(e, node, folders, thumbnail_side, files) for e in entries]
        public[node] = out
    return public, files


def _entry(entry: Any, node: str, folders: ServedFolders, side: int, files: list) -> Any:
    if not isinstance(entry, dict) or "path" not in entry:
        return entry
    item = {k: v for k, v in entry.items() if k != "path"}
    located = folders.locate(str(entry["path"]))
    if located is not None:
        folder, rel = located
        url = file_url(folder, rel)
        item.update(folder=folder, name=rel, url=url, thumbnail=f"{url}?thumbnail={side}")
        files.append((folder, rel, node))
    return item


#: Job ids the queue makes (16 hex digits) or a ComfyUI client gives (a lower-case UUID):
#: only such a folder under the output root is removed whole.
_JOB_ID = re.compile(r"^(?:[0-9a-f]{16}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
#: Folders whose indexed files are removed with their job (inputs are shared, never removed).
REMOVABLE_FOLDERS = ("output", "temp")


def remove_job_files(folders: ServedFolders, output_root: Path, job_ids: list[str],
                     files: list[tuple[str, str]]) -> int:
    """Remove deleted jobs' files: those their index entries name (in the output
    and temp folders, never following a link out of them) and each job's own
    output folder. Returns how many files were removed. Runs on a thread."""
    removed = 0
    for folder, rel in files:
        if folder not in REMOVABLE_FOLDERS:
            continue
        for root in folders.roots.get(folder, []):
            path = _inside(root, rel)
            if path is not None and (path.is_file() or path.is_symlink()):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
                break
    for job_id in job_ids:
        folder = output_root / job_id
        if not _JOB_ID.match(job_id) or folder.is_symlink() or not folder.is_dir():
            continue
        removed += sum(1 for p in folder.rglob("*") if p.is_file() or p.is_symlink())
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def _inside(root: Path, rel: str) -> Path | None:
    """root/rel if it lies inside root (its folders resolved; the file itself may be a link)."""
    try:
        real_root = root.resolve()
        candidate = root.joinpath(*rel.split("/"))
        parent = candidate.parent.resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if parent != real_root and real_root not in parent.parents:
        return None
    if any(part in ("", ".", "..") for part in rel.split("/")):
        return None
    return parent / candidate.name
