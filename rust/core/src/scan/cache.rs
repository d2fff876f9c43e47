//! The footer cache, `<output-root>/.embedfleet/scan-cache.bin`: what the
//! footers of outputs (fingerprint and model they were made from) and of
//! inputs (row groups) said, per `suffix/subreddit` directory and file name,
//! valid only while the file keeps the same size, mtime and inode. A warm
//! re-scan then reads no footer at all, only directory entries.
//!
//! The file is an optimisation only: a missing, unreadable or foreign file is
//! ignored and rebuilt. It is written to a temporary name and renamed, so two
//! managers scanning at once never see a torn cache (the last one wins), and
//! left alone when a scan learnt nothing new.
//!
//! Format (little endian; strings are a `u32` length and UTF-8 bytes): magic
//! `EFSCAN\0` + version byte; the input root; the model ids (`u32` count,
//! strings); the outputs, then the inputs, each as a `u32` count of
//! directories, and per directory its key, a `u32` count of files and per
//! file: name, size `u64`, mtime `i64`, inode `u64`, then for an output its
//! fingerprint and model index `u32`, for an input a `u32` count of row
//! groups of `u64` rows and `u64` bytes.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::footer::{Provenance, RowGroup};
use super::walk::Stamp;

/// Folder of the manager's own files under the output root.
pub const CACHE_DIR: &str = ".embedfleet";
/// The cache file in it.
pub const CACHE_FILE: &str = "scan-cache.bin";
const MAGIC: &[u8; 8] = b"EFSCAN\x00\x02";

/// The Fx hash (as in rustc): the keys are our own file names, so a fast,
/// non-keyed hash is safe here and much cheaper than SipHash.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FxHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// One cached fact and whether this scan used it.
#[derive(Debug)]
struct Entry<T> {
    stamp: Stamp,
    value: T,
    used: AtomicBool,
}

/// Facts of one kind, by directory (`suffix/subreddit`) then file name.
type Section<T> = FastMap<String, FastMap<String, Entry<T>>>;

/// Facts learnt during this scan: (directory, name, stamp, fact).
type Fresh<T> = Mutex<Vec<(String, String, Stamp, T)>>;

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
    outputs: Section<Provenance>,
    inputs: Section<Vec<RowGroup>>,
    fresh_outputs: Fresh<Provenance>,
    fresh_inputs: Fresh<Vec<RowGroup>>,
    pub hits: AtomicU64,
    pub output_footers_read: AtomicU64,
    pub input_footers_read: AtomicU64,
}

/// The cache as seen from one directory pair.
pub struct DirCache<'a> {
    cache: &'a FooterCache,
    dir: &'a str,
    outputs: Option<&'a FastMap<String, Entry<Provenance>>>,
    inputs: Option<&'a FastMap<String, Entry<Vec<RowGroup>>>>,
}

fn lookup<'a, T: Clone>(
    map: Option<&'a FastMap<String, Entry<T>>>,
    name: &str,
    stamp: Stamp,
    hits: &AtomicU64,
) -> Option<&'a T> {
    let e = map?.get(name)?;
    if e.stamp != stamp {
        return None;
    }
    e.used.store(true, Ordering::Relaxed);
    hits.fetch_add(1, Ordering::Relaxed);
    Some(&e.value)
}

impl<'a> DirCache<'a> {
    /// An output's provenance: from the cache when its stamp is unchanged,
    /// else from `read` (a footer read), remembered for the next scan.
    pub fn output(
        &self,
        name: &str,
        stamp: Stamp,
        read: impl FnOnce() -> Result<Provenance, String>,
    ) -> Result<Cow<'a, Provenance>, String> {
        if let Some(p) = lookup(self.outputs, name, stamp, &self.cache.hits) {
            return Ok(Cow::Borrowed(p));
        }
        self.cache
            .output_footers_read
            .fetch_add(1, Ordering::Relaxed);
        let p = read()?;
        lock(&self.cache.fresh_outputs).push((
            self.dir.to_string(),
            name.to_string(),
            stamp,
            p.clone(),
        ));
        Ok(Cow::Owned(p))
    }

    /// An input's row groups, cached like [`DirCache::output`].
    pub fn input(
        &self,
        name: &str,
        stamp: Stamp,
        read: impl FnOnce() -> Result<Vec<RowGroup>, String>,
    ) -> Result<Cow<'a, [RowGroup]>, String> {
        if let Some(g) = lookup(self.inputs, name, stamp, &self.cache.hits) {
            return Ok(Cow::Borrowed(g.as_slice()));
        }
        self.cache
            .input_footers_read
            .fetch_add(1, Ordering::Relaxed);
        let g = read()?;
        lock(&self.cache.fresh_inputs).push((
            self.dir.to_string(),
            name.to_string(),
            stamp,
            g.clone(),
        ));
        Ok(Cow::Owned(g))
    }
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
                cache.outputs = outputs;
                // Input layouts are keyed by paths under the input root.
                if root == input_root {
                    cache.inputs = inputs;
                }
                (cache, CacheLoad::Loaded)
            }
            None => (cache, CacheLoad::Rebuilt),
        }
    }

    /// The view for directory `dir` (`suffix/subreddit`).
    pub fn dir<'a>(&'a self, dir: &'a str) -> DirCache<'a> {
        DirCache {
            cache: self,
            dir,
            outputs: self.outputs.get(dir),
            inputs: self.inputs.get(dir),
        }
    }

    fn misses(&self) -> u64 {
        self.output_footers_read.load(Ordering::Relaxed)
            + self.input_footers_read.load(Ordering::Relaxed)
    }

    /// Write what this scan learnt to `path`, keeping the entries of
    /// directories it did not look at (`scanned`: `"suffix/subreddit"`).
    /// Returns whether the file was written (it is left alone when nothing
    /// changed).
    pub fn save(self, path: &Path, scanned: &HashSet<String>) -> io::Result<bool> {
        let stale = unused_in(&self.outputs, scanned) || unused_in(&self.inputs, scanned);
        if self.misses() == 0 && !stale {
            return Ok(false);
        }
        let fresh_outputs = self
            .fresh_outputs
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        let fresh_inputs = self
            .fresh_inputs
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        let outputs = merge(self.outputs, fresh_outputs, scanned);
        let inputs = merge(self.inputs, fresh_inputs, scanned);
        write_atomic(path, &encode(&self.input_root, &outputs, &inputs))?;
        Ok(true)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a scanned directory holds an entry this scan did not use (its
/// file is gone or changed): the cache must then be rewritten without it.
fn unused_in<T>(section: &Section<T>, scanned: &HashSet<String>) -> bool {
    section.iter().any(|(dir, files)| {
        scanned.contains(dir) && files.values().any(|e| !e.used.load(Ordering::Relaxed))
    })
}

/// The next cache section: used entries of scanned directories, every entry
/// of the others, and what this scan read.
fn merge<T>(
    old: Section<T>,
    fresh: Vec<(String, String, Stamp, T)>,
    scanned: &HashSet<String>,
) -> Section<T> {
    let mut next: Section<T> = FastMap::default();
    for (dir, mut files) in old {
        if scanned.contains(&dir) {
            files.retain(|_, e| e.used.load(Ordering::Relaxed));
        }
        if !files.is_empty() {
            next.insert(dir, files);
        }
    }
    for (dir, name, stamp, value) in fresh {
        next.entry(dir).or_default().insert(
            name,
            Entry {
                stamp,
                value,
                used: AtomicBool::new(true),
            },
        );
    }
    next
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match result.and_then(|_| fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

// -- encoding -------------------------------------------------------------

fn put_u32(buf: &mut Vec<u8>, n: usize) {
    buf.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_u32(buf, s.len());
    buf.extend_from_slice(s.as_bytes());
}

fn put_stamp(buf: &mut Vec<u8>, s: &Stamp) {
    buf.extend_from_slice(&s.size.to_le_bytes());
    buf.extend_from_slice(&s.mtime_ns.to_le_bytes());
    buf.extend_from_slice(&s.ino.to_le_bytes());
}

fn put_section<T>(buf: &mut Vec<u8>, section: &Section<T>, mut put: impl FnMut(&mut Vec<u8>, &T)) {
    put_u32(buf, section.len());
    for (dir, files) in section {
        put_str(buf, dir);
        put_u32(buf, files.len());
        for (name, e) in files {
            put_str(buf, name);
            put_stamp(buf, &e.stamp);
            put(buf, &e.value);
        }
    }
}

fn encode(
    input_root: &str,
    outputs: &Section<Provenance>,
    inputs: &Section<Vec<RowGroup>>,
) -> Vec<u8> {
    let mut models: Vec<&str> = Vec::new();
    let mut model_index: FastMap<&str, usize> = FastMap::default();
    for e in outputs.values().flat_map(|f| f.values()) {
        model_index.entry(&e.value.model).or_insert_with(|| {
            models.push(&e.value.model);
            models.len() - 1
        });
    }
    let mut buf = Vec::with_capacity(1 << 20);
    buf.extend_from_slice(MAGIC);
    put_str(&mut buf, input_root);
    put_u32(&mut buf, models.len());
    for m in &models {
        put_str(&mut buf, m);
    }
    put_section(&mut buf, outputs, |buf, p| {
        put_str(buf, &p.fingerprint);
        put_u32(buf, model_index[&*p.model]);
    });
    put_section(&mut buf, inputs, |buf, groups| {
        put_u32(buf, groups.len());
        for g in groups {
            buf.extend_from_slice(&g.rows.to_le_bytes());
            buf.extend_from_slice(&g.bytes.to_le_bytes());
        }
    });
    buf
}

/// A cursor over the cache bytes; every read is bounds-checked, and counts
/// the remaining bytes cannot hold are refused (a corrupt file must not
/// allocate).
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
    fn count(&mut self, min_bytes: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n <= self.buf.len() / min_bytes).then_some(n)
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn stamp(&mut self) -> Option<Stamp> {
        Some(Stamp {
            size: self.u64()?,
            mtime_ns: self.i64()?,
            ino: self.u64()?,
        })
    }
    fn section<T>(&mut self, mut value: impl FnMut(&mut Self) -> Option<T>) -> Option<Section<T>> {
        let dirs = self.count(8)?;
        let mut section: Section<T> = FastMap::default();
        section.reserve(dirs);
        for _ in 0..dirs {
            let dir = self.str()?.to_string();
            let n = self.count(32)?;
            let mut files: FastMap<String, Entry<T>> = FastMap::default();
            files.reserve(n);
            for _ in 0..n {
                let name = self.str()?.to_string();
                let stamp = self.stamp()?;
                files.insert(
                    name,
                    Entry {
                        stamp,
                        value: value(self)?,
                        used: AtomicBool::new(false),
                    },
                );
            }
            section.insert(dir, files);
        }
        Some(section)
    }
}

type Decoded = (String, Section<Provenance>, Section<Vec<RowGroup>>);

fn decode(bytes: &[u8]) -> Option<Decoded> {
    let mut r = Reader { buf: bytes };
    if r.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let root = r.str()?.to_string();
    let n = r.count(4)?;
    let mut models: Vec<Arc<str>> = Vec::with_capacity(n);
    for _ in 0..n {
        models.push(Arc::from(r.str()?));
    }
    let outputs = r.section(|r| {
        let fingerprint = r.str()?.to_string();
        let model = models.get(r.u32()? as usize)?.clone();
        Some(Provenance { fingerprint, model })
    })?;
    let inputs = r.section(|r| {
        let n = r.count(16)?;
        (0..n)
            .map(|_| {
                Some(RowGroup {
                    rows: r.u64()?,
                    bytes: r.u64()?,
                })
            })
            .collect()
    })?;
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
            model: Arc::from("m@1"),
        }
    }

    fn tmp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("efscan-cache-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn never<T>() -> Result<T, String> {
        Err("must not read".into())
    }

    #[test]
    fn round_trip_and_hits() {
        let dir = tmp_dir("rt");
        let path = dir.join(CACHE_FILE);
        let c = FooterCache::empty("/in");
        let got = c
            .dir("s/a")
            .output("x.parquet", stamp(1), || Ok(prov("1-7")))
            .unwrap();
        assert_eq!(*got, prov("1-7"));
        c.dir("s/a")
            .input("x.parquet", stamp(2), || {
                Ok(vec![RowGroup { rows: 3, bytes: 4 }])
            })
            .unwrap();
        assert!(c.save(&path, &HashSet::new()).unwrap());

        let (c, load) = FooterCache::load(&path, "/in");
        assert_eq!(load, CacheLoad::Loaded);
        let d = c.dir("s/a");
        assert_eq!(
            *d.output("x.parquet", stamp(1), never).unwrap(),
            prov("1-7")
        );
        assert_eq!(
            &*d.input("x.parquet", stamp(2), never).unwrap(),
            &[RowGroup { rows: 3, bytes: 4 }]
        );
        // A changed stamp is a miss.
        assert_eq!(
            *d.output("x.parquet", stamp(9), || Ok(prov("new"))).unwrap(),
            prov("new")
        );
        assert_eq!(c.hits.load(Ordering::Relaxed), 2);
        assert_eq!(c.output_footers_read.load(Ordering::Relaxed), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unchanged_cache_is_not_rewritten_and_unscanned_dirs_are_kept() {
        let dir = tmp_dir("keep");
        let path = dir.join(CACHE_FILE);
        let c = FooterCache::empty("/in");
        c.dir("s/a")
            .output("x.parquet", stamp(1), || Ok(prov("a")))
            .unwrap();
        c.dir("s/b")
            .output("y.parquet", stamp(2), || Ok(prov("b")))
            .unwrap();
        assert!(c.save(&path, &HashSet::new()).unwrap());

        // A scan of s/a alone that hits its entry changes nothing.
        let (c, _) = FooterCache::load(&path, "/in");
        c.dir("s/a").output("x.parquet", stamp(1), never).unwrap();
        let scanned: HashSet<String> = ["s/a".to_string()].into();
        assert!(!c.save(&path, &scanned).unwrap());

        // A scan of s/a that no longer finds x drops it but keeps s/b.
        let (c, _) = FooterCache::load(&path, "/in");
        assert!(c.save(&path, &scanned).unwrap());
        let (c, _) = FooterCache::load(&path, "/in");
        assert!(c.outputs["s/b"].contains_key("y.parquet"));
        assert!(!c.outputs.contains_key("s/a"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_or_foreign_files_are_ignored() {
        let dir = tmp_dir("bad");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(CACHE_FILE);
        fs::write(&path, b"EFSCAN\x00\x02\xff\xff\xff\xff").unwrap();
        assert_eq!(FooterCache::load(&path, "/in").1, CacheLoad::Rebuilt);
        let mut big = MAGIC.to_vec();
        big.extend_from_slice(&0u32.to_le_bytes());
        big.extend_from_slice(&u32::MAX.to_le_bytes());
        fs::write(&path, &big).unwrap();
        assert_eq!(FooterCache::load(&path, "/in").1, CacheLoad::Rebuilt);
        fs::write(&path, b"EFSCAN\x00\x01 an older version").unwrap();
        assert_eq!(FooterCache::load(&path, "/in").1, CacheLoad::Rebuilt);
        assert_eq!(
            FooterCache::load(&dir.join("none"), "/in").1,
            CacheLoad::Missing
        );

        // Input layouts of another input root are dropped, outputs kept.
        let c = FooterCache::empty("/in");
        c.dir("s/a")
            .output("x.parquet", stamp(1), || Ok(prov("a")))
            .unwrap();
        c.dir("s/a")
            .input("x.parquet", stamp(1), || Ok(vec![]))
            .unwrap();
        c.save(&path, &HashSet::new()).unwrap();
        let (c, _) = FooterCache::load(&path, "/elsewhere");
        assert_eq!((c.outputs.len(), c.inputs.len()), (1, 0));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn every_truncation_of_a_valid_file_is_refused() {
        let dir = tmp_dir("trunc");
        let path = dir.join(CACHE_FILE);
        let c = FooterCache::empty("/in");
        c.dir("s/a")
            .output("x.parquet", stamp(1), || Ok(prov("a")))
            .unwrap();
        c.dir("s/a")
            .input("x.parquet", stamp(1), || {
                Ok(vec![RowGroup { rows: 1, bytes: 2 }])
            })
            .unwrap();
        c.save(&path, &HashSet::new()).unwrap();
        let bytes = fs::read(&path).unwrap();
        for n in 0..bytes.len() {
            assert!(
                decode(&bytes[..n]).is_none(),
                "accepted {n} of {} bytes",
                bytes.len()
            );
        }
        assert!(decode(&bytes).is_some());
        fs::remove_dir_all(&dir).unwrap();
    }
}
