"""Retrieval sets built from the shared data (skipped where the data is absent),
plus the data-free pieces: answer spans, TAT-QA rendering, missing-data errors."""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path

import pytest

from indexer import native
from indexer.evaluation import builders
from indexer.evaluation.beir import BeirSet, read_beir
from indexer.evaluation.builders import BUILDERS, answer_span, render_tatqa_context
from indexer.shared_data import ENV_DATA_DIR, data_dir


def needs(*parts: str):
    path = data_dir().joinpath(*parts)
    return pytest.mark.skipif(not path.is_file(), reason=f"shared data absent: {path} (set {ENV_DATA_DIR})")


def check_consistent(beir: BeirSet) -> None:
    assert beir.queries and beir.corpus
    assert set(beir.qrels) == set(beir.queries)
    for query_id, judged in beir.qrels.items():
        assert judged, query_id
        assert all(doc_id in beir.corpus and grade == 1 for doc_id, grade in judged.items()), query_id
    assert all(q.strip() for q in beir.queries.values())
    assert all(d.text.strip() for d in beir.corpus.values())


def covidqa_raw() -> list[dict]:
    data = json.loads((data_dir() / "covidqa" / "covidqa_dev.json").read_text(encoding="utf-8"))
    return [p for article in data["data"] for p in article["paragraphs"]]


@needs("covidqa", "covidqa_dev.json")
def test_covidqa_relevant_passages_hold_the_answer() -> None:
    beir = builders.covidqa()
    check_consistent(beir)
    assert len(beir.queries) >= 1000
    assert all(re.fullmatch(r"covid-\d+-\d+", doc_id) for doc_id in beir.corpus)
    answers = {f"covidqa-{q['id']}": q["answers"][0]["text"].strip() for p in covidqa_raw() for q in p["qas"]}
    straddling = 0
    for query_id in random.Random(0).sample(sorted(beir.qrels), 300):
        passages = [beir.corpus[d].text for d in sorted(beir.qrels[query_id], key=lambda d: int(d.rsplit("-", 1)[1]))]
        answer = answers[query_id]
        if len(passages) == 1:
            assert answer in passages[0], query_id
        else:  # the answer runs from the end of one passage into the next
            straddling += 1
            assert len(passages) == 2
            words = answer.split()
            assert words[0] in passages[0] and words[-1] in passages[1], query_id
    assert straddling < 30


@needs("covidqa", "covidqa_dev.json")
def test_covidqa_passages_are_the_native_chunks() -> None:
    paragraph = covidqa_raw()[0]
    beir = builders.covidqa(max_tokens=100, overlap=20)
    spans = native.chunk([paragraph["context"]], max_tokens=100, overlap=20)[0]
    for k, (start, end) in enumerate(spans):
        assert beir.corpus[f"covid-{paragraph['document_id']}-{k}"].text == paragraph["context"][start:end]
    assert len(beir.corpus) > len(builders.covidqa().corpus)  # smaller passages, more of them


@needs("pubmedqa", "pqal_dev.jsonl.gz")
def test_pubmedqa_question_to_its_own_abstract() -> None:
    beir = builders.pubmedqa()
    check_consistent(beir)
    assert len(beir.queries) == len(beir.corpus) == 500
    with gzip.open(data_dir() / "pubmedqa" / "pqal_dev.jsonl.gz", "rt", encoding="utf-8") as f:
        item = json.loads(f.readline())
    assert beir.queries[item["id"]] == item["question"]
    assert beir.qrels[item["id"]] == {f"pubmed-{item['id']}": 1}
    assert beir.corpus[f"pubmed-{item['id']}"].text == " ".join(item["contexts"])
    assert beir.corpus[f"pubmed-{item['id']}"].title == ""


@needs("tatqa", "tatqa_dev.json")
def test_tatqa_question_to_its_context() -> None:
    beir = builders.tatqa()
    check_consistent(beir)
    assert len(beir.corpus) == 278 and len(beir.queries) >= 1600
    item = json.loads((data_dir() / "tatqa" / "tatqa_dev.json").read_text(encoding="utf-8"))[0]
    doc = beir.corpus[f"tatqa-{item['table']['uid']}"]
    assert all(p["text"].strip() in doc.text for p in item["paragraphs"])
    assert beir.qrels[item["questions"][0]["uid"]] == {doc.id: 1}


@needs("medquad", "medquad.jsonl.gz")
def test_medquad_dedupes_identical_answers() -> None:
    beir = builders.medquad()
    check_consistent(beir)
    assert len(beir.queries) >= 16000
    texts = [d.text for d in beir.corpus.values()]
    assert len(set(texts)) == len(texts) < len(beir.queries)  # ~15.8k distinct answers for ~16.4k questions
    small = builders.medquad(limit=500)
    check_consistent(small)
    assert len(small.queries) == 500 and len(small.corpus) <= 500
    with pytest.raises(ValueError, match="positive"):
        builders.medquad(limit=0)


@needs("pubmedqa", "pqal_dev.jsonl.gz")
def test_builder_command_writes_readable_beir_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert builders.main(["pubmedqa", str(tmp_path), "--limit", "20"]) == 0
    assert "20 queries, 500 corpus docs" in capsys.readouterr().out
    beir = read_beir(tmp_path / "corpus.jsonl", tmp_path / "queries.jsonl", tmp_path / "qrels" / "test.tsv")
    assert len(beir.queries) == 20 and len(beir.corpus) == 500


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_missing_data_says_where_to_point(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=ENV_DATA_DIR) as info:
        BUILDERS[name]()
    assert str(tmp_path) in str(info.value)


def test_builder_command_reports_missing_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path / "nowhere"))
    assert builders.main(["tatqa", str(tmp_path / "out")]) == 2
    assert "not found" in capsys.readouterr().err


def test_answer_span_repairs_small_offsets_and_trims_whitespace() -> None:
    context = "Intro. The virus is 31 kb long. End."
    start = context.index("31 kb")
    assert answer_span(context, "31 kb", start) == (start, start + 5)
    assert answer_span(context, "31 kb", start + 1) == (start, start + 5)  # off by one, as in COVID-QA
    assert answer_span(context, " 31 kb ", start - 1) == (start, start + 5)
    assert answer_span(context, "absent", 3) == (3, 9)  # unmatched: taken as given


def test_render_tatqa_context() -> None:
    item = {
        "table": {"uid": "t", "table": [["", "2019", "2018"], ["", "", ""], ["Sales ", "$ 1.5", "1.2"]]},
        "paragraphs": [{"order": 2, "text": "Second."}, {"order": 1, "text": " First. "}],
    }
    assert render_tatqa_context(item) == "| 2019 | 2018\nSales | $ 1.5 | 1.2\n\nFirst.\n\nSecond."
