"""The ``indexer`` command line, run as a subprocess of the installed console script."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest

from indexer import native


def run(venv_bin: Path, env: dict[str, str], *args: object) -> subprocess.CompletedProcess[str]:
    exe = venv_bin / "indexer"
    assert exe.is_file(), f"console script missing: {exe}"
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


def words(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    return [f"term{rng.randrange(5000)}" for _ in range(n)]


BASE = words(1, 200)
ONE_WORD_CHANGED = BASE[:100] + ["changed"] + BASE[101:]
DEDUP_LINES = [
    '{"text":   "' + " ".join(BASE) + '", "id": 1, "note": "caf\\u00e9"}',  # 1 kept (verbatim)
    json.dumps({"id": 2, "text": " ".join(BASE)}),  # 2 exact duplicate of 1
    json.dumps({"id": 3, "text": ", ".join(w.upper() for w in BASE) + "!"}),  # 3 near: case + punctuation
    '{"id": 4, "text": "broken',  # 4 malformed JSON
    json.dumps({"id": 5, "body": "no text field"}),  # 5 field missing
    json.dumps({"id": 6, "text": 42}),  # 6 not a string
    json.dumps({"id": 7, "text": " ".join(words(2, 120))}, ensure_ascii=False),  # 7 kept
    json.dumps({"id": 8, "text": "   "}),  # 8 empty after stripping
    "",  # 9 blank line: ignored
    json.dumps({"id": 10, "text": " ".join(ONE_WORD_CHANGED)}),  # 10 near: one word changed
    json.dumps({"id": 11, "text": "Ünïcödé 😀 text that is short"}, ensure_ascii=False),  # 11 kept
    json.dumps({"id": 12, "text": "ünïcödé 😀 text that is short "}, ensure_ascii=False),  # 12 exact (lowercased, normalized)
]


@pytest.fixture
def dedup_input(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(DEDUP_LINES), encoding="utf-8")  # no final newline
    return path


def test_dedup_json_summary_and_output(venv_bin, cli_env, dedup_input, tmp_path) -> None:
    out, clusters = tmp_path / "out.jsonl", tmp_path / "removed.jsonl"
    r = run(venv_bin, cli_env, "dedup", dedup_input, "-o", out, "--clusters", clusters, "--json", "-q")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["docs_in"] == 7
    assert summary["bad_lines"] == 3
    assert summary["empty"] == 1
    assert summary["exact_duplicates"] == 2
    assert summary["near_dup_clusters"] == 1
    assert summary["near_duplicates"] == 2
    assert summary["kept"] == 3
    assert (summary["bands"], summary["rows"]) == native.lsh_params(0.8, 128)
    assert len(summary["bad_line_examples"]) == 3
    assert summary["bad_line_examples"][0].startswith("line 4: not valid JSON")
    assert summary["bad_line_examples"][1] == "line 5: field 'text' is missing"
    assert summary["bad_line_examples"][2] == "line 6: field 'text' is a int, not a string"
    # kept lines copied verbatim, in input order, each ending in a newline
    assert out.read_text(encoding="utf-8") == DEDUP_LINES[0] + "\n" + DEDUP_LINES[6] + "\n" + DEDUP_LINES[10] + "\n"
    removed = [json.loads(line) for line in clusters.read_text(encoding="utf-8").splitlines()]
    assert sorted((d["line"], d["duplicate_of_line"], d["kind"]) for d in removed) == [
        (2, 1, "exact"), (3, 1, "near"), (10, 1, "near"), (12, 11, "exact"),
    ]
    assert not list(tmp_path.glob("*.tmp"))


def test_dedup_human_summary_reports_bad_lines(venv_bin, cli_env, dedup_input) -> None:
    r = run(venv_bin, cli_env, "dedup", dedup_input, "-q", "--threshold", "0.9")
    assert r.returncode == 0, r.stderr
    assert "docs in" in r.stdout and "kept" in r.stdout and "(threshold 0.9)" in r.stdout
    assert "(not written)" in r.stdout
    assert "skipped line 4: not valid JSON" in r.stderr
    assert "skipped line 6: field 'text' is a int, not a string" in r.stderr


def test_dedup_other_field_and_keep_longest(venv_bin, cli_env, tmp_path) -> None:
    short, longer = " ".join(BASE), " ".join(BASE) + " " + " ".join(BASE[:3])
    lines = [json.dumps({"body": short}), json.dumps({"body": longer}), json.dumps({"body": "other text entirely"})]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = run(venv_bin, cli_env, "dedup", src, "--field", "body", "--keep", "longest", "-o", out, "--json", "-q")
    assert r.returncode == 0, r.stderr
    assert out.read_text(encoding="utf-8").splitlines() == [lines[1], lines[2]]


@pytest.mark.parametrize(("value", "message"), [("0", "threshold must be in (0, 1], got 0"), ("1.5", "threshold must be in (0, 1]"),
                                                 ("-0.1", "threshold must be in (0, 1]"), ("nan", "threshold must be in (0, 1]"),
                                                 ("abc", "not a number: abc")])
def test_dedup_bad_threshold(venv_bin, cli_env, dedup_input, tmp_path, value: str, message: str) -> None:
    out = tmp_path / "out.jsonl"
    r = run(venv_bin, cli_env, "dedup", dedup_input, "--threshold", value, "-o", out)
    assert r.returncode == 2
    assert message in r.stderr
    assert not out.exists()


def test_dedup_missing_input(venv_bin, cli_env, tmp_path) -> None:
    r = run(venv_bin, cli_env, "dedup", tmp_path / "missing.jsonl")
    assert r.returncode != 0
    assert "no such file" in r.stderr and "missing.jsonl" in r.stderr


def test_dedup_bad_setting_is_reported_not_a_traceback(venv_bin, cli_env, dedup_input) -> None:
    r = run(venv_bin, cli_env, "dedup", dedup_input, "--num-perm", "0", "-q")
    assert r.returncode == 2
    assert "indexer dedup: error:" in r.stderr and "num_perm" in r.stderr
    assert "Traceback" not in r.stderr


HEPATITIS_C = "If you have chronic hepatitis C you should do things to take care of yourself including eating a healthy diet"
INHERITED = "This condition is inherited in an autosomal dominant pattern which means one copy of the altered gene is sufficient"
EDIT_TEXTS = [
    INHERITED,
    HEPATITIS_C,
    INHERITED.replace("altered", "altred"),  # a typo: removed
    HEPATITIS_C.replace("hepatitis C", "hepatitis B"),  # another virus: kept
    INHERITED.replace("is inherited", "is typically inherited"),  # a hedge: removed
]


@pytest.mark.parametrize("edit_min_words", [None, "0"])
def test_dedup_joins_one_word_edits_as_near_dedup_does(venv_bin, cli_env, tmp_path, edit_min_words) -> None:
    src, out, clusters = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "removed.jsonl"
    lines = [json.dumps({"id": i, "text": t}) for i, t in enumerate(EDIT_TEXTS)]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    flag = [] if edit_min_words is None else ["--edit-min-words", edit_min_words]
    r = run(venv_bin, cli_env, "dedup", src, "-o", out, "--clusters", clusters, "--json", "-q", *flag)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    kept = [line in out.read_text(encoding="utf-8").splitlines() for line in lines]
    removed = sorted((d["line"], d["duplicate_of_line"]) for d in map(json.loads, clusters.read_text().splitlines()))
    if edit_min_words is None:
        assert kept == [True, True, False, True, False]
        assert (summary["near_dup_clusters"], summary["near_duplicates"], summary["edit_pairs"]) == (1, 2, 2)
        assert removed == [(3, 1), (5, 1)]
        expected = native.near_dedup(EDIT_TEXTS)
    else:
        assert all(kept) and summary["near_duplicates"] == 0 and removed == []
        expected = native.near_dedup(EDIT_TEXTS, edit_min_words=0)
    assert kept == expected.keep.tolist()
    assert summary["near_dup_clusters"] == expected.num_dup_clusters


def test_dedup_bad_edit_min_words(venv_bin, cli_env, dedup_input) -> None:
    r = run(venv_bin, cli_env, "dedup", dedup_input, "--edit-min-words", "-1", "-q")
    assert r.returncode == 2 and "must be 0 or more" in r.stderr


PASSAGE = ("the mitochondria is the powerhouse of the cell and it produces most of the chemical energy "
           "needed to power the biochemical reactions of the cell")


def test_decontam_json(venv_bin, cli_env, tmp_path) -> None:
    train, evals = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    train.write_text("\n".join([
        json.dumps({"answer": "An unrelated answer about kidneys and blood pressure."}),
        json.dumps({"answer": f"Intro text. {PASSAGE.upper()}. Outro."}),
        "not json",
        json.dumps({"answer": "what is the capital city of the republic of france? paris"}),
    ]), encoding="utf-8")
    evals.write_text("\n".join([
        json.dumps({"question": PASSAGE}),
        json.dumps({"question": "too short"}),
        json.dumps({"question": "What is the capital city of the Republic of France?"}),
        json.dumps({"question": "Another long enough question about nothing in the training data at all"}),
    ]), encoding="utf-8")
    r = run(venv_bin, cli_env, "decontam", train, evals, "--train-field", "answer", "--eval-field", "question", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["train"], out["eval"], out["contaminated"], out["eval_skipped"]) == (3, 4, 2, 1)
    n_windows = len(PASSAGE.split()) - 13 + 1
    assert out["overlaps"] == [
        {"train_index": 1, "eval_indices": [0], "shared_ngrams": n_windows},
        {"train_index": 2, "eval_indices": [2], "shared_ngrams": 1},
    ]
    assert "skipped line 3" in r.stderr
    human = run(venv_bin, cli_env, "decontam", train, evals, "--train-field", "answer", "--eval-field", "question")
    assert human.returncode == 0 and "train[1] overlaps eval [0]" in human.stdout


def test_decontam_bad_options(venv_bin, cli_env, tmp_path) -> None:
    f = tmp_path / "x.jsonl"
    f.write_text(json.dumps({"text": PASSAGE}) + "\n", encoding="utf-8")
    r = run(venv_bin, cli_env, "decontam", f, f, "--ngram", "5", "--min-words", "8")
    assert r.returncode == 2 and "min_words must be <= ngram" in r.stderr


def test_pack_writes_npz(venv_bin, cli_env, tmp_path, tiny_tokenizer_path, tiny_tokenizer) -> None:
    rows = [
        {"question": "What is asthma?", "answer": "A chronic disease of the airways."},
        {"question": "What are the symptoms of diabetes?", "answer": "Thirst, frequent urination and fatigue."},
        {"question": "How is influenza treated?", "answer": "Rest, fluids and sometimes antiviral drugs."},
        {"question": "Long one?", "answer": " ".join(["Patients should talk to their doctor."] * 30)},
    ]
    src, out = tmp_path / "qa.jsonl", tmp_path / "packed.npz"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n" + json.dumps({"question": "no answer"}) + "\n",
                   encoding="utf-8")
    seq_len = 96
    r = run(venv_bin, cli_env, "pack", src, "--tokenizer", tiny_tokenizer_path, "--seq-len", seq_len,
            "--pad-token", "<pad>", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "packing efficiency" in r.stdout and "1 truncated, 0 dropped" in r.stdout
    assert "skipped line 5" in r.stderr and "skipped line 6" in r.stderr
    with np.load(out) as data:
        arrays = {k: data[k] for k in ("input_ids", "labels", "position_ids")}
    convs = [[{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}] for r in rows]
    expected = native.pack_conversations(tiny_tokenizer, convs, native.ChatFormat.chatml(), seq_len=seq_len,
                                         pad_id=tiny_tokenizer.token_to_id("<pad>"))
    for name, arr in arrays.items():
        assert arr.dtype == np.int32 and arr.shape == (expected.num_sequences, seq_len)
        assert (arr == getattr(expected, name)).all(), name
    assert sorted(i for row in expected.example_indices for i in row) == [0, 1, 2, 3]
    pad = tiny_tokenizer.token_to_id("<pad>")
    used = [sum(lens) for lens in expected.example_lengths]
    for row, n in enumerate(used):
        assert (arrays["input_ids"][row, n:] == pad).all() and (arrays["labels"][row, n:] == -100).all()


def test_pack_unknown_pad_token(venv_bin, cli_env, tmp_path, tiny_tokenizer_path) -> None:
    src = tmp_path / "qa.jsonl"
    src.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n", encoding="utf-8")
    r = run(venv_bin, cli_env, "pack", src, "--tokenizer", tiny_tokenizer_path, "--pad-token", "<nope>")
    assert r.returncode == 2 and "'<nope>' is not in the tokenizer's vocabulary" in r.stderr


def test_pack_missing_tokenizer(venv_bin, cli_env, tmp_path) -> None:
    src = tmp_path / "qa.jsonl"
    src.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n", encoding="utf-8")
    r = run(venv_bin, cli_env, "pack", src, "--tokenizer", tmp_path / "missing" / "tokenizer.json")
    assert r.returncode == 2 and "indexer pack: error:" in r.stderr and "missing" in r.stderr
    assert "Traceback" not in r.stderr
