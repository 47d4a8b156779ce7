"""Answer scores on hand-made cases with known values, and evaluation-set parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.eval_sets import read_eval_set
from assistant.scoring import exact_match, score_answer, token_f1, yes_no_maybe


def test_token_f1_and_exact_match() -> None:
    assert token_f1("The cat sat [1].", "a cat sat") == 1.0
    assert token_f1("cat", "cat sat") == pytest.approx(2 * 1.0 * 0.5 / 1.5)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "cat") == 0.0
    assert exact_match("The Cat!", "cat") == 1.0 and exact_match("cats", "cat") == 0.0


def test_yes_no_maybe() -> None:
    assert yes_no_maybe("Yes. The trial shows it [2].") == "yes"
    assert yes_no_maybe("The answer is no, it does not.") == "no"
    assert yes_no_maybe("Maybe; the data are mixed") == "maybe"
    assert yes_no_maybe("It is unclear") is None
    assert yes_no_maybe("Nobody knows") is None  # whole words only
    assert score_answer("No [1].", "no", "yes_no_maybe") == 1.0
    assert score_answer("Yes.", "no", "yes_no_maybe") == 0.0
    with pytest.raises(ValueError, match="unknown answer_type"):
        score_answer("x", "y", "essay")


def test_eval_set_errors_name_the_line(tmp_path: Path) -> None:
    good = '{"id": "1", "question": "Q?", "answer": "yes", "answer_type": "yes_no_maybe", "doc_ids": ["d"]}'
    path = tmp_path / "set.jsonl"
    path.write_text(good + "\n\n" + '{"id": "2", "question": "Q?", "answer": "x", "answer_type": "essay"}\n')
    with pytest.raises(ValueError, match=r"set.jsonl:3: unknown answer_type 'essay'"):
        read_eval_set(path)
    path.write_text(good + "\n" + '{"id": "2", "answer": "x", "answer_type": "free"}\n')
    with pytest.raises(ValueError, match=r"set.jsonl:2: missing 'question'"):
        read_eval_set(path)
    path.write_text(good + "\n")
    (item,) = read_eval_set(path)
    assert item.doc_ids == ("d",) and item.answer_type == "yes_no_maybe"
