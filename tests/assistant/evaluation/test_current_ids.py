"""An evaluation set written when the index named files by their server path scores
against the index that renamed them: its gold ``doc_ids`` follow the renames."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from assistant.evaluation.sets import EvalItem, current_ids
from indexer import doc_ids
from indexer.index import Index
from indexer.loaders import Document
from indexer.settings import IndexSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_old_gold_ids_follow_the_rename(tmp_path: Path) -> None:
    directory = tmp_path / "index"
    with Index.open(directory, IndexSettings()) as index:
        index.ingest_documents([
            Document("/srv/data/eyes/glaucoma.txt", "Glaucoma damages the optic nerve of the eye.",
                     "/srv/data/eyes/glaucoma.txt", {"format": "txt"}),
            Document("/srv/data/heart.md", "Hypertension raises the risk of stroke and heart disease.",
                     "/srv/data/heart.md", {"format": "md"}),
            Document("kept-1", "Pangolins eat ants and termites.", "api-source", {"format": "api"}),
        ])
    with closing(sqlite3.connect(directory / "index.sqlite")) as conn, conn:  # as an index built before the rename
        conn.execute("DELETE FROM meta WHERE key = ?", (doc_ids.SCHEME_KEY,))
    items = [EvalItem("q1", "What does glaucoma damage?", "the optic nerve", "free", ("/srv/data/eyes/glaucoma.txt",)),
             EvalItem("q2", "What do pangolins eat?", "ants", "free", ("kept-1", "nowhere"))]
    with Index.open(directory) as index:
        assert index.renamed_ids() == {"/srv/data/eyes/glaucoma.txt": "eyes/glaucoma.txt",
                                       "/srv/data/heart.md": "heart.md"}
        now = current_ids(items, index)
        assert [i.doc_ids for i in now] == [("eyes/glaucoma.txt",), ("kept-1", "nowhere")]
        assert index.search("optic nerve glaucoma", k=1)[0].doc_id in now[0].doc_ids
    assert current_ids(items, object()) == items  # no index of ours: as they are
