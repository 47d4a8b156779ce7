//! MinHash signatures, LSH clustering, the persistent LSH index and decontamination.

use crate::convert::{type_name, TextBatch};
use crate::errors::{invalid, IntoPyResult};
use crate::runtime::{detach, detach_core};
use datacore::decontam::{find_overlaps, DecontamOptions};
use datacore::edits;
use datacore::fingerprint::{FingerprintConfig, Fingerprinter};
use datacore::lsh::{self, KeepPolicy, LshParams};
use datacore::normalize::NormalizeOptions;
use datacore::shingle::Shingles;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::RwLock;

fn fingerprint_config(num_perm: usize, seed: u64, shingle: &str, shingle_size: usize, strip_boilerplate: bool) -> PyResult<FingerprintConfig> {
    Ok(FingerprintConfig {
        num_perm,
        seed,
        shingles: Shingles::new(shingle, shingle_size).py_err()?,
        normalize: NormalizeOptions { lowercase: false, strip_boilerplate },
    })
}

fn keep_policy(keep: &str) -> PyResult<KeepPolicy> {
    match keep {
        "first" => Ok(KeepPolicy::First),
        "longest" => Ok(KeepPolicy::Longest),
        other => Err(invalid(format!("keep must be 'first' or 'longest', got {other:?}"))),
    }
}

/// `(bands, rows)` chosen for a Jaccard threshold.
#[pyfunction]
#[pyo3(signature = (threshold, num_perm=128, *, false_negative_weight=0.9))]
pub fn lsh_params(threshold: f64, num_perm: usize, false_negative_weight: f64) -> PyResult<(usize, usize)> {
    let p = LshParams::weighted(threshold, num_perm, false_negative_weight).py_err()?;
    Ok((p.bands, p.rows))
}

#[pyfunction]
#[pyo3(signature = (texts, *, num_perm=128, seed=1, shingle="word", shingle_size=5, strip_boilerplate=false))]
pub fn minhash_signatures<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
    num_perm: usize,
    seed: u64,
    shingle: &str,
    shingle_size: usize,
    strip_boilerplate: bool,
) -> PyResult<Bound<'py, PyArray2<u32>>> {
    let config = fingerprint_config(num_perm, seed, shingle, shingle_size, strip_boilerplate)?;
    let fingerprinter = Fingerprinter::new(config).py_err()?;
    let batch = TextBatch::extract(texts, "texts")?;
    let strs = batch.strs();
    let flat = detach(py, || fingerprinter.signatures(&strs))?;
    flat.into_pyarray(py).reshape([batch.len(), num_perm])
}

/// As `minhash_signatures`, with a mask of the texts the one-word-edit test
/// takes (`edit_min_words` to `edits::MAX_WORDS - 1` words; none when 0),
/// from the same pass over the texts.
#[pyfunction]
#[pyo3(signature = (texts, *, num_perm=128, seed=1, shingle="word", shingle_size=5, strip_boilerplate=false, edit_min_words=10))]
#[allow(clippy::too_many_arguments, clippy::type_complexity)]
pub fn signatures_and_edit_mask<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
    num_perm: usize,
    seed: u64,
    shingle: &str,
    shingle_size: usize,
    strip_boilerplate: bool,
    edit_min_words: usize,
) -> PyResult<(Bound<'py, PyArray2<u32>>, Bound<'py, PyArray1<bool>>)> {
    let config = fingerprint_config(num_perm, seed, shingle, shingle_size, strip_boilerplate)?;
    let fingerprinter = Fingerprinter::new(config).py_err()?;
    let batch = TextBatch::extract(texts, "texts")?;
    let strs = batch.strs();
    let (flat, mask) = detach(py, || {
        let (sigs, words) = fingerprinter.signatures_and_words(&strs, edits::word_range(edit_min_words));
        (sigs, words.iter().map(|w| !w.is_empty()).collect::<Vec<bool>>())
    })?;
    Ok((flat.into_pyarray(py).reshape([batch.len(), num_perm])?, mask.into_pyarray(py)))
}

/// Pairs `(i, j)`, `i < j`, of the texts one word edit apart (as `near_dedup`
/// judges them), as a `(k, 2)` uint32 array; texts outside the word range
/// take no part.
#[pyfunction]
#[pyo3(signature = (texts, *, edit_min_words=10, strip_boilerplate=false))]
pub fn one_edit_pairs<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
    edit_min_words: usize,
    strip_boilerplate: bool,
) -> PyResult<Bound<'py, PyArray2<u32>>> {
    let config = FingerprintConfig { normalize: NormalizeOptions { lowercase: false, strip_boilerplate }, ..FingerprintConfig::default() };
    let fingerprinter = Fingerprinter::new(config).py_err()?;
    let batch = TextBatch::extract(texts, "texts")?;
    let strs = batch.strs();
    let flat = detach(py, || {
        let words = fingerprinter.words(&strs, edits::word_range(edit_min_words));
        let pairs = fingerprinter.one_edit_pairs(&strs, &words);
        pairs.iter().flat_map(|&p| [(p >> 32) as u32, p as u32]).collect::<Vec<u32>>()
    })?;
    let k = flat.len() / 2;
    flat.into_pyarray(py).reshape([k, 2])
}

/// Pairs `(i, j)` from a `(k, 2)` integer array, packed `min << 32 | max`.
fn packed_pairs(pairs: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    let array: PyReadonlyArray2<u32> = pairs.extract().map_err(|_| {
        invalid(format!("pairs must be a (k, 2) numpy uint32 array, got {}", type_name(pairs)))
    })?;
    if array.shape()[1] != 2 {
        return Err(invalid(format!("pairs must have 2 columns, got {}", array.shape()[1])));
    }
    let array = array.as_array();
    Ok(array.rows().into_iter().map(|r| {
        let (a, b) = (r[0].min(r[1]), r[0].max(r[1]));
        (u64::from(a) << 32) | u64::from(b)
    }).collect())
}

/// Clusters signature rows, also joining the rows `pairs` names; returns a
/// dict with `cluster_of`, `keep`, `num_dup_clusters`, `candidate_pairs`,
/// `verified_pairs`, `edit_pairs`, `bands`, `rows`.
#[pyfunction]
#[pyo3(signature = (signatures, *, threshold=0.8, keep="first", lengths=None, false_negative_weight=0.9, pairs=None))]
pub fn cluster_signatures<'py>(
    py: Python<'py>,
    signatures: &Bound<'py, PyAny>,
    threshold: f64,
    keep: &str,
    lengths: Option<Vec<usize>>,
    false_negative_weight: f64,
    pairs: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let pairs = pairs.map(packed_pairs).transpose()?.unwrap_or_default();
    let policy = keep_policy(keep)?;
    let array: PyReadonlyArray2<u32> = signatures.extract().map_err(|_| {
        invalid(format!("signatures must be a 2-D numpy uint32 array, got {}", type_name(signatures)))
    })?;
    let [n, num_perm] = [array.shape()[0], array.shape()[1]];
    let params = LshParams::weighted(threshold, num_perm, false_negative_weight).py_err()?;
    let lengths = lengths.unwrap_or_default();
    if policy == KeepPolicy::Longest && lengths.len() != n {
        return Err(invalid(format!("keep='longest' needs lengths for all {n} rows, got {}", lengths.len())));
    }
    // as_slice also accepts Fortran order, whose memory order is column-major
    let owned;
    let flat: &[u32] = match array.as_slice() {
        Ok(s) if array.is_c_contiguous() => s,
        _ => {
            owned = array.as_array().iter().copied().collect::<Vec<u32>>();
            &owned
        }
    };
    let clusters =
        detach_core(py, || lsh::cluster_signatures_joining(flat, num_perm, params, policy, &lengths, &pairs))?;
    clusters_dict(py, clusters, params)
}

fn clusters_dict<'py>(py: Python<'py>, clusters: lsh::Clusters, params: LshParams) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item("cluster_of", clusters.cluster_of.into_pyarray(py))?;
    out.set_item("keep", clusters.keep.into_pyarray(py))?;
    out.set_item("num_dup_clusters", clusters.num_dup_clusters)?;
    out.set_item("candidate_pairs", clusters.candidate_pairs)?;
    out.set_item("verified_pairs", clusters.verified_pairs)?;
    out.set_item("edit_pairs", clusters.extra_pairs)?;
    out.set_item("bands", params.bands)?;
    out.set_item("rows", params.rows)?;
    Ok(out)
}

/// Raw texts to clusters in one call: MinHash LSH as `cluster_signatures`, and
/// texts of `edit_min_words` to `edits::MAX_WORDS - 1` words joined when they
/// are one word edit apart, unless the edit swaps one word that names or
/// counts something (`identifying::names_something`) for another, or adds or
/// drops one (`edit_min_words=0` turns the test off). Returns the
/// `cluster_signatures` dict with `edit_pairs` set; `lengths` as there.
#[pyfunction]
#[pyo3(signature = (texts, *, threshold=0.8, num_perm=128, seed=1, shingle="word", shingle_size=5, keep="first", lengths=None, strip_boilerplate=false, false_negative_weight=0.9, edit_min_words=10))]
#[allow(clippy::too_many_arguments)]
pub fn near_dedup<'py>(
    py: Python<'py>,
    texts: &Bound<'py, PyAny>,
    threshold: f64,
    num_perm: usize,
    seed: u64,
    shingle: &str,
    shingle_size: usize,
    keep: &str,
    lengths: Option<Vec<usize>>,
    strip_boilerplate: bool,
    false_negative_weight: f64,
    edit_min_words: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let policy = keep_policy(keep)?;
    let lengths = lengths.unwrap_or_default();
    let config = fingerprint_config(num_perm, seed, shingle, shingle_size, strip_boilerplate)?;
    let fingerprinter = Fingerprinter::new(config).py_err()?;
    let params = LshParams::weighted(threshold, num_perm, false_negative_weight).py_err()?;
    let batch = TextBatch::extract(texts, "texts")?;
    let strs = batch.strs();
    let clusters = detach_core(py, || {
        // an empty range when turned off, so no word lists are kept
        let (sigs, words) = fingerprinter.signatures_and_words(&strs, edits::word_range(edit_min_words));
        let pairs = fingerprinter.one_edit_pairs(&strs, &words);
        drop(words);
        lsh::cluster_signatures_joining(&sigs, num_perm, params, policy, &lengths, &pairs)
    })?;
    clusters_dict(py, clusters, params)
}

/// Returns `(overlaps, skipped_eval)` with overlaps as
/// `(train_index, eval_indices, shared_ngrams)` tuples.
#[pyfunction]
#[pyo3(signature = (train, eval, *, ngram=13, min_words=8))]
#[allow(clippy::type_complexity)]
pub fn decontaminate(
    py: Python<'_>,
    train: &Bound<'_, PyAny>,
    eval: &Bound<'_, PyAny>,
    ngram: usize,
    min_words: usize,
) -> PyResult<(Vec<(usize, Vec<usize>, usize)>, usize)> {
    let train = TextBatch::extract(train, "train")?;
    let eval = TextBatch::extract(eval, "eval")?;
    let (t, e) = (train.strs(), eval.strs());
    let report = detach_core(py, || find_overlaps(&t, &e, DecontamOptions { ngram, min_words }))?;
    let overlaps = report.overlaps.into_iter().map(|o| (o.train_index, o.eval_indices, o.shared_ngrams)).collect();
    Ok((overlaps, report.skipped_eval))
}

/// An incremental near-duplicate index keyed by document id, persisted to one file.
#[pyclass(module = "indexer._native", frozen)]
pub struct LshIndex {
    inner: RwLock<lsh::LshIndex>,
    fingerprinter: Fingerprinter,
}

fn keys_of(obj: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    obj.extract::<Vec<String>>().map_err(|_| invalid("keys must be a list of str"))
}

impl LshIndex {
    fn wrap(inner: lsh::LshIndex) -> PyResult<Self> {
        let fingerprinter = Fingerprinter::new(*inner.config()).py_err()?;
        Ok(LshIndex { inner: RwLock::new(inner), fingerprinter })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, lsh::LshIndex> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[pymethods]
impl LshIndex {
    #[new]
    #[pyo3(signature = (*, threshold=0.8, num_perm=128, seed=1, shingle="word", shingle_size=5, strip_boilerplate=false, false_negative_weight=0.9))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        threshold: f64,
        num_perm: usize,
        seed: u64,
        shingle: &str,
        shingle_size: usize,
        strip_boilerplate: bool,
        false_negative_weight: f64,
    ) -> PyResult<Self> {
        let config = fingerprint_config(num_perm, seed, shingle, shingle_size, strip_boilerplate)?;
        let params = LshParams::weighted(threshold, num_perm, false_negative_weight).py_err()?;
        Self::wrap(lsh::LshIndex::new(config, params).py_err()?)
    }

    /// Inserts (or replaces) one document per key.
    fn insert(&self, py: Python<'_>, keys: &Bound<'_, PyAny>, texts: &Bound<'_, PyAny>) -> PyResult<()> {
        let keys = keys_of(keys)?;
        let batch = TextBatch::extract(texts, "texts")?;
        if keys.len() != batch.len() {
            return Err(invalid(format!("got {} keys for {} texts", keys.len(), batch.len())));
        }
        let strs = batch.strs();
        let k = self.fingerprinter.num_perm();
        detach_core(py, || {
            let sigs = self.fingerprinter.signatures(&strs);
            let mut index = self.inner.write().unwrap_or_else(|p| p.into_inner());
            keys.iter().zip(sigs.chunks(k)).try_for_each(|(key, sig)| index.insert(key, sig))
        })
    }

    /// Removes keys; returns how many were present.
    fn remove(&self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<usize> {
        let keys = keys_of(keys)?;
        detach(py, || {
            let mut index = self.inner.write().unwrap_or_else(|p| p.into_inner());
            keys.iter().filter(|k| index.remove(k)).count()
        })
    }

    /// For each text, the stored `(key, similarity)` pairs at or above the threshold.
    fn query(&self, py: Python<'_>, texts: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<(String, f64)>>> {
        let batch = TextBatch::extract(texts, "texts")?;
        let strs = batch.strs();
        let k = self.fingerprinter.num_perm();
        let matches = detach_core(py, || {
            let sigs = self.fingerprinter.signatures(&strs);
            let index = self.read();
            sigs.chunks(k).map(|sig| index.query(sig)).collect::<datacore::Result<Vec<_>>>()
        })?;
        Ok(matches.into_iter().map(|ms| ms.into_iter().map(|m| (m.key, m.similarity)).collect()).collect())
    }

    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        detach_core(py, || self.read().save(&path))
    }

    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        Self::wrap(detach_core(py, || lsh::LshIndex::load(&path))?)
    }

    fn __len__(&self) -> usize {
        self.read().len()
    }

    fn __contains__(&self, key: &str) -> bool {
        self.read().contains(key)
    }

    #[getter]
    fn threshold(&self) -> f64 {
        self.read().params().threshold
    }
    #[getter]
    fn bands(&self) -> usize {
        self.read().params().bands
    }
    #[getter]
    fn rows(&self) -> usize {
        self.read().params().rows
    }
    #[getter]
    fn num_perm(&self) -> usize {
        self.fingerprinter.num_perm()
    }
    #[getter]
    fn seed(&self) -> u64 {
        self.fingerprinter.config().seed
    }
    #[getter]
    fn shingle(&self) -> &'static str {
        self.fingerprinter.config().shingles.kind()
    }
    #[getter]
    fn shingle_size(&self) -> usize {
        self.fingerprinter.config().shingles.size()
    }
    #[getter]
    fn strip_boilerplate(&self) -> bool {
        self.fingerprinter.config().normalize.strip_boilerplate
    }

    fn __repr__(&self) -> String {
        let p = self.read().params();
        format!("LshIndex(len={}, threshold={}, num_perm={}, bands={}, rows={})", self.__len__(), p.threshold, self.num_perm(), p.bands, p.rows)
    }
}
