"""``assistant eval`` against a real index and the tiny model trained to answer
"Pangolins eat ants and termites [1]." (see server_harness.py): known metric values on a
one-question set, and the CLI writing every report file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from assistant.evaluation.run import EvalSettings, run_eval
from assistant.evaluation.sets import EvalItem
from assistant.generation.base import GenerationSettings
from assistant.generation.local import LocalGenerator
from indexer.index import Index
from server_harness import DOCS

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

ITEM = {"id": "q1", "question": "What do pangolins eat?", "answer": "ants and termites", "answer_type": "extractive",
        "doc_ids": ["pangolin"]}


@pytest.fixture()
def index_dir(tmp_path: Path) -> Path:
    with Index.open(tmp_path / "index") as index:
        index.ingest_documents(DOCS)
    return tmp_path / "index"


def test_known_values_on_one_question(citing_model: Path, index_dir: Path, tmp_path: Path) -> None:
    generator = LocalGenerator(GenerationSettings(model=str(citing_model), device="cpu"))
    with Index.open(index_dir) as index:
        report = run_eval(generator, {"pangolins": ([EvalItem(**{**ITEM, "doc_ids": ("pangolin",)})], index)},
                          tmp_path / "report", adapter=None, settings=EvalSettings(max_new_tokens=24))
    assert report["systems"] == ["base", "base+rag"]  # no adapter given: its systems are left out
    rows = report["sets"]["pangolins"]
    assert rows["recall_at_k"] == 1.0
    rag = rows["base+rag"]
    # "Pangolins eat ants and termites [1]." vs "ants and termites": P = 3/5, R = 1, F1 = 0.75
    assert rag["raw_accuracy"] == pytest.approx(0.75) and rag["accuracy"] == pytest.approx(0.75)
    assert rag["abstention_rate"] == 0.0 and rag["citation_precision"] == 1.0 and rag["unsupported_rate"] == 0.0
    assert rag["exact_match"] == 0.0 and "rouge_l" not in rag  # extractive: EM, and "Pangolins eat" is extra
    assert rag["unanswerable_n"] == 1 and rag["hallucination_rate"] in (0.0, 1.0)
    assert rows["base"]["n"] == 1 and 0.0 <= rows["base"]["accuracy"] <= 1.0
    assert {Path(p).name for p in report["files"]} == {"report.json", "report.md", "report.png", "risk_coverage.png",
                                                       "answers.jsonl"}
    answers = [json.loads(line) for line in (tmp_path / "report" / "answers.jsonl").read_text().splitlines()]
    assert [(a["system"], a["split"]) for a in answers] == [("base", "closed-book"), ("base+rag", "answerable"),
                                                            ("base+rag", "unanswerable")]
    shown = answers[1]
    assert shown["set"] == "pangolins" and shown["shown"] is True and shown["reasons"] == []
    assert shown["score"] == 0.75 and shown["passages"][0] == "pangolin"
    assert "pangolin" not in answers[2]["passages"]  # the unanswerable split: its gold document left out
    assert "| pangolins | base+rag | 1 | 0.750 | 0.750 | 0.000 |  |" in (tmp_path / "report" / "report.md").read_text()


def test_yes_no_maybe_items_by_choice_scoring(citing_model: Path, index_dir: Path, tmp_path: Path) -> None:
    """With ``choices`` the rag systems answer yes/no/maybe items as /v1/ask with choices
    does: one of the three, shown with a citation, scored by decision accuracy."""
    generator = LocalGenerator(GenerationSettings(model=str(citing_model), device="cpu"))
    item = EvalItem("q2", "Do pangolins eat termites?", "yes", "yes_no_maybe", ("pangolin",))
    with Index.open(index_dir) as index:
        report = run_eval(generator, {"choice": ([item], index)}, tmp_path / "report", adapter=None,
                          systems=["base+rag"], settings=EvalSettings(max_new_tokens=8, choices=True))
    rag = report["sets"]["choice"]["base+rag"]
    answers = [json.loads(line) for line in (tmp_path / "report" / "answers.jsonl").read_text().splitlines()]
    answerable = next(a for a in answers if a["split"] == "answerable")
    assert answerable["answer"] in ("yes", "no", "maybe") and answerable["shown"] is True
    assert answerable["shown_answer"].startswith(answerable["answer"] + " [")
    assert rag["accuracy"] == float(answerable["answer"] == "yes") and rag["abstention_rate"] == 0.0


def test_cli_writes_the_report_and_names_a_bad_line(citing_model: Path, index_dir: Path, tmp_path: Path,
                                                    venv_bin: Path, cli_env: dict[str, str]) -> None:
    good = tmp_path / "set.jsonl"
    good.write_text(json.dumps(ITEM) + "\n" + json.dumps({**ITEM, "id": "q2"}) + "\n")
    env = {**cli_env, "ASSISTANT_MODEL": str(citing_model)}
    base = [str(venv_bin / "assistant"), "eval", "--index", str(index_dir), "--data-dir", str(tmp_path / "svc")]
    r = subprocess.run([*base, "--set", str(good), "--limit", "1", "--max-new-tokens", "16", "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["sets"]["set"]["base+rag"]["n"] == 1  # --limit
    assert (tmp_path / "out" / "report.png").is_file() and "| set | base+rag |" in r.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ITEM) + "\n" + json.dumps({**ITEM, "answer_type": "essay"}) + "\n")
    r = subprocess.run([*base, "--set", str(bad), "--out", str(tmp_path / "out2")], capture_output=True, text=True,
                       env=env, timeout=600)
    assert r.returncode == 2 and "bad.jsonl:2: unknown answer_type 'essay'" in r.stderr
    r = subprocess.run([*base, "--set", str(good), "--limit", "-1", "--out", str(tmp_path / "out3")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 2 and "--limit must be 0 (every item) or more" in r.stderr


@pytest.mark.skipif(not (__import__("indexer.shared_data", fromlist=["data_dir"]).data_dir() / "pubmedqa").is_dir(),
                    reason="the shared data folder is absent")
def test_builtin_sets_name_their_documents() -> None:
    from assistant.evaluation.builtin_sets import builtin_set

    for name in ("pubmedqa", "covidqa", "tatqa"):
        items, beir = builtin_set(name, limit=50)
        assert len(items) == 50, name
        assert all(set(i.doc_ids) <= set(beir.corpus) for i in items), name  # gold passages exist in the corpus
    covid, beir = builtin_set("covidqa", limit=20)
    # an extractive answer lies inside one of its gold passages
    assert all(any(i.answer.lower() in beir.corpus[d].text.lower() for d in i.doc_ids) for i in covid)
    tat, _ = builtin_set("tatqa")
    numeric = [i for i in tat if i.answer_type == "numeric"]
    assert numeric and any(i.answer.endswith(" million") for i in numeric)
    with pytest.raises(ValueError, match="unknown built-in set"):
        builtin_set("squad")
    with pytest.raises(ValueError, match="unknown split"):
        builtin_set("pubmedqa", split="train")


@pytest.mark.skipif(not (__import__("indexer.shared_data", fromlist=["data_dir"]).data_dir() / "pubmedqa").is_dir(),
                    reason="the shared data folder is absent")
def test_held_out_split_shares_nothing_with_the_recipe_training_data() -> None:
    """The default split holds out what bench/tune_bench.py trains on: its adapter is
    scored on questions it never saw, while split="all" has them."""
    import sys

    from assistant.evaluation.builtin_sets import builtin_set

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
    import tune_bench

    trained = {pair["question"] for pair in tune_bench.curated_pairs().pairs}
    for name in ("covidqa", "pubmedqa", "medquad"):
        held, _ = builtin_set(name)
        everything, _ = builtin_set(name, split="all")
        assert held and not {i.question for i in held} & trained, name
        assert {i.question for i in everything} & trained, name  # the check above can fail
    assert len(builtin_set("pubmedqa")[0]) == 100
    # calibration and held-out never share a question; MedQuAD's calibration side is not only the
    # recipe's short training answers but also half of the untrained ones, drawn like the held-out
    for name in ("covidqa", "pubmedqa", "medquad", "tatqa"):
        held, _ = builtin_set(name)
        calibration, _ = builtin_set(name, split="calibration")
        assert calibration and not {i.id for i in held} & {i.id for i in calibration}, name
    medquad_calibration, _ = builtin_set("medquad", split="calibration")
    untrained = [i for i in medquad_calibration if i.question not in trained]
    assert len(untrained) > len(medquad_calibration) / 2
    # a fixed shuffled order: --limit samples the whole set, the same items every run
    first = [i.id for i in builtin_set("covidqa", limit=20)[0]]
    assert first == [i.id for i in builtin_set("covidqa", limit=20)[0]]
    assert len({i.doc_ids for i in builtin_set("covidqa", limit=20)[0]}) > 5


def test_checkpoint_curve_recommends_one(tiny_model_dir: Path, index_dir: Path, tmp_path: Path, venv_bin: Path,
                                         cli_env: dict[str, str]) -> None:
    """The checkpoints of a real (tiny) tuning run, through the CLI: each gets a domain
    accuracy and a drift, and the recommendation is the most accurate within the bound."""
    import numpy as np

    from assistant.tuning.train_settings import TuneSettings
    from assistant.tuning.trainer import train

    ids = np.arange(1, 65, dtype=np.int64).reshape(2, 32) % 60 + 1
    labels = ids.copy()
    labels[:, :16] = -100
    np.savez(tmp_path / "packed.npz", input_ids=ids, labels=labels, position_ids=np.tile(np.arange(32), (2, 1)))
    train(TuneSettings(model=str(tiny_model_dir), data=str(tmp_path / "packed.npz"), out=str(tmp_path / "run"),
                       quantize="none", lora_r=4, lora_alpha=8, max_steps=4, warmup_steps=1, batch_size=1,
                       eval_fraction=0.0, save_every=2, eval_every=0))
    (tmp_path / "set.jsonl").write_text(json.dumps(ITEM) + "\n")
    r = subprocess.run([str(venv_bin / "assistant"), "eval", "--set", str(tmp_path / "set.jsonl"), "--index",
                        str(index_dir), "--data-dir", str(tmp_path / "svc"), "--checkpoints", str(tmp_path / "run"),
                        "--max-new-tokens", "4", "--max-drift", "1000", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, env={**cli_env, "ASSISTANT_MODEL": str(tiny_model_dir)},
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "checkpoints.json").read_text())
    assert [row["checkpoint"] for row in result["checkpoints"]] == ["step-2", "step-4"]
    assert all(row["drift"] is not None and 0.0 <= row["accuracy"] <= 1.0 for row in result["checkpoints"])
    best = max(result["checkpoints"], key=lambda row: row["accuracy"])
    assert result["recommended"] in ("step-2", "step-4") and next(
        row for row in result["checkpoints"] if row["checkpoint"] == result["recommended"])["accuracy"] == best["accuracy"]
    assert (tmp_path / "out" / "checkpoints.png").is_file() and "<- recommended" in r.stdout


def test_adapters_side_by_side_in_one_report(tiny_model_dir: Path, tiny_adapter_dir: Path, index_dir: Path,
                                             tmp_path: Path) -> None:
    """A supervised adapter and a second one (here its copy, so every figure must agree)
    in one run: one row each, named after the adapter, with the raw hallucination rate."""
    import shutil

    registry = tmp_path / "adapters"
    for name in ("sft", "child"):
        shutil.copytree(tiny_adapter_dir / "demo", registry / name)
    generator = LocalGenerator(GenerationSettings(model=str(tiny_model_dir), device="cpu", adapters_dir=registry))
    with Index.open(index_dir) as index:
        sets = {"pangolins": ([EvalItem(**{**ITEM, "doc_ids": ("pangolin",)})], index)}
        with pytest.raises(ValueError, match="named twice"):
            run_eval(generator, sets, tmp_path / "r", adapter="sft", also=["sft"])
        report = run_eval(generator, sets, tmp_path / "report", adapter="sft", also=["child"],
                          systems=["base+rag", "adapter+rag"], settings=EvalSettings(max_new_tokens=8))
    assert report["systems"] == ["base+rag", "adapter+rag", "child+rag"] and report["also"] == ["child"]
    rows = report["sets"]["pangolins"]
    for key in ("raw_accuracy", "abstention_rate", "hallucination_rate", "raw_hallucination_rate"):
        assert rows["adapter+rag"][key] == rows["child+rag"][key], key
    assert rows["child+rag"]["raw_hallucination_rate"] in (0.0, 1.0)
    assert set(report["drifts"]) == {"sft", "child"}
    assert report["drifts"]["sft"]["drift"] == pytest.approx(report["drifts"]["child"]["drift"])
    answers = [json.loads(line) for line in (tmp_path / "report" / "answers.jsonl").read_text().splitlines()]
    assert {a["system"] for a in answers} == {"base+rag", "adapter+rag", "child+rag"}
    assert "| pangolins | child+rag | 1 |" in (tmp_path / "report" / "report.md").read_text()
