"""The ``assistant`` command line and the offline base-model helpers."""

from __future__ import annotations

import json
import subprocess

import assistant
from assistant import base_model


def test_info_json(venv_bin, cli_env) -> None:
    env = dict(cli_env, INDEXER_NUM_THREADS="3")
    r = subprocess.run([str(venv_bin / "assistant"), "info", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["version"] == assistant.__version__
    assert info["native_threads"] == 3
    assert isinstance(info["embedding_model_package"], bool) and isinstance(info["smollm2_package"], bool)


def test_info_plain_text(venv_bin, cli_env) -> None:
    r = subprocess.run([str(venv_bin / "assistant"), "info"], capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"version: {assistant.__version__}" in r.stdout.splitlines()
    assert "native_threads: 2" in r.stdout.splitlines()


def test_no_command_is_a_usage_error(venv_bin, cli_env) -> None:
    r = subprocess.run([str(venv_bin / "assistant")], capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode == 2 and "usage:" in r.stderr


def test_cache_dir_and_local_tokenizer(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ASSISTANT_CACHE_DIR", str(tmp_path / "cache"))
    assert base_model.cache_dir() == tmp_path / "cache"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "tokenizer.json").write_text("{}", encoding="utf-8")
    # a local model directory with a tokenizer.json is used in place, nothing exported
    assert base_model.tokenizer_json(str(model_dir)) == model_dir / "tokenizer.json"
    assert not (tmp_path / "cache").exists()
