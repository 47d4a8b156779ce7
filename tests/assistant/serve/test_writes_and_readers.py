"""Uploads waiting on the index's write lock never hold up readers (issue 18): however
many writes queue, uploads are accepted, a search and a listing answer at once and
/readyz counts the backlog."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server_harness import Service, start_service

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def service(citing_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from start_service(tmp_path_factory.mktemp("writes"), citing_model)


def test_waiting_uploads_never_hold_up_readers(service: Service) -> None:
    index = service.app.state["index"]
    # more writes than the event loop's shared thread pool has threads: min(32, CPUs + 4)
    writers = min(32, (os.cpu_count() or 1) + 4) + 2
    statuses: list[int] = []

    def upload(n: int) -> None:
        r = service.post("/v1/documents", "editor", json={"id": f"note-{n}",
                                                          "text": f"Field note {n}: pangolins sleep in burrows by day."})
        statuses.append(r.status_code)

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(writers)]
    index._write_lock.acquire()  # as a long ingest does for its whole run
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while service.get("/readyz").json()["index_writes_backlog"] < writers and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.get("/readyz").json()["index_writes_backlog"] == writers
        started = time.perf_counter()
        found = service.get("/v1/search", "reader", params={"q": "What do pangolins eat?", "k": 3})
        listed = service.get("/v1/documents", "reader", params={"limit": 2})
        waited = time.perf_counter() - started
        assert found.status_code == 200 and found.json()["hits"] and listed.status_code == 200
        assert waited < 10, f"readers waited {waited:.1f} s behind {writers} queued writes"
    finally:
        index._write_lock.release()
    for t in threads:
        t.join(timeout=120)
    assert statuses == [202] * writers  # accepted at once, indexed in turn
    deadline = time.monotonic() + 120
    while service.get("/readyz").json()["index_writes_backlog"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert service.get("/readyz").json()["index_writes_backlog"] == 0
    listed = {d["doc_id"] for d in service.get("/v1/documents", "reader", params={"limit": 1000}).json()["documents"]}
    assert {f"note-{n}" for n in range(writers)} <= listed
