"""The tuning recipe: real NF4 4-bit LoRA training of the tiny Llama on CPU, resume
from a checkpoint, and settings validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assistant.tuning.train_settings import TuneSettings
from assistant.tuning.trainer import main, train

# peft 0.21 reads a property transformers 5 deprecated (see conftest.py)
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

QA = [
    ("What is asthma?", "Asthma is a chronic disease of the airways."),
    ("What causes diabetes?", "Thirst, frequent urination and fatigue."),
    ("What is hypertension?", "High blood pressure, a risk of stroke."),
    ("What is the mitochondria?", "The powerhouse of the cell."),
    ("How is influenza treated?", "Rest, fluids and antiviral drugs."),
    ("What is a fever?", "A body temperature above normal."),
]
SEQ_LEN = 96


@pytest.fixture(scope="module")
def packed(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A packed.npz as RaftSet.save writes it: two Q/A examples per sequence, labels
    on the answers only, positions restarting per example, padding at the end."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = []
    for q, a in QA:
        prompt = tok(f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False).input_ids
        answer = tok(f"{a}<|im_end|>", add_special_tokens=False).input_ids
        examples.append((prompt + answer, [-100] * len(prompt) + answer))
    rows: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "position_ids": []}
    for pair in (examples[i:i + 2] for i in range(0, len(examples), 2)):
        ids = [t for e, _ in pair for t in e]
        labels = [t for _, l in pair for t in l]
        positions = [p for e, _ in pair for p in range(len(e))]
        pad = SEQ_LEN - len(ids)
        assert pad >= 0, "raise SEQ_LEN"
        rows["input_ids"].append(ids + [tok.pad_token_id] * pad)
        rows["labels"].append(labels + [-100] * pad)
        positions += range(positions[-1] + 1, positions[-1] + 1 + pad)  # padding continues the last example
        rows["position_ids"].append(positions)
    path = tmp_path_factory.mktemp("packed") / "packed.npz"
    np.savez(path, **{k: np.array(v, dtype=np.int64) for k, v in rows.items()})
    return path


def settings(model: Path, data: Path, out: Path, **overrides: object) -> TuneSettings:
    base: dict[str, object] = dict(model=str(model), data=str(data), out=str(out), quantize="4bit", lora_r=8,
                                   lora_alpha=16, lora_dropout=0.0, lr=1e-2, warmup_steps=2, max_steps=30,
                                   batch_size=2, eval_every=10, eval_fraction=0.0, save_every=0, seed=0)
    return TuneSettings(**{**base, **overrides})  # type: ignore[arg-type]


def read_log(out: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text(encoding="utf-8").splitlines()]


def test_4bit_training_lowers_the_loss(tiny_model_dir: Path, packed: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = train(settings(tiny_model_dir, packed, out, eval_fraction=0.3, early_stopping_patience=5, max_steps=40))
    assert summary["quantized"] and summary["step"] == 40 and summary["start_step"] == 0
    log = read_log(out)
    losses = [float(r["loss"]) for r in log if r["kind"] == "train"]  # type: ignore[arg-type]
    assert len(losses) == 40
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses
    evals = [r for r in log if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [10, 20, 30, 40]
    assert all(float(r["tokens_per_s"]) > 0 for r in log if r["kind"] == "train")  # type: ignore[arg-type]
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "best" / "adapter_model.safetensors").is_file()
    assert summary["plot"] is not None and (out / "loss.png").is_file()  # a PNG loss curve


def test_resume_continues_from_the_latest_checkpoint(tiny_model_dir: Path, packed: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = train(settings(tiny_model_dir, packed, out, max_steps=6, save_every=3))
    assert first["step"] == 6 and first["resumed_from"] is None
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-3", "step-6"]
    assert {"adapter_model.safetensors", "adapter_config.json", "state.pt"} <= {
        p.name for p in (out / "checkpoints" / "step-6").iterdir()}

    # a second run with a longer schedule picks up at step 6, through the command line
    assert main(["--model", str(tiny_model_dir), "--data", str(packed), "--out", str(out), "--quantize", "4bit",
                 "--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0", "--lr", "1e-2", "--warmup-steps", "2",
                 "--max-steps", "9", "--batch-size", "2", "--eval-every", "10", "--eval-fraction", "0",
                 "--save-every", "3", "--seed", "0"]) == 0
    steps = [r["step"] for r in read_log(out) if r["kind"] == "train"]
    assert steps == list(range(1, 10))  # 1..6 from the first run, 7..9 from the resumed one
    assert (out / "checkpoints" / "step-9" / "state.pt").is_file()
    assert not list((out / "checkpoints").glob(".tmp-*"))

    # a checkpoint of other LoRA settings is refused, not half-loaded
    with pytest.raises(ValueError, match="lora_r"):
        train(settings(tiny_model_dir, packed, out, max_steps=12, save_every=3, lora_r=4))


def test_resume_after_sigkill(tiny_model_dir: Path, packed: Path, tmp_path: Path) -> None:
    """A training process killed with SIGKILL mid-run: the next run starts from the
    last whole checkpoint, and the log holds every step once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    args = ["--model", str(tiny_model_dir), "--data", str(packed), "--out", str(out), "--quantize", "4bit",
            "--lora-r", "8", "--lora-alpha", "16", "--lr", "1e-2", "--warmup-steps", "2", "--max-steps", "100000",
            "--batch-size", "2", "--eval-every", "0", "--eval-fraction", "0", "--save-every", "3", "--seed", "0"]
    child = subprocess.Popen([sys.executable, "-m", "assistant.tuning.trainer", *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoints" / "step-6" / "state.pt").is_file():
            assert child.poll() is None and time.monotonic() < deadline, "no second checkpoint"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    logged = [r["step"] for r in read_log(out) if r["kind"] == "train"]
    last = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*") if (p / "state.pt").is_file())
    assert last >= 6 and max(logged) >= last

    summary = train(settings(tiny_model_dir, packed, out, max_steps=last + 3, save_every=3))
    assert summary["start_step"] == last and summary["resumed_from"].endswith(f"step-{last}")
    steps = [r["step"] for r in read_log(out) if r["kind"] == "train"]
    assert steps == list(range(1, last + 4))  # steps after the checkpoint ran again, once


def test_early_stopping_stops_when_eval_loss_rises(tiny_model_dir: Path, packed: Path, tmp_path: Path) -> None:
    # a learning rate this high overfits six examples at once: eval loss rises after the first eval
    summary = train(settings(tiny_model_dir, packed, tmp_path / "run", lr=0.3, warmup_steps=1, max_steps=60,
                             eval_every=2, eval_fraction=0.34, early_stopping_patience=2))
    assert summary["stopped_early"] and summary["step"] < 60
    evals = [r for r in read_log(tmp_path / "run") if r["kind"] == "eval"]
    assert summary["best_step"] == min(evals, key=lambda r: r["eval_loss"])["step"]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"quantize": "8bit"}, "quantize must be one of"),
    ({"lora_r": 0}, "lora_r must be at least 1"),
    ({"warmup_steps": 30}, "warmup_steps"),
    ({"eval_fraction": 0.9}, "eval_fraction must be in"),
    ({"lora_dropout": 1.0}, "lora_dropout"),
    ({"lr": 0.0}, "lr must be in"),
    ({"save_every": -1}, "save_every must be 0 or more"),
    ({"early_stopping_patience": 2, "eval_fraction": 0.0}, "needs an eval set"),
    ({"precision": "fp8"}, "precision must be one of"),
])
def test_bad_settings_raise(tmp_path: Path, overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings(tmp_path, tmp_path / "packed.npz", tmp_path / "out", **overrides)


def test_bad_data_raises(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no packed data"):
        train(settings(tiny_model_dir, tmp_path / "missing.npz", tmp_path / "out"))
    np.savez(tmp_path / "partial.npz", input_ids=np.zeros((2, 8), dtype=np.int64))
    with pytest.raises(ValueError, match="lacks labels, position_ids"):
        train(settings(tiny_model_dir, tmp_path / "partial.npz", tmp_path / "out"))


def test_lr_range_test_suggests_a_rate(tiny_model_dir: Path, packed: Path, tmp_path: Path) -> None:
    from assistant.tuning.lr_range import lr_range_test

    out = tmp_path / "range"
    result = lr_range_test(settings(tiny_model_dir, packed, out), start=1e-5, end=10.0, steps=40)
    rows = json.loads((out / "lr_range.json").read_text())["rows"]
    assert 5 < result["steps"] <= 40 and len(rows) == result["steps"]
    assert [r["lr"] for r in rows] == sorted(r["lr"] for r in rows)  # rising
    lowest = min(rows, key=lambda r: r["smoothed"])
    assert result["suggested_lr"] == pytest.approx(lowest["lr"] / 10)
    assert rows[0]["smoothed"] > lowest["smoothed"]  # the loss fell somewhere in the range
    assert (out / "lr_range.png").is_file() and not (out / "checkpoints").exists()
    with pytest.raises(ValueError, match="0 < start < end"):
        lr_range_test(settings(tiny_model_dir, packed, out), start=1.0, end=0.1)


def test_data_parallel_under_torchrun(tiny_model_dir: Path, packed: Path, tmp_path: Path) -> None:
    """Two processes (gloo on CPU, as torchrun or accelerate launch starts them) train one
    run: one log with every step once, one adapter, and the loss falls."""
    import subprocess
    import sys

    out = tmp_path / "ddp"
    args = ["--model", str(tiny_model_dir), "--data", str(packed), "--out", str(out), "--quantize", "4bit",
            "--lora-r", "8", "--lora-alpha", "16", "--lr", "1e-2", "--warmup-steps", "2", "--max-steps", "20",
            "--batch-size", "1", "--eval-every", "0", "--eval-fraction", "0", "--save-every", "10", "--seed", "0"]
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "assistant.tuning.trainer", *args], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{"):done.stdout.index("}") + 1])
    assert summary["processes"] == 2 and summary["step"] == 20
    losses = [float(r["loss"]) for r in read_log(out) if r["kind"] == "train"]  # type: ignore[arg-type]
    assert len(losses) == 20 and np.mean(losses[-3:]) < 0.95 * np.mean(losses[:3]), losses
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-10", "step-20"]
