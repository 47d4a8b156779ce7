"""Helper of ``test_reembed.py`` (not a test): re-embeds an index and reports its progress.

    python tests/indexer/reembed_worker.py INDEX_DIR MODEL_DIR GROUP HOLD_AFTER

Prints ``STAGED <done> <total>`` after each committed group and ``SWITCHED`` once the
switch is durable (flushed at once), then ``DONE``. It sleeps after the line that starts
with ``HOLD_AFTER`` (e.g. ``STAGED 16`` or ``SWITCHED``: before the FAISS snapshot is
written), so that the test kills it at a known point.
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    from indexer.reembed import reembed

    directory, model, group, hold_after = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

    def report(stage: str, done: int, total: int) -> None:
        line = "SWITCHED" if stage == "switched" else f"STAGED {done} {total}"
        print(line, flush=True)
        if line.startswith(hold_after):
            time.sleep(120)

    reembed(directory, model, group=group, progress=False, on_progress=report)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
