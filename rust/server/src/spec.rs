//! Deployment specs: what the `deploy` calls write into the registry and every server replica
//! follows. Plain serde types, stored as JSON.

use serde::{Deserialize, Serialize};

use crate::error::{Result, ServerError};

/// A version of the deployment's model, by alias (followed as it moves) or by number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Alias(String),
    Version(i64),
}

impl Target {
    /// How the payload log and metrics name the route: `@champion` or `v3`.
    pub fn label(&self) -> String {
        match self {
            Target::Alias(a) => format!("@{a}"),
            Target::Version(v) => format!("v{v}"),
        }
    }

    /// Parses `champion`, `@champion`, `3` or `v3`.
    pub fn parse(text: &str) -> Target {
        let t = text.trim();
        let digits = t.strip_prefix('v').unwrap_or(t);
        match digits.parse::<i64>() {
            Ok(v) if v > 0 => Target::Version(v),
            _ => Target::Alias(t.trim_start_matches('@').to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub target: Target,
    pub weight: f64,
}

/// Dynamic batching: requests are coalesced up to `max_batch_size` rows, waiting at most
/// `max_queue_delay_us` after the first one for more (0: take only what is already queued).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Batching {
    pub max_batch_size: usize,
    pub max_queue_delay_us: u64,
    /// Requests waiting beyond this answer 503 with Retry-After.
    pub queue_capacity: usize,
}

impl Default for Batching {
    fn default() -> Self {
        Batching {
            max_batch_size: 64,
            max_queue_delay_us: 0,
            queue_capacity: 1024,
        }
    }
}

/// What the payload log keeps for a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogPolicy {
    /// Keep inputs and outputs; false keeps only ids, versions, routes, status and latency.
    pub payloads: bool,
    /// Delete segments older than this many days (None: keep forever).
    pub retention_days: Option<u32>,
    /// Inputs never written.
    pub drop: Vec<String>,
    /// Inputs written as a SHA-256 of their values (joinable, not readable).
    pub hash: Vec<String>,
}

impl Default for LogPolicy {
    fn default() -> Self {
        LogPolicy {
            payloads: true,
            retention_days: Some(30),
            drop: Vec::new(),
            hash: Vec::new(),
        }
    }
}

/// What serving does with a request whose inputs fail the data-quality checks against the
/// version's reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Validation {
    /// Count the failures in the monitoring windows only.
    #[default]
    Observe,
    /// Count them, and name the failed checks in the response's `quality` parameter.
    Flag,
    /// Answer 400 naming the column and the check.
    Reject,
}

/// Live monitoring of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Monitoring {
    /// Profile traffic in windows and store them (on by default).
    pub enabled: bool,
    /// The length of a window, in seconds.
    pub window_s: u64,
    pub validation: Validation,
    /// Also export each feature's drift as Prometheus gauges (a series per column: off by
    /// default, so that the metrics' label count stays bounded).
    pub feature_metrics: bool,
    /// Keep each answered row's id, correlation key, time, version and outputs (not its
    /// inputs) for the log's retention, so that feedback joins it (on by default).
    pub predictions: bool,
    /// Input features whose value is kept with each prediction, so that performance can be
    /// read per segment (a feature's categories).
    pub segments: Vec<String>,
}

impl Default for Monitoring {
    fn default() -> Self {
        Monitoring {
            enabled: true,
            window_s: 60,
            validation: Validation::Observe,
            feature_metrics: false,
            predictions: true,
            segments: Vec::new(),
        }
    }
}

/// Segment features kept per prediction, at most.
const MAX_SEGMENTS: usize = 8;

const MAX_WINDOW_S: u64 = 86_400;

/// One deployment: how requests to `/v2/models/{name}` reach versions of `model`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    pub model: String,
    pub routes: Vec<Route>,
    #[serde(default)]
    pub shadow: Option<Target>,
    /// Requests with the same value of this header always take the same route.
    #[serde(default)]
    pub sticky_header: Option<String>,
    #[serde(default)]
    pub batching: Batching,
    /// A request not answered within this many milliseconds gets 504.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub log: LogPolicy,
    #[serde(default)]
    pub monitoring: Monitoring,
}

fn default_timeout() -> u64 {
    30_000
}

const MAX_BATCH_SIZE: usize = 1 << 20;
const MAX_QUEUE_CAPACITY: usize = 1 << 20;
const MAX_QUEUE_DELAY_US: u64 = 10_000_000;
const MAX_TIMEOUT_MS: u64 = 3_600_000;
const MAX_WEIGHT: f64 = 1e9;

impl DeploymentSpec {
    pub fn from_json(value: &serde_json::Value) -> Result<Self> {
        let spec: DeploymentSpec =
            serde_path_to_error::deserialize(value.clone()).map_err(|e| {
                match e.path().to_string().as_str() {
                    "." => ServerError::Config(format!("deployment spec: {}", e.inner())),
                    path => ServerError::Config(format!("deployment spec: {path}: {}", e.inner())),
                }
            })?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("specs serialise")
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ServerError::Config(m));
        if self.routes.is_empty() {
            return bad("a deployment needs at least one route (an alias or a version)".into());
        }
        for r in &self.routes {
            if !(r.weight.is_finite() && (0.0..=MAX_WEIGHT).contains(&r.weight)) {
                return bad(format!(
                    "route {}: the weight must be a number from 0 to {MAX_WEIGHT}, got {}",
                    r.target.label(),
                    r.weight
                ));
            }
        }
        if self.routes.iter().map(|r| r.weight).sum::<f64>() <= 0.0 {
            return bad(
                "the route weights add up to 0: give at least one a positive weight".into(),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for r in &self.routes {
            if !seen.insert(&r.target) {
                return bad(format!("route {} is listed twice", r.target.label()));
            }
        }
        // Upper bounds too: the queue is allocated by its capacity and a deadline is "now +
        // timeout", so a number from a spec must not be able to exhaust memory or overflow.
        let b = &self.batching;
        if !(1..=MAX_BATCH_SIZE).contains(&b.max_batch_size) {
            return bad(format!(
                "batching.max_batch_size must be between 1 and {MAX_BATCH_SIZE} (1 switches batching off), got {}",
                b.max_batch_size
            ));
        }
        if !(1..=MAX_QUEUE_CAPACITY).contains(&b.queue_capacity) {
            return bad(format!(
                "batching.queue_capacity must be between 1 and {MAX_QUEUE_CAPACITY}, got {}",
                b.queue_capacity
            ));
        }
        if b.max_queue_delay_us > MAX_QUEUE_DELAY_US {
            return bad(format!(
                "batching.max_queue_delay_us must be at most {MAX_QUEUE_DELAY_US} (10 s), got {}",
                b.max_queue_delay_us
            ));
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            return bad(format!(
                "timeout_ms must be between 1 and {MAX_TIMEOUT_MS} (one hour), got {}",
                self.timeout_ms
            ));
        }
        let m = &self.monitoring;
        if !(1..=MAX_WINDOW_S).contains(&m.window_s) || 86_400 % m.window_s != 0 {
            return bad(format!(
                "monitoring.window_s must divide a day (1 s to {MAX_WINDOW_S} s: 60, 300, 3600, ...) so that windows line up across replicas and days, got {}",
                m.window_s
            ));
        }
        if m.segments.len() > MAX_SEGMENTS
            || m.segments.iter().any(|f| f.is_empty() || f.len() > 200)
        {
            return bad(format!(
                "monitoring.segments names at most {MAX_SEGMENTS} input features (each 1 to 200 bytes), got {:?}",
                m.segments
            ));
        }
        if let Some(f) = m
            .segments
            .iter()
            .find(|f| self.log.drop.contains(f) || self.log.hash.contains(f))
        {
            return bad(format!(
                "monitoring.segments names '{f}', which the log policy drops or hashes: its values are not kept anywhere"
            ));
        }
        if let Some(h) = &self.sticky_header {
            if h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return bad(format!(
                    "sticky_header '{h}' is not a valid HTTP header name"
                ));
            }
        }
        Ok(())
    }

    /// Every version reference the deployment needs loaded: routes, then the shadow.
    pub fn targets(&self) -> Vec<Target> {
        let mut out: Vec<Target> = self.routes.iter().map(|r| r.target.clone()).collect();
        if let Some(s) = &self.shadow {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_label() {
        assert_eq!(Target::parse("champion"), Target::Alias("champion".into()));
        assert_eq!(Target::parse("@champion"), Target::Alias("champion".into()));
        assert_eq!(Target::parse("3"), Target::Version(3));
        assert_eq!(Target::parse("v12"), Target::Version(12));
        assert_eq!(Target::Version(3).label(), "v3");
    }

    #[test]
    fn specs_round_trip_and_validate() {
        let spec = DeploymentSpec {
            model: "churn".into(),
            routes: vec![
                Route {
                    target: Target::parse("champion"),
                    weight: 0.9,
                },
                Route {
                    target: Target::parse("challenger"),
                    weight: 0.1,
                },
            ],
            shadow: None,
            sticky_header: Some("X-User".into()),
            batching: Batching::default(),
            timeout_ms: 1000,
            log: LogPolicy::default(),
            monitoring: Monitoring::default(),
        };
        let back = DeploymentSpec::from_json(&spec.to_json()).unwrap();
        assert_eq!(back, spec);
        let mut zero = spec.clone();
        zero.routes.iter_mut().for_each(|r| r.weight = 0.0);
        assert!(zero
            .validate()
            .unwrap_err()
            .to_string()
            .contains("add up to 0"));
        let unknown = serde_json::json!({"model": "m", "routes": [], "colour": 1});
        assert!(DeploymentSpec::from_json(&unknown)
            .unwrap_err()
            .to_string()
            .contains("colour"));
    }
}
