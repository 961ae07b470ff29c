//! The monitoring tap: every record the payload-log thread receives (logging on or off)
//! also goes here, off the request path. A request's health observation and values are
//! appended to its key's slot (two pushes, no hashing); a slot is folded into its open
//! window a chunk at a time (counted, checked and profiled), so the per-request work of
//! monitoring stays a small share of serving's. Windows that close go to the store thread.

use std::collections::HashMap;
use std::sync::Arc;

use crossbeam_channel::Sender;
use pilothouse_monitor::health::Observation;
use pilothouse_monitor::{Closed, Key, Windows};
use pilothouse_runtime::{FeatureBuffer, OwnedTensor};

use crate::monitor::predictions::Kept;
use crate::monitor::{process, Watch};
use crate::paylog::Record;
use crate::spec::LogPolicy;

/// Rows held before they are profiled.
const CHUNK_ROWS: usize = 2048;

/// What the tap hands the store thread.
pub enum Stored {
    Windows(Vec<Finished>),
    /// Answered rows to keep, and how many days each deployment's log keeps them.
    Predictions(
        Vec<pilothouse_registry::Prediction>,
        Vec<(String, Option<u32>)>,
    ),
}

/// A closed window with what the store needs to file and compare it.
pub struct Finished {
    pub closed: Closed,
    pub model: Arc<str>,
    pub watch: Arc<Watch>,
    /// Export each feature's drift as gauges (`monitoring.feature_metrics`).
    pub feature_metrics: bool,
}

/// One key's traffic since it was last folded into its open window: the requests' health
/// observations and their values (copied out of the tensors, which go at once). A request
/// reaches its slot with a pointer comparison (the slot it reached last), with no hashing,
/// and costs two pushes; the window takes a slot's contents a chunk at a time.
struct Slot {
    key: Key,
    length: i64,
    /// The start of the open window these requests count in.
    start: i64,
    /// Windows of this key that started before this were closed (and stored): a request
    /// that arrived in one of them but answered after it closed counts in the next.
    closed_before: i64,
    model: Arc<str>,
    watch: Arc<Watch>,
    feature_metrics: bool,
    observed: Vec<Observation>,
    inputs: FeatureBuffer,
    outputs: FeatureBuffer,
    /// Requests whose tensors did not fit the columns of the first (counted, not profiled).
    unfit: u64,
    /// When the slot last saw a request.
    last_us: i64,
    /// The inputs its deployment keeps private (not monitored).
    private: Arc<[String]>,
}

impl Slot {
    fn holds(&self, r: &Record, length: i64) -> bool {
        let same = |a: &Arc<str>, b: &Arc<str>| Arc::ptr_eq(a, b) || a == b;
        self.length == length
            && self.key.version == r.version
            && self.key.shadow == (r.role == "shadow")
            && same(&self.key.deployment, &r.deployment)
            && same(&self.key.route, &r.route)
    }

    fn is_empty(&self) -> bool {
        self.observed.is_empty() && self.inputs.rows() == 0 && self.unfit == 0
    }
}

pub struct Tap {
    /// Open windows by window length (a deployment's spec names its length).
    windows: HashMap<i64, Windows>,
    slots: Vec<Slot>,
    /// The slot the last request went to (consecutive requests mostly share one).
    last: usize,
    /// The process's CPU seconds when each open window (length, start) began.
    cpu_at_start: HashMap<(i64, i64), f64>,
    /// Per deployment, the inputs its log policy redacts or hashes: never profiled.
    private: HashMap<String, Arc<[String]>>,
    /// When `tick` last ran: windows that ended by then are closed (and stored), so a new
    /// slot never reopens one.
    last_tick_us: i64,
    /// Profiling runs here, on this (low-priority) thread alone: the drift crate would
    /// otherwise spread it over the global pool, at serving's priority.
    pool: Option<rayon::ThreadPool>,
    /// The answered rows kept for feedback, and each deployment's retention in days.
    kept: Kept,
    retention: HashMap<String, Option<u32>>,
    out: Sender<Stored>,
}

impl Tap {
    pub fn new(out: Sender<Stored>) -> Tap {
        Tap {
            windows: HashMap::new(),
            slots: Vec::new(),
            last: 0,
            cpu_at_start: HashMap::new(),
            pool: None,
            private: HashMap::new(),
            last_tick_us: i64::MIN,
            kept: Kept::default(),
            retention: HashMap::new(),
            out,
        }
    }

    pub fn record(&mut self, r: &Record) {
        if !r.monitoring.enabled {
            return;
        }
        self.kept.add(r);
        let length = i64::try_from(r.monitoring.window_s)
            .unwrap_or(60)
            .saturating_mul(1_000_000);
        let Some(i) = self.slot_of(r, length) else {
            return;
        };
        let start = (r.time_us - r.time_us.rem_euclid(length)).max(self.slots[i].closed_before);
        if start > self.slots[i].start {
            // the first request of a later window: what the slot holds belongs to the one before
            self.fold(i);
            self.slots[i].start = start;
            self.cpu_at_start
                .entry((length, start))
                .or_insert_with(process::cpu_seconds);
        }
        if !Arc::ptr_eq(&self.slots[i].watch, &r.watch) {
            // the version was loaded again (a new reference, batching or signature): what
            // the slot holds is counted with the old watch, the rest with the new one
            self.fold(i);
            let slot = &mut self.slots[i];
            (slot.inputs, slot.outputs) = r.watch.buffers(&slot.private);
            slot.watch = r.watch.clone();
            slot.model = r.model.clone();
        }
        let slot = &mut self.slots[i];
        slot.last_us = slot.last_us.max(r.time_us);
        slot.feature_metrics = r.monitoring.feature_metrics;
        slot.observed.push(Observation {
            status: r.status,
            rows: r.outputs.as_ref().map_or(0, |o| rows_of(o)),
            latency: r.latency,
            queue: r.queue,
            inference: r.inference,
            batch_rows: r.batch_rows,
        });
        if r.status == 200 {
            if let (Some(inputs), Some(outputs)) = (&r.inputs, &r.outputs) {
                let before = slot.inputs.rows();
                if slot.inputs.push(inputs).is_err() {
                    slot.unfit += 1;
                } else if slot.outputs.push(outputs).is_err() {
                    // counted as unprofiled, not half-profiled
                    slot.inputs.truncate(before);
                    slot.unfit += 1;
                }
            }
        }
        if slot.observed.len() >= CHUNK_ROWS || slot.inputs.rows() >= CHUNK_ROWS {
            self.fold(i);
        }
    }

    /// The slot of the record's key and window length, made when it is new.
    fn slot_of(&mut self, r: &Record, length: i64) -> Option<usize> {
        if self
            .slots
            .get(self.last)
            .is_some_and(|s| s.holds(r, length))
        {
            return Some(self.last);
        }
        if let Some(i) = self.slots.iter().position(|s| s.holds(r, length)) {
            self.last = i;
            return Some(i);
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.windows.entry(length) {
            e.insert(Windows::new(length).ok()?);
        }
        // windows that ended by the last tick are closed: a late request counts in the next
        let closed_before = if self.last_tick_us == i64::MIN {
            i64::MIN
        } else {
            self.last_tick_us - self.last_tick_us.rem_euclid(length)
        };
        let start = (r.time_us - r.time_us.rem_euclid(length)).max(closed_before);
        self.cpu_at_start
            .entry((length, start))
            .or_insert_with(process::cpu_seconds);
        let private = self
            .private
            .get(&*r.deployment)
            .cloned()
            .unwrap_or_else(|| Arc::from(Vec::new()));
        let (inputs, outputs) = r.watch.buffers(&private);
        self.slots.push(Slot {
            key: Key {
                deployment: r.deployment.clone(),
                version: r.version,
                route: r.route.clone(),
                shadow: r.role == "shadow",
            },
            length,
            start,
            closed_before,
            model: r.model.clone(),
            watch: r.watch.clone(),
            feature_metrics: r.monitoring.feature_metrics,
            observed: Vec::new(),
            inputs,
            outputs,
            unfit: 0,
            last_us: r.time_us,
            private,
        });
        self.last = self.slots.len() - 1;
        Some(self.last)
    }

    /// A deployment's log policy: the inputs it redacts or hashes are not profiled from now
    /// on, and its kept predictions last as long as its log.
    pub fn set_policy(&mut self, deployment: &str, policy: &LogPolicy) {
        let private = policy.drop.iter().chain(&policy.hash).cloned().collect();
        self.set_private(deployment, private);
        self.retention
            .insert(deployment.to_string(), policy.retention_days);
    }

    /// The inputs `deployment`'s log policy redacts or hashes: from now on they are not
    /// profiled (what its slots hold is folded first, under the old set).
    fn set_private(&mut self, deployment: &str, names: Vec<String>) {
        let names: Arc<[String]> = Arc::from(names);
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            if &*s.key.deployment == deployment && s.private != names {
                self.fold(i);
                let s = &mut self.slots[i];
                (s.inputs, s.outputs) = s.watch.buffers(&names);
                s.private = names.clone();
            }
        }
        self.private.insert(deployment.to_string(), names);
    }

    /// Closes the windows that ended by `now_us`, and forgets keys quiet for two windows.
    pub fn tick(&mut self, now_us: i64) {
        self.last_tick_us = self.last_tick_us.max(now_us);
        for i in 0..self.slots.len() {
            let s = &self.slots[i];
            let end = s.start.saturating_add(s.length);
            if end <= now_us {
                self.fold(i);
                let s = &mut self.slots[i];
                s.closed_before = s.closed_before.max(end);
            }
        }
        let mut finished = Vec::new();
        for windows in self.windows.values_mut() {
            finished.extend(windows.close_due(now_us));
        }
        let finished = self.attach(finished);
        self.hand_over(false);
        // a slot goes when it holds nothing, its key has no open window (whose model and
        // watch it names) and it has been quiet for two windows
        let open = &self.windows;
        self.slots.retain(|s| {
            !s.is_empty()
                || open
                    .get(&s.length)
                    .is_some_and(|w| w.open_start(&s.key).is_some())
                || s.last_us.saturating_add(s.length.saturating_mul(2)) > now_us
        });
        self.send(finished);
    }

    /// Closes every window (the server is stopping).
    pub fn close_all(&mut self) {
        for i in 0..self.slots.len() {
            self.fold(i);
        }
        let mut finished = Vec::new();
        for windows in self.windows.values_mut() {
            finished.extend(windows.close_all());
        }
        let finished = self.attach(finished);
        self.send(finished);
        self.hand_over(true);
    }

    /// Sends the kept predictions to the store when they are due (`all`: every one now).
    fn hand_over(&mut self, all: bool) {
        if let Some(rows) = self.kept.due(all) {
            let retention = self
                .retention
                .iter()
                .map(|(d, days)| (d.clone(), *days))
                .collect();
            let _ = self.out.send(Stored::Predictions(rows, retention));
        }
    }

    /// Counts and profiles what slot `i` holds into its open window (a window of its key
    /// that ended before is closed and sent first).
    fn fold(&mut self, i: usize) {
        if self.slots[i].is_empty() {
            return;
        }
        if self.pool.is_none() {
            // built on this thread, which it then uses as its one worker: no hand-off
            self.pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .use_current_thread()
                .build()
                .ok();
        }
        let slot = &mut self.slots[i];
        let Some(windows) = self.windows.get_mut(&slot.length) else {
            return;
        };
        let mut closed = Vec::new();
        let window = windows.window(&slot.key, slot.start, &mut closed);
        let mut work = || {
            window.observe_all(&slot.observed);
            slot.observed.clear();
            window.unprofiled += std::mem::take(&mut slot.unfit);
            if let Ok(Some(table)) = slot.inputs.take() {
                let reference = slot.watch.reference.load();
                if !reference.expectations.is_empty() {
                    let private = slot.inputs.private_columns();
                    window
                        .quality
                        .merge(&reference.expectations.check_without(&table, private));
                }
                window.add_inputs(&table);
            }
            if let Ok(Some(table)) = slot.outputs.take() {
                window.add_outputs(&table);
            }
        };
        match &self.pool {
            Some(pool) => pool.install(work),
            None => work(),
        }
        let finished = self.attach(closed);
        self.send(finished);
    }

    /// Closed windows with their CPU and memory, and the model and watch of their key.
    fn attach(&mut self, mut closed: Vec<Closed>) -> Vec<Finished> {
        if closed.is_empty() {
            return Vec::new();
        }
        let (cpu, rss) = (process::cpu_seconds(), process::rss_bytes());
        for c in &mut closed {
            let began = self.cpu_at_start.get(&(c.length_us, c.start_us)).copied();
            c.health.cpu_seconds = began.map_or(0.0, |b| (cpu - b).max(0.0));
            c.health.rss_bytes = rss;
        }
        // kept while a window of that start is open or a slot is gathering for one
        let (open, slots) = (&self.windows, &self.slots);
        self.cpu_at_start.retain(|(length, start), _| {
            slots
                .iter()
                .any(|s| s.length == *length && s.start == *start)
                || open.get(length).is_some_and(|w| w.has_open_start(*start))
        });
        let slots = &self.slots;
        closed
            .into_iter()
            .filter_map(|c| {
                let s = slots
                    .iter()
                    .find(|s| s.length == c.length_us && s.key == c.key)?;
                Some(Finished {
                    model: s.model.clone(),
                    watch: s.watch.clone(),
                    feature_metrics: s.feature_metrics,
                    closed: c,
                })
            })
            .collect()
    }

    fn send(&self, finished: Vec<Finished>) {
        if !finished.is_empty() {
            // the store thread gone means the server is stopping: nothing left to keep
            let _ = self.out.send(Stored::Windows(finished));
        }
    }
}

fn rows_of(tensors: &[OwnedTensor]) -> usize {
    tensors
        .first()
        .and_then(|t| t.shape.first().copied())
        .unwrap_or(1)
}
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record(time_us: i64) -> Record {
        Record {
            deployment: "churn".into(),
            request_id: String::new(),
            keys: Arc::default(),
            time_us,
            model: "churn".into(),
            version: 1,
            role: "primary",
            route: "v1".into(),
            status: 200,
            latency: Duration::from_millis(3),
            queue: Duration::ZERO,
            inference: Duration::from_millis(1),
            batch_rows: 1,
            input_names: Arc::default(),
            inputs: None,
            output_names: Arc::default(),
            outputs: None,
            error: None,
            watch: Arc::default(),
            monitoring: Arc::default(),
        }
    }

    fn windows(rx: &crossbeam_channel::Receiver<Stored>) -> Vec<Finished> {
        rx.try_iter()
            .filter_map(|s| match s {
                Stored::Windows(w) => Some(w),
                Stored::Predictions(..) => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn a_request_that_answers_after_its_window_closed_counts_in_the_next_one() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut tap = Tap::new(tx);
        let minute = 60_000_000;
        let t0 = 1_800_000_000_000_000 - 1_800_000_000_000_000 % minute;
        tap.record(&record(t0 + 5));
        tap.record(&record(t0 + minute - 10));
        tap.tick(t0 + minute + 1);
        let closed: Vec<Finished> = windows(&rx);
        assert_eq!(closed.len(), 1);
        assert_eq!(
            (closed[0].closed.start_us, closed[0].closed.health.requests),
            (t0, 2)
        );
        // arrived in the first window, answered after it closed: the next window has it,
        // and the first is not closed (and stored) a second time
        tap.record(&record(t0 + minute - 3));
        tap.record(&record(t0 + minute + 7));
        tap.close_all();
        let rest: Vec<Finished> = windows(&rx);
        assert_eq!(rest.len(), 1);
        assert_eq!(
            (rest[0].closed.start_us, rest[0].closed.health.requests),
            (t0 + minute, 2)
        );
    }

    #[test]
    fn a_quiet_key_forgotten_and_a_late_answer_never_reopen_a_stored_window() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut tap = Tap::new(tx);
        let minute = 60_000_000;
        let t0 = 1_800_000_000_000_000 - 1_800_000_000_000_000 % minute;
        tap.record(&record(t0 + 5));
        tap.tick(t0 + minute + 1);
        // quiet for three windows: the key's slot is forgotten
        tap.tick(t0 + 4 * minute);
        assert!(tap.slots.is_empty());
        // a request that arrived in the first window answers now (a long timeout)
        tap.record(&record(t0 + 9));
        tap.close_all();
        let all: Vec<(i64, u64)> = windows(&rx)
            .into_iter()
            .map(|f| (f.closed.start_us, f.closed.health.requests))
            .collect();
        assert_eq!(all, [(t0, 1), (t0 + 4 * minute, 1)]);
    }
}
