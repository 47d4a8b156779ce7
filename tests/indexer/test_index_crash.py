"""Crash safety: an ingesting process killed with SIGKILL loses nothing it
acknowledged, leaves no partial document behind, and the next run resumes.

The ingest runs in a subprocess (``ingest_worker.py``) that prints ``ACK <id>``
for every document of a committed batch (``BATCH_DOCS`` documents) from the
``on_commit`` callback. The test kills it once two batches are acknowledged,
then checks the index in this process, then lets a second run finish.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

import ingest_worker
from worker_process import run_worker as run_worker_process
from indexer import native
from indexer.embedder import resolve_model_path
from indexer.index import Index
from indexer.ingest import BATCH_DOCS
from indexer.loaders import Document
from indexer.search import SearchFilter
from indexer.settings import BUNDLED_MODEL

WORKER = Path(ingest_worker.__file__).resolve()
N_DOCS = 4 * BATCH_DOCS
KILL_AFTER_BATCHES = 2
ORDER = [ingest_worker.doc_id(i) for i in range(N_DOCS)]
NUMBER = {d: i for i, d in enumerate(ORDER)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@dataclass
class Run:
    acked: list[str]
    killed: bool
    returncode: int
    done: dict[str, object] | None
    stderr: str


def run_worker(directory: Path, n: int, *, kill_after_acks: int | None, log: Path) -> Run:
    """Runs the worker; with ``kill_after_acks``, SIGKILLs it as soon as that
    many documents have been acknowledged (ACKs still in the pipe count too)."""
    acked: list[str] = []
    done = None

    def read(line: str) -> bool:
        nonlocal done
        if line.startswith("DONE "):
            done = json.loads(line.removeprefix("DONE "))
        if not line.startswith("ACK "):
            return False
        acked.append(line.split()[1])
        return kill_after_acks is not None and len(acked) >= kill_after_acks

    killed, rc = run_worker_process(WORKER, [str(directory), str(n)], log=log, kill_when=read, cwd=ingest_worker.REPO)
    return Run(acked, killed, rc, done, log.read_text())


def db(directory: Path) -> sqlite3.Connection:
    return sqlite3.connect(directory / "index.sqlite")


def present_docs(directory: Path) -> set[str]:
    with closing(db(directory)) as conn:
        return {r[0] for r in conn.execute("SELECT doc_id FROM documents")}


def expected_spans(doc_ids: set[str]) -> dict[str, list[tuple[int, int]]]:
    """The chunks each generated document must have: its text chunked as the index chunks it."""
    tokenizer = native.load_tokenizer(resolve_model_path(BUNDLED_MODEL))
    generated = sorted(d for d in doc_ids if d in NUMBER)
    texts = native.normalize([ingest_worker.doc_text(NUMBER[d]) for d in generated])
    spans = native.chunk(texts, max_tokens=ingest_worker.CHUNK_TOKENS, overlap=ingest_worker.CHUNK_OVERLAP,
                         tokenizer=tokenizer)
    return {d: [tuple(s) for s in doc_spans] for d, doc_spans in zip(generated, spans)}


def assert_consistent(directory: Path) -> set[str]:
    """Opens the index and checks that every document is whole in SQLite,
    FTS and FAISS; returns the documents present."""
    with Index.open(directory) as index:
        stats = index.stats()
        with closing(db(directory)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            docs = {r[0] for r in conn.execute("SELECT doc_id FROM documents")}
            rows = conn.execute('SELECT doc_id, ord, start, "end" FROM chunks ORDER BY doc_id, ord').fetchall()
            n_chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
            n_fts = conn.execute("SELECT count(*) FROM chunks_fts").fetchone()[0]
            without_fts = conn.execute(
                "SELECT count(*) FROM chunks WHERE chunk_id NOT IN (SELECT rowid FROM chunks_fts)").fetchone()[0]
            fts_orphans = conn.execute(
                "SELECT count(*) FROM chunks_fts WHERE rowid NOT IN (SELECT chunk_id FROM chunks)").fetchone()[0]
            gen = int(conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])
        assert n_fts == n_chunks and without_fts == 0 and fts_orphans == 0
        assert {d for d, *_ in rows} == docs  # no orphan chunks, no document without chunks
        spans: dict[str, list[tuple[int, int]]] = {}
        for d, ord_, start, end in rows:
            assert ord_ == len(spans.setdefault(d, []))
            spans[d].append((start, end))
        want = expected_spans(docs)
        for d in docs & set(want):
            assert spans[d] == want[d], d  # all of its chunks, exactly
        assert stats["documents"] == len(docs) and stats["chunks"] == n_chunks
        assert stats["vectors"] == n_chunks  # FAISS brought up to date from SQLite on open
        assert stats["generation"] == gen
        # snapshot files never run ahead of the committed generation
        for p in directory.iterdir():
            if p.name.startswith(("vectors-", "lsh-")) and not p.name.startswith("."):
                assert int(p.name.split("-")[1].split(".")[0]) <= gen, p.name
    return docs


def assert_batch_atomic(present: set[str], acked: list[str]) -> None:
    """Present generated documents: everything acknowledged, plus at most the
    one whole batch that committed between the last ACK and the kill."""
    generated = present & set(ORDER)
    acked_set = set(acked)
    assert acked_set <= generated, sorted(acked_set - generated)[:5]
    extra = generated - acked_set
    assert extra in (set(), set(ORDER[len(acked) : len(acked) + BATCH_DOCS])), sorted(extra)[:5]
    assert generated == set(ORDER[: len(generated)])


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Run]]:
    base = tmp_path_factory.mktemp("crash")
    directory = base / "index"
    run = run_worker(directory, N_DOCS, kill_after_acks=KILL_AFTER_BATCHES * BATCH_DOCS, log=base / "run1.log")
    yield directory, run


def test_worker_was_killed_mid_ingest(crashed: tuple[Path, Run]) -> None:
    _, run = crashed
    assert run.killed, f"the worker finished before it could be killed:\n{run.stderr[-2000:]}"
    assert run.returncode == -signal.SIGKILL
    assert run.done is None
    assert len(run.acked) >= KILL_AFTER_BATCHES * BATCH_DOCS and len(run.acked) % BATCH_DOCS == 0
    assert run.acked == ORDER[: len(run.acked)]  # acknowledged in input order, once each
    assert max(Counter(run.acked).values()) == 1


def test_acknowledged_documents_survive_the_kill(crashed: tuple[Path, Run]) -> None:
    directory, run = crashed
    docs = assert_consistent(directory)  # opens fine, every document whole
    assert_batch_atomic(docs, run.acked)
    with Index.open(directory) as index:
        for d in run.acked[:: BATCH_DOCS // 2]:
            hits = index.search(f"Generated record {NUMBER[d]:05d}", k=5, mode="bm25",
                                filters=SearchFilter(doc_ids=(d,)))
            assert hits and {h.doc_id for h in hits} == {d}


def test_search_after_the_kill_returns_only_present_documents(crashed: tuple[Path, Run]) -> None:
    directory, run = crashed
    present = present_docs(directory)
    with Index.open(directory) as index:
        for mode in ("hybrid", "dense", "bm25"):
            hits = index.search("Generated record 00005", k=50, mode=mode)  # type: ignore[arg-type]
            assert hits, mode
            assert {h.doc_id for h in hits} <= present
            if mode == "bm25":
                assert hits[0].doc_id == ingest_worker.doc_id(5)
        # documents the killed run never committed are not found even by their own words
        missing = [d for d in ORDER if d not in present]
        assert missing
        hits = index.search(f"Generated record {NUMBER[missing[-1]]:05d}", k=50, mode="hybrid")
        assert missing[-1] not in {h.doc_id for h in hits}


def test_rerun_skips_committed_documents_and_finishes(crashed: tuple[Path, Run], tmp_path: Path) -> None:
    directory, _ = crashed
    present = present_docs(directory)
    assert present and len(present) < N_DOCS

    again = run_worker(directory, N_DOCS, kill_after_acks=None, log=tmp_path / "run2.log")
    assert again.returncode == 0 and again.done is not None, again.stderr[-3000:]
    assert again.done["unchanged"] == len(present)
    assert again.done["added"] == N_DOCS - len(present)
    assert (again.done["updated"], again.done["exact_duplicates"], again.done["near_duplicates"]) == (0, 0, 0)
    assert again.done["skipped"] == []
    assert again.acked == [d for d in ORDER if d not in present]  # nothing committed before is written again
    assert assert_consistent(directory) == set(ORDER)

    # and this process can write to it too
    with Index.open(directory) as index:
        extra = [Document(f"extra-{i}", f"An extra note {i} about {w} written after the crash.", f"extra/{i}", {})
                 for i, w in enumerate(["tulips", "comets", "anvils"])]
        report = index.ingest_documents(extra)
        assert (report.added, report.skipped) == (3, [])
        assert index.search("extra note about comets", k=1, mode="hybrid")[0].doc_id == "extra-1"
        stats = index.stats()
        assert stats["documents"] == N_DOCS + 3 and stats["vectors"] == stats["chunks"]
    assert len(assert_consistent(directory)) == N_DOCS + 3
