"""Ingest off the request path (issue 18): an upload is written to disk and answered
202 with a status URL; the index's write thread indexes it; the status URL follows it
from queued to done; a process killed with SIGKILL while it indexes loses none of the
jobs it acknowledged (they run at the next start) and leaves no half-written job behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.serve.index_writes import IndexWrites
from assistant.serve.ingest_jobs import IngestJobs
from indexer.index import Index
from server_harness import Service, start_service

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def service(citing_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from start_service(tmp_path_factory.mktemp("ingest-jobs"), citing_model)


def _until_finished(service: Service, url: str) -> dict:
    deadline = time.monotonic() + 60
    while (status := service.get(url, "editor").json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
    return status


def test_an_upload_is_accepted_then_indexed(service: Service) -> None:
    index = service.app.state["index"]
    index._write_lock.acquire()  # a long ingest holds the index
    try:
        r = service.post("/v1/documents", "editor", json={"documents": [
            {"id": "okapi", "text": "Okapis are forest giraffes with striped legs."},
            {"id": "tapir", "text": "Tapirs use their short trunks to grab leaves."}]})
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["state"] == "queued" and body["documents"] == 2 and r.headers["Location"] == body["status_url"]
        files = {"file": ("shoebill.md", b"# Shoebill\n\nShoebills stand still for hours to catch lungfish.",
                          "text/markdown")}
        second = service.post("/v1/documents", "editor", files=files).json()
        assert service.get(second["status_url"], "editor").json() | {"job_id": None} == {
            "job_id": None, "state": "queued", "jobs_ahead": 1}
        assert service.get("/readyz").json()["ingest_jobs_backlog"] == 2
        assert service.get("/v1/search", "reader", params={"q": "okapi", "k": 1}).status_code == 200
    finally:
        index._write_lock.release()
    done = _until_finished(service, body["status_url"])
    assert done["state"] == "done" and done["report"]["added"] == 2 and done["finished_at"] > 0
    assert _until_finished(service, second["status_url"])["report"]["added"] == 1
    listed = {d["doc_id"] for d in service.get("/v1/documents", "reader", params={"limit": 1000}).json()["documents"]}
    assert {"okapi", "tapir", "upload/shoebill.md"} <= listed
    # the payload is gone once indexed; the result stays
    job_dir = service.settings.data_dir / "ingest" / body["job_id"]
    assert sorted(p.name for p in job_dir.iterdir()) == ["job.json", "result.json"]


def test_unknown_and_foreign_job_ids_are_404(service: Service) -> None:
    for job_id in ("0000000000000000-00000000", "nope"):
        r = service.get(f"/v1/ingest/{job_id}", "editor")
        assert r.status_code == 404 and "no ingest job" in r.json()["detail"], r.text
    assert service.get("/v1/ingest/..%2F..%2Fservice.sqlite", "editor").status_code == 404
    assert service.get("/v1/ingest/nope", "reader").status_code == 403


WORKER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from assistant.serve.index_writes import IndexWrites
    from assistant.serve.ingest_jobs import IngestJobs
    from indexer.index import Index
    from indexer.loaders import Document

    root, big = Path(sys.argv[1]), int(sys.argv[2])
    index = Index.open(root / "index")
    jobs = IngestJobs(root / "ingest", index, root / "uploads", IndexWrites())
    # the first job keeps the writer busy for seconds (loading the embedder, then embedding)
    many = [Document(f"log-{n}", f"Log entry {n}: the river gauge read {n % 97} centimetres at the bridge.",
                     f"logs/{n}.txt", {}) for n in range(big)]
    print(jobs.accept_documents(many), flush=True)
    for n in range(4):
        doc = Document(f"note-{n}", f"Field note {n}: the heron stood in the reeds at dawn.", f"notes/{n}.txt", {})
        print(jobs.accept_documents([doc]), flush=True)  # acknowledged: on disk
    (root / "ingest" / ".tmp-half-written").mkdir()  # as a kill in the middle of accepting leaves
    print("ready", flush=True)
    time.sleep(3600)
''')


def test_a_killed_process_loses_no_accepted_job(tmp_path: Path) -> None:
    Index.open(tmp_path / "index").close()
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), "600"], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parents[3])
    acked = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.strip() == "ready":
                break
            acked.append(line.strip())
        os.kill(proc.pid, signal.SIGKILL)  # while the writer works on the first job
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()  # type: ignore[union-attr]
    assert len(acked) == 5
    assert not any((tmp_path / "ingest" / job / "result.json").exists() for job in acked)
    writes = IndexWrites()
    with Index.open(tmp_path / "index") as index:
        jobs = IngestJobs(tmp_path / "ingest", index, tmp_path / "uploads", writes)
        assert jobs.resume() == acked  # in the order accepted
        asyncio.run(jobs.wait(acked[-1]))  # jobs run in order: the last one done, all are
        writes.close()
        assert [jobs.status(j)["state"] for j in acked] == ["done"] * 5
        assert index.stats()["documents"] == 604
        assert {f"note-{n}" for n in range(4)} <= {d["doc_id"] for d in index.list_documents(limit=1000)}
    assert not (tmp_path / "ingest" / ".tmp-half-written").exists()
    # a second start finds nothing left to do
    with Index.open(tmp_path / "index") as index:
        assert IngestJobs(tmp_path / "ingest", index, tmp_path / "uploads", IndexWrites()).resume() == []
