"""The index's exceptions, one tree under :class:`IndexError_` (a ``ValueError``),
kept apart so that the index and its write boundary can both raise them."""

from __future__ import annotations


class IndexError_(ValueError):
    """Base class of index errors (named to avoid shadowing the builtin)."""


class IndexMismatchError(IndexError_):
    """The index was built with other settings (model, chunking) than requested."""


class IndexBusyError(IndexError_):
    """Another process is writing to the index."""
