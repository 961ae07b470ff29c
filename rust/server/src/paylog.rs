//! The payload log: every answered request (and every shadow run) as one row, buffered in
//! memory and flushed as Parquet segments to `<root>/<deployment>/<YYYY-MM-DD>/<HH>/`, with
//! per-deployment retention and redaction. The writer and the reader live here together so
//! the layout has one owner.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
    /// How the version's traffic is monitored (its reference, how tensors become columns).
    pub watch: Arc<crate::monitor::Watch>,
    pub monitoring: crate::spec::Monitoring,
}

enum Message {
    /// A record and the bytes it holds in the budget.
    Record(Box<Record>, usize),
    Policy(String, LogPolicy),
    Flush(std::sync::mpsc::Sender<()>),
    Shutdown,
}

impl Record {
    /// About what the record holds in memory until it is written: its tensors and texts.
    fn bytes(&self) -> usize {
        fn tensors(t: &Option<Arc<Vec<OwnedTensor>>>) -> usize {
            t.as_deref()
                .map_or(0, |ts| ts.iter().map(tensor_bytes).sum())
        }
        256 + self.request_id.len()
            + self.error.as_ref().map_or(0, String::len)
            + tensors(&self.inputs)
            + tensors(&self.outputs)
    }
}

fn tensor_bytes(t: &OwnedTensor) -> usize {
    t.data.memory_bytes()
}

/// What the log may hold in memory before it is written, and what happens past it.
struct Budget {
    bytes: AtomicUsize,
    limit: usize,
    /// The `drop` overflow policy (else `block`).
    drop: bool,
    /// Set while over the limit under `drop`, so the warning is logged once per episode.
    warned: AtomicBool,
}

/// How the log handles more records than `log_buffer_bytes` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse new requests until the log catches up: nothing answered is missing.
    Block,
    /// Answer, drop the record, count it and warn.
    Drop,
}

/// The handle the server holds; cheap to clone.
#[derive(Clone)]
pub struct LogSender {
    tx: Sender<Message>,
    metrics: Arc<Metrics>,
    budget: Arc<Budget>,
}

impl LogSender {
    /// Under the `block` policy, refuses (with the message for a 503) while the records
    /// waiting for the disk exceed the budget; under `drop` it always admits.
    pub fn admit(&self) -> std::result::Result<(), String> {
        let b = &self.budget;
        let held = b.bytes.load(Ordering::Relaxed);
        if b.drop || held <= b.limit {
            return Ok(());
        }
        Err(format!(
            "the payload log is behind: {} MB of answered requests wait to be written (disk slow, full or unwritable; log_buffer_bytes = {}); retry later",
            held / 1_000_000,
            b.limit
        ))
    }

    /// Queues a record; never blocks. Under `drop`, a record past the budget is dropped,
    /// counted and warned about; under `block`, admission stopped new requests earlier, so
    /// every record of an answered request is kept.
    pub fn send(&self, record: Record) {
        let size = record.bytes();
        let b = &self.budget;
        let held = b.bytes.fetch_add(size, Ordering::AcqRel) + size;
        if b.drop && held > b.limit {
            b.bytes.fetch_sub(size, Ordering::AcqRel);
            self.metrics.log_dropped.inc();
            if !b.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(event = "payload_log_dropping", limit = b.limit, "the payload log is behind and log_overflow = \"drop\": records are being dropped (counted in pilothouse_payload_log_dropped_total)");
            }
            return;
        }
        if self
            .tx
            .send(Message::Record(Box::new(record), size))
            .is_err()
        {
            b.bytes.fetch_sub(size, Ordering::AcqRel);
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

/// Appends `{"name": {"datatype": "FP32", "shape": [1, 4], "data": [...]}, ...}` under the
/// policy to `out`.
fn tensors_json(
    names: &[String],
    tensors: &[OwnedTensor],
    policy: Option<&LogPolicy>,
    out: &mut Vec<u8>,
) {
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
        serde_json::to_writer(&mut *out, name).expect("vec");
        out.extend_from_slice(b":{\"datatype\":\"");
        out.extend_from_slice(t.dtype().protocol_name().as_bytes());
        out.extend_from_slice(b"\",\"shape\":");
        serde_json::to_writer(&mut *out, &t.shape).expect("vec");
        out.extend_from_slice(b",\"data\":");
        if policy.is_some_and(|p| p.hash.iter().any(|h| h == name)) {
            let mut text = Vec::new();
            write_data_json(&t.data, &mut text);
            let digest = hex::encode(Sha256::digest(&text));
            out.extend_from_slice(format!("\"sha256:{digest}\"").as_bytes());
        } else {
            write_data_json(&t.data, out);
        }
        out.push(b'}');
    }
    out.push(b'}');
}

/// Rows are gathered in column builders of this many rows; a full set is finished into a
/// record batch and a new one started at the size the last one reached, so no buffer is
/// ever regrown and copied while the server is busy.
const CHUNK_ROWS: usize = 4096;
/// ... or as soon as its payloads take this many bytes (large tensors).
const CHUNK_BYTES: usize = 8 << 20;

/// The rows of one (deployment, hour) not yet written, as Arrow columns: records go straight
/// into the builders (no row objects in between).
struct Columns {
    rows: usize,
    request_id: StringBuilder,
    time: TimestampMicrosecondBuilder,
    model: StringBuilder,
    version: Int64Builder,
    role: StringBuilder,
    route: StringBuilder,
    status: Int32Builder,
    latency: Float64Builder,
    queue: Float64Builder,
    inference: Float64Builder,
    batch_rows: Int64Builder,
    inputs: StringBuilder,
    outputs: StringBuilder,
    error: StringBuilder,
}

impl Columns {
    /// Builders sized for `CHUNK_ROWS` rows of `inputs`/`outputs` bytes per row.
    fn new(inputs: usize, outputs: usize) -> Columns {
        let n = CHUNK_ROWS;
        let text = |per_row: usize| StringBuilder::with_capacity(n, (n * per_row).min(CHUNK_BYTES));
        Columns {
            rows: 0,
            request_id: text(36),
            time: TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            model: text(16),
            version: Int64Builder::with_capacity(n),
            role: text(8),
            route: text(16),
            status: Int32Builder::with_capacity(n),
            latency: Float64Builder::with_capacity(n),
            queue: Float64Builder::with_capacity(n),
            inference: Float64Builder::with_capacity(n),
            batch_rows: Int64Builder::with_capacity(n),
            inputs: text(inputs),
            outputs: text(outputs),
            error: StringBuilder::new(),
        }
    }

    /// Appends one record under `policy`; `scratch` is reused for the payloads' JSON.
    fn push(&mut self, r: &Record, policy: &LogPolicy, scratch: &mut Vec<u8>) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        self.rows += 1;
        self.request_id.append_value(&r.request_id);
        self.time.append_value(r.time_us);
        self.model.append_value(&*r.model);
        self.version.append_value(r.version);
        self.role.append_value(r.role);
        self.route.append_value(&*r.route);
        self.status.append_value(i32::from(r.status));
        self.latency.append_value(ms(r.latency));
        self.queue.append_value(ms(r.queue));
        self.inference.append_value(ms(r.inference));
        self.batch_rows.append_value(r.batch_rows as i64);
        let mut payload = |column: &mut StringBuilder,
                           names: &[String],
                           tensors: Option<&Arc<Vec<OwnedTensor>>>,
                           policy: Option<&LogPolicy>| {
            match tensors {
                Some(t) => {
                    scratch.clear();
                    tensors_json(names, t, policy, scratch);
                    column.append_value(std::str::from_utf8(scratch).expect("JSON is UTF-8"));
                }
                None => column.append_null(),
            }
        };
        let (inputs, outputs) = if policy.payloads {
            (r.inputs.as_ref(), r.outputs.as_ref())
        } else {
            (None, None)
        };
        payload(&mut self.inputs, &r.input_names, inputs, Some(policy));
        payload(&mut self.outputs, &r.output_names, outputs, None);
        self.error.append_option(r.error.as_deref());
    }

    /// The rows so far as a record batch; the builders are left empty.
    fn finish(&mut self, deployment: &str) -> RecordBatch {
        let n = std::mem::take(&mut self.rows);
        let mut dep = StringBuilder::with_capacity(n, n * deployment.len());
        for _ in 0..n {
            dep.append_value(deployment);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.request_id.finish()),
            Arc::new(self.time.finish()),
            Arc::new(dep.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.version.finish()),
            Arc::new(self.role.finish()),
            Arc::new(self.route.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.latency.finish()),
            Arc::new(self.queue.finish()),
            Arc::new(self.inference.finish()),
            Arc::new(self.batch_rows.finish()),
            Arc::new(self.inputs.finish()),
            Arc::new(self.outputs.finish()),
            Arc::new(self.error.finish()),
        ];
        RecordBatch::try_new(schema(), columns).expect("columns follow the schema")
    }
}

/// One (deployment, hour)'s rows waiting for the disk: finished batches, kept whole while a
/// write fails, and the builders taking new rows.
struct Pending {
    first_time_us: i64,
    done: Vec<RecordBatch>,
    open: Columns,
    /// Budget bytes of the records in here, given back once they are written.
    bytes: usize,
}

impl Pending {
    fn new(first_time_us: i64, sizes: (usize, usize)) -> Pending {
        Pending {
            first_time_us,
            done: Vec::new(),
            open: Columns::new(sizes.0, sizes.1),
            bytes: 0,
        }
    }

    fn rows(&self) -> usize {
        self.done.iter().map(RecordBatch::num_rows).sum::<usize>() + self.open.rows
    }

    /// Every row as batches, the open builders finished first.
    fn batches(&mut self, deployment: &str) -> &[RecordBatch] {
        if self.open.rows > 0 {
            let batch = self.open.finish(deployment);
            self.done.push(batch);
        }
        &self.done
    }
}

/// Bytes per row the payload columns of `columns` took, for sizing the next builders.
fn payload_sizes(columns: &Columns) -> (usize, usize) {
    let per_row = |b: &StringBuilder| b.values_slice().len() / columns.rows.max(1) + 16;
    (per_row(&columns.inputs), per_row(&columns.outputs))
}

fn hour_dir(root: &Path, deployment: &str, hour_us: i64) -> PathBuf {
    let t = DateTime::<Utc>::from_timestamp_micros(hour_us).unwrap_or_default();
    root.join(deployment)
        .join(format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day()))
        .join(format!("{:02}", t.hour()))
}

/// Writes one segment atomically (temporary file, then rename).
fn write_segment(
    dir: &Path,
    first: i64,
    batches: &[RecordBatch],
    seq: u64,
) -> std::io::Result<PathBuf> {
    // Owner-only: the log holds raw request inputs.
    pilothouse_registry::files::create_dirs_durably(dir)?;
    let name = format!(
        "part-{first}-{}-{seq}.parquet",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let file = pilothouse_registry::files::private_file(&tmp)?;
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
        for batch in batches {
            writer.write(batch).map_err(std::io::Error::other)?;
        }
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
    budget: Arc<Budget>,
    policies: HashMap<String, LogPolicy>,
    /// For rows of a deployment whose policy has not arrived yet.
    default_policy: LogPolicy,
    /// (deployment, hour) -> rows not yet written
    buffers: BTreeMap<(Arc<str>, i64), Pending>,
    /// Payload bytes per row each deployment's last finished chunk took.
    sizes: HashMap<Arc<str>, (usize, usize)>,
    buffered: usize,
    seq: u64,
    last_error: Option<String>,
    /// Reused for each payload's JSON.
    scratch: Vec<u8>,
}

impl Writer {
    fn new(root: PathBuf, metrics: Arc<Metrics>, budget: Arc<Budget>) -> Writer {
        Writer {
            root,
            metrics,
            budget,
            policies: HashMap::new(),
            default_policy: LogPolicy::default(),
            buffers: BTreeMap::new(),
            sizes: HashMap::new(),
            buffered: 0,
            seq: 0,
            last_error: None,
            scratch: Vec::new(),
        }
    }

    fn add(&mut self, record: Record, bytes: usize) {
        let hour = record.time_us.div_euclid(HOUR_US) * HOUR_US;
        let policy = self
            .policies
            .get(&*record.deployment)
            .unwrap_or(&self.default_policy);
        let sizes = *self.sizes.get(&record.deployment).unwrap_or(&(256, 128));
        let pending = self
            .buffers
            .entry((record.deployment.clone(), hour))
            .or_insert_with(|| Pending::new(record.time_us, sizes));
        pending.open.push(&record, policy, &mut self.scratch);
        pending.bytes += bytes;
        let open = &pending.open;
        if open.rows >= CHUNK_ROWS
            || open.inputs.values_slice().len() + open.outputs.values_slice().len() >= CHUNK_BYTES
        {
            let sizes = payload_sizes(open);
            let mut full = std::mem::replace(&mut pending.open, Columns::new(sizes.0, sizes.1));
            pending.done.push(full.finish(&record.deployment));
            self.sizes.insert(record.deployment.clone(), sizes);
        }
        self.buffered += 1;
        if self.buffered >= FLUSH_ROWS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let keys: Vec<(Arc<str>, i64)> = self.buffers.keys().cloned().collect();
        for key in keys {
            let mut pending = self.buffers.remove(&key).expect("listed");
            let rows = pending.rows();
            if rows == 0 {
                continue;
            }
            if pending.open.rows > 0 {
                self.sizes
                    .insert(key.0.clone(), payload_sizes(&pending.open));
            }
            let dir = hour_dir(&self.root, &key.0, key.1);
            self.seq += 1;
            let first = pending.first_time_us;
            match write_segment(&dir, first, pending.batches(&key.0), self.seq) {
                Ok(_) => {
                    self.metrics.log_rows.inc_by(rows as u64);
                    self.buffered -= rows;
                    self.last_error = None;
                    let left = self.budget.bytes.fetch_sub(pending.bytes, Ordering::AcqRel)
                        - pending.bytes;
                    if left <= self.budget.limit {
                        self.budget.warned.store(false, Ordering::Relaxed);
                    }
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
                    self.buffers.insert(key, pending);
                }
            }
        }
        // Rows the disk refused stay (and keep their bytes in the budget): under `block` new
        // requests wait for them, under `drop` new records are dropped instead.
        self.metrics
            .log_buffered_bytes
            .set(self.budget.bytes.load(Ordering::Relaxed) as i64);
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
    buffer_bytes: usize,
    overflow: Overflow,
    mut tap: Option<crate::monitor::tap::Tap>,
) -> (LogSender, std::thread::JoinHandle<()>) {
    // Unbounded in count, bounded in bytes by the budget (checked at admission or send).
    let (tx, rx) = crossbeam_channel::unbounded();
    let budget = Arc::new(Budget {
        bytes: AtomicUsize::new(0),
        limit: buffer_bytes,
        drop: overflow == Overflow::Drop,
        warned: AtomicBool::new(false),
    });
    let mut writer = Writer::new(root, metrics.clone(), budget.clone());
    let handle = std::thread::Builder::new()
        .name("ph-payload-log".into())
        .spawn(move || {
            // Background work: fills the gaps between requests, never preempts them; still
            // about a quarter of a busy core, more than it needs at full load.
            crate::sched::batch_thread(5);
            run(&mut writer, tap.as_mut(), &rx, flush_every)
        })
        .expect("spawning the payload-log writer");
    (
        LogSender {
            tx,
            metrics,
            budget,
        },
        handle,
    )
}

/// The writer never blocks on the channel: it wakes on a short tick and drains what arrived,
/// so a request's `send` is a queue push that never has to wake a sleeping thread.
fn run(
    writer: &mut Writer,
    mut tap: Option<&mut crate::monitor::tap::Tap>,
    rx: &Receiver<Message>,
    flush_every: Duration,
) {
    let tick = Duration::from_millis(20).min(flush_every);
    let retention_every = Duration::from_secs(60);
    let mut next_flush = Instant::now() + flush_every;
    let mut next_retention = Instant::now() + Duration::from_secs(2);
    loop {
        std::thread::sleep(tick);
        loop {
            match rx.try_recv() {
                Ok(Message::Record(r, bytes)) => {
                    if let Some(t) = tap.as_deref_mut() {
                        t.record(&r);
                    }
                    writer.add(*r, bytes);
                }
                Ok(Message::Policy(d, p)) => {
                    writer.policies.insert(d, p);
                }
                Ok(Message::Flush(ack)) => {
                    writer.flush();
                    let _ = ack.send(());
                }
                Ok(Message::Shutdown) | Err(TryRecvError::Disconnected) => {
                    writer.flush();
                    if let Some(t) = tap.as_deref_mut() {
                        t.close_all();
                    }
                    return;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        if let Some(t) = tap.as_deref_mut() {
            t.tick(crate::now_us());
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
    // The name becomes a folder: "../x" or "/etc" must never reach the file system.
    pilothouse_registry::check_deployment_name(deployment)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Array, Int64Array, StringArray};
    use pilothouse_runtime::{Tensor, TensorData};
    use std::borrow::Cow;

    fn record(i: usize, time_us: i64, values: usize) -> Record {
        let x: Vec<f32> = (0..values)
            .map(|v| ((i * values + v) % 1_000_000) as f32)
            .collect();
        Record {
            deployment: Arc::from("d"),
            request_id: format!("r{i}"),
            time_us,
            model: Arc::from("m"),
            version: 1 + (i % 2) as i64,
            role: "primary",
            route: Arc::from("@champion"),
            status: 200,
            latency: Duration::from_micros(100),
            queue: Duration::from_micros(10),
            inference: Duration::from_micros(50),
            batch_rows: 1,
            input_names: Arc::new(vec!["x".into()]),
            inputs: Some(Arc::new(vec![Tensor {
                shape: vec![1, values],
                data: TensorData::Float32(Cow::Owned(x)),
            }])),
            output_names: Arc::new(vec!["y".into()]),
            outputs: Some(Arc::new(vec![Tensor {
                shape: vec![1],
                data: TensorData::Int64(Cow::Owned(vec![i as i64])),
            }])),
            error: None,
            watch: Arc::default(),
            monitoring: crate::spec::Monitoring::default(),
        }
    }

    /// Every row, in order, as (request id, version, inputs JSON, outputs JSON).
    fn rows(root: &Path) -> Vec<(String, i64, String, String)> {
        let mut out = Vec::new();
        for batch in read(root, "d", None, None).unwrap() {
            let text = |c: usize| {
                batch
                    .column(c)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone()
            };
            let (ids, inputs, outputs) = (text(0), text(12), text(13));
            let versions = batch
                .column(4)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            assert!(text(2).iter().all(|d| d == Some("d")));
            for i in 0..batch.num_rows() {
                out.push((
                    ids.value(i).to_string(),
                    versions.value(i),
                    inputs.value(i).to_string(),
                    outputs.value(i).to_string(),
                ));
            }
        }
        out
    }

    #[test]
    fn rows_over_several_chunks_come_back_whole_and_in_order() {
        let dir = std::env::temp_dir().join(format!("ph-paylog-{}", fastrand::u64(..)));
        let budget = Arc::new(Budget {
            bytes: AtomicUsize::new(0),
            limit: usize::MAX,
            drop: false,
            warned: AtomicBool::new(false),
        });
        let mut w = Writer::new(dir.clone(), Arc::new(Metrics::new()), budget);
        let now = crate::now_us();
        // Small rows fill chunks by count, the large ones by bytes (8 MB / 40 kB is ~200 rows).
        let n = CHUNK_ROWS * 2 + 123;
        for i in 0..n {
            w.add(record(i, now, 3), 0);
        }
        for i in n..n + 450 {
            w.add(record(i, now, 10_000), 0);
        }
        assert_eq!(w.buffered, n + 450);
        assert!(w.buffers.values().next().unwrap().done.len() >= 4);
        w.flush();
        assert_eq!(w.buffered, 0);
        let got = rows(&dir);
        assert_eq!(got.len(), n + 450);
        for (i, (id, version, inputs, outputs)) in got.iter().enumerate() {
            assert_eq!(id, &format!("r{i}"));
            assert_eq!(*version, 1 + (i % 2) as i64);
            assert_eq!(
                outputs,
                &format!(r#"{{"y":{{"datatype":"INT64","shape":[1],"data":[{i}]}}}}"#)
            );
            if i < n {
                let x = [3 * i, 3 * i + 1, 3 * i + 2];
                assert_eq!(
                    inputs,
                    &format!(
                        r#"{{"x":{{"datatype":"FP32","shape":[1,3],"data":[{}.0,{}.0,{}.0]}}}}"#,
                        x[0], x[1], x[2]
                    )
                );
            } else {
                let v: serde_json::Value = serde_json::from_str(inputs).unwrap();
                assert_eq!(v["x"]["data"].as_array().unwrap().len(), 10_000);
                assert_eq!(
                    v["x"]["data"][9_999],
                    ((i * 10_000 + 9_999) % 1_000_000) as f64
                );
            }
        }
        // A second flush after more rows writes only the new ones.
        w.add(record(n + 450, now, 3), 0);
        w.flush();
        assert_eq!(rows(&dir).len(), n + 451);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
