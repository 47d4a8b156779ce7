"""Where the real domain data lives, and small readers for it.

The data is read in place, never copied into the repository. Its folder is
``$SHARED_DATA_DIR`` or, by default, ``../shared/data`` beside the checkout.

    python -m indexer.shared_data medquad OUT.jsonl   # one JSON line per answer
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

ENV_DATA_DIR = "SHARED_DATA_DIR"
REPO_ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get(ENV_DATA_DIR) or REPO_ROOT.parent / "shared" / "data")


def medquad_path() -> Path:
    return data_dir() / "medquad" / "medquad.jsonl.gz"


def iter_medquad() -> Iterator[dict[str, str]]:
    """MedQuAD records: ``id, source, url, focus, qtype, question, answer``."""
    path = medquad_path()
    if not path.is_file():
        raise FileNotFoundError(f"MedQuAD not found at {path}; set {ENV_DATA_DIR} to the shared data folder")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def write_medquad_answers(out: Path) -> int:
    """Writes one ``{"id", "text", "question", "source", "focus", "medquad_id"}`` line per
    answer. MedQuAD's own ids repeat across its source sites, so ``id`` is
    ``medquad-<record number>``: unique and stable for the file."""
    n = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for n, r in enumerate(iter_medquad(), start=1):
            f.write(json.dumps({"id": f"medquad-{n}", "text": r["answer"], "question": r["question"],
                                "source": r["source"], "focus": r["focus"], "medquad_id": r["id"]}) + "\n")
    return n


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "medquad":
        print(__doc__, file=sys.stderr)
        return 2
    n = write_medquad_answers(Path(argv[1]))
    print(f"wrote {n} MedQuAD answers to {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
