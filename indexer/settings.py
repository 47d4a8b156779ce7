"""Settings of a document index, read from the environment once and stored
with the index (a reopened index keeps the model and chunking it was built with:
:func:`settings_of_existing` reads them back and checks requested ones).

    INDEXER_EMBEDDING_MODEL   sentence-transformers model name or path
                              (default: the bundled all-MiniLM-L6-v2)
    INDEXER_CHUNK_TOKENS      tokens per chunk (default 200)
    INDEXER_CHUNK_OVERLAP     tokens shared by consecutive chunks (default 32)
    INDEXER_VECTOR_INDEX      flat | hnsw (default flat: exact inner product)
    INDEXER_CHUNK_TITLES      1: embed and keyword-index every chunk under its document's
                              title (default 0; see ``IndexSettings.chunk_titles``)
    INDEXER_FUSION            score | rrf: how hybrid search fuses its two rankings (default score)
    INDEXER_KEYWORD_ENGINE    tantivy | fts5: what ranks by BM25 (default tantivy: an in-memory mirror
                              of the FTS5 table, see :mod:`indexer.keywords`; fts5: SQLite's own)
    INDEXER_HYBRID_DENSE_WEIGHT  the dense ranking's share in score fusion, 0..1 (default 0.5)
    INDEXER_RERANKER          a cross-encoder model (folder or id) to rerank results; unset: none
    INDEXER_RERANK_DEPTH      fused candidates the reranker scores (default 30)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from indexer.chunk_titles import mismatch_message
from indexer.errors import IndexMismatchError
from indexer.search import FusionMethod

BUNDLED_MODEL = "bundled:all-MiniLM-L6-v2"
VectorIndexKind = Literal["flat", "hnsw"]
NearDuplicatePolicy = Literal["skip", "keep"]
KeywordEngine = Literal["tantivy", "fts5"]


@dataclass(frozen=True)
class IndexSettings:
    embedding_model: str = field(default=BUNDLED_MODEL, metadata={"help": "sentence-transformers model name or path"})
    chunk_tokens: int = field(default=200, metadata={"help": "tokens of the embedding model per chunk"})
    chunk_overlap: int = field(default=32, metadata={"help": "tokens shared by consecutive chunks"})
    vector_index: VectorIndexKind = field(default="flat", metadata={"help": "flat (exact) or hnsw (approximate)"})
    chunk_titles: bool = field(default=False, metadata={"help": "index each chunk as its document's title + the chunk"})
    """Contextual chunk headers: each chunk is embedded and keyword-indexed as its
    document's ``title`` metadata, a blank line and the chunk (see
    :mod:`indexer.chunk_titles`), so a chunk that says "AMD" is found by a question
    about "age-related macular degeneration" when the title names it. Hits still
    return the chunk alone. Off by default for now: the published retrieval and
    answer figures were measured with it off (bench/chunk_titles.py measures both).
    An index built before this setting existed reads as off."""
    near_duplicates: NearDuplicatePolicy = field(default="skip", metadata={"help": "skip or keep near duplicates"})
    near_duplicate_threshold: float = field(default=0.8, metadata={"help": "Jaccard threshold for near duplicates"})
    fusion: FusionMethod = field(default="score", metadata={"help": "hybrid fusion: score or rrf"})
    keyword_engine: KeywordEngine = field(default="tantivy", metadata={"help": "BM25 by tantivy (in memory) or fts5"})
    hybrid_dense_weight: float = field(default=0.5, metadata={"help": "dense share in score fusion, 0..1"})
    reranker: str | None = field(default=None, metadata={"help": "cross-encoder folder or id; None: no reranking"})
    rerank_depth: int = field(default=30, metadata={"help": "fused candidates the reranker scores"})
    embed_batch_size: int = field(default=64, metadata={"help": "chunks per embedding batch"})
    max_document_bytes: int = field(default=50_000_000, metadata={"help": "larger files are skipped"})

    def __post_init__(self) -> None:
        if self.chunk_tokens < 16:
            raise ValueError(f"chunk_tokens must be at least 16, got {self.chunk_tokens}")
        if not 0 <= self.chunk_overlap < self.chunk_tokens:
            raise ValueError(f"chunk_overlap must be in [0, chunk_tokens), got {self.chunk_overlap}")
        if self.vector_index not in ("flat", "hnsw"):
            raise ValueError(f"vector_index must be 'flat' or 'hnsw', got {self.vector_index!r}")
        if not isinstance(self.chunk_titles, bool):
            raise ValueError(f"chunk_titles must be True or False, got {self.chunk_titles!r}")
        if self.near_duplicates not in ("skip", "keep"):
            raise ValueError(f"near_duplicates must be 'skip' or 'keep', got {self.near_duplicates!r}")
        if not 0.0 < self.near_duplicate_threshold <= 1.0:
            raise ValueError(f"near_duplicate_threshold must be in (0, 1], got {self.near_duplicate_threshold}")
        if self.fusion not in get_args(FusionMethod):
            raise ValueError(f"fusion must be 'score' or 'rrf', got {self.fusion!r}")
        if self.keyword_engine not in get_args(KeywordEngine):
            raise ValueError(f"keyword_engine must be 'tantivy' or 'fts5', got {self.keyword_engine!r}")
        if not 0.0 <= self.hybrid_dense_weight <= 1.0:
            raise ValueError(f"hybrid_dense_weight must be in [0, 1], got {self.hybrid_dense_weight}")
        if self.rerank_depth < 1:
            raise ValueError(f"rerank_depth must be positive, got {self.rerank_depth}")
        if self.embed_batch_size < 1:
            raise ValueError(f"embed_batch_size must be positive, got {self.embed_batch_size}")

    @classmethod
    def from_env(cls) -> "IndexSettings":
        env = os.environ
        kwargs: dict[str, object] = {}
        if "INDEXER_EMBEDDING_MODEL" in env:
            kwargs["embedding_model"] = env["INDEXER_EMBEDDING_MODEL"]
        if "INDEXER_CHUNK_TOKENS" in env:
            kwargs["chunk_tokens"] = int(env["INDEXER_CHUNK_TOKENS"])
        if "INDEXER_CHUNK_OVERLAP" in env:
            kwargs["chunk_overlap"] = int(env["INDEXER_CHUNK_OVERLAP"])
        if "INDEXER_VECTOR_INDEX" in env:
            kwargs["vector_index"] = env["INDEXER_VECTOR_INDEX"]
        if "INDEXER_CHUNK_TITLES" in env:
            kwargs["chunk_titles"] = _flag("INDEXER_CHUNK_TITLES", env["INDEXER_CHUNK_TITLES"])
        if "INDEXER_FUSION" in env:
            kwargs["fusion"] = env["INDEXER_FUSION"]
        if "INDEXER_KEYWORD_ENGINE" in env:
            kwargs["keyword_engine"] = env["INDEXER_KEYWORD_ENGINE"]
        if env.get("INDEXER_RERANKER"):
            kwargs["reranker"] = env["INDEXER_RERANKER"]
        if "INDEXER_RERANK_DEPTH" in env:
            kwargs["rerank_depth"] = int(env["INDEXER_RERANK_DEPTH"])
        if "INDEXER_HYBRID_DENSE_WEIGHT" in env:
            kwargs["hybrid_dense_weight"] = float(env["INDEXER_HYBRID_DENSE_WEIGHT"])
        return cls(**kwargs)  # type: ignore[arg-type]

    # the settings a built index is tied to; the others may change between runs
    BUILD_KEYS = ("embedding_model", "chunk_tokens", "chunk_overlap", "vector_index", "chunk_titles")

    def build_values(self) -> dict[str, str]:
        return {k: str(getattr(self, k)) for k in self.BUILD_KEYS}


def settings_of_existing(path: Path, stored: Mapping[str, str], requested: IndexSettings | None) -> IndexSettings:
    """The settings of the index at ``path`` whose metadata is ``stored``: its
    build settings, the others (fusion, batch sizes ...) from the environment.
    ``requested`` settings are returned when their build settings match, else
    :class:`IndexMismatchError` says what to do."""
    # an index made before chunk_titles existed indexed chunks alone
    meta = {"chunk_titles": str(False), **stored}
    built = dataclasses.replace(
        IndexSettings.from_env(), embedding_model=meta["embedding_model"], chunk_tokens=int(meta["chunk_tokens"]),
        chunk_overlap=int(meta["chunk_overlap"]), vector_index=meta["vector_index"],  # type: ignore[arg-type]
        chunk_titles=meta["chunk_titles"] == str(True),
    )
    if requested is None:
        return built
    for key in IndexSettings.BUILD_KEYS:
        want, have = str(getattr(requested, key)), meta[key]
        if want == have:
            continue
        if key == "chunk_titles":
            raise IndexMismatchError(mismatch_message(path, built_with=built.chunk_titles))
        flag = "--" + key.replace("_", "-")
        raise IndexMismatchError(
            f"the index at {path} was built with {key} = {have}, not {want}; "
            f"re-ingest into a new index, or pass {flag} {have}"
        )
    return requested


def _flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1 or 0, got {value!r}")
