//! Tokenizer, chat-formatted SFT examples and packing.

use crate::convert::{type_name, TextBatch};
use crate::errors::invalid;
use crate::runtime::detach_core;
use datacore::pack::{self, ChatFormat, Message, OverLong, PackOptions, Packed, Role, SftExample};
use datacore::tokenize::TextTokenizer;
use numpy::{IntoPyArray, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMapping};
use std::path::PathBuf;

/// A `tokenizer.json` loaded by the Rust `tokenizers` crate.
#[pyclass(module = "indexer._native", frozen)]
pub struct Tokenizer {
    inner: TextTokenizer,
}

impl Tokenizer {
    pub fn core(&self) -> &TextTokenizer {
        &self.inner
    }
}

#[pymethods]
impl Tokenizer {
    #[staticmethod]
    fn from_file(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = detach_core(py, || TextTokenizer::from_file(&path))?;
        Ok(Tokenizer { inner })
    }

    #[staticmethod]
    fn from_str(py: Python<'_>, json: &str) -> PyResult<Self> {
        let inner = detach_core(py, || TextTokenizer::from_json(json))?;
        Ok(Tokenizer { inner })
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids of each text, without special tokens added.
    fn encode_batch(&self, py: Python<'_>, texts: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u32>>> {
        let batch = TextBatch::extract(texts, "texts")?;
        let strs = batch.strs();
        detach_core(py, || self.inner.encode_batch(&strs))
    }
}

fn required_str(map: &Bound<'_, PyMapping>, key: &str) -> PyResult<String> {
    map.get_item(key)
        .map_err(|_| invalid(format!("chat_format is missing {key:?}")))?
        .extract::<String>()
        .map_err(|_| invalid(format!("chat_format[{key:?}] must be str")))
}

fn chat_format(obj: &Bound<'_, PyAny>) -> PyResult<ChatFormat> {
    let map = obj
        .cast::<PyMapping>()
        .map_err(|_| invalid(format!("chat_format must be a mapping, got {}", type_name(obj))))?;
    let default_system = match map.get_item("default_system") {
        Ok(v) if !v.is_none() => Some(v.extract::<String>().map_err(|_| invalid("chat_format['default_system'] must be str or None"))?),
        _ => None,
    };
    Ok(ChatFormat {
        bos: required_str(map, "bos")?,
        system_prefix: required_str(map, "system_prefix")?,
        system_suffix: required_str(map, "system_suffix")?,
        user_prefix: required_str(map, "user_prefix")?,
        user_suffix: required_str(map, "user_suffix")?,
        assistant_prefix: required_str(map, "assistant_prefix")?,
        assistant_suffix: required_str(map, "assistant_suffix")?,
        default_system,
    })
}

fn conversations(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<Message>>> {
    let mut out = Vec::new();
    for (i, conv) in obj.try_iter().map_err(|_| invalid("conversations must be a list of message lists"))?.enumerate() {
        let conv = conv?;
        let mut messages = Vec::new();
        let iter = conv.try_iter().map_err(|_| invalid(format!("conversations[{i}] must be a list of messages")))?;
        for (j, msg) in iter.enumerate() {
            let msg = msg?;
            let field = |name: &str| -> PyResult<String> {
                msg.get_item(name)
                    .and_then(|v| v.extract::<String>())
                    .map_err(|_| invalid(format!("conversations[{i}][{j}] needs a str {name:?}")))
            };
            let role = match field("role")?.as_str() {
                "system" => Role::System,
                "user" => Role::User,
                "assistant" => Role::Assistant,
                other => return Err(invalid(format!("conversations[{i}][{j}] has role {other:?}; use system, user or assistant"))),
            };
            messages.push(Message { role, content: field("content")? });
        }
        out.push(messages);
    }
    Ok(out)
}

fn overlong(mode: &str) -> PyResult<OverLong> {
    match mode {
        "truncate" => Ok(OverLong::Truncate),
        "drop" => Ok(OverLong::Drop),
        other => Err(invalid(format!("overlong must be 'truncate' or 'drop', got {other:?}"))),
    }
}

/// `(input_ids, labels)` per conversation; labels are -100 except on assistant turns.
#[pyfunction]
pub fn build_sft_examples(
    py: Python<'_>,
    tokenizer: PyRef<'_, Tokenizer>,
    conversations_: &Bound<'_, PyAny>,
    chat_format_: &Bound<'_, PyAny>,
) -> PyResult<Vec<(Vec<u32>, Vec<i32>)>> {
    let convs = conversations(conversations_)?;
    let format = chat_format(chat_format_)?;
    let tok = tokenizer.core();
    let examples = detach_core(py, || pack::build_examples(tok, &format, &convs))?;
    Ok(examples.into_iter().map(|e| (e.input_ids, e.labels)).collect())
}

fn packed_to_dict<'py>(py: Python<'py>, p: Packed) -> PyResult<Bound<'py, PyDict>> {
    let shape = [p.num_sequences, p.seq_len];
    let widen_u = |v: Vec<u32>| v.into_iter().map(i64::from).collect::<Vec<i64>>();
    let out = PyDict::new(py);
    out.set_item("input_ids", widen_u(p.input_ids).into_pyarray(py).reshape(shape)?)?;
    out.set_item("labels", p.labels.into_iter().map(i64::from).collect::<Vec<i64>>().into_pyarray(py).reshape(shape)?)?;
    out.set_item("position_ids", widen_u(p.position_ids).into_pyarray(py).reshape(shape)?)?;
    out.set_item("example_indices", p.example_indices)?;
    out.set_item("example_lengths", p.example_lengths)?;
    out.set_item("efficiency", p.efficiency)?;
    out.set_item("truncated", p.truncated)?;
    out.set_item("dropped", p.dropped)?;
    Ok(out)
}

/// Packs `(input_ids, labels)` examples; see `pack_conversations` for the result.
#[pyfunction]
#[pyo3(signature = (examples, *, seq_len=1024, pad_id=0, overlong="truncate"))]
pub fn pack_examples<'py>(
    py: Python<'py>,
    examples: Vec<(Vec<u32>, Vec<i32>)>,
    seq_len: usize,
    pad_id: u32,
    overlong: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let opts = PackOptions { seq_len, pad_id, overlong: self::overlong(overlong)? };
    for (i, (ids, labels)) in examples.iter().enumerate() {
        if ids.len() != labels.len() {
            return Err(invalid(format!("examples[{i}] has {} input_ids but {} labels", ids.len(), labels.len())));
        }
    }
    let examples: Vec<SftExample> = examples.into_iter().map(|(input_ids, labels)| SftExample { input_ids, labels }).collect();
    let packed = detach_core(py, || pack::pack_examples(&examples, opts))?;
    packed_to_dict(py, packed)
}

/// Renders, tokenizes and packs conversations in one call. Returns a dict of
/// `input_ids`, `labels`, `position_ids` (int64 arrays, sequences × seq_len),
/// `example_indices`, `example_lengths`, `efficiency`, `truncated`, `dropped`.
#[pyfunction]
#[pyo3(signature = (tokenizer, conversations_, chat_format_, *, seq_len=1024, pad_id=0, overlong="truncate"))]
#[allow(clippy::too_many_arguments)]
pub fn pack_conversations<'py>(
    py: Python<'py>,
    tokenizer: PyRef<'py, Tokenizer>,
    conversations_: &Bound<'py, PyAny>,
    chat_format_: &Bound<'py, PyAny>,
    seq_len: usize,
    pad_id: u32,
    overlong: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let opts = PackOptions { seq_len, pad_id, overlong: self::overlong(overlong)? };
    let convs = conversations(conversations_)?;
    let format = chat_format(chat_format_)?;
    let tok = tokenizer.core();
    let packed = detach_core(py, || {
        let examples = pack::build_examples(tok, &format, &convs)?;
        pack::pack_examples(&examples, opts)
    })?;
    packed_to_dict(py, packed)
}
