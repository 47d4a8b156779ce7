"""Deduplicate a JSONL file: exact duplicates (xxh3 of normalized text), then
near duplicates among the rest, as ``native.near_dedup`` finds them: MinHash
LSH, and short texts one word edit apart. Kept lines are copied verbatim.

Two passes over the input keep memory to the signatures (num_perm × 4 bytes
per document) and the short texts themselves (see ``_fingerprint``): the first
fingerprints in batches, the second writes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from indexer import native
from indexer.jsonl import BadLines, iter_text_records

BATCH = 8192


@dataclass(frozen=True)
class DedupSettings:
    text_field: str = "text"
    threshold: float = 0.8
    num_perm: int = 128
    shingle: native.ShingleKind = "word"
    shingle_size: int = 5
    keep: native.KeepPolicy = "first"
    lowercase_exact: bool = True
    edit_min_words: int = native.EDIT_MIN_WORDS
    """Shortest text joined to another one word edit apart (0: off), as ``native.near_dedup``."""


@dataclass
class DedupSummary:
    docs_in: int = 0
    """Valid, non-empty records (bad and empty lines are counted apart and never written)."""
    bad_lines: int = 0
    empty: int = 0
    exact_duplicates: int = 0
    near_dup_clusters: int = 0
    near_duplicates: int = 0
    edit_pairs: int = 0
    """Pairs of short texts joined because they are one word edit apart."""
    kept: int = 0
    megabytes: float = 0.0
    seconds: float = 0.0
    bands: int = 0
    rows: int = 0
    bad_line_examples: list[str] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return self.megabytes / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "mb_per_s": round(self.mb_per_s, 2)}


def _fingerprint(path: Path, settings: DedupSettings, bad: BadLines, progress: bool):
    """First pass: line numbers, exact hashes, signatures and lengths of the
    valid records, and the records the one-word-edit test takes (indices and
    texts). Those are kept whole because the test reads the edited word as
    written; with 99 words at most, that is the text's own size (~0.5-1 KB of
    prose, plus ~50 bytes of str header) per short document, nothing for the others."""
    total = path.stat().st_size
    lines: list[int] = []
    hashes: list[str] = []
    sigs: list[np.ndarray] = []
    lengths: list[int] = []
    short_docs: list[int] = []
    short_texts: list[str] = []
    empty = 0
    batch_lines: list[int] = []
    batch_texts: list[str] = []

    def flush() -> None:
        if not batch_texts:
            return
        normalized = native.normalize(batch_texts, lowercase=settings.lowercase_exact)
        hashes.extend(native.content_hashes(normalized, bits=128))
        batch_sigs, short = native.signatures_and_edit_mask(
            batch_texts, num_perm=settings.num_perm, shingle=settings.shingle, shingle_size=settings.shingle_size,
            edit_min_words=settings.edit_min_words,
        )
        sigs.append(batch_sigs)
        for k in np.flatnonzero(short):
            short_docs.append(len(lines) + int(k))
            short_texts.append(batch_texts[k])
        lines.extend(batch_lines)
        lengths.extend(len(t) for t in batch_texts)
        batch_lines.clear()
        batch_texts.clear()

    with tqdm(total=total, unit="B", unit_scale=True, desc="fingerprint", disable=not progress) as bar:
        for line_no, text, size in iter_text_records(path, settings.text_field, bad):
            bar.update(size)
            if text is None:
                continue
            if not text.strip():
                empty += 1
                continue
            batch_lines.append(line_no)
            batch_texts.append(text)
            if len(batch_texts) >= BATCH:
                flush()
        flush()
    matrix = np.concatenate(sigs) if sigs else np.zeros((0, settings.num_perm), dtype=np.uint32)
    return lines, hashes, matrix, lengths, empty, (short_docs, short_texts)


def _edit_pairs(
    unique: np.ndarray, num_docs: int, short: tuple[list[int], list[str]], settings: DedupSettings
) -> np.ndarray:
    """One-word-edit pairs among the short texts left by exact dedup, as rows of ``unique``."""
    short_docs, short_texts = short
    row_of = np.full(num_docs, -1, dtype=np.int64)
    row_of[unique] = np.arange(len(unique))
    rows = row_of[np.asarray(short_docs, dtype=np.int64)]
    left = rows >= 0
    texts = [t for t, keep in zip(short_texts, left) if keep]
    pairs = native.one_edit_pairs(texts, edit_min_words=settings.edit_min_words)
    return rows[left][pairs]


def dedup_jsonl(
    input_path: Path,
    output_path: Path | None,
    settings: DedupSettings = DedupSettings(),
    *,
    clusters_path: Path | None = None,
    progress: bool = True,
) -> DedupSummary:
    """Deduplicates ``input_path`` into ``output_path`` and returns the summary."""
    if not 0.0 < settings.threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {settings.threshold}")
    if isinstance(settings.edit_min_words, bool) or not isinstance(settings.edit_min_words, int) \
            or settings.edit_min_words < 0:
        raise ValueError(f"edit_min_words must be a non-negative integer, got {settings.edit_min_words!r}")
    start = time.perf_counter()
    bad = BadLines()
    lines, hashes, sigs, lengths, empty, short = _fingerprint(input_path, settings, bad, progress)

    exact = native.exact_dedup(hashes, normalize=False)
    unique = np.flatnonzero(exact.keep)
    pairs = _edit_pairs(unique, len(lines), short, settings)
    del short  # the short texts are not needed past here
    near = native.cluster_signatures(
        np.ascontiguousarray(sigs[unique]),
        threshold=settings.threshold,
        keep=settings.keep,
        lengths=[lengths[i] for i in unique] if settings.keep == "longest" else None,
        pairs=pairs,
    )
    kept_lines = {lines[i] for i in unique[near.keep]}

    summary = DedupSummary(
        docs_in=len(lines),
        bad_lines=bad.count,
        empty=empty,
        exact_duplicates=exact.num_duplicates,
        near_dup_clusters=near.num_dup_clusters,
        near_duplicates=near.num_removed,
        edit_pairs=near.edit_pairs,
        kept=len(kept_lines),
        megabytes=input_path.stat().st_size / 1e6,
        bands=near.bands,
        rows=near.rows,
        bad_line_examples=bad.examples,
    )
    if output_path is not None:
        _write_kept(input_path, output_path, kept_lines)
    if clusters_path is not None:
        _write_clusters(clusters_path, lines, exact, unique, near)
    summary.seconds = time.perf_counter() - start
    return summary


def _write_kept(input_path: Path, output_path: Path, kept_lines: set[int]) -> None:
    """Copies kept lines verbatim, via a temporary file renamed into place."""
    tmp = output_path.with_name(output_path.name + ".tmp")
    with input_path.open("rb") as src, tmp.open("wb") as dst:
        for line_no, raw in enumerate(src, start=1):
            if line_no in kept_lines:
                dst.write(raw if raw.endswith(b"\n") else raw + b"\n")
    tmp.replace(output_path)


def _write_clusters(path: Path, lines: list[int], exact: native.ExactDedupResult,
                    unique: np.ndarray, near: native.NearDedupResult) -> None:
    """One JSON line per removed document: its line, the kept line, and why."""
    with path.open("w", encoding="utf-8") as f:
        for i in np.flatnonzero(~exact.keep):
            f.write(json.dumps({"line": lines[i], "duplicate_of_line": lines[exact.duplicate_of[i]], "kind": "exact"}) + "\n")
        for j in np.flatnonzero(~near.keep):
            rep = unique[near.cluster_of[j]]
            f.write(json.dumps({"line": lines[unique[j]], "duplicate_of_line": lines[rep], "kind": "near"}) + "\n")
