"""glibc's malloc tuned for image generation on a CPU (``lcmgraph run`` / ``serve``).

glibc serves a large allocation from its heap once a block that size has been
freed (its mmap threshold grows up to 32 MiB), and keeps freed heap memory
for reuse. A sampler's and a VAE's activations are tens to hundreds of MiB and
change size with the image, so a 512² image after a few 256² ones found
little to reuse and the process peaked higher than it needed: on a 4 GiB
SD1.5 file in fp32, peak RSS 1.36x the file through a 512² image. Pinning the
mmap and trim thresholds at 16 MiB sends the large tensors back to the OS when
freed: 1.31x, the same speed (bench/cpu.py; README). A lower threshold (1-4
MiB) saved no more and cost 10-20% of the time in page faults.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

#: glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
THRESHOLD = 16 * 1024 * 1024


def tune_malloc(threshold: int = THRESHOLD) -> bool:
    """Pin glibc's mmap and trim thresholds; False where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process already runs on
    except (OSError, TypeError, AttributeError):  # no mallopt there (musl, macOS) or no CDLL(None) (Windows)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, threshold))
    if not ok:
        log.debug("mallopt refused the 16 MiB thresholds; keeping the C library's defaults")
    return ok


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
