"""The question flow, top to bottom: retrieve passages, prompt the model with them,
generate (or score the choices), verify each claim and attribute its citation
(:mod:`.check`), and answer or abstain.

No web framework here: the HTTP layer (:mod:`assistant.serve`) and the command
line (``assistant ask``) both call :class:`Answerer`. Retrieval runs in a
worker thread and generation in the generation queue's thread, so an event
loop is never blocked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from assistant.generation.base import GenerationResult, TextGenerator
from assistant.generation.queue import GenerationQueue
from assistant.grounding.answerability import Gate
from assistant.grounding.check import GroundedAnswer, apply_gate, finalize
from assistant.grounding.choice_head import ChoiceHead
from assistant.grounding.choices import choice_answer, score_choices
from assistant.grounding.extract import DEFAULT_ANSWER_MODE
from assistant.grounding.passages import Passage, build_messages, passages_from_hits, relevant_enough
from assistant.grounding.verify import Embed, OverlapVerifier, Verifier
from indexer.index import Index
from indexer.search import SearchFilter


@dataclass(frozen=True)
class AskRequest:
    question: str
    top_k: int = 4
    adapter: str | None = None
    filters: SearchFilter = field(default_factory=SearchFilter)
    max_new_tokens: int | None = None
    answer_mode: str = DEFAULT_ANSWER_MODE
    """generative: the model's supported sentences; extractive: a quoted passage sentence
    (no generation); auto: the model's, else the quoted sentence."""
    choices: tuple[str, ...] = ()
    """When given, the answer is the most likely of these (see :mod:`.choices`)."""


class AnswerLog(Protocol):
    """Where shown answers are recorded so feedback can name them (the service's records)."""

    def add_answer(self, question: str, answer: str, grounded: bool, citations: list[dict[str, Any]],
                   model: str, adapter: str | None, prompt: list[dict[str, str]] | None = None,
                   model_text: str | None = None) -> str: ...


class Answerer:
    """Index + generation queue + the grounding check, with the service's threshold."""

    def __init__(self, index: Index, generator: TextGenerator, queue: GenerationQueue, *, min_score: float,
                 records: AnswerLog | None = None, verifier: Verifier | None = None,
                 gates: Mapping[str | None, Gate] | None = None,
                 choice_heads: Mapping[str | None, ChoiceHead] | None = None, deadline_s: float | None = None):
        self.index, self.generator, self.queue = index, generator, queue
        # an answer not ready this many seconds after it was asked for is cut short (or
        # refused up front when the queue's pace says it cannot make it); None: no deadline
        self.deadline_s = deadline_s
        self.min_score = min_score
        # calibrated answerability per answering adapter (None: the base model); an adapter
        # with no calibrator is held to the check and min_score alone
        self.gates = dict(gates or {})
        # learned choice decisions per answering adapter (else contextual calibration)
        self.choice_heads = dict(choice_heads or {})
        self.records = records
        # the default judge reuses the index's embedder: no extra model
        self.embed: Embed = lambda texts: index.embedder.embed_to_compare(texts)
        self.verifier = verifier if verifier is not None else OverlapVerifier(self.embed)

    def retrieve(self, question: str, top_k: int, filters: SearchFilter | None = None) -> list[Passage]:
        return passages_from_hits(self.index.search(question, k=top_k, mode="hybrid", filters=filters))

    def prompt(self, question: str, passages: list[Passage]) -> str:
        return self.generator.chat_prompt(build_messages(question, passages))

    def _result(self, req: AskRequest, text: str, passages: list[Passage], timings: dict[str, float],
                adapter: str | None, mean_logprob: float | None = None) -> dict[str, Any]:
        started = time.perf_counter()
        grounded = finalize(text, passages, self.verifier, min_score=self.min_score, mode=req.answer_mode,
                            question=req.question, embed=self.embed, gate=self.gates.get(adapter),
                            mean_logprob=mean_logprob)
        timings["verification_ms"] = (time.perf_counter() - started) * 1000
        return self._record(req, grounded, timings, adapter, passages, text)

    def _record(self, req: AskRequest, grounded: GroundedAnswer, timings: dict[str, Any], adapter: str | None,
                passages: list[Passage], model_text: str | None = None) -> dict[str, Any]:
        """The response body, recorded so that feedback can name it (with the prompt the
        model saw and its own words, so that a preference replays them)."""
        out: dict[str, Any] = grounded.to_dict() | {"model": self.generator.model_name, "adapter": adapter,
                                                    "timings": timings}
        if self.records is not None:
            out["answer_id"] = self.records.add_answer(
                req.question, grounded.answer, grounded.grounded, grounded.citations, self.generator.model_name,
                adapter, prompt=build_messages(req.question, passages), model_text=model_text)
        return out

    async def _retrieve(self, req: AskRequest) -> tuple[list[Passage], float, dict[str, Any], str | None, dict[str, Any] | None]:
        """Passages, the time retrieval ended, timings so far, the adapter that
        answers, and the finished answer when the model does not write one: nothing
        relevant was found (an abstention), the answer is extractive, or it is a choice."""
        started = time.perf_counter()
        passages = await asyncio.to_thread(self.retrieve, req.question, req.top_k, req.filters)
        retrieved = time.perf_counter()
        timings: dict[str, Any] = {"retrieval_ms": (retrieved - started) * 1000}
        adapter = req.adapter if req.adapter is not None else self.generator.active_adapter
        answerable = relevant_enough(passages, self.min_score)
        if answerable and req.choices:
            scored = await asyncio.to_thread(score_choices, self.generator, req.question, passages, req.choices,
                                             adapter=adapter, head=self.choice_heads.get(adapter))
            done = time.perf_counter()
            timings.update(generation_ms=(done - retrieved) * 1000, total_ms=(done - started) * 1000,
                           prompt_tokens=0, completion_tokens=0)
            # the answerability calibrator was fitted on generated answers, not on choices:
            # a choice carries its signals but is held to min_score and its probabilities
            shown = apply_gate(choice_answer(scored, req.question, passages, scored.answer, self.embed), passages,
                               None, scored.mean_logprob)
            return passages, retrieved, timings, adapter, self._record(req, shown, timings, adapter, passages)
        if answerable and req.answer_mode != "extractive":
            return passages, retrieved, timings, adapter, None
        timings.update(generation_ms=0.0, total_ms=(time.perf_counter() - started) * 1000,
                       prompt_tokens=0, completion_tokens=0)
        abstained = await asyncio.to_thread(self._result, req, "", passages, timings, adapter)
        return passages, retrieved, timings, adapter, abstained

    def _deadline_left(self, started: float) -> float | None:
        """Seconds left of the answer's deadline (retrieval took some)."""
        return None if self.deadline_s is None else self.deadline_s - (time.perf_counter() - started)

    async def ask(self, req: AskRequest) -> dict[str, Any]:
        started = time.perf_counter()
        passages, retrieved, timings, adapter, abstained = await self._retrieve(req)
        if abstained is not None:
            return abstained
        future = self.queue.submit(self.prompt(req.question, passages), max_new_tokens=req.max_new_tokens,
                                   adapter=req.adapter, deadline_s=self._deadline_left(started))
        try:
            result = await asyncio.wrap_future(future)
        except asyncio.CancelledError:  # the client left: stop generating for it
            self.queue.cancel(future)
            raise
        done = time.perf_counter()
        timings.update(_generation_timings(result, done - retrieved), total_ms=(done - started) * 1000)
        out = await asyncio.to_thread(self._result, req, result.text, passages, timings, adapter, result.mean_logprob)
        return out | {"finish_reason": result.finish_reason}

    async def ask_stream(self, req: AskRequest) -> AsyncIterator[dict[str, Any]]:
        """Events: ``{"event": "token", "text": ...}`` as the model writes, then
        one ``{"event": "answer", ...}`` with the checked result. Streamed text is
        provisional: when the check fails, the final answer replaces it."""
        started = time.perf_counter()
        passages, retrieved, timings, adapter, abstained = await self._retrieve(req)
        if abstained is not None:
            yield {"event": "answer", **abstained}
            return
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()

        def on_token(text: str) -> None:  # called on the generation thread
            loop.call_soon_threadsafe(pieces.put_nowait, text)

        future = self.queue.submit(self.prompt(req.question, passages), max_new_tokens=req.max_new_tokens,
                                   adapter=req.adapter, on_token=on_token, deadline_s=self._deadline_left(started))
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(pieces.put_nowait, None))
        first_token: float | None = None
        try:
            while (piece := await pieces.get()) is not None:
                if first_token is None:
                    first_token = time.perf_counter()
                yield {"event": "token", "text": piece}
            result = await asyncio.wrap_future(future)
        finally:  # the stream was closed early (the client left): stop generating for it
            if not future.done():
                self.queue.cancel(future)
        done = time.perf_counter()
        timings.update(_generation_timings(result, done - retrieved), total_ms=(done - started) * 1000)
        if first_token is not None:
            timings["first_token_ms"] = (first_token - started) * 1000
        final = await asyncio.to_thread(self._result, req, result.text, passages, timings, adapter,
                                        result.mean_logprob)
        yield {"event": "answer", **final, "finish_reason": result.finish_reason}


def _generation_timings(result: GenerationResult, seconds: float) -> dict[str, float]:
    return {"generation_ms": seconds * 1000, "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "tokens_per_s": result.completion_tokens / seconds if seconds > 0 else 0.0}
