//! `indexer._native`: the PyO3 layer over the `datacore` crate.
//!
//! Private to the `indexer` package: only `indexer/native.py` imports it, and
//! `indexer/_native.pyi` documents every export. Each batch function converts
//! its Python inputs, releases the GIL once (see [`runtime::detach`]), runs the
//! core on the extension's rayon pool and converts the outputs.

mod chunking;
mod convert;
mod dedup;
mod errors;
mod packing;
mod runtime;
mod text;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    m.add_function(wrap_pyfunction!(runtime::num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(text::normalize, m)?)?;
    m.add_function(wrap_pyfunction!(text::content_hashes, m)?)?;
    m.add_function(wrap_pyfunction!(text::exact_dedup, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::lsh_params, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::minhash_signatures, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::signatures_and_edit_mask, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::one_edit_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::cluster_signatures, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::near_dedup, m)?)?;
    m.add_function(wrap_pyfunction!(dedup::decontaminate, m)?)?;
    m.add_class::<dedup::LshIndex>()?;
    m.add_function(wrap_pyfunction!(chunking::chunk, m)?)?;
    m.add_class::<packing::Tokenizer>()?;
    m.add_function(wrap_pyfunction!(packing::build_sft_examples, m)?)?;
    m.add_function(wrap_pyfunction!(packing::pack_examples, m)?)?;
    m.add_function(wrap_pyfunction!(packing::pack_conversations, m)?)?;
    Ok(())
}
