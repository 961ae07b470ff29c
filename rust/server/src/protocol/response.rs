//! Answers: inference responses (JSON, with binary data where asked or needed), model
//! metadata, and Triton's classification extension.

use std::borrow::Cow;

use pilothouse_runtime::{
    Labels, OutputKind, OwnedTensor, Signature, Tensor, TensorData, TensorSpec,
};
use serde_json::{json, Value as Json};

use super::binary::append_binary;
use super::*;

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
    quality: Option<&str>,
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
    if let Some(failed) = quality {
        head.extend_from_slice(b",\"parameters\":{\"quality\":");
        serde_json::to_writer(&mut head, failed).expect("vec");
        head.push(b'}');
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
