"""``assistant eval`` and ``assistant calibrate`` without ``--out``: the report goes to a
dated folder under the cache, and the command says which, before the run and after."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from assistant.cli import default_report_dir
from calibration_records import synthetic_records
from indexer.index import Index
from server_harness import DOCS

STAMP = re.compile(r"\d{8}-\d{6}")


@pytest.fixture()
def index_dir(tmp_path: Path) -> Path:
    with Index.open(tmp_path / "index") as index:
        index.ingest_documents(DOCS)
    return tmp_path / "index"


def only_report_dir(cache: Path, command: str) -> Path:
    (folder,) = (cache / command).iterdir()
    assert STAMP.fullmatch(folder.name), folder.name
    return folder


def test_the_default_is_dated_under_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_CACHE_DIR", str(tmp_path / "cache"))
    assert default_report_dir("eval", datetime(2026, 11, 24, 9, 5, 3)) == tmp_path / "cache" / "eval" / "20261124-090503"
    before = datetime.now().replace(microsecond=0)
    made = datetime.strptime(default_report_dir("calibrate").name, "%Y%m%d-%H%M%S")
    assert before <= made <= datetime.now()


def test_eval_without_out_writes_a_dated_report_and_says_where(citing_model: Path, index_dir: Path, tmp_path: Path,
                                                                venv_bin: Path, cli_env: dict[str, str]) -> None:
    cache = tmp_path / "cache"
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"id": "q1", "question": "What do pangolins eat?", "answer": "ants and termites",
                               "answer_type": "extractive", "doc_ids": ["pangolin"]}) + "\n")
    env = cli_env | {"ASSISTANT_MODEL": str(citing_model), "ASSISTANT_DEVICE": "cpu", "ASSISTANT_CACHE_DIR": str(cache)}
    r = subprocess.run([str(venv_bin / "assistant"), "eval", "--set", str(one), "--index", str(index_dir),
                        "--data-dir", str(tmp_path / "svc"), "--systems", "base+rag", "--no-unanswerable",
                        "--max-new-tokens", "8"], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    report = only_report_dir(cache, "eval")
    assert (report / "report.md").read_text(encoding="utf-8") in r.stdout
    assert f"assistant eval: the report goes to {report} (--out to choose the folder)" in r.stderr
    (written,) = [line for line in r.stderr.splitlines() if line.startswith("written: ")]
    assert str(report / "report.json") in written


def test_calibrate_without_out_writes_a_dated_report_and_says_where(index_dir: Path, tmp_path: Path, venv_bin: Path,
                                                                     cli_env: dict[str, str]) -> None:
    cache = tmp_path / "cache"
    run = tmp_path / "earlier-run"  # an eval run's answers: calibrate fits on them without loading a model
    run.mkdir()
    (run / "answers.jsonl").write_text("".join(json.dumps(r | {"set": "cal"}) + "\n" for r in synthetic_records()))
    (run / "report.json").write_text(json.dumps({"model": "tiny-citing"}))
    cal_set = tmp_path / "cal.jsonl"
    cal_set.write_text(json.dumps({"id": "c1", "question": "q", "answer": "a", "answer_type": "free"}) + "\n")
    r = subprocess.run([str(venv_bin / "assistant"), "calibrate", "--index", str(index_dir), "--data-dir",
                        str(tmp_path / "svc"), "--set", str(cal_set), "--answers", str(run / "answers.jsonl")],
                       capture_output=True, text=True, env=cli_env | {"ASSISTANT_CACHE_DIR": str(cache)}, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    report = only_report_dir(cache, "calibrate")
    assert json.loads((report / "calibration.json").read_text())["sets"]["cal"]["answers"] > 0
    assert f"assistant calibrate: the report goes to {report}" in r.stderr
    assert f"written: {report / 'calibration.json'}" in r.stderr
