"""Reading a batch's prompts whole or in pieces (issue 18, the late cuts): the local backend
(transformers, the bundled SmolLM2-135M-Instruct) reads eight grounded prompts, as a batch
of the service does, with ``ASSISTANT_READ_TOKENS`` 0 (all with the first slice) and in
pieces of 512, 1,024 and 2,048 tokens.

Run::

    .venv/bin/python bench/prompt_pieces.py            # float32, 3 runs
    .venv/bin/python bench/prompt_pieces.py --quick    # 1 run
    .venv/bin/python bench/prompt_pieces.py --dtype bfloat16

Measured per setting (median over the runs): the time to read the prompts and decode one
token, the reading rate (prompt tokens, padding not counted, per second), and the longest
turn: the longest single ``advance`` call, during which the queue can neither cut a row at
its deadline nor run another batch. The 16-token answers must equal those of one reading.
"""

from __future__ import annotations

import statistics
import time

from common import env_info, env_markdown, md_table, medquad_records, parse_args, write_results

from assistant.generation.base import GenerationSettings
from assistant.generation.local import LocalGenerator

SETTINGS = (0, 512, 1024, 2048)
ROWS = 8


def grounded_prompts(generator: LocalGenerator) -> list[str]:
    """Eight prompts as the service builds them: three numbered MedQuAD answers (cut to 900
    characters each, as chunks are about that long) and a question."""
    records = [r for r in medquad_records() if len(r["answer"]) > 600]
    prompts = []
    for i in range(ROWS):
        passages = "\n\n".join(f"[{j + 1}] {r['answer'][:900]}" for j, r in enumerate(records[3 * i:3 * i + 3]))
        prompts.append(generator.chat_prompt([
            {"role": "system", "content": "Answer from the numbered passages only and cite them as [n]."},
            {"role": "user", "content": f"Passages:\n{passages}\n\nQuestion: {records[3 * i]['question']}"}]))
    return prompts


def measure(generator: LocalGenerator, prompts: list[str], runs: int) -> dict:
    totals, longest, answers = [], [], None
    for _ in range(runs):
        decoding = generator.begin(prompts, max_new_tokens=1)
        turns = []
        started = time.perf_counter()
        while not decoding.done:
            t = time.perf_counter()
            decoding.advance(16)
            turns.append(time.perf_counter() - t)
        totals.append(time.perf_counter() - started)
        longest.append(max(turns))
    answers = [r.text for r in generator.generate(prompts, max_new_tokens=16)]
    prompt_tokens = sum(len(generator.tokenizer(p, add_special_tokens=False).input_ids) for p in prompts)
    total = statistics.median(totals)
    return {"read_tokens": generator.settings.read_tokens, "prompt_tokens": prompt_tokens, "seconds": total,
            "tokens_per_s": prompt_tokens / total, "longest_turn_s": statistics.median(longest),
            "turns": len(turns), "answers": answers}


def main() -> None:
    args = parse_args(__doc__, extra={"--dtype": {"default": "float32", "choices": ["float32", "bfloat16"]}})
    runs = args.runs or (1 if args.quick else 3)
    results = []
    generators = {n: LocalGenerator(GenerationSettings(read_tokens=n, cpu_dtype=args.dtype, device="cpu"))
                  for n in SETTINGS}
    prompts = grounded_prompts(generators[0])
    generators[0].generate(prompts[:1], max_new_tokens=1)  # warm-up
    for n, generator in generators.items():
        results.append(measure(generator, prompts, runs))
    whole = results[0]
    rows = [[r["read_tokens"] or "0 (whole)", r["turns"], round(r["seconds"], 2), round(r["tokens_per_s"]),
             round(r["tokens_per_s"] / whole["tokens_per_s"], 2), round(r["longest_turn_s"], 2),
             "yes" if r["answers"] == whole["answers"] else "**no**"] for r in results]
    md = "\n\n".join([
        f"### Prompts read whole or in pieces (`.venv/bin/python bench/prompt_pieces.py"
        f"{' --quick' if args.quick else ''}{' --dtype bfloat16' if args.dtype == 'bfloat16' else ''}`)",
        f"Environment: {env_markdown(env_info())}",
        f"Bundled SmolLM2-135M-Instruct ({args.dtype}, local backend), {ROWS} grounded prompts of "
        f"{whole['prompt_tokens']} tokens in all, one batch; reading and the first token, median of {runs}.",
        md_table(["ASSISTANT_READ_TOKENS", "turns", "seconds", "prompt tokens/s", "× whole", "longest turn s",
                  "16-token answers as whole"], rows),
    ])
    print(md)
    write_results("prompt_pieces" + ("-bf16" if args.dtype == "bfloat16" else ""),
                  {"runs": runs, "dtype": args.dtype, "results": results}, md)


if __name__ == "__main__":
    main()
