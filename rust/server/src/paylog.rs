//! The payload log: every answered request (and every shadow run) as one row, buffered in
//! memory and flushed as Parquet segments to `<root>/<deployment>/<YYYY-MM-DD>/<HH>/`, with
//! per-deployment retention and redaction. The writer and the reader live here together so
//! the layout has one owner.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{
    Float64Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Datelike, Timelike, Utc};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use pilothouse_runtime::OwnedTensor;
use sha2::{Digest, Sha256};

use crate::error::{Result, ServerError};
use crate::metrics::Metrics;
use crate::protocol::write_data_json;
use crate::spec::LogPolicy;

const HOUR_US: i64 = 3_600_000_000;
/// Rows buffered before a flush is forced, whatever the interval.
const FLUSH_ROWS: usize = 50_000;
/// Rows kept for a retry while the disk refuses writes; older ones are dropped and counted.
const MAX_BUFFERED: usize = 1_000_000;

/// One request (or shadow run) as the server saw it.
pub struct Record {
    pub deployment: Arc<str>,
    pub request_id: String,
    pub time_us: i64,
    pub model: Arc<str>,
    pub version: i64,
    pub role: &'static str,
    pub route: Arc<str>,
    pub status: u16,
    pub latency: Duration,
    pub queue: Duration,
    pub inference: Duration,
    pub batch_rows: usize,
    pub input_names: Arc<Vec<String>>,
    pub inputs: Option<Arc<Vec<OwnedTensor>>>,
    pub output_names: Arc<Vec<String>>,
    pub outputs: Option<Arc<Vec<OwnedTensor>>>,
    pub error: Option<String>,
}

enum Message {
    Record(Box<Record>),
    Policy(String, LogPolicy),
    Flush(std::sync::mpsc::Sender<()>),
    Shutdown,
}

/// The handle the server holds; cheap to clone.
#[derive(Clone)]
pub struct LogSender {
    tx: Sender<Message>,
    metrics: Arc<Metrics>,
}

impl LogSender {
    /// Queues a record; never blocks (a full buffer drops the row and counts it).
    pub fn send(&self, record: Record) {
        if self.tx.try_send(Message::Record(Box::new(record))).is_err() {
            self.metrics.log_dropped.inc();
        }
    }

    /// Flushes and stops the writer (rows sent after this are dropped).
    pub fn shutdown(&self) {
        let _ = self.tx.send(Message::Shutdown);
    }

    pub fn set_policy(&self, deployment: &str, policy: LogPolicy) {
        let _ = self
            .tx
            .send(Message::Policy(deployment.to_string(), policy));
    }

    /// Writes everything buffered so far; returns when it is on disk (or failed).
    pub fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Message::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(60));
        }
    }
}

struct Row {
    request_id: String,
    time_us: i64,
    model: Arc<str>,
    version: i64,
    role: &'static str,
    route: Arc<str>,
    status: i32,
    latency_ms: f64,
    queue_ms: f64,
    inference_ms: f64,
    batch_rows: i64,
    inputs: Option<String>,
    outputs: Option<String>,
    error: Option<String>,
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("request_id", DataType::Utf8, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("deployment", DataType::Utf8, false),
        Field::new("model", DataType::Utf8, false),
        Field::new("version", DataType::Int64, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("route", DataType::Utf8, false),
        Field::new("status", DataType::Int32, false),
        Field::new("latency_ms", DataType::Float64, false),
        Field::new("queue_ms", DataType::Float64, false),
        Field::new("inference_ms", DataType::Float64, false),
        Field::new("batch_rows", DataType::Int64, false),
        Field::new("inputs", DataType::Utf8, true),
        Field::new("outputs", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
    ]))
}

/// `{"name": {"datatype": "FP32", "shape": [1, 4], "data": [...]}, ...}` under the policy.
fn tensors_json(names: &[String], tensors: &[OwnedTensor], policy: Option<&LogPolicy>) -> String {
    // About 12 bytes per number plus the names and shapes: one allocation in the usual case.
    let values: usize = tensors.iter().map(|t| t.data.len()).sum();
    let mut out = Vec::with_capacity(64 + 48 * names.len() + 12 * values);
    out.push(b'{');
    let mut first = true;
    for (name, t) in names.iter().zip(tensors) {
        if policy.is_some_and(|p| p.drop.iter().any(|d| d == name)) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut out, name).expect("vec");
        out.extend_from_slice(b":{\"datatype\":\"");
        out.extend_from_slice(t.dtype().protocol_name().as_bytes());
        out.extend_from_slice(b"\",\"shape\":");
        serde_json::to_writer(&mut out, &t.shape).expect("vec");
        out.extend_from_slice(b",\"data\":");
        if policy.is_some_and(|p| p.hash.iter().any(|h| h == name)) {
            let mut text = Vec::new();
            write_data_json(&t.data, &mut text);
            let digest = hex::encode(Sha256::digest(&text));
            out.extend_from_slice(format!("\"sha256:{digest}\"").as_bytes());
        } else {
            write_data_json(&t.data, &mut out);
        }
        out.push(b'}');
    }
    out.push(b'}');
    String::from_utf8(out).expect("JSON is UTF-8")
}

fn to_row(r: Record, policy: &LogPolicy) -> Row {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (inputs, outputs) = if policy.payloads {
        (
            r.inputs
                .as_ref()
                .map(|t| tensors_json(&r.input_names, t, Some(policy))),
            r.outputs
                .as_ref()
                .map(|t| tensors_json(&r.output_names, t, None)),
        )
    } else {
        (None, None)
    };
    Row {
        request_id: r.request_id,
        time_us: r.time_us,
        model: r.model,
        version: r.version,
        role: r.role,
        route: r.route,
        status: i32::from(r.status),
        latency_ms: ms(r.latency),
        queue_ms: ms(r.queue),
        inference_ms: ms(r.inference),
        batch_rows: r.batch_rows as i64,
        inputs,
        outputs,
        error: r.error,
    }
}

fn batch(deployment: &str, rows: &[Row]) -> RecordBatch {
    let n = rows.len();
    let mut request_id = StringBuilder::with_capacity(n, n * 36);
    let mut time = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut dep = StringBuilder::with_capacity(n, n * deployment.len());
    let mut model = StringBuilder::new();
    let mut version = Int64Builder::with_capacity(n);
    let mut role = StringBuilder::new();
    let mut route = StringBuilder::new();
    let mut status = Int32Builder::with_capacity(n);
    let mut latency = Float64Builder::with_capacity(n);
    let mut queue = Float64Builder::with_capacity(n);
    let mut inference = Float64Builder::with_capacity(n);
    let mut batch_rows = Int64Builder::with_capacity(n);
    let mut inputs = StringBuilder::new();
    let mut outputs = StringBuilder::new();
    let mut error = StringBuilder::new();
    for r in rows {
        request_id.append_value(&r.request_id);
        time.append_value(r.time_us);
        dep.append_value(deployment);
        model.append_value(&*r.model);
        version.append_value(r.version);
        role.append_value(r.role);
        route.append_value(&*r.route);
        status.append_value(r.status);
        latency.append_value(r.latency_ms);
        queue.append_value(r.queue_ms);
        inference.append_value(r.inference_ms);
        batch_rows.append_value(r.batch_rows);
        inputs.append_option(r.inputs.as_deref());
        outputs.append_option(r.outputs.as_deref());
        error.append_option(r.error.as_deref());
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(request_id.finish()),
        Arc::new(time.finish()),
        Arc::new(dep.finish()),
        Arc::new(model.finish()),
        Arc::new(version.finish()),
        Arc::new(role.finish()),
        Arc::new(route.finish()),
        Arc::new(status.finish()),
        Arc::new(latency.finish()),
        Arc::new(queue.finish()),
        Arc::new(inference.finish()),
        Arc::new(batch_rows.finish()),
        Arc::new(inputs.finish()),
        Arc::new(outputs.finish()),
        Arc::new(error.finish()),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns follow the schema")
}

fn hour_dir(root: &Path, deployment: &str, hour_us: i64) -> PathBuf {
    let t = DateTime::<Utc>::from_timestamp_micros(hour_us).unwrap_or_default();
    root.join(deployment)
        .join(format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day()))
        .join(format!("{:02}", t.hour()))
}

/// Writes one segment atomically (temporary file, then rename).
fn write_segment(dir: &Path, deployment: &str, rows: &[Row], seq: u64) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let first = rows.first().map_or(0, |r| r.time_us);
    let name = format!(
        "part-{first}-{}-{seq}.parquet",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        // Ids, times and payloads are (nearly) all distinct: dictionaries would only cost.
        let mut props = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY);
        for column in [
            "request_id",
            "time",
            "latency_ms",
            "queue_ms",
            "inference_ms",
            "inputs",
            "outputs",
        ] {
            props = props.set_column_dictionary_enabled(column.into(), false);
        }
        let props = props.build();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema(), Some(props))
            .map_err(std::io::Error::other)?;
        writer
            .write(&batch(deployment, rows))
            .map_err(std::io::Error::other)?;
        let file = writer.into_inner().map_err(std::io::Error::other)?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(&name))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(dir.join(name))
}

struct Writer {
    root: PathBuf,
    metrics: Arc<Metrics>,
    policies: HashMap<String, LogPolicy>,
    /// For rows of a deployment whose policy has not arrived yet.
    default_policy: LogPolicy,
    /// (deployment, hour) -> rows
    buffers: BTreeMap<(Arc<str>, i64), Vec<Row>>,
    buffered: usize,
    seq: u64,
    last_error: Option<String>,
}

impl Writer {
    fn add(&mut self, record: Record) {
        let key = (
            record.deployment.clone(),
            record.time_us.div_euclid(HOUR_US) * HOUR_US,
        );
        let policy = self
            .policies
            .get(&*record.deployment)
            .unwrap_or(&self.default_policy);
        let row = to_row(record, policy);
        self.buffers.entry(key).or_default().push(row);
        self.buffered += 1;
        if self.buffered >= FLUSH_ROWS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let keys: Vec<(Arc<str>, i64)> = self.buffers.keys().cloned().collect();
        for key in keys {
            let rows = self.buffers.remove(&key).expect("listed");
            if rows.is_empty() {
                continue;
            }
            let dir = hour_dir(&self.root, &key.0, key.1);
            self.seq += 1;
            match write_segment(&dir, &key.0, &rows, self.seq) {
                Ok(_) => {
                    self.metrics.log_rows.inc_by(rows.len() as u64);
                    self.buffered -= rows.len();
                    self.last_error = None;
                }
                Err(e) => {
                    self.metrics.log_errors.inc();
                    let message = format!(
                        "cannot write a payload-log segment in {}: {e}",
                        dir.display()
                    );
                    if self.last_error.as_deref() != Some(&message) {
                        tracing::error!(event = "payload_log_error", error = %message, "{message}; keeping the rows to retry");
                    }
                    self.last_error = Some(message);
                    self.buffers.insert(key, rows);
                }
            }
        }
        // Past the bound, the oldest rows go (counted) so memory stays bounded while a disk is full.
        while self.buffered > MAX_BUFFERED {
            let Some(key) = self.buffers.keys().next().cloned() else {
                break;
            };
            let rows = self.buffers.remove(&key).expect("listed");
            self.buffered -= rows.len();
            self.metrics.log_dropped.inc_by(rows.len() as u64);
        }
    }

    fn apply_retention(&self) {
        let now = crate::now_us();
        for (deployment, policy) in &self.policies {
            if let Some(days) = policy.retention_days {
                let cutoff = now - i64::from(days) * 24 * HOUR_US;
                if let Err(e) = remove_before(&self.root.join(deployment), cutoff) {
                    tracing::warn!(event = "retention_error", deployment = %deployment, error = %e, "could not apply retention");
                }
            }
        }
    }
}

/// The start of the hour a `<date>/<HH>` folder holds, in microseconds.
fn folder_hour(date: &str, hour: &str) -> Option<i64> {
    let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let h: u32 = hour.parse().ok()?;
    Some(day.and_hms_opt(h, 0, 0)?.and_utc().timestamp_micros())
}

/// Deletes hour folders whose whole hour ends before `cutoff_us`, and day folders left empty.
fn remove_before(dir: &Path, cutoff_us: i64) -> std::io::Result<()> {
    let Ok(days) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for day in days.flatten() {
        let date = day.file_name().to_string_lossy().to_string();
        for hour in std::fs::read_dir(day.path())?.flatten() {
            let h = hour.file_name().to_string_lossy().to_string();
            if let Some(start) = folder_hour(&date, &h) {
                if start + HOUR_US <= cutoff_us {
                    std::fs::remove_dir_all(hour.path())?;
                }
            }
        }
        if std::fs::read_dir(day.path())?.next().is_none() {
            std::fs::remove_dir(day.path())?;
        }
    }
    Ok(())
}

/// Starts the writer thread; it stops (after a last flush) when every sender is dropped.
pub fn start(
    root: PathBuf,
    flush_every: Duration,
    metrics: Arc<Metrics>,
) -> (LogSender, std::thread::JoinHandle<()>) {
    let (tx, rx) = crossbeam_channel::bounded(200_000);
    let mut writer = Writer {
        root,
        metrics: metrics.clone(),
        policies: HashMap::new(),
        default_policy: LogPolicy::default(),
        buffers: BTreeMap::new(),
        buffered: 0,
        seq: 0,
        last_error: None,
    };
    let handle = std::thread::Builder::new()
        .name("ph-payload-log".into())
        .spawn(move || {
            // Background work: fills the gaps between requests, never preempts them; still
            // about a quarter of a busy core, more than it needs at full load.
            crate::sched::batch_thread(5);
            run(&mut writer, &rx, flush_every)
        })
        .expect("spawning the payload-log writer");
    (LogSender { tx, metrics }, handle)
}

/// The writer never blocks on the channel: it wakes on a short tick and drains what arrived,
/// so a request's `send` is a queue push that never has to wake a sleeping thread.
fn run(writer: &mut Writer, rx: &Receiver<Message>, flush_every: Duration) {
    let tick = Duration::from_millis(20).min(flush_every);
    let retention_every = Duration::from_secs(60);
    let mut next_flush = Instant::now() + flush_every;
    let mut next_retention = Instant::now() + Duration::from_secs(2);
    loop {
        std::thread::sleep(tick);
        loop {
            match rx.try_recv() {
                Ok(Message::Record(r)) => writer.add(*r),
                Ok(Message::Policy(d, p)) => {
                    writer.policies.insert(d, p);
                }
                Ok(Message::Flush(ack)) => {
                    writer.flush();
                    let _ = ack.send(());
                }
                Ok(Message::Shutdown) | Err(TryRecvError::Disconnected) => {
                    writer.flush();
                    return;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        let now = Instant::now();
        if now >= next_flush {
            writer.flush();
            next_flush = now + flush_every;
        }
        if now >= next_retention {
            writer.apply_retention();
            next_retention = now + retention_every;
        }
    }
}

/// Reads a deployment's log between `since_us` and `until_us` (either open), oldest first.
pub fn read(
    root: &Path,
    deployment: &str,
    since_us: Option<i64>,
    until_us: Option<i64>,
) -> Result<Vec<RecordBatch>> {
    let dir = root.join(deployment);
    let mut files = Vec::new();
    let io =
        |p: &Path, e: std::io::Error| ServerError::Log(format!("cannot read {}: {e}", p.display()));
    let Ok(days) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    for day in days.flatten() {
        let date = day.file_name().to_string_lossy().to_string();
        for hour in std::fs::read_dir(day.path())
            .map_err(|e| io(&day.path(), e))?
            .flatten()
        {
            let Some(start) = folder_hour(&date, &hour.file_name().to_string_lossy()) else {
                continue;
            };
            if since_us.is_some_and(|s| start + HOUR_US <= s) || until_us.is_some_and(|u| start > u)
            {
                continue;
            }
            for f in std::fs::read_dir(hour.path())
                .map_err(|e| io(&hour.path(), e))?
                .flatten()
            {
                let name = f.file_name().to_string_lossy().to_string();
                if name.starts_with("part-") && name.ends_with(".parquet") {
                    files.push(f.path());
                }
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let file = std::fs::File::open(&path).map_err(|e| io(&path, e))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.build())
            .map_err(|e| {
                ServerError::Log(format!(
                    "{} is not a readable Parquet segment: {e}",
                    path.display()
                ))
            })?;
        for batch in reader {
            let batch = batch.map_err(|e| ServerError::Log(format!("{}: {e}", path.display())))?;
            let times = batch
                .column(1)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .ok_or_else(|| {
                    ServerError::Log(format!(
                        "{}: the time column has the wrong type",
                        path.display()
                    ))
                })?;
            let keep: BooleanArray = times
                .iter()
                .map(|t| {
                    t.map(|t| since_us.is_none_or(|s| t >= s) && until_us.is_none_or(|u| t <= u))
                })
                .collect();
            let batch = arrow_select::filter::filter_record_batch(&batch, &keep)
                .map_err(|e| ServerError::Log(e.to_string()))?;
            if batch.num_rows() > 0 {
                out.push(batch);
            }
        }
    }
    Ok(out)
}
