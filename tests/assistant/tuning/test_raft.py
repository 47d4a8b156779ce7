"""The RAFT set builder on a real index (bundled MiniLM, SQLite, FAISS) and the tiny ChatML tokenizer."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from assistant.grounding.claims import parse_citations
from assistant.grounding.passages import build_messages
from assistant.tuning.pairs import QAPair, read_pairs
from assistant.tuning.raft import ABSTAIN_ANSWER, RaftSet, RaftSettings, build_raft_set, jaccard
from indexer.loaders import Document

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DOCS = {
    "asthma": "Asthma is a chronic disease of the airways that causes wheezing, coughing and shortness of breath.",
    # a near copy of the asthma note: it must never be shown as a distractor beside it
    "asthma-copy": "Asthma is a chronic disease of the airways that causes wheezing, coughing and shortness of breath!!",
    "kidney": "The kidneys filter waste from the blood and make urine, which leaves the body through the bladder.",
    "flu": "Influenza is treated with rest, fluids and sometimes antiviral drugs such as oseltamivir.",
    "heart": "Heart failure means the heart cannot pump enough blood to meet the needs of the body.",
    "bp": "Hypertension, or high blood pressure, raises the risk of heart disease, stroke and kidney damage.",
    "diabetes": "Diabetes causes thirst, frequent urination and fatigue because blood sugar stays too high.",
    "migraine": "Migraine headaches can last from four hours to three days and often come with nausea.",
    "vaccine": "Vaccines train the immune system to recognize a virus or a bacterium before an infection.",
    "antibiotics": "Antibiotics kill bacteria but do not work against viruses such as the common cold.",
    "dementia": "Alzheimer's disease is the most common cause of dementia in older adults.",
    "mito": "The mitochondria is the powerhouse of the cell and makes most of its chemical energy.",
}

PAIRS = [
    QAPair("What does asthma cause?", "Asthma causes wheezing, coughing and shortness of breath."),
    QAPair("What do the kidneys do?", "They filter waste from the blood and make urine."),
    QAPair("How is influenza treated?", "With rest, fluids and sometimes antiviral drugs."),
    QAPair("What is heart failure?", "The heart cannot pump enough blood for the body."),
    QAPair("What does high blood pressure raise the risk of?", "Heart disease, stroke and kidney damage."),
    QAPair("What are symptoms of diabetes?", "Thirst, frequent urination and fatigue."),
    QAPair("How long can a migraine last?", "From four hours to three days."),
    QAPair("How do vaccines work?", "They train the immune system to recognize a virus or a bacterium."),
    QAPair("Do antibiotics work against the common cold?", "No, antibiotics do not work against viruses."),
    QAPair("What is the most common cause of dementia?", "Alzheimer's disease [3]."),
]
# an exact duplicate once normalized (case, spacing), a near duplicate (one word added), a leaked pair
EXACT_DUP = QAPair("what do the  kidneys do?", "They filter waste from the blood and make urine.")
NEAR_DUP = QAPair("What do vaccines do?",
                  "They train the immune system to recognize a virus or a bacterium before an infection.")
NEAR_DUP_OF = QAPair("What do vaccines do?",
                     "They train the immune system to recognize a virus or a bacterium before an infection arrives.")
LEAKED = QAPair("What does the mitochondria do?",
                "The mitochondria is the powerhouse of the cell and makes most of its chemical energy.")
EVAL_TEXTS = ["Q: which organelle? A: the mitochondria is the powerhouse of the cell and makes most of its energy."]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    index_module = pytest.importorskip("indexer.index", reason="the index needs faiss and sentence-transformers")
    from indexer.settings import IndexSettings

    settings = dataclasses.replace(IndexSettings.from_env(), near_duplicates="keep")
    with index_module.Index.open(tmp_path_factory.mktemp("raft") / "index", settings) as idx:
        idx.ingest_documents([Document(d, t, f"notes/{d}.md", {"format": "md"}) for d, t in DOCS.items()])
        yield idx


@pytest.fixture(scope="module")
def raft(index, tiny_model_dir: Path) -> RaftSet:
    pairs = PAIRS + [EXACT_DUP, NEAR_DUP_OF, NEAR_DUP, LEAKED]
    return build_raft_set(pairs, index, tiny_model_dir, eval_texts=EVAL_TEXTS,
                          settings=RaftSettings(seq_len=2048), malformed=[("qa.jsonl:3", "invalid JSON")])


def test_duplicates_and_contaminated_pairs_are_removed(raft: RaftSet) -> None:
    questions = [e.question for e in raft.examples]
    assert questions == [p.question for p in PAIRS] + [NEAR_DUP_OF.question]
    r = raft.report
    assert (r["pairs_in"], r["malformed"], r["exact_duplicates"], r["near_duplicates"], r["contaminated"]) == (14, 1, 1, 1, 1)
    assert r["examples_out"] == 11 == r["with_oracle"] + r["without_oracle"]
    assert r["dropped_over_seq_len"] == 0 and r["sequences"] == raft.packed.num_sequences
    assert 0 < r["packing_efficiency"] <= 1


def test_citations_point_at_the_oracle_and_distractors_differ_from_it(raft: RaftSet) -> None:
    for example in raft.examples:
        numbers = [p.number for p in example.passages]
        assert numbers == list(range(1, len(numbers) + 1))
        if example.oracle_number is None:
            assert example.target == ABSTAIN_ANSWER and len(example.passages) == 3
            continue
        assert len(example.passages) == 4
        assert parse_citations(example.target) == [example.oracle_number]  # the curated "[3]" is gone
        oracle = example.passages[example.oracle_number - 1]
        for p in example.passages:
            if p.number != example.oracle_number:
                assert p.text != oracle.text and jaccard(p.text, oracle.text) < 0.8


def test_prompts_are_the_serving_prompts_and_only_targets_are_learned(raft: RaftSet, hf_tiny) -> None:
    packed = raft.packed
    for row, (indices, lengths) in enumerate(zip(packed.example_indices, packed.example_lengths, strict=True)):
        offset = 0
        for i, length in zip(indices, lengths, strict=True):
            example = raft.examples[i]
            ids = packed.input_ids[row, offset : offset + length]
            labels = packed.labels[row, offset : offset + length]
            learned = labels != -100
            # the masked tokens are one prefix, and every unmasked label is its input token
            assert learned.any() and not learned[: int(np.argmax(learned))].any()
            assert learned[int(np.argmax(learned)):].all()
            assert (labels[learned] == ids[learned]).all()
            assert (packed.position_ids[row, offset : offset + length] == np.arange(length)).all()
            decode = lambda t: hf_tiny.decode([int(x) for x in t], skip_special_tokens=False)  # noqa: E731
            assert decode(ids[learned]) == example.target + "<|im_end|>\n"
            system, user = build_messages(example.question, example.passages)
            assert decode(ids[~learned]) == (f"<|im_start|>system\n{system['content']}<|im_end|>\n"
                                             f"<|im_start|>user\n{user['content']}<|im_end|>\n<|im_start|>assistant\n")
            offset += length


def test_oracle_rate_matches_the_setting(index, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)  # loaded once, passed as an object
    shown = total = 0
    for seed in range(20):
        built = build_raft_set(PAIRS, index, tokenizer, settings=RaftSettings(seed=seed, seq_len=2048, k_distractors=1))
        shown += built.report["with_oracle"]
        total += built.report["examples_out"]
        # the near copy of the asthma note is the oracle or left out with it, never a distractor
        asthma = built.examples[0]
        notes = [p for p in asthma.passages if p.doc_id.startswith("asthma")]
        if asthma.oracle_number is None:
            assert notes == []
        else:
            assert [p.number for p in notes] == [asthma.oracle_number]
    assert total == 200 and abs(shown / total - 0.8) < 0.1


def test_a_given_context_is_the_oracle(index, tiny_model_dir: Path) -> None:
    context = "Tinnitus is a ringing or buzzing in the ears that nobody else can hear."
    pair = QAPair("What is tinnitus?", "A ringing in the ears.", context=context, source="faq/ears.md")
    built = build_raft_set([pair], index, tiny_model_dir, settings=RaftSettings(oracle_probability=1.0, seq_len=2048))
    (example,) = built.examples
    assert example.oracle_number is not None and example.target == f"A ringing in the ears. [{example.oracle_number}]"
    oracle = example.passages[example.oracle_number - 1]
    assert (oracle.text, oracle.source) == (context, "faq/ears.md") and len(example.passages) == 4


def test_save_writes_examples_packed_and_report(raft: RaftSet, tmp_path: Path) -> None:
    out = raft.save(tmp_path / "set")
    lines = (out / "examples.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["target"] for line in lines] == [e.target for e in raft.examples]
    with np.load(out / "packed.npz") as packed:
        assert (packed["labels"] == raft.packed.labels).all() and set(packed.files) == {"input_ids", "labels", "position_ids"}
    assert json.loads((out / "report.json").read_text())["examples_out"] == 11


def test_an_all_filtered_set_says_which_filter(index, tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="decontamination"):
        build_raft_set([LEAKED, LEAKED], index, tiny_model_dir, eval_texts=EVAL_TEXTS)
    with pytest.raises(ValueError, match="no pairs given"):
        build_raft_set([], index, tiny_model_dir)


@pytest.mark.parametrize("kwargs", [{"oracle_probability": 1.5}, {"k_distractors": -1}, {"seq_len": 0},
                                    {"near_duplicate_threshold": 0.0}, {"decontam_ngram": 0}])
def test_settings_are_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        RaftSettings(**kwargs)  # type: ignore[arg-type]


def test_malformed_lines_are_reported_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    lines = [
        json.dumps({"question": "What is asthma?", "answer": "A disease of the airways.", "tags": ["lungs"]}),
        "{not json",
        json.dumps({"question": "No answer here?"}),
        "",
        json.dumps({"question": "   ", "answer": "empty question"}),
        json.dumps({"question": "Q?", "answer": 42}),
        json.dumps(["a", "list"]),
        json.dumps({"question": "Q?", "answer": "A.", "tags": "lungs"}),
        json.dumps({"question": "With context?", "answer": "Yes.", "context": "Some text.", "id": "c1"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pairs, problems = read_pairs(path)
    assert [p.question for p in pairs] == ["What is asthma?", "With context?"]
    assert pairs[0].tags == ("lungs",) and pairs[1].context == "Some text." and pairs[1].id == "c1"
    assert [where for where, _ in problems] == [f"{path}:{n}" for n in (2, 3, 5, 6, 7, 8)]
    reasons = [reason for _, reason in problems]
    assert "invalid JSON" in reasons[0] and "missing 'answer'" in reasons[1] and "empty" in reasons[2]


def test_prepare_command(index, tiny_model_dir: Path, tmp_path: Path, venv_bin, cli_env) -> None:
    """``assistant prepare`` end to end: bad lines reported, contaminated pair removed, files written."""
    import subprocess

    pairs = tmp_path / "qa.jsonl"
    lines = [json.dumps({"question": p.question, "answer": p.answer}) for p in PAIRS + [LEAKED]]
    lines.insert(2, "{not json")
    pairs.write_text("\n".join(lines) + "\n")
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"question": EVAL_TEXTS[0]}) + "\n")
    r = subprocess.run([str(venv_bin / "assistant"), "prepare", str(pairs), "--index", str(index.directory),
                        "--out", str(tmp_path / "set"), "--eval", str(eval_file), "--tokenizer", str(tiny_model_dir),
                        "--seq-len", "2048", "--json"], capture_output=True, text=True, env=cli_env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"skipped {pairs}:3: " in r.stderr
    report = json.loads(r.stdout)
    assert report["malformed"] == 1 and report["contaminated"] == 1 and report["examples_out"] == len(PAIRS)
    assert {p.name for p in (tmp_path / "set").iterdir()} >= {"examples.jsonl", "packed.npz", "report.json"}
