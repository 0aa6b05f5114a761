"""Peak resident memory of the running process, for the benchmarks that run each case in a subprocess.

``ru_maxrss`` is not the child's own figure on Linux: the kernel keeps the larger of the old and new
address space's high-water mark across ``exec``, so a child started by a big parent reports at least the
parent's peak. ``VmHWM`` in ``/proc/self/status`` belongs to the current address space only.
"""

from __future__ import annotations

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        status = Path("/proc/self/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
