"""The service's resources: a verifier that cannot load is a clear error at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.serve.resources import load_verifier
from assistant.serve.settings import ServiceSettings


def test_the_default_verifier_needs_no_model() -> None:
    assert load_verifier("overlap") is None


def test_a_verifier_that_cannot_load_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot load the verifier .*ASSISTANT_VERIFIER"):
        load_verifier(str(tmp_path / "no-such-model"))


def test_an_unknown_answer_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ASSISTANT_ANSWER_MODE"):
        ServiceSettings(index_dir=tmp_path, answer_mode="creative")
