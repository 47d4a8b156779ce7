"""One reader never holds the rest (issue 18): an answer whose client left stops
generating, an answer that would miss the deadline is refused up front with 503 and
Retry-After, and stopping the service does not wait for long answers.

The model is the tiny random Llama slowed to about 10 ms a step (a forward pre-hook),
the pace of a small model on a laptop, so that answers take long enough to interrupt;
its end-of-sequence token is ignored, so every answer runs to its token limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from indexer.index import Index
from server_harness import Service, ServerThread, start_service

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

QUESTION = "What do pangolins eat?"


def slow_and_endless(index: Index, generator) -> None:
    generator.eos_ids = set()
    generator.model.register_forward_pre_hook(lambda *_: time.sleep(0.01))


def _service(tmp: Path, model: Path, **overrides) -> Iterator[Service]:
    # an answer whatever the tiny model writes: shown or abstained, the route is the same
    yield from start_service(tmp, model, prepare=slow_and_endless, **overrides)


@pytest.fixture(scope="module")
def service(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from _service(tmp_path_factory.mktemp("admission"), tiny_model_dir, answer_deadline_s=3.0)


def _ask(service: Service, tokens: int, **kw) -> httpx.Response:
    return service.post("/v1/ask", "reader", json={"question": QUESTION, "max_new_tokens": tokens}, **kw)


def _wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_client_that_leaves_stops_its_answer(service: Service) -> None:
    queue = service.app.state["queue"]
    assert _ask(service, 4).status_code == 200  # the queue learns its pace
    before = queue.cancelled_total
    with pytest.raises(httpx.ReadTimeout):  # 150 tokens at 10 ms: the client gives up first
        httpx.post(service.url + "/v1/ask", headers=service.headers("reader"),
                   json={"question": QUESTION, "max_new_tokens": 150}, timeout=0.5)
    assert _wait_for(lambda: queue.cancelled_total == before + 1 and queue.active == 0, 5.0)
    started = time.perf_counter()
    assert _ask(service, 4).status_code == 200
    assert time.perf_counter() - started < 1.5


def test_an_answer_that_would_miss_its_deadline_is_refused_at_once(service: Service) -> None:
    assert _ask(service, 4).status_code == 200
    for stream in (False, True):
        started = time.perf_counter()
        r = service.post("/v1/ask", "reader", json={"question": QUESTION, "max_new_tokens": 500, "stream": stream})
        assert r.status_code == 503, r.text
        assert "past the deadline of 3 s" in r.json()["detail"] and int(r.headers["Retry-After"]) >= 1
        assert time.perf_counter() - started < 1.0
    assert _ask(service, 8).status_code == 200  # within the deadline: answered


def test_a_stop_does_not_wait_for_long_answers(tiny_model_dir: Path, tmp_path: Path) -> None:
    services = _service(tmp_path, tiny_model_dir, shutdown_grace_s=0.5)
    service = next(services)
    queue = service.app.state["queue"]
    assert _ask(service, 4).status_code == 200
    statuses: list[int | str] = []

    def long_answer() -> None:
        try:
            statuses.append(_ask(service, 300).status_code)  # about 3 s of decoding
        except httpx.HTTPError as exc:
            statuses.append(type(exc).__name__)

    client = threading.Thread(target=long_answer)
    client.start()
    assert _wait_for(lambda: queue.active == 1)
    started = time.perf_counter()
    services.close()  # the server thread exits, then the harness closes the queue
    stopped = time.perf_counter() - started
    client.join(10)
    assert stopped < 3.0, f"the stop took {stopped:.1f} s"
    assert queue.cancelled_total >= 1 and statuses and statuses[0] != 200
