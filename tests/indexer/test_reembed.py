"""Re-embedding an index (``indexer reembed``): the index records the embedder that made
its vectors, a changed or mismatching one is a clear error, and a re-embedding switches
every vector at once, so that a kill at any point leaves the old index or the new one.

Two tiny real embedders are made here: A (32-d) builds the index, B (48-d) replaces it.
An index built directly with B is the reference the re-embedded one must equal.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from tiny_models import save_tiny_embedder

import reembed_worker
from worker_process import run_worker as run_worker_process
from indexer import cli
from indexer.chunk_titles import document_title, text_to_index
from indexer.embedder import Embedder, model_fingerprint
from indexer.index import FINGERPRINT_KEY, Index, IndexMismatchError
from indexer.loaders import Document
from indexer.reembed import STAGING, TARGET_KEY, reembed
from indexer.settings import IndexSettings
from indexer.vectors import SINCE_KEY

pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ("river stone lamp bread cloud horse paper glass field tower salt wind copper garden bridge candle "
         "forest island mirror needle orange pencil rabbit silver ticket violin wagon yellow anchor basket").split()
WORKER = Path(reembed_worker.__file__).resolve()
REPO = WORKER.parents[2]


def documents(n: int, start: int = 0) -> list[Document]:
    out = []
    for i in range(start, start + n):
        words = [WORDS[(i * 7 + j * (i % 5 + 1)) % len(WORDS)] for j in range(12 + (i % 4) * 10)]
        out.append(Document(f"doc-{i:03d}", f"Note {i}: " + " ".join(words) + ".", f"doc-{i:03d}.txt",
                            {"title": f"note {i}", "format": "txt"}))
    return out


@dataclass
class Models:
    a: Path
    b: Path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return Models(save_tiny_embedder(tmp_path_factory.mktemp("embedder-a")),
                  save_tiny_embedder(tmp_path_factory.mktemp("embedder-b"), hidden_size=48))


def settings(model: Path, *, chunk_titles: bool = False) -> IndexSettings:
    return IndexSettings(embedding_model=str(model), chunk_tokens=24, chunk_overlap=4, near_duplicates="keep",
                         chunk_titles=chunk_titles)


def build(directory: Path, model: Path, docs: list[Document], *, chunk_titles: bool = False) -> Path:
    with Index.open(directory, settings(model, chunk_titles=chunk_titles)) as index:
        index.ingest_documents(docs)
        index.save_snapshots()
    return directory


@pytest.fixture(scope="module")
def built_a(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index made by A, copied by each test that changes it."""
    return build(tmp_path_factory.mktemp("index-a") / "index", models.a, documents(40))


@pytest.fixture(scope="module")
def built_b(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the same documents indexed by B directly."""
    return build(tmp_path_factory.mktemp("index-b") / "index", models.b, documents(40))


@pytest.fixture
def index_a(built_a: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built_a, tmp_path / "index"))


def meta(directory: Path) -> dict[str, str]:
    with closing(sqlite3.connect(directory / "index.sqlite")) as conn:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())


def stored_vectors(directory: Path) -> dict[str, np.ndarray]:
    """Each chunk's stored vector, keyed by its document and span (chunk ids differ between indexes)."""
    with closing(sqlite3.connect(directory / "index.sqlite")) as conn:
        rows = conn.execute('SELECT doc_id, start, "end", vector FROM chunks').fetchall()
    return {f"{d}:{s}:{e}": np.frombuffer(v, dtype=np.float32) for d, s, e, v in rows}


def assert_same_vectors(directory: Path, reference: Path) -> None:
    got, want = stored_vectors(directory), stored_vectors(reference)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], atol=1e-5)


def dense_results(directory: Path, query: str = "copper garden bridge") -> list[tuple[str, int, float]]:
    with Index.open(directory) as index:
        return [(h.doc_id, h.start, round(h.score, 4)) for h in index.search(query, k=8, mode="dense")]


def test_the_index_records_its_embedder(built_a: Path, models: Models) -> None:
    recorded = meta(built_a)
    assert recorded["embedding_model"] == str(models.a)
    assert recorded[FINGERPRINT_KEY] == model_fingerprint(str(models.a))
    with Index.open(built_a) as index:
        assert index.stats()["embedding_model_hash"] == model_fingerprint(str(models.a))


def test_reembed_switches_every_vector_to_the_new_model(index_a: Path, built_b: Path, models: Models) -> None:
    report = reembed(index_a, str(models.b), progress=False)
    assert (report.previous_dim, report.dim, report.chunks, report.embedded) == (32, 48, report.chunks, report.chunks)
    assert report.chunks > 40  # some documents have several chunks
    recorded = meta(index_a)
    assert recorded["embedding_model"] == str(models.b) and recorded["dim"] == "48"
    assert recorded[FINGERPRINT_KEY] == model_fingerprint(str(models.b))
    assert TARGET_KEY not in recorded
    assert_same_vectors(index_a, built_b)
    assert dense_results(index_a) == dense_results(built_b)
    # the FAISS side was saved at the switch's generation; older snapshots are gone
    snapshots = sorted(p.name for p in index_a.glob("vectors-*.faiss"))
    assert snapshots == [f"vectors-{meta(index_a)['generation']}.faiss"]
    assert int(recorded[SINCE_KEY]) <= int(recorded["generation"])
    with closing(sqlite3.connect(index_a / "index.sqlite")) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = ?", (STAGING,)).fetchone() is None


def test_reembed_uses_the_chunk_titles_the_index_was_built_with(models: Models, tmp_path: Path) -> None:
    docs = documents(6)
    directory = build(tmp_path / "titled", models.a, docs, chunk_titles=True)
    reembed(directory, str(models.b), progress=False)
    embedder_b = Embedder(str(models.b))
    titles = {d.doc_id: document_title(d.metadata) for d in docs}
    with closing(sqlite3.connect(directory / "index.sqlite")) as conn:
        rows = conn.execute('SELECT c.doc_id, substr(d.text, c.start + 1, c."end" - c.start), c.vector '
                            'FROM chunks c JOIN documents d USING (doc_id)').fetchall()
    want = embedder_b.embed([text_to_index(titles[d], text) for d, text, _ in rows])
    got = np.stack([np.frombuffer(v, dtype=np.float32) for _, _, v in rows])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_reembed_with_the_recorded_model_does_nothing_unless_forced(index_a: Path, built_a: Path,
                                                                   models: Models) -> None:
    generation = meta(index_a)["generation"]
    assert reembed(index_a, str(models.a), progress=False).embedded == 0
    assert meta(index_a)["generation"] == generation
    forced = reembed(index_a, str(models.a), progress=False, force=True)
    assert forced.embedded == forced.chunks > 0
    assert int(meta(index_a)["generation"]) > int(generation)
    assert_same_vectors(index_a, built_a)
    assert dense_results(index_a) == dense_results(built_a)


def test_a_model_changed_on_disk_is_a_clear_error(models: Models, tmp_path: Path) -> None:
    model = Path(shutil.copytree(models.a, tmp_path / "model"))
    directory = build(tmp_path / "index", model, documents(5))
    shutil.rmtree(model)
    save_tiny_embedder(model, num_hidden_layers=3)  # same path and dimension, other weights
    with Index.open(directory) as index:
        with pytest.raises(IndexMismatchError, match="changed since it made the vectors.*indexer reembed"):
            index.search("river", mode="dense")
        assert index.search("river", mode="bm25")  # keyword search does not need the model


def test_a_model_of_another_dimension_is_a_clear_error(models: Models, tmp_path: Path) -> None:
    model = Path(shutil.copytree(models.a, tmp_path / "model"))
    directory = build(tmp_path / "index", model, documents(5))
    shutil.rmtree(model)
    shutil.copytree(models.b, model)
    with Index.open(directory) as index, pytest.raises(IndexMismatchError, match="48-d vectors.*32-d"):
        index.search("river")


def test_bad_input_leaves_the_index_usable(index_a: Path, models: Models, tmp_path: Path) -> None:
    before = dense_results(index_a)
    with pytest.raises(FileNotFoundError, match="no embedding model folder"):
        reembed(index_a, str(tmp_path / "missing-model"), progress=False)
    with pytest.raises(FileNotFoundError, match="no index"):
        reembed(tmp_path / "no-index", str(models.b), progress=False)
    short = save_tiny_embedder(tmp_path / "short", max_seq_length=16)
    with pytest.raises(ValueError, match="reads at most 16 tokens"):
        reembed(index_a, str(short), progress=False)
    assert dense_results(index_a) == before
    assert meta(index_a)["embedding_model"] == str(models.a)


def test_a_process_that_opened_the_index_before_is_told_to_reopen(index_a: Path, models: Models) -> None:
    with Index.open(index_a) as reader:
        reader.search("river")
        reembed(index_a, str(models.b), progress=False)
        with pytest.raises(IndexMismatchError, match="re-embedded by another process"):
            reader.search("river")
    assert dense_results(index_a)  # opened again, it searches with B


def test_documents_written_during_staging_are_embedded_by_the_new_model(index_a: Path, models: Models) -> None:
    added = documents(3, start=100)

    def write_meanwhile(stage: str, done: int, total: int) -> None:
        if stage == "staged" and not getattr(write_meanwhile, "done", False):
            write_meanwhile.done = True  # type: ignore[attr-defined]
            with Index.open(index_a, settings(models.a)) as other:  # another writer, between two groups
                other.ingest_documents(added)
                other.delete("doc-000")

    report = reembed(index_a, str(models.b), group=16, progress=False, on_progress=write_meanwhile)
    with Index.open(index_a) as index:
        assert index.dim == 48
        stored = stored_vectors(index_a)
        assert not any(k.startswith("doc-000:") for k in stored)
        assert all(v.shape == (48,) for v in stored.values())  # A's vectors are 32-d: none is left
        assert {k.split(":")[0] for k in stored} >= {d.doc_id for d in added}
        assert index.search("Note 101", k=3, mode="dense")
        assert report.chunks == index.stats()["chunks"]


def run_worker(directory: Path, model: Path, *, kill_at: str, log: Path) -> list[str]:
    """Runs the worker (groups of 8 chunks), which holds still after the line starting with
    ``kill_at``, and SIGKILLs it there."""
    lines: list[str] = []

    def read(line: str) -> bool:
        lines.append(line.strip())
        return line.startswith(kill_at)

    killed, _ = run_worker_process(WORKER, [str(directory), str(model), "8", kill_at], log=log, kill_when=read,
                                   cwd=REPO, timeout=240)
    assert killed and lines[-1].startswith(kill_at), (lines, log.read_text())
    return lines


def test_kill_while_staging_leaves_the_old_index_and_the_next_run_resumes(
        index_a: Path, built_a: Path, built_b: Path, models: Models, tmp_path: Path) -> None:
    lines = run_worker(index_a, models.b, kill_at="STAGED 16 ", log=tmp_path / "worker.log")
    assert [line.split()[:2] for line in lines] == [["STAGED", "8"], ["STAGED", "16"]]
    recorded = meta(index_a)
    assert recorded["embedding_model"] == str(models.a) and recorded["dim"] == "32"
    assert json.loads(recorded[TARGET_KEY])["dim"] == 48
    assert_same_vectors(index_a, built_a)
    assert dense_results(index_a) == dense_results(built_a)

    report = reembed(index_a, str(models.b), progress=False)
    assert report.resumed == 16 and report.embedded == report.chunks - 16
    assert_same_vectors(index_a, built_b)
    assert dense_results(index_a) == dense_results(built_b)


def test_kill_after_the_switch_leaves_the_new_index_whole(index_a: Path, built_b: Path, models: Models,
                                                         tmp_path: Path) -> None:
    run_worker(index_a, models.b, kill_at="SWITCHED", log=tmp_path / "worker.log")
    recorded = meta(index_a)
    assert recorded["embedding_model"] == str(models.b) and recorded["dim"] == "48"
    # the FAISS snapshot on disk is still A's: it must be ignored and the vectors rebuilt from the store
    assert all(int(p.stem.split("-")[1]) < int(recorded[SINCE_KEY]) for p in index_a.glob("vectors-*.faiss"))
    assert_same_vectors(index_a, built_b)
    assert dense_results(index_a) == dense_results(built_b)


def test_cli(index_a: Path, models: Models, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["reembed", "--index", str(index_a), "--embedder", str(models.b), "--json", "-q"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dim"] == 48 and report["embedded"] == report["chunks"] > 0
    assert cli.main(["reembed", "--index", str(index_a), "--embedder", str(models.b), "-q"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert cli.main(["reembed", "--index", str(index_a), "--embedder", str(tmp_path / "nope"), "-q"]) == 2
    assert "no embedding model folder" in capsys.readouterr().err
