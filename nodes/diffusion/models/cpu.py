"""What the CPU can do natively: whether bfloat16 arithmetic is in hardware.

Detected from what the operating system reports, never guessed from the
model name: x86 CPUs with AVX512-BF16 or AMX-BF16 (``/proc/cpuinfo`` flags),
Arm CPUs with the BF16 extension (Linux ``Features``: bf16; macOS
``hw.optional.arm.FEAT_BF16``). Elsewhere bf16 would be emulated, slower than
fp32, so ``dtype=auto`` stays fp32 there. ``LCMGRAPH_CPU_BF16=0`` (or ``1``)
overrides the detection: the test suite sets 0, so its numbers are fp32's on
every CPU.
"""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

X86_FLAGS = ("avx512_bf16", "amx_bf16")


def flags_have_bf16(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text announces native bf16 (every CPU listed must)."""
    found = []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features"):
            words = set(value.split())
            found.append(bool(words & set(X86_FLAGS)) or "bf16" in words)
    return bool(found) and all(found)


def native_bf16() -> bool:
    forced = os.environ.get("LCMGRAPH_CPU_BF16", "").strip().lower()
    if forced in ("0", "1", "false", "true", "off", "on"):
        return forced in ("1", "true", "on")
    return _detected()


@lru_cache(maxsize=1)
def _detected() -> bool:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        try:
            return flags_have_bf16(cpuinfo.read_text(errors="replace"))
        except OSError:
            return False
    if platform.system() == "Darwin":
        try:
            done = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True,
                                  text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return False
        return done.stdout.strip() == "1"
    return False
