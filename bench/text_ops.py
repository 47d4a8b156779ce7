"""Throughput of the text batch operations — ``native.normalize``,
``native.exact_dedup`` and ``native.chunk`` — against straightforward Python
references, in MB/s of UTF-8 input.

Run::

    .venv/bin/python bench/text_ops.py            # MedQuAD answers ×2 (~42 MB)
    .venv/bin/python bench/text_ops.py --quick    # 3,000 answers

Input: all MedQuAD answers (20.8 MB) repeated twice (so exact dedup also finds
duplicates); the tokenizer chunking uses the answers once. Timings are medians of
``--runs`` (round-robin over the pipelines of a section); all cores for ours
(``INDEXER_NUM_THREADS`` unset), one for Python.

- normalize: ours (NFKC, control/format characters dropped, spaces collapsed,
  lines trimmed, paragraph breaks kept) vs Python
  ``re.sub(r"\\s+", " ", unicodedata.normalize("NFKC", t)).strip()`` (does less).
- exact dedup: ours ``exact_dedup(raw)`` (normalize + xxh3-64 + first-seen) end to
  end; ours on pre-normalized text (``normalize=False``); Python on the same
  pre-normalized text: ``hash(t.encode())`` (builtin SipHash of fresh bytes,
  since a str caches its hash) + dict, and
  ``hashlib.blake2b(digest_size=8)`` + dict; Python end to end (its normalize +
  builtin hash).
- chunk (word tokens): ours ``chunk(max_tokens=256, overlap=32)`` vs a pure-Python
  sentence-packing chunker (regex sentences, word/punctuation tokens, greedy packing
  to 256 tokens, trailing sentences up to 32 tokens repeated as overlap, overlong
  sentences cut between tokens) returning character offsets too.
- chunk (SmolLM2 tokenizer): ours ``chunk(..., tokenizer=tok)``; reference: HF
  ``tokenizers`` ``encode_batch`` with offsets on the same texts (tokenizing only).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import unicodedata
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    env_info, env_markdown, mb, md_table, medquad_records, parse_args, time_interleaved, write_results,
)

from indexer import native  # noqa: E402

WS = re.compile(r"\s+")
SENT = re.compile(r"[^.!?]*(?:[.!?]+|$)\s*")
TOKEN = re.compile(r"\w+|[^\w\s]")


def py_normalize(texts: list[str]) -> list[str]:
    return [WS.sub(" ", unicodedata.normalize("NFKC", t)).strip() for t in texts]


def py_dedup_builtin(texts: list[str]) -> list[bool]:
    # hash of fresh bytes: str objects cache their hash, which would make every
    # run after the first free
    seen: dict[int, int] = {}
    keep = []
    for i, t in enumerate(texts):
        h = hash(t.encode("utf-8"))
        keep.append(h not in seen)
        seen.setdefault(h, i)
    return keep


def py_dedup_blake2(texts: list[str]) -> list[bool]:
    seen: dict[bytes, int] = {}
    keep = []
    for i, t in enumerate(texts):
        h = hashlib.blake2b(t.encode("utf-8"), digest_size=8).digest()
        keep.append(h not in seen)
        seen.setdefault(h, i)
    return keep


def py_chunk_one(text: str, max_tokens: int = 256, overlap: int = 32) -> list[tuple[int, int]]:
    # sentences as (start, end, token spans)
    units: list[list[tuple[int, int]]] = []
    for m in SENT.finditer(text):
        if m.start() == m.end():
            continue
        toks = [(t.start(), t.end()) for t in TOKEN.finditer(text, m.start(), m.end())]
        for k in range(0, len(toks), max_tokens):  # overlong sentences cut between tokens
            if toks[k:k + max_tokens]:
                units.append(toks[k:k + max_tokens])
    chunks: list[tuple[int, int]] = []
    cur: list[list[tuple[int, int]]] = []
    size = 0
    for u in units:
        if size + len(u) > max_tokens and cur:
            chunks.append((cur[0][0][0], cur[-1][-1][1]))
            carry: list[list[tuple[int, int]]] = []
            carried = 0
            for prev in reversed(cur):
                if carried + len(prev) > overlap:
                    break
                carry.insert(0, prev)
                carried += len(prev)
            if carried + len(u) > max_tokens:
                carry, carried = [], 0
            cur, size = carry, carried
        cur.append(u)
        size += len(u)
    if cur:
        chunks.append((cur[0][0][0], cur[-1][-1][1]))
    return chunks


def py_chunk(texts: list[str]) -> list[list[tuple[int, int]]]:
    return [py_chunk_one(t) for t in texts]


def section(name: str, fns: dict[str, Any], runs: int, size_mb: float, n: int) -> tuple[list, dict]:
    """Times ``fns`` round-robin; the first is ours, the others are compared with it."""
    print(f"{name} ...", file=sys.stderr)
    T = time_interleaved(fns, runs=runs)
    ours = T[next(iter(T))].median
    rows: list[list[Any]] = []
    out: dict[str, Any] = {}
    for label, t in T.items():
        # last column: how many times longer than ours
        rows.append([name, label, n, round(size_mb, 1), t.median, size_mb / t.median, t.median / ours])
        out[label] = t.as_dict()
    return rows, {"timings": out, "results": {k: v.result for k, v in T.items()}}


def main() -> None:
    args = parse_args(__doc__)
    answers = [r["answer"] for r in medquad_records()]
    if args.quick:
        answers = answers[:3000]
        texts = answers
    else:
        texts = answers * 2
    n, size = len(texts), mb(texts)
    tok_texts = answers
    n_tok, size_tok = len(tok_texts), mb(tok_texts)
    normalized = native.normalize(texts)
    py_normed = py_normalize(texts)
    all_rows: list = []
    results: dict = {"input": {"docs": n, "mb": size, "tokenizer_docs": n_tok, "tokenizer_mb": size_tok}}

    rows, r = section("normalize", {
        "ours normalize": lambda: native.normalize(texts),
        "Python NFKC + regex whitespace": lambda: py_normalize(texts),
    }, args.runs, size, n)
    all_rows += rows
    results["normalize"] = r["timings"]
    results["normalize"]["outputs_equal_share"] = sum(a == b for a, b in zip(r["results"]["ours normalize"],
                                                                            py_normed)) / n

    rows, r = section("exact dedup", {
        "ours exact_dedup (raw, normalize=True)": lambda: native.exact_dedup(texts),
        "ours exact_dedup (pre-normalized, normalize=False)": lambda: native.exact_dedup(normalized, normalize=False),
        "Python hash(t.encode()) + dict (pre-normalized)": lambda: py_dedup_builtin(normalized),
        "Python blake2b-64 + dict (pre-normalized)": lambda: py_dedup_blake2(normalized),
        "Python end to end (normalize + builtin hash)": lambda: py_dedup_builtin(py_normalize(texts)),
    }, args.runs, size, n)
    all_rows += rows
    ours_keep = r["results"]["ours exact_dedup (raw, normalize=True)"].keep
    results["exact_dedup"] = r["timings"]
    results["exact_dedup"]["kept"] = {"ours": int(ours_keep.sum()),
                                      "python": int(sum(r["results"]["Python hash(t.encode()) + dict (pre-normalized)"]))}

    rows, r = section("chunk (words)", {
        "ours chunk(max_tokens=256, overlap=32)": lambda: native.chunk(texts, max_tokens=256, overlap=32),
        "Python sentence-packing chunker": lambda: py_chunk(texts),
    }, args.runs, size, n)
    all_rows += rows
    results["chunk_words"] = r["timings"]
    results["chunk_words"]["chunks"] = {k: sum(map(len, v)) for k, v in r["results"].items()}

    from tokenizers import Tokenizer as HFTokenizer

    from assistant.generation.model_files import tokenizer_json

    path = tokenizer_json()
    tok = native.load_tokenizer(path)
    hf = HFTokenizer.from_file(str(path))
    rows, r = section("chunk (SmolLM2 tokens)", {
        "ours chunk(tokenizer=SmolLM2)": lambda: native.chunk(tok_texts, max_tokens=256, overlap=32, tokenizer=tok),
        "HF tokenizers encode_batch with offsets (tokenizing only)":
            lambda: hf.encode_batch(tok_texts, add_special_tokens=False),
    }, min(args.runs, 3), size_tok, n_tok)
    all_rows += rows
    results["chunk_tokens"] = r["timings"]
    results["chunk_tokens"]["chunks"] = sum(map(len, r["results"]["ours chunk(tokenizer=SmolLM2)"]))

    table = md_table(["operation", "implementation", "docs", "MB", "seconds (median)", "MB/s",
                      "time ÷ ours"], all_rows)
    env = env_info()
    md = "\n\n".join([
        f"### Text operations (`.venv/bin/python bench/text_ops.py{' --quick' if args.quick else ''}`)",
        f"Environment: {env_markdown(env)}",
        f"Data: MedQuAD answers{' (first 3,000)' if args.quick else ' ×2'}: {n:,} docs, {size:.1f} MB "
        f"(tokenizer chunking: {n_tok:,} docs, {size_tok:.1f} MB). Median of {args.runs} runs "
        f"({min(args.runs, 3)} for the tokenizer section), round-robin within a section. Ours uses "
        f"{native.num_threads()} threads; Python one. The Python normalize does less than ours "
        f"(outputs equal for {results['normalize']['outputs_equal_share']:.1%} of the texts).",
        table,
        f"Kept by exact dedup: ours {results['exact_dedup']['kept']['ours']:,}, Python "
        f"{results['exact_dedup']['kept']['python']:,}. Chunks (words): "
        + ", ".join(f"{k}: {v:,}" for k, v in results["chunk_words"]["chunks"].items())
        + f"; chunks with the SmolLM2 tokenizer: {results['chunk_tokens']['chunks']:,}.",
    ])
    print(md)
    results["rows"] = all_rows
    write_results("text_ops", results, md)


if __name__ == "__main__":
    main()
