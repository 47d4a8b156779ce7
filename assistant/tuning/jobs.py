"""Tuning jobs of the service: kept in its SQLite file, run one at a time in a child
process (``python -m assistant.tuning.pipeline``) so the server keeps answering.
A job's state is read from the typed files the pipeline writes (``progress.json``,
``result.json``: :mod:`assistant.tuning.spec`), never parsed from its log.

Statuses: ``queued`` → ``running`` → ``succeeded`` | ``failed`` | ``cancelled``.
A job found ``running`` when the service starts was cut off by a restart: it is
marked ``interrupted`` (its process, if still alive, is stopped) and
:meth:`JobRunner.resume` queues it again; training then continues from its last
checkpoint, since the job keeps its folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from assistant.generation.adapters import AdapterSwitch
from assistant.tuning.spec import JobProgress, RetuneResult, RetuneSpec

JOB_MODULE = "assistant.tuning.pipeline"
FINAL = ("succeeded", "failed", "cancelled")
RESUMABLE = ("interrupted", "failed", "cancelled")


class JobError(ValueError):
    pass


class JobStore:
    """The ``tuning_jobs`` table; one connection per call (the job thread and the
    request handlers both write)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("""CREATE TABLE IF NOT EXISTS tuning_jobs (
                job_id TEXT PRIMARY KEY, created REAL NOT NULL, status TEXT NOT NULL, spec TEXT NOT NULL,
                started REAL, finished REAL, pid INTEGER, result TEXT, error TEXT)""")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA synchronous=FULL")  # a 202 means the job is on disk
        return conn

    def add(self, spec: RetuneSpec, job_id: str) -> None:
        with self._connect() as conn:
            conn.execute("INSERT INTO tuning_jobs (job_id, created, status, spec) VALUES (?, ?, 'queued', ?)",
                         (job_id, time.time(), json.dumps(spec.__dict__)))

    def claim(self, job_id: str, pid: int) -> bool:
        """queued → running, only if still queued (two runners on one file never both start it)."""
        with self._connect() as conn:
            cur = conn.execute("UPDATE tuning_jobs SET status = 'running', started = ?, pid = ? "
                               "WHERE job_id = ? AND status = 'queued'", (time.time(), pid, job_id))
        return cur.rowcount == 1

    def update(self, job_id: str, **values: Any) -> None:
        columns = ", ".join(f"{k} = ?" for k in values)
        with self._connect() as conn:
            conn.execute(f"UPDATE tuning_jobs SET {columns} WHERE job_id = ?", (*values.values(), job_id))

    def get(self, job_id: str) -> dict[str, Any] | None:
        rows = self._select("WHERE job_id = ?", (job_id,))
        return rows[0] if rows else None

    def all(self) -> list[dict[str, Any]]:
        return self._select("ORDER BY created", ())

    def with_status(self, status: str) -> list[dict[str, Any]]:
        return self._select("WHERE status = ? ORDER BY created", (status,))

    def _select(self, where: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        keys = ("job_id", "created", "status", "spec", "started", "finished", "pid", "result", "error")
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {', '.join(keys)} FROM tuning_jobs {where}", args).fetchall()
        out = []
        for row in rows:
            job = dict(zip(keys, row))
            job["spec"] = json.loads(job["spec"])
            job["result"] = json.loads(job["result"]) if job["result"] else None
            out.append(job)
        return out


def _is_job_process(pid: int | None) -> bool:
    """Whether ``pid`` still runs a tuning job (and is not a reused pid)."""
    if not pid:
        return False
    try:
        return JOB_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class JobRunner:
    """Starts queued jobs one at a time and watches the running one from a thread.
    When a job succeeds with an accepted adapter that its spec asks to activate, the
    runner activates it through ``adapter_switch`` (the service's, so the served adapter
    and the registry change together), before the job's status says succeeded."""

    def __init__(self, store: JobStore, jobs_dir: Path, adapter_switch: AdapterSwitch | None = None,
                 poll_s: float = 0.5):
        self.store, self.jobs_dir, self.adapter_switch, self.poll_s = store, jobs_dir, adapter_switch, poll_s
        self._process: subprocess.Popen[bytes] | None = None
        self._job_id: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        for job in store.with_status("running"):  # cut off by a restart
            if _is_job_process(job["pid"]):
                try:
                    os.killpg(job["pid"], signal.SIGTERM)
                except OSError:
                    pass
            store.update(job["job_id"], status="interrupted", pid=None,
                         error="the service stopped while this job ran; resume it to continue from its last checkpoint")
        self._thread = threading.Thread(target=self._loop, name="tuning-jobs", daemon=True)
        self._thread.start()

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def submit(self, spec_fields: dict[str, Any]) -> str:
        job_id = "job_" + secrets.token_hex(6)
        spec = RetuneSpec(**spec_fields, work_dir=str(self.job_dir(job_id)))
        self.job_dir(job_id).mkdir(parents=True)
        spec.save(self.job_dir(job_id) / "spec.json")
        self.store.add(spec, job_id)
        return job_id

    def cancel(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._get(job_id)
            if job["status"] in FINAL or job["status"] == "interrupted":
                raise JobError(f"job {job_id} is {job['status']}; only queued or running jobs can be cancelled")
            if job_id == self._job_id and self._process is not None:
                self._stop_process(self._process)
                self._process, self._job_id = None, None
            self.store.update(job_id, status="cancelled", finished=time.time(), pid=None)
        return self._get(job_id)

    def resume(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._get(job_id)
            if job["status"] not in RESUMABLE:
                raise JobError(f"job {job_id} is {job['status']}; only {', '.join(RESUMABLE)} jobs can be resumed")
            self.store.update(job_id, status="queued", error=None, finished=None)
        return self._get(job_id)

    def status(self, job_id: str, log_lines: int = 20) -> dict[str, Any]:
        job = self._get(job_id)
        folder = self.job_dir(job_id)
        progress = JobProgress.read(folder / "progress.json")
        training = (progress or {}).pop("training", None)
        job["progress"] = progress
        if training is not None:
            job["training"] = {"step": 0, "max_steps": None, "loss": None, "tokens_per_s": None,
                               "eval_loss": None} | training
        log = folder / "job.log"
        job["log_tail"] = log.read_text(encoding="utf-8", errors="replace").splitlines()[-log_lines:] if log.is_file() else []
        return job

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            if self._process is not None:  # left running: the next start marks it interrupted
                self._process = None

    # ---- the thread -------------------------------------------------------------------------------

    def _get(self, job_id: str) -> dict[str, Any]:
        job = self.store.get(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self._tick()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive one bad job
                print(f"tuning job runner: {exc!r}", file=sys.stderr)

    def _tick(self) -> None:
        with self._lock:
            if self._process is not None:
                code = self._process.poll()
                if code is None:
                    return
                self._finish(self._job_id, code)  # type: ignore[arg-type]
                self._process, self._job_id = None, None
            else:
                queued = self.store.with_status("queued")
                if queued:
                    self._start(queued[0]["job_id"])

    def _start(self, job_id: str) -> None:
        folder = self.job_dir(job_id)
        try:
            for stale in ("result.json", "progress.json"):  # from an earlier attempt of a resumed job
                (folder / stale).unlink(missing_ok=True)
            with open(folder / "job.log", "ab") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", JOB_MODULE, "--spec", str(folder / "spec.json")],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                    env=os.environ | {"TQDM_MININTERVAL": "5"})
        except OSError as exc:  # a job that cannot start must not block the queue
            self.store.update(job_id, status="failed", finished=time.time(), error=f"could not start: {exc}")
            return
        if not self.store.claim(job_id, process.pid):  # cancelled, or taken by another runner, meanwhile
            self._stop_process(process)
            return
        self._process, self._job_id = process, job_id

    def _finish(self, job_id: str, code: int) -> dict[str, Any]:
        result = RetuneResult.load(self.job_dir(job_id) / "result.json")
        if code == 0 and result is not None and result.error is None:
            self._activate(RetuneSpec(**self._get(job_id)["spec"]), result)
            self.store.update(job_id, status="succeeded", finished=time.time(), pid=None,
                              result=json.dumps(dataclasses.asdict(result)))
        else:
            error = (result.error if result else None) or f"the job process exited with code {code}; see its log"
            self.store.update(job_id, status="failed", finished=time.time(), pid=None, error=error)
        return self._get(job_id)

    def _activate(self, spec: RetuneSpec, result: RetuneResult) -> None:
        """The accepted adapter goes live here, in the service, not in the job's process."""
        if self.adapter_switch is None or not (result.accepted and spec.activate):
            return
        try:
            self.adapter_switch.activate(result.adapter)
            result.activated = True
        except Exception as exc:  # noqa: BLE001 - recorded with the job
            result.activation_error = str(exc)

    @staticmethod
    def _stop_process(process: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except OSError:
                pass
            process.wait()
        except OSError:
            pass


