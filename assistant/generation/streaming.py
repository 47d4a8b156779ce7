"""Handing each row of a batch its newly decoded text as it grows: the callback a
client streams from gets the pieces, which join to exactly the final text.

torch and transformers are not needed here: the batch passes token ids.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from assistant.generation.base import TokenCallback

log = logging.getLogger(__name__)


def hand_over(callback: TokenCallback, text: str, sent: int, *, final: bool, row: int) -> tuple[int, bool]:
    """Gives ``callback`` what ``text`` (a row's whole completion so far) adds after ``sent``
    characters; a trailing U+FFFD (a character split across tokens) waits unless ``final``.
    Returns the characters sent and whether the callback still works (one that raises,
    say for a closed connection, is dropped so the batch's other rows go on)."""
    if not final and text.endswith("\ufffd"):
        return sent, True
    piece = text[sent:]
    if not piece:
        return sent, True
    try:
        callback(piece)
    except Exception:
        log.warning("token callback for batch row %d failed; dropping it", row, exc_info=True)
        return len(text), False
    return len(text), True



class BatchStreamer:
    """A transformers streamer (``put``/``end``) for a batch: hands each row's newly
    decoded text to that row's callback and goes quiet for a row after its EOS.

    Each step decodes the row's whole completion and emits what grew, so the
    pieces join to exactly the final text for decoders that only append
    (byte-level BPE, SentencePiece); a trailing U+FFFD (a character split across
    tokens) is held back until it completes.
    """

    def __init__(self, tokenizer: Any, eos_ids: set[int], callbacks: Sequence[TokenCallback | None]) -> None:
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.callbacks = list(callbacks)
        self.ids: list[list[int]] = [[] for _ in self.callbacks]
        self.finished = [False] * len(self.callbacks)
        self.sent = [0] * len(self.callbacks)
        self.caps: list[int | None] = [None] * len(self.callbacks)
        self._seen_prompt = False

    def put(self, value: Any) -> None:
        if not self._seen_prompt:  # generate() first hands over the prompt ids
            self._seen_prompt = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.finished[row]:
                continue  # finished rows are padded from here on
            if token in self.eos_ids:
                self.finished[row] = True
                self._emit(row, final=True)
            else:
                self.ids[row].append(token)
                last = len(self.ids[row]) == self.caps[row]
                self.finished[row] = last
                self._emit(row, final=last)

    def end(self) -> None:
        """The end of one ``generate`` call, which may be a slice: rows that ended were
        flushed then (an EOS, or :meth:`stop_row`); the others go on in the next slice."""

    def next_slice(self, keep: Sequence[int]) -> None:
        """Before the next ``generate`` call: only the rows ``keep`` go on (in that order)."""
        self.callbacks = [self.callbacks[i] for i in keep]
        self.ids = [self.ids[i] for i in keep]
        self.finished = [self.finished[i] for i in keep]
        self.sent = [self.sent[i] for i in keep]
        self.caps = [self.caps[i] for i in keep]
        self._seen_prompt = False

    def stop_row(self, row: int, tokens: int) -> None:
        """The row ends without an EOS (its limit, or stopped) once it holds ``tokens``
        tokens: what follows is padding. (transformers asks its stopping criteria about
        a step before it hands the step's tokens to the streamer.)"""
        if self.finished[row]:
            return
        self.caps[row] = tokens
        if len(self.ids[row]) >= tokens:
            self.finished[row] = True
            self._emit(row, final=True)

    def _emit(self, row: int, *, final: bool) -> None:
        callback = self.callbacks[row]
        if callback is None:
            return
        text = self.tokenizer.decode(self.ids[row], skip_special_tokens=True)
        self.sent[row], working = hand_over(callback, text, self.sent[row], final=final, row=row)
        if not working:
            self.callbacks[row] = None
