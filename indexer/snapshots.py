"""Generation-numbered snapshot files beside the SQLite store
(``vectors-<gen>.faiss``, ``lsh-<gen>.bin``), written atomically: a temporary
file, fsync, rename, directory fsync. Older generations are removed only after
a newer one is durable."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path


def path_for(directory: Path, prefix: str, gen: int, suffix: str) -> Path:
    return directory / f"{prefix}-{gen}{suffix}"


def latest(directory: Path, prefix: str, suffix: str, max_gen: int) -> tuple[int, Path] | None:
    """The newest snapshot with generation <= ``max_gen`` (a newer one would
    belong to a transaction that never committed)."""
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+){re.escape(suffix)}")
    found = []
    for p in directory.iterdir():
        m = pattern.fullmatch(p.name)
        if m and int(m.group(1)) <= max_gen:
            found.append((int(m.group(1)), p))
    return max(found) if found else None


def write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    sync_directory(target.parent)


def sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_older(directory: Path, prefix: str, suffix: str, keep_gen: int) -> None:
    pattern = re.compile(rf"{re.escape(prefix)}-(\d+){re.escape(suffix)}")
    for p in directory.iterdir():
        m = pattern.fullmatch(p.name)
        if m and int(m.group(1)) < keep_gen:
            p.unlink(missing_ok=True)
