"""Index benchmarks: ingest throughput against the raw embedding speed, and
search latency at scale.

Run::

    .venv/bin/python bench/index_bench.py            # 400 MedQuAD answers; 100k-chunk latency index
    .venv/bin/python bench/index_bench.py --quick    # 100 answers; 20k chunks; HNSW at 100k

3. HNSW at 1M vectors: recall@10 against exact search, build time, latency and
   bytes per vector, on clustered synthetic vectors.

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

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT_DIR, env_info, env_markdown, md_table, parse_args, write_results  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from indexer import shared_data, store  # noqa: E402
from indexer.index import Index  # noqa: E402
from indexer.loaders import Document  # noqa: E402
from indexer.settings import IndexSettings  # noqa: E402
from indexer.vectors import VectorIndex  # noqa: E402


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


def build_scale_index(directory: Path, n_chunks: int, dim: int, rng: np.random.Generator,
                      vector_index: str = "flat") -> Index:
    """Stores ``n_chunks`` one-chunk documents directly (no embedding): MedQuAD
    answer texts (first 1,000 characters) cycled, random unit vectors."""
    index = Index.open(directory, IndexSettings(vector_index=vector_index))  # type: ignore[arg-type]
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


def bench_latency(n_chunks: int, n_queries: int, vector_index: str) -> dict:
    rng = np.random.default_rng(7)
    questions = [r["question"] for r in shared_data.iter_medquad()][:: 7][:n_queries]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        index = build_scale_index(Path(tmp), n_chunks, 384, rng, vector_index)
        build_s = time.perf_counter() - t0
        index.close()
        t0 = time.perf_counter()
        index = Index.open(tmp)  # reopen: loads the snapshot as a server would
        open_s = time.perf_counter() - t0
        index.search("warm up", k=10)
        out: dict = {"chunks": n_chunks, "vector_index": vector_index, "build_s": build_s, "open_s": open_s}
        for mode in ("hybrid", "dense", "bm25"):
            lat = []
            for q in questions:
                t0 = time.perf_counter()
                index.search(q, k=10, mode=mode)  # type: ignore[arg-type]
                lat.append((time.perf_counter() - t0) * 1000)
            out[mode] = {"p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
                         "queries": len(lat)}
        lat = []
        for q in questions:
            t0 = time.perf_counter()
            index.embedder.embed([q])
            lat.append((time.perf_counter() - t0) * 1000)
        out["query_embedding_ms"] = float(np.median(lat))
        disk = sum(p.stat().st_size for p in Path(tmp).iterdir() if p.is_file())
        out["disk_bytes_per_chunk"] = disk / n_chunks
        index.close()
    return out


def clustered_unit_vectors(n: int, dim: int, rng: np.random.Generator, clusters: int = 10_000) -> np.ndarray:
    """Unit vectors around random topic centres: sentence embeddings cluster by
    topic, unlike uniform random vectors (a worst case no real corpus has)."""
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = centres[rng.integers(0, clusters, m)] + rng.standard_normal((m, dim)).astype(np.float32) * 0.05
        out[start:start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def bench_ann(n: int, n_queries: int = 1000, dim: int = 384) -> dict:
    """Our HNSW setting (``vectors.VectorIndex("hnsw")``) against exact search
    on the same clustered vectors: recall@10, build time, latency, memory."""
    import faiss

    rng = np.random.default_rng(11)
    data = clustered_unit_vectors(n + n_queries, dim, rng)
    base, queries = data[:n], data[n:]
    exact = faiss.IndexFlatIP(dim)
    exact.add(base)
    _, truth = exact.search(queries, 10)
    del exact
    hnsw = VectorIndex(dim, "hnsw")
    t0 = time.perf_counter()
    for start in range(0, n, 50_000):
        hnsw.add(np.arange(start, min(n, start + 50_000), dtype=np.int64), base[start:start + 50_000])
    build_s = time.perf_counter() - t0
    lat, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        _, ids = hnsw.search(q[None, :], 10)
        lat.append((time.perf_counter() - t0) * 1000)
        found.append(ids[0])
    recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "h.faiss"
        faiss.write_index(hnsw.index, str(path))
        size = path.stat().st_size
    return {"vectors": n, "recall_at_10": recall, "build_s": build_s, "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)), "bytes_per_vector": size / n, "flat_bytes_per_vector": dim * 4 + 8}


def main() -> None:
    args = parse_args(__doc__, extra={"--parts": {"nargs": "*", "default": ["ingest", "latency", "ann"],
                                                  "choices": ["ingest", "latency", "ann"],
                                                  "help": "run only these parts (the others are read from the last results)"}})
    n_docs, n_chunks, n_queries, n_ann = (100, 20_000, 50, 100_000) if args.quick else (400, 100_000, 200, 1_000_000)
    last_path = OUT_DIR / ("index_bench-quick.json" if args.quick else "index_bench.json")
    last = json.loads(last_path.read_text())["results"] if last_path.is_file() else {}
    if "ingest" in args.parts or "ingest" not in last:
        print("ingest ...", file=sys.stderr)
        ing = bench_ingest(n_docs)
    else:
        ing = last["ingest"]
    lat = last.get("latency", {})
    if "latency" in args.parts or not lat:
        for kind in ("flat", "hnsw"):
            print(f"latency ({kind}) ...", file=sys.stderr)
            lat[kind] = bench_latency(n_chunks, n_queries, kind)
    if "ann" in args.parts or "ann" not in last:
        print(f"HNSW at {n_ann:,} vectors ...", file=sys.stderr)
        ann = bench_ann(n_ann)
    else:
        ann = last["ann"]
    env = env_info()
    t_ing = md_table(["pipeline", "docs", "chunks", "seconds", "chunks/s", "× raw encode"], [
        ["Index.ingest_documents (normalize, dedup, chunk, embed, store)", ing["docs"], ing["chunks"],
         ing["ingest_s"], ing["ingest_chunks_per_s"], ing["ratio"]],
        ["SentenceTransformer.encode on the same chunks (median of 2)", None, ing["chunks"], ing["encode_s"],
         ing["encode_chunks_per_s"], 1.0],
    ])
    t_lat = md_table(["vector index", "mode", "p50 ms", "p95 ms", "queries"],
                     [[kind, m, lat[kind][m]["p50_ms"], lat[kind][m]["p95_ms"], lat[kind][m]["queries"]]
                      for kind in lat for m in ("hybrid", "dense", "bm25")])
    t_ann = md_table(["vectors", "recall@10 vs exact", "build s", "p50 ms", "p95 ms", "bytes per vector (HNSW)",
                      "bytes per vector (flat)"],
                     [[ann["vectors"], ann["recall_at_10"], ann["build_s"], ann["p50_ms"], ann["p95_ms"],
                       ann["bytes_per_vector"], ann["flat_bytes_per_vector"]]])
    best = min(lat[k]["hybrid"]["p50_ms"] for k in lat)
    pass_ing = "PASS" if ing["ratio"] >= 0.8 else "FAIL"
    pass_lat = "PASS" if best <= 20 else "FAIL"
    pass_ann = "PASS" if ann["recall_at_10"] >= 0.95 else "FAIL"
    flat = lat["flat"]
    md = "\n\n".join([
        f"### Index: ingest and search latency (`.venv/bin/python bench/index_bench.py{' --quick' if args.quick else ''}`)",
        f"Environment: {env_markdown(env)}",
        f"**Ingest** ({ing['docs']} distinct MedQuAD answers, all-MiniLM-L6-v2 on CPU, chunks of 200 tokens"
        f" with 32 overlap). Target ≥ 0.8× raw encode: {pass_ing}.", t_ing,
        f"**Search latency** at {n_chunks:,} chunks (FTS5 BM25, score fusion), {n_queries} MedQuAD questions, "
        f"top-10; query embedding alone {flat['query_embedding_ms']:.1f} ms (median). Target hybrid p50 ≤ 20 ms: "
        f"{pass_lat}. Flat index built in {flat['build_s']:.0f} s, HNSW in {lat['hnsw']['build_s']:.0f} s; "
        f"disk {flat['disk_bytes_per_chunk']:,.0f} bytes per chunk (flat).", t_lat,
        f"**HNSW at scale** (M = 32, efConstruction 80, efSearch 128; clustered synthetic unit vectors, 384-d; "
        f"1,000 queries from the same distribution; exact top-10 from a flat index). Target recall@10 ≥ 0.95: "
        f"{pass_ann}.", t_ann,
    ])
    print(md)
    write_results("index_bench", {"ingest": ing, "latency": lat, "ann": ann}, md)


if __name__ == "__main__":
    main()
