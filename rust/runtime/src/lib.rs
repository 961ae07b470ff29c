//! pilothouse-runtime: ONNX models through ONNX Runtime, with signatures and tensor
//! conversion to and from Arrow. Knows nothing of Python or HTTP.
//!
//! ONNX Runtime is loaded dynamically: call [`init`] with the path of `libonnxruntime.so`
//! before loading a model.

mod arrow;
mod environment;
mod error;
mod model;
mod onnx_proto;
mod raw;
mod signature;
mod tensor;

pub use arrow::{
    columns_to_inputs, feature_table, record_batches_to_columns, tensor_to_arrow, Column,
    FeatureBuffer, Values,
};
pub use environment::{init, loaded_library};
pub use error::{Result, RuntimeError};
/// The FP16 and BF16 element types tensors hold.
pub use half;
pub use model::{Model, Optimization, Outputs, SessionOptions};
pub use raw::{OutputData, OutputView, RawOutputs};
pub use signature::{
    ColumnPlan, DType, Labels, Matching, OutputKind, Signature, TensorSpec, FEATURE_NAMES_KEY,
};
pub use tensor::{OwnedTensor, Scalar, Tensor, TensorData};
