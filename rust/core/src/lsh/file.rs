//! The index file: a versioned header, the entries and an xxh3 checksum,
//! written atomically (temporary file, fsync, rename, directory fsync).

use super::index::{check_config, LshIndex};
use super::params::LshParams;
use crate::fingerprint::FingerprintConfig;
use crate::normalize::NormalizeOptions;
use crate::shingle::Shingles;
use crate::CoreError;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

impl LshIndex {
    /// Atomic save: a temporary file in the same directory, fsync, rename.
    pub fn save(&self, path: &Path) -> crate::Result<()> {
        let tmp = temp_path(path)?;
        let result = self.write_file(&tmp).and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|e| CoreError::io(path, e))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
            return result;
        }
        sync_parent_dir(path);
        Ok(())
    }

    pub fn load(path: &Path) -> crate::Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| CoreError::io(path, e))?;
        let what = format!("LSH index {}", path.display());
        let corrupt = |detail: String| CoreError::Corrupt { what: what.clone(), detail };
        let (config, params, entries) = decode(&bytes).map_err(corrupt)?;
        let mut index = LshIndex::new(config, params).map_err(|e| corrupt(e.to_string()))?;
        for (key, sig) in entries {
            if index.contains(key) {
                return Err(corrupt(format!("duplicate key {key:?}")));
            }
            let sig: Vec<u32> = sig.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            index.insert(key, &sig).map_err(|e| corrupt(e.to_string()))?;
        }
        Ok(index)
    }

    /// Streams the file format (see [`MAGIC`]) to `tmp` and syncs it.
    fn write_file(&self, tmp: &Path) -> crate::Result<()> {
        let io = |e| CoreError::io(tmp, e);
        let file = File::create(tmp).map_err(io)?;
        let mut w = HashingWriter { inner: BufWriter::new(file), hasher: Xxh3::new() };
        w.write_all(&self.header()).map_err(io)?;
        for (slot, key) in self.keys.iter().enumerate() {
            let Some(key) = key else { continue };
            w.write_all(&(key.len() as u32).to_le_bytes()).map_err(io)?;
            w.write_all(key.as_bytes()).map_err(io)?;
            let mut sig_bytes = Vec::with_capacity(self.config.num_perm * 4);
            for v in self.sig(slot as u32) {
                sig_bytes.extend_from_slice(&v.to_le_bytes());
            }
            w.write_all(&sig_bytes).map_err(io)?;
        }
        let checksum = w.hasher.digest();
        let mut inner = w.inner;
        inner.write_all(&checksum.to_le_bytes()).map_err(io)?;
        let file = inner.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)
    }

    fn header(&self) -> Vec<u8> {
        let c = &self.config;
        let mut h = Vec::with_capacity(HEADER_LEN);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        h.extend_from_slice(&(c.num_perm as u32).to_le_bytes());
        h.extend_from_slice(&c.seed.to_le_bytes());
        h.push(match c.shingles {
            Shingles::Words(_) => 0,
            Shingles::Chars(_) => 1,
        });
        h.extend_from_slice(&(c.shingles.size() as u32).to_le_bytes());
        h.push(c.normalize.lowercase as u8);
        h.push(c.normalize.strip_boilerplate as u8);
        h.extend_from_slice(&self.params.threshold.to_bits().to_le_bytes());
        h.extend_from_slice(&(self.params.bands as u32).to_le_bytes());
        h.extend_from_slice(&(self.params.rows as u32).to_le_bytes());
        h.extend_from_slice(&(self.len() as u64).to_le_bytes());
        debug_assert_eq!(h.len(), HEADER_LEN);
        h
    }
}

// ---------------------------------------------------------------------------
// File format
// ---------------------------------------------------------------------------
//
// All integers little-endian:
//   magic [8] | version u32 | num_perm u32 | seed u64 | shingle kind u8 (0 words, 1 chars)
//   | shingle size u32 | lowercase u8 | strip_boilerplate u8 | threshold f64 | bands u32
//   | rows u32 | entries u64 | entries × (key length u32, key UTF-8, num_perm × u32)
//   | xxh3_64 of everything before it (u64).

const MAGIC: &[u8; 8] = b"DCLSH\0\0\x01";
const FORMAT_VERSION: u32 = 1;
pub(super) const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 1 + 4 + 1 + 1 + 8 + 4 + 4 + 8;
pub(super) const CHECKSUM_LEN: usize = 8;

/// Writes through to `inner` while hashing everything written.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Xxh3,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A unique sibling of `path` for the atomic save.
fn temp_path(path: &Path) -> crate::Result<std::path::PathBuf> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| CoreError::invalid(format!("index path must name a file, got {}", path.display())))?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = name.to_os_string();
    tmp.push(format!(".tmp-{}-{n}", std::process::id()));
    Ok(path.with_file_name(tmp))
}

/// Makes the rename durable; best effort (not every platform can open a directory).
fn sync_parent_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Bounds-checked little-endian reader over the payload.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err(format!("truncated: {field} needs {n} bytes, {} left", self.buf.len()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self, field: &str) -> Result<u8, String> {
        Ok(self.take(1, field)?[0])
    }
    fn u32(&mut self, field: &str) -> Result<u32, String> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, field: &str) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8, field)?);
        Ok(u64::from_le_bytes(a))
    }
    fn flag(&mut self, field: &str) -> Result<bool, String> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("{field} must be 0 or 1, got {other}")),
        }
    }
}

/// One stored entry: the key and its signature's raw little-endian bytes.
type RawEntry<'a> = (&'a str, &'a [u8]);

/// Checks magic, version and checksum, then parses header and entries.
fn decode(bytes: &[u8]) -> Result<(FingerprintConfig, LshParams, Vec<RawEntry<'_>>), String> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not an LSH index file (bad magic bytes)".into());
    }
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(format!("truncated: {} bytes is shorter than the header", bytes.len()));
    }
    let mut r = Reader { buf: &bytes[MAGIC.len()..] };
    let version = r.u32("version")?;
    if version != FORMAT_VERSION {
        return Err(format!("unsupported format version {version} (this build reads {FORMAT_VERSION})"));
    }
    let (payload, stored) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    let stored = u64::from_le_bytes(stored.try_into().map_err(|_| "bad checksum field")?);
    if xxh3_64(payload) != stored {
        return Err("checksum mismatch (file truncated or modified)".into());
    }
    let mut r = Reader { buf: &payload[MAGIC.len() + 4..] };
    let num_perm = r.u32("num_perm")? as usize;
    let seed = r.u64("seed")?;
    let kind = r.u8("shingle kind")?;
    let size = r.u32("shingle size")? as usize;
    let shingles = match kind {
        0 => Shingles::Words(size),
        1 => Shingles::Chars(size),
        other => return Err(format!("shingle kind must be 0 (words) or 1 (chars), got {other}")),
    };
    let normalize = NormalizeOptions { lowercase: r.flag("lowercase")?, strip_boilerplate: r.flag("strip_boilerplate")? };
    let threshold = f64::from_bits(r.u64("threshold")?);
    let bands = r.u32("bands")? as usize;
    let rows = r.u32("rows")? as usize;
    let count = r.u64("entry count")?;
    let config = FingerprintConfig { num_perm, seed, shingles, normalize };
    let params = LshParams { threshold, bands, rows };
    check_config(&config).and_then(|()| params.validate(num_perm)).map_err(|e| e.to_string())?;

    // Each entry takes at least 4 + 4 * num_perm bytes: bound the count before allocating.
    let min_entry = 4 + 4 * num_perm as u64;
    if count > r.buf.len() as u64 / min_entry {
        return Err(format!("entry count {count} does not fit in the {} remaining bytes", r.buf.len()));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for i in 0..count {
        let len = r.u32("key length")? as usize;
        let key = std::str::from_utf8(r.take(len, "key")?).map_err(|e| format!("key {i} is not UTF-8: {e}"))?;
        entries.push((key, r.take(4 * num_perm, "signature")?));
    }
    if !r.buf.is_empty() {
        return Err(format!("{} unexpected bytes after the last entry", r.buf.len()));
    }
    Ok((config, params, entries))
}
