"""The batching policy: which queued jobs the worker runs together.

``SameGraphBatches`` takes the head of the queue plus later queued jobs whose
workflows have the same graph (node ids, types, links, requested outputs)
and agree on every literal their nodes do not declare batchable
(``Node.batch_inputs``: a sampler lets seed and guidance differ, not steps;
EmptyLatent lets nothing differ, so sizes must match). The head always runs
in this batch, so nobody is overtaken; the later jobs merely start early.
The worker hands such a batch to ``Engine.run_batch``.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import TYPE_CHECKING

from ..batch import batch_signature
from ..prepare import check
from .jobs import Job

if TYPE_CHECKING:
    from ..registry import NodeRegistry

#: ``lcmgraph serve --batch auto``: jobs per batch on a CUDA device, and elsewhere.
AUTO_BATCH_CUDA = 4
AUTO_BATCH_OTHER = 1


class SameGraphBatches:
    def __init__(self, registry: NodeRegistry, max_batch: int = AUTO_BATCH_CUDA, lookahead: int = 32):
        self.registry = registry
        self.max_batch = max(1, int(max_batch))
        self.lookahead = max(int(lookahead), self.max_batch)
        self._signatures: OrderedDict[str, str | None] = OrderedDict()

    def select(self, queued: list[Job]) -> list[Job]:
        head = queued[0]
        wanted = self.signature(head)
        chosen = [head]
        if wanted is None:
            return chosen
        for job in queued[1:]:
            if len(chosen) >= self.max_batch:
                break
            if self.signature(job) == wanted:
                chosen.append(job)
        return chosen

    def signature(self, job: Job) -> str | None:
        """The job's batch signature (remembered per job id); None: never merged."""
        if job.id in self._signatures:
            return self._signatures[job.id]
        try:
            prepared = job.prepared
            if prepared is None:  # queued before a restart: prepare it from the stored document
                prepared, _ = check(self.registry, json.loads(job.workflow_text), job.outputs_requested)
            signature = None if prepared is None else batch_signature(prepared, self.registry)
        except Exception:  # noqa: BLE001 - a job we cannot read runs alone (and fails there, saying why)
            signature = None
        self._signatures[job.id] = signature
        while len(self._signatures) > 4 * self.lookahead:
            self._signatures.popitem(last=False)
        return signature


def auto_batch(device: str) -> int:
    """Jobs per batch for ``--batch auto``: batching pays on a GPU, which one
    image leaves partly idle; on the CPU a batch only delays the first job."""
    if device == "cuda" or device.startswith("cuda:"):
        return AUTO_BATCH_CUDA
    if device != "auto":
        return AUTO_BATCH_OTHER
    try:
        import torch
    except ImportError:
        return AUTO_BATCH_OTHER
    return AUTO_BATCH_CUDA if torch.cuda.is_available() else AUTO_BATCH_OTHER
