"""Large arrays whose pages are mapped up front.

A fresh ``np.empty`` of hundreds of megabytes gets its memory one page fault
at a time, when each 4 KiB page is first written; on virtual machines a fault
can cost microseconds, which made filling a 300 MB array take ten times longer
than the copy itself.  ``MAP_POPULATE`` asks the kernel to map every page in
one call instead.  Where it does not exist (not Linux) this is ``np.empty``.
"""

from __future__ import annotations

import mmap

import numpy as np

_POPULATE = getattr(mmap, "MAP_POPULATE", None)
_THRESHOLD = 16 * 2**20  # below this, malloc reuses memory that is already mapped


def prefaulted_empty(shape: tuple[int, ...], dtype: np.dtype | str) -> np.ndarray:
    """An uninitialised C-ordered array, like ``np.empty``, with its pages mapped."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if _POPULATE is None or nbytes < _THRESHOLD:
        return np.empty(shape, dtype)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _POPULATE
    buffer = mmap.mmap(-1, nbytes, flags=flags)
    # The array keeps the mapping alive; it is unmapped when the array is freed.
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


def available_memory() -> int | None:
    """Bytes this process can still take: the kernel's MemAvailable, within the cgroup's
    limit when one is set (a container).  None where neither can be read."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            found.append(int(limit) - used)
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def gib(nbytes: int) -> str:
    """``37.3 GiB``, or ``12.5 MiB`` below one GiB."""
    if nbytes >= 2**30:
        return f"{nbytes / 2**30:.1f} GiB"
    return f"{nbytes / 2**20:.1f} MiB"
