"""The known harmless library lines stay off a user's terminal, and nothing else does.

The subprocess tests load the real bitsandbytes (through sentence-transformers and peft)
in a fresh interpreter with logging unconfigured, as ``indexer search`` or ``make demo``
runs it."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from indexer.library_logs import KNOWN_NOISE, _DemoteToDebug, demote_known_noise

BNB_LOGGER = "bitsandbytes.backends.cpu.ops"
BNB_LINE = "Failed to load CPU gemm_4bit_forward from kernels-community"


def stderr_of(code: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


@pytest.fixture(scope="module")
def bnb_is_noisy_here(cli_env: dict[str, str]) -> None:
    """Without the project the line shows on this machine; where it does not (a CPU
    without AVX512-BF16: bitsandbytes does not try the Hub kernel), there is nothing to test."""
    if BNB_LINE not in stderr_of("import sentence_transformers", cli_env):
        pytest.skip("bitsandbytes does not try the kernels-community kernel on this CPU (no AVX512-BF16)")


def test_loading_the_embedding_model_is_quiet(bnb_is_noisy_here: None, cli_env: dict[str, str]) -> None:
    # the model load of `indexer ingest` / `indexer search`, then a real problem on the same logger
    err = stderr_of("import logging\n"
                    "from indexer.embedder import Embedder\n"
                    "from indexer.settings import BUNDLED_MODEL\n"
                    "Embedder(BUNDLED_MODEL)\n"
                    f"logging.getLogger({BNB_LOGGER!r}).warning('a real problem')\n", cli_env)
    assert "kernels-community" not in err
    assert "a real problem" in err


def test_loading_peft_under_the_assistant_is_quiet(bnb_is_noisy_here: None, cli_env: dict[str, str]) -> None:
    # what LocalGenerator.load_adapter and the tuning recipe import, lazily, with nothing
    # from indexer imported before
    err = stderr_of("import assistant.generation.local\nfrom peft import PeftModel\n", cli_env)
    assert "kernels-community" not in err


def test_only_the_listed_lines_below_error_are_demoted(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger(BNB_LOGGER)
    with caplog.at_level(logging.DEBUG, logger=BNB_LOGGER):
        logger.warning(BNB_LINE + ": %s. Please make sure ...", "No module named 'kernels'")
        logger.warning("Failed to load something else")
        logger.error(BNB_LINE + ": %s", "and this time it matters")
    assert [(r.levelname, r.getMessage()[:40]) for r in caplog.records] == [
        ("DEBUG", BNB_LINE[:40]), ("WARNING", "Failed to load something else"), ("ERROR", BNB_LINE[:40])]


def test_installing_twice_adds_one_filter() -> None:
    demote_known_noise()
    demote_known_noise()
    for name in KNOWN_NOISE:
        assert sum(isinstance(f, _DemoteToDebug) for f in logging.getLogger(name).filters) == 1
