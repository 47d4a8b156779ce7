"""The generation queue's pace: how fast it decodes and reads prompts, measured as it
works, and how long a new request would take, which admission compares with the
request's deadline.

    pace = Pace(slice_tokens=16, max_batch_size=8)
    pace.measure(elapsed, decoding, rows)                      # after each slice
    pace.expected(tokens=256, waiting=[8, 8], running=[200])   # seconds, 0.0 before any measure
    pace.learn(predicted, took)                                # after each answer

Running means (weight 0.2 on the newest) follow the machine as its load changes.
"""

from __future__ import annotations

from typing import Any


def _mean(old: float | None, new: float) -> float:
    return new if old is None else 0.8 * old + 0.2 * new


class Pace:
    def __init__(self, *, slice_tokens: int, max_batch_size: int) -> None:
        self.slice_tokens = slice_tokens
        """0: each batch decodes in one call."""
        self.max_batch_size = max_batch_size
        self.step_seconds: float | None = None
        """Seconds per decoding step of one batch (None before the first)."""
        self.prefill_seconds_per_token = 0.0
        """Seconds to read one prompt token (the first slice of a batch reads its prompts)."""
        self.prompt_tokens_mean = 0.0
        self.slowdown = 1.0
        """Answers' time over the time predicted when they came (see :meth:`learn`)."""

    @property
    def known(self) -> bool:
        return self.step_seconds is not None

    def measure(self, elapsed: float, decoding: Any, rows: int) -> None:
        """A slice took ``elapsed`` seconds. One that read prompts took
        ``decoding.last_first_step_seconds`` to its first token, nearly all of it reading
        them; its other steps were decoding."""
        steps, prefill_tokens = decoding.last_steps, decoding.last_prefill_tokens
        reading = decoding.last_first_step_seconds if prefill_tokens else 0.0
        decoded = steps - (1 if prefill_tokens and steps else 0)
        if decoded > 0:
            self.step_seconds = _mean(self.step_seconds, (elapsed - reading) / decoded)
        elif self.step_seconds is None and steps:  # one step that read prompts: a rough first guess
            self.step_seconds = elapsed
        if prefill_tokens:
            self.prefill_seconds_per_token = _mean(self.prefill_seconds_per_token or None, reading / prefill_tokens)
        if prefill_tokens and steps:  # the batch's prompts are read (a slice may read only their last piece)
            prompts = getattr(decoding, "prompt_tokens", None) or [prefill_tokens / max(1, rows)]
            self.prompt_tokens_mean = _mean(self.prompt_tokens_mean or None, sum(prompts) / len(prompts))

    def learn(self, predicted: float, took: float) -> None:
        """An answer predicted to take ``predicted`` seconds took ``took``: batches started
        after it, retrieval, checks and ingests on the same cores all slow answers, and
        :meth:`expected` multiplies its prediction by the running mean of the ratio."""
        if predicted >= 0.5:
            self.slowdown = min(5.0, max(0.5, _mean(self.slowdown, took / predicted)))

    def reading_seconds(self, prompts: int, *, piece_tokens: int = 0) -> float:
        """Reading ``prompts`` prompts of the usual length; with ``piece_tokens``, at most
        one piece of that many tokens (what runs before the queue may switch batches)."""
        tokens = self.prompt_tokens_mean * prompts
        return self.prefill_seconds_per_token * (min(tokens, piece_tokens) if piece_tokens else tokens)

    def expected(self, tokens: int, waiting: list[int], running: list[int], *, corrected: bool = True) -> float:
        """Seconds until a request for ``tokens`` tokens submitted now is answered, with
        ``waiting`` (the token limits of the requests queued before it) and ``running``
        (the tokens each running batch may still decode): reading the prompts waiting, this
        one included, the slice in progress, the first slices of the batches waiting, then
        its own tokens; a request longer than a slice also waits for the batches due before
        it (earliest deadline first). ``corrected``: times :attr:`slowdown`."""
        if self.step_seconds is None:
            return 0.0
        factor = self.slowdown if corrected else 1.0
        size = self.max_batch_size
        batches = [max(waiting[i:i + size]) for i in range(0, len(waiting), size)]
        if not self.slice_tokens:  # whole batches, one after another
            return factor * self.step_seconds * (tokens + sum(running) + sum(batches))
        steps = (self.slice_tokens if running else 0) + sum(min(t, self.slice_tokens) for t in batches) + tokens
        if tokens > self.slice_tokens:
            steps += sum(running) + sum(max(0, t - self.slice_tokens) for t in batches)
        return factor * (self.reading_seconds(len(waiting) + 1) + self.step_seconds * steps)

    def stats(self) -> dict[str, float | None]:
        return {"step_seconds": self.step_seconds, "prefill_seconds_per_token": self.prefill_seconds_per_token,
                "slowdown": self.slowdown}
