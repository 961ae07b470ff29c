//! The Open Inference Protocol (KServe v2) wire format: inference requests in JSON, with the
//! binary tensor data extension that tritonclient uses, and the responses.

use std::borrow::Cow;

use pilothouse_runtime::{DType, OwnedTensor, Signature, Tensor, TensorData, TensorSpec};
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};

/// A request that cannot be served as sent: the message names what was wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRequest(pub String);

type Parsed<T> = std::result::Result<T, BadRequest>;

fn bad<T>(message: impl Into<String>) -> Parsed<T> {
    Err(BadRequest(message.into()))
}

#[derive(Deserialize)]
struct RawRequest {
    #[serde(default)]
    id: Option<Json>,
    #[serde(default)]
    parameters: Option<Map<String, Json>>,
    inputs: Vec<RawInput>,
    #[serde(default)]
    outputs: Option<Vec<RawOutput>>,
}

#[derive(Deserialize)]
struct RawInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Map<String, Json>>,
    #[serde(default)]
    data: Option<Json>,
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
    let (head, mut binary) = match header_length {
        Some(n) if n > body.len() => {
            return bad(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            ))
        }
        Some(n) => (&body[..n], &body[n..]),
        None => (body, &body[body.len()..]),
    };
    let raw: RawRequest = serde_json::from_slice(head)
        .map_err(|e| BadRequest(format!("the request is not a valid inference request: {e}")))?;
    if raw.inputs.is_empty() {
        return bad("the request has no inputs");
    }
    let mut inputs = Vec::with_capacity(raw.inputs.len());
    for input in raw.inputs {
        let name = input.name;
        let what = |m: String| BadRequest(format!("input '{name}': {m}"));
        let dtype = DType::from_name(&input.datatype)
            .filter(|_| {
                input
                    .datatype
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            })
            .ok_or_else(|| {
                what(format!(
                "datatype {:?} is not supported; use one of FP32, FP64, INT32, INT64, BOOL, BYTES",
                input.datatype
            ))
            })?;
        let mut shape = Vec::with_capacity(input.shape.len());
        for d in &input.shape {
            if *d < 0 {
                return Err(what(format!(
                    "the shape {:?} has a negative dimension",
                    input.shape
                )));
            }
            shape.push(*d as usize);
        }
        let count = shape
            .iter()
            .try_fold(1usize, |a, d| a.checked_mul(*d))
            .ok_or_else(|| what(format!("the shape {:?} is too large", input.shape)))?;
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
            (None, Some(json)) => decode_json(dtype, &json, count).map_err(what)?,
            (None, None) => return Err(what("no data (give \"data\" or binary_data_size)".into())),
        };
        let got = data.len();
        if got != count {
            return Err(what(format!(
                "the shape {:?} holds {count} elements but the data has {got}",
                input.shape
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
        outputs: raw.outputs.map(|outs| {
            outs.into_iter()
                .map(|o| RequestedOutput {
                    binary: flag(&o.parameters, "binary_data"),
                    name: o.name,
                })
                .collect()
        }),
        timeout_us,
    })
}

fn flatten<'j>(value: &'j Json, out: &mut Vec<&'j Json>) {
    match value {
        Json::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other),
    }
}

/// JSON values (nested lists flattened) as tensor data of `dtype`.
pub(crate) fn decode_json_values(
    dtype: DType,
    data: &Json,
) -> std::result::Result<TensorData<'static>, String> {
    decode_json(dtype, data, 0)
}

fn decode_json(
    dtype: DType,
    data: &Json,
    count: usize,
) -> std::result::Result<TensorData<'static>, String> {
    let mut flat = Vec::with_capacity(count);
    flatten(data, &mut flat);
    let at = |i: usize, v: &Json, want: &str| format!("element {i} is {v}, not {want}");
    macro_rules! numbers {
        ($variant:ident, $ty:ty, $get:expr, $want:expr) => {{
            let mut out: Vec<$ty> = Vec::with_capacity(flat.len());
            for (i, v) in flat.iter().enumerate() {
                out.push($get(v).ok_or_else(|| at(i, v, $want))?);
            }
            TensorData::$variant(Cow::Owned(out))
        }};
    }
    Ok(match dtype {
        DType::Float32 => numbers!(
            Float32,
            f32,
            |v: &Json| v.as_f64().map(|x| x as f32),
            "a number"
        ),
        DType::Float64 => numbers!(Float64, f64, |v: &Json| v.as_f64(), "a number"),
        DType::Int32 => numbers!(
            Int32,
            i32,
            |v: &Json| v.as_i64().and_then(|x| i32::try_from(x).ok()),
            "an int32"
        ),
        DType::Int64 => numbers!(Int64, i64, |v: &Json| v.as_i64(), "an int64"),
        DType::Bool => numbers!(Bool, bool, |v: &Json| v.as_bool(), "true or false"),
        DType::String => numbers!(
            String,
            String,
            |v: &Json| v.as_str().map(str::to_string),
            "a string"
        ),
    })
}

fn decode_binary(
    dtype: DType,
    bytes: &[u8],
    count: usize,
) -> std::result::Result<TensorData<'static>, String> {
    macro_rules! fixed {
        ($variant:ident, $ty:ty) => {{
            let width = std::mem::size_of::<$ty>();
            if bytes.len() != count * width {
                return Err(format!(
                    "binary_data_size is {} bytes but the shape needs {} {} values ({} bytes)",
                    bytes.len(),
                    count,
                    dtype.protocol_name(),
                    count * width
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
        DType::Float32 => fixed!(Float32, f32),
        DType::Float64 => fixed!(Float64, f64),
        DType::Int32 => fixed!(Int32, i32),
        DType::Int64 => fixed!(Int64, i64),
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
            let mut out = Vec::with_capacity(count);
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
                let text = std::str::from_utf8(&rest[4..4 + n])
                    .map_err(|_| format!("BYTES element {} is not UTF-8 text", out.len()))?;
                out.push(text.to_string());
                rest = &rest[4 + n..];
            }
            TensorData::String(Cow::Owned(out))
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

/// Checks requested output names against the signature.
pub fn check_outputs(
    requested: &Option<Vec<RequestedOutput>>,
    signature: &Signature,
) -> Parsed<()> {
    for r in requested.iter().flatten() {
        if !signature.outputs.iter().any(|s| s.name == r.name) {
            let known: Vec<&str> = signature.outputs.iter().map(|s| s.name.as_str()).collect();
            return bad(format!(
                "output '{}': the model has no output of that name; its outputs are [{}]",
                r.name,
                known.join(", ")
            ));
        }
    }
    Ok(())
}

fn append_binary(data: &TensorData<'_>, out: &mut Vec<u8>) {
    match data {
        TensorData::Float32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Float64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Int32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Int64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Bool(v) => out.extend(v.iter().map(|b| u8::from(*b))),
        TensorData::String(v) => v.iter().for_each(|s| {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }),
    }
}

/// Tensor data as a JSON array (flat, row-major), written straight into `out`.
pub fn write_data_json(data: &TensorData<'_>, out: &mut Vec<u8>) {
    fn list<T: serde::Serialize>(v: &[T], out: &mut Vec<u8>) {
        serde_json::to_writer(&mut *out, v).expect("writing to a Vec cannot fail");
    }
    match data {
        TensorData::Float32(v) => list(v, out),
        TensorData::Float64(v) => list(v, out),
        TensorData::Int32(v) => list(v, out),
        TensorData::Int64(v) => list(v, out),
        TensorData::Bool(v) => list(v, out),
        TensorData::String(v) => list(v, out),
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
    names: &[String],
    outputs: &[OwnedTensor],
    request: &InferRequest,
) -> Encoded {
    let mut head = Vec::with_capacity(256);
    let mut binary: Vec<u8> = Vec::new();
    head.extend_from_slice(b"{\"model_name\":");
    serde_json::to_writer(&mut head, model).expect("vec");
    head.extend_from_slice(format!(",\"model_version\":\"{version}\"").as_bytes());
    if let Some(id) = id {
        head.extend_from_slice(b",\"id\":");
        serde_json::to_writer(&mut head, id).expect("vec");
    }
    head.extend_from_slice(b",\"outputs\":[");
    let mut first = true;
    for (name, tensor) in names.iter().zip(outputs) {
        let binary_wanted = match &request.outputs {
            Some(list) => match list.iter().find(|r| &r.name == name) {
                Some(r) => r.binary,
                None => continue,
            },
            None => request.binary_outputs,
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
        if binary_wanted {
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
    fn bad_requests_say_what_is_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"{", "not a valid inference request"),
            (br#"{"inputs":[]}"#, "no inputs"),
            (
                br#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#,
                "holds 3 elements but the data has 2",
            ),
            (
                br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP16","data":[1]}]}"#,
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
