"""Chunk titles (``IndexSettings.chunk_titles``) and record titles (``title_field``)
end to end: the same small JSONL corpus ingested into two real indexes on disk,
one with titles and one without, searched with the bundled MiniLM model.

The corpus copies the shape of the MedQuAD case that asked for the setting:
the answer that holds the treatment never names the condition (an invented one,
"glimmerfold syndrome", so no model has seen it), while the overview and the
symptoms answers name it in their text.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from indexer.chunk_titles import document_title, text_to_index
from indexer.index import Index, IndexMismatchError
from indexer.loaders import Document, load_paths
from indexer.settings import IndexSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TREATMENT = ("Injections into the eye every four to eight weeks slow the leaking of fluid from new blood vessels "
             "under the retina. Laser sealing of those vessels is used less often now. Low-vision aids, bright "
             "lamps and magnifiers help with reading while the injections work.")
RECORDS = [
    {"id": "gf-overview", "heading": "What is glimmerfold syndrome?",
     "text": "Glimmerfold syndrome is a rare inherited condition in which the centre of the retina slowly thins. "
             "Glimmerfold syndrome usually begins after the age of fifty."},
    {"id": "gf-symptoms", "heading": "What are the symptoms of glimmerfold syndrome?",
     "text": "People with glimmerfold syndrome see straight lines as wavy and notice a blurred spot in the middle "
             "of their vision; colours fade as glimmerfold syndrome progresses."},
    {"id": "gf-treatment", "heading": "How is glimmerfold syndrome treated?", "text": TREATMENT},
    {"id": "kelp", "heading": "Where do kelp forests grow?",
     "text": "Kelp forests sway in cold coastal water, and sea otters wrap themselves in the fronds to sleep."},
    {"id": "untitled", "title": "A record's own title",
     "text": "The lighthouse keeper trimmed the wick of the lamp every evening before the storm."},
]


def titled_settings(on: bool) -> IndexSettings:
    return IndexSettings(chunk_titles=on)


@dataclass
class Pair:
    on: Index
    off: Index
    corpus: Path


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    base = tmp_path_factory.mktemp("titles")
    corpus = base / "answers.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    with Index.open(base / "on", titled_settings(True)) as on, Index.open(base / "off", titled_settings(False)) as off:
        for index in (on, off):
            report = index.ingest([corpus], title_field="heading")
            assert (report.added, report.skipped) == (len(RECORDS), [])
        yield Pair(on, off, corpus)


def ids(hits: list) -> list[str]:
    return [h.doc_id for h in hits]


def fts_rows(index: Index, doc_id: str) -> list[str]:
    with closing(sqlite3.connect(f"file:{index.directory / 'index.sqlite'}?mode=ro", uri=True)) as conn:
        return [r[0] for r in conn.execute(
            "SELECT f.text FROM chunks_fts f JOIN chunks c ON c.chunk_id = f.rowid WHERE c.doc_id = ? ORDER BY c.ord",
            (doc_id,))]


# ---- the setting ---------------------------------------------------------------------------


def test_setting_persists_and_a_mismatching_reopen_fails(pair: Pair) -> None:
    with Index.open(pair.on.directory) as again:
        assert again.settings.chunk_titles is True and again.stats()["chunk_titles"] is True
    with pytest.raises(IndexMismatchError, match="built with chunk titles on"):
        Index.open(pair.on.directory, titled_settings(False))
    with pytest.raises(IndexMismatchError, match="built without chunk titles.*new index folder"):
        Index.open(pair.off.directory, titled_settings(True))
    assert pair.off.stats()["chunk_titles"] is False


def test_index_made_before_the_setting_reads_as_off(pair: Pair, tmp_path: Path) -> None:
    copy = tmp_path / "older"
    shutil.copytree(pair.off.directory, copy)
    with closing(sqlite3.connect(copy / "index.sqlite")) as conn, conn:
        conn.execute("DELETE FROM meta WHERE key = 'chunk_titles'")
    with Index.open(copy) as older:
        assert older.settings.chunk_titles is False
    Index.open(copy, titled_settings(False)).close()
    with pytest.raises(IndexMismatchError, match="without chunk titles"):
        Index.open(copy, titled_settings(True))


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("0", False), ("", False)])
def test_setting_from_env(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("INDEXER_CHUNK_TITLES", value)
    assert IndexSettings.from_env().chunk_titles is expected


def test_setting_from_env_refuses_other_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INDEXER_CHUNK_TITLES", "maybe")
    with pytest.raises(ValueError, match="INDEXER_CHUNK_TITLES must be 1 or 0"):
        IndexSettings.from_env()


# ---- what is indexed and what a hit returns ----------------------------------------------


def test_text_to_index() -> None:
    assert text_to_index("Title", "chunk") == "Title\n\nchunk"
    assert text_to_index(None, "chunk") == text_to_index("", "chunk") == "chunk"
    assert document_title({"title": "  two\n lines "}) == "two lines"
    assert document_title({"title": 1999}) == "1999"
    assert document_title({}) is document_title({"title": True}) is document_title({"title": " "}) is None


def test_keyword_rows_carry_the_title_only_when_on(pair: Pair) -> None:
    assert fts_rows(pair.on, "gf-treatment") == ["How is glimmerfold syndrome treated?\n\n" + TREATMENT]
    assert fts_rows(pair.off, "gf-treatment") == [TREATMENT]
    assert fts_rows(pair.on, "untitled") == ["A record's own title\n\n" + RECORDS[4]["text"]]


def test_title_finds_a_chunk_that_never_names_it(pair: Pair) -> None:
    assert "glimmerfold" not in TREATMENT.lower()
    assert "gf-treatment" in ids(pair.on.search("glimmerfold", k=5, mode="bm25"))
    assert "gf-treatment" not in ids(pair.off.search("glimmerfold", k=5, mode="bm25"))
    question = "How is glimmerfold syndrome treated?"
    assert ids(pair.on.search(question, k=3))[0] == "gf-treatment"
    assert ids(pair.off.search(question, k=3))[0] != "gf-treatment"


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_hits_hold_the_chunk_alone(pair: Pair, mode: str) -> None:
    hits = pair.on.search("glimmerfold syndrome treatment injections", k=5, mode=mode)
    assert "gf-treatment" in ids(hits)
    for hit in hits:
        record = next(r for r in RECORDS if r["id"] == hit.doc_id)
        assert (hit.start, hit.end, hit.text) == (0, len(record["text"]), record["text"])
        assert not hit.text.startswith(str(record.get("heading", record.get("title"))))


# ---- titles of records ---------------------------------------------------------------------


def test_title_field_and_its_fallback(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"id": "q", "question": "  What is\nit? ", "text": "an answer", "title": "own"}) + "\n"
        + json.dumps({"id": "own", "text": "no question", "title": "its own title"}) + "\n"
        + json.dumps({"id": "none", "text": "no title at all", "question": ["not", "text"]}) + "\n"
        + json.dumps({"id": "num", "text": "a numbered record", "question": 42}) + "\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text("id,question,text\nc1,Why so?,a csv answer\nc2,,an empty question\n",
                                    encoding="utf-8")
    docs = {d.doc_id: d for d in load_paths([tmp_path], title_field="question") if isinstance(d, Document)}
    titles = {doc_id: d.metadata.get("title") for doc_id, d in docs.items()}
    assert titles == {"q": "What is it?", "own": "its own title", "none": None, "num": "42",
                      "c1": "Why so?", "c2": None}
    assert docs["q"].metadata["question"] == "  What is\nit? "  # the field itself stays as it was
    without = {d.doc_id: d.metadata.get("title") for d in load_paths([tmp_path]) if isinstance(d, Document)}
    assert without["q"] == "own" and without["c1"] is None
    with pytest.raises(TypeError, match="title_field"):
        load_paths([tmp_path], title_field="")


# ---- the command line ----------------------------------------------------------------------


def ingest_cli(venv_bin: Path, env: dict[str, str], *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv_bin / "indexer"), "ingest", *map(str, args), "-q", "--json"],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli_creates_a_titled_index_and_refuses_an_untitled_one(pair: Pair, venv_bin: Path, cli_env: dict[str, str],
                                                                tmp_path: Path) -> None:
    made = ingest_cli(venv_bin, cli_env, pair.corpus, "--index", tmp_path / "new", "--chunk-titles",
                      "--title-field", "heading")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["index"]["chunk_titles"] is True
    with Index.open(tmp_path / "new") as made_index:
        assert fts_rows(made_index, "gf-treatment") == fts_rows(pair.on, "gf-treatment")
    refused = ingest_cli(venv_bin, cli_env, pair.corpus, "--index", pair.off.directory, "--chunk-titles")
    assert refused.returncode == 2
    assert "built without chunk titles" in refused.stderr and "new index folder" in refused.stderr
