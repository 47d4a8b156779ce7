//! Chunking with character offsets (Python string indices).

use crate::convert::{byte_to_char_offsets, TextBatch};
use crate::packing::Tokenizer;
use crate::runtime::detach_core;
use datacore::chunk::{chunk_text, word_token_spans, ChunkOptions};
use pyo3::prelude::*;
use rayon::prelude::*;

/// For each text, its chunks as `(start, end)` character offsets, so that
/// `text[start:end]` is the chunk. Tokens are counted with `tokenizer` when
/// given, else as words and punctuation marks.
#[pyfunction]
#[pyo3(signature = (texts, *, max_tokens=256, overlap=32, tokenizer=None))]
pub fn chunk(
    py: Python<'_>,
    texts: &Bound<'_, PyAny>,
    max_tokens: usize,
    overlap: usize,
    tokenizer: Option<PyRef<'_, Tokenizer>>,
) -> PyResult<Vec<Vec<(usize, usize)>>> {
    let batch = TextBatch::extract(texts, "texts")?;
    let strs = batch.strs();
    let opts = ChunkOptions { max_tokens, overlap_tokens: overlap };
    let tok = tokenizer.as_ref().map(|t| t.core());
    detach_core(py, || {
        strs.par_iter()
            .map(|text| {
                let tokens = match tok {
                    Some(t) => t.token_spans(text)?,
                    None => word_token_spans(text),
                };
                let spans = chunk_text(text, &tokens, opts)?;
                let bytes: Vec<usize> = spans.iter().flat_map(|s| [s.start, s.end]).collect();
                let chars = byte_to_char_offsets(text, &bytes);
                Ok(chars.chunks(2).map(|p| (p[0], p[1])).collect())
            })
            .collect::<datacore::Result<Vec<_>>>()
    })
}
