"""The generation queue: a bounded queue in front of one backend whose worker thread
micro-batches requests and decodes the batches in turns (see :class:`GenerationQueue`).

    with GenerationQueue(generator, max_batch_size=8, queue_size=32) as queue:
        future = queue.submit(prompt, deadline_s=60)
        print(future.result().text)
        queue.cancel(future)          # the client left: its row stops at the next token

One job, scheduling requests onto the model (admission, batches, turns, cancellation,
a bounded close), under one lock; how a batch decodes a slice is in :mod:`.decoding`
and how long requests will take in :mod:`.pace`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from assistant.generation.base import GenerationResult, TextGenerator, TokenCallback
from assistant.generation.pace import Pace
from indexer.memory import give_back_free_memory

log = logging.getLogger(__name__)


class QueueFullError(RuntimeError):
    """Too many requests waiting; ``retry_after`` is a guess in whole seconds."""

    def __init__(self, depth: int, retry_after: int) -> None:
        super().__init__(f"the generation queue is full ({depth} waiting); retry in {retry_after} s")
        self.retry_after = retry_after


class WaitTooLongError(RuntimeError):
    """The answer would not be ready within the request's deadline: refused now, or
    dropped when its deadline passed before it started. ``retry_after`` in whole seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class GenerationCancelled(RuntimeError):
    """The request was cancelled (its client left, or the service is stopping)."""


class _Batch(Protocol):
    done: bool
    last_steps: int
    last_prefill_tokens: int
    last_first_step_seconds: float

    @property
    def remaining(self) -> int: ...

    def advance(self, max_tokens: int) -> list[tuple[int, GenerationResult]]: ...

    def drop_stopped(self) -> list[tuple[int, GenerationResult]]: ...


@dataclass
class _Request:
    prompt: str
    max_new_tokens: int | None
    adapter: str | None
    on_token: TokenCallback | None
    deadline: float | None
    """``time.monotonic()`` by which the answer is due; None: no deadline."""
    cancelled: threading.Event = field(default_factory=threading.Event)
    future: Future = field(default_factory=Future)
    submitted: float = field(default_factory=time.monotonic)
    predicted: float = 0.0
    """Seconds the queue expected this request to take when it came (0: no measure yet)."""

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline

    def should_stop(self) -> bool:
        return self.cancelled.is_set() or self.expired()


def _due(requests: list[_Request]) -> float:
    """The earliest deadline of a batch's requests still to be answered."""
    return min((r.deadline for r in requests if r.deadline is not None and not r.future.done()), default=math.inf)


class _WholeBatch:
    """A backend without slices (a remote server): the batch decodes in one call."""

    def __init__(self, generator: TextGenerator, batch: list[_Request]) -> None:
        self.generator, self.batch, self.done, self.last_steps = generator, batch, False, 0
        self.last_prefill_tokens = 0  # not told apart from decoding: the steps carry it all
        self.last_first_step_seconds = 0.0

    @property
    def remaining(self) -> int:
        return 0 if self.done else self.batch[0].max_new_tokens or self.generator.settings.max_new_tokens

    def drop_stopped(self) -> list[tuple[int, GenerationResult]]:
        return []  # a whole batch is never between slices

    def advance(self, max_tokens: int) -> list[tuple[int, GenerationResult]]:
        self.done = True
        callbacks = [r.on_token for r in self.batch]
        results = self.generator.generate([r.prompt for r in self.batch], max_new_tokens=self.batch[0].max_new_tokens,
                                          adapter=self.batch[0].adapter, on_token=callbacks if any(callbacks) else None)
        self.last_steps = max((r.completion_tokens for r in results), default=0)
        return list(enumerate(results))


class GenerationQueue:
    """A bounded queue with one worker thread that micro-batches and takes turns.

    Why batches: a decoding step costs about the same for one sequence as for eight
    (it is bound by reading the weights), so with several clients, generating their
    requests together multiplies throughput at little cost in latency. The worker
    takes the oldest request plus up to ``max_batch_size - 1`` more with the same
    adapter, waiting at most ``max_wait_s`` for them to arrive.

    Why turns: up to ``max_active`` batches decode at once, ``slice_tokens`` tokens a
    turn. A new batch starts at the next turn, so an answer that fits in one slice
    waits for the slice in progress, not for a 512-token answer to end; the batches
    already running then go on earliest deadline first, so a later arrival does not
    push an admitted answer past its deadline. A slice ends with the first row that
    ends (its end-of-sequence token, its token limit, its deadline: the text so far,
    ``finish_reason`` "deadline", or its cancellation), which is handed back at once.
    ``slice_tokens=0`` decodes each batch in one call (a backend without slices does).
    A backend with ``read_tokens`` (the local one) reads a new batch's prompts that many
    tokens a turn; the reading batch goes on turn after turn, as if read at once, unless
    another batch is due before the next piece and a slice could end, and no other batch
    starts meanwhile (the waiting requests form the next batch, as they would have).

    Admission: with ``deadline_s``, a request whose expected time (see
    :class:`~assistant.generation.pace.Pace`) passes its deadline is refused with
    :class:`WaitTooLongError` rather than queued to time out.
    """

    def __init__(self, generator: TextGenerator, max_batch_size: int = 8, queue_size: int = 32, *,
                 max_wait_s: float = 0.005, slice_tokens: int = 16, max_active: int = 4) -> None:
        if min(max_batch_size, queue_size, max_active) < 1 or max_wait_s < 0 or slice_tokens < 0:
            raise ValueError("max_batch_size, queue_size and max_active must be at least 1, "
                             "max_wait_s and slice_tokens not negative")
        self.generator = generator
        self.max_batch_size = max_batch_size
        self.queue_size = queue_size
        self.max_wait_s = max_wait_s
        self.slice_tokens = slice_tokens
        self.max_active = max_active
        self.sliced = hasattr(generator, "begin") and slice_tokens > 0
        # prompt tokens a batch reads per turn (the local backend); 0: all with its first slice
        self.read_tokens = int(getattr(generator, "read_tokens", 0)) if self.sliced else 0
        self.requests_total = 0
        self.tokens_total = 0
        self.batches_total = 0
        self.refused_total = 0
        self.cancelled_total = 0
        self.generation_seconds_total = 0.0
        self.pace = Pace(slice_tokens=slice_tokens if self.sliced else 0, max_batch_size=max_batch_size)
        self._pending: deque[_Request] = deque()
        self._active: deque[tuple[_Batch, list[_Request]]] = deque()
        self._by_future: dict[Future, _Request] = {}
        self._running: list[_Batch] = []  # every batch decoding, the one taking its turn included
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="generation-queue", daemon=True)
        self._worker.start()

    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def active(self) -> int:
        """Batches decoding now (taking their turn or waiting for it)."""
        return len(self._running)

    def submit(self, prompt: str, *, max_new_tokens: int | None = None, adapter: str | None = None,
               on_token: TokenCallback | None = None, deadline_s: float | None = None) -> Future[GenerationResult]:
        """Queue a prompt; ``deadline_s``: the answer is due this many seconds from now."""
        deadline = None if deadline_s is None else time.monotonic() + deadline_s
        request = _Request(prompt, max_new_tokens, adapter, on_token, deadline)
        with self._cond:
            if self._closed:
                raise RuntimeError("the generation queue is closed")
            if len(self._pending) >= self.queue_size:
                self.refused_total += 1
                raise QueueFullError(len(self._pending), self._retry_after_locked())
            request.predicted = self._expected_seconds_locked(self._tokens_of(request), corrected=False)
            if deadline_s is not None:
                expected = request.predicted * self.pace.slowdown
                if expected > deadline_s:
                    self.refused_total += 1
                    raise WaitTooLongError(f"the answer would take about {expected:.0f} s, past the request's "
                                           f"deadline of {deadline_s:.0f} s; retry later or ask for fewer tokens",
                                           self._retry_after_locked())
            self._pending.append(request)
            self._by_future[request.future] = request
            self._cond.notify()
        request.future.add_done_callback(self._forget)
        return request.future

    def cancel(self, future: Future) -> None:
        """The client no longer wants this answer: a waiting request is dropped, a
        decoding row stops at its next token."""
        with self._cond:
            request = self._by_future.get(future)
            if request is None:
                return
            request.cancelled.set()
            if request in self._pending:
                self._pending.remove(request)
                self.cancelled_total += 1
        future.cancel()

    def retry_after(self) -> int:
        with self._cond:
            return self._retry_after_locked()

    def expected_seconds(self, max_new_tokens: int | None = None) -> float:
        """How long a request submitted now would likely take to answer."""
        with self._cond:
            return self._expected_seconds_locked(self._tokens_of(_Request("", max_new_tokens, None, None, None)))

    def _learn_slowdown(self, request: _Request, result: GenerationResult) -> None:
        """Called with the lock held, as each answer is delivered."""
        took = time.monotonic() - request.submitted
        wanted = self._tokens_of(request)
        if result.finish_reason == "deadline" and 0 < result.completion_tokens < wanted:
            took *= wanted / result.completion_tokens  # cut short: what the whole answer would have taken
        self.pace.learn(request.predicted, took)

    def _tokens_of(self, request: _Request) -> int:
        return request.max_new_tokens or self.generator.settings.max_new_tokens

    def _expected_seconds_locked(self, tokens: int, *, corrected: bool = True) -> float:
        return self.pace.expected(tokens, [self._tokens_of(r) for r in self._pending],
                                  [b.remaining for b in self._running], corrected=corrected)

    def _retry_after_locked(self) -> int:
        """Seconds until the waiting requests are likely served (1 s before any measurement)."""
        if not self.pace.known:
            return 1
        return max(1, round(self._expected_seconds_locked(self.generator.settings.max_new_tokens)))

    def _forget(self, future: Future) -> None:
        with self._cond:
            self._by_future.pop(future, None)

    # -- the worker ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._active and not self._closed:
                    self._cond.wait()
                if self._closed and not self._active:
                    return
                batch: list[_Request] = []
                if (self._pending and len(self._active) < self.max_active and self._reading_locked() is None
                        and not self._urgent_locked()):
                    if not self._active:  # idle: let a batch fill for a moment
                        deadline = time.monotonic() + self.max_wait_s
                        while len(self._pending) < self.max_batch_size and (left := deadline - time.monotonic()) > 0:
                            self._cond.wait(left)
                    batch = self._take_batch()
            self._end_stopped_rows()
            if batch:
                self._start(batch)
            else:
                self._turn()

    def _urgent_locked(self) -> bool:
        """Whether a running batch is due before a new batch's prompts (or their first
        piece, for a backend that reads in pieces) could be read and a slice decoded: then it
        takes its turn first (reading eight prompts takes seconds on a CPU, and no row can be
        cut at its deadline while they are read)."""
        if not self._active or not self.pace.known:
            return False
        reading = self.pace.reading_seconds(min(len(self._pending), self.max_batch_size), piece_tokens=self.read_tokens)
        return any(_due(requests) < self._horizon_locked(reading) for _, requests in self._active)

    def _horizon_locked(self, reading: float) -> float:
        """When a turn that reads for ``reading`` seconds and then decodes a slice would end."""
        return time.monotonic() + self.pace.slowdown * (reading + (self.pace.step_seconds or 0.0) * self.slice_tokens)

    def _reading_locked(self) -> int | None:
        """The position in ``_active`` of a batch still reading its prompts in pieces, if any."""
        return next((i for i, (decoding, _) in enumerate(self._active) if getattr(decoding, "reading", False)), None)

    def _take_batch(self) -> list[_Request]:
        first = self._pending[0]
        key = (first.adapter, None if self.sliced else first.max_new_tokens)
        batch: list[_Request] = []
        rest: deque[_Request] = deque()
        for request in self._pending:
            if len(batch) < self.max_batch_size and (request.adapter, None if self.sliced else request.max_new_tokens) == key:
                batch.append(request)
            else:
                rest.append(request)
        self._pending = rest
        return batch

    def _start(self, batch: list[_Request]) -> None:
        live = []
        for request in batch:
            if not request.future.set_running_or_notify_cancel():
                continue
            if request.expired():  # waited past its deadline: say so rather than answer late
                request.future.set_exception(WaitTooLongError(
                    "the request's deadline passed before generation could start; retry later", self.retry_after()))
            else:
                live.append(request)
        if not live:
            return
        try:
            if self.sliced:
                decoding: _Batch = self.generator.begin(  # type: ignore[attr-defined]
                    [r.prompt for r in live], max_new_tokens=[r.max_new_tokens for r in live], adapter=live[0].adapter,
                    on_token=[r.on_token for r in live] if any(r.on_token for r in live) else None,
                    stop=[r.should_stop for r in live])
            else:
                decoding = _WholeBatch(self.generator, live)
        except Exception as exc:  # belongs to the callers: each future raises it
            for request in live:
                request.future.set_exception(exc)
            return
        with self._cond:
            self.batches_total += 1
            self._running.append(decoding)
        self._advance(decoding, live)

    def _end_stopped_rows(self) -> None:
        """Rows of waiting batches whose client left or whose deadline passed end now: a
        batch may wait several turns (a new batch reading its prompts takes seconds on a CPU)."""
        with self._cond:
            waiting = list(self._active)
        for decoding, requests in waiting:
            for row, result in decoding.drop_stopped():
                self._deliver(requests[row], result)
            if decoding.done:
                with self._cond:
                    self._active.remove((decoding, requests))
                    self._running.remove(decoding)
                give_back_free_memory()

    def _turn(self) -> None:
        with self._cond:
            if not self._active:
                return
            # the batch due first goes on (earliest deadline; without deadlines, the oldest), but
            # a batch reading its prompts in pieces reads on unless another is due before the
            # next piece and a slice could end: so it starts as soon as it would have unread
            due = min(range(len(self._active)), key=lambda i: (_due(self._active[i][1]), i))
            reading = self._reading_locked()
            if reading is not None and (not self.pace.known or _due(self._active[due][1]) >= self._horizon_locked(
                    self.pace.reading_seconds(self.max_batch_size, piece_tokens=self.read_tokens))):
                due = reading
            decoding, requests = self._active[due]
            del self._active[due]
        self._advance(decoding, requests)

    def _advance(self, decoding: _Batch, requests: list[_Request]) -> None:
        started = time.perf_counter()
        try:
            finished = decoding.advance(self.slice_tokens)
        except Exception as exc:
            with self._cond:
                self._running.remove(decoding)
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        elapsed = time.perf_counter() - started
        with self._cond:
            self.generation_seconds_total += elapsed
            self.requests_total += len(finished)
            self.tokens_total += sum(r.completion_tokens for _, r in finished)
            self.pace.measure(elapsed, decoding, len(requests))
            if decoding.done:
                self._running.remove(decoding)
            else:
                self._active.append((decoding, requests))
        if decoding.done:
            give_back_free_memory()  # its keys and values (see indexer.memory: glibc keeps such memory)
        for row, result in finished:
            self._deliver(requests[row], result)

    def _deliver(self, request: _Request, result: GenerationResult) -> None:
        if result.finish_reason == "stopped":
            if request.cancelled.is_set():
                with self._cond:
                    self.cancelled_total += 1
                request.future.set_exception(GenerationCancelled("the request was cancelled"))
                return
            result = GenerationResult(result.text, result.prompt_tokens, result.completion_tokens, "deadline",
                                      result.mean_logprob)
        with self._cond:
            self._learn_slowdown(request, result)
        if not request.future.done():
            request.future.set_result(result)

    def close(self, timeout: float | None = None, *, grace_s: float | None = None) -> None:
        """Stop taking requests and fail those still waiting; running answers get
        ``grace_s`` seconds to end (None: as long as they take), then stop at their
        next token (cancelled)."""
        with self._cond:
            self._closed = True
            waiting, self._pending = list(self._pending), deque()
            self._cond.notify_all()
        for request in waiting:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(RuntimeError("the generation queue was closed before this request ran"))
        self._worker.join(timeout if grace_s is None else grace_s)
        if grace_s is not None and self._worker.is_alive():
            with self._cond:  # every request not yet answered is running now
                running = list(self._by_future.values())
            log.warning("stopping %d answers still generating after %.0f s", len(running), grace_s)
            for request in running:
                request.cancelled.set()
            self._worker.join(timeout)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {"waiting": len(self._pending), "active_batches": len(self._running),
                    "refused_total": self.refused_total, "cancelled_total": self.cancelled_total,
                    **self.pace.stats()}

    def __enter__(self) -> GenerationQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
