//! Directory listing for the scan: the subdirectories of a level of the tree
//! and the `.parquet` files of one leaf directory, each with the stat the
//! fingerprint and the footer cache need. Problems are collected as
//! [`Issue`]s with their path; the walk goes on.
//!
//! A symlink is followed only while it stays inside its data root (the
//! canonical input or output root): one that leads out is reported and
//! skipped, as the workers refuse such a path.

use std::fs::{self, DirEntry, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rayon::prelude::*;

use super::Issue;

/// Extension of every input and output file.
pub const PARQUET_EXT: &str = ".parquet";

/// Entries of a directory above which their stat calls run in parallel.
const PARALLEL_STAT_MIN: usize = 64;

/// What identifies one version of a file: the fingerprint (size, mtime) and,
/// for the footer cache, the inode (a rename-replace always changes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub ino: u64,
}

impl Stamp {
    pub fn of(md: &Metadata) -> Stamp {
        Stamp {
            size: md.size(),
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ino: md.ino(),
        }
    }

    /// The input fingerprint as jobs and outputs carry it: `"{size}-{mtime_ns}"`.
    pub fn fingerprint(&self) -> String {
        format!("{}-{}", self.size, self.mtime_ns)
    }
}

/// One readable `.parquet` file of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStat {
    pub name: String,
    pub stamp: Stamp,
}

/// The `.parquet` files of one directory.
#[derive(Debug, Default)]
pub struct Listing {
    /// Readable regular files (symlinks followed), sorted by name.
    pub files: Vec<FileStat>,
    /// `.parquet` names present but unreadable, sorted: an output whose
    /// input is merely unreadable is not an orphan.
    pub broken: Vec<String>,
    /// The directory exists and could be read.
    pub exists: bool,
    /// The directory exists but could not be listed: nothing about its
    /// content is known.
    pub unreadable: bool,
    /// Hidden `.tmp` files, sorted: the workers' temporaries (being written,
    /// or left by a worker killed while writing).
    pub temps: Vec<String>,
    pub issues: Vec<Issue>,
}

fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

impl Listing {
    /// Index in `files` of the readable file `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.files
            .binary_search_by(|f| f.name.as_str().cmp(name))
            .ok()
    }

    /// Whether a `.parquet` entry `name` exists, readable or not.
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
            || self
                .broken
                .binary_search_by(|b| b.as_str().cmp(name))
                .is_ok()
    }
}

/// Suffix of the workers' temporary files (`.<name>.<worker>.<job>.<random>.tmp`).
pub const TEMP_EXT: &str = ".tmp";

/// Names of the subdirectories of `dir` (symlinks to directories inside
/// `root` included), sorted. `Ok(None)` when `dir` does not exist; `Err`
/// when it cannot be read.
pub fn subdirs(
    dir: &Path,
    root: &Path,
    issues: &mut Vec<Issue>,
) -> Result<Option<Vec<String>>, Issue> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Issue::new(
                dir,
                format!("cannot read directory: {}", describe(&e)),
            ))
        }
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                issues.push(Issue::new(
                    dir,
                    format!("cannot read directory entry: {}", describe(&e)),
                ));
                continue;
            }
        };
        let Some(name) = utf8_name(&entry, issues) else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => names.push(name),
            Ok(t) if t.is_symlink() => match follow_link(&entry.path(), root) {
                Ok(md) if md.is_dir() => names.push(name),
                Ok(_) => {}
                Err(problem) => issues.push(Issue::new(&entry.path(), problem)),
            },
            Ok(_) => {}
            Err(e) => issues.push(Issue::new(
                &entry.path(),
                format!("cannot stat: {}", describe(&e)),
            )),
        }
    }
    names.sort();
    Ok(Some(names))
}

fn link_problem(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "broken symlink".into(),
        _ => format!("unreadable symlink: {}", describe(e)),
    }
}

/// The metadata of what the symlink `path` leads to, if that is inside
/// `root` (canonical); otherwise the problem to report.
fn follow_link(path: &Path, root: &Path) -> Result<Metadata, String> {
    let target = fs::canonicalize(path).map_err(|e| link_problem(&e))?;
    if !target.starts_with(root) {
        return Err(format!(
            "symlink leads out of the data root {} (to {}); skipped",
            root.display(),
            target.display()
        ));
    }
    fs::metadata(&target).map_err(|e| link_problem(&e))
}

fn utf8_name(entry: &DirEntry, issues: &mut Vec<Issue>) -> Option<String> {
    match entry.file_name().into_string() {
        Ok(n) => Some(n),
        Err(_) => {
            issues.push(Issue::new(
                &entry.path(),
                "file name is not valid UTF-8; skipped".into(),
            ));
            None
        }
    }
}

/// The `.parquet` files of `dir` with their stat. Hidden files are no
/// inputs or outputs; the workers' temporaries among them are listed apart.
/// Symlinks are followed only inside `root` (canonical).
pub fn parquet_files(dir: &Path, root: &Path) -> Listing {
    let mut out = Listing::default();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.exists = true;
            out.unreadable = true;
            out.issues.push(Issue::new(
                dir,
                format!("cannot read directory: {}", describe(&e)),
            ));
            return out;
        }
    };
    out.exists = true;
    let mut entries = Vec::new();
    for entry in rd {
        match entry {
            Ok(entry) => {
                let Some(name) = utf8_name(&entry, &mut out.issues) else {
                    continue;
                };
                if name.starts_with('.') {
                    if name.ends_with(TEMP_EXT) {
                        out.temps.push(name);
                    }
                } else if name.ends_with(PARQUET_EXT) {
                    entries.push((name, entry));
                }
            }
            Err(e) => out.issues.push(Issue::new(
                dir,
                format!("cannot read directory entry: {}", describe(&e)),
            )),
        }
    }
    type Stat = Result<FileStat, (String, Issue)>;
    let stats: Vec<Stat> = if entries.len() >= PARALLEL_STAT_MIN {
        entries
            .into_par_iter()
            .map(|(n, e)| stat_entry(n, &e, root))
            .collect()
    } else {
        entries
            .into_iter()
            .map(|(n, e)| stat_entry(n, &e, root))
            .collect()
    };
    for s in stats {
        match s {
            Ok(f) => out.files.push(f),
            Err((name, issue)) => {
                out.broken.push(name);
                out.issues.push(issue);
            }
        }
    }
    out.files.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    out.broken.sort_unstable();
    out.temps.sort_unstable();
    out
}

/// Stat one entry (through the directory handle; symlinks are followed
/// inside `root`). On failure, the name and the issue.
fn stat_entry(name: String, entry: &DirEntry, root: &Path) -> Result<FileStat, (String, Issue)> {
    match stat_file(entry, root) {
        Ok(stamp) => Ok(FileStat { name, stamp }),
        Err(problem) => Err((name, Issue::new(&entry.path(), problem))),
    }
}

fn stat_file(entry: &DirEntry, root: &Path) -> Result<Stamp, String> {
    let kind = entry
        .file_type()
        .map_err(|e| format!("cannot stat: {}", describe(&e)))?;
    let md = if kind.is_symlink() {
        follow_link(&entry.path(), root)?
    } else {
        entry
            .metadata()
            .map_err(|e| format!("cannot stat: {}", describe(&e)))?
    };
    if md.is_dir() {
        return Err("is a directory, not a parquet file".into());
    }
    if !md.is_file() {
        return Err("not a regular file".into());
    }
    Ok(Stamp::of(&md))
}
