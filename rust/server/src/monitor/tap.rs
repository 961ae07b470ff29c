//! The monitoring tap: every record the payload-log thread receives (logging on or off)
//! also goes here, off the request path. Health counts per request; tensors are held by
//! reference (the records' own `Arc`s) and profiled a chunk at a time, so that a request
//! costs a queue push on the hot path and a few pointer copies here. Windows that close go
//! to the store thread.

use std::collections::HashMap;
use std::sync::Arc;

use crossbeam_channel::Sender;
use pilothouse_monitor::health::Observation;
use pilothouse_monitor::{Closed, Key, Windows};
use pilothouse_runtime::{FeatureBuffer, OwnedTensor};

use crate::monitor::{process, Watch};
use crate::paylog::Record;

/// Rows held before they are profiled.
const CHUNK_ROWS: usize = 2048;

/// A closed window with what the store needs to file and compare it.
pub struct Finished {
    pub closed: Closed,
    pub model: Arc<str>,
    pub watch: Arc<Watch>,
}

/// Values waiting to be profiled into one key's open window (copied out of the requests'
/// tensors, which go at once).
struct Pending {
    inputs: FeatureBuffer,
    outputs: FeatureBuffer,
    watch: Arc<Watch>,
    /// Requests whose tensors did not fit the columns of the first (counted, not profiled).
    unfit: u64,
}

pub struct Tap {
    /// Open windows by window length (a deployment's spec names its length).
    windows: HashMap<i64, Windows>,
    pending: HashMap<(i64, Key), Pending>,
    /// The model and watch of each key with an open window.
    seen: HashMap<Key, (Arc<str>, Arc<Watch>)>,
    /// The process's CPU seconds when each open window (length, start) began.
    cpu_at_start: HashMap<(i64, i64), f64>,
    /// Profiling runs here, on this (low-priority) thread alone: the drift crate would
    /// otherwise spread it over the global pool, at serving's priority.
    pool: Option<rayon::ThreadPool>,
    out: Sender<Vec<Finished>>,
}

impl Tap {
    pub fn new(out: Sender<Vec<Finished>>) -> Tap {
        Tap {
            windows: HashMap::new(),
            pending: HashMap::new(),
            seen: HashMap::new(),
            cpu_at_start: HashMap::new(),
            pool: None,
            out,
        }
    }

    pub fn record(&mut self, r: &Record) {
        if !r.monitoring.enabled {
            return;
        }
        let length = i64::try_from(r.monitoring.window_s)
            .unwrap_or(60)
            .saturating_mul(1_000_000);
        let Some(windows) = self.windows_of(length) else {
            return;
        };
        let start = windows.start_of(r.time_us);
        let key = Key {
            deployment: r.deployment.clone(),
            version: r.version,
            route: r.route.clone(),
            shadow: r.role == "shadow",
        };
        // the rows held for a window that is about to close go into it first
        if windows.open_start(&key).is_some_and(|s| s < start) {
            self.profile_pending(length, &key);
        }
        self.cpu_at_start
            .entry((length, start))
            .or_insert_with(process::cpu_seconds);
        let windows = self.windows.get_mut(&length).expect("created above");
        let mut closed = Vec::new();
        let window = windows.window(&key, r.time_us, &mut closed);
        window.observe(&Observation {
            status: r.status,
            rows: r.outputs.as_ref().map_or(0, |o| rows_of(o)),
            latency: r.latency,
            queue: r.queue,
            inference: r.inference,
            batch_rows: r.batch_rows,
        });
        let finished = self.attach(closed);
        if !self.seen.contains_key(&key) {
            self.seen
                .insert(key.clone(), (r.model.clone(), r.watch.clone()));
        }
        if r.status == 200 {
            if let (Some(inputs), Some(outputs)) = (&r.inputs, &r.outputs) {
                let pending = self
                    .pending
                    .entry((length, key.clone()))
                    .or_insert_with(|| {
                        let (inputs, outputs) = r.watch.buffers();
                        Pending {
                            inputs,
                            outputs,
                            watch: r.watch.clone(),
                            unfit: 0,
                        }
                    });
                if pending.inputs.push(inputs).is_err() || pending.outputs.push(outputs).is_err() {
                    pending.unfit += 1;
                }
                if pending.inputs.rows() >= CHUNK_ROWS {
                    self.profile_pending(length, &key);
                }
            }
        }
        self.send(finished);
    }

    /// Closes the windows that ended by `now_us`.
    pub fn tick(&mut self, now_us: i64) {
        let lengths: Vec<i64> = self.windows.keys().copied().collect();
        let mut finished = Vec::new();
        for length in lengths {
            let due: Vec<Key> = self.windows[&length].due(now_us);
            for key in &due {
                self.profile_pending(length, key);
            }
            let closed = self
                .windows
                .get_mut(&length)
                .expect("listed")
                .close_due(now_us);
            finished.extend(self.attach(closed));
        }
        self.send(finished);
    }

    /// Closes every window (the server is stopping).
    pub fn close_all(&mut self) {
        let keys: Vec<(i64, Key)> = self.pending.keys().cloned().collect();
        for (length, key) in keys {
            self.profile_pending(length, &key);
        }
        let lengths: Vec<i64> = self.windows.keys().copied().collect();
        let mut finished = Vec::new();
        for length in lengths {
            let closed = self.windows.get_mut(&length).expect("listed").close_all();
            finished.extend(self.attach(closed));
        }
        self.send(finished);
    }

    fn windows_of(&mut self, length: i64) -> Option<&mut Windows> {
        match self.windows.entry(length) {
            std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(e) => {
                Some(e.insert(Windows::new(length).ok()?))
            }
        }
    }

    /// Profiles the rows held for `key` into its open window.
    fn profile_pending(&mut self, length: i64, key: &Key) {
        let Some(mut p) = self.pending.remove(&(length, key.clone())) else {
            return;
        };
        if self.pool.is_none() {
            // built on this thread, which it then uses as its one worker: no hand-off
            self.pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .use_current_thread()
                .build()
                .ok();
        }
        let Some(window) = self.windows.get_mut(&length).and_then(|w| w.open_mut(key)) else {
            return;
        };
        let mut work = || {
            window.unprofiled += p.unfit;
            if let Ok(Some(table)) = p.inputs.take() {
                if !p.watch.expectations.is_empty() {
                    window.quality.merge(&p.watch.expectations.check(&table));
                }
                window.add_inputs(&table);
            }
            if let Ok(Some(table)) = p.outputs.take() {
                window.add_outputs(&table);
            }
        };
        match &self.pool {
            Some(pool) => pool.install(work),
            None => work(),
        }
    }

    /// Closed windows with the model and watch of their key; a key whose window closed and
    /// did not reopen is forgotten.
    fn attach(&mut self, closed: Vec<Closed>) -> Vec<Finished> {
        if !closed.is_empty() {
            let (cpu, rss) = (process::cpu_seconds(), process::rss_bytes());
            let mut closed = closed;
            for c in &mut closed {
                let began = self.cpu_at_start.get(&(c.length_us, c.start_us)).copied();
                c.health.cpu_seconds = began.map_or(0.0, |b| (cpu - b).max(0.0));
                c.health.rss_bytes = rss;
            }
            let open = &self.windows;
            self.cpu_at_start.retain(|(length, start), _| {
                open.get(length).is_some_and(|w| w.has_open_start(*start))
            });
            return self.attach_closed(closed);
        }
        Vec::new()
    }

    fn attach_closed(&mut self, closed: Vec<Closed>) -> Vec<Finished> {
        let finished: Vec<Finished> = closed
            .into_iter()
            .filter_map(|c| {
                let (model, watch) = self.seen.get(&c.key).cloned()?;
                Some(Finished {
                    closed: c,
                    model,
                    watch,
                })
            })
            .collect();
        let open = &self.windows;
        self.seen
            .retain(|k, _| open.values().any(|w| w.open_start(k).is_some()));
        finished
    }

    fn send(&self, finished: Vec<Finished>) {
        if !finished.is_empty() {
            // the store thread gone means the server is stopping: nothing left to keep
            let _ = self.out.send(finished);
        }
    }
}

fn rows_of(tensors: &[OwnedTensor]) -> usize {
    tensors
        .first()
        .and_then(|t| t.shape.first().copied())
        .unwrap_or(1)
}
