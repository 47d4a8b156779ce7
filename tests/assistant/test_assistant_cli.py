"""The ``assistant`` command line and the offline base-model helpers."""

from __future__ import annotations

import json
import subprocess

import assistant
from assistant.generation import model_files


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
    assert model_files.cache_dir() == tmp_path / "cache"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "tokenizer.json").write_text("{}", encoding="utf-8")
    # a local model directory with a tokenizer.json is used in place, nothing exported
    assert model_files.tokenizer_json(str(model_dir)) == model_dir / "tokenizer.json"
    assert not (tmp_path / "cache").exists()


def test_keys_create_list_revoke(venv_bin, cli_env, tmp_path) -> None:
    from assistant.serve.auth import KeyStore

    base = [str(venv_bin / "assistant"), "keys"]
    where = ["--index", str(tmp_path / "index"), "--data-dir", str(tmp_path / "svc")]
    r = subprocess.run([*base, "create", "--name", "ci", "--role", "editor", *where, "--json"],
                       capture_output=True, text=True, env=cli_env, timeout=120)
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    store = KeyStore(tmp_path / "svc" / "service.sqlite")
    assert store.verify(made["key"]).role == "editor"
    assert made["key"] not in (tmp_path / "svc" / "service.sqlite").read_bytes().decode("latin-1")  # hashed at rest
    listing = subprocess.run([*base, "list", *where], capture_output=True, text=True, env=cli_env, timeout=120)
    assert f"{made['key_id']}  editor  ci  live" in listing.stdout
    assert subprocess.run([*base, "revoke", made["key_id"], *where], env=cli_env, timeout=120).returncode == 0
    assert store.verify(made["key"]) is None
    bad = subprocess.run([*base, "create", "--name", "x", "--role", "root", *where], capture_output=True, text=True,
                         env=cli_env, timeout=120)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    store.close()


def test_ask_without_an_index_is_a_clear_error(venv_bin, cli_env, tmp_path) -> None:
    r = subprocess.run([str(venv_bin / "assistant"), "ask", "What is asthma?", "--index", str(tmp_path / "none")],
                       capture_output=True, text=True, env=cli_env, timeout=300)
    assert r.returncode == 2 and "no index at" in r.stderr and "indexer ingest" in r.stderr


def test_curate_exports_feedback(venv_bin, cli_env, tmp_path) -> None:
    from assistant.serve.records import Records

    records = Records(tmp_path / "svc" / "service.sqlite")
    seen = [{"role": "system", "content": "Answer from the passages."},
            {"role": "user", "content": "Passages:\n[1] (bread.txt) Yeast ferments dough.\n\nQuestion: Why does bread rise?"}]
    good = records.add_answer("What do pangolins eat?", "Ants [1].", True, [{"number": 1}], "m", None)
    wrong = records.add_answer("Why does bread rise?", "Because of salt [1].", True, [], "m", "v1", prompt=seen,
                               model_text="Because of salt.")
    records.add_feedback(good, "up", None, "k1")
    records.add_feedback(wrong, "down", "Yeast ferments the dough.", "k1")
    records.close()
    out = tmp_path / "curated"
    r = subprocess.run([str(venv_bin / "assistant"), "curate", "--index", str(tmp_path / "index"), "--data-dir",
                        str(tmp_path / "svc"), "--out", str(out), "--json"], capture_output=True, text=True,
                       env=cli_env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"feedback": 2, "pairs": 1, "preferences": 2, "up": 1, "down": 1}
    (pair,) = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert pair["question"] == "Why does bread rise?" and pair["answer"] == "Yeast ferments the dough."
    assert pair["source"] == f"feedback:{wrong}"
    from assistant.tuning.pairs import read_pairs

    assert read_pairs(out / "pairs.jsonl")[1] == []  # the curated format, as `assistant tune` reads it
    prefs = [json.loads(line) for line in (out / "preferences.jsonl").read_text().splitlines()]
    assert [p["rating"] for p in prefs] == ["up", "down"]
    assert prefs[1]["chosen"] == "Yeast ferments the dough." and prefs[1]["rejected"] == "Because of salt [1]."
    assert prefs[1]["prompt"] == seen and prefs[1]["model_text"] == "Because of salt."  # the prompt the model saw
    assert "chosen" not in prefs[0] and prefs[0]["completion"] == "Ants [1]." and prefs[0]["label"] is True
    assert prefs[0]["prompt"] == "What do pangolins eat?"  # an answer recorded without its prompt
    from assistant.tuning.preferences import read_preferences

    data = read_preferences(out / "preferences.jsonl")  # the format the prefer stage reads
    assert len(data.pairs) == 1 and len(data.unpaired) == 1 and data.pairs[0].prompt[1][1] == seen[1]["content"]


def test_adapters_cli_activate_and_rollback(venv_bin, cli_env, tmp_path) -> None:
    from assistant.generation.registry import AdapterRegistry

    registry = AdapterRegistry(tmp_path / "svc" / "adapters")
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text("{}")
        registry.register(tmp_path / name, base_model="m", base_model_hash="h", name=name)
    registry.record_gate("one", {"accepted": True, "reason": "better"})
    registry.record_gate("two", {"accepted": False, "reason": "drifted"})
    base = [str(venv_bin / "assistant"), "adapters"]
    where = ["--index", str(tmp_path / "index"), "--data-dir", str(tmp_path / "svc")]
    env = {k: v for k, v in cli_env.items() if k != "ASSISTANT_ADAPTERS_DIR"}
    assert subprocess.run([*base, "activate", "one", *where], env=env, timeout=120).returncode == 0
    refused = subprocess.run([*base, "activate", "two", *where], capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 2 and "rejected by the gate (drifted)" in refused.stderr
    listing = subprocess.run([*base, "list", *where], capture_output=True, text=True, env=env, timeout=120).stdout
    assert listing.splitlines()[0].startswith("* one") and "rejected" in listing.splitlines()[1]
    assert subprocess.run([*base, "rollback", *where], capture_output=True, text=True, env=env,
                          timeout=120).stdout.strip() == "active: base"
