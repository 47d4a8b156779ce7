//! Banded LSH over MinHash signatures: batch near-duplicate clustering and a
//! persistent, incremental index for ingestion.
//!
//! A signature of `num_perm` values is cut into `bands` bands of `rows` values;
//! two documents are candidates when any band hashes identically, and a
//! candidate pair counts as a near duplicate when its estimated Jaccard
//! similarity reaches the threshold. Candidates are always verified, so the
//! banding only decides recall and speed, never precision.
//!
//! - [`params`]: bands × rows for a threshold, and the band hash.
//! - [`cluster`]: batch clustering of a signature matrix.
//! - [`index`] and [`file`]: the incremental index and its file format.

mod cluster;
mod file;
mod index;
mod params;
#[cfg(test)]
mod tests;

pub use cluster::{cluster_signatures, cluster_signatures_joining, Clusters, KeepPolicy};
pub use index::{LshIndex, Match};
pub use params::{optimal_params, weighted_params, LshParams, DEFAULT_FALSE_NEGATIVE_WEIGHT};
