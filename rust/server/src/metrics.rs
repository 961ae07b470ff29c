//! Prometheus metrics, served at `/metrics` in the text exposition format. Names follow the
//! Prometheus conventions: base units (seconds), `_total` for counters.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    pub deployment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub deployment: String,
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub deployment: String,
    pub version: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MonitorLabels {
    pub deployment: String,
    pub route: String,
}

/// One column of a deployment's latest window (opt-in: `monitoring.feature_metrics`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    pub deployment: String,
    pub route: String,
    /// "inputs" or "outputs".
    pub side: String,
    pub column: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 10 µs to ~20 s
    Histogram::new(exponential_buckets(1e-5, 2.0, 22))
}

fn batch_sizes() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 11))
}

fn load_times() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: HistogramFamily<DeploymentLabels>,
    pub queue_seconds: HistogramFamily<VersionLabels>,
    pub inference_seconds: HistogramFamily<VersionLabels>,
    pub batch_size: HistogramFamily<VersionLabels>,
    pub queue_depth: Family<VersionLabels, Gauge>,
    pub in_flight: Family<DeploymentLabels, Gauge>,
    pub load_seconds: HistogramFamily<VersionLabels>,
    pub load_failures: Family<VersionLabels, Counter>,
    pub shadow_dropped: Family<DeploymentLabels, Counter>,
    pub log_rows: Counter,
    pub log_dropped: Counter,
    pub log_errors: Counter,
    pub log_buffered_bytes: Gauge,
    pub drift_share: Family<MonitorLabels, FloatGauge>,
    pub prediction_drift_share: Family<MonitorLabels, FloatGauge>,
    pub feature_drift_statistic: Family<FeatureLabels, FloatGauge>,
    pub feature_drifted: Family<FeatureLabels, Gauge>,
    pub quality_failures: Family<MonitorLabels, Counter>,
    pub monitor_windows_dropped: Counter,
    pub predictions_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::default();
        registry.register(
            "pilothouse_requests",
            "Inference requests answered, by deployment, version and HTTP status",
            requests.clone(),
        );
        let request_seconds = HistogramFamily::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "pilothouse_request_duration_seconds",
            "Time from a request's arrival to its answer",
            request_seconds.clone(),
        );
        let queue_seconds = HistogramFamily::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "pilothouse_queue_duration_seconds",
            "Time a request waited in the batching queue",
            queue_seconds.clone(),
        );
        let inference_seconds = HistogramFamily::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "pilothouse_inference_duration_seconds",
            "Time of one ONNX Runtime call (one batch)",
            inference_seconds.clone(),
        );
        let batch_size = HistogramFamily::new_with_constructor(batch_sizes as fn() -> Histogram);
        registry.register(
            "pilothouse_batch_size",
            "Requests coalesced into one ONNX Runtime call",
            batch_size.clone(),
        );
        let queue_depth = Family::default();
        registry.register(
            "pilothouse_queue_depth",
            "Requests waiting in the batching queue",
            queue_depth.clone(),
        );
        let in_flight = Family::default();
        registry.register(
            "pilothouse_in_flight_requests",
            "Inference requests being served",
            in_flight.clone(),
        );
        let load_seconds = HistogramFamily::new_with_constructor(load_times as fn() -> Histogram);
        registry.register(
            "pilothouse_model_load_duration_seconds",
            "Time to load and warm up a model version",
            load_seconds.clone(),
        );
        let load_failures = Family::default();
        registry.register(
            "pilothouse_model_load_failures",
            "Model versions that failed to load",
            load_failures.clone(),
        );
        let shadow_dropped = Family::default();
        registry.register(
            "pilothouse_shadow_dropped",
            "Shadow copies not run because the shadow version was busy or refused the input",
            shadow_dropped.clone(),
        );
        let log_rows = Counter::default();
        registry.register(
            "pilothouse_payload_log_rows",
            "Rows written to the payload log",
            log_rows.clone(),
        );
        let log_dropped = Counter::default();
        registry.register(
            "pilothouse_payload_log_dropped",
            "Payload-log rows dropped because the writer could not keep up or the disk failed",
            log_dropped.clone(),
        );
        let log_errors = Counter::default();
        registry.register(
            "pilothouse_payload_log_errors",
            "Failed attempts to write a payload-log segment",
            log_errors.clone(),
        );
        let log_buffered_bytes = Gauge::default();
        registry.register(
            "pilothouse_payload_log_buffered_bytes",
            "Bytes of payload-log records waiting to be written (bounded by log_buffer_bytes)",
            log_buffered_bytes.clone(),
        );
        let drift_share = Family::default();
        registry.register(
            "pilothouse_monitor_drift_share",
            "Share of input features that drifted from the reference in the latest closed window",
            drift_share.clone(),
        );
        let prediction_drift_share = Family::default();
        registry.register(
            "pilothouse_monitor_prediction_drift_share",
            "Share of outputs that drifted from the reference outputs in the latest closed window",
            prediction_drift_share.clone(),
        );
        let feature_drift_statistic = Family::default();
        registry.register(
            "pilothouse_monitor_feature_drift_statistic",
            "Each column's drift statistic against the reference in the latest closed window (with monitoring.feature_metrics)",
            feature_drift_statistic.clone(),
        );
        let feature_drifted = Family::default();
        registry.register(
            "pilothouse_monitor_feature_drifted",
            "1 when the column drifted from the reference in the latest closed window, else 0 (with monitoring.feature_metrics)",
            feature_drifted.clone(),
        );
        let quality_failures = Family::default();
        registry.register(
            "pilothouse_monitor_quality_failures",
            "Values that failed a data-quality check against the reference (column x check)",
            quality_failures.clone(),
        );
        let monitor_windows_dropped = Counter::default();
        registry.register(
            "pilothouse_monitor_windows_dropped",
            "Closed monitoring windows dropped because the registry stayed unreachable",
            monitor_windows_dropped.clone(),
        );
        let predictions_dropped = Counter::default();
        registry.register(
            "pilothouse_predictions_dropped",
            "Answered rows kept for feedback that were dropped because the registry stayed unreachable",
            predictions_dropped.clone(),
        );
        Metrics {
            registry,
            requests,
            request_seconds,
            queue_seconds,
            inference_seconds,
            batch_size,
            queue_depth,
            in_flight,
            load_seconds,
            load_failures,
            shadow_dropped,
            log_rows,
            log_dropped,
            log_errors,
            log_buffered_bytes,
            drift_share,
            prediction_drift_share,
            feature_drift_statistic,
            feature_drifted,
            quality_failures,
            predictions_dropped,
            monitor_windows_dropped,
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Handles for one loaded version, created once so the hot path touches no label maps.
#[derive(Clone)]
pub struct VersionMetrics {
    /// Triton-style statistics (`/v2/models/{m}/stats`).
    pub stats: std::sync::Arc<crate::stats::VersionStats>,
    pub ok: Counter,
    pub queue_seconds: Histogram,
    pub inference_seconds: Histogram,
    pub batch_size: Histogram,
    pub queue_depth: Gauge,
}

impl VersionMetrics {
    pub fn new(metrics: &Metrics, deployment: &str, version: i64) -> Self {
        let labels = VersionLabels {
            deployment: deployment.to_string(),
            version: version.to_string(),
        };
        VersionMetrics {
            stats: Default::default(),
            ok: metrics.requests.get_or_create_owned(&RequestLabels {
                deployment: deployment.to_string(),
                version: version.to_string(),
                status: "200".into(),
            }),
            queue_seconds: metrics.queue_seconds.get_or_create_owned(&labels),
            inference_seconds: metrics.inference_seconds.get_or_create_owned(&labels),
            batch_size: metrics.batch_size.get_or_create_owned(&labels),
            queue_depth: metrics.queue_depth.get_or_create_owned(&labels),
        }
    }
}
