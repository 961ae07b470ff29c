//! Tumbling time windows, one open window per deployment, version and route. A window
//! profiles the inputs and outputs of its requests (the drift crate's mergeable profiles),
//! and counts their health and data quality. When time passes its end it closes: the
//! server stores what closed, and readers merge windows (of replicas, or into longer
//! windows) exactly. Memory is one window per key and per column, whatever the traffic.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use pilothouse_drift::{Profile, ProfileBuilder};

use crate::error::{MonitorError, Result};
use crate::health::{Health, Observation};
use crate::quality::Quality;

/// What a window belongs to. Compared and hashed for every served request, so both are
/// cheap: names shared by `Arc` compare by pointer first, and the hash reads lengths, not
/// text (equal keys still hash alike; the few keys of a server rarely collide).
#[derive(Clone, Debug, PartialOrd, Ord)]
pub struct Key {
    pub deployment: Arc<str>,
    pub version: i64,
    /// The route label (`@champion`, `v3`).
    pub route: Arc<str>,
    /// The shadow's copies of requests, not the answers clients got.
    pub shadow: bool,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        let same = |a: &Arc<str>, b: &Arc<str>| Arc::ptr_eq(a, b) || a == b;
        self.version == other.version
            && self.shadow == other.shadow
            && same(&self.deployment, &other.deployment)
            && same(&self.route, &other.route)
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.version.hash(state);
        self.shadow.hash(state);
        self.deployment.len().hash(state);
        self.route.len().hash(state);
    }
}

impl Key {
    /// The route as stored: the label, with `shadow:` before it for a shadow's copies.
    pub fn route_name(&self) -> String {
        if self.shadow {
            format!("shadow:{}", self.route)
        } else {
            self.route.to_string()
        }
    }
}

/// One open window.
#[derive(Default)]
pub struct Window {
    inputs: ProfileBuilder,
    outputs: ProfileBuilder,
    pub health: Health,
    pub quality: Quality,
    /// Batches whose columns differed from the window's first (counted, not profiled).
    pub unprofiled: u64,
}

impl Window {
    /// Profiles a batch of served inputs (one column per feature).
    pub fn add_inputs(&mut self, batch: &RecordBatch) {
        if batch.num_rows() > 0 && self.inputs.update(batch).is_err() {
            self.unprofiled += 1;
        }
    }

    /// Profiles a batch of outputs (one column per output, labels as text).
    pub fn add_outputs(&mut self, batch: &RecordBatch) {
        if batch.num_rows() > 0 && self.outputs.update(batch).is_err() {
            self.unprofiled += 1;
        }
    }

    pub fn observe(&mut self, o: &Observation) {
        self.health.observe(o);
    }

    pub fn observe_all(&mut self, all: &[Observation]) {
        self.health.observe_all(all);
    }
}

/// A window that closed: everything that is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Closed {
    pub key: Key,
    pub start_us: i64,
    pub length_us: i64,
    /// None when the window saw no rows to profile.
    pub inputs: Option<Profile>,
    pub outputs: Option<Profile>,
    pub health: Health,
    pub quality: Quality,
    pub unprofiled: u64,
}

fn finish(builder: ProfileBuilder) -> Option<Profile> {
    (builder.rows() > 0)
        .then(|| builder.finish().ok())
        .flatten()
}

/// The open windows, and when each began.
pub struct Windows {
    length_us: i64,
    open: HashMap<Key, (i64, Window)>,
}

impl Windows {
    /// Windows of `length_us` microseconds (at least one second), aligned to the epoch so
    /// that every replica's windows start at the same instants.
    pub fn new(length_us: i64) -> Result<Windows> {
        if length_us < 1_000_000 {
            return Err(MonitorError::Invalid(format!(
                "a monitoring window of {length_us} µs is too short; use at least one second"
            )));
        }
        Ok(Windows {
            length_us,
            open: HashMap::new(),
        })
    }

    pub fn length_us(&self) -> i64 {
        self.length_us
    }

    /// The start of the window holding `time_us`.
    pub fn start_of(&self, time_us: i64) -> i64 {
        time_us - time_us.rem_euclid(self.length_us)
    }

    /// The window of `key` that holds `time_us`; a window of the key that ended before it is
    /// closed into `closed` first. A time before the open window's start (a request that
    /// arrived earlier and finished later) counts in the open window.
    pub fn window(&mut self, key: &Key, time_us: i64, closed: &mut Vec<Closed>) -> &mut Window {
        let start = self.start_of(time_us);
        let stale = self
            .open
            .get(key)
            .is_some_and(|(open_start, _)| *open_start < start);
        if stale {
            if let Some((open_start, w)) = self.open.remove(key) {
                closed.push(self.close(key.clone(), open_start, w));
            }
        }
        let (_, window) = self
            .open
            .entry(key.clone())
            .or_insert_with(|| (start, Window::default()));
        window
    }

    /// When the open window of `key` began, if it has one.
    pub fn open_start(&self, key: &Key) -> Option<i64> {
        self.open.get(key).map(|(start, _)| *start)
    }

    /// Whether some key's open window began at `start_us`.
    pub fn has_open_start(&self, start_us: i64) -> bool {
        self.open.values().any(|(s, _)| *s == start_us)
    }

    /// The open window of `key`, if it has one.
    pub fn open_mut(&mut self, key: &Key) -> Option<&mut Window> {
        self.open.get_mut(key).map(|(_, w)| w)
    }

    /// The keys whose window ended by `now_us` (what `close_due` closes).
    pub fn due(&self, now_us: i64) -> Vec<Key> {
        self.open
            .iter()
            .filter(|(_, (start, _))| start.saturating_add(self.length_us) <= now_us)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Closes every window that ended by `now_us`.
    pub fn close_due(&mut self, now_us: i64) -> Vec<Closed> {
        let due = self.due(now_us);
        self.take(due)
    }

    /// Closes every open window (at shutdown).
    pub fn close_all(&mut self) -> Vec<Closed> {
        let keys: Vec<Key> = self.open.keys().cloned().collect();
        self.take(keys)
    }

    fn take(&mut self, mut keys: Vec<Key>) -> Vec<Closed> {
        keys.sort();
        keys.into_iter()
            .filter_map(|k| {
                let (start, w) = self.open.remove(&k)?;
                Some(self.close(k, start, w))
            })
            .collect()
    }

    fn close(&self, key: Key, start_us: i64, w: Window) -> Closed {
        Closed {
            key,
            start_us,
            length_us: self.length_us,
            inputs: finish(w.inputs),
            outputs: finish(w.outputs),
            health: w.health,
            quality: w.quality,
            unprofiled: w.unprofiled,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use arrow_array::Float64Array;
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    const MINUTE: i64 = 60_000_000;

    fn rows(values: &[f64]) -> RecordBatch {
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, false)])),
            vec![Arc::new(Float64Array::from(values.to_vec()))],
        )
        .unwrap()
    }

    fn served(w: &mut Window, values: &[f64]) {
        w.add_inputs(&rows(values));
        w.observe(&Observation {
            status: 200,
            rows: values.len(),
            latency: Duration::from_millis(2),
            queue: Duration::ZERO,
            inference: Duration::from_millis(1),
            batch_rows: values.len(),
        });
    }

    fn key(route: &str) -> Key {
        Key {
            deployment: "churn".into(),
            version: 3,
            route: route.into(),
            shadow: false,
        }
    }

    #[test]
    fn windows_close_when_time_passes_and_merge_back_to_the_whole() {
        let mut windows = Windows::new(MINUTE).unwrap();
        let mut closed = Vec::new();
        let t0 = 1_700_000_000_000_000 - 1_700_000_000_000_000 % MINUTE;
        served(windows.window(&key("@a"), t0 + 5, &mut closed), &[1.0, 2.0]);
        served(windows.window(&key("@b"), t0 + 6, &mut closed), &[9.0]);
        served(
            windows.window(&key("@a"), t0 + MINUTE - 1, &mut closed),
            &[3.0],
        );
        assert!(closed.is_empty());
        served(windows.window(&key("@a"), t0 + MINUTE, &mut closed), &[4.0]);
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].start_us, closed[0].health.requests), (t0, 2));
        assert_eq!(closed[0].inputs.as_ref().unwrap().rows, 3);

        let due = windows.close_due(t0 + MINUTE);
        assert_eq!(due.len(), 1, "only @b's first window has ended");
        assert_eq!(&*due[0].key.route, "@b");
        let rest = windows.close_all();
        assert_eq!(rest[0].start_us, t0 + MINUTE);

        let whole = Profile::of_batches(&[rows(&[1.0, 2.0, 3.0, 4.0])]).unwrap();
        let parts = [
            closed[0].inputs.clone().unwrap(),
            rest[0].inputs.clone().unwrap(),
        ];
        assert_eq!(Profile::merge(&parts).unwrap(), whole);
    }

    #[test]
    fn columns_that_change_within_a_window_are_counted_not_profiled() {
        let mut windows = Windows::new(MINUTE).unwrap();
        let w = windows.window(&key("@a"), 0, &mut Vec::new());
        w.add_inputs(&rows(&[1.0]));
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("y", DataType::Float64, false)])),
            vec![Arc::new(Float64Array::from(vec![1.0]))],
        )
        .unwrap();
        w.add_inputs(&other);
        let closed = windows.close_all();
        assert_eq!(
            (
                closed[0].unprofiled,
                closed[0].inputs.as_ref().unwrap().rows
            ),
            (1, 1)
        );
        assert!(Windows::new(10).is_err());
    }
}
