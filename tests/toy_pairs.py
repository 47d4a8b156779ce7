"""A toy (question, passage) set for the retrieval-tuning tests: one question per animal,
answered by a sentence naming its food and home; one question (``LEAKED``) also sits in the
tests' eval file, so decontamination must drop it. Pytest puts this directory on ``sys.path``."""

from __future__ import annotations

import json
from pathlib import Path

ANIMALS = ("cat dog horse cow sheep goat pig duck goose eagle owl fox wolf bear deer rabbit mouse rat frog snake "
           "lizard turtle shark whale dolphin seal otter beaver squirrel bat camel zebra lion tiger monkey gorilla "
           "panda koala kangaroo penguin").split()
FOODS = "apples bread cheese fish grass honey insects leaves nuts rice seeds worms berries corn carrots eggs".split()
PLACES = "forests rivers deserts mountains farms islands cities caves".split()
LEAKED = "Tell me please what exactly the panda eats in the wild"  # in the eval file, 11 words


def toy_pairs() -> list[dict[str, str]]:
    rows = []
    for i, animal in enumerate(ANIMALS):
        question = LEAKED if animal == "panda" else f"What does the {animal} eat and where does it live?"
        passage = f"The {animal} lives in {PLACES[i % len(PLACES)]} and mostly eats {FOODS[i % len(FOODS)]}."
        rows.append({"question": question, "passage": passage})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
