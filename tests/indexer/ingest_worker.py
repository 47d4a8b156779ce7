"""Helper of ``test_index_crash.py`` (not a test): ingests generated documents
into an index and acknowledges every committed document on stdout.

    python tests/indexer/ingest_worker.py INDEX_DIR N

Prints ``ACK <doc_id>`` for each document of each committed batch (flushed
after every batch, from the ``on_commit`` callback), then ``DONE <json>`` with
the ingest report's counts. The document texts are a pure function of their
number, so a second run over the same directory finds the documents an
earlier (killed) run committed unchanged.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Short documents and chunks keep embedding fast; every eighth document has
# several chunks, so "a document is whole" means something.
CHUNK_TOKENS = 24
CHUNK_OVERLAP = 4

VOCABULARY = [
    "river", "stone", "lamp", "bread", "cloud", "horse", "paper", "glass", "field", "tower", "salt", "wind",
    "copper", "garden", "bridge", "candle", "forest", "island", "mirror", "needle", "orange", "pencil", "rabbit",
    "silver", "ticket", "violin", "wagon", "yellow", "anchor", "basket", "castle", "dragon", "engine", "feather",
    "harbor", "jacket", "kettle", "ladder", "marble", "pepper", "ribbon", "saddle", "thunder", "valley", "winter",
    "barrel", "cactus", "desert", "falcon", "ginger", "helmet", "meadow", "oyster", "parrot", "quiver", "rocket",
]


def doc_id(i: int) -> str:
    return f"gen-{i:05d}"


def doc_text(i: int) -> str:
    """A header naming the number, then random words (no two documents share
    a 5-word shingle, so none is a near duplicate of another): one chunk, or
    for every eighth document several."""
    rng = random.Random(i)
    sentences = [f"Generated record {i:05d}."]
    for _ in range(4 if i % 8 == 7 else 1):
        sentences.append(" ".join(rng.choice(VOCABULARY) for _ in range(7)).capitalize() + ".")
    return " ".join(sentences)


def documents(n: int):
    from indexer.loaders import Document

    for i in range(n):
        yield Document(doc_id(i), doc_text(i), f"generated/{i:05d}.txt", {"n": i})


def settings():
    from indexer.settings import IndexSettings

    return IndexSettings(chunk_tokens=CHUNK_TOKENS, chunk_overlap=CHUNK_OVERLAP)


def main(argv: list[str]) -> int:
    directory, n = Path(argv[1]), int(argv[2])
    sys.path.insert(0, str(REPO))
    from indexer.index import Index

    def ack(ids: list[str]) -> None:
        sys.stdout.write("".join(f"ACK {i}\n" for i in ids))
        sys.stdout.flush()

    with Index.open(directory, settings()) as index:
        print("OPEN", flush=True)
        report = index.ingest_documents(documents(n), on_commit=ack)
    counts = {k: getattr(report, k) for k in ("added", "updated", "unchanged", "exact_duplicates",
                                              "near_duplicates", "chunks")}
    counts["skipped"] = report.skipped
    print("DONE " + json.dumps(counts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
