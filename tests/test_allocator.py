"""lcmgraph run / serve pin glibc's malloc thresholds (lcmgraph/allocator.py): a
large activation freed goes back to the OS instead of staying in the heap."""

from __future__ import annotations

import platform
import subprocess
import sys

PROBE = r"""
import sys, torch
from lcmgraph.allocator import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tuned" else None
def rss():
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]) * 1024
for _ in range(3):  # a freed 24 MiB block raises glibc's own thresholds; later ones come from the heap
    x = torch.ones(6 * 1024 * 1024)  # 24 MiB, touched
    del x
x = torch.ones(6 * 1024 * 1024)
held = rss()
del x
print(tuned, held - rss())
"""


def test_freed_large_tensors_leave_the_process():
    freed, tuned = {}, None
    for mode in ("tuned", "plain"):
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        flag, given_back = out.stdout.split()
        freed[mode] = int(given_back)
        tuned = flag if mode == "tuned" else tuned
    print(f"RSS given back on freeing 24 MiB: tuned {freed['tuned'] >> 20} MiB, glibc's defaults "
          f"{freed['plain'] >> 20} MiB")
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert tuned == "True" and freed["tuned"] >= 20 * 1024 * 1024, freed  # returned to the OS at once
    else:  # no mallopt: nothing changes, and tune_malloc says so
        assert tuned == "False"


TRIM_PROBE = r"""
import ctypes, sys
from lcmgraph.allocator import tune_malloc, trim
tune_malloc()
def rss():
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]) * 1024
blocks = [ctypes.create_string_buffer(64 * 1024) for _ in range(2000)]  # 125 MiB of small blocks, below mmap
keep = blocks[::50]  # a few stay, so the heap cannot shrink from its top alone
del blocks
before = rss()
print(trim(), before - rss())
"""


def test_trim_returns_the_heaps_free_pages():
    """Before a full-size VAE decode on the CPU the sampler's freed small blocks go back (malloc_trim)."""
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, check=True)
    trimmed, given_back = out.stdout.split()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert trimmed == "True" and int(given_back) >= 64 * 1024 * 1024, given_back
    else:
        assert trimmed == "False"
