"""native.chunk: passages within a token budget as character offsets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer import native
from refimpl import word_token_spans

# Characters on which Python (str.isalnum / isspace) and Rust (is_alphanumeric /
# is_whitespace) agree: ASCII, precomposed Latin, Greek, Cyrillic, CJK, emoji.
WORDS = ["the", "cell", "Héllo", "wörld_1", "naïve", "Ünïcödé", "Наступне", "речення", "σοφία", "中文", "42", "3", "x", "😀", "👍🏽", "ß"]
PUNCT = [".", "!", "?", ",", ";", "...", "?!", "—", "«", "»", "\"", "'", ")", "(", "”", "…", "😀"]
SPACES = [" ", " ", " ", "  ", "\t", "\u00a0", "\u3000"]


@st.composite
def documents(draw) -> str:
    paragraphs = []
    for _ in range(draw(st.integers(0, 5))):
        sentences = []
        for _ in range(draw(st.integers(1, 6))):
            words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=18))
            parts = []
            for w in words:
                parts.append(w)
                if draw(st.integers(0, 5)) == 0:
                    parts.append(draw(st.sampled_from(PUNCT)))
                parts.append(draw(st.sampled_from(SPACES)))
            sentences.append("".join(parts).rstrip() + draw(st.sampled_from([".", "!", "?", ".\"", "…", ""])))
        paragraphs.append(draw(st.sampled_from([" ", "  ", "\n"])).join(sentences))
    lead = draw(st.sampled_from(["", " ", "\n\n", "  \t"]))
    trail = draw(st.sampled_from(["", " ", "\n", "\n \n"]))
    return lead + draw(st.sampled_from(["\n\n", "\n \n", "\n\n\n"])).join(paragraphs) + trail


def check_chunks(text: str, chunks: list[tuple[int, int]], max_tokens: int, overlap: int) -> None:
    tokens = word_token_spans(text)
    if not tokens:
        assert chunks == []
        return
    assert chunks, "a text with tokens has chunks"
    covered = [False] * len(tokens)
    prev = None
    for s, e in chunks:
        assert 0 <= s < e <= len(text)
        piece = text[s:e]
        assert piece and piece == piece.strip(), f"chunk {piece!r} is empty or not trimmed"
        inside = [i for i, (ts, te) in enumerate(tokens) if ts >= s and te <= e]
        # chunk ends are token ends: no token is cut in two
        for ts, te in tokens:
            assert not (ts < s < te) and not (ts < e < te), f"chunk ({s}, {e}) cuts token {text[ts:te]!r}"
        assert 0 < len(inside) <= max_tokens
        for i in inside:
            covered[i] = True
        if prev is not None:
            ps, pe = prev
            assert ps < s and pe < e, "chunks sorted and progressing"
            # overlap or touch: no token lies between two consecutive chunks
            assert s <= pe or text[pe:s].strip() == "", f"gap {text[pe:s]!r}"
            shared = [i for i in inside if tokens[i][1] <= pe]
            assert len(shared) <= overlap
        prev = (s, e)
    assert all(covered), "every token lies in some chunk"


@given(documents(), st.integers(1, 40), st.data())
def test_chunk_invariants(text: str, max_tokens: int, data) -> None:
    overlap = data.draw(st.integers(0, max_tokens - 1))
    [chunks] = native.chunk([text], max_tokens=max_tokens, overlap=overlap)
    check_chunks(text, chunks, max_tokens, overlap)


# Rust's char::is_whitespace (Unicode White_Space); Python's str.isspace also
# counts the ASCII separators \x1c-\x1f, which Rust does not.
RUST_WHITESPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {chr(c) for c in range(0x2000, 0x200B)}


@given(st.text(max_size=80), st.integers(1, 12))
def test_chunk_arbitrary_text_gives_valid_offsets(text: str, max_tokens: int) -> None:
    [chunks] = native.chunk([text], max_tokens=max_tokens, overlap=max_tokens // 3)
    prev_start = -1
    for s, e in chunks:
        assert prev_start < s < e <= len(text)
        piece = text[s:e]
        assert piece[0] not in RUST_WHITESPACE and piece[-1] not in RUST_WHITESPACE
        prev_start = s
    if any(c not in RUST_WHITESPACE for c in text):
        assert chunks


def test_short_text_is_one_trimmed_chunk() -> None:
    text = "  A short text. Two sentences!\n"
    assert native.chunk([text], max_tokens=100, overlap=10) == [[(2, 30)]]
    assert text[2:30] == "A short text. Two sentences!"


def test_sentence_boundaries_preferred() -> None:
    text = "".join(f"Sentence number {i} has a few words in it. " for i in range(40))
    [chunks] = native.chunk([text], max_tokens=50, overlap=0)
    assert len(chunks) > 5
    for s, e in chunks:
        assert text[s:e].startswith("Sentence") and text[s:e].endswith(".")
    check_chunks(text, chunks, 50, 0)


def test_paragraph_boundaries_preferred() -> None:
    para = "One two three four five. Six seven eight nine ten. Eleven twelve thirteen fourteen fifteen."
    text = "\n \n".join([para] * 6)
    [chunks] = native.chunk([text], max_tokens=30, overlap=0)
    assert [text[s:e] for s, e in chunks] == [para] * 6


def test_overlap_starts_at_a_sentence() -> None:
    text = "".join(f"This is sentence {i}. " for i in range(60))
    [chunks] = native.chunk([text], max_tokens=25, overlap=6)
    assert len(chunks) > 3
    for (ps, pe), (s, e) in zip(chunks, chunks[1:]):
        assert s < pe, "consecutive chunks share tokens"
        assert text[s:e].startswith("This")
    check_chunks(text, chunks, 25, 6)


def test_giant_sentence_split_between_tokens_with_exact_overlap() -> None:
    text = " ".join(f"w{i}" for i in range(2000))
    [chunks] = native.chunk([text], max_tokens=128, overlap=16)
    tokens = word_token_spans(text)
    counts = [sum(1 for ts, te in tokens if ts >= s and te <= e) for s, e in chunks]
    assert counts[:-1] == [128] * (len(chunks) - 1)
    for (ps, pe), (s, e) in zip(chunks, chunks[1:]):
        assert sum(1 for ts, te in tokens if ts >= s and te <= pe) == 16
    check_chunks(text, chunks, 128, 16)


def test_unicode_offsets_are_python_character_offsets() -> None:
    text = "😀 Ünïcödé 😀 «quoted»! Наступне речення… " * 30
    for max_tokens, overlap in [(7, 3), (40, 10), (1, 0)]:
        [chunks] = native.chunk([text], max_tokens=max_tokens, overlap=overlap)
        check_chunks(text, chunks, max_tokens, overlap)
    small = "😀😀 ab. é"
    [chunks] = native.chunk([small], max_tokens=2, overlap=0)
    assert chunks == [(0, 2), (3, 6), (7, 8)]
    assert [small[s:e] for s, e in chunks] == ["😀😀", "ab.", "é"]


def test_bytes_input_gives_character_offsets() -> None:
    text = "Ünïcödé text. Second sentence here."
    assert native.chunk([text.encode()], max_tokens=4, overlap=0) == native.chunk([text], max_tokens=4, overlap=0)


def test_batch_and_empty_texts() -> None:
    texts = ["", "   \n\n ", "one", "a b. c\n\nd"]
    out = native.chunk(texts, max_tokens=1, overlap=0)
    assert out[0] == [] and out[1] == [] and out[2] == [(0, 3)]
    assert [texts[3][s:e] for s, e in out[3]] == ["a", "b", ".", "c", "d"]
    assert native.chunk([], max_tokens=4, overlap=0) == []


def test_chunk_with_tokenizer_counts_its_tokens(tiny_tokenizer, hf_tiny) -> None:
    text = " ".join(
        f"Patients with condition {i} should talk to their doctor. The symptoms include fever and cough." for i in range(30)
    ) + "\n\nA new paragraph starts here. It has two sentences."
    max_tokens, overlap = 24, 4
    [chunks] = native.chunk([text], max_tokens=max_tokens, overlap=overlap, tokenizer=tiny_tokenizer)
    offsets = hf_tiny.encode(text, add_special_tokens=False).offsets
    assert len(chunks) > 5
    covered = set()
    for s, e in chunks:
        assert text[s:e] == text[s:e].strip() and text[s:e]
        inside = [i for i, (ts, te) in enumerate(offsets) if ts < e and te > s]
        assert len(inside) <= max_tokens
        covered.update(inside)
    # every token with some text (not a lone space or line break) is in a chunk
    assert covered >= {i for i, (ts, te) in enumerate(offsets) if text[ts:te].strip()}
    # with words as tokens the same text needs fewer, larger chunks
    [word_chunks] = native.chunk([text], max_tokens=max_tokens, overlap=overlap)
    assert word_chunks != chunks


@pytest.mark.parametrize(("max_tokens", "overlap"), [(0, 0), (5, 5), (5, 9)])
def test_bad_budget(max_tokens: int, overlap: int) -> None:
    with pytest.raises(native.InvalidInputError, match="max_tokens"):
        native.chunk(["some text here"], max_tokens=max_tokens, overlap=overlap)


def test_a_tokenizer_json_that_truncates_still_sees_the_whole_text(tmp_path) -> None:
    # all-MiniLM's tokenizer.json truncates at 128 tokens; chunking must not
    import json

    from tokenizers import Tokenizer as HfTokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[UNK]": 0, **{f"w{i}": i + 1 for i in range(50)}}
    hf = HfTokenizer(WordLevel(vocab, unk_token="[UNK]"))
    hf.pre_tokenizer = Whitespace()
    hf.enable_truncation(max_length=8)
    path = tmp_path / "tokenizer.json"
    path.write_text(hf.to_str())
    assert json.loads(path.read_text())["truncation"]["max_length"] == 8
    tok = native.load_tokenizer(path)
    text = " ".join(f"w{i % 50}." for i in range(100))
    assert len(tok.encode_batch([text])[0]) == 200  # 100 words and 100 full stops
    spans = native.chunk([text], max_tokens=20, overlap=0, tokenizer=tok)[0]
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert len(spans) >= 10


def test_a_large_document_is_embedded_in_groups_with_progress(tmp_path, monkeypatch) -> None:
    """A document of many chunks is embedded a group at a time, each group reported, and
    its vectors are those of embedding it whole (issue 18: progress and bounded memory)."""
    import numpy as np

    from indexer import ingest
    from indexer.index import Index
    from indexer.loaders import Document

    text = " ".join(f"Sentence {n} of a long report on river levels at the northern gauge." for n in range(400))
    with Index.open(tmp_path / "whole") as index:
        whole = index.ingest_documents([Document("report", text, "report.txt", {})])
        reference = index.search("river levels at the northern gauge", k=3, mode="dense")
    monkeypatch.setattr(ingest, "EMBED_GROUP", 5)
    groups: list[int] = []
    with Index.open(tmp_path / "grouped") as index:
        grouped = index.ingest_documents([Document("report", text, "report.txt", {})], on_chunks=groups.append)
        hits = index.search("river levels at the northern gauge", k=3, mode="dense")
    assert whole.chunks == grouped.chunks > 10
    assert sum(groups) == grouped.chunks and len(groups) == -(-grouped.chunks // 5) and max(groups) == 5
    assert [(h.start, h.end) for h in hits] == [(h.start, h.end) for h in reference]
    assert np.allclose([h.dense_score for h in hits], [h.dense_score for h in reference], atol=1e-5)


def test_a_long_text_is_chunked_a_window_at_a_time(tmp_path, monkeypatch) -> None:
    """Windows end at paragraph breaks: the spans are those of chunking each paragraph run
    alone, offsets into the whole text, and every span's text is the text there."""
    from indexer import ingest
    from indexer.index import Index
    from indexer.loaders import Document

    paragraphs = [" ".join(f"Paragraph {p} sentence {n} about tides and harbours." for n in range(30))
                  for p in range(12)]
    text = "\n\n".join(paragraphs)
    monkeypatch.setattr(ingest, "CHUNK_WINDOW_CHARS", 3 * len(paragraphs[0]))
    with Index.open(tmp_path / "index") as index:
        with index.writer() as writer:
            spans = ingest._chunk_in_windows(text, writer, writer.embedder.tokenizer)
    assert spans == sorted(spans) and spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(text[s:e].strip() == text[s:e] and text[s:e] for s, e in spans)
    # no chunk crosses a window: every window break falls between two spans
    breaks = [n for n in range(len(text)) if text.startswith("\n\n", n)]
    crossing = [b for b in breaks if any(s < b < e for s, e in spans)]
    assert len(crossing) < len(breaks)  # windows of ~2-3 paragraphs: some breaks are window edges
