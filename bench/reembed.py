"""Re-embedding an index (issue 16, item 2): ``indexer.reembed.reembed`` against the raw
encode speed of the same model on the same chunk texts, in the same run.

Run::

    .venv/bin/python bench/reembed.py           # ~2,000 MedQuAD chunks, each peer 3 times (~10 min)
    .venv/bin/python bench/reembed.py --quick   # ~300 chunks, each peer twice (~2 min)

Setup (not timed): a fresh index of MedQuAD answers with the bundled embedder. Then, in
alternating order:

- ``raw encode``: ``Embedder.embed`` over every chunk's text in one call, the model loaded;
- ``reembed``: ``reembed(copy of the index, bundled model, force=True)`` on a fresh copy of
  the index, timed whole: loading the model, staging in committed groups, the switch, and
  rebuilding and saving the FAISS side. The same model is used (forced), so both peers do
  the same arithmetic; any other model of its size costs the same.

What must hold (the issue's target): re-embedding runs at ≥ 0.8× raw encode speed.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import env_info, env_markdown, md_table, parse_args, write_results  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from indexer import shared_data  # noqa: E402
from indexer.embedder import Embedder  # noqa: E402
from indexer.index import Index  # noqa: E402
from indexer.loaders import Document  # noqa: E402
from indexer.reembed import reembed  # noqa: E402
from indexer.settings import BUNDLED_MODEL, IndexSettings  # noqa: E402


def build_index(directory: Path, chunks_wanted: int) -> list[str]:
    """A fresh index of distinct MedQuAD answers with about ``chunks_wanted`` chunks; returns their texts."""
    docs, seen = [], set()
    for record in shared_data.iter_medquad():
        if record["answer"] not in seen:
            seen.add(record["answer"])
            docs.append(Document(f"medquad-{len(docs)}", record["answer"], f"medquad-{len(docs)}.txt", {}))
        if len(docs) >= chunks_wanted // 3:  # MedQuAD answers average ~3 chunks of 200 tokens
            break
    with Index.open(directory, IndexSettings(near_duplicates="keep")) as index:
        index.ingest_documents(docs)
        index.save_snapshots()
    with closing(sqlite3.connect(directory / "index.sqlite")) as conn:
        return [t for (t,) in conn.execute(
            'SELECT substr(d.text, c.start + 1, c."end" - c.start) FROM chunks c JOIN documents d USING (doc_id) '
            "ORDER BY c.chunk_id")]


def main() -> None:
    args = parse_args(__doc__)
    chunks_wanted, rounds = (300, 2) if args.quick else (2000, 3)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "index"
        print("building the index ...", file=sys.stderr)
        texts = build_index(source, chunks_wanted)
        embedder = Embedder(BUNDLED_MODEL)
        embedder.embed(texts[:64])  # warm-up
        raw, whole, encode = [], [], []
        for round_ in range(rounds):
            order = ("raw", "reembed") if round_ % 2 == 0 else ("reembed", "raw")
            for peer in order:
                print(f"round {round_ + 1}: {peer} ...", file=sys.stderr)
                if peer == "raw":
                    began = time.perf_counter()
                    embedder.embed(texts)
                    raw.append(time.perf_counter() - began)
                else:
                    copy = Path(tmp) / f"copy-{round_}"
                    shutil.copytree(source, copy)
                    report = reembed(copy, BUNDLED_MODEL, force=True, progress=False)
                    assert report.chunks == len(texts) and report.embedded == len(texts)
                    whole.append(report.seconds)
                    encode.append(report.embed_seconds)
                    shutil.rmtree(copy)
    n = len(texts)
    raw_rate, whole_rate = n / statistics.median(raw), n / statistics.median(whole)
    ratio = whole_rate / raw_rate
    rows = [
        ["raw encode (model loaded, one call)", f"{statistics.median(raw):.1f} s", f"{raw_rate:.1f}", "1.00",
         ", ".join(f"{s:.1f}" for s in raw)],
        ["reembed, whole (model load, staging, switch, FAISS)", f"{statistics.median(whole):.1f} s",
         f"{whole_rate:.1f}", f"{ratio:.2f}", ", ".join(f"{s:.1f}" for s in whole)],
        ["of which encode calls", f"{statistics.median(encode):.1f} s", f"{n / statistics.median(encode):.1f}",
         f"{statistics.median(raw) / statistics.median(encode):.2f}", ", ".join(f"{s:.1f}" for s in encode)],
    ]
    verdict = "PASS" if ratio >= 0.8 else "FAIL"
    markdown = "\n\n".join([
        f"# Re-embedding {n:,} chunks (bundled all-MiniLM-L6-v2, 200-token chunks)",
        md_table(["peer", "median time", "chunks/s", "speed vs raw", "runs"], rows),
        f"Target: re-embedding at ≥ 0.8× raw encode speed: {ratio:.2f}× — **{verdict}**.",
        env_markdown(env_info())])
    write_results("reembed" + ("-quick" if args.quick else ""),
                  {"chunks": n, "raw_s": raw, "reembed_s": whole, "encode_s": encode, "ratio": ratio}, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
