"""The folders the server reads files from, and safe name -> path resolution.

Only names inside a configured folder are ever served: no absolute paths, no
'..', no hidden or empty segments, no backslashes or control characters, and
the fully resolved path (symlinks followed) must still lie inside the folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

from .errors import ApiError, bad_request, not_found

MAX_NAME = 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
#: File types served from the folders (all are images the server made or re-encoded).
SERVED_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


class ServedFolders:
    """output (job results), temp (PreviewImage), input (uploads and LoadImage files)."""

    def __init__(self, output: Path, temp: Path, input_roots: list[Path]):
        self.roots: dict[str, list[Path]] = {"output": [output], "temp": [temp], "input": list(input_roots)}

    @property
    def upload_root(self) -> Path:
        return self.roots["input"][0]

    def names(self) -> list[str]:
        return sorted(self.roots)

    def resolve(self, folder: str, name: str) -> Path:
        """An existing regular file inside ``folder``; ApiError (4xx) otherwise."""
        if folder not in self.roots:
            raise not_found(f"no folder {folder!r}; files are served from {', '.join(self.names())}",
                            code="unknown_folder")
        check_name(name, folder)
        parts = name.split("/")
        if Path(parts[-1]).suffix.lower() not in SERVED_SUFFIXES:
            raise not_found(f"{name!r} in the {folder} folder is not a served image type "
                            f"({', '.join(sorted(SERVED_SUFFIXES))})", code="not_served")
        for root in self.roots[folder]:
            try:
                real_root = root.resolve()
                real = root.joinpath(*parts).resolve(strict=True)
            except (OSError, RuntimeError):  # missing, or a symlink loop
                continue
            if real_root not in real.parents:
                raise ApiError(403, "outside_folder", f"{name!r} resolves outside the {folder} folder; refused")
            if not real.is_file():
                raise not_found(f"{name!r} in the {folder} folder is not a file", code="not_a_file")
            return real
        raise not_found(f"no file {name!r} in the {folder} folder", code="no_such_file")

    def locate(self, path: str | os.PathLike) -> tuple[str, str] | None:
        """(folder, relative name) of a file a node wrote, if it lies in a served folder."""
        try:
            real = Path(path).resolve()
        except (OSError, RuntimeError):
            return None
        for folder, roots in self.roots.items():
            for root in roots:
                try:
                    rel = real.relative_to(root.resolve())
                except (ValueError, OSError, RuntimeError):
                    continue
                return folder, rel.as_posix()
        return None


def check_name(name: str, folder: str) -> None:
    if not name or len(name) > MAX_NAME:
        raise bad_request(f"a file name in the {folder} folder must be 1-{MAX_NAME} characters",
                          code="invalid_name")
    if any(ord(c) < 32 or c == "\x7f" for c in name) or "\\" in name:
        raise bad_request(f"{name[:80]!r}: control characters and backslashes are not allowed in file names",
                          code="invalid_name")
    if name.startswith("/") or _DRIVE.match(name):
        raise bad_request(f"{name[:80]!r}: absolute paths are not allowed; give a name inside the {folder} folder",
                          code="invalid_name")
    for part in name.split("/"):
        if part in ("", ".", ".."):
            raise bad_request(f"{name[:80]!r}: empty, '.' and '..' path segments are not allowed",
                              code="invalid_name")
        if part.startswith("."):
            raise bad_request(f"{name[:80]!r}: hidden names (starting with '.') are not served",
                              code="invalid_name")


def file_url(folder: str, rel: str) -> str:
    return f"/api/files/{folder}/{quote(rel, safe='/')}"
