// Twin: workers/st_embedder.py (docs/parity.md)
//! The ONNX model directory written by `python -m models.export_onnx` and an
//! ONNX Runtime session over it.
//!
//! ONNX Runtime is loaded at run time from `ORT_DYLIB_PATH`, else from where
//! the project installs it (beside the binary, or the venv's `onnxruntime`
//! wheel: `crate::locate`), so nothing is downloaded or linked at build time. ort 2.0.0-rc.15 is
//! the release built against ONNX Runtime 1.31; it asks the library for API
//! version 17 only, so any ONNX Runtime from 1.17 on loads.
//!
//! The graph's output is the mean-pooled token embedding (see the export);
//! this module L2-normalises it. `--device cuda` registers the CUDA execution
//! provider with `error_on_failure`: a machine without a working CUDA runtime
//! fails at start-up with the reason, it never falls back to the CPU in silence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use embedfleet_core::constants::{EMBEDDING_DIM, MODEL_NAME};
use ort::environment::Environment;
use ort::ep::{ExecutionProviderDispatch, CUDA};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;
use serde::Deserialize;

use crate::error::{Result, WorkerError};
use crate::locate::find_onnxruntime;

/// Manifest file of an ONNX model directory.
pub const MANIFEST: &str = "embedfleet_model.json";
/// Manifest variant with int8 weights, for CPUs with VNNI.
pub const INT8_VNNI: &str = "int8_vnni";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda,
}

impl Device {
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    Int8,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Variant {
    pub file: String,
}

/// What the worker reads from `embedfleet_model.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub weights_sha256: String,
    pub embedding_dim: usize,
    pub inputs: Vec<String>,
    pub output: String,
    pub tokenizer: String,
    pub variants: BTreeMap<String, Variant>,
}

/// An exported model directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub path: PathBuf,
    pub manifest: Manifest,
}

impl ModelDir {
    pub fn open(path: &Path) -> Result<Self> {
        let file = path.join(MANIFEST);
        let text = std::fs::read_to_string(&file).map_err(|e| {
            WorkerError::Usage(format!(
                "no ONNX model at {} ({e}): run `python -m models.export_onnx --output {}` or pass --model-dir",
                path.display(),
                path.display()
            ))
        })?;
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| {
            WorkerError::Usage(format!("{}: not a model manifest ({e})", file.display()))
        })?;
        if manifest.embedding_dim != EMBEDDING_DIM || manifest.weights_sha256.len() < 16 {
            return Err(WorkerError::Usage(format!(
                "{}: not an all-MiniLM-L6-v2 export",
                file.display()
            )));
        }
        Ok(ModelDir {
            path: path.to_path_buf(),
            manifest,
        })
    }

    /// `all-MiniLM-L6-v2@<sha16>`: the same id the PyTorch directory yields.
    pub fn model_id(&self) -> String {
        format!("{MODEL_NAME}@{}", &self.manifest.weights_sha256[..16])
    }

    pub fn tokenizer_path(&self) -> PathBuf {
        self.path.join(&self.manifest.tokenizer)
    }

    /// The manifest variant to run: `int8_vnni` (int8 weights, U8S8
    /// kernels) for int8 where `vnni` holds and the export has it, else the
    /// precision's own variant (`int8`: uint8 weights, exact on every CPU).
    pub fn variant_for(&self, precision: Precision, vnni: bool) -> &'static str {
        match precision {
            Precision::Int8 if vnni && self.manifest.variants.contains_key(INT8_VNNI) => INT8_VNNI,
            p => p.name(),
        }
    }

    /// The ONNX file of a manifest variant.
    pub fn onnx_path(&self, variant: &str) -> Result<PathBuf> {
        let v = self.manifest.variants.get(variant).ok_or_else(|| {
            WorkerError::Usage(format!(
                "{}: no {variant} variant in the manifest",
                self.path.display(),
            ))
        })?;
        Ok(self.path.join(&v.file))
    }
}

/// Whether this CPU has VNNI int8 dot products (AVX512-VNNI or AVX-VNNI):
/// there ONNX Runtime's U8S8 kernels are exact and the fastest int8 path,
/// while without VNNI they saturate 16-bit sums (Python twin:
/// `workers.device.cpu_has_vnni`).
pub fn cpu_has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vnni")
            || std::arch::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Load ONNX Runtime once per process.
fn environment() -> Result<Environment> {
    static ENV: std::sync::OnceLock<std::result::Result<Environment, String>> =
        std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let lib = find_onnxruntime().map_err(|e| e.to_string())?;
        let builder = ort::init_from(&lib).map_err(|e| format!("cannot load ONNX Runtime: {e}"))?;
        builder
            .with_name("embedfleet")
            .build()
            .map_err(|e| format!("ONNX Runtime environment: {e}"))
    })
    .clone()
    .map_err(WorkerError::Usage)
}

fn usage<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> WorkerError {
    move |e| WorkerError::Usage(format!("{what}: {e}"))
}

/// An ONNX Runtime session that turns token ids into normalised embeddings.
pub struct OnnxModel {
    session: Session,
    output: String,
    pub device: Device,
    pub precision: Precision,
}

impl OnnxModel {
    pub fn load(
        dir: &ModelDir,
        precision: Precision,
        device: Device,
        threads: usize,
    ) -> Result<Self> {
        let env = environment()?;
        let variant = dir.variant_for(precision, device == Device::Cpu && cpu_has_vnni());
        let path = dir.onnx_path(variant)?;
        log::info!("model variant {variant}: {}", path.display());
        let mut builder = Session::builder(&env)
            .map_err(usage("session"))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(usage("session"))?
            .with_intra_threads(threads.max(1))
            .map_err(usage("session"))?
            .with_inter_threads(1)
            .map_err(usage("session"))?
            // No spin-waiting between batches: the reader, tokenizer and
            // writer threads share these cores, and spinning ORT threads burn
            // CPU they could use (measured on 2 cores, int8: 18% less CPU
            // time and 23% less wall time for the same batches).
            .with_intra_op_spinning(false)
            .map_err(usage("session"))?;
        if device == Device::Cuda {
            let cuda: ExecutionProviderDispatch = CUDA::default().build().error_on_failure();
            builder = builder.with_execution_providers([cuda]).map_err(|e| {
                WorkerError::Usage(format!(
                    "--device cuda: the CUDA execution provider is unavailable: {e}"
                ))
            })?;
        }
        let session = builder.commit_from_file(&path).map_err(|e| {
            let what = if device == Device::Cuda {
                "--device cuda: cannot create a CUDA session"
            } else {
                "cannot load"
            };
            WorkerError::Usage(format!("{what} {}: {e}", path.display()))
        })?;
        Ok(OnnxModel {
            session,
            output: dir.manifest.output.clone(),
            device,
            precision,
        })
    }

    /// Embeddings of one batch (row-major, `ids.len() x 384`, L2-normalised).
    pub fn embed(&mut self, ids: &[&[u32]]) -> Result<Vec<f32>> {
        let n = ids.len();
        let len = ids.iter().map(|x| x.len()).max().unwrap_or(0).max(1);
        let mut input = vec![0i64; n * len];
        let mut mask = vec![0i64; n * len];
        for (r, row) in ids.iter().enumerate() {
            for (c, &t) in row.iter().enumerate() {
                input[r * len + c] = i64::from(t);
                mask[r * len + c] = 1;
            }
        }
        let run_err = |e: ort::Error| {
            WorkerError::Transient(format!("ONNX Runtime failed on a batch of {n}x{len}: {e}"))
        };
        let shape = [n, len];
        let inputs = ort::inputs![
            "input_ids" => Tensor::from_array((shape, input)).map_err(run_err)?,
            "attention_mask" => Tensor::from_array((shape, mask)).map_err(run_err)?,
            "token_type_ids" => Tensor::from_array((shape, vec![0i64; n * len])).map_err(run_err)?,
        ];
        let outputs = self.session.run(inputs).map_err(run_err)?;
        let value = outputs
            .get(&self.output)
            .ok_or_else(|| WorkerError::Transient(format!("no output {:?}", self.output)))?;
        let (_, data) = value.try_extract_tensor::<f32>().map_err(run_err)?;
        if data.len() != n * EMBEDDING_DIM {
            return Err(WorkerError::Transient(format!(
                "model returned {} values for {n} texts",
                data.len()
            )));
        }
        let mut out = data.to_vec();
        for v in out.chunks_mut(EMBEDDING_DIM) {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= norm);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(variants: &[&str]) -> ModelDir {
        let variants = variants
            .iter()
            .map(|v| {
                (
                    v.to_string(),
                    Variant {
                        file: format!("{v}.onnx"),
                    },
                )
            })
            .collect();
        ModelDir {
            path: PathBuf::from("/m"),
            manifest: Manifest {
                weights_sha256: "0".repeat(64),
                embedding_dim: EMBEDDING_DIM,
                inputs: vec![],
                output: "sentence_embedding".into(),
                tokenizer: "tokenizer.json".into(),
                variants,
            },
        }
    }

    #[test]
    fn int8_runs_the_vnni_variant_only_on_a_vnni_cpu_and_only_if_exported() {
        let both = dir_with(&["fp32", "int8", INT8_VNNI]);
        assert_eq!(both.variant_for(Precision::Int8, true), INT8_VNNI);
        assert_eq!(both.variant_for(Precision::Int8, false), "int8");
        assert_eq!(both.variant_for(Precision::Fp32, true), "fp32");
        let portable = dir_with(&["fp32", "int8"]);
        assert_eq!(portable.variant_for(Precision::Int8, true), "int8");
        assert_eq!(
            both.onnx_path(INT8_VNNI).unwrap(),
            PathBuf::from("/m/int8_vnni.onnx")
        );
        let err = portable.onnx_path(INT8_VNNI).unwrap_err().to_string();
        assert!(err.contains("no int8_vnni variant"), "{err}");
    }
}
