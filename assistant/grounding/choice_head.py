"""A learned choice decision: a multinomial logistic regression from the model's mean
log-likelihood of each choice to the choice, fitted on a set's training side.

    head = ChoiceHead.load(choice_head_path(index_dir, adapter=None))
    head.fits(["yes", "no", "maybe"])            # the choices it was fitted for
    head.probabilities([-0.9, -1.4, -2.2])       # one per choice, summing to 1

Contextual calibration removes the model's prior for a choice but knows nothing of the
domain's: on PubMedQA it turns the base model's weak preferences into always "yes". A
head fitted on labelled training items learns both how far to trust each choice's
likelihood and the base rates of the answers. Stored as plain JSON numbers beside the
index (``assistant calibrate --choices`` fits it), used by :func:`.choices.score_choices`
when the request's choices are the ones it was fitted for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.json_files import read_json, write_json_atomically

FORMAT = 1


def choice_head_path(index_dir: Path, adapter: str | None) -> Path:
    return Path(index_dir) / ("choices.json" if adapter is None else f"choices.{adapter}.json")


@dataclass(frozen=True)
class ChoiceHead:
    choices: tuple[str, ...]
    coef: tuple[tuple[float, ...], ...]
    """One row per choice (class), one column per choice's mean log-likelihood."""
    intercept: tuple[float, ...]
    fitted: dict[str, Any] = field(default_factory=dict)

    def fits(self, choices: Sequence[str]) -> bool:
        return tuple(c.casefold() for c in choices) == tuple(c.casefold() for c in self.choices)

    def probabilities(self, mean_logprobs: Sequence[float]) -> list[float]:
        if len(mean_logprobs) != len(self.choices):
            raise ValueError(f"{len(mean_logprobs)} scores for the head's {len(self.choices)} choices")
        logits = [b + sum(w * x for w, x in zip(row, mean_logprobs, strict=True))
                  for row, b in zip(self.coef, self.intercept, strict=True)]
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        return [e / sum(exps) for e in exps]

    def save(self, path: Path) -> Path:
        return write_json_atomically(path, {"format": FORMAT, **asdict(self)}, indent=1)  # a kill: old or new

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChoiceHead:
        if data.get("format") != FORMAT:
            raise ValueError(f"unsupported choice head format {data.get('format')!r} (expected {FORMAT})")
        try:
            head = cls(tuple(data["choices"]), tuple(tuple(map(float, row)) for row in data["coef"]),
                       tuple(map(float, data["intercept"])), dict(data.get("fitted") or {}))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed choice head: {exc}") from None
        n = len(head.choices)
        if n < 2 or len(head.coef) != n or len(head.intercept) != n or any(len(row) != n for row in head.coef):
            raise ValueError("malformed choice head: one row and one column per choice expected")
        return head

    @classmethod
    def load(cls, path: Path, *, model: str | None = None) -> ChoiceHead:
        data = read_json(path, "a choice head")
        try:
            head = cls.from_json(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        if model is not None and head.fitted.get("model") != model:
            raise ValueError(f"the choice head {path} was fitted for model {head.fitted.get('model')!r}, but this "
                             f"service uses {model!r}; refit it with `assistant calibrate --choices` or remove it")
        return head


def load_heads(index_dir: Path, adapters: Sequence[str | None], *, model: str) -> dict[str | None, ChoiceHead]:
    return {a: ChoiceHead.load(p, model=model) for a in adapters if (p := choice_head_path(index_dir, a)).is_file()}


def fit_choice_head(mean_logprobs: Sequence[Sequence[float]], answers: Sequence[str], choices: Sequence[str], *,
                    fitted: Mapping[str, Any]) -> ChoiceHead:
    """Multinomial logistic regression (scikit-learn) of the gold choice on the choices'
    mean log-likelihoods; every choice must occur among the answers."""
    from sklearn.linear_model import LogisticRegression

    labels = [choices.index(a) for a in answers]
    missing = [c for i, c in enumerate(choices) if i not in labels]
    if missing:
        raise ValueError(f"no training item answers {', '.join(missing)}: a head cannot learn a choice it never sees")
    model = LogisticRegression(C=1.0, max_iter=2000).fit([list(x) for x in mean_logprobs], labels)
    return ChoiceHead(tuple(choices), tuple(tuple(row) for row in model.coef_.tolist()),
                      tuple(model.intercept_.tolist()), dict(fitted) | {"items": len(labels)})
