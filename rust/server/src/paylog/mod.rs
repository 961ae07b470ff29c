//! The payload log: every answered request (and every shadow run) as one row, buffered in
//! memory and flushed as Parquet segments to `<root>/<deployment>/<YYYY-MM-DD>/<HH>/`, with
//! per-deployment retention and redaction. This module owns the records and the writer
//! thread; `writer` turns records into segments, `payload` tensors into typed columns, and
//! `reader` reads segments of every layout back.

mod payload;
mod reader;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use pilothouse_runtime::OwnedTensor;

use crate::metrics::Metrics;
use crate::spec::LogPolicy;

pub use reader::{read, schema};
use writer::Writer;

const HOUR_US: i64 = 3_600_000_000;
/// Rows buffered before a flush is forced, whatever the interval.
const FLUSH_ROWS: usize = 50_000;

/// One request (or shadow run) as the server saw it.
pub struct Record {
    pub deployment: Arc<str>,
    pub request_id: String,
    /// The correlation keys of the request's rows (empty when it gave none).
    pub keys: Arc<Vec<String>>,
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
    pub monitoring: Arc<crate::spec::Monitoring>,
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
pub(super) struct Budget {
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
                    if let Some(t) = tap.as_deref_mut() {
                        // what the log keeps private, monitoring does not profile either
                        t.set_policy(&d, &p);
                    }
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
