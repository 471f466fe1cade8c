"""What output nodes report, made public: absolute paths become API URLs."""

from __future__ import annotations

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
