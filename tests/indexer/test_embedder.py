"""The bundled embedder: vectors for comparing texts (the claim check) against the
fp32 vectors that search stores."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.embedder import Embedder, native_bf16
from indexer.settings import BUNDLED_MODEL

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = [
    "Age-related macular degeneration is treated with anti-VEGF injections into the eye.",
    "Injections of drugs that block VEGF slow wet macular degeneration.",
    "Pangolins eat ants and termites.",
    "The 2019 annual report shows revenue of $12.6 million.",
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(BUNDLED_MODEL, device="cpu")


def test_vectors_to_compare_agree_with_stored_ones(embedder: Embedder) -> None:
    """The claim check's vectors (bf16 where native) give the cosines fp32 gives, to
    well under the distances the check decides on (measured within 0.008), and stay
    unit length."""
    stored = embedder.embed(TEXTS)
    compared = embedder.embed_to_compare(TEXTS)
    assert compared.shape == stored.shape and compared.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(compared, axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(compared @ compared.T, stored @ stored.T, atol=0.02)
    # the related pair stays closer than the unrelated one, in both
    assert (compared @ compared.T)[0, 1] > (compared @ compared.T)[0, 2] + 0.2


def test_bf16_only_where_native(embedder: Embedder) -> None:
    """Without native bf16 the comparison vectors are the stored vectors exactly (the
    CPU would emulate bf16, slower than fp32)."""
    native = native_bf16(embedder.model.device)
    assert (embedder._comparer() is not None) == native
    if not native:
        np.testing.assert_array_equal(embedder.embed_to_compare(TEXTS), embedder.embed(TEXTS))
    else:
        assert not np.array_equal(embedder.embed_to_compare(TEXTS), embedder.embed(TEXTS))
        assert next(embedder._comparer().parameters()).dtype.is_floating_point
        assert str(next(embedder._comparer().parameters()).dtype) == "torch.bfloat16"
        assert str(next(embedder.model.parameters()).dtype) == "torch.float32"  # search keeps fp32
    assert embedder.embed_to_compare([]).shape == (0, embedder.dim)


def test_a_query_is_embedded_as_encode_embeds_it(embedder: Embedder) -> None:
    """Search embeds a query through the model's modules, skipping ``encode``: the
    vector must be the one ``encode`` gives (the stored vectors came from it)."""
    for text in TEXTS + ["?", "x " * 400]:  # a long query is truncated alike
        query = embedder.embed_query(text)
        assert query.shape == (1, embedder.dim) and query.dtype == np.float32 and query.flags.c_contiguous
        np.testing.assert_allclose(query, embedder.embed([text]), atol=1e-6)


def test_a_default_prompt_is_added_to_queries(embedder: Embedder) -> None:
    """A model whose configuration names a default prompt gets it, as ``encode`` adds it."""
    before = embedder.model.prompts, embedder.model.default_prompt_name
    embedder.model.prompts, embedder.model.default_prompt_name = {"query": "query: "}, "query"
    try:
        with_prompt = embedder.embed_query(TEXTS[0])
        np.testing.assert_allclose(with_prompt, embedder.embed([TEXTS[0]]), atol=1e-6)
        assert not np.allclose(with_prompt, embedder.model.encode(TEXTS[:1], prompt="", normalize_embeddings=True),
                               atol=1e-3)
    finally:
        embedder.model.prompts, embedder.model.default_prompt_name = before


def test_the_query_path_skips_encode_and_normalises_itself(embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the model's own Normalize module the query vector is still unit length,
    and it is made without ``encode`` (the path search takes)."""
    from sentence_transformers import SentenceTransformer

    expected = embedder.embed([TEXTS[2]])
    model = embedder.model
    unnormalised = SentenceTransformer(modules=[model[0], model[1]], device="cpu").eval()  # no Normalize module
    monkeypatch.setattr(embedder, "model", unnormalised)

    def no_encode(*args: object, **kwargs: object) -> None:
        raise AssertionError("encode called")

    monkeypatch.setattr(unnormalised, "encode", no_encode)
    query = embedder.embed_query(TEXTS[2])
    np.testing.assert_allclose(np.linalg.norm(query), 1.0, atol=1e-6)
    np.testing.assert_allclose(query, expected, atol=1e-6)
