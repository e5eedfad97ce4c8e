"""How glibc's allocator treats part-sized buffers, per process role.

Parts are large (5-20 MiB) and short-lived, allocated in worker threads.
glibc serves such blocks with mmap, but after the first one is freed it
raises its mmap threshold (up to 32 MiB), and later parts come from
per-thread heaps that fragment and are not given back: RSS then grows well
past the byte budget.  Pinning the threshold at 1 MiB keeps every part
buffer an mmap that is returned to the system when freed.  That costs page
faults (on this project's 2-core VMs, about 1.5 CPU-seconds per GiB pushed),
a price ``push`` and ``run`` paid for a memory bound they promise, until
part buffers were recycled within the budget (buffers.py): now only parts
that find no buffer to reuse pay it.

The local registry promises no memory bound, and in benchmarks it shares
the cores with the push it measures, so it takes the opposite trade: one
arena and no mmap or trimming for part-sized blocks, so freed request
bodies are reused without faulting pages in again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
PART_BUFFER_THRESHOLD = 1024 * 1024
REUSE_THRESHOLD = 64 * 1024 * 1024


def return_freed_buffers_to_the_system() -> bool:
    """Pin glibc's mmap threshold; False where there is no glibc (musl, macOS)."""
    return _mallopt((M_MMAP_THRESHOLD, PART_BUFFER_THRESHOLD))


def reuse_freed_buffers() -> bool:
    """Keep freed part-sized blocks in one arena for reuse; False where there is no glibc."""
    return _mallopt(
        (M_ARENA_MAX, 1),
        (M_MMAP_THRESHOLD, REUSE_THRESHOLD),
        (M_TRIM_THRESHOLD, 4 * REUSE_THRESHOLD),
    )


def _mallopt(*settings: tuple[int, int]) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(option, value) for option, value in settings)
