"""The prefer stage on a tiny real model: DPO on pairs and KTO on thumbs move the
supervised adapter toward the preferred answers, a rerun resumes from the trainer's
checkpoint, and bad preference rows stop it with the line that is wrong."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from assistant.grounding.passages import build_messages, make_passage
from assistant.tuning.prefer import PreferSettings, prompt_counter, train_preferences
from assistant.tuning.preferences import (PreferenceData, PreferenceFileError, PreferencePair, UnpairedExample,
                                          as_messages, dedupe, read_preferences)
from assistant.tuning.raft import ABSTAIN_ANSWER

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"), pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

QUESTIONS = ["What do pangolins eat?", "Where does volcanic lightning flash?", "Why does sourdough rise?",
             "Which mammals have scales?"]
FABRICATED = "Pangolins eat bamboo shoots and river fish [1]."


def serving_prompt(question: str) -> Any:
    passages = [make_passage(1, "d1", "notes.txt", "Lightning storms are common in summer.", 0.4)]
    return as_messages(build_messages(question, passages))


def refusal_pairs() -> PreferenceData:
    """Chosen: the refusal; rejected: a fabricated cited answer (the unanswerable case)."""
    return PreferenceData([PreferencePair(serving_prompt(q), ABSTAIN_ANSWER, FABRICATED, "synthetic")
                           for q in QUESTIONS], [])


def completion_logprob(model_dir: Path, adapter: Path, prompt: Any, completion: str) -> float:
    """Summed log-probability of ``completion`` after ``prompt`` with the adapter on."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assistant.tuning.preferences import messages_to_list

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), str(adapter)).eval()
    text = tokenizer.apply_chat_template(messages_to_list(prompt), add_generation_prompt=True, tokenize=False)
    head = tokenizer(text, add_special_tokens=False)["input_ids"]
    tail = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([head + tail])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(head) - 1:-1].log_softmax(-1)
    return float(logits.gather(1, torch.tensor(tail)[:, None]).sum())


def margin(model_dir: Path, adapter: Path) -> float:
    """Mean log-probability margin of the refusal over the fabricated answer."""
    values = [completion_logprob(model_dir, adapter, serving_prompt(q), ABSTAIN_ANSWER)
              - completion_logprob(model_dir, adapter, serving_prompt(q), FABRICATED) for q in QUESTIONS]
    return sum(values) / len(values)


QUICK = {"batch_size": 2, "max_steps": 12, "lr": 5e-3, "beta": 0.5, "warmup_ratio": 0.0, "save_every": 6}


def test_dpo_moves_the_adapter_toward_the_chosen_answers(tiny_model_dir: Path, tiny_adapter_dir: Path,
                                                         tmp_path: Path) -> None:
    parent = tiny_adapter_dir / "demo"
    rows: list[dict[str, Any]] = []
    summary = train_preferences(PreferSettings(**QUICK), model=str(tiny_model_dir), parent=parent,
                                data=refusal_pairs(), out=tmp_path / "prefer", on_step=rows.append)
    assert summary["method"] == "dpo" and summary["step"] == 12 and not summary["quantized"]
    assert rows and all(math.isfinite(r["loss"]) for r in rows) and rows[-1]["step"] == 12
    tuned = tmp_path / "prefer" / "adapter"
    assert sorted(p.name for p in tuned.iterdir() if p.suffix in (".json", ".safetensors")) == [
        "adapter_config.json", "adapter_model.safetensors"]  # the tuned adapter alone, not the frozen reference
    before, after = margin(tiny_model_dir, parent), margin(tiny_model_dir, tuned)
    assert after > before + 1.0, (before, after)
    assert summary["reward_accuracy"] is not None and summary["reward_margin"] > 0


def test_an_sft_term_keeps_the_chosen_answers_likely(tiny_model_dir: Path, tiny_adapter_dir: Path,
                                                     tmp_path: Path) -> None:
    parent = tiny_adapter_dir / "demo"
    summary = train_preferences(PreferSettings(**QUICK | {"sft_weight": 1.0}), model=str(tiny_model_dir),
                                parent=parent, data=refusal_pairs(), out=tmp_path / "prefer-sft")
    assert summary["method"] == "dpo" and summary["step"] == 12
    tuned = tmp_path / "prefer-sft" / "adapter"
    assert margin(tiny_model_dir, tuned) > margin(tiny_model_dir, parent) + 1.0
    train_preferences(PreferSettings(**QUICK), model=str(tiny_model_dir), parent=parent, data=refusal_pairs(),
                      out=tmp_path / "prefer-plain")
    chosen = {name: completion_logprob(tiny_model_dir, adapter, serving_prompt(QUESTIONS[0]), ABSTAIN_ANSWER)
              for name, adapter in (("parent", parent), ("plain", tmp_path / "prefer-plain" / "adapter"),
                                    ("sft", tuned))}
    # the chosen answer itself became more likely, and more so than under plain DPO
    assert chosen["sft"] > chosen["parent"] and chosen["sft"] > chosen["plain"], chosen


def test_a_rerun_resumes_from_the_last_checkpoint(tiny_model_dir: Path, tiny_adapter_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "prefer"
    train_preferences(PreferSettings(**QUICK | {"max_steps": 6}), model=str(tiny_model_dir),
                      parent=tiny_adapter_dir / "demo", data=refusal_pairs(), out=out)
    resumed = train_preferences(PreferSettings(**QUICK), model=str(tiny_model_dir), parent=tiny_adapter_dir / "demo",
                                data=refusal_pairs(), out=out)
    assert resumed["resumed_from"] and resumed["resumed_from"].endswith("checkpoint-6") and resumed["step"] == 12
    assert len(resumed["log"]) == 6  # only the steps after the checkpoint ran


def test_kto_learns_from_thumbs(tiny_model_dir: Path, tiny_adapter_dir: Path, tmp_path: Path) -> None:
    thumbs = [UnpairedExample(serving_prompt(q), ABSTAIN_ANSWER, True, "feedback") for q in QUESTIONS] + [
        UnpairedExample(serving_prompt(q), FABRICATED, False, "feedback") for q in QUESTIONS]
    summary = train_preferences(PreferSettings(**QUICK | {"batch_size": 4}), model=str(tiny_model_dir),
                                parent=tiny_adapter_dir / "demo", data=PreferenceData([], thumbs),
                                out=tmp_path / "kto")
    assert summary["method"] == "kto" and summary["unpaired"] == 8
    before = margin(tiny_model_dir, tiny_adapter_dir / "demo")
    assert margin(tiny_model_dir, tmp_path / "kto" / "adapter") > before + 1.0


GOOD = {"prompt": [{"role": "user", "content": "Q?"}], "chosen": "A.", "rejected": "B."}


@pytest.mark.parametrize(("row", "message"), [
    ({"chosen": "A.", "rejected": "B."}, "missing 'prompt'"),
    (GOOD | {"chosen": "  "}, "'chosen' is empty"),
    ({"prompt": "Q?", "chosen": "A."}, "missing 'rejected'"),
    (GOOD | {"rejected": "A."}, "the same text"),
    ({"prompt": "Q?", "completion": "A.", "label": "yes"}, "'label' must be true"),
    (GOOD | {"prompt": [{"role": "robot", "content": "x"}]}, "has role 'robot'"),
    ({"prompt": "Q?", "answer": "A."}, "needs 'chosen' and 'rejected'"),
    ({"prompt": "Q? " * 400, "chosen": "A.", "rejected": "B."}, "over max_prompt_tokens=64"),
])
def test_bad_rows_stop_with_their_line(tiny_model_dir: Path, tmp_path: Path, row: dict[str, Any],
                                       message: str) -> None:
    from transformers import AutoTokenizer

    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(row) + "\n")
    counter = prompt_counter(AutoTokenizer.from_pretrained(tiny_model_dir))
    with pytest.raises(PreferenceFileError) as caught:
        read_preferences(path, count_tokens=counter, max_prompt_tokens=64)
    assert f"{path}:3: " in str(caught.value) and message in str(caught.value)
    assert [where for where, _ in caught.value.problems] == [f"{path}:3"]


def test_a_good_file_reads_and_old_feedback_rows_are_thumbs(tmp_path: Path) -> None:
    path = tmp_path / "prefs.jsonl"
    old = {"prompt": "What do pangolins eat?", "response": "Ants.", "rating": "up", "answer_id": "a1", "citations": []}
    path.write_text("\n".join(json.dumps(r) for r in (GOOD, GOOD, old)) + "\n")
    data = read_preferences(path)
    assert len(data.pairs) == 2 and data.unpaired == [UnpairedExample((("user", "What do pangolins eat?"),), "Ants.",
                                                                      True, "feedback")]
    kept, counts = dedupe(data, ["an evaluation question that shares nothing with these rows at all here"])
    assert counts == {"exact_duplicates": 1, "contaminated": 0} and len(kept) == 2


def test_rows_copied_from_an_eval_set_are_dropped() -> None:
    question = "Which drug is first line for uncomplicated hypertension in adults over sixty years of age today?"
    data = PreferenceData([PreferencePair(serving_prompt(question), "Thiazides.", "Beta blockers."),
                           PreferencePair(serving_prompt("What do pangolins eat?"), "Ants.", "Fish.")], [])
    kept, counts = dedupe(data, [question])
    assert counts["contaminated"] == 1 and [p.chosen for p in kept.pairs] == ["Ants."]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="beta must be"):
        PreferSettings(beta=0)
    with pytest.raises(ValueError, match="sft_weight"):
        PreferSettings(sft_weight=-1)
    with pytest.raises(ValueError, match="method must be"):
        PreferSettings(method="ppo")
    with pytest.raises(ValueError, match="needs chosen/rejected pairs"):
        PreferSettings(method="dpo").method_for(PreferenceData([], [UnpairedExample((("user", "q"),), "a", True)]))


@pytest.mark.parametrize(("change", "message"), [
    ({"stages": ("prefer", "sft")}, "in that order"),
    ({"stages": ("dpo",)}, "stages must be"),
    ({"stages": ("sft", "prefer"), "parent": "v1"}, "the new supervised adapter is the parent"),
    ({"stages": ("prefer",), "synthesize": False}, "needs preferences"),
    ({"stages": ("prefer",), "prefer": {"beta": -1}}, "beta must be"),
    ({"stages": ("prefer",), "prefer": {"gamma": 1}}, "unknown prefer settings: gamma"),
    ({"stages": ("prefer",), "synthetic": {"unanswerable_share": 2}}, "unanswerable_share"),
])
def test_a_prefer_run_is_checked_before_it_starts(change: dict[str, Any], message: str) -> None:
    from assistant.tuning.spec import RetuneSpec

    with pytest.raises(ValueError, match=message):
        RetuneSpec(pairs="p.jsonl", index_dir="i", registry_dir="r", work_dir="w", **change)
