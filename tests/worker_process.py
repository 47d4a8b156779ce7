"""Running a test's worker script in a subprocess and SIGKILLing it at a chosen line of its
output: the crash-safety tests' harness (pytest puts this directory on ``sys.path``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

WORKER_ENV = {"HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def run_worker(script: Path, args: Sequence[str], *, log: Path, kill_when: Callable[[str], bool],
               cwd: Path, timeout: float = 300) -> tuple[bool, int]:
    """Runs ``python script args`` with its stderr in ``log``, passing each stdout line to
    ``kill_when``; the first line for which it returns True gets the worker SIGKILLed (lines
    already in the pipe are still read). Returns whether it was killed, and its exit status."""
    env = {**os.environ, **WORKER_ENV}
    killed = False
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=err,
                                text=True, env=env, cwd=cwd)
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if kill_when(line) and not killed:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = True
            rc = proc.wait(timeout=60)
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
    return killed, rc
