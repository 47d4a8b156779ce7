"""The HTTP service under load, with the bundled models (SmolLM2-135M-Instruct
on CPU, all-MiniLM-L6-v2), served by ``assistant serve`` in its own process.

Run::

    .venv/bin/python bench/service_bench.py            # 200 MedQuAD answers indexed; 60-s load of 32 clients
    .venv/bin/python bench/service_bench.py --quick    # fewer requests; 15-s load

1. ``/v1/ask`` one at a time: latency p50/p95, time to first token (streamed),
   and the share of server time outside generation (retrieval, prompt, checks;
   target ≤ 10%).
2. Throughput with 1, 4 and 8 concurrent clients, answers per minute (target: 8
   clients ≥ 3× one); the generation queue micro-batches concurrent requests.
3. A load of 32 concurrent clients, half on ``/v1/search`` and half on
   ``/v1/ask``: every request must get an answer or a 429 (no 5xx, nothing
   lost), and the server's resident memory must stay flat.

The rate limit is raised for the run (``ASSISTANT_RATE_PER_MINUTE``): it is
the generation queue's 429 that is under test, not the per-key limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, env_info, env_markdown, md_table, parse_args, write_results  # noqa: E402

from indexer import shared_data  # noqa: E402
from indexer.index import Index  # noqa: E402
from indexer.loaders import Document  # noqa: E402

BIN = Path(sys.executable).parent


def build_index(directory: Path, n: int) -> list[str]:
    """``n`` distinct MedQuAD answers; returns their questions."""
    docs, questions, seen = [], [], set()
    for r in shared_data.iter_medquad():
        if r["answer"] in seen:
            continue
        seen.add(r["answer"])
        docs.append(Document(f"medquad-{len(docs)}", r["answer"], r["url"], {"focus": r["focus"]}))
        questions.append(r["question"])
        if len(docs) == n:
            break
    with Index.open(directory) as index:
        index.ingest_documents(docs)
    return questions


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory in MB now, or with ``field="VmHWM"`` its peak so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def ask(client: httpx.AsyncClient, question: str) -> tuple[int, dict | None, float]:
    t0 = time.perf_counter()
    r = await client.post("/v1/ask", json={"question": question})
    return r.status_code, (r.json() if r.status_code == 200 else None), time.perf_counter() - t0


async def first_token(client: httpx.AsyncClient, question: str) -> tuple[float | None, float]:
    t0 = time.perf_counter()
    ttft = None
    async with client.stream("POST", "/v1/ask", json={"question": question, "stream": True}) as r:
        async for line in r.aiter_lines():
            if line.startswith("event: token") and ttft is None:
                ttft = time.perf_counter() - t0
    return ttft, time.perf_counter() - t0


async def sequential(client: httpx.AsyncClient, questions: list[str]) -> dict:
    lat, ttfts, server_total, generation = [], [], 0.0, 0.0
    for q in questions:
        status, body, seconds = await ask(client, q)
        assert status == 200 and body is not None, status
        lat.append(seconds)
        server_total += body["timings"]["total_ms"]
        generation += body["timings"]["generation_ms"]
        ttft, _ = await first_token(client, q)
        if ttft is not None:
            ttfts.append(ttft)
    return {"requests": len(lat), "p50_s": float(np.percentile(lat, 50)), "p95_s": float(np.percentile(lat, 95)),
            "ttft_p50_s": float(np.percentile(ttfts, 50)) if ttfts else None,
            "outside_generation_share": 1 - generation / server_total}


async def throughput(client: httpx.AsyncClient, questions: list[str], clients: int, per_client: int) -> dict:
    async def one(c: int) -> list[int]:
        return [(await ask(client, questions[(c * per_client + i) % len(questions)]))[0] for i in range(per_client)]

    t0 = time.perf_counter()
    codes = [s for batch in await asyncio.gather(*(one(c) for c in range(clients))) for s in batch]
    seconds = time.perf_counter() - t0
    return {"clients": clients, "requests": len(codes), "ok": codes.count(200), "seconds": seconds,
            "answers_per_min": codes.count(200) / seconds * 60}


async def load(url: str, key: str, questions: list[str], seconds: float, pid: int) -> dict:
    deadline = time.monotonic() + seconds
    counts: dict[str, dict[str, int]] = {"search": {}, "ask": {}}
    rss = [rss_mb(pid)]

    async def client_loop(kind: str, c: int, client: httpx.AsyncClient) -> None:
        i = c
        while time.monotonic() < deadline:
            q = questions[i % len(questions)]
            i += 32
            try:
                if kind == "search":
                    r = await client.get("/v1/search", params={"q": q, "k": 10})
                else:
                    r = await client.post("/v1/ask", json={"question": q})
                code = str(r.status_code)
            except httpx.HTTPError as exc:  # a lost request
                code = type(exc).__name__
            counts[kind][code] = counts[kind].get(code, 0) + 1
            if code == "429":
                await asyncio.sleep(float(r.headers.get("retry-after", "1")))

    async def sample_memory() -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(5)
            rss.append(rss_mb(pid))

    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600,
                                 limits=limits) as client:
        await asyncio.gather(sample_memory(), *(client_loop("search" if c < 16 else "ask", c, client) for c in range(32)))
    rss.append(rss_mb(pid))
    return {"seconds": seconds, "counts": counts, "rss_mb": rss}


def main() -> None:
    args = parse_args(__doc__)
    n_seq, load_s = (3, 15) if args.quick else (8, 60)
    with tempfile.TemporaryDirectory() as tmp:
        index_dir, data_dir = Path(tmp) / "index", Path(tmp) / "service"
        print("indexing ...", file=sys.stderr)
        questions = build_index(index_dir, 200)
        key = json.loads(subprocess.run(
            [BIN / "assistant", "keys", "create", "--name", "bench", "--role", "reader", "--index", index_dir,
             "--data-dir", data_dir, "--json"], check=True, capture_output=True, text=True).stdout)["key"]
        env = dict(os.environ, ASSISTANT_MAX_NEW_TOKENS=os.environ.get("ASSISTANT_MAX_NEW_TOKENS", "64"))
        with running_server(index_dir, data_dir, env) as (url, pid):
            out = asyncio.run(run_all(url, key, questions, n_seq, load_s, pid))
    report(out, args)


@contextlib.contextmanager
def running_server(index_dir: Path, data_dir: Path, env: dict[str, str], *, stop_wait_s: float = 60):
    """``assistant serve`` on a free port of 127.0.0.1, yielded as (url, pid) once /readyz says ready;
    terminated on exit. Rate limits are lifted: the benchmarks measure the service, not its limiter."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"ASSISTANT_RATE_PER_MINUTE": "1000000", **env, "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen([BIN / "assistant", "serve", "--index", index_dir, "--data-dir", data_dir,
                               "--port", str(port)], env=env, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            raise SystemExit("the server did not become ready")
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(stop_wait_s)


async def run_all(url: str, key: str, questions: list[str], n_seq: int, load_s: float, pid: int) -> dict:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600) as client:
        await ask(client, questions[0])  # warm-up
        print("sequential ...", file=sys.stderr)
        seq = await sequential(client, questions[1:1 + n_seq])
        print("throughput ...", file=sys.stderr)
        tput = [await throughput(client, questions[20:], c, per) for c, per in ((1, 4), (4, 2), (8, 2))]
    print("load ...", file=sys.stderr)
    return {"sequential": seq, "throughput": tput, "load": await load(url, key, questions, load_s, pid)}


def report(out: dict, args) -> None:
    seq, tput, ld = out["sequential"], out["throughput"], out["load"]
    base = tput[0]["answers_per_min"]
    t_seq = md_table(["requests", "p50 s", "p95 s", "first token p50 s", "server time outside generation"],
                     [[seq["requests"], seq["p50_s"], seq["p95_s"], seq["ttft_p50_s"],
                       f"{seq['outside_generation_share']:.1%}"]])
    t_tput = md_table(["clients", "requests", "answered", "seconds", "answers/min", "× one client"],
                      [[t["clients"], t["requests"], t["ok"], t["seconds"], t["answers_per_min"],
                        t["answers_per_min"] / base] for t in tput])
    rows = []
    for kind, counts in ld["counts"].items():
        total = sum(counts.values())
        fivexx = sum(v for k, v in counts.items() if k.startswith("5"))
        lost = sum(v for k, v in counts.items() if not k.isdigit())
        rows.append([kind, total, counts.get("200", 0), counts.get("429", 0), fivexx, lost])
    t_load = md_table(["route", "requests", "200", "429", "5xx", "lost"], rows)
    rss = ld["rss_mb"]
    eight = tput[-1]["answers_per_min"] / base
    md = "\n\n".join([
        f"### Service (`.venv/bin/python bench/service_bench.py{' --quick' if args.quick else ''}`)",
        f"Environment: {env_markdown(env_info())}",
        "Bundled SmolLM2-135M-Instruct (fp32, CPU) and all-MiniLM-L6-v2; 200 MedQuAD answers indexed; "
        "MedQuAD questions; at most 64 new tokens per answer; top-4 passages.",
        f"**One client at a time.** Target: server time outside generation ≤ 10%: "
        f"{'PASS' if seq['outside_generation_share'] <= 0.10 else 'FAIL'}.", t_seq,
        f"**Throughput.** Target: 8 clients ≥ 3× one: {'PASS' if eight >= 3 else 'FAIL'} ({eight:.2f}×).", t_tput,
        f"**Load**: 32 clients for {ld['seconds']:.0f} s (16 search, 16 ask; a 429 is retried after its "
        f"Retry-After). Server memory (RSS) {rss[0]:.0f} MB at the start, {max(rss):.0f} MB at most, "
        f"{rss[-1]:.0f} MB at the end.", t_load,
    ])
    print(md)
    write_results("service_bench", out, md)


if __name__ == "__main__":
    main()
