"""The evaluation gate: a tuned adapter becomes active only if it answers the domain
better than the base model and has not drifted from it on general text.

    generator = LocalGenerator(GenerationSettings(model=base, adapters_dir=registry.root))
    report = run_gate(generator, "v3", read_eval_set("heldout.jsonl"), index)
    report["accepted"], report["reason"]

Domain score: each held-out question is answered with retrieval (the serving
prompt with the top-k passages), once by the base model and once with the adapter,
and scored by the set's own metric (:func:`assistant.evaluation.scoring.score_answer`:
decision accuracy for yes/no/maybe, token F1 otherwise), in points out of 100.
General drift: :func:`assistant.evaluation.drift.general_drift`; it must stay within
``max_drift``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.evaluation.answers import answer_all, retrieval_prompts
from assistant.evaluation.drift import MAX_DRIFT, PROBE_BATCH_SIZE, PROBE_MAX_NEW_TOKENS, general_drift
from assistant.evaluation.scoring import score_answer
from assistant.evaluation.sets import EvalItem
from assistant.generation.base import TextGenerator


@dataclass(frozen=True)
class GateSettings:
    max_drift: float = field(default=MAX_DRIFT, metadata={"help": "largest relative perplexity rise on general text"})
    min_gain: float = field(default=0.0, metadata={"help": "domain points (0-100) the adapter must add over the base"})
    top_k: int = field(default=3, metadata={"help": "passages retrieved per question"})
    max_new_tokens: int = field(default=PROBE_MAX_NEW_TOKENS, metadata={"help": "answer length limit"})
    batch_size: int = field(default=PROBE_BATCH_SIZE, metadata={"help": "questions generated together"})

    def __post_init__(self) -> None:
        if self.max_drift < 0:
            raise ValueError(f"max_drift must be 0 or more, got {self.max_drift}")
        for name in ("top_k", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


def domain_score(items: Sequence[EvalItem], answers: Sequence[str]) -> dict[str, Any]:
    scores = [score_answer(a, item.answer, item.answer_type) for item, a in zip(items, answers, strict=True)]
    return {"score": round(100 * sum(scores) / len(scores), 2), "n": len(scores)}


def decide(base: float, tuned: float, drift: float, settings: GateSettings) -> tuple[bool, str]:
    gain = tuned - base
    if gain <= settings.min_gain:
        return False, (f"domain score {tuned:.1f} is not above the base model's {base:.1f} by more than "
                       f"{settings.min_gain:g} points")
    if drift > settings.max_drift:
        return False, f"general drift {drift:.1%} exceeds the bound {settings.max_drift:.0%}"
    return True, f"domain score {base:.1f} → {tuned:.1f} (+{gain:.1f}), general drift {drift:.1%} ≤ {settings.max_drift:.0%}"


def run_gate(generator: TextGenerator, adapter: str, items: Sequence[EvalItem], index: Any, *,
             settings: GateSettings | None = None, cache: Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Base and adapter on ``items`` with retrieval from ``index``, general drift, and
    the decision. ``generator`` must have no active adapter (the base answers)."""
    settings = settings or GateSettings()
    if not items:
        raise ValueError("the gate needs held-out items to score; none were given")
    if generator.active_adapter is not None:
        raise ValueError("the gate compares with the base model; use a generator with no active adapter")
    prompts = retrieval_prompts(generator, items, index, settings.top_k)
    base_answers, tuned_answers = (
        answer_all(generator, prompts, name, max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size,
                   progress=progress) for name in (None, adapter))
    base, tuned = domain_score(items, base_answers), domain_score(items, tuned_answers)
    drift = general_drift(generator, adapter, cache=cache, max_new_tokens=settings.max_new_tokens,
                          batch_size=settings.batch_size)
    accepted, reason = decide(base["score"], tuned["score"], drift["drift"], settings)
    return {"accepted": accepted, "reason": reason, "domain": {"base": base, "adapter": tuned,
                                                               "gain": round(tuned["score"] - base["score"], 2)},
            "drift": drift, "settings": asdict(settings)}
