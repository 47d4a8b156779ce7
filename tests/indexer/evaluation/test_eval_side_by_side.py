"""``indexer eval`` comparing embedders and a reranker side by side, on real indexes
made with two tiny embedders and a tiny cross-encoder built in the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import save_tiny_bert, save_tiny_embedder

from indexer import cli
from indexer.evaluation.beir import BeirSet, CorpusDoc, write_beir
from indexer.evaluation.metrics import evaluate_run
from indexer.evaluation.runner import corpus_documents, search_run
from indexer.index import Index
from indexer.settings import IndexSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SET = BeirSet(
    corpus={f"d{i}": CorpusDoc(f"d{i}", "", text) for i, text in enumerate([
        "Asthma is a chronic disease of the airways that causes wheezing and coughing.",
        "The kidneys filter waste from the blood and make urine.",
        "Influenza is treated with rest, fluids and sometimes antiviral drugs.",
        "Heart failure means the heart cannot pump enough blood to the body.",
        "Insulin lowers blood sugar; type 1 diabetes needs it every day.",
        "Migraine headaches often come with nausea and sensitivity to light.",
    ])},
    queries={"q1": "Which disease of the airways causes wheezing?", "q2": "Which organ makes urine?",
             "q3": "How is influenza treated?", "q4": "What lowers blood sugar?"},
    qrels={"q1": {"d0": 1}, "q2": {"d1": 1}, "q3": {"d2": 1}, "q4": {"d4": 1}},
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    from transformers import BertForSequenceClassification

    return (save_tiny_embedder(tmp_path_factory.mktemp("embedder-a")),
            save_tiny_embedder(tmp_path_factory.mktemp("embedder-b"), hidden_size=48),
            save_tiny_bert(tmp_path_factory.mktemp("reranker"), BertForSequenceClassification, num_labels=1))


def test_embedders_and_a_reranker_side_by_side(models: tuple[Path, Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    a, b, reranker = map(str, models)
    paths = write_beir(SET, tmp_path / "set")
    argv = ["eval", "--corpus", str(paths[0]), "--queries", str(paths[1]), "--qrels", str(paths[2]),
            "--embedder", a, "--embedder", b, "--reranker", reranker, "--modes", "dense", "hybrid", "--json", "-q"]
    assert cli.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    systems = [(s["embedder"], s["reranker"]) for s in report["systems"]]
    assert systems == [(a, None), (a, reranker), (b, None), (b, reranker)]
    assert report["results"] == report["systems"][0]["results"]
    # each row is what that system's search gives: the reranked one recomputed here on a real index
    settings = IndexSettings(embedding_model=b, near_duplicates="keep", reranker=reranker)
    with Index.open(tmp_path / "index", settings) as index:
        index.ingest_documents(corpus_documents(SET))
        run = search_run(index, SET.queries, mode="dense", k=100)
    assert report["systems"][3]["results"]["dense"] == pytest.approx(evaluate_run(run, SET.qrels))
    # the tiny cross-encoder's random scores reorder what the embedder ranked: the row is not B's again
    assert report["systems"][3]["results"]["dense"] != report["systems"][2]["results"]["dense"]


def test_the_table_names_each_system(models: tuple[Path, Path, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    a, _, reranker = map(str, models)
    paths = write_beir(SET, tmp_path / "set")
    argv = ["eval", "--corpus", str(paths[0]), "--queries", str(paths[1]), "--qrels", str(paths[2]),
            "--embedder", a, "--reranker", reranker, "--modes", "bm25", "-q"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f"\n{a}\n" in out and f"\n{a} + rerank {reranker}\n" in out


def test_an_index_keeps_its_embedder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_beir(SET, tmp_path / "set")
    argv = ["eval", "--corpus", str(paths[0]), "--queries", str(paths[1]), "--qrels", str(paths[2]),
            "--index", str(tmp_path / "index"), "--embedder", "x"]
    assert cli.main(argv) == 2
    assert "indexer reembed" in capsys.readouterr().err
