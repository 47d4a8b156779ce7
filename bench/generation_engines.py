"""Prompt reading (prefill) and decoding speed of each CPU engine on one grounded prompt
(issue 17, items 2 and 3): transformers in float32 (what the service runs) and bfloat16,
and llama.cpp on GGUF files, side by side in one run.

    .venv/bin/python bench/generation_engines.py --gguf /tmp/exp/base-Q8_0.gguf --gguf /tmp/exp/base-BF16.gguf

The prompt: a grounded chat prompt (MedQuAD answers as numbered passages, then a question),
cut to ``--prompt-tokens`` tokens (829 as in the issue); then ``--new-tokens`` greedy tokens
(64), forced past the end-of-sequence token so every engine decodes the same count. Prefill
is timed alone (the prompt and one token); decode rate = (new tokens − 1) / (whole − prefill).
Each figure is the median of ``--runs``. llama.cpp runs where llama-cpp-python is installed
(built without native flags: `make setup-llama`); the bundled Q4_1 file is always included.
GFLOP/s counts 2 × parameters per token (attention's own arithmetic left out).
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from common import env_info, env_markdown, md_table, medquad_records, parse_args, write_results

from assistant.generation.model_files import DEFAULT_MODEL, SMOLLM2_GGUF, bundled_smollm2_dir, load_hf_tokenizer, resolve_model_dir


def grounded_prompt_ids(tokenizer: Any, tokens: int) -> list[int]:
    records = medquad_records()
    passages = "\n\n".join(f"[{i + 1}] {r['answer']}" for i, r in enumerate(records[:40]))
    messages = [{"role": "system", "content": "Answer from the numbered passages only and cite them as [n]."},
                {"role": "user", "content": f"Passages:\n{passages}"}]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=False)
    ids = list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
    if len(ids) < tokens:
        raise SystemExit(f"the prompt has only {len(ids)} tokens")
    tail = tokenizer.apply_chat_template([{"role": "user", "content": "How is glaucoma treated?"}],
                                         tokenize=True, add_generation_prompt=True)
    tail = list(tail["input_ids"] if hasattr(tail, "keys") else tail)
    return ids[: tokens - len(tail)] + tail


def torch_engine(dtype_name: str, ids: list[int], new_tokens: int, runs: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    model = AutoModelForCausalLM.from_pretrained(resolve_model_dir(DEFAULT_MODEL), dtype=dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    x = torch.tensor([ids])

    def run(n: int) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(x, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
        return time.perf_counter() - started

    run(2)  # warm-up
    prefill = [run(1) for _ in range(runs)]
    whole = [run(new_tokens) for _ in range(runs)]
    return _figures(f"transformers {dtype_name}", params, len(ids), new_tokens, prefill, whole)


def llama_engine(path: Path, ids: list[int], new_tokens: int, runs: int, ubatch: int) -> dict[str, Any]:
    from llama_cpp import Llama

    threads = os.cpu_count() or 1  # llama-cpp-python decodes on half the cores unless told
    llm = Llama(model_path=str(path), n_ctx=2048, n_batch=2048, n_ubatch=ubatch, n_threads=threads,
                n_threads_batch=threads, verbose=False)
    params = llm.n_params() if hasattr(llm, "n_params") else llm._model.n_params()

    def run(n: int) -> float:
        llm.reset()
        started = time.perf_counter()
        llm.eval(ids)
        if n > 1:  # greedy, past any end token (generate never stops itself): as torch's min_new_tokens
            for count, _ in enumerate(llm.generate([], temp=0.0, reset=False), start=2):
                if count >= n:
                    break
        return time.perf_counter() - started

    run(2)
    prefill = [run(1) for _ in range(runs)]
    whole = [run(new_tokens) for _ in range(runs)]
    return _figures(f"llama.cpp {path.name} (ubatch {ubatch})", params, len(ids), new_tokens, prefill, whole)


def _figures(name: str, params: int, prompt: int, new: int, prefill: list[float], whole: list[float]) -> dict[str, Any]:
    p, w = statistics.median(prefill), statistics.median(whole)
    return {"engine": name, "params": params, "prompt_tokens": prompt, "new_tokens": new, "prefill_s": p, "whole_s": w,
            "prefill_tps": prompt / p, "decode_tps": (new - 1) / (w - p), "prefill_gflops": 2 * params * prompt / p / 1e9}


def main() -> None:
    args = parse_args(__doc__, extra={
        "--gguf": {"type": Path, "action": "append", "default": [], "help": "a GGUF file to run in llama.cpp (repeatable)"},
        "--prompt-tokens": {"type": int, "default": 829},
        "--new-tokens": {"type": int, "default": 64},
        "--ubatch": {"type": int, "action": "append", "default": None, "help": "llama.cpp physical batch sizes to try"},
    })
    runs = 3 if args.runs == 5 else args.runs
    tokenizer = load_hf_tokenizer(DEFAULT_MODEL)
    ids = grounded_prompt_ids(tokenizer, args.prompt_tokens)
    rows = [torch_engine("float32", ids, args.new_tokens, runs), torch_engine("bfloat16", ids, args.new_tokens, runs)]
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("llama-cpp-python is not installed: llama.cpp left out (make setup-llama)")
    else:
        for path in [bundled_smollm2_dir() / SMOLLM2_GGUF, *args.gguf]:
            for ubatch in args.ubatch or [256, 512]:
                rows.append(llama_engine(path, ids, args.new_tokens, runs, ubatch))
    base = rows[0]
    table = md_table(["engine", "prefill tokens/s", "× fp32", "prefill GFLOP/s", "decode tokens/s", "× fp32",
                      f"{args.prompt_tokens} + {args.new_tokens} tokens"],
                     [[r["engine"], f"{r['prefill_tps']:.0f}", f"{r['prefill_tps'] / base['prefill_tps']:.2f}",
                       f"{r['prefill_gflops']:.0f}", f"{r['decode_tps']:.1f}", f"{r['decode_tps'] / base['decode_tps']:.2f}",
                       f"{r['whole_s']:.2f} s"] for r in rows])
    env = env_info()
    print(table)
    write_results("generation_engines", {"rows": rows, "env": env}, table + "\n\n" + env_markdown(env))


if __name__ == "__main__":
    main()
