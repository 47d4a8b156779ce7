"""JSON files that are replaced whole: a reader, or a kill mid-write, sees the old file
or the new one, never half of either.

    write_json_atomically(index_dir / "answerability.json", calibrator.to_json())
    data = read_json(path, "a calibrator")      # ValueError naming the file on bad JSON
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomically(path: Path, value: Any, *, indent: int = 2) -> Path:
    """Written to a hidden temporary file beside ``path``, flushed to disk, then renamed
    over it (a rename within a folder is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(value, indent=indent) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_json(path: Path, what: str) -> Any:
    """The parsed file; ``ValueError`` saying that ``path`` is not ``what`` when it is not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not {what} (bad JSON: {exc})") from None
