"""Do batch calls release the GIL? Two calls in two Python threads vs the same
two calls one after the other, with one native thread per call.

Run::

    .venv/bin/python bench/gil.py           # 8,000 MedQuAD answers per call
    .venv/bin/python bench/gil.py --quick   # 2,000

The measurement runs in a subprocess with ``INDEXER_NUM_THREADS=1`` (and
``RAYON_NUM_THREADS=1``), so each call runs on its own calling thread: if a call holds the
GIL while it works, two concurrent calls take as long as two sequential ones
(speedup ~1×); if it releases the GIL, they overlap (speedup → 2× on 2 free cores).
Functions: ``minhash_signatures``, ``normalize``, ``chunk`` (word tokens) and
``Tokenizer.encode_batch`` (SmolLM2). Speedup = sequential time / concurrent time,
medians of ``--runs`` (round-robin). Controls: ``str.lower`` of the joined texts (one C call
that holds the GIL: ~1×, ~0% progress) and a Python NFKC + regex loop (bytecode,
the GIL handed over every 5 ms).

Three experiments per function: (1) the same call in two Python threads — with
one thread per call each runs on its caller, so only the GIL-holding parts
(argument and result conversion) serialize; (2) the call
in a thread while the main thread runs a pure-Python loop of about the same
length — this isolates GIL release: ~2× when the call runs without the GIL; (3)
a Python thread counting in a loop while the call runs in the main thread, its
rate compared with its rate while the main thread sleeps: ~0% = GIL held
throughout (the ``str.lower`` control), clearly above 0 = released. (1) and (2)
need two idle cores.
Only meaningful when the 2 cores are otherwise idle (load average is reported).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    env_info, env_markdown, md_table, medquad_records, parse_args, time_interleaved, write_results,
)


def concurrent(fn) -> None:
    threads = [threading.Thread(target=fn) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def py_work(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def alongside(native_fn, python_fn) -> None:
    """The native call in a second thread while this thread runs Python."""
    t = threading.Thread(target=native_fn)
    t.start()
    python_fn()
    t.join()


class Ticker:
    """A Python thread that counts as fast as it can while it holds the GIL."""

    def __init__(self) -> None:
        self.count = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        while not self.stop:
            self.count += 1

    def __enter__(self) -> "Ticker":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop = True
        self.thread.join()


def progress_during(fn) -> float:
    """Ticks per second that a Python thread makes while this thread runs ``fn``."""
    import time

    with Ticker() as t:
        time.sleep(0.02)
        c0, w0 = t.count, time.perf_counter()
        fn()
        c1, w1 = t.count, time.perf_counter()
    return (c1 - c0) / (w1 - w0)


def worker(n: int, runs: int) -> dict:
    import re
    import time
    import unicodedata

    from indexer import native

    from assistant.generation.model_files import tokenizer_json

    assert native.num_threads() == 1, native.num_threads()
    texts = [r["answer"] for r in medquad_records()][:n]
    tok = native.load_tokenizer(tokenizer_json())
    tok_texts = texts[: max(200, n // 8)]
    ws = re.compile(r"\s+")
    joined = "\n".join(texts * 4)
    fns = {
        "minhash_signatures": lambda: native.minhash_signatures(texts),
        "normalize": lambda: native.normalize(texts),
        "chunk (words)": lambda: native.chunk(texts),
        "Tokenizer.encode_batch": lambda: tok.encode_batch(tok_texts),
        "control: str.lower of the joined texts (C, holds the GIL)": lambda: joined.lower(),
        "control: Python NFKC + regex (bytecode + short C calls)":
            lambda: [ws.sub(" ", unicodedata.normalize("NFKC", t)) for t in texts],
    }
    # a pure-Python loop about as long as a native call, for the native ∥ Python experiment
    t0 = time.perf_counter()
    py_work(200_000)
    per_iter = (time.perf_counter() - t0) / 200_000
    timed: dict[str, Any] = {}
    py_iters = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        one = time.perf_counter() - t0
        py_iters[name] = max(10_000, int(one / per_iter))
        py = lambda k=py_iters[name]: py_work(k)  # noqa: E731
        timed[f"{name}|one call"] = fn
        timed[f"{name}|2 sequential"] = lambda fn=fn: (fn(), fn())
        timed[f"{name}|2 threads"] = lambda fn=fn: concurrent(fn)
        timed[f"{name}|python loop"] = py
        timed[f"{name}|call + loop sequential"] = lambda fn=fn, py=py: (fn(), py())
        timed[f"{name}|call ∥ loop"] = lambda fn=fn, py=py: alongside(fn, py)
    T = time_interleaved(timed, runs=runs)
    import statistics

    progress: dict[str, list[float]] = {name: [] for name in fns}
    idle = []
    for _ in range(runs):
        idle.append(progress_during(lambda: time.sleep(0.2)))
        for name, fn in fns.items():
            progress[name].append(progress_during(fn))
    idle_rate = statistics.median(idle)
    out = {}
    for name in fns:
        m = {k: T[f"{name}|{k}"].median for k in ("one call", "2 sequential", "2 threads", "python loop",
                                                   "call + loop sequential", "call ∥ loop")}
        out[name] = {"docs": len(tok_texts) if "Tokenizer" in name else len(texts), "median_s": m,
                     "speedup_two_calls": m["2 sequential"] / m["2 threads"],
                     "speedup_call_and_python": m["call + loop sequential"] / m["call ∥ loop"],
                     "python_progress": statistics.median(progress[name]) / idle_rate,
                     "runs": {k: T[f"{name}|{k}"].runs for k in m}}
    return out


def main() -> None:
    args = parse_args(__doc__, extra={"--worker": {"action": "store_true", "help": "internal"},
                                  "--n": {"type": int, "default": None, "help": "texts per call"}})
    n = args.n or (2000 if args.quick else 8000)
    if args.worker:
        print(json.dumps(worker(n, args.runs)))
        return
    env = dict(os.environ, INDEXER_NUM_THREADS="1", RAYON_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--worker", "--n", str(n), "--runs", str(args.runs)]
    load_before = os.getloadavg()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr, file=sys.stderr)
        raise SystemExit(proc.returncode)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = []
    for name, r in res.items():
        m = r["median_s"]
        rows.append([name, r["docs"], m["one call"], m["2 sequential"], m["2 threads"],
                     f"{r['speedup_two_calls']:.2f}×", m["python loop"], m["call + loop sequential"],
                     m["call ∥ loop"], f"{r['speedup_call_and_python']:.2f}×", f"{r['python_progress']:.0%}"])
    table = md_table(["function (INDEXER_NUM_THREADS=1)", "docs per call", "one call s", "2 calls sequential s",
                      "2 calls in 2 threads s", "speedup (calls)", "Python loop s", "call then loop s",
                      "call ∥ loop s", "speedup (call ∥ Python)", "Python thread progress during call"], rows)
    e = env_info()
    md = "\n\n".join([
        f"### GIL release (`.venv/bin/python bench/gil.py{' --quick' if args.quick else ''}`)",
        f"Environment: {env_markdown(e)}; load average before: {load_before[0]:.2f}",
        f"Subprocess with INDEXER_NUM_THREADS=1; medians of {args.runs} runs (round-robin). Speedup ≈ 2× means "
        f"the two calls ran in parallel (GIL released); ≈ 1× means serialized. 'calls': the same call in two "
        f"Python threads; 'call ∥ Python': the call in a thread while the main thread runs a pure-Python loop of "
        f"about the same length. 'Python thread progress': how fast a counting Python thread runs while the "
        f"call runs in the main thread, relative to while the main thread sleeps: ~0% = GIL held throughout "
        f"(the str.lower control); clearly above 0 = released (about 50% here even when released: the "
        f"counting thread then shares the 2 cores with the call's worker thread).",
        table,
    ])
    print(md)
    write_results("gil", {"n": n, "load_before": load_before, "functions": res}, md)


if __name__ == "__main__":
    main()
