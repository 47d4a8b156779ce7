"""The evaluation gate with the tiny Llama: drift is zero for an adapter that changes
nothing and positive for one that does; a rejection leaves the active adapter as it was."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from assistant.evaluation.drift import general_drift
from assistant.evaluation.sets import EvalItem
from assistant.generation.base import GenerationSettings
from assistant.generation.local import LocalGenerator
from assistant.generation.registry import AdapterRegistry, RegistryError, model_hash
from assistant.tuning.gate import GateSettings, decide, run_gate

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

ITEMS = [EvalItem("1", "What do pangolins eat?", "ants and termites", "free"),
         EvalItem("2", "Is the sky blue?", "yes", "yes_no_maybe")]


@pytest.fixture()
def registry(tiny_model_dir: Path, tiny_adapter_dir: Path, tmp_path: Path) -> AdapterRegistry:
    """v1: the random ``demo`` adapter; v2: a fresh LoRA (B = 0, so the base model's outputs)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    registry = AdapterRegistry(tmp_path / "registry")
    base_hash = model_hash(tiny_model_dir)
    registry.register(tiny_adapter_dir / "demo", base_model=str(tiny_model_dir), base_model_hash=base_hash)
    identity = tmp_path / "identity"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                       LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")).save_pretrained(identity)
    registry.register(identity, base_model=str(tiny_model_dir), base_model_hash=base_hash)
    shutil.rmtree(identity)
    return registry


def generator_for(model: Path, registry: AdapterRegistry) -> LocalGenerator:
    return LocalGenerator(GenerationSettings(model=str(model), device="cpu", adapters_dir=registry.root))


def test_drift_is_zero_without_change_and_positive_with(tiny_model_dir: Path, registry: AdapterRegistry,
                                                        tmp_path: Path) -> None:
    generator = generator_for(tiny_model_dir, registry)
    settings = {"max_new_tokens": 8}
    cache = tmp_path / "probe.json"
    unchanged = general_drift(generator, "v2", cache=cache, **settings)
    assert unchanged["drift"] == pytest.approx(0.0, abs=1e-3)
    assert unchanged["answers_ppl_base"] > 1 and unchanged["text_ppl_base"] > 1
    assert cache.is_file()  # the base answers are made once
    changed = general_drift(generator, "v1", cache=cache, **settings)
    assert changed["drift"] > 0.01
    assert changed["text_ppl_base"] == unchanged["text_ppl_base"]


def test_rejection_leaves_the_active_adapter_unchanged(tiny_model_dir: Path, registry: AdapterRegistry) -> None:
    base_hash = model_hash(tiny_model_dir)
    registry.record_gate("v2", {"accepted": True, "reason": "earlier run"})
    registry.activate("v2", base_model_hash=base_hash)
    generator = generator_for(tiny_model_dir, registry)
    strict = GateSettings(max_new_tokens=4, min_gain=50.0)  # a random model gains nothing
    report = run_gate(generator, "v1", ITEMS, None, settings=strict)
    assert not report["accepted"] and "not above the base model" in report["reason"]
    assert report["domain"]["base"]["n"] == 2 and "drift" in report["drift"]
    registry.record_gate("v1", report)
    assert registry.active() == "v2"
    with pytest.raises(RegistryError, match="rejected"):
        registry.activate("v1", base_model_hash=base_hash)
    assert registry.active() == "v2"

    lenient = GateSettings(max_new_tokens=4, min_gain=-1.0, max_drift=1e9)
    assert run_gate(generator, "v1", ITEMS, None, settings=lenient)["accepted"]


def test_decision_rules() -> None:
    settings = GateSettings(max_drift=0.1, min_gain=0.0)
    assert decide(40.0, 50.0, 0.05, settings) == (True, "domain score 40.0 → 50.0 (+10.0), general drift 5.0% ≤ 10%")
    accepted, reason = decide(40.0, 50.0, 0.2, settings)
    assert not accepted and "drift 20.0% exceeds the bound 10%" in reason
    assert not decide(40.0, 40.0, 0.0, settings)[0]
    with pytest.raises(ValueError, match="at least 1"):
        GateSettings(top_k=0)


def test_answers_come_back_in_prompt_order(tiny_model_dir: Path) -> None:
    """answer_all batches prompts of similar length together; each answer is still the
    one its own prompt got in that batch."""
    from assistant.evaluation.answers import answer_all

    generator = LocalGenerator(GenerationSettings(model=str(tiny_model_dir), device="cpu"))
    long_a, short_a = "pangolins eat ants and termites every night " * 4, "ants"
    long_b, short_b = "the sky is blue because of scattering of light " * 4, "sky"
    answers = answer_all(generator, [long_a, short_a, long_b, short_b], None,
                         max_new_tokens=6, batch_size=2)
    shorts = [r.text for r in generator.generate([short_a, short_b], max_new_tokens=6)]
    longs = [r.text for r in generator.generate([long_a, long_b], max_new_tokens=6)]
    assert answers == [longs[0], shorts[0], longs[1], shorts[1]]
    assert len(set(answers)) > 1  # the prompts got different answers, so the order is tested
