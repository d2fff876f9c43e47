//! The footer cache, `<output-root>/.embedfleet/scan-cache.bin`: what the
//! footers of outputs (fingerprint and model they were made from) and of
//! inputs (row groups) said, keyed by relative path and valid only while the
//! file keeps the same size, mtime and inode. A warm re-scan then reads no
//! footer at all, only directory entries.
//!
//! The file is an optimisation only: a missing, unreadable or foreign file is
//! ignored and rebuilt. It is written to a temporary name and renamed, so
//! two managers scanning at once never see a torn cache (the last one wins).
//!
//! Format (little endian): magic `EFSCAN\0` + version byte, the input root
//! (string), then the outputs (`u64` count; per entry: path, size, mtime,
//! inode, fingerprint, model) and the inputs (`u64` count; per entry: path,
//! size, mtime, inode, `u32` row groups of `u64` rows and `u64` bytes).
//! Strings are a `u32` length and UTF-8 bytes.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::footer::{Provenance, RowGroup};
use super::walk::Stamp;

/// Folder of the manager's own files under the output root.
pub const CACHE_DIR: &str = ".embedfleet";
/// The cache file in it.
pub const CACHE_FILE: &str = "scan-cache.bin";
const MAGIC: &[u8; 8] = b"EFSCAN\x00\x01";

type Outputs = HashMap<String, (Stamp, Provenance)>;
type Inputs = HashMap<String, (Stamp, Vec<RowGroup>)>;

/// How the cache file was found when the scan started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheLoad {
    Disabled,
    Missing,
    Loaded,
    /// Unreadable, corrupt or of another version: ignored and rebuilt.
    Rebuilt,
}

impl CacheLoad {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheLoad::Disabled => "disabled",
            CacheLoad::Missing => "missing",
            CacheLoad::Loaded => "loaded",
            CacheLoad::Rebuilt => "rebuilt",
        }
    }
}

/// Footer facts of the previous scan, and those of this one as it goes.
#[derive(Debug, Default)]
pub struct FooterCache {
    input_root: String,
    old_outputs: Outputs,
    old_inputs: Inputs,
    next_outputs: Mutex<Outputs>,
    next_inputs: Mutex<Inputs>,
    pub hits: AtomicU64,
    pub output_footers_read: AtomicU64,
    pub input_footers_read: AtomicU64,
}

impl FooterCache {
    /// An empty cache for a scan of `input_root`.
    pub fn empty(input_root: &str) -> Self {
        FooterCache {
            input_root: input_root.to_string(),
            ..Default::default()
        }
    }

    /// The cache at `path`, or an empty one when it cannot be used.
    pub fn load(path: &Path, input_root: &str) -> (Self, CacheLoad) {
        let mut cache = Self::empty(input_root);
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (cache, CacheLoad::Missing),
            Err(_) => return (cache, CacheLoad::Rebuilt),
        };
        match decode(&bytes) {
            Some((root, outputs, inputs)) => {
                cache.old_outputs = outputs;
                // Input layouts are keyed by paths under the input root.
                if root == input_root {
                    cache.old_inputs = inputs;
                }
                (cache, CacheLoad::Loaded)
            }
            None => (cache, CacheLoad::Rebuilt),
        }
    }

    /// An output's provenance: from the cache when its stamp is unchanged,
    /// else from `read` (a footer read), remembered for the next scan.
    pub fn output(
        &self,
        rel: &str,
        stamp: Stamp,
        read: impl FnOnce() -> Result<Provenance, String>,
    ) -> Result<Provenance, String> {
        if let Some((s, p)) = self.old_outputs.get(rel) {
            if *s == stamp {
                self.hits.fetch_add(1, Ordering::Relaxed);
                lock(&self.next_outputs).insert(rel.to_string(), (stamp, p.clone()));
                return Ok(p.clone());
            }
        }
        self.output_footers_read.fetch_add(1, Ordering::Relaxed);
        let p = read()?;
        lock(&self.next_outputs).insert(rel.to_string(), (stamp, p.clone()));
        Ok(p)
    }

    /// An input's row groups, cached like [`FooterCache::output`].
    pub fn input(
        &self,
        rel: &str,
        stamp: Stamp,
        read: impl FnOnce() -> Result<Vec<RowGroup>, String>,
    ) -> Result<Vec<RowGroup>, String> {
        if let Some((s, g)) = self.old_inputs.get(rel) {
            if *s == stamp {
                self.hits.fetch_add(1, Ordering::Relaxed);
                lock(&self.next_inputs).insert(rel.to_string(), (stamp, g.clone()));
                return Ok(g.clone());
            }
        }
        self.input_footers_read.fetch_add(1, Ordering::Relaxed);
        let g = read()?;
        lock(&self.next_inputs).insert(rel.to_string(), (stamp, g.clone()));
        Ok(g)
    }

    /// Write what this scan learnt to `path`, keeping the entries of
    /// directories it did not look at (`scanned`: `"suffix/subreddit"`).
    /// Returns whether the file was written (it is left alone when nothing
    /// changed).
    pub fn save(self, path: &Path, scanned: &HashSet<String>) -> io::Result<bool> {
        let misses = self.output_footers_read.into_inner() + self.input_footers_read.into_inner();
        let old_len = self.old_outputs.len() + self.old_inputs.len();
        let mut outputs = self
            .next_outputs
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        let mut inputs = self
            .next_inputs
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        keep_unscanned(&mut outputs, self.old_outputs, scanned);
        keep_unscanned(&mut inputs, self.old_inputs, scanned);
        if misses == 0 && outputs.len() + inputs.len() == old_len {
            return Ok(false);
        }
        let bytes = encode(&self.input_root, &outputs, &inputs);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let result = fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        });
        match result.and_then(|_| fs::rename(&tmp, path)) {
            Ok(()) => Ok(true),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `"suffix/subreddit"` of a relative path `top/suffix/subreddit/name`.
pub fn dir_key(rel: &str) -> Option<&str> {
    let (_, rest) = rel.split_once('/')?;
    let (dir, _) = rest.rsplit_once('/')?;
    Some(dir)
}

fn keep_unscanned<V>(
    next: &mut HashMap<String, V>,
    old: HashMap<String, V>,
    scanned: &HashSet<String>,
) {
    for (k, v) in old {
        if !dir_key(&k).is_some_and(|d| scanned.contains(d)) {
            next.entry(k).or_insert(v);
        }
    }
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_stamp(buf: &mut Vec<u8>, s: &Stamp) {
    buf.extend_from_slice(&s.size.to_le_bytes());
    buf.extend_from_slice(&s.mtime_ns.to_le_bytes());
    buf.extend_from_slice(&s.ino.to_le_bytes());
}

fn encode(input_root: &str, outputs: &Outputs, inputs: &Inputs) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64 + outputs.len() * 160 + inputs.len() * 96);
    buf.extend_from_slice(MAGIC);
    put_str(&mut buf, input_root);
    buf.extend_from_slice(&(outputs.len() as u64).to_le_bytes());
    for (path, (stamp, p)) in outputs {
        put_str(&mut buf, path);
        put_stamp(&mut buf, stamp);
        put_str(&mut buf, &p.fingerprint);
        put_str(&mut buf, &p.model);
    }
    buf.extend_from_slice(&(inputs.len() as u64).to_le_bytes());
    for (path, (stamp, groups)) in inputs {
        put_str(&mut buf, path);
        put_stamp(&mut buf, stamp);
        buf.extend_from_slice(&(groups.len() as u32).to_le_bytes());
        for g in groups {
            buf.extend_from_slice(&g.rows.to_le_bytes());
            buf.extend_from_slice(&g.bytes.to_le_bytes());
        }
    }
    buf
}

/// A cursor over the cache bytes; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn stamp(&mut self) -> Option<Stamp> {
        Some(Stamp {
            size: self.u64()?,
            mtime_ns: self.i64()?,
            ino: self.u64()?,
        })
    }
    /// A count of entries that each take at least `min_bytes`: refuses counts
    /// the remaining bytes cannot hold (a corrupt file must not allocate).
    fn count(&mut self, min_bytes: usize) -> Option<usize> {
        let n = usize::try_from(self.u64()?).ok()?;
        (n <= self.buf.len() / min_bytes.max(1)).then_some(n)
    }
}

fn decode(bytes: &[u8]) -> Option<(String, Outputs, Inputs)> {
    let mut r = Reader { buf: bytes };
    if r.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let root = r.string()?;
    let n = r.count(36)?;
    let mut outputs = HashMap::with_capacity(n);
    for _ in 0..n {
        let path = r.string()?;
        let stamp = r.stamp()?;
        let p = Provenance {
            fingerprint: r.string()?,
            model: r.string()?,
        };
        outputs.insert(path, (stamp, p));
    }
    let n = r.count(32)?;
    let mut inputs = HashMap::with_capacity(n);
    for _ in 0..n {
        let path = r.string()?;
        let stamp = r.stamp()?;
        let groups = r.u32()? as usize;
        if groups > r.buf.len() / 16 {
            return None;
        }
        let mut g = Vec::with_capacity(groups);
        for _ in 0..groups {
            g.push(RowGroup {
                rows: r.u64()?,
                bytes: r.u64()?,
            });
        }
        inputs.insert(path, (stamp, g));
    }
    r.buf.is_empty().then_some((root, outputs, inputs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(n: u64) -> Stamp {
        Stamp {
            size: n,
            mtime_ns: n as i64 * 7,
            ino: n + 1,
        }
    }

    fn prov(fp: &str) -> Provenance {
        Provenance {
            fingerprint: fp.into(),
            model: "m@1".into(),
        }
    }

    fn tmp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("efscan-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn round_trip_and_hits() {
        let dir = tmp_dir("rt");
        let path = dir.join(CACHE_FILE);
        let c = FooterCache::empty("/in");
        let got = c
            .output("embeddings/s/a/x.parquet", stamp(1), || Ok(prov("1-7")))
            .unwrap();
        assert_eq!(got, prov("1-7"));
        c.input("chains/s/a/x.parquet", stamp(2), || {
            Ok(vec![RowGroup { rows: 3, bytes: 4 }])
        })
        .unwrap();
        assert!(c.save(&path, &HashSet::new()).unwrap());

        let (c, load) = FooterCache::load(&path, "/in");
        assert_eq!(load, CacheLoad::Loaded);
        let p = c
            .output("embeddings/s/a/x.parquet", stamp(1), || {
                Err("must not read".into())
            })
            .unwrap();
        assert_eq!(p, prov("1-7"));
        let g = c
            .input("chains/s/a/x.parquet", stamp(2), || {
                Err("must not read".into())
            })
            .unwrap();
        assert_eq!(g, vec![RowGroup { rows: 3, bytes: 4 }]);
        // A changed stamp is a miss.
        let p = c
            .output("embeddings/s/a/x.parquet", stamp(9), || Ok(prov("new")))
            .unwrap();
        assert_eq!(p, prov("new"));
        assert_eq!(c.hits.load(Ordering::Relaxed), 2);
        assert_eq!(c.output_footers_read.load(Ordering::Relaxed), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unchanged_cache_is_not_rewritten_and_unscanned_dirs_are_kept() {
        let dir = tmp_dir("keep");
        let path = dir.join(CACHE_FILE);
        let c = FooterCache::empty("/in");
        c.output("embeddings/s/a/x.parquet", stamp(1), || Ok(prov("a")))
            .unwrap();
        c.output("embeddings/s/b/y.parquet", stamp(2), || Ok(prov("b")))
            .unwrap();
        assert!(c.save(&path, &HashSet::new()).unwrap());

        // A scan of s/a alone that hits its entry changes nothing.
        let (c, _) = FooterCache::load(&path, "/in");
        c.output("embeddings/s/a/x.parquet", stamp(1), || Err("no".into()))
            .unwrap();
        let scanned: HashSet<String> = ["s/a".to_string()].into();
        assert!(!c.save(&path, &scanned).unwrap());

        // A scan of s/a that no longer finds x drops it but keeps s/b.
        let (c, _) = FooterCache::load(&path, "/in");
        assert!(c.save(&path, &scanned).unwrap());
        let (c, _) = FooterCache::load(&path, "/in");
        assert!(c.old_outputs.contains_key("embeddings/s/b/y.parquet"));
        assert!(!c.old_outputs.contains_key("embeddings/s/a/x.parquet"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_or_foreign_files_are_ignored() {
        let dir = tmp_dir("bad");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(CACHE_FILE);
        fs::write(&path, b"EFSCAN\x00\x01\xff\xff\xff\xff").unwrap();
        assert_eq!(FooterCache::load(&path, "/in").1, CacheLoad::Rebuilt);
        let mut big = MAGIC.to_vec();
        big.extend_from_slice(&0u32.to_le_bytes());
        big.extend_from_slice(&u64::MAX.to_le_bytes());
        fs::write(&path, &big).unwrap();
        assert_eq!(FooterCache::load(&path, "/in").1, CacheLoad::Rebuilt);
        assert_eq!(
            FooterCache::load(&dir.join("none"), "/in").1,
            CacheLoad::Missing
        );

        // Input layouts of another input root are dropped, outputs kept.
        let c = FooterCache::empty("/in");
        c.output("embeddings/s/a/x.parquet", stamp(1), || Ok(prov("a")))
            .unwrap();
        c.input("chains/s/a/x.parquet", stamp(1), || Ok(vec![]))
            .unwrap();
        c.save(&path, &HashSet::new()).unwrap();
        let (c, _) = FooterCache::load(&path, "/elsewhere");
        assert_eq!((c.old_outputs.len(), c.old_inputs.len()), (1, 0));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dir_keys() {
        assert_eq!(dir_key("embeddings/s/sub/x.parquet"), Some("s/sub"));
        assert_eq!(dir_key("x.parquet"), None);
    }
}
