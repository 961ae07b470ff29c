//! Service health of one window: requests and errors by status, and latency, queue wait,
//! inference time and batch size as mergeable summaries (count, sum, extremes and the drift
//! crate's log-linear grid, whose quantiles are within 0.1% of the value). A latency anomaly
//! is a window whose p99 stands far above a robust baseline of the windows before it.

use std::collections::BTreeMap;
use std::time::Duration;

use pilothouse_drift::grid::{Buckets, Grid};
use serde::{Deserialize, Serialize};

/// A mergeable summary of one measured quantity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: u64,
    pub sum: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    grid: Grid,
}

impl Summary {
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        self.n += 1;
        self.sum += x;
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
        self.grid.add(x);
    }

    pub fn merge(&mut self, other: &Summary) {
        self.n += other.n;
        self.sum += other.sum;
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.grid.merge(&other.grid);
    }

    pub fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }

    /// The `q` quantile (0 to 1), within the grid's 0.1%; None when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        Buckets::new(&self.grid, self.min?, self.max?).quantile(q)
    }
}

/// How one window's requests went.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub requests: u64,
    /// Requests by HTTP status (200 included).
    pub by_status: BTreeMap<u16, u64>,
    /// Rows answered (a request may carry many).
    pub rows: u64,
    pub latency_ms: Summary,
    pub queue_ms: Summary,
    pub inference_ms: Summary,
    /// Rows of the batches the requests ran in.
    pub batch_rows: Summary,
    /// CPU seconds the serving process used during the window, and its resident memory
    /// when the window closed, as the server sampled them (0 when it could not).
    pub cpu_seconds: f64,
    pub rss_bytes: u64,
}

/// One request as health sees it.
#[derive(Clone, Copy, Debug)]
pub struct Observation {
    pub status: u16,
    pub rows: usize,
    pub latency: Duration,
    pub queue: Duration,
    pub inference: Duration,
    pub batch_rows: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl Health {
    pub fn observe(&mut self, o: &Observation) {
        self.observe_all(std::slice::from_ref(o));
    }

    /// Observes many requests: the same as one `observe` each, with statuses counted in
    /// runs (consecutive requests mostly share one).
    pub fn observe_all(&mut self, all: &[Observation]) {
        let mut run: Option<(u16, u64)> = None;
        for o in all {
            match &mut run {
                Some((status, n)) if *status == o.status => *n += 1,
                _ => {
                    if let Some((status, n)) = run {
                        *self.by_status.entry(status).or_default() += n;
                    }
                    run = Some((o.status, 1));
                }
            }
            self.latency_ms.add(ms(o.latency));
            if o.status == 200 {
                self.rows += o.rows as u64;
                self.queue_ms.add(ms(o.queue));
                self.inference_ms.add(ms(o.inference));
                self.batch_rows.add(o.batch_rows as f64);
            }
        }
        if let Some((status, n)) = run {
            *self.by_status.entry(status).or_default() += n;
        }
        self.requests += all.len() as u64;
    }

    pub fn merge(&mut self, other: &Health) {
        self.requests += other.requests;
        for (status, n) in &other.by_status {
            *self.by_status.entry(*status).or_default() += n;
        }
        self.rows += other.rows;
        self.latency_ms.merge(&other.latency_ms);
        self.queue_ms.merge(&other.queue_ms);
        self.inference_ms.merge(&other.inference_ms);
        self.batch_rows.merge(&other.batch_rows);
        self.cpu_seconds += other.cpu_seconds;
        // replicas each hold their own memory: the sum is what the deployment holds
        self.rss_bytes += other.rss_bytes;
    }

    /// Requests not answered with 200.
    pub fn errors(&self) -> u64 {
        self.by_status
            .iter()
            .filter(|(s, _)| **s != 200)
            .map(|(_, n)| n)
            .sum()
    }
}

/// A window whose latency stands out from the windows before it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    pub p99_ms: f64,
    /// The median p99 of the baseline windows.
    pub baseline_ms: f64,
    /// How far above the baseline, in robust standard deviations (MAD x 1.4826).
    pub score: f64,
}

/// Windows with requests a latency baseline needs.
pub const MIN_BASELINE: usize = 5;

/// Whether `current`'s p99 latency is anomalous against `recent` windows (oldest first):
/// at least `MIN_BASELINE` of them with requests, and a p99 both more than 4 robust standard
/// deviations and more than twice above their median (so that a quiet, steady service does
/// not flag a jitter of a millisecond). Its p90 must also be more than twice their median
/// p90: most answers got slower, not a few queued behind one stall of the machine.
pub fn latency_anomaly(recent: &[&Health], current: &Health) -> Option<Anomaly> {
    let p99 = current.latency_ms.quantile(0.99)?;
    let p90 = current.latency_ms.quantile(0.9)?;
    let mut baseline_p90: Vec<f64> = recent
        .iter()
        .filter_map(|h| h.latency_ms.quantile(0.9))
        .collect();
    if baseline_p90.len() < MIN_BASELINE || p90 <= 2.0 * median(&mut baseline_p90) {
        return None;
    }
    let mut baseline: Vec<f64> = recent
        .iter()
        .filter_map(|h| h.latency_ms.quantile(0.99))
        .collect();
    if baseline.len() < MIN_BASELINE {
        return None;
    }
    let center = median(&mut baseline);
    let mut deviations: Vec<f64> = baseline.iter().map(|x| (x - center).abs()).collect();
    // a floor of 1% of the median keeps a perfectly steady baseline from dividing by zero
    let sigma = (median(&mut deviations) * 1.4826)
        .max(center * 0.01)
        .max(1e-6);
    let score = (p99 - center) / sigma;
    (score > 4.0 && p99 > 2.0 * center).then_some(Anomaly {
        p99_ms: p99,
        baseline_ms: center,
        score,
    })
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(latencies_ms: &[f64]) -> Health {
        let mut h = Health::default();
        for &l in latencies_ms {
            h.observe(&Observation {
                status: 200,
                rows: 1,
                latency: Duration::from_secs_f64(l / 1e3),
                queue: Duration::ZERO,
                inference: Duration::ZERO,
                batch_rows: 1,
            });
        }
        h
    }

    #[test]
    fn summaries_merge_to_the_summary_of_the_whole() {
        let xs: Vec<f64> = (1..=1000).map(f64::from).collect();
        let mut whole = Summary::default();
        xs.iter().for_each(|x| whole.add(*x));
        let (mut a, mut b) = (Summary::default(), Summary::default());
        xs[..300].iter().for_each(|x| a.add(*x));
        xs[300..].iter().for_each(|x| b.add(*x));
        a.merge(&b);
        assert_eq!(a, whole);
        let p99 = whole.quantile(0.99).unwrap();
        assert!((p99 - 990.0).abs() <= 990.0 * 0.002, "{p99}");
        assert_eq!(whole.mean(), Some(500.5));
    }

    #[test]
    fn errors_count_every_status_but_200() {
        let mut h = window(&[1.0, 2.0]);
        h.observe(&Observation {
            status: 400,
            rows: 0,
            latency: Duration::from_millis(1),
            queue: Duration::ZERO,
            inference: Duration::ZERO,
            batch_rows: 0,
        });
        assert_eq!((h.requests, h.errors(), h.rows), (3, 1, 2));
        assert_eq!(h.queue_ms.n, 2);
    }

    #[test]
    fn observing_many_at_once_is_observing_each() {
        let all: Vec<Observation> = (0..50u64)
            .map(|i| Observation {
                status: if i % 7 == 3 { 500 } else { 200 },
                rows: (i % 3) as usize + 1,
                latency: Duration::from_micros(100 + i * 13),
                queue: Duration::from_micros(i),
                inference: Duration::from_micros(50 + i),
                batch_rows: (i % 4) as usize + 1,
            })
            .collect();
        let mut one = Health::default();
        all.iter().for_each(|o| one.observe(o));
        let mut many = Health::default();
        many.observe_all(&all[..20]);
        many.observe_all(&all[20..]);
        assert_eq!(one, many);
        assert_eq!(many.by_status[&500], 7);
    }

    #[test]
    fn a_slow_window_is_an_anomaly_and_a_jittery_one_is_not() {
        let steady: Vec<Health> = (0..10)
            .map(|i| window(&[2.0, 2.1, 2.2 + f64::from(i) * 0.01, 2.3]))
            .collect();
        let recent: Vec<&Health> = steady.iter().collect();
        assert!(latency_anomaly(&recent, &window(&[2.0, 2.4])).is_none());
        let slow = latency_anomaly(&recent, &window(&[20.0, 25.0])).expect("flagged");
        assert!(slow.p99_ms > 20.0 && slow.baseline_ms < 2.5, "{slow:?}");
        assert!(latency_anomaly(&recent[..3], &window(&[20.0])).is_none());
        // one stall: a few answers of a hundred queued behind it, the rest as fast as ever
        let mut stalled = vec![2.1; 97];
        stalled.extend([30.0, 31.0, 32.0]);
        assert!(latency_anomaly(&recent, &window(&stalled)).is_none());
    }
}
