//! A loaded model: its signature, and a small pool of ONNX Runtime sessions so that many
//! threads can run it at once (`ort::Session::run` takes `&mut self`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynMapValueType, TensorElementType, TensorRef, ValueType};

use crate::environment::environment;
use crate::error::{Result, RuntimeError};
use crate::onnx_proto;
use crate::raw::{RawOutputs, RawRunner};
use crate::signature::{
    DType, Labels, Matching, OutputKind, Signature, TensorSpec, FEATURE_NAMES_KEY,
};
use crate::tensor::{OwnedTensor, Tensor, TensorData};

/// How much ONNX Runtime rewrites the graph before running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimization {
    Disable,
    Basic,
    Extended,
    All,
}

impl Optimization {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "disable" | "none" => Optimization::Disable,
            "basic" => Optimization::Basic,
            "extended" => Optimization::Extended,
            "all" => Optimization::All,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Optimization::Disable => "disable",
            Optimization::Basic => "basic",
            Optimization::Extended => "extended",
            Optimization::All => "all",
        }
    }

    fn to_ort(self) -> GraphOptimizationLevel {
        match self {
            Optimization::Disable => GraphOptimizationLevel::Disable,
            Optimization::Basic => GraphOptimizationLevel::Level1,
            Optimization::Extended => GraphOptimizationLevel::Level2,
            // Level3 is layout optimisation, which some ORT versions reject; All is what
            // onnxruntime's Python API uses by default.
            Optimization::All => GraphOptimizationLevel::All,
        }
    }
}

/// Session settings. The defaults suit many concurrent callers on a small machine: each
/// session runs on one thread, and up to one session per core is created on demand.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionOptions {
    pub intra_op_threads: usize,
    pub inter_op_threads: usize,
    pub optimization: Optimization,
    /// Same answers for the same inputs on every run: one thread per operator, sequential
    /// execution, and ONNX Runtime's deterministic kernels.
    pub deterministic: bool,
    /// The most sessions kept for concurrent callers (each holds a copy of the weights).
    pub max_sessions: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            intra_op_threads: 1,
            inter_op_threads: 1,
            optimization: Optimization::All,
            deterministic: false,
            max_sessions: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

impl SessionOptions {
    fn validate(&self) -> Result<()> {
        let bad = |option: &str, message: &str| RuntimeError::InvalidOption {
            option: option.into(),
            message: message.into(),
        };
        if self.intra_op_threads == 0 {
            return Err(bad("intra_op_threads", "must be at least 1"));
        }
        if self.inter_op_threads == 0 {
            return Err(bad("inter_op_threads", "must be at least 1"));
        }
        if self.max_sessions == 0 {
            return Err(bad("max_sessions", "must be at least 1"));
        }
        Ok(())
    }
}

/// Idle sessions plus the count of those lent out; grows up to `max_sessions` on demand.
struct SessionPool {
    bytes: Vec<u8>,
    options: SessionOptions,
    state: Mutex<PoolState>,
    available: Condvar,
}

struct PoolState {
    idle: Vec<Session>,
    created: usize,
}

struct Lease<'p> {
    pool: &'p SessionPool,
    session: Option<Session>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let mut state = self.pool.state.lock().unwrap_or_else(|e| e.into_inner());
            state.idle.push(session);
            drop(state);
            self.pool.available.notify_one();
        }
    }
}

impl SessionPool {
    fn new(bytes: Vec<u8>, options: SessionOptions, first: Session) -> Self {
        SessionPool {
            bytes,
            options,
            state: Mutex::new(PoolState {
                idle: vec![first],
                created: 1,
            }),
            available: Condvar::new(),
        }
    }

    fn acquire(&self) -> Result<Lease<'_>> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(Lease {
                    pool: self,
                    session: Some(session),
                });
            }
            if state.created < self.options.max_sessions {
                state.created += 1;
                drop(state);
                return match build_session(&self.bytes, &self.options) {
                    Ok(session) => Ok(Lease {
                        pool: self,
                        session: Some(session),
                    }),
                    Err(e) => {
                        self.state.lock().unwrap_or_else(|e| e.into_inner()).created -= 1;
                        Err(RuntimeError::Inference(format!(
                            "could not open another session: {e}"
                        )))
                    }
                };
            }
            state = self
                .available
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn sessions(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).created
    }
}

fn build_session(bytes: &[u8], options: &SessionOptions) -> ort::Result<Session> {
    let (intra, inter) = if options.deterministic {
        (1, 1)
    } else {
        (options.intra_op_threads, options.inter_op_threads)
    };
    let mut builder = Session::builder(environment().map_err(|e| ort::Error::new(e.to_string()))?)?
        .with_optimization_level(options.optimization.to_ort())?
        .with_intra_threads(intra)?
        .with_inter_threads(inter)?
        .with_parallel_execution(inter > 1)?
        .with_deterministic_compute(options.deterministic)?;
    if intra == 1 {
        // A one-thread pool that spins only burns the core another caller could use.
        builder = builder.with_intra_op_spinning(false)?;
    }
    builder.commit_from_memory(bytes)
}

/// A run's outputs, in signature order.
pub enum Outputs {
    /// Still in ONNX Runtime's memory (the fast path): read in place, or copy out.
    InPlace(RawOutputs),
    /// Already converted (models with ZipMap outputs).
    Owned(Vec<OwnedTensor>),
}

/// A model loaded into ONNX Runtime.
pub struct Model {
    origin: PathBuf,
    signature: Signature,
    pool: SessionPool,
    /// The C-API fast path, for models whose outputs are all tensors.
    raw: Option<RawRunner>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("origin", &self.origin)
            .field("signature", &self.signature)
            .finish()
    }
}

impl Model {
    /// Loads an ONNX model file.
    pub fn load(path: &Path, options: SessionOptions) -> Result<Model> {
        let bytes = std::fs::read(path).map_err(|e| {
            let cause = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ if path.is_dir() => "it is a directory, not an ONNX file".to_string(),
                _ => e.to_string(),
            };
            RuntimeError::load(path, cause)
        })?;
        Model::from_bytes(bytes, path, options)
    }

    /// Loads a model from its serialised bytes; `origin` names it in messages.
    pub fn from_bytes(bytes: Vec<u8>, origin: &Path, options: SessionOptions) -> Result<Model> {
        options.validate()?;
        environment()?;
        if bytes.is_empty() {
            return Err(RuntimeError::load(origin, "the file is empty"));
        }
        let proto = onnx_proto::decode(&bytes)
            .map_err(|e| RuntimeError::load(origin, format!("not a valid ONNX model ({e})")))?;
        let session =
            build_session(&bytes, &options).map_err(|e| RuntimeError::load(origin, e.message()))?;
        let signature =
            read_signature(&session, &proto).map_err(|e| RuntimeError::load(origin, e))?;
        let raw = if signature
            .outputs
            .iter()
            .all(|s| s.kind == OutputKind::Tensor)
        {
            Some(
                RawRunner::new(&signature.inputs, &signature.outputs)
                    .map_err(|e| RuntimeError::load(origin, e))?,
            )
        } else {
            None
        };
        Ok(Model {
            origin: origin.to_path_buf(),
            signature,
            pool: SessionPool::new(bytes, options, session),
            raw,
        })
    }

    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    pub fn origin(&self) -> &Path {
        &self.origin
    }

    pub fn options(&self) -> &SessionOptions {
        &self.pool.options
    }

    /// The serialised model.
    pub fn bytes(&self) -> &[u8] {
        &self.pool.bytes
    }

    /// How many sessions the pool has opened so far.
    pub fn sessions(&self) -> usize {
        self.pool.sessions()
    }

    /// Checks `inputs` against the signature and returns them cast, reshaped and in the
    /// model's input order.
    pub fn prepare<'a>(&self, inputs: Vec<(String, Tensor<'a>)>) -> Result<Vec<Tensor<'a>>> {
        self.signature.check_inputs(inputs, Matching::Conform)
    }

    /// Validates and runs `inputs` (name, tensor), returning every output in signature order.
    pub fn run(&self, inputs: Vec<(String, Tensor<'_>)>) -> Result<Vec<(String, OwnedTensor)>> {
        let prepared = self.prepare(inputs)?;
        self.run_prepared(&prepared)
    }

    /// Runs inputs already checked by [`Model::prepare`].
    pub fn run_prepared(&self, prepared: &[Tensor<'_>]) -> Result<Vec<(String, OwnedTensor)>> {
        let tensors = match self.run_prepared_outputs(prepared)? {
            Outputs::InPlace(raw) => raw.into_owned(),
            Outputs::Owned(tensors) => tensors,
        };
        Ok(self
            .signature
            .outputs
            .iter()
            .map(|s| s.name.clone())
            .zip(tensors)
            .collect())
    }

    /// Validates and runs `inputs`; the outputs, in signature order, may still live in ONNX
    /// Runtime's memory (read them in place, then drop them).
    pub fn run_outputs(&self, inputs: Vec<(String, Tensor<'_>)>) -> Result<Outputs> {
        let prepared = self.prepare(inputs)?;
        self.run_prepared_outputs(&prepared)
    }

    fn run_prepared_outputs(&self, prepared: &[Tensor<'_>]) -> Result<Outputs> {
        if let Some(raw) = &self.raw {
            let mut lease = self.pool.acquire()?;
            let session = lease.session.as_mut().expect("a lease holds a session");
            let outputs = raw
                .run(session, prepared, &self.signature.outputs)
                .map_err(RuntimeError::Inference)?;
            return Ok(Outputs::InPlace(outputs));
        }
        self.run_safe(prepared)
            .map(|v| Outputs::Owned(v.into_iter().map(|(_, t)| t).collect()))
    }

    fn run_safe(&self, prepared: &[Tensor<'_>]) -> Result<Vec<(String, OwnedTensor)>> {
        let specs = &self.signature.inputs;
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
            Vec::with_capacity(prepared.len());
        for (spec, tensor) in specs.iter().zip(prepared) {
            let shape = tensor.shape.clone();
            macro_rules! view {
                ($v:expr) => {
                    TensorRef::from_array_view((shape, &$v[..])).map(Into::into)
                };
            }
            let value: SessionInputValue<'_> = match &tensor.data {
                TensorData::Float16(v) => view!(v),
                TensorData::BFloat16(v) => view!(v),
                TensorData::Float32(v) => view!(v),
                TensorData::Float64(v) => view!(v),
                TensorData::Int8(v) => view!(v),
                TensorData::Int16(v) => view!(v),
                TensorData::Int32(v) => view!(v),
                TensorData::Int64(v) => view!(v),
                TensorData::UInt8(v) => view!(v),
                TensorData::UInt16(v) => view!(v),
                TensorData::UInt32(v) => view!(v),
                TensorData::UInt64(v) => view!(v),
                TensorData::Bool(v) => view!(v),
                TensorData::String(_) | TensorData::Bytes(_) => {
                    Ok(crate::raw::owned_string_value(&tensor.shape, &tensor.data)
                        .map_err(|m| RuntimeError::input(&spec.name, m))?
                        .into())
                }
            }
            .map_err(|e| RuntimeError::input(&spec.name, e.message()))?;
            values.push((Cow::Borrowed(spec.name.as_str()), value));
        }
        let mut lease = self.pool.acquire()?;
        let session = lease.session.as_mut().expect("a lease holds a session");
        let outputs = session
            .run(values)
            .map_err(|e| RuntimeError::Inference(e.message().to_string()))?;
        let mut result = Vec::with_capacity(self.signature.outputs.len());
        for spec in &self.signature.outputs {
            let value = outputs.get(&spec.name).ok_or_else(|| {
                RuntimeError::Inference(format!("ONNX Runtime returned no output '{}'", spec.name))
            })?;
            result.push((spec.name.clone(), extract_output(spec, value)?));
        }
        Ok(result)
    }
}

fn inference(e: ort::Error) -> RuntimeError {
    RuntimeError::Inference(e.message().to_string())
}

fn extract_output(spec: &TensorSpec, value: &ort::value::DynValue) -> Result<OwnedTensor> {
    fn primitive<T: ort::value::PrimitiveTensorElementType + Clone>(
        value: &ort::value::DynValue,
    ) -> Result<(Vec<usize>, Vec<T>)> {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(inference)?;
        Ok((shape.iter().map(|d| *d as usize).collect(), data.to_vec()))
    }
    if let OutputKind::ZipMap { labels } = &spec.kind {
        return extract_zipmap(spec, value, labels.as_ref());
    }
    macro_rules! typed {
        ($t:ty, $variant:ident) => {
            primitive::<$t>(value).map(|(s, d)| (s, TensorData::$variant(d.into())))?
        };
    }
    let (shape, data) = match spec.dtype {
        DType::Float16 => typed!(half::f16, Float16),
        DType::BFloat16 => typed!(half::bf16, BFloat16),
        DType::Float32 => typed!(f32, Float32),
        DType::Float64 => typed!(f64, Float64),
        DType::Int8 => typed!(i8, Int8),
        DType::Int16 => typed!(i16, Int16),
        DType::Int32 => typed!(i32, Int32),
        DType::Int64 => typed!(i64, Int64),
        DType::UInt8 => typed!(u8, UInt8),
        DType::UInt16 => typed!(u16, UInt16),
        DType::UInt32 => typed!(u32, UInt32),
        DType::UInt64 => typed!(u64, UInt64),
        DType::Bool => typed!(bool, Bool),
        DType::String => crate::raw::owned_strings(value).map_err(RuntimeError::Inference)?,
    };
    Ok(Tensor { shape, data })
}

/// Turns ZipMap's sequence of {label: probability} maps into a `[rows, classes]` matrix whose
/// columns follow the labels recorded in the graph (ONNX Runtime's maps are key-sorted, which
/// is also the order scikit-learn keeps its classes in).
fn extract_zipmap(
    spec: &TensorSpec,
    value: &ort::value::DynValue,
    labels: Option<&Labels>,
) -> Result<OwnedTensor> {
    let rows = value
        .try_extract_sequence::<DynMapValueType>()
        .map_err(inference)?;
    let mut data: Vec<f32> = Vec::new();
    let mut width = labels.map(Labels::len);
    for (i, row) in rows.iter().enumerate() {
        let probabilities: Vec<f32> = match row.dtype() {
            ValueType::Map {
                key: TensorElementType::Int64,
                ..
            } => {
                let mut kv = row
                    .try_extract_key_values::<i64, f32>()
                    .map_err(inference)?;
                if let Some(Labels::Int(order)) = labels {
                    kv.sort_by_key(|(k, _)| {
                        order.iter().position(|l| l == k).unwrap_or(usize::MAX)
                    });
                }
                kv.into_iter().map(|(_, v)| v).collect()
            }
            ValueType::Map {
                key: TensorElementType::String,
                ..
            } => {
                let mut kv = row
                    .try_extract_key_values::<String, f32>()
                    .map_err(inference)?;
                if let Some(Labels::String(order)) = labels {
                    kv.sort_by_key(|(k, _)| {
                        order.iter().position(|l| l == k).unwrap_or(usize::MAX)
                    });
                }
                kv.into_iter().map(|(_, v)| v).collect()
            }
            other => {
                return Err(RuntimeError::Inference(format!(
                    "output '{}' row {i} is {other:?}, not a map of label to probability",
                    spec.name
                )))
            }
        };
        match width {
            Some(w) if w != probabilities.len() => {
                return Err(RuntimeError::Inference(format!(
                    "output '{}' row {i} has {} classes, expected {w}",
                    spec.name,
                    probabilities.len()
                )))
            }
            None => width = Some(probabilities.len()),
            _ => {}
        }
        data.extend(probabilities);
    }
    Ok(Tensor {
        shape: vec![rows.len(), width.unwrap_or(0)],
        data: TensorData::Float32(data.into()),
    })
}

fn dims(shape: &[i64]) -> Vec<Option<i64>> {
    shape
        .iter()
        .map(|d| if *d < 0 { None } else { Some(*d) })
        .collect()
}

fn read_signature(session: &Session, proto: &onnx_proto::ModelProto) -> Result<Signature, String> {
    let zipmap_labels: BTreeMap<String, Labels> = proto
        .graph
        .iter()
        .flat_map(|g| g.node.iter())
        .filter(|n| n.op_type == "ZipMap")
        .filter_map(|n| {
            let labels = n.attribute.iter().find_map(|a| match a.name.as_str() {
                "classlabels_int64s" => Some(Labels::Int(a.ints.clone())),
                "classlabels_strings" => Some(Labels::String(
                    a.strings
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect(),
                )),
                _ => None,
            })?;
            Some((n.output.first()?.clone(), labels))
        })
        .collect();

    let mut inputs = Vec::new();
    for outlet in session.inputs() {
        match outlet.dtype() {
            ValueType::Tensor { ty, shape, .. } => {
                let dtype = DType::from_ort(*ty).ok_or_else(|| {
                    format!("input '{}' has element type {ty}, which pilothouse does not support (float32, float64, int32, int64, bool, string)", outlet.name())
                })?;
                inputs.push(TensorSpec {
                    name: outlet.name().to_string(),
                    dtype,
                    shape: dims(shape),
                    kind: OutputKind::Tensor,
                });
            }
            other => {
                return Err(format!(
                    "input '{}' is {other:?}; pilothouse feeds tensor inputs only",
                    outlet.name()
                ))
            }
        }
    }
    let mut outputs = Vec::new();
    for outlet in session.outputs() {
        let name = outlet.name().to_string();
        let spec = match outlet.dtype() {
            ValueType::Tensor { ty, shape, .. } => TensorSpec {
                dtype: DType::from_ort(*ty).ok_or_else(|| {
                    format!(
                        "output '{name}' has element type {ty}, which pilothouse does not support"
                    )
                })?,
                shape: dims(shape),
                kind: OutputKind::Tensor,
                name,
            },
            ValueType::Sequence(inner)
                if matches!(
                    inner.as_ref(),
                    ValueType::Map {
                        key: TensorElementType::Int64 | TensorElementType::String,
                        value: TensorElementType::Float32
                    }
                ) =>
            {
                let labels = zipmap_labels.get(&name).cloned();
                TensorSpec {
                    dtype: DType::Float32,
                    shape: vec![None, labels.as_ref().map(|l| l.len() as i64)],
                    kind: OutputKind::ZipMap { labels },
                    name,
                }
            }
            other => {
                return Err(format!(
                    "output '{name}' is {other:?}, which pilothouse cannot return"
                ))
            }
        };
        outputs.push(spec);
    }
    let metadata: BTreeMap<String, String> = proto
        .metadata_props
        .iter()
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    let feature_names = match metadata.get(FEATURE_NAMES_KEY) {
        Some(raw) => Some(serde_json::from_str::<Vec<String>>(raw).map_err(|e| {
            format!("metadata '{FEATURE_NAMES_KEY}' is not a JSON list of strings: {e}")
        })?),
        None => None,
    };
    let opsets = proto
        .opset_import
        .iter()
        .map(|o| (o.domain.clone(), o.version))
        .collect();
    Ok(Signature {
        inputs,
        outputs,
        metadata,
        feature_names,
        opsets,
    })
}
