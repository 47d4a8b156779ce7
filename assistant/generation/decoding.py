"""Decoding one left-padded batch a slice of tokens at a time, its keys and values kept
between slices, so the generation queue can run other batches in between.

    decoding = generator.begin(prompts, max_new_tokens=[8, 256], stop=[gone_0, gone_1])
    while not decoding.done:
        for row, result in decoding.advance(32):   # rows that finished in this slice
            deliver(row, result)

Why slices: one ``generate`` call runs until its longest row ends, so an 8-token answer
asked for while a 256-token batch decodes used to wait for all 256 tokens. Between slices
the queue starts newer batches; a row that ends (its end-of-sequence token, its own token
limit, or its ``stop`` predicate turning true: a client that left, a passed deadline) is
handed back at once and dropped from the batch, keys and values included.

Why prompts are read in pieces (``read_tokens`` a turn): reading eight grounded prompts
takes seconds on a CPU, and no row of any batch can be cut at its deadline meanwhile; in
pieces, the queue can end or advance other batches between them. On this project's 2-core
CPU pieces of 64–128 positions also read faster than the whole width at once (655–751
against 315–501 tokens/s for 8 prompts of 805 positions, SmolLM2 in float32): attention
over the whole width at once costs more than over a growing cache.

torch and transformers are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from assistant.generation.base import GenerationResult, TokenCallback
from assistant.generation.streaming import BatchStreamer

StopPredicate = Callable[[], bool]


def row_limits(default: int, prompts: Sequence[str], max_new_tokens: int | Sequence[int | None] | None,
               on_token: Sequence[TokenCallback | None] | None, stop: Sequence[StopPredicate | None] | None) -> list[int]:
    """Each row's token limit for a batch (``max_new_tokens`` one for all or one per row, None:
    ``default``), after checking that the per-row arguments have a row each."""
    for name, per_row in (("on_token", on_token), ("stop", stop)):
        if per_row is not None and len(per_row) != len(prompts):
            raise ValueError(f"{name} has {len(per_row)} entries for {len(prompts)} prompts")
    if max_new_tokens is None or isinstance(max_new_tokens, int):
        max_new_tokens = [max_new_tokens] * len(prompts)
    limits = [default if n is None else n for n in max_new_tokens]
    if len(limits) != len(prompts) or any(n < 1 for n in limits):
        raise ValueError(f"max_new_tokens must be at least 1 for each of {len(prompts)} prompts, got {limits}")
    if not prompts:
        raise ValueError("a batch needs at least one prompt")
    return limits


class SlicedBatch:
    """What both engines' batches share: ``rows`` still decoding (indexes of the prompts),
    each row's ``limits`` and ``tokens`` so far, and decoding to the end in one go."""

    rows: list[int]
    limits: list[int]
    tokens: list[list[int]]

    @property
    def done(self) -> bool:
        return not self.rows

    @property
    def remaining(self) -> int:
        """Tokens the batch may still decode (its longest row's limit left)."""
        return max((self.limits[r] - len(self.tokens[r]) for r in self.rows), default=0)

    def advance(self, max_tokens: int) -> list[tuple[int, GenerationResult]]:
        raise NotImplementedError

    def run(self) -> list[GenerationResult]:
        """Decodes to the end; the results in prompt order."""
        results: dict[int, GenerationResult] = {}
        while not self.done:
            results.update(self.advance(max(self.limits)))
        return [results[row] for row in range(len(self.limits))]


def _cache_argument(model: Any, cache: Any) -> dict[str, Any]:
    """The keys and values of earlier slices, under the name the model's forward takes
    (transformers 5 renamed ``past_key_values`` to ``cache``; the old name warns until removed)."""
    if cache is None:
        return {}
    import inspect

    return {"cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values": cache}


class _RowLimits:
    """A per-row stopping criterion: a row ends at its end-of-sequence token, its own token
    limit or when its stop predicate turns true; the step it ended at is kept, since after
    it the row is padding. The slice ends with the first row that ends."""

    def __init__(self, counts: list[int], limits: list[int], stops: list[StopPredicate | None],
                 streamer: BatchStreamer | None, start_width: int, eos_ids: set[int]) -> None:
        self.counts, self.limits, self.stops, self.eos_ids = counts, limits, stops, eos_ids
        self.streamer, self.start_width = streamer, start_width
        self.ended_at: list[int | None] = [None] * len(counts)  # tokens of this slice the row kept
        self.stopped = [False] * len(counts)
        self.first_step_at: float | None = None  # when the first token of the slice was out

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        if self.first_step_at is None:
            self.first_step_at = time.perf_counter()
        steps = input_ids.shape[1] - self.start_width
        last = input_ids[:, -1].tolist()
        ended_now = False
        for row, (count, limit, stop) in enumerate(zip(self.counts, self.limits, self.stops)):
            if self.ended_at[row] is not None:
                continue
            if last[row] in self.eos_ids:
                self.ended_at[row], ended_now = steps, True
                continue
            stopped = stop is not None and stop()
            if count + steps >= limit or stopped:
                self.ended_at[row], self.stopped[row], ended_now = steps, stopped, True
                if self.streamer is not None:
                    self.streamer.stop_row(row, count + steps)
        # a row that ends ends the slice: it is handed back now, not when the slice's longest row is
        return torch.full((len(last),), ended_now, dtype=torch.bool, device=input_ids.device) | torch.tensor(
            [e is not None for e in self.ended_at], device=input_ids.device)


class Decoding(SlicedBatch):
    """One batch of a :class:`~assistant.generation.local.LocalGenerator`, decoded by
    :meth:`advance` a slice at a time. ``max_new_tokens`` and ``stop`` are per row."""

    def __init__(self, generator: Any, prompts: Sequence[str], max_new_tokens: Sequence[int], adapter: str | None,
                 on_token: Sequence[TokenCallback | None] | None, stop: Sequence[StopPredicate | None] | None,
                 read_tokens: int = 0) -> None:
        self.generator = generator
        self.read_tokens = read_tokens
        """Prompt tokens (positions × rows) one :meth:`advance` reads, at least 16 positions; 0: all at once."""
        # fixed now: an adapter activated while the batch decodes must not serve half of its tokens
        self.adapter = generator.active_adapter if adapter is None else adapter
        tokenizer = generator.tokenizer
        batch = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False,
                          return_token_type_ids=False).to(generator.model.device)
        self.input_ids, self.attention_mask = batch["input_ids"], batch["attention_mask"]
        self.cache: Any = None
        self.prompt_width = self.input_ids.shape[1]
        self.read = 0
        """Prompt positions whose keys and values are in the cache (all of them after the first slice)."""
        self.last_steps = 0
        """Decoding steps the last :meth:`advance` took (the queue's measure of speed)."""
        self.last_prefill_tokens = 0
        """Prompt tokens the last :meth:`advance` read (a piece, or the rest with the first slice; then none)."""
        self.last_first_step_seconds = 0.0
        """Seconds the last :meth:`advance` took to its first token (or to read its piece)."""
        self.rows = list(range(len(prompts)))  # the original index of each row still decoding
        self.prompt_tokens = batch["attention_mask"].sum(dim=1).tolist()
        self.limits = list(max_new_tokens)
        self.stops = list(stop) if stop is not None else [None] * len(prompts)
        self.tokens: list[list[int]] = [[] for _ in prompts]
        self.logprobs: list[list[float]] = [[] for _ in prompts]
        self.streamer = None
        if on_token is not None and any(c is not None for c in on_token):
            self.streamer = BatchStreamer(tokenizer, generator.eos_ids, on_token)

    def advance(self, max_tokens: int) -> list[tuple[int, GenerationResult]]:
        """Decodes at most ``max_tokens`` more tokens; returns ``(row, result)`` for each row
        that ended in this slice (``row`` indexes the prompts given to ``begin``)."""
        import torch

        if self.done:
            return []
        if self.reading and self._read_piece():
            return []
        gen = self.generator
        counts = [len(self.tokens[r]) for r in self.rows]
        limits = [self.limits[r] for r in self.rows]
        width = self.input_ids.shape[1]
        criterion = _RowLimits(counts, limits, [self.stops[r] for r in self.rows], self.streamer, width, gen.eos_ids)
        steps = min(max_tokens, max(limit - count for count, limit in zip(counts, limits)))
        started = time.perf_counter()
        with gen._lock:
            gen.generate_calls += 1
            with gen._using(self.adapter), torch.inference_mode():
                output = gen.model.generate(
                    input_ids=self.input_ids, attention_mask=self.attention_mask, **_cache_argument(gen._transformer(), self.cache),
                    max_new_tokens=steps, do_sample=False, pad_token_id=gen.tokenizer.pad_token_id,
                    eos_token_id=sorted(gen.eos_ids), streamer=self.streamer, stopping_criteria=[criterion],
                    output_scores=True, return_dict_in_generate=True, use_cache=True,
                )
        new = output.sequences[:, width:]
        self.last_steps = new.shape[1]
        self.last_prefill_tokens = int(self.attention_mask[:, self.read:width].sum()) if self.reading else 0
        self.read = self.prompt_width
        self.last_first_step_seconds = (criterion.first_step_at or time.perf_counter()) - started
        # greedy with no logits processors: the scores are the model's logits at each step
        logprobs = torch.stack([torch.log_softmax(step.float(), dim=-1).gather(1, new[:, t : t + 1])[:, 0]
                                for t, step in enumerate(output.scores)], dim=1).tolist()
        finished, keep = [], []
        for j, (row, ids) in enumerate(zip(self.rows, new.tolist())):
            ended_at = criterion.ended_at[j]
            ids = ids if ended_at is None else ids[:ended_at]
            eos = next((i for i, token in enumerate(ids) if token in gen.eos_ids), None)
            kept = ids if eos is None else ids[: eos + 1]
            self.tokens[row] += kept
            self.logprobs[row] += logprobs[j][: len(kept)]
            if eos is not None:
                finished.append((row, self._result(row, "stop")))
            elif ended_at is not None:
                finished.append((row, self._result(row, "stopped" if criterion.stopped[j] else "length")))
            else:
                keep.append(j)
        self._carry_on(keep, output)
        return finished

    @property
    def reading(self) -> bool:
        """Whether prompt positions are still to be read (before the first slice)."""
        return bool(self.rows) and self.read < self.prompt_width

    def _read_piece(self) -> bool:
        """Reads the next piece of the prompts into the cache, unless what is left fits in
        one piece (then the slice's ``generate`` reads it); whether it read one."""
        import torch
        from transformers import DynamicCache

        left = self.prompt_width - self.read
        positions = max(16, self.read_tokens // len(self.rows)) if self.read_tokens else left
        if left <= positions:
            return False
        # pieces of even size: the last one, read with the first slice, is then not a sliver
        # whose time to the first token (a whole decoding step) the pace would take for reading
        end = self.read + math.ceil(left / math.ceil(left / positions))
        gen = self.generator
        started = time.perf_counter()
        mask = self.attention_mask[:, :end]
        # the positions generate gives a left-padded row: counted from its first real token
        position_ids = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)[:, self.read:end]
        with gen._lock, gen._using(self.adapter), torch.inference_mode():
            base = gen._transformer()
            decoder = base.get_decoder()  # no vocabulary-sized logits for positions read
            if self.cache is None:  # as generate makes it (the config tells sliding-window layers apart)
                self.cache = DynamicCache(config=base.config.get_text_config(decoder=True))
            decoder(input_ids=self.input_ids[:, self.read:end], attention_mask=mask, position_ids=position_ids,
                    use_cache=True, **_cache_argument(decoder, self.cache))
        self.last_steps, self.last_prefill_tokens = 0, int(mask[:, self.read:].sum())
        self.last_first_step_seconds = time.perf_counter() - started
        self.read = end
        return True

    def drop_stopped(self) -> list[tuple[int, GenerationResult]]:
        """Between slices: rows whose stop predicate is true (a client gone, a deadline
        passed) end now, without waiting for the batch's next turn."""
        ended = [j for j, row in enumerate(self.rows) if (stop := self.stops[row]) is not None and stop()]
        if not ended:
            return []
        finished = [(self.rows[j], self._result(self.rows[j], "stopped")) for j in ended]
        self._keep([j for j in range(len(self.rows)) if j not in ended])
        return finished

    def _carry_on(self, keep: list[int], output: Any) -> None:
        import torch

        new_width = output.sequences.shape[1] - self.input_ids.shape[1]
        self.attention_mask = torch.cat(
            [self.attention_mask, self.attention_mask.new_ones((len(self.rows), new_width))], dim=1)
        self.input_ids = output.sequences
        self.cache = output.cache if hasattr(output, "cache") else output.past_key_values
        self._keep(keep)

    def _keep(self, keep: list[int]) -> None:
        """Only the rows ``keep`` (positions in ``self.rows``) go on, keys and values included."""
        import torch

        if not keep:
            self.rows, self.cache = [], None
            return
        if len(keep) < len(self.rows):
            index = torch.tensor(keep, device=self.input_ids.device)
            self.input_ids, self.attention_mask = self.input_ids[index], self.attention_mask[index]
            if self.cache is not None:
                self.cache.batch_select_indices(index)
        self.rows = [self.rows[j] for j in keep]
        if self.streamer is not None:
            self.streamer.next_slice(keep)

    def _result(self, row: int, finish_reason: str) -> GenerationResult:
        tokens, logprobs = self.tokens[row], self.logprobs[row]
        eos = bool(tokens) and tokens[-1] in self.generator.eos_ids
        return GenerationResult(
            text=self.generator.tokenizer.decode(tokens[:-1] if eos else tokens, skip_special_tokens=True),
            prompt_tokens=int(self.prompt_tokens[row]),
            completion_tokens=len(tokens),
            finish_reason=finish_reason,
            mean_logprob=sum(logprobs) / len(logprobs) if logprobs else None,
        )
