"""Handing freed memory back to the operating system.

glibc raises its mmap threshold each time a large block is freed, so the embedder's
per-batch buffers (1–32 MB each, a different size for every padded length) come to be
carved from the heap, where freed ones sit between live small blocks and are never
returned. Embedding 6,144 MedQuAD passages kept +517 MB that way; trimming after each
group of chunks kept none, at the same speed (bench figures in BENCHMARKS.md, "One large
document"). Fixing the threshold with ``mallopt`` bounded it too, but made embedding 14%
slower: every batch then faulted its buffers in afresh.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None


def give_back_free_memory() -> bool:
    """Returns the heap's free pages to the system (glibc's ``malloc_trim(0)``); False
    where the C library has no such call. It takes a few milliseconds, so call it after
    large work, not per request."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
