//! normalize, content hashes and exact dedup.

use crate::convert::TextBatch;
use crate::errors::IntoPyResult;
use crate::runtime::detach;
use datacore::exact::{content_hashes as core_hashes, find_exact_duplicates, HashWidth};
use datacore::normalize::{normalize as core_normalize, NormalizeOptions};
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use rayon::prelude::*;

#[pyfunction]
#[pyo3(signature = (texts, *, lowercase=false, strip_boilerplate=false))]
pub fn normalize(py: Python<'_>, texts: &Bound<'_, PyAny>, lowercase: bool, strip_boilerplate: bool) -> PyResult<Vec<String>> {
    let batch = TextBatch::extract(texts, "texts")?;
    let opts = NormalizeOptions { lowercase, strip_boilerplate };
    let strs = batch.strs();
    detach(py, || strs.par_iter().map(|t| core_normalize(t, opts)).collect())
}

#[pyfunction]
#[pyo3(signature = (texts, *, bits=128))]
pub fn content_hashes(py: Python<'_>, texts: &Bound<'_, PyAny>, bits: u32) -> PyResult<Vec<String>> {
    let width = HashWidth::from_bits(bits).py_err()?;
    let batch = TextBatch::extract(texts, "texts")?;
    let strs = batch.strs();
    let hashes = detach(py, || core_hashes(&strs, width))?;
    let digits = (bits / 4) as usize;
    Ok(hashes.iter().map(|h| format!("{h:0digits$x}")).collect())
}

/// Returns `(keep, duplicate_of)`: a bool mask and, per item, the index of
/// the first occurrence it duplicates (or -1).
#[pyfunction]
#[pyo3(signature = (texts, *, bits=64, normalize=true, lowercase=false))]
#[allow(clippy::type_complexity)]
pub fn exact_dedup<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
    bits: u32,
    normalize: bool,
    lowercase: bool,
) -> PyResult<(Bound<'py, PyArray1<bool>>, Bound<'py, PyArray1<i64>>)> {
    let width = HashWidth::from_bits(bits).py_err()?;
    let batch = TextBatch::extract(texts, "texts")?;
    let strs = batch.strs();
    let opts = NormalizeOptions { lowercase, strip_boilerplate: false };
    let result = detach(py, || {
        let hashes: Vec<u128> = strs
            .par_iter()
            .map(|t| {
                if normalize {
                    datacore::exact::content_hash(&core_normalize(t, opts), width)
                } else {
                    datacore::exact::content_hash(t, width)
                }
            })
            .collect();
        find_exact_duplicates(&hashes)
    })?;
    Ok((result.keep.into_pyarray(py), result.duplicate_of.into_pyarray(py)))
}
