"""The evaluation gate: a tuned adapter becomes active only if it answers the domain
better than the base model and has not drifted from it on general text.

    generator = LocalGenerator(GenerationSettings(model=base, adapters_dir=registry.root))
    report = run_gate(generator, "v3", read_eval_set("heldout.jsonl"), index)
    report["accepted"], report["reason"]

Domain score: each held-out question is answered with retrieval (the serving
prompt with the top-k passages), once by the base model and once with the adapter,
and scored by the set's own metric (:func:`assistant.scoring.score_answer`: decision
accuracy for yes/no/maybe, token F1 otherwise), in points out of 100.

General drift, offline: the base model answers a fixed set of general prompts
(``probes/general.json``) once; the drift is the relative rise in perplexity,
adapter over base, of those answers and of a few paragraphs of plain English. The
larger of the two must stay within ``max_drift``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.eval_sets import EvalItem
from assistant.grounding import Passage, build_messages, passages_from_hits
from assistant.scoring import score_answer

PROBE_PATH = Path(__file__).parent / "probes" / "general.json"
SEARCH_SLACK = 10  # extra hits fetched so that dropping the gold documents still leaves top_k


@dataclass(frozen=True)
class GateSettings:
    max_drift: float = field(default=0.2, metadata={"help": "largest relative perplexity rise on general text"})
    min_gain: float = field(default=0.0, metadata={"help": "domain points (0-100) the adapter must add over the base"})
    top_k: int = field(default=3, metadata={"help": "passages retrieved per question"})
    max_new_tokens: int = field(default=48, metadata={"help": "answer length limit"})
    batch_size: int = field(default=8, metadata={"help": "questions generated together"})

    def __post_init__(self) -> None:
        if self.max_drift < 0:
            raise ValueError(f"max_drift must be 0 or more, got {self.max_drift}")
        for name in ("top_k", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


def load_probe(path: Path = PROBE_PATH) -> dict[str, list[str]]:
    probe = json.loads(path.read_text(encoding="utf-8"))
    return {"prompts": list(probe["prompts"]), "texts": list(probe["texts"])}


def chat_prompts(generator: Any, questions: Sequence[str], passages: Sequence[Sequence[Passage]] | None = None) -> list[str]:
    """The model's prompt per question: the serving prompt with its passages, or the bare
    question (closed-book) when ``passages`` is None."""
    if passages is None:
        return [generator.chat_prompt([{"role": "user", "content": q}]) for q in questions]
    return [generator.chat_prompt(build_messages(q, found)) for q, found in zip(questions, passages, strict=True)]


def retrieve(index: Any, items: Sequence[EvalItem], top_k: int, *, drop_gold: bool = False) -> list[list[Passage]]:
    """Top-k passages per item; with ``drop_gold`` the item's gold documents are left out
    (the evaluation's unanswerable split)."""
    out = []
    for item in items:
        if drop_gold and item.doc_ids:
            hits = [h for h in index.search(item.question, k=top_k + SEARCH_SLACK) if h.doc_id not in item.doc_ids]
        else:
            hits = index.search(item.question, k=top_k)
        out.append(passages_from_hits(hits[:top_k]))
    return out


def retrieval_prompts(generator: Any, items: Sequence[EvalItem], index: Any | None, top_k: int) -> list[str]:
    """The serving prompt per item, with the top-k passages; closed-book when ``index`` is None."""
    questions = [item.question for item in items]
    if index is None:
        return chat_prompts(generator, questions)
    return chat_prompts(generator, questions, retrieve(index, items, top_k))


def answer_all(generator: Any, prompts: Sequence[str], adapter: str | None, settings: GateSettings,
               progress: bool = False) -> list[str]:
    """Greedy answers in batches; ``adapter`` None is the base model when none is active."""
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    # prompts of similar length share a batch: less padding to run through the model
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[str] = [""] * len(prompts)
    with tqdm(total=len(prompts), desc=f"answers ({adapter or 'base'})", disable=not progress) as bar:
        for start in range(0, len(order), settings.batch_size):
            rows = order[start:start + settings.batch_size]
            results = generator.generate([prompts[i] for i in rows], max_new_tokens=settings.max_new_tokens,
                                         adapter=adapter)
            for i, result in zip(rows, results, strict=True):
                answers[i] = result.text
            bar.update(len(rows))
    return answers


def domain_score(items: Sequence[EvalItem], answers: Sequence[str]) -> dict[str, Any]:
    scores = [score_answer(a, item.answer, item.answer_type) for item, a in zip(items, answers, strict=True)]
    return {"score": round(100 * sum(scores) / len(scores), 2), "n": len(scores)}


def perplexity(generator: Any, prompts: Sequence[str], texts: Sequence[str], adapter: str | None) -> float:
    nll, tokens = generator.continuation_nll(list(prompts), list(texts), adapter=adapter)
    return math.exp(nll / max(tokens, 1))


def base_probe_answers(generator: Any, probe: dict[str, list[str]], prompts: list[str], cache: Path | None,
                       settings: GateSettings) -> list[str]:
    """The base model's answers to the probe prompts, kept in ``cache`` (one file per
    base model) since they never change."""
    if cache is not None and cache.is_file():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("prompts") == probe["prompts"]:
            return list(saved["answers"])
    if getattr(generator, "active_adapter", None) is not None:
        raise ValueError("the probe's base answers need the base model; deactivate the adapter first")
    answers = answer_all(generator, prompts, None, settings)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"prompts": probe["prompts"], "answers": answers}), encoding="utf-8")
        tmp.replace(cache)
    return answers


def general_drift(generator: Any, adapter: str, *, cache: Path | None = None,
                  settings: GateSettings | None = None, probe: dict[str, list[str]] | None = None) -> dict[str, float]:
    settings = settings or GateSettings()
    probe = probe or load_probe()
    prompts = chat_prompts(generator, probe["prompts"])
    answers = base_probe_answers(generator, probe, prompts, cache, settings)
    blank = [""] * len(probe["texts"])
    result = {
        "answers_ppl_base": perplexity(generator, prompts, answers, None),
        "answers_ppl_adapter": perplexity(generator, prompts, answers, adapter),
        "text_ppl_base": perplexity(generator, blank, probe["texts"], None),
        "text_ppl_adapter": perplexity(generator, blank, probe["texts"], adapter),
    }
    result["drift"] = max(result["answers_ppl_adapter"] / result["answers_ppl_base"],
                          result["text_ppl_adapter"] / result["text_ppl_base"]) - 1.0
    return {k: round(v, 4) for k, v in result.items()}


def decide(base: float, tuned: float, drift: float, settings: GateSettings) -> tuple[bool, str]:
    gain = tuned - base
    if gain <= settings.min_gain:
        return False, (f"domain score {tuned:.1f} is not above the base model's {base:.1f} by more than "
                       f"{settings.min_gain:g} points")
    if drift > settings.max_drift:
        return False, f"general drift {drift:.1%} exceeds the bound {settings.max_drift:.0%}"
    return True, f"domain score {base:.1f} → {tuned:.1f} (+{gain:.1f}), general drift {drift:.1%} ≤ {settings.max_drift:.0%}"


def run_gate(generator: Any, adapter: str, items: Sequence[EvalItem], index: Any, *,
             settings: GateSettings | None = None, cache: Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Base and adapter on ``items`` with retrieval from ``index``, general drift, and
    the decision. ``generator`` must have no active adapter (the base answers)."""
    settings = settings or GateSettings()
    if not items:
        raise ValueError("the gate needs held-out items to score; none were given")
    if getattr(generator, "active_adapter", None) is not None:
        raise ValueError("the gate compares with the base model; use a generator with no active adapter")
    prompts = retrieval_prompts(generator, items, index, settings.top_k)
    base_answers = answer_all(generator, prompts, None, settings, progress)
    tuned_answers = answer_all(generator, prompts, adapter, settings, progress)
    base, tuned = domain_score(items, base_answers), domain_score(items, tuned_answers)
    drift = general_drift(generator, adapter, cache=cache, settings=settings)
    accepted, reason = decide(base["score"], tuned["score"], drift["drift"], settings)
    return {"accepted": accepted, "reason": reason, "domain": {"base": base, "adapter": tuned,
                                                               "gain": round(tuned["score"] - base["score"], 2)},
            "drift": drift, "settings": asdict(settings)}
