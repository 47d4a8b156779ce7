"""Small pure-Python reference implementations the native core is checked against.

They are meant for inputs where Python's notion of a word character agrees
with Rust's ``char::is_alphanumeric() || '_'`` (ASCII, precomposed Latin,
Greek, Cyrillic, CJK); the tests' strategies stay inside that range.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

WORD_RE = re.compile(r"\w+")
IGNORE = -100


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD_RE.findall(text)]


def word_shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """Word n-grams; a text with fewer than n words gives one shingle of all of them."""
    w = words(text)
    if not w:
        return set()
    if len(w) <= n:
        return {tuple(w)}
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def jaccard(a: set, b: set) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def first_occurrence_dedup(items: Sequence[object]) -> tuple[list[bool], list[int]]:
    """``(keep, duplicate_of)`` keeping the first occurrence of each distinct item."""
    first: dict[object, int] = {}
    keep, dup = [], []
    for i, x in enumerate(items):
        if x in first:
            keep.append(False)
            dup.append(first[x])
        else:
            first[x] = i
            keep.append(True)
            dup.append(-1)
    return keep, dup


def word_token_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the fallback chunk tokens: runs of word characters and
    single other non-space characters (as rust/core/src/chunk.rs)."""
    spans = []
    run = None
    for i, c in enumerate(text):
        if c.isalnum() or c == "_":
            if run is None:
                run = i
            continue
        if run is not None:
            spans.append((run, i))
            run = None
        if not c.isspace():
            spans.append((i, i + 1))
    if run is not None:
        spans.append((run, len(text)))
    return spans


def decontaminate(train: Sequence[str], evals: Sequence[str], ngram: int, min_words: int):
    """Reference of native.decontaminate: ``([(train_index, eval_indices, shared)], skipped)``."""
    tables: dict[int, dict[tuple[str, ...], set[int]]] = {}
    skipped = 0
    for e, text in enumerate(evals):
        w = words(text)
        if len(w) >= ngram:
            table = tables.setdefault(ngram, {})
            for i in range(len(w) - ngram + 1):
                table.setdefault(tuple(w[i : i + ngram]), set()).add(e)
        elif len(w) >= min_words:
            tables.setdefault(len(w), {}).setdefault(tuple(w), set()).add(e)
        else:
            skipped += 1
    out = []
    for t, text in enumerate(train):
        w = words(text)
        hits: set[int] = set()
        shared: set[tuple[str, ...]] = set()
        for length, table in tables.items():
            for i in range(len(w) - length + 1):
                gram = tuple(w[i : i + length])
                if gram in table:
                    shared.add(gram)
                    hits |= table[gram]
        if hits:
            out.append((t, sorted(hits), len(shared)))
    return out, skipped


def sft_example(hf_tokenizer, conversation: Sequence[Mapping[str, str]], fmt) -> tuple[list[int], list[int]]:
    """Reference of native.build_sft_examples for one conversation: each piece of
    the rendered chat encoded on its own (no special tokens added); labels on
    assistant content and the assistant suffix only."""
    ids: list[int] = []
    labels: list[int] = []

    def push(text: str, learn: bool) -> None:
        piece = hf_tokenizer.encode(text, add_special_tokens=False).ids if text else []
        ids.extend(piece)
        labels.extend(piece if learn else [IGNORE] * len(piece))

    push(fmt.bos, False)
    if fmt.default_system is not None and not any(m["role"] == "system" for m in conversation):
        push(fmt.system_prefix, False)
        push(fmt.default_system, False)
        push(fmt.system_suffix, False)
    for m in conversation:
        learn = m["role"] == "assistant"
        push(getattr(fmt, f"{m['role']}_prefix"), False)
        push(m["content"], learn)
        push(getattr(fmt, f"{m['role']}_suffix"), learn)
    return ids, labels
