"""Answer quality of systems × evaluation sets, with no judge model (``assistant eval``).

    assistant eval --set heldout.jsonl --index my-index [--adapter v2] [--limit 50] --out report

Systems: ``base`` and ``adapter`` closed-book (the bare question), ``base+rag`` and
``adapter+rag`` (the serving prompt with the top-k passages, and the service's own
check, :func:`assistant.grounding.check.finalize`: only the claims a passage supports
are shown, each with the citation the system attributes). Per system and set:

- **accuracy**: the set's metric (:func:`assistant.evaluation.scoring.score_answer`) of
  what the user is shown (the supported claims; an abstention scores 0);
  ``raw_accuracy`` scores the model's words before the check; ``exact_match`` (extractive
  and numeric items) and ``rouge_l`` (free answers) score the shown answers too;
- **relevance**: ``recall_at_k``, the share of questions with a gold document among the
  passages; ``citation_precision``, the share of shown answers whose citations include a
  gold document (or, without ``doc_ids``, a passage holding the answer);
- **hallucination**: ``hallucination_rate``, the share of confident (shown) answers on the
  unanswerable split, made by dropping each question's gold documents from its results
  (``raw_hallucination_rate``: the share of the model's answers there that are not a
  refusal, before the check);
  ``unsupported_rate``, the share of shown answers on the answerable split whose content
  words are less than half backed by the cited passages; ``abstention_rate``.

Retrieval runs once per question and is shared by the systems that use it. More
adapters (``also``: e.g. a supervised adapter and its preference-tuned child) add
systems named after them (``v4``, ``v4+rag``), side by side in the same report.
Writes ``answers.jsonl`` (every answer, whether it was shown, and the check's reasons
when not) and the report (:mod:`.report`); the checkpoint curve is :mod:`.checkpoints`.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.evaluation.answers import answer_all, chat_prompts, generate_all, retrieve
from assistant.evaluation.drift import general_drift
from assistant.evaluation.report import write_report, write_risk_coverage
from assistant.evaluation.scoring import (answers_something, citation_precision, holds_answer, macro_f1, mean, score_answer,
                                          second_score, support, yes_no_maybe)
from assistant.evaluation.sets import EvalItem, current_ids
from assistant.generation.base import TextGenerator
from assistant.grounding.answerability import DEFAULT_MAX_HALLUCINATION, Gate, load_gates
from assistant.grounding.check import DEFAULT_MIN_SCORE, GroundedAnswer, apply_gate, finalize
from assistant.grounding.choice_head import ChoiceHead, load_heads
from assistant.grounding.choices import choice_answer, score_choices
from assistant.grounding.extract import DEFAULT_ANSWER_MODE
from assistant.grounding.claims import is_refusal
from assistant.grounding.passages import Passage, relevant_enough
from assistant.grounding.verify import Embed, OverlapVerifier, Verifier

SYSTEMS = ("base", "base+rag", "adapter", "adapter+rag")
YES_NO_MAYBE = ("yes", "no", "maybe")
SUPPORTED = 0.5  # a shown answer with less of its content backed by its citations is "unsupported"


@dataclass(frozen=True)
class EvalSettings:
    top_k: int = field(default=3, metadata={"help": "passages per question"})
    # 96, not the gate's 48: the tuned model writes a sentence or two before its citation, and
    # an answer cut before it is not shown (measured: 5 of 16 PubMedQA answers at 48, 7 at 96)
    max_new_tokens: int = field(default=96, metadata={"help": "answer length limit"})
    batch_size: int = field(default=8, metadata={"help": "questions generated together"})
    min_score: float = field(default=DEFAULT_MIN_SCORE, metadata={"help": "the service's abstention threshold"})
    unanswerable: bool = field(default=True, metadata={"help": "also run the unanswerable split"})
    answer_mode: str = field(default=DEFAULT_ANSWER_MODE, metadata={"help": "generative | extractive | auto, as the service"})
    choices: bool = field(default=False, metadata={"help": "answer yes/no/maybe sets by choice scoring"})
    calibrated: bool = field(default=False, metadata={
        "help": "hold answers to the answerability calibrator beside each set's index (assistant calibrate)"})
    max_hallucination: float = field(default=DEFAULT_MAX_HALLUCINATION, metadata={
        "help": "the calibrated operating point: at most this share of unanswerable questions answered"})


def _cites_gold(cited: Sequence[Passage], item: EvalItem) -> float | None:
    if not cited:
        return None
    if item.doc_ids:
        return float(any(p.doc_id in item.doc_ids for p in cited))
    return citation_precision([p.text for p in cited], item.answer)


def _ci95(values: Sequence[float]) -> float | None:
    """Half-width of the normal 95% interval of the mean: how far a sample of this size
    can be from the whole set's score (None below 2 items)."""
    if len(values) < 2:
        return None
    return round(1.96 * statistics.stdev(values) / math.sqrt(len(values)), 4)


def _second_scores(items: Sequence[EvalItem], answers: Sequence[str], shown: Sequence[bool]) -> dict[str, float | None]:
    """Mean exact match / ROUGE-L over the items that have one; a hidden answer scores 0."""
    by_metric: dict[str, list[float]] = {}
    for item, answer, visible in zip(items, answers, shown, strict=True):
        scored = second_score(answer, item.answer, item.answer_type)
        if scored is not None:
            by_metric.setdefault(scored[0], []).append(scored[1] if visible else 0.0)
    return {name: mean(values) for name, values in by_metric.items()}


def judge(answers: Sequence[str], passages: Sequence[list[Passage]], verifier: Verifier, min_score: float, *,
          questions: Sequence[str] | None = None, mode: str = "generative", embed: Embed | None = None,
          gate: Gate | None = None, logprobs: Sequence[float | None] | None = None) -> list[GroundedAnswer]:
    """What the service would show for each answer: the same check, the same verifier,
    the same answer mode, the same calibrated gate."""
    asked = list(questions) if questions is not None else [""] * len(answers)
    sure = list(logprobs) if logprobs is not None else [None] * len(answers)
    return [finalize(a, found, verifier, min_score=min_score, mode=mode, question=q, embed=embed, gate=gate,
                     mean_logprob=lp)
            for a, found, q, lp in zip(answers, passages, asked, sure, strict=True)]


def choose_all(generator: TextGenerator, items: Sequence[EvalItem], passages: Sequence[list[Passage]],
               adapter: str | None, verifier: Verifier, min_score: float, *, embed: Embed | None,
               head: ChoiceHead | None = None, progress: bool = False) -> tuple[list[str], list[GroundedAnswer]]:
    """Yes/no/maybe by choice scoring, as ``/v1/ask`` with ``choices`` answers; an item
    whose passages are not relevant enough abstains, as there."""
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    answers, shown = [], []
    for item, found in tqdm(list(zip(items, passages, strict=True)), desc=f"choices ({adapter or 'base'})",
                            disable=not progress):
        if relevant_enough(found, min_score):
            scored = score_choices(generator, item.question, found, YES_NO_MAYBE, adapter=adapter, head=head)
            answers.append(scored.answer)
            # as the service: signals recorded, no answerability gate (fitted on generated answers)
            shown.append(apply_gate(choice_answer(scored, item.question, found, scored.answer, embed), found, None,
                                    scored.mean_logprob))
        else:
            answers.append("")
            shown.append(finalize("", found, verifier, min_score=min_score))
    return answers, shown


def score_rag(items: Sequence[EvalItem], passages: Sequence[list[Passage]], answers: Sequence[str],
              shown: Sequence[GroundedAnswer]) -> dict[str, Any]:
    """Scores of what users see (``shown``: the supported claims with their citations, or
    an abstention scoring 0) beside the raw answers'."""
    accuracy, raw, cites, unsupported = [], [], [], []
    for item, found, answer, result in zip(items, passages, answers, shown, strict=True):
        raw.append(score_answer(answer, item.answer, item.answer_type))
        accuracy.append(score_answer(result.answer, item.answer, item.answer_type) if result.grounded else 0.0)
        if result.grounded:
            by_number = {p.number: p for p in found}
            cited = [by_number[int(c["number"])] for c in result.citations]  # type: ignore[call-overload]
            cites.append(_cites_gold(cited, item))
            unsupported.append(float(support(result.answer, [p.text for p in cited]) < SUPPORTED))
    grounded = [r.grounded for r in shown]
    return {"n": len(items), "accuracy": mean(accuracy), "accuracy_ci95": _ci95(accuracy), "raw_accuracy": mean(raw),
            **_decisions(items, [r.answer if r.grounded else None for r in shown]),
            **_second_scores(items, [r.answer for r in shown], grounded),
            "abstention_rate": mean([float(not g) for g in grounded]),
            "citation_precision": mean(cites), "unsupported_rate": mean(unsupported)}


def _decisions(items: Sequence[EvalItem], answers: Sequence[str | None]) -> dict[str, float | None]:
    """Macro-F1 of a yes/no/maybe set's decisions (None: an abstention, matching no label)."""
    if not items or not all(i.answer_type == "yes_no_maybe" for i in items):
        return {}
    return {"macro_f1": macro_f1([i.answer for i in items], [yes_no_maybe(a) if a else None for a in answers])}


def score_closed(items: Sequence[EvalItem], answers: Sequence[str]) -> dict[str, Any]:
    scores = [score_answer(a, i.answer, i.answer_type) for i, a in zip(items, answers, strict=True)]
    return {"n": len(items), "accuracy": mean(scores), "accuracy_ci95": _ci95(scores), "raw_accuracy": mean(scores),
            **_decisions(items, answers),
            **_second_scores(items, answers, [True] * len(items)),
            "abstention_rate": mean([float(is_refusal(a)) for a in answers])}


def recall_at_k(items: Sequence[EvalItem], passages: Sequence[list[Passage]]) -> float | None:
    """Share of items with gold documents (or, without ids, a passage holding the answer) retrieved."""
    hits = [float(any(p.doc_id in i.doc_ids for p in found)) if i.doc_ids
            else float(any(holds_answer(p.text, i.answer) for p in found))
            for i, found in zip(items, passages, strict=True)]
    return mean(hits)


def _answer_records(system: str, split: str, items: Sequence[EvalItem], answers: Sequence[str],
                    passages: Sequence[list[Passage]] | None,
                    shown: Sequence[GroundedAnswer] | None) -> list[dict[str, Any]]:
    """One line per answer for ``answers.jsonl``: what was asked, said and shown, and why not."""
    records = []
    for n, (item, answer) in enumerate(zip(items, answers, strict=True)):
        record = {"system": system, "split": split, "id": item.id, "question": item.question, "gold": item.answer,
                  "answer": answer, "score": round(score_answer(answer, item.answer, item.answer_type), 4)}
        if passages is not None and shown is not None:
            result, found = shown[n], passages[n]
            by_number = {p.number: p for p in found}
            cited = [by_number[int(c["number"])] for c in result.citations]  # type: ignore[call-overload]
            record |= {"shown": result.grounded, "shown_answer": result.answer if result.grounded else None,
                       "shown_score": round(score_answer(result.answer, item.answer, item.answer_type), 4)
                       if result.grounded else 0.0,
                       "cites_gold": _cites_gold(cited, item) if result.grounded else None,
                       "gold_retrieved": bool(item.doc_ids) and any(p.doc_id in item.doc_ids for p in found),
                       "answerability": result.answerability,
                       **({"choice": result.choice} if result.choice else {}),
                       "reasons": [result.abstained_reason] if result.abstained_reason else [],
                       "dropped": result.dropped, "passages": [p.doc_id for p in found]}
        records.append(record)
    return records


def answering(systems: Sequence[str], adapter: str | None, also: Sequence[str] = ()) -> dict[str, str | None]:
    """The adapter that answers for each system (None: the base model)."""
    by_system: dict[str, str | None] = {}
    for system in systems:
        by_system[system] = adapter if system.startswith("adapter") else None
        if system.startswith("adapter"):
            for name in also:
                by_system[system.replace("adapter", name, 1)] = name
    return by_system


def evaluate_set(generator: TextGenerator, items: Sequence[EvalItem], index: Any, systems: Sequence[str],
                 adapter: str | None, settings: EvalSettings, progress: bool = False,
                 gates: Mapping[str | None, Gate] | None = None,
                 heads: Mapping[str | None, ChoiceHead] | None = None,
                 adapters: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """Scores per system, and under ``"answers"`` every answer (see :func:`_answer_records`);
    with ``gates`` (by adapter, None the base model), the rag systems' answers are held to
    their model's calibrated gate as the service holds them."""
    items = current_ids(items, index)
    gen = {"max_new_tokens": settings.max_new_tokens, "batch_size": settings.batch_size}
    closed = chat_prompts(generator, [i.question for i in items])
    found = retrieve(index, items, settings.top_k, drop_gold=False)
    grounded = chat_prompts(generator, [i.question for i in items], found)
    answerable = [i for i in items if i.doc_ids] if settings.unanswerable else []
    missing = retrieve(index, answerable, settings.top_k, drop_gold=True)
    ungrounded = chat_prompts(generator, [i.question for i in answerable], missing)
    verifier = OverlapVerifier(index.embedder.embed_to_compare)  # the service's default verifier
    how: dict[str, Any] = {"mode": settings.answer_mode, "embed": index.embedder.embed_to_compare}
    results: dict[str, Any] = {"recall_at_k": recall_at_k(items, found), "k": settings.top_k}
    records: list[dict[str, Any]] = []
    name: str | None = None
    gate: Gate | None = None
    heads = heads or {}

    def rag_answers(asked: Sequence[EvalItem], passages: Sequence[list[Passage]],
                    prompts: Sequence[str]) -> tuple[list[str], list[GroundedAnswer]]:
        """The raw answers with retrieval and what the service shows of them; yes/no/maybe
        items are answered by choice scoring when ``settings.choices`` is set."""
        if settings.choices and asked and all(i.answer_type == "yes_no_maybe" for i in asked):
            return choose_all(generator, asked, passages, name, verifier, settings.min_score, embed=how["embed"],
                              head=heads.get(name), progress=progress)
        results = generate_all(generator, prompts, name, **gen, progress=progress)
        answers = [r.text for r in results]
        return answers, judge(answers, passages, verifier, settings.min_score, questions=[i.question for i in asked],
                              gate=gate, logprobs=[r.mean_logprob for r in results], **how)

    by_system = adapters if adapters is not None else answering(systems, adapter)
    for system in systems:
        name = by_system[system]
        gate = (gates or {}).get(name)
        started = time.perf_counter()
        if system.endswith("+rag"):
            answers, shown = rag_answers(items, found, grounded)
            row = score_rag(items, found, answers, shown)
            records += _answer_records(system, "answerable", items, answers, found, shown)
            if missing:
                answers, shown = rag_answers(answerable, missing, ungrounded)
                unanswered = _answer_records(system, "unanswerable", answerable, answers, missing, shown)
                row["hallucination_rate"] = mean([float(r["shown"]) for r in unanswered])
                row["raw_hallucination_rate"] = mean([float(answers_something(a)) for a in answers])
                row["unanswerable_n"] = len(missing)
                records += unanswered
        else:
            answers = answer_all(generator, closed, name, **gen, progress=progress)
            row = score_closed(items, answers)
            records += _answer_records(system, "closed-book", items, answers, None, None)
        results[system] = row | {"seconds": round(time.perf_counter() - started, 1)}
    return results | {"answers": records}


def run_eval(generator: TextGenerator, sets: Mapping[str, tuple[Sequence[EvalItem], Any]], out: Path, *, adapter: str | None,
             systems: Sequence[str] = SYSTEMS, settings: EvalSettings | None = None,
             progress: bool = False, also: Sequence[str] = ()) -> dict[str, Any]:
    """Every system on every set; ``also`` adds adapters compared with ``adapter``."""
    settings = settings or EvalSettings()
    if also and adapter is None:
        raise ValueError("more adapters to compare need a first one (adapter)")
    if len({adapter, *also}) != len(also) + 1:
        raise ValueError(f"an adapter is named twice: {', '.join([str(adapter), *also])}")
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise ValueError(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    if adapter is None:
        systems = [s for s in systems if not s.startswith("adapter")]
    if not systems:
        raise ValueError("no system left to evaluate: the adapter systems need --adapter")
    by_system = answering(systems, adapter, also)
    systems = list(by_system)
    models = [None, adapter, *also]
    if generator.active_adapter is not None:
        raise ValueError("the base systems need a generator with no active adapter")
    started = time.perf_counter()
    report: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "adapter": adapter,
                              "also": list(also),
                              "model": generator.model_name, "systems": list(systems),
                              "settings": asdict(settings), "sets": {}}
    answers: list[dict[str, Any]] = []
    for name, (items, index) in sets.items():  # each set with the index its documents are in
        gates = load_gates(index.directory, models, model=generator.model_name, embedder=index.embedder.name,
                           max_hallucination=settings.max_hallucination) if settings.calibrated else {}
        heads = load_heads(index.directory, models, model=generator.model_name) if settings.calibrated else {}
        if settings.calibrated and not gates and not heads:
            raise FileNotFoundError(f"--calibrated: no calibrator beside the index at {index.directory}; "
                                    "fit one with `assistant calibrate`")
        report["sets"][name] = ({"calibrated": sorted(str(a) for a in gates)} if gates else {}) | (
            {"choice_heads": sorted(str(a) for a in heads)} if heads else {})
        result = evaluate_set(generator, items, index, systems, adapter, settings, progress, gates, heads, by_system)
        answers += [{"set": name} | record for record in result.pop("answers")]
        report["sets"][name] |= result
    if adapter is not None:  # over-tuning: the gate's drift from the base model
        report["drift"] = general_drift(generator, adapter)  # the gate's own figure
    if also:
        report["drifts"] = {adapter: report["drift"]} | {name: general_drift(generator, name) for name in also}
    report["seconds"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "answers.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in answers)
    written = write_report(report, out) + write_risk_coverage(answers, out)
    report["files"] = [str(p) for p in written] + [str(out / "answers.jsonl")]
    return report
