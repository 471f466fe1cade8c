"""glibc's malloc tuned for image generation on a CPU (``lcmgraph run`` / ``serve``).

glibc serves a large allocation from its heap once a block that size has been
freed (its mmap threshold grows up to 32 MiB), and keeps freed heap memory
for reuse, so a process that loads a checkpoint (tensor by tensor, converted
and renamed) and then samples at changing sizes peaked higher than it needed.
Pinning the mmap and trim thresholds at 16 MiB sends large blocks back to the
OS when freed (on a 4 GiB SD1.5 file in fp32, peak RSS 1.36x -> 1.31x the
file; bench/cpu.py, README).

That threshold is right while weights load and wrong while they compute: on a
CPU, oneDNN reorders each convolution's weight into a new buffer on every call
(up to 59 MB for SD1.5's 2560 -> 1280 3x3 convolutions in bf16), and at 16 MiB
each of those came from a fresh mmap, page-faulted and zeroed, about a hundred
times per UNet step. So the 16 MiB thresholds hold only while a model loads
(``loading()``, which the model manager wraps each load in) and
``COMPUTE_THRESHOLD`` holds otherwise, so those buffers are reused from the
heap. Measured on that file in bf16: 64 MiB from process start raised the
peak after the first image from 2.87 to 3.42 GiB; 16 MiB through the load,
64 MiB after it, kept 2.86 GiB (numbers in docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading

log = logging.getLogger(__name__)

#: glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD = 16 * 1024 * 1024  # mmap and trim thresholds while weights load
#: Otherwise: blocks up to 64 MiB come from the heap (bf16 reorder buffers, up to 59 MB; a
#: 512² VAE decode's 64 MiB activations still get their own mappings, so its peak stays
#: put); up to 128 MiB of free heap top is kept, so a freed 59 MB buffer beside other free
#: blocks is not handed back just before the next convolution asks for it again.
COMPUTE_THRESHOLD = 64 * 1024 * 1024
COMPUTE_TRIM = 128 * 1024 * 1024


class _Tuning:
    """What this process asked of malloc: the thresholds outside loads (None: never tuned,
    glibc's own) and how many loads are running. malloc's settings belong to the process,
    so this does too: one per process, mirroring the C library's state."""

    def __init__(self):
        self.compute: int | None = None
        self.loads = 0
        self.lock = threading.Lock()


_tuning = _Tuning()


def _mallopt(threshold: int, trim_at: int | None = None) -> bool:
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process already runs on
    except (OSError, TypeError, AttributeError):  # no mallopt there (musl, macOS) or no CDLL(None) (Windows)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_at or threshold))
    if not ok:
        log.debug("mallopt refused the %d MiB thresholds; keeping the C library's", threshold >> 20)
    return ok


def _for_compute(threshold: int) -> bool:
    return _mallopt(threshold, max(threshold, COMPUTE_TRIM))


def tune_malloc(threshold: int = COMPUTE_THRESHOLD) -> bool:
    """Pin glibc's mmap threshold at ``threshold`` (its trim threshold at COMPUTE_TRIM or
    ``threshold``, the larger) outside loads, both at THRESHOLD inside ``loading()``; False
    where the C library is not glibc."""
    with _tuning.lock:
        ok = _mallopt(THRESHOLD) if _tuning.loads else _for_compute(threshold)
        _tuning.compute = threshold if ok else None
        return ok


@contextlib.contextmanager
def loading():
    """Model weights load inside this: the 16 MiB thresholds, so each large temporary of a
    conversion goes back to the OS when freed; after the last load, the freed heap is
    trimmed and the compute threshold is back. Does nothing in a process that never
    called tune_malloc (an application embedding the engine keeps its own malloc)."""
    with _tuning.lock:
        _tuning.loads += 1
        if _tuning.loads == 1 and _tuning.compute is not None:
            _mallopt(THRESHOLD)
    try:
        yield
    finally:
        with _tuning.lock:
            _tuning.loads -= 1
            if _tuning.loads == 0 and _tuning.compute is not None:
                trim()
                _for_compute(_tuning.compute)


def trim() -> bool:
    """Hand the heap's free pages back to the OS (glibc's malloc_trim(0)); False elsewhere.
    Called before the largest allocations of a run (the VAE decode at full size), so that
    the sampler's freed small blocks do not sit in the resident set beside them."""
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, TypeError, AttributeError):
        return False
    malloc_trim.argtypes = [ctypes.c_size_t]
    return bool(malloc_trim(0))
