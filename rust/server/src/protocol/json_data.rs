//! Tensor data as JSON: each datatype's elements decoded straight from the text (ranges
//! checked, NaN and infinities as strings) and written back.

use std::borrow::Cow;

use pilothouse_runtime::half;
use pilothouse_runtime::{DType, TensorData};
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value as Json};

/// A tensor element as JSON may give it; `None` when this JSON value cannot be one (an int32
/// must be an integer in range; a float takes any number).
trait Element: Sized {
    /// What an element must be, for messages.
    const WANT: &'static str;
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_bool(_: bool) -> Option<Self> {
        None
    }
    fn from_str(_: &str) -> Option<Self> {
        None
    }
}

/// The texts that stand for the floats JSON has no number for, as this server writes them
/// (strings: every JSON parser reads them, and numpy turns them back into floats).
pub(super) const NAN: &str = "NaN";

pub(super) const INFINITY: &str = "Infinity";

pub(super) const NEG_INFINITY: &str = "-Infinity";

fn special_float(v: &str) -> Option<f64> {
    match v {
        NAN => Some(f64::NAN),
        INFINITY => Some(f64::INFINITY),
        NEG_INFINITY => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

impl Element for f32 {
    const WANT: &'static str = "a number that fits FP32 (at most 3.4e38 in magnitude)";
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f64 as f32)
    }
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f64 as f32)
    }
    fn from_f64(v: f64) -> Option<Self> {
        // A finite number beyond FP32's range would silently become infinity.
        let f = v as f32;
        (f.is_finite() || !v.is_finite()).then_some(f)
    }
    fn from_str(v: &str) -> Option<Self> {
        special_float(v).map(|f| f as f32)
    }
}

impl Element for f64 {
    const WANT: &'static str = "a number";
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
    fn from_str(v: &str) -> Option<Self> {
        special_float(v)
    }
}

/// A narrow float read from JSON: a finite number beyond the type's range would silently
/// become infinity, so it is refused like an integer that does not fit.
macro_rules! half_element {
    ($($t:ty => $want:literal),*) => {$(
        impl Element for $t {
            const WANT: &'static str = $want;
            fn from_i64(v: i64) -> Option<Self> {
                <Self as Element>::from_f64(v as f64)
            }
            fn from_u64(v: u64) -> Option<Self> {
                <Self as Element>::from_f64(v as f64)
            }
            fn from_f64(v: f64) -> Option<Self> {
                let f = <$t>::from_f64(v);
                (f.is_finite() || !v.is_finite()).then_some(f)
            }
            fn from_str(v: &str) -> Option<Self> {
                special_float(v).map(<$t>::from_f64)
            }
        }
    )*};
}

half_element!(
    half::f16 => "a number that fits FP16 (at most 65504 in magnitude)",
    half::bf16 => "a number that fits BF16 (at most 3.39e38 in magnitude)"
);

/// An integer element: any JSON integer that fits the type.
macro_rules! int_element {
    ($($t:ty => $want:literal),*) => {$(
        impl Element for $t {
            const WANT: &'static str = $want;
            fn from_i64(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_u64(v: u64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
        }
    )*};
}

int_element!(
    i8 => "an int8", i16 => "an int16", i32 => "an int32", i64 => "an int64",
    u8 => "a uint8", u16 => "a uint16", u32 => "a uint32", u64 => "a uint64"
);

impl Element for bool {
    const WANT: &'static str = "true or false";
    fn from_bool(v: bool) -> Option<Self> {
        Some(v)
    }
}

impl Element for String {
    const WANT: &'static str = "a string";
    fn from_str(v: &str) -> Option<Self> {
        Some(v.to_string())
    }
}

/// Appends the elements of a JSON value, nested lists flattened, to a vector. The first
/// element that cannot be a `T` is kept (with its position) and the rest only read past, so
/// the message can name it.
struct Flat<'v, T> {
    out: &'v mut Vec<T>,
    fault: &'v mut Option<(usize, Json)>,
}

impl<T> Flat<'_, T> {
    fn push(self, v: Option<T>, as_json: impl FnOnce() -> Json) {
        if self.fault.is_some() {
            return;
        }
        match v {
            Some(v) => self.out.push(v),
            None => *self.fault = Some((self.out.len(), as_json())),
        }
    }
}

impl<'de, T: Element> DeserializeSeed<'de> for Flat<'_, T> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Element> Visitor<'de> for Flat<'_, T> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("tensor data")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(T::from_i64(v), || Json::from(v));
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(T::from_u64(v), || Json::from(v));
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(T::from_f64(v), || Json::from(v));
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(T::from_bool(v), || Json::from(v));
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.push(T::from_str(v), || Json::from(v));
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.push(None, || Json::Null);
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Flat {
                out: &mut *self.out,
                fault: &mut *self.fault,
            })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let value = Json::deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.push(None, || value);
        Ok(())
    }
}

fn flat<'de, T: Element, D: de::Deserializer<'de>>(
    d: D,
    capacity: usize,
) -> Result<Result<Vec<T>, String>, D::Error> {
    let mut out = Vec::with_capacity(capacity);
    let mut fault = None;
    Flat {
        out: &mut out,
        fault: &mut fault,
    }
    .deserialize(d)?;
    Ok(match fault {
        None => Ok(out),
        Some((i, v)) => Err(format!("element {i} is {v}, not {}", T::WANT)),
    })
}

/// Decodes `data` straight into tensor data of `dtype` (no JSON tree in between). The outer
/// error is malformed JSON; the inner one an element of the wrong type, named. `capacity` is
/// what to reserve up front: bounded by bytes already received, never by a claimed shape.
pub(super) struct Typed {
    pub(super) dtype: DType,
    pub(super) capacity: usize,
}

impl<'de> DeserializeSeed<'de> for Typed {
    type Value = Result<TensorData<'static>, String>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let n = self.capacity;
        macro_rules! by_dtype {
            ($($variant:ident),*) => {
                match self.dtype {
                    $(DType::$variant => flat(d, n)?.map(|v| TensorData::$variant(Cow::Owned(v))),)*
                }
            };
        }
        Ok(by_dtype!(
            Float16, BFloat16, Float32, Float64, Int8, Int16, Int32, Int64, UInt8, UInt16, UInt32,
            UInt64, Bool, String
        ))
    }
}

/// `data` kept as JSON text (its datatype came after it) decoded into tensor data of `dtype`.
pub(super) fn decode_json_text(
    dtype: DType,
    data: &RawValue,
    count: usize,
) -> std::result::Result<TensorData<'static>, String> {
    // Every element takes at least two bytes of text ("1,"): that bounds the reservation.
    let text = data.get();
    let capacity = count.min(text.len() / 2 + 1);
    let mut de = serde_json::Deserializer::from_str(text);
    let decoded = Typed { dtype, capacity }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    decoded
}

/// JSON values (nested lists flattened) as tensor data of `dtype`: the same decoding as a
/// request's `data`, from a JSON tree (a stored input example).
pub(crate) fn decode_json_values(
    dtype: DType,
    data: &Json,
) -> std::result::Result<TensorData<'static>, String> {
    Typed { dtype, capacity: 0 }
        .deserialize(data)
        .map_err(|e| e.to_string())?
}

/// Floats as a JSON array; NaN and infinities (which JSON numbers cannot hold) as the strings
/// "NaN", "Infinity" and "-Infinity", which tritonclient's and KServe's clients both read
/// back as floats. Finite values are written as serde_json writes them (ryu's shortest
/// round trip, in the value's own precision).
fn floats<F: ryu::Float + Copy + Into<f64>>(values: &[F], out: &mut Vec<u8>) {
    out.push(b'[');
    let mut buffer = ryu::Buffer::new();
    for (i, x) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let wide: f64 = (*x).into();
        if wide.is_finite() {
            out.extend_from_slice(buffer.format_finite(*x).as_bytes());
        } else {
            let text = match wide {
                w if w.is_nan() => NAN,
                w if w > 0.0 => INFINITY,
                _ => NEG_INFINITY,
            };
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
        }
    }
    out.push(b']');
}

/// Tensor data as a JSON array (flat, row-major), written straight into `out`.
pub fn write_data_json(data: &TensorData<'_>, out: &mut Vec<u8>) {
    fn list<T: serde::Serialize>(v: &[T], out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, v).expect("writing to a Vec cannot fail");
    }
    fn narrow<F: Copy + Into<f32>>(v: &[F], out: &mut Vec<u8>) {
        let wide: Vec<f32> = v.iter().map(|x| (*x).into()).collect();
        floats(&wide, out)
    }
    match data {
        // FP16 and BF16 values are exact in FP32, so FP32's shortest text reads back exactly.
        TensorData::Float16(v) => narrow(v, out),
        TensorData::BFloat16(v) => narrow(v, out),
        TensorData::Float32(v) => floats(v, out),
        TensorData::Float64(v) => floats(v, out),
        TensorData::Int8(v) => list(v, out),
        TensorData::Int16(v) => list(v, out),
        TensorData::Int32(v) => list(v, out),
        TensorData::Int64(v) => list(v, out),
        TensorData::UInt8(v) => list(v, out),
        TensorData::UInt16(v) => list(v, out),
        TensorData::UInt32(v) => list(v, out),
        TensorData::UInt64(v) => list(v, out),
        TensorData::Bool(v) => list(v, out),
        TensorData::String(v) => list(v, out),
        // JSON strings hold text only: an element that is not UTF-8 is written as
        // {"b64": "<base64 of its bytes>"} (only the payload log meets this; responses send
        // such outputs as binary data).
        TensorData::Bytes(v) => {
            use base64::Engine as _;
            let elements: Vec<Json> = v
                .iter()
                .map(|b| match std::str::from_utf8(b) {
                    Ok(text) => Json::from(text),
                    Err(_) => json!({"b64": base64::engine::general_purpose::STANDARD.encode(b)}),
                })
                .collect();
            list(&elements, out)
        }
    }
}
