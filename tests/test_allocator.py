"""lcmgraph run / serve tune glibc's malloc (lcmgraph/allocator.py): while a model loads,
a large temporary freed goes back to the OS; while it computes, a large buffer freed is
reused by the next call (oneDNN's per-call weight reorders) instead of being mapped and
page-faulted afresh."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _huge_pages_always() -> bool:
    """Transparent huge pages for every mapping: a fresh 59 MB mapping then faults in 2 MiB
    pages (about 30 faults, not 14,400), so only where the buffer lives tells reuse apart."""
    try:
        return "[always]" in open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return False

PROBE = r"""
import resource, sys, torch
from lcmgraph.allocator import loading, tune_malloc
tuned = tune_malloc() if sys.argv[1] != "plain" else None
def rss():
    return int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]) * 1024
def given_back():
    for _ in range(3):  # a freed 24 MiB block raises glibc's own thresholds; later ones come from the heap
        x = torch.ones(6 * 1024 * 1024)  # 24 MiB, touched
        del x
    x = torch.ones(6 * 1024 * 1024)
    held = rss()
    del x
    return held - rss()
def region(address):
    for line in open("/proc/self/maps"):
        fields = line.split()
        lo, hi = (int(a, 16) for a in fields[0].split("-"))
        if lo <= address < hi:
            return " ".join(fields[5:]) if len(fields) > 5 else "anonymous"
    return "unmapped"
def reorders():
    # A conv's weight reorder, as oneDNN does it on every call: a 59 MB buffer, written, freed.
    # Returns where the buffer lived and the page faults of each call (the median is taken:
    # a kernel may unmap or migrate resident pages now and then, NUMA balancing, compaction or
    # reclaim, faulting a reused buffer in part).
    torch.ones(59_000_000 // 4)
    faults, where = [], set()
    for _ in range(7):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(59_000_000 // 4)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        where.add(region(x.data_ptr()))
        del x
    return "+".join(sorted(where)), sorted(faults)[len(faults) // 2]
if sys.argv[1] == "loading":
    with loading():
        print(tuned, given_back(), *reorders())
else:
    print(tuned, given_back(), *reorders())
"""


def _probe(mode: str) -> tuple[str, int, str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    tuned, given_back, where, faults = out.stdout.split()
    return tuned, int(given_back), where, int(faults)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's; elsewhere tune_malloc returns False (tested below)")
def test_loads_give_large_temporaries_back_and_compute_reuses_them():
    tuned, loading_back, loading_where, loading_faults = _probe("loading")
    _, compute_back, compute_where, compute_faults = _probe("compute")
    _, _, plain_where, plain_faults = _probe("plain")
    print(f"24 MiB freed, given back: loading {loading_back >> 20} MiB, computing {compute_back >> 20} MiB; "
          f"a 59 MB buffer lives in: loading {loading_where}, computing {compute_where}, glibc's defaults "
          f"{plain_where}; its page faults per call (median of 7): loading {loading_faults}, "
          f"computing {compute_faults}, glibc's defaults {plain_faults}")
    assert tuned == "True"
    assert loading_back >= 20 * 1024 * 1024  # inside loading(): back to the OS at once
    # Mapped afresh on each call (at the load thresholds, and on glibc's defaults, whose own
    # threshold stops growing at 32 MiB), the buffer faults all of its 14,400 pages; served
    # from the heap while computing, it is the same memory again.
    assert loading_where == "anonymous" and plain_where == "anonymous"
    assert compute_where == "[heap]"
    if _huge_pages_always():
        return
    assert loading_faults > 10_000 and plain_faults > 10_000
    # Reused, it faults nothing here; a CI machine once counted 1,652 a call (its kernel
    # unmapping resident pages now and then, cause unconfirmed), so the bound is a quarter of a
    # fresh mapping's.
    assert compute_faults < plain_faults // 4, (compute_faults, plain_faults)


def test_without_glibc_tuning_says_so():
    tuned, _, _, _ = _probe("compute")
    assert tuned == ("True" if GLIBC else "False")


NESTING = r"""
from lcmgraph import allocator as A
assert A._tuning.compute is None
with A.loading():  # never tuned: nothing to switch, nothing switched back
    pass
assert A._tuning.compute is None
ok = A.tune_malloc()
assert A._tuning.compute == (A.COMPUTE_THRESHOLD if ok else None)
calls = []
A._mallopt = lambda t, trim_at=None: calls.append((t >> 20, (trim_at or t) >> 20)) or True
with A.loading():
    with A.loading():  # a checkpoint's load that loads a component: one switch each way
        pass
    assert calls == [(16, 16)], calls
assert calls == [(16, 16), (64, 128)], calls
try:
    with A.loading():
        raise KeyError("a load that fails")
except KeyError:
    pass
assert calls == [(16, 16), (64, 128)] * 2, calls
print("ok")
"""


@pytest.mark.skipif(not GLIBC, reason="needs glibc's mallopt for tune_malloc to take")
def test_nested_and_failed_loads_switch_once_and_always_back():
    out = subprocess.run([sys.executable, "-c", NESTING], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


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
    if GLIBC:
        assert trimmed == "True" and int(given_back) >= 64 * 1024 * 1024, given_back
    else:
        assert trimmed == "False"
