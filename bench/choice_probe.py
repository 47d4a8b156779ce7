"""Does the base model hold PubMedQA's yes/no/maybe decision anywhere a small head could
read it? A linear probe on its hidden states, beside the majority class.

    .venv/bin/python bench/choice_probe.py            # ~10 minutes of 2 cores: 500 prompts, one pass each

The choice head (``assistant calibrate --choices``) reads the three choices' mean
log-likelihoods and learned "always yes". This asks the stronger question: for each
PubMedQA item, the serving choice prompt (the question, its top-3 passages from the set's
index, "Answer with one of: yes, no, maybe.") runs once through the bundled model, and a
multinomial logistic regression reads the prompt's last-position hidden state (final and
middle layer) and the mean of the final layer. Its regularisation and class weighting are
chosen by 5-fold cross-validation on the calibration side (400 items); the held-out 100
are scored once with that choice. If neither beats the majority class, no head over this
model's states can, and only an adapter trained on the decision can learn it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import env_info, env_markdown, md_table, parse_args, write_results  # noqa: E402

CHOICES = ["yes", "no", "maybe"]
GRID = [(c, w) for c in (0.001, 0.01, 0.1, 1.0) for w in (None, "balanced")]


def features(split: str, limit: int | None) -> tuple[np.ndarray, list[str]]:
    import torch

    from assistant.evaluation.answers import retrieve
    from assistant.evaluation.builtin_sets import builtin_set, set_index
    from assistant.generation.backends import make_generator
    from assistant.generation.base import GenerationSettings
    from assistant.generation.model_files import cache_dir
    from assistant.grounding.choices import choice_messages
    from indexer.index import Index

    generator: Any = make_generator(GenerationSettings())
    model = generator._transformer()
    items, beir = builtin_set("pubmedqa", split=split, limit=limit)
    with Index.open(set_index("pubmedqa", beir, cache_dir() / "eval-index")) as index:
        passages = retrieve(index, items, 3)
    rows = []
    for item, found in zip(items, passages, strict=True):
        prompt = generator.chat_prompt(choice_messages(item.question, found, CHOICES))
        ids = generator.tokenizer(prompt, add_special_tokens=False).input_ids
        with torch.inference_mode():
            states = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        rows.append(torch.cat([states[-1][0, -1], states[len(states) // 2][0, -1], states[-1][0].mean(0)])
                    .float().numpy())
    return np.array(rows), [i.answer for i in items]


def main(argv: list[str] | None = None) -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    args = parse_args(__doc__, argv)
    limit = 60 if args.quick else None  # --quick: does it run (the figures mean nothing at this size)
    (xc, yc), (xh, yh) = features("calibration", limit), features("heldout", limit)

    def probe(c: float, weight: str | None) -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000, class_weight=weight))

    cv = {(c, w): cross_val_predict(probe(c, w), xc, yc, cv=5) for c, w in GRID}
    c, w = max(cv, key=lambda k: f1_score(yc, cv[k], average="macro"))
    held = probe(c, w).fit(xc, yc).predict(xh)
    majority = max(set(yc), key=yc.count)
    results = {
        "env": env_info(), "calibration_items": len(yc), "heldout_items": len(yh), "chosen": {"C": c, "class_weight": w},
        "probe": {"cv_accuracy": accuracy_score(yc, cv[(c, w)]), "cv_macro_f1": f1_score(yc, cv[(c, w)], average="macro"),
                  "heldout_accuracy": accuracy_score(yh, held), "heldout_macro_f1": f1_score(yh, held, average="macro")},
        "majority": {"label": majority, "cv_accuracy": yc.count(majority) / len(yc),
                     "heldout_accuracy": yh.count(majority) / len(yh),
                     "heldout_macro_f1": f1_score(yh, [majority] * len(yh), average="macro")},
    }
    p, m = results["probe"], results["majority"]
    table = md_table(["rule", "calibration (5-fold) accuracy", "held-out accuracy", "held-out macro-F1"], [
        [f"probe (C={c}, class_weight={w}; chosen by CV macro-F1)", f"{p['cv_accuracy']:.3f}",
         f"{p['heldout_accuracy']:.3f}", f"{p['heldout_macro_f1']:.3f}"],
        [f"always {majority!r}", f"{m['cv_accuracy']:.3f}", f"{m['heldout_accuracy']:.3f}", f"{m['heldout_macro_f1']:.3f}"]])
    path = write_results("choice_probe", results, "\n\n".join([table, env_markdown(results["env"])]))
    print(table)
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
