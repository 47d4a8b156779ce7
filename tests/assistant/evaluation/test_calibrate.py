"""``assistant calibrate`` over a real index, and ``assistant eval --calibrated`` holding
the tiny model's answers to the calibrator stored beside that index."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from assistant.evaluation.run import EvalSettings, run_eval
from assistant.evaluation.sets import EvalItem
from assistant.generation.base import GenerationSettings
from assistant.generation.local import LocalGenerator
from assistant.grounding.answerability import Calibrator, CalibratorMismatchError
from indexer.index import Index
from server_harness import DOCS
from calibration_records import synthetic_records

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

ITEM = EvalItem("q1", "What do pangolins eat?", "ants and termites", "extractive", ("pangolin",))


@pytest.fixture()
def index_dir(tmp_path: Path) -> Path:
    with Index.open(tmp_path / "index") as index:
        index.ingest_documents(DOCS)
    return tmp_path / "index"


def test_calibrate_stores_a_calibrator_that_eval_holds_answers_to(citing_model: Path, index_dir: Path, tmp_path: Path,
                                                                  venv_bin: Path, cli_env: dict[str, str]) -> None:
    generator = LocalGenerator(GenerationSettings(model=str(citing_model), device="cpu"))
    run = tmp_path / "calibration-run"
    run.mkdir()
    (run / "answers.jsonl").write_text("".join(json.dumps(r | {"set": "cal"}) + "\n" for r in synthetic_records()))
    (run / "report.json").write_text(json.dumps({"model": generator.model_name}))
    cal_set = tmp_path / "cal.jsonl"
    cal_set.write_text(json.dumps({"id": "c1", "question": "q", "answer": "a", "answer_type": "free"}) + "\n")
    r = subprocess.run([str(venv_bin / "assistant"), "calibrate", "--index", str(index_dir), "--data-dir",
                        str(tmp_path / "svc"), "--set", str(cal_set), "--answers", str(run / "answers.jsonl"),
                        "--out", str(tmp_path / "cal-out")], capture_output=True, text=True, env=cli_env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "at most 10% hallucination on the calibration items" in r.stdout
    summary = json.loads((tmp_path / "cal-out" / "calibration.json").read_text())
    assert summary["sets"]["cal"]["calibration_hallucination"] <= 0.10
    with Index.open(index_dir) as index:
        stored = Calibrator.load(index_dir / "answerability.json", model=generator.model_name,
                                 embedder=index.embedder.name)
        assert stored.fitted["set"] == "cal" and stored.fitted["adapter"] is None
        report = run_eval(generator, {"pangolins": ([ITEM], index)}, tmp_path / "report", adapter=None,
                          systems=["base+rag"], settings=EvalSettings(max_new_tokens=24, calibrated=True,
                                                                      max_hallucination=1.0))
    assert report["sets"]["pangolins"]["calibrated"] == ["None"]
    answers = [json.loads(line) for line in (tmp_path / "report" / "answers.jsonl").read_text().splitlines()]
    answered = next(a for a in answers if a["split"] == "answerable")
    assert answered["shown"] is True  # max_hallucination 1.0: the loosest operating point
    assert 0.0 <= answered["answerability"]["probability"] <= 1.0 and "threshold" in answered["answerability"]
    assert (tmp_path / "report" / "risk_coverage.png").is_file()


def test_eval_refuses_a_calibrator_for_another_model_or_none(citing_model: Path, index_dir: Path,
                                                             tmp_path: Path) -> None:
    from assistant.evaluation.calibrate import fit_calibrator

    generator = LocalGenerator(GenerationSettings(model=str(citing_model), device="cpu"))
    settings = EvalSettings(max_new_tokens=8, calibrated=True)
    with Index.open(index_dir) as index:
        with pytest.raises(FileNotFoundError, match="no calibrator beside the index"):
            run_eval(generator, {"p": ([ITEM], index)}, tmp_path / "r1", adapter=None, systems=["base+rag"],
                     settings=settings)
        fit_calibrator(synthetic_records(), fitted={"model": "someone-else", "embedder": index.embedder.name}).save(
            index_dir / "answerability.json")
        with pytest.raises(CalibratorMismatchError, match="someone-else"):
            run_eval(generator, {"p": ([ITEM], index)}, tmp_path / "r2", adapter=None, systems=["base+rag"],
                     settings=settings)


def test_calibrate_refuses_held_out_items() -> None:
    from assistant.evaluation.calibrate import check_disjoint

    with pytest.raises(ValueError, match="1 of the calibration answers are held-out items"):
        check_disjoint([{"set": "covidqa", "id": "a"}, {"set": "covidqa", "id": "b"}], {"covidqa": {"b"}})
    check_disjoint([{"set": "covidqa", "id": "a"}], {"covidqa": {"b"}, "tatqa": {"a"}})


def test_choice_answers_fit_a_choice_head_that_eval_then_uses(citing_model: Path, index_dir: Path,
                                                              tmp_path: Path) -> None:
    import random

    from assistant.evaluation.calibration_run import calibrate_sets
    from assistant.grounding.choice_head import ChoiceHead, choice_head_path

    generator = LocalGenerator(GenerationSettings(model=str(citing_model), device="cpu"))
    rng = random.Random(0)
    gold = ["yes", "no", "maybe"] * 10
    records = [{"set": "yn", "system": "base+rag", "split": "answerable", "id": f"q{i}", "gold": g, "shown": True,
                "choice": {"probabilities": {"yes": 0.4, "no": 0.3, "maybe": 0.3},
                           "mean_logprobs": [rng.gauss(-0.5 if c == g else -1.5, 0.3) for c in ("yes", "no", "maybe")]}}
               for i, g in enumerate(gold)]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(r) + "\n" for r in records))
    item = EvalItem("y1", "Do pangolins eat termites?", "yes", "yes_no_maybe", ("pangolin",))
    with Index.open(index_dir) as index:
        summary = calibrate_sets(generator, {"yn": ([item], index)}, tmp_path / "fit", adapter=None,
                                 settings=EvalSettings(choices=True), answers=answers)
        assert summary["sets"]["yn"]["choice_head"] and summary["sets"]["yn"]["training_accuracy"] > 0.8
        head = ChoiceHead.load(choice_head_path(index_dir, None), model=generator.model_name)
        assert head.choices == ("yes", "no", "maybe") and head.fitted["items"] == 30
        report = run_eval(generator, {"yn": ([item], index)}, tmp_path / "report", adapter=None, systems=["base+rag"],
                          settings=EvalSettings(choices=True, calibrated=True))
    assert report["sets"]["yn"]["choice_heads"] == ["None"] and "macro_f1" in report["sets"]["yn"]["base+rag"]
    rows = [json.loads(line) for line in (tmp_path / "report" / "answers.jsonl").read_text().splitlines()]
    assert next(r for r in rows if r["split"] == "answerable")["choice"]["method"] == "head"
