"""Answer scores on hand-made cases with known values, and evaluation-set parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.evaluation.scoring import exact_match, score_answer, token_f1, yes_no_maybe
from assistant.evaluation.sets import read_eval_set


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


def test_numbers_with_scale() -> None:
    from assistant.evaluation.scoring import numeric_match, parse_number

    assert parse_number("$1,496.5") == 1496.5
    assert parse_number("(3,200)") == -3200.0
    assert parse_number("It rose to 1.5 million [2].") == 1.5e6
    assert parse_number("12%") == 12.0 and parse_number("no number") is None
    assert numeric_match("about 1.5 million", "1,500", "thousand") == 1.0  # 1.5e6 == 1,500 thousand
    assert numeric_match("1,496.5", "$1,496.5", "million") == 1.0  # no scale word: read in the gold scale
    assert numeric_match("1,497", "$1,496.5", "million") == 1.0  # within 0.5%
    assert numeric_match("1,520", "$1,496.5", "million") == 0.0
    assert numeric_match("12.0%", "12", "percent") == 1.0
    assert numeric_match("none", "12", "percent") == 0.0
    assert numeric_match("It fell by -12.6 [2].", "-12.6 million") == 1.0  # the scale written in the gold answer
    assert numeric_match("-12.6 billion", "-12.6 million") == 0.0
    with pytest.raises(ValueError, match="unknown scale"):
        numeric_match("1", "1", "dozen")


def test_rouge_l() -> None:
    from assistant.evaluation.scoring import rouge_l

    assert rouge_l("the cat sat on the mat", "cat sat on mat") == 1.0  # articles dropped
    # LCS of "cat mat sat" and "cat sat mat" is 2 of 3 tokens each way
    assert rouge_l("cat mat sat", "cat sat mat") == pytest.approx(2 / 3)
    assert rouge_l("dog", "cat") == 0.0


def test_second_score_follows_the_answer_type() -> None:
    from assistant.evaluation.scoring import second_score

    assert second_score("The Ants [2].", "ants", "extractive") == ("exact_match", 1.0)
    assert second_score("ants and termites", "ants", "extractive") == ("exact_match", 0.0)
    assert second_score("It rose to $1,200 thousand.", "1.2 million", "numeric") == ("exact_match", 1.0)
    assert second_score("cat mat sat", "cat sat mat", "free") == ("rouge_l", pytest.approx(2 / 3))
    assert second_score("yes", "yes", "yes_no_maybe") is None


def test_support_and_citation_precision() -> None:
    from assistant.evaluation.scoring import citation_precision, content_words, holds_answer, support

    passage = "Pangolins eat ants and termites with long sticky tongues."
    assert content_words("The pangolins eat ants [1].") == ["pangolins", "eat", "ants"]
    assert support("Pangolins eat ants [1].", [passage]) == 1.0
    assert support("Pangolins eat bananas.", [passage]) == pytest.approx(2 / 3)
    assert support("It is.", [passage]) == 1.0  # nothing to back
    assert holds_answer(passage, "ants and termites") and not holds_answer(passage, "ant")
    assert citation_precision([passage], "ants and termites") == 1.0
    assert citation_precision(["Volcanoes erupt."], "ants and termites") == 0.0
    assert citation_precision([], "ants") is None


def test_recall_at_k_and_scores_with_retrieval() -> None:
    """Known values on hand-made passages: recall@k by gold document (or, without ids,
    a passage holding the answer); a refusal is an abstention, and so is an answer no
    passage supports (the service's claim check drops it); a shown answer citing a gold
    passage counts for citation precision."""
    from assistant.evaluation.run import judge, recall_at_k, score_rag
    from assistant.grounding.verify import OverlapVerifier
    from assistant.evaluation.sets import EvalItem
    from assistant.grounding.passages import Passage, make_passage

    def passage(n: int, doc: str, text: str) -> Passage:
        return make_passage(n, doc, doc, text, 0.9, 0.9)

    items = [EvalItem("1", "What do pangolins eat?", "ants and termites", "extractive", ("pangolin",)),
             EvalItem("2", "How fast is a cheetah?", "110 km/h", "extractive", ("cheetah",)),
             EvalItem("3", "What colour are flamingos?", "pink", "extractive", ()),
             EvalItem("4", "Where do koalas live?", "eucalyptus forests", "extractive", ("koala",))]
    found = [[passage(1, "pangolin", "Pangolins eat ants and termites."), passage(2, "sloth", "Sloths are slow.")],
             [passage(1, "lion", "Lions hunt at night.")],
             [passage(1, "bird", "Flamingos are pink from their diet.")],
             [passage(1, "koala", "Koalas live in eucalyptus forests.")]]
    assert recall_at_k(items, found) == 0.75
    answers = ["Pangolins eat ants and termites [1].",
               "I cannot find the answer in the documents.",
               "They are pink [1].",
               "Koalas live on volcanic islands with penguins [1]."]
    shown = judge(answers, found, OverlapVerifier(), min_score=0.3)
    assert [r.grounded for r in shown] == [True, False, True, False]  # koalas: 2 of 5 content words backed
    row = score_rag(items, found, answers, shown)
    assert row["n"] == 4 and row["abstention_rate"] == 0.5
    # token F1: 3/5 precision, full recall → 0.75; abstained 0; "they are pink" → 0.5; the koala answer hidden: 0
    assert row["accuracy"] == pytest.approx((0.75 + 0 + 0.5 + 0) / 4, abs=1e-4)
    assert row["raw_accuracy"] == pytest.approx((0.75 + 0 + 0.5 + 0) / 4, abs=1e-4)
    assert row["citation_precision"] == 1.0  # both shown answers cite a gold passage
    assert row["unsupported_rate"] == 0.0  # what is shown is backed
    assert row["exact_match"] == 0.0
