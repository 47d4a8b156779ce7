"""The FAISS side of an index: inner product over L2-normalised vectors.

``flat`` is exact (``IndexIDMap2`` over ``IndexFlatIP``); ``hnsw`` is an
approximate graph index for large collections. HNSW cannot remove vectors, so
deleted chunks stay in the graph until a rebuild; search results are always
joined against the SQLite store, which drops them (and any vector whose
transaction never committed).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np

from indexer import snapshots

PREFIX, SUFFIX = "vectors", ".faiss"
# the store generation from which the stored vectors are those of the current embedder
# (the re-embedding's switch, :mod:`indexer.reembed`): older snapshots hold another's
SINCE_KEY = "vectors_since_gen"
HNSW_NEIGHBOURS = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128


def _new_index(dim: int, kind: str) -> faiss.Index:
    if kind == "flat":
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    if kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(dim, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        hnsw.hnsw.efSearch = HNSW_EF_SEARCH
        return faiss.IndexIDMap2(hnsw)
    raise ValueError(f"unknown vector index kind {kind!r}")


DEFAULT_OMP_THREADS = faiss.omp_get_max_threads()


def _search_on_calling_thread() -> None:
    """One query runs on the calling thread. Spreading it over FAISS's OpenMP
    threads cost more than it saved while the query embedding's and SQLite's
    threads held the two cores: hybrid p50 at 100k chunks went from 54 to 25 ms.
    The setting is per calling thread (an OpenMP ICV) and stays set: putting it
    back after each search brought the slowdown back (measured, 41 ms)."""
    if faiss.omp_get_max_threads() != 1:
        faiss.omp_set_num_threads(1)


@contextlib.contextmanager
def _all_omp_threads() -> Iterator[None]:
    """Building a graph index is parallel work: use every thread for it."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(DEFAULT_OMP_THREADS)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class VectorIndex:
    """A FAISS index and the store generation it reflects; thread-safe."""

    def __init__(self, dim: int, kind: str, index: faiss.Index | None = None, gen: int = 0):
        self.dim, self.kind = dim, kind
        self.index = index if index is not None else _new_index(dim, kind)
        self.gen = gen
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            with self._lock, _all_omp_threads():
                self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids.astype(np.int64))

    def remove(self, ids: np.ndarray) -> None:
        if len(ids) and self.kind == "flat":
            with self._lock:
                self.index.remove_ids(ids.astype(np.int64))

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids of the ``k`` nearest vectors (ids -1 where fewer exist)."""
        with self._lock:
            if self.size == 0:
                return np.zeros((len(query), 0), np.float32), np.zeros((len(query), 0), np.int64)
            if len(query) == 1:
                _search_on_calling_thread()
            return self.index.search(np.ascontiguousarray(query, dtype=np.float32), min(k, self.size))

    def save(self, directory: Path, gen: int) -> None:
        with self._lock:
            snapshots.write_atomically(snapshots.path_for(directory, PREFIX, gen, SUFFIX),
                                       lambda tmp: faiss.write_index(self.index, str(tmp)))
            self.gen = gen
        snapshots.remove_older(directory, PREFIX, SUFFIX, gen)

    @classmethod
    def load(cls, directory: Path, dim: int, kind: str, max_gen: int, min_gen: int = 0) -> "VectorIndex":
        """The newest snapshot at or below ``max_gen``, or an empty index at generation 0
        when there is none at or above ``min_gen`` (its vectors are rebuilt from the store)."""
        found = snapshots.latest(directory, PREFIX, SUFFIX, max_gen)
        if found is None or found[0] < min_gen:
            return cls(dim, kind)
        gen, path = found
        index = faiss.read_index(str(path))
        if index.d != dim:
            raise ValueError(f"vector snapshot {path} has dimension {index.d}, the store has {dim}")
        return cls(dim, kind, index, gen)
