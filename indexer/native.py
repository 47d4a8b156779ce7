"""Typed facade over the compiled data core (``indexer._native``).

This is the only module that imports the extension, which is why it is one job
in one module however many native functions it types: splitting it would give
the extension a second importer. Every function takes a
batch, releases the GIL once and runs on the extension's thread pool
(``INDEXER_NUM_THREADS``, default: all cores). Texts may be ``str`` or UTF-8
``bytes``; bad input raises an exception under :class:`DataError` (a
``ValueError``) that names the offending item.

Example::

    from indexer import native
    keep, dup_of = native.exact_dedup(["a", "A ", "b"], lowercase=True)
    result = native.near_dedup(texts, threshold=0.8)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, Union

import numpy as np
import numpy.typing as npt

from indexer import _native
from indexer._native import (
    CorruptFileError,
    DataError,
    DataIOError,
    InvalidInputError,
    LshIndex,
    Tokenizer,
    TokenizerError,
)

Text = Union[str, bytes]
Texts = Iterable[Text]
ShingleKind = Literal["word", "char"]
KeepPolicy = Literal["first", "longest"]

__all__ = [
    "ChatFormat", "CorruptFileError", "DataError", "DataIOError", "ExactDedupResult",
    "InvalidInputError", "LshIndex", "NearDedupResult", "Overlap", "PackedBatch",
    "EDIT_MAX_WORDS", "EDIT_MIN_WORDS", "Tokenizer", "TokenizerError", "chunk", "cluster_signatures", "content_hashes",
    "decontaminate", "exact_dedup", "lsh_params", "minhash_signatures", "near_dedup",
    "normalize", "num_threads", "one_edit_pairs", "pack_conversations", "pack_examples", "build_sft_examples",
    "signatures_and_edit_mask",
]


def _counts(**values: int) -> None:
    """Integer settings must be non-negative ints; the native conversion would
    raise a bare OverflowError/TypeError without naming the setting."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInputError(f"{name} must be a non-negative integer, got {value!r}")


def num_threads() -> int:
    """Worker threads used by batch calls (``INDEXER_NUM_THREADS``)."""
    return _native.num_threads()


def normalize(texts: Texts, *, lowercase: bool = False, strip_boilerplate: bool = False) -> list[str]:
    """NFKC, control-character and whitespace cleanup (paragraph breaks kept);
    optionally lowercase and drop boilerplate lines (page numbers, cookie and
    copyright notices, navigation links)."""
    return _native.normalize(texts, lowercase=lowercase, strip_boilerplate=strip_boilerplate)


def content_hashes(texts: Texts, *, bits: Literal[64, 128] = 128) -> list[str]:
    """xxh3 hashes of the texts as they are, as hex strings."""
    return _native.content_hashes(texts, bits=bits)


@dataclass(frozen=True)
class ExactDedupResult:
    keep: npt.NDArray[np.bool_]
    """True for the first occurrence of each distinct (normalized) text."""
    duplicate_of: npt.NDArray[np.int64]
    """Index of the kept first occurrence for duplicates, -1 for kept items."""

    @property
    def num_duplicates(self) -> int:
        return int((~self.keep).sum())


def exact_dedup(
    texts: Texts, *, bits: Literal[64, 128] = 64, normalize: bool = True, lowercase: bool = False
) -> ExactDedupResult:
    """Exact duplicates by xxh3 of the normalized text (first occurrence kept)."""
    keep, dup = _native.exact_dedup(texts, bits=bits, normalize=normalize, lowercase=lowercase)
    return ExactDedupResult(keep=keep, duplicate_of=dup)


FALSE_NEGATIVE_WEIGHT = 0.9
"""Weight of missed pairs against needless candidates when choosing bands ×
rows. Candidates are verified, so misses weigh more; 0.5 is datasketch's choice."""


def lsh_params(
    threshold: float, num_perm: int = 128, *, false_negative_weight: float = FALSE_NEGATIVE_WEIGHT
) -> tuple[int, int]:
    """``(bands, rows)`` minimising the weighted false-positive and
    false-negative probability mass around ``threshold``."""
    _counts(num_perm=num_perm)
    return _native.lsh_params(threshold, num_perm, false_negative_weight=false_negative_weight)


def minhash_signatures(
    texts: Texts,
    *,
    num_perm: int = 128,
    seed: int = 1,
    shingle: ShingleKind = "word",
    shingle_size: int = 5,
    strip_boilerplate: bool = False,
) -> npt.NDArray[np.uint32]:
    """MinHash signatures, shape ``(len(texts), num_perm)``. Shingles are
    lowercased word (``\\w+``) or character n-grams after NFKC."""
    _counts(num_perm=num_perm, seed=seed, shingle_size=shingle_size)
    return _native.minhash_signatures(
        texts, num_perm=num_perm, seed=seed, shingle=shingle,
        shingle_size=shingle_size, strip_boilerplate=strip_boilerplate,
    )


@dataclass(frozen=True)
class NearDedupResult:
    cluster_of: npt.NDArray[np.uint32]
    """Index of each document's kept representative (itself when kept)."""
    keep: npt.NDArray[np.bool_]
    num_dup_clusters: int
    """Clusters with two or more members."""
    candidate_pairs: int
    verified_pairs: int
    bands: int
    rows: int
    edit_pairs: int = 0
    """Pairs joined because they are one word edit apart (``near_dedup`` only)."""

    @property
    def num_removed(self) -> int:
        return int((~self.keep).sum())


def cluster_signatures(
    signatures: npt.NDArray[np.uint32],
    *,
    threshold: float = 0.8,
    keep: KeepPolicy = "first",
    lengths: Sequence[int] | None = None,
    false_negative_weight: float = FALSE_NEGATIVE_WEIGHT,
    pairs: npt.ArrayLike | None = None,
) -> NearDedupResult:
    """Near-duplicate clusters of signature rows: LSH banding, candidate
    verification by estimated Jaccard >= ``threshold``, union-find. ``pairs``
    (``(k, 2)`` row indices, as :func:`one_edit_pairs` gives) are joined too,
    before the kept row of each cluster is chosen; ``edit_pairs`` counts them."""
    if pairs is not None:
        pairs = np.ascontiguousarray(pairs, dtype=np.uint32).reshape(-1, 2)
    out = _native.cluster_signatures(
        signatures, threshold=threshold, keep=keep, lengths=None if lengths is None else list(lengths),
        false_negative_weight=false_negative_weight, pairs=pairs,
    )
    return NearDedupResult(**out)


EDIT_MIN_WORDS = 10
"""Shortest text (in words) that ``near_dedup`` joins to another one word edit
apart. One word is 10% of a 10-word text; in shorter ones it is more of a change."""

EDIT_MAX_WORDS = 99
"""Longest text (in words) the one-word-edit test takes; longer ones are left
to shingle Jaccard, where one word is at most 1% of the text."""


def signatures_and_edit_mask(
    texts: Texts,
    *,
    num_perm: int = 128,
    seed: int = 1,
    shingle: ShingleKind = "word",
    shingle_size: int = 5,
    strip_boilerplate: bool = False,
    edit_min_words: int = EDIT_MIN_WORDS,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.bool_]]:
    """:func:`minhash_signatures`, and which texts the one-word-edit test of
    :func:`near_dedup` takes (``edit_min_words`` to ``EDIT_MAX_WORDS`` words;
    none when 0), read in the same pass. For callers that cluster in batches
    and keep only those texts for :func:`one_edit_pairs`."""
    _counts(num_perm=num_perm, seed=seed, shingle_size=shingle_size, edit_min_words=edit_min_words)
    return _native.signatures_and_edit_mask(
        texts, num_perm=num_perm, seed=seed, shingle=shingle, shingle_size=shingle_size,
        strip_boilerplate=strip_boilerplate, edit_min_words=edit_min_words,
    )


def one_edit_pairs(
    texts: Texts, *, edit_min_words: int = EDIT_MIN_WORDS, strip_boilerplate: bool = False
) -> npt.NDArray[np.uint32]:
    """Pairs ``(i, j)``, ``i < j``, of the texts :func:`near_dedup` joins as one
    word edit apart, shape ``(k, 2)``; pass them (as row indices) to
    :func:`cluster_signatures`. Texts outside the word range take no part."""
    _counts(edit_min_words=edit_min_words)
    return _native.one_edit_pairs(texts, edit_min_words=edit_min_words, strip_boilerplate=strip_boilerplate)


def near_dedup(
    texts: Sequence[Text],
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    seed: int = 1,
    shingle: ShingleKind = "word",
    shingle_size: int = 5,
    keep: KeepPolicy = "first",
    strip_boilerplate: bool = False,
    false_negative_weight: float = FALSE_NEGATIVE_WEIGHT,
    edit_min_words: int = EDIT_MIN_WORDS,
) -> NearDedupResult:
    """Near-duplicate detection from raw texts to a keep-mask.

    Two texts are near duplicates when their estimated shingle Jaccard reaches
    ``threshold`` (MinHash LSH, as :func:`cluster_signatures`), or when both
    have ``edit_min_words`` to 99 words and one word substitution, insertion or
    deletion turns one into the other (checked exactly on the lowercased
    words), unless the edit swaps one word that names or counts something for
    another, or adds or drops one. Such a word holds a digit, is a single
    letter (not the article "a") or a roman numeral, is an acronym or a
    capitalised word inside a sentence (judged on the text as written), or is
    a negation or one of a few antonyms (dominant/recessive, acute/chronic …).
    "Hepatitis C" / "hepatitis B" or "type 2" / "type 1" stay apart; a typo, a
    hedge ("typically", "very") or an ordinary word swapped for a name joins. Shingle Jaccard misses those edits: one
    word changes up to ``shingle_size`` shingles, too many of a short text's.
    ``edit_min_words=0`` turns the second test off."""
    _counts(num_perm=num_perm, seed=seed, shingle_size=shingle_size, edit_min_words=edit_min_words)
    lengths = [len(t) for t in texts] if keep == "longest" else None
    out = _native.near_dedup(
        texts, threshold=threshold, num_perm=num_perm, seed=seed, shingle=shingle, shingle_size=shingle_size,
        keep=keep, lengths=lengths, strip_boilerplate=strip_boilerplate,
        false_negative_weight=false_negative_weight, edit_min_words=edit_min_words,
    )
    return NearDedupResult(**out)


@dataclass(frozen=True)
class Overlap:
    train_index: int
    eval_indices: list[int]
    shared_ngrams: int


def decontaminate(
    train: Texts, eval: Texts, *, ngram: int = 13, min_words: int = 8
) -> tuple[list[Overlap], int]:
    """Tuning examples that share a word ``ngram`` with an evaluation item.

    Returns the overlaps (contaminated train examples only) and the number of
    evaluation items too short to check (fewer than ``min_words`` words);
    items shorter than ``ngram`` but not than ``min_words`` are matched whole.
    """
    _counts(ngram=ngram, min_words=min_words)
    overlaps, skipped = _native.decontaminate(train, eval, ngram=ngram, min_words=min_words)
    return [Overlap(t, list(e), s) for t, e, s in overlaps], skipped


def chunk(
    texts: Texts, *, max_tokens: int = 256, overlap: int = 32, tokenizer: Tokenizer | None = None
) -> list[list[tuple[int, int]]]:
    """Passages of at most ``max_tokens`` tokens per text, cut preferably at
    paragraph and sentence boundaries, consecutive ones sharing about
    ``overlap`` tokens, as ``(start, end)`` character offsets:
    ``text[start:end]`` is the passage."""
    _counts(max_tokens=max_tokens, overlap=overlap)
    return _native.chunk(texts, max_tokens=max_tokens, overlap=overlap, tokenizer=tokenizer)


@dataclass(frozen=True)
class ChatFormat:
    """The literal text a chat template puts around each message.

    Build it from a Hugging Face tokenizer with :meth:`from_hf_tokenizer`, or
    use :meth:`chatml` (SmolLM2, Qwen)."""

    bos: str = ""
    system_prefix: str = "<|im_start|>system\n"
    system_suffix: str = "<|im_end|>\n"
    user_prefix: str = "<|im_start|>user\n"
    user_suffix: str = "<|im_end|>\n"
    assistant_prefix: str = "<|im_start|>assistant\n"
    assistant_suffix: str = "<|im_end|>\n"
    default_system: str | None = None

    @classmethod
    def chatml(cls, default_system: str | None = None) -> "ChatFormat":
        return cls(default_system=default_system)

    @classmethod
    def from_hf_tokenizer(cls, tokenizer: object) -> "ChatFormat":
        """Derives the pieces by rendering the tokenizer's chat template with
        placeholder messages. Fails clearly for templates whose text around a
        message depends on its content or position."""
        from indexer.chat_format import chat_format_from_template

        return cls(**chat_format_from_template(tokenizer))

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


@dataclass(frozen=True)
class PackedBatch:
    input_ids: npt.NDArray[np.int64]
    labels: npt.NDArray[np.int64]
    """-100 on prompt and padding tokens."""
    position_ids: npt.NDArray[np.int64]
    """Restart at 0 for every packed example, so examples don't attend to each other
    (with attention implementations that honour position-id boundaries)."""
    example_indices: list[list[int]]
    example_lengths: list[list[int]]
    efficiency: float
    truncated: int
    dropped: int
    seq_len: int = field(default=0)

    @property
    def num_sequences(self) -> int:
        return int(self.input_ids.shape[0])


Conversation = Sequence[Mapping[str, str]]
Overlong = Literal["truncate", "drop"]


def build_sft_examples(
    tokenizer: Tokenizer, conversations: Sequence[Conversation], chat_format: ChatFormat
) -> list[tuple[list[int], list[int]]]:
    """``(input_ids, labels)`` per conversation; labels are -100 everywhere
    except on assistant content and the assistant end-of-turn text."""
    return _native.build_sft_examples(tokenizer, conversations, chat_format.as_dict())


def _packed(out: Mapping[str, object], seq_len: int) -> PackedBatch:
    return PackedBatch(**out, seq_len=seq_len)  # type: ignore[arg-type]


def pack_examples(
    examples: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    seq_len: int = 1024,
    pad_id: int = 0,
    overlong: Overlong = "truncate",
) -> PackedBatch:
    """Best-fit-decreasing packing of ``(input_ids, labels)`` examples."""
    _counts(seq_len=seq_len, pad_id=pad_id)
    out = _native.pack_examples(
        [(list(i), list(l)) for i, l in examples], seq_len=seq_len, pad_id=pad_id, overlong=overlong
    )
    return _packed(out, seq_len)


def pack_conversations(
    tokenizer: Tokenizer,
    conversations: Sequence[Conversation],
    chat_format: ChatFormat,
    *,
    seq_len: int = 1024,
    pad_id: int = 0,
    overlong: Overlong = "truncate",
) -> PackedBatch:
    """Renders, tokenizes (prompt tokens masked) and packs in one native call."""
    _counts(seq_len=seq_len, pad_id=pad_id)
    out = _native.pack_conversations(
        tokenizer, conversations, chat_format.as_dict(), seq_len=seq_len, pad_id=pad_id, overlong=overlong
    )
    return _packed(out, seq_len)


def load_tokenizer(path: str | os.PathLike[str]) -> Tokenizer:
    """Loads a ``tokenizer.json`` file, or the one inside a model directory."""
    p = os.fspath(path)
    if os.path.isdir(p):
        p = os.path.join(p, "tokenizer.json")
    return Tokenizer.from_file(p)
