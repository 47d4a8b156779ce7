"""Log lines of the libraries below us that are known to be harmless, turned down to DEBUG
so that a user's terminal shows only what they can act on.

:func:`demote_known_noise` runs once, from the ``indexer`` and ``assistant`` package
``__init__``s, because the lines come at import time from imports the project makes lazily
in several places. Only the exact lines listed in :data:`KNOWN_NOISE`, and only below
ERROR, are demoted: anything else those loggers say still shows, and a demoted line
reappears under ``logging.basicConfig(level=logging.DEBUG)``.
"""

from __future__ import annotations

import logging

# logger name -> the start of each harmless message (its format string, before % args)
KNOWN_NOISE: dict[str, tuple[str, ...]] = {
    # bitsandbytes, imported whenever peft is (sentence-transformers imports peft, so every
    # embedding or reranking model load does), tries on CPUs with AVX512-BF16 to fetch a
    # faster 4-bit CPU matmul from the Hugging Face Hub through the optional `kernels`
    # package. When it cannot (package missing, offline, publisher not trusted) it warns
    # and keeps its own built-in kernel, which computes the same thing. Nothing to fix.
    "bitsandbytes.backends.cpu.ops": ("Failed to load CPU gemm_4bit_forward from kernels-community",),
    # the same attempt, offline (HF_HUB_OFFLINE=1, as `make demo` runs): `kernels` says it
    # cannot check the publisher, then finds no cached copy, and bitsandbytes warns as above
    "kernels._internals.hf_hub": ("Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes'",),
}


class _DemoteToDebug(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        # The record is re-levelled, not dropped: handlers compare its level after the
        # logger's filters ran, so a WARNING handler skips it and a DEBUG one still shows it.
        if record.levelno < logging.ERROR and str(record.msg).startswith(self.prefixes):
            record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return True


def demote_known_noise() -> None:
    """Installs the filters; calling it again changes nothing."""
    for name, prefixes in KNOWN_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DemoteToDebug) for f in logger.filters):
            logger.addFilter(_DemoteToDebug(prefixes))
