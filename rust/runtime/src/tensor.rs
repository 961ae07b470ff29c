//! Tensors as pilothouse passes them around: a shape plus typed data that is either borrowed
//! from the caller (zero-copy from numpy) or owned (after a cast, or from ONNX Runtime).

use std::borrow::Cow;

use half::{bf16, f16};

use crate::error::{Result, RuntimeError};
use crate::signature::{DType, TensorSpec};

/// Typed, flat, row-major tensor data.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData<'a> {
    Float16(Cow<'a, [f16]>),
    BFloat16(Cow<'a, [bf16]>),
    Float32(Cow<'a, [f32]>),
    Float64(Cow<'a, [f64]>),
    Int8(Cow<'a, [i8]>),
    Int16(Cow<'a, [i16]>),
    Int32(Cow<'a, [i32]>),
    Int64(Cow<'a, [i64]>),
    UInt8(Cow<'a, [u8]>),
    UInt16(Cow<'a, [u16]>),
    UInt32(Cow<'a, [u32]>),
    UInt64(Cow<'a, [u64]>),
    Bool(Cow<'a, [bool]>),
    /// Strings that are all UTF-8 text.
    String(Cow<'a, [String]>),
    /// Byte strings, some of which are not UTF-8. ONNX strings are byte strings, so this is
    /// the same element type as `String` ([`DType::String`]); which of the two a tensor uses
    /// only says whether its elements can be read as text.
    Bytes(Cow<'a, [Vec<u8>]>),
}

/// Runs `$body` with `$v` bound to the data's `Cow` slice, whatever its variant.
#[macro_export]
macro_rules! each_tensor_data {
    ($data:expr, $v:ident => $body:expr) => {{
        use $crate::TensorData as D;
        match $data {
            D::Float16($v) => $body,
            D::BFloat16($v) => $body,
            D::Float32($v) => $body,
            D::Float64($v) => $body,
            D::Int8($v) => $body,
            D::Int16($v) => $body,
            D::Int32($v) => $body,
            D::Int64($v) => $body,
            D::UInt8($v) => $body,
            D::UInt16($v) => $body,
            D::UInt32($v) => $body,
            D::UInt64($v) => $body,
            D::Bool($v) => $body,
            D::String($v) => $body,
            D::Bytes($v) => $body,
        }
    }};
}

/// Data of the same variant whose elements are `$body` (a `Vec`), with `$v` bound to the
/// input's `Cow` slice.
#[macro_export]
macro_rules! map_tensor_data {
    ($data:expr, $v:ident => $body:expr) => {{
        use std::borrow::Cow as C;
        use $crate::TensorData as D;
        match $data {
            D::Float16($v) => D::Float16(C::Owned($body)),
            D::BFloat16($v) => D::BFloat16(C::Owned($body)),
            D::Float32($v) => D::Float32(C::Owned($body)),
            D::Float64($v) => D::Float64(C::Owned($body)),
            D::Int8($v) => D::Int8(C::Owned($body)),
            D::Int16($v) => D::Int16(C::Owned($body)),
            D::Int32($v) => D::Int32(C::Owned($body)),
            D::Int64($v) => D::Int64(C::Owned($body)),
            D::UInt8($v) => D::UInt8(C::Owned($body)),
            D::UInt16($v) => D::UInt16(C::Owned($body)),
            D::UInt32($v) => D::UInt32(C::Owned($body)),
            D::UInt64($v) => D::UInt64(C::Owned($body)),
            D::Bool($v) => D::Bool(C::Owned($body)),
            D::String($v) => D::String(C::Owned($body)),
            D::Bytes($v) => D::Bytes(C::Owned($body)),
        }
    }};
}

/// `narrowed`, unless a finite `source` became infinite: a number beyond the narrower float's
/// range does not fit it (NaN and infinities stay what they are).
fn finite_if_finite<S: Scalar, F: Scalar>(source: S, narrowed: F) -> Option<F> {
    (narrowed.to_f64().is_finite() || !source.to_f64().is_finite()).then_some(narrowed)
}

/// A numeric element (or a boolean, as 0 and 1): what converting between types needs.
pub trait Scalar: Copy + std::fmt::Display {
    fn to_f64(self) -> f64;
    /// Rounded once, straight from the source value.
    fn to_f32(self) -> f32;
    /// The exact value of an integer or boolean; `None` for floats.
    fn to_i128(self) -> Option<i128>;
    /// `s` in this type, or `None` where it does not fit (integers only: floats round).
    fn from_scalar<S: Scalar>(s: S) -> Option<Self>;
}

macro_rules! scalar_int {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            fn to_f64(self) -> f64 { self as f64 }
            fn to_f32(self) -> f32 { self as f32 }
            fn to_i128(self) -> Option<i128> { Some(self as i128) }
            fn from_scalar<S: Scalar>(s: S) -> Option<Self> {
                s.to_i128().and_then(|v| <$t>::try_from(v).ok())
            }
        }
    )*};
}
scalar_int!(i8, i16, i32, i64, u8, u16, u32, u64);

impl Scalar for f32 {
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn to_i128(self) -> Option<i128> {
        None
    }
    fn from_scalar<S: Scalar>(s: S) -> Option<Self> {
        finite_if_finite(s, s.to_f32())
    }
}

impl Scalar for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn to_i128(self) -> Option<i128> {
        None
    }
    fn from_scalar<S: Scalar>(s: S) -> Option<Self> {
        Some(s.to_f64())
    }
}

/// The 16-bit floats: read through f32 (exact), made from f64 (rounded once).
macro_rules! scalar_half {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            fn to_f32(self) -> f32 {
                f32::from(self)
            }
            fn to_i128(self) -> Option<i128> {
                None
            }
            fn from_scalar<S: Scalar>(s: S) -> Option<Self> {
                finite_if_finite(s, <$t>::from_f64(s.to_f64()))
            }
        }
    )*};
}
scalar_half!(f16, bf16);

impl Scalar for bool {
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn to_f32(self) -> f32 {
        f32::from(u8::from(self))
    }
    fn to_i128(self) -> Option<i128> {
        Some(i128::from(self))
    }
    fn from_scalar<S: Scalar>(s: S) -> Option<Self> {
        match s.to_i128() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        }
    }
}

/// Converts every element, naming the first that does not fit.
fn convert<S: Scalar, T: Scalar>(v: &[S], input: &str, target: DType) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(v.len());
    for (i, x) in v.iter().enumerate() {
        out.push(T::from_scalar(*x).ok_or_else(|| {
            RuntimeError::input(
                input,
                format!("value {x} at flat index {i} does not fit the model's {target}"),
            )
        })?);
    }
    Ok(out)
}

impl<'a> TensorData<'a> {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::Float16(_) => DType::Float16,
            TensorData::BFloat16(_) => DType::BFloat16,
            TensorData::Float32(_) => DType::Float32,
            TensorData::Float64(_) => DType::Float64,
            TensorData::Int8(_) => DType::Int8,
            TensorData::Int16(_) => DType::Int16,
            TensorData::Int32(_) => DType::Int32,
            TensorData::Int64(_) => DType::Int64,
            TensorData::UInt8(_) => DType::UInt8,
            TensorData::UInt16(_) => DType::UInt16,
            TensorData::UInt32(_) => DType::UInt32,
            TensorData::UInt64(_) => DType::UInt64,
            TensorData::Bool(_) => DType::Bool,
            TensorData::String(_) | TensorData::Bytes(_) => DType::String,
        }
    }

    pub fn len(&self) -> usize {
        each_tensor_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// About the bytes the elements occupy in memory (a string's bytes plus its header).
    pub fn memory_bytes(&self) -> usize {
        match self {
            TensorData::String(v) => v.iter().map(|s| s.len() + 24).sum(),
            TensorData::Bytes(v) => v.iter().map(|s| s.len() + 24).sum(),
            other => other.len() * other.dtype().width(),
        }
    }

    /// Numeric data as f64 values (booleans as 0 and 1); `None` for strings.
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        fn wide<S: Scalar>(v: &[S]) -> Option<Vec<f64>> {
            Some(v.iter().map(|x| x.to_f64()).collect())
        }
        match self {
            TensorData::Float16(v) => wide(v),
            TensorData::BFloat16(v) => wide(v),
            TensorData::Float32(v) => wide(v),
            TensorData::Float64(v) => Some(v.to_vec()),
            TensorData::Int8(v) => wide(v),
            TensorData::Int16(v) => wide(v),
            TensorData::Int32(v) => wide(v),
            TensorData::Int64(v) => wide(v),
            TensorData::UInt8(v) => wide(v),
            TensorData::UInt16(v) => wide(v),
            TensorData::UInt32(v) => wide(v),
            TensorData::UInt64(v) => wide(v),
            TensorData::Bool(v) => wide(v),
            TensorData::String(_) | TensorData::Bytes(_) => None,
        }
    }

    /// String data from byte strings: text when every element is UTF-8, else bytes.
    pub fn from_byte_strings(values: Vec<Vec<u8>>) -> TensorData<'static> {
        // One UTF-8 check per element: converted in place until one is not text, then
        // everything goes back to bytes (no copies either way).
        let mut text: Vec<String> = Vec::with_capacity(values.len());
        let mut rest = values.into_iter();
        for b in rest.by_ref() {
            match String::from_utf8(b) {
                Ok(s) => text.push(s),
                Err(e) => {
                    let bytes = text
                        .into_iter()
                        .map(String::into_bytes)
                        .chain(std::iter::once(e.into_bytes()))
                        .chain(rest)
                        .collect();
                    return TensorData::Bytes(Cow::Owned(bytes));
                }
            }
        }
        TensorData::String(Cow::Owned(text))
    }

    /// Element `i` of string data as bytes (`None` for other types or past the end).
    pub fn byte_string(&self, i: usize) -> Option<&[u8]> {
        match self {
            TensorData::String(v) => v.get(i).map(|s| s.as_bytes()),
            TensorData::Bytes(v) => v.get(i).map(|b| b.as_slice()),
            _ => None,
        }
    }

    pub fn into_owned(self) -> TensorData<'static> {
        map_tensor_data!(self, v => v.into_owned())
    }

    /// The same data, borrowed.
    pub fn borrowed(&self) -> TensorData<'_> {
        use std::borrow::Borrow;
        macro_rules! b {
            ($($variant:ident),*) => {
                match self {
                    $(TensorData::$variant(v) => TensorData::$variant(Cow::Borrowed(v.borrow())),)*
                }
            };
        }
        b!(
            Float16, BFloat16, Float32, Float64, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32,
            UInt64, Bool, String, Bytes
        )
    }

    /// Converts to `target` where no information can be lost in a way a user would not expect:
    /// numbers and booleans become floats of any width (rounding to the nearest), integers
    /// and booleans change width when every value fits (checked, naming the first that does
    /// not). Floats never silently become integers, and strings never mix with numbers.
    pub fn cast(self, input: &str, target: DType) -> Result<TensorData<'a>> {
        let from = self.dtype();
        if from == target {
            return Ok(self);
        }
        let allowed = match target {
            t if t.is_float() => from != DType::String,
            t if t.is_integer() => from.is_integer() || from == DType::Bool,
            _ => false,
        };
        let refuse = || {
            RuntimeError::input(
                input,
                format!("got {from} data, but the model expects {target}"),
            )
        };
        if !allowed {
            return Err(refuse());
        }
        macro_rules! to_target {
            ($src:expr) => {{
                let src = &$src[..];
                match target {
                    DType::Float16 => TensorData::Float16(Cow::Owned(convert(src, input, target)?)),
                    DType::BFloat16 => {
                        TensorData::BFloat16(Cow::Owned(convert(src, input, target)?))
                    }
                    DType::Float32 => TensorData::Float32(Cow::Owned(convert(src, input, target)?)),
                    DType::Float64 => TensorData::Float64(Cow::Owned(convert(src, input, target)?)),
                    DType::Int8 => TensorData::Int8(Cow::Owned(convert(src, input, target)?)),
                    DType::Int16 => TensorData::Int16(Cow::Owned(convert(src, input, target)?)),
                    DType::Int32 => TensorData::Int32(Cow::Owned(convert(src, input, target)?)),
                    DType::Int64 => TensorData::Int64(Cow::Owned(convert(src, input, target)?)),
                    DType::UInt8 => TensorData::UInt8(Cow::Owned(convert(src, input, target)?)),
                    DType::UInt16 => TensorData::UInt16(Cow::Owned(convert(src, input, target)?)),
                    DType::UInt32 => TensorData::UInt32(Cow::Owned(convert(src, input, target)?)),
                    DType::UInt64 => TensorData::UInt64(Cow::Owned(convert(src, input, target)?)),
                    DType::Bool | DType::String => return Err(refuse()),
                }
            }};
        }
        Ok(match self {
            TensorData::Float16(v) => to_target!(v),
            TensorData::BFloat16(v) => to_target!(v),
            TensorData::Float32(v) => to_target!(v),
            TensorData::Float64(v) => to_target!(v),
            TensorData::Int8(v) => to_target!(v),
            TensorData::Int16(v) => to_target!(v),
            TensorData::Int32(v) => to_target!(v),
            TensorData::Int64(v) => to_target!(v),
            TensorData::UInt8(v) => to_target!(v),
            TensorData::UInt16(v) => to_target!(v),
            TensorData::UInt32(v) => to_target!(v),
            TensorData::UInt64(v) => to_target!(v),
            TensorData::Bool(v) => to_target!(v),
            TensorData::String(_) | TensorData::Bytes(_) => return Err(refuse()),
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
    fn every_numeric_type_casts_by_one_rule() {
        // Integers and booleans narrow or widen when every value fits, naming the first
        // that does not.
        let small = TensorData::Int64(Cow::Owned(vec![0, 255]));
        assert_eq!(
            small.clone().cast("x", DType::UInt8).unwrap(),
            TensorData::UInt8(Cow::Owned(vec![0, 255]))
        );
        let err = small.cast("x", DType::Int8).unwrap_err().to_string();
        assert!(
            err.contains("value 255 at flat index 1") && err.contains("int8"),
            "{err}"
        );
        let negative = TensorData::Int8(Cow::Owned(vec![3, -1]));
        let err = negative.cast("x", DType::UInt64).unwrap_err().to_string();
        assert!(err.contains("value -1 at flat index 1"), "{err}");
        let big = TensorData::UInt64(Cow::Owned(vec![u64::MAX]));
        assert!(big.clone().cast("x", DType::Int64).is_err());
        assert_eq!(
            big.cast("x", DType::Float64).unwrap(),
            TensorData::Float64(Cow::Owned(vec![u64::MAX as f64]))
        );
        assert_eq!(
            TensorData::Bool(Cow::Owned(vec![true, false]))
                .cast("x", DType::UInt16)
                .unwrap(),
            TensorData::UInt16(Cow::Owned(vec![1, 0]))
        );
        // Floats of every width round to the nearest; a finite number beyond the narrower
        // type's range is refused, not made infinite; they never become integers.
        let f = TensorData::Float32(Cow::Owned(vec![0.1, 70000.0]));
        let err = f.clone().cast("x", DType::Float16).unwrap_err().to_string();
        assert!(
            err.contains("value 70000 at flat index 1") && err.contains("float16"),
            "{err}"
        );
        let specials = TensorData::Float64(Cow::Owned(vec![f64::NAN, f64::NEG_INFINITY, -0.5]));
        let TensorData::Float16(h) = specials.cast("x", DType::Float16).unwrap() else {
            panic!("float16 data")
        };
        assert!(h[0].is_nan() && h[1] == f16::NEG_INFINITY && h[2] == f16::from_f32(-0.5));
        let huge = TensorData::Float64(Cow::Owned(vec![1e39]));
        assert!(huge.clone().cast("x", DType::Float32).is_err());
        assert!(huge.cast("x", DType::BFloat16).is_err());
        assert_eq!(
            f.clone().cast("x", DType::BFloat16).unwrap(),
            TensorData::BFloat16(Cow::Owned(vec![
                bf16::from_f32(0.1),
                bf16::from_f32(70000.0)
            ]))
        );
        assert!(f.cast("x", DType::UInt8).is_err());
        let h = TensorData::Float16(Cow::Owned(vec![f16::from_f32(1.5)]));
        assert_eq!(
            h.cast("x", DType::Float64).unwrap(),
            TensorData::Float64(Cow::Owned(vec![1.5]))
        );
        // Numbers never become booleans or strings.
        assert!(TensorData::UInt8(Cow::Owned(vec![1]))
            .cast("x", DType::Bool)
            .is_err());
        assert!(TensorData::UInt8(Cow::Owned(vec![1]))
            .cast("x", DType::String)
            .is_err());
    }

    #[test]
    fn byte_strings_are_text_only_when_all_utf8() {
        let text = TensorData::from_byte_strings(vec![b"a".to_vec(), "\u{e9}".into()]);
        assert_eq!(
            text,
            TensorData::String(Cow::Owned(vec!["a".into(), "\u{e9}".into()]))
        );
        let raw = TensorData::from_byte_strings(vec![b"a".to_vec(), vec![0xff]]);
        assert_eq!(raw.dtype(), DType::String);
        assert_eq!(raw.byte_string(1), Some(&[0xffu8][..]));
        // Bytes are the string element type: they never become numbers.
        let err = raw.cast("x", DType::Float32).unwrap_err().to_string();
        assert!(err.contains("got string data"), "{err}");
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
