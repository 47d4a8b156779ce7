"""Memory and time of ingesting one large document (issue 18): MedQuAD answers joined into
one text of N MB, ingested into a fresh index with ``Index.ingest_documents``, the
process's resident memory sampled every 50 ms. Each run is a fresh process, so what one
run kept does not count in the next.

Two peers on the same document, in alternating order:

- ``before``: the freed memory is not handed back between embedding groups;
- ``after``: it is (``indexer.memory.give_back_free_memory`` after each group), as ingest does.

Run::

    .venv/bin/python bench/large_document.py            # 2 and 6 MB, each peer twice
    .venv/bin/python bench/large_document.py --quick    # 0.5 MB, each peer once

What must hold: memory kept after ingest and its peak do not grow with the document's size.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import env_info, env_markdown, md_table, parse_args, write_results  # noqa: E402

from indexer import shared_data  # noqa: E402


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _document_text(megabytes: float) -> str:
    parts, size, seen = [], 0, set()
    for r in shared_data.iter_medquad():
        if r["answer"] in seen:
            continue
        seen.add(r["answer"])
        parts.append(r["answer"])
        size += len(r["answer"]) + 2
        if size >= megabytes * 1_000_000:
            break
    return "\n\n".join(parts)


def one_run(megabytes: float, peer: str) -> dict:
    """In this process: open a fresh index (the embedder loads), then ingest the document."""
    import indexer.ingest
    from indexer.index import Index
    from indexer.loaders import Document

    if peer == "before":
        indexer.ingest.give_back_free_memory = lambda: False
    text = _document_text(megabytes)
    with tempfile.TemporaryDirectory() as tmp, Index.open(Path(tmp) / "index") as index:
        index.embedder.embed(["warm-up"])
        start = _rss_mb()
        peak, done = [start], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss_mb())
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        report = index.ingest_documents([Document("large", text, "large.txt", {})])
        seconds = time.perf_counter() - t0
        done.set()
        sampler.join()
        return {"megabytes": megabytes, "peer": peer, "chars": len(text), "chunks": report.chunks,
                "seconds": seconds, "start_mb": start, "kept_mb": _rss_mb() - start, "peak_mb": peak[0] - start}


def main() -> None:
    args = parse_args(__doc__, extra={"--one": {"nargs": 2, "help": "internal: MB and peer of one run"}})
    if args.one:
        print(json.dumps(one_run(float(args.one[0]), args.one[1])))
        return
    sizes, repeats = ([0.5], 1) if args.quick else ([2.0, 6.0], 2)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    runs = []
    for size in sizes:
        for i in range(repeats):
            for peer in (("before", "after") if i % 2 == 0 else ("after", "before")):
                print(f"{size} MB, {peer} ...", file=sys.stderr)
                out = subprocess.run([sys.executable, __file__, "--one", str(size), peer], env=env,
                                     check=True, capture_output=True, text=True).stdout
                runs.append(json.loads(out.strip().splitlines()[-1]))
    rows = []
    for size in sizes:
        for peer in ("before", "after"):
            mine = [r for r in runs if r["megabytes"] == size and r["peer"] == peer]
            rows.append([f"{size:g} MB ({mine[0]['chunks']} chunks)", peer,
                         f"{statistics.median(r['seconds'] for r in mine):.0f} s",
                         f"+{statistics.median(r['kept_mb'] for r in mine):.0f} MB",
                         f"+{statistics.median(r['peak_mb'] for r in mine):.0f} MB", len(mine)])
    markdown = "\n\n".join([
        "# One large document: memory while ingesting",
        md_table(["document", "peer", "time (median)", "RSS kept after (median)", "peak over start (median)", "runs"],
                 rows),
        "before: freed memory not handed back between embedding groups; after: handed back (ingest's default).",
        env_markdown(env_info())])
    write_results("large_document", {"runs": runs}, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
