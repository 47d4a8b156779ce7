"""Shared fixtures: a tiny hermetic BPE tokenizer, trained here, and hypothesis settings.

Helpers that tests import (pure-Python reference implementations) live in
``refimpl.py`` beside this file; pytest puts this directory on ``sys.path``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Modest example counts keep the whole suite fast; no example database is
# written into the checkout.
settings.register_profile(
    "suite",
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# HYPOTHESIS_PROFILE=thorough for a long local run.
settings.register_profile("thorough", parent=settings.get_profile("suite"), max_examples=1500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

SPECIAL_TOKENS = ["<pad>", "<|im_start|>", "<|im_end|>"]

# A few dozen lines of the kind of text the tokenizer will see: chat markup,
# medical Q&A prose, some non-ASCII.
TRAINING_LINES = [
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>",
    "<|im_start|>user\nWhat is asthma?<|im_end|>",
    "<|im_start|>assistant\nAsthma is a chronic disease of the airways.<|im_end|>",
    "What are the symptoms of diabetes? Thirst, frequent urination and fatigue.",
    "The mitochondria is the powerhouse of the cell.",
    "Hypertension, or high blood pressure, raises the risk of heart disease and stroke.",
    "Patients should talk to their doctor before stopping any medication.",
    "How is influenza treated? Rest, fluids and sometimes antiviral drugs.",
    "Vaccines train the immune system to recognize a virus or a bacterium.",
    "Symptoms include fever, cough, headache and muscle pain.",
    "The kidneys filter waste from the blood and make urine.",
    "Café, naïve, résumé, Ünïcode, São Paulo, Zürich, Ærøskøbing.",
    "Наступне речення українською мовою. Ещё одно предложение.",
    "Emoji appear in chats 😀 🙂 👍 and in some documents ✔.",
    "Numbers: 1, 2, 3, 42, 100, 2024, 3.14 and 1/2.",
    "Question: how many tablets per day? Answer: two tablets, twice a day.",
    "Heart failure means the heart cannot pump enough blood.",
    "A balanced diet and regular exercise help to prevent obesity.",
    "Antibiotics do not work against viruses such as the common cold.",
    "Chronic kidney disease is often caused by diabetes and high blood pressure.",
    "Read the label. Keep out of reach of children. Store below 25 °C.",
    "Hello world! Hi there, how are you? I am fine, thanks.",
    "user assistant system user assistant system",
    "The quick brown fox jumps over the lazy dog.",
    "Genetic testing can show whether a person carries a mutation.",
    "Clinical trials test new treatments in people.",
    "Alzheimer's disease is the most common cause of dementia.",
    "Migraine headaches can last from four hours to three days.",
    "Tabs\tand  double  spaces\nand new lines\n\nand paragraphs.",
    "snake_case_words and CamelCaseWords and UPPER CASE WORDS",
    "Side effects may include nausea, dizziness and dry mouth.",
    "Consult a pharmacist about interactions between medicines.",
]


@pytest.fixture(scope="session")
def tiny_tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer (vocabulary ~400) trained with HF ``tokenizers``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAINING_LINES * 3, trainer=trainer)
    path = tmp_path_factory.mktemp("tiny_tokenizer") / "tokenizer.json"
    tok.save(str(path))
    return path


@pytest.fixture(scope="session")
def hf_tiny(tiny_tokenizer_path: Path):
    """The tiny tokenizer loaded by the HF ``tokenizers`` Python library."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tiny_tokenizer_path))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_path: Path):
    """The tiny tokenizer loaded by the native core."""
    from indexer import native

    return native.load_tokenizer(tiny_tokenizer_path)


@pytest.fixture(scope="session")
def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses: offline, two worker threads."""
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "INDEXER_NUM_THREADS": "2", "PYTHONDONTWRITEBYTECODE": "1"})
    return env


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    """Folder of the console scripts of the interpreter running the tests."""
    return Path(sys.executable).parent


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """For modules that embed (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``):
    queries and small batches embed several times faster on one thread on
    a small, busy CPU; the setting is restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
