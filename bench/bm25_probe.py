"""Probe (not kept): BM25 top-50 latency of FTS5, tantivy and bm25s at 100k chunks, same queries."""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import index_bench  # noqa: E402
from indexer import shared_data, store  # noqa: E402
from indexer.search import STOPWORDS, WORD, SearchFilter  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
DEPTH = 50


def pct(lat):
    return f"p50 {np.percentile(lat, 50):.2f} ms  p95 {np.percentile(lat, 95):.2f} ms"


def qwords(q):
    words = WORD.findall(q.lower())
    return list(dict.fromkeys([w for w in words if w not in STOPWORDS] or words))


def main():
    import tantivy

    rng = np.random.default_rng(7)
    questions = [r["question"] for r in shared_data.iter_medquad()][::7][:200]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        index = index_bench.build_scale_index(Path(tmp), N, 384, rng)
        print(f"built sqlite in {time.perf_counter() - t0:.1f}s", flush=True)
        conn = index._reader()
        t0 = time.perf_counter()
        rows = conn.execute('SELECT c.chunk_id, substr(d.text, c.start + 1, c."end" - c.start) FROM chunks c'
                            ' JOIN documents d USING (doc_id) ORDER BY c.chunk_id').fetchall()
        print(f"read {len(rows)} texts in {time.perf_counter() - t0:.2f}s", flush=True)
        text_of = dict(rows)
        # FTS5
        lat = []
        fts = {}
        for q in questions:
            t0 = time.perf_counter()
            fts[q] = store.bm25_ranking(conn, q, DEPTH, SearchFilter())
            lat.append((time.perf_counter() - t0) * 1000)
        print("fts5   ", pct(lat), flush=True)
        # tantivy, in RAM
        analyzer = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple()).filter(tantivy.Filter.lowercase())
                    .filter(tantivy.Filter.ascii_fold()).filter(tantivy.Filter.stemmer("english")).build())
        sb = tantivy.SchemaBuilder()
        sb.add_text_field("text", stored=False, tokenizer_name="chunk", index_option="freq")
        sb.add_integer_field("chunk_id", stored=False, indexed=True, fast=True)
        schema = sb.build()
        tix = tantivy.Index(schema)
        tix.register_tokenizer("chunk", analyzer)
        t0 = time.perf_counter()
        w = tix.writer(heap_size=200_000_000, num_threads=1)
        for cid, text in rows:
            w.add_document(tantivy.Document(chunk_id=cid, text=text))
        w.commit()
        w.wait_merging_threads()
        tix.reload()
        print(f"tantivy build {time.perf_counter() - t0:.1f}s", flush=True)
        searcher = tix.searcher()
        print("segments", searcher.num_segments, searcher.num_docs)
        lat = []
        overlap = []
        for q in questions:
            t0 = time.perf_counter()
            terms = [t for w_ in qwords(q) for t in analyzer.analyze(w_)]
            query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "text", t, index_option="freq"))
                 for t in dict.fromkeys(terms)])
            hits = searcher.search(query, DEPTH, count=False).hits
            ids = searcher.fast_field_values("chunk_id", [a for _, a in hits])
            res = list(zip(ids, (s for s, _ in hits)))
            lat.append((time.perf_counter() - t0) * 1000)
            a = {text_of[c] for c, _ in fts[q][:10]}
            overlap.append(len(a & {text_of[c] for c, _ in res[:20]}) / max(1, len(a)))
        print("tantivy", pct(lat), "fts5 top-10 texts in tantivy top-20:", np.mean(overlap), flush=True)
        # bm25s
        import bm25s
        import Stemmer

        stemmer = Stemmer.Stemmer("porter")
        t0 = time.perf_counter()
        tok = bm25s.tokenize([t for _, t in rows], stopwords=None, stemmer=stemmer, show_progress=False)
        ret = bm25s.BM25(method="robertson", k1=1.2, b=0.75)
        ret.index(tok, show_progress=False)
        print(f"bm25s build {time.perf_counter() - t0:.1f}s", flush=True)
        lat, overlap = [], []
        for q in questions:
            t0 = time.perf_counter()
            qt = bm25s.tokenize([" ".join(qwords(q))], stopwords=None, stemmer=stemmer, show_progress=False,
                                return_ids=False)
            docs, scores = ret.retrieve(qt, k=DEPTH, show_progress=False, n_threads=1)
            lat.append((time.perf_counter() - t0) * 1000)
            a = {text_of[c] for c, _ in fts[q][:10]}
            overlap.append(len(a & {rows[i][1] for i in docs[0][:20]}) / max(1, len(a)))
        print("bm25s  ", pct(lat), "overlap", np.mean(overlap), flush=True)
        index.close()


if __name__ == "__main__":
    main()
