//! Owns the process-wide ONNX Runtime: loads the shared library once and builds the environment.
//!
//! `ort` panics if any API is used before a library is loaded, so every entry point of this
//! crate goes through [`environment`], which fails cleanly instead.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::{Result, RuntimeError};

static ENVIRONMENT: OnceLock<(ort::environment::Environment, PathBuf)> = OnceLock::new();
static INIT_LOCK: Mutex<()> = Mutex::new(());

const HINT: &str = "Install a supported ONNX Runtime with `pip install 'onnxruntime>=1.22'`, \
or point ORT_DYLIB_PATH at a libonnxruntime.so of version 1.22 or newer";

/// Loads ONNX Runtime from `path` (once per process) and returns the path that is in use.
///
/// Calling it again after success is cheap and returns the library already loaded, whatever
/// `path` says: a process can hold only one ONNX Runtime through `ort`.
pub fn init(path: &Path) -> Result<PathBuf> {
    if let Some((_, loaded)) = ENVIRONMENT.get() {
        return Ok(loaded.clone());
    }
    let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, loaded)) = ENVIRONMENT.get() {
        return Ok(loaded.clone());
    }
    let unavailable = |reason: String| RuntimeError::Unavailable {
        path: path.to_path_buf(),
        reason,
        hint: HINT.to_string(),
    };
    if !path.is_file() {
        return Err(unavailable("no such file".into()));
    }
    let builder = ort::init_from(path).map_err(|e| unavailable(e.to_string()))?;
    let env = builder
        .with_name("pilothouse")
        .with_telemetry(false)
        .build()
        .map_err(|e| unavailable(e.to_string()))?;
    let _ = ENVIRONMENT.set((env, path.to_path_buf()));
    Ok(path.to_path_buf())
}

/// The loaded library's path, if [`init`] has succeeded in this process.
pub fn loaded_library() -> Option<PathBuf> {
    ENVIRONMENT.get().map(|(_, p)| p.clone())
}

/// The environment sessions are built in; an error if [`init`] has not succeeded.
pub(crate) fn environment() -> Result<&'static ort::environment::Environment> {
    ENVIRONMENT
        .get()
        .map(|(env, _)| env)
        .ok_or_else(|| RuntimeError::Unavailable {
            path: PathBuf::from("<not initialised>"),
            reason: "ONNX Runtime has not been loaded in this process".into(),
            hint: "call pilothouse_runtime::init(path) first".into(),
        })
}
