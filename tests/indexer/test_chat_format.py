"""ChatFormat: reduction of Hugging Face chat templates to fixed pieces, and the
real bundled SmolLM2 tokenizer end to end."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer import native
from indexer.chat_format import ChatTemplateError, chat_format_from_template, render

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHATML_DEFAULT_SYSTEM = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a careful medical assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
WITH_BOS = (
    "<pad>{% for message in messages %}{% if message['role'] == 'user' %}{{ 'Q: ' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'assistant' %}{{ 'A: ' + message['content'] + '<|im_end|>\\n' }}"
    "{% else %}{{ '[SYS] ' + message['content'] + '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'A: ' }}{% endif %}"
)
NO_SYSTEM_ROLE = (
    "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}" + CHATML
)
LAST_TURN_DIFFERENT = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] }}"
    "{% if loop.last %}{{ '<|im_end|>\\n\\n' }}{% else %}{{ '<|im_end|>\\n' }}{% endif %}{% endfor %}"
)
POSITION_DEPENDENT = (
    "{% for message in messages %}{{ message['role'] + ': ' + message['content'] }}{% if not loop.last %}{{ '\\n---\\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '\\nassistant: ' }}{% endif %}"
)


@pytest.fixture(scope="module")
def hf_fast(tiny_tokenizer_path):
    """A transformers tokenizer over the tiny tokenizer.json; tests set its chat_template."""
    from transformers import PreTrainedTokenizerFast

    def make(template: str | None):
        tok = PreTrainedTokenizerFast(tokenizer_file=str(tiny_tokenizer_path))
        tok.chat_template = template
        return tok

    return make


def test_chatml_defaults() -> None:
    fmt = native.ChatFormat.chatml()
    assert fmt == native.ChatFormat()
    assert fmt.as_dict() == {
        "bos": "", "system_prefix": "<|im_start|>system\n", "system_suffix": "<|im_end|>\n",
        "user_prefix": "<|im_start|>user\n", "user_suffix": "<|im_end|>\n",
        "assistant_prefix": "<|im_start|>assistant\n", "assistant_suffix": "<|im_end|>\n", "default_system": None,
    }
    assert native.ChatFormat.chatml("Be nice.").default_system == "Be nice."
    with pytest.raises(dataclasses.FrozenInstanceError):
        fmt.bos = "x"  # type: ignore[misc]


def test_from_plain_chatml_template(hf_fast) -> None:
    assert native.ChatFormat.from_hf_tokenizer(hf_fast(CHATML)) == native.ChatFormat.chatml()


def test_from_template_with_default_system(hf_fast) -> None:
    fmt = native.ChatFormat.from_hf_tokenizer(hf_fast(CHATML_DEFAULT_SYSTEM))
    assert fmt == native.ChatFormat.chatml(default_system="You are a careful medical assistant.")


def test_from_template_with_bos(hf_fast) -> None:
    fmt = native.ChatFormat.from_hf_tokenizer(hf_fast(WITH_BOS))
    assert fmt == native.ChatFormat(
        bos="<pad>", system_prefix="[SYS] ", system_suffix="\n", user_prefix="Q: ", user_suffix="\n",
        assistant_prefix="A: ", assistant_suffix="<|im_end|>\n", default_system=None,
    )


@pytest.mark.parametrize(
    ("template", "match"),
    [
        (None, "no chat_template"),
        (NO_SYSTEM_ROLE, "rendering the chat template failed"),
        (LAST_TURN_DIFFERENT, "depends on what follows"),
        (POSITION_DEPENDENT, "first user turn is rendered differently"),
    ],
)
def test_unsupported_templates_fail_clearly(hf_fast, template, match: str) -> None:
    with pytest.raises(ChatTemplateError, match=match):
        native.ChatFormat.from_hf_tokenizer(hf_fast(template))
    assert issubclass(ChatTemplateError, ValueError)


words = st.sampled_from(["What", "is", "asthma", "?", "A", "disease", ".", "é", "😀", "\n", "fever", "and", "cough"])
contents = st.lists(words, min_size=1, max_size=8).map(" ".join)


@st.composite
def conversations(draw) -> list[dict[str, str]]:
    conv = [{"role": "system", "content": draw(contents)}] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 3))):
        conv += [{"role": "user", "content": draw(contents)}, {"role": "assistant", "content": draw(contents)}]
    return conv


@given(conversations(), st.sampled_from([CHATML, CHATML_DEFAULT_SYSTEM, WITH_BOS]))
def test_render_and_build_match_the_template(hf_fast, tiny_tokenizer, hf_tiny, conv, template: str) -> None:
    hf = hf_fast(template)
    fmt_dict = chat_format_from_template(hf)
    expected = hf.apply_chat_template(conv, tokenize=False)
    assert render(fmt_dict, conv) == expected
    [(ids, _)] = native.build_sft_examples(tiny_tokenizer, [conv], native.ChatFormat(**fmt_dict))
    assert hf_tiny.decode(ids, skip_special_tokens=False) == expected


def _ids(encoded: object) -> list[int]:
    """apply_chat_template(tokenize=True) returns a BatchEncoding in transformers 5, a list before."""
    if isinstance(encoded, Mapping) or hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]  # type: ignore[index]
    ids = list(encoded)  # type: ignore[call-overload]
    if ids and isinstance(ids[0], list):
        (ids,) = ids
    return [int(i) for i in ids]


def test_bundled_smollm2_tokenizer_end_to_end(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ASSISTANT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    from assistant.generation import model_files

    path = model_files.tokenizer_json()
    assert path.is_file() and path.is_relative_to(tmp_path)
    assert model_files.tokenizer_json() == path  # exported once, then reused
    hf_tok = AutoTokenizer.from_pretrained(path.parent)
    fmt = native.ChatFormat.from_hf_tokenizer(hf_tok)
    assert fmt.default_system == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert (fmt.user_prefix, fmt.assistant_suffix) == ("<|im_start|>user\n", "<|im_end|>\n")

    conv = [
        {"role": "user", "content": "What is asthma?"},
        {"role": "assistant", "content": "Asthma is a chronic disease of the airways."},
        {"role": "user", "content": "How is it treated?"},
        {"role": "assistant", "content": "With inhalers: relievers and preventers."},
    ]
    tok = native.load_tokenizer(path)
    [(ids, labels)] = native.build_sft_examples(tok, [conv], fmt)
    assert ids == _ids(hf_tok.apply_chat_template(conv, tokenize=True))
    learned = [t for t in labels if t != -100]
    assert hf_tok.decode(learned) == (
        "Asthma is a chronic disease of the airways.<|im_end|>\nWith inhalers: relievers and preventers.<|im_end|>\n"
    )
