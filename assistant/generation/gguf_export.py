"""Exporting a model for llama.cpp and Ollama (``assistant export``): a registered adapter
merged into the base weights, written as GGUF files (Q8_0 and a 4-bit type) with the base's
tokenizer and chat template, and an Ollama ``Modelfile``; each file loaded back and its
greedy output compared with the merged torch model's.

    manifest = export_model(out_dir, adapter_dir=registry.root / "v3", types=("q8_0", "q4_1"))

Why from the base's own GGUF: the bundled base ships as GGUF, so its file already holds
everything llama.cpp needs besides the weights (architecture settings, the tokenizer's
vocabulary, merges and special tokens, the chat template). The export copies those and
writes every tensor anew from the merged weights, named and laid out as llama.cpp reads
them (transformers' own GGUF name map, and llama.cpp's permutation of the query and key
rows, which transformers undoes on loading). gguf-py, the llama.cpp project's library,
writes the file and quantizes. A base without a GGUF (a Hugging Face id) needs one given
(``source_gguf``), e.g. made with llama.cpp's ``convert_hf_to_gguf.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant.generation.base import GGUF_TYPES
from assistant.generation.model_files import DEFAULT_MODEL, SMOLLM2_GGUF, bundled_smollm2_dir, resolve_model_dir

# the 4-bit types gguf-py quantizes; Q8_0 beside them. The token embeddings stay Q8_0 in a
# 4-bit file, as llama.cpp's own quantizer keeps them above 4 bits: they are looked up, not
# multiplied, so their size costs memory but no speed, and 4 bits there hurt every token.
TYPES = GGUF_TYPES
KEEP_Q8_IN_4BIT = ("token_embd.weight", "output.weight")
VERIFY_PROMPTS = ("What is hypertension?", "Name three symptoms of the flu.", "What does the liver do?")


class ExportError(ValueError):
    """The model cannot be exported as asked: the message says why and what to give instead."""


def merged_model(base: str, adapter_dir: Path | None) -> Any:
    """The base model in fp32 with the adapter's LoRA weights merged in (the base alone without one)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve_model_dir(base), dtype="float32")
    if adapter_dir is None:
        return model.eval()
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ExportError(f"{adapter_dir} is not a peft adapter folder (no adapter_config.json)")
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload().eval()


def source_gguf_of(base: str, given: Path | None) -> Path:
    if given is not None:
        if not given.is_file():
            raise ExportError(f"no GGUF file at {given}")
        return given
    if base == DEFAULT_MODEL:
        return bundled_smollm2_dir() / SMOLLM2_GGUF
    raise ExportError(f"the base model {base} has no GGUF to take its tokenizer and settings from; give one "
                      f"(--base-gguf FILE, e.g. made by llama.cpp's convert_hf_to_gguf.py from the same model)")


def write_gguf(model: Any, source: Path, target: Path, qtype: str) -> dict[str, Any]:
    """Writes ``model``'s weights as ``target`` (``qtype``), with ``source``'s metadata."""
    import gguf
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor, get_gguf_hf_weights_map

    if qtype not in TYPES:
        raise ExportError(f"unknown GGUF type {qtype!r}; choose from {', '.join(TYPES)}")
    reader = gguf.GGUFReader(str(source))
    arch = str(reader.fields[gguf.Keys.General.ARCHITECTURE].contents())
    if arch != "llama" or model.config.model_type != "llama":
        raise ExportError(f"exporting {arch} models is not supported; only the llama architecture (SmolLM2, Llama)")
    config = model.config
    to_hf = get_gguf_hf_weights_map(model, LlamaTensorProcessor(config=config.to_dict()))
    weights = {name: t.detach().float().numpy() for name, t in model.state_dict().items()}
    writer = gguf.GGUFWriter(str(target), arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF.") \
                or field.name == gguf.Keys.General.FILE_TYPE:
            continue  # written by the writer, or changed below
        kind = field.types[0]
        writer.add_key_value(field.name, field.contents(), kind,
                             sub_type=field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    main_type = getattr(gguf.GGMLQuantizationType, qtype.upper())
    writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{qtype.upper()}"))
    counts: dict[str, int] = {}
    for tensor in reader.tensors:
        hf_name = to_hf.get(tensor.name)
        if hf_name is None or hf_name not in weights:
            raise ExportError(f"the GGUF tensor {tensor.name} has no counterpart in the model; is {source} "
                              f"the GGUF of the same base model?")
        data = _as_llama_cpp_lays_it_out(weights[hf_name], tensor.name, config)
        if tuple(int(n) for n in reversed(tensor.shape)) != data.shape:  # GGUF lists dimensions innermost first
            raise ExportError(f"the GGUF tensor {tensor.name} is {tuple(reversed(tensor.shape))}, the model's "
                              f"{hf_name} is {data.shape}: {source} is not the GGUF of this base model")
        if data.ndim == 1 or data.shape[-1] % 32:
            kind_of = gguf.GGMLQuantizationType.F32  # norms and odd rows stay float
            data = data.astype(np.float32)
        else:
            kind_of = gguf.GGMLQuantizationType.Q8_0 if tensor.name in KEEP_Q8_IN_4BIT and qtype.startswith("q4") \
                else main_type
            data = gguf.quants.quantize(data, kind_of)
        counts[kind_of.name] = counts.get(kind_of.name, 0) + 1
        writer.add_tensor(tensor.name, data, raw_dtype=kind_of)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"file": target.name, "type": qtype, "bytes": target.stat().st_size, "tensors": counts}


def _as_llama_cpp_lays_it_out(weight: np.ndarray, gguf_name: str, config: Any) -> np.ndarray:
    """llama.cpp stores the query and key projections with the rows of each head's two rotary
    halves interleaved (convert_hf_to_gguf.py's ``permute``); transformers undoes it on load."""
    if ".attn_q." in gguf_name:
        heads = config.num_attention_heads
    elif ".attn_k." in gguf_name:
        heads = config.num_key_value_heads
    else:
        return weight
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def ollama_modelfile(gguf_name: str, chat_template: str | None) -> str:
    """An Ollama Modelfile for the file: ChatML turns when the model's template is ChatML
    (SmolLM2's), else Ollama reads the template stored in the GGUF."""
    lines = [f"FROM ./{gguf_name}", "PARAMETER temperature 0", "PARAMETER num_ctx 4096"]
    if chat_template and "<|im_start|>" in chat_template:
        lines += ['TEMPLATE """{{- range .Messages }}<|im_start|>{{ .Role }}',
                  '{{ .Content }}<|im_end|>', '{{ end }}<|im_start|>assistant', '"""',
                  'PARAMETER stop "<|im_end|>"']
    return "\n".join(lines) + "\n"


def greedy_tokens(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int) -> list[list[int]]:
    import torch

    out = []
    for prompt in prompts:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            made = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                                  pad_token_id=tokenizer.eos_token_id)
        out.append(made[0, ids.shape[1]:].tolist())
    return out


def agreement(reference: list[list[int]], other: list[list[int]]) -> float:
    """The share of generated tokens, position by position up to the first difference, that match."""
    same = total = 0
    for a, b in zip(reference, other):
        total += len(a)
        for x, y in zip(a, b):
            if x != y:
                break
            same += 1
    return same / total if total else 1.0


def export_model(out_dir: Path, *, base: str = DEFAULT_MODEL, adapter_dir: Path | None = None,
                 types: Sequence[str] = ("q8_0", "q4_1"), source_gguf: Path | None = None,
                 verify_prompts: Sequence[str] = VERIFY_PROMPTS, verify_tokens: int = 24) -> dict[str, Any]:
    """Merges, writes one GGUF per type and a Modelfile into ``out_dir``, loads each file back
    with transformers' GGUF reader and compares its greedy output with the merged model's;
    writes and returns ``export.json``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for qtype in types:
        if qtype not in TYPES:
            raise ExportError(f"unknown GGUF type {qtype!r}; choose from {', '.join(TYPES)}")
    if not types or verify_tokens < 1 or not verify_prompts:
        raise ExportError("name at least one type, one check prompt and one token to compare")
    source = source_gguf_of(base, source_gguf)
    started = time.perf_counter()
    model = merged_model(base, adapter_dir)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(base))
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{adapter_dir.name if adapter_dir else 'base'}"
    reference = greedy_tokens(model, tokenizer, verify_prompts, verify_tokens)
    files = []
    for qtype in types:
        target = out_dir / f"{stem}-{qtype.upper()}.gguf"
        tmp = target.with_name(f".{target.name}.tmp")
        entry = write_gguf(model, source, tmp, qtype)
        tmp.replace(target)  # never a half-written file under the final name
        entry["file"] = target.name
        loaded = AutoModelForCausalLM.from_pretrained(str(out_dir), gguf_file=target.name, dtype="float32").eval()
        entry["greedy_agreement"] = agreement(reference, greedy_tokens(loaded, tokenizer, verify_prompts,
                                                                       verify_tokens))
        files.append(entry)
        del loaded
    modelfile = out_dir / "Modelfile"
    modelfile.write_text(ollama_modelfile(files[0]["file"], tokenizer.chat_template), encoding="utf-8")
    manifest = {"base_model": base, "adapter": str(adapter_dir) if adapter_dir else None, "source_gguf": str(source),
                "files": files, "modelfile": modelfile.name, "verify_prompts": list(verify_prompts),
                "verify_tokens": verify_tokens, "seconds": round(time.perf_counter() - started, 1)}
    (out_dir / "export.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest
