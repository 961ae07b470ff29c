//! What the server keeps of every answered row so that feedback joins it when the payload
//! log keeps no content: the row's id (`<request id>/<i>` for row `i` of a request of
//! several rows), its correlation key, time, version, route, whether the shadow answered,
//! its outputs and the values of the deployment's segment features (JSON), never its other
//! inputs. Gathered on the payload-log thread from the same records as the tap, and handed
//! to the store thread about once a second.

use std::time::{Duration, Instant};

use pilothouse_registry::Prediction;
use pilothouse_runtime::{OwnedTensor, TensorData};
use serde_json::{Map, Value as Json};

use crate::paylog::Record;

/// Rows gathered before they are handed over, whatever the interval.
const HAND_OVER_ROWS: usize = 10_000;
const HAND_OVER_EVERY: Duration = Duration::from_secs(1);

pub struct Kept {
    rows: Vec<Prediction>,
    handed_over: Instant,
}

impl Default for Kept {
    fn default() -> Self {
        Kept {
            rows: Vec::new(),
            handed_over: Instant::now(),
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
            let mut out = Map::new();
            for (name, t) in r.output_names.iter().zip(outputs) {
                out.insert(name.clone(), row_value(t, i));
            }
            let segment_values = if segments.is_empty() {
                None
            } else {
                let mut values = Map::new();
                for feature in segments {
                    let v = r
                        .inputs
                        .as_deref()
                        .and_then(|inputs| segment_value(r, inputs, feature, i))
                        .unwrap_or(Json::Null);
                    values.insert(feature.clone(), v);
                }
                Some(Json::Object(values).to_string())
            };
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
                outputs: Json::Object(out).to_string(),
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

/// Row `i` of a tensor whose first dimension is the rows: one value, or a list of several.
fn row_value(t: &OwnedTensor, i: usize) -> Json {
    let width: usize = t.shape.iter().skip(1).product();
    let start = i.saturating_mul(width);
    if width == 1 {
        return element(&t.data, start);
    }
    Json::Array(
        (start..start.saturating_add(width))
            .map(|j| element(&t.data, j))
            .collect(),
    )
}

/// The value of segment feature `feature` in row `i`: an input of that name, or a column
/// of a 2-D input named by the version's feature names (as monitoring names its columns).
fn segment_value(r: &Record, inputs: &[OwnedTensor], feature: &str, i: usize) -> Option<Json> {
    if let Some(j) = r.input_names.iter().position(|n| n == feature) {
        let t = inputs.get(j)?;
        let width: usize = t.shape.iter().skip(1).product();
        return (width == 1).then(|| element(&t.data, i));
    }
    let names = r.watch.feature_names.as_deref()?;
    let column = names.iter().position(|n| n == feature)?;
    inputs.iter().find_map(|t| {
        let width: usize = t.shape.iter().skip(1).product();
        (t.shape.len() == 2 && width == names.len())
            .then(|| element(&t.data, i.saturating_mul(width).saturating_add(column)))
    })
}

fn element(data: &TensorData<'_>, i: usize) -> Json {
    fn float(x: f64) -> Json {
        serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)
    }
    match data {
        TensorData::Float16(v) => v.get(i).map_or(Json::Null, |x| float(x.to_f64())),
        TensorData::BFloat16(v) => v.get(i).map_or(Json::Null, |x| float(x.to_f64())),
        TensorData::Float32(v) => v.get(i).map_or(Json::Null, |x| float(f64::from(*x))),
        TensorData::Float64(v) => v.get(i).map_or(Json::Null, |x| float(*x)),
        TensorData::Int8(v) => v.get(i).map_or(Json::Null, |x| Json::from(*x)),
        TensorData::Int16(v) => v.get(i).map_or(Json::Null, |x| Json::from(*x)),
        TensorData::Int32(v) => v.get(i).map_or(Json::Null, |x| Json::from(*x)),
        TensorData::Int64(v) => v.get(i).map_or(Json::Null, |x| Json::from(*x)),
        TensorData::UInt8(v) => v.get(i).map_or(Json::Null, |x| Json::from(*x)),
        TensorData::UInt16(v) => v.get(i).map_or(Json::Null, |x| Json::from(*x)),
        TensorData::UInt32(v) => v.get(i).map_or(Json::Null, |x| Json::from(*x)),
        TensorData::UInt64(v) => v.get(i).map_or(Json::Null, |x| Json::from(*x)),
        TensorData::Bool(v) => v.get(i).map_or(Json::Null, |x| Json::from(*x)),
        TensorData::String(v) => v.get(i).map_or(Json::Null, |x| Json::from(x.as_str())),
        TensorData::Bytes(v) => v.get(i).map_or(Json::Null, |x| {
            Json::from(String::from_utf8_lossy(x).into_owned())
        }),
    }
}
