"""Index writes (uploads, deletions) run on one thread of their own, so readers never
wait behind them.

    writes = IndexWrites()
    report = await writes.run(index.ingest_documents, docs)   # queued behind earlier writes
    writes.backlog                                             # writes waiting or running

``asyncio.to_thread`` runs on the event loop's default executor, ``min(32, CPUs + 4)``
threads: six on two cores. Writes take the index's write lock in turn, so six uploads
at once filled that pool with threads waiting on the lock, and every search, listing
and answer queued behind them for as long as the ingest ran (105 s for a 1.5 MB
document sent with five small ones, measured on 2 cores). On their own thread, writes
queue among themselves and the shared pool stays free for readers.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class IndexWrites:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-write")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def backlog(self) -> int:
        """Writes submitted and not finished (the running one included)."""
        with self._lock:
            return self._pending

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queues a write; the future is done when it has run."""
        with self._lock:
            self._pending += 1
        future = self._executor.submit(fn, *args, **kwargs)
        future.add_done_callback(self._finished)
        return future

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def _finished(self, _: Future) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        """Finishes the running write; writes not yet started are dropped (their clients
        were never told they succeeded, or, for accepted ingest jobs, the jobs stay on
        disk and run at the next start)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
