"""Loading a registered adapter into the served model: a failed load leaves the model as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from assistant.generation.base import GenerationSettings
from assistant.generation.local import LocalGenerator

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

QUESTION = "What is asthma?"


@pytest.mark.parametrize("first", [True, False], ids=["as-the-first-adapter", "beside-a-loaded-one"])
def test_an_adapter_that_fails_to_load_leaves_nothing_attached(tiny_model_dir: Path, tiny_adapter_dir: Path,
                                                               tmp_path: Path, first: bool) -> None:
    shutil.copytree(tiny_adapter_dir / "demo", tmp_path / "demo")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_adapter_dir / "demo", broken)
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # cut off mid-file, as by a full disk
    generator = LocalGenerator(GenerationSettings(model=str(tiny_model_dir), adapters_dir=tmp_path, device="cpu",
                                                  max_new_tokens=12))
    prompt = [generator.chat_prompt([{"role": "user", "content": QUESTION}])]
    base = [r.text for r in generator.generate(prompt)]
    if not first:
        tuned = [r.text for r in generator.generate(prompt, adapter="demo")]
    for _ in range(2):  # the same clear failure again, not "adapter already exists"
        with pytest.raises(Exception) as failed:
            generator.load_adapter("broken")
        assert "already" not in str(failed.value)
    assert [r.text for r in generator.generate(prompt)] == base  # the base model is as it was
    if not first:
        assert [r.text for r in generator.generate(prompt, adapter="demo")] == tuned
    assert [r.text for r in generator.generate(prompt)] == base
    assert "broken" not in getattr(generator.model, "peft_config", {})
    fresh = LocalGenerator(GenerationSettings(model=str(tiny_model_dir), adapters_dir=tmp_path, device="cpu",
                                              max_new_tokens=12))
    # and a good adapter still loads with its own weights
    assert [r.text for r in generator.generate(prompt, adapter="demo")] == [
        r.text for r in fresh.generate(prompt, adapter="demo")]
