//! `Model` and `TensorSpec` for Python: numpy and Arrow data in, numpy arrays out.

use std::borrow::Cow;
use std::path::PathBuf;

use numpy::{Element, PyArrayDescrMethods, PyUntypedArray};
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pilothouse_runtime as rt;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3_arrow::input::AnyRecordBatch;
use rt::half;

use crate::errors::{InputError, Result};

/// Loads ONNX Runtime from the shared library at `path`; returns the path in use.
#[pyfunction]
fn init_runtime(py: Python<'_>, path: PathBuf) -> Result<String> {
    let loaded = py.detach(|| rt::init(&path))?;
    Ok(loaded.display().to_string())
}

/// The path of the ONNX Runtime library loaded in this process, or None.
#[pyfunction]
fn loaded_runtime() -> Option<String> {
    rt::loaded_library().map(|p| p.display().to_string())
}

/// One input or output of a model.
#[pyclass(frozen, module = "pilothouse._core", name = "TensorSpec")]
pub struct PyTensorSpec {
    spec: rt::TensorSpec,
}

#[pymethods]
impl PyTensorSpec {
    #[getter]
    fn name(&self) -> &str {
        &self.spec.name
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.spec.dtype.name()
    }

    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.spec.shape.iter().copied())
    }

    /// "tensor", or "zipmap" for a classifier's label->probability maps returned as a matrix.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.spec.kind {
            rt::OutputKind::Tensor => "tensor",
            rt::OutputKind::ZipMap { .. } => "zipmap",
        }
    }

    /// Class labels of a "zipmap" output, in column order; None otherwise.
    #[getter]
    fn labels<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        match &self.spec.kind {
            rt::OutputKind::ZipMap {
                labels: Some(rt::Labels::Int(v)),
            } => PyList::new(py, v).map(Some),
            rt::OutputKind::ZipMap {
                labels: Some(rt::Labels::String(v)),
            } => PyList::new(py, v).map(Some),
            _ => Ok(None),
        }
    }

    fn __repr__(&self) -> String {
        let labels = match &self.spec.kind {
            rt::OutputKind::ZipMap { labels: Some(l) } => {
                format!(", kind='zipmap', classes={}", l.len())
            }
            rt::OutputKind::ZipMap { labels: None } => ", kind='zipmap'".to_string(),
            rt::OutputKind::Tensor => String::new(),
        };
        format!(
            "TensorSpec(name='{}', dtype='{}', shape={}{})",
            self.spec.name,
            self.spec.dtype,
            self.spec.shape_string().replace('?', "None"),
            labels
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyTensorSpec>()
            .map(|o| o.get().spec == self.spec)
            .unwrap_or(false)
    }
}

/// What a numpy input is held as while the GIL is released: the array itself, kept alive by
/// this reference. rust-numpy's borrow tracking is skipped: it costs a global lock and lookup
/// per call, and only coordinates Rust borrows, not Python writers, so it would guard nothing
/// here; the data is only read.
enum Held<'py> {
    F16(Bound<'py, PyArrayDyn<half::f16>>),
    F32(Bound<'py, PyArrayDyn<f32>>),
    F64(Bound<'py, PyArrayDyn<f64>>),
    I8(Bound<'py, PyArrayDyn<i8>>),
    I16(Bound<'py, PyArrayDyn<i16>>),
    I32(Bound<'py, PyArrayDyn<i32>>),
    I64(Bound<'py, PyArrayDyn<i64>>),
    U8(Bound<'py, PyArrayDyn<u8>>),
    U16(Bound<'py, PyArrayDyn<u16>>),
    U32(Bound<'py, PyArrayDyn<u32>>),
    U64(Bound<'py, PyArrayDyn<u64>>),
    Bool(Bound<'py, PyArrayDyn<bool>>),
    /// An ml_dtypes bfloat16 array, viewed as its bits.
    BF16(Bound<'py, PyArrayDyn<u16>>),
    Owned(rt::OwnedTensor),
}

/// bfloat16 bits as bfloat16 data (the same bytes: `bf16` is a transparent `u16`).
fn bf16_bits(bits: Cow<'_, [u16]>) -> rt::TensorData<'_> {
    use half::slice::HalfBitsSliceExt;
    use half::vec::HalfBitsVecExt;
    rt::TensorData::BFloat16(match bits {
        Cow::Borrowed(b) => Cow::Borrowed(b.reinterpret_cast()),
        Cow::Owned(v) => Cow::Owned(v.reinterpret_into()),
    })
}

fn view<'a, T: Element + Copy>(
    a: &'a Bound<'_, PyArrayDyn<T>>,
    wrap: fn(Cow<'a, [T]>) -> rt::TensorData<'a>,
) -> rt::Tensor<'a> {
    let shape = a.shape().to_vec();
    // Fortran-ordered or strided arrays are copied into row-major order; as_slice would
    // accept some of them and hand over the wrong element order.
    // SAFETY: `a` is alive for 'a; the data is only read (see `Held`).
    // `hold` made sure the memory is aligned and every stride is whole elements.
    let data = match a.is_c_contiguous().then(|| unsafe { a.as_slice() }) {
        Some(Ok(slice)) => Cow::Borrowed(slice),
        _ => Cow::Owned(row_major(&unsafe { a.as_array() }.into_dyn())),
    };
    rt::Tensor {
        shape,
        data: wrap(data),
    }
}

/// Row-major copy of any array. A Fortran-ordered 2-D block (what pandas hands out for a
/// frame of one dtype) is transposed column by column: sequential reads, short-strided writes.
fn row_major<T: Copy>(a: &numpy::ndarray::ArrayViewD<'_, T>) -> Vec<T> {
    if let (2, true) = (a.ndim(), a.t().is_standard_layout()) {
        let (rows, cols) = (a.shape()[0], a.shape()[1]);
        let src = a.t();
        let src = src
            .as_slice()
            .expect("a transposed F-order array is C-ordered");
        let mut out = Vec::with_capacity(rows * cols);
        // SAFETY: every slot below rows * cols is written before the vector is read.
        let dst = out.spare_capacity_mut();
        for c in 0..cols {
            let column = &src[c * rows..(c + 1) * rows];
            for (r, v) in column.iter().enumerate() {
                dst[r * cols + c].write(*v);
            }
        }
        unsafe { out.set_len(rows * cols) };
        return out;
    }
    a.iter().copied().collect()
}

impl Held<'_> {
    fn tensor(&self) -> rt::Tensor<'_> {
        match self {
            Held::F16(a) => view(a, rt::TensorData::Float16),
            Held::F32(a) => view(a, rt::TensorData::Float32),
            Held::F64(a) => view(a, rt::TensorData::Float64),
            Held::I8(a) => view(a, rt::TensorData::Int8),
            Held::I16(a) => view(a, rt::TensorData::Int16),
            Held::I32(a) => view(a, rt::TensorData::Int32),
            Held::I64(a) => view(a, rt::TensorData::Int64),
            Held::U8(a) => view(a, rt::TensorData::UInt8),
            Held::U16(a) => view(a, rt::TensorData::UInt16),
            Held::U32(a) => view(a, rt::TensorData::UInt32),
            Held::U64(a) => view(a, rt::TensorData::UInt64),
            Held::Bool(a) => view(a, rt::TensorData::Bool),
            Held::BF16(a) => view(a, bf16_bits),
            Held::Owned(t) => rt::Tensor {
                shape: t.shape.clone(),
                data: t.data.borrowed(),
            },
        }
    }
}

/// Whether an array's memory can be read in place as its element type: aligned, and every
/// stride a whole number of elements (a packed record's field, or a view at an odd byte
/// offset, is neither).
fn readable_in_place(a: &Bound<'_, PyUntypedArray>) -> bool {
    let item = a.dtype().itemsize() as isize;
    a.is_aligned() && (item == 0 || a.strides().iter().all(|s| s % item == 0))
}

/// Every named array of `inputs`, held for reading without a copy where it can be.
fn hold_all<'py>(inputs: &Bound<'py, PyDict>) -> PyResult<Vec<(String, Held<'py>)>> {
    let mut held = Vec::with_capacity(inputs.len());
    for (key, value) in inputs.iter() {
        let name: String = key.extract()?;
        let h = hold(&name, &value)?;
        held.push((name, h));
    }
    Ok(held)
}

fn hold<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Held<'py>> {
    if let Ok(a) = obj.cast::<PyUntypedArray>() {
        if !readable_in_place(a) {
            // A fresh C-ordered copy (np.ascontiguousarray would hand back an unaligned array
            // that is already contiguous as it is).
            let copy = obj.call_method1("copy", ("C",))?;
            return hold_readable(name, &copy);
        }
    }
    hold_readable(name, obj)
}

/// `hold` for an array whose memory can be read in place (or anything that is not an array).
fn hold_readable<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Held<'py>> {
    // The common types first: each check is a dtype comparison.
    macro_rules! typed {
        ($obj:expr; $($t:ty => $held:ident),*) => {
            $(if let Ok(a) = $obj.cast::<PyArrayDyn<$t>>() {
                return Ok(Held::$held(a.clone()));
            })*
        };
    }
    typed!(obj;
        f32 => F32, f64 => F64, i64 => I64, i32 => I32, bool => Bool, u8 => U8, i8 => I8,
        i16 => I16, u16 => U16, u32 => U32, u64 => U64, half::f16 => F16
    );
    let Ok(array) = obj.cast::<PyUntypedArray>() else {
        return Err(InputError::new_err(format!(
            "input '{name}': expected a numpy array, got {}",
            obj.get_type().name()?
        )));
    };
    let dtype = array.dtype();
    let kind = dtype.kind();
    if kind == b'V' && dtype.itemsize() == 2 && dtype.str()? == "bfloat16" {
        let bits = obj.call_method1("view", ("uint16",))?;
        if let Ok(a) = bits.cast::<PyArrayDyn<u16>>() {
            return Ok(Held::BF16(a.clone()));
        }
    }
    if matches!(kind, b'i' | b'u' | b'f') {
        // A number in the other byte order (or a long double, as float64) is converted once
        // to the native type of its kind and width; then it must be one of the above.
        let native = match (kind, dtype.itemsize()) {
            (b'f', n) if n > 8 => "float64".to_string(),
            (k, n) => format!("{}{n}", k as char),
        };
        let converted = obj.call_method1("astype", (native,))?;
        typed!(converted;
            f32 => F32, f64 => F64, i64 => I64, i32 => I32, u8 => U8, i8 => I8, i16 => I16,
            u16 => U16, u32 => U32, u64 => U64, half::f16 => F16
        );
        if let Ok(a) = converted.cast::<PyUntypedArray>() {
            return Err(InputError::new_err(format!(
                "input '{name}': numpy dtype {} is not supported",
                a.dtype()
            )));
        }
    }
    if matches!(kind, b'U' | b'O' | b'S') {
        let shape = array.shape().to_vec();
        let flat = obj.call_method0("ravel")?.call_method0("tolist")?;
        let mut values: Vec<Vec<u8>> = Vec::with_capacity(array.len());
        for (i, item) in flat.cast::<PyList>()?.iter().enumerate() {
            if let Ok(s) = item.extract::<String>() {
                values.push(s.into_bytes());
            } else if let Ok(b) = item.cast::<pyo3::types::PyBytes>() {
                values.push(b.as_bytes().to_vec());
            } else {
                return Err(InputError::new_err(format!(
                    "input '{name}': element {i} is {} ({}), but string data must hold only str or bytes values",
                    item.repr()?,
                    item.get_type().name()?
                )));
            }
        }
        return Ok(Held::Owned(rt::Tensor {
            shape,
            data: rt::TensorData::from_byte_strings(values),
        }));
    }
    Err(InputError::new_err(format!(
        "input '{name}': numpy dtype {} is not supported; use a number, bool, str or bytes dtype",
        array.dtype()
    )))
}

fn to_numpy<'py>(py: Python<'py>, tensor: rt::OwnedTensor) -> PyResult<Bound<'py, PyAny>> {
    use numpy::ndarray::{ArrayD, IxDyn};
    use numpy::PyArray;

    // The vector moves into numpy already shaped: no copy, no Python-level reshape.
    fn shaped<'py, T: Element>(
        py: Python<'py>,
        shape: &[usize],
        v: Vec<T>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let array = ArrayD::from_shape_vec(IxDyn(shape), v)
            .map_err(|e| PyValueError::new_err(format!("output shape {shape:?}: {e}")))?;
        Ok(PyArray::from_owned_array(py, array).into_any())
    }
    let objects = |objects: Vec<Py<PyAny>>| -> PyResult<Bound<'py, PyAny>> {
        let array = ArrayD::from_shape_vec(IxDyn(&tensor.shape), objects)
            .map_err(|e| PyValueError::new_err(format!("output shape {:?}: {e}", tensor.shape)))?;
        Ok(PyArray::from_owned_object_array(py, array).into_any())
    };
    let shape = &tensor.shape;
    match tensor.data {
        rt::TensorData::Float16(v) => shaped(py, shape, v.into_owned()),
        // numpy's bfloat16 is ml_dtypes' (what tritonclient and onnx use): the bits, viewed.
        rt::TensorData::BFloat16(v) => {
            let bits: Vec<u16> = v.iter().map(|x| x.to_bits()).collect();
            let bfloat16 = py.import("ml_dtypes")?.getattr("bfloat16")?;
            shaped(py, shape, bits)?.call_method1("view", (bfloat16,))
        }
        rt::TensorData::Float32(v) => shaped(py, shape, v.into_owned()),
        rt::TensorData::Float64(v) => shaped(py, shape, v.into_owned()),
        rt::TensorData::Int8(v) => shaped(py, shape, v.into_owned()),
        rt::TensorData::Int16(v) => shaped(py, shape, v.into_owned()),
        rt::TensorData::Int32(v) => shaped(py, shape, v.into_owned()),
        rt::TensorData::Int64(v) => shaped(py, shape, v.into_owned()),
        rt::TensorData::UInt8(v) => shaped(py, shape, v.into_owned()),
        rt::TensorData::UInt16(v) => shaped(py, shape, v.into_owned()),
        rt::TensorData::UInt32(v) => shaped(py, shape, v.into_owned()),
        rt::TensorData::UInt64(v) => shaped(py, shape, v.into_owned()),
        rt::TensorData::Bool(v) => shaped(py, shape, v.into_owned()),
        rt::TensorData::String(v) => objects(
            v.iter()
                .map(|s| pyo3::types::PyString::new(py, s).into_any().unbind())
                .collect(),
        ),
        rt::TensorData::Bytes(v) => objects(
            v.iter()
                .map(|b| pyo3::types::PyBytes::new(py, b).into_any().unbind())
                .collect(),
        ),
    }
}

/// A numpy array of `shape` filled with a copy of `bytes` (native-endian elements of T).
fn array_from_bytes<'py, T: Element>(
    py: Python<'py>,
    shape: &[usize],
    bytes: &[u8],
) -> Bound<'py, PyAny> {
    use numpy::PyArray;
    // SAFETY: the array is created uninitialised with exactly shape.product() elements of
    // T, and `bytes` holds that many elements; every byte is written before Python sees it.
    unsafe {
        let array = PyArray::<T, _>::new(py, numpy::ndarray::IxDyn(shape), false);
        debug_assert_eq!(array.len() * std::mem::size_of::<T>(), bytes.len());
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), array.data() as *mut u8, bytes.len());
        array.into_any()
    }
}

fn outputs_to_dict<'py>(
    py: Python<'py>,
    names: &[Py<pyo3::types::PyString>],
    outputs: rt::Outputs,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    match outputs {
        rt::Outputs::InPlace(raw) => {
            for (key, view) in names.iter().zip(raw.views()) {
                let owned = |data: rt::TensorData<'static>| {
                    let shape = view.shape.to_vec();
                    to_numpy(py, rt::Tensor { shape, data })
                };
                let array = match view.data {
                    rt::OutputData::Strings(s) => owned(rt::TensorData::String(s.to_vec().into()))?,
                    rt::OutputData::ByteStrings(b) => {
                        owned(rt::TensorData::Bytes(b.to_vec().into()))?
                    }
                    rt::OutputData::Bytes(b) => match view.dtype {
                        rt::DType::Float16 => array_from_bytes::<half::f16>(py, view.shape, b),
                        rt::DType::BFloat16 => {
                            let values = b
                                .chunks_exact(2)
                                .map(|c| half::bf16::from_ne_bytes([c[0], c[1]]))
                                .collect::<Vec<_>>();
                            owned(rt::TensorData::BFloat16(values.into()))?
                        }
                        rt::DType::Float32 => array_from_bytes::<f32>(py, view.shape, b),
                        rt::DType::Float64 => array_from_bytes::<f64>(py, view.shape, b),
                        rt::DType::Int8 => array_from_bytes::<i8>(py, view.shape, b),
                        rt::DType::Int16 => array_from_bytes::<i16>(py, view.shape, b),
                        rt::DType::Int32 => array_from_bytes::<i32>(py, view.shape, b),
                        rt::DType::Int64 => array_from_bytes::<i64>(py, view.shape, b),
                        rt::DType::UInt8 => array_from_bytes::<u8>(py, view.shape, b),
                        rt::DType::UInt16 => array_from_bytes::<u16>(py, view.shape, b),
                        rt::DType::UInt32 => array_from_bytes::<u32>(py, view.shape, b),
                        rt::DType::UInt64 => array_from_bytes::<u64>(py, view.shape, b),
                        rt::DType::Bool | rt::DType::String => {
                            array_from_bytes::<bool>(py, view.shape, b)
                        }
                    },
                };
                dict.set_item(key.bind(py), array)?;
            }
        }
        rt::Outputs::Owned(tensors) => {
            for (key, tensor) in names.iter().zip(tensors) {
                dict.set_item(key.bind(py), to_numpy(py, tensor)?)?;
            }
        }
    }
    Ok(dict)
}

/// A model loaded into ONNX Runtime, shared safely by many Python threads.
#[pyclass(frozen, module = "pilothouse._core", name = "Model")]
pub struct PyModel {
    model: rt::Model,
    /// Output names as Python strings, made once: keys of every result dict.
    output_names: Vec<Py<pyo3::types::PyString>>,
}

impl PyModel {
    fn new(py: Python<'_>, model: rt::Model) -> Self {
        let output_names = model
            .signature()
            .outputs
            .iter()
            .map(|s| pyo3::types::PyString::intern(py, &s.name).unbind())
            .collect();
        PyModel {
            model,
            output_names,
        }
    }
}

fn options(
    intra_op_threads: usize,
    inter_op_threads: usize,
    optimization: &str,
    deterministic: bool,
    max_sessions: Option<usize>,
) -> PyResult<rt::SessionOptions> {
    let optimization = rt::Optimization::from_name(optimization).ok_or_else(|| {
        PyValueError::new_err(format!(
            "optimization must be one of 'disable', 'basic', 'extended', 'all'; got '{optimization}'"
        ))
    })?;
    let mut o = rt::SessionOptions {
        intra_op_threads,
        inter_op_threads,
        optimization,
        deterministic,
        ..rt::SessionOptions::default()
    };
    if let Some(n) = max_sessions {
        o.max_sessions = n;
    }
    Ok(o)
}

#[pymethods]
impl PyModel {
    #[staticmethod]
    #[pyo3(signature = (path, *, intra_op_threads=1, inter_op_threads=1, optimization="all", deterministic=false, max_sessions=None))]
    fn load(
        py: Python<'_>,
        path: PathBuf,
        intra_op_threads: usize,
        inter_op_threads: usize,
        optimization: &str,
        deterministic: bool,
        max_sessions: Option<usize>,
    ) -> Result<Self> {
        let opts = options(
            intra_op_threads,
            inter_op_threads,
            optimization,
            deterministic,
            max_sessions,
        )?;
        let model = py.detach(|| rt::Model::load(&path, opts))?;
        Ok(PyModel::new(py, model))
    }

    #[staticmethod]
    #[pyo3(signature = (data, origin, *, intra_op_threads=1, inter_op_threads=1, optimization="all", deterministic=false, max_sessions=None))]
    #[allow(clippy::too_many_arguments)]
    fn from_bytes(
        py: Python<'_>,
        data: Vec<u8>,
        origin: PathBuf,
        intra_op_threads: usize,
        inter_op_threads: usize,
        optimization: &str,
        deterministic: bool,
        max_sessions: Option<usize>,
    ) -> Result<Self> {
        let opts = options(
            intra_op_threads,
            inter_op_threads,
            optimization,
            deterministic,
            max_sessions,
        )?;
        let model = py.detach(|| rt::Model::from_bytes(data, &origin, opts))?;
        Ok(PyModel::new(py, model))
    }

    #[getter]
    fn inputs(&self) -> Vec<PyTensorSpec> {
        self.model
            .signature()
            .inputs
            .iter()
            .map(|s| PyTensorSpec { spec: s.clone() })
            .collect()
    }

    #[getter]
    fn outputs(&self) -> Vec<PyTensorSpec> {
        self.model
            .signature()
            .outputs
            .iter()
            .map(|s| PyTensorSpec { spec: s.clone() })
            .collect()
    }

    #[getter]
    fn metadata(&self) -> std::collections::BTreeMap<String, String> {
        self.model.signature().metadata.clone()
    }

    #[getter]
    fn feature_names(&self) -> Option<Vec<String>> {
        self.model.signature().feature_names.clone()
    }

    #[getter]
    fn opsets(&self) -> std::collections::BTreeMap<String, i64> {
        self.model.signature().opsets.clone()
    }

    #[getter]
    fn path(&self) -> String {
        self.model.origin().display().to_string()
    }

    #[getter]
    fn sessions(&self) -> usize {
        self.model.sessions()
    }

    #[getter]
    fn options<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let o = self.model.options();
        let d = PyDict::new(py);
        d.set_item("intra_op_threads", o.intra_op_threads)?;
        d.set_item("inter_op_threads", o.inter_op_threads)?;
        d.set_item("optimization", o.optimization.name())?;
        d.set_item("deterministic", o.deterministic)?;
        d.set_item("max_sessions", o.max_sessions)?;
        Ok(d)
    }

    /// The serialised ONNX model.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, pyo3::types::PyBytes> {
        pyo3::types::PyBytes::new(py, self.model.bytes())
    }

    /// Runs the model on named numpy arrays; returns every output by name.
    fn run<'py>(&self, py: Python<'py>, inputs: &Bound<'py, PyDict>) -> Result<Bound<'py, PyDict>> {
        let held = hold_all(inputs)?;
        let tensors: Vec<(String, rt::Tensor<'_>)> =
            held.iter().map(|(n, h)| (n.clone(), h.tensor())).collect();
        let outputs = py.detach(|| self.model.run_outputs(tensors))?;
        Ok(outputs_to_dict(py, &self.output_names, outputs)?)
    }

    /// The profiles monitoring compares served traffic with: of these inputs as the model
    /// sees them (one column per feature, named as the model records them) and of the
    /// model's outputs on them (class labels as categories), built as the server builds
    /// its windows.
    fn profile_io(
        &self,
        py: Python<'_>,
        inputs: &Bound<'_, PyDict>,
    ) -> Result<(crate::drift::PyProfile, crate::drift::PyProfile)> {
        let held = hold_all(inputs)?;
        let tensors: Vec<(String, rt::Tensor<'_>)> =
            held.iter().map(|(n, h)| (n.clone(), h.tensor())).collect();
        let (inputs, outputs) = py.detach(|| -> Result<_> {
            let signature = self.model.signature();
            let prepared = self.model.prepare(tensors)?;
            let outputs: Vec<rt::OwnedTensor> = self
                .model
                .run_prepared(&prepared)?
                .into_iter()
                .map(|(_, t)| t)
                .collect();
            let names = |specs: &[rt::TensorSpec]| -> Vec<String> {
                specs.iter().map(|s| s.name.clone()).collect()
            };
            let input_table = rt::feature_table(
                &names(&signature.inputs),
                &[&prepared],
                signature.feature_names.as_deref(),
                rt::Values::AsIs,
            )?;
            let output_table = rt::feature_table(
                &names(&signature.outputs),
                &[&outputs],
                None,
                rt::Values::Labels,
            )?;
            Ok((
                pilothouse_drift::Profile::of_batches(&[input_table])?,
                pilothouse_drift::Profile::of_batches(&[output_table])?,
            ))
        })?;
        Ok((
            crate::drift::PyProfile { inner: inputs },
            crate::drift::PyProfile { inner: outputs },
        ))
    }

    /// Runs a single-input model on one numpy array.
    fn run_single<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> Result<Bound<'py, PyDict>> {
        let specs = &self.model.signature().inputs;
        let [spec] = specs.as_slice() else {
            return Err(InputError::new_err(format!(
                "the model has {} inputs; pass a dict of input name -> array",
                specs.len()
            ))
            .into());
        };
        let held = hold(&spec.name, data)?;
        let tensor = held.tensor();
        let outputs = py.detach(|| self.model.run_outputs(vec![(spec.name.clone(), tensor)]))?;
        Ok(outputs_to_dict(py, &self.output_names, outputs)?)
    }

    /// Runs the model on Arrow data (anything with `__arrow_c_stream__` or `__arrow_c_array__`).
    fn run_arrow<'py>(&self, py: Python<'py>, data: AnyRecordBatch) -> Result<Bound<'py, PyDict>> {
        let reader = data.into_reader()?;
        let outputs = py.detach(|| {
            let batches = reader
                .collect::<Result<Vec<arrow_array::RecordBatch>, _>>()
                .map_err(|e| rt::RuntimeError::Input {
                    input: "<table>".into(),
                    message: format!("could not read the Arrow data: {e}"),
                })?;
            let columns = rt::record_batches_to_columns(&batches)?;
            let inputs = rt::columns_to_inputs(columns, self.model.signature())?;
            self.model.run_outputs(inputs)
        })?;
        Ok(outputs_to_dict(py, &self.output_names, outputs)?)
    }

    /// How a table with these columns feeds the model: ("stack", input, columns) or
    /// ("by_name", inputs).
    fn plan_columns<'py>(
        &self,
        py: Python<'py>,
        columns: Vec<String>,
    ) -> Result<Bound<'py, PyTuple>> {
        match self.model.signature().plan_columns(&columns)? {
            rt::ColumnPlan::Stack { input, columns } => {
                Ok((String::from("stack"), input, columns).into_pyobject(py)?)
            }
            rt::ColumnPlan::ByName { inputs } => {
                Ok((String::from("by_name"), String::new(), inputs).into_pyobject(py)?)
            }
        }
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(init_runtime, m)?)?;
    m.add_function(wrap_pyfunction!(loaded_runtime, m)?)?;
    m.add_class::<PyTensorSpec>()?;
    m.add_class::<PyModel>()?;
    Ok(())
}
