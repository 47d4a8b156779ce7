#!/usr/bin/env bash
# The main job, as it stands: real MedQuAD data through the Rust data core.
# Run by `make demo` after set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 ASSISTANT_CACHE_DIR="${ASSISTANT_CACHE_DIR:-$PWD/.cache}"
out=.cache/demo
mkdir -p "$out"
bin=.venv/bin

echo "== 1. MedQuAD answers from the shared data"
$bin/python -m indexer.shared_data medquad "$out/medquad.jsonl"

echo; echo "== 2. exact + near-duplicate removal"
$bin/indexer dedup "$out/medquad.jsonl" --field text --threshold 0.8 \
    -o "$out/medquad.dedup.jsonl" --clusters "$out/removed.jsonl"
$bin/python - "$out" <<'PY'
import json, sys
out = sys.argv[1]
lines = open(f"{out}/medquad.jsonl", encoding="utf-8").read().splitlines()
near = [json.loads(l) for l in open(f"{out}/removed.jsonl") if '"near"' in l]
if near:
    pair = near[len(near) // 2]
    for label, n in (("removed", pair["line"]), ("kept   ", pair["duplicate_of_line"])):
        r = json.loads(lines[n - 1])
        print(f"  {label} line {n} [{r['source']}] {r['text'][:110]!r}")
PY

echo; echo "== 3. decontamination: hold out 2,000 deduplicated answers as an eval set; which of the"
echo "      remaining training answers still share a 13-word span with them?"
head -n 2000 "$out/medquad.dedup.jsonl" > "$out/eval.jsonl"
tail -n +2001 "$out/medquad.dedup.jsonl" > "$out/train.jsonl"
$bin/indexer decontam "$out/train.jsonl" "$out/eval.jsonl" --train-field text --eval-field text

echo; echo "== 4. chat-formatted SFT examples packed into 1024-token sequences (SmolLM2 tokenizer)"
tok=$($bin/python -m assistant.generation.model_files tokenizer 2>/dev/null | tail -n 1)
$bin/indexer pack "$out/medquad.dedup.jsonl" --tokenizer "$(dirname "$tok")" \
    --prompt-field question --response-field text --seq-len 1024 --pad-token '<|im_end|>' -o "$out/packed.npz"

echo; echo "== 5. a document index: ingest 200 deduplicated answers, then a hybrid (dense + BM25) search"
rm -rf "$out/index"
head -n 200 "$out/medquad.dedup.jsonl" > "$out/sample.jsonl"
# each chunk is indexed under its record's question, so an answer that says "AMD" is found by a
# question that names "age-related macular degeneration"
$bin/indexer ingest "$out/sample.jsonl" --index "$out/index" --tags medquad --chunk-titles --title-field question -q \
    2> "$out/ingest.log"
echo "  (skipped records and warnings: $out/ingest.log)"
$bin/indexer search "How is age-related macular degeneration treated?" --index "$out/index" -k 3

echo; echo "== 6. the service: a reader key, the server on 127.0.0.1, one grounded question over HTTP"
rm -rf "$out/service"
key=$($bin/assistant keys create --name demo --role reader --index "$out/index" --data-dir "$out/service" --json \
      | $bin/python -c 'import json, sys; print(json.load(sys.stdin)["key"])')
port=$($bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# the fastest engine measured on a CPU (BENCHMARKS.md, "Serving engines"): llama.cpp decodes and, where
# bfloat16 is native (AMX, AVX512-BF16), transformers reads the prompts; ASSISTANT_BACKEND=local: transformers alone
engine="${ASSISTANT_BACKEND:-llama}"
echo "  engine: ASSISTANT_BACKEND=$engine"
ASSISTANT_BACKEND="$engine" ASSISTANT_MAX_NEW_TOKENS=96 $bin/assistant serve --index "$out/index" --data-dir "$out/service" --host 127.0.0.1 --port "$port" \
    2> "$out/serve.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
$bin/python - "$port" "$key" <<'PY'
import sys, time, httpx
port, key = sys.argv[1:]
url = f"http://127.0.0.1:{port}"
for _ in range(900):  # the first start converts the bundled model once (about a minute)
    try:
        if httpx.get(url + "/readyz", timeout=2).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    time.sleep(0.5)
else:
    sys.exit("the server did not become ready; see .cache/demo/serve.log")
for question in ("How is age-related macular degeneration treated?", "Who won the 1966 football world cup?"):
    r = httpx.post(url + "/v1/ask", json={"question": question}, headers={"Authorization": f"Bearer {key}"}, timeout=300)
    r.raise_for_status()
    body = r.json()
    t = body["timings"]
    print(f"\n  Q: {question}\n  A: {body['answer']}")
    print(f"     grounded={body['grounded']} reason={body['abstained_reason']!r}")
    print(f"     model said: {body['raw_answer'][:200]!r}")
    for c in body["citations"] or body["closest"]:
        print(f"     [{c['number']}] {c['source']}  score {c['score']:.2f}: {c['snippet'][:90]!r}")
    print(f"     retrieval {t['retrieval_ms']:.0f} ms, generation {t['generation_ms']:.0f} ms, {t['completion_tokens']} tokens")
print(f"\n  no key: {httpx.post(url + '/v1/ask', json={'question': 'x'}).status_code} (401 expected)")
PY
