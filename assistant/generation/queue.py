"""The generation queue: a bounded queue in front of one backend whose worker thread
micro-batches requests (see :class:`GenerationQueue` for why).

    with GenerationQueue(generator, max_batch_size=8, queue_size=32) as queue:
        print(queue.submit(prompt).result().text)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from assistant.generation.base import GenerationResult, TextGenerator, TokenCallback


class QueueFullError(RuntimeError):
    """Too many requests waiting; ``retry_after`` is a guess in whole seconds."""

    def __init__(self, depth: int, retry_after: int) -> None:
        super().__init__(f"the generation queue is full ({depth} waiting); retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class _Request:
    prompt: str
    max_new_tokens: int | None
    adapter: str | None
    on_token: TokenCallback | None
    future: Future = field(default_factory=Future)


class GenerationQueue:
    """A bounded queue with one worker thread that micro-batches.

    Why: a decoding step costs about the same for one sequence as for eight
    (it is bound by reading the weights), so with several clients, generating
    their requests together multiplies throughput at little cost in latency.
    The worker takes the oldest request plus up to ``max_batch_size - 1`` more
    with the same adapter and length limit, waiting at most ``max_wait_s`` for
    them to arrive, and runs one ``generate`` call. Others keep their place.
    """

    def __init__(self, generator: TextGenerator, max_batch_size: int = 8, queue_size: int = 32, *, max_wait_s: float = 0.005) -> None:
        if max_batch_size < 1 or queue_size < 1 or max_wait_s < 0:
            raise ValueError("max_batch_size and queue_size must be at least 1 and max_wait_s not negative")
        self.generator = generator
        self.max_batch_size = max_batch_size
        self.queue_size = queue_size
        self.max_wait_s = max_wait_s
        self.requests_total = 0
        self.tokens_total = 0
        self.batches_total = 0
        self.generation_seconds_total = 0.0
        self._pending: deque[_Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="generation-queue", daemon=True)
        self._worker.start()

    @property
    def depth(self) -> int:
        return len(self._pending)

    def submit(
        self, prompt: str, *, max_new_tokens: int | None = None, adapter: str | None = None, on_token: TokenCallback | None = None
    ) -> Future[GenerationResult]:
        request = _Request(prompt, max_new_tokens, adapter, on_token)
        with self._cond:
            if self._closed:
                raise RuntimeError("the generation queue is closed")
            if len(self._pending) >= self.queue_size:
                raise QueueFullError(len(self._pending), self.retry_after())
            self._pending.append(request)
            self._cond.notify()
        return request.future

    def retry_after(self) -> int:
        """Seconds until the waiting requests are likely served: batches ahead
        times the mean batch time so far (1 s before the first batch)."""
        per_batch = self.generation_seconds_total / self.batches_total if self.batches_total else 1.0
        batches_ahead = -(-len(self._pending) // self.max_batch_size)
        return max(1, round(per_batch * batches_ahead))

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                deadline = time.monotonic() + self.max_wait_s
                while len(self._pending) < self.max_batch_size and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                batch = self._take_batch()
            self._run_batch(batch)

    def _take_batch(self) -> list[_Request]:
        key = (self._pending[0].adapter, self._pending[0].max_new_tokens)
        batch: list[_Request] = []
        rest: deque[_Request] = deque()
        for request in self._pending:
            if len(batch) < self.max_batch_size and (request.adapter, request.max_new_tokens) == key:
                batch.append(request)
            else:
                rest.append(request)
        self._pending = rest
        return batch

    def _run_batch(self, batch: list[_Request]) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        first = live[0]
        callbacks = [r.on_token for r in live]
        start = time.perf_counter()
        try:
            results = self.generator.generate(
                [r.prompt for r in live],
                max_new_tokens=first.max_new_tokens,
                adapter=first.adapter,
                on_token=callbacks if any(callbacks) else None,
            )
        except Exception as exc:  # belongs to the callers: each future raises it
            for request in live:
                request.future.set_exception(exc)
            return
        finally:
            elapsed = time.perf_counter() - start
            with self._cond:
                self.batches_total += 1
                self.generation_seconds_total += elapsed
        with self._cond:
            self.requests_total += len(live)
            self.tokens_total += sum(r.completion_tokens for r in results)
        for request, result in zip(live, results):
            request.future.set_result(result)

    def close(self, timeout: float | None = None) -> None:
        """Stop taking requests, fail those still waiting, let the running batch finish."""
        with self._cond:
            self._closed = True
            waiting, self._pending = list(self._pending), deque()
            self._cond.notify_all()
        for request in waiting:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(RuntimeError("the generation queue was closed before this request ran"))
        self._worker.join(timeout)

    def __enter__(self) -> GenerationQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
