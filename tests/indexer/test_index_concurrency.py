"""Searching while another thread ingests: every search sees committed
documents only, each whole (all of its chunks or none), and none raises.
Also the writer lock between index objects.

One scenario per module: a writer ``Index`` ingests three batches of
generated documents in a thread while two threads search the same directory
through a second ``Index`` object, and the main thread searches the writer's
own object once the first batch has committed.
"""

from __future__ import annotations

import fcntl
import os
import random
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from indexer.index import Index
from indexer.ingest import BATCH_DOCS
from indexer.loaders import Document
from indexer.settings import IndexSettings

N_DOCS = 2 * BATCH_DOCS + BATCH_DOCS // 2  # three batches, the last one short
PREFIXES = {min(k * BATCH_DOCS, N_DOCS) for k in range(4)}  # what a search may see
MIN_SEARCHES = 50
QUERY = "quokka report"
WORDS = ["river", "stone", "lamp", "bread", "cloud", "horse", "paper", "glass", "field", "tower", "salt", "wind",
         "copper", "garden", "bridge", "candle", "forest", "island", "mirror", "needle", "orange", "pencil",
         "rabbit", "silver", "ticket", "violin", "wagon", "yellow", "anchor", "basket", "castle", "dragon"]


def doc_id(i: int) -> str:
    return f"q-{i:03d}"


def doc_text(i: int) -> str:
    """Every sentence names the quokka, so every chunk matches the query's
    words; every fourth document has several chunks."""
    rng = random.Random(i)
    parts = [f"Quokka report {i:03d}."]
    for _ in range(3 if i % 4 == 3 else 1):
        parts.append(f"The quokka {i} saw " + " ".join(rng.choice(WORDS) for _ in range(5)) + ".")
    return " ".join(parts)


ORDER = [doc_id(i) for i in range(N_DOCS)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass
class Observation:
    thread: int
    mode: str
    per_doc: Counter
    acked_before: int
    acked_after: int


@dataclass
class Scenario:
    directory: Path
    writer: Index
    reader: Index
    acked: list[str] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    own_search_seconds: float = 0.0
    own_search_before_ingest_end: bool = False
    ingest_seconds_after_first_commit: float = 0.0

    def chunk_counts(self, *, containing: str | None = None) -> dict[str, int]:
        with closing(sqlite3.connect(self.directory / "index.sqlite")) as conn:
            rows = conn.execute(
                'SELECT c.doc_id, substr(d.text, c.start + 1, c."end" - c.start) FROM chunks c'
                " JOIN documents d USING (doc_id)").fetchall()
        pattern = re.compile(rf"\b{containing}\b", re.IGNORECASE) if containing else None
        return dict(Counter(d for d, text in rows if pattern is None or pattern.search(text)))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    directory = tmp_path_factory.mktemp("concurrent") / "index"
    writer = Index.open(directory, IndexSettings(chunk_tokens=24, chunk_overlap=4))
    reader = Index.open(directory)
    assert writer.embedder.dim == reader.embedder.dim  # models loaded before the race starts
    assert reader.search(QUERY, mode="hybrid") == []
    sc = Scenario(directory, writer, reader)
    first_commit, ingest_done = threading.Event(), threading.Event()
    lock = threading.Lock()

    def on_commit(ids: list[str]) -> None:
        with lock:
            sc.acked.extend(ids)
        first_commit.set()

    def ingest() -> None:
        try:
            docs = [Document(doc_id(i), doc_text(i), f"quokka/{i:03d}", {}) for i in range(N_DOCS)]
            report = writer.ingest_documents(docs, on_commit=on_commit)
            assert report.added == N_DOCS, report
        except BaseException as exc:  # noqa: BLE001 - reported by the tests
            sc.errors.append(exc)
        finally:
            ingest_done.set()

    def search(thread: int) -> None:
        modes = ["bm25", "dense", "hybrid"]
        n = 0
        try:
            while not ingest_done.is_set() or n < MIN_SEARCHES // 2:
                mode = modes[(n + thread) % 3]
                with lock:
                    before = len(sc.acked)
                hits = reader.search(QUERY, k=1000, mode=mode)  # type: ignore[arg-type]
                with lock:
                    after = len(sc.acked)
                    sc.observations.append(Observation(thread, mode, Counter(h.doc_id for h in hits), before, after))
                n += 1
        except BaseException as exc:  # noqa: BLE001
            sc.errors.append(exc)

    threads = [threading.Thread(target=ingest)] + [threading.Thread(target=search, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    if first_commit.wait(timeout=300):
        committed_at = time.monotonic()
        t0 = time.monotonic()
        writer.search(QUERY, k=5, mode="bm25")  # the writer's own object, mid-ingest
        sc.own_search_seconds = time.monotonic() - t0
        sc.own_search_before_ingest_end = not ingest_done.is_set()
        ingest_done.wait(timeout=300)
        sc.ingest_seconds_after_first_commit = time.monotonic() - committed_at
    for t in threads:
        t.join(timeout=300)
    yield sc
    reader.close()
    writer.close()


def test_ingest_and_searches_complete_without_errors(scenario: Scenario) -> None:
    assert scenario.errors == []
    assert scenario.acked == ORDER
    assert len(scenario.observations) >= MIN_SEARCHES
    assert {o.mode for o in scenario.observations} == {"bm25", "dense", "hybrid"}
    # the race really happened: some searches saw part of the documents
    partial = [o for o in scenario.observations if 0 < len(o.per_doc) < N_DOCS]
    assert partial, [len(o.per_doc) for o in scenario.observations][:20]


def test_every_search_sees_whole_committed_documents(scenario: Scenario) -> None:
    chunks = scenario.chunk_counts()
    with_query_words = scenario.chunk_counts(containing="quokka")
    assert sum(chunks.values()) > N_DOCS  # documents of several chunks
    assert with_query_words == chunks  # every chunk matches the keyword query
    for o in scenario.observations:
        seen = set(o.per_doc)
        # whole batches, in commit order
        assert len(seen) in PREFIXES, (o.mode, len(seen))
        assert seen == set(ORDER[: len(seen)]), o.mode
        # committed: at most one batch ahead of the acknowledgements after the search
        assert len(seen) <= o.acked_after + BATCH_DOCS
        # whole documents: every chunk of every document seen
        for d, n in o.per_doc.items():
            assert n == chunks[d], (o.mode, d, n, chunks[d])


def test_each_thread_sees_the_index_grow(scenario: Scenario) -> None:
    for thread in (0, 1):
        for mode in ("bm25", "dense", "hybrid"):
            sizes = [len(o.per_doc) for o in scenario.observations if o.thread == thread and o.mode == mode]
            assert sizes and sizes == sorted(sizes), (thread, mode, sizes)


def test_indexes_agree_after_the_ingest(scenario: Scenario) -> None:
    n_chunks = sum(scenario.chunk_counts().values())
    for index in (scenario.writer, scenario.reader):
        hits = index.search(QUERY, k=1000, mode="hybrid")
        assert len(hits) == n_chunks
        stats = index.stats()
        assert (stats["documents"], stats["chunks"]) == (N_DOCS, n_chunks)
        assert stats["vectors"] == n_chunks  # each chunk's vector exactly once in FAISS


def test_search_on_the_ingesting_index_object_is_not_held_up(scenario: Scenario) -> None:
    """A search on the very object that is ingesting should answer from the
    committed batches, not wait for the whole ingest to finish."""
    assert scenario.ingest_seconds_after_first_commit > 0.5  # room to answer before the end
    assert scenario.own_search_before_ingest_end, (
        f"search took {scenario.own_search_seconds:.1f} s and returned only after the ingest ended "
        f"({scenario.ingest_seconds_after_first_commit:.1f} s after its first commit)")


def test_writer_lock_is_held_until_close(scenario: Scenario) -> None:
    lock_path = scenario.directory / "writer.lock"

    def try_lock() -> bool:
        fd = os.open(lock_path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    assert not try_lock()  # the writer that ingested still holds it
    scenario.writer.close()
    assert try_lock()
    with Index.open(scenario.directory) as other:  # another object may write now
        assert other.delete(ORDER[0]) is True
        assert other.stats()["documents"] == N_DOCS - 1
    assert try_lock()  # released on close


def test_second_writer_raises_index_busy(tmp_path: Path) -> None:
    from indexer.index import IndexBusyError

    with Index.open(tmp_path / "busy") as first, Index.open(tmp_path / "busy") as second:
        first.ingest_documents([Document("a", "Alpacas graze on the high Andean plateau.", "a", {})])
        second.writer_lock_timeout = 0.3
        with pytest.raises(IndexBusyError, match="another process is writing"):
            second.delete("a")
        first.close()  # releases the lock: now the second may write
        assert second.delete("a") is True


# ---- two index objects over one directory -----------------------------------------------------


def sixty_words(seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(f"{rng.choice(WORDS)}{rng.randrange(100)}" for _ in range(60))


DELETED_TEXT = sixty_words(99)


@pytest.fixture(scope="module")
def two_objects(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Index, Index]]:
    """``first`` ingests three documents; ``second`` opens the directory; then
    ``first`` deletes the last document and ingests a new, unrelated one."""
    directory = tmp_path_factory.mktemp("two_objects") / "index"
    first = Index.open(directory, IndexSettings())
    first.ingest_documents([
        Document("penguins", "Penguins huddle together to survive the Antarctic winter.", "p", {}),
        Document("press", "The printing press spread books across Europe in the fifteenth century.", "b", {}),
        Document("deleted", DELETED_TEXT, "d", {}),
    ])
    second = Index.open(directory)
    assert second.search(DELETED_TEXT, k=1, mode="dense")[0].doc_id == "deleted"
    assert first.delete("deleted") is True
    first.ingest_documents([Document("knitting", "Knitting needles and wool make warm scarves for cold days.", "k", {})])
    yield first, second
    second.close()
    first.close()


@pytest.mark.parametrize("mode", ["bm25", "dense", "hybrid"])
def test_second_object_sees_the_first_objects_delete(two_objects: tuple[Index, Index], mode: str) -> None:
    first, second = two_objects
    mine = [(h.doc_id, h.chunk_id, h.score) for h in first.search(DELETED_TEXT, k=5, mode=mode)]  # type: ignore[arg-type]
    theirs = [(h.doc_id, h.chunk_id, h.score) for h in second.search(DELETED_TEXT, k=5, mode=mode)]  # type: ignore[arg-type]
    assert "deleted" not in {d for d, _, _ in theirs}
    assert [(d, c) for d, c, _ in theirs] == [(d, c) for d, c, _ in mine]
    assert [s for _, _, s in theirs] == pytest.approx([s for _, _, s in mine], rel=1e-5, abs=1e-9)


def test_second_object_drops_the_deleted_vectors(two_objects: tuple[Index, Index]) -> None:
    first, second = two_objects
    second.search("anything", k=1, mode="bm25")  # catches up with the first object's writes
    stats = second.stats()
    assert stats["chunks"] == first.stats()["chunks"] == 3
    assert stats["vectors"] == stats["chunks"]


def test_second_object_forgets_the_deleted_text_for_near_duplicates(two_objects: tuple[Index, Index]) -> None:
    first, second = two_objects
    first.close()  # hand the writer lock over
    words = DELETED_TEXT.split()
    report = second.ingest_documents([Document("reborn", " ".join([*words[:-1], "different"]), "r", {})])
    assert report.skipped == []  # "deleted" is gone: nothing to be a near duplicate of
    assert (report.added, report.near_duplicates) == (1, 0)
