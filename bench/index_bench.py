"""Index benchmarks: ingest throughput against the raw embedding speed, and
search latency at scale.

Run::

    .venv/bin/python bench/index_bench.py            # 400 MedQuAD answers; 100k-chunk latency index
    .venv/bin/python bench/index_bench.py --quick    # 100 answers; 20k chunks

1. Ingest: ``Index.ingest_documents`` end to end (normalize, dedup, chunk,
   embed, store, snapshot) into a fresh index, in chunks/s, against
   ``SentenceTransformer.encode`` on exactly the chunk texts the ingest stored,
   same model, batch size and thread count, in the same run (target ≥ 0.8×).
2. Latency: an index of synthetic scale — MedQuAD chunk texts repeated under new
   ids for the keyword index, random unit vectors for FAISS (the issue allows
   synthetic vectors for scale) — searched with real MedQuAD questions: p50 and
   p95 of hybrid, dense and BM25 top-10 (target: hybrid p50 ≤ 20 ms), and the
   disk and vector memory per chunk.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import env_info, env_markdown, md_table, parse_args, write_results  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from indexer import shared_data, store  # noqa: E402
from indexer.index import Index  # noqa: E402
from indexer.loaders import Document  # noqa: E402


def medquad_docs(n: int) -> list[Document]:
    out, seen = [], set()
    for r in shared_data.iter_medquad():
        if r["answer"] in seen:
            continue
        seen.add(r["answer"])
        out.append(Document(doc_id=f"{r['source']}:{r['id']}", text=r["answer"], source=r["url"], metadata={"focus": r["focus"]}))
        if len(out) == n:
            break
    return out


def bench_ingest(n_docs: int) -> dict:
    docs = medquad_docs(n_docs)
    with tempfile.TemporaryDirectory() as tmp:
        index = Index.open(tmp)
        embedder = index.embedder  # load the model before timing, as a server would
        t0 = time.perf_counter()
        report = index.ingest_documents(docs)
        ingest_s = time.perf_counter() - t0
        conn = index._reader()
        texts = [r[0] for r in conn.execute(
            'SELECT substr(d.text, c.start + 1, c."end" - c.start) FROM chunks c JOIN documents d USING (doc_id)'
            " ORDER BY c.chunk_id")]
        runs = []
        for _ in range(2):
            t0 = time.perf_counter()
            embedder.embed(texts)
            runs.append(time.perf_counter() - t0)
        encode_s = statistics.median(runs)
        index.close()
    return {"docs": len(docs), "chunks": len(texts), "ingest_s": ingest_s, "encode_s": encode_s,
            "ingest_chunks_per_s": len(texts) / ingest_s, "encode_chunks_per_s": len(texts) / encode_s,
            "ratio": encode_s / ingest_s, "skipped": len(report.skipped)}


def build_scale_index(directory: Path, n_chunks: int, dim: int, rng: np.random.Generator) -> Index:
    """Stores ``n_chunks`` one-chunk documents directly (no embedding): MedQuAD
    answer texts (first 1,000 characters) cycled, random unit vectors."""
    index = Index.open(directory)
    texts = [d.text[:1000] for d in medquad_docs(5000)]
    conn = index._conn
    batch = 5000
    for start in range(0, n_chunks, batch):
        vecs = rng.standard_normal((min(batch, n_chunks - start), dim)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        with store.transaction(conn):
            gen = store.next_generation(conn)
            for j, vec in enumerate(vecs):
                i = start + j
                text = texts[i % len(texts)]
                store.insert_document(conn, store.NewDocument(
                    doc_id=f"doc-{i}", source=f"synthetic/{i % 100}", content_hash=f"h{i}", text=text,
                    metadata={}, tags=[], spans=[(0, len(text))], vectors=vec[None, :]), gen)
    index._catch_up()
    index.save_snapshots()
    return index


def bench_latency(n_chunks: int, n_queries: int) -> dict:
    rng = np.random.default_rng(7)
    questions = [r["question"] for r in shared_data.iter_medquad()][:: 7][:n_queries]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        index = build_scale_index(Path(tmp), n_chunks, 384, rng)
        build_s = time.perf_counter() - t0
        index.close()
        t0 = time.perf_counter()
        index = Index.open(tmp)  # reopen: loads the snapshot as a server would
        open_s = time.perf_counter() - t0
        index.search("warm up", k=10)
        out: dict = {"chunks": n_chunks, "build_s": build_s, "open_s": open_s}
        for mode in ("hybrid", "dense", "bm25"):
            lat = []
            for q in questions:
                t0 = time.perf_counter()
                index.search(q, k=10, mode=mode)  # type: ignore[arg-type]
                lat.append((time.perf_counter() - t0) * 1000)
            out[mode] = {"p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
                         "queries": len(lat)}
        t0 = time.perf_counter()
        for q in questions:
            index.embedder.embed([q])
        out["query_embedding_ms"] = (time.perf_counter() - t0) * 1000 / len(questions)
        disk = sum(p.stat().st_size for p in Path(tmp).iterdir() if p.is_file())
        out["disk_bytes_per_chunk"] = disk / n_chunks
        out["vector_bytes_per_chunk"] = 384 * 4 + 8  # float32 vector + int64 id in IndexIDMap2
        index.close()
    return out


def main() -> None:
    args = parse_args(__doc__)
    n_docs, n_chunks, n_queries = (100, 20_000, 50) if args.quick else (400, 100_000, 200)
    print("ingest ...", file=sys.stderr)
    ing = bench_ingest(n_docs)
    print("latency ...", file=sys.stderr)
    lat = bench_latency(n_chunks, n_queries)
    env = env_info()
    t_ing = md_table(["pipeline", "docs", "chunks", "seconds", "chunks/s", "× raw encode"], [
        ["Index.ingest_documents (normalize, dedup, chunk, embed, store)", ing["docs"], ing["chunks"],
         ing["ingest_s"], ing["ingest_chunks_per_s"], ing["ratio"]],
        ["SentenceTransformer.encode on the same chunks (median of 2)", None, ing["chunks"], ing["encode_s"],
         ing["encode_chunks_per_s"], 1.0],
    ])
    t_lat = md_table(["mode", "p50 ms", "p95 ms", "queries"],
                     [[m, lat[m]["p50_ms"], lat[m]["p95_ms"], lat[m]["queries"]] for m in ("hybrid", "dense", "bm25")])
    pass_ing = "PASS" if ing["ratio"] >= 0.8 else "FAIL"
    pass_lat = "PASS" if lat["hybrid"]["p50_ms"] <= 20 else "FAIL"
    md = "\n\n".join([
        f"### Index: ingest and search latency (`.venv/bin/python bench/index_bench.py{' --quick' if args.quick else ''}`)",
        f"Environment: {env_markdown(env)}",
        f"**Ingest** ({ing['docs']} distinct MedQuAD answers, all-MiniLM-L6-v2 on CPU, chunks of 200 tokens"
        f" with 32 overlap). Target ≥ 0.8× raw encode: {pass_ing}.", t_ing,
        f"**Search latency** at {lat['chunks']:,} chunks (flat inner-product index, FTS5 BM25, RRF), "
        f"{n_queries} MedQuAD questions, top-10; query embedding alone {lat['query_embedding_ms']:.1f} ms. "
        f"Target hybrid p50 ≤ 20 ms: {pass_lat}. Built in {lat['build_s']:.0f} s, reopened in {lat['open_s']:.2f} s; "
        f"disk {lat['disk_bytes_per_chunk']:,.0f} bytes per chunk, vectors {lat['vector_bytes_per_chunk']} bytes per "
        "chunk in memory.", t_lat,
    ])
    print(md)
    write_results("index_bench", {"ingest": ing, "latency": lat}, md)


if __name__ == "__main__":
    main()
