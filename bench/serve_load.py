"""The service under load while an editor uploads large documents (issue 18): 16 clients
ask for 60 s, a mix of 8- and 256-token answers, a prober searches four times a second,
and an editor uploads large documents, with the bundled models (SmolLM2-135M-Instruct on
CPU, all-MiniLM-L6-v2) served by ``assistant serve`` in its own process.

Run::

    .venv/bin/python bench/serve_load.py              # 16 clients x 60 s, three 0.5 MB uploads
    .venv/bin/python bench/serve_load.py --quick      # 8 clients x 20 s, one 0.2 MB upload
    .venv/bin/python bench/serve_load.py --soak 10    # the service as configured only, 16 clients x 10
                                                      # minutes, a 0.5 MB upload each minute
    .venv/bin/python bench/serve_load.py --soak 30 --configs whole-reading,after
                                                      # prompts read whole, then in pieces

What must hold: no 5xx and nothing lost; every ask answered (200) or refused (429/503)
within its deadline (``ASSISTANT_ANSWER_DEADLINE`` plus ten seconds for retrieval, the
check and HTTP); search p95 ≤ 1 s throughout; every accepted upload indexed (its job
done and its document listed); the server's resident memory bounded.

A 429 or 503 is retried after its ``Retry-After`` (at most 5 s), as a client would.
The per-key rate limit is raised for the run: the queue's admission is under test.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, env_info, env_markdown, md_table, parse_args, write_results  # noqa: E402
from service_bench import build_index, rss_mb, running_server  # noqa: E402

from indexer import shared_data  # noqa: E402

BIN = Path(sys.executable).parent
SERVER_TIMINGS = ("retrieval_ms", "generation_ms", "verification_ms", "total_ms")
SLACK_S = 10.0
"""Client-side allowance beyond the answer deadline: retrieval, the claim check, HTTP."""


def large_documents(count: int, megabytes: float, skip: int) -> list[dict[str, str]]:
    """``count`` documents of about ``megabytes`` each, MedQuAD answers not in the index, joined."""
    answers, seen = [], set()
    for r in shared_data.iter_medquad():
        if r["answer"] not in seen:
            seen.add(r["answer"])
            answers.append(r["answer"])
    answers = answers[skip:]
    docs, i = [], 0
    for n in range(count):
        parts, size = [], 0
        while size < megabytes * 1e6:
            parts.append(answers[i % len(answers)])
            size += len(parts[-1].encode())
            i += 1
        docs.append({"id": f"load-upload-{n}", "text": "\n\n".join(parts), "source": f"load/upload-{n}.txt"})
    return docs


def create_key(index_dir: Path, data_dir: Path, role: str) -> str:
    return json.loads(subprocess.run(
        [BIN / "assistant", "keys", "create", "--name", f"load-{role}", "--role", role, "--index", index_dir,
         "--data-dir", data_dir, "--json"], check=True, capture_output=True, text=True).stdout)["key"]


async def run_load(url: str, keys: dict[str, str], questions: list[str], uploads: list[dict[str, str]], *,
                   clients: int, seconds: float, deadline_s: float, pid: int, upload_every_s: float = 0) -> dict:
    started_at = time.monotonic()
    stop_at = started_at + seconds
    asks: list[dict] = []
    searches: list[float] = []
    search_errors: list[str] = []
    jobs: list[dict] = []
    rss = [rss_mb(pid)]
    rss_over_time = [(0.0, rss[0])]
    rng = random.Random(0)
    headers = {role: {"Authorization": f"Bearer {key}"} for role, key in keys.items()}

    async def asker(c: int, client: httpx.AsyncClient) -> None:
        i = c
        while time.monotonic() < stop_at:
            tokens = rng.choice((8, 256))
            started = time.perf_counter()
            retry = 0.0
            try:
                r = await client.post("/v1/ask", headers=headers["reader"],
                                      json={"question": questions[i % len(questions)], "max_new_tokens": tokens})
                code = str(r.status_code)
                retry = float(r.headers.get("retry-after", 0))
                body = r.json() if code == "200" else {}
            except httpx.HTTPError as exc:
                code, body = type(exc).__name__, {}
            timings = body.get("timings") or {}
            asks.append({"tokens": tokens, "code": code, "seconds": time.perf_counter() - started,
                         "finish_reason": body.get("finish_reason"),
                         "server_s": {k: timings[k] / 1000 for k in SERVER_TIMINGS if k in timings}})
            i += clients
            if retry:
                await asyncio.sleep(min(retry, 5.0))

    async def prober(client: httpx.AsyncClient) -> None:
        i = 0
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                r = await client.get("/v1/search", headers=headers["reader"],
                                     params={"q": questions[i % len(questions)], "k": 10})
                if r.status_code != 200:
                    search_errors.append(str(r.status_code))
            except httpx.HTTPError as exc:
                search_errors.append(type(exc).__name__)
            searches.append(time.perf_counter() - started)
            i += 7
            await asyncio.sleep(max(0.0, 0.25 - (time.perf_counter() - started)))

    async def editor(client: httpx.AsyncClient) -> None:
        for doc in uploads:
            await asyncio.sleep(upload_every_s if jobs else 0)
            started = time.perf_counter()
            r = await client.post("/v1/documents", headers=headers["editor"], json=doc)
            jobs.append({"doc_id": doc["id"], "code": r.status_code, "accept_s": time.perf_counter() - started,
                         "status_url": r.json().get("status_url") if r.status_code == 202 else None})

    async def sample_memory() -> None:
        while time.monotonic() < stop_at:
            await asyncio.sleep(2)
            rss.append(rss_mb(pid))
            rss_over_time.append((time.monotonic() - started_at, rss[-1]))

    limits = httpx.Limits(max_connections=clients + 8)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        await asyncio.gather(sample_memory(), prober(client), editor(client),
                             *(asker(c, client) for c in range(clients)))
        # every accepted upload must be indexed: follow the jobs to the end
        drain_started = time.monotonic()
        for job in jobs:
            while job["status_url"]:
                status = (await client.get(job["status_url"], headers=headers["editor"])).json()
                if status["state"] not in ("queued", "running"):
                    job["state"], job["report"] = status["state"], status.get("report")
                    break
                rss.append(rss_mb(pid))
                await asyncio.sleep(2)
        drain_s = time.monotonic() - drain_started
        listed = (await client.get("/v1/documents", headers=headers["reader"], params={"limit": 1000})).json()
    present = {d["doc_id"] for d in listed["documents"]}
    for job in jobs:
        job["listed"] = job["doc_id"] in present
    rss.append(rss_mb(pid))
    return {"seconds": seconds, "clients": clients, "deadline_s": deadline_s, "asks": asks, "searches_s": searches,
            "search_errors": search_errors, "jobs": jobs, "drain_after_load_s": drain_s, "rss_mb": rss,
            "rss_over_time": rss_over_time}


CONFIGS = {
    "before": ("each batch decoded in one call, no deadline (the queue before turns)",
               {"ASSISTANT_SLICE_TOKENS": "0", "ASSISTANT_ANSWER_DEADLINE": "1000000"}),
    "whole-reading": ("as after, but each batch reads its prompts in one go with its first slice (the queue "
                      "before prompts were read in pieces)", {"ASSISTANT_READ_TOKENS": "0"}),
    "after": ("turns of 16 tokens, prompts read 1,024 tokens a turn, earliest deadline first, admission by deadline",
              {}),
}


def serve_and_load(tmp: Path, name: str, questions: list[str], uploads: list[dict[str, str]], *, clients: int,
                   seconds: float, deadline_s: float, upload_every_s: float = 0) -> dict:
    """A fresh copy of the index, a server with the configuration ``name``, the load."""
    index_dir, data_dir = tmp / name / "index", tmp / name / "service"
    shutil.copytree(tmp / "index", index_dir)
    keys = {role: create_key(index_dir, data_dir, role) for role in ("reader", "editor")}
    env = {**os.environ, "ASSISTANT_ANSWER_DEADLINE": str(deadline_s), **CONFIGS[name][1]}
    with running_server(index_dir, data_dir, env) as (url, pid):
        httpx.post(url + "/v1/ask", headers={"Authorization": f"Bearer {keys['reader']}"}, timeout=300,
                   json={"question": questions[0], "max_new_tokens": 8})  # warm-up: the queue learns its pace
        print(f"{name}: {clients} clients x {seconds} s ...", file=sys.stderr)
        return asyncio.run(run_load(url, keys, questions, uploads, clients=clients, seconds=seconds,
                                    deadline_s=deadline_s, pid=pid, upload_every_s=upload_every_s))


def main() -> None:
    args = parse_args(__doc__, extra={
        "--deadline": {"type": float, "default": 30.0, "help": "the answer deadline of the run (s)"},
        "--soak": {"type": int, "metavar": "MINUTES",
                   "help": "for this many minutes, one upload a minute (the configuration 'after' unless --configs)"},
        "--configs": {"metavar": "NAMES", "help": f"comma-separated, run in this order: {', '.join(CONFIGS)}"}})
    clients, seconds, n_uploads, upload_mb = (8, 20, 1, 0.2) if args.quick else (16, 60, 3, 0.5)
    configs, every = ["before", "after"], 0.0
    if args.soak:
        seconds, n_uploads, every, configs = args.soak * 60, args.soak, 60.0, ["after"]
    if args.configs:
        configs = list(dict.fromkeys(args.configs.split(",")))  # each once: a run's folder is named after it
        if unknown := set(configs) - set(CONFIGS):
            raise SystemExit(f"unknown configurations {sorted(unknown)}; choose from {', '.join(CONFIGS)}")
    with tempfile.TemporaryDirectory() as tmp:
        print("indexing ...", file=sys.stderr)
        questions = build_index(Path(tmp) / "index", 200)
        uploads = large_documents(n_uploads, upload_mb, skip=200)
        out = {name: serve_and_load(Path(tmp), name, questions, uploads, clients=clients, seconds=seconds,
                                    deadline_s=args.deadline, upload_every_s=every) for name in configs}
    for run in out.values():
        run["upload_mb"], run["upload_every_s"] = upload_mb, every
    report(out, args)


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summary(run: dict) -> tuple[list, list, str]:
    """Rows of the asks table, the checks, and a one-line search summary, for one run."""
    asks, limit = run["asks"], run["deadline_s"] + SLACK_S
    rows = []
    for tokens in (8, 256):
        mine = [a for a in asks if a["tokens"] == tokens]
        ok = [a["seconds"] for a in mine if a["code"] == "200"]
        rows.append([tokens, len(mine), len(ok), sum(a["finish_reason"] == "deadline" for a in mine),
                     sum(a["code"] == "429" for a in mine), sum(a["code"] == "503" for a in mine),
                     sum(a["code"].startswith("5") and a["code"] != "503" for a in mine),
                     sum(not a["code"].isdigit() for a in mine), _pct(ok, 50), _pct(ok, 95),
                     max((a["seconds"] for a in mine), default=None)])
    late = sum(a["seconds"] > limit for a in asks)
    fivexx = sum(a["code"].startswith("5") and a["code"] != "503" for a in asks)
    lost = sum(not a["code"].isdigit() for a in asks)
    s = run["searches_s"]
    p95 = _pct(s, 95) or float("inf")
    indexed = sum(j.get("state") == "done" and j["listed"] for j in run["jobs"])
    checks = [("no 5xx other than 503, nothing lost", fivexx == 0 and lost == 0),
              (f"every ask answered or refused within {limit:.0f} s ({late} late)", late == 0),
              (f"search p95 ≤ 1 s ({p95:.2f} s over {len(s)} searches, max {max(s, default=0):.2f} s)", p95 <= 1.0),
              (f"every accepted upload indexed and listed ({indexed} of {len(run['jobs'])})",
               indexed == len(run["jobs"]))]
    answered = [a["server_s"] for a in asks if a["code"] == "200"]
    parts = {k: _pct([t[k] for t in answered if k in t], 50) for k in SERVER_TIMINGS}
    if answered:
        checks.append((f"answered asks' server time p50: retrieval {parts['retrieval_ms'] or 0:.1f} s, generation "
                       f"(waiting included) {parts['generation_ms'] or 0:.1f} s, check {parts['verification_ms'] or 0:.1f}"
                       f" s, all {parts['total_ms'] or 0:.1f} s", True))
    rss = run["rss_mb"]
    memory = (f"server memory (RSS) {rss[0]:.0f} MB at the start, {max(rss):.0f} MB at most, {rss[-1]:.0f} MB at the "
              f"end; uploads all indexed {run['drain_after_load_s']:.0f} s after the load ended")
    minutes = int(run["seconds"] // 60)
    if minutes > 1:  # a soak: is memory still growing in its last minutes?
        by_minute = [max((mb for t, mb in run["rss_over_time"] if m * 60 <= t < (m + 1) * 60), default=0)
                     for m in range(minutes)]
        memory += "; highest RSS in each minute (MB): " + ", ".join(f"{mb:.0f}" for mb in by_minute)
    return rows, checks, memory


def report(out: dict, args) -> None:
    first = next(iter(out.values()))
    flags = ((" --quick" if args.quick else "") + (f" --soak {args.soak}" if args.soak else "")
             + (f" --configs {args.configs}" if args.configs else ""))
    spacing = f", one every {first['upload_every_s']:.0f} s" if first["upload_every_s"] else ""
    parts = [
        f"### Service under load with uploads (`.venv/bin/python bench/serve_load.py{flags}`)",
        f"Environment: {env_markdown(env_info())}",
        f"Bundled SmolLM2-135M-Instruct (fp32, CPU), all-MiniLM-L6-v2; 200 MedQuAD answers indexed. "
        f"{first['clients']} clients ask for {first['seconds']:.0f} s, each ask 8 or 256 new tokens at random "
        f"(drawn from the same seed in both runs); a 429 or 503 is retried after its Retry-After (at most 5 s); a prober "
        f"searches 4×/s; an editor uploads {len(first['jobs'])} documents of {first['upload_mb']} MB (MedQuAD "
        f"answers not in the index){spacing}. "
        f"{'Each configuration' if len(out) > 1 else 'The configuration'} on the same input, one after the other; the deadline "
        f"the checks hold both to is {first['deadline_s']:.0f} s plus {SLACK_S:.0f} s for retrieval, the check "
        f"and HTTP.",
    ]
    for name, run in out.items():
        rows, checks, memory = summary(run)
        parts += [f"**{name}**: {CONFIGS[name][0]}. "
                  + "; ".join(f"{text}: {'PASS' if ok else 'FAIL'}" if not text.startswith("answered asks") else text
                              for text, ok in checks) + f"; {memory}.",
                  md_table(["max_new_tokens", "asks", "200", "of which cut at the deadline", "429", "503",
                            "other 5xx", "lost", "answered p50 s", "answered p95 s", "slowest s"], rows)]
    md = "\n\n".join(parts)
    print(md)
    write_results("serve_load-soak" if args.soak else "serve_load", out, md)


if __name__ == "__main__":
    main()
