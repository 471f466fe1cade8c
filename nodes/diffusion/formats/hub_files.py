"""The ``hub:`` file scheme: ``hub:org/name`` (a diffusers repo) or
``hub:org/name/path/file.safetensors`` (one file in a repo) wherever a node
takes a model file — LoadCheckpoint, ApplyLoRA, LoadControlNet.

Validation and cache keys never touch the network: offline (HF_HUB_OFFLINE)
an uncached id is a validation error; online it is fetched when the node runs,
if the runtime allows downloads (option ``hub_downloads``: True, the CLI's
default; False, the server's default; or a list of ``org/name`` patterns,
``lcmgraph serve --allow-downloads``). Input images never come from the hub.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

from .checkpoint_files import CheckpointError, hub_offline, looks_like_hub_id, resolve_hub

FORM = "hub ids look like org/name or org/name/path/file.safetensors"


def downloads_allowed(runtime, rest: str) -> bool:
    allowed = runtime.options.get("hub_downloads", True)
    if isinstance(allowed, bool):
        return allowed
    repo = "/".join(rest.split("/")[:2])
    return any(fnmatchcase(repo, pattern) for pattern in allowed)


class HubFiles:
    def check(self, runtime, folder: str, rest: str) -> str | None:
        if folder == "input":
            return f"'hub:{rest}': the hub holds models; an input image must be a file in the input folder"
        if not looks_like_hub_id(rest):
            return f"'hub:{rest}' is not a hub id ({FORM})"
        allowed = downloads_allowed(runtime, rest)
        if hub_offline() or not allowed:
            try:
                resolve_hub(rest, local_only=True)
            except CheckpointError as exc:
                if not allowed:
                    repo = "/".join(rest.split("/")[:2])
                    return (f"'hub:{rest}' is not in this machine's model cache, and downloads are off here "
                            f"(the operator can allow them: lcmgraph serve --allow-downloads {repo})")
                return f"hub:{exc}"
        return None

    def resolve(self, runtime, folder: str, rest: str) -> Path:
        if folder == "input":
            raise FileNotFoundError(f"'hub:{rest}': an input image must be a file in the input folder")
        return resolve_hub(rest, local_only=not downloads_allowed(runtime, rest))

    def identity(self, runtime, folder: str, rest: str) -> str:
        # The cached snapshot path carries the revision: a new revision is a new key.
        try:
            return str(resolve_hub(rest, local_only=True))
        except CheckpointError:
            return f"hub:{rest}:not-cached"


FILE_SCHEMES = {"hub": HubFiles()}
