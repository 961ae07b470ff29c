//! Tensors as pilothouse passes them around: a shape plus typed data that is either borrowed
//! from the caller (zero-copy from numpy) or owned (after a cast, or from ONNX Runtime).

use std::borrow::Cow;

use crate::error::{Result, RuntimeError};
use crate::signature::{DType, TensorSpec};

/// Typed, flat, row-major tensor data.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData<'a> {
    Float32(Cow<'a, [f32]>),
    Float64(Cow<'a, [f64]>),
    Int32(Cow<'a, [i32]>),
    Int64(Cow<'a, [i64]>),
    Bool(Cow<'a, [bool]>),
    String(Cow<'a, [String]>),
}

macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Float32($v) => $body,
            TensorData::Float64($v) => $body,
            TensorData::Int32($v) => $body,
            TensorData::Int64($v) => $body,
            TensorData::Bool($v) => $body,
            TensorData::String($v) => $body,
        }
    };
}

impl<'a> TensorData<'a> {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::Float32(_) => DType::Float32,
            TensorData::Float64(_) => DType::Float64,
            TensorData::Int32(_) => DType::Int32,
            TensorData::Int64(_) => DType::Int64,
            TensorData::Bool(_) => DType::Bool,
            TensorData::String(_) => DType::String,
        }
    }

    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn into_owned(self) -> TensorData<'static> {
        match self {
            TensorData::Float32(v) => TensorData::Float32(Cow::Owned(v.into_owned())),
            TensorData::Float64(v) => TensorData::Float64(Cow::Owned(v.into_owned())),
            TensorData::Int32(v) => TensorData::Int32(Cow::Owned(v.into_owned())),
            TensorData::Int64(v) => TensorData::Int64(Cow::Owned(v.into_owned())),
            TensorData::Bool(v) => TensorData::Bool(Cow::Owned(v.into_owned())),
            TensorData::String(v) => TensorData::String(Cow::Owned(v.into_owned())),
        }
    }

    /// Converts to `target` where no information can be lost in a way a user would not expect:
    /// numbers and booleans widen or narrow between float types, integers and booleans become
    /// floats, integers change width when every value fits. Floats never silently become
    /// integers, and strings never mix with numbers.
    pub fn cast(self, input: &str, target: DType) -> Result<TensorData<'a>> {
        let from = self.dtype();
        if from == target {
            return Ok(self);
        }
        let refuse = || {
            RuntimeError::input(
                input,
                format!("got {from} data, but the model expects {target}"),
            )
        };
        fn map<T: Clone, U>(v: &[T], f: impl Fn(T) -> U) -> Vec<U> {
            v.iter().cloned().map(f).collect()
        }
        Ok(match (self, target) {
            (TensorData::Float64(v), DType::Float32) => {
                TensorData::Float32(Cow::Owned(map(&v, |x| x as f32)))
            }
            (TensorData::Int32(v), DType::Float32) => {
                TensorData::Float32(Cow::Owned(map(&v, |x| x as f32)))
            }
            (TensorData::Int64(v), DType::Float32) => {
                TensorData::Float32(Cow::Owned(map(&v, |x| x as f32)))
            }
            (TensorData::Bool(v), DType::Float32) => {
                TensorData::Float32(Cow::Owned(map(&v, |x| u8::from(x) as f32)))
            }
            (TensorData::Float32(v), DType::Float64) => {
                TensorData::Float64(Cow::Owned(map(&v, f64::from)))
            }
            (TensorData::Int32(v), DType::Float64) => {
                TensorData::Float64(Cow::Owned(map(&v, f64::from)))
            }
            (TensorData::Int64(v), DType::Float64) => {
                TensorData::Float64(Cow::Owned(map(&v, |x| x as f64)))
            }
            (TensorData::Bool(v), DType::Float64) => {
                TensorData::Float64(Cow::Owned(map(&v, |x| f64::from(u8::from(x)))))
            }
            (TensorData::Int32(v), DType::Int64) => {
                TensorData::Int64(Cow::Owned(map(&v, i64::from)))
            }
            (TensorData::Bool(v), DType::Int64) => {
                TensorData::Int64(Cow::Owned(map(&v, |x| i64::from(u8::from(x)))))
            }
            (TensorData::Bool(v), DType::Int32) => {
                TensorData::Int32(Cow::Owned(map(&v, |x| i32::from(u8::from(x)))))
            }
            (TensorData::Int64(v), DType::Int32) => {
                let mut out = Vec::with_capacity(v.len());
                for (i, x) in v.iter().enumerate() {
                    out.push(i32::try_from(*x).map_err(|_| {
                        RuntimeError::input(
                            input,
                            format!("value {x} at flat index {i} does not fit the model's int32"),
                        )
                    })?);
                }
                TensorData::Int32(Cow::Owned(out))
            }
            _ => return Err(refuse()),
        })
    }
}

/// A tensor: row-major data and its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor<'a> {
    pub shape: Vec<usize>,
    pub data: TensorData<'a>,
}

/// An owned tensor, as the model returns it.
pub type OwnedTensor = Tensor<'static>;

impl<'a> Tensor<'a> {
    pub fn new(shape: Vec<usize>, data: TensorData<'a>) -> Result<Self> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(RuntimeError::input(
                "<tensor>",
                format!(
                    "shape {:?} holds {} elements but {} were given",
                    shape,
                    expected,
                    data.len()
                ),
            ));
        }
        Ok(Tensor { shape, data })
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn into_owned(self) -> OwnedTensor {
        Tensor {
            shape: self.shape,
            data: self.data.into_owned(),
        }
    }

    /// Casts and reshapes this tensor to fit `spec`, or says why it cannot.
    pub fn conform(self, spec: &TensorSpec) -> Result<Tensor<'a>> {
        let name = spec.name.as_str();
        let numel: usize = self.shape.iter().product();
        if numel != self.data.len() {
            return Err(RuntimeError::input(
                name,
                format!(
                    "shape {:?} holds {} elements but {} were given",
                    self.shape,
                    numel,
                    self.data.len()
                ),
            ));
        }
        if numel == 0 {
            return Err(RuntimeError::input(
                name,
                format!(
                    "the data is empty (shape {:?}); the model expects shape {}",
                    self.shape,
                    spec.shape_string()
                ),
            ));
        }
        let data = self.data.cast(name, spec.dtype)?;
        let given = self.shape;
        let want = &spec.shape;
        // A column for a `[rows, 1]` input, or a `[rows, 1]` block for a `[rows]` input,
        // is what users mean; anything else of the wrong rank is an error.
        let shape = if given.len() == want.len() {
            given
        } else if want.len() == 2 && given.len() == 1 && want[1] == Some(1) {
            vec![given[0], 1]
        } else if want.len() == 1 && given.len() == 2 && given[1] == 1 {
            vec![given[0]]
        } else {
            let hint = if want.len() == 2 && given.len() == 1 {
                " (for a single row, reshape it to (1, -1))"
            } else {
                ""
            };
            return Err(RuntimeError::input(
                name,
                format!(
                    "got a {}-D array of shape {:?}, but the model expects {}-D shape {}{}",
                    given.len(),
                    given,
                    want.len(),
                    spec.shape_string(),
                    hint
                ),
            ));
        };
        for (axis, (g, w)) in shape.iter().zip(want).enumerate() {
            if let Some(w) = w {
                if *w >= 0 && *g as i64 != *w {
                    let what = if axis == 1 && want.len() == 2 {
                        format!(
                            "got {g} features, but the model expects {w} (shape {})",
                            spec.shape_string()
                        )
                    } else {
                        format!(
                            "got shape {:?}, but the model expects {} (axis {axis} must be {w})",
                            shape,
                            spec.shape_string()
                        )
                    };
                    return Err(RuntimeError::input(name, what));
                }
            }
        }
        Ok(Tensor { shape, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::OutputKind;

    fn spec(dtype: DType, shape: Vec<Option<i64>>) -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            dtype,
            shape,
            kind: OutputKind::Tensor,
        }
    }

    #[test]
    fn casts_widen_and_narrow_floats_but_never_floats_to_ints() {
        let f64s = TensorData::Float64(Cow::Owned(vec![1.5, -2.25]));
        assert_eq!(
            f64s.clone().cast("x", DType::Float32).unwrap(),
            TensorData::Float32(Cow::Owned(vec![1.5, -2.25]))
        );
        let err = f64s.cast("x", DType::Int64).unwrap_err().to_string();
        assert!(
            err.contains("input 'x'") && err.contains("float64") && err.contains("int64"),
            "{err}"
        );
        let strings = TensorData::String(Cow::Owned(vec!["a".into()]));
        assert!(strings.cast("x", DType::Float32).is_err());
        let ints = TensorData::Int64(Cow::Owned(vec![1, 2]));
        assert_eq!(
            ints.cast("x", DType::Float64).unwrap(),
            TensorData::Float64(Cow::Owned(vec![1.0, 2.0]))
        );
    }

    #[test]
    fn int64_to_int32_checks_every_value() {
        let ok = TensorData::Int64(Cow::Owned(vec![1, -7]));
        assert_eq!(
            ok.cast("i", DType::Int32).unwrap(),
            TensorData::Int32(Cow::Owned(vec![1, -7]))
        );
        let big = TensorData::Int64(Cow::Owned(vec![1, 1 << 40]));
        let err = big.cast("i", DType::Int32).unwrap_err().to_string();
        assert!(
            err.contains("1099511627776") && err.contains("flat index 1"),
            "{err}"
        );
    }

    #[test]
    fn same_type_stays_borrowed() {
        let data = [1.0f32, 2.0];
        let t = TensorData::Float32(Cow::Borrowed(&data[..]))
            .cast("x", DType::Float32)
            .unwrap();
        assert!(matches!(t, TensorData::Float32(Cow::Borrowed(_))));
    }

    #[test]
    fn conform_checks_rank_and_features_and_reshapes_columns() {
        let t = Tensor::new(vec![2, 3], TensorData::Float32(Cow::Owned(vec![0.0; 6]))).unwrap();
        let err = t
            .conform(&spec(DType::Float32, vec![None, Some(4)]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("got 3 features") && err.contains("expects 4"),
            "{err}"
        );

        let col = Tensor::new(vec![3], TensorData::Float32(Cow::Owned(vec![0.0; 3]))).unwrap();
        let fitted = col
            .conform(&spec(DType::Float32, vec![None, Some(1)]))
            .unwrap();
        assert_eq!(fitted.shape, vec![3, 1]);

        let row = Tensor::new(vec![4], TensorData::Float32(Cow::Owned(vec![0.0; 4]))).unwrap();
        let err = row
            .conform(&spec(DType::Float32, vec![None, Some(4)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("reshape it to (1, -1)"), "{err}");

        let empty = Tensor::new(vec![0, 4], TensorData::Float32(Cow::Owned(vec![]))).unwrap();
        let err = empty
            .conform(&spec(DType::Float32, vec![None, Some(4)]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn new_rejects_shape_data_mismatch() {
        assert!(Tensor::new(vec![2, 2], TensorData::Int64(Cow::Owned(vec![1, 2, 3]))).is_err());
    }
}
