"""The persistent hybrid index end to end: real files ingested into a real
SQLite store and FAISS index in a temporary folder, searched with the bundled
MiniLM model. No mocks.

Two indexes per module keep the model loads few: ``built`` (a small corpus,
ingested once, then closed and reopened; read by most tests) and ``live``
(empty at first; every test that changes things adds its own documents there,
so the tests don't depend on each other's order).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from indexer import native
from indexer.index import Hit, Index, IndexMismatchError, IngestReport
from indexer.loaders import Document
from indexer.search import SearchFilter
from indexer.settings import BUNDLED_MODEL, IndexSettings

REPO = Path(__file__).resolve().parents[2]
MODES = ("hybrid", "dense", "bm25")

AURORA = (
    "The aurora  borealis, or northern lights, glows green over Tromsø when charged particles\t"
    "from the solar wind strike oxygen atoms high in the atmosphere.\n\n\n"
    "Visitors wait in a café beside the fjord — naïve hopes, 😀 long cold nights, and a résumé of sightings."
)
VOLCANO = (
    "---\ntitle: Volcanoes\ntags: [geo, fire]\n---\n"
    "# Volcanoes\n\nMagma rises through the crust and erupts as lava. Basalt flows from shield volcanoes "
    "such as Mauna Loa build gentle slopes, while explosive eruptions throw ash and pumice into the sky.\n"
)
BEES = ("Honeybees perform a waggle dance inside the hive to tell their sisters where the flowers are; "
        "the angle of the dance points to the pollen and nectar relative to the sun.")
GLACIERS = ("A glacier advances and retreats over centuries; calving icebergs break from its snout "
            "and moraines of rock mark where the ice once stood.")
KELP = ("Kelp forests sway in cold coastal water, and sea otters wrap themselves in the fronds "
        "to sleep while they float on their backs.")
ORIGAMI = "Origami folds a single square of paper into cranes, frogs and boxes without scissors or glue."
TIDES = "Ocean tides rise and fall twice a day because the gravity of the moon pulls on the sea."
RECORDS = [
    {"id": "rec-chess", "date": "2021-03-01", "text": "The Sicilian Defence is a chess opening in which Black answers 1.e4 with c5."},
    {"id": "rec-bread", "date": "2022-06-15", "text": "A sourdough starter ferments flour and water with wild yeast before the bread is baked."},
    {"id": "rec-lighthouse", "date": "2023-01-10", "text": "The lighthouse keeper trimmed the wick of the lamp every evening before the storm."},
    {"id": "rec-cable", "date": "2024-09-30", "text": "Submarine telegraph cables were laid across the Atlantic seabed by steamships."},
]

PLACES = ["the dry riverbed", "a cedar forest", "the limestone ridge", "an abandoned orchard", "the mangrove swamp",
          "a quiet village", "the salt flats", "a bamboo thicket"]
PREY = ["a wood rat", "two lizards", "a sleeping heron", "a small armadillo", "a field mouse", "a fat beetle"]


def long_text() -> str:
    sentences = [
        f"On day {d} of the migration the ocelot crossed {PLACES[d % len(PLACES)]} at dusk "
        f"and hunted {PREY[d % len(PREY)]} before resting in the shade."
        for d in range(1, 19)
    ]
    sentences.append("At the end of the journey the ocelot slept beside the saltmarsh lagoon of the Camargue.")
    return " ".join(sentences)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass
class Built:
    directory: Path
    corpus: Path
    extra: Path
    reports: tuple[IngestReport, IngestReport]
    before_close: dict[str, object]
    """Stats and search results of the index object that built it, before it was closed."""
    index: Index
    """The same index, reopened after that object was closed."""

    def path(self, name: str) -> str:
        """A corpus file's document id (and source): its path relative to the folder ingested."""
        return name


QUERIES = {
    "northern lights aurora over Tromsø": "notes/aurora.txt",
    "magma basalt lava eruption of volcanoes": "notes/volcano.md",
    "honeybees waggle dance pollen": "sub_a/bees.txt",
    "sourdough starter bread yeast": "rec-bread",
    "lighthouse keeper lamp storm": "rec-lighthouse",
}


def expected_id(built: Built, key: str) -> str:
    return key if key.startswith("rec-") else built.path(key)


def write_corpus(root: Path) -> None:
    files = {
        "notes/aurora.txt": AURORA, "notes/volcano.md": VOLCANO, "notes/long.txt": long_text(),
        "sub_a/bees.txt": BEES, "subXa/glaciers.txt": GLACIERS, "SUB_A/kelp.txt": KELP,
        "records.jsonl": "\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS) + "\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


CORPUS_DOCS = 10  # 6 files + 4 JSONL records


SNAPSHOT_QUERIES = [*list(QUERIES)[:3], "ocelot saltmarsh Camargue"]


def snapshot_results(index: Index) -> dict[str, object]:
    results = {f"{mode}:{q}": [(h.doc_id, h.chunk_id, h.start, h.end) for h in index.search(q, k=5, mode=mode)]
               for q in SNAPSHOT_QUERIES for mode in MODES}
    stats = index.stats()
    return {"results": results, "stats": {k: stats[k] for k in ("documents", "chunks", "generation", "vectors")}}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    base = tmp_path_factory.mktemp("built")
    corpus, extra, directory = base / "corpus", base / "extra", base / "index"
    write_corpus(corpus)
    extra.mkdir()
    (extra / "origami.txt").write_text(ORIGAMI, encoding="utf-8")
    (extra / "tides.md").write_text(TIDES, encoding="utf-8")
    with Index.open(directory, IndexSettings()) as first:
        reports = (first.ingest([corpus], tags=["a"]), first.ingest([extra], tags=["b"]))
        before = snapshot_results(first)
    index = Index.open(directory)
    yield Built(directory, corpus, extra, reports, before, index)
    index.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    with Index.open(tmp_path_factory.mktemp("live") / "index", IndexSettings()) as index:
        yield index


def stored_texts(directory: Path) -> dict[str, str]:
    with closing(sqlite3.connect(f"file:{directory / 'index.sqlite'}?mode=ro", uri=True)) as conn:
        return dict(conn.execute("SELECT doc_id, text FROM documents").fetchall())


def chunk_rows(directory: Path, doc_id: str) -> list[tuple[int, int, int]]:
    with closing(sqlite3.connect(f"file:{directory / 'index.sqlite'}?mode=ro", uri=True)) as conn:
        return conn.execute('SELECT ord, start, "end" FROM chunks WHERE doc_id = ? ORDER BY ord', (doc_id,)).fetchall()


def ids(hits: list[Hit]) -> list[str]:
    return [h.doc_id for h in hits]


def everything(index: Index, filt: SearchFilter) -> set[str]:
    """Documents passing ``filt``: a dense search over a small filtered set
    scores every chunk in it exactly, so with a large k it returns them all."""
    return set(ids(index.search("anything at all", k=100, mode="dense", filters=filt)))


def random_words(seed: int, n: int) -> list[str]:
    import random

    rng = random.Random(seed)
    vocab = ["amber", "basalt", "cobalt", "dune", "ember", "fjord", "garnet", "harbor", "indigo", "juniper",
             "kestrel", "lantern", "meadow", "nectar", "orchid", "pebble", "quartz", "raven", "saffron", "thistle",
             "umber", "violet", "willow", "yarrow", "zephyr", "acorn", "bramble", "cinder", "delta", "estuary"]
    return [f"{rng.choice(vocab)}{rng.randrange(100)}" for _ in range(n)]


# ---- ingesting a folder ----------------------------------------------------------------


def test_ingest_reports_counts(built: Built) -> None:
    corpus, extra = built.reports
    assert (corpus.added, corpus.updated, corpus.unchanged) == (CORPUS_DOCS, 0, 0)
    assert (corpus.exact_duplicates, corpus.near_duplicates, corpus.skipped) == (0, 0, [])
    assert corpus.chunks > corpus.added  # the long document has several chunks
    assert (extra.added, extra.chunks, extra.skipped) == (2, 2, [])
    assert corpus.seconds > 0 and corpus.chunks_per_s > 0
    stats = built.index.stats()
    assert stats["documents"] == CORPUS_DOCS + 2
    assert stats["chunks"] == corpus.chunks + extra.chunks
    assert stats["vectors"] == stats["chunks"]
    assert stats["embedding_model"] == BUNDLED_MODEL and stats["dimension"] == 384
    assert (stats["chunk_tokens"], stats["chunk_overlap"], stats["vector_index"]) == (200, 32, "flat")


def test_documents_are_stored_with_ids_sources_metadata_and_tags(built: Built) -> None:
    texts = stored_texts(built.directory)
    expected = {built.path(n) for n in ("notes/aurora.txt", "notes/volcano.md", "notes/long.txt", "sub_a/bees.txt",
                                        "subXa/glaciers.txt", "SUB_A/kelp.txt")}
    expected |= {r["id"] for r in RECORDS} | {"origami.txt", "tides.md"}
    assert set(texts) == expected
    # the stored text is the normalized text (front matter split off)
    assert texts[built.path("notes/aurora.txt")] == native.normalize([AURORA])[0]
    assert "Tromsø" in texts[built.path("notes/aurora.txt")] and "😀" in texts[built.path("notes/aurora.txt")]
    assert "title:" not in texts[built.path("notes/volcano.md")]

    [hit] = built.index.search("chess opening", k=1, mode="bm25")
    assert hit.doc_id == "rec-chess" and hit.source == built.path("records.jsonl") + "#1"
    assert hit.metadata["date"] == "2021-03-01" and hit.metadata["format"] == "jsonl"
    assert hit.tags == ["a"]
    [hit] = built.index.search("basalt", k=1, mode="bm25")
    assert hit.doc_id == built.path("notes/volcano.md") and hit.metadata["title"] == "Volcanoes"
    assert hit.tags == ["a", "fire", "geo"]  # front-matter tags and the ingest's tags
    [hit] = built.index.search("origami", k=1, mode="bm25")
    assert hit.tags == ["b"]
    # no server path in what a search returns; the folders ingested are recorded instead
    assert str(built.corpus.parent) not in repr(built.index.search("the", k=50, mode="bm25"))
    assert built.index.stats()["document_roots"] == sorted(os.path.realpath(p) for p in (built.corpus, built.extra))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("query", list(QUERIES))
def test_distinctive_query_finds_its_document_first(built: Built, query: str, mode: str) -> None:
    hits = built.index.search(query, k=5, mode=mode)  # type: ignore[arg-type]
    assert hits, (query, mode)
    assert hits[0].doc_id == expected_id(built, QUERIES[query]), [(h.doc_id, h.score) for h in hits]
    assert len(hits) <= 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len({h.chunk_id for h in hits}) == len(hits)
    if mode == "dense":
        assert all(h.dense_score is not None and h.score == pytest.approx(h.dense_score) for h in hits)
    if mode == "bm25":
        assert all(h.bm25_score is not None and h.score == pytest.approx(h.bm25_score) for h in hits)
    if mode == "hybrid":  # the top document is ranked by both
        assert hits[0].dense_score is not None and hits[0].bm25_score is not None


@pytest.mark.parametrize("mode", MODES)
def test_hit_text_is_the_stored_text_at_its_offsets(built: Built, mode: str) -> None:
    texts = stored_texts(built.directory)
    seen = 0
    # each query names words of several documents, so every mode returns many hits
    spread = ["aurora magma honeybees sourdough lighthouse", "lava pollen yeast lamp storm Tromsø"]
    for query in [*QUERIES, *spread, "ocelot saltmarsh Camargue", "café 😀 résumé"]:
        for hit in built.index.search(query, k=10, mode=mode):  # type: ignore[arg-type]
            text = texts[hit.doc_id]
            assert 0 <= hit.start < hit.end <= len(text)
            assert hit.text == text[hit.start : hit.end]
            seen += 1
    assert seen >= 10
    # non-ASCII before and inside the span: offsets count characters, not bytes
    aurora = built.index.search("café 😀 résumé", k=1, mode="bm25")[0]
    assert aurora.doc_id == built.path("notes/aurora.txt")
    assert aurora.text == native.normalize([AURORA])[0][aurora.start : aurora.end]
    assert aurora.text.endswith("résumé of sightings.")


def test_long_document_is_split_into_chunks_covering_it(built: Built) -> None:
    doc = built.path("notes/long.txt")
    text = stored_texts(built.directory)[doc]
    rows = chunk_rows(built.directory, doc)
    assert len(rows) >= 2
    assert [o for o, _, _ in rows] == list(range(len(rows)))
    spans = [(s, e) for _, s, e in rows]
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
        assert s1 < s2 and e1 < e2
        assert s2 <= e1 or not text[e1:s2].strip()  # overlapping, or only whitespace between
    # every chunk is searchable and comes back with its own offsets
    hits = built.index.search("ocelot", k=50, mode="dense", filters=SearchFilter(doc_ids=(doc,)))
    assert sorted((h.start, h.end) for h in hits) == spans
    # a sentence at the very end is found in the last chunk
    hit = built.index.search("saltmarsh lagoon of the Camargue", k=1, mode="hybrid")[0]
    assert hit.doc_id == doc and "Camargue" in hit.text and hit.start > 0 and hit.end == len(text)


def test_reopened_index_gives_the_same_documents_and_results(built: Built) -> None:
    assert snapshot_results(built.index) == built.before_close


def test_fresh_process_sees_the_same_index(built: Built) -> None:
    code = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(REPO)!r})
        from indexer.index import Index
        with Index.open({str(built.directory)!r}, create=False) as index:
            out = {{"stats": index.stats(), "hits": {{}}}}
            for mode in {MODES!r}:
                for q in {SNAPSHOT_QUERIES!r}:
                    out["hits"][mode + ":" + q] = [
                        [h.doc_id, h.chunk_id, h.start, h.end, h.text, h.score] for h in index.search(q, k=5, mode=mode)]
        print("RESULT " + json.dumps(out))
    """)
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    out = json.loads(line.removeprefix("RESULT "))
    mine = built.index.stats()
    for key in ("documents", "chunks", "generation", "vectors", "embedding_model", "chunk_tokens"):
        assert out["stats"][key] == mine[key], key
    for mode in MODES:
        for q in SNAPSHOT_QUERIES:
            here = built.index.search(q, k=5, mode=mode)  # type: ignore[arg-type]
            there = out["hits"][f"{mode}:{q}"]
            assert [t[:5] for t in there] == [[h.doc_id, h.chunk_id, h.start, h.end, h.text] for h in here]
            assert [t[5] for t in there] == pytest.approx([h.score for h in here], rel=1e-4, abs=1e-6)


def test_reingesting_unchanged_files_is_a_no_op(built: Built) -> None:
    before = built.index.stats()
    report = built.index.ingest([built.corpus], tags=["a"])
    assert (report.added, report.updated, report.unchanged, report.chunks) == (0, 0, CORPUS_DOCS, 0)
    assert (report.exact_duplicates, report.near_duplicates, report.skipped) == (0, 0, [])
    after = built.index.stats()
    for key in ("generation", "documents", "chunks", "vectors"):
        assert after[key] == before[key], key


# ---- filters ------------------------------------------------------------------------------


def test_filter_by_exact_source(built: Built) -> None:
    source = built.path("sub_a/bees.txt")
    assert everything(built.index, SearchFilter(sources=(source,))) == {source}
    for mode in MODES:
        hits = built.index.search("ocean lights magma", k=10, mode=mode, filters=SearchFilter(sources=(source,)))  # type: ignore[arg-type]
        assert {h.source for h in hits} <= {source}
    # a JSONL record's source is path#line
    record_source = built.path("records.jsonl") + "#2"
    assert everything(built.index, SearchFilter(sources=(record_source,))) == {"rec-bread"}
    assert everything(built.index, SearchFilter(sources=(built.path("notes"),))) == set()  # exact: no prefix match


def test_filter_by_source_prefix(built: Built) -> None:
    notes = {built.path(n) for n in ("notes/aurora.txt", "notes/volcano.md", "notes/long.txt")}
    filt = SearchFilter(sources=(built.path("notes") + "/*",))
    assert everything(built.index, filt) == notes
    for mode in MODES:
        hits = built.index.search("honeybees waggle dance magma", k=20, mode=mode, filters=filt)  # type: ignore[arg-type]
        assert hits and set(ids(hits)) <= notes
    both = SearchFilter(sources=(built.path("notes") + "/*", built.path("records.jsonl") + "#*"))
    assert everything(built.index, both) == notes | {r["id"] for r in RECORDS}
    assert everything(built.index, SearchFilter(sources=(built.path("nowhere") + "/*",))) == set()


def test_source_prefix_treats_like_wildcards_literally(built: Built) -> None:
    # "_" must not match any character: sub_a/* is not subXa/*
    found = everything(built.index, SearchFilter(sources=(built.path("sub_a") + "/*",)))
    assert built.path("subXa/glaciers.txt") not in found
    assert built.path("sub_a/bees.txt") in found
    percent = everything(built.index, SearchFilter(sources=(built.path("%") + "/*",)))
    assert percent == set()


def test_source_prefix_is_case_sensitive(built: Built) -> None:
    # paths are case-sensitive (and exact sources are): sub_a/* must not match SUB_A/kelp.txt
    found = everything(built.index, SearchFilter(sources=(built.path("sub_a") + "/*",)))
    assert found == {built.path("sub_a/bees.txt")}


def test_filter_by_tags(built: Built) -> None:
    extra = {"origami.txt", "tides.md"}
    assert everything(built.index, SearchFilter(tags=("b",))) == extra
    tagged_a = everything(built.index, SearchFilter(tags=("a",)))
    assert len(tagged_a) == CORPUS_DOCS and not tagged_a & extra
    assert everything(built.index, SearchFilter(tags=("geo",))) == {built.path("notes/volcano.md")}
    assert everything(built.index, SearchFilter(tags=("geo", "b"))) == extra | {built.path("notes/volcano.md")}
    assert everything(built.index, SearchFilter(tags=("nope",))) == set()
    for mode in MODES:
        hits = built.index.search("paper cranes", k=10, mode=mode, filters=SearchFilter(tags=("a",)))  # type: ignore[arg-type]
        assert not set(ids(hits)) & extra


def test_filter_by_date_range(built: Built) -> None:
    def dated(**kw: str) -> set[str]:
        return everything(built.index, SearchFilter(**kw))  # type: ignore[arg-type]

    assert dated(date_from="2022-01-01", date_to="2023-12-31") == {"rec-bread", "rec-lighthouse"}
    assert dated(date_from="2021-03-01", date_to="2021-03-01") == {"rec-chess"}  # both bounds inclusive
    assert dated(date_from="2023-01-10") == {"rec-lighthouse", "rec-cable"}
    assert dated(date_to="2022-06-15") == {"rec-chess", "rec-bread"}  # undated documents never pass
    assert dated(date_from="2025-01-01") == set()
    for mode in MODES:
        hits = built.index.search("chess bread lighthouse cable", k=10, mode=mode,  # type: ignore[arg-type]
                                  filters=SearchFilter(date_from="2022-01-01", date_to="2023-12-31"))
        assert hits and set(ids(hits)) <= {"rec-bread", "rec-lighthouse"}


def test_filter_by_doc_ids_and_combined(built: Built) -> None:
    assert everything(built.index, SearchFilter(doc_ids=("rec-chess", "rec-cable", "unknown"))) == {"rec-chess", "rec-cable"}
    for mode in MODES:
        hits = built.index.search("the chess opening", k=10, mode=mode,  # type: ignore[arg-type]
                                  filters=SearchFilter(doc_ids=("rec-cable",)))
        assert set(ids(hits)) <= {"rec-cable"}
    combined = SearchFilter(tags=("a",), date_from="2022-01-01", doc_ids=("rec-chess", "rec-bread", "rec-cable"))
    assert everything(built.index, combined) == {"rec-bread", "rec-cable"}
    assert everything(built.index, SearchFilter(tags=("b",), doc_ids=("rec-bread",))) == set()


def test_filter_parse() -> None:
    filt = SearchFilter.parse(["source=a/*", "tag=x", "tag=y", "date_from=2020-01-01", "doc_id=d1"])
    assert filt == SearchFilter(sources=("a/*",), tags=("x", "y"), date_from="2020-01-01", doc_ids=("d1",))
    with pytest.raises(ValueError, match="key=value"):
        SearchFilter.parse(["colour=red"])


# ---- validation and settings --------------------------------------------------------------


def test_search_argument_validation(built: Built) -> None:
    with pytest.raises(ValueError, match="mode"):
        built.index.search("x", mode="fuzzy")  # type: ignore[arg-type]
    for k in (0, 1001):
        with pytest.raises(ValueError, match="k must be"):
            built.index.search("x", k=k)
    assert built.index.search("?! ...", mode="bm25") == []  # no words: no keyword query
    assert built.index.search("zzzunmatchedword", mode="bm25") == []


def test_opening_with_another_model_raises_mismatch(built: Built) -> None:
    with pytest.raises(IndexMismatchError) as err:
        Index.open(built.directory, IndexSettings(embedding_model="other/model"))
    assert BUNDLED_MODEL in str(err.value) and "other/model" in str(err.value)
    with pytest.raises(IndexMismatchError, match="chunk_tokens"):
        Index.open(built.directory, IndexSettings(chunk_tokens=100))
    assert isinstance(err.value, ValueError)


def test_open_without_settings_keeps_the_built_settings(built: Built) -> None:
    with Index.open(built.directory) as again:
        assert again.settings.embedding_model == BUNDLED_MODEL
        assert (again.settings.chunk_tokens, again.settings.chunk_overlap) == (200, 32)
        assert again.stats()["documents"] == CORPUS_DOCS + 2


def test_open_missing_index_without_create(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no index"):
        Index.open(tmp_path / "absent", create=False)
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"chunk_tokens": 64, "chunk_overlap": 64}, "chunk_overlap"),
    ({"chunk_tokens": 64, "chunk_overlap": 100}, "chunk_overlap"),
    ({"chunk_overlap": -1}, "chunk_overlap"),
    ({"chunk_tokens": 8, "chunk_overlap": 0}, "chunk_tokens"),
    ({"vector_index": "ivf"}, "vector_index"),
    ({"near_duplicates": "drop"}, "near_duplicates"),
    ({"near_duplicate_threshold": 0.0}, "near_duplicate_threshold"),
    ({"near_duplicate_threshold": 1.5}, "near_duplicate_threshold"),
    ({"embed_batch_size": 0}, "embed_batch_size"),
    ({"fusion": "max"}, "fusion"),
    ({"hybrid_dense_weight": 1.5}, "hybrid_dense_weight"),
])
def test_settings_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IndexSettings(**kwargs)  # type: ignore[arg-type]


# ---- changing the index ----------------------------------------------------------------------


def test_changed_file_is_updated(live: Index, tmp_path: Path) -> None:
    folder = tmp_path / "upd"
    folder.mkdir()
    f = folder / "animal.txt"
    f.write_text("The pangolin curls into an armoured ball of keratin scales when a leopard comes near.")
    first = live.ingest([folder])
    assert (first.added, first.updated) == (1, 0)
    doc = "animal.txt"  # relative to the folder ingested
    assert ids(live.search("pangolin keratin scales", k=1, mode="bm25")) == [doc]

    gen = live.stats()["generation"]
    f.write_text("The narwhal swims under Arctic sea ice and its long spiral tusk is an enlarged tooth.")
    second = live.ingest([folder])
    assert (second.added, second.updated, second.unchanged, second.skipped) == (0, 1, 0, [])
    stats = live.stats()
    assert stats["generation"] > gen and stats["vectors"] == stats["chunks"]
    assert stored_texts(live.directory)[doc].startswith("The narwhal")
    assert doc not in ids(live.search("pangolin keratin scales leopard", k=20, mode="bm25"))
    for mode in MODES:
        hits = live.search("narwhal tusk Arctic sea ice", k=3, mode=mode)  # type: ignore[arg-type]
        assert hits[0].doc_id == doc and "narwhal" in hits[0].text
        mine = live.search("pangolin", k=20, mode=mode, filters=SearchFilter(doc_ids=(doc,)))  # type: ignore[arg-type]
        assert all("pangolin" not in h.text for h in mine)
    # and once more unchanged
    third = live.ingest([folder])
    assert (third.added, third.updated, third.unchanged) == (0, 0, 1)
    assert live.stats()["generation"] == stats["generation"]


def test_delete_removes_a_document_everywhere(live: Index) -> None:
    docs = [
        Document("del-1", "Sea cucumbers crawl across the ocean floor and expel sticky threads to deter predators.", "del/1", {}),
        Document("del-2", "Hot air balloons rise because heated air inside the envelope is lighter than the air outside.", "del/2", {}),
        Document("del-3", "The abacus uses beads on rods to add and subtract numbers quickly by hand.", "del/3", {}),
    ]
    report = live.ingest_documents(docs)
    assert report.added == 3
    query = "sea cucumbers sticky threads ocean floor"
    for mode in MODES:
        assert live.search(query, k=1, mode=mode)[0].doc_id == "del-1"  # type: ignore[arg-type]
    before = live.stats()
    n_chunks = len(chunk_rows(live.directory, "del-1"))
    assert n_chunks >= 1

    assert live.delete("del-1") is True
    after = live.stats()
    assert after["documents"] == before["documents"] - 1
    assert after["chunks"] == before["chunks"] - n_chunks
    assert after["vectors"] == after["chunks"]
    assert after["generation"] == before["generation"] + 1
    assert chunk_rows(live.directory, "del-1") == [] and "del-1" not in stored_texts(live.directory)
    for mode in MODES:
        assert "del-1" not in ids(live.search(query, k=50, mode=mode))  # type: ignore[arg-type]
        assert live.search(query, k=5, mode=mode, filters=SearchFilter(doc_ids=("del-1",))) == []  # type: ignore[arg-type]
    assert "del-2" in ids(live.search("hot air balloons", k=3, mode="hybrid"))

    assert live.delete("del-1") is False
    assert live.delete("never-existed") is False
    assert live.stats()["generation"] == after["generation"]

    # the deleted text is forgotten by the duplicate checks too: it may come back under a new id
    again = live.ingest_documents([Document("del-1-again", docs[0].text, "del/1b", {})])
    assert (again.added, again.exact_duplicates, again.near_duplicates, again.skipped) == (1, 0, 0, [])
    assert live.search(query, k=1, mode="bm25")[0].doc_id == "del-1-again"

    # a reopened index agrees (snapshots and replayed deletions)
    with Index.open(live.directory) as reopened:
        stats = reopened.stats()
        assert stats["vectors"] == stats["chunks"] == live.stats()["chunks"]
        assert "del-1" not in ids(reopened.search(query, k=50, mode="bm25"))


def test_exact_duplicates_are_skipped(live: Index, tmp_path: Path) -> None:
    text = "Glassblowers gather molten glass on a long iron pipe and shape it by blowing and turning."
    folder = tmp_path / "dups"
    folder.mkdir()
    (folder / "a.txt").write_text(text)
    (folder / "b.txt").write_text(text + "\n")  # the same after normalization
    report = live.ingest([folder])
    assert (report.added, report.exact_duplicates) == (1, 1)
    assert report.skipped == [("b.txt", "exact duplicate of a.txt")]

    later = live.ingest_documents([Document("glass-copy", text, "elsewhere/glass", {})])
    assert (later.added, later.exact_duplicates) == (0, 1)
    assert later.skipped == [("elsewhere/glass", "exact duplicate of a.txt")]
    assert "glass-copy" not in stored_texts(live.directory)


def test_near_duplicates_are_skipped(live: Index) -> None:
    words = random_words(1, 60)
    changed = [*words[:-1], "different"]
    report = live.ingest_documents([Document("near-orig", " ".join(words), "near/orig", {})])
    assert report.added == 1
    later = live.ingest_documents([Document("near-copy", " ".join(changed), "near/copy", {})])
    assert (later.added, later.near_duplicates) == (0, 1)
    [(source, reason)] = later.skipped
    assert source == "near/copy" and reason.startswith("near duplicate of near-orig (similarity ")

    # within one batch as well
    other = random_words(2, 60)
    same_batch = live.ingest_documents([
        Document("near-b1", " ".join(other), "near/b1", {}),
        Document("near-b2", " ".join([*other[:-1], "changed"]), "near/b2", {}),
    ])
    assert (same_batch.added, same_batch.near_duplicates) == (1, 1)
    assert same_batch.skipped[0][0] == "near/b2" and "near duplicate of near-b1" in same_batch.skipped[0][1]
    texts = stored_texts(live.directory)
    assert "near-orig" in texts and "near-b1" in texts
    assert "near-copy" not in texts and "near-b2" not in texts


def test_bad_inputs_are_reported_and_the_rest_is_ingested(live: Index, tmp_path: Path) -> None:
    keep = live.ingest_documents([Document("kept-before", "Beekeepers smoke the hive to calm the colony before opening it.",
                                           "kept/before", {})])
    assert keep.added == 1
    before = stored_texts(live.directory)

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01")
    (folder / "empty.txt").write_text("")
    (folder / "good.md").write_text("# Knots\n\nA bowline knot makes a fixed loop at the end of a rope.")
    (folder / "lines.jsonl").write_text(
        json.dumps({"id": "jl-good", "text": "Carrier pigeons find their way home over hundreds of kilometres."})
        + "\n{\"id\": \"jl-bad\", \"text\": \"unterminated\n"
    )
    (folder / "notes.xyz").write_text("an unsupported suffix")
    report = live.ingest([folder])
    assert report.added == 2
    skipped = dict(report.skipped)
    base = folder.as_posix()
    assert skipped[f"{base}/binary.txt"] == "not valid UTF-8 text (binary file?)"
    assert skipped[f"{base}/empty.txt"] == "empty"
    assert skipped[f"{base}/lines.jsonl:2"].startswith("malformed JSON")
    assert skipped[f"{base}/notes.xyz"] == "unsupported file type"
    assert len(report.skipped) == 4

    after = stored_texts(live.directory)
    assert set(after) == set(before) | {"good.md", "jl-good"}
    assert all(after[d] == t for d, t in before.items())  # nothing stored is lost or changed
    assert live.search("bowline knot loop", k=1, mode="bm25")[0].doc_id == "good.md"
    stats = live.stats()
    assert stats["vectors"] == stats["chunks"]


def test_hnsw_vectors_of_deleted_chunks_do_not_count_for_new_chunks(tmp_path: Path) -> None:
    """HNSW keeps deleted chunks' vectors (the store join is meant to drop
    them); a new chunk must not inherit the score of a deleted one."""
    volcanic = "Volcanic lightning flashes inside thick ash plumes during eruptions."
    with Index.open(tmp_path / "hnsw", IndexSettings(vector_index="hnsw")) as index:
        index.ingest_documents([
            Document("penguins", "Penguins huddle together to survive the Antarctic winter.", "p", {}),
            Document("press", "The printing press spread books across Europe in the fifteenth century.", "b", {}),
            Document("volcanic", volcanic, "v", {}),
        ])
        assert index.delete("volcanic") is True
        index.ingest_documents([Document("knitting", "Knitting needles and wool make warm scarves for cold days.", "k", {})])
        assert index.stats()["chunks"] == 3
        hits = index.search(volcanic, k=5, mode="hybrid")
        assert {h.doc_id for h in hits} == {"penguins", "press", "knitting"}
        query = index.embedder.embed([volcanic])[0]
        for h in hits:
            assert h.bm25_score is None  # no shared words: each hit is ranked once, by the dense search
            own = float(index.embedder.embed([h.text])[0] @ query)
            assert h.dense_score == pytest.approx(own, abs=1e-4), h.doc_id  # its own vector's score
