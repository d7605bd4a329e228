"""How many threads a kernel may use."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def resolve_threads(threads: int | None = None) -> int:
    """``threads`` if given, else ``OMP_NUM_THREADS``, else the usable CPU count."""
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
        threads = int(env) if env.isdigit() and int(env) > 0 else len(os.sched_getaffinity(0)) \
            if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not 1 <= threads <= 256:
        raise ValueError(f"threads must be between 1 and 256, got {threads}")
    return threads


def in_order(items: Iterable[Any], work: Callable[[Any], T], threads: int) -> Iterator[T]:
    """``work(item)`` for each item on ``threads`` threads, the results in item order.

    At most ``2 * threads + 1`` items are in flight, so memory stays bounded; the work
    must release the GIL (numpy, Arrow, the kernels) for the threads to help.
    """
    with ThreadPoolExecutor(max(1, threads)) as pool:
        running: deque[Future[T]] = deque()
        for item in items:
            running.append(pool.submit(work, item))
            if len(running) > 2 * threads:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()
