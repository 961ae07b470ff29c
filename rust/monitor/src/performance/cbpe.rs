//! Confidence-based performance estimation (CBPE): a classifier's accuracy, precision,
//! recall, F1, specificity and ROC AUC estimated from its own probabilities where no labels
//! are known yet. Fitted on reference rows with labels:
//!
//! - **calibration**: each class's probabilities (one-vs-rest) are mapped through an
//!   isotonic regression fitted on the reference when that makes them better calibrated —
//!   judged on ten stratified 90/10 splits of the reference by the expected calibration
//!   error of the held-out tenths; multiclass rows are normalised to sum to one after;
//! - **expected confusion**: a row predicted positive is a true positive with its
//!   calibrated probability and a false positive otherwise (and so on for the other cells),
//!   so every count-based metric follows from the sums; ROC AUC from the expected curve;
//! - **sampling error**: of each metric from the reference's row-level spread, scaled by a
//!   chunk's size; the band is the estimate ± 3 of them, clipped to [0, 1];
//! - **thresholds**: the realized metric of the reference chunks, mean ± 3 standard
//!   deviations; an estimate outside them alerts.
//!
//! It assumes the relation between inputs and labels does not change (no concept drift):
//! a shift in that relation leaves the probabilities where they were, and the estimate
//! misses it. Multiclass metrics average the classes (macro).

use std::ops::Range;

use rayon::prelude::*;

use super::isotonic::{Isotonic, Runs};
use super::metrics::UNKNOWN;
use super::metrics::{
    expected_auc_descending, mean_defined, order_by_score, rank_share_spreads, realized_in_order,
    Counts, Metric, Rows, Tally,
};
use crate::error::{MonitorError, Result};

/// How estimates are banded and judged.
#[derive(Clone, Debug)]
pub struct Options {
    pub metrics: Vec<Metric>,
    /// Sampling errors on either side of an estimate that make its band.
    pub band_sigmas: f64,
    /// Standard deviations of the reference chunks' values on either side of their mean
    /// that make the alert thresholds.
    pub threshold_sigmas: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            metrics: Metric::ALL.to_vec(),
            band_sigmas: 3.0,
            threshold_sigmas: 3.0,
        }
    }
}

/// One metric of one chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimated {
    pub metric: Metric,
    pub estimate: f64,
    pub sampling_error: f64,
    pub lower: f64,
    pub upper: f64,
    pub lower_threshold: Option<f64>,
    pub upper_threshold: Option<f64>,
    /// The estimate is outside the thresholds.
    pub alert: bool,
    /// The value on the chunk's labelled rows (NaN without labels).
    pub realized: f64,
}

/// The estimates of one chunk of rows.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkEstimate {
    /// The chunk's rows, `start..end`.
    pub start: usize,
    pub end: usize,
    /// Rows whose label is known.
    pub labelled: usize,
    pub values: Vec<Estimated>,
}

/// The spread of a metric's row-level parts on the reference, which sets the sampling
/// error of a chunk of n rows: sqrt(sum of variance / (n * share)) / divisor, one part per
/// class averaged (one for a binary problem).
#[derive(Clone, Debug)]
struct Spread {
    parts: Vec<(f64, f64)>,
    divisor: f64,
}

impl Spread {
    fn error(&self, n: usize) -> f64 {
        let n = n as f64;
        let sum: f64 = self
            .parts
            .iter()
            .filter(|(_, share)| *share > 0.0)
            .map(|(var, share)| var / (n * share))
            .sum();
        if n == 0.0 {
            f64::NAN
        } else if sum <= 0.0 {
            0.0
        } else {
            sum.sqrt() / self.divisor
        }
    }
}

/// A fitted estimator.
#[derive(Clone, Debug)]
pub struct Cbpe {
    classes: usize,
    options: Options,
    /// Per class (binary: class 1 only), when calibrating helped.
    calibrators: Vec<Option<Isotonic>>,
    spreads: Vec<Spread>,
    thresholds: Vec<(Option<f64>, Option<f64>)>,
    reference: Vec<ChunkEstimate>,
}

impl Cbpe {
    /// Fits on reference rows (labels needed) cut into `chunks`, which also set the
    /// alert thresholds.
    pub fn fit(reference: &Rows<'_>, chunks: &[Range<usize>], options: Options) -> Result<Cbpe> {
        check_chunks(chunks, reference.len(), "reference")?;
        if options.metrics.is_empty() {
            return Err(MonitorError::input("metrics", "name at least one metric"));
        }
        let (Some(y_true), Some(tally)) = (reference.y_true, Tally::of(reference)) else {
            return Err(MonitorError::input(
                "reference",
                "CBPE is fitted on reference rows with their labels (y_true)",
            ));
        };
        if tally.labelled == 0 {
            return Err(MonitorError::input(
                "reference",
                "no reference row has a label (y_true): CBPE needs labelled reference rows",
            ));
        }
        let k = reference.classes;
        if let Some(missing) = tally.of_class.iter().position(|n| *n == 0) {
            return Err(MonitorError::input(
                "reference",
                format!(
                    "no reference row is labelled with class {} (the {} of {k}): CBPE learns \
                     from labels of every class",
                    missing,
                    ordinal(missing + 1)
                ),
            ));
        }
        let labelled: Vec<usize> = (0..reference.len())
            .filter(|i| y_true[*i] != UNKNOWN)
            .collect();
        // per scored class, its labelled rows in increasing order of its probability, with
        // whether each is of that class, sorted once for its calibration and ROC AUC's
        // spread (and dropped before the next class: one list per thread at a time)
        let per_class: Vec<(Option<Isotonic>, AucParts)> = reference
            .scored()
            .par_iter()
            .map(|c| {
                let sorted: Vec<(f64, bool)> =
                    order_by_score(labelled.iter().map(|i| reference.p(*i, *c)))
                        .into_iter()
                        .map(|o| {
                            let i = labelled[o as usize];
                            (reference.p(i, *c), y_true[i] as usize == *c)
                        })
                        .collect();
                let auc = if options.metrics.contains(&Metric::RocAuc) {
                    rank_share_spreads(&sorted)
                } else {
                    ((0.0, 0), (0.0, 0))
                };
                (calibrator(&sorted), auc)
            })
            .collect();
        let (calibrators, auc_parts): (Vec<Option<Isotonic>>, Vec<AucParts>) =
            per_class.into_iter().unzip();
        let spreads = options
            .metrics
            .iter()
            .map(|m| spread(reference, &tally, &auc_parts, *m))
            .collect();
        let mut fitted = Cbpe {
            classes: k,
            thresholds: vec![(None, None); options.metrics.len()],
            options,
            calibrators,
            spreads,
            reference: Vec::new(),
        };
        let mut chunks_out = fitted.estimate_chunks(reference, chunks);
        // thresholds from the reference chunks' realized values
        for (m, threshold) in fitted.thresholds.iter_mut().enumerate() {
            let values: Vec<f64> = chunks_out
                .iter()
                .map(|c| c.values[m].realized)
                .filter(|v| !v.is_nan())
                .collect();
            if values.len() >= 2 {
                let mean = values.iter().sum::<f64>() / values.len() as f64;
                let var =
                    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
                let spread = fitted.options.threshold_sigmas * var.sqrt();
                *threshold = (
                    Some((mean - spread).max(0.0)),
                    Some((mean + spread).min(1.0)),
                );
            }
        }
        for c in &mut chunks_out {
            fitted.judge(c);
        }
        fitted.reference = chunks_out;
        Ok(fitted)
    }

    /// The reference chunks' estimates, realized values and alerts.
    pub fn reference(&self) -> &[ChunkEstimate] {
        &self.reference
    }

    /// Whether each class's probabilities are calibrated before estimating (binary: one).
    pub fn calibrated(&self) -> Vec<bool> {
        self.calibrators.iter().map(Option::is_some).collect()
    }

    /// The estimates of `rows` cut into `chunks` (realized values where labels are known).
    pub fn estimate(&self, rows: &Rows<'_>, chunks: &[Range<usize>]) -> Result<Vec<ChunkEstimate>> {
        check_chunks(chunks, rows.len(), "analysis")?;
        if rows.classes != self.classes {
            return Err(MonitorError::input(
                "analysis",
                format!(
                    "{} classes, the reference had {}",
                    rows.classes, self.classes
                ),
            ));
        }
        let mut out = self.estimate_chunks(rows, chunks);
        for c in &mut out {
            self.judge(c);
        }
        Ok(out)
    }

    fn estimate_chunks(&self, rows: &Rows<'_>, chunks: &[Range<usize>]) -> Vec<ChunkEstimate> {
        chunks
            .par_iter()
            .map(|range| {
                let chunk = rows.slice(range.clone());
                let (sorted, cal) = self.calibrate(&chunk);
                self.estimate_chunk(&chunk, &cal, range, &sorted)
            })
            .collect()
    }

    /// Sets the thresholds and alert of each metric of a chunk.
    fn judge(&self, chunk: &mut ChunkEstimate) {
        for (v, (lo, hi)) in chunk.values.iter_mut().zip(&self.thresholds) {
            v.lower_threshold = *lo;
            v.upper_threshold = *hi;
            v.alert = lo.is_some_and(|t| v.estimate < t) || hi.is_some_and(|t| v.estimate > t);
        }
    }

    /// The rows of each scored class (binary: class 1) in increasing order of score, and
    /// the calibrated probabilities, laid out as the rows' own: each class is calibrated
    /// along its sorted rows (one walk), multiclass rows normalised after.
    fn calibrate(&self, rows: &Rows<'_>) -> (Vec<Vec<u32>>, Vec<f64>) {
        let k = self.classes;
        let sides = rows.scored();
        let orders: Vec<Vec<u32>> = sides
            .iter()
            .map(|c| order_by_score((0..rows.len()).map(|i| rows.p(i, *c))))
            .collect();
        let mut out = rows.proba.to_vec();
        let width = Rows::width_of(k);
        for (side, ((order, cal), c)) in orders.iter().zip(&self.calibrators).zip(sides).enumerate()
        {
            if let Some(cal) = cal {
                let walked = cal.predict_ascending(order.iter().map(|i| rows.p(*i as usize, c)));
                for (i, p) in order.iter().zip(walked) {
                    out[*i as usize * width + side] = p;
                }
            }
        }
        if k > 2 {
            out.chunks_exact_mut(k).for_each(|row| {
                let sum: f64 = row.iter().sum();
                if sum > 0.0 {
                    row.iter_mut().for_each(|p| *p /= sum);
                } else {
                    row.iter_mut().for_each(|p| *p = 1.0 / k as f64);
                }
            });
        }
        (orders, out)
    }

    /// The estimates of a chunk's `rows` (the rows `range` of all), whose calibrated
    /// probabilities are `cal` and whose rows in increasing order of each scored class's
    /// probability are `sorted`.
    fn estimate_chunk(
        &self,
        rows: &Rows<'_>,
        cal: &[f64],
        range: &Range<usize>,
        sorted: &[Vec<u32>],
    ) -> ChunkEstimate {
        let k = self.classes;
        let n = range.len();
        let calibrated = rows.with_proba(cal);
        let p_hat = |i: usize, c: usize| calibrated.p(i, c);
        let sides = rows.scored();
        // expected confusion of each scored class, in one pass over the rows (a row's
        // calibrated probabilities are its scored classes', in order); without branches,
        // as whether a row is predicted as a class is a coin toss to the processor
        let mut counts = vec![Counts::default(); sides.len()];
        for (row, predicted) in cal.chunks_exact(Rows::width_of(k)).zip(rows.y_pred) {
            for ((counts, c), p) in counts.iter_mut().zip(&sides).zip(row) {
                let is = f64::from(u8::from(*predicted as usize == *c));
                counts.tp += p * is;
                counts.fp += (1.0 - p) * is;
                counts.fn_ += p * (1.0 - is);
                counts.tn += (1.0 - p) * (1.0 - is);
            }
        }
        let chunk = *rows;
        let tally = Tally::of(&chunk);
        let labelled = tally.as_ref().map_or(0, |t| t.labelled as usize);
        let values = self
            .options
            .metrics
            .iter()
            .zip(&self.spreads)
            .map(|(m, spread)| {
                let estimate = match m {
                    Metric::Accuracy if k > 2 => {
                        (0..n)
                            .map(|i| p_hat(i, rows.y_pred[i] as usize))
                            .sum::<f64>()
                            / n as f64
                    }
                    Metric::RocAuc => mean_defined(sides.iter().zip(sorted).map(|(c, order)| {
                        expected_auc_descending(order.iter().rev().map(|i| {
                            let i = *i as usize;
                            (rows.p(i, *c), p_hat(i, *c))
                        }))
                    })),
                    // as scikit-learn: a ratio with nothing to count is 0, and the classes
                    // averaged are those predicted or (in expectation) present
                    m => mean_defined(
                        counts
                            .iter()
                            .filter(|c| k == 2 || c.tp + c.fp + c.fn_ > 0.0)
                            .map(|c| {
                                let v = c.value(*m);
                                if v.is_nan() {
                                    0.0
                                } else {
                                    v
                                }
                            }),
                    ),
                };
                let sampling_error = spread.error(n);
                let band = self.options.band_sigmas * sampling_error;
                Estimated {
                    metric: *m,
                    estimate,
                    sampling_error,
                    lower: (estimate - band).clamp(0.0, 1.0),
                    upper: (estimate + band).clamp(0.0, 1.0),
                    lower_threshold: None,
                    upper_threshold: None,
                    alert: false,
                    realized: match &tally {
                        Some(tally) if labelled > 0 => realized_in_order(&chunk, tally, *m, sorted),
                        _ => f64::NAN,
                    },
                }
            })
            .collect();
        ChunkEstimate {
            start: range.start,
            end: range.end,
            labelled,
            values,
        }
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, r) if r != 11 => "st",
        (2, r) if r != 12 => "nd",
        (3, r) if r != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Chunks are non-empty, in order, apart, and within the rows.
fn check_chunks(chunks: &[Range<usize>], rows: usize, what: &str) -> Result<()> {
    if rows > u32::MAX as usize {
        return Err(MonitorError::input(
            what,
            format!("{rows} rows; at most {} at a time", u32::MAX),
        ));
    }
    let mut end = 0;
    for c in chunks {
        if c.start >= c.end || c.end > rows || c.start < end {
            return Err(MonitorError::input(
                what,
                format!(
                    "chunk {}..{} is empty, past the {rows} rows, or overlaps the one before",
                    c.start, c.end
                ),
            ));
        }
        end = c.end;
    }
    Ok(())
}

/// The two halves of a class's ROC AUC variance (DeLong): over its positives, the variance
/// of the share of negatives each outranks, and over its negatives, of the share of
/// positives that outrank each; with the number of positives and of negatives.
type AucParts = ((f64, usize), (f64, usize));

/// The spread of `metric`'s row-level parts on the labelled reference rows (`tally`: their
/// confusion; `auc`: each scored class's [`AucParts`]). The parts of the count-based
/// metrics are 0/1 indicators over some of the rows, whose variance is q (1 - q), q their
/// mean.
fn spread(rows: &Rows<'_>, tally: &Tally, auc: &[AucParts], metric: Metric) -> Spread {
    let total = tally.labelled as f64;
    // the variance of indicators, `ones` of them 1 among `n`; and n
    let indicators = |ones: f64, n: f64| {
        let q = if n > 0.0 { ones / n } else { 0.0 };
        (q * (1.0 - q), n)
    };
    if metric == Metric::Accuracy {
        let (var, _) = indicators(tally.correct() as f64, total);
        return Spread {
            parts: vec![(var, 1.0)],
            divisor: 1.0,
        };
    }
    let sides = rows.scored();
    let parts = sides
        .iter()
        .zip(auc)
        .flat_map(|(c, auc)| {
            let Counts { tp, fp, fn_, tn } = tally.counts(*c);
            let part = |(var, n): (f64, f64)| (var, n / total);
            match metric {
                Metric::Precision => vec![part(indicators(tp, tp + fp))],
                Metric::Recall => vec![part(indicators(tp, tp + fn_))],
                Metric::Specificity => vec![part(indicators(tn, tn + fp))],
                Metric::F1 => {
                    // F1 = 2a / (1 + a), a the share of true positives among the rows that
                    // are true positives, false positives or false negatives: the delta
                    // method scales a's binomial variance by (dF1/da)^2 = (2 / (1 + a)^2)^2
                    let n = tp + fp + fn_;
                    let (var, _) = indicators(tp, n);
                    let a = tp / n.max(1.0);
                    let slope = 2.0 / (1.0 + a).powi(2);
                    vec![part((var * slope * slope, n))]
                }
                Metric::RocAuc => {
                    let ((var_pos, pos), (var_neg, neg)) = *auc;
                    vec![(var_pos, pos as f64 / total), (var_neg, neg as f64 / total)]
                }
                Metric::Accuracy => unreachable!("handled above"),
            }
        })
        .collect();
    Spread {
        parts,
        divisor: sides.len() as f64,
    }
}

/// How many stratified splits of the reference judge whether calibrating helps.
const SPLITS: u32 = 10;

/// An isotonic calibrator of scores for their targets (`sorted`: in increasing order of
/// score), when it makes them better calibrated on held-out rows; None when they are
/// already as good (or one class only).
fn calibrator(sorted: &[(f64, bool)]) -> Option<Isotonic> {
    let mut positives: Vec<u32> = Vec::new();
    let mut negatives: Vec<u32> = Vec::new();
    for (i, row) in sorted.iter().enumerate() {
        if row.1 {
            &mut positives
        } else {
            &mut negatives
        }
        .push(i as u32);
    }
    if positives.is_empty() || negatives.is_empty() {
        return None;
    }
    let runs = Runs::new(sorted);
    // stratified splits, a tenth of each class held out each time (a fixed seed: the same
    // reference always decides the same way; a partial shuffle draws each tenth), marked
    // as one bit per split on each row
    let mut rng = fastrand::Rng::with_seed(42);
    let mut marks = vec![0u16; sorted.len()];
    for split in 0..SPLITS {
        for class in [&mut positives, &mut negatives] {
            let n = ((class.len() as f64 * 0.1).ceil() as usize).min(class.len());
            for k in 0..n {
                let j = rng.usize(k..class.len());
                class.swap(k, j);
                marks[class[k] as usize] |= 1 << split;
            }
        }
    }
    let subsets = runs.subsets(marks);
    // each split's held-out rows through the calibration fitted without them, in
    // increasing order (calibration keeps the order of the scores); fitted in parallel
    let after: Vec<Option<Vec<(f64, bool)>>> = (0..SPLITS)
        .into_par_iter()
        .map(|split| {
            let cal = runs.fit_without(&subsets, split)?;
            let held: Vec<(f64, bool)> = subsets.members(split).map(|i| sorted[i]).collect();
            Some(
                cal.predict_ascending(held.iter().map(|r| r.0))
                    .zip(held.iter().map(|r| r.1))
                    .collect(),
            )
        })
        .collect();
    // the splits with a fit (all but those that held every row out)
    let fitted: u16 = (0..SPLITS)
        .filter(|s| after[*s as usize].is_some())
        .map(|s| 1 << s)
        .sum();
    let after: Vec<Vec<(f64, bool)>> = after.into_iter().flatten().collect();
    // before: every held-out row as it is, once per split that held it, along the order
    let held: usize = after.iter().map(Vec::len).sum();
    let mut before = Ece::new(held);
    for (i, row) in sorted.iter().enumerate() {
        for _ in 0..subsets.count(i, fitted) {
            before.push(row.0, row.1);
        }
    }
    if ece_of_merged(&after) < before.finish() {
        runs.fit()
    } else {
        None
    }
}

/// The expected calibration error of rows given in increasing order of probability, in
/// ten bins of equal count (fewer below 21 rows; the last takes the rest): the
/// row-weighted mean distance between each bin's mean probability and its share of
/// positives. Summed as the rows come, without keeping them.
struct Ece {
    rows: usize,
    bins: usize,
    width: usize,
    seen: usize,
    /// The current bin, where it ends, and its sums.
    bin: usize,
    end: usize,
    sum_p: f64,
    positives: usize,
    error: f64,
}

impl Ece {
    fn new(rows: usize) -> Ece {
        let bins = if rows <= 20 { (rows / 2).max(1) } else { 10 };
        let width = rows / bins;
        Ece {
            rows,
            bins,
            width,
            seen: 0,
            bin: 0,
            end: if bins == 1 { rows } else { width },
            sum_p: 0.0,
            positives: 0,
            error: 0.0,
        }
    }

    fn push(&mut self, p: f64, positive: bool) {
        debug_assert!(self.seen < self.rows, "more rows than announced");
        self.seen += 1;
        self.sum_p += p;
        self.positives += usize::from(positive);
        if self.seen == self.end {
            let start = self.bin * self.width;
            let m = (self.end - start) as f64;
            let share = self.positives as f64 / m;
            self.error += m / self.rows as f64 * (self.sum_p / m - share).abs();
            self.bin += 1;
            self.end = if self.bin + 1 == self.bins {
                self.rows
            } else {
                (self.bin + 1) * self.width
            };
            self.sum_p = 0.0;
            self.positives = 0;
        }
    }

    fn finish(self) -> f64 {
        debug_assert_eq!(self.seen, self.rows, "fewer rows than announced");
        self.error
    }
}

/// The expected calibration error of the rows of `parts`, each in increasing order of
/// probability, merged (equal probabilities in the order of the parts: a stable sort of
/// their concatenation). A part's rows up to the next part's head go at once, which is
/// most of them: calibrated values come in plateaus.
fn ece_of_merged(parts: &[Vec<(f64, bool)>]) -> f64 {
    let rows = parts.iter().map(Vec::len).sum();
    if rows == 0 {
        return 0.0;
    }
    let mut ece = Ece::new(rows);
    let mut heads = vec![0usize; parts.len()];
    loop {
        // the part whose head comes first, and the head that comes after it
        let mut first: Option<usize> = None;
        let mut next: Option<(usize, f64)> = None;
        for (s, part) in parts.iter().enumerate() {
            let Some(row) = part.get(heads[s]) else {
                continue;
            };
            match first {
                Some(f) if parts[f][heads[f]].0.total_cmp(&row.0).is_le() => {
                    if next.is_none_or(|(_, v)| row.0.total_cmp(&v).is_lt()) {
                        next = Some((s, row.0));
                    }
                }
                _ => {
                    if let Some(f) = first {
                        next = Some((f, parts[f][heads[f]].0));
                    }
                    first = Some(s);
                }
            }
        }
        let Some(f) = first else { break };
        // its rows before the next head (up to and at it too when it comes later in order)
        let part = &parts[f];
        while let Some(row) = part.get(heads[f]) {
            if let Some((s, v)) = next {
                let order = row.0.total_cmp(&v);
                if order.is_gt() || (order.is_eq() && s < f) {
                    break;
                }
            }
            ece.push(row.0, row.1);
            heads[f] += 1;
        }
    }
    ece.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of a calibrated binary model: each row's label drawn with its probability.
    fn calibrated_rows(n: usize, seed: u64, shift: f64) -> (Vec<u32>, Vec<u32>, Vec<f64>) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (mut pred, mut truth, mut proba) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let z = (rng.f64() - 0.5) * 8.0 + shift;
            let p = 1.0 / (1.0 + (-z).exp());
            proba.push(p);
            pred.push(u32::from(p >= 0.5));
            truth.push(u32::from(rng.f64() < p));
        }
        (pred, truth, proba)
    }

    fn chunks(n: usize, size: usize) -> Vec<Range<usize>> {
        (0..n).step_by(size).map(|s| s..(s + size).min(n)).collect()
    }

    #[test]
    fn estimates_of_a_calibrated_model_track_the_realized_values() {
        let (pred, truth, proba) = calibrated_rows(50_000, 1, 0.0);
        let reference = Rows::new(2, &pred, Some(&truth), &proba).unwrap();
        let cbpe = Cbpe::fit(&reference, &chunks(50_000, 5_000), Options::default()).unwrap();
        // a covariate shift: more rows near the boundary, so accuracy drops
        let (pred, truth, proba) = calibrated_rows(40_000, 2, 1.5);
        let analysis = Rows::new(2, &pred, Some(&truth), &proba).unwrap();
        let out = cbpe.estimate(&analysis, &chunks(40_000, 5_000)).unwrap();
        let mut inside = 0;
        let mut total = 0;
        for c in &out {
            assert_eq!(c.labelled, c.end - c.start);
            for v in &c.values {
                assert!(v.lower <= v.estimate && v.estimate <= v.upper, "{v:?}");
                total += 1;
                inside += usize::from(v.lower <= v.realized && v.realized <= v.upper);
            }
        }
        assert!(inside as f64 >= 0.9 * total as f64, "{inside} of {total}");
    }

    #[test]
    fn an_overconfident_model_is_calibrated_before_estimating() {
        // the model says 1.8 times the true log-odds
        let mut rng = fastrand::Rng::with_seed(3);
        let (mut pred, mut truth, mut proba) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..40_000 {
            let z = (rng.f64() - 0.5) * 4.0;
            let p_true = 1.0 / (1.0 + (-z).exp());
            let p = 1.0 / (1.0 + (-1.8 * z).exp());
            proba.push(p);
            pred.push(u32::from(p >= 0.5));
            truth.push(u32::from(rng.f64() < p_true));
        }
        let rows = Rows::new(2, &pred, Some(&truth), &proba).unwrap();
        let cbpe = Cbpe::fit(&rows, &chunks(40_000, 4_000), Options::default()).unwrap();
        assert_eq!(cbpe.calibrated(), [true]);
        let accuracy = |c: &ChunkEstimate| {
            c.values
                .iter()
                .find(|v| v.metric == Metric::Accuracy)
                .cloned()
                .unwrap()
        };
        for c in cbpe.reference() {
            let a = accuracy(c);
            assert!((a.estimate - a.realized).abs() < 0.03, "{a:?}");
        }
    }

    #[test]
    fn multiclass_estimates_are_macro_averages_within_their_band() {
        let mut rng = fastrand::Rng::with_seed(4);
        let k = 3;
        let (mut pred, mut truth, mut proba) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..30_000 {
            let logits: Vec<f64> = (0..k).map(|_| rng.f64() * 3.0).collect();
            let sum: f64 = logits.iter().map(|l| l.exp()).sum();
            let p: Vec<f64> = logits.iter().map(|l| l.exp() / sum).collect();
            let best = (0..k).max_by(|a, b| p[*a].total_cmp(&p[*b])).unwrap();
            let u = rng.f64();
            let mut acc = 0.0;
            let mut label = k - 1;
            for (c, pc) in p.iter().enumerate() {
                acc += pc;
                if u < acc {
                    label = c;
                    break;
                }
            }
            pred.push(best as u32);
            truth.push(label as u32);
            proba.extend(p);
        }
        let rows = Rows::new(3, &pred, Some(&truth), &proba).unwrap();
        let cbpe = Cbpe::fit(&rows, &chunks(30_000, 3_000), Options::default()).unwrap();
        let mut inside = 0;
        let mut total = 0;
        for c in cbpe.reference() {
            for v in &c.values {
                total += 1;
                inside += usize::from(v.lower <= v.realized && v.realized <= v.upper);
            }
        }
        assert!(inside as f64 >= 0.9 * total as f64, "{inside} of {total}");
    }

    #[test]
    fn fitting_needs_labels_and_sound_chunks() {
        let rows = Rows::new(2, &[0, 1], None, &[0.2, 0.8]).unwrap();
        let e = Cbpe::fit(&rows, &chunks(2, 2), Options::default()).unwrap_err();
        assert!(e.to_string().contains("y_true"), "{e}");
        let rows = Rows::new(2, &[0, 1], Some(&[0, 1]), &[0.2, 0.8]).unwrap();
        let e = Cbpe::fit(&rows, &[Range { start: 0, end: 3 }], Options::default()).unwrap_err();
        assert!(e.to_string().contains("past the 2 rows"), "{e}");
    }

    /// The calibration error the plain way: sorted, binned.
    fn plain_ece(mut rows: Vec<(f64, bool)>) -> f64 {
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n = rows.len();
        let bins = if n <= 20 { (n / 2).max(1) } else { 10 };
        let width = n / bins;
        (0..bins)
            .map(|b| {
                let end = if b + 1 == bins { n } else { (b + 1) * width };
                let bin = &rows[b * width..end];
                let m = bin.len() as f64;
                let p = bin.iter().map(|r| r.0).sum::<f64>() / m;
                let y = bin.iter().filter(|r| r.1).count() as f64 / m;
                m / n as f64 * (p - y).abs()
            })
            .sum()
    }

    #[test]
    fn calibration_error_of_a_perfect_map_is_zero() {
        let rows: Vec<(f64, bool)> = (0..100).map(|i| (0.5, i % 2 == 0)).collect();
        assert!(ece_of_merged(&[rows]) < 1e-12);
    }

    #[test]
    fn merged_parts_are_binned_as_their_stable_sort() {
        let mut rng = fastrand::Rng::with_seed(5);
        for case in 0..300 {
            // parts in order, on a coarse grid in every other case (ties across parts)
            let parts: Vec<Vec<(f64, bool)>> = (0..rng.usize(1..6))
                .map(|_| {
                    let grid = if case % 2 == 0 { 8.0 } else { 1e6 };
                    let mut part: Vec<(f64, bool)> = (0..rng.usize(0..60))
                        .map(|_| ((rng.f64() * grid).floor() / grid, rng.bool()))
                        .collect();
                    part.sort_by(|a, b| a.0.total_cmp(&b.0));
                    part
                })
                .collect();
            let all: Vec<(f64, bool)> = parts.iter().flatten().copied().collect();
            let expected = if all.is_empty() { 0.0 } else { plain_ece(all) };
            let merged = ece_of_merged(&parts);
            assert!(
                (merged - expected).abs() < 1e-12,
                "case {case}: {merged} {expected}"
            );
        }
    }
}
