"""``--ray`` options: where the cluster is, how many workers, what each gets."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ..argtypes import number

#: How output files reach the server: sent back through Ray ("server"), or
#: written by the workers straight into the server's output folder ("shared":
#: one machine, or the same path on a shared file system on every node).
STORAGE = ("server", "shared")
MAX_WORKERS = 1024
_WORKERS = number(int, f"a whole number from 1 to {MAX_WORKERS}", low=1, high=MAX_WORKERS)
_FRACTION = number(float, "a number from 0 to 64", low=0, high=64)


@dataclass(frozen=True)
class RayOptions:
    #: "local" starts a Ray of its own on this machine; "auto" joins the running
    #: cluster; else an address ("host:6379", "ray://host:10001"); None: Ray's
    #: default (RAY_ADDRESS, else a running local cluster, else a new one).
    address: str | None = "local"
    workers: int = 1
    #: GPUs per worker actor (None: 1 if the cluster has a GPU for every worker, else 0).
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    storage: str = "server"
    #: Ray's object store for a "local" cluster, in bytes (None: Ray's default).
    object_store_bytes: int | None = None


def add_ray_arguments(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("Ray cluster (docs/scale-out.md)")
    group.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run jobs on Ray worker actors: 'local' starts Ray on this machine, 'auto' "
                            "joins the running cluster, or give its address; bare --ray: Ray's default")
    group.add_argument("--workers", type=_WORKERS, default=1, metavar="N",
                       help="Ray workers, each with its own engine and models (default 1)")
    group.add_argument("--gpus-per-worker", type=_FRACTION, default=None, metavar="F",
                       help="GPUs each worker reserves (default: the cluster's GPUs shared out, at most 1 each; "
                            "0 without GPUs)")
    group.add_argument("--cpus-per-worker", type=_FRACTION, default=1.0, metavar="F",
                       help="CPUs each worker reserves; CPU workers use as many threads (default 1)")
    group.add_argument("--ray-storage", choices=STORAGE, default="server",
                       help="output files: sent back to the server (default), or written by the workers "
                            "into the server's output folder (same machine or shared file system)")


def ray_options_from_args(args: argparse.Namespace) -> RayOptions | None:
    address = getattr(args, "ray", None)
    if address is None:
        return None
    return RayOptions(address=address or None, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                      cpus_per_worker=args.cpus_per_worker, storage=args.ray_storage)


