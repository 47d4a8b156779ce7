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

A preference-tuned adapter is also held to its ``parent`` (the supervised adapter it
was tuned from): its domain score may fall at most ``max_score_drop`` points below the
parent's, and its hallucination rate may not rise above the parent's. The hallucination
rate is raw (the model's words, before the service's check): the share of answers that
are not a refusal on the unanswerable split, each question with the documents that
answer it left out of its passages (its ``doc_ids``, else the document of the best hit
for the question and its answer, as RAFT finds an oracle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.evaluation.answers import SEARCH_SLACK, answer_all, chat_prompts, retrieval_prompts
from assistant.evaluation.drift import MAX_DRIFT, PROBE_BATCH_SIZE, PROBE_MAX_NEW_TOKENS, general_drift
from assistant.evaluation.scoring import answers_something, score_answer
from assistant.evaluation.sets import EvalItem
from assistant.generation.base import TextGenerator
from assistant.grounding.passages import Passage, passages_from_hits


@dataclass(frozen=True)
class GateSettings:
    max_drift: float = field(default=MAX_DRIFT, metadata={"help": "largest relative perplexity rise on general text"})
    min_gain: float = field(default=0.0, metadata={"help": "domain points (0-100) the adapter must add over the base"})
    max_score_drop: float = field(default=2.0, metadata={
        "help": "domain points a preference-tuned adapter may lose against its parent"})
    top_k: int = field(default=3, metadata={"help": "passages retrieved per question"})
    max_new_tokens: int = field(default=PROBE_MAX_NEW_TOKENS, metadata={"help": "answer length limit"})
    batch_size: int = field(default=PROBE_BATCH_SIZE, metadata={"help": "questions generated together"})

    def __post_init__(self) -> None:
        if self.max_drift < 0:
            raise ValueError(f"max_drift must be 0 or more, got {self.max_drift}")
        if self.max_score_drop < 0:
            raise ValueError(f"max_score_drop must be 0 or more, got {self.max_score_drop}")
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


def unanswerable_passages(items: Sequence[EvalItem], index: Any, top_k: int) -> list[list[Passage]]:
    """Each item's top-k passages without the documents that answer it (see the module)."""
    out = []
    for item in items:
        gold = set(item.doc_ids) or {h.doc_id for h in index.search(f"{item.question} {item.answer}", k=1)}
        hits = [h for h in index.search(item.question, k=top_k + SEARCH_SLACK) if h.doc_id not in gold]
        out.append(passages_from_hits(hits[:top_k]))
    return out


def hallucination_rate(answers: Sequence[str]) -> float:
    """The share of answers that are not a refusal (on contexts that do not hold the answer)."""
    return round(sum(answers_something(a) for a in answers) / max(len(answers), 1), 4)


def decide_against_parent(parent: dict[str, Any], tuned: dict[str, Any], settings: GateSettings) -> tuple[bool, str]:
    drop = parent["score"] - tuned["score"]
    if drop > settings.max_score_drop:
        return False, (f"domain score {tuned['score']:.1f} fell {drop:.1f} points below the parent's "
                       f"{parent['score']:.1f} (at most {settings.max_score_drop:g})")
    if tuned["hallucination_rate"] > parent["hallucination_rate"]:
        return False, (f"hallucination on the unanswerable split rose from the parent's "
                       f"{parent['hallucination_rate']:.0%} to {tuned['hallucination_rate']:.0%}")
    return True, (f"against the parent: domain score {parent['score']:.1f} → {tuned['score']:.1f}, hallucination "
                  f"{parent['hallucination_rate']:.0%} → {tuned['hallucination_rate']:.0%}")


def run_gate(generator: TextGenerator, adapter: str, items: Sequence[EvalItem], index: Any, *,
             settings: GateSettings | None = None, cache: Path | None = None, progress: bool = False,
             parent: str | None = None) -> dict[str, Any]:
    """Base and adapter on ``items`` with retrieval from ``index``, general drift, and
    the decision; with ``parent``, the adapter is also held to it (see the module).
    ``generator`` must have no active adapter (the base answers)."""
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
    report = {"accepted": accepted, "reason": reason, "domain": {"base": base, "adapter": tuned,
                                                                 "gain": round(tuned["score"] - base["score"], 2)},
              "drift": drift, "settings": asdict(settings)}
    if parent is None:
        return report
    parent_answers = answer_all(generator, prompts, parent, max_new_tokens=settings.max_new_tokens,
                                batch_size=settings.batch_size, progress=progress)
    unanswerable = chat_prompts(generator, [i.question for i in items], unanswerable_passages(items, index,
                                                                                                settings.top_k))
    rates = {name: hallucination_rate(answer_all(generator, unanswerable, name, max_new_tokens=settings.max_new_tokens,
                                                 batch_size=settings.batch_size, progress=progress))
             for name in (parent, adapter)}
    versus = {"name": parent, **domain_score(items, parent_answers), "hallucination_rate": rates[parent]}
    tuned |= {"hallucination_rate": rates[adapter]}
    held, why = decide_against_parent(versus, tuned, settings)
    report["parent"] = versus
    report["accepted"] = accepted and held
    report["reason"] = (f"{reason}; {why}" if held else why) if accepted else reason
    return report
