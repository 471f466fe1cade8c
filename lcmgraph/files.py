"""Named file folders (checkpoints, loras, controlnet, input, output, ...).

Inputs that name a file (``Input(..., folder="loras")``) are resolved here,
never as arbitrary paths: a name is looked up inside the configured folders
and must stay inside them. ``builtin:NAME`` resolves through providers that
node packs register (a shipped model, a deterministically built test model).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .registry import NodeRegistry

BUILTIN_PREFIX = "builtin:"
DEFAULT_FOLDERS = ("checkpoints", "loras", "controlnet", "vae", "unet", "embeddings", "upscale_models", "clip_vision", "ipadapter",
                   "annotators", "sams", "grounding-dino", "bert-base-uncased",
                   "input")
#: Extensions listed for each folder ("" = directories, e.g. a diffusers folder).
LISTED_SUFFIXES = {".safetensors", ".ckpt", ".pt", ".bin", ".png", ".jpg", ".jpeg", ".webp"}


class FileNotInFolder(FileNotFoundError):
    pass


class ModelFolders:
    def __init__(self, roots: Mapping[str, Iterable[str | Path]], registry: NodeRegistry, owner: Any = None,
                 reveal_paths: bool = True):
        self.roots: dict[str, list[Path]] = {k: [Path(p).expanduser() for p in v] for k, v in roots.items()}
        self._registry = registry
        self._owner = owner
        #: False: "not found" messages do not list the host folders searched.
        self.reveal_paths = reveal_paths
        self._builtin_paths: dict[tuple[str, str], Path] = {}

    def folders(self) -> list[str]:
        return sorted(set(self.roots) | self._registry.builtin_folders())

    def _scheme(self, name: str) -> tuple[Any, str] | None:
        """A pack-provided scheme handler for ``scheme:rest`` names, if any."""
        scheme, sep, rest = name.partition(":")
        if not sep or len(scheme) < 2:  # "C:" is a drive letter, not a scheme
            return None
        handler = self._registry.file_scheme(scheme)
        return (handler, rest) if handler is not None else None

    def resolve(self, folder: str, name: str) -> Path:
        if name.startswith(BUILTIN_PREFIX):
            return self._builtin(folder, name[len(BUILTIN_PREFIX):])
        if (scheme := self._scheme(name)) is not None:
            handler, rest = scheme
            return Path(handler.resolve(self._owner, folder, rest))
        problem = self._unsafe(name)
        if problem:
            raise FileNotInFolder(f"{name!r}: {problem}")
        for root in self.roots.get(folder, []):
            candidate = (root / name)
            try:
                real_root = root.resolve()
                real = candidate.resolve()
            except OSError:
                continue
            if real != real_root and real_root not in real.parents:
                raise FileNotInFolder(f"{name!r} points outside the {folder} folder")
            if candidate.exists():
                return candidate
        if not self.reveal_paths:
            raise FileNotInFolder(f"{name!r} was not found in the {folder} folder")
        searched = ", ".join(str(r) for r in self.roots.get(folder, [])) or "no folder configured"
        raise FileNotInFolder(f"{name!r} was not found in the {folder} folder ({searched})")

    def check(self, folder: str, name: str) -> str | None:
        """Validation hook: a sentence if ``name`` cannot be resolved, else None."""
        if name.startswith(BUILTIN_PREFIX):
            short = name[len(BUILTIN_PREFIX):]
            if self._registry.builtin_file_provider(folder, short) is None:
                known = ", ".join(BUILTIN_PREFIX + n for n in self._registry.builtin_files(folder)) or "none"
                return f"unknown built-in {folder} file {name!r} (built-ins: {known})"
            return None
        if (scheme := self._scheme(name)) is not None:
            handler, rest = scheme
            return handler.check(self._owner, folder, rest)
        try:
            self.resolve(folder, name)
        except FileNotFoundError as exc:
            return str(exc)
        return None

    def identity(self, folder: str, name: str) -> str:
        """A cache-key component that changes when the file changes."""
        if name.startswith(BUILTIN_PREFIX):
            return name
        if (scheme := self._scheme(name)) is not None:
            handler, rest = scheme
            return handler.identity(self._owner, folder, rest)
        try:
            path = self.resolve(folder, name)
        except FileNotFoundError:
            return "missing"
        return _identity(path)

    def list(self, folder: str) -> list[str]:
        names = {BUILTIN_PREFIX + n for n in self._registry.builtin_files(folder)}
        for root in self.roots.get(folder, []):
            if not root.is_dir():
                continue
            real_root = root.resolve()
            for entry in root.rglob("*"):
                rel = entry.relative_to(root).as_posix()
                if entry.is_symlink() and not _inside(entry, real_root):
                    continue  # a link out of the folder is not offered (resolve refuses it too)
                if entry.is_file() and entry.suffix.lower() in LISTED_SUFFIXES:
                    if not any(part.startswith(".") for part in entry.relative_to(root).parts):
                        names.add(rel)
                elif entry.is_dir() and (entry / "model_index.json").is_file():
                    names.add(rel)
        return sorted(names)

    def _builtin(self, folder: str, short: str) -> Path:
        key = (folder, short)
        if key not in self._builtin_paths:
            provider = self._registry.builtin_file_provider(folder, short)
            if provider is None:
                raise FileNotInFolder(f"unknown built-in {folder} file {BUILTIN_PREFIX + short!r}")
            self._builtin_paths[key] = Path(provider(self._owner))
        return self._builtin_paths[key]

    @staticmethod
    def _unsafe(name: str) -> str | None:
        if not name or "\x00" in name:
            return "not a valid file name"
        if os.path.isabs(name) or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            return "absolute paths are not allowed; give a name inside the folder"
        if any(part == ".." for part in name.replace("\\", "/").split("/")):
            return "'..' is not allowed in file names"
        return None


def _inside(path: Path, real_root: Path) -> bool:
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a dangling link or a loop
        return False
    return real == real_root or real_root in real.parents


def _identity(path: Path) -> str:
    """Size + mtime of a file, or of every file below a model folder."""
    if path.is_dir():
        parts = []
        for entry in sorted(path.rglob("*")):
            if entry.is_file():
                st = entry.stat()
                parts.append(f"{entry.relative_to(path).as_posix()}:{st.st_size}:{st.st_mtime_ns}")
        return "dir:" + ";".join(parts)
    st = path.stat()
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
