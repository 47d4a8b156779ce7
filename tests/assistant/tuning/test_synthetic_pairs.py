"""On-policy pairs from a tiny real model that always answers "Pangolins eat ants and
termites [1].": each context's verdict, against the real grounding check and MiniLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.generation.base import GenerationSettings
from assistant.generation.local import LocalGenerator
from assistant.grounding.passages import make_passage
from assistant.grounding.verify import OverlapVerifier
from assistant.tuning.raft import ABSTAIN_ANSWER, RaftExample
from assistant.tuning.synthetic_pairs import Context, SyntheticSettings, synthesize_pairs
from server_harness import DOCS

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

QUESTION = "What do pangolins eat?"
GOLD = "ants and termites"


def passage(number: int, doc_id: str):  # noqa: ANN201 - a Passage
    doc = next(d for d in DOCS if d.doc_id == doc_id)
    return make_passage(number, doc.doc_id, doc.source, doc.text, 0.8, 0.8)


def test_each_wrong_answer_becomes_a_pair(citing_model: Path) -> None:
    from indexer.embedder import Embedder
    from indexer.settings import BUNDLED_MODEL

    contexts = [
        # the oracle is shown and the answer is supported: right, no pair
        Context(RaftExample(QUESTION, [passage(1, "pangolin"), passage(2, "bread")], 1, "Ants and termites [1]."), GOLD),
        # no passage holds the answer: any answer is wrong, the refusal is chosen
        Context(RaftExample(QUESTION, [passage(1, "volcano"), passage(2, "bread")], None, ABSTAIN_ANSWER), GOLD),
        # the oracle was left out but a distractor holds the answer: answerable after all, no pair
        Context(RaftExample(QUESTION, [passage(1, "pangolin")], None, ABSTAIN_ANSWER), GOLD),
        # "the oracle" does not support the answer given: the gold answer is chosen over it
        Context(RaftExample(QUESTION, [passage(1, "volcano")], 1, "Inside ash plumes [1]."), "inside ash plumes"),
    ]
    generator = LocalGenerator(GenerationSettings(model=str(citing_model), device="cpu"))
    embedder = Embedder(BUNDLED_MODEL, device="cpu")
    data, counts = synthesize_pairs(generator, None, contexts, OverlapVerifier(embedder.embed), embed=embedder.embed,
                                    settings=SyntheticSettings(max_new_tokens=16))
    assert counts["contexts"] == 4 and counts["unanswerable"] == 2 and counts["pairs"] == 3
    assert counts["gold_in_a_distractor"] == 1 and counts["supported_answerable"] == 1
    assert counts["unsupported_answerable"] == 1 and counts["reinforced"] == 1
    kept, refusal, gold = data.pairs
    # the supported answer is kept against refusing, so the pairs do not all pull towards refusals
    assert kept.rejected == ABSTAIN_ANSWER and kept.chosen.lower().startswith("pangolins")
    assert refusal.chosen == ABSTAIN_ANSWER and refusal.rejected.lower().startswith("pangolins")  # its own words
    assert gold.chosen == "Inside ash plumes [1]." and "pangolins" in gold.rejected.lower()
    plain, counts = synthesize_pairs(generator, None, contexts, OverlapVerifier(embedder.embed), embed=embedder.embed,
                                     settings=SyntheticSettings(max_new_tokens=16, reinforce_supported=False))
    assert counts["pairs"] == 2 and counts["reinforced"] == 0 and plain.pairs[0].chosen == ABSTAIN_ANSWER
    assert all(p.source == "synthetic" and p.prompt[-1][1].endswith(f"Question: {QUESTION}") for p in data.pairs)
    assert "[1] (geo/volcano.txt)" in refusal.prompt[-1][1]  # the passages the model saw
