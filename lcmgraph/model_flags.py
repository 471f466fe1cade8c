"""Command-line flags for the model manager's options, shared by ``lcmgraph
run`` / ``validate`` / ``nodes`` and ``lcmgraph serve``.

The engine does not interpret them: they become ``EngineConfig.options``, which
the diffusion pack's model manager reads (nodes/diffusion/models/fastpath.py says
what each does). A flag left at ``auto`` is not passed on, so the pack's own
per-device default applies.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .argtypes import number

_SWITCH = ("auto", "on", "off")
COMPILE_CHOICES = ("auto", "off", "default", "reduce-overhead", "max-autotune",
                   "max-autotune-no-cudagraphs")

#: flag -> (option name, choices, help)
FLAGS: dict[str, tuple[str, tuple[str, ...] | None, str]] = {
    "--dtype": ("dtype", ("auto", "fp16", "bf16", "fp32"),
                "model precision (auto: fp16 on CUDA; bf16 on a CPU that computes it natively, "
                "AVX512-BF16, AMX or Arm BF16; fp32 elsewhere)"),
    "--compile": ("compile", COMPILE_CHOICES,
                  "torch.compile the UNet and VAE decoder after a model's first image "
                  "(auto: reduce-overhead on CUDA, off elsewhere)"),
    "--compile-after": ("compile_after", None,
                        "images a model runs eagerly before it is compiled (default 1; 0 compiles at once)"),
    "--compile-cache": ("compile_cache", None,
                        "persistent compile cache folder, or 'off' (default ~/.cache/lcmgraph/compile)"),
    "--attention": ("attention", ("sdpa", "flash", "efficient", "cudnn", "math"),
                    "attention kernel (sdpa: let torch choose)"),
    "--channels-last": ("channels_last", _SWITCH, "channels_last memory format (auto: when compiled, and bf16 on a CPU)"),
    "--fused-qkv": ("fused_qkv", _SWITCH, "fused q/k/v projections (auto: when compiled)"),
    "--fuse-lora": ("fuse_lora", _SWITCH,
                    "fold LoRAs into the UNet weights, restored exactly when the list changes "
                    "(auto: on CUDA)"),
    "--vae-dtype": ("vae_dtype", ("auto", "model", "fp32", "bf16", "fp16"),
                    "VAE precision (auto: an fp16 SDXL VAE that overflows is kept in bf16/fp32)"),
    "--text-dtype": ("text_dtype", ("auto", "model", "fp32", "bf16", "fp16"),
                     "text encoders' precision (auto: fp32 when the models run in bf16 on a CPU)"),
}


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """``--offload``, ``--threads`` and the fast-path flags."""
    p.add_argument("--offload", action="store_true",
                   help="keep weights in CPU memory; only the running stage sits on the GPU (small cards)")
    p.add_argument("--threads", type=number(int, "a whole number of threads above 0", low=1), default=None, metavar="N",
                   help=f"CPU threads for torch (default: the physical cores this process may use, "
                        f"{physical_cores()} here; more threads than cores only wait on each other)")
    group = p.add_argument_group("GPU fast path (docs/gpu.md)")
    for flag, (_, choices, text) in FLAGS.items():
        if flag == "--compile-after":
            group.add_argument(flag, type=int, default=None, metavar="N", help=text)
        elif choices is None:
            group.add_argument(flag, default=None, metavar="DIR", help=text)
        else:
            group.add_argument(flag, choices=choices, default=choices[0], help=text)



def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (hyper-threads count
    once: a second thread on a core slows torch's kernels down)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no topology to read
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def apply_threads(args: argparse.Namespace) -> int:
    """Set torch's intra-op threads for this process (``--threads`` or the physical cores),
    and tune malloc for large, changing activations (allocator.py)."""
    import torch

    from .allocator import tune_malloc

    tune_malloc()
    threads = getattr(args, "threads", None) or physical_cores()
    torch.set_num_threads(threads)
    return threads


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """EngineConfig.options from parsed flags (only what differs from auto)."""
    options: dict[str, Any] = {}
    if getattr(args, "offload", False):
        options["offload"] = True
    for flag, (name, choices, _) in FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"), None)
        if value is None or (choices is not None and value == choices[0]):
            continue
        options[name] = value
    return options
