"""Shared helpers for the benchmarks in ``bench/``.

- :func:`time_median` — wall time of a callable, median (and all runs) of N repeats;
  :func:`time_interleaved` — the same for several callables, round-robin.
- :func:`md_table` — a markdown table from headers and rows.
- :func:`env_info` — CPU count/model, Python and package versions, native thread count.
- :func:`write_results` — ``bench/out/<name>.json`` (and ``<name>.md``); ``bench/out`` is gitignored.
- :func:`parse_args` — the common ``--quick`` / ``--runs`` command-line flags.

Not a benchmark itself; every script imports it (``bench/`` is put on ``sys.path``
by running the scripts as ``.venv/bin/python bench/<script>.py``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

PACKAGES = ("domain-assistant", "numpy", "datasketch", "rensa", "tokenizers", "transformers")


def parse_args(description: str | None, argv: Sequence[str] | None = None,
               extra: dict[str, dict[str, Any]] | None = None) -> argparse.Namespace:
    """``--quick`` (small sizes, a fast check) and ``--runs N`` (timing repeats)."""
    p = argparse.ArgumentParser(description=(description or "").strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes for a fast check")
    p.add_argument("--runs", type=int, default=None, help="timing repeats (default 5, 3 with --quick)")
    for name, kw in (extra or {}).items():
        p.add_argument(name, **kw)
    args = p.parse_args(argv)
    if args.runs is None:
        args.runs = 3 if args.quick else 5
    return args


class Timing:
    """Wall-clock seconds of repeated runs of one callable."""

    def __init__(self, runs: list[float], result: Any = None):
        self.runs = runs
        self.result = result

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def min(self) -> float:
        return min(self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {"median_s": self.median, "min_s": self.min, "runs_s": self.runs}


def time_median(fn: Callable[[], Any], runs: int = 5, warmup: int = 1) -> Timing:
    """Runs ``fn`` ``warmup`` times untimed, then ``runs`` times timed (GC
    collected before each run, not during). Returns the runs and the last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(max(1, runs)):
        del result
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - t0)
        finally:
            gc.enable()
    return Timing(times, result)


def time_interleaved(fns: dict[str, Callable[[], Any]], runs: int = 5, warmup: int = 1) -> dict[str, Timing]:
    """Like :func:`time_median` for several callables, but round-robin (run 1 of
    each, then run 2 of each, ...) so that a change in machine load hits all of
    them alike. Returns one :class:`Timing` per name, with its last result."""
    results: dict[str, Any] = {}
    for name, fn in fns.items():
        for _ in range(warmup):
            results[name] = fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(max(1, runs)):
        for name, fn in fns.items():
            results.pop(name, None)
            gc.collect()
            gc.disable()
            try:
                t0 = time.perf_counter()
                results[name] = fn()
                times[name].append(time.perf_counter() - t0)
            finally:
                gc.enable()
    return {name: Timing(times[name], results.get(name)) for name in fns}


def time_once(fn: Callable[[], Any]) -> Timing:
    gc.collect()
    t0 = time.perf_counter()
    result = fn()
    return Timing([time.perf_counter() - t0], result)


def fmt(x: Any, digits: int = 3) -> str:
    """Human formatting: thousands separators for big numbers, ``digits`` significant digits otherwise."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if x != x:
            return "n/a"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        if abs(x) >= 100:
            return f"{x:.1f}"
        return f"{x:.{digits}g}"
    if x is None:
        return "–"
    return str(x)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[fmt(c) for c in r] for r in rows]
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(out)


def pass_fail(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def env_info() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        from indexer import native

        threads: int | str = native.num_threads()
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        threads = f"unavailable: {e}"
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "native_threads": threads,
        "INDEXER_NUM_THREADS": os.environ.get("INDEXER_NUM_THREADS"),
        "loadavg_1m_5m_15m": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


def env_markdown(env: dict[str, Any]) -> str:
    v = ", ".join(f"{k} {val}" for k, val in env["versions"].items() if val)
    load = env.get("loadavg_1m_5m_15m")
    load_s = f", load average {load[0]:.2f} (1 min, at the end)" if load else ""
    return (f"{env['cpu_count']} CPUs ({env['cpu_model']}), Python {env['python']}, "
            f"native threads {env['native_threads']}{load_s}; {v}")


def write_results(name: str, results: dict[str, Any], markdown: str) -> Path:
    """Writes ``bench/out/<name>.json`` (results + environment) and ``<name>.md``
    (``<name>-quick.*`` for ``--quick`` runs, so a fast check never replaces full results)."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if "--quick" in sys.argv[1:]:
        name += "-quick"
    path = OUT_DIR / f"{name}.json"
    payload = {"name": name, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "argv": sys.argv[1:],
               "env": env_info(), "results": results, "markdown": markdown}
    path.write_text(json.dumps(payload, indent=2, default=_json_default) + "\n")
    (OUT_DIR / f"{name}.md").write_text(markdown + "\n")
    return path


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    return str(o)


def require_medquad() -> None:
    """Exits with a clear message where the shared data folder is absent."""
    from indexer.shared_data import medquad_path

    if not medquad_path().is_file():
        print(f"SKIP: MedQuAD not found at {medquad_path()} (set SHARED_DATA_DIR)", file=sys.stderr)
        sys.exit(0)


def medquad_records() -> list[dict[str, str]]:
    from indexer.shared_data import iter_medquad

    require_medquad()
    return list(iter_medquad())


def mb(texts: Sequence[str]) -> float:
    """Size of the texts as UTF-8, in MB (10^6 bytes)."""
    return sum(len(t.encode("utf-8")) for t in texts) / 1e6
