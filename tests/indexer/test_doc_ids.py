"""Document ids of an index built when a file's id was its path as given: renamed
relative to the ingested root on open, in one transaction that a SIGKILL leaves
either undone or done.

The old index is a real one: files loaded by today's loaders, renamed the old way
(``<folder>/<name>``, absolute, and ``.cache/demo/sample.jsonl#n``, relative),
ingested, snapshotted, and its id-scheme mark removed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path

import pytest

from indexer import doc_ids
from indexer.index import Index
from indexer.loaders import Document, load_paths
from indexer.settings import IndexSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FILES = {
    "notes/aurora.txt": "The aurora borealis glows green over Tromso on cold clear nights in winter.",
    "notes/volcano.md": "# Volcanoes\n\nBasalt lava flows from shield volcanoes such as Mauna Loa in Hawaii.",
    "bees.txt": "Honeybees tell their sisters where pollen is with a waggle dance on the comb.",
}
RECORDS = [{"id": "rec-bread", "text": "A sourdough starter is flour and water fermented by wild yeast."},
           {"text": "A lighthouse keeper trimmed the lamp wick through every winter storm."}]
DEMO = [{"id": "medquad-1", "text": "Glaucoma damages the optic nerve and is treated with eye drops.", "focus": "Glaucoma"},
        {"text": "Pangolins curl into an armoured ball of keratin scales when threatened."}]


def old_style(docs: list[Document], prefix: str) -> list[Document]:
    """Documents named the way the loaders named them before: the path as given."""
    return [dataclasses.replace(d, doc_id=f"{prefix}/{d.doc_id}" if d.doc_id == d.source else d.doc_id,
                                source=f"{prefix}/{d.source}") for d in docs]


def rows(directory: Path) -> dict[str, str]:
    with closing(sqlite3.connect(f"file:{directory / 'index.sqlite'}?mode=ro", uri=True)) as conn:
        return dict(conn.execute("SELECT doc_id, source FROM documents").fetchall())


def meta(directory: Path) -> dict[str, str]:
    with closing(sqlite3.connect(f"file:{directory / 'index.sqlite'}?mode=ro", uri=True)) as conn:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())


@pytest.fixture()
def old_index(tmp_path: Path) -> tuple[Path, Path]:
    """An index as the old loaders left it; returns (index folder, data folder)."""
    data = tmp_path / "srv" / "data"
    for name, text in FILES.items():
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        (data / name).write_text(text, encoding="utf-8")
    (data / "faq.jsonl").write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "sample.jsonl").write_text("\n".join(json.dumps(r) for r in DEMO) + "\n")
    docs = old_style(list(load_paths([data])), data.as_posix())
    docs += old_style(list(load_paths([demo / "sample.jsonl"])), ".cache/demo")
    docs.append(Document("api/abc", "Kiwi birds cannot fly and lay very large eggs for their size.", "zoo/kiwi.txt",
                         {"format": "api"}))
    docs.append(Document("upload/notes.md", "Otters hold hands while they sleep so they do not drift apart.",
                         "upload/notes.md", {"format": "md"}))
    directory = tmp_path / "index"
    with Index.open(directory, IndexSettings()) as index:
        report = index.ingest_documents(docs)
        assert report.added == len(docs) == 9, report.skipped
    with closing(sqlite3.connect(directory / "index.sqlite")) as conn, conn:
        conn.execute("DELETE FROM meta WHERE key IN (?, ?)", (doc_ids.SCHEME_KEY, doc_ids.ROOTS_KEY))
    return directory, data


EXPECTED = {
    "notes/aurora.txt": "notes/aurora.txt", "notes/volcano.md": "notes/volcano.md", "bees.txt": "bees.txt",
    "rec-bread": "faq.jsonl#1", "faq.jsonl#2": "faq.jsonl#2",
    "medquad-1": "sample.jsonl#1", "sample.jsonl#2": "sample.jsonl#2",
    "api/abc": "zoo/kiwi.txt", "upload/notes.md": "upload/notes.md",
}


def test_open_renames_path_ids_relative_to_their_root(old_index: tuple[Path, Path]) -> None:
    directory, data = old_index
    before = rows(directory)
    assert before[f"{data.as_posix()}/bees.txt"] == f"{data.as_posix()}/bees.txt"
    assert before["medquad-1"] == ".cache/demo/sample.jsonl#1"
    with Index.open(directory) as index:
        assert rows(directory) == EXPECTED
        got = meta(directory)
        assert got[doc_ids.SCHEME_KEY] == doc_ids.RELATIVE
        assert json.loads(got[doc_ids.ROOTS_KEY]) == sorted([data.as_posix(), ".cache/demo"])
        with closing(sqlite3.connect(directory / "index.sqlite")) as conn:
            renames = doc_ids.renamed_ids(conn)
            orphans = conn.execute("SELECT count(*) FROM chunks WHERE doc_id NOT IN (SELECT doc_id FROM documents)")
            assert orphans.fetchone()[0] == 0
        assert renames[f"{data.as_posix()}/notes/volcano.md"] == "notes/volcano.md"
        assert renames[".cache/demo/sample.jsonl#2"] == "sample.jsonl#2" and "medquad-1" not in renames
        # search shows the new names only, and the LSH mirror knows them: the same files
        # ingested by today's loaders are unchanged, not new documents or duplicates
        hits = index.search("waggle dance pollen basalt lava", k=10)
        assert {h.doc_id for h in hits} >= {"bees.txt", "notes/volcano.md"}
        assert not any(str(data) in h.doc_id + h.source or ".cache" in h.source for h in hits)
        report = index.ingest([data])
        assert (report.added, report.updated, report.unchanged, report.skipped) == (0, 0, 5, [])
        near = index.ingest_documents([Document("copy", FILES["bees.txt"] + " Really.", "copy.txt", {})])
        assert near.near_duplicates == 1 and near.skipped[0][1].startswith("near duplicate of bees.txt")
        generation = index.stats()["generation"]
    with Index.open(directory) as index:  # once only
        assert rows(directory) == EXPECTED and index.stats()["generation"] == generation


def test_collisions_move_the_root_up() -> None:
    md = json.dumps({"format": "txt"})
    rows_ = [("/a/x/doc.txt", "/a/x/doc.txt", md), ("/a/y/z/doc2.txt", "/a/y/z/doc2.txt", md),
             ("x/doc.txt", "zoo", json.dumps({"format": "api"})),  # the id /a/x/doc.txt would get under /a
             ("rec", "/a/x/faq.jsonl#3", json.dumps({"format": "jsonl"}))]
    renames, roots = doc_ids.plan(rows_)
    assert renames == {"/a/x/doc.txt": ("a/x/doc.txt", "a/x/doc.txt"), "/a/y/z/doc2.txt": ("a/y/z/doc2.txt", "a/y/z/doc2.txt"),
                       "rec": ("rec", "a/x/faq.jsonl#3")}
    assert roots == ["/"]
    assert doc_ids.plan([("/a/x/doc.txt", "/a/x/doc.txt", md)]) == ({"/a/x/doc.txt": ("doc.txt", "doc.txt")}, ["/a/x"])


MIGRATE_AND_HANG = textwrap.dedent("""
    import sys, time
    from indexer import doc_ids, store
    conn = store.connect(sys.argv[1])
    seen = 0
    def trace(sql):
        global seen
        if sql.startswith("INSERT INTO doc_deletions"):
            seen += 1
            if seen == 3:  # three documents renamed inside the open transaction
                print("MID", flush=True)
                time.sleep(600)
    conn.set_trace_callback(trace)
    doc_ids.migrate(conn)
    print("DONE", flush=True)
""")


def test_a_kill_mid_migration_leaves_the_old_state(old_index: tuple[Path, Path]) -> None:
    directory, _ = old_index
    before, meta_before = rows(directory), meta(directory)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    with subprocess.Popen([sys.executable, "-c", MIGRATE_AND_HANG, str(directory / "index.sqlite")],
                          stdout=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "MID"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert rows(directory) == before and meta(directory) == meta_before  # rolled back, whole
    with Index.open(directory) as index:  # the next open migrates
        assert rows(directory) == EXPECTED
        assert [h.doc_id for h in index.search("pangolin keratin scales", k=1, mode="bm25")] == ["sample.jsonl#2"]
