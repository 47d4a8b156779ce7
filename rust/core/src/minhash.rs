//! MinHash signatures with a fast permutation scheme.
//!
//! Each of the `num_perm` hash functions is Dietzfelbinger's multiply-add-shift
//! `h_i(x) = (a_i * x + b_i) >> 32` over a 32-bit fold of the shingle hash,
//! with 64-bit odd `a_i` and random `b_i`: a strongly universal family that
//! needs one widening multiply per lane, so the loop over permutations
//! vectorizes (AVX-512 or AVX2 is picked at run time where the CPU has it).

#[derive(Clone, Debug)]
pub struct MinHasher {
    seed: u64,
    a: Vec<u64>,
    b: Vec<u64>,
}

/// Permutations are processed in blocks this wide so the running minima stay in registers.
const BLOCK: usize = 16;
pub const MAX_NUM_PERM: usize = 4096;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl MinHasher {
    pub fn new(num_perm: usize, seed: u64) -> crate::Result<Self> {
        if num_perm == 0 || num_perm > MAX_NUM_PERM {
            return Err(crate::CoreError::invalid(format!(
                "num_perm must be in 1..={MAX_NUM_PERM}, got {num_perm}"
            )));
        }
        let mut state = seed;
        let a = (0..num_perm).map(|_| splitmix64(&mut state) | 1).collect();
        let b = (0..num_perm).map(|_| splitmix64(&mut state)).collect();
        Ok(MinHasher { seed, a, b })
    }

    pub fn num_perm(&self) -> usize {
        self.a.len()
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Writes the signature of a shingle set into `out` (`num_perm` values).
    /// An empty set gives all `u32::MAX`, which [`is_empty_signature`] detects.
    pub fn signature_into(&self, shingles: &[u64], out: &mut [u32]) {
        assert_eq!(out.len(), self.num_perm(), "signature buffer has the wrong length");
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") {
                // SAFETY: the CPU supports AVX-512F/DQ, checked just above.
                unsafe { signature_avx512(&self.a, &self.b, shingles, out) };
                return;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                unsafe { signature_avx2(&self.a, &self.b, shingles, out) };
                return;
            }
        }
        signature_portable(&self.a, &self.b, shingles, out);
    }

    pub fn signature(&self, shingles: &[u64]) -> Vec<u32> {
        let mut out = vec![0; self.num_perm()];
        self.signature_into(shingles, &mut out);
        out
    }
}

#[inline(always)]
fn signature_kernel(a: &[u64], b: &[u64], shingles: &[u64], out: &mut [u32]) {
    // 32-bit inputs let the widening multiply use one 32x32->64 instruction per half
    let folded: Vec<u32> = shingles.iter().map(|&x| (x ^ (x >> 32)) as u32).collect();
    for ((a, b), out) in a.chunks(BLOCK).zip(b.chunks(BLOCK)).zip(out.chunks_mut(BLOCK)) {
        if a.len() == BLOCK {
            let a: &[u64; BLOCK] = a.try_into().unwrap();
            let b: &[u64; BLOCK] = b.try_into().unwrap();
            let mut acc = [u32::MAX; BLOCK];
            for &x in &folded {
                let x = x as u64;
                for j in 0..BLOCK {
                    let h = (a[j].wrapping_mul(x).wrapping_add(b[j]) >> 32) as u32;
                    acc[j] = acc[j].min(h);
                }
            }
            out.copy_from_slice(&acc);
        } else {
            out.fill(u32::MAX);
            for &x in &folded {
                let x = x as u64;
                for j in 0..a.len() {
                    let h = (a[j].wrapping_mul(x).wrapping_add(b[j]) >> 32) as u32;
                    out[j] = out[j].min(h);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn signature_avx2(a: &[u64], b: &[u64], shingles: &[u64], out: &mut [u32]) {
    signature_kernel(a, b, shingles, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn signature_avx512(a: &[u64], b: &[u64], shingles: &[u64], out: &mut [u32]) {
    signature_kernel(a, b, shingles, out)
}

fn signature_portable(a: &[u64], b: &[u64], shingles: &[u64], out: &mut [u32]) {
    signature_kernel(a, b, shingles, out)
}

/// True for the signature of an empty shingle set.
pub fn is_empty_signature(sig: &[u32]) -> bool {
    sig.iter().all(|&v| v == u32::MAX)
}

/// Estimated Jaccard similarity: the share of positions where two signatures agree.
pub fn estimated_jaccard(a: &[u32], b: &[u32]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    if a.is_empty() {
        return 0.0;
    }
    let equal = a.iter().zip(b).filter(|(x, y)| x == y).count();
    equal as f64 / a.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn set(range: std::ops::Range<u64>) -> Vec<u64> {
        range.map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xDEAD_BEEF).collect()
    }

    #[test]
    fn estimate_tracks_true_jaccard() {
        let h = MinHasher::new(256, 7).unwrap();
        // |A ∩ B| = 600, |A ∪ B| = 1400 → J = 0.4286
        let a = set(0..1000);
        let b = set(400..1400);
        let truth = 600.0 / 1400.0;
        let est = estimated_jaccard(&h.signature(&a), &h.signature(&b));
        assert!((est - truth).abs() < 0.08, "estimate {est} vs {truth}");
    }

    #[test]
    fn identical_sets_agree_everywhere_and_order_does_not_matter() {
        let h = MinHasher::new(128, 1).unwrap();
        let a = set(0..50);
        let mut rev = a.clone();
        rev.reverse();
        assert_eq!(h.signature(&a), h.signature(&rev));
        assert_eq!(estimated_jaccard(&h.signature(&a), &h.signature(&rev)), 1.0);
    }

    #[test]
    fn disjoint_sets_rarely_agree() {
        let h = MinHasher::new(128, 3).unwrap();
        let est = estimated_jaccard(&h.signature(&set(0..500)), &h.signature(&set(500..1000)));
        assert!(est < 0.05, "{est}");
    }

    #[test]
    #[allow(clippy::needless_range_loop)] // j indexes a, b and s alike
    fn odd_num_perm_uses_the_tail_path() {
        let h = MinHasher::new(21, 5).unwrap();
        let s = h.signature(&set(0..10));
        assert_eq!(s.len(), 21);
        assert!(!is_empty_signature(&s));
        // the tail block matches a direct computation
        let x = set(0..10);
        for j in 16..21 {
            let direct = x.iter().map(|&v| {
                let f = (v ^ (v >> 32)) & 0xFFFF_FFFF;
                (h.a[j].wrapping_mul(f).wrapping_add(h.b[j]) >> 32) as u32
            }).min().unwrap();
            assert_eq!(s[j], direct);
        }
    }

    #[test]
    fn empty_set_and_bad_sizes() {
        let h = MinHasher::new(64, 0).unwrap();
        assert!(is_empty_signature(&h.signature(&[])));
        assert!(MinHasher::new(0, 0).is_err());
        assert!(MinHasher::new(MAX_NUM_PERM + 1, 0).is_err());
    }

    #[test]
    fn seeds_give_different_permutations() {
        let a: HashSet<u64> = MinHasher::new(32, 1).unwrap().a.into_iter().collect();
        let b: HashSet<u64> = MinHasher::new(32, 2).unwrap().a.into_iter().collect();
        assert!(a.is_disjoint(&b));
    }
}
