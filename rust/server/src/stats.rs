//! Triton's statistics and model-configuration extensions: per loaded version, counters kept
//! with relaxed atomics on the request path (a few adds per request), and the JSON of
//! `GET /v2/models[/{m}[/versions/{v}]]/stats` and `GET /v2/models/{m}[/versions/{v}]/config`
//! in the shapes tritonclient reads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use pilothouse_runtime::{DType, Signature};
use serde_json::{json, Value as Json};

/// Distinct batch sizes `batch_stats` keeps per version.
const MAX_BATCH_SIZES: usize = 256;

/// A count and the nanoseconds it took, as Triton reports each statistic.
#[derive(Default)]
struct Counted {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Counted {
    fn add(&self, n: u64, took: Duration) {
        self.count.fetch_add(n, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn json(&self) -> Json {
        json!({"count": self.count.load(Ordering::Relaxed), "ns": self.ns.load(Ordering::Relaxed)})
    }
}

/// What one loaded version has done since it was loaded.
#[derive(Default)]
pub struct VersionStats {
    success: Counted,
    fail: Counted,
    queue: Counted,
    compute_infer: Counted,
    /// Rows inferred (Triton's inference_count counts batch items).
    inference_count: AtomicU64,
    /// Model runs (a batch of several requests is one).
    execution_count: AtomicU64,
    last_inference_ms: AtomicU64,
    /// Batch size (rows) -> runs of that size and their time.
    batches: Mutex<BTreeMap<usize, (u64, u64)>>,
}

impl VersionStats {
    /// One model run over `rows` rows from `requests` requests.
    pub fn executed(&self, rows: usize, requests: usize, took: Duration) {
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        self.inference_count
            .fetch_add(rows as u64, Ordering::Relaxed);
        self.compute_infer.add(requests as u64, took);
        self.last_inference_ms
            .store(crate::now_us().max(0) as u64 / 1000, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let mut batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        // Rows come from clients: at most this many distinct sizes are kept.
        if batches.len() < MAX_BATCH_SIZES || batches.contains_key(&rows) {
            let entry = batches.entry(rows).or_default();
            entry.0 += 1;
            entry.1 = entry.1.saturating_add(ns);
        }
    }

    pub fn queued(&self, took: Duration) {
        self.queue.add(1, took);
    }

    /// A request answered (ok) or refused/failed after it reached this version.
    pub fn answered(&self, ok: bool, took: Duration) {
        if ok {
            self.success.add(1, took)
        } else {
            self.fail.add(1, took)
        }
    }

    /// This version's entry of `model_stats`.
    pub fn json(&self, name: &str, version: i64) -> Json {
        let zero = json!({"count": 0, "ns": 0});
        let batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let batch_stats: Vec<Json> = batches
            .iter()
            .map(|(size, (count, ns))| {
                json!({"batch_size": size, "compute_input": zero, "compute_output": zero,
                       "compute_infer": {"count": count, "ns": ns}})
            })
            .collect();
        json!({
            "name": name,
            "version": version.to_string(),
            "last_inference": self.last_inference_ms.load(Ordering::Relaxed),
            "inference_count": self.inference_count.load(Ordering::Relaxed),
            "execution_count": self.execution_count.load(Ordering::Relaxed),
            "inference_stats": {
                "success": self.success.json(),
                "fail": self.fail.json(),
                "queue": self.queue.json(),
                "compute_input": zero,
                "compute_infer": self.compute_infer.json(),
                "compute_output": zero,
                "cache_hit": zero,
                "cache_miss": zero,
            },
            "batch_stats": batch_stats,
        })
    }
}

/// Triton's configuration data type name: `TYPE_` and the protocol's name, except that
/// BYTES is `TYPE_STRING` there.
fn config_type(dtype: DType) -> String {
    match dtype {
        DType::String => "TYPE_STRING".to_string(),
        other => format!("TYPE_{}", other.protocol_name()),
    }
}

/// What the configuration says about one loaded version.
pub struct ConfigView<'a> {
    pub name: &'a str,
    pub versions: &'a [i64],
    pub signature: &'a Signature,
    /// Rows a batch may hold (1: batching off).
    pub max_batch_rows: usize,
    pub max_queue_delay: Duration,
    pub threads: usize,
}

/// `GET /v2/models/{m}[/versions/{v}]/config`: the model configuration as Triton prints it.
/// With batching on, `max_batch_size` is the batch limit and `dims` leave out the batch
/// dimension; with it off (`max_batch_size` 0), `dims` are the full shape.
pub fn config_json(view: &ConfigView<'_>) -> Json {
    let batching = view.max_batch_rows > 1;
    let dims = |shape: &[Option<i64>]| -> Vec<i64> {
        let skip = usize::from(batching && !shape.is_empty());
        shape[skip..].iter().map(|d| d.unwrap_or(-1)).collect()
    };
    let inputs: Vec<Json> = view
        .signature
        .inputs
        .iter()
        .map(|s| {
            json!({"name": s.name, "data_type": config_type(s.dtype), "format": "FORMAT_NONE",
                   "dims": dims(&s.shape), "is_shape_tensor": false, "allow_ragged_batch": false,
                   "optional": false})
        })
        .collect();
    let outputs: Vec<Json> = view
        .signature
        .outputs
        .iter()
        .map(|s| {
            json!({"name": s.name, "data_type": config_type(s.dtype), "dims": dims(&s.shape),
                   "label_filename": "", "is_shape_tensor": false})
        })
        .collect();
    let mut config = json!({
        "name": view.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "version_policy": {"specific": {"versions": view.versions}},
        "max_batch_size": if batching { view.max_batch_rows } else { 0 },
        "input": inputs,
        "output": outputs,
        "instance_group": [{"name": format!("{}_cpu", view.name), "kind": "KIND_CPU",
                            "count": view.threads, "gpus": []}],
        "default_model_filename": "model.onnx",
    });
    if batching {
        config["dynamic_batching"] = json!({
            "preferred_batch_size": [],
            "max_queue_delay_microseconds": u64::try_from(view.max_queue_delay.as_micros()).unwrap_or(u64::MAX),
            "preserve_ordering": false,
        });
    }
    config
}
