"""Choice answers: validation, contextual calibration on known values, and scoring with
the tiny Llama made in conftest.py (its preferences are arbitrary but fixed, so the
test checks that the scores are the model's own, computed in one pass)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from assistant.generation.base import GenerationSettings
from assistant.generation.local import LocalGenerator
from assistant.grounding.choices import (
    CONTENT_FREE,
    calibrate,
    check_choices,
    choice_answer,
    choice_messages,
    score_choices,
)
from assistant.grounding.passages import make_passage

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

PASSAGES = [make_passage(1, "d1", "trial.txt", "The trial found that the drug lowered blood pressure.", 0.9, 0.8),
            make_passage(2, "d2", "other.txt", "Bread rises because yeast ferments the dough.", 0.5, 0.2)]


@pytest.mark.parametrize(("choices", "message"), [
    ([], "choices is empty"),
    (["yes", " "], "non-empty string"),
    (["yes", "Yes"], "choices repeat: Yes, yes"),
    ([str(n) for n in range(21)], "at most 20"),
    (["yes"], "at least two"),
])
def test_bad_choices_say_what_is_wrong(choices: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_choices(choices)


def test_calibration_divides_by_the_content_free_prior() -> None:
    # the model likes "yes" whatever it is asked: after calibration the question's own lean shows
    asked, free = [math.log(0.6), math.log(0.3), math.log(0.1)], [math.log(0.7), math.log(0.2), math.log(0.1)]
    ratios = [0.6 / 0.7, 0.3 / 0.2, 0.1 / 0.1]
    assert calibrate(asked, free) == pytest.approx([r / sum(ratios) for r in ratios])
    assert calibrate([0.0, 0.0], [0.0, 0.0]) == pytest.approx([0.5, 0.5])


@pytest.fixture(scope="module")
def generator(tiny_model_dir: Path) -> LocalGenerator:
    return LocalGenerator(GenerationSettings(model=str(tiny_model_dir), device="cpu"))


def test_choice_nlls_reuse_the_prompt_and_match_full_passes(generator: LocalGenerator) -> None:
    """Continuing from the cached prompt gives the same log-likelihoods as scoring each
    (prompt, choice) row from scratch, multi-token choices included."""
    prompt = generator.chat_prompt(choice_messages("Did it work?", PASSAGES, ["yes", "no"]))
    choices = ["yes", "not at all", "maybe so"]
    cached = generator.choice_nlls(prompt, choices)
    full = generator.continuation_nlls([prompt] * 3, choices)
    assert [len(r) for r in cached] == [len(r) for r in full] and len(cached[1]) > 1
    for a, b in zip(cached, full, strict=True):
        assert a == pytest.approx(b, abs=1e-3)


def test_choices_are_scored_by_mean_log_likelihood_in_one_pass(generator: LocalGenerator) -> None:
    choices = ["yes", "no", "maybe"]
    question = "Did the drug lower blood pressure?"
    calls = generator.generate_calls
    scored = score_choices(generator, question, PASSAGES, choices, adapter=None, calibrated=False)
    assert generator.generate_calls == calls  # scored, not generated
    prompt = generator.chat_prompt(choice_messages(question, PASSAGES, choices))
    means = [-sum(row) / len(row) for row in generator.continuation_nlls([prompt] * 3, choices)]
    expected = [math.exp(m) / sum(math.exp(x) for x in means) for m in means]
    assert [scored.probabilities[c] for c in choices] == pytest.approx(expected, abs=1e-4)
    assert scored.answer == choices[max(range(3), key=expected.__getitem__)]
    assert scored.raw == scored.probabilities


def test_calibrated_scores_use_the_content_free_prompt(generator: LocalGenerator) -> None:
    choices = ["yes", "no", "maybe"]
    scored = score_choices(generator, "Did it work?", PASSAGES, choices, adapter=None)
    empty = generator.chat_prompt(choice_messages(CONTENT_FREE, [make_passage(1, "", "", CONTENT_FREE, 0.0)], choices))
    free = [-sum(r) / len(r) for r in generator.continuation_nlls([empty] * 3, choices)]
    asked = [math.log(scored.raw[c]) for c in choices]
    assert [scored.probabilities[c] for c in choices] == pytest.approx(calibrate(asked, free), abs=1e-3)
    assert sum(scored.probabilities.values()) == pytest.approx(1.0, abs=1e-3)


def test_a_choice_answer_cites_a_passage(generator: LocalGenerator) -> None:
    scored = score_choices(generator, "Did the drug lower blood pressure?", PASSAGES, ["yes", "no"], adapter=None)
    shown = choice_answer(scored, "Did the drug lower blood pressure?", PASSAGES, scored.answer, None)
    assert shown.grounded and shown.answer_mode == "choice"
    assert shown.answer == f"{scored.answer} [1]" and shown.citations[0]["doc_id"] == "d1"  # the more relevant


def test_a_fitted_head_decides_as_scikit_learn_and_only_for_its_choices(generator: LocalGenerator,
                                                                        tmp_path: Path) -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from assistant.grounding.choice_head import ChoiceHead, choice_head_path, fit_choice_head, load_heads

    rng = np.random.default_rng(0)
    features = rng.normal(-1.0, 0.5, size=(90, 3))
    gold = [["yes", "no", "maybe"][int(np.argmax(row + rng.normal(0, 0.3, 3)))] for row in features]
    head = fit_choice_head(features.tolist(), gold, ["yes", "no", "maybe"], fitted={"model": generator.model_name})
    reference = LogisticRegression(C=1.0, max_iter=2000).fit(features, [["yes", "no", "maybe"].index(g) for g in gold])
    for row in features[:10]:
        assert head.probabilities(row.tolist()) == pytest.approx(reference.predict_proba([row])[0].tolist(), abs=1e-9)
    scored = score_choices(generator, "Did it work?", PASSAGES, ["yes", "no", "maybe"], adapter=None, head=head)
    assert scored.method == "head"
    expected = head.probabilities(list(scored.mean_logprobs))
    assert [scored.probabilities[c] for c in ("yes", "no", "maybe")] == pytest.approx(expected, abs=1e-4)
    other = score_choices(generator, "Did it work?", PASSAGES, ["yes", "no"], adapter=None, head=head)
    assert other.method == "contextual"  # fitted for three choices, not these two
    head.save(choice_head_path(tmp_path, None))
    assert load_heads(tmp_path, [None, "v2"], model=generator.model_name) == {None: head}
    with pytest.raises(ValueError, match="fitted for model .*uses .other.*assistant calibrate --choices"):
        ChoiceHead.load(choice_head_path(tmp_path, None), model="other")
    with pytest.raises(ValueError, match="no training item answers maybe"):
        fit_choice_head([[0.0, 0.0, 0.0]] * 4, ["yes", "no", "yes", "no"], ["yes", "no", "maybe"], fitted={})


def test_macro_f1_sees_through_always_yes() -> None:
    from assistant.evaluation.scoring import macro_f1

    gold = ["yes"] * 6 + ["no"] * 3 + ["maybe"]
    assert macro_f1(gold, ["yes"] * 10) == pytest.approx((2 * 6 / (12 + 4)) / 3, abs=1e-4)
    assert macro_f1(gold, list(gold)) == 1.0
    assert macro_f1(gold, [None] * 10) == 0.0  # abstentions match no label
