"""The RAFT tuning set: curated question-answer pairs → grounded training examples.

RAFT (retrieval-augmented fine-tuning) shows the model each question with the
passage that answers it (the oracle) among hard negatives retrieved for the
question, and trains it to answer citing the oracle; in a share of examples the
oracle is left out and the target is an abstention, so the model learns to say
so instead of guessing. The prompt is :func:`assistant.grounding.passages.build_messages`,
the one serving uses, so training and serving see the same text::

    pairs, problems = read_pairs("curated/qa.jsonl")
    with Index.open("index") as index:
        raft = build_raft_set(pairs, index, "models/base", eval_texts=held_out, malformed=problems)
    raft.save("runs/raft-1")          # examples.jsonl, packed.npz, report.json
    print(raft.report)

Curation (normalize, exact and near-duplicate removal, decontamination against
evaluation texts), tokenization and packing run in the Rust core
(:mod:`indexer.native`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from assistant.grounding.claims import strip_citations
from assistant.grounding.passages import Passage, build_messages, make_passage, passages_from_hits
from assistant.tuning.pairs import QAPair
from indexer import native

ABSTAIN_ANSWER = "I cannot find the answer in the documents."
"""The target when the oracle is left out; the sentence the serving prompt asks for."""
SHINGLE_WORDS = 3  # word n-grams for near-duplicate checks: short QA texts have few 5-grams
SEARCH_SLACK = 5  # extra hits fetched so that dropping the oracle and its near-copies leaves enough
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class RaftSettings:
    k_distractors: int = field(default=3, metadata={"help": "hard-negative passages per example"})
    oracle_probability: float = field(default=0.8, metadata={"help": "share of examples that show the oracle, 0..1"})
    seed: int = field(default=0, metadata={"help": "seed of the oracle draws and passage shuffles"})
    seq_len: int = field(default=1024, metadata={"help": "tokens per packed sequence; longer examples are dropped"})
    near_duplicate_threshold: float = field(
        default=0.8, metadata={"help": "word-shingle Jaccard at or above which two texts are near duplicates"})
    decontam_ngram: int = field(default=13, metadata={"help": "word n-gram shared with an eval text that drops a pair"})

    def __post_init__(self) -> None:
        if self.k_distractors < 0:
            raise ValueError(f"k_distractors must be 0 or more, got {self.k_distractors}")
        if not 0.0 <= self.oracle_probability <= 1.0:
            raise ValueError(f"oracle_probability must be in [0, 1], got {self.oracle_probability}")
        if self.seq_len < 16:
            raise ValueError(f"seq_len must be at least 16 tokens, got {self.seq_len}")
        if not 0.0 < self.near_duplicate_threshold <= 1.0:
            raise ValueError(f"near_duplicate_threshold must be in (0, 1], got {self.near_duplicate_threshold}")
        if self.decontam_ngram < 1:
            raise ValueError(f"decontam_ngram must be at least 1, got {self.decontam_ngram}")


@dataclass(frozen=True)
class RaftExample:
    question: str
    passages: list[Passage]
    """Numbered 1..n in prompt order."""
    oracle_number: int | None
    """The oracle's passage number, None when it was left out."""
    target: str

    def messages(self) -> list[dict[str, str]]:
        """The serving prompt followed by the target as the assistant turn."""
        return build_messages(self.question, self.passages) + [{"role": "assistant", "content": self.target}]

    def to_dict(self) -> dict[str, object]:
        return {"question": self.question, "passages": [p.to_dict() for p in self.passages],
                "oracle_number": self.oracle_number, "target": self.target, "messages": self.messages()}


@dataclass
class RaftSet:
    examples: list[RaftExample]
    """Every built example; those over ``seq_len`` are not in ``packed`` (see ``report``)."""
    packed: native.PackedBatch
    report: dict[str, Any]

    def save(self, directory: str | os.PathLike[str]) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "examples.jsonl", "w", encoding="utf-8") as f:
            for example in self.examples:
                f.write(json.dumps(example.to_dict(), ensure_ascii=False) + "\n")
        np.savez(out / "packed.npz", input_ids=self.packed.input_ids, labels=self.packed.labels,
                 position_ids=self.packed.position_ids)
        (out / "report.json").write_text(json.dumps(self.report, indent=2) + "\n", encoding="utf-8")
        return out


def shingles(text: str, n: int = SHINGLE_WORDS) -> set[tuple[str, ...]]:
    """Lowercased word n-grams; a text shorter than ``n`` words is one shingle."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


def clean_pairs(pairs: Sequence[QAPair], eval_texts: Sequence[str],
           settings: RaftSettings) -> tuple[list[QAPair], dict[str, int]]:
    """Exact, then near-duplicate removal on question + answer, then decontamination."""
    counts = {"exact_duplicates": 0, "near_duplicates": 0, "contaminated": 0, "eval_texts_too_short": 0}
    keys = native.normalize([f"{p.question}\n\n{p.answer}" for p in pairs], lowercase=True)
    exact = native.exact_dedup(keys, normalize=False)
    counts["exact_duplicates"] = exact.num_duplicates
    kept = [i for i in range(len(pairs)) if exact.keep[i]]
    _check_left(kept, "exact-duplicate removal")
    near = native.near_dedup([keys[i] for i in kept], threshold=settings.near_duplicate_threshold,
                             shingle_size=SHINGLE_WORDS)
    counts["near_duplicates"] = near.num_removed
    kept = [i for i, keep in zip(kept, near.keep, strict=True) if keep]
    _check_left(kept, "near-duplicate removal")
    if eval_texts:
        # questions and answers separately: an n-gram across the two is no leak
        texts = [pairs[i].question for i in kept] + [pairs[i].answer for i in kept]
        overlaps, counts["eval_texts_too_short"] = native.decontaminate(
            texts, list(eval_texts), ngram=settings.decontam_ngram, min_words=min(8, settings.decontam_ngram))
        dirty = {o.train_index % len(kept) for o in overlaps}
        counts["contaminated"] = len(dirty)
        kept = [i for j, i in enumerate(kept) if j not in dirty]
        _check_left(kept, f"decontamination against the {len(eval_texts)} eval texts")
    return [pairs[i] for i in kept], counts


def _check_left(kept: Sequence[int], stage: str) -> None:
    if not kept:
        raise ValueError(f"no pairs left after {stage}; check the curated file and the filter settings")


def retrieve(pair: QAPair, index: Any, settings: RaftSettings) -> tuple[Passage, list[Passage]]:
    """The oracle passage and up to ``k_distractors`` hard negatives (numbers not yet set)."""
    if pair.context is not None:
        name = pair.source or pair.id or "curated"
        oracle = make_passage(0, pair.id or name, name, pair.context, 1.0)
        oracle_chunk = None
    else:
        hits = index.search(f"{pair.question} {pair.answer}", k=1)
        if not hits:
            raise ValueError("the index returned no passage; ingest the documents the pairs are about first")
        oracle, oracle_chunk = passages_from_hits(hits)[0], hits[0].chunk_id
    negatives: list[Passage] = []
    if settings.k_distractors:
        hits = index.search(pair.question, k=settings.k_distractors + SEARCH_SLACK)
        for hit, passage in zip(hits, passages_from_hits(hits), strict=True):
            if len(negatives) == settings.k_distractors:
                break
            if hit.chunk_id == oracle_chunk or jaccard(hit.text, oracle.text) >= settings.near_duplicate_threshold:
                continue
            negatives.append(passage)
    return oracle, negatives


def make_example(pair: QAPair, oracle: Passage, negatives: list[Passage], rng: random.Random,
                 oracle_probability: float) -> RaftExample:
    with_oracle = rng.random() < oracle_probability
    shown = negatives + [oracle] if with_oracle else list(negatives)
    rng.shuffle(shown)
    passages = [p.renumbered(n) for n, p in enumerate(shown, start=1)]
    if not with_oracle:
        return RaftExample(pair.question, passages, None, ABSTAIN_ANSWER)
    number = 1 + next(i for i, p in enumerate(shown) if p is oracle)
    answer = strip_citations(pair.answer).strip()  # a curated "[1]" would point at the wrong passage
    return RaftExample(pair.question, passages, number, f"{answer} [{number}]")


def load_tokenizers(tokenizer: Any) -> tuple[native.Tokenizer, native.ChatFormat, int]:
    """The native tokenizer, chat format and pad id from a model folder or a HF tokenizer."""
    if isinstance(tokenizer, (str, os.PathLike)):
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(os.fspath(tokenizer))
    else:
        hf = tokenizer
    fast = native.Tokenizer.from_str(hf.backend_tokenizer.to_str())
    pad = hf.pad_token_id if hf.pad_token_id is not None else hf.eos_token_id
    return fast, native.ChatFormat.from_hf_tokenizer(hf), int(pad or 0)


def build_raft_set(pairs: Sequence[QAPair], index: Any, tokenizer: Any, *, eval_texts: Sequence[str] = (),
                   settings: RaftSettings | None = None,
                   malformed: Sequence[tuple[str, str]] = ()) -> RaftSet:
    """Curated pairs → RAFT examples, packed with prompt tokens masked.

    ``index`` is an :class:`indexer.index.Index` (anything with its ``search``);
    ``tokenizer`` a model folder or a Hugging Face fast tokenizer with a chat
    template; ``malformed`` the problems :func:`read_pairs` reported, counted in
    the report. Raises ``ValueError`` naming the filter that removed every pair."""
    settings = settings or RaftSettings()
    if not pairs:
        raise ValueError("no pairs given" + (f"; all {len(malformed)} lines were malformed" if malformed else ""))
    kept, counts = clean_pairs(pairs, eval_texts, settings)
    rng = random.Random(settings.seed)
    examples = [make_example(p, *retrieve(p, index, settings), rng, settings.oracle_probability) for p in kept]
    fast, chat_format, pad = load_tokenizers(tokenizer)
    packed = native.pack_conversations(fast, [e.messages() for e in examples], chat_format,
                                       seq_len=settings.seq_len, pad_id=pad, overlong="drop")
    if packed.num_sequences == 0:
        raise ValueError(f"every example is longer than seq_len={settings.seq_len} tokens; raise seq_len")
    used = sum(sum(lengths) for lengths in packed.example_lengths)
    target_tokens = int((packed.labels != -100).sum())
    with_oracle = sum(e.oracle_number is not None for e in examples)
    report = {
        "pairs_in": len(pairs), "malformed": len(malformed), **counts,
        "examples_out": len(examples), "with_oracle": with_oracle, "without_oracle": len(examples) - with_oracle,
        "dropped_over_seq_len": packed.dropped, "prompt_tokens": used - target_tokens,
        "target_tokens": target_tokens, "sequences": packed.num_sequences,
        "packing_efficiency": packed.efficiency, "settings": dataclasses.asdict(settings),
    }
    return RaftSet(examples, packed, report)
