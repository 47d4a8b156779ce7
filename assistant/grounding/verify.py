"""How well each retrieved passage supports each claim of an answer, in [0, 1].

    verifier = OverlapVerifier(index.embedder.embed_to_compare)   # default: no extra model
    scores = verifier.scores(["Pangolins eat ants."], [p.text for p in passages])

:class:`OverlapVerifier` needs no model of its own: a claim's numbers and named terms
(capitalised words, words with digits) must all appear in the passage, or the passage
does not support it (0.0); otherwise the score is the share of the claim's content
words found in the passage, lowered towards the best cosine between the claim and the
passage's sentences when an embedder is given (MiniLM, already loaded for search): the
mean of the two when the cosine is the lower, so a claim reworded away from what the
passage says scores less, and similar wording never makes up for missing words.

:class:`CrossEncoderVerifier` plugs in a stronger judge by Hugging Face id or path: an
NLI model (the entailment probability, premise = passage) or a one-score
fact-checking cross-encoder (HHEM-style), through sentence-transformers' CrossEncoder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from assistant.grounding.claims import split_sentences

Embed = Callable[[list[str]], np.ndarray]
"""Texts → L2-normalised vectors (``Index.embedder.embed_to_compare``)."""
SUPPORTED = 0.5
"""A claim is supported by a passage that scores at least this (hand-set; the calibrated
answerability then weighs how well the shown claims are supported among its signals)."""

_WORD = re.compile(r"[\w'\u2019-]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_PREFIX = 5  # "treated" and "treatment" agree on their first 5 letters
SENTENCES_PER_PASSAGE = 3
_STOPWORDS = frozenset("""a an the and or but if of to in on at by for with from as is are was were be been being it its
this that these those there here which who whom what when where why how not no yes can could may might will would shall
should do does did has have had than then so such into about over under also more most other some any each both all
i you he she we they them their our your his her my me us very just only own same too there's it's can't""".split())


class Verifier(Protocol):
    def scores(self, claims: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Support of claim i by passage j, shape ``(len(claims), len(passages))``, in [0, 1]."""
        ...


def _words(text: str) -> list[str]:
    return [w.strip("'\u2019-").lower() for w in _WORD.findall(text)]


def content_words(text: str) -> list[str]:
    """The words that carry meaning: no stopwords, no bare numbers."""
    return [w for w in _words(text) if w and w not in _STOPWORDS and not w.isdigit()]


def _found(word: str, vocabulary: set[str], stems: set[str]) -> bool:
    return word in vocabulary or (len(word) >= _PREFIX and word[:_PREFIX] in stems)


def key_terms(claim: str) -> tuple[set[str], set[str]]:
    """The claim's numbers, and its named terms: capitalised words after the first and
    words mixing letters and digits (codes such as COVID-19, B12), lowercased."""
    numbers = {n.replace(",", "") for n in _NUMBER.findall(claim)}
    tokens = _WORD.findall(claim)
    named = {t.lower() for i, t in enumerate(tokens)
             if (i > 0 and t[:1].isupper() and t.lower() not in _STOPWORDS)
             or (any(c.isdigit() for c in t) and any(c.isalpha() for c in t))}
    return numbers, named


def lexical_support(claim: str, passage: str) -> float:
    """0.0 when a number or named term of the claim is missing from the passage, else
    the share of the claim's content words the passage holds (1.0 without any)."""
    vocabulary = set(_words(passage))
    stems = {w[:_PREFIX] for w in vocabulary if len(w) >= _PREFIX}
    numbers, named = key_terms(claim)
    passage_numbers = {n.replace(",", "") for n in _NUMBER.findall(passage)}
    if not numbers <= passage_numbers or not all(_found(t, vocabulary, stems) for t in named):
        return 0.0
    content = content_words(claim)
    if not content:
        return 1.0
    return sum(_found(w, vocabulary, stems) for w in content) / len(content)


class OverlapVerifier:
    """Word and number overlap, with MiniLM cosine when ``embed`` is given (a function
    from texts to L2-normalised vectors, such as ``Index.embedder.embed_to_compare``)."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray] | None = None, *, threshold: float = SUPPORTED):
        self.embed = embed
        self.threshold = threshold

    def scores(self, claims: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        """Support in [0, 1]. The cosine may only lower the word overlap, so a pair whose
        overlap is already below ``threshold`` is unsupported whatever the cosine says: it
        keeps its overlap (an upper bound) and costs no embedding. Embedding is the cost of
        this check, so only the claims and passages that could reach the threshold are embedded."""
        lexical = np.array([[lexical_support(c, p) for p in passages] for c in claims], dtype=np.float32)
        lexical = lexical.reshape(len(claims), len(passages))
        reachable = lexical >= self.threshold
        rows = [i for i in range(len(claims)) if reachable[i].any()]
        candidates = [j for j in range(len(passages)) if reachable[:, j].any()]
        if self.embed is None or not rows:
            return lexical
        claim_words = set().union(*(content_words(claims[i]) for i in rows))
        sentences = [self._closest_sentences(passages[j], claim_words) for j in candidates]
        flat = [s for group in sentences for s in group]
        vectors = self.embed([*(claims[i] for i in rows), *flat])
        similarity = vectors[: len(rows)] @ vectors[len(rows):].T
        combined = lexical.copy()
        start = 0
        for j, group in zip(candidates, sentences, strict=True):
            best = np.clip(similarity[:, start:start + len(group)].max(axis=1), 0.0, 1.0)
            start += len(group)
            for row, i in enumerate(rows):
                if reachable[i, j]:
                    # the cosine may lower a score, never raise it: similar wording around new
                    # facts ("pangolins eat fruit and honey") reads close to a passage that says otherwise
                    combined[i, j] = min(lexical[i, j], (lexical[i, j] + best[row]) / 2)
        return combined.astype(np.float32)


    @staticmethod
    def _closest_sentences(passage: str, claim_words: set[str]) -> list[str]:
        """The passage's sentences sharing most content words with the claims, at most
        ``SENTENCES_PER_PASSAGE`` (the best cosine is almost always among them, and each
        sentence embedded costs a few milliseconds on a CPU)."""
        sentences = split_sentences(passage) or [passage]
        shared = [(len(claim_words & set(content_words(s))), i) for i, s in enumerate(sentences)]
        best = sorted((n, -i) for n, i in shared if n)[-SENTENCES_PER_PASSAGE:]
        return [sentences[-i] for _, i in best] or sentences[:1]


class CrossEncoderVerifier:
    """A cross-encoder judge by Hugging Face id or local path (loaded once)."""

    def __init__(self, model: str, *, device: str | None = None, batch_size: int = 32):
        from sentence_transformers import CrossEncoder

        self.model: Any = CrossEncoder(model, device=device)
        self.batch_size = batch_size
        labels = {int(k): str(v).lower() for k, v in (self.model.config.id2label or {}).items()}
        self.num_labels = int(self.model.config.num_labels)
        # an NLI head: the entailment column; else the one score (sigmoid, as CrossEncoder applies it)
        self.entailment = next((i for i, name in labels.items() if "entail" in name), self.num_labels - 1)

    def scores(self, claims: Sequence[str], passages: Sequence[str]) -> np.ndarray:
        if not claims or not passages:
            return np.zeros((len(claims), len(passages)), dtype=np.float32)
        pairs = [(p, c) for c in claims for p in passages]  # premise first, as NLI models are trained
        if self.num_labels == 1:
            out = np.asarray(self.model.predict(pairs, batch_size=self.batch_size), dtype=np.float32)
        else:
            out = np.asarray(self.model.predict(pairs, batch_size=self.batch_size, apply_softmax=True),
                             dtype=np.float32)[:, self.entailment]
        return out.reshape(len(claims), len(passages))
