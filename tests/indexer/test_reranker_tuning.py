"""Reranker training (``indexer tune-reranker``) with tiny models made here: a sentence-transformer
(a 2-layer BERT of width 32 with MiniLM's tokenizer, random weights, mean pooling) that mines the
negatives and whose weights start the cross-encoder, as MiniLM's do by default, and 40 synthetic
(question, passage) pairs: each question names the animal its passage is about. A model this small
and random does not learn to match a question with its passage in the few steps a test can afford
(its loss stays at chance); that it learns on real data is what ``bench/reranker_tuning.py`` shows.
Here: what is written, that it loads and reranks through the index's hook, resuming, and errors."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file
from tiny_models import save_tiny_bert, save_tiny_embedder
from toy_pairs import ANIMALS, LEAKED, toy_pairs, write_jsonl

from indexer.index import Index
from indexer.loaders import Document
from indexer.reranker_tuning import RerankerTuningSettings, load_base, tune_reranker
from indexer.reranker_tuning_cli import add_tune_reranker_parser
from indexer.settings import IndexSettings

# no margin: all the tiny miner's similarities are alike, so any margin would leave no hard negatives
SETTINGS = RerankerTuningSettings(epochs=2, batch_size=16, learning_rate=1e-3, validation_fraction=0.2,
                                  evaluations_per_epoch=1, max_seq_length=48, negative_margin=0.0)
OPTIONS = ["--epochs", "2", "--batch-size", "16", "--learning-rate", "1e-3", "--validation-fraction", "0.2",
           "--evaluations-per-epoch", "1", "--max-seq-length", "48", "--negative-margin", "0", "-q"]


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_tune_reranker_parser(parser.add_subparsers())
    args = parser.parse_args(["tune-reranker", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def tiny_embedder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_embedder(tmp_path_factory.mktemp("tiny-embedder"))


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    return write_jsonl(path, toy_pairs())


@pytest.fixture(scope="module")
def first_run(tiny_embedder: Path, pairs_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``indexer tune-reranker`` once, with an eval set holding one pair's question; its out folder."""
    eval_file = tmp_path_factory.mktemp("eval") / "eval.jsonl"
    eval_file.write_text(json.dumps({"question": LEAKED.upper() + "?"}) + "\n", encoding="utf-8")
    out = tmp_path_factory.mktemp("reranker")
    code = _cli(["--pairs", str(pairs_file), "--out", str(out), "--base", str(tiny_embedder),
                 "--miner", str(tiny_embedder), "--eval-set", str(eval_file), *OPTIONS])
    assert code == 0
    return out


def test_training_writes_a_versioned_reranker(first_run: Path, pairs_file: Path) -> None:
    assert sorted(p.name for p in first_run.iterdir()) == ["v1"]  # the finished run's checkpoints are gone
    manifest = json.loads((first_run / "v1" / "tuning.json").read_text(encoding="utf-8"))
    assert manifest["version"] == "v1" and manifest["kind"] == "cross-encoder reranker"
    counts = manifest["counts"]
    assert {k: counts[k] for k in ("pairs", "contaminated", "training", "validation")} == {
        "pairs": 40, "contaminated": 1, "training": 31, "validation": 8}
    assert counts["rows"] == 31 * 4  # each pair: its passage and three negatives
    assert manifest["pairs_sha256"] == hashlib.sha256(pairs_file.read_bytes()).hexdigest()
    assert manifest["layers"] == 2 and manifest["steps"] == 2 * 8 and manifest["resumed_from"] is None
    assert 0.0 < manifest["validation_before"] <= 1.0 and 0.0 < manifest["validation_after"] <= 1.0


def test_the_saved_model_is_the_trained_one(first_run: Path, tiny_embedder: Path) -> None:
    name = "bert.encoder.layer.0.attention.self.query.weight"
    trained = load_file(str(first_run / "v1" / "model.safetensors"))[name]
    start = load_file(str(tiny_embedder / "model.safetensors"))[name.removeprefix("bert.")]
    assert trained.shape == start.shape and not np.allclose(trained, start)


def test_a_bi_encoder_base_gets_a_head_reading_the_cls_state(tiny_embedder: Path, tmp_path: Path) -> None:
    from transformers import BertForSequenceClassification

    def pooler(model: object) -> np.ndarray:
        return model[0].model.bert.pooler.dense.weight.detach().numpy()  # type: ignore[index]

    assert np.array_equal(pooler(load_base(tiny_embedder, SETTINGS)), np.eye(32, dtype=np.float32))
    cross_encoder = save_tiny_bert(tmp_path, BertForSequenceClassification, num_labels=1)
    trained_pooler = load_file(str(cross_encoder / "model.safetensors"))["bert.pooler.dense.weight"]
    assert np.array_equal(pooler(load_base(cross_encoder, SETTINGS)), trained_pooler)  # a cross-encoder's is kept


def test_the_index_reranks_with_the_trained_model(first_run: Path, tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    docs = [Document(a, p["passage"], f"zoo/{a}", {}) for a, p in zip(ANIMALS[:8], toy_pairs()[:8], strict=True)]
    settings = dataclasses.replace(IndexSettings(), reranker=str(first_run / "v1"), rerank_depth=8)
    query = "What does the horse eat and where does it live?"
    with Index.open(tmp_path / "index", settings) as index:
        index.ingest_documents(docs)
        hits = index.search(query, k=8)
    expected = CrossEncoder(str(first_run / "v1"), device="cpu").predict([(query, d.text) for d in docs])
    by_doc = {d.doc_id: float(s) for d, s in zip(docs, expected, strict=True)}
    assert [h.doc_id for h in hits] == sorted(by_doc, key=by_doc.__getitem__, reverse=True)
    for h in hits:
        assert h.score == pytest.approx(by_doc[h.doc_id], abs=1e-4)  # the reranker's score is the hit's score


def test_an_interrupted_run_resumes_and_saves_the_next_version(first_run: Path, tiny_embedder: Path,
                                                               pairs_file: Path) -> None:
    from transformers import TrainerCallback

    class StopAfterFirstCheckpoint(TrainerCallback):
        def on_save(self, args: object, state: object, control: object, **kwargs: object) -> None:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C

    short = dataclasses.replace(SETTINGS, layers=1, save_dtype="bfloat16")
    run = {"base": str(tiny_embedder), "miner": str(tiny_embedder)}
    with pytest.raises(KeyboardInterrupt):
        tune_reranker(pairs_file, first_run, short, progress=False, callbacks=[StopAfterFirstCheckpoint()], **run)
    assert [p.name for p in (first_run / "run").glob("checkpoint-*")] == ["checkpoint-8"]
    assert not (first_run / "v2").exists()

    folder, manifest = tune_reranker(pairs_file, first_run, short, progress=False, **run)
    assert folder == first_run / "v2" and manifest["resumed_from"] == "checkpoint-8"
    assert manifest["counts"]["contaminated"] == 0 and manifest["layers"] == 1  # no eval set this time
    assert not (first_run / "run").exists()
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert config["num_hidden_layers"] == 1 and config["dtype"] == "bfloat16"


def test_bad_input_gives_clear_errors(tmp_path: Path, tiny_embedder: Path, pairs_file: Path) -> None:
    out = ["--out", str(tmp_path / "out"), "--miner", str(tiny_embedder), "-q"]
    base = ["--base", str(tiny_embedder)]
    with pytest.raises(FileNotFoundError, match=f"no model folder at {tmp_path / 'nowhere'}: pass --base"):
        _cli(["--pairs", str(pairs_file), "--base", str(tmp_path / "nowhere"), *out])
    with pytest.raises(FileNotFoundError, match="no model folder at .*: pass --miner"):
        _cli(["--pairs", str(pairs_file), *base, "--out", str(tmp_path / "out"), "--miner", str(tmp_path)])

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no pairs"):
        _cli(["--pairs", str(empty), *base, *out])

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "a?", "passage": "b"}\n\n{"question": "c?"\n', encoding="utf-8")
    with pytest.raises(ValueError, match=f"{bad}:3: .*each line must be a JSON object"):
        _cli(["--pairs", str(bad), *base, *out])

    few = tmp_path / "few.jsonl"
    write_jsonl(few, toy_pairs()[:5])
    with pytest.raises(ValueError, match="5 pairs are too few for a 10% validation split"):
        _cli(["--pairs", str(few), *base, *out])

    with pytest.raises(ValueError, match="--layers 3: the base at .* has 2 transformer layers"):
        _cli(["--pairs", str(pairs_file), *base, "--layers", "3", *out])
    assert not (tmp_path / "out").exists()  # nothing is written before the input is known good


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"negatives_per_pair": 0}, {"learning_rate": 0.0},
                                 {"max_seq_length": 8}, {"layers": -1}, {"save_dtype": "int4"}])
def test_settings_are_checked(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        RerankerTuningSettings(**bad)  # type: ignore[arg-type]
