"""What one job may cost on this server, and what it may fetch: the budget
(``--max-pixels``, ``--max-batch``, ``--max-steps``, ``--max-memory``) the
engine checks at validation, and the engine options that keep a request from
downloading models or decoding huge images (``--allow-downloads``)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..argtypes import number
from ..budget import Budget, Limit
from .config import Limits

#: Defaults per device kind: (pixels per image, images per job).
CPU_DEFAULTS = (2048 * 2048, 8)
GPU_DEFAULTS = (4096 * 4096, 32)
DEFAULT_MAX_STEPS = 150
_POSITIVE = number(int, "a whole number above 0", low=1, separators=True)
_MEMORY = number(float, "'auto' or gigabytes above 0", above=0, auto=True)


def add_job_limit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-pixels", type=_POSITIVE, default=None, metavar="N",
                   help=f"largest image a job may make or load, in pixels (default {CPU_DEFAULTS[0]:,} = 2048x2048 "
                        f"on the CPU, {GPU_DEFAULTS[0]:,} on a GPU)")
    p.add_argument("--max-batch", type=_POSITIVE, default=None, metavar="N",
                   help=f"most images in one job's batch (default {CPU_DEFAULTS[1]} on the CPU, "
                        f"{GPU_DEFAULTS[1]} on a GPU)")
    p.add_argument("--max-steps", type=_POSITIVE, default=DEFAULT_MAX_STEPS, metavar="N",
                   help=f"most sampling steps in one sampler (default {DEFAULT_MAX_STEPS})")
    p.add_argument("--max-memory", type=_MEMORY, default="auto", metavar="GB",
                   help="most working memory one node of a job may need, estimated before it runs "
                        "(default auto: half the RAM on the CPU, 90%% of the GPU's memory)")
    p.add_argument("--allow-downloads", nargs="*", default=None, metavar="REPO",
                   help="let jobs download hub: models that are not in the local Hugging Face cache; "
                        "with REPO patterns (org/name, org/*) only those (default: no downloads)")




def on_gpu(device: str) -> bool:
    if device.startswith("cuda"):
        return True
    if device != "auto":
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def auto_memory(gpu: bool) -> int:
    if gpu:
        import torch

        return int(torch.cuda.get_device_properties(0).total_memory * 0.9)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def budget_from_args(args: argparse.Namespace) -> Budget:
    gpu = on_gpu(getattr(args, "device", "auto"))
    pixels, batch = GPU_DEFAULTS if gpu else CPU_DEFAULTS
    memory = args.max_memory
    return Budget({
        "pixels": Limit(args.max_pixels or pixels, "--max-pixels", lambda a: f"{a:,.0f} pixels"),
        "batch": Limit(args.max_batch or batch, "--max-batch", lambda a: f"{a:,.0f} images"),
        "steps": Limit(args.max_steps, "--max-steps", lambda a: f"{a:,.0f} steps"),
        "memory": Limit(auto_memory(gpu) if memory == "auto" else memory * 2**30, "--max-memory",
                        lambda a: f"{a / 2**30:,.1f} GiB"),
    })


def engine_options(args: argparse.Namespace, limits: Limits) -> dict[str, Any]:
    """Engine options the server sets for every job: no downloads unless allowed,
    input images under the same pixel limits as uploads."""
    allowed = args.allow_downloads
    downloads: bool | list[str] = False if allowed is None else (list(allowed) if allowed else True)
    return {"hub_downloads": downloads, "max_image_pixels": limits.max_image_pixels,
            "max_image_side": limits.max_image_side}
