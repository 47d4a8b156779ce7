"""``assistant eval --embedder/--reranker``: the built-in sets' indexes made with another
embedder live in folders of their own (by the model's fingerprint), and a reranker is put on
top of an index as built. Real indexes, a tiny embedder and cross-encoder made in the test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import save_tiny_bert, save_tiny_embedder

from assistant import cli
from assistant.evaluation.builtin_sets import index_root, set_index
from indexer.embedder import model_fingerprint
from indexer.evaluation.beir import BeirSet, CorpusDoc
from indexer.index import Index
from indexer.evaluation.reranked import open_with_reranker

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SET = BeirSet(corpus={"d0": CorpusDoc("d0", "Asthma", "Asthma narrows the airways and causes wheezing."),
                      "d1": CorpusDoc("d1", "", "The kidneys filter waste from the blood.")},
              queries={"q": "What causes wheezing?"}, qrels={"q": {"d0": 1}})


@pytest.fixture(scope="module")
def embedder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_embedder(tmp_path_factory.mktemp("embedder"))


def test_a_sets_index_with_another_embedder_has_a_folder_of_its_own(embedder: Path, tmp_path: Path) -> None:
    folder = set_index("tiny", SET, tmp_path, embedding_model=str(embedder))
    fingerprint = model_fingerprint(str(embedder))
    assert fingerprint and folder == tmp_path / f"embedder-{fingerprint[:16]}" / "tiny"
    with Index.open(folder) as index:
        assert index.settings.embedding_model == str(embedder) and index.dim == 32
        assert index.stats()["documents"] == 2
    assert set_index("tiny", SET, tmp_path, embedding_model=str(embedder)) == folder  # built once
    assert index_root(tmp_path, None) == tmp_path
    with pytest.raises(FileNotFoundError, match="no embedding model folder"):
        index_root(tmp_path, str(tmp_path / "missing"))


def test_a_reranker_goes_on_top_of_the_index_as_built(embedder: Path, tmp_path: Path) -> None:
    from transformers import BertForSequenceClassification

    (tmp_path / "reranker").mkdir()
    reranker = save_tiny_bert(tmp_path / "reranker", BertForSequenceClassification, num_labels=1)
    folder = set_index("tiny", SET, tmp_path / "indexes", embedding_model=str(embedder))
    with open_with_reranker(folder, str(reranker)) as index:
        assert index.settings.reranker == str(reranker)
        assert index.settings.embedding_model == str(embedder)
        hits = index.search("wheezing", k=2)
        direct = index.reranker.scores("wheezing", [h.text for h in hits])
    assert [h.score for h in hits] == pytest.approx(sorted(direct.tolist(), reverse=True))


def test_embedder_with_an_index_of_ones_own_is_refused(embedder: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with Index.open(tmp_path / "index") as index:
        index.ingest_documents([])
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"id": "q1", "question": "?", "answer": "a", "doc_ids": ["d0"]}) + "\n")
    argv = ["eval", "--set", str(one), "--index", str(tmp_path / "index"), "--embedder", str(embedder),
            "--data-dir", str(tmp_path / "svc"), "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    assert "indexer reembed" in capsys.readouterr().err
