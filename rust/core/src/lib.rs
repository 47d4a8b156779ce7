//! `datacore`: the text-data algorithms behind the `indexer` package, in plain Rust.
//!
//! Nothing here knows about Python; the PyO3 layer in `rust/bindings` converts
//! inputs, releases the GIL and calls these functions. Batch functions use rayon
//! and run on whatever thread pool the caller installs.
//!
//! Pipeline stages, one module each:
//! - [`normalize`]: Unicode NFKC, whitespace/control cleanup, boilerplate lines.
//! - [`exact`]: xxh3 content hashes and exact-duplicate detection.
//! - [`shingle`], [`minhash`], [`fingerprint`]: text → shingles → MinHash signature.
//! - [`lsh`]: banded LSH clustering of signatures and a persistent incremental index.
//! - [`edits`]: short texts one word apart, which shingle Jaccard misses, unless
//!   the edit swaps, adds or drops a word that names or counts something ([`identifying`]).
//! - [`decontam`]: n-gram overlap between tuning examples and evaluation items.
//! - [`chunk`]: token-budget passages with character offsets.
//! - [`tokenize`], [`pack`]: chat-formatted SFT examples and best-fit-decreasing packing.

pub mod chunk;
pub mod decontam;
pub mod edits;
pub mod error;
pub mod exact;
pub mod fingerprint;
pub mod identifying;
pub mod lsh;
pub mod minhash;
pub mod normalize;
pub mod pack;
pub mod shingle;
pub mod tokenize;

pub use error::{CoreError, Result};
