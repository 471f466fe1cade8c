"""The segment pack's per-engine model holder: the SAM and Grounding DINO
networks a run loaded, kept for the next run (re-running with another prompt
or threshold should not read a 2.5 GB file again), at most ``KEEP`` of them,
dropped on ``unload_all`` (ComfyUI's POST /free)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

SERVICE = "segment_models"
KEEP = 4  # a SAM, a Grounding DINO and its tokenizer, and one spare for a switch


@dataclass(frozen=True)
class SamRef:
    """SAM_MODEL: a Segment Anything file by path and identity."""

    path: str
    identity: str


@dataclass(frozen=True)
class GroundingDinoRef:
    """GROUNDING_DINO_MODEL: a Grounding DINO file and the BERT vocabulary folder it reads."""

    path: str
    identity: str
    tokenizer: str


class SegmentModels:
    def __init__(self, runtime: Any):
        self.device = _pick_device(getattr(runtime, "device", "auto"))
        self._held: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, key: str, build, ctx: Any = None, stage: str = "loading model"):
        """The object under ``key``, built by ``build()`` on first use."""
        with self._lock:
            if key in self._held:
                self._held.move_to_end(key)
                return self._held[key]
            if ctx is not None:
                ctx.progress(0, 1, stage=stage)
            value = build()
            self.loads += 1
            self._held[key] = value
            while len(self._held) > KEEP:
                self._held.popitem(last=False)
            return value

    def unload_all(self) -> int:
        with self._lock:
            count = len(self._held)
            self._held.clear()
            return count


def _pick_device(requested: str | None) -> str:
    """The runtime's device; "auto": CUDA where there is one, else the CPU (float32 either way)."""
    if requested and requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def factory(runtime: Any) -> SegmentModels:
    return SegmentModels(runtime)
