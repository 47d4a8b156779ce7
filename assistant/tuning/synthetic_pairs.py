"""On-policy preference pairs from RAFT contexts: the supervised adapter answers, the
grounding check judges, and each answer it gets wrong becomes a pair against the right one.

    examples = preference_contexts(pairs, index, RaftSettings(), unanswerable_share=0.5)
    data, report = synthesize_pairs(generator, "v3", examples, verifier, embed=index.embedder.embed_to_compare)

A context is a curated question with hard-negative passages, with or without the
oracle passage that answers it (the RAFT layout, :mod:`.raft`):

- **without the oracle** the right answer is the refusal, and any answer becomes
  ``rejected`` against it (Trust-Align's unanswerable pairs) when no passage shown holds
  the gold answer; when a distractor does hold it, the context is answerable after all
  and gives no pair. The check's verdict is recorded but does not decide here: on
  400 contexts of the example corpus it called 110 of 142 such answers supported (the
  distractors share their words), although none of them could be right;
- **with the oracle** the right answer is the gold answer citing it; the adapter's
  refusal, or an answer the check finds unsupported, becomes ``rejected``.

A refusal where refusing is right makes no pair. An answer the check supports, on a
context with the oracle, becomes ``chosen`` against the refusal (``reinforce_supported``,
on by default): without these pairs nearly every pair prefers refusing, and one epoch of
DPO on such a set taught the 135M example adapter to refuse 90-100% of answerable
questions (BENCHMARKS.md). The report counts each case.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.evaluation.answers import generate_all
from assistant.evaluation.scoring import answers_something, holds_answer
from assistant.generation.base import TextGenerator
from assistant.grounding.check import DEFAULT_MIN_SCORE, finalize
from assistant.grounding.passages import build_messages
from assistant.grounding.verify import Embed, Verifier
from assistant.tuning.pairs import QAPair
from assistant.tuning.preferences import PreferenceData, PreferencePair, as_messages
from assistant.tuning.raft import ABSTAIN_ANSWER, RaftExample, RaftSettings, make_example, retrieve


@dataclass(frozen=True)
class SyntheticSettings:
    unanswerable_share: float = field(default=0.5, metadata={"help": "share of contexts without the oracle, 0..1"})
    max_contexts: int = field(default=2000, metadata={"help": "curated pairs turned into contexts, at most"})
    max_new_tokens: int = field(default=96, metadata={"help": "length limit of the adapter's answers"})
    batch_size: int = field(default=8, metadata={"help": "contexts answered together"})
    seed: int = field(default=0, metadata={"help": "seed of the oracle draws and passage order"})
    reinforce_supported: bool = field(default=True, metadata={
        "help": "an answer the check supports on a context with the oracle becomes chosen over the refusal"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.unanswerable_share <= 1.0:
            raise ValueError(f"unanswerable_share must be in [0, 1], got {self.unanswerable_share}")
        for name in ("max_contexts", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class Context:
    example: RaftExample
    gold: str
    """The curated answer (for the unanswerable side: is it in a passage after all?)."""


def preference_contexts(pairs: Sequence[QAPair], index: Any, raft: RaftSettings,
                        settings: SyntheticSettings) -> list[Context]:
    """One context per curated pair (up to ``max_contexts``), a seeded share without its oracle."""
    rng = random.Random(settings.seed)
    chosen = list(pairs)
    rng.shuffle(chosen)
    examples = []
    for pair in chosen[: settings.max_contexts]:
        oracle, negatives = retrieve(pair, index, raft)
        unanswerable = rng.random() < settings.unanswerable_share
        if unanswerable and not negatives:
            continue  # no passage left to show without the oracle
        examples.append(Context(make_example(pair, oracle, negatives, rng, 0.0 if unanswerable else 1.0),
                                pair.answer))
    return examples


def synthesize_pairs(generator: TextGenerator, adapter: str | None, contexts: Sequence[Context],
                     verifier: Verifier, *, embed: Embed | None = None, min_score: float = DEFAULT_MIN_SCORE,
                     settings: SyntheticSettings | None = None,
                     progress: bool = False) -> tuple[PreferenceData, dict[str, Any]]:
    """The adapter's answer to each context, judged; a pair for each wrong one."""
    settings = settings or SyntheticSettings()
    examples = [c.example for c in contexts]
    prompts = [generator.chat_prompt(build_messages(e.question, e.passages)) for e in examples]
    results = generate_all(generator, prompts, adapter, max_new_tokens=settings.max_new_tokens,
                           batch_size=settings.batch_size, progress=progress)
    counts = {"contexts": len(examples), "unanswerable": 0, "refused_unanswerable": 0, "unsupported_unanswerable": 0,
              "supported_unanswerable": 0, "gold_in_a_distractor": 0, "refused_answerable": 0,
              "unsupported_answerable": 0, "supported_answerable": 0, "reinforced": 0}
    pairs: list[PreferencePair] = []
    for context, example, result in zip(contexts, examples, results, strict=True):
        text = result.text.strip()
        answerable = example.oracle_number is not None
        side = "answerable" if answerable else "unanswerable"
        counts["unanswerable"] += not answerable
        if not answers_something(text):
            counts[f"refused_{side}"] += 1
            if answerable:
                pairs.append(_pair(example, example.target, text or "(no answer)"))
            continue
        shown = finalize(text, example.passages, verifier, min_score=min_score, question=example.question,
                         embed=embed)
        counts[f"{'supported' if shown.grounded else 'unsupported'}_{side}"] += 1
        if answerable:
            if not shown.grounded and text != example.target:
                pairs.append(_pair(example, example.target, text))
            elif shown.grounded and settings.reinforce_supported:
                counts["reinforced"] += 1
                pairs.append(_pair(example, text, ABSTAIN_ANSWER))  # its own supported words, on-policy
        elif any(holds_answer(p.text, context.gold) for p in example.passages):
            counts["gold_in_a_distractor"] += 1
        else:
            pairs.append(_pair(example, ABSTAIN_ANSWER, text))
    counts["pairs"] = len(pairs)
    return PreferenceData(pairs, []), counts


def _pair(example: RaftExample, chosen: str, rejected: str) -> PreferencePair:
    return PreferencePair(as_messages(build_messages(example.question, example.passages)), chosen, rejected,
                          "synthetic", None)
