"""General drift, offline: how far an adapter has moved the model away from the base
model on general text (over-tuning), with no judge and no network.

The base model answers a fixed set of general prompts (``probes/general.json``) once;
the drift is the relative rise in perplexity, adapter over base, of those answers and
of a few paragraphs of plain English, whichever is larger.

    drift = general_drift(generator, "v3", cache=registry_root / ".probe" / "base.json")
    drift["drift"]          # 0.08: perplexity 8% higher with the adapter
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from assistant.evaluation.answers import answer_all, chat_prompts
from assistant.generation.base import TextGenerator

PROBE_PATH = Path(__file__).parent / "probes" / "general.json"
MAX_DRIFT = 0.2
"""The default bound on drift: the tuning gate's, and the checkpoint curve's."""
PROBE_MAX_NEW_TOKENS = 48
PROBE_BATCH_SIZE = 8


def load_probe(path: Path = PROBE_PATH) -> dict[str, list[str]]:
    probe = json.loads(path.read_text(encoding="utf-8"))
    return {"prompts": list(probe["prompts"]), "texts": list(probe["texts"])}


def perplexity(generator: TextGenerator, prompts: Sequence[str], texts: Sequence[str], adapter: str | None) -> float:
    nll, tokens = generator.continuation_nll(list(prompts), list(texts), adapter=adapter)
    return math.exp(nll / max(tokens, 1))


def base_probe_answers(generator: TextGenerator, probe: dict[str, list[str]], prompts: list[str], cache: Path | None,
                       *, max_new_tokens: int, batch_size: int) -> list[str]:
    """The base model's answers to the probe prompts, kept in ``cache`` (one file per
    base model) since they never change."""
    if cache is not None and cache.is_file():
        saved = json.loads(cache.read_text(encoding="utf-8"))
        if saved.get("prompts") == probe["prompts"]:
            return list(saved["answers"])
    if generator.active_adapter is not None:
        raise ValueError("the probe's base answers need the base model; deactivate the adapter first")
    answers = answer_all(generator, prompts, None, max_new_tokens=max_new_tokens, batch_size=batch_size)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"prompts": probe["prompts"], "answers": answers}), encoding="utf-8")
        tmp.replace(cache)
    return answers


def general_drift(generator: TextGenerator, adapter: str, *, cache: Path | None = None,
                  max_new_tokens: int = PROBE_MAX_NEW_TOKENS, batch_size: int = PROBE_BATCH_SIZE,
                  probe: dict[str, list[str]] | None = None) -> dict[str, float]:
    """Perplexities of the probe under base and adapter, and ``drift`` (the larger relative rise)."""
    probe = probe or load_probe()
    prompts = chat_prompts(generator, probe["prompts"])
    answers = base_probe_answers(generator, probe, prompts, cache, max_new_tokens=max_new_tokens,
                                 batch_size=batch_size)
    blank = [""] * len(probe["texts"])
    result = {
        "answers_ppl_base": perplexity(generator, prompts, answers, None),
        "answers_ppl_adapter": perplexity(generator, prompts, answers, adapter),
        "text_ppl_base": perplexity(generator, blank, probe["texts"], None),
        "text_ppl_adapter": perplexity(generator, blank, probe["texts"], adapter),
    }
    result["drift"] = max(result["answers_ppl_adapter"] / result["answers_ppl_base"],
                          result["text_ppl_adapter"] / result["text_ppl_base"]) - 1.0
    return {k: round(v, 4) for k, v in result.items()}
