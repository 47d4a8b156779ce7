"""The BM25 mirror (tantivy, in memory; :mod:`indexer.keywords`) against the
FTS5 table it mirrors: real SQLite files, real indexes on disk, the bundled
MiniLM model, no mocks.

- its rankings are FTS5's on a small corpus (same words found, same order);
- it catches up with writes made by another ``Index`` object (incrementally
  while the deletion log lasts, by comparing chunk ids once it was pruned);
- deleted chunks leave it;
- filters give what FTS5 gives, on each of their paths;
- after an ingesting process is SIGKILLed, a reader that had the mirror open
  and a freshly opened index both hold exactly the chunks SQLite holds.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

import ingest_worker
from test_index_crash import run_worker
from indexer import keywords, store
from indexer.index import Index
from indexer.ingest import BATCH_DOCS
from indexer.loaders import Document
from indexer.search import SearchFilter
from indexer.settings import IndexSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOCS = [
    Document("heart", "Hypertension raises the risk of heart attacks and strokes; the heart pumps harder.",
             "med/cardio/heart.txt", {"date": "2021-01-05"}),
    Document("kidney", "The kidneys filter waste from the blood. Chronic kidney disease follows diabetes and "
             "high blood pressure.", "med/renal/kidney.txt", {"date": "2022-03-01"}),
    Document("asthma", "Asthma narrows the airways; inhalers open them. Attacks are triggered by pollen and cold air.",
             "med/lung/asthma.txt", {"date": "2023-07-19"}),
    Document("cafe", "Au café, the naïve patient read his résumé while waiting for the cardiologist.",
             "misc/cafe.txt", {"date": "2020-11-30"}),
    Document("running", "Runners who run daily lower their blood pressure; running strengthens the heart.",
             "misc/sport/running.txt", {"date": "2024-02-14"}),
    Document("diabetes", "Diabetes raises blood sugar. Insulin lowers it; untreated diabetes damages kidneys, "
             "eyes and nerves.", "med/endo/diabetes.txt", {"date": "2019-05-05"}),
    Document("pollen", "Pollen counts peak in spring; hay fever and allergic asthma follow the pollen season.",
             "misc/pollen.txt", {"date": "2022-04-22"}),
]
# more chunks about blood pressure than ten times a small limit, each of another length (no ties):
# a filter that excludes them all sends the large-filter path to its FTS5 fallback
FILLERS = [Document(f"filler-{i}", f"Blood pressure log {i}: " + " ".join(
    ingest_worker.VOCABULARY[(7 * i + j) % len(ingest_worker.VOCABULARY)] for j in range(1 + i)) + ", blood pressure.",
    f"filler/{i}.txt", {}) for i in range(12)]
TAGS = {"heart": ["cardio"], "running": ["cardio", "sport"], "asthma": ["lung"], "pollen": ["lung"]}
QUERIES = [
    "What raises blood pressure?", "kidney disease and diabetes", "asthma attacks triggered by pollen",
    "cafe naive resume", "does running help the heart", "insulin", "heart attack risk", "airway inhaler",
]
FILTERS = [
    SearchFilter(sources=("med/*",)), SearchFilter(tags=("cardio",)), SearchFilter(tags=("lung", "sport")),
    SearchFilter(date_from="2021-06-01"), SearchFilter(date_to="2022-03-01", sources=("med/*", "misc/cafe.txt")),
    SearchFilter(doc_ids=("kidney", "diabetes")),
]


def ingest(index: Index, docs: list[Document]) -> None:
    for d in docs:
        index.ingest_documents([d], tags=TAGS.get(d.doc_id, []))


def ranking(index: Index, query: str, k: int = 5, filters: SearchFilter | None = None) -> list[str]:
    return [h.doc_id for h in index.search(query, k=k, mode="bm25", filters=filters)]


def stored_chunk_ids(index: Index) -> set[int]:
    with closing(sqlite3.connect(index.directory / "index.sqlite")) as conn:
        return {r[0] for r in conn.execute("SELECT chunk_id FROM chunks")}


def mirror_chunk_ids(index: Index) -> set[int]:
    mirror = index._mirrors.keywords
    assert mirror is not None, "no keyword mirror was built"
    return mirror.chunk_ids()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Index, Index]]:
    """One index searched two ways: by the tantivy mirror and by FTS5 (two objects, one directory)."""
    directory = tmp_path_factory.mktemp("keywords") / "index"
    mirror = Index.open(directory, IndexSettings(keyword_engine="tantivy"))
    ingest(mirror, DOCS)
    mirror.ingest_documents(FILLERS)
    fts5 = Index.open(directory, dataclasses.replace(mirror.settings, keyword_engine="fts5"))
    yield mirror, fts5
    fts5.close()
    mirror.close()


@pytest.mark.parametrize("query", QUERIES)
def test_ranking_is_fts5s(pair: tuple[Index, Index], query: str) -> None:
    mirror, fts5 = pair
    assert ranking(mirror, query) == ranking(fts5, query)
    assert mirror._mirrors.keywords is not None and fts5._mirrors.keywords is None  # each used its engine


def test_words_are_split_folded_and_stemmed_as_fts5_does(pair: tuple[Index, Index]) -> None:
    mirror, fts5 = pair
    for query, doc in [("CAFÉ", "cafe"), ("résumés", "cafe"), ("runs", "running"), ("kidney's", "kidney")]:
        assert ranking(mirror, query, k=1) == ranking(fts5, query, k=1) == [doc], query


def test_a_query_of_stopwords_only_still_searches_them(pair: tuple[Index, Index]) -> None:
    mirror, fts5 = pair
    assert ranking(mirror, "the") == ranking(fts5, "the") != []
    assert ranking(mirror, "?!") == ranking(fts5, "?!") == []


@pytest.mark.parametrize("filt", FILTERS, ids=str)
@pytest.mark.parametrize("query", QUERIES[:4])
def test_filters_give_what_fts5_gives(pair: tuple[Index, Index], filt: SearchFilter, query: str) -> None:
    mirror, fts5 = pair
    want = ranking(fts5, query, filters=filt)
    assert ranking(mirror, query, filters=filt) == want
    assert ranking(mirror, query, filters=filt, k=50) == ranking(fts5, query, filters=filt, k=50)


@pytest.mark.parametrize("limit", [1, 2, 50])
@pytest.mark.parametrize("filt", FILTERS, ids=str)
def test_large_filter_path_over_fetches_or_falls_back_exactly(pair: tuple[Index, Index], filt: SearchFilter,
                                                              limit: int) -> None:
    """``exact_filter_limit`` 0 sends every filter down the large-set path: ten times
    ``limit`` candidates filtered, or FTS5 when too few pass."""
    mirror, _ = pair
    conn = mirror._reader()
    query = "blood pressure heart asthma diabetes kidney pollen cafe"
    with store.read_snapshot(conn):
        got = keywords.bm25_ranking(conn, mirror._mirrors.keywords, query, limit, filt, exact_filter_limit=0)
        small = keywords.bm25_ranking(conn, mirror._mirrors.keywords, query, limit, filt, exact_filter_limit=10**6)
        want = store.bm25_ranking(conn, query, limit, filt)
    assert [c for c, _ in got] == [c for c, _ in small] == [c for c, _ in want]


def test_a_filter_no_candidate_passes_falls_back_to_fts5(pair: tuple[Index, Index]) -> None:
    mirror, _ = pair
    conn, only_diabetes = mirror._reader(), SearchFilter(doc_ids=("diabetes",))
    with store.read_snapshot(conn):
        top = keywords.bm25_ranking(conn, mirror._mirrors.keywords, "blood pressure", 10, SearchFilter(), 0)
        assert {h.doc_id.split("-")[0] for h in store.load_chunks(conn, [c for c, _ in top]).values()} == {"filler"}
        got = keywords.bm25_ranking(conn, mirror._mirrors.keywords, "blood pressure", 1, only_diabetes, 0)
        want = store.bm25_ranking(conn, "blood pressure", 1, only_diabetes)
    assert got == want and len(want) == 1  # FTS5's own answer, scores included


@pytest.fixture()
def two_objects(tmp_path: Path) -> Iterator[tuple[Index, Index]]:
    """``writer`` holds DOCS[:4]; ``reader`` (another object on the same directory) has built its mirror."""
    writer = Index.open(tmp_path / "index", IndexSettings())
    ingest(writer, DOCS[:4])
    reader = Index.open(tmp_path / "index")
    assert ranking(reader, "heart")  # builds the mirror
    yield writer, reader
    reader.close()
    writer.close()


def test_reader_catches_up_with_another_objects_writes_incrementally(two_objects: tuple[Index, Index]) -> None:
    writer, reader = two_objects
    built = reader._mirrors.keywords
    with writer.writer() as w:  # a delete without snapshots: the deletion log is kept
        assert w.delete("kidney")
    assert "kidney" not in ranking(reader, "kidney disease")
    assert mirror_chunk_ids(reader) == stored_chunk_ids(reader)
    assert reader._mirrors.keywords is built  # replayed, not rebuilt


def test_reader_catches_up_after_the_deletion_log_was_pruned(two_objects: tuple[Index, Index]) -> None:
    writer, reader = two_objects
    built = reader._mirrors.keywords
    assert writer.delete("kidney")  # saves snapshots: prunes the log the reader has not replayed
    ingest(writer, DOCS[4:])  # and a later ingest, replacing one document
    ingest(writer, [dataclasses.replace(DOCS[0], text="Heart rhythm: the pacemaker cells of the heart set the beat.")])
    assert ranking(reader, "pacemaker") == ["heart"]
    assert mirror_chunk_ids(reader) == stored_chunk_ids(reader)
    assert reader._mirrors.keywords is built
    fresh = Index.open(reader.directory, dataclasses.replace(reader.settings, keyword_engine="fts5"))
    try:
        for q in QUERIES:
            assert ranking(reader, q) == ranking(fresh, q), q
    finally:
        fresh.close()


def test_deleted_chunks_leave_the_mirror(tmp_path: Path) -> None:
    with Index.open(tmp_path / "index", IndexSettings()) as index:
        ingest(index, DOCS)
        assert ranking(index, "insulin") == ["diabetes"]
        before = mirror_chunk_ids(index)
        assert index.delete("diabetes")
        assert ranking(index, "insulin") == []
        after = mirror_chunk_ids(index)
        assert after == stored_chunk_ids(index) and after < before


def test_fts5_engine_never_builds_the_mirror(tmp_path: Path) -> None:
    with Index.open(tmp_path / "index", IndexSettings(keyword_engine="fts5")) as index:
        ingest(index, DOCS[:2])
        for mode in ("bm25", "hybrid"):
            assert index.search("kidneys", k=2, mode=mode)  # type: ignore[arg-type]
        assert index._mirrors.keywords is None


def test_kill_during_ingest_leaves_the_mirror_agreeing_with_sqlite(tmp_path: Path) -> None:
    """A reader with its mirror built watches a writer process that is SIGKILLed mid-ingest;
    then the reader, and an index opened afresh, hold exactly SQLite's chunks and rank as FTS5."""
    directory = tmp_path / "index"
    with Index.open(directory, ingest_worker.settings()) as first:
        ingest(first, DOCS[:1])
    reader = Index.open(directory)
    try:
        assert ranking(reader, "heart") == ["heart"]
        run = run_worker(directory, 4 * BATCH_DOCS, kill_after_acks=2 * BATCH_DOCS, log=tmp_path / "worker.log")
        assert run.killed and run.done is None, run.stderr[-2000:]
        queries = [f"Generated record {i:05d}" for i in (0, 5, len(run.acked) - 1, len(run.acked) + BATCH_DOCS + 1)]
        with Index.open(directory, dataclasses.replace(reader.settings, keyword_engine="fts5")) as fts5, \
                Index.open(directory) as fresh:
            for index in (reader, fresh):
                for q in queries:
                    assert ranking(index, q, k=10) == ranking(fts5, q, k=10), q
                assert mirror_chunk_ids(index) == stored_chunk_ids(index)
                assert index._mirrors.keywords is not None and index._mirrors.keywords.size == len(stored_chunk_ids(index))
    finally:
        reader.close()
