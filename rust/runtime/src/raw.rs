//! The hot path for models whose outputs are all tensors: one call into ONNX Runtime's C API
//! with borrowed input buffers, outputs copied straight out of ORT's memory.
//!
//! `ort`'s safe `Session::run` builds a memory-info per input and a type description, an
//! allocator handle and reference-counted wrapper per output on every call; at batch 1 that
//! is a fifth of the time. Models with non-tensor outputs (ZipMap) keep the safe path.
//!
//! Safety rests on three facts: the session comes from the pool, so no other thread runs it;
//! input buffers outlive the call (they are borrowed for it); every OrtValue and status this
//! module creates is released by a guard on every path.

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;

use ort::sys;
use ort::AsPointer;

use crate::signature::{DType, TensorSpec};
use crate::tensor::{OwnedTensor, Tensor, TensorData};

fn check(status: sys::OrtStatusPtr) -> Result<(), String> {
    if status.0.is_null() {
        return Ok(());
    }
    let api = ort::api();
    // SAFETY: a non-null status from ORT holds a NUL-terminated message until released.
    let message = unsafe { CStr::from_ptr((api.GetErrorMessage)(status.0)) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: released exactly once, here.
    unsafe { (api.ReleaseStatus)(status.0) };
    Err(message)
}

/// ORT values created or returned during one call, released when it ends.
struct Values(Vec<*mut sys::OrtValue>);

impl Drop for Values {
    fn drop(&mut self) {
        let api = ort::api();
        for v in self.0.drain(..) {
            if !v.is_null() {
                // SAFETY: each value is owned by this guard and released once.
                unsafe { (api.ReleaseValue)(v) };
            }
        }
    }
}

struct MemoryInfo(*mut sys::OrtMemoryInfo);

// SAFETY: an OrtMemoryInfo is an immutable description, read concurrently by ORT itself.
unsafe impl Send for MemoryInfo {}
unsafe impl Sync for MemoryInfo {}

impl Drop for MemoryInfo {
    fn drop(&mut self) {
        // SAFETY: created in `RawRunner::new`, released once.
        unsafe { (ort::api().ReleaseMemoryInfo)(self.0) };
    }
}

/// What one model needs to run through the C API: its names as C strings and the CPU
/// memory-info that input buffers are described with.
pub(crate) struct RawRunner {
    /// Owns the names that the pointers below point into (CString data never moves).
    _names: Vec<CString>,
    input_pointers: Vec<*const c_char>,
    output_pointers: Vec<*const c_char>,
    memory: MemoryInfo,
}

// SAFETY: the raw pointers point into this struct's own immutable CStrings (`_names`).
unsafe impl Send for RawRunner {}
unsafe impl Sync for RawRunner {}

fn element_type(dtype: DType) -> sys::ONNXTensorElementDataType {
    dtype.to_ort().into()
}

impl RawRunner {
    pub(crate) fn new(inputs: &[TensorSpec], outputs: &[TensorSpec]) -> Result<Self, String> {
        let cstrings = |specs: &[TensorSpec]| -> Result<Vec<CString>, String> {
            specs
                .iter()
                .map(|s| CString::new(s.name.as_str()).map_err(|e| e.to_string()))
                .collect()
        };
        let mut memory = ptr::null_mut();
        // SAFETY: plain constructor; the out-pointer is valid.
        check(unsafe {
            (ort::api().CreateCpuMemoryInfo)(
                sys::OrtAllocatorType::OrtArenaAllocator,
                sys::OrtMemType::OrtMemTypeDefault,
                &mut memory,
            )
        })?;
        let memory = MemoryInfo(memory);
        let input_names = cstrings(inputs)?;
        let output_names = cstrings(outputs)?;
        Ok(RawRunner {
            input_pointers: input_names.iter().map(|c| c.as_ptr()).collect(),
            output_pointers: output_names.iter().map(|c| c.as_ptr()).collect(),
            _names: input_names.into_iter().chain(output_names).collect(),
            memory,
        })
    }

    /// Runs `inputs` (already conformed to the signature, in input order).
    pub(crate) fn run(
        &self,
        session: &mut ort::session::Session,
        inputs: &[Tensor<'_>],
        outputs: &[TensorSpec],
    ) -> Result<RawOutputs, String> {
        let api = ort::api();
        let mut created = Values(Vec::with_capacity(inputs.len()));
        for tensor in inputs {
            created.0.push(self.input_value(tensor)?);
        }
        let mut results = Values(vec![ptr::null_mut(); outputs.len()]);
        // SAFETY: the session is exclusively ours (`&mut`); names and values are valid for the
        // call and their counts match; ORT fills `results`, which the guard releases.
        check(unsafe {
            (api.Run)(
                session.ptr_mut(),
                ptr::null(),
                self.input_pointers.as_ptr(),
                created.0.as_ptr() as *const *const sys::OrtValue,
                created.0.len(),
                self.output_pointers.as_ptr(),
                self.output_pointers.len(),
                results.0.as_mut_ptr(),
            )
        })?;
        let described = results
            .0
            .iter()
            .zip(outputs)
            .map(|(value, spec)| describe_output(*value, spec))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(RawOutputs {
            _values: results,
            outputs: described,
        })
    }

    fn input_value(&self, tensor: &Tensor<'_>) -> Result<*mut sys::OrtValue, String> {
        let api = ort::api();
        let shape: Vec<i64> = tensor.shape.iter().map(|d| *d as i64).collect();
        let mut value = ptr::null_mut();
        macro_rules! borrowed {
            ($slice:expr, $t:ty) => {{
                let slice: &[$t] = $slice;
                // SAFETY: ORT only reads the buffer, which outlives the run; the byte length
                // and the shape describe exactly this slice.
                check(unsafe {
                    (api.CreateTensorWithDataAsOrtValue)(
                        self.memory.0,
                        slice.as_ptr() as *mut c_void,
                        std::mem::size_of_val(slice),
                        shape.as_ptr(),
                        shape.len(),
                        element_type(tensor.data.dtype()),
                        &mut value,
                    )
                })?
            }};
        }
        match &tensor.data {
            TensorData::Float16(v) => borrowed!(v, half::f16),
            TensorData::BFloat16(v) => borrowed!(v, half::bf16),
            TensorData::Float32(v) => borrowed!(v, f32),
            TensorData::Float64(v) => borrowed!(v, f64),
            TensorData::Int8(v) => borrowed!(v, i8),
            TensorData::Int16(v) => borrowed!(v, i16),
            TensorData::Int32(v) => borrowed!(v, i32),
            TensorData::Int64(v) => borrowed!(v, i64),
            TensorData::UInt8(v) => borrowed!(v, u8),
            TensorData::UInt16(v) => borrowed!(v, u16),
            TensorData::UInt32(v) => borrowed!(v, u32),
            TensorData::UInt64(v) => borrowed!(v, u64),
            TensorData::Bool(v) => borrowed!(v, bool),
            TensorData::String(v) => value = string_value(&shape, v.iter().map(|s| s.as_bytes()))?,
            TensorData::Bytes(v) => value = string_value(&shape, v.iter().map(|b| b.as_slice()))?,
        }
        Ok(value)
    }
}

/// A string tensor of `shape` holding a copy of each element, copied by its length (ONNX
/// strings are byte strings: a NUL inside one is data, not its end, which FillStringTensor
/// would make it).
fn string_value<'b>(
    shape: &[i64],
    elements: impl Iterator<Item = &'b [u8]>,
) -> Result<*mut sys::OrtValue, String> {
    let api = ort::api();
    let mut value = ptr::null_mut();
    let mut allocator = ptr::null_mut();
    // SAFETY: the default allocator is process-wide and never released by callers.
    check(unsafe { (api.GetAllocatorWithDefaultOptions)(&mut allocator) })?;
    // SAFETY: ORT allocates the tensor; the elements are copied into it below.
    check(unsafe {
        (api.CreateTensorAsOrtValue)(
            allocator,
            shape.as_ptr(),
            shape.len(),
            element_type(DType::String),
            &mut value,
        )
    })?;
    let guard = Values(vec![value]);
    for (i, bytes) in elements.enumerate() {
        let mut buffer: *mut c_char = ptr::null_mut();
        // SAFETY: `value` is a string tensor with one element per item of `elements` (the
        // shape describes them); ORT sizes element `i` to exactly `bytes.len()` bytes and
        // returns its buffer.
        check(unsafe {
            (api.GetResizedStringTensorElementBuffer)(value, i, bytes.len(), &mut buffer)
        })?;
        if !bytes.is_empty() {
            // SAFETY: `buffer` holds `bytes.len()` writable bytes (just resized).
            unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), buffer as *mut u8, bytes.len()) };
        }
    }
    std::mem::forget(guard);
    Ok(value)
}

/// A string input for `ort`'s safe API, its bytes copied by length as [`string_value`] does
/// (`ort`'s own constructor stops at a NUL and takes only UTF-8).
pub(crate) fn owned_string_value(
    shape: &[usize],
    data: &TensorData<'_>,
) -> Result<ort::value::DynValue, String> {
    let shape: Vec<i64> = shape.iter().map(|d| *d as i64).collect();
    let value = match data {
        TensorData::String(v) => string_value(&shape, v.iter().map(|s| s.as_bytes()))?,
        TensorData::Bytes(v) => string_value(&shape, v.iter().map(|b| b.as_slice()))?,
        other => return Err(format!("{} data is not strings", other.dtype())),
    };
    let value = std::ptr::NonNull::new(value).ok_or("ONNX Runtime created no string tensor")?;
    // SAFETY: `value` is a live tensor that `string_value` created with the default
    // allocator, which is the one passed; the returned value owns and releases it.
    Ok(unsafe { ort::value::DynValue::from_ptr(value, Some(&ort::memory::Allocator::default())) })
}

/// A string output of `ort`'s safe API, read by length (text when it is all UTF-8).
pub(crate) fn owned_strings(
    value: &ort::value::DynValue,
) -> Result<(Vec<usize>, TensorData<'static>), String> {
    let shape: Vec<usize> = match value.dtype() {
        ort::value::ValueType::Tensor { shape, .. } => {
            shape.iter().map(|d| (*d).max(0) as usize).collect()
        }
        other => return Err(format!("expected a string tensor, got {other}")),
    };
    let count = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d));
    let count = count.ok_or("the string output's shape is too large")?;
    let data = read_strings(value.ptr() as *mut sys::OrtValue, count)?;
    Ok((shape, data))
}

/// Output tensors still in ONNX Runtime's memory: read them in place (`views`) or copy them
/// out (`into_owned`). The values are released when this is dropped.
pub struct RawOutputs {
    _values: Values,
    outputs: Vec<RawOutput>,
}

// SAFETY: the OrtValues are owned by this struct alone and only read; ORT's CPU allocator
// frees from any thread.
unsafe impl Send for RawOutputs {}

struct RawOutput {
    dtype: DType,
    shape: Vec<usize>,
    data: *const u8,
    bytes: usize,
    /// A string output's elements (`String` or `Bytes` data).
    strings: TensorData<'static>,
}

/// One output's data, borrowed from ONNX Runtime's buffer.
pub enum OutputData<'a> {
    /// Native-endian elements of the dtype (bool as one byte, 0 or 1).
    Bytes(&'a [u8]),
    /// A string output whose elements are all UTF-8.
    Strings(&'a [String]),
    /// A string output with elements that are not UTF-8.
    ByteStrings(&'a [Vec<u8>]),
}

pub struct OutputView<'a> {
    pub dtype: DType,
    pub shape: &'a [usize],
    pub data: OutputData<'a>,
}

impl RawOutputs {
    pub fn views(&self) -> impl Iterator<Item = OutputView<'_>> {
        self.outputs.iter().map(|o| OutputView {
            dtype: o.dtype,
            shape: &o.shape,
            data: match (o.dtype, &o.strings) {
                (DType::String, TensorData::Bytes(b)) => OutputData::ByteStrings(b),
                (DType::String, TensorData::String(s)) => OutputData::Strings(s),
                _ if o.bytes == 0 => OutputData::Bytes(&[]),
                // SAFETY: `data` points at `bytes` bytes of a live output tensor.
                _ => OutputData::Bytes(unsafe { std::slice::from_raw_parts(o.data, o.bytes) }),
            },
        })
    }

    pub fn into_owned(self) -> Vec<OwnedTensor> {
        fn typed<T: Copy>(bytes: &[u8]) -> Vec<T> {
            let n = bytes.len() / std::mem::size_of::<T>();
            let mut out = Vec::<T>::with_capacity(n);
            // SAFETY: ORT's buffer holds `n` elements of T; the copy is bytewise into a
            // vector with room for them.
            unsafe {
                ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    out.as_mut_ptr() as *mut u8,
                    n * std::mem::size_of::<T>(),
                );
                out.set_len(n);
            }
            out
        }
        self.views()
            .map(|v| {
                let data = match (v.dtype, v.data) {
                    (_, OutputData::Strings(s)) => TensorData::String(s.to_vec().into()),
                    (_, OutputData::ByteStrings(b)) => TensorData::Bytes(b.to_vec().into()),
                    (DType::Float16, OutputData::Bytes(b)) => TensorData::Float16(typed(b).into()),
                    (DType::BFloat16, OutputData::Bytes(b)) => {
                        TensorData::BFloat16(typed(b).into())
                    }
                    (DType::Float32, OutputData::Bytes(b)) => TensorData::Float32(typed(b).into()),
                    (DType::Float64, OutputData::Bytes(b)) => TensorData::Float64(typed(b).into()),
                    (DType::Int8, OutputData::Bytes(b)) => TensorData::Int8(typed(b).into()),
                    (DType::Int16, OutputData::Bytes(b)) => TensorData::Int16(typed(b).into()),
                    (DType::Int32, OutputData::Bytes(b)) => TensorData::Int32(typed(b).into()),
                    (DType::Int64, OutputData::Bytes(b)) => TensorData::Int64(typed(b).into()),
                    (DType::UInt8, OutputData::Bytes(b)) => TensorData::UInt8(b.to_vec().into()),
                    (DType::UInt16, OutputData::Bytes(b)) => TensorData::UInt16(typed(b).into()),
                    (DType::UInt32, OutputData::Bytes(b)) => TensorData::UInt32(typed(b).into()),
                    (DType::UInt64, OutputData::Bytes(b)) => TensorData::UInt64(typed(b).into()),
                    (DType::Bool, OutputData::Bytes(b)) => {
                        TensorData::Bool(b.iter().map(|x| *x != 0).collect::<Vec<_>>().into())
                    }
                    (DType::String, OutputData::Bytes(_)) => TensorData::String(Vec::new().into()),
                };
                Tensor {
                    shape: v.shape.to_vec(),
                    data,
                }
            })
            .collect()
    }
}

fn describe_output(value: *mut sys::OrtValue, spec: &TensorSpec) -> Result<RawOutput, String> {
    let api = ort::api();
    if value.is_null() {
        return Err(format!(
            "ONNX Runtime returned no value for output '{}'",
            spec.name
        ));
    }
    let mut info = ptr::null_mut();
    // SAFETY: `value` is a live output tensor; `info` is released below on every path.
    check(unsafe { (api.GetTensorTypeAndShape)(value, &mut info) })?;
    let described = (|| -> Result<(sys::ONNXTensorElementDataType, Vec<usize>), String> {
        let mut ty = sys::ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
        let mut rank = 0usize;
        // SAFETY: `info` is valid until released; `dims` has room for `rank` entries.
        unsafe {
            check((api.GetTensorElementType)(info, &mut ty))?;
            check((api.GetDimensionsCount)(info, &mut rank))?;
        }
        let mut dims = vec![0i64; rank];
        check(unsafe { (api.GetDimensions)(info, dims.as_mut_ptr(), rank) })?;
        Ok((ty, dims.into_iter().map(|d| d.max(0) as usize).collect()))
    })();
    // SAFETY: released once, after its last use.
    unsafe { (api.ReleaseTensorTypeAndShapeInfo)(info) };
    let (ty, shape) = described?;
    if ty != element_type(spec.dtype) {
        return Err(format!(
            "output '{}' came back as element type {}, not the declared {}",
            spec.name, ty as i32, spec.dtype
        ));
    }
    let count: usize = shape.iter().product();
    let mut out = RawOutput {
        dtype: spec.dtype,
        shape,
        data: ptr::null(),
        bytes: 0,
        strings: TensorData::String(Vec::new().into()),
    };
    if spec.dtype == DType::String {
        out.strings = read_strings(value, count)?;
    } else if count > 0 {
        let mut data = ptr::null_mut();
        // SAFETY: a CPU tensor of `count` elements, alive as long as the RawOutputs holding it.
        check(unsafe { (api.GetTensorMutableData)(value, &mut data) })?;
        out.data = data as *const u8;
        out.bytes = count
            .checked_mul(spec.dtype.width())
            .ok_or_else(|| format!("output '{}' is too large to address", spec.name))?;
    }
    Ok(out)
}

fn read_strings(value: *mut sys::OrtValue, count: usize) -> Result<TensorData<'static>, String> {
    let api = ort::api();
    if count == 0 {
        return Ok(TensorData::String(Vec::new().into()));
    }
    let mut total = 0usize;
    // SAFETY: `value` is a live string tensor of `count` elements; the buffers are sized as
    // ORT reports.
    check(unsafe { (api.GetStringTensorDataLength)(value, &mut total) })?;
    let mut bytes = vec![0u8; total];
    let mut offsets = vec![0usize; count];
    check(unsafe {
        (api.GetStringTensorContent)(
            value,
            bytes.as_mut_ptr() as *mut c_void,
            total,
            offsets.as_mut_ptr(),
            count,
        )
    })?;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let end = if i + 1 < count { offsets[i + 1] } else { total };
        out.push(bytes[offsets[i]..end].to_vec());
    }
    Ok(TensorData::from_byte_strings(out))
}
