"""Keep freed part buffers from lingering in the process.

Parts are large (5-20 MiB) and short-lived, allocated in worker threads.
glibc serves such blocks with mmap, but after the first one is freed it
raises its mmap threshold (up to 32 MiB), and later parts come from
per-thread heaps that fragment and are not given back: RSS then grows well
past the byte budget.  Pinning the threshold at 1 MiB keeps every part
buffer an mmap that is returned to the system when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_MMAP_THRESHOLD = -3
PART_BUFFER_THRESHOLD = 1024 * 1024


def return_freed_buffers_to_the_system() -> bool:
    """Pin glibc's mmap threshold; False where there is no glibc (musl, macOS)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, PART_BUFFER_THRESHOLD))
