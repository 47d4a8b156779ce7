"""Retrieved passages as the model sees them, and the prompt that shows them.

    passages = passages_from_hits(index.search(question, k=5))
    messages = build_messages(question, passages)    # system + user chat messages

A :class:`Passage` is a search hit (:class:`indexer.records.Hit`, the one record of a
retrieved chunk) with the number the prompt shows it under.

Relevance is ``Passage.relevance``: the cosine similarity ``dense_score`` when
the search computed one (dense and hybrid modes), else the search ``score``.
The cosine is preferred because hybrid scores are min-max scaled per query, so
the best hit always scores near 1 however poor it is; a cosine means the same
on every query.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from indexer.records import Hit

DEFAULT_PASSAGE_CHARS = 600  # five passages of this fit a 2k-token context with room to answer
SNIPPET_CHARS = 300
TITLE_FIELDS = ("title", "focus")  # a document's own name for itself: a file's title, a MedQuAD record's focus
TITLE_WORDS, TITLE_CHARS = 8, 80

DEFAULT_SYSTEM = (
    "Answer the question using only the numbered passages. "
    "After each claim, cite its passage as [n]. "
    "When you quote, copy the words exactly. "
    "If the passages do not contain the answer, say: "
    "I cannot find the answer in the documents."
)


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk as the model sees it, numbered from 1."""

    number: int
    hit: Hit

    @property
    def doc_id(self) -> str:
        return self.hit.doc_id

    @property
    def source(self) -> str:
        return self.hit.source

    @property
    def text(self) -> str:
        return self.hit.text

    @property
    def start(self) -> int:
        return self.hit.start

    @property
    def end(self) -> int:
        return self.hit.end

    @property
    def score(self) -> float:
        return self.hit.score

    @property
    def dense_score(self) -> float | None:
        return self.hit.dense_score

    @property
    def title(self) -> str:
        """What a reader knows the source by: its title (or focus) field, else the passage's first words."""
        for key in TITLE_FIELDS:
            value = self.hit.metadata.get(key)
            if isinstance(value, str) and value.strip():
                return truncate(value, TITLE_CHARS)
        words = self.text.split()
        first = truncate(" ".join(words[:TITLE_WORDS]), TITLE_CHARS)
        return first + "\u2026" if len(words) > TITLE_WORDS and not first.endswith("\u2026") else first

    @property
    def relevance(self) -> float:
        """The cosine when known (comparable across queries), else the search score."""
        return self.hit.dense_score if self.hit.dense_score is not None else self.hit.score

    def renumbered(self, number: int) -> Passage:
        return Passage(number, self.hit)

    def as_citation(self) -> dict[str, object]:
        """What a client is shown of a passage: its title, a snippet and the whole passage, with
        where it is (the document id and its source relative to the ingested folder)."""
        return {
            "number": self.number, "doc_id": self.doc_id, "source": self.source, "title": self.title,
            "start": self.start, "end": self.end, "snippet": truncate(self.text, SNIPPET_CHARS), "text": self.text,
            "score": self.score,
        }

    def to_dict(self) -> dict[str, object]:
        """The flat record tuning sets store (no metadata: it is the document's, not the passage's)."""
        return {"number": self.number, "doc_id": self.doc_id, "source": self.source, "start": self.start,
                "end": self.end, "text": self.text, "score": self.score, "dense_score": self.dense_score}


def best_relevance(passages: Sequence[Passage]) -> float | None:
    """The most relevant passage's relevance; None when nothing was retrieved."""
    return max((p.relevance for p in passages), default=None)


def relevant_enough(passages: Sequence[Passage], min_score: float) -> bool:
    """Whether the passages are worth answering from at all (the service's threshold)."""
    best = best_relevance(passages)
    return best is not None and best >= min_score


def make_passage(number: int, doc_id: str, source: str, text: str, score: float, dense_score: float | None = None,
            start: int = 0, end: int | None = None) -> Passage:
    """A passage that did not come from a search (a curated context, a test)."""
    return Passage(number, Hit(-1, doc_id, source, start, start + len(text) if end is None else end, text, score,
                               dense_score, None, {}, []))


def passages_from_hits(hits: Iterable[Hit]) -> list[Passage]:
    """Number search hits 1, 2, … in the order the index ranked them."""
    return [Passage(n, h) for n, h in enumerate(hits, start=1)]


def truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut at a word boundary and marked with "…"."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    # Back up to a space unless that would throw away most of the budget.
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "\u2026"


def build_messages(question: str, passages: Sequence[Passage], *, system: str | None = None,
                   max_passage_chars: int = DEFAULT_PASSAGE_CHARS) -> list[dict[str, str]]:
    """System and user chat messages; each passage shown as ``[n] (source) text``."""
    if max_passage_chars < 1:
        raise ValueError(f"max_passage_chars must be at least 1, got {max_passage_chars}; "
                         f"the default is {DEFAULT_PASSAGE_CHARS}")
    blocks = [f"[{p.number}] ({p.source}) {truncate(p.text, max_passage_chars)}" for p in passages]
    user = "Passages:\n" + ("\n\n".join(blocks) if blocks else "(none)") + f"\n\nQuestion: {question.strip()}"
    return [{"role": "system", "content": system or DEFAULT_SYSTEM}, {"role": "user", "content": user}]
