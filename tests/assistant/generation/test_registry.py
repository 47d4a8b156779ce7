"""The adapter registry: versions with manifests, gate decisions, atomic activation
and rollback, refusal of a rejected adapter and of another base model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.generation.registry import AdapterRegistry, RegistryError, model_hash


def fake_adapter(folder: Path, marker: str = "a") -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tiny"}))
    (folder / "adapter_model.safetensors").write_bytes(marker.encode() * 64)
    return folder


def report(accepted: bool) -> dict[str, object]:
    return {"accepted": accepted, "reason": "because", "domain": {"gain": 1.0}, "drift": {"drift": 0.01}}


def test_register_versions_and_manifest(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "reg")
    first = registry.register(fake_adapter(tmp_path / "a1"), base_model="tiny", base_model_hash="h1",
                              data_hash="d1", settings={"lr": 0.1}, metrics={"loss": 1.0})
    second = registry.register(fake_adapter(tmp_path / "a2", "b"), base_model="tiny", base_model_hash="h1")
    assert (first, second) == ("v1", "v2") and registry.names() == ["v1", "v2"]
    manifest = registry.manifest("v1")
    assert manifest["base_model_hash"] == "h1" and manifest["data_hash"] == "d1" and manifest["settings"] == {"lr": 0.1}
    assert manifest["gate"]["decision"] == "pending" and manifest["created"].endswith("Z")
    assert (tmp_path / "reg" / "v1" / "adapter_model.safetensors").read_bytes() == b"a" * 64
    assert not [p for p in (tmp_path / "reg").iterdir() if p.name.startswith(".tmp")]
    with pytest.raises(ValueError, match="already registered"):
        registry.register(fake_adapter(tmp_path / "a3"), base_model="tiny", base_model_hash="h1", name="v1")
    with pytest.raises(ValueError, match="not a peft adapter"):
        registry.register(tmp_path, base_model="tiny", base_model_hash="h1")


def test_activation_follows_the_gate_and_rolls_back(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "reg")
    for n in (1, 2, 3):
        registry.register(fake_adapter(tmp_path / f"a{n}"), base_model="tiny", base_model_hash="h1")
    with pytest.raises(RegistryError, match="pending"):
        registry.activate("v1", base_model_hash="h1")
    registry.record_gate("v1", report(True))
    registry.record_gate("v2", report(True))
    registry.record_gate("v3", report(False))
    registry.activate("v1", base_model_hash="h1")
    registry.activate("v2", base_model_hash="h1")
    assert registry.active() == "v2"
    # a rejection leaves the active adapter as it was
    with pytest.raises(RegistryError, match="rejected by the gate"):
        registry.activate("v3", base_model_hash="h1")
    assert registry.active() == "v2"
    assert registry.manifest("v3")["gate"] == {"decision": "rejected", "reason": "because", "report": report(False)}
    assert registry.previous() == "v1" and registry.active() == "v2"  # a peek changes nothing
    assert registry.rollback() == "v1" and registry.active() == "v1"
    assert registry.rollback() is None and registry.active() is None
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback()
    registry.activate("v3", base_model_hash="h1", force=True)
    assert AdapterRegistry(tmp_path / "reg").active() == "v3"  # persisted
    assert [m["name"] for m in registry.list() if m["active"]] == ["v3"]


def test_another_base_model_is_refused(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "reg")
    registry.register(fake_adapter(tmp_path / "a"), base_model="other", base_model_hash="h-other")
    registry.record_gate("v1", report(True))
    with pytest.raises(RegistryError, match="trained on base model other"):
        registry.activate("v1", base_model_hash="h-mine")
    assert registry.active() is None


def test_unknown_and_hand_placed_adapters(tmp_path: Path) -> None:
    registry = AdapterRegistry(tmp_path / "reg")
    fake_adapter(tmp_path / "reg" / "handmade")
    assert registry.manifest("handmade")["gate"]["decision"] == "unmanaged"
    registry.activate("handmade", base_model_hash="anything")
    assert registry.active() == "handmade"
    for bad in ("nope", "../reg", ".lock"):
        with pytest.raises(RegistryError, match="no adapter"):
            registry.activate(bad)


def test_model_hash_tracks_weights(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"1234")
    (folder / "notes.txt").write_text("ignored")
    first = model_hash(folder)
    (folder / "notes.txt").write_text("still ignored")
    assert model_hash(folder) == first
    (folder / "model.safetensors").write_bytes(b"1235")
    assert model_hash(folder) != first
    with pytest.raises(FileNotFoundError):
        model_hash(tmp_path / "missing")
    # a hub id (for users with a network) is identified by its name
    assert model_hash("HuggingFaceTB/SmolLM2-135M-Instruct") == model_hash("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert model_hash("HuggingFaceTB/SmolLM2-135M-Instruct") != model_hash("HuggingFaceTB/SmolLM2-360M-Instruct")
