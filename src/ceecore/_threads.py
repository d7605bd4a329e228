"""How many threads a kernel may use."""

from __future__ import annotations

import os


def resolve_threads(threads: int | None = None) -> int:
    """``threads`` if given, else ``OMP_NUM_THREADS``, else the usable CPU count."""
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
        threads = int(env) if env.isdigit() and int(env) > 0 else len(os.sched_getaffinity(0)) \
            if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not 1 <= threads <= 256:
        raise ValueError(f"threads must be between 1 and 256, got {threads}")
    return threads
