"""Model-affinity routing: which queued jobs an idle cluster worker takes.

A job's model key is the set of model files its prepared graph loads (every
file input outside the input folder: checkpoints, LoRAs, ControlNets, VAEs,
UNets...), so the key says what a worker must hold to run it without loading.
An idle worker, looking at the first ``lookahead`` queued jobs in order, takes

1. the oldest job whose key it holds (jobs without model files: any worker);
2. else the oldest job whose key no live worker holds (somebody must load it);
3. else the oldest job whose key has a backlog: more than ``replicate_after``
   queued jobs per worker holding it (a second copy of a busy model pays);
4. else nothing for now: it waits for the next change in the queue or the
   workers (``JobQueue.nudge``).

With K models and N >= K workers each model is therefore loaded about once;
a job that overtakes older ones does so only on a worker that holds its
model. Batching is as ``--batch``: the chosen job plus later queued jobs of the
same graph (``SameGraphBatches``), which share its key.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..prepare import Prepared, check
from ..server.jobs import Job

if TYPE_CHECKING:
    from ..registry import NodeRegistry
    from ..server.batching import SameGraphBatches

#: Keys a worker is remembered to hold (the most recent ones); its model
#: manager may evict sooner under its memory budget.
REMEMBERED_KEYS = 8
#: Queued jobs per holder past which another worker loads the model too.
REPLICATE_AFTER = 4
LOOKAHEAD = 64
NO_MODELS = ""


def model_key(prepared: Prepared) -> str:
    """The model files a prepared run loads, as one string ("" when none)."""
    files = sorted({f"{folder}/{name}" for _, _, folder, name in prepared.file_inputs if folder != "input"})
    return "\n".join(files)


@dataclass
class SlotView:
    """What routing knows of one worker."""

    index: int
    alive: bool = False
    busy: bool = False
    keys: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def holds(self, key: str) -> bool:
        return key == NO_MODELS or key in self.keys

    def remember(self, key: str) -> None:
        if key == NO_MODELS:
            return
        self.keys[key] = None
        self.keys.move_to_end(key)
        while len(self.keys) > REMEMBERED_KEYS:
            self.keys.popitem(last=False)


class ModelKeys:
    """Each queued job's model key, worked out once (from the stored document
    after a restart, when the job has no prepared run)."""

    def __init__(self, registry: NodeRegistry, size: int = 4 * LOOKAHEAD):
        self.registry = registry
        self.size = size
        self._keys: OrderedDict[str, str] = OrderedDict()

    def __call__(self, job: Job) -> str:
        key = self._keys.get(job.id)
        if key is None:
            key = self._work_out(job)
            self._keys[job.id] = key
            while len(self._keys) > self.size:
                self._keys.popitem(last=False)
        return key

    def _work_out(self, job: Job) -> str:
        try:
            prepared = job.prepared
            if prepared is None and job.workflow_text:
                prepared, _ = check(self.registry, json.loads(job.workflow_text), job.outputs_requested)
        except Exception:  # noqa: BLE001 - an unreadable job goes anywhere (and fails there, saying why)
            prepared = None
        return NO_MODELS if prepared is None else model_key(prepared)


class AffinityPick:
    """The claim policy of one worker (``JobQueue.claim(policy=...)``)."""

    lookahead = LOOKAHEAD

    def __init__(self, slot: SlotView, slots: list[SlotView], keys: ModelKeys,
                 batches: SameGraphBatches | None, avoid: dict[str, int],
                 replicate_after: int = REPLICATE_AFTER):
        self.slot = slot
        self.slots = slots
        self.keys = keys
        self.batches = batches
        #: job id -> the worker it should not go back to (the one lost running it)
        self.avoid = avoid
        self.replicate_after = replicate_after

    def select(self, queued: list[Job]) -> list[Job]:
        others_alive = any(s.alive for s in self.slots if s is not self.slot)
        mine = [j for j in queued if not (others_alive and self.avoid.get(j.id) == self.slot.index)]
        head = self._pick(mine)
        if head is None:
            return []
        self.slot.remember(self.keys(head))
        if self.batches is None or self.batches.max_batch < 2:
            return [head]
        return self.batches.select([head, *(j for j in mine if j is not head)])

    def _pick(self, jobs: list[Job]) -> Job | None:
        keys = [self.keys(j) for j in jobs]
        for job, key in zip(jobs, keys, strict=True):
            if self.slot.holds(key):
                return job
        alive = [s for s in self.slots if s.alive]
        for job, key in zip(jobs, keys, strict=True):
            if not any(s.holds(key) for s in alive):
                return job
        backlog = Counter(keys)
        for job, key in zip(jobs, keys, strict=True):
            holders = sum(1 for s in alive if s.holds(key))
            if backlog[key] > self.replicate_after * holders:
                return job
        return None
