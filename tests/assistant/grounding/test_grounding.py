"""Grounded answering: prompt building, citation parsing and the post-check."""

from __future__ import annotations

import json

import pytest

from assistant.grounding.check import NOT_FOUND_MESSAGE, finalize
from assistant.grounding.claims import parse_citations, quotes_in
from assistant.grounding.passages import SNIPPET_CHARS, Passage, build_messages, make_passage, passages_from_hits, truncate
from assistant.grounding.verify import OverlapVerifier
from indexer.records import Hit

TEXTS = [
    "Hypertension, or high blood pressure, raises the risk of heart disease and stroke.",
    "Asthma is a chronic disease of the airways that makes breathing difficult.",
    "The mitochondria is the powerhouse of the cell.",
]


def make_passages(dense: list[float | None] | None = None) -> list[Passage]:
    dense = dense or [0.82, 0.55, 0.31]
    return [
        make_passage(n, f"doc{n}", f"notes/{n}.md", t, 1.0 / n, d, start=100 * n)
        for n, (t, d) in enumerate(zip(TEXTS, dense, strict=True), start=1)
    ]


@pytest.fixture
def passages() -> list[Passage]:
    return make_passages()


@pytest.mark.parametrize(("answer", "expected"), [
    ("Plain [2].", [2]),
    ("List [1, 3] and [2,1].", [1, 3, 2]),
    ("Adjacent [3][1][3].", [3, 1]),
    ("Range [1-3] then [2].", [1, 2, 3]),
    ("En dash range [2\u20133].", [2, 3]),
    ("Mixed [4, 1-2] and spaces [ 5 ].", [4, 1, 2, 5]),
    ("Reversed range [3-1].", [3, 1]),
    ("Huge range [1-99999] is read as its ends.", [1, 99999]),
    ("No citations, a [link](x) and [a] and [1.5 mg].", []),
])
def test_parse_citations(answer: str, expected: list[int]) -> None:
    assert parse_citations(answer) == expected


def test_passages_from_hits_numbers_in_rank_order() -> None:
    hits = [Hit(7, "d1", "a.md", 0, 5, "alpha", 0.9, 0.71, 3.2, {}, []),
            Hit(3, "d2", "b.md", 5, 9, "beta", 0.4, None, 1.1, {"k": "v"}, ["t"])]
    got = passages_from_hits(hits)
    assert [(p.number, p.doc_id, p.start, p.end, p.text) for p in got] == [
        (1, "d1", 0, 5, "alpha"), (2, "d2", 5, 9, "beta")]
    assert got[0].relevance == 0.71  # cosine when present
    assert got[1].relevance == 0.4  # else the search score


def test_prompt_holds_every_passage_and_the_question(passages) -> None:
    messages = build_messages("What raises the risk of stroke?", passages)
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    for p in passages:
        assert f"[{p.number}] ({p.source}) {p.text}" in user
    assert "What raises the risk of stroke?" in user
    assert "[n]" in messages[0]["content"] and "only" in messages[0]["content"]
    assert build_messages("q", passages, system="Be terse.")[0]["content"] == "Be terse."


def test_prompt_truncates_each_passage_to_the_budget() -> None:
    long = make_passage(1, "d", "long.txt", "word " * 1000, 0.9, 0.9, end=5000)
    user = build_messages("q?", [long], max_passage_chars=120)[1]["content"]
    body = user.split("[1] (long.txt) ", 1)[1].split("\n\n", 1)[0]
    assert len(body) <= 120 and body.endswith("\u2026")
    with pytest.raises(ValueError, match="max_passage_chars"):
        build_messages("q?", [long], max_passage_chars=0)


@pytest.mark.parametrize("limit", [1, 2, 10, 57, 300])
def test_truncate_never_exceeds_limit(limit: int) -> None:
    text = "a fairly long sentence with several words " * 20
    assert len(truncate(text, limit)) <= limit
    assert truncate("short  text", 300) == "short text"  # whitespace collapsed, nothing cut


LEXICAL = OverlapVerifier()  # word and number overlap only: known values, no model


def test_supported_claims_are_shown_with_their_citations(passages) -> None:
    answer = "High blood pressure raises the risk of stroke [1]. Asthma affects the airways [2]."
    result = finalize(answer, passages, LEXICAL, min_score=0.3)
    assert result.grounded and result.abstained_reason is None
    assert result.answer == answer and result.raw_answer == answer
    assert [(c["number"], c["doc_id"], c["start"], c["end"]) for c in result.citations] == [
        (1, "doc1", 100, 100 + len(TEXTS[0])), (2, "doc2", 200, 200 + len(TEXTS[1]))]
    assert result.citations[0]["snippet"] == TEXTS[0]
    assert result.closest == [] and result.dropped == []
    assert [(c["text"], c["citations"], c["support"]) for c in result.claims] == [
        ("High blood pressure raises the risk of stroke.", [1], 1.0),
        ("Asthma affects the airways.", [2], pytest.approx(2 / 3, abs=1e-3))]  # "affects" is not in [2]
    assert json.loads(json.dumps(result.to_dict()))["citations"][1]["source"] == "notes/2.md"


def test_fabricated_citation_is_corrected_by_the_system(passages) -> None:
    result = finalize("Stroke risk rises with blood pressure [1][7].", passages, LEXICAL, min_score=0.3)
    assert result.grounded and result.answer == "Stroke risk rises with blood pressure [1]."
    only_fabricated = finalize("Stroke risk rises with blood pressure [7].", passages, LEXICAL, min_score=0.3)
    assert only_fabricated.answer == "Stroke risk rises with blood pressure [1]."
    assert [c["number"] for c in only_fabricated.citations] == [1]


def test_a_citation_of_a_passage_that_does_not_support_the_claim_is_replaced(passages) -> None:
    result = finalize("Asthma makes breathing difficult [3].", passages, LEXICAL, min_score=0.3)
    assert result.answer == "Asthma makes breathing difficult [2]."


def test_unsupported_claims_are_dropped_and_reported(passages) -> None:
    answer = "High blood pressure raises the risk of stroke [1]. The moon is made of green cheese [2]."
    result = finalize(answer, passages, LEXICAL, min_score=0.3)
    assert result.grounded and result.answer == "High blood pressure raises the risk of stroke [1]."
    [dropped] = result.dropped
    assert dropped["text"] == "The moon is made of green cheese." and "no passage supports it" in dropped["reason"]


@pytest.mark.parametrize(("claim", "why"), [
    ("Asthma affects 40 million people [2].", "a number no passage holds"),
    ("Hypertension is treated with Lisinopril [1].", "a named term no passage holds"),
    ("The mitochondria makes 36 ATP per glucose [3].", "a number no passage holds"),
])
def test_numbers_and_named_terms_must_be_in_the_passage(passages, claim: str, why: str) -> None:
    result = finalize(claim, passages, LEXICAL, min_score=0.3)
    assert not result.grounded and result.answer == NOT_FOUND_MESSAGE, why
    assert "no claim of the answer is supported" in (result.abstained_reason or "")
    assert [d["text"] for d in result.dropped] == [strip(claim)]


def strip(claim: str) -> str:
    return claim.rsplit(" [", 1)[0] + "."


def test_quote_missing_from_every_passage_is_dropped(passages) -> None:
    result = finalize('It "raises the risk of kidney failure" [1].', passages, LEXICAL, min_score=0.3)
    assert not result.grounded
    assert "quote \"raises the risk of kidney failure\"" in result.dropped[0]["reason"]


def test_quote_is_checked_against_the_passage_the_system_cites(passages) -> None:
    # the words are passage 1's; the model cited passage 2, so the system cites 1 and the quote holds
    result = finalize('It "raises the risk of heart disease" [2].', passages, LEXICAL, min_score=0.3)
    assert result.grounded and result.answer == 'It "raises the risk of heart disease" [1].'


def test_quote_present_with_other_whitespace_and_case_is_accepted(passages) -> None:
    answer = "Passage one says \u201cRaises  the RISK\nof heart disease and stroke.\u201d [1]"
    result = finalize(answer, passages, LEXICAL, min_score=0.3)
    assert result.grounded, result.dropped


def test_quote_with_ellipsis_needs_each_piece(passages) -> None:
    ok = finalize('"Asthma is a chronic disease \u2026 makes breathing difficult" [2]', passages, LEXICAL, min_score=0.3)
    bad = finalize('"Asthma is a chronic disease \u2026 cured by sunlight alone" [2]', passages, LEXICAL, min_score=0.3)
    assert ok.grounded and not bad.grounded


def test_short_quotes_are_terms_not_quotations() -> None:
    assert quotes_in('The "powerhouse" of the "whole cell" is "made of many parts".') == ["made of many parts"]


def test_an_answer_without_citations_gets_them_from_the_system(passages) -> None:
    """The base model rarely writes [n]: a supported sentence is shown all the same."""
    result = finalize("High blood pressure raises stroke risk.", passages, LEXICAL, min_score=0.3)
    assert result.grounded and result.answer == "High blood pressure raises stroke risk [1]."
    assert [c["number"] for c in result.citations] == [1]


def test_low_best_score_abstains_with_closest_passages() -> None:
    weak = make_passages([0.21, 0.18, 0.05])
    result = finalize("Stroke risk rises with blood pressure [1].", weak, LEXICAL, min_score=0.3, closest_k=2)
    assert not result.grounded and result.answer == NOT_FOUND_MESSAGE
    assert "below min_score" in (result.abstained_reason or "")
    assert [(c["number"], c["doc_id"], c["start"]) for c in result.closest] == [(1, "doc1", 100), (2, "doc2", 200)]
    assert result.raw_answer == "Stroke risk rises with blood pressure [1]."


def test_relevance_falls_back_to_score_without_cosine() -> None:
    # Without a cosine the search score (1.0, 0.5, 0.33) is compared instead.
    bm25_only = make_passages([None, None, None])
    assert finalize("Yes [1].", bm25_only, LEXICAL, min_score=0.9).grounded
    assert not finalize("Yes [1].", bm25_only, LEXICAL, min_score=1.5).grounded


@pytest.mark.parametrize("answer", [
    "This is not in the documents [1].",
    "I cannot find the answer in the documents.",
    "I don\u2019t know [2].",
])
def test_model_refusal_abstains(passages, answer: str) -> None:
    result = finalize(answer, passages, LEXICAL, min_score=0.3)
    assert not result.grounded and result.answer == NOT_FOUND_MESSAGE
    assert "model said" in (result.abstained_reason or "")
    assert len(result.closest) == 3


def test_no_passages_abstains() -> None:
    result = finalize("Anything [1].", [], LEXICAL, min_score=0.0)
    assert not result.grounded and result.closest == []
    assert "no passages" in (result.abstained_reason or "")
    assert "(none)" in build_messages("q?", [])[1]["content"]


def test_snippet_is_capped() -> None:
    p = make_passage(1, "d", "s", "token " * 400, 0.9, 0.9, end=2000)
    result = finalize("Tokens [1].", [p], LEXICAL, min_score=0.3)
    assert result.grounded
    assert len(result.citations[0]["snippet"]) <= SNIPPET_CHARS  # type: ignore[arg-type]
    assert result.citations[0]["text"] == "token " * 400  # the whole passage, for a reader to expand


def hit_with(metadata: dict[str, object], text: str) -> Passage:
    return passages_from_hits([Hit(7, "d", "faq.jsonl#3", 0, len(text), text, 0.9, 0.9, None, metadata, [])])[0]


def test_citation_title_is_the_documents_own_else_the_passages_first_words() -> None:
    long = "Glaucoma is a group of diseases that damage the optic nerve and can cause blindness."
    assert hit_with({"title": "  Eye   health ", "focus": "Glaucoma"}, long).title == "Eye health"
    assert hit_with({"focus": "Glaucoma", "format": "jsonl"}, long).title == "Glaucoma"
    assert hit_with({"title": "", "format": "jsonl"}, long).title == "Glaucoma is a group of diseases that damage\u2026"
    assert hit_with({}, "Short passage.").title == "Short passage."
    assert len(hit_with({"title": "x" * 500}, long).title) <= 80
    closest = finalize("", [hit_with({"focus": "Glaucoma"}, long)], LEXICAL, min_score=0.95).closest[0]
    assert (closest["title"], closest["text"], closest["source"]) == ("Glaucoma", long, "faq.jsonl#3")
