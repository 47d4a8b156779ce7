"""Freed memory handed back to the system (indexer.memory), in a child process of its own
so that its malloc settings do not reach the test process.

The child does what the embedder's worker threads do: large blocks allocated from a
thread's heap between small ones that stay alive, then freed. glibc keeps such memory
(the threshold for giving large blocks their own mmap is raised here as glibc raises it
by itself after large frees); ``give_back_free_memory`` must return it."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

CHILD = r"""
import ctypes, json, threading
from indexer.memory import give_back_free_memory

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

ctypes.CDLL("libc.so.6").mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD: blocks under 64 MB from the heap
alive = []

def work():
    blocks = [b""] * 800
    for i in range(800):
        blocks[i] = b"x" * (256 << 10)  # written, so resident
        alive.append(b"y" * 1000)       # a small block after each large one
    del blocks

worker = threading.Thread(target=work)
worker.start()
worker.join()
kept = rss_mb()
gave_back = give_back_free_memory()
print(json.dumps({"gave_back": gave_back, "kept_mb": kept, "after_mb": rss_mb()}))
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc_trim")
def test_freed_thread_heap_memory_is_given_back():
    out = subprocess.run([sys.executable, "-c", CHILD], check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    assert result["gave_back"] is True
    # 200 MB were freed in the worker's heap: without trimming the process keeps them
    assert result["kept_mb"] - result["after_mb"] > 150, result
