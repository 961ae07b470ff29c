//! What the server keeps of every answered row so that feedback joins it when the payload
//! log keeps no content: the row's id (`<request id>/<i>` for row `i` of a request of
//! several rows), its correlation key, time, version, route, whether the shadow answered,
//! its outputs and the values of the deployment's segment features (JSON), never its other
//! inputs. Gathered on the payload-log thread from the same records as the tap, and handed
//! to the store thread about once a second.

use std::time::{Duration, Instant};

use pilothouse_registry::Prediction;
use pilothouse_runtime::{OwnedTensor, TensorData};

use crate::paylog::Record;

/// Rows gathered before they are handed over, whatever the interval.
const HAND_OVER_ROWS: usize = 10_000;
/// A row's outputs past this many bytes of JSON are not kept (an embedding, an image):
/// the row is, with empty outputs, so that feedback still joins it.
const MAX_OUTPUT_BYTES: usize = 16 << 10;
const HAND_OVER_EVERY: Duration = Duration::from_secs(1);

pub struct Kept {
    rows: Vec<Prediction>,
    handed_over: Instant,
    /// Outputs too wide to keep were met (said once).
    warned_wide: bool,
}

impl Default for Kept {
    fn default() -> Self {
        Kept {
            rows: Vec::new(),
            handed_over: Instant::now(),
            warned_wide: false,
        }
    }
}

impl Kept {
    /// Keeps the rows of an answered request (nothing of a failed one).
    pub fn add(&mut self, r: &Record) {
        if r.status != 200 || !r.monitoring.predictions {
            return;
        }
        let Some(outputs) = r.outputs.as_deref() else {
            return;
        };
        let rows = outputs
            .first()
            .map_or(0, |t| t.shape.first().copied().unwrap_or(1));
        let segments = &r.monitoring.segments;
        for i in 0..rows {
            let mut out = Vec::with_capacity(64);
            out.push(b'{');
            for (j, (name, t)) in r.output_names.iter().zip(outputs).enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                write(&mut out, name.as_str());
                out.push(b':');
                write_row(&mut out, t, i);
            }
            out.push(b'}');
            if out.len() > MAX_OUTPUT_BYTES {
                if !self.warned_wide {
                    self.warned_wide = true;
                    tracing::warn!(event = "prediction_outputs_not_kept", deployment = %r.deployment, bytes = out.len(), "a row's outputs are too wide to keep for feedback ({} bytes of JSON, at most {MAX_OUTPUT_BYTES}); its id, key and time are kept", out.len());
                }
                out.clear();
                out.extend_from_slice(b"{}");
            }
            let segment_values = (!segments.is_empty()).then(|| {
                let mut values = Vec::with_capacity(32);
                values.push(b'{');
                for (j, feature) in segments.iter().enumerate() {
                    if j > 0 {
                        values.push(b',');
                    }
                    write(&mut values, feature.as_str());
                    values.push(b':');
                    let found = r
                        .inputs
                        .as_deref()
                        .and_then(|inputs| segment_cell(r, inputs, feature, i));
                    match found {
                        Some((t, k)) => write_element(&mut values, &t.data, k),
                        None => values.extend_from_slice(b"null"),
                    }
                }
                values.push(b'}');
                text(values)
            });
            self.rows.push(Prediction {
                deployment: r.deployment.to_string(),
                request_id: if rows == 1 {
                    r.request_id.clone()
                } else {
                    format!("{}/{i}", r.request_id)
                },
                key: r.keys.get(i).cloned(),
                time_us: r.time_us,
                model: r.model.to_string(),
                version: r.version,
                route: r.route.to_string(),
                shadow: r.role == "shadow",
                replica: String::new(),
                outputs: text(out),
                segments: segment_values,
            });
        }
    }

    /// The rows to store now: when a second has passed or many are waiting (or `all`).
    pub fn due(&mut self, all: bool) -> Option<Vec<Prediction>> {
        if self.rows.is_empty() {
            return None;
        }
        if all || self.rows.len() >= HAND_OVER_ROWS || self.handed_over.elapsed() >= HAND_OVER_EVERY
        {
            self.handed_over = Instant::now();
            return Some(std::mem::take(&mut self.rows));
        }
        None
    }
}

/// JSON this module wrote (always UTF-8).
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_default()
}

/// Writes a value as JSON (numbers that are not finite as null, as serde_json does).
fn write<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// Row `i` of a tensor whose first dimension is the rows: one value, or a list of several.
fn write_row(out: &mut Vec<u8>, t: &OwnedTensor, i: usize) {
    let width: usize = t.shape.iter().skip(1).product();
    let start = i.saturating_mul(width);
    if width == 1 {
        write_element(out, &t.data, start);
        return;
    }
    out.push(b'[');
    for j in 0..width {
        if j > 0 {
            out.push(b',');
        }
        write_element(out, &t.data, start.saturating_add(j));
    }
    out.push(b']');
}

/// The tensor and element holding segment feature `feature` in row `i`: an input of that
/// name, or a column of a 2-D input named by the version's feature names (as monitoring
/// names its columns).
fn segment_cell<'a>(
    r: &Record,
    inputs: &'a [OwnedTensor],
    feature: &str,
    i: usize,
) -> Option<(&'a OwnedTensor, usize)> {
    if let Some(j) = r.input_names.iter().position(|n| n == feature) {
        let t = inputs.get(j)?;
        let width: usize = t.shape.iter().skip(1).product();
        return (width == 1).then_some((t, i));
    }
    let names = r.watch.feature_names.as_deref()?;
    let column = names.iter().position(|n| n == feature)?;
    inputs.iter().find_map(|t| {
        let width: usize = t.shape.iter().skip(1).product();
        (t.shape.len() == 2 && width == names.len())
            .then(|| (t, i.saturating_mul(width).saturating_add(column)))
    })
}

/// Element `i` as JSON (null where there is none); 32-bit floats keep their shortest form.
fn write_element(out: &mut Vec<u8>, data: &TensorData<'_>, i: usize) {
    match data {
        TensorData::Float16(v) => v.get(i).map(|x| write(out, &x.to_f32())),
        TensorData::BFloat16(v) => v.get(i).map(|x| write(out, &x.to_f32())),
        TensorData::Float32(v) => v.get(i).map(|x| write(out, x)),
        TensorData::Float64(v) => v.get(i).map(|x| write(out, x)),
        TensorData::Int8(v) => v.get(i).map(|x| write(out, x)),
        TensorData::Int16(v) => v.get(i).map(|x| write(out, x)),
        TensorData::Int32(v) => v.get(i).map(|x| write(out, x)),
        TensorData::Int64(v) => v.get(i).map(|x| write(out, x)),
        TensorData::UInt8(v) => v.get(i).map(|x| write(out, x)),
        TensorData::UInt16(v) => v.get(i).map(|x| write(out, x)),
        TensorData::UInt32(v) => v.get(i).map(|x| write(out, x)),
        TensorData::UInt64(v) => v.get(i).map(|x| write(out, x)),
        TensorData::Bool(v) => v.get(i).map(|x| write(out, x)),
        TensorData::String(v) => v.get(i).map(|x| write(out, x.as_str())),
        TensorData::Bytes(v) => v
            .get(i)
            .map(|x| write(out, String::from_utf8_lossy(x).as_ref())),
    }
    .unwrap_or_else(|| out.extend_from_slice(b"null"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use pilothouse_runtime::Tensor;
    use std::sync::Arc;

    #[test]
    fn rows_keep_their_outputs_ids_keys_and_segments_as_json() {
        let label = Tensor::new(vec![2], TensorData::Int64(vec![1, 0].into())).unwrap();
        let proba = Tensor::new(
            vec![2, 2],
            TensorData::Float32(vec![0.25, 0.75, f32::NAN, 0.1].into()),
        )
        .unwrap();
        let city = Tensor::new(
            vec![2, 1],
            TensorData::String(vec!["oslo".to_string(), "ro\"me".to_string()].into()),
        )
        .unwrap();
        let monitoring = crate::spec::Monitoring {
            segments: vec!["city".into(), "missing".into()],
            ..Default::default()
        };
        let record = Record {
            deployment: "churn".into(),
            request_id: "abc".into(),
            keys: Arc::new(vec!["k0".into(), "k1".into()]),
            time_us: 5,
            model: "churn".into(),
            version: 2,
            role: "shadow",
            route: "v2".into(),
            status: 200,
            latency: std::time::Duration::ZERO,
            queue: std::time::Duration::ZERO,
            inference: std::time::Duration::ZERO,
            batch_rows: 2,
            input_names: Arc::new(vec!["city".into()]),
            inputs: Some(Arc::new(vec![city])),
            output_names: Arc::new(vec!["label".into(), "probabilities".into()]),
            outputs: Some(Arc::new(vec![label, proba])),
            error: None,
            watch: Arc::default(),
            monitoring: Arc::new(monitoring),
        };
        let mut kept = Kept::default();
        kept.add(&record);
        let rows = kept.due(true).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].request_id.as_str(), rows[1].key.as_deref()),
            ("abc/0", Some("k1"))
        );
        assert!(rows[1].shadow && rows[1].version == 2);
        assert_eq!(
            rows[0].outputs,
            r#"{"label":1,"probabilities":[0.25,0.75]}"#
        );
        assert_eq!(rows[1].outputs, r#"{"label":0,"probabilities":[null,0.1]}"#);
        assert_eq!(
            rows[1].segments.as_deref(),
            Some(r#"{"city":"ro\"me","missing":null}"#)
        );
        // a failed request keeps nothing
        kept.add(&Record {
            status: 500,
            ..record
        });
        assert!(kept.due(true).is_none());
    }
}
