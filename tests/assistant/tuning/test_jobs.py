"""Tuning jobs through the HTTP API of a real server: a job runs end to end in its
own process (RAFT set, 4-bit training, registry, gate, activation), jobs queue one
behind another, cancel stops one, and a restart marks a running job interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from assistant.tuning.jobs import JobRunner, JobStore
from assistant.tuning.spec import RetuneSpec
from server_harness import Service, start_service

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

PAIRS = [
    ("What do pangolins eat?", "Ants and termites."),
    ("How do pangolins catch ants?", "With long sticky tongues."),
    ("What covers a pangolin?", "Scales: pangolins are scaly mammals."),
    ("Where does volcanic lightning flash?", "Inside thick ash plumes."),
    ("When does volcanic lightning happen?", "During explosive eruptions."),
    ("Why does sourdough bread rise?", "Wild yeast and lactic acid bacteria ferment the dough."),
    ("What ferments sourdough?", "Wild yeast and lactic acid bacteria."),
    ("Which mammals have scales?", "Pangolins."),
]
QUICK_TUNE = {"max_steps": 4, "batch_size": 2, "save_every": 2, "eval_every": 0, "eval_fraction": 0.0,
              "warmup_steps": 1, "quantize": "4bit", "lora_r": 4, "lora_alpha": 8}


def write_pairs(service: Service) -> str:
    folder = service.settings.data_dir / "curated"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"question": q, "answer": a, "id": f"p{i}"}) for i, (q, a) in enumerate(PAIRS)]
    lines.insert(3, "{not json")
    (folder / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    return "curated/pairs.jsonl"


def job_body(pairs: str, **tune: Any) -> dict[str, Any]:
    return {"pairs": pairs, "holdout_fraction": 0.25, "tune": QUICK_TUNE | tune,
            "raft": {"seq_len": 480, "k_distractors": 1}, "gate": {"max_new_tokens": 4, "min_gain": -1, "max_drift": 1e9}}


def wait_for(service: Service, job_id: str, done: Any, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = service.get(f"/v1/tuning/jobs/{job_id}").json()
        if done(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} stuck: {job}"
        time.sleep(0.5)


def test_a_job_runs_end_to_end(tiny_model_dir: Path, tmp_path: Path) -> None:
    for svc in start_service(tmp_path, tiny_model_dir, max_body_bytes=100_000):
        pairs = write_pairs(svc)
        assert svc.post("/v1/tuning/jobs", "editor", json=job_body(pairs)).status_code == 403
        accepted = svc.post("/v1/tuning/jobs", json=job_body(pairs))
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        assert svc.post("/v1/ask", "reader", json={"question": "What do pangolins eat?"}).status_code == 200
        job = wait_for(svc, job_id, lambda j: j["status"] in ("succeeded", "failed"))
        assert job["status"] == "succeeded", job["log_tail"]
        assert job["result"]["adapter"] == "v1" and job["result"]["accepted"] and job["result"]["activated"]
        assert job["training"]["step"] == 4 and job["training"]["loss"] > 0
        assert job["progress"]["stage"] == "done"
        assert any("invalid JSON" in line for line in job["log_tail"] + _log(svc, job_id))  # the bad line, reported
        listed = svc.get("/v1/adapters").json()
        (adapter,) = listed["adapters"]
        assert adapter["name"] == "v1" and adapter["gate"]["decision"] == "accepted" and adapter["data_hash"]
        assert listed["active"] == "v1"  # switched in the running server
        answer = svc.post("/v1/ask", "reader", json={"question": "What do pangolins eat?"}).json()
        assert answer["adapter"] == "v1"
        assert [j["job_id"] for j in svc.get("/v1/tuning/jobs").json()["jobs"]] == [job_id]


def _log(svc: Service, job_id: str) -> list[str]:
    return (svc.settings.data_dir / "jobs" / job_id / "job.log").read_text().splitlines()


def test_jobs_queue_and_cancel(tiny_model_dir: Path, tmp_path: Path) -> None:
    for svc in start_service(tmp_path, tiny_model_dir):
        pairs = write_pairs(svc)
        first = svc.post("/v1/tuning/jobs", json=job_body(pairs, max_steps=100000)).json()["job_id"]
        second = svc.post("/v1/tuning/jobs", json=job_body(pairs)).json()
        assert second["status"] == "queued"
        running = wait_for(svc, first, lambda j: j["status"] == "running" and (j.get("training") or {}).get("step", 0) >= 1)
        assert svc.get(f"/v1/tuning/jobs/{second['job_id']}").json()["status"] == "queued"  # one at a time
        cancelled = svc.post(f"/v1/tuning/jobs/{first}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        with pytest.raises(ProcessLookupError):
            os.kill(running["pid"], 0)
        assert svc.post(f"/v1/tuning/jobs/{first}/cancel").status_code == 409
        wait_for(svc, second["job_id"], lambda j: j["status"] == "running")
        assert svc.post(f"/v1/tuning/jobs/{second['job_id']}/cancel").json()["status"] == "cancelled"
        listed = svc.get("/v1/adapters").json()
        assert listed["adapters"] == [] and listed["active"] is None  # nothing half-registered


@pytest.mark.parametrize(("change", "message"), [
    ({"pairs": "../../etc/passwd"}, "inside the data directory"),
    ({"pairs": "missing.jsonl"}, "no file"),
    ({"tune": {"max_stepz": 3}}, "unknown tune settings: max_stepz"),
    ({"tune": {"lr": 5.0}}, "lr must be in"),
    ({"tune": {"out": "/tmp/x"}}, "may not set out"),
    ({"holdout_fraction": 0.0}, "holdout_fraction"),
])
def test_bad_job_requests_are_422(tiny_model_dir: Path, tmp_path: Path, change: dict[str, Any], message: str) -> None:
    for svc in start_service(tmp_path, tiny_model_dir):
        body = job_body(write_pairs(svc)) | change
        r = svc.post("/v1/tuning/jobs", json=body)
        assert r.status_code == 422 and message in r.json()["detail"], r.text
        assert svc.get("/v1/tuning/jobs").json()["jobs"] == []
        assert svc.get("/v1/tuning/jobs/job_nope").status_code == 404


def test_restart_marks_a_running_job_interrupted(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "service.sqlite")
    spec = RetuneSpec(pairs="p.jsonl", index_dir="i", registry_dir="r", work_dir=str(tmp_path / "jobs" / "job_a"))
    store.add(spec, "job_a")
    # the old server's job process (its command line names assistant.retune, as the real one does)
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "assistant.tuning.pipeline"],
                              start_new_session=True)
    store.update("job_a", status="running", pid=orphan.pid)
    runner = JobRunner(store, tmp_path / "jobs")
    runner.close()
    job = store.get("job_a")
    assert job is not None and job["status"] == "interrupted" and "resume" in job["error"]
    assert orphan.wait(timeout=10) == -signal.SIGTERM  # stopped, not left training twice
    assert runner.resume("job_a")["status"] == "queued"


def test_tune_cli_registers_a_rejected_adapter_without_activating_it(tiny_model_dir: Path, tmp_path: Path,
                                                                     venv_bin: Path, cli_env: dict[str, str]) -> None:
    """`assistant tune` in the foreground: the tiny random model gains nothing on the
    held-out pairs, so the gate rejects the adapter; it is registered with the reason
    and the active adapter stays the base model."""
    from assistant.generation.registry import AdapterRegistry
    from indexer.index import Index
    from server_harness import DOCS

    with Index.open(tmp_path / "index") as index:
        index.ingest_documents(DOCS)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in PAIRS))
    env = {**cli_env, "ASSISTANT_MODEL": str(tiny_model_dir)}
    env.pop("ASSISTANT_ADAPTERS_DIR", None)
    r = subprocess.run([str(venv_bin / "assistant"), "tune", str(pairs), "--index", str(tmp_path / "index"),
                        "--data-dir", str(tmp_path / "svc"), "--work", str(tmp_path / "work"), "--max-steps", "2",
                        "--warmup-steps", "1", "--batch-size", "2", "--quantize", "4bit"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout)
    assert result["adapter"] == "v1" and not result["accepted"] and not result["activated"]
    assert "not above the base model" in result["reason"]
    registry = AdapterRegistry(tmp_path / "svc" / "adapters")
    assert registry.manifest("v1")["gate"]["decision"] == "rejected" and registry.active() is None
    assert (tmp_path / "work" / "raft" / "report.json").is_file() and (tmp_path / "work" / "tune" / "loss.png").is_file()
