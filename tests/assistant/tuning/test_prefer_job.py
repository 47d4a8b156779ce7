"""The feedback round trip on a tiny real model: ask over HTTP, rate and correct the
answers, curate them into preferences, and run the prefer stage as an HTTP tuning job;
the new adapter is registered as its parent's child, gated against the parent, and
answers. A kill -9 mid-stage leaves the active adapter as it was, and a rerun resumes
from the trainer's checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from assistant.generation.registry import AdapterRegistry
from assistant.tuning.spec import RetuneSpec
from server_harness import DOCS
from test_jobs import PAIRS, wait_for, write_pairs

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

QUICK_PREFER = {"max_steps": 4, "batch_size": 4, "save_every": 2, "lr": 1e-3, "warmup_ratio": 0.0}
LENIENT_GATE = {"max_new_tokens": 4, "min_gain": -1, "max_drift": 1e9, "max_score_drop": 100}


def registry_with_parent(root: Path, tiny_model_dir: Path, tiny_adapter_dir: Path) -> AdapterRegistry:
    """A registry whose active adapter is the tiny ``demo`` adapter, as a supervised run leaves it."""
    from assistant.generation.registry import model_hash

    registry = AdapterRegistry(root)
    registry.register(tiny_adapter_dir / "demo", base_model="tiny", base_model_hash=model_hash(tiny_model_dir),
                      data_hash="sft-data", name="demo")
    registry.record_gate("demo", {"accepted": True, "reason": "the supervised run's gate"})
    registry.activate("demo")
    return registry


def test_feedback_round_trip_through_a_prefer_job(tiny_model_dir: Path, tiny_adapter_dir: Path, tmp_path: Path,
                                                  venv_bin: Path, cli_env: dict[str, str]) -> None:
    from server_harness import start_service

    registry = registry_with_parent(tmp_path / "adapters", tiny_model_dir, tiny_adapter_dir)
    for svc in start_service(tmp_path, tiny_model_dir, adapters_dir=registry.root):
        asked = [svc.post("/v1/ask", "reader", json={"question": q}).json() for q, _ in PAIRS[:2]]
        assert all(a["adapter"] == "demo" for a in asked)
        assert svc.post("/v1/feedback", "editor", json={"answer_id": asked[0]["answer_id"],
                                                        "rating": "up"}).status_code == 201
        assert svc.post("/v1/feedback", "editor", json={"answer_id": asked[1]["answer_id"], "rating": "down",
                                                        "correction": "With long sticky tongues [1]."}).status_code == 201
        pairs = write_pairs(svc)
        curated = svc.settings.data_dir / "feedback"
        r = subprocess.run([str(venv_bin / "assistant"), "curate", "--index", str(tmp_path / "index"), "--data-dir",
                            str(svc.settings.data_dir), "--out", str(curated), "--json"], capture_output=True,
                           text=True, env=cli_env, timeout=120)
        assert r.returncode == 0 and json.loads(r.stdout)["preferences"] == 2, r.stderr
        rows = [json.loads(line) for line in (curated / "preferences.jsonl").read_text().splitlines()]
        assert rows[1]["prompt"][1]["content"].startswith("Passages:\n[1]")  # the prompt the model saw
        body = {"pairs": pairs, "stages": ["prefer"], "preferences": "feedback/preferences.jsonl",
                "holdout_fraction": 0.25, "raft": {"seq_len": 480, "k_distractors": 1},
                "synthetic": {"max_new_tokens": 8, "max_contexts": 6}, "prefer": QUICK_PREFER, "gate": LENIENT_GATE}
        assert svc.post("/v1/tuning/jobs", json=body | {"stages": ["prefer", "sft"]}).status_code == 422
        accepted = svc.post("/v1/tuning/jobs", json=body)
        assert accepted.status_code == 202, accepted.text
        job = wait_for(svc, accepted.json()["job_id"], lambda j: j["status"] in ("succeeded", "failed"), timeout=600)
        assert job["status"] == "succeeded", job["log_tail"]
        result = job["result"]
        assert result["adapters"] == {"prefer": "v1"} and result["prefer"]["parent"] == "demo"
        assert result["prefer"]["sources"]["file"] == {"path": str(curated / "preferences.jsonl"), "pairs": 1,
                                                       "unpaired": 1}
        assert result["prefer"]["train"]["method"] == "kto"  # a thumb is in the data
        assert result["gate"]["parent"]["name"] == "demo" and "hallucination_rate" in result["gate"]["parent"]
        manifest = registry.manifest("v1")
        assert manifest["parent"] == "demo"
        assert [(s["stage"], s.get("adapter")) for s in manifest["lineage"]] == [
            ("base", None), ("sft", "demo"), ("prefer", "v1")]
        assert manifest["lineage"][-1]["data_hash"] and manifest["gate"]["decision"] in ("accepted", "rejected")
        if result["accepted"]:
            assert result["activated"] and svc.get("/v1/adapters").json()["active"] == "v1"
            answer = svc.post("/v1/ask", "reader", json={"question": PAIRS[0][0]}).json()
            assert answer["adapter"] == "v1"
        else:
            assert "parent" in result["reason"] and registry.active() == "demo"


def test_kill_mid_stage_keeps_the_active_adapter_and_a_rerun_resumes(tiny_model_dir: Path, tiny_adapter_dir: Path,
                                                                    tmp_path: Path, cli_env: dict[str, str]) -> None:
    from indexer.index import Index

    with Index.open(tmp_path / "index") as index:
        index.ingest_documents(DOCS)
    registry = registry_with_parent(tmp_path / "adapters", tiny_model_dir, tiny_adapter_dir)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in PAIRS))
    work = tmp_path / "work"
    work.mkdir()
    spec = RetuneSpec(pairs=str(pairs), index_dir=str(tmp_path / "index"), registry_dir=str(registry.root),
                      work_dir=str(work), model=str(tiny_model_dir), stages=("prefer",), holdout_fraction=0.25,
                      raft={"seq_len": 480, "k_distractors": 1}, synthetic={"max_new_tokens": 8},
                      prefer=QUICK_PREFER | {"max_steps": 400, "batch_size": 2, "method": "dpo"}, gate=LENIENT_GATE)
    spec.save(work / "spec.json")
    command = [sys.executable, "-m", "assistant.tuning.pipeline", "--spec", str(work / "spec.json")]
    process = subprocess.Popen(command, env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list((work / "prefer" / "trainer").glob("checkpoint-*/trainer_state.json")):
            assert process.poll() is None, "the stage ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert registry.active() == "demo" and registry.names() == ["demo"]  # nothing half-registered, nothing switched
    progress = json.loads((work / "progress.json").read_text())
    assert progress["stage"] == "prefer"
    shutil.rmtree(work / "prefer" / "adapter", ignore_errors=True)
    rerun = RetuneSpec(**json.loads((work / "spec.json").read_text()) | {
        "prefer": QUICK_PREFER | {"max_steps": 30, "batch_size": 2, "method": "dpo", "save_every": 2}})
    from assistant.tuning.pipeline import run

    result = run(rerun, activate_here=False)
    assert result.prefer["train"]["resumed_from"] and result.adapters == {"prefer": "v1"}
    assert registry.active() == "demo"  # the job's process never activates; the service does
