//! Choosing bands × rows for a Jaccard threshold, and the band hash.

use crate::minhash::MAX_NUM_PERM;
use crate::CoreError;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Intervals of the composite Simpson rule used by [`optimal_params`]; enough
/// to reproduce scipy's `quad` choice for every threshold we tried.
const SIMPSON_INTERVALS: usize = 200;

pub(super) fn check_threshold(threshold: f64) -> crate::Result<()> {
    // Written so that NaN fails too.
    if threshold > 0.0 && threshold <= 1.0 {
        Ok(())
    } else {
        Err(CoreError::invalid(format!("threshold must be in (0, 1], got {threshold}")))
    }
}

pub(super) fn check_num_perm(num_perm: usize) -> crate::Result<()> {
    if num_perm == 0 || num_perm > MAX_NUM_PERM {
        return Err(CoreError::invalid(format!("num_perm must be in 1..={MAX_NUM_PERM}, got {num_perm}")));
    }
    Ok(())
}

/// Composite Simpson rule of `f` over `[a, b]` (`SIMPSON_INTERVALS` is even).
fn simpson(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
    let n = SIMPSON_INTERVALS;
    let h = (b - a) / n as f64;
    let inner: f64 = (1..n).map(|i| if i % 2 == 1 { 4.0 } else { 2.0 } * f(a + i as f64 * h)).sum();
    (f(a) + f(b) + inner) * h / 3.0
}

/// How much a missed pair weighs against a needless candidate when bands
/// and rows are chosen. Every candidate is verified by estimated Jaccard, so a
/// needless candidate costs one comparison while a miss loses a duplicate:
/// misses weigh 9× more by default.
pub const DEFAULT_FALSE_NEGATIVE_WEIGHT: f64 = 0.9;

/// Bands and rows (`bands * rows <= num_perm`) that minimise the weighted sum
/// of false-positive and false-negative probability mass around `threshold`,
/// with equal weights, as datasketch's `_optimal_param` does.
pub fn optimal_params(threshold: f64, num_perm: usize) -> crate::Result<(usize, usize)> {
    weighted_params(threshold, num_perm, 0.5)
}

/// As [`optimal_params`], with `false_negative_weight` in (0, 1) on the
/// false-negative mass and its complement on the false-positive mass.
pub fn weighted_params(threshold: f64, num_perm: usize, false_negative_weight: f64) -> crate::Result<(usize, usize)> {
    check_threshold(threshold)?;
    check_num_perm(num_perm)?;
    if !(false_negative_weight > 0.0 && false_negative_weight < 1.0) {
        return Err(CoreError::invalid(format!(
            "false_negative_weight must be in (0, 1), got {false_negative_weight}"
        )));
    }
    // P(candidate | similarity s) = 1 - (1 - s^r)^b.
    let mut best = (f64::INFINITY, (1, 1));
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let miss = |s: f64| (1.0 - s.powi(r as i32)).powi(b as i32);
            let false_pos = simpson(|s| 1.0 - miss(s), 0.0, threshold);
            let false_neg = simpson(miss, threshold, 1.0);
            let error = (1.0 - false_negative_weight) * false_pos + false_negative_weight * false_neg;
            // Strict `<`: the first minimum in (b, r) order wins, as in datasketch.
            if error < best.0 {
                best = (error, (b, r));
            }
        }
    }
    Ok(best.1)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LshParams {
    pub threshold: f64,
    pub bands: usize,
    pub rows: usize,
}

impl LshParams {
    /// Validates `threshold` in (0, 1] and picks bands × rows with
    /// [`weighted_params`] at [`DEFAULT_FALSE_NEGATIVE_WEIGHT`].
    pub fn for_threshold(threshold: f64, num_perm: usize) -> crate::Result<Self> {
        Self::weighted(threshold, num_perm, DEFAULT_FALSE_NEGATIVE_WEIGHT)
    }

    /// Bands × rows from [`weighted_params`]; 0.5 gives datasketch's choice.
    pub fn weighted(threshold: f64, num_perm: usize, false_negative_weight: f64) -> crate::Result<Self> {
        let (bands, rows) = weighted_params(threshold, num_perm, false_negative_weight)?;
        Ok(LshParams { threshold, bands, rows })
    }

    /// Checks that these parameters can be used with signatures of `num_perm` values.
    pub fn validate(&self, num_perm: usize) -> crate::Result<()> {
        check_threshold(self.threshold)?;
        check_num_perm(num_perm)?;
        if self.bands == 0 || self.rows == 0 {
            return Err(CoreError::invalid(format!(
                "bands and rows must both be at least 1, got bands={} rows={}",
                self.bands, self.rows
            )));
        }
        match self.bands.checked_mul(self.rows) {
            Some(used) if used <= num_perm => Ok(()),
            _ => Err(CoreError::invalid(format!(
                "bands * rows must be <= num_perm ({num_perm}), got {} * {}",
                self.bands, self.rows
            ))),
        }
    }
}

/// The bucket key of band `band` of a signature: xxh3 of its `rows` values as
/// little-endian bytes, seeded with the band index (bands longer than 64
/// values are hashed in 64-value pieces, each seeded with the previous hash).
pub(super) fn band_hash(sig: &[u32], band: usize, rows: usize) -> u64 {
    let mut buf = [0u8; 256];
    let mut h = band as u64;
    for piece in sig[band * rows..(band + 1) * rows].chunks(64) {
        for (dst, v) in buf.chunks_exact_mut(4).zip(piece) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
        h = xxh3_64_with_seed(&buf[..piece.len() * 4], h);
    }
    h
}
