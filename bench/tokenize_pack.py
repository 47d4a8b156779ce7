"""Tokenizing and packing chat SFT examples: ``native.pack_conversations`` vs
Hugging Face tokenizers / transformers and a pure-Python packer.

Run::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/tokenize_pack.py          # all 16,407 MedQuAD pairs
    HF_HUB_OFFLINE=1 .venv/bin/python bench/tokenize_pack.py --quick  # 2,000 pairs

(the script sets ``HF_HUB_OFFLINE=1`` itself). Input: every MedQuAD question/answer
pair as a conversation ``[user: question, assistant: answer]`` in the SmolLM2 chat
format (``tokenizer.json`` from ``assistant.generation.model_files.tokenizer_json()``; the
:class:`ChatFormat` from ``ChatFormat.from_hf_tokenizer`` on the transformers
tokenizer loaded from that directory; it adds SmolLM2's default system message).

Measured (median of ``--runs``, default 3, pipelines timed round-robin; tokens/s counts the
tokens each pipeline encodes):

- (a) ours: ``native.pack_conversations(tok, convs, fmt, seq_len=1024)`` end to end
  (render + tokenize + label mask + best-fit-decreasing pack into arrays).
  Its two halves are timed too: ``build_sft_examples`` and ``pack_examples``.
- (b) HF ``tokenizers``: ``Tokenizer.from_file(...).encode_batch(rendered,
  add_special_tokens=False)`` on the pre-rendered full conversation strings
  (rendering not timed) — the raw encode_batch throughput reference.
  (b2) the same with ``encode_batch_fast`` (no offsets; what the Rust core calls).
- (c) HF encode_batch of the prompt parts and the response parts (rendering in
  Python, timed) + Python label masking + a pure-Python best-fit-decreasing packer
  (bisect on a sorted list of remaining capacities) + numpy arrays.
- (d) transformers ``AutoTokenizer`` (fast) ``__call__`` on the rendered texts.
- (e) ours: ``native.Tokenizer.encode_batch(rendered)`` (raw encode, for reference).

Reported: tokens/s, ratio (a)/(b) (target ≥ 0.9×), packing efficiency at 1024
(target ≥ 98%) of (a) and (c), and whether (a)'s token ids equal HF's encoding of
the same pieces.
"""

from __future__ import annotations

import os
import sys
from bisect import bisect_left, insort
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    env_info, env_markdown, md_table, medquad_records, parse_args, pass_fail, time_interleaved, write_results,
)

from indexer import native  # noqa: E402

SEQ_LEN = 1024
IGNORE = -100


def load():
    from transformers import AutoTokenizer

    from assistant.generation.model_files import tokenizer_json

    path = tokenizer_json()
    hf = AutoTokenizer.from_pretrained(path.parent)
    fmt = native.ChatFormat.from_hf_tokenizer(hf)
    return path, hf, fmt


def prompt_text(fmt: native.ChatFormat, question: str) -> str:
    head = fmt.bos
    if fmt.default_system is not None:
        head += fmt.system_prefix + fmt.default_system + fmt.system_suffix
    return head + fmt.user_prefix + question + fmt.user_suffix + fmt.assistant_prefix


def response_text(fmt: native.ChatFormat, answer: str) -> str:
    return answer + fmt.assistant_suffix


def python_bfd(lengths: list[int], seq_len: int) -> list[list[int]]:
    """Best-fit decreasing: longest first, into the open bin with the least room that fits."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    rooms: list[tuple[int, int]] = []  # sorted (remaining capacity, bin id)
    for i in order:
        n = lengths[i]
        k = bisect_left(rooms, (n, -1))
        if k < len(rooms):
            room, b = rooms.pop(k)
            bins[b].append(i)
            if room - n > 0:
                insort(rooms, (room - n, b))
        else:
            bins.append([i])
            if seq_len - n > 0:
                insort(rooms, (seq_len - n, len(bins) - 1))
    return bins


def python_pipeline(hf_tok, fmt, convs, seq_len: int = SEQ_LEN):
    prompts = [prompt_text(fmt, c[0]["content"]) for c in convs]
    responses = [response_text(fmt, c[1]["content"]) for c in convs]
    p_ids = [e.ids for e in hf_tok.encode_batch(prompts, add_special_tokens=False)]
    r_ids = [e.ids for e in hf_tok.encode_batch(responses, add_special_tokens=False)]
    tokens = sum(map(len, p_ids)) + sum(map(len, r_ids))
    examples = []
    for p, r in zip(p_ids, r_ids):
        ids = p + r
        labels = [IGNORE] * len(p) + r
        examples.append((ids[:seq_len], labels[:seq_len]))
    lengths = [len(e[0]) for e in examples]
    bins = python_bfd(lengths, seq_len)
    input_ids = np.zeros((len(bins), seq_len), dtype=np.int64)
    labels = np.full((len(bins), seq_len), IGNORE, dtype=np.int64)
    positions = np.zeros((len(bins), seq_len), dtype=np.int64)
    for row, b in enumerate(bins):
        pos = 0
        for i in b:
            ids, lab = examples[i]
            n = len(ids)
            input_ids[row, pos:pos + n] = ids
            labels[row, pos:pos + n] = lab
            positions[row, pos:pos + n] = np.arange(n)
            pos += n
    efficiency = sum(lengths) / (len(bins) * seq_len)
    return {"tokens": tokens, "rows": len(bins), "efficiency": efficiency, "input_ids": input_ids,
            "examples": examples}


def main() -> None:
    args = parse_args(__doc__)
    if "--runs" not in sys.argv:
        args.runs = 3  # each pass is several seconds
    from tokenizers import Tokenizer as HFTokenizer

    records = medquad_records()
    if args.quick:
        records = records[:2000]
    convs = [[{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]
             for r in records]
    path, hf, fmt = load()
    tok = native.load_tokenizer(path)
    hf_tok = HFTokenizer.from_file(str(path))
    rendered = [prompt_text(fmt, c[0]["content"]) + response_text(fmt, c[1]["content"]) for c in convs]
    # the Python rendering equals the chat template's
    for c, r in zip(convs[:20], rendered[:20]):
        assert hf.apply_chat_template(c, tokenize=False) == r, "rendering differs from the chat template"
    chars_mb = sum(len(r.encode("utf-8")) for r in rendered) / 1e6

    # token counts and correctness check of ours (untimed)
    examples = native.build_sft_examples(tok, convs, fmt)
    ours_tokens = sum(len(ids) for ids, _ in examples)
    py = python_pipeline(hf_tok, fmt, convs)
    same_ids = sum(ids == list(p[0]) for (ids, _), p in zip(examples, py["examples"])
                   if len(ids) <= SEQ_LEN) / max(1, sum(len(ids) <= SEQ_LEN for ids, _ in examples))
    same_labels = sum(lab == list(p[1]) for (ids, lab), p in zip(examples, py["examples"])
                      if len(ids) <= SEQ_LEN) / max(1, sum(len(ids) <= SEQ_LEN for ids, _ in examples))
    full_tokens = sum(len(e.ids) for e in hf_tok.encode_batch(rendered, add_special_tokens=False))

    print("timing ...", file=sys.stderr)
    T = time_interleaved({
        "a": lambda: native.pack_conversations(tok, convs, fmt, seq_len=SEQ_LEN),
        "a_build": lambda: native.build_sft_examples(tok, convs, fmt),
        "a_pack": lambda: native.pack_examples(examples, seq_len=SEQ_LEN),
        "b": lambda: hf_tok.encode_batch(rendered, add_special_tokens=False),
        "b_fast": lambda: hf_tok.encode_batch_fast(rendered, add_special_tokens=False),
        "c": lambda: python_pipeline(hf_tok, fmt, convs),
        "c_pack": lambda: python_bfd([len(e[0]) for e in py["examples"]], SEQ_LEN),
        "d": lambda: hf(rendered, add_special_tokens=False),
        "e": lambda: tok.encode_batch(rendered),
    }, runs=args.runs, warmup=0)  # the untimed checks above already warmed every path
    packed = T["a"].result

    rows = [
        ["(a) ours pack_conversations (render+tokenize+mask+pack)", ours_tokens, T["a"]],
        ["(a1) ours build_sft_examples only", ours_tokens, T["a_build"]],
        ["(a2) ours pack_examples only (from Python lists)", ours_tokens, T["a_pack"]],
        ["(b) HF tokenizers encode_batch, rendered (reference)", full_tokens, T["b"]],
        ["(b2) HF tokenizers encode_batch_fast (no offsets), rendered", full_tokens, T["b_fast"]],
        ["(c) HF encode_batch parts + Python mask + Python BFD", py["tokens"], T["c"]],
        ["(c2) Python BFD only", py["tokens"], T["c_pack"]],
        ["(d) transformers AutoTokenizer __call__, rendered", full_tokens, T["d"]],
        ["(e) ours Tokenizer.encode_batch, rendered", full_tokens, T["e"]],
    ]
    b_tps = full_tokens / T["b"].median
    table_rows = [[name, len(convs), toks, t.median, toks / t.median, (toks / t.median) / b_tps]
                  for name, toks, t in rows]
    t_speed = md_table(["pipeline", "conversations", "tokens", "seconds (median)", "tokens/s", "× (b)"], table_rows)
    ratio = (ours_tokens / T["a"].median) / b_tps
    ratio_fast = (ours_tokens / T["a"].median) / (full_tokens / T["b_fast"].median)
    eff_a, eff_c = packed.efficiency, py["efficiency"]
    t_pack = md_table(["packer", "rows of 1024", "efficiency", "truncated", "dropped"],
                      [["(a) ours", packed.num_sequences, eff_a, packed.truncated, packed.dropped],
                       ["(c) Python BFD", py["rows"], eff_c, sum(len(ids) > SEQ_LEN for ids, _ in examples), 0]])
    targets = [["(a) ≥ 0.9× raw encode_batch (b)", f"{ratio:.2f}×", pass_fail(ratio >= 0.9)],
               ["(a) vs encode_batch_fast (b2), for information", f"{ratio_fast:.2f}×", "–"],
               ["packing efficiency ≥ 98% (ours)", f"{eff_a:.2%}", pass_fail(eff_a >= 0.98)],
               ["packing efficiency ≥ 98% (Python BFD)", f"{eff_c:.2%}", pass_fail(eff_c >= 0.98)],
               ["ours ids == HF ids of the same pieces", f"{same_ids:.2%}", pass_fail(same_ids == 1.0)],
               ["ours labels == Python masking", f"{same_labels:.2%}", pass_fail(same_labels == 1.0)]]
    t_targets = md_table(["target", "measured", "result"], targets)
    env = env_info()
    md = "\n\n".join([
        f"### Tokenize + pack (`.venv/bin/python bench/tokenize_pack.py{' --quick' if args.quick else ''}`)",
        f"Environment: {env_markdown(env)}",
        f"Data: {len(convs):,} MedQuAD question/answer conversations in the SmolLM2 chat format (with its default "
        f"system message), {chars_mb:.1f} MB rendered; seq_len {SEQ_LEN}; median of {args.runs} runs. "
        f"Full-string encoding gives {full_tokens:,} tokens, piece-wise encoding (ours, (c)) {ours_tokens:,}.",
        t_speed, t_pack, "**Targets**", t_targets,
    ])
    print(md)
    write_results("tokenize_pack", {
        "conversations": len(convs), "mb": chars_mb, "tokens_full": full_tokens, "tokens_pieces": ours_tokens,
        "timings": {k: v.as_dict() for k, v in T.items()},
        "tokens_per_s": {r[0]: r[4] for r in table_rows}, "ratio_ours_vs_b": ratio, "ratio_ours_vs_b_fast": ratio_fast,
        "efficiency": {"ours": eff_a, "python_bfd": eff_c}, "rows": {"ours": packed.num_sequences, "python": py["rows"]},
        "same_ids": same_ids, "same_labels": same_labels, "targets": targets}, md)


if __name__ == "__main__":
    main()
