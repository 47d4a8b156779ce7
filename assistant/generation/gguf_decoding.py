"""Decoding one batch on llama.cpp a slice of tokens at a time: the llama.cpp backend's
counterpart of :mod:`.decoding`, with the same surface for the generation queue.

    decoding = generator.begin(prompts, max_new_tokens=[8, 256], stop=[gone_0, gone_1])
    while not decoding.done:
        for row, result in decoding.advance(16):   # rows that finished in this slice
            deliver(row, result)

Each row is a sequence of its own in the model's shared context: the prompts are read in
one ``llama_decode`` call, then each step decodes every live row's last token together
(the weights are read once for the batch). A row that ends gives its key/value cells back
at once, and the slice ends with it so it is handed back now, as in :mod:`.decoding`.
Greedy choice and each chosen token's log-probability come from the step's logits.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from assistant.generation.base import GenerationResult, TokenCallback
from assistant.generation.decoding import SlicedBatch, StopPredicate
from assistant.generation.streaming import hand_over
from assistant.generation.gguf_model import GGUFModel, log_softmax_at


class GGUFDecoding(SlicedBatch):
    """One batch of a :class:`~assistant.generation.gguf_backend.GGUFGenerator`;
    ``max_new_tokens`` and ``stop`` are per row."""

    def __init__(self, generator: Any, model: GGUFModel, adapter: str | None, prompts: Sequence[str],
                 max_new_tokens: Sequence[int], on_token: Sequence[TokenCallback | None] | None,
                 stop: Sequence[StopPredicate | None] | None) -> None:
        self.generator, self.model, self.adapter = generator, model, adapter
        self.prompt_ids = [model.tokenize(p) for p in prompts]
        if not all(self.prompt_ids):
            raise ValueError("every prompt must have at least one token")
        self.prompt_tokens = [len(ids) for ids in self.prompt_ids]
        self.limits = list(max_new_tokens)
        self.stops = list(stop) if stop is not None else [None] * len(prompts)
        self.callbacks: list[TokenCallback | None] = list(on_token) if on_token is not None else [None] * len(prompts)
        self.tokens: list[list[int]] = [[] for _ in prompts]
        self.logprobs: list[list[float]] = [[] for _ in prompts]
        self.sent = [0] * len(prompts)  # characters of each row's text handed to its callback
        self.last_steps = 0
        self.last_prefill_tokens = 0
        self.last_first_step_seconds = 0.0
        self.seqs: dict[int, int] = {}
        self.rows = list(range(len(prompts)))
        with model.lock:
            try:
                for row, ids in enumerate(self.prompt_ids):
                    self.seqs[row] = model.take_sequence(len(ids) + self.limits[row])
            except BaseException:
                self._release(list(self.seqs))
                raise
        self._read = False  # the prompts are in the context

    def advance(self, max_tokens: int) -> list[tuple[int, GenerationResult]]:
        """Decodes at most ``max_tokens`` more tokens; ``(row, result)`` for each row that ended."""
        if self.done:
            return []
        model, finished = self.model, []
        started = time.perf_counter()
        self.last_steps, self.last_prefill_tokens, first_at = 0, 0, None
        with model.lock:
            self.generator.generate_calls += 1
            try:
                while self.rows and self.last_steps < max_tokens and not finished:
                    logits = self._read_prompts() if not self._read else model.decode(self._entries())
                    chosen = logits.argmax(axis=1)
                    logprobs = log_softmax_at(logits, chosen)
                    self.last_steps += 1
                    first_at = first_at or time.perf_counter()
                    for j, row in enumerate(list(self.rows)):
                        self.tokens[row].append(int(chosen[j]))
                        self.logprobs[row].append(float(logprobs[j]))
                        reason = self._ended(row)
                        self._stream(row, final=reason is not None)
                        if reason is not None:
                            finished.append((row, self._result(row, reason)))
                    self._release([row for row, _ in finished])
            except BaseException:
                self._release(list(self.rows))  # the batch is over: its cells go back
                raise
        self.last_first_step_seconds = (first_at or time.perf_counter()) - started
        return finished

    def drop_stopped(self) -> list[tuple[int, GenerationResult]]:
        """Between slices: rows whose stop predicate is true end now."""
        ended = [row for row in self.rows if (stop := self.stops[row]) is not None and stop()]
        with self.model.lock:
            self._release(ended)
        return [(row, self._result(row, "stopped")) for row in ended]

    def _read_prompts(self) -> Any:
        """The prompts into their sequences; the logits after each one's last token."""
        self._read = True
        self.last_prefill_tokens = sum(self.prompt_tokens[row] for row in self.rows)
        return self.generator.read_prompts(self.model, self.adapter, [(self.seqs[r], self.prompt_ids[r]) for r in self.rows])

    def _entries(self) -> list[tuple[int, int, int, bool]]:
        """The next ``llama_decode`` batch: each live row's newest token at the position after its last."""
        return [(self.seqs[row], self.prompt_tokens[row] + len(self.tokens[row]) - 1, self.tokens[row][-1], True)
                for row in self.rows]

    def _ended(self, row: int) -> str | None:
        if self.model.is_end(self.tokens[row][-1]):
            return "stop"
        if len(self.tokens[row]) >= self.limits[row]:
            return "length"
        stop = self.stops[row]
        return "stopped" if stop is not None and stop() else None

    def _release(self, rows: list[int]) -> None:
        for row in rows:
            seq = self.seqs.pop(row, None)
            if seq is not None:
                self.model.release_sequence(seq)
        self.rows = [row for row in self.rows if row not in rows]

    def _text(self, row: int) -> str:
        # control tokens (the end of a turn) have no piece: as skip_special_tokens does
        return b"".join(self.model.piece(token) for token in self.tokens[row]).decode("utf-8", errors="replace")

    def _stream(self, row: int, *, final: bool) -> None:
        callback = self.callbacks[row]
        if callback is not None:
            self.sent[row], working = hand_over(callback, self._text(row), self.sent[row], final=final, row=row)
            if not working:
                self.callbacks[row] = None

    def _result(self, row: int, finish_reason: str) -> GenerationResult:
        logprobs = self.logprobs[row]
        return GenerationResult(
            text=self._text(row),
            prompt_tokens=self.prompt_tokens[row],
            completion_tokens=len(self.tokens[row]),
            finish_reason=finish_reason,
            mean_logprob=sum(logprobs) / len(logprobs) if logprobs else None,
        )
