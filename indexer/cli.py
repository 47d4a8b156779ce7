"""The ``indexer`` command line.

    indexer dedup INPUT.jsonl --field text --threshold 0.8 -o OUT.jsonl
    indexer decontam TRAIN.jsonl EVAL.jsonl --train-field answer --eval-field question
    indexer pack QA.jsonl --tokenizer MODEL_DIR --seq-len 1024 -o packed.npz
    indexer ingest PATH... --index DIR [--tags a b] [--chunk-titles] [--title-field question]
    indexer search "query" --index DIR -k 10 [--mode hybrid] [--filter source=docs/*] [--json]
    indexer delete DOC_ID --index DIR
    indexer stats --index DIR
    indexer eval --set covidqa | --corpus C --queries Q --qrels R [--index DIR] [--json]
    indexer tune-embedder --pairs PAIRS.jsonl --out DIR [--base MODEL_DIR] [--eval-set EVAL.jsonl ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from indexer import native


def _existing_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {value}")
    return path


def _threshold(value: str) -> float:
    try:
        t = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value}") from None
    if not 0.0 < t <= 1.0:
        raise argparse.ArgumentTypeError(f"threshold must be in (0, 1], got {value}")
    return t


def _non_negative(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {number}")
    return number


def _print_summary(title: str, rows: list[tuple[str, object]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(title)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


def cmd_dedup(args: argparse.Namespace) -> int:
    from indexer.dedup import DedupSettings, dedup_jsonl

    settings = DedupSettings(
        text_field=args.field, threshold=args.threshold, num_perm=args.num_perm,
        shingle=args.shingle, shingle_size=args.shingle_size, keep=args.keep, edit_min_words=args.edit_min_words,
    )
    s = dedup_jsonl(args.input, args.output, settings, clusters_path=args.clusters, progress=not args.quiet)
    if args.json:
        print(json.dumps(s.as_dict(), indent=2))
        return 0
    _print_summary(f"dedup {args.input}", [
        ("docs in", s.docs_in),
        ("bad lines skipped", s.bad_lines),
        ("empty texts skipped", s.empty),
        ("exact duplicates", s.exact_duplicates),
        ("near-dup clusters", s.near_dup_clusters),
        ("near duplicates", s.near_duplicates),
        ("  of them one word edit apart", f"{s.edit_pairs} pairs"),
        ("kept", s.kept),
        ("LSH bands x rows", f"{s.bands} x {s.rows} (threshold {args.threshold})"),
        ("time", f"{s.seconds:.2f} s"),
        ("throughput", f"{s.mb_per_s:.1f} MB/s, {s.docs_in / max(s.seconds, 1e-9):,.0f} docs/s"),
        ("written to", args.output or "(not written)"),
    ])
    for example in s.bad_line_examples:
        print(f"  skipped {example}", file=sys.stderr)
    return 0


def _read_field(path: Path, field: str) -> list[str]:
    from indexer.jsonl import BadLines, iter_text_records

    bad = BadLines()
    texts = [t for _, t, _ in iter_text_records(path, field, bad) if t is not None]
    for example in bad.examples:
        print(f"{path}: skipped {example}", file=sys.stderr)
    return texts


def cmd_decontam(args: argparse.Namespace) -> int:
    train = _read_field(args.train, args.train_field)
    evals = _read_field(args.eval, args.eval_field)
    overlaps, skipped = native.decontaminate(train, evals, ngram=args.ngram, min_words=args.min_words)
    if args.json:
        print(json.dumps({
            "train": len(train), "eval": len(evals), "contaminated": len(overlaps), "eval_skipped": skipped,
            "overlaps": [o.__dict__ for o in overlaps],
        }))
        return 0
    _print_summary(f"decontam {args.train} against {args.eval}", [
        ("train examples", len(train)),
        ("eval items", len(evals)),
        (f"eval items under {args.min_words} words (not checked)", skipped),
        (f"train examples sharing a {args.ngram}-gram", len(overlaps)),
    ])
    for o in overlaps[:10]:
        print(f"  train[{o.train_index}] overlaps eval {o.eval_indices[:5]} ({o.shared_ngrams} n-grams)")
    return 0


def _chat_format(tokenizer_dir: Path) -> native.ChatFormat:
    """The model's own chat template when its directory has one, else ChatML."""
    if (tokenizer_dir / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(tokenizer_dir)
        if getattr(hf, "chat_template", None):
            return native.ChatFormat.from_hf_tokenizer(hf)
    return native.ChatFormat.chatml()


def cmd_pack(args: argparse.Namespace) -> int:
    import json as _json

    import numpy as np

    tok_path = args.tokenizer / "tokenizer.json" if args.tokenizer.is_dir() else args.tokenizer
    tokenizer = native.load_tokenizer(tok_path)
    fmt = _chat_format(tok_path.parent)
    pad_id = tokenizer.token_to_id(args.pad_token) if args.pad_token else 0
    if pad_id is None:
        raise ValueError(f"pad token {args.pad_token!r} is not in the tokenizer's vocabulary")
    conversations = []
    with args.input.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                r = _json.loads(line)
                prompt, response = r[args.prompt_field], r[args.response_field]
            except (ValueError, KeyError, TypeError) as exc:
                print(f"{args.input}: skipped line {line_no}: {exc!r}", file=sys.stderr)
                continue
            conversations.append([{"role": "user", "content": prompt}, {"role": "assistant", "content": response}])
    packed = native.pack_conversations(tokenizer, conversations, fmt, seq_len=args.seq_len, pad_id=pad_id, overlong=args.overlong)
    if args.output:
        np.savez_compressed(args.output, input_ids=packed.input_ids.astype(np.int32),
                            labels=packed.labels.astype(np.int32), position_ids=packed.position_ids.astype(np.int32))
    real = sum(map(sum, packed.example_lengths))
    _print_summary(f"pack {args.input}", [
        ("examples", len(conversations)),
        ("sequences", f"{packed.num_sequences} x {args.seq_len} tokens"),
        ("tokens", f"{real:,}"),
        ("packing efficiency", f"{packed.efficiency:.2%}"),
        (f"over {args.seq_len} tokens", f"{packed.truncated} truncated, {packed.dropped} dropped"),
        ("written to", args.output or "(not written)"),
    ])
    return 0


def _open_index(directory: Path, *, create: bool, chunk_titles: bool = False):
    """The index at ``directory``, as built; ``chunk_titles`` asks for an index
    with chunk titles (a new one is made so, an existing one must have been)."""
    import dataclasses

    from indexer.chunk_titles import mismatch_message
    from indexer.index import DB_NAME, Index, IndexMismatchError
    from indexer.settings import IndexSettings

    settings = None  # an existing index keeps the settings it was built with
    if chunk_titles and not (directory / DB_NAME).exists():
        settings = dataclasses.replace(IndexSettings.from_env(), chunk_titles=True)
    index = Index.open(directory, settings, create=create)
    if chunk_titles and not index.settings.chunk_titles:
        index.close()
        raise IndexMismatchError(mismatch_message(directory, built_with=False))
    return index


def cmd_ingest(args: argparse.Namespace) -> int:
    with _open_index(args.index, create=True, chunk_titles=args.chunk_titles) as index:
        report = index.ingest(args.paths, tags=args.tags, progress=not args.quiet, text_field=args.text_field,
                              id_field=args.id_field, root=args.root, title_field=args.title_field)
        stats = index.stats()
    if args.json:
        print(json.dumps({**report.__dict__, "chunks_per_s": report.chunks_per_s, "index": stats}, default=str))
        return 0
    _print_summary(f"ingest into {args.index}", [
        ("documents added", report.added),
        ("documents updated", report.updated),
        ("unchanged (no-op)", report.unchanged),
        ("exact duplicates skipped", report.exact_duplicates),
        ("near duplicates skipped", report.near_duplicates),
        ("files/records skipped", len(report.skipped) - report.exact_duplicates - report.near_duplicates),
        ("chunks added", report.chunks),
        ("time", f"{report.seconds:.1f} s ({report.chunks_per_s:.0f} chunks/s)"),
        ("index now", f"{stats['documents']} documents, {stats['chunks']} chunks"),
    ])
    for source, reason in report.skipped[:50]:
        print(f"  skipped {source}: {reason}", file=sys.stderr)
    if len(report.skipped) > 50:
        print(f"  ... and {len(report.skipped) - 50} more", file=sys.stderr)
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from indexer.search import SearchFilter

    filters = SearchFilter.parse(args.filter)
    with _open_index(args.index, create=False) as index:
        hits = index.search(args.query, k=args.k, mode=args.mode, filters=filters)
    if args.json:
        print(json.dumps([h.__dict__ for h in hits], ensure_ascii=False))
        return 0
    if not hits:
        print("no results")
    for rank, h in enumerate(hits, start=1):
        snippet = " ".join(h.text.split())[:160]
        print(f"{rank:>2}. {h.score:.4f}  {h.doc_id}  [{h.source} {h.start}:{h.end}]\n    {snippet}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with _open_index(args.index, create=False) as index:
        deleted = index.delete(args.doc_id)
    print(f"deleted {args.doc_id}" if deleted else f"no document {args.doc_id!r} in {args.index}")
    return 0 if deleted else 1


def cmd_stats(args: argparse.Namespace) -> int:
    with _open_index(args.index, create=False) as index:
        stats = index.stats()
    if args.json:
        print(json.dumps(stats))
    else:
        _print_summary(f"index {args.index}", list(stats.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indexer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("dedup", help="remove exact and near-duplicate records from a JSONL file")
    d.add_argument("input", type=_existing_file, help="JSONL file, one JSON object per line")
    d.add_argument("--field", default="text", help="the text field (default: text)")
    d.add_argument("-o", "--output", type=Path, help="write kept lines here (verbatim)")
    d.add_argument("--threshold", type=_threshold, default=0.8, help="Jaccard threshold in (0, 1] (default 0.8)")
    d.add_argument("--num-perm", type=int, default=128, help="MinHash permutations (default 128)")
    d.add_argument("--shingle", choices=["word", "char"], default="word")
    d.add_argument("--shingle-size", type=int, default=5, help="words or characters per shingle (default 5)")
    d.add_argument("--keep", choices=["first", "longest"], default="first", help="representative kept per cluster")
    d.add_argument("--edit-min-words", type=_non_negative, default=native.EDIT_MIN_WORDS,
                   help="also join texts of N to 99 words one word edit apart, unless the edit swaps, adds or "
                        "drops a word that names or counts something, as native.near_dedup does "
                        "(default %(default)s; 0: off)")
    d.add_argument("--clusters", type=Path, help="write one JSON line per removed record (line, duplicate_of_line, kind)")
    d.add_argument("--json", action="store_true", help="print the summary as JSON")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_dedup)

    c = sub.add_parser("decontam", help="find tuning examples that overlap evaluation items")
    c.add_argument("train", type=_existing_file)
    c.add_argument("eval", type=_existing_file)
    c.add_argument("--train-field", default="text")
    c.add_argument("--eval-field", default="text")
    c.add_argument("--ngram", type=int, default=13)
    c.add_argument("--min-words", type=int, default=8)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_decontam)

    p = sub.add_parser("pack", help="tokenize prompt/response pairs in the chat format and pack them into sequences")
    p.add_argument("input", type=_existing_file, help="JSONL with a prompt and a response field")
    p.add_argument("--tokenizer", type=Path, required=True, help="tokenizer.json or a model directory")
    p.add_argument("--prompt-field", default="question")
    p.add_argument("--response-field", default="answer")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--pad-token", default=None, help="token used for padding (default: id 0)")
    p.add_argument("--overlong", choices=["truncate", "drop"], default="truncate")
    p.add_argument("-o", "--output", type=Path, help="write input_ids/labels/position_ids to this .npz")
    p.set_defaults(func=cmd_pack)

    i = sub.add_parser("ingest", help="add files and folders to an index (txt, md, html, pdf, json, jsonl, csv)")
    i.add_argument("paths", nargs="+", help="files or folders (walked recursively)")
    i.add_argument("--index", type=Path, required=True, help="index folder (created if missing)")
    i.add_argument("--tags", nargs="*", default=[], help="tags for every ingested document")
    i.add_argument("--text-field", default="text", help="text field of JSON/JSONL/CSV records")
    i.add_argument("--id-field", default="id", help="id field of JSON/JSONL/CSV records")
    i.add_argument("--title-field", default=None,
                   help="field of JSON/JSONL/CSV records used as their title (records without it keep "
                        "their own 'title' field, if any)")
    i.add_argument("--chunk-titles", action="store_true",
                   help="create the index with chunk titles: every chunk is embedded and keyword-indexed under "
                        "its document's title (INDEXER_CHUNK_TITLES=1); only when the index is created")
    i.add_argument("--root", type=Path, default=None,
                   help="name documents relative to this folder (default: each folder given, or a file's parent)")
    i.add_argument("--json", action="store_true", help="print the report as JSON")
    i.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    i.set_defaults(func=cmd_ingest)

    s = sub.add_parser("search", help="hybrid (dense + BM25) search")
    s.add_argument("query")
    s.add_argument("--index", type=Path, required=True)
    s.add_argument("-k", type=int, default=10, help="results (1..1000, default 10)")
    s.add_argument("--mode", choices=["hybrid", "dense", "bm25"], default="hybrid")
    s.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="source=PATH or PREFIX*, tag=T, date_from=ISO, date_to=ISO, doc_id=ID (repeatable)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_search)

    de = sub.add_parser("delete", help="remove a document from the index")
    de.add_argument("doc_id")
    de.add_argument("--index", type=Path, required=True)
    de.set_defaults(func=cmd_delete)

    st = sub.add_parser("stats", help="documents, chunks, model and settings of an index")
    st.add_argument("--index", type=Path, required=True)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_stats)

    from indexer.embedder_tuning_cli import add_tune_embedder_parser
    from indexer.evaluation.cli import add_eval_parser
    from indexer.reembed_cli import add_reembed_parser
    from indexer.reranker_tuning_cli import add_tune_reranker_parser

    for add_verb in (add_eval_parser, add_tune_embedder_parser, add_tune_reranker_parser, add_reembed_parser):
        add_verb(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (native.DataError, ValueError, OSError, RuntimeError) as exc:
        print(f"indexer {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
