"""The BEIR files: a write/read round trip, and every format error naming its file and line."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.evaluation.beir import BeirFormatError, BeirSet, CorpusDoc, read_beir, take_queries, write_beir

SMALL = BeirSet(
    corpus={
        "d1": CorpusDoc("d1", "Asthma", "Asthma is a chronic disease of the airways."),
        "d2": CorpusDoc("d2", "", "Café au lait spots, naïve résumé 😀\twith a tab"),
        "d3": CorpusDoc("d3", "Kidneys", "The kidneys filter waste from the blood."),
    },
    queries={"q1": "What is asthma?", "q2": "What do kidneys do?", "q3": "unjudged query"},
    qrels={"q1": {"d1": 2, "d2": 0}, "q2": {"d3": 1, "d1": 1}},
)

GOOD_CORPUS = ['{"_id": "d1", "title": "T", "text": "one"}', '{"_id": "d2", "text": "two"}']
GOOD_QUERIES = ['{"_id": "q1", "text": "first?"}', '{"_id": "q2", "text": "second?"}']
GOOD_QRELS = ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2\td2\t2"]


def write_files(tmp_path: Path, corpus=GOOD_CORPUS, queries=GOOD_QUERIES, qrels=GOOD_QRELS) -> tuple[Path, Path, Path]:
    paths = tmp_path / "corpus.jsonl", tmp_path / "queries.jsonl", tmp_path / "qrels.tsv"
    for path, lines in zip(paths, (corpus, queries, qrels)):
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


def test_round_trip(tmp_path: Path) -> None:
    paths = write_beir(SMALL, tmp_path / "set")
    assert [p.relative_to(tmp_path / "set").as_posix() for p in paths] == ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"]
    assert paths[2].read_text(encoding="utf-8").splitlines()[0] == "query-id\tcorpus-id\tscore"
    assert read_beir(*paths) == SMALL


def test_reads_optional_title_int_ids_and_blank_lines(tmp_path: Path) -> None:
    corpus = ['{"_id": 7, "text": "seven", "metadata": {}}', "", '{"_id": "d2", "title": "T", "text": "two"}']
    qrels = ["query-id\tcorpus-id\tscore", "q1\t7\t3", "", "q2\td2\t0", "q2\t7\t-1"]
    got = read_beir(*write_files(tmp_path, corpus=corpus, qrels=qrels))
    assert got.corpus == {"7": CorpusDoc("7", "", "seven"), "d2": CorpusDoc("d2", "T", "two")}
    assert got.qrels == {"q1": {"7": 3}, "q2": {"d2": 0, "7": -1}}
    assert got.relevant("q1") == {"7": 3} and got.relevant("q2") == {}
    assert got.judged_queries() == ["q1"]


def test_take_queries_keeps_the_first_judged_queries_and_the_whole_corpus() -> None:
    got = take_queries(SMALL, 1)
    assert got.queries == {"q1": "What is asthma?"} and got.qrels == {"q1": SMALL.qrels["q1"]}
    assert got.corpus == SMALL.corpus
    assert take_queries(SMALL, None) is SMALL
    with pytest.raises(ValueError, match="positive"):
        take_queries(SMALL, 0)


# (file to break: 0 corpus, 1 queries, 2 qrels; its lines; line named; words in the message)
BROKEN = {
    "malformed JSON": (0, [GOOD_CORPUS[0], '{"_id": "d2", "text": '], 2, "malformed JSON"),
    "not an object": (1, [GOOD_QUERIES[0], '["q2", "text"]'], 2, "JSON object"),
    "corpus missing _id": (0, [GOOD_CORPUS[0], "", '{"text": "two"}'], 3, 'missing "_id"'),
    "corpus missing text": (0, [GOOD_CORPUS[0], '{"_id": "d2", "title": "T"}'], 2, 'missing "text"'),
    "text not a string": (0, [GOOD_CORPUS[0], '{"_id": "d2", "text": 5}'], 2, '"text" must be a string'),
    "query missing text": (1, ['{"_id": "q1"}', GOOD_QUERIES[1]], 1, 'missing "text"'),
    "query missing _id": (1, [GOOD_QUERIES[0], '{"text": "?"}'], 2, 'missing "_id"'),
    "empty _id": (1, [GOOD_QUERIES[0], '{"_id": "", "text": "?"}'], 2, '"_id" must be'),
    "duplicate corpus id": (0, [*GOOD_CORPUS, '{"_id": "d1", "text": "again"}'], 3, "duplicate corpus id 'd1'"),
    "duplicate query id": (1, [*GOOD_QUERIES, '{"_id": "q2", "text": "again"}'], 3, "duplicate query id 'q2'"),
    "bad header": (2, ["qid\tdocid\trel", "q1\td1\t1"], 1, "expected the header"),
    "no header": (2, ["q1\td1\t1"], 1, "expected the header"),
    "non-integer score": (2, [*GOOD_QRELS, "q1\td2\t1.5"], 4, "score must be an integer, got '1.5'"),
    "word score": (2, [GOOD_QRELS[0], "q1\td1\thigh"], 2, "score must be an integer"),
    "two fields": (2, [GOOD_QRELS[0], "q1 d1\t1"], 2, "expected 3 tab-separated fields"),
    "unknown query": (2, [*GOOD_QRELS, "q9\td1\t1"], 4, "unknown query id 'q9'"),
    "unknown corpus id": (2, [GOOD_QRELS[0], "", "q1\td9\t1"], 3, "unknown corpus id 'd9'"),
}


@pytest.mark.parametrize("case", BROKEN.values(), ids=BROKEN.keys())
def test_format_errors_name_file_and_line(tmp_path: Path, case) -> None:
    which, lines, line_no, words = case
    files = [GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS]
    files[which] = lines
    paths = write_files(tmp_path, *files)
    with pytest.raises(BeirFormatError) as info:
        read_beir(*paths)
    err = info.value
    assert isinstance(err, ValueError)
    assert str(err).startswith(f"{paths[which]}:{line_no}: ")
    assert words in str(err)
    assert (err.path, err.line) == (paths[which], line_no)


# LiveQA-Med 2017 over MedQuAD judges some pairs twice: (q1, d1) here three times, (q2, d2) twice.
REPEATED_QRELS = [*GOOD_QRELS, "q1\td1\t3", "q1\td2\t0", "q2\td2\t1", "q1\td1\t2"]


def test_repeated_judgements_keep_the_highest_grade_and_warn_once(tmp_path: Path, caplog) -> None:
    paths = write_files(tmp_path, qrels=REPEATED_QRELS)
    with caplog.at_level(logging.WARNING, logger="indexer.evaluation.beir"):
        got = read_beir(*paths)
    assert got.qrels == {"q1": {"d1": 3, "d2": 0}, "q2": {"d2": 2}}
    assert [r.getMessage() for r in caplog.records] == [
        f"{paths[2]}: 3 judgements repeat a query-document pair already judged (first on line 4); "
        "kept the highest grade of each"
    ]


def test_no_warning_without_repeats(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="indexer.evaluation.beir"):
        read_beir(*write_files(tmp_path))
    assert caplog.records == []


def test_strict_qrels_name_the_repeated_line_and_the_first(tmp_path: Path) -> None:
    paths = write_files(tmp_path, qrels=REPEATED_QRELS)
    with pytest.raises(BeirFormatError) as info:
        read_beir(*paths, strict_qrels=True)
    assert (info.value.path, info.value.line) == (paths[2], 4)
    assert str(info.value).startswith(f"{paths[2]}:4: duplicate judgement of ('q1', 'd1'), first judged on line 2;")


def test_the_eval_command_warns_on_stderr_or_refuses_with_strict_qrels(tmp_path: Path) -> None:
    """The command as a user runs it, logging not configured: the warning
    still reaches the terminal, once; --strict-qrels turns it into the error."""
    corpus, queries, qrels = write_files(tmp_path, qrels=REPEATED_QRELS)
    script = ("import sys; from indexer.evaluation.cli import add_eval_parser, load_set; import argparse\n"
              "p = argparse.ArgumentParser(); add_eval_parser(p.add_subparsers())\n"
              "name, beir = load_set(p.parse_args(sys.argv[1:]))\n"
              "print(beir.qrels)")
    argv = ["eval", "--corpus", str(corpus), "--queries", str(queries), "--qrels", str(qrels)]
    lenient = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, check=True)
    assert lenient.stdout.strip() == str({"q1": {"d1": 3, "d2": 0}, "q2": {"d2": 2}})
    assert lenient.stderr.count("judgements repeat") == 1 and "3 judgements" in lenient.stderr
    strict = subprocess.run([sys.executable, "-m", "indexer.evaluation.cli", *argv, "--strict-qrels"],
                            capture_output=True, text=True)
    assert strict.returncode == 2 and strict.stdout == ""
    assert strict.stderr.startswith(f"indexer eval: error: {qrels}:4: duplicate judgement of ('q1', 'd1')")


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    corpus, queries, _ = write_files(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_beir(corpus, queries, tmp_path / "absent.tsv")


def test_write_rejects_ids_that_break_the_tsv(tmp_path: Path) -> None:
    bad = BeirSet({"d\t1": CorpusDoc("d\t1", "", "x")}, {"q": "?"}, {"q": {"d\t1": 1}})
    with pytest.raises(ValueError, match="tabs or line breaks"):
        write_beir(bad, tmp_path)


def test_written_json_keeps_unicode_readable(tmp_path: Path) -> None:
    corpus_path, _, _ = write_beir(SMALL, tmp_path)
    line = corpus_path.read_text(encoding="utf-8").splitlines()[1]
    assert "Café" in line and json.loads(line)["text"] == SMALL.corpus["d2"].text
