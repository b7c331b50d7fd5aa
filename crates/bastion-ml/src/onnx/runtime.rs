//! ONNX Runtime, loaded once per process from a shared library found at run time (Bastion
//! links no native code for it, so a build without ONNX Runtime present works and only
//! ONNX models need it). Where it is looked for, in order: `BASTION_ONNXRUNTIME`,
//! `ORT_DYLIB_PATH`, then `libonnxruntime.so` beside the `bastion` executable.

use std::path::PathBuf;
use std::sync::OnceLock;

use ort::environment::Environment;

use crate::error::{MlError, MlResult};

pub const ENV: &str = "BASTION_ONNXRUNTIME";
static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();

fn locate() -> Result<PathBuf, String> {
    for var in [ENV, "ORT_DYLIB_PATH"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let p = PathBuf::from(v);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(format!("{var} names {}, which is not a file", p.display()))
            };
        }
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(library_name())));
    match beside {
        Some(p) if p.is_file() => Ok(p),
        _ => Err(format!(
            "ONNX models run on ONNX Runtime's shared library (1.31 or newer), which was not found: set {ENV} to its path, e.g. after `pip install onnxruntime==1.32.0`, to …/site-packages/onnxruntime/capi/libonnxruntime.so.1.32.0, or put {} beside the bastion executable",
            library_name()
        )),
    }
}

fn library_name() -> String {
    format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    )
}

fn load() -> Result<Environment, String> {
    let path = locate()?;
    let builder = ort::init_from(&path)
        .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?;
    let env = builder
        .with_name("bastion")
        .with_telemetry(false)
        .build()
        .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))?;
    // Its session-building chatter is not the user's business; warnings and errors are.
    env.set_log_level(ort::logging::LogLevel::Warning);
    tracing::debug!(path = %path.display(), "loaded ONNX Runtime");
    Ok(env)
}

/// Loads the runtime on first use; later calls return the first outcome.
pub fn ensure() -> MlResult<&'static Environment> {
    RUNTIME
        .get_or_init(load)
        .as_ref()
        .map_err(|e| MlError::invalid(e.clone()))
}
