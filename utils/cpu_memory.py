"""Keep freed memory for reuse on CPU (glibc), instead of returning it to the system after every operator.

PyTorch's CPU allocator is plain malloc. glibc serves blocks above 32 MiB (every 3D activation at 112x112x80) with a
fresh mmap and unmaps them on free, so each operator's output is new memory that the kernel must page in and zero:
at the full patch a third of the training time was system time in page faults. With mmap off and no trimming, freed
blocks stay in the heap and the next operator reuses them. Numerics are untouched; only where tensors live changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
NEVER_TRIM = 2**31 - 1  # mallopt takes an int: about 2 GiB of free heap top is kept before any is returned


def reuse_freed_memory() -> bool:
    """Serve every allocation from the heap and keep what is freed (glibc on Linux); False where that is not
    available (other C libraries, macOS, Windows), which changes nothing but speed."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
