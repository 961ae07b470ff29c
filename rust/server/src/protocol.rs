//! The Open Inference Protocol (KServe v2) wire format: inference requests in JSON, with the
//! binary tensor data extension that tritonclient uses, and the responses.

use std::borrow::Cow;

use pilothouse_runtime::half;
use pilothouse_runtime::{
    DType, Labels, OutputKind, OwnedTensor, Signature, Tensor, TensorData, TensorSpec,
};
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value as Json};

/// A request that cannot be served as sent: the message names what was wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRequest(pub String);

type Parsed<T> = std::result::Result<T, BadRequest>;

fn bad<T>(message: impl Into<String>) -> Parsed<T> {
    Err(BadRequest(message.into()))
}

#[derive(Deserialize)]
struct RawRequest<'a> {
    #[serde(default)]
    id: Option<Json>,
    #[serde(default)]
    parameters: Option<Map<String, Json>>,
    #[serde(borrow)]
    inputs: Vec<RawInput<'a>>,
    #[serde(default)]
    outputs: Option<Vec<RawOutput>>,
}

struct RawInput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: Cow<'a, str>,
    parameters: Option<Map<String, Json>>,
    data: Option<RawData<'a>>,
}

/// An input's `data`: decoded while the request is read when its datatype came first (the
/// usual order), else kept as JSON text to decode once the datatype is known.
enum RawData<'a> {
    Decoded(Result<TensorData<'static>, String>),
    Text(&'a RawValue),
}

impl<'de: 'a, 'a> Deserialize<'de> for RawInput<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(InputVisitor(std::marker::PhantomData))
    }
}

struct InputVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for InputVisitor<'a> {
    type Value = RawInput<'a>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an input tensor object")
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawInput<'a>, A::Error> {
        let (mut name, mut shape, mut datatype, mut parameters, mut data) =
            (None, None, None::<Cow<'de, str>>, None, None);
        fn once<T, E: de::Error>(slot: &Option<T>, field: &'static str) -> Result<(), E> {
            match slot {
                Some(_) => Err(E::duplicate_field(field)),
                None => Ok(()),
            }
        }
        while let Some(key) = map.next_key::<InputField>()? {
            match key {
                InputField::Name => {
                    once(&name, "name")?;
                    name = Some(map.next_value::<String>()?);
                }
                InputField::Shape => {
                    once(&shape, "shape")?;
                    shape = Some(map.next_value::<Vec<i64>>()?);
                }
                InputField::Datatype => {
                    once(&datatype, "datatype")?;
                    datatype = Some(map.next_value::<Text<'de>>()?.0);
                }
                InputField::Parameters => {
                    once(&parameters, "parameters")?;
                    parameters = Some(map.next_value::<Option<Map<String, Json>>>()?);
                }
                InputField::Data => {
                    once(&data, "data")?;
                    let count = shape.as_deref().map_or(0, capacity_hint);
                    data = Some(match datatype.as_deref().and_then(parse_dtype) {
                        Some(dtype) => RawData::Decoded(map.next_value_seed(Typed {
                            dtype,
                            capacity: count,
                        })?),
                        None => RawData::Text(map.next_value::<&'de RawValue>()?),
                    });
                }
                InputField::Other => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(RawInput {
            name: name.ok_or_else(|| de::Error::missing_field("name"))?,
            shape: shape.ok_or_else(|| de::Error::missing_field("shape"))?,
            datatype: datatype.ok_or_else(|| de::Error::missing_field("datatype"))?,
            parameters: parameters.flatten(),
            data,
        })
    }
}

/// The keys of an input object (matched without copying them).
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum InputField {
    Name,
    Shape,
    Datatype,
    Parameters,
    Data,
    #[serde(other)]
    Other,
}

/// A JSON string, borrowed from the request when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Elements reserved before any of an input's data has been read: what its shape claims, but
/// never more than a few (the claim is the client's; the rest grows with the bytes that
/// actually arrive, so a tiny request cannot make the server reserve gigabytes).
const RESERVED_UNSEEN: usize = 64;

fn capacity_hint(shape: &[i64]) -> usize {
    shape
        .iter()
        .try_fold(1usize, |a, d| a.checked_mul(usize::try_from(*d).ok()?))
        .unwrap_or(0)
        .min(RESERVED_UNSEEN)
}

/// The Open Inference Protocol datatype named exactly so (upper case).
fn parse_dtype(name: &str) -> Option<DType> {
    DType::from_name(name).filter(|_| {
        name.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    })
}

#[derive(Deserialize)]
struct RawOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Map<String, Json>>,
}

/// An output the client asked for, and whether it wants it as binary data.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    pub binary: bool,
    /// Triton's classification extension: the top `k` classes instead of the tensor.
    pub classification: Option<usize>,
}

/// A decoded inference request.
#[derive(Debug, Clone)]
pub struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<(String, OwnedTensor)>,
    /// None: every output, binary when `binary_outputs` says so.
    pub outputs: Option<Vec<RequestedOutput>>,
    pub binary_outputs: bool,
    /// `parameters.timeout` in microseconds, when the client set one.
    pub timeout_us: Option<u64>,
}

fn flag(params: &Option<Map<String, Json>>, key: &str) -> bool {
    params
        .as_ref()
        .and_then(|p| p.get(key))
        .and_then(Json::as_bool)
        .unwrap_or(false)
}

/// Decodes a request body. `header_length` is the `Inference-Header-Content-Length` header:
/// the JSON part's length, binary tensor data after it.
pub fn parse_request(body: &[u8], header_length: Option<usize>) -> Parsed<InferRequest> {
    let (head, binary) = match header_length {
        Some(n) if n > body.len() => {
            return bad(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            ))
        }
        Some(n) => (&body[..n], &body[n..]),
        None => (body, &body[body.len()..]),
    };
    match serde_json::from_slice::<RawRequest>(head) {
        Ok(raw) => decode_raw(raw, binary),
        Err(e) => {
            let invalid =
                || BadRequest(format!("the request is not a valid inference request: {e}"));
            // Clients built on rapidjson (tritonclient) write NaN and infinities as bare
            // tokens, which JSON has not got: read them as the strings this server writes.
            // Only on this error path, so valid requests pay nothing for it.
            let quoted = quote_bare_specials(head).ok_or_else(invalid)?;
            let raw = serde_json::from_slice::<RawRequest>(&quoted).map_err(|_| invalid())?;
            decode_raw(raw, binary)
        }
    }
}

/// `NaN`, `Infinity` and `-Infinity` outside strings, quoted; None when there are none.
fn quote_bare_specials(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped, mut changed) = (false, false, false);
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            out.push(b);
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
        }
        let rest = &text[i..];
        let token = [NEG_INFINITY, INFINITY, NAN]
            .into_iter()
            .find(|t| rest.starts_with(t.as_bytes()));
        match token {
            Some(t) => {
                out.push(b'"');
                out.extend_from_slice(t.as_bytes());
                out.push(b'"');
                i += t.len();
                changed = true;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    changed.then_some(out)
}

/// Triton's sequence-batching parameters change what a request means; this server does not
/// keep sequences, so a request that asks for one is refused rather than answered wrongly.
fn refuse_sequences(params: &Option<Map<String, Json>>) -> Parsed<()> {
    let Some(params) = params else {
        return Ok(());
    };
    for key in ["sequence_id", "sequence_start", "sequence_end"] {
        let asks = match params.get(key) {
            None | Some(Json::Null) | Some(Json::Bool(false)) => false,
            Some(Json::Number(n)) => n.as_u64() != Some(0),
            Some(Json::String(s)) => !s.is_empty(),
            Some(_) => true,
        };
        if asks {
            return bad(format!(
                "parameter '{key}' asks for Triton's sequence batching, which this server does not support; send the request without it"
            ));
        }
    }
    Ok(())
}

fn decode_raw(raw: RawRequest<'_>, mut binary: &[u8]) -> Parsed<InferRequest> {
    refuse_sequences(&raw.parameters)?;
    if raw.inputs.is_empty() {
        return bad("the request has no inputs");
    }
    let mut inputs = Vec::with_capacity(raw.inputs.len());
    for input in raw.inputs {
        let name = input.name;
        let what = |m: String| BadRequest(format!("input '{name}': {m}"));
        let dtype = parse_dtype(&input.datatype).ok_or_else(|| {
            let known: Vec<&str> = DType::ALL.iter().map(|d| d.protocol_name()).collect();
            what(format!(
                "datatype {:?} is not supported; use one of {}",
                input.datatype,
                known.join(", ")
            ))
        })?;
        if input.shape.iter().any(|d| *d < 0) {
            return Err(what(format!(
                "the shape {:?} has a negative dimension",
                input.shape
            )));
        }
        // Collected in place: the checked dims keep their allocation.
        let shape: Vec<usize> = input.shape.into_iter().map(|d| d as usize).collect();
        let count = shape
            .iter()
            .try_fold(1usize, |a, d| a.checked_mul(*d))
            .ok_or_else(|| what(format!("the shape {shape:?} is too large")))?;
        let binary_size = input
            .parameters
            .as_ref()
            .and_then(|p| p.get("binary_data_size"))
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| what("binary_data_size must be a non-negative integer".into()))
            })
            .transpose()?;
        let data = match (binary_size, input.data) {
            (Some(size), _) => {
                let size = size as usize;
                if size > binary.len() {
                    return Err(what(format!(
                        "binary_data_size is {size} but only {} bytes of binary data remain",
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(size);
                binary = rest;
                decode_binary(dtype, mine, count).map_err(what)?
            }
            (None, Some(RawData::Decoded(data))) => data.map_err(what)?,
            (None, Some(RawData::Text(json))) => {
                decode_json_text(dtype, json, count).map_err(what)?
            }
            (None, None) => return Err(what("no data (give \"data\" or binary_data_size)".into())),
        };
        let got = data.len();
        if got != count {
            return Err(what(format!(
                "the shape {shape:?} holds {count} elements but the data has {got}"
            )));
        }
        inputs.push((name, Tensor { shape, data }));
    }
    if !binary.is_empty() {
        return bad(format!(
            "{} bytes of binary data are not claimed by any input's binary_data_size",
            binary.len()
        ));
    }
    let id = match raw.id {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    };
    let timeout_us = raw
        .parameters
        .as_ref()
        .and_then(|p| p.get("timeout"))
        .and_then(Json::as_u64);
    Ok(InferRequest {
        id,
        inputs,
        binary_outputs: flag(&raw.parameters, "binary_data_output"),
        outputs: raw
            .outputs
            .map(|outs| {
                outs.into_iter()
                .map(|o| {
                    let classification = o
                        .parameters
                        .as_ref()
                        .and_then(|p| p.get("classification"))
                        .map(|k| match k.as_u64() {
                            Some(k @ 1..=100_000) => Ok(k as usize),
                            _ => bad(format!(
                                "output '{}': classification must be a number of classes from 1 to 100000, got {k}",
                                o.name
                            )),
                        })
                        .transpose()?;
                    Ok(RequestedOutput {
                        binary: flag(&o.parameters, "binary_data"),
                        name: o.name,
                        classification,
                    })
                })
                .collect::<Parsed<Vec<_>>>()
            })
            .transpose()?
            .map(|outs| {
                if outs.is_empty() {
                    bad("\"outputs\" is an empty list: leave it out for every output, or name the outputs you want")
                } else {
                    Ok(outs)
                }
            })
            .transpose()?,
        timeout_us,
    })
}

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
const NAN: &str = "NaN";
const INFINITY: &str = "Infinity";
const NEG_INFINITY: &str = "-Infinity";

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
struct Typed {
    dtype: DType,
    capacity: usize,
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
fn decode_json_text(
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

fn decode_binary(
    dtype: DType,
    bytes: &[u8],
    count: usize,
) -> std::result::Result<TensorData<'static>, String> {
    macro_rules! fixed {
        ($variant:ident, $ty:ty) => {{
            let width = std::mem::size_of::<$ty>();
            if count.checked_mul(width) != Some(bytes.len()) {
                return Err(format!(
                    "binary_data_size is {} bytes but the shape needs {} {} values ({} bytes each)",
                    bytes.len(),
                    count,
                    dtype.protocol_name(),
                    width
                ));
            }
            TensorData::$variant(Cow::Owned(
                bytes
                    .chunks_exact(width)
                    .map(|c| <$ty>::from_le_bytes(c.try_into().expect("exact chunks")))
                    .collect(),
            ))
        }};
    }
    Ok(match dtype {
        DType::Float16 => fixed!(Float16, half::f16),
        DType::BFloat16 => fixed!(BFloat16, half::bf16),
        DType::Float32 => fixed!(Float32, f32),
        DType::Float64 => fixed!(Float64, f64),
        DType::Int8 => fixed!(Int8, i8),
        DType::Int16 => fixed!(Int16, i16),
        DType::Int32 => fixed!(Int32, i32),
        DType::Int64 => fixed!(Int64, i64),
        DType::UInt8 => fixed!(UInt8, u8),
        DType::UInt16 => fixed!(UInt16, u16),
        DType::UInt32 => fixed!(UInt32, u32),
        DType::UInt64 => fixed!(UInt64, u64),
        DType::Bool => {
            if bytes.len() != count {
                return Err(format!(
                    "binary_data_size is {} bytes but the shape needs {count} BOOL values",
                    bytes.len()
                ));
            }
            TensorData::Bool(Cow::Owned(bytes.iter().map(|b| *b != 0).collect()))
        }
        DType::String => {
            // Each element has a 4-byte length prefix: the bytes bound what can be there.
            let mut out = Vec::with_capacity(count.min(bytes.len() / 4));
            let mut rest = bytes;
            while !rest.is_empty() {
                if rest.len() < 4 {
                    return Err("BYTES binary data ends inside a length prefix".into());
                }
                let n = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                if rest.len() < 4 + n {
                    return Err(format!(
                        "BYTES element {} claims {n} bytes but only {} remain",
                        out.len(),
                        rest.len() - 4
                    ));
                }
                out.push(rest[4..4 + n].to_vec());
                rest = &rest[4 + n..];
            }
            TensorData::from_byte_strings(out)
        }
    })
}

fn shape_json(spec: &TensorSpec) -> Json {
    Json::Array(spec.shape.iter().map(|d| json!(d.unwrap_or(-1))).collect())
}

fn specs_json(specs: &[TensorSpec]) -> Json {
    Json::Array(
        specs
            .iter()
            .map(|s| json!({"name": s.name, "datatype": s.dtype.protocol_name(), "shape": shape_json(s)}))
            .collect(),
    )
}

/// `GET /v2/models/{name}[/versions/{v}]`.
pub fn model_metadata(name: &str, versions: &[i64], signature: &Signature) -> Json {
    json!({
        "name": name,
        "versions": versions.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
        "platform": "onnxruntime_onnx",
        "inputs": specs_json(&signature.inputs),
        "outputs": specs_json(&signature.outputs),
    })
}

/// Checks the decoded inputs against the version's signature, strictly: names, datatypes,
/// ranks and fixed dimensions must match (no silent casts over the wire).
pub fn check_inputs(inputs: &[(String, OwnedTensor)], signature: &Signature) -> Parsed<()> {
    for (name, tensor) in inputs {
        let Some(spec) = signature.input(name) else {
            let known: Vec<&str> = signature.inputs.iter().map(|s| s.name.as_str()).collect();
            return bad(format!(
                "input '{name}': the model has no input of that name; its inputs are [{}]",
                known.join(", ")
            ));
        };
        if tensor.dtype() != spec.dtype {
            return bad(format!(
                "input '{name}': datatype {} does not match the model's {}",
                tensor.dtype().protocol_name(),
                spec.dtype.protocol_name()
            ));
        }
        let fits = tensor.shape.len() == spec.shape.len()
            && tensor
                .shape
                .iter()
                .zip(&spec.shape)
                .all(|(g, w)| w.is_none_or(|w| w < 0 || w as usize == *g));
        if !fits {
            return bad(format!(
                "input '{name}': shape {:?} does not match the model's {}",
                tensor.shape,
                spec.shape_string()
            ));
        }
        if tensor.shape.first() == Some(&0) {
            return bad(format!(
                "input '{name}': the batch is empty (shape {:?})",
                tensor.shape
            ));
        }
    }
    for spec in &signature.inputs {
        if !inputs.iter().any(|(n, _)| n == &spec.name) {
            return bad(format!(
                "input '{}' is missing: the model needs it ({} {})",
                spec.name,
                spec.dtype.protocol_name(),
                spec.shape_string()
            ));
        }
    }
    if inputs.len() > signature.inputs.len() {
        return bad("an input is given more than once");
    }
    Ok(())
}

/// Checks requested output names against the signature (and that a classification asks
/// for a numeric output).
pub fn check_outputs(
    requested: &Option<Vec<RequestedOutput>>,
    signature: &Signature,
) -> Parsed<()> {
    for r in requested.iter().flatten() {
        let Some(spec) = signature.outputs.iter().find(|s| s.name == r.name) else {
            let known: Vec<&str> = signature.outputs.iter().map(|s| s.name.as_str()).collect();
            return bad(format!(
                "output '{}': the model has no output of that name; its outputs are [{}]",
                r.name,
                known.join(", ")
            ));
        };
        if r.classification.is_some() && matches!(spec.dtype, DType::Bool | DType::String) {
            return bad(format!(
                "output '{}': classification needs numbers (scores or probabilities), but this output is {}",
                r.name,
                spec.dtype.protocol_name()
            ));
        }
    }
    Ok(())
}

/// Triton's classification extension: per row (the first dimension, when the output has
/// more than one), the `k` largest values as "value:index" or "value:index:label" (values
/// with six decimals, as Triton writes them), largest first. Shape `[rows, k]`, or `[k]`.
pub fn classify(tensor: &OwnedTensor, k: usize, labels: Option<&Labels>) -> OwnedTensor {
    let values: Vec<f64> = match &tensor.data {
        TensorData::Bool(_) => Vec::new(),
        data => data.to_f64_vec().unwrap_or_default(),
    };
    let batched = tensor.shape.len() > 1;
    let rows = if batched { tensor.shape[0] } else { 1 };
    let width = values.len().checked_div(rows).unwrap_or(0);
    let k = k.min(width);
    let mut out = Vec::with_capacity(rows * k);
    for row in values.chunks(width.max(1)).take(rows) {
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|a, b| row[*b].total_cmp(&row[*a]).then(a.cmp(b)));
        for i in order.into_iter().take(k) {
            let label = match labels {
                Some(Labels::String(l)) => l.get(i).map(|s| s.to_string()),
                Some(Labels::Int(l)) => l.get(i).map(|v| v.to_string()),
                None => None,
            };
            out.push(match label {
                Some(label) => format!("{:.6}:{i}:{label}", row[i]),
                None => format!("{:.6}:{i}", row[i]),
            });
        }
    }
    Tensor {
        shape: if batched { vec![rows, k] } else { vec![k] },
        data: TensorData::String(Cow::Owned(out)),
    }
}

fn append_binary(data: &TensorData<'_>, out: &mut Vec<u8>) {
    fn strings<'b>(elements: impl Iterator<Item = &'b [u8]>, out: &mut Vec<u8>) {
        for b in elements {
            // A model's element past 4 GiB cannot be framed; it never fits a response anyway.
            let n = u32::try_from(b.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&b[..n as usize]);
        }
    }
    macro_rules! le {
        ($v:expr) => {
            $v.iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes()))
        };
    }
    match data {
        TensorData::Float16(v) => le!(v),
        TensorData::BFloat16(v) => le!(v),
        TensorData::Float32(v) => le!(v),
        TensorData::Float64(v) => le!(v),
        TensorData::Int8(v) => le!(v),
        TensorData::Int16(v) => le!(v),
        TensorData::Int32(v) => le!(v),
        TensorData::Int64(v) => le!(v),
        TensorData::UInt8(v) => out.extend_from_slice(v),
        TensorData::UInt16(v) => le!(v),
        TensorData::UInt32(v) => le!(v),
        TensorData::UInt64(v) => le!(v),
        TensorData::Bool(v) => out.extend(v.iter().map(|b| u8::from(*b))),
        TensorData::String(v) => strings(v.iter().map(|s| s.as_bytes()), out),
        TensorData::Bytes(v) => strings(v.iter().map(|b| b.as_slice()), out),
    }
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

/// An encoded response: the body, and the JSON header's length when binary data follows it.
pub struct Encoded {
    pub body: Vec<u8>,
    pub header_length: Option<usize>,
}

/// Encodes an inference response with the outputs the request asked for.
pub fn encode_response(
    model: &str,
    version: i64,
    id: Option<&str>,
    signature: &Signature,
    outputs: &[OwnedTensor],
    request: &InferRequest,
) -> Encoded {
    let names = signature.outputs.iter().map(|s| &s.name);
    let mut head = Vec::with_capacity(256);
    let mut binary: Vec<u8> = Vec::new();
    head.extend_from_slice(b"{\"model_name\":");
    serde_json::to_writer(&mut head, model).expect("vec");
    std::io::Write::write_fmt(&mut head, format_args!(",\"model_version\":\"{version}\""))
        .expect("vec");
    if let Some(id) = id {
        head.extend_from_slice(b",\"id\":");
        serde_json::to_writer(&mut head, id).expect("vec");
    }
    head.extend_from_slice(b",\"outputs\":[");
    let mut first = true;
    for ((name, tensor), spec) in names.zip(outputs).zip(&signature.outputs) {
        let (binary_wanted, classes) = match &request.outputs {
            Some(list) => match list.iter().find(|r| &r.name == name) {
                Some(r) => (r.binary, r.classification),
                None => continue,
            },
            None => (request.binary_outputs, None),
        };
        let classified;
        let tensor = match classes {
            Some(k) => {
                let labels = match &spec.kind {
                    OutputKind::ZipMap { labels } => labels.as_ref(),
                    OutputKind::Tensor => None,
                };
                classified = classify(tensor, k, labels);
                &classified
            }
            None => tensor,
        };
        if !first {
            head.push(b',');
        }
        first = false;
        head.extend_from_slice(b"{\"name\":");
        serde_json::to_writer(&mut head, name).expect("vec");
        head.extend_from_slice(b",\"datatype\":\"");
        head.extend_from_slice(tensor.dtype().protocol_name().as_bytes());
        head.extend_from_slice(b"\",\"shape\":");
        serde_json::to_writer(&mut head, &tensor.shape).expect("vec");
        // JSON cannot hold bytes that are not UTF-8: such an output goes as binary data
        // (the binary tensor extension), which Triton's and KServe's clients read.
        if binary_wanted || matches!(tensor.data, TensorData::Bytes(_)) {
            let before = binary.len();
            append_binary(&tensor.data, &mut binary);
            head.extend_from_slice(
                format!(
                    ",\"parameters\":{{\"binary_data_size\":{}}}}}",
                    binary.len() - before
                )
                .as_bytes(),
            );
        } else {
            head.extend_from_slice(b",\"data\":");
            write_data_json(&tensor.data, &mut head);
            head.push(b'}');
        }
    }
    head.extend_from_slice(b"]}");
    if binary.is_empty() && !outputs_wanted_binary(request) {
        return Encoded {
            body: head,
            header_length: None,
        };
    }
    let header_length = head.len();
    head.extend_from_slice(&binary);
    Encoded {
        body: head,
        header_length: Some(header_length),
    }
}

fn outputs_wanted_binary(request: &InferRequest) -> bool {
    match &request.outputs {
        Some(list) => list.iter().any(|r| r.binary),
        None => request.binary_outputs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_binary_inputs_decode_alike() {
        let body =
            br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5]]}]}"#;
        let r = parse_request(body, None).unwrap();
        assert_eq!(
            r.inputs[0].1.data,
            TensorData::Float32(Cow::Owned(vec![1.0, 2.0, 3.0, 4.5]))
        );
        let head = br#"{"inputs":[{"name":"x","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":12}}]}"#;
        let mut body = head.to_vec();
        for s in ["ab", "cd"] {
            body.extend_from_slice(&(s.len() as u32).to_le_bytes());
            body.extend_from_slice(s.as_bytes());
        }
        let r = parse_request(&body, Some(head.len())).unwrap();
        assert_eq!(
            r.inputs[0].1.data,
            TensorData::String(Cow::Owned(vec!["ab".into(), "cd".into()]))
        );
    }

    #[test]
    fn every_fixed_width_type_round_trips_in_json_and_binary() {
        use half::{bf16, f16};
        let cases: Vec<TensorData<'static>> = vec![
            TensorData::Float16(Cow::Owned(vec![f16::from_f32(0.5), f16::MAX, f16::MIN])),
            TensorData::BFloat16(Cow::Owned(vec![bf16::from_f32(0.1), bf16::MAX, bf16::MIN])),
            TensorData::Int8(Cow::Owned(vec![i8::MIN, 0, i8::MAX])),
            TensorData::Int16(Cow::Owned(vec![i16::MIN, 0, i16::MAX])),
            TensorData::UInt8(Cow::Owned(vec![0, 1, u8::MAX])),
            TensorData::UInt16(Cow::Owned(vec![0, 1, u16::MAX])),
            TensorData::UInt32(Cow::Owned(vec![0, 1, u32::MAX])),
            TensorData::UInt64(Cow::Owned(vec![0, 1, u64::MAX])),
        ];
        for data in cases {
            let name = data.dtype().protocol_name();
            // Binary: the bytes this server writes decode to the same tensor.
            let mut bytes = Vec::new();
            append_binary(&data, &mut bytes);
            assert_eq!(bytes.len(), 3 * data.dtype().width(), "{name}");
            assert_eq!(
                decode_binary(data.dtype(), &bytes, 3).unwrap(),
                data,
                "{name}"
            );
            assert!(
                decode_binary(data.dtype(), &bytes[1..], 3).is_err(),
                "{name}"
            );
            // JSON: the text this server writes decodes to the same tensor.
            let mut text = Vec::new();
            write_data_json(&data, &mut text);
            let body = format!(
                r#"{{"inputs":[{{"name":"x","shape":[3],"datatype":"{name}","data":{}}}]}}"#,
                String::from_utf8(text).unwrap()
            );
            let r = parse_request(body.as_bytes(), None).unwrap();
            assert_eq!(r.inputs[0].1.data, data, "{name}: {body}");
        }
    }

    #[test]
    fn narrow_types_refuse_values_that_do_not_fit() {
        for (dtype, data, what) in [
            ("INT8", "[1, 128]", "an int8"),
            ("UINT8", "[1, -1]", "a uint8"),
            ("UINT64", "[1, -1]", "a uint64"),
            ("UINT32", "[1, 4294967296]", "a uint32"),
            ("INT16", "[1, 0.5]", "an int16"),
            ("FP16", "[1, 65520]", "FP16"),
            ("BF16", "[1, 1e39]", "BF16"),
        ] {
            let body = format!(
                r#"{{"inputs":[{{"name":"x","shape":[2],"datatype":"{dtype}","data":{data}}}]}}"#
            );
            let err = parse_request(body.as_bytes(), None).err().unwrap().0;
            assert!(
                err.contains("input 'x'") && err.contains("element 1") && err.contains(what),
                "{dtype}: {err}"
            );
        }
        // NaN and infinities are still what the strings say.
        let body = br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP16","data":["NaN","-Infinity"]}]}"#;
        let r = parse_request(body, None).unwrap();
        let TensorData::Float16(v) = &r.inputs[0].1.data else {
            panic!("FP16 data")
        };
        assert!(v[0].is_nan() && v[1] == half::f16::NEG_INFINITY);
    }

    #[test]
    fn bytes_that_are_not_utf8_decode_and_answer_as_binary() {
        let head = br#"{"inputs":[{"name":"s","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":12}}]}"#;
        let mut body = head.to_vec();
        for s in [&b"\xff\x00"[..], &b"ok"[..]] {
            body.extend_from_slice(&(s.len() as u32).to_le_bytes());
            body.extend_from_slice(s);
        }
        let r = parse_request(&body, Some(head.len())).unwrap();
        let data = &r.inputs[0].1.data;
        assert_eq!(
            data,
            &TensorData::Bytes(Cow::Owned(vec![vec![0xff, 0], b"ok".to_vec()]))
        );
        let signature = Signature {
            inputs: vec![],
            outputs: vec![TensorSpec {
                name: "t".into(),
                dtype: DType::String,
                shape: vec![None],
                kind: OutputKind::Tensor,
            }],
            metadata: Default::default(),
            feature_names: None,
            opsets: Default::default(),
        };
        let output = Tensor {
            shape: vec![2],
            data: data.clone(),
        };
        // A JSON request: the output still goes as binary data, since JSON cannot hold it.
        let json_request = parse_request(
            br#"{"inputs":[{"name":"s","shape":[1],"datatype":"BYTES","data":["a"]}]}"#,
            None,
        )
        .unwrap();
        let encoded = encode_response("m", 1, None, &signature, &[output], &json_request);
        let header = encoded.header_length.expect("binary data follows the JSON");
        let head: Json = serde_json::from_slice(&encoded.body[..header]).unwrap();
        assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 12);
        assert_eq!(&encoded.body[header..], &body[head_len(&body)..]);
        // The payload log's JSON keeps the bytes as base64.
        let mut text = Vec::new();
        write_data_json(data, &mut text);
        assert_eq!(String::from_utf8(text).unwrap(), r#"[{"b64":"/wA="},"ok"]"#);
    }

    fn head_len(body: &[u8]) -> usize {
        body.len() - 12
    }

    #[test]
    fn text_and_tree_decode_alike() {
        let cases: &[(DType, &str)] = &[
            (DType::Float32, "[[1, 2.5], [-3e2, 0.1]]"),
            (
                DType::Float32,
                "[16777217, 18446744073709551615, -9223372036854775808]",
            ),
            (DType::Float32, "7"),
            (DType::Float64, "[[0.1, 1e-300], [2, -0.0]]"),
            (DType::Int32, "[1, -2, 2147483647]"),
            (DType::Int32, "[2147483648]"),
            (DType::Int32, "[1.0]"),
            (
                DType::Int64,
                "[[9223372036854775807], [-9223372036854775808]]",
            ),
            (DType::Int64, "[9223372036854775808]"),
            (DType::Bool, "[true, [false, true]]"),
            (DType::Bool, "[1]"),
            (DType::String, r#"["a", ["\u00e9\n", ""]]"#),
            (DType::String, r#"["a", 1]"#),
            (DType::Float32, r#"[1, "a"]"#),
            (DType::Float32, "[1, null]"),
            (DType::Float64, "[[1, 2], [3, {}]]"),
        ];
        for (dtype, text) in cases {
            let raw = RawValue::from_string(text.to_string()).unwrap();
            let tree: Json = serde_json::from_str(text).unwrap();
            assert_eq!(
                decode_json_text(*dtype, &raw, 0),
                decode_json_values(*dtype, &tree),
                "{dtype:?} {text}"
            );
        }
        // In a request, whichever comes first of data and datatype.
        for body in [
            r#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT64","data":[1,[2]]}]}"#,
            r#"{"inputs":[{"data":[1,[2]],"name":"x","datatype":"INT64","shape":[2]}]}"#,
        ] {
            let r = parse_request(body.as_bytes(), None).unwrap();
            assert_eq!(
                r.inputs[0].1.data,
                TensorData::Int64(Cow::Owned(vec![1, 2]))
            );
        }
        for body in [
            r#"{"inputs":[{"name":"x","shape":[2],"datatype":"INT64","data":[1,{"a":[2]}]}]}"#,
            r#"{"inputs":[{"data":[1,{"a":[2]}],"name":"x","datatype":"INT64","shape":[2]}]}"#,
        ] {
            assert_eq!(
                parse_request(body.as_bytes(), None).unwrap_err().0,
                r#"input 'x': element 1 is {"a":[2]}, not an int64"#
            );
        }
        let dup =
            br#"{"inputs":[{"name":"x","name":"y","shape":[1],"datatype":"FP32","data":[1]}]}"#;
        assert!(parse_request(dup, None)
            .unwrap_err()
            .0
            .contains("duplicate field `name`"));
        let tree = |t: &str| serde_json::from_str::<Json>(t).unwrap();
        let faults = [
            (
                DType::Int32,
                "[2147483648]",
                "element 0 is 2147483648, not an int32",
            ),
            (DType::Int32, "[1, 1.0]", "element 1 is 1.0, not an int32"),
            (
                DType::Int64,
                "[9223372036854775808]",
                "element 0 is 9223372036854775808, not an int64",
            ),
            (
                DType::Bool,
                "[true, [1]]",
                "element 1 is 1, not true or false",
            ),
            (DType::String, r#"["a", 1]"#, "element 1 is 1, not a string"),
            (
                DType::Float32,
                "[1, null]",
                "element 1 is null, not a number that fits FP32 (at most 3.4e38 in magnitude)",
            ),
            (
                DType::Float64,
                "[[1, 2], [3, {}]]",
                "element 3 is {}, not a number",
            ),
        ];
        for (dtype, text, message) in faults {
            assert_eq!(decode_json_values(dtype, &tree(text)).unwrap_err(), message);
        }
        assert_eq!(
            decode_json_values(
                DType::Float32,
                &tree("[16777217, [18446744073709551615], -1.5]")
            ),
            Ok(TensorData::Float32(Cow::Owned(vec![
                16777216.0,
                1.8446744e19,
                -1.5
            ])))
        );
        assert_eq!(
            decode_json_values(DType::String, &tree(r#"["\u00e9\n", [""]]"#)),
            Ok(TensorData::String(Cow::Owned(vec![
                "é\n".into(),
                String::new()
            ])))
        );
        let raw = RawValue::from_string(r#"[1, "a"]"#.into()).unwrap();
        assert_eq!(
            decode_json_text(DType::Float32, &raw, 2).unwrap_err(),
            r#"element 1 is "a", not a number that fits FP32 (at most 3.4e38 in magnitude)"#
        );
    }

    #[test]
    fn special_floats_out_of_range_numbers_and_sequences() {
        // Bare tokens (tritonclient) and strings (this server's answers) both decode.
        for body in [
            r#"{"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[NaN, Infinity, -Infinity, 1.5]}]}"#,
            r#"{"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":["NaN","Infinity","-Infinity",1.5]}]}"#,
        ] {
            let r = parse_request(body.as_bytes(), None).unwrap();
            let TensorData::Float32(v) = &r.inputs[0].1.data else {
                panic!("FP32")
            };
            assert!(v[0].is_nan() && v[1] == f32::INFINITY && v[2] == f32::NEG_INFINITY);
            assert_eq!(v[3], 1.5);
        }
        // A string holding "NaN" stays a string; only bare tokens are read as numbers.
        let r = parse_request(
            br#"{"inputs":[{"name":"s","shape":[2],"datatype":"BYTES","data":["NaN","a\"NaN"]}]}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            r.inputs[0].1.data,
            TensorData::String(Cow::Owned(vec!["NaN".into(), "a\"NaN".into()]))
        );
        let mut out = Vec::new();
        write_data_json(
            &TensorData::Float32(Cow::Owned(vec![
                f32::NAN,
                0.1,
                f32::NEG_INFINITY,
                f32::INFINITY,
            ])),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"["NaN",0.1,"-Infinity","Infinity"]"#
        );
        let e = parse_request(
            br#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1, 1e308]}]}"#,
            None,
        )
        .unwrap_err();
        assert!(
            e.0.contains("input 'x'")
                && e.0.contains("element 1 is 1e+308")
                && e.0.contains("FP32"),
            "{}",
            e.0
        );
        assert!(parse_request(
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP64","data":[1e308]}]}"#,
            None
        )
        .is_ok());
        for params in [
            r#"{"sequence_id": 7}"#,
            r#"{"sequence_id": "abc", "sequence_start": true}"#,
            r#"{"sequence_end": true}"#,
        ] {
            let body = format!(
                r#"{{"parameters":{params},"inputs":[{{"name":"x","shape":[1],"datatype":"FP32","data":[1]}}]}}"#
            );
            let e = parse_request(body.as_bytes(), None).unwrap_err();
            assert!(e.0.contains("sequence batching"), "{}", e.0);
        }
        let body = r#"{"parameters":{"sequence_id":0,"custom":1},"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#;
        assert!(parse_request(body.as_bytes(), None).is_ok());
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"{", "not a valid inference request"),
            (br#"{"inputs":[]}"#, "no inputs"),
            (
                br#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#,
                "holds 3 elements but the data has 2",
            ),
            (
                br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP8","data":[1]}]}"#,
                "not supported",
            ),
            (
                br#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[1.5]}]}"#,
                "not an int64",
            ),
            (
                br#"{"inputs":[{"name":"x","shape":[-1],"datatype":"INT64","data":[1]}]}"#,
                "negative",
            ),
        ];
        for (body, want) in cases {
            let e = parse_request(body, None).unwrap_err();
            assert!(e.0.contains(want), "{} lacks {want}", e.0);
        }
    }
}
