"""Answering many questions at once, as the service would: prompts with or without
retrieved passages, generated in batches. Shared by the evaluation and the tuning gate.

    passages = retrieve(index, items, top_k=3)
    prompts = chat_prompts(generator, [i.question for i in items], passages)
    answers = answer_all(generator, prompts, adapter="v2", max_new_tokens=96, batch_size=8)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from assistant.evaluation.sets import EvalItem
from assistant.generation.base import GenerationResult, TextGenerator
from assistant.grounding.passages import Passage, build_messages, passages_from_hits

SEARCH_SLACK = 10  # extra hits fetched so that dropping the gold documents still leaves top_k


def chat_prompts(generator: TextGenerator, questions: Sequence[str],
                 passages: Sequence[Sequence[Passage]] | None = None) -> list[str]:
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


def retrieval_prompts(generator: TextGenerator, items: Sequence[EvalItem], index: Any | None, top_k: int) -> list[str]:
    """The serving prompt per item, with the top-k passages; closed-book when ``index`` is None."""
    questions = [item.question for item in items]
    if index is None:
        return chat_prompts(generator, questions)
    return chat_prompts(generator, questions, retrieve(index, items, top_k))


def answer_all(generator: TextGenerator, prompts: Sequence[str], adapter: str | None, *, max_new_tokens: int,
               batch_size: int, progress: bool = False) -> list[str]:
    """Greedy answers in batches; ``adapter`` None is the base model when none is active."""
    return [r.text for r in generate_all(generator, prompts, adapter, max_new_tokens=max_new_tokens,
                                         batch_size=batch_size, progress=progress)]


def generate_all(generator: TextGenerator, prompts: Sequence[str], adapter: str | None, *, max_new_tokens: int,
                 batch_size: int, progress: bool = False) -> list[GenerationResult]:
    """:func:`answer_all` with each answer's whole result (its mean token log-probability too)."""
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    # prompts of similar length share a batch: less padding to run through the model
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[GenerationResult | None] = [None] * len(prompts)
    with tqdm(total=len(prompts), desc=f"answers ({adapter or 'base'})", disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            done = generator.generate([prompts[i] for i in rows], max_new_tokens=max_new_tokens, adapter=adapter)
            for i, result in zip(rows, done, strict=True):
                results[i] = result
            bar.update(len(rows))
    return [r for r in results if r is not None]
