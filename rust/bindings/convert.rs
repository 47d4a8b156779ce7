//! Python → Rust conversion of text batches, with errors that name the item.

use crate::errors::invalid;
use pyo3::prelude::*;
use pyo3::pybacked::{PyBackedBytes, PyBackedStr};
use pyo3::types::{PyBytes, PyString};

/// A batch of texts borrowed from Python objects (`str` or UTF-8 `bytes`),
/// kept alive while the GIL is released.
pub struct TextBatch {
    items: Vec<Item>,
}

enum Item {
    Str(PyBackedStr),
    Bytes(PyBackedBytes),
}

impl TextBatch {
    /// Accepts any iterable of `str` or `bytes`; a bare `str` is rejected
    /// because iterating it would treat each character as a document.
    pub fn extract(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Self> {
        if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
            return Err(invalid(format!("{what} must be a list of texts, not a single {}", type_name(obj))));
        }
        let iter = obj
            .try_iter()
            .map_err(|_| invalid(format!("{what} must be a list of str, got {}", type_name(obj))))?;
        let mut items = Vec::with_capacity(obj.len().unwrap_or(0));
        for (i, item) in iter.enumerate() {
            let item = item?;
            items.push(extract_item(&item, i, what)?);
        }
        Ok(TextBatch { items })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The texts as `&str` (bytes were validated as UTF-8 on extraction).
    pub fn strs(&self) -> Vec<&str> {
        self.items
            .iter()
            .map(|it| match it {
                Item::Str(s) => &**s,
                // validated in extract_item
                Item::Bytes(b) => std::str::from_utf8(b).unwrap_or_default(),
            })
            .collect()
    }
}

fn extract_item(item: &Bound<'_, PyAny>, index: usize, what: &str) -> PyResult<Item> {
    if item.is_instance_of::<PyString>() {
        return item.extract::<PyBackedStr>().map(Item::Str).map_err(|_| {
            invalid(format!(
                "{what}[{index}] is not valid Unicode text (it contains a lone surrogate); \
                 decode its source with errors='replace'"
            ))
        });
    }
    if item.is_instance_of::<PyBytes>() {
        let bytes: PyBackedBytes = item.extract()?;
        if let Err(e) = std::str::from_utf8(&bytes) {
            return Err(invalid(format!(
                "{what}[{index}] is not valid UTF-8 (invalid byte at offset {}); decode it first, e.g. with errors='replace'",
                e.valid_up_to()
            )));
        }
        return Ok(Item::Bytes(bytes));
    }
    Err(invalid(format!("{what}[{index}] must be str or bytes, got {}", type_name(item))))
}

pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// Converts sorted-or-not byte offsets of `text` into Python character offsets.
pub fn byte_to_char_offsets(text: &str, byte_offsets: &[usize]) -> Vec<usize> {
    if text.is_ascii() {
        return byte_offsets.to_vec();
    }
    let mut order: Vec<usize> = (0..byte_offsets.len()).collect();
    order.sort_unstable_by_key(|&i| byte_offsets[i]);
    let mut out = vec![0usize; byte_offsets.len()];
    let mut chars = text.char_indices().map(|(b, _)| b).chain(std::iter::once(text.len())).enumerate().peekable();
    for i in order {
        let target = byte_offsets[i];
        while let Some(&(_, b)) = chars.peek() {
            if b >= target {
                break;
            }
            chars.next();
        }
        out[i] = chars.peek().map(|&(c, _)| c).unwrap_or(text.chars().count());
    }
    out
}
