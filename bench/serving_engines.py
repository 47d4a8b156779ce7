"""``/v1/ask`` served by each generation engine, side by side in one run: ``assistant serve``
with ``ASSISTANT_BACKEND=local`` (transformers in float32, and in bfloat16) and
``ASSISTANT_BACKEND=llama`` (llama.cpp; the bundled model exported once as Q8_0; and with
``ASSISTANT_PREFILL=torch``, transformers in bfloat16 reading the prompts), on the same index
and the same questions, one server at a time.

Run::

    .venv/bin/python bench/serving_engines.py            # 16 asks one at a time, 8 clients × 3 asks
    .venv/bin/python bench/serving_engines.py --quick    # 6 asks, 8 clients × 1 ask

For each engine: latency p50/p95 with one client, then with 8 concurrent clients (each
request's own latency) and the answers per minute; the server's peak resident memory
(``VmHWM``); and how often each engine's raw answers to the one-client questions are the
float32 engine's text, and how often the answer was shown (grounded).
Issue 17's target: p50 at least 2× lower than the transformers engine's.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import env_info, env_markdown, md_table, parse_args, write_results  # noqa: E402
from service_bench import BIN, build_index, rss_mb, running_server  # noqa: E402

ENGINES = {"transformers fp32 (local)": {"ASSISTANT_BACKEND": "local", "ASSISTANT_CPU_DTYPE": "float32"},
           "transformers bf16 (local, ASSISTANT_CPU_DTYPE=bfloat16)": {"ASSISTANT_BACKEND": "local",
                                                                      "ASSISTANT_CPU_DTYPE": "bfloat16"},
           "llama.cpp Q8_0 (llama)": {"ASSISTANT_BACKEND": "llama", "ASSISTANT_PREFILL": "llama"},
           "torch bf16 reads, llama.cpp Q8_0 decodes (llama, ASSISTANT_PREFILL=torch)": {
               "ASSISTANT_BACKEND": "llama", "ASSISTANT_PREFILL": "torch"}}


async def timed_ask(client: httpx.AsyncClient, question: str) -> tuple[float, dict]:
    started = time.perf_counter()
    response = await client.post("/v1/ask", json={"question": question})
    if response.status_code != 200:
        raise SystemExit(f"/v1/ask answered {response.status_code}: {response.text[:300]}")
    return time.perf_counter() - started, response.json()


async def measure(url: str, key: str, questions: list[str], one: int, per_client: int) -> dict:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=900) as client:
        await timed_ask(client, questions[-1])  # warm-up
        single = [await timed_ask(client, q) for q in questions[:one]]

        async def client_loop(c: int) -> list[float]:
            return [(await timed_ask(client, questions[one + c * per_client + i]))[0] for i in range(per_client)]

        started = time.perf_counter()
        eight = [s for part in await asyncio.gather(*(client_loop(c) for c in range(8))) for s in part]
        seconds = time.perf_counter() - started
    latencies = [s for s, _ in single]
    return {
        "one_client": {"requests": len(latencies), "p50_s": float(np.percentile(latencies, 50)),
                       "p95_s": float(np.percentile(latencies, 95)),
                       "generation_ms_p50": float(np.median([b["timings"]["generation_ms"] for _, b in single]))},
        "eight_clients": {"requests": len(eight), "p50_s": float(np.percentile(eight, 50)),
                          "p95_s": float(np.percentile(eight, 95)), "seconds": seconds,
                          "answers_per_min": len(eight) / seconds * 60},
        "answers": [b.get("raw_answer", "") for _, b in single],
        "grounded": [bool(b.get("grounded")) for _, b in single],
    }


def main() -> None:
    args = parse_args(__doc__)
    one, per_client = (6, 1) if args.quick else (16, 3)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = Path(tmp) / "index"
        print("indexing ...", file=sys.stderr)
        questions = build_index(index_dir, 200)[1:]
        for engine, env_extra in ENGINES.items():
            data_dir = Path(tmp) / f"service-{len(results)}"
            key = json.loads(subprocess.run(
                [BIN / "assistant", "keys", "create", "--name", "bench", "--role", "reader", "--index", index_dir,
                 "--data-dir", data_dir, "--json"], check=True, capture_output=True, text=True).stdout)["key"]
            env = dict(os.environ, ASSISTANT_MAX_NEW_TOKENS=os.environ.get("ASSISTANT_MAX_NEW_TOKENS", "64"),
                       **env_extra)
            print(f"{engine} ...", file=sys.stderr)
            with running_server(index_dir, data_dir, env) as (url, pid):
                results[engine] = asyncio.run(measure(url, key, questions, one, per_client))
                results[engine]["peak_rss_mb"] = rss_mb(pid, "VmHWM")
    report(results, args)


def report(results: dict[str, dict], args) -> None:
    names = list(results)
    base = results[names[0]]
    rows = []
    for name, r in results.items():
        o, e = r["one_client"], r["eight_clients"]
        rows.append([name, o["p50_s"], o["p95_s"], base["one_client"]["p50_s"] / o["p50_s"], e["p50_s"], e["p95_s"],
                     e["answers_per_min"], f"{sum(r['grounded'])}/{len(r['grounded'])}",
                     f"{sum(a == b for a, b in zip(base['answers'], r['answers']))}/{len(r['answers'])}",
                     round(r["peak_rss_mb"])])
    md = "\n\n".join([
        f"### `/v1/ask` by engine (`.venv/bin/python bench/serving_engines.py{' --quick' if args.quick else ''}`)",
        f"Environment: {env_markdown(env_info())}",
        "Bundled SmolLM2-135M-Instruct and all-MiniLM-L6-v2; 200 MedQuAD answers indexed; MedQuAD questions; "
        "at most 64 new tokens; one server at a time on the same index and questions.",
        md_table(["engine", "1 client p50 s", "p95 s", "p50 × faster", "8 clients p50 s", "p95 s", "answers/min",
                  "grounded (1 client)", "raw answer = fp32's", "peak RSS MB"], rows),
    ])
    print(md)
    write_results("serving_engines", results, md)


if __name__ == "__main__":
    main()
