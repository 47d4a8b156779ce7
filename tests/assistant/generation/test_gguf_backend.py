"""The llama.cpp backend with the bundled SmolLM2 GGUF itself (its 4-bit weights are the
ones the transformers backend de-quantizes, so both must agree closely): batches decoded
in slices, streaming, per-row ends, the context's cells given back, scoring, adapters
served from a merged GGUF written on first use, and clear errors for bad files."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from assistant.generation.base import GenerationSettings, UnknownAdapterError
from assistant.generation.gguf_backend import GGUFGenerator
from assistant.generation.gguf_model import ContextFullError, GGUFLoadError
from assistant.generation.model_files import SMOLLM2_GGUF, bundled_smollm2_dir
from assistant.generation.queue import GenerationQueue, WaitTooLongError

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

QUESTIONS = ["What is asthma?", "Name a fruit.", "What is 2+2?"]


def settings(**overrides) -> GenerationSettings:
    return GenerationSettings(**{"backend": "llama", "gguf": bundled_smollm2_dir() / SMOLLM2_GGUF, "threads": 2,
                                 "context_tokens": 4096, "max_new_tokens": 24, "prefill": "llama",
                                 **overrides})


@pytest.fixture(scope="module")
def llama() -> GGUFGenerator:
    generator = GGUFGenerator(settings())
    yield generator
    generator.close()


def prompts(generator, questions=QUESTIONS) -> list[str]:
    return [generator.chat_prompt([{"role": "user", "content": q}]) for q in questions]


def free(generator: GGUFGenerator) -> bool:
    """Every key/value cell of the base model's context is given back."""
    return not generator._models[None]._reserved


def test_it_answers_and_scores_as_the_transformers_backend_does(llama: GGUFGenerator) -> None:
    from assistant.generation.local import LocalGenerator

    torch_model = LocalGenerator(GenerationSettings(max_new_tokens=24))
    texts = prompts(llama)
    assert texts == prompts(torch_model)  # one chat template
    ours, theirs = llama.generate(texts, max_new_tokens=6), torch_model.generate(texts, max_new_tokens=6)
    # the same weights; llama.cpp rounds activations to 8 bits, which may flip a near tie late on
    assert sum(a.text == b.text for a, b in zip(ours, theirs)) >= 2
    assert [r.prompt_tokens for r in ours] == [r.prompt_tokens for r in theirs]
    for a, b in zip(ours, theirs):
        assert abs(a.mean_logprob - b.mean_logprob) < 0.25
    choices = ["yes", "no", "maybe not"]
    for got, want in zip(llama.choice_nlls(texts[0], choices), torch_model.choice_nlls(texts[0], choices)):
        assert got == pytest.approx(want, abs=0.5)
    pairs = ([texts[0], ""], ["Asthma is a disease of the airways."] * 2)
    for got, want in zip(llama.continuation_nlls(*pairs), torch_model.continuation_nlls(*pairs)):
        assert len(got) == len(want) and got == pytest.approx(want, abs=0.6)
    assert llama.continuation_nll(*pairs)[1] == sum(len(r) for r in torch_model.continuation_nlls(*pairs))
    assert free(llama)


def test_rows_end_on_their_own_and_stream_their_text(llama: GGUFGenerator) -> None:
    texts = prompts(llama)
    pieces: list[str] = []
    stop_now = threading.Event()
    decoding = llama.begin(texts, max_new_tokens=[3, 20, 20], on_token=[None, pieces.append, None],
                           stop=[None, None, stop_now.is_set])
    first = decoding.advance(16)  # the slice ends with the first row that ends: row 0, at 3 tokens
    assert [row for row, _ in first] == [0] and decoding.last_steps == 3
    assert first[0][1].completion_tokens == 3 and first[0][1].finish_reason == "length"
    assert decoding.last_prefill_tokens == sum(len(llama.tokenizer(t).input_ids) for t in texts)
    assert decoding.drop_stopped() == []
    stop_now.set()
    ((row, result),) = decoding.drop_stopped()
    assert row == 2 and result.finish_reason == "stopped" and result.completion_tokens == 3
    rest = decoding.advance(100)
    assert [row for row, _ in rest] == [1] and decoding.done
    streamed = rest[0][1]
    assert "".join(pieces) == streamed.text and streamed.text.strip()
    assert streamed.finish_reason in ("stop", "length") and streamed.mean_logprob < 0
    assert free(llama)


def test_the_queue_serves_it_in_turns(llama: GGUFGenerator) -> None:
    with GenerationQueue(llama, max_batch_size=4, queue_size=8, slice_tokens=4) as queue:
        long = queue.submit(prompts(llama)[0], max_new_tokens=40)
        short = queue.submit(prompts(llama)[2], max_new_tokens=4)
        assert short.result(timeout=60).completion_tokens <= 4
        assert long.result(timeout=60).completion_tokens > 4
    assert free(llama)


def test_a_full_context_is_a_retry_and_a_too_long_answer_a_clear_error(llama: GGUFGenerator) -> None:
    (text,) = prompts(llama, ["Hi"])
    release = threading.Event()
    held = llama.begin([text], max_new_tokens=3000, stop=[release.is_set])  # most of the 4,096 cells
    with pytest.raises(ContextFullError, match="retry shortly") as refused:
        llama.begin([text, text], max_new_tokens=600)
    assert isinstance(refused.value, WaitTooLongError) and refused.value.retry_after > 0  # a 503 with Retry-After
    release.set()
    assert [row for row, _ in held.drop_stopped()] == [0]
    assert free(llama)  # the refused batch took no cells either
    with pytest.raises(ValueError, match="do not fit the llama.cpp context of 4096"):
        llama.begin([text], max_new_tokens=5000)
    with pytest.raises(UnknownAdapterError, match="no adapter 'v9'"):
        llama.generate([text], adapter="v9")


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(GGUFLoadError, match="no GGUF file at"):
        GGUFGenerator(settings(gguf=tmp_path / "absent.gguf"))
    (tmp_path / "text.gguf").write_text("not a model")
    with pytest.raises(GGUFLoadError, match="is not a GGUF file"):
        GGUFGenerator(settings(gguf=tmp_path / "text.gguf"))
    with pytest.raises(GGUFLoadError, match="needs a GGUF of"):
        GGUFGenerator(settings(gguf=None, model=str(tmp_path)))
    with pytest.raises(GGUFLoadError, match="does not use the tokenizer of the base model"):
        GGUFGenerator(settings(gguf=gguf_with_other_vocabulary(tmp_path / "other.gguf")))


def gguf_with_other_vocabulary(target: Path) -> Path:
    """The bundled GGUF with two of its tokens' texts swapped: it loads, but the same text
    makes other tokens than the model's tokenizer does."""
    import gguf

    source = bundled_smollm2_dir() / SMOLLM2_GGUF
    reader = gguf.GGUFReader(str(source))
    writer = gguf.GGUFWriter(str(target), "llama")
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == gguf.Keys.General.ARCHITECTURE:
            continue
        value = field.contents()
        if field.name == gguf.Keys.Tokenizer.LIST:
            a, b = value.index("a"), value.index("e")
            value[a], value[b] = value[b], value[a]
        kind = field.types[0]
        writer.add_key_value(field.name, value, kind, sub_type=field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    for tensor in reader.tensors:
        writer.add_tensor(tensor.name, tensor.data, raw_shape=tensor.data.shape, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


@pytest.mark.slow
def test_an_adapter_is_served_from_its_merged_gguf(tmp_path: Path) -> None:
    """A random LoRA adapter that changes the answers: merged and written as GGUF beside it the
    first time it loads, then served; a broken one fails and changes nothing."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from assistant.generation.model_files import resolve_model_dir

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(resolve_model_dir("bundled:smollm2"))
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    registry = tmp_path / "registry"
    get_peft_model(base, lora).save_pretrained(str(registry / "v1"))
    (registry / "broken").mkdir()
    (registry / "broken" / "adapter_config.json").write_text((registry / "v1" / "adapter_config.json").read_text())
    (registry / "broken" / "adapter_model.safetensors").write_bytes(b"cut short")

    generator = GGUFGenerator(settings(adapters_dir=registry))
    texts = prompts(generator)
    base_answers = generator.generate(texts, max_new_tokens=12)
    generator.set_active_adapter("v1")
    assert (registry / "v1" / "gguf" / "v1-Q8_0.gguf").is_file()
    tuned = generator.generate(texts, max_new_tokens=12)
    assert [r.text for r in tuned] != [r.text for r in base_answers]
    assert generator.generate(texts, max_new_tokens=12, adapter="v1") == tuned
    # scoring with no adapter named is the base model's, whichever adapter is active
    pair = ([texts[0]], ["Asthma is a disease."])
    assert generator.continuation_nlls(*pair) != generator.continuation_nlls(*pair, adapter="v1")
    with pytest.raises(Exception):
        generator.set_active_adapter("broken")
    assert generator.active_adapter == "v1" and "broken" not in generator._models
    assert not list((registry / "broken").glob("gguf/*.gguf"))
    generator.close()


def test_the_cache_blob_written_is_the_one_llama_cpp_writes(llama: GGUFGenerator) -> None:
    """A sequence llama.cpp read itself, taken apart by the layout and written back by
    sequence_blob, is byte for byte what llama.cpp wrote."""
    import numpy as np

    from assistant.generation.gguf_prefill import cache_layout, sequence_blob

    model = llama._models[None]
    ids = model.tokenize(prompts(llama)[0])
    with model.lock:
        seq = model.take_sequence(len(ids))
        try:
            layout = cache_layout(model, seq)
            assert layout is not None and layout.layers == 30 and layout.row_bytes == 3 * 64 * 2
            model.decode([(seq, pos, token, False) for pos, token in enumerate(ids)])
            blob = model.sequence_state(seq)
        finally:
            model.release_sequence(seq)
    cells, offset, rows = len(ids), 16 + 12 * len(ids) + 8, []
    for _ in range(2 * layout.layers):
        rows.append(np.frombuffer(blob, dtype="<f2", count=cells * layout.row_bytes // 2, offset=offset + 12)
                    .reshape(cells, -1))
        offset += 12 + cells * layout.row_bytes
    assert sequence_blob(layout, rows[:30], rows[30:], seq) == blob


def test_prompts_read_by_torch_are_decoded_by_llama_cpp(llama: GGUFGenerator) -> None:
    """ASSISTANT_PREFILL=torch: transformers (bfloat16) reads the prompts and fills the llama.cpp
    sequences, which decode on as if llama.cpp had read them (same weights, other rounding)."""
    torch_read = GGUFGenerator(settings(prefill="torch"))
    assert torch_read._torch_prefill is not None
    texts = prompts(llama)
    ours, theirs = torch_read.generate(texts, max_new_tokens=8), llama.generate(texts, max_new_tokens=8)
    assert sum(a.text == b.text for a, b in zip(ours, theirs)) >= 2
    for a, b in zip(ours, theirs):
        assert a.prompt_tokens == b.prompt_tokens and abs(a.mean_logprob - b.mean_logprob) < 0.3
    # a second turn decodes from the cells torch wrote: a wrong layout gives nonsense at once
    pieces: list[str] = []
    (long,) = torch_read.generate(texts[:1], max_new_tokens=24, on_token=[pieces.append])
    assert long.text.lower().startswith("asthma is") and "".join(pieces) == long.text
    assert not torch_read._models[None]._reserved
    torch_read.close()


def test_auto_prefill_reads_with_torch_only_where_bfloat16_is_native() -> None:
    """The default, ``auto``: emulated bfloat16 reads more slowly than llama.cpp, so only a CPU
    with AMX or AVX512-BF16 gets torch's prompt reading."""
    import torch

    from assistant.generation.gguf_backend import reads_with_torch
    from indexer.embedder import native_bf16

    assert GenerationSettings().prefill == "auto"
    assert reads_with_torch("auto") is native_bf16(torch.device("cpu"))
    assert reads_with_torch("torch") and not reads_with_torch("llama")
