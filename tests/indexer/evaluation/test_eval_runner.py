"""The evaluation runner and ``indexer eval`` against FakeIndex, a bag-of-words
stand-in with the index's two methods, so the numbers are known exactly."""

from __future__ import annotations

import json
import re
import sys
import types
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from indexer.evaluation import cli
from indexer.evaluation.beir import BeirSet, CorpusDoc, write_beir
from indexer.evaluation.runner import corpus_documents, ranked_doc_ids, run_retrieval_eval
from indexer.loaders import Document


@dataclass(frozen=True)
class FakeHit:
    doc_id: str
    score: float


class FakeIndex:
    """Each document is cut into two chunks (the halves of its words). ``bm25``
    scores a chunk by the occurrences of query words, ``dense`` by the distinct
    query words present with ties going to the later chunk (so the two modes
    rank differently), ``hybrid`` by their sum."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, Counter[str]]] = []
        self.documents: list[Document] = []
        self.ingest_calls = 0
        self.searches: list[tuple[str, int, str]] = []

    @staticmethod
    def words(text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())

    def ingest_documents(self, docs: Iterable[Document]) -> object:
        self.ingest_calls += 1
        for doc in docs:
            self.documents.append(doc)
            words = self.words(doc.text)
            half = (len(words) + 1) // 2
            self.chunks += [(doc.doc_id, Counter(words[:half])), (doc.doc_id, Counter(words[half:]))]
        return None

    def search(self, query: str, *, k: int = 10, mode: str = "hybrid") -> list[FakeHit]:
        self.searches.append((query, k, mode))
        terms = set(self.words(query))
        scored = []
        for i, (doc_id, bag) in enumerate(self.chunks):
            bm25, dense = sum(bag[t] for t in terms), sum(1 for t in terms if bag[t])
            score = {"bm25": bm25, "dense": dense, "hybrid": bm25 + dense}[mode]
            scored.append((score, -i if mode == "dense" else i, doc_id))
        scored.sort(key=lambda s: (-s[0], s[1]))
        return [FakeHit(doc_id, float(score)) for score, _, doc_id in scored[:k] if score > 0]

    def close(self) -> None:
        pass


BEIR = BeirSet(
    corpus={
        "asthma": CorpusDoc("asthma", "Asthma", "a chronic disease of the airways causing wheeze and cough"),
        "kidney": CorpusDoc("kidney", "", "the kidneys filter waste from the blood and make urine every day"),
        "flu": CorpusDoc("flu", "Influenza", "influenza is treated with rest fluids and antiviral drugs"),
        "heart": CorpusDoc("heart", "", "heart failure means the heart cannot pump enough blood"),
    },
    queries={
        "q-asthma": "wheeze cough airways",  # only asthma matches: rank 1
        "q-kidney": "what filters the blood",  # kidney and heart both hold "the" and "blood"
        "q-none": "unrelated words entirely",  # nothing matches: all zeros
        "q-unjudged": "heart",  # no relevant document: not evaluated
    },
    qrels={"q-asthma": {"asthma": 1}, "q-kidney": {"kidney": 1}, "q-none": {"flu": 1}, "q-unjudged": {"heart": 0}},
)


def test_corpus_documents_prefix_titles() -> None:
    docs = {d.doc_id: d for d in corpus_documents(BEIR)}
    assert isinstance(docs["asthma"], Document)
    assert docs["asthma"].text == "Asthma\n\na chronic disease of the airways causing wheeze and cough"
    assert docs["kidney"].text == BEIR.corpus["kidney"].text
    assert docs["flu"].source == "beir:flu"
    assert docs["flu"].metadata["beir_id"] == "flu" and docs["flu"].metadata["title"] == "Influenza"


def test_ranked_doc_ids_keep_each_documents_best_rank() -> None:
    hits = [FakeHit("b", 3), FakeHit("a", 2), FakeHit("b", 1), FakeHit("c", 0.5), FakeHit("a", 0.1)]
    assert ranked_doc_ids(hits) == ["b", "a", "c"]


def test_runner_scores_each_mode() -> None:
    index = FakeIndex()
    results = run_retrieval_eval(BEIR, index, k=7)
    assert index.ingest_calls == 1 and len(index.documents) == 4
    assert list(results) == ["dense", "bm25", "hybrid"]
    # three judged queries, unjudged one never searched
    assert {q for q, _, _ in index.searches} == {BEIR.queries[q] for q in ("q-asthma", "q-kidney", "q-none")}
    assert {(k, mode) for _, k, mode in index.searches} == {(7, m) for m in ("dense", "bm25", "hybrid")}
    # q-asthma finds asthma first in every mode, q-none finds nothing. q-kidney
    # ("what filters the blood"): bm25 puts kidney's first half ("the ... the") first
    bm25 = results["bm25"]
    assert bm25["recall@1"] == pytest.approx(2 / 3)
    assert bm25["recall@100"] == pytest.approx(2 / 3)
    assert bm25["ndcg@10"] == pytest.approx(2 / 3) and bm25["mrr@10"] == pytest.approx(2 / 3)
    # dense: one distinct word in each of five chunks; the latest, heart's "blood" half, wins: kidney is second
    dense = results["dense"]
    assert dense["recall@1"] == pytest.approx(1 / 3) and dense["recall@5"] == pytest.approx(2 / 3)
    assert dense["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert dense["ndcg@10"] == pytest.approx((1 + 1 / 1.5849625007211562 + 0) / 3)
    assert results["hybrid"] == bm25


def test_runner_limit_and_modes() -> None:
    index = FakeIndex()
    results = run_retrieval_eval(BEIR, index, modes=("bm25",), limit_queries=1)
    assert list(results) == ["bm25"]
    assert [q for q, _, _ in index.searches] == [BEIR.queries["q-asthma"]]
    assert results["bm25"]["ndcg@10"] == 1.0 and results["bm25"]["recall@1"] == 1.0
    assert len(index.documents) == 4  # the whole corpus is still ingested


@pytest.mark.parametrize("kwargs, message", [({"modes": ()}, "no search modes"), ({"k": 0}, "k must be")])
def test_runner_rejects_bad_arguments(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        run_retrieval_eval(BEIR, FakeIndex(), **kwargs)


def test_runner_needs_judged_queries() -> None:
    unjudged = BeirSet(BEIR.corpus, {"q": "heart"}, {"q": {"heart": 0}})
    with pytest.raises(ValueError, match="no query with a relevant document"):
        run_retrieval_eval(unjudged, FakeIndex())


@pytest.fixture
def fake_index_module(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, object]]:
    """``indexer.index`` replaced by a module whose ``Index.open`` makes a FakeIndex."""
    opened: list[tuple[object, object]] = []

    class Index:
        @staticmethod
        def open(path: object, settings: object = None) -> FakeIndex:
            opened.append((path, settings))
            return FakeIndex()

    monkeypatch.setitem(sys.modules, "indexer.index", types.SimpleNamespace(Index=Index))
    return opened


def test_eval_command_table(tmp_path: Path, fake_index_module, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_beir(BEIR, tmp_path / "set")
    argv = ["eval", "--corpus", *map(str, paths[:1]), "--queries", str(paths[1]), "--qrels", str(paths[2]), "-q"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"eval {paths[0]}: 3 queries, 4 corpus docs")
    assert out[1].split() == ["mode", "nDCG@10", "R@1", "R@5", "R@10", "R@100", "MRR@10"]
    assert out[3].split() == ["bm25", "0.6667", "0.6667", "0.6667", "0.6667", "0.6667", "0.6667"]
    [(path, settings)] = fake_index_module
    assert getattr(settings, "near_duplicates") == "keep"  # a fresh temporary index keeps near copies
    assert not Path(str(path)).parent.exists()  # and is removed afterwards


def test_eval_command_json_with_index_dir(tmp_path: Path, fake_index_module, capsys: pytest.CaptureFixture[str]) -> None:
    paths = write_beir(BEIR, tmp_path / "set")
    argv = ["eval", "--corpus", str(paths[0]), "--queries", str(paths[1]), "--qrels", str(paths[2]),
            "--index", str(tmp_path / "idx"), "--modes", "bm25", "dense", "--limit", "2", "--json"]
    assert cli.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["queries"] == 2 and report["corpus"] == 4 and report["k"] == 100
    assert list(report["results"]) == ["bm25", "dense"]
    assert report["results"]["bm25"]["recall@1"] == 1.0
    assert fake_index_module == [(tmp_path / "idx", None)]


@pytest.mark.parametrize("argv, message", [
    (["eval"], "give --set NAME, or all three"),
    (["eval", "--set", "tatqa", "--corpus", "c.jsonl"], "not both"),
    (["eval", "--corpus", "c.jsonl", "--queries", "q.jsonl", "--qrels", "absent.tsv"], "No such file"),
])
def test_eval_command_errors(argv, message, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             fake_index_module, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err
    assert fake_index_module == []


def test_runner_warns_when_the_index_drops_documents(caplog: pytest.LogCaptureFixture) -> None:
    class DroppingIndex(FakeIndex):
        def ingest_documents(self, docs: Iterable[Document]) -> object:
            super().ingest_documents(docs)
            return types.SimpleNamespace(skipped=[("beir:heart", "near duplicate of beir:kidney")])

    with caplog.at_level("WARNING", logger="indexer.evaluation.runner"):
        run_retrieval_eval(BEIR, DroppingIndex(), modes=("bm25",))
    assert "1 corpus documents were not stored" in caplog.text and "beir:heart" in caplog.text
