"""Keep freed tensor memory in the process instead of handing it back to the kernel on every free.

glibc serves an allocation above its mmap threshold (128 KiB, adjusted upwards as blocks are freed) with a
fresh ``mmap`` and returns it on free, and trims the heap top on free; each new tensor of a batch's size then
pays a page fault per 4 KiB page on first touch. A (32, 49152) float32 step of logits is 6 MiB: on two
cores, keyed noise for it took 9.6 ms with the defaults and 4.5 ms with large blocks kept (quiet machine,
see bench/README.md).
The cost is resident memory: the process keeps its peak heap instead of returning it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20
"""glibc's largest mmap threshold (64-bit): blocks below it come from the heap."""
TRIM_THRESHOLD_BYTES = 1 << 30
"""Free memory at the heap top kept before glibc trims it."""


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; False where libc is not glibc (a no-op)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
