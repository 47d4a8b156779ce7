"""Private compiled core of the indexer package (built from rust/). Import
from :mod:`indexer.native` instead; this stub documents the raw exports and is
checked against the built module by ``mypy.stubtest``."""

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "CorruptFileError", "DataError", "DataIOError", "InvalidInputError", "LshIndex", "Tokenizer",
    "TokenizerError", "build_sft_examples", "chunk", "cluster_signatures", "content_hashes",
    "decontaminate", "exact_dedup", "lsh_params", "minhash_signatures", "near_dedup", "normalize", "num_threads",
    "one_edit_pairs", "pack_conversations", "pack_examples", "signatures_and_edit_mask",
]

_Texts = Iterable[str | bytes]
_Path = str | os.PathLike[str]

class DataError(ValueError):
    """Base class of every error raised by the native data core."""

class InvalidInputError(DataError):
    """An input item or argument is not acceptable (type, encoding or range)."""

class TokenizerError(DataError):
    """A tokenizer.json is missing, unreadable or invalid."""

class CorruptFileError(DataError):
    """A file written by the data core failed its format or checksum check."""

class DataIOError(DataError):
    """Reading or writing a file failed."""

def num_threads() -> int:
    """Number of worker threads batch calls use (set by INDEXER_NUM_THREADS)."""

def normalize(texts: _Texts, *, lowercase: bool = False, strip_boilerplate: bool = False) -> list[str]:
    """NFKC, control/whitespace cleanup, optional lowercasing and boilerplate-line removal."""

def content_hashes(texts: _Texts, *, bits: int = 128) -> list[str]:
    """xxh3 hashes (64 or 128 bits) of the texts as hex strings."""

def exact_dedup(
    texts: _Texts, *, bits: int = 64, normalize: bool = True, lowercase: bool = False
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """`(keep, duplicate_of)` by xxh3 of the (normalized) text; first occurrence kept."""

def lsh_params(threshold: float, num_perm: int = 128, *, false_negative_weight: float = 0.9) -> tuple[int, int]:
    """`(bands, rows)` chosen for a Jaccard threshold."""

def minhash_signatures(
    texts: _Texts,
    *,
    num_perm: int = 128,
    seed: int = 1,
    shingle: str = "word",
    shingle_size: int = 5,
    strip_boilerplate: bool = False,
) -> npt.NDArray[np.uint32]:
    """MinHash signatures, shape (len(texts), num_perm)."""

def signatures_and_edit_mask(
    texts: _Texts,
    *,
    num_perm: int = 128,
    seed: int = 1,
    shingle: str = "word",
    shingle_size: int = 5,
    strip_boilerplate: bool = False,
    edit_min_words: int = 10,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.bool_]]:
    """MinHash signatures, and a mask of the texts of `edit_min_words` to 99
    words (those the one-word-edit test takes; none when 0)."""

def one_edit_pairs(
    texts: _Texts, *, edit_min_words: int = 10, strip_boilerplate: bool = False
) -> npt.NDArray[np.uint32]:
    """`(k, 2)` pairs `(i, j)`, `i < j`, of texts one word edit apart as `near_dedup` judges them."""

def cluster_signatures(
    signatures: npt.NDArray[np.uint32],
    *,
    threshold: float = 0.8,
    keep: str = "first",
    lengths: Sequence[int] | None = None,
    false_negative_weight: float = 0.9,
    pairs: npt.NDArray[np.uint32] | None = None,
) -> dict[str, Any]:
    """LSH clustering of signature rows, also joining the `(k, 2)` row `pairs`:
    `cluster_of`, `keep`, `num_dup_clusters`, `candidate_pairs`,
    `verified_pairs`, `edit_pairs`, `bands`, `rows`."""

def near_dedup(
    texts: _Texts,
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    seed: int = 1,
    shingle: str = "word",
    shingle_size: int = 5,
    keep: str = "first",
    lengths: Sequence[int] | None = None,
    strip_boilerplate: bool = False,
    false_negative_weight: float = 0.9,
    edit_min_words: int = 10,
) -> dict[str, Any]:
    """Raw texts to clusters in one call: MinHash LSH as `cluster_signatures`, and
    texts of `edit_min_words` to 99 words joined when one word edit apart,
    unless the edit swaps one word that names or counts something (a number, a
    single letter, a roman numeral, capitals, a negation or a listed antonym:
    read on the text as written) for another, or adds or drops one; 0 turns
    that off. The `cluster_signatures` dict plus `edit_pairs`."""

def decontaminate(
    train: _Texts, eval: _Texts, *, ngram: int = 13, min_words: int = 8
) -> tuple[list[tuple[int, list[int], int]], int]:
    """`(overlaps, skipped_eval)`; overlaps are `(train_index, eval_indices, shared_ngrams)`."""

@final
class LshIndex:
    """An incremental near-duplicate index keyed by document id, persisted to one file."""

    def __new__(
        cls,
        *,
        threshold: float = 0.8,
        num_perm: int = 128,
        seed: int = 1,
        shingle: str = "word",
        shingle_size: int = 5,
        strip_boilerplate: bool = False,
        false_negative_weight: float = 0.9,
    ) -> LshIndex: ...
    def insert(self, keys: Sequence[str], texts: _Texts) -> None:
        """Inserts (or replaces) one document per key."""
    def remove(self, keys: Sequence[str]) -> int:
        """Removes keys; returns how many were present."""
    def query(self, texts: _Texts) -> list[list[tuple[str, float]]]:
        """For each text, the stored `(key, similarity)` pairs at or above the threshold."""
    def save(self, path: _Path) -> None: ...
    @staticmethod
    def load(path: _Path) -> LshIndex: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: str, /) -> bool: ...
    @property
    def threshold(self) -> float: ...
    @property
    def bands(self) -> int: ...
    @property
    def rows(self) -> int: ...
    @property
    def num_perm(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def shingle(self) -> str: ...
    @property
    def shingle_size(self) -> int: ...
    @property
    def strip_boilerplate(self) -> bool: ...

def chunk(
    texts: _Texts, *, max_tokens: int = 256, overlap: int = 32, tokenizer: Tokenizer | None = None
) -> list[list[tuple[int, int]]]:
    """For each text, its chunks as `(start, end)` character offsets."""

@final
class Tokenizer:
    """A `tokenizer.json` loaded by the Rust `tokenizers` crate."""

    @staticmethod
    def from_file(path: _Path) -> Tokenizer: ...
    @staticmethod
    def from_str(json: str) -> Tokenizer: ...
    def token_to_id(self, token: str) -> int | None: ...
    def encode_batch(self, texts: _Texts) -> list[list[int]]:
        """Token ids of each text, without special tokens added."""

def build_sft_examples(
    tokenizer: Tokenizer,
    conversations_: Sequence[Sequence[Mapping[str, str]]],
    chat_format_: Mapping[str, str | None],
) -> list[tuple[list[int], list[int]]]:
    """`(input_ids, labels)` per conversation; labels are -100 except on assistant turns."""

def pack_examples(
    examples: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    seq_len: int = 1024,
    pad_id: int = 0,
    overlong: str = "truncate",
) -> dict[str, Any]:
    """Packs `(input_ids, labels)` examples with best-fit decreasing."""

def pack_conversations(
    tokenizer: Tokenizer,
    conversations_: Sequence[Sequence[Mapping[str, str]]],
    chat_format_: Mapping[str, str | None],
    *,
    seq_len: int = 1024,
    pad_id: int = 0,
    overlong: str = "truncate",
) -> dict[str, Any]:
    """Renders, tokenizes and packs conversations in one call."""
