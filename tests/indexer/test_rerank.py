"""The optional cross-encoder reranker, with a tiny cross-encoder made here
(a 2-layer BERT with MiniLM's tokenizer, random weights: its scores are
arbitrary but fixed, which is all the ordering check needs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from tiny_models import save_tiny_bert

from indexer.index import Index
from indexer.loaders import Document
from indexer.settings import IndexSettings

DOCS = [
    Document("pangolin", "Pangolins eat ants and termites with long sticky tongues.", "zoo/p", {}),
    Document("anteater", "Giant anteaters also eat ants, and termites too, in grasslands.", "zoo/a", {}),
    Document("volcano", "Volcanic lightning flashes inside thick ash plumes.", "geo/v", {}),
    Document("bread", "Sourdough bread rises because wild yeast ferments the dough.", "food/b", {}),
]


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertForSequenceClassification

    return save_tiny_bert(tmp_path_factory.mktemp("cross-encoder"), BertForSequenceClassification, num_labels=1)


def test_reranker_orders_hits_by_its_own_scores(tiny_cross_encoder: Path, tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    settings = dataclasses.replace(IndexSettings(), reranker=str(tiny_cross_encoder), rerank_depth=10)
    query = "What do pangolins eat?"
    with Index.open(tmp_path / "index", settings) as index:
        index.ingest_documents(DOCS)
        hits = index.search(query, k=3)
    expected = CrossEncoder(str(tiny_cross_encoder), device="cpu").predict([(query, d.text) for d in DOCS])
    by_doc = {d.doc_id: float(s) for d, s in zip(DOCS, expected)}
    assert [h.doc_id for h in hits] == sorted(by_doc, key=by_doc.get, reverse=True)[:3]
    for h in hits:
        assert h.score == pytest.approx(by_doc[h.doc_id], abs=1e-4)  # the reranker's score is the hit's score


def test_without_a_reranker_nothing_is_loaded(tmp_path: Path) -> None:
    with Index.open(tmp_path / "index") as index:
        index.ingest_documents(DOCS[:2])
        index.search("ants", k=2)
        assert index._reranker is None


def test_rerank_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rerank_depth"):
        IndexSettings(rerank_depth=0)
