use super::*;
use crate::fingerprint::{FingerprintConfig, Fingerprinter};
use std::path::Path;
use super::file::{CHECKSUM_LEN, HEADER_LEN};
use xxhash_rust::xxh3::xxh3_64;
use crate::CoreError;
use std::time::Instant;

fn fingerprinter() -> Fingerprinter {
    Fingerprinter::new(FingerprintConfig::default()).unwrap()
}

/// A deterministic pseudo-random text of `words` words.
fn text(seed: u64, words: usize) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..words)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            format!("w{}", state % 5000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `base` with its `k`-th word replaced.
fn edit(base: &str, k: usize) -> String {
    let mut words: Vec<&str> = base.split(' ').collect();
    words[k] = "changed";
    words.join(" ")
}

fn params(threshold: f64) -> LshParams {
    LshParams::for_threshold(threshold, 128).unwrap()
}

#[test]
fn optimal_params_match_datasketch() {
    assert_eq!(optimal_params(0.5, 128).unwrap(), (25, 5));
    assert_eq!(optimal_params(0.7, 128).unwrap(), (14, 9));
    assert_eq!(optimal_params(0.8, 128).unwrap(), (9, 13));
    assert_eq!(optimal_params(0.9, 128).unwrap(), (5, 25));
}

#[test]
fn recall_weighted_params_use_more_bands() {
    // the default favours recall: verification removes the extra candidates
    let p = LshParams::for_threshold(0.8, 128).unwrap();
    assert_eq!((p.bands, p.rows), (14, 9));
    assert_eq!(weighted_params(0.8, 128, 0.5).unwrap(), optimal_params(0.8, 128).unwrap());
    for w in [0.0, 1.0, -0.5, f64::NAN] {
        assert!(weighted_params(0.8, 128, w).is_err(), "{w}");
    }
}

#[test]
fn optimal_params_are_sane() {
    let mut last_rows = 0;
    for t in [0.3, 0.5, 0.7, 0.8, 0.9, 0.95] {
        let (b, r) = optimal_params(t, 128).unwrap();
        assert!(b >= 1 && r >= 1 && b * r <= 128, "{t}: {b} x {r}");
        assert!(r >= last_rows, "rows should grow with the threshold: {t} gives {r} < {last_rows}");
        last_rows = r;
    }
    assert_eq!(optimal_params(0.5, 1).unwrap(), (1, 1));
    assert!(optimal_params(0.5, 0).is_err());
}

#[test]
fn invalid_thresholds_are_errors() {
    for t in [0.0, -1.0, 1.5, f64::NAN, f64::INFINITY] {
        assert!(optimal_params(t, 128).is_err(), "{t}");
        assert!(LshParams::for_threshold(t, 128).is_err(), "{t}");
        let p = LshParams { threshold: t, bands: 8, rows: 16 };
        assert!(cluster_signatures(&[1; 128], 128, p, KeepPolicy::First, &[]).is_err(), "{t}");
    }
    assert!(LshParams::for_threshold(1.0, 128).is_ok());
}

#[test]
fn bad_shapes_are_errors() {
    let p = params(0.8);
    let sigs = vec![1u32; 256];
    assert!(cluster_signatures(&sigs[..200], 128, p, KeepPolicy::First, &[]).is_err());
    assert!(cluster_signatures(&sigs, 0, p, KeepPolicy::First, &[]).is_err());
    assert!(cluster_signatures(&sigs, 64, p, KeepPolicy::First, &[]).is_err(), "bands*rows > num_perm");
    assert!(cluster_signatures(&sigs, 128, p, KeepPolicy::Longest, &[]).is_err());
    assert!(cluster_signatures(&sigs, 128, p, KeepPolicy::First, &[1]).is_err());
    let zero = LshParams { threshold: 0.8, bands: 0, rows: 4 };
    assert!(cluster_signatures(&sigs, 128, zero, KeepPolicy::First, &[]).is_err());
    let empty = cluster_signatures(&[], 128, p, KeepPolicy::First, &[]).unwrap();
    assert!(empty.keep.is_empty() && empty.num_dup_clusters == 0);
}

#[test]
fn near_duplicates_cluster_and_distinct_texts_do_not() {
    let f = fingerprinter();
    let a = text(1, 300);
    let b = text(2, 300);
    let texts = [a.clone(), b.clone(), edit(&a, 150), text(3, 300), edit(&b, 10), a.clone()];
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let c = cluster_signatures(&f.signatures(&refs), 128, params(0.8), KeepPolicy::First, &[]).unwrap();
    assert_eq!(c.cluster_of, [0, 1, 0, 3, 1, 0]);
    assert_eq!(c.keep, [true, true, false, true, false, false]);
    assert_eq!(c.num_dup_clusters, 2);
    assert!(c.verified_pairs >= 3 && c.candidate_pairs >= c.verified_pairs);
}

#[test]
fn extra_pairs_join_what_the_lsh_misses() {
    // a one-word edit of a 20-word text: word 5-gram Jaccard ~0.5, so LSH alone keeps both
    let base = text(11, 20);
    let texts = [base.clone(), text(12, 20), edit(&base, 10)];
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let f = fingerprinter();
    let sigs = f.signatures(&refs);
    let alone = cluster_signatures(&sigs, 128, params(0.8), KeepPolicy::First, &[]).unwrap();
    assert_eq!(alone.cluster_of, [0, 1, 2]);
    let joined = cluster_signatures_joining(&sigs, 128, params(0.8), KeepPolicy::First, &[], &[2]).unwrap();
    assert_eq!(joined.cluster_of, [0, 1, 0]);
    assert_eq!(joined.extra_pairs, 1);
    let bad = cluster_signatures_joining(&sigs, 128, params(0.8), KeepPolicy::First, &[], &[(1 << 32) | 3]);
    assert!(matches!(bad, Err(CoreError::InvalidArgument(_))));
}

#[test]
fn keep_longest_picks_max_length_then_lowest_index() {
    let f = fingerprinter();
    let a = text(7, 200);
    let texts = [a.clone(), edit(&a, 5), edit(&a, 100), text(8, 200)];
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let sigs = f.signatures(&refs);
    let c = cluster_signatures(&sigs, 128, params(0.8), KeepPolicy::Longest, &[10, 30, 30, 5]).unwrap();
    assert_eq!(c.cluster_of, [1, 1, 1, 3]);
    assert_eq!(c.keep, [false, true, false, true]);
    let c = cluster_signatures(&sigs, 128, params(0.8), KeepPolicy::First, &[10, 30, 30, 5]).unwrap();
    assert_eq!(c.cluster_of, [0, 0, 0, 3]);
}

#[test]
fn empty_signatures_stay_singletons() {
    let f = fingerprinter();
    let c = cluster_signatures(&f.signatures(&["", " ,. ", ""]), 128, params(0.5), KeepPolicy::First, &[])
        .unwrap();
    assert_eq!(c.cluster_of, [0, 1, 2]);
    assert_eq!((c.num_dup_clusters, c.candidate_pairs), (0, 0));
}

#[test]
fn a_big_bucket_clusters_quickly() {
    let sig = fingerprinter().signature(&text(9, 100));
    let sigs: Vec<u32> = (0..1000).flat_map(|_| sig.iter().copied()).collect();
    let start = Instant::now();
    let c = cluster_signatures(&sigs, 128, params(0.8), KeepPolicy::First, &[]).unwrap();
    assert!(start.elapsed().as_secs_f64() < 2.0, "{:?}", start.elapsed());
    assert!(c.cluster_of.iter().all(|&x| x == 0));
    assert_eq!(c.num_dup_clusters, 1);
    assert!(c.candidate_pairs < 2000, "big buckets must not be compared all-pairs: {}", c.candidate_pairs);
}

/// Process CPU time in seconds (utime + stime from /proc; 0 where unavailable).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// `cargo test --release -p datacore lsh::tests::timing -- --ignored --nocapture`
#[test]
#[ignore]
fn timing_60k() {
    let n = 60_000;
    let f = fingerprinter();
    let base: Vec<String> = (0..n / 2).map(|i| text(i as u64, 120)).collect();
    let texts: Vec<String> =
        (0..n).map(|i| if i % 2 == 0 { base[i / 2].clone() } else { edit(&base[i / 2], 60) }).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let sigs = f.signatures(&refs);
    let runs = 20;
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut best = f64::INFINITY;
        let cpu = cpu_seconds();
        for _ in 0..runs {
            let start = Instant::now();
            pool.install(|| cluster_signatures(&sigs, 128, params(0.8), KeepPolicy::First, &[]).unwrap());
            best = best.min(start.elapsed().as_secs_f64());
        }
        let cpu = (cpu_seconds() - cpu) / runs as f64;
        println!("{threads} threads: best wall {:.1} ms, mean CPU {:.1} ms", best * 1e3, cpu * 1e3);
    }
}

fn sample_index() -> (LshIndex, Vec<String>) {
    let f = fingerprinter();
    let mut index = LshIndex::new(*f.config(), params(0.7)).unwrap();
    let texts: Vec<String> = (0..20).map(|i| text(100 + i, 150)).collect();
    for (i, t) in texts.iter().enumerate() {
        index.insert(&format!("doc-{i}"), &f.signature(t)).unwrap();
    }
    index.insert("empty", &f.signature("")).unwrap();
    (index, texts)
}

#[test]
fn index_insert_query_replace_remove() {
    let f = fingerprinter();
    let (mut index, texts) = sample_index();
    assert_eq!(index.len(), 21);
    assert!(index.contains("doc-3") && index.contains("empty"));

    let hits = index.query(&f.signature(&edit(&texts[3], 75))).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].key, "doc-3");
    assert!(hits[0].similarity >= 0.7 && hits[0].similarity < 1.0);
    assert!(index.query(&f.signature(&text(999, 150))).unwrap().is_empty());
    assert!(index.query(&f.signature("")).unwrap().is_empty(), "empty signatures never match");

    // a second copy ranks first (similarity 1.0), ties sorted by key
    index.insert("copy-of-3", &f.signature(&texts[3])).unwrap();
    let keys: Vec<String> = index.query(&f.signature(&texts[3])).unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(keys, ["copy-of-3", "doc-3"]);

    // replacing moves the key to its new text
    index.insert("doc-3", &f.signature(&texts[4])).unwrap();
    assert_eq!(index.len(), 22);
    let keys: Vec<String> = index.query(&f.signature(&texts[4])).unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(keys, ["doc-3", "doc-4"]);
    let keys: Vec<String> = index.query(&f.signature(&texts[3])).unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(keys, ["copy-of-3"]);

    assert!(index.remove("doc-4"));
    assert!(!index.remove("doc-4"));
    assert!(!index.contains("doc-4"));
    let keys: Vec<String> = index.query(&f.signature(&texts[4])).unwrap().into_iter().map(|m| m.key).collect();
    assert_eq!(keys, ["doc-3"]);
    // a freed slot is reused
    index.insert("new", &f.signature(&texts[4])).unwrap();
    assert_eq!(index.keys.len(), 22);

    assert!(index.insert("bad", &[1, 2, 3]).is_err());
    assert!(index.query(&[1, 2, 3]).is_err());
}

#[test]
fn index_rejects_bad_settings() {
    let config = FingerprintConfig::default();
    assert!(LshIndex::new(config, LshParams { threshold: 0.8, bands: 20, rows: 20 }).is_err());
    assert!(LshIndex::new(config, LshParams { threshold: 1.5, bands: 9, rows: 13 }).is_err());
    let bad = FingerprintConfig { num_perm: 0, ..config };
    assert!(LshIndex::new(bad, params(0.8)).is_err());
}

#[test]
fn save_load_roundtrip() {
    let f = fingerprinter();
    let (mut index, texts) = sample_index();
    index.remove("doc-7");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.lsh");
    index.save(&path).unwrap();
    index.save(&path).unwrap(); // overwriting works too
    let loaded = LshIndex::load(&path).unwrap();
    assert_eq!(loaded.config(), index.config());
    assert_eq!(loaded.params(), index.params());
    assert_eq!(loaded.len(), index.len());
    assert!(loaded.contains("empty") && !loaded.contains("doc-7"));
    for t in texts.iter().chain([&edit(&texts[5], 3), &String::new()]) {
        let sig = f.signature(t);
        assert_eq!(loaded.query(&sig).unwrap(), index.query(&sig).unwrap());
    }
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary file is left behind");
}

fn assert_corrupt(path: &Path) {
    match LshIndex::load(path) {
        Err(CoreError::Corrupt { what, detail }) => {
            assert!(what.starts_with("LSH index"), "{what}");
            assert!(!detail.is_empty());
        }
        Err(other) => panic!("expected Corrupt, got {other:?}"),
        Ok(_) => panic!("expected Corrupt, got an index"),
    }
}

#[test]
fn damaged_files_are_corrupt_errors() {
    let (index, _) = sample_index();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.lsh");
    index.save(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad.lsh");

    for cut in [0, 5, HEADER_LEN, good.len() / 2, good.len() - 1] {
        std::fs::write(&bad, &good[..cut]).unwrap();
        assert_corrupt(&bad);
    }
    for pos in [20, HEADER_LEN + 2, good.len() / 2, good.len() - 3] {
        let mut flipped = good.clone();
        flipped[pos] ^= 0x40;
        std::fs::write(&bad, &flipped).unwrap();
        assert_corrupt(&bad);
    }
    let mut wrong_magic = good.clone();
    wrong_magic[0] = b'X';
    std::fs::write(&bad, &wrong_magic).unwrap();
    assert_corrupt(&bad);

    // a huge entry count with a valid checksum must not allocate
    let mut huge = good[..good.len() - CHECKSUM_LEN].to_vec();
    huge[HEADER_LEN - 8..HEADER_LEN].copy_from_slice(&u64::MAX.to_le_bytes());
    let sum = xxh3_64(&huge);
    huge.extend_from_slice(&sum.to_le_bytes());
    std::fs::write(&bad, &huge).unwrap();
    assert_corrupt(&bad);

    match LshIndex::load(&dir.path().join("missing.lsh")) {
        Err(CoreError::Io { .. }) => {}
        other => panic!("expected Io, got {:?}", other.map(|i| i.len())),
    }
}
