//! Records into Parquet segments: rows gathered per (deployment, hour) in column builders
//! and payload columns, finished a chunk at a time, written atomically on flush (a segment
//! per schema: a chunk's payload columns are the tensors it saw), and deleted after the
//! deployment's retention.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{
    Float64Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::Schema;
use chrono::{DateTime, Datelike, Timelike, Utc};
use std::collections::HashMap;

use super::payload::Payloads;
use super::reader::fixed_fields;
use super::{Budget, Record, FLUSH_ROWS, HOUR_US};
use crate::metrics::Metrics;
use crate::spec::LogPolicy;

/// Rows are gathered in column builders of this many rows; a full set is finished into a
/// record batch and a new one started, so no buffer is ever regrown and copied while the
/// server is busy.
const CHUNK_ROWS: usize = 4096;
/// ... or as soon as its payloads take this many bytes (large tensors).
const CHUNK_BYTES: usize = 8 << 20;

/// The rows of one (deployment, hour) not yet written, as Arrow columns: records go straight
/// into the builders (no row objects in between), their tensors into the payload columns.
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
    error: StringBuilder,
    payloads: Payloads,
}

impl Columns {
    /// Builders sized for `CHUNK_ROWS` rows.
    fn new() -> Columns {
        let n = CHUNK_ROWS;
        let text = |per_row: usize| StringBuilder::with_capacity(n, n * per_row);
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
            error: StringBuilder::new(),
            payloads: Payloads::default(),
        }
    }

    /// Appends one record under `policy`.
    fn push(&mut self, r: &Record, policy: &LogPolicy) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let row = self.rows;
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
        self.error.append_option(r.error.as_deref());
        if policy.payloads {
            if let Some(t) = &r.inputs {
                self.payloads
                    .push(row, "input", &r.input_names, t, Some(policy));
            }
            if let Some(t) = &r.outputs {
                self.payloads.push(row, "output", &r.output_names, t, None);
            }
        }
    }

    fn full(&self) -> bool {
        self.rows >= CHUNK_ROWS || self.payloads.bytes >= CHUNK_BYTES
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
            Arc::new(self.error.finish()),
        ];
        let mut fields = fixed_fields();
        let mut columns = columns;
        for (field, array) in self.payloads.finish(n) {
            fields.push(field);
            columns.push(array);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
            .expect("columns follow the schema")
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
    fn new(first_time_us: i64) -> Pending {
        Pending {
            first_time_us,
            done: Vec::new(),
            open: Columns::new(),
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

fn hour_dir(root: &Path, deployment: &str, hour_us: i64) -> PathBuf {
    let t = DateTime::<Utc>::from_timestamp_micros(hour_us).unwrap_or_default();
    root.join(deployment)
        .join(format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day()))
        .join(format!("{:02}", t.hour()))
}

/// Writes a (deployment, hour)'s batches as segments, one per schema (batches of one schema
/// in a row share a file), atomically: every file is written to a temporary name first and
/// renamed once all are on disk.
fn write_segment(
    dir: &Path,
    first: i64,
    batches: &[RecordBatch],
    seq: u64,
) -> std::io::Result<Vec<PathBuf>> {
    // Owner-only: the log holds raw request inputs.
    pilothouse_registry::files::create_dirs_durably(dir)?;
    let mut groups: Vec<&[RecordBatch]> = Vec::new();
    let mut start = 0;
    for i in 1..=batches.len() {
        if i == batches.len() || batches[i].schema() != batches[start].schema() {
            groups.push(&batches[start..i]);
            start = i;
        }
    }
    // one name per flush, the parts numbered after it: readers sort names, so the parts of a
    // flush stay together and in order
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut written: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut renamed = 0;
    let result = (|| {
        for (part, group) in groups.iter().enumerate() {
            let name = format!("part-{first}-{id}-{seq}-{part:04}.parquet");
            let tmp = dir.join(format!(".{name}.tmp"));
            written.push((tmp.clone(), dir.join(&name)));
            write_file(&tmp, group)?;
        }
        for (tmp, done) in &written {
            std::fs::rename(tmp, done)?;
            renamed += 1;
        }
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        // all or nothing: the rows stay buffered and are written again whole
        for (i, (tmp, done)) in written.iter().enumerate() {
            let _ = std::fs::remove_file(if i < renamed { done } else { tmp });
        }
        return Err(e);
    }
    Ok(written.into_iter().map(|(_, done)| done).collect())
}

/// One Parquet file of batches that share a schema, synced to disk.
fn write_file(path: &Path, batches: &[RecordBatch]) -> std::io::Result<()> {
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        return Ok(());
    };
    let file = pilothouse_registry::files::private_file(path)?;
    // Ids, times and payloads are (nearly) all distinct: dictionaries only for the columns
    // that repeat a few values.
    let mut props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_dictionary_enabled(false);
    for column in [
        "deployment",
        "model",
        "version",
        "role",
        "route",
        "status",
        "error",
    ] {
        props = props.set_column_dictionary_enabled(column.into(), true);
    }
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props.build()))
        .map_err(std::io::Error::other)?;
    for batch in batches {
        writer.write(batch).map_err(std::io::Error::other)?;
    }
    let file = writer.into_inner().map_err(std::io::Error::other)?;
    file.sync_all()
}

pub(super) struct Writer {
    root: PathBuf,
    metrics: Arc<Metrics>,
    budget: Arc<Budget>,
    pub(super) policies: HashMap<String, LogPolicy>,
    /// For rows of a deployment whose policy has not arrived yet.
    default_policy: LogPolicy,
    /// (deployment, hour) -> rows not yet written
    buffers: BTreeMap<(Arc<str>, i64), Pending>,
    buffered: usize,
    seq: u64,
    last_error: Option<String>,
}

impl Writer {
    pub(super) fn new(root: PathBuf, metrics: Arc<Metrics>, budget: Arc<Budget>) -> Writer {
        Writer {
            root,
            metrics,
            budget,
            policies: HashMap::new(),
            default_policy: LogPolicy::default(),
            buffers: BTreeMap::new(),
            buffered: 0,
            seq: 0,
            last_error: None,
        }
    }

    pub(super) fn add(&mut self, record: Record, bytes: usize) {
        let hour = record.time_us.div_euclid(HOUR_US) * HOUR_US;
        let policy = self
            .policies
            .get(&*record.deployment)
            .unwrap_or(&self.default_policy);
        let pending = self
            .buffers
            .entry((record.deployment.clone(), hour))
            .or_insert_with(|| Pending::new(record.time_us));
        pending.open.push(&record, policy);
        pending.bytes += bytes;
        if pending.open.full() {
            let mut full = std::mem::replace(&mut pending.open, Columns::new());
            pending.done.push(full.finish(&record.deployment));
        }
        self.buffered += 1;
        if self.buffered >= FLUSH_ROWS {
            self.flush();
        }
    }

    pub(super) fn flush(&mut self) {
        let keys: Vec<(Arc<str>, i64)> = self.buffers.keys().cloned().collect();
        for key in keys {
            let mut pending = self.buffers.remove(&key).expect("listed");
            let rows = pending.rows();
            if rows == 0 {
                continue;
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

    pub(super) fn apply_retention(&self) {
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
pub(super) fn folder_hour(date: &str, hour: &str) -> Option<i64> {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int64Type};
    use arrow_array::Array;

    use super::*;
    use pilothouse_runtime::{Tensor, TensorData};
    use std::borrow::Cow;

    fn record(i: usize, time_us: i64, values: usize) -> Record {
        let x: Vec<f32> = (0..values)
            .map(|v| ((i * values + v) % 1_000_000) as f32)
            .collect();
        Record {
            deployment: Arc::from("d"),
            request_id: format!("r{i}"),
            keys: Arc::default(),
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
            monitoring: Arc::default(),
        }
    }

    /// Every row, in order, as (request id, version, x's values, y's values).
    fn rows(root: &Path) -> Vec<(String, i64, Vec<f32>, Vec<i64>)> {
        let mut out = Vec::new();
        let (schema, batches) = super::super::read(root, "d", None, None).unwrap();
        assert!(schema.field_with_name("input.x").is_ok());
        for batch in batches {
            let ids = batch
                .column_by_name("request_id")
                .unwrap()
                .as_string::<i32>();
            let deployments = batch
                .column_by_name("deployment")
                .unwrap()
                .as_string::<i32>();
            assert!(deployments.iter().all(|d| d == Some("d")));
            let versions = batch
                .column_by_name("version")
                .unwrap()
                .as_primitive::<Int64Type>();
            let x = batch.column_by_name("input.x").unwrap().as_list::<i64>();
            let y = batch.column_by_name("output.y").unwrap().as_list::<i64>();
            for i in 0..batch.num_rows() {
                let rows = x.value(i);
                let rows = rows.as_list::<i64>();
                assert_eq!(Array::len(rows), 1, "one request row");
                let xs = rows
                    .value(0)
                    .as_primitive::<Float32Type>()
                    .values()
                    .to_vec();
                let ys = y.value(i).as_primitive::<Int64Type>().values().to_vec();
                out.push((ids.value(i).to_string(), versions.value(i), xs, ys));
            }
        }
        out
    }

    #[test]
    fn rows_over_several_chunks_come_back_whole_and_in_order() {
        let dir = std::env::temp_dir().join(format!("ph-paylog-{}", fastrand::u64(..)));
        let mut w = unbounded(&dir);
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
        for (i, (id, version, xs, ys)) in got.iter().enumerate() {
            assert_eq!(id, &format!("r{i}"));
            assert_eq!(*version, 1 + (i % 2) as i64);
            assert_eq!(ys, &[i as i64]);
            let width = if i < n { 3 } else { 10_000 };
            assert_eq!(xs.len(), width);
            assert_eq!(xs[width - 1], ((i * width + width - 1) % 1_000_000) as f32);
        }
        // A second flush after more rows writes only the new ones.
        w.add(record(n + 450, now, 3), 0);
        w.flush();
        assert_eq!(rows(&dir).len(), n + 451);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn chunks_of_different_columns_are_parts_of_one_flush_read_in_order() {
        let dir = std::env::temp_dir().join(format!("ph-paylog-{}", fastrand::u64(..)));
        let mut w = unbounded(&dir);
        let now = crate::now_us();
        // the first chunk's outputs are "y", the second's "z": two schemas, two parts
        let n = CHUNK_ROWS + 300;
        for i in 0..n {
            let mut r = record(i, now, 3);
            if i >= CHUNK_ROWS {
                r.output_names = Arc::new(vec!["z".into()]);
            }
            w.add(r, 0);
        }
        w.flush();
        let parts: Vec<_> = walk(&dir);
        assert_eq!(parts.len(), 2, "{parts:?}");
        let (schema, batches) = super::super::read(&dir, "d", None, None).unwrap();
        assert!(
            schema.field_with_name("output.y").is_ok()
                && schema.field_with_name("output.z").is_ok()
        );
        let ids: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let ids = b.column_by_name("request_id").unwrap().as_string::<i32>();
                (0..b.num_rows())
                    .map(|i| ids.value(i).to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        let expected: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
        assert_eq!(ids, expected);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A writer with no limit on what it holds.
    fn unbounded(dir: &Path) -> Writer {
        let budget = Arc::new(Budget {
            bytes: AtomicUsize::new(0),
            limit: usize::MAX,
            drop: false,
            warned: AtomicBool::new(false),
        });
        Writer::new(dir.to_path_buf(), Arc::new(Metrics::new()), budget)
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
