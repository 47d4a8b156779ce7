"""Decoding in slices and the queue's turns: a batch resumed from its keys and values
gives the tokens of one uninterrupted call, rows end on their own (limit, stop), a short
answer is not held behind a long one, cancellation and deadlines stop a row at its next
token, admission refuses what would miss its deadline, and closing is bounded."""

from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from assistant.generation.base import GenerationResult, GenerationSettings
from assistant.generation.local import LocalGenerator
from assistant.generation.queue import GenerationCancelled, GenerationQueue, WaitTooLongError

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

QUESTIONS = ["What is asthma?", "How is influenza treated? Rest, fluids and sometimes antiviral drugs.", "Hi"]
LONG = 120


@pytest.fixture(scope="module")
def generator(tiny_model_dir: Path) -> LocalGenerator:
    gen = LocalGenerator(GenerationSettings(model=str(tiny_model_dir), device="cpu", max_new_tokens=12))
    gen.eos_ids = set()  # random weights: never end early, so every limit is reached and lengths are known
    return gen


@pytest.fixture(scope="module")
def prompts(generator: LocalGenerator) -> list[str]:
    return [generator.chat_prompt([{"role": "user", "content": q}]) for q in QUESTIONS]


def _same(a: GenerationResult, b: GenerationResult) -> bool:
    return (a.text, a.prompt_tokens, a.completion_tokens) == (b.text, b.prompt_tokens, b.completion_tokens)


def test_slices_resume_where_they_stopped(generator: LocalGenerator, prompts: list[str]) -> None:
    whole = generator.generate(prompts, max_new_tokens=20)
    pieces: list[list[str]] = [[] for _ in prompts]
    decoding = generator.begin(prompts, max_new_tokens=20, on_token=[p.append for p in pieces])
    results: dict[int, GenerationResult] = {}
    slices = 0
    while not decoding.done:
        results.update(decoding.advance(3))
        slices += 1
    assert slices == 7  # 3+3+3+3+3+3+2
    for row, expected in enumerate(whole):
        assert _same(results[row], expected) and results[row].finish_reason == "length"
        assert results[row].mean_logprob == pytest.approx(expected.mean_logprob, abs=1e-4)
        assert "".join(pieces[row]) == expected.text


def test_rows_end_at_their_own_limit_or_stop(generator: LocalGenerator, prompts: list[str]) -> None:
    alone = [generator.generate([p], max_new_tokens=n)[0] for p, n in zip(prompts, (4, 16, 9))]
    stop_now = threading.Event()
    decoding = generator.begin(prompts, max_new_tokens=[4, 16, 9], stop=[None, None, stop_now.is_set])
    first = dict(decoding.advance(5))
    assert list(first) == [0] and _same(first[0], alone[0])
    assert decoding.last_steps == 4  # the slice ended with row 0: handed back at once
    stop_now.set()
    second = dict(decoding.advance(5))
    assert list(second) == [2] and second[2].finish_reason == "stopped" and second[2].completion_tokens == 5
    assert alone[2].text.startswith(second[2].text)
    rest = dict(decoding.advance(100))
    assert decoding.done and _same(rest[1], alone[1])


def _slow(delay: float, started: threading.Event | None = None):
    def on_token(piece: str) -> None:
        if started is not None:
            started.set()
        time.sleep(delay)
    return on_token


def test_a_short_answer_overtakes_a_long_one(generator: LocalGenerator, prompts: list[str]) -> None:
    started = threading.Event()
    with GenerationQueue(generator, max_wait_s=0, slice_tokens=4) as queue:
        long = queue.submit(prompts[0], max_new_tokens=LONG, on_token=_slow(0.02, started))
        assert started.wait(30)
        short = queue.submit(prompts[1], max_new_tokens=4)
        assert short.result(timeout=30).completion_tokens == 4
        assert not long.done()  # the short one did not wait for the long one's 120 tokens
        assert long.result(timeout=60).completion_tokens == LONG
        assert queue.batches_total == 2 and queue.pace.step_seconds and queue.pace.step_seconds > 0


def test_cancel_stops_a_running_row_and_drops_a_waiting_one(generator: LocalGenerator, prompts: list[str]) -> None:
    started = threading.Event()
    with GenerationQueue(generator, max_wait_s=0, slice_tokens=4, max_active=1) as queue:
        running = queue.submit(prompts[0], max_new_tokens=LONG, on_token=_slow(0.02, started))
        assert started.wait(30)
        waiting = queue.submit(prompts[1], max_new_tokens=LONG)
        queue.cancel(waiting)
        assert queue.depth == 0
        with pytest.raises(CancelledError):
            waiting.result(timeout=5)
        began = time.monotonic()
        queue.cancel(running)
        with pytest.raises(GenerationCancelled):
            running.result(timeout=30)
        assert time.monotonic() - began < 0.02 * LONG / 2  # well before the 120 tokens
        assert queue.cancelled_total == 2


def test_deadlines_refuse_up_front_and_cut_a_late_answer(generator: LocalGenerator, prompts: list[str]) -> None:
    with GenerationQueue(generator, max_wait_s=0, slice_tokens=4) as queue:
        began = time.monotonic()
        late = queue.submit(prompts[0], max_new_tokens=LONG, on_token=_slow(0.02), deadline_s=0.5).result(timeout=30)
        assert late.finish_reason == "deadline" and 0 < late.completion_tokens < LONG
        assert time.monotonic() - began < 2.0
        # now the queue knows its speed: 120 slow tokens cannot be ready in 10 ms
        assert queue.pace.step_seconds is not None
        with pytest.raises(WaitTooLongError, match="past the request's deadline") as refused:
            queue.submit(prompts[0], max_new_tokens=LONG, deadline_s=0.01)
        assert refused.value.retry_after >= 1 and queue.refused_total == 1
        assert queue.submit(prompts[1], max_new_tokens=4, deadline_s=30).result(timeout=30).completion_tokens == 4


def test_close_stops_running_answers_after_the_grace(generator: LocalGenerator, prompts: list[str]) -> None:
    started = threading.Event()
    queue = GenerationQueue(generator, max_wait_s=0, slice_tokens=4)
    running = queue.submit(prompts[0], max_new_tokens=LONG, on_token=_slow(0.05, started))
    assert started.wait(30)
    began = time.monotonic()
    queue.close(timeout=30, grace_s=0.2)
    assert time.monotonic() - began < 2.0  # 120 tokens at 50 ms would take 6 s
    with pytest.raises(GenerationCancelled):
        running.result(timeout=1)
    with pytest.raises(RuntimeError, match="closed"):
        queue.submit(prompts[0])


def test_running_batches_go_on_earliest_deadline_first(generator: LocalGenerator, prompts: list[str]) -> None:
    started = threading.Event()
    with GenerationQueue(generator, max_wait_s=0, slice_tokens=4) as queue:
        early = queue.submit(prompts[0], max_new_tokens=60, on_token=_slow(0.02, started), deadline_s=60)
        assert started.wait(30)
        urgent = queue.submit(prompts[1], max_new_tokens=60, on_token=_slow(0.02), deadline_s=30)
        assert urgent.result(timeout=30).completion_tokens == 60
        # taking turns, the earlier batch (most of its tokens done) would have ended first
        assert not early.done()
        assert early.result(timeout=30).completion_tokens == 60


def test_a_waiting_batch_drops_a_stopped_row_without_a_step(generator: LocalGenerator, prompts: list[str]) -> None:
    gone = threading.Event()
    decoding = generator.begin(prompts[:2], max_new_tokens=20, stop=[None, gone.is_set])
    decoding.advance(5)
    calls = generator.generate_calls
    gone.set()
    dropped = decoding.drop_stopped()
    assert [(row, r.finish_reason, r.completion_tokens) for row, r in dropped] == [(1, "stopped", 5)]
    assert generator.generate_calls == calls  # no model call
    rest = dict(decoding.advance(100))
    assert decoding.done and _same(rest[0], generator.generate(prompts[:1], max_new_tokens=20)[0])


@pytest.fixture(scope="module")
def piecewise(tiny_model_dir: Path) -> LocalGenerator:
    """The same model, reading at most 16 prompt tokens a turn."""
    gen = LocalGenerator(GenerationSettings(model=str(tiny_model_dir), device="cpu", max_new_tokens=12, read_tokens=16))
    gen.eos_ids = set()
    return gen


def _long(prompts: list[str]) -> list[str]:
    """Prompts of different lengths, each several pieces long (left padding differs by row)."""
    return [p.replace("user\n", "user\n" + "Rest, fluids and antiviral drugs. " * (2 + 3 * i)) for i, p in enumerate(prompts)]


def test_prompts_read_in_pieces_give_the_answers_of_one_reading(generator: LocalGenerator, piecewise: LocalGenerator,
                                                                prompts: list[str]) -> None:
    long = _long(prompts)
    whole = generator.generate(long, max_new_tokens=10)
    decoding = piecewise.begin(long, max_new_tokens=10)
    assert decoding.reading
    results: dict[int, GenerationResult] = {}
    pieces = read = 0
    while decoding.reading:
        results.update(decoding.advance(4))
        read += decoding.last_prefill_tokens
        pieces += decoding.last_steps == 0
    assert pieces >= 3 and not results  # pieces of max(16, 16 // 3) positions decode nothing
    while not decoding.done:
        results.update(decoding.advance(4))
    assert read == sum(r.prompt_tokens for r in whole)  # each prompt token read once
    for row, expected in enumerate(whole):
        assert _same(results[row], expected)
        assert results[row].mean_logprob == pytest.approx(expected.mean_logprob, abs=1e-4)


def test_a_row_stopped_between_pieces_ends_and_the_rest_read_on(generator: LocalGenerator, piecewise: LocalGenerator,
                                                                prompts: list[str]) -> None:
    long = _long(prompts)
    gone = threading.Event()
    decoding = piecewise.begin(long, max_new_tokens=6, stop=[None, gone.is_set, None])
    assert decoding.advance(4) == [] and decoding.reading
    gone.set()
    dropped = decoding.drop_stopped()
    assert [(row, r.finish_reason, r.completion_tokens) for row, r in dropped] == [(1, "stopped", 0)]
    rest: dict[int, GenerationResult] = {}
    while not decoding.done:
        rest.update(decoding.advance(4))
    for row in (0, 2):
        assert _same(rest[row], generator.generate([long[row]], max_new_tokens=6)[0])


def test_the_queue_answers_pieced_batches_and_learns_their_reading(piecewise: LocalGenerator, generator: LocalGenerator,
                                                                   prompts: list[str]) -> None:
    long = _long(prompts)
    with GenerationQueue(piecewise, max_wait_s=0.2, slice_tokens=4) as queue:
        assert queue.read_tokens == 16
        futures = [queue.submit(p, max_new_tokens=6) for p in long]
        answers = [f.result(timeout=60) for f in futures]
        pace = queue.pace
        # the mean prompt is the whole prompt's length, not a piece's
        assert pace.prompt_tokens_mean > 16 and pace.prefill_seconds_per_token > 0
        assert pace.reading_seconds(8, piece_tokens=16) == pytest.approx(16 * pace.prefill_seconds_per_token)
    for answer, expected in zip(answers, generator.generate(long, max_new_tokens=6)):
        assert _same(answer, expected)


def test_a_batch_reading_in_pieces_reads_on_before_others_decode(piecewise: LocalGenerator, prompts: list[str]) -> None:
    """A new batch reads all its pieces before a running batch with no deadline decodes again
    (as it would have read them at once): at most the slice in progress runs in between."""
    started = threading.Event()
    tokens_a: list[float] = []
    first_b: list[float] = []

    def on_a(piece: str) -> None:
        started.set()
        tokens_a.append(time.monotonic())
        time.sleep(0.02)

    with GenerationQueue(piecewise, max_wait_s=0, slice_tokens=4) as queue:
        a = queue.submit(prompts[2], max_new_tokens=LONG, on_token=on_a)
        assert started.wait(30)
        submitted = time.monotonic()
        b = queue.submit(_long(prompts)[2], max_new_tokens=4, on_token=lambda piece: first_b.append(time.monotonic()))
        assert b.result(timeout=30).completion_tokens == 4
        assert not a.done()
        between = [t for t in tokens_a if submitted < t < first_b[0]]
        assert len(between) <= 4, f"{len(between)} tokens of the running batch while the new one read"
        assert a.result(timeout=60).completion_tokens == LONG


def test_the_pace_learns_reading_from_pieces_and_decoding_from_slices() -> None:
    """A turn that only read a piece teaches the per-token reading cost, not the step time;
    the usual prompt length comes from whole prompts, not from pieces."""
    from types import SimpleNamespace

    from assistant.generation.pace import Pace

    pace = Pace(slice_tokens=16, max_batch_size=8)
    piece = SimpleNamespace(last_steps=0, last_prefill_tokens=1000, last_first_step_seconds=2.0, prompt_tokens=[600] * 8)
    pace.measure(2.0, piece, 8)
    assert pace.step_seconds is None and not pace.known
    assert pace.prefill_seconds_per_token == pytest.approx(0.002) and pace.prompt_tokens_mean == 0
    last = SimpleNamespace(last_steps=16, last_prefill_tokens=1000, last_first_step_seconds=2.0, prompt_tokens=[600] * 8)
    pace.measure(2.0 + 15 * 0.05, last, 8)
    assert pace.step_seconds == pytest.approx(0.05) and pace.prompt_tokens_mean == 600
    assert pace.reading_seconds(8) == pytest.approx(8 * 600 * 0.002)
    assert pace.reading_seconds(8, piece_tokens=1024) == pytest.approx(1024 * 0.002)
