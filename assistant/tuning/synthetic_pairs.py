"""On-policy preference pairs from RAFT contexts: the supervised adapter answers, the
grounding check judges, and each answer it gets wrong becomes a pair against the right one.

    examples = preference_contexts(pairs, index, RaftSettings(), unanswerable_share=0.5)
    data, report = synthesize_pairs(generator, "v3", examples, verifier, embed=index.embedder.embed)

A context is a curated question with hard-negative passages, with or without the
oracle passage that answers it (the RAFT layout, :mod:`.raft`):

- **without the oracle** the right answer is the refusal; an answer the check finds
  unsupported by the passages becomes ``rejected`` against the refusal as ``chosen``
  (Trust-Align's unanswerable pairs);
- **with the oracle** the right answer is the gold answer citing it; the adapter's
  refusal, or an answer the check finds unsupported, becomes ``rejected``.

An answer the check supports, and a refusal where refusing is right, make no pair:
the adapter already does what is wanted there. The report counts each case.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.evaluation.answers import generate_all
from assistant.generation.base import TextGenerator
from assistant.grounding.check import DEFAULT_MIN_SCORE, finalize
from assistant.grounding.claims import is_refusal
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

    def __post_init__(self) -> None:
        if not 0.0 <= self.unanswerable_share <= 1.0:
            raise ValueError(f"unanswerable_share must be in [0, 1], got {self.unanswerable_share}")
        for name in ("max_contexts", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


def preference_contexts(pairs: Sequence[QAPair], index: Any, raft: RaftSettings,
                        settings: SyntheticSettings) -> list[RaftExample]:
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
        examples.append(make_example(pair, oracle, negatives, rng, 0.0 if unanswerable else 1.0))
    return examples


def synthesize_pairs(generator: TextGenerator, adapter: str | None, examples: Sequence[RaftExample],
                     verifier: Verifier, *, embed: Embed | None = None, min_score: float = DEFAULT_MIN_SCORE,
                     settings: SyntheticSettings | None = None,
                     progress: bool = False) -> tuple[PreferenceData, dict[str, Any]]:
    """The adapter's answer to each context, judged; a pair for each wrong one."""
    settings = settings or SyntheticSettings()
    prompts = [generator.chat_prompt(build_messages(e.question, e.passages)) for e in examples]
    results = generate_all(generator, prompts, adapter, max_new_tokens=settings.max_new_tokens,
                           batch_size=settings.batch_size, progress=progress)
    counts = {"contexts": len(examples), "unanswerable": 0, "refused_unanswerable": 0, "unsupported_unanswerable": 0,
              "supported_unanswerable": 0, "refused_answerable": 0, "unsupported_answerable": 0,
              "supported_answerable": 0}
    pairs: list[PreferencePair] = []
    for example, result in zip(examples, results, strict=True):
        text = result.text.strip()
        answerable = example.oracle_number is not None
        side = "answerable" if answerable else "unanswerable"
        counts["unanswerable"] += not answerable
        if not text or is_refusal(text):
            counts[f"refused_{side}"] += 1
            if answerable:
                pairs.append(_pair(example, example.target, text or "(no answer)"))
            continue
        shown = finalize(text, example.passages, verifier, min_score=min_score, question=example.question,
                         embed=embed)
        if shown.grounded:
            counts[f"supported_{side}"] += 1
            continue
        counts[f"unsupported_{side}"] += 1
        if text != (example.target if answerable else ABSTAIN_ANSWER):
            pairs.append(_pair(example, example.target if answerable else ABSTAIN_ANSWER, text))
    counts["pairs"] = len(pairs)
    return PreferenceData(pairs, []), counts


def _pair(example: RaftExample, chosen: str, rejected: str) -> PreferencePair:
    return PreferencePair(as_messages(build_messages(example.question, example.passages)), chosen, rejected,
                          "synthetic", None)
