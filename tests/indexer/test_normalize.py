"""native.normalize: NFKC, control/whitespace cleanup, lowercasing, boilerplate lines."""

from __future__ import annotations

import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from indexer import native

# ASCII text where the Python-side classification below is exact.
ASCII_WS = " \t\n\r\x0b\x0c"
ASCII_CONTROLS = "\x00\x01\x07\x08\x1b\x7f"
ascii_texts = st.text(alphabet=string.ascii_letters + string.digits + string.punctuation + ASCII_WS + ASCII_CONTROLS, max_size=80)

any_texts = st.text(max_size=60)


def visible(text: str) -> str:
    """The non-whitespace, non-control characters of an ASCII text, in order."""
    return "".join(c for c in text if c not in ASCII_WS and c not in ASCII_CONTROLS)


@given(ascii_texts)
def test_ascii_cleanup_matches_reference_properties(text: str) -> None:
    (out,) = native.normalize([text])
    # No character other than whitespace and controls is lost, added or reordered.
    assert visible(out) == visible(text)
    assert out == out.strip()
    assert "\r" not in out and "\t" not in out and "\x0b" not in out and "\x0c" not in out
    assert not any(c in ASCII_CONTROLS for c in out)
    assert "  " not in out and " \n" not in out and "\n " not in out and "\n\n\n" not in out
    # Words stay separated: every whitespace gap of the input becomes one separator.
    assert out.split() == [w for w in "".join(" " if c in ASCII_WS else c for c in text if c not in ASCII_CONTROLS).split()]


@given(any_texts, st.booleans(), st.booleans())
@example("  A  b\n\n\n\nc ", True, True)
@example("Page 2\nreal text", False, True)
def test_normalize_is_idempotent(text: str, lowercase: bool, strip: bool) -> None:
    once = native.normalize([text], lowercase=lowercase, strip_boilerplate=strip)
    twice = native.normalize(once, lowercase=lowercase, strip_boilerplate=strip)
    assert twice == once, f"{ascii(text)}: {ascii(once[0])} -> {ascii(twice[0])}"


@pytest.mark.parametrize("text", ["e\u200b\u0301", "A\x00\u030a"])
def test_normalize_is_idempotent_when_a_dropped_char_separated_a_combining_mark(text: str) -> None:
    # NFKC runs before invisible/control characters are dropped, so dropping
    # one can leave a letter + combining mark that a second NFKC composes.
    once = native.normalize([text])
    assert native.normalize(once) == once, f"{ascii(text)} -> {ascii(once[0])} -> {ascii(native.normalize(once)[0])}"


@given(st.text(alphabet=string.ascii_letters + string.digits + " .,\n", max_size=60))
def test_lowercase_option_on_ascii(text: str) -> None:
    plain, lower = native.normalize([text]), native.normalize([text], lowercase=True)
    assert lower == [plain[0].lower()]


def test_lowercase_option_unicode_and_default_keeps_case() -> None:
    assert native.normalize(["Hello ÉCOLE ΣΟΦΙΑ"], lowercase=True) == ["hello école σοφια"]
    assert native.normalize(["Hello ÉCOLE"]) == ["Hello ÉCOLE"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ﬁne ＡＢＣ ①", "fine ABC 1"),  # NFKC compatibility forms
        ("  a \t b  \r\n\r\n\r\n\n c\u00a0d \n e  ", "a b\n\nc d\ne"),  # whitespace, paragraphs kept
        ("a\u0000b\u200bc\ufeffd\u0007", "abcd"),  # controls and invisible format chars dropped
        ("line one\r\nline two\rline three", "line one\nline two\nline three"),
        ("e\u0301", "\u00e9"),  # NFKC composes
        ("", ""),
        (" \n\t\r\n ", ""),
    ],
)
def test_normalize_examples(text: str, expected: str) -> None:
    assert native.normalize([text]) == [expected]


def test_strip_boilerplate() -> None:
    text = (
        "Skip to main content\nAsthma is a disease.\nPage 3 of 10\n-----\n\nIt affects airways.\n"
        "© 2024 Clinic. All rights reserved.\nhttps://example.org/x"
    )
    assert native.normalize([text], strip_boilerplate=True) == ["Asthma is a disease.\n\nIt affects airways."]
    # Without the option, boilerplate stays.
    assert "Skip to main content" in native.normalize([text])[0]
    # A long line that mentions a boilerplate phrase is content.
    long_line = "We use cookies " + "and this sentence goes on about the medical content " * 4
    assert native.normalize([long_line], strip_boilerplate=True) == [long_line.strip()]


def test_batch_order_bytes_and_iterables() -> None:
    texts = ["B  b", b"caf\xc3\xa9  x", "", "z"]
    assert native.normalize(texts) == ["B b", "café x", "", "z"]
    assert native.normalize(iter(texts)) == ["B b", "café x", "", "z"]
    assert native.normalize(t for t in ("a ", " b")) == ["a", "b"]
    assert native.normalize([]) == []
