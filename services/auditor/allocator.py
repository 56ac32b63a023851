"""The replay's allocator settings: keep freed memory for reuse instead of handing it back.

A replay reads the log in large fetches (librdkafka's buffers) and builds and drops millions of
small objects; with glibc's defaults each fetch buffer above the mmap threshold is mapped and
unmapped again, and the heap is trimmed as it shrinks, so the same pages fault in over and over
(~800k minor page faults per 1M-redemption replay, ~1.8 s of system time). On one kept
`make bench-audit` log, the same settings given as MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_
and MALLOC_TOP_PAD_ gave 9.10–9.86 s against 9.95–11.63 s without (runs alternated); set here by
the replay itself, 9.46, 9.49 and 10.08 s. Forked replay processes inherit them. Where the C
library has no `mallopt`, nothing happens."""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
_MB = 1 << 20


def keep_freed_memory() -> bool:
    """Apply the settings to this process; False where the C library has no `mallopt`."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return all(
        mallopt(option, value) == 1
        for option, value in (
            (M_MMAP_THRESHOLD, 64 * _MB),
            (M_TRIM_THRESHOLD, 1024 * _MB),
            (M_TOP_PAD, 256 * _MB),
        )
    )
