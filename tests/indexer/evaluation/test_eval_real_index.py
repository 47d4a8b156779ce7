"""The runner on the real index (bundled MiniLM model, SQLite, FAISS) over a tiny set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from indexer.evaluation.beir import BeirSet, CorpusDoc
from indexer.evaluation.runner import run_retrieval_eval

TINY = BeirSet(
    corpus={
        "asthma": CorpusDoc("asthma", "Asthma", "Asthma is a chronic disease of the airways that causes wheezing and coughing."),
        "kidney": CorpusDoc("kidney", "", "The kidneys filter waste from the blood and make urine."),
        "flu": CorpusDoc("flu", "Influenza", "Influenza is treated with rest, fluids and sometimes antiviral drugs."),
        "heart": CorpusDoc("heart", "", "Heart failure means the heart cannot pump enough blood to the body."),
    },
    queries={"q1": "Which disease of the airways causes wheezing?", "q2": "Which organ filters waste and makes urine?",
             "q3": "How is influenza treated?"},
    qrels={"q1": {"asthma": 1}, "q2": {"kidney": 1}, "q3": {"flu": 1}},
)


@pytest.mark.slow
def test_runner_on_the_real_index(tmp_path: Path) -> None:
    index_module = pytest.importorskip("indexer.index", reason="the index needs faiss and sentence-transformers")
    from indexer.settings import IndexSettings

    settings = dataclasses.replace(IndexSettings.from_env(), near_duplicates="keep")
    with index_module.Index.open(tmp_path / "index", settings) as index:
        results = run_retrieval_eval(TINY, index, k=10)
    assert list(results) == ["dense", "bm25", "hybrid"]
    for mode, metrics in results.items():
        assert metrics["recall@5"] == 1.0, mode  # four documents: every relevant one is in the top 5
        assert metrics["ndcg@10"] >= 0.8, mode
