"""Joining (or starting) the Ray cluster and declaring the worker actor class."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

from .options import RayOptions
from .remote import EngineWorker

log = logging.getLogger("lcmgraph.cluster")


@dataclass
class Cluster:
    ray: Any
    #: ``ray.remote(EngineWorker)`` with each worker's resources.
    actor_class: Any
    #: This process started Ray (``ray.shutdown`` when done).
    owns_ray: bool
    #: What one worker reserves ({"CPU": .., "GPU": ..}).
    needs: dict[str, float]

    def kill(self, actor: Any) -> None:
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def close(self) -> None:
        if self.owns_ray:
            self.ray.shutdown()


def connect(options: RayOptions) -> Cluster:
    """Ray as ``options`` say (a Ray this process already started is used as it is)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports home unless asked for
    import ray

    owns = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False}
        if options.address == "local":
            kwargs["num_cpus"] = max(os.cpu_count() or 1, math.ceil(options.workers * options.cpus_per_worker))
            if options.object_store_bytes:
                kwargs["object_store_memory"] = options.object_store_bytes
        ray.init(address=options.address, **kwargs)
        owns = True
    gpus = options.gpus_per_worker
    if gpus is None:
        total = float(ray.cluster_resources().get("GPU", 0))
        gpus = 0.0 if total <= 0 else min(1.0, total / options.workers)
    # Threaded: ``info`` and ``interrupt`` are answered while ``run`` works.
    actor_class = ray.remote(EngineWorker).options(num_cpus=options.cpus_per_worker, num_gpus=gpus,
                                                   max_concurrency=4, max_restarts=0)
    log.info("Ray cluster: %s; %d worker(s), %g GPU and %g CPU each", ray.cluster_resources(),
             options.workers, gpus, options.cpus_per_worker)
    return Cluster(ray, actor_class, owns, {"CPU": options.cpus_per_worker, "GPU": gpus})
