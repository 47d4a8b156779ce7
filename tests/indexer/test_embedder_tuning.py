"""Embedder tuning (``indexer tune-embedder``) with a tiny sentence-transformer made here (a
2-layer BERT of width 32 with MiniLM's tokenizer, random weights, mean pooling) and 40
synthetic (question, passage) pairs: each question names an animal its passage is about."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from tiny_models import save_tiny_embedder
from toy_pairs import LEAKED, toy_pairs, write_jsonl

from indexer import cli
from indexer.embedder import Embedder
from indexer.embedder_tuning import (
    Pair, TuningSettings, drop_contaminated, read_eval_questions, read_pairs, split_validation, tune_embedder,
)

# small and quick: a random tiny model needs a high learning rate to move in a few steps, and
# no margin: all its similarities are alike, so any margin would leave no hard negatives
SETTINGS = TuningSettings(epochs=8, batch_size=8, learning_rate=1e-3, validation_fraction=0.2,
                          evaluations_per_epoch=1, patience=3, max_seq_length=32, negative_margin=0.0)
OPTIONS = ["--epochs", "8", "--batch-size", "8", "--learning-rate", "1e-3", "--validation-fraction", "0.2",
           "--evaluations-per-epoch", "1", "--patience", "3", "--max-seq-length", "32", "--negative-margin", "0", "-q"]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_embedder(tmp_path_factory.mktemp("tiny-embedder"))


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    return write_jsonl(path, toy_pairs())


@pytest.fixture(scope="module")
def eval_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "eval.jsonl"
    rows = [{"question": LEAKED.upper() + "?", "answer": "bamboo"}, {"question": "How tall do giraffes grow?"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def first_run(tiny_model: Path, pairs_file: Path, eval_file: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``indexer tune-embedder`` once; its out folder."""
    out = tmp_path_factory.mktemp("tuned")
    code = cli.main(["tune-embedder", "--pairs", str(pairs_file), "--out", str(out), "--base", str(tiny_model),
                     "--eval-set", str(eval_file), *OPTIONS])
    assert code == 0
    return out


def _mean_rank_of_own_passage(model: Path, pairs: list[Pair]) -> float:
    """The mean rank (1 = first) of each question's own passage among all the passages."""
    embedder = Embedder(str(model), device="cpu")
    questions = embedder.embed([p.question for p in pairs])
    passages = embedder.embed([p.passage for p in pairs])
    scores = questions @ passages.T
    own = np.diag(scores)
    return float(np.mean((scores > own[:, None]).sum(axis=1) + 1))


def test_tuning_writes_a_versioned_model_the_index_can_load(first_run: Path, capsys: pytest.CaptureFixture[str],
                                                             pairs_file: Path) -> None:
    assert sorted(p.name for p in first_run.iterdir()) == ["v1"]  # the finished run's checkpoints are gone
    manifest = json.loads((first_run / "v1" / "tuning.json").read_text(encoding="utf-8"))
    assert manifest["version"] == "v1"
    counts = manifest["counts"]
    assert {k: v for k, v in counts.items() if k != "with_hard_negatives"} == {
        "pairs": 40, "contaminated": 1, "training": 31, "validation": 8}
    assert 0 < counts["with_hard_negatives"] <= 31  # the rest got random negatives
    assert manifest["pairs_sha256"] == hashlib.sha256(pairs_file.read_bytes()).hexdigest()
    assert 0.0 <= manifest["validation_before"] <= 1.0 and 0.0 <= manifest["validation_after"] <= 1.0
    assert manifest["steps"] > 0 and manifest["resumed_from"] is None
    embedder = Embedder(str(first_run / "v1"), device="cpu")
    assert embedder.dim == 32 and embedder.tokenizer is not None  # chunks are counted in its own tokens
    assert embedder.embed(["What does the fox eat?"]).shape == (1, 32)


def test_the_tuned_model_ranks_own_passages_higher(first_run: Path, tiny_model: Path, pairs_file: Path) -> None:
    kept, _ = drop_contaminated(read_pairs(pairs_file), [LEAKED], SETTINGS.decontam_ngram)
    training, _ = split_validation(kept, SETTINGS)
    before = _mean_rank_of_own_passage(tiny_model, training)
    after = _mean_rank_of_own_passage(first_run / "v1", training)
    assert after < before - 1.0, (before, after)


def test_an_interrupted_run_resumes_and_a_new_run_makes_the_next_version(
        first_run: Path, tiny_model: Path, pairs_file: Path) -> None:
    from transformers import TrainerCallback

    class StopAfterFirstCheckpoint(TrainerCallback):
        def on_save(self, args: object, state: object, control: object, **kwargs: object) -> None:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C

    v1 = hashlib.sha256((first_run / "v1" / "model.safetensors").read_bytes()).hexdigest()
    with pytest.raises(KeyboardInterrupt):
        tune_embedder(pairs_file, first_run, SETTINGS, base=str(tiny_model), progress=False,
                      callbacks=[StopAfterFirstCheckpoint()])
    assert [p.name for p in (first_run / "run").glob("checkpoint-*")] == ["checkpoint-4"]
    assert not (first_run / "v2").exists()

    folder, manifest = tune_embedder(pairs_file, first_run, SETTINGS, base=str(tiny_model), progress=False)
    assert folder == first_run / "v2" and manifest["resumed_from"] == "checkpoint-4"
    assert manifest["counts"]["contaminated"] == 0  # no eval set this time
    assert not (first_run / "run").exists()
    assert hashlib.sha256((first_run / "v1" / "model.safetensors").read_bytes()).hexdigest() == v1


def test_a_changed_run_does_not_resume_someone_elses_checkpoints(tmp_path: Path, tiny_model: Path,
                                                                 pairs_file: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(json.dumps({"fingerprint": "other"}), encoding="utf-8")
    with pytest.raises(ValueError, match="unfinished run with other pairs.*delete the folder"):
        tune_embedder(pairs_file, tmp_path, SETTINGS, base=str(tiny_model), progress=False)


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["tune-embedder", *argv])
    return code, capsys.readouterr().err


def test_bad_input_gives_clear_errors(tmp_path: Path, tiny_model: Path, pairs_file: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = ["--out", str(tmp_path / "out"), "-q"]
    code, err = _run_cli(["--pairs", str(pairs_file), "--base", str(tmp_path / "nowhere"), *out], capsys)
    assert code == 2 and "no model folder at" in err and "--base" in err

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    code, err = _run_cli(["--pairs", str(empty), "--base", str(tiny_model), *out], capsys)
    assert code == 2 and "holds no pairs" in err

    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"question": "a?", "passage": "b"}\n\n{"question": "c?"}\n', encoding="utf-8")
    code, err = _run_cli(["--pairs", str(missing), "--base", str(tiny_model), *out], capsys)
    assert code == 2 and f"{missing}:3: 'passage' is missing" in err

    few = tmp_path / "few.jsonl"
    write_jsonl(few, toy_pairs()[:5])
    code, err = _run_cli(["--pairs", str(few), "--base", str(tiny_model), *out], capsys)
    assert code == 2 and "5 pairs are too few for a 10% validation split (at least 20 needed)" in err

    code, err = _run_cli(["--pairs", str(pairs_file), "--base", str(tiny_model), "--patience", "0", *out], capsys)
    assert code == 2 and "patience must be at least 1" in err
    assert not (tmp_path / "out").exists()  # nothing is written before the input is known good


def test_curated_pairs_use_their_context_else_their_answer(tmp_path: Path) -> None:
    path = tmp_path / "curated.jsonl"
    rows = [{"question": "q1", "answer": "a1", "context": "c1"}, {"question": "q2", "answer": "a2"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert read_pairs(path) == [Pair("q1", "c1"), Pair("q2", "a2")]


def test_decontamination_drops_questions_found_in_an_eval_set(eval_file: Path, pairs_file: Path) -> None:
    pairs = read_pairs(pairs_file)
    kept, dropped = drop_contaminated(pairs, read_eval_questions([eval_file]), ngram=13)
    assert dropped == 1 and [p for p in pairs if p not in kept] == [p for p in pairs if p.question == LEAKED]
    # a short question is dropped when its words are an eval question's, case and punctuation aside
    short = [Pair("How tall do GIRAFFES grow", "p"), Pair("How tall do giraffes grow in zoos?", "p")]
    assert drop_contaminated(short, read_eval_questions([eval_file]), ngram=13) == ([short[1]], 1)


def test_an_eval_set_without_the_field_is_an_error(eval_file: Path) -> None:
    with pytest.raises(ValueError, match="no 'prompt' texts in the eval set .*--eval-field"):
        read_eval_questions([eval_file], ["prompt"])


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"validation_fraction": 1.0}, {"learning_rate": 0.0},
                                 {"negative_margin": -0.1}, {"max_seq_length": 8}])
def test_settings_are_checked(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        TuningSettings(**bad)  # type: ignore[arg-type]
