"""Accepted ingests: what an editor sends is written to disk and acknowledged (202 and a
status URL) before it is indexed; the index's one write thread indexes the jobs in the
order they were accepted, so no request waits on the write lock.

    jobs = IngestJobs(data_dir / "ingest", index, upload_dir, index_writes)
    jobs.resume()                                   # jobs a killed process left unfinished
    job_id = jobs.accept_documents(docs)            # durable when it returns
    jobs.status(job_id)                             # {"state": "queued" | "running" | "done" | "failed", ...}

A job is a folder ``<job_id>/`` holding ``job.json`` and its payload (``documents.jsonl``
or ``files/``), written under a temporary name, flushed to disk and renamed, so a job
either exists whole or not at all. When it has run, ``result.json`` is written the same
way and the payload deleted. At start every job without a result runs (again): indexing
is idempotent, a document already stored comes back "unchanged". Finished jobs past the
newest ``keep`` are pruned.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from assistant.serve.errors import describe
from assistant.serve.index_writes import IndexWrites
from assistant.serve.uploads import ingest_uploads
from indexer.loaders import Document
from indexer.records import IngestReport
from indexer.snapshots import sync_directory

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{8}$")
TMP_PREFIX = ".tmp-"


def report_body(report: IngestReport) -> dict[str, Any]:
    """What the service says of an ingest report."""
    return {"added": report.added, "updated": report.updated, "unchanged": report.unchanged,
            "exact_duplicates": report.exact_duplicates, "near_duplicates": report.near_duplicates,
            "chunks": report.chunks, "skipped": [{"source": s, "reason": r} for s, r in report.skipped]}


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class IngestJobs:
    def __init__(self, folder: Path, index: Any, upload_dir: Path, writes: IndexWrites, *, keep: int = 1000) -> None:
        self.folder, self.index, self.upload_dir, self.writes, self.keep = folder, index, upload_dir, writes, keep
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._live: dict[str, dict[str, Any]] = {}  # queued or running jobs: their state and progress
        self._futures: dict[str, Future] = {}

    # -- accepting -----------------------------------------------------------

    def accept_documents(self, docs: Sequence[Document], tags: Sequence[str] = ()) -> str:
        lines = "".join(json.dumps(dataclasses.asdict(d), ensure_ascii=False) + "\n" for d in docs)

        def payload(job: Path) -> None:
            _write_durably(job / "documents.jsonl", lines.encode())

        return self._accept({"kind": "documents", "documents": len(docs), "tags": list(tags)}, payload)

    def accept_files(self, uploads: Sequence[tuple[str, bytes]], tags: Sequence[str] = ()) -> str:
        # the client's names, kept in job.json; stored as files/<n> so no name can escape
        def payload(job: Path) -> None:
            (job / "files").mkdir()
            for n, (_, data) in enumerate(uploads):
                _write_durably(job / "files" / str(n), data)
            sync_directory(job / "files")

        return self._accept({"kind": "files", "files": [name for name, _ in uploads], "tags": list(tags)}, payload)

    def _accept(self, job: dict[str, Any], payload: Callable[[Path], None]) -> str:
        job_id = f"{time.time_ns():016x}-{secrets.token_hex(4)}"  # sorts in the order accepted
        tmp = self.folder / (TMP_PREFIX + job_id)
        tmp.mkdir()
        try:
            payload(tmp)
            _write_durably(tmp / "job.json", json.dumps({**job, "accepted_at": time.time()}).encode())
            sync_directory(tmp)
            os.rename(tmp, self.folder / job_id)
            sync_directory(self.folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._submit(job_id)
        return job_id

    def resume(self) -> list[str]:
        """Queues every job without a result, oldest first (after a crash or a stop);
        removes half-written ones, which were never acknowledged."""
        resumed = []
        for path in sorted(self.folder.iterdir()):
            if path.name.startswith(TMP_PREFIX):
                shutil.rmtree(path, ignore_errors=True)
            elif JOB_ID.match(path.name) and not (path / "result.json").exists():
                self._submit(path.name)
                resumed.append(path.name)
        if resumed:
            log.info("resuming %d ingest jobs accepted before the last stop", len(resumed))
        return resumed

    def _submit(self, job_id: str) -> None:
        with self._lock:
            # futures are kept for waiters (?wait=true); those of finished jobs are dropped here
            self._futures = {j: f for j, f in self._futures.items() if not f.done()}
            self._live[job_id] = {"state": "queued"}
            self._futures[job_id] = self.writes.submit(self._run, job_id)

    # -- running -------------------------------------------------------------

    def _run(self, job_id: str) -> None:
        job_dir = self.folder / job_id
        job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
        def count(name: str) -> Callable[[Any], None]:
            def add(n: Any) -> None:
                with self._lock:
                    self._live[job_id][name] += n if isinstance(n, int) else len(n)
            return add

        with self._lock:
            self._live[job_id] = {"state": "running", "documents_indexed": 0, "chunks_embedded": 0,
                                  "started_at": time.time()}
        progress = {"on_commit": count("documents_indexed"), "on_chunks": count("chunks_embedded")}
        try:
            if job["kind"] == "documents":
                with open(job_dir / "documents.jsonl", encoding="utf-8") as f:
                    docs = [Document(**json.loads(line)) for line in f]
                report = self.index.ingest_documents(docs, tags=job["tags"], **progress)
            else:
                uploads = [(name, (job_dir / "files" / str(n)).read_bytes()) for n, name in enumerate(job["files"])]
                report = ingest_uploads(self.index, self.upload_dir, uploads, job["tags"], **progress)
            result: dict[str, Any] = {"state": "done", "report": report_body(report)}
        except Exception as exc:  # the job's client reads this from the status URL
            status, body, _ = describe(exc)
            result = {"state": "failed", "status_code": status, "error": body}
        result["finished_at"] = time.time()
        tmp = job_dir / (TMP_PREFIX + "result.json")
        _write_durably(tmp, json.dumps(result).encode())
        os.replace(tmp, job_dir / "result.json")
        for payload in ("documents.jsonl", "files"):
            path = job_dir / payload
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        with self._lock:
            self._live.pop(job_id, None)
        self._prune()

    def _prune(self) -> None:
        finished = sorted(p for p in self.folder.iterdir() if JOB_ID.match(p.name) and (p / "result.json").exists())
        for path in finished[: max(0, len(finished) - self.keep)]:
            shutil.rmtree(path, ignore_errors=True)

    # -- reading -------------------------------------------------------------

    def status(self, job_id: str) -> dict[str, Any] | None:
        """The job's state (None: no such job). Ids are checked against their pattern
        first, so a client's id never names another path."""
        if not JOB_ID.match(job_id):
            return None
        job_dir = self.folder / job_id
        with self._lock:
            live = dict(self._live.get(job_id) or {})
            if live.get("state") == "queued":  # jobs run in the order accepted
                live["jobs_ahead"] = list(self._live).index(job_id)
        if live:
            return {"job_id": job_id, **live}
        try:
            return {"job_id": job_id, **json.loads((job_dir / "result.json").read_text(encoding="utf-8"))}
        except FileNotFoundError:
            return {"job_id": job_id, "state": "queued"} if (job_dir / "job.json").exists() else None

    async def wait(self, job_id: str) -> dict[str, Any]:
        """The job's final status, once it has run."""
        with self._lock:
            future = self._futures.get(job_id)
        if future is not None:
            await asyncio.wrap_future(future)
        status = self.status(job_id)
        assert status is not None
        return status

    @property
    def backlog(self) -> int:
        with self._lock:
            return len(self._live)

