// Twin: workers/paths.py (docs/parity.md)
//! Map job paths (relative to the dataset roots) onto this machine's mounts,
//! refusing any path that escapes its root, symlinks included (twin of
//! `workers/paths.py`).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use embedfleet_core::check_relative;

use crate::error::{Result, WorkerError};

/// `errno` of a path that can never be opened as it is (a name or path too
/// long for the file system, a symlink loop, a file where a directory should
/// be): retrying cannot help, the job is dead-lettered. The Python twin is
/// `NEVER_OPENS` of `workers/paths.py`.
pub const NEVER_OPENS: [i32; 3] = [libc::ENAMETOOLONG, libc::ELOOP, libc::ENOTDIR];

/// Whether `e` says its path can never be opened (`NEVER_OPENS`).
pub fn never_opens(e: &io::Error) -> bool {
    e.raw_os_error().is_some_and(|n| NEVER_OPENS.contains(&n))
}

fn stat_error(rel: &str, e: &io::Error) -> WorkerError {
    if never_opens(e) {
        WorkerError::bad_input(rel, format!("the path can never be opened ({e})"))
    } else {
        WorkerError::Transient(format!("{rel}: cannot stat ({e})"))
    }
}

/// `"<size>-<mtime_ns>"` of a file: what jobs and outputs carry.
pub fn fingerprint(path: &Path) -> io::Result<String> {
    let m = fs::metadata(path)?;
    let mtime_ns = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
    Ok(format!("{}-{}", m.len(), mtime_ns))
}

/// Resolve symlinks of the longest existing prefix of `path`, keeping the
/// rest as it is (like Python's non-strict `Path.resolve`).
fn resolve(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut cur = path.to_path_buf();
    loop {
        if let Ok(real) = fs::canonicalize(&cur) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (cur.file_name().map(|n| n.to_os_string()), cur.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                cur = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Where this worker finds inputs and puts outputs (both resolved).
#[derive(Debug, Clone)]
pub struct DataRoots {
    pub input_root: PathBuf,
    pub output_root: PathBuf,
}

impl DataRoots {
    pub fn new(input_root: &Path, output_root: &Path) -> Self {
        DataRoots {
            input_root: resolve(input_root),
            output_root: resolve(output_root),
        }
    }

    fn inside(root: &Path, rel: &str) -> Result<PathBuf> {
        check_relative(rel)?;
        let target = resolve(&root.join(rel));
        if !target.starts_with(root) {
            return Err(WorkerError::UnsafePath(format!(
                "{rel}: resolves outside its root (symlink out)"
            )));
        }
        Ok(target)
    }

    /// The input file of a job: `BadInput` if missing, `UnsafePath` if it escapes.
    pub fn input(&self, rel: &str) -> Result<PathBuf> {
        let target = Self::inside(&self.input_root, rel)?;
        match fs::metadata(&target) {
            Ok(m) if m.is_file() => Ok(target),
            Ok(_) => Err(WorkerError::bad_input(rel, "input is not a regular file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(WorkerError::bad_input(rel, "input file not found"))
            }
            Err(e) => Err(stat_error(rel, &e)),
        }
    }

    /// The output file of a job (may not exist yet): `UnsafePath` if it escapes.
    pub fn output(&self, rel: &str) -> Result<PathBuf> {
        let target = Self::inside(&self.output_root, rel)?;
        match fs::symlink_metadata(&target) {
            Ok(m) if !m.is_file() => Err(WorkerError::UnsafePath(format!(
                "{rel}: output exists and is not a regular file"
            ))),
            Err(e) if never_opens(&e) => Err(stat_error(rel, &e)),
            _ => Ok(target),
        }
    }
}

/// Make a rename inside `dir` durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ef-paths-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn refuses_symlinks_out_of_the_root() {
        let base = tmp("escape");
        let (root, outside) = (base.join("root"), base.join("outside"));
        fs::create_dir_all(root.join("chains")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret.parquet"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("chains/link")).unwrap();
        let roots = DataRoots::new(&root, &root);
        let e = roots.input("chains/link/secret.parquet").unwrap_err();
        assert!(matches!(e, WorkerError::UnsafePath(_)), "{e}");
        assert!(matches!(
            roots.input("../outside/secret.parquet"),
            Err(WorkerError::UnsafePath(_))
        ));
        assert!(matches!(
            roots.input("chains/missing.parquet"),
            Err(WorkerError::BadInput(_))
        ));
        let out = roots.output("embeddings/a/b.parquet").unwrap();
        assert!(out.starts_with(&roots.output_root));
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn a_path_too_long_to_open_is_permanent_bad_input() {
        let base = tmp("toolong");
        let roots = DataRoots::new(&base, &base);
        // Each name fits NAME_MAX, the whole path does not fit PATH_MAX.
        let rel = format!(
            "chains/{}x.parquet",
            format!("{}/", "d".repeat(200)).repeat(21)
        );
        for e in [
            roots.input(&rel).unwrap_err(),
            roots.output(&rel).unwrap_err(),
        ] {
            assert!(e.is_permanent(), "{e}");
            assert!(e.to_string().contains("can never be opened"), "{e}");
        }
        fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn fingerprint_is_size_and_mtime_ns() {
        let d = tmp("fp");
        let f = d.join("f");
        fs::write(&f, b"12345").unwrap();
        let fp = fingerprint(&f).unwrap();
        assert!(fp.starts_with("5-"), "{fp}");
        assert!(fp[2..].parse::<i128>().unwrap() > 0);
        fs::remove_dir_all(d).unwrap();
    }
}
