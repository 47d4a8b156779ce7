"""MinHash signatures, LSH parameters, clustering and near_dedup."""

from __future__ import annotations

import gzip
import json
import math
import random

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from indexer import native, shared_data
from refimpl import jaccard, word_shingles

VOCAB = [f"w{i}" for i in range(80)] + ["alpha", "beta", "gamma", "delta", "Omega", "x_y", "42"]
SEPARATORS = [" ", "  ", ", ", ". ", "; ", "! ", "\n", " - "]


@st.composite
def decorated(draw, words: list[str]) -> str:
    """The words joined by random punctuation/spacing, with random capitalisation:
    the shingles only see the lowercased words."""
    out = []
    for i, w in enumerate(words):
        if draw(st.booleans()):
            w = w.upper() if draw(st.booleans()) else w.capitalize()
        out.append(w)
        if i + 1 < len(words):
            out.append(draw(st.sampled_from(SEPARATORS)))
    return "".join(out)


@st.composite
def text_pairs(draw):
    """Two texts sharing a middle segment of controlled length."""
    word_lists = st.lists(st.sampled_from(VOCAB), max_size=30)
    common = draw(st.lists(st.sampled_from(VOCAB), max_size=60))
    a = draw(word_lists) + common + draw(word_lists)
    b = draw(word_lists) + common + draw(word_lists)
    assume(a and b)
    return draw(decorated(a)), draw(decorated(b))


@given(text_pairs(), st.integers(0, 2**32))
def test_minhash_estimate_tracks_true_jaccard(pair: tuple[str, str], seed: int) -> None:
    a, b = pair
    k = 256
    sig = native.minhash_signatures([a, b], num_perm=k, seed=seed)
    assert sig.shape == (2, k) and sig.dtype == np.uint32
    est = float(np.mean(sig[0] == sig[1]))
    true = jaccard(word_shingles(a), word_shingles(b))
    tolerance = 4 * math.sqrt(true * (1 - true) / k) + 0.05
    assert abs(est - true) <= tolerance, f"estimate {est:.3f} vs true {true:.3f}"


@given(st.lists(st.sampled_from(VOCAB), min_size=1, max_size=30), st.data())
def test_signature_depends_only_on_the_shingle_set(words: list[str], data) -> None:
    a = data.draw(decorated(words))
    b = data.draw(decorated(words))
    sig = native.minhash_signatures([a, b, " ".join(words).lower()], num_perm=64)
    assert (sig[0] == sig[1]).all() and (sig[0] == sig[2]).all()


def test_short_texts_are_one_shingle_of_all_words() -> None:
    # Fewer than 5 words: the whole text is one shingle, so "a b c" and
    # "a b c d" share nothing while each equals itself under any decoration.
    sig = native.minhash_signatures(["a b c", "A, B; c!", "a b c d", "d c b a"], num_perm=128)
    assert (sig[0] == sig[1]).all()
    assert np.mean(sig[0] == sig[2]) < 0.05
    assert np.mean(sig[2] == sig[3]) < 0.05  # order matters


def test_repeated_shingles_count_once() -> None:
    base = "one two three four five six seven"
    sig = native.minhash_signatures([base, base + " " + base + " " + base], num_perm=128)
    # true Jaccard: base has 3 shingles; the repetition adds the wrap-around ones
    ja = jaccard(word_shingles(base), word_shingles(base + " " + base + " " + base))
    assert abs(np.mean(sig[0] == sig[1]) - ja) < 0.2


def test_char_shingles() -> None:
    sig = native.minhash_signatures(["Hello  World", "hello world", "hello there"], shingle="char", shingle_size=3)
    assert (sig[0] == sig[1]).all()  # case and whitespace folded
    ref = lambda t: {t[i : i + 3] for i in range(len(t) - 2)}  # noqa: E731
    true = jaccard(ref("hello world"), ref("hello there"))
    assert abs(np.mean(sig[1] == sig[2]) - true) < 0.25


def test_signature_properties() -> None:
    texts = ["The quick brown fox jumps over the lazy dog", "", "  ,.;  "]
    sig = native.minhash_signatures(texts, num_perm=64, seed=3)
    assert sig.shape == (3, 64) and sig.flags.c_contiguous
    # no shingles: all values at the maximum (never joined with anything)
    assert (sig[1] == np.iinfo(np.uint32).max).all() and (sig[2] == np.iinfo(np.uint32).max).all()
    assert not (sig[0] == np.iinfo(np.uint32).max).all()
    # deterministic, batch-independent, seed-dependent
    again = native.minhash_signatures(texts[:1], num_perm=64, seed=3)
    assert (again[0] == sig[0]).all()
    other_seed = native.minhash_signatures(texts[:1], num_perm=64, seed=4)
    assert np.mean(other_seed[0] == sig[0]) < 0.5
    # str and bytes agree; NFKC is applied before shingling
    a, b, c = native.minhash_signatures(["ﬁne day today", b"fine day today", "FINE day today"], num_perm=32)
    assert (a == b).all() and (b == c).all()
    assert native.minhash_signatures([], num_perm=16).shape == (0, 16)


def test_strip_boilerplate_option() -> None:
    body = "asthma is a chronic disease of the airways that makes breathing hard"
    noisy = "Skip to main content\n" + body + "\nPage 3 of 10\nAll rights reserved."
    sig = native.minhash_signatures([body, noisy], strip_boilerplate=True)
    assert (sig[0] == sig[1]).all()
    sig = native.minhash_signatures([body, noisy])
    assert not (sig[0] == sig[1]).all()


@pytest.mark.parametrize(("threshold", "num_perm", "expected"), [(0.5, 128, (25, 5)), (0.7, 128, (14, 9)), (0.8, 128, (9, 13))])
def test_lsh_params_with_equal_weights_match_datasketch(threshold: float, num_perm: int, expected: tuple[int, int]) -> None:
    assert native.lsh_params(threshold, num_perm, false_negative_weight=0.5) == expected


def test_default_lsh_params_favour_recall() -> None:
    # misses weigh 0.9: more, shorter bands than datasketch's 9 x 13 at 0.8
    assert native.lsh_params(0.8) == (14, 9)
    for weight in (0.0, 1.0, 1.5):
        with pytest.raises(native.InvalidInputError, match="false_negative_weight"):
            native.lsh_params(0.8, false_negative_weight=weight)


@given(st.floats(0.05, 1.0), st.integers(1, 300))
def test_lsh_params_fit_num_perm(threshold: float, num_perm: int) -> None:
    bands, rows = native.lsh_params(threshold, num_perm)
    assert bands >= 1 and rows >= 1 and bands * rows <= num_perm


def test_lsh_params_rows_grow_with_threshold() -> None:
    rows = [native.lsh_params(t, 256)[1] for t in (0.3, 0.5, 0.7, 0.9)]
    assert rows == sorted(rows) and rows[0] < rows[-1]


def random_words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(VOCAB) + str(rng.randrange(1000)) for _ in range(n)]


def test_near_dedup_finds_variants() -> None:
    rng = random.Random(7)
    base = random_words(rng, 200)
    edited = list(base)
    edited[100] = "changed"
    texts = [
        " ".join(base),                      # 0 kept
        " ".join(random_words(rng, 200)),    # 1 unrelated, kept
        ", ".join(w.upper() for w in base),  # 2 case/punctuation variant of 0
        " ".join(edited),                    # 3 one word changed (J ≈ 0.95)
        " ".join(base[:100]),                # 4 half of 0 (J ≈ 0.5): kept
        "",                                  # 5 empty: a singleton
        "",                                  # 6 empty: a singleton too
    ]
    r = native.near_dedup(texts, threshold=0.8)
    assert r.keep.tolist() == [True, True, False, False, True, True, True]
    assert r.cluster_of.tolist() == [0, 1, 0, 0, 4, 5, 6]
    assert r.num_removed == 2 and r.num_dup_clusters == 1
    assert r.verified_pairs <= r.candidate_pairs
    assert (r.bands, r.rows) == native.lsh_params(0.8, 128)


def test_near_dedup_keep_longest() -> None:
    rng = random.Random(3)
    base = " ".join(random_words(rng, 120))
    texts = ["unrelated " * 3 + "text here", base, base + "!!!", base.upper() + " !!! ??? ..."]
    r = native.near_dedup(texts, keep="longest")
    assert r.keep.tolist() == [True, False, False, True]
    assert r.cluster_of.tolist() == [0, 3, 3, 3]
    first = native.near_dedup(texts, keep="first")
    assert first.cluster_of.tolist() == [0, 1, 1, 1]


@given(st.lists(st.sampled_from(["p q r s t u v", "P Q, r s t u v", "p q r s t u w", "a b c", "A B C", "", "x y z w v u t s"]), max_size=12), st.sampled_from([0.5, 0.8, 1.0]))
def test_cluster_structure_invariants(texts: list[str], threshold: float) -> None:
    sig = native.minhash_signatures(texts, num_perm=64)
    r = native.cluster_signatures(sig, threshold=threshold)
    n = len(texts)
    assert r.cluster_of.shape == (n,) and r.keep.shape == (n,)
    cluster_of = r.cluster_of.tolist()
    for i, c in enumerate(cluster_of):
        assert cluster_of[c] == c  # representatives represent themselves
        assert r.keep[i] == (c == i)
        assert c <= i  # keep="first": the lowest index of the cluster
    # identical non-empty signatures always end up together; empty ones never join
    for i in range(n):
        for j in range(i):
            same = (sig[i] == sig[j]).all()
            empty = (sig[i] == np.iinfo(np.uint32).max).all()
            if same and not empty:
                assert cluster_of[i] == cluster_of[j]
            if empty:
                assert cluster_of[i] == i
    sizes = np.bincount(r.cluster_of, minlength=n) if n else np.zeros(0)
    assert r.num_dup_clusters == int((sizes >= 2).sum())
    assert r.num_removed == n - len(set(cluster_of))


@given(text_pairs(), st.sampled_from([0.3, 0.5, 0.8]))
def test_two_documents_join_only_when_estimate_reaches_threshold(pair: tuple[str, str], threshold: float) -> None:
    sig = native.minhash_signatures(list(pair), num_perm=128)
    r = native.cluster_signatures(sig, threshold=threshold)
    est = float(np.mean(sig[0] == sig[1]))
    if not r.keep[1]:
        assert est >= threshold
    if est == 1.0:
        assert not r.keep[1]


def test_cluster_signatures_accepts_non_contiguous_arrays() -> None:
    rng = random.Random(1)
    base = " ".join(random_words(rng, 50))
    filler = "filler rows that the strided view skips over"
    texts = [base, filler, "other words entirely here and there", filler, base.upper(), filler,
             "more unrelated words for the test", filler]
    sig = native.minhash_signatures(texts, num_perm=64)
    strided = sig[::2]
    assert not strided.flags.c_contiguous
    a = native.cluster_signatures(strided)
    b = native.cluster_signatures(np.ascontiguousarray(strided))
    assert a.cluster_of.tolist() == b.cluster_of.tolist() == [0, 1, 0, 3]


def test_cluster_signatures_reads_fortran_ordered_arrays_by_row() -> None:
    # A Fortran-ordered (column-major) array is "contiguous" too; its rows must
    # still be the documents, not runs of its column-major memory.
    rng = random.Random(2)
    base = " ".join(random_words(rng, 50))
    texts = [base, "other words entirely here and there", base.upper(), "more unrelated words for the test"]
    sig = native.minhash_signatures(texts, num_perm=64)
    fortran = np.asfortranarray(sig)
    assert fortran.flags.f_contiguous and not fortran.flags.c_contiguous
    assert native.cluster_signatures(sig).cluster_of.tolist() == [0, 1, 0, 3]
    assert native.cluster_signatures(fortran).cluster_of.tolist() == [0, 1, 0, 3]


def test_cluster_signatures_argument_errors() -> None:
    sig = native.minhash_signatures(["a b c d e f", "a b c d e f"], num_perm=32)
    with pytest.raises(native.InvalidInputError, match="lengths"):
        native.cluster_signatures(sig, keep="longest")
    with pytest.raises(native.InvalidInputError, match="lengths"):
        native.cluster_signatures(sig, keep="longest", lengths=[1])
    with pytest.raises(native.InvalidInputError, match="keep"):
        native.cluster_signatures(sig, keep="last")  # type: ignore[arg-type]
    with pytest.raises(native.InvalidInputError, match="2-D numpy uint32"):
        native.cluster_signatures(sig.astype(np.int64))  # type: ignore[arg-type]
    with pytest.raises(native.InvalidInputError, match="2-D numpy uint32"):
        native.cluster_signatures(sig[0])
    with pytest.raises(native.InvalidInputError, match="2-D numpy uint32"):
        native.cluster_signatures([[1, 2], [3, 4]])  # type: ignore[arg-type]
    empty = native.cluster_signatures(np.zeros((0, 32), dtype=np.uint32))
    assert empty.keep.shape == (0,) and empty.num_dup_clusters == 0


def test_medquad_answers_have_near_duplicates() -> None:
    path = shared_data.medquad_path()
    if not path.is_file():
        pytest.skip(f"MedQuAD not found at {path} (set SHARED_DATA_DIR to the shared data folder)")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        answers = [json.loads(line)["answer"] for line in f]
    answers = [a for a in answers if a.strip()]
    assert len(answers) > 10_000
    r = native.near_dedup(answers, threshold=0.8)
    kept = r.keep.mean()
    assert kept < 0.98, f"kept {kept:.2%} of {len(answers)} answers"
    assert r.num_dup_clusters > 50
    # every removed answer really is similar to its representative
    sig = native.minhash_signatures(answers)
    removed = np.flatnonzero(~r.keep)[:200]
    est = (sig[removed] == sig[r.cluster_of[removed]]).mean(axis=1)
    assert (est > 0.3).all()


# --- one-word edits of short texts (shingle Jaccard misses them) ------------


def plain_words(rng: random.Random, n: int) -> list[str]:
    """Lowercase letter-only words: none names or counts something (no digit,
    capital, single letter or roman numeral), so any one of them may be edited."""
    return ["w" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(4)) for _ in range(n)]


def test_one_word_edits_of_short_texts_are_near_duplicates() -> None:
    rng = random.Random(5)
    texts = []
    for n in (10, 25, 60, 98):
        base = plain_words(rng, n)
        sub, ins, dele = list(base), list(base), list(base)
        sub[n // 3] = "substituted"
        ins.insert(n - 1, "inserted")
        del dele[0]
        texts += [" ".join(base), " ".join(sub), " ".join(ins), " ".join(dele)]
    r = native.near_dedup(texts)
    # every edited copy joins its base; at these lengths word 5-gram Jaccard alone
    # misses the substitution (e.g. (25-9)/(25+1) = 0.62 at 25 words)
    assert r.cluster_of.tolist() == [4 * (i // 4) for i in range(len(texts))]
    assert r.edit_pairs >= 9  # base-copy pairs (the 9-word deletion of a 10-word text is the LSH's)
    before = native.near_dedup(texts, edit_min_words=0)
    assert before.edit_pairs == 0
    assert before.keep[1] and before.keep[5]


def test_two_word_edits_and_very_short_texts_stay_apart() -> None:
    # MedQuAD's templates: the condition's name differs by two words
    a = ("Congenital leptin deficiency is a rare disorder. Only a few dozen cases have been reported "
         "in the medical literature.")
    b = ("Leptin receptor deficiency is a rare disorder. Only a few dozen cases have been reported "
         "in the medical literature.")
    nine = "one two three four five six seven eight nine"
    texts = [a, b, nine, nine.replace("five", "fife")]
    r = native.near_dedup(texts)
    # no edit pair; whatever the shingle test decides (J = 13/17 here) is as before
    assert r.edit_pairs == 0
    assert r.cluster_of.tolist() == native.near_dedup(texts, edit_min_words=0).cluster_of.tolist()
    assert r.keep[2] and r.keep[3]
    # the floor is a setting: nine words can be allowed explicitly
    assert native.near_dedup([nine, nine.replace("five", "fife")], edit_min_words=9).cluster_of.tolist() == [0, 0]


def test_one_word_edits_ignore_case_and_punctuation_and_keep_longest() -> None:
    base = "asthma is a chronic disease of the airways that makes breathing hard for many people"
    copy = "ASTHMA is a chronic illness of the airways, that makes breathing hard for many people!"
    r = native.near_dedup(["unrelated text about something else entirely, nothing alike", base, copy],
                          keep="longest")
    assert r.cluster_of.tolist() == [0, 2, 2]


def test_texts_of_100_words_or_more_are_left_to_shingle_jaccard() -> None:
    rng = random.Random(9)
    base = plain_words(rng, 100)
    edited = list(base)
    edited[50] = "changed"
    r = native.near_dedup([" ".join(base), " ".join(edited)])
    assert r.edit_pairs == 0
    assert not r.keep[1]  # J = 91/101 ≈ 0.9: the LSH finds it


HEPATITIS_C = ("If you have chronic hepatitis C, you should do things to take care of yourself, including "
               "eating a healthy diet. Avoid drinking alcohol, which can harm the liver.")
TYPE_2 = ("Otopalatodigital syndrome type 2 is a rare disorder, affecting fewer than 1 in every 100,000 "
          "individuals. Its specific incidence is unknown.")
SPENCDI = "SPENCDI appears to be a rare condition, although its prevalence is unknown."
INHERITED = ("This condition is inherited in an autosomal dominant pattern, which means one copy of the altered "
             "gene in each cell is sufficient to cause the disorder.")


def test_a_word_that_names_or_counts_keeps_documents_apart() -> None:
    named = [
        HEPATITIS_C.replace("hepatitis C", "hepatitis B"),  # a letter names the virus
        TYPE_2.replace("type 2", "type 1"),  # a number names the type
        TYPE_2.replace("type 2", "type II"),  # so does a roman numeral
        INHERITED.replace("dominant", "recessive"),  # an antonym names the inheritance
        SPENCDI.replace("SPENCDI", "MOPDII"),  # an acronym names the condition
    ]
    near = [
        HEPATITIS_C.replace("healthy", "helthy"),  # a typo
        TYPE_2.replace("is a rare", "is a very rare"),  # a hedge added
        INHERITED.replace("is inherited", "is typically inherited"),  # a hedge added
        SPENCDI.replace("appears", "apears"),  # a typo
        HEPATITIS_C.replace("hepatitis C", "Hepatitis C"),  # case alone is no edit
    ]
    texts = [HEPATITIS_C, TYPE_2, INHERITED, SPENCDI] + named + near
    r = native.near_dedup(texts)
    before = native.near_dedup(texts, edit_min_words=0)
    # the shingle test alone joins none of them but the case-only copy: each pair is below J = 0.8
    assert before.num_removed == 1
    assert r.keep.tolist() == [True] * 9 + [False] * 5
    assert r.cluster_of[9:].tolist() == [0, 1, 2, 3, 0]
    # each named pair alone too, whichever text comes first
    for base, other in zip([0, 1, 1, 2, 3], named):
        for pair in ([texts[base], other], [other, texts[base]]):
            assert native.near_dedup(pair).edit_pairs == 0, other


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_edit_min_words_is_validated(bad: object) -> None:
    with pytest.raises(native.InvalidInputError, match="edit_min_words"):
        native.near_dedup(["a b c"], edit_min_words=bad)  # type: ignore[arg-type]


def test_batched_edit_pairs_give_what_near_dedup_gives() -> None:
    """The streaming path of `indexer dedup`: signatures and the short-text mask
    per batch, one-edit pairs of the short texts only, joined by cluster_signatures."""
    texts = [HEPATITIS_C, TYPE_2, INHERITED, SPENCDI,
             HEPATITIS_C.replace("hepatitis C", "hepatitis B"), TYPE_2.replace("type 2", "type 1"),
             INHERITED.replace("is inherited", "is typically inherited"), SPENCDI.replace("appears", "apears"),
             " ".join(plain_words(random.Random(3), 120)), "too short to edit"]
    for edit_min_words in (native.EDIT_MIN_WORDS, 0):
        sigs, short = native.signatures_and_edit_mask(texts, edit_min_words=edit_min_words)
        assert short.tolist() == [edit_min_words > 0] * 8 + [False, False]
        rows = np.flatnonzero(short)
        pairs = rows[native.one_edit_pairs([texts[i] for i in rows], edit_min_words=edit_min_words)]
        batched = native.cluster_signatures(sigs, pairs=pairs)
        whole = native.near_dedup(texts, edit_min_words=edit_min_words)
        assert batched.cluster_of.tolist() == whole.cluster_of.tolist()
        assert batched.edit_pairs == whole.edit_pairs == (2 if edit_min_words else 0)
        assert (sigs == native.minhash_signatures(texts)).all()


def test_cluster_signatures_pairs_are_checked() -> None:
    sigs = native.minhash_signatures(["one two three", "four five six"])
    assert native.cluster_signatures(sigs, pairs=[[1, 0]]).cluster_of.tolist() == [0, 0]
    with pytest.raises(native.InvalidInputError, match="beyond the 2 signatures"):
        native.cluster_signatures(sigs, pairs=[[0, 2]])
    with pytest.raises(native.InvalidInputError, match="beyond the 2 signatures"):
        native.cluster_signatures(sigs, pairs=[[0, 1], [0, 2]])
