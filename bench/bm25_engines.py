"""BM25 engines at scale (issue 17, item 4): SQLite FTS5 against the in-memory
tantivy mirror (:mod:`indexer.keywords`), on one index, same queries, same run.

Run::

    .venv/bin/python bench/bm25_engines.py           # 100k chunks, 200 MedQuAD questions
    .venv/bin/python bench/bm25_engines.py --quick   # 20k chunks, 50 questions
    .venv/bin/python bench/bm25_engines.py --vector-index hnsw   # the dense side from HNSW, not flat

The index is bench/index_bench.py's latency index (MedQuAD answer texts cycled
under new ids, random unit vectors, flat FAISS or with ``--vector-index hnsw``
HNSW). Two parts:

1. Engines alone, top-50 (a search's BM25 depth): FTS5's SQL, the tantivy
   mirror, and bm25s (pure Python over scipy; measured only when installed: it
   has no incremental add, so it would be rebuilt after every commit).
2. ``Index.search`` top-10, hybrid and bm25, with ``keyword_engine`` fts5 and
   tantivy: two index objects on the same directory, queried in turn (query
   by query, engine by engine) so that load on this shared machine hits both
   alike. Also the mirror's build time (the first keyword search) and the
   Python heap it adds.

The retrieval quality of the two engines is measured by ``indexer eval``
(see BENCHMARKS.md for the commands).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import env_info, env_markdown, md_table, parse_args, write_results  # noqa: E402
from index_bench import build_scale_index  # noqa: E402

from indexer import shared_data, store  # noqa: E402
from indexer.index import Index  # noqa: E402
from indexer.keywords import KeywordIndex  # noqa: E402
from indexer.search import SearchFilter, query_words  # noqa: E402

DEPTH = 50  # Index.search's BM25 depth for k = 10


def percentiles(lat: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)), "queries": len(lat)}


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def timed(fn, questions: list[str]) -> list[float]:
    out = []
    for q in questions:
        t0 = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def bm25s_engine(conn) -> tuple[float, object] | None:
    """bm25s over the same chunk texts (Porter stemmer, FTS5's IDF), or None when not installed."""
    try:
        import bm25s
        import Stemmer
    except ImportError:
        return None
    stemmer = Stemmer.Stemmer("porter")
    texts = [t for rows in store.keyword_texts_after(conn, 0, 20_000) for _, t in rows]
    t0 = time.perf_counter()
    retriever = bm25s.BM25(method="robertson", k1=1.2, b=0.75)
    retriever.index(bm25s.tokenize(texts, stopwords=None, stemmer=stemmer, show_progress=False), show_progress=False)
    build_s = time.perf_counter() - t0

    def search(q: str) -> object:
        tokens = bm25s.tokenize([" ".join(query_words(q))], stopwords=None, stemmer=stemmer, show_progress=False,
                                return_ids=False)
        return retriever.retrieve(tokens, k=DEPTH, show_progress=False, n_threads=1)

    return build_s, search


def engines_alone(conn, questions: list[str]) -> dict:
    rss, t0 = resident_bytes(), time.perf_counter()
    mirror = KeywordIndex.build(conn)
    out: dict = {"tantivy_build_s": time.perf_counter() - t0, "tantivy_rss_bytes": resident_bytes() - rss}
    with store.read_snapshot(conn):
        out["fts5"] = percentiles(timed(lambda q: store.bm25_ranking(conn, q, DEPTH, SearchFilter()), questions))
    out["tantivy"] = percentiles(timed(lambda q: mirror.search(q, DEPTH), questions))
    found = bm25s_engine(conn)
    if found is not None:
        out["bm25s_build_s"], search = found
        out["bm25s"] = percentiles(timed(search, questions))
    return out


def through_the_index(directory: Path, questions: list[str]) -> dict:
    tantivy = Index.open(directory)
    fts5 = Index.open(directory, dataclasses.replace(tantivy.settings, keyword_engine="fts5"))
    out: dict = {}
    try:
        fts5.search("warm up", k=10)
        t0 = time.perf_counter()
        tantivy.search("warm up", k=10)  # builds the mirror from SQLite
        out["first_search_s"] = time.perf_counter() - t0
        embedding: list[float] = []
        lat: dict[str, list[float]] = {f"{e}/{m}": [] for e in ("fts5", "tantivy") for m in ("hybrid", "bm25", "dense")}
        for q in questions:
            for mode in ("hybrid", "bm25", "dense"):
                for engine, index in (("fts5", fts5), ("tantivy", tantivy)):
                    t0 = time.perf_counter()
                    index.search(q, k=10, mode=mode)  # type: ignore[arg-type]
                    lat[f"{engine}/{mode}"].append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            tantivy.embedder.embed_query(q)  # what hybrid embeds with: the floor of its time
            embedding.append((time.perf_counter() - t0) * 1000)
        out.update({key: percentiles(v) for key, v in lat.items()})
        out["query_embedding"] = percentiles(embedding)
        # texts, not ids: each text is stored many times over, and tied copies come in either order
        overlap = [len({h.text for h in fts5.search(q, k=10, mode="bm25")} & {h.text for h in tantivy.search(q, k=10, mode="bm25")})
                   / max(1, len({h.text for h in fts5.search(q, k=10, mode="bm25")})) for q in questions]
        out["bm25_top10_text_overlap"] = float(np.mean(overlap))
    finally:
        fts5.close()
        tantivy.close()
    return out


def main() -> None:
    args = parse_args(__doc__, extra={"--vector-index": {"choices": ["flat", "hnsw"], "default": "flat",
                                                         "help": "the FAISS index the dense side searches"}})
    kind = args.vector_index
    n_chunks, n_queries = (20_000, 50) if args.quick else (100_000, 200)
    questions = [r["question"] for r in shared_data.iter_medquad()][::7][:n_queries]
    with tempfile.TemporaryDirectory() as tmp:
        print(f"building a {n_chunks:,}-chunk index ...", file=sys.stderr)
        build_scale_index(Path(tmp), n_chunks, 384, np.random.default_rng(7), kind).close()
        index = Index.open(tmp)
        try:
            alone = engines_alone(index._reader(), questions)
        finally:
            index.close()
        searched = through_the_index(Path(tmp), questions)
    engines = [e for e in ("fts5", "tantivy", "bm25s") if e in alone]
    t_alone = md_table(["engine", "p50 ms", "p95 ms", "× FTS5 p50", "built in s"], [
        [e, alone[e]["p50_ms"], alone[e]["p95_ms"], alone["fts5"]["p50_ms"] / alone[e]["p50_ms"],
         alone.get(f"{e}_build_s")] for e in engines])
    t_index = md_table(["mode", "FTS5 p50 ms", "FTS5 p95 ms", "tantivy p50 ms", "tantivy p95 ms", "p50 ratio"], [
        [m, searched[f"fts5/{m}"]["p50_ms"], searched[f"fts5/{m}"]["p95_ms"], searched[f"tantivy/{m}"]["p50_ms"],
         searched[f"tantivy/{m}"]["p95_ms"], searched[f"fts5/{m}"]["p50_ms"] / searched[f"tantivy/{m}"]["p50_ms"]]
        for m in ("hybrid", "bm25", "dense")])
    hybrid = searched["tantivy/hybrid"]
    ok = hybrid["p50_ms"] <= 20 and hybrid["p95_ms"] <= 40
    md = "\n\n".join([
        f"### BM25 engines (`.venv/bin/python bench/bm25_engines.py{' --quick' if args.quick else ''}"
        f"{' --vector-index hnsw' if kind == 'hnsw' else ''}`)",
        f"Environment: {env_markdown(env_info())}",
        f"**Engines alone**, top-{DEPTH} at {n_chunks:,} chunks, {n_queries} MedQuAD questions (same queries, same run):",
        t_alone,
        f"**`Index.search` top-10** at {n_chunks:,} chunks ({kind} FAISS, score fusion), the two engines queried in turn. "
        f"Target hybrid p50 ≤ 20 ms and p95 ≤ 40 ms with tantivy: {'PASS' if ok else 'FAIL'}. The mirror was built by "
        f"the first keyword search in {searched['first_search_s']:.1f} s (resident memory +"
        f"{alone['tantivy_rss_bytes'] / 2**20:.0f} MiB when built alone); of the distinct texts in FTS5's BM25 top-10, "
        f"{searched['bm25_top10_text_overlap']:.1%} are in tantivy's (mean over the questions). The query embedding "
        f"alone (one torch thread, as hybrid embeds): p50 {searched['query_embedding']['p50_ms']:.1f} ms, "
        f"p95 {searched['query_embedding']['p95_ms']:.1f} ms.", t_index,
    ])
    print(md)
    write_results("bm25_engines" + ("-hnsw" if kind == "hnsw" else ""),
                  {"chunks": n_chunks, "vector_index": kind, "engines_alone": alone, "index_search": searched}, md)


if __name__ == "__main__":
    main()
