//! Inference requests as JSON: the request and its inputs decoded without a JSON tree, the
//! binary tensor data located by `binary_data_size`, and the parameters this server refuses.

use std::borrow::Cow;

use pilothouse_runtime::{DType, OwnedTensor, Tensor, TensorData};
use serde::de::{self, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value as Json};

use super::binary::decode_binary;
use super::json_data::{decode_json_text, Typed, INFINITY, NAN, NEG_INFINITY};
use super::*;

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
    /// `parameters.correlation_id`: the key the business knows each row by (one text for
    /// the request, or a list with one per row), so that feedback can name it.
    pub keys: Vec<String>,
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
            let invalid = || {
                RequestError::BadRequest(format!(
                    "the request is not a valid inference request: {e}"
                ))
            };
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

/// The longest correlation key kept.
const MAX_KEY: usize = 200;
/// The most rows of a request that carries correlation keys (one key is kept per row).
const MAX_KEYED_ROWS: usize = 1 << 16;

/// `parameters.correlation_id`: none, one text (the request's only row, or `<key>/<i>` for
/// row `i` of several) or a list of one text per row.
fn correlation_keys(params: &Option<Map<String, Json>>, rows: usize) -> Parsed<Vec<String>> {
    let Some(value) = params.as_ref().and_then(|p| p.get("correlation_id")) else {
        return Ok(Vec::new());
    };
    if rows > MAX_KEYED_ROWS {
        return bad(format!(
            "parameter 'correlation_id' on a request of {rows} rows; keyed requests have at most {MAX_KEYED_ROWS}"
        ));
    }
    let check = |k: &str| {
        if k.is_empty() || k.len() > MAX_KEY {
            bad(format!(
                "parameter 'correlation_id': a key is 1 to {MAX_KEY} bytes of text, got {} bytes",
                k.len()
            ))
        } else if k.chars().any(char::is_control) {
            bad("parameter 'correlation_id': a key has no control characters")
        } else {
            Ok(())
        }
    };
    match value {
        Json::Null => Ok(Vec::new()),
        Json::String(k) => {
            check(k)?;
            Ok(if rows == 1 {
                vec![k.clone()]
            } else {
                (0..rows).map(|i| format!("{k}/{i}")).collect()
            })
        }
        Json::Array(keys) => {
            if keys.len() != rows {
                return bad(format!(
                    "parameter 'correlation_id' lists {} keys for {rows} rows; give one per row, or one text for the request",
                    keys.len()
                ));
            }
            keys.iter()
                .map(|k| match k {
                    Json::String(k) => check(k).map(|()| k.clone()),
                    other => bad(format!(
                        "parameter 'correlation_id': keys are texts, got {other}"
                    )),
                })
                .collect()
        }
        other => bad(format!(
            "parameter 'correlation_id' is a text or a list of texts (one per row), got {other}"
        )),
    }
}

fn decode_raw(raw: RawRequest<'_>, mut binary: &[u8]) -> Parsed<InferRequest> {
    refuse_sequences(&raw.parameters)?;
    if raw.inputs.is_empty() {
        return bad("the request has no inputs");
    }
    let mut inputs = Vec::with_capacity(raw.inputs.len());
    for input in raw.inputs {
        let name = input.name;
        let what = |m: String| RequestError::BadRequest(format!("input '{name}': {m}"));
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
    let rows = inputs
        .first()
        .and_then(|(_, t)| t.shape.first().copied())
        .unwrap_or(1);
    let keys = correlation_keys(&raw.parameters, rows)?;
    Ok(InferRequest {
        keys,
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
