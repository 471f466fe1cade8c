"""The ``hub:`` file scheme: ``hub:org/name`` (a diffusers repo) or
``hub:org/name/path/file.safetensors`` (one file in a repo) wherever a node
takes a model file — LoadCheckpoint, ApplyLoRA, LoadControlNet.

Validation and cache keys never touch the network: offline (HF_HUB_OFFLINE)
an uncached id is a validation error; online it is fetched when the node runs.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint_files import CheckpointError, hub_offline, looks_like_hub_id, resolve_hub

FORM = "hub ids look like org/name or org/name/path/file.safetensors"


class HubFiles:
    def check(self, runtime, folder: str, rest: str) -> str | None:
        if not looks_like_hub_id(rest):
            return f"'hub:{rest}' is not a hub id ({FORM})"
        if hub_offline():
            try:
                resolve_hub(rest, local_only=True)
            except CheckpointError as exc:
                return f"hub:{exc}"
        return None

    def resolve(self, runtime, folder: str, rest: str) -> Path:
        return resolve_hub(rest)

    def identity(self, runtime, folder: str, rest: str) -> str:
        # The cached snapshot path carries the revision: a new revision is a new key.
        try:
            return str(resolve_hub(rest, local_only=True))
        except CheckpointError:
            return f"hub:{rest}:not-cached"


FILE_SCHEMES = {"hub": HubFiles()}
