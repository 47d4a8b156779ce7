"""``assistant export``: a LoRA adapter merged into its base and written as GGUF for llama.cpp
and Ollama. The tiny Llama of conftest.py gets a source GGUF made here (its settings and its
tensors as llama.cpp lays them out); the export must write back the merged weights, which
are read back here with gguf-py and compared tensor by tensor. The bundled SmolLM2 is
exported once for real and its greedy output compared with the torch model's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assistant import cli
from assistant.generation.gguf_export import (
    ExportError, _as_llama_cpp_lays_it_out, export_model, merged_model, ollama_modelfile, write_gguf,
)

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def hf_names(model) -> dict[str, str]:
    """HF name → GGUF name, by transformers' own map."""
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor, get_gguf_hf_weights_map

    return {hf: g for g, hf in get_gguf_hf_weights_map(model, LlamaTensorProcessor(config=model.config.to_dict())).items()}


@pytest.fixture(scope="module")
def source_gguf(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny base as llama.cpp's converter would write it (float32, its settings only)."""
    import gguf
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    c = model.config
    path = tmp_path_factory.mktemp("gguf") / "tiny-F32.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_vocab_size(c.vocab_size)
    names = hf_names(model)
    for hf, tensor in model.state_dict().items():
        writer.add_tensor(names[hf], _as_llama_cpp_lays_it_out(tensor.numpy(), names[hf], c))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def read_back(path: Path, model) -> dict[str, np.ndarray]:
    """Each tensor of the GGUF, dequantized and laid out as the HF model holds it."""
    import gguf

    to_hf = {g: hf for hf, g in hf_names(model).items()}
    out = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(int(n) for n in reversed(t.shape)))
        out[to_hf[t.name]] = _undo_layout(data, t.name, model.config)
    return out


def _undo_layout(w: np.ndarray, name: str, c) -> np.ndarray:
    heads = c.num_attention_heads if ".attn_q." in name else c.num_key_value_heads if ".attn_k." in name else 0
    if not heads:
        return w
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def test_the_merged_weights_are_what_the_file_holds(tiny_model_dir: Path, tiny_adapter_dir: Path,
                                                    source_gguf: Path, tmp_path: Path) -> None:
    merged = merged_model(str(tiny_model_dir), tiny_adapter_dir / "demo")
    base = merged_model(str(tiny_model_dir), None)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not np.allclose(merged.state_dict()[q].numpy(), base.state_dict()[q].numpy())  # the adapter counts
    for qtype, tolerance in (("q8_0", 0.01), ("q4_1", 0.1), ("f16", 0.001), ("bf16", 0.01)):
        stats = write_gguf(merged, source_gguf, tmp_path / f"{qtype}.gguf", qtype)
        got = read_back(tmp_path / f"{qtype}.gguf", merged)
        for name, tensor in merged.state_dict().items():
            want = tensor.numpy()
            scale = float(np.abs(want).max())
            assert np.abs(got[name] - want).max() <= tolerance * scale, (qtype, name)
        assert stats["tensors"]["F32"] == 2 * merged.config.num_hidden_layers + 1  # the norms stay float
        assert stats["tensors"].get(qtype.upper(), 0) > 0


def test_export_writes_files_a_modelfile_and_a_manifest(tiny_model_dir: Path, tiny_adapter_dir: Path,
                                                        source_gguf: Path, tmp_path: Path) -> None:
    manifest = export_model(tmp_path / "out", base=str(tiny_model_dir), adapter_dir=tiny_adapter_dir / "demo",
                            types=("q8_0",), source_gguf=source_gguf, verify_prompts=("hello",), verify_tokens=4)
    (entry,) = manifest["files"]
    assert (tmp_path / "out" / entry["file"]).stat().st_size == entry["bytes"] and entry["file"] == "demo-Q8_0.gguf"
    assert 0.0 <= entry["greedy_agreement"] <= 1.0
    assert json.loads((tmp_path / "out" / "export.json").read_text()) == manifest
    modelfile = (tmp_path / "out" / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./demo-Q8_0.gguf\n") and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_bad_input_is_a_clear_error(tiny_model_dir: Path, tiny_adapter_dir: Path, source_gguf: Path,
                                    tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown GGUF type 'q3'"):
        export_model(tmp_path, base=str(tiny_model_dir), types=("q3",), source_gguf=source_gguf)
    with pytest.raises(ExportError, match="has no GGUF"):
        export_model(tmp_path, base=str(tiny_model_dir))
    with pytest.raises(ExportError, match="no GGUF file at"):
        export_model(tmp_path, base=str(tiny_model_dir), source_gguf=tmp_path / "absent.gguf")
    with pytest.raises(ExportError, match="not a peft adapter folder"):
        merged_model(str(tiny_model_dir), tmp_path)
    # a GGUF of another model: the bundled SmolLM2's against the tiny Llama
    from assistant.generation.model_files import SMOLLM2_GGUF, bundled_smollm2_dir

    with pytest.raises(ExportError, match="is not the GGUF of this base model"):
        write_gguf(merged_model(str(tiny_model_dir), None), bundled_smollm2_dir() / SMOLLM2_GGUF,
                   tmp_path / "x.gguf", "q8_0")


def test_modelfile_without_chatml_leaves_the_template_to_the_gguf() -> None:
    assert ollama_modelfile("m.gguf", "{{ messages }}") == "FROM ./m.gguf\nPARAMETER temperature 0\nPARAMETER num_ctx 4096\n"


@pytest.mark.slow
def test_the_bundled_model_exports_and_answers_as_the_torch_model(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The real path: SmolLM2 from its bundled GGUF, merged with a random LoRA adapter that
    changes its output, written as Q8_0 and loaded back by transformers' GGUF reader."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from assistant.generation.model_files import resolve_model_dir

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(resolve_model_dir("bundled:smollm2"))
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    registry = tmp_path / "registry"
    get_peft_model(base, lora).save_pretrained(str(registry / "v1"))
    argv = ["export", "v1", "--adapters-dir", str(registry), "--out", str(tmp_path / "out"), "--types", "q8_0",
            "--verify-tokens", "8", "--json"]
    assert cli.main(argv) == 0
    manifest = json.loads(capsys.readouterr().out)
    # Q8_0 rounds the merged weights (off the base's 4-bit grid now), which can flip a near tie
    # late in an answer; a wrong tensor layout gives ~0 (measured: 22 of 24 tokens the same)
    assert manifest["files"][0]["greedy_agreement"] >= 0.75
