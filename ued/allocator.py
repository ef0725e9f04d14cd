"""The C allocator's policy during training: keep freed memory mapped for reuse (glibc's `mallopt`).

By default glibc serves a block of more than its mmap threshold (128 kB, rising adaptively to at most
32 MB) with fresh pages from the OS and unmaps it when it is freed, so every PPO minibatch faults its large
temporaries in again, page by page: the observations converted to floats, the conv activations and their
gradients, the LSTM's gate sequences. Measured on a 2-core AMD EPYC (benchmarks/README.md, "Freed memory
kept for reuse"), that was ~30% of a CarRacing training loop and ~20% of the maze DR loop. With
`keep_freed_memory` such blocks come from the heap and go back to it, and the heap is never trimmed, so
their pages stay mapped and are reused. The computed values do not depend on it (tests/test_allocator.py
trains with and without it and compares the weights); the resident memory stays near the run's peak
instead of falling between updates.
"""

from __future__ import annotations

import ctypes
import sys

#: glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: the largest value mallopt takes (an int): blocks below 2 GB from the heap, trimmed only above 2 GB free
LARGEST = 2**31 - 1
#: the largest mmap threshold glibc before 2.35 accepts (its adaptive threshold's ceiling on 64-bit)
OLD_GLIBC_LARGEST = 32 * 2**20


def keep_freed_memory() -> int:
    """Make glibc serve blocks below a fixed threshold from the heap and keep freed memory there for reuse
    (module docstring) for the rest of this process: a later run in the same process keeps it too. Returns
    the threshold set, in bytes: 2 GB, or 32 MB where glibc is older than 2.35 (which refuses more; the heap
    is still never trimmed); 0 where the C library is not glibc (macOS, Windows, musl), left as it is."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only, whose mallopt this relies on
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return 0
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mallopt(M_TRIM_THRESHOLD, LARGEST)
    for threshold in (LARGEST, OLD_GLIBC_LARGEST):
        if mallopt(M_MMAP_THRESHOLD, threshold):
            return threshold
    return 0


__all__ = ["keep_freed_memory"]
