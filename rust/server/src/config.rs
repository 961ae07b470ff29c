//! Server configuration: a TOML file, then flags (given as a JSON object of the same keys) on
//! top. Every key is explained in `pilothouse serve --help` and docs/serving.md.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Result, ServerError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; 127.0.0.1 unless you mean to expose the server.
    pub host: String,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// Registry URI (sqlite:///... or postgresql://...).
    pub registry: String,
    /// Artifact folder for registries that do not name one (PostgreSQL without ?artifacts=).
    pub artifacts: Option<PathBuf>,
    /// Where the payload log's Parquet segments go (default: `inference-log` beside the
    /// registry's artifact folder).
    pub log_dir: Option<PathBuf>,
    /// Requests with a larger body get 413.
    pub max_body_bytes: usize,
    /// How often the registry is read for deployment and alias changes.
    pub poll_interval_ms: u64,
    /// Buffered payload-log rows are written to a Parquet segment at least this often.
    pub flush_interval_ms: u64,
    /// "text" or "json" (one JSON object per event).
    pub log_format: String,
    /// "error", "warn", "info" or "debug".
    pub log_level: String,
    /// Threads for HTTP (0: one per core).
    pub http_threads: usize,
    /// Inference threads (and ONNX Runtime sessions) per loaded version (0: one per core).
    pub inference_threads: usize,
    /// How long `stop` / SIGTERM waits for requests in flight.
    pub shutdown_timeout_s: u64,
    /// Connections served at once; more wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// A client that has not sent a request's headers within this time is disconnected.
    pub header_read_timeout_ms: u64,
    /// A request whose body has not fully arrived within this time gets 408.
    pub body_read_timeout_ms: u64,
    /// A client that reads none of its answer for this long is disconnected.
    pub write_timeout_ms: u64,
    /// Request bodies held at once (read, queued or running); past it, 503 + Retry-After.
    pub max_inflight_bytes: usize,
    /// Payload-log records waiting for the disk, in bytes; what happens past it is
    /// `log_overflow`.
    pub log_buffer_bytes: usize,
    /// "block": refuse new requests (503 + Retry-After) until the log catches up, so no
    /// answered request is ever missing from the log; "drop": answer, drop the record,
    /// count it in `pilothouse_payload_log_dropped_total` and warn.
    pub log_overflow: String,
    /// This server's name in stored monitoring windows (default: host name, port and
    /// process id, so that no two processes share one).
    pub replica: Option<String>,
    /// Monitoring windows shorter than an hour are kept this many days (hour rollups stay).
    pub monitor_keep_fine_days: u32,
    /// Hour windows are kept this many days (day rollups stay forever).
    pub monitor_keep_hour_days: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "127.0.0.1".into(),
            port: 8000,
            registry: String::new(),
            artifacts: None,
            log_dir: None,
            max_body_bytes: 16 * 1024 * 1024,
            poll_interval_ms: 250,
            flush_interval_ms: 1000,
            log_format: "text".into(),
            log_level: "info".into(),
            http_threads: 0,
            inference_threads: 0,
            shutdown_timeout_s: 30,
            max_connections: 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            write_timeout_ms: 30_000,
            max_inflight_bytes: 512 * 1024 * 1024,
            log_buffer_bytes: 256 * 1024 * 1024,
            log_overflow: "block".into(),
            replica: None,
            monitor_keep_fine_days: 7,
            monitor_keep_hour_days: 90,
        }
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Config {
    /// The file's settings (if any), then `overrides` (a JSON object of the same keys).
    pub fn load(file: Option<&str>, overrides: &serde_json::Value) -> Result<Config> {
        let mut merged = serde_json::to_value(Config::default()).expect("serialisable");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ServerError::Config(format!("cannot read {path}: {e}")))?;
            let table: toml::Table =
                toml::from_str(&text).map_err(|e| ServerError::Config(format!("{path}: {e}")))?;
            let value = serde_json::to_value(table).expect("TOML values are JSON values");
            merge(&mut merged, &value);
        }
        merge(&mut merged, overrides);
        let config: Config = serde_json::from_value(merged).map_err(|e| {
            ServerError::Config(match file {
                Some(path) => format!("{path} or flags: {e}"),
                None => e.to_string(),
            })
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ServerError::Config(m));
        if self.registry.is_empty() {
            return bad(
                "no registry: pass --registry sqlite:///path/registry.db (or postgresql://...)"
                    .into(),
            );
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return bad(format!(
                "log_format must be \"text\" or \"json\", got {:?}",
                self.log_format
            ));
        }
        if !matches!(
            self.log_level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            return bad(format!(
                "log_level must be one of error, warn, info, debug, got {:?}",
                self.log_level
            ));
        }
        if self.max_body_bytes < 1024 {
            return bad(format!(
                "max_body_bytes must be at least 1024, got {}",
                self.max_body_bytes
            ));
        }
        if self.max_connections == 0 || self.max_connections > 1 << 20 {
            return bad(format!(
                "max_connections must be between 1 and 1048576, got {}",
                self.max_connections
            ));
        }
        for (key, ms) in [
            ("poll_interval_ms", self.poll_interval_ms),
            ("flush_interval_ms", self.flush_interval_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("write_timeout_ms", self.write_timeout_ms),
        ] {
            if !(1..=3_600_000).contains(&ms) {
                return bad(format!(
                    "{key} must be between 1 and 3600000 (one hour), got {ms}"
                ));
            }
        }
        if self.max_inflight_bytes < self.max_body_bytes {
            return bad(format!(
                "max_inflight_bytes ({}) must be at least max_body_bytes ({}), or no request of the largest size could ever be served",
                self.max_inflight_bytes, self.max_body_bytes
            ));
        }
        if self.log_buffer_bytes < 1024 * 1024 {
            return bad(format!(
                "log_buffer_bytes must be at least 1048576 (1 MiB), got {}",
                self.log_buffer_bytes
            ));
        }
        if !matches!(self.log_overflow.as_str(), "block" | "drop") {
            return bad(format!(
                "log_overflow must be \"block\" (refuse requests while the log is behind) or \"drop\" (drop records, counted), got {:?}",
                self.log_overflow
            ));
        }
        if self.shutdown_timeout_s > 3600 {
            return bad(format!(
                "shutdown_timeout_s must be at most 3600, got {}",
                self.shutdown_timeout_s
            ));
        }
        Ok(())
    }

    pub fn http_threads(&self) -> usize {
        if self.http_threads == 0 {
            cores()
        } else {
            self.http_threads
        }
    }

    pub fn inference_threads(&self) -> usize {
        if self.inference_threads == 0 {
            cores()
        } else {
            self.inference_threads
        }
    }
}

fn merge(base: &mut serde_json::Value, top: &serde_json::Value) {
    if let (Some(base), Some(top)) = (base.as_object_mut(), top.as_object()) {
        for (k, v) in top {
            if !v.is_null() {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let dir = std::env::temp_dir().join(format!("ph-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pilothouse.toml");
        std::fs::write(
            &path,
            "port = 9001\nregistry = \"sqlite:///tmp/r.db\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let c = Config::load(
            Some(path.to_str().unwrap()),
            &serde_json::json!({"port": 9002}),
        )
        .unwrap();
        assert_eq!(
            (c.port, c.log_format.as_str(), c.host.as_str()),
            (9002, "json", "127.0.0.1")
        );
        std::fs::write(&path, "prot = 1\nregistry = \"sqlite:///tmp/r.db\"\n").unwrap();
        let e = Config::load(Some(path.to_str().unwrap()), &serde_json::json!({})).unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
