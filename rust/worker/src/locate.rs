//! Where the worker finds ONNX Runtime and its model when no flag or variable
//! names them: the places the project installs them, so that
//! `embedfleet-worker --redis-url … --data-root …` runs as the README writes
//! it, from a release tarball, from a clone's build, or from the venv's
//! `bin/` (where `deploy/setup.sh` links the binary).
//!
//! The binary is looked for twice: where it was invoked (`argv[0]`, found on
//! `PATH` when bare, so a symlink in `<venv>/bin` counts) and where it really
//! is (symlinks resolved). A failure lists every place looked at.

use std::path::{Path, PathBuf};

use crate::error::{Result, WorkerError};
use crate::model::MANIFEST;

/// Environment variable naming the ONNX Runtime library.
pub const ENV_ORT: &str = "ORT_DYLIB_PATH";
/// Default model directory, relative to the working directory.
pub const DEFAULT_MODEL_DIR: &str = "models/onnx/minilm";
/// The ONNX export of the clone this binary was built from (`deploy/setup.sh`
/// writes it there).
pub const SOURCE_MODEL_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/onnx/minilm");

/// The directories holding the binary: as invoked, then symlinks resolved.
pub fn binary_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let invoked = std::env::args_os().next().map(PathBuf::from);
    if let Some(p) = invoked.and_then(|p| resolve_invoked(&p, std::env::var_os("PATH").as_deref()))
    {
        dirs.extend(p.parent().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        let real = std::fs::canonicalize(&exe).unwrap_or(exe);
        dirs.extend(real.parent().map(Path::to_path_buf));
    }
    dedup(dirs)
}

/// `argv[0]` as a path: as given when it has a directory part, else the
/// first match on `path` (as a shell found it).
pub fn resolve_invoked(argv0: &Path, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    if argv0.components().count() > 1 {
        return Some(argv0.to_path_buf());
    }
    std::env::split_paths(path?)
        .map(|d| d.join(argv0))
        .find(|p| p.is_file())
}

/// Directories that may hold `libonnxruntime.so*`, in order: beside each
/// binary directory (`./`, `lib/`, `../lib/`), the `onnxruntime` wheel of the
/// venv a binary directory belongs to (`<venv>/bin` →
/// `<venv>/lib/python3.*/site-packages/onnxruntime/capi`), then the wheel of
/// `virtual_env` (`$VIRTUAL_ENV`, set by `activate`).
pub fn ort_dirs(bin_dirs: &[PathBuf], virtual_env: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for d in bin_dirs {
        dirs.extend([d.clone(), d.join("lib"), d.join("../lib")]);
        if let Some(venv) = d.parent() {
            dirs.extend(wheel_dirs(venv));
        }
    }
    if let Some(venv) = virtual_env {
        dirs.extend(wheel_dirs(venv));
    }
    dedup(dirs)
}

/// `<venv>/lib/python3.*/site-packages/onnxruntime/capi`, for each Python
/// the venv has (newest name first).
fn wheel_dirs(venv: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(venv.join("lib")) else {
        return Vec::new();
    };
    let mut pythons: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("python3"))
        })
        .collect();
    pythons.sort();
    pythons.reverse();
    pythons
        .into_iter()
        .map(|p| p.join("site-packages/onnxruntime/capi"))
        .collect()
}

/// The first `libonnxruntime.so*` in `dir` (by name), if any.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libonnxruntime.so")
                    || (n.starts_with("libonnxruntime.") && n.ends_with(".dylib"))
            })
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// The ONNX Runtime library: `ORT_DYLIB_PATH`, else the first found in
/// `ort_dirs`.
pub fn find_onnxruntime() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(ENV_ORT).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(WorkerError::Usage(format!(
                "{ENV_ORT}={} is not a file",
                p.display()
            )))
        };
    }
    let venv = std::env::var_os("VIRTUAL_ENV")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let dirs = ort_dirs(&binary_dirs(), venv.as_deref());
    if let Some(lib) = dirs.iter().find_map(|d| library_in(d)) {
        log::debug!("ONNX Runtime: {}", lib.display());
        return Ok(lib);
    }
    Err(WorkerError::Usage(format!(
        "ONNX Runtime library not found: set {ENV_ORT} to libonnxruntime.so (the onnxruntime wheel has it under \
         onnxruntime/capi/), put it next to the binary, or run the binary from a venv that has the wheel; looked in {}",
        listed(&dirs)
    )))
}

/// Model directories to try when `--model-dir` is not given, in order:
/// `models/onnx/minilm` under the working directory, `model/` above or
/// beside each binary directory, then the export of the clone the binary was
/// built from.
pub fn model_dirs(cwd: &Path, bin_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = vec![cwd.join(DEFAULT_MODEL_DIR)];
    for d in bin_dirs {
        dirs.extend([d.join("../model"), d.join("model")]);
    }
    dirs.push(PathBuf::from(SOURCE_MODEL_DIR));
    dedup(dirs)
}

/// The model directory: `arg` (from `--model-dir` or `EMBEDFLEET_MODEL_DIR`)
/// as given, else the first of `model_dirs` holding a manifest.
pub fn find_model_dir(arg: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = arg {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let dirs = model_dirs(&cwd, &binary_dirs());
    if let Some(d) = dirs.iter().find(|d| d.join(MANIFEST).is_file()) {
        return Ok(d.clone());
    }
    Err(WorkerError::Usage(format!(
        "no ONNX model found: pass --model-dir (or set EMBEDFLEET_MODEL_DIR) to the directory \
         `python -m models.export_onnx` wrote; looked in {}",
        listed(&dirs)
    )))
}

fn listed(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Keep the first of each path, in order.
fn dedup(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::with_capacity(dirs.len());
    for d in dirs {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let p = std::env::temp_dir()
                .join(format!("embedfleet-locate-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_venv_binary_looks_beside_itself_then_in_the_venvs_wheel_then_beside_the_real_binary() {
        let s = Scratch::new("venv");
        let venv = s.0.join("venv");
        let capi = venv.join("lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        let real = s.0.join("target/release");
        let dirs = ort_dirs(&[venv.join("bin"), real.clone()], None);
        assert_eq!(
            dirs,
            vec![
                venv.join("bin"),
                venv.join("bin/lib"),
                venv.join("bin/../lib"),
                capi,
                real.clone(),
                real.join("lib"),
                real.join("../lib"),
            ]
        );
    }

    #[test]
    fn the_active_venvs_wheel_comes_last_and_every_python_is_tried() {
        let s = Scratch::new("active");
        let venv = s.0.join("venv");
        for py in ["python3.10", "python3.12"] {
            std::fs::create_dir_all(venv.join("lib").join(py)).unwrap();
        }
        let bin = s.0.join("dist/bin");
        let dirs = ort_dirs(std::slice::from_ref(&bin), Some(&venv));
        assert_eq!(
            dirs[..3],
            [bin.clone(), bin.join("lib"), bin.join("../lib")]
        );
        assert_eq!(
            dirs[3..],
            [
                venv.join("lib/python3.12/site-packages/onnxruntime/capi"),
                venv.join("lib/python3.10/site-packages/onnxruntime/capi"),
            ]
        );
    }

    #[test]
    fn the_library_is_found_in_a_wheel_dir_and_the_first_name_wins() {
        let s = Scratch::new("lib");
        assert_eq!(library_in(&s.0), None);
        std::fs::write(s.0.join("libonnxruntime.so.1.20.0"), b"").unwrap();
        std::fs::write(s.0.join("libonnxruntime_providers_shared.so"), b"").unwrap();
        std::fs::write(s.0.join("libonnxruntime.so"), b"").unwrap();
        assert_eq!(library_in(&s.0), Some(s.0.join("libonnxruntime.so")));
    }

    #[test]
    fn a_bare_name_is_found_on_path_and_a_path_is_kept_as_given() {
        let s = Scratch::new("path");
        let bin = s.0.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("embedfleet-worker"), b"").unwrap();
        let path = std::env::join_paths([s.0.join("empty"), bin.clone()]).unwrap();
        assert_eq!(
            resolve_invoked(Path::new("embedfleet-worker"), Some(&path)),
            Some(bin.join("embedfleet-worker"))
        );
        assert_eq!(
            resolve_invoked(Path::new("nowhere-else"), Some(&path)),
            None
        );
        assert_eq!(
            resolve_invoked(Path::new("./x/embedfleet-worker"), None),
            Some(PathBuf::from("./x/embedfleet-worker"))
        );
    }

    #[test]
    fn the_model_is_looked_for_in_the_clone_then_beside_the_binary_then_in_the_source_tree() {
        let bin = PathBuf::from("/opt/ef/bin");
        let dirs = model_dirs(Path::new("/work"), &[bin.clone(), bin.clone()]);
        assert_eq!(
            dirs,
            vec![
                PathBuf::from("/work/models/onnx/minilm"),
                bin.join("../model"),
                bin.join("model"),
                PathBuf::from(SOURCE_MODEL_DIR),
            ]
        );
        assert!(SOURCE_MODEL_DIR.ends_with("/../../models/onnx/minilm"));
    }
}
