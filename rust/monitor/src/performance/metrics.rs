//! Realized classification metrics of one set of rows, the way scikit-learn computes them:
//! accuracy, precision, recall, F1 and specificity from the confusion counts, and ROC AUC
//! from the ranks of the scores (ties count half, which is the area under the curve through
//! the distinct thresholds). Binary problems score the positive class; multiclass ones
//! average the one-vs-rest values of each class (macro). A value that is not defined (no
//! positives, or one class only) is NaN.

use std::fmt;

use crate::error::{MonitorError, Result};

/// A metric of a classifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    Accuracy,
    Precision,
    Recall,
    F1,
    Specificity,
    RocAuc,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::RocAuc,
        Metric::F1,
        Metric::Precision,
        Metric::Recall,
        Metric::Specificity,
        Metric::Accuracy,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::F1 => "f1",
            Metric::Specificity => "specificity",
            Metric::RocAuc => "roc_auc",
        }
    }

    pub fn parse(name: &str) -> Result<Metric> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                MonitorError::input(
                    "metrics",
                    format!(
                        "unknown metric '{name}'; known: {}",
                        Metric::ALL.map(Metric::name).join(", ")
                    ),
                )
            })
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Rows of a classifier's answers: the predicted class of each row, its true class where
/// known, and the model's probabilities. Classes are indices `0..classes`; a binary
/// problem has two classes and one probability per row (of class 1), a multiclass one a
/// probability per class, row-major.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    pub classes: usize,
    pub y_pred: &'a [u32],
    /// The true class, or [`UNKNOWN`] where no label is known.
    pub y_true: Option<&'a [u32]>,
    pub proba: &'a [f64],
}

/// A row whose true class is not known.
pub const UNKNOWN: u32 = u32::MAX;

impl<'a> Rows<'a> {
    /// Checks the lengths and values (classes in range, probabilities finite).
    pub fn new(
        classes: usize,
        y_pred: &'a [u32],
        y_true: Option<&'a [u32]>,
        proba: &'a [f64],
    ) -> Result<Rows<'a>> {
        if classes < 2 {
            return Err(MonitorError::input(
                "classes",
                format!("a classifier has at least two classes, not {classes}"),
            ));
        }
        let n = y_pred.len();
        if n > u32::MAX as usize {
            return Err(MonitorError::input(
                "y_pred",
                format!("{n} rows; at most {} at a time", u32::MAX),
            ));
        }
        let width = Self::width_of(classes);
        if proba.len() != n.saturating_mul(width) {
            return Err(MonitorError::input(
                "y_pred_proba",
                format!(
                    "{} probabilities for {n} rows of {classes} classes (expected {width} per row)",
                    proba.len()
                ),
            ));
        }
        let k = classes as u64;
        if let Some(t) = y_true {
            if t.len() != n {
                return Err(MonitorError::input(
                    "y_true",
                    format!("{} labels for {n} predictions", t.len()),
                ));
            }
            let fine = t.chunks(4096).all(|c| {
                c.iter()
                    .fold(true, |ok, c| ok & ((*c == UNKNOWN) | (u64::from(*c) < k)))
            });
            if let Some(bad) = t
                .iter()
                .filter(|_| !fine)
                .find(|c| **c != UNKNOWN && u64::from(**c) >= k)
            {
                return Err(MonitorError::input(
                    "y_true",
                    format!("class index {bad} is not one of the {classes} classes"),
                ));
            }
        }
        let fine = y_pred
            .chunks(4096)
            .all(|c| c.iter().fold(true, |ok, c| ok & (u64::from(*c) < k)));
        if let Some(bad) = y_pred
            .iter()
            .filter(|_| !fine)
            .find(|c| u64::from(**c) >= k)
        {
            return Err(MonitorError::input(
                "y_pred",
                format!("class index {bad} is not one of the {classes} classes"),
            ));
        }
        // each check a branch-free pass first (it vectorises), the search only when it fails
        let all_in_range = proba
            .chunks(4096)
            .all(|c| c.iter().fold(true, |ok, p| ok & (*p >= 0.0) & (*p <= 1.0)));
        if let Some(bad) = proba
            .iter()
            .filter(|_| !all_in_range)
            .find(|p| !(0.0..=1.0).contains(*p))
        {
            return Err(MonitorError::input(
                "y_pred_proba",
                format!("probabilities are numbers from 0 to 1; found {bad}"),
            ));
        }
        Ok(Rows {
            classes,
            y_pred,
            y_true,
            proba,
        })
    }

    /// Probabilities per row: one for a binary problem, one per class otherwise.
    pub fn width_of(classes: usize) -> usize {
        if classes == 2 {
            1
        } else {
            classes
        }
    }

    pub fn len(&self) -> usize {
        self.y_pred.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y_pred.is_empty()
    }

    /// The classes whose probabilities are scored one against the rest: class 1 of a
    /// binary problem (class 0's is its complement), every class otherwise.
    pub fn scored(&self) -> Vec<usize> {
        if self.classes == 2 {
            vec![1]
        } else {
            (0..self.classes).collect()
        }
    }

    /// The same rows with other probabilities (laid out alike).
    pub fn with_proba(&self, proba: &'a [f64]) -> Rows<'a> {
        Rows { proba, ..*self }
    }

    /// The rows `range` of these.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Rows<'a> {
        let w = Self::width_of(self.classes);
        Rows {
            classes: self.classes,
            y_pred: &self.y_pred[range.clone()],
            y_true: self.y_true.map(|t| &t[range.clone()]),
            proba: &self.proba[range.start * w..range.end * w],
        }
    }

    /// The probability of class `k` in row `i` (binary: class 0 is one minus class 1).
    pub fn p(&self, i: usize, k: usize) -> f64 {
        if self.classes == 2 {
            let p1 = self.proba[i];
            if k == 1 {
                p1
            } else {
                1.0 - p1
            }
        } else {
            self.proba[i * self.classes + k]
        }
    }
}

/// Confusion counts of one class against the rest.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counts {
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
    pub tn: f64,
}

impl Counts {
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }

    pub fn f1(&self) -> f64 {
        ratio(2.0 * self.tp, 2.0 * self.tp + self.fp + self.fn_)
    }

    pub fn value(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Precision => self.precision(),
            Metric::Recall => self.recall(),
            Metric::F1 => self.f1(),
            Metric::Specificity => self.specificity(),
            Metric::Accuracy => ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn_),
            Metric::RocAuc => f64::NAN,
        }
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// The mean of the defined values (NaN when none is).
pub(crate) fn mean_defined(values: impl IntoIterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for v in values.into_iter().filter(|v| !v.is_nan()) {
        sum += v;
        n += 1;
    }
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// The labelled rows' confusion, counted once: per class how many rows are of it, how
/// many are predicted as it, and how many both; and how many rows are labelled.
pub(crate) struct Tally {
    pub labelled: u64,
    pub of_class: Vec<u64>,
    pub predicted: Vec<u64>,
    pub right: Vec<u64>,
}

impl Tally {
    /// Counts the rows whose label is known (None: no labels at all).
    pub fn of(rows: &Rows<'_>) -> Option<Tally> {
        let y_true = rows.y_true?;
        let k = rows.classes;
        let mut tally = Tally {
            labelled: 0,
            of_class: vec![0; k],
            predicted: vec![0; k],
            right: vec![0; k],
        };
        for (t, p) in y_true.iter().zip(rows.y_pred) {
            if *t == UNKNOWN {
                continue;
            }
            let (t, p) = (*t as usize, *p as usize);
            tally.labelled += 1;
            tally.of_class[t] += 1;
            tally.predicted[p] += 1;
            tally.right[t] += u64::from(t == p);
        }
        Some(tally)
    }

    /// Class `c` against the rest.
    pub fn counts(&self, c: usize) -> Counts {
        let tp = self.right[c];
        let fp = self.predicted[c] - tp;
        let fn_ = self.of_class[c] - tp;
        Counts {
            tp: tp as f64,
            fp: fp as f64,
            fn_: fn_ as f64,
            tn: (self.labelled - tp - fp - fn_) as f64,
        }
    }

    /// Rows whose prediction is their label.
    pub fn correct(&self) -> u64 {
        self.right.iter().sum()
    }
}

/// The realized value of `metric` on the rows whose label is known (NaN without labels).
/// Multiclass precision, recall, F1 and specificity average the classes that occur among
/// the labels or predictions (as scikit-learn's `average="macro"` does); ROC AUC needs
/// every class among the labels.
pub fn realized(rows: &Rows<'_>, metric: Metric) -> f64 {
    let orders: Vec<Vec<u32>> = if metric == Metric::RocAuc {
        rows.scored()
            .iter()
            .map(|c| order_by_score((0..rows.len()).map(|i| rows.p(i, *c))))
            .collect()
    } else {
        Vec::new()
    };
    match Tally::of(rows) {
        Some(tally) => realized_in_order(rows, &tally, metric, &orders),
        None => f64::NAN,
    }
}

/// [`realized`] from the rows' [`Tally`], given the rows in increasing order of each
/// scored class's probability (see [`Rows::scored`]; only ROC AUC reads them).
pub(crate) fn realized_in_order(
    rows: &Rows<'_>,
    tally: &Tally,
    metric: Metric,
    orders: &[Vec<u32>],
) -> f64 {
    debug_assert!(
        metric != Metric::RocAuc
            || (orders.len() == rows.scored().len()
                && orders.iter().all(|o| o.len() == rows.len()))
    );
    let Some(y_true) = rows.y_true else {
        return f64::NAN;
    };
    if tally.labelled == 0 {
        return f64::NAN;
    }
    let k = rows.classes;
    match metric {
        Metric::Accuracy => tally.correct() as f64 / tally.labelled as f64,
        Metric::RocAuc => {
            // every class's one-vs-rest area (binary: class 1's), NaN if any is undefined
            let sum: f64 = rows
                .scored()
                .into_iter()
                .zip(orders)
                .map(|(c, order)| {
                    let positives = tally.of_class[c];
                    auc_ascending(
                        order
                            .iter()
                            .map(|i| *i as usize)
                            .filter(|i| y_true[*i] != UNKNOWN)
                            .map(|i| (rows.p(i, c), y_true[i] as usize == c)),
                        positives,
                        tally.labelled - positives,
                    )
                })
                .sum();
            sum / orders.len() as f64
        }
        _ if k == 2 => {
            // scikit-learn answers 0 (with a warning) where the ratio is 0/0
            let v = tally.counts(1).value(metric);
            if v.is_nan() {
                0.0
            } else {
                v
            }
        }
        _ => {
            let values: Vec<f64> = (0..k)
                .filter(|c| tally.of_class[*c] > 0 || tally.predicted[*c] > 0)
                .map(|c| {
                    let v = tally.counts(c).value(metric);
                    if v.is_nan() {
                        0.0
                    } else {
                        v
                    }
                })
                .collect();
            values.iter().sum::<f64>() / values.len().max(1) as f64
        }
    }
}

/// A float's order as an unsigned integer's.
fn sortable(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// Sorts by a float key, in increasing order.
fn sort_by_score<T>(items: &mut [T], score: impl Fn(&T) -> f64) {
    items.sort_unstable_by_key(|t| sortable(score(t)));
}

/// The positions `0..scores.len()` in increasing order of score.
///
/// CBPE orders every chunk by every class's probability, so this is its hottest loop: a
/// least-significant-digit radix sort in two passes of 11 bits over the 22 bits of the
/// scores' order (their bits as an unsigned integer's) just below the prefix that all of
/// them share — for probabilities, the low bits of the exponent and the high ones of the
/// mantissa — with both digits' counts taken in one read; then each run of scores those
/// bits cannot tell apart (ties, and scores closer than about one part in 100,000 of their
/// binade) sorted by the whole score. At most `u32::MAX` scores (as [`Rows::new`] allows).
pub(crate) fn order_by_score(scores: impl Iterator<Item = f64>) -> Vec<u32> {
    const DIGIT: u32 = 11;
    const BUCKETS: usize = 1 << DIGIT;
    let keys: Vec<u64> = scores.map(sortable).collect();
    let n = keys.len();
    assert!(n <= u32::MAX as usize, "at most u32::MAX scores");
    let (lo, hi) = keys
        .iter()
        .fold((u64::MAX, 0), |(lo, hi), k| (lo.min(*k), hi.max(*k)));
    if n < 2 || lo == hi {
        return (0..n as u32).collect();
    }
    // the bits from the first that differs between the lowest and highest key: the window
    // is the top 22 of them, so it orders as the keys do (the bits above are shared)
    let varying = u64::BITS - (lo ^ hi).leading_zeros();
    let shift = varying.saturating_sub(2 * DIGIT);
    let window = |k: u64| ((k >> shift) & ((1 << (2 * DIGIT)) - 1)) as u32;
    let mut counts = vec![[0u32; BUCKETS]; 2];
    let mut items: Vec<(u32, u32)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let w = window(*k);
            counts[0][(w & (BUCKETS as u32 - 1)) as usize] += 1;
            counts[1][(w >> DIGIT) as usize] += 1;
            (w, i as u32)
        })
        .collect();
    let mut spare = vec![(0u32, 0u32); n];
    for (pass, counts) in counts.iter_mut().enumerate() {
        let digit = |w: u32| ((w >> (pass as u32 * DIGIT)) as usize) & (BUCKETS - 1);
        if counts.iter().any(|c| *c as usize == n) {
            continue; // one bucket holds them all: this digit orders nothing
        }
        let mut start = 0u32;
        for c in counts.iter_mut() {
            let size = *c;
            *c = start;
            start += size;
        }
        for item in &items {
            let slot = &mut counts[digit(item.0)];
            spare[*slot as usize] = *item;
            *slot += 1;
        }
        std::mem::swap(&mut items, &mut spare);
    }
    if shift > 0 {
        let mut start = 0;
        while start < n {
            let mut end = start + 1;
            while end < n && items[end].0 == items[start].0 {
                end += 1;
            }
            if end - start > 1 {
                items[start..end].sort_unstable_by_key(|item| keys[item.1 as usize]);
            }
            start = end;
        }
    }
    items.into_iter().map(|item| item.1).collect()
}

/// The area under the ROC curve of scores with their labels (true: positive), ties
/// counting half; NaN without both positives and negatives.
pub fn auc_of_labels(mut scores: Vec<(f64, bool)>) -> f64 {
    sort_by_score(&mut scores, |s| s.0);
    let positives = scores.iter().filter(|s| s.1).count() as u64;
    auc_ascending(
        scores.iter().copied(),
        positives,
        scores.len() as u64 - positives,
    )
}

/// [`auc_of_labels`] of scores given in increasing order, of which `positives` are
/// positive and `negatives` not: each positive's share of negatives below it (ties half),
/// averaged, as the scores come.
fn auc_ascending(scores: impl Iterator<Item = (f64, bool)>, positives: u64, negatives: u64) -> f64 {
    if positives == 0 || negatives == 0 {
        return f64::NAN;
    }
    // negatives below the current score, and the current score's positives and negatives
    let (mut below, mut sum) = (0u64, 0.0);
    let (mut score, mut tied_pos, mut tied_neg) = (f64::NAN, 0u64, 0u64);
    for (s, positive) in scores {
        if s != score {
            sum += tied_pos as f64 * (below as f64 + 0.5 * tied_neg as f64);
            below += tied_neg;
            (score, tied_pos, tied_neg) = (s, 0, 0);
        }
        if positive {
            tied_pos += 1;
        } else {
            tied_neg += 1;
        }
    }
    sum += tied_pos as f64 * (below as f64 + 0.5 * tied_neg as f64);
    sum / negatives as f64 / positives as f64
}

/// For scores with their labels in increasing order of score, the spreads that make the
/// ROC AUC's variance (DeLong): over the positives, the population variance of the share
/// of negatives ranked below each, and over the negatives, of the share of positives
/// ranked above each (ties count half); each with how many rows it is over. Rows of one
/// score share their value, so the sums are taken per score. Zeros when either class is
/// missing.
pub(crate) fn rank_share_spreads(scores: &[(f64, bool)]) -> ((f64, usize), (f64, usize)) {
    let positives = scores.iter().filter(|s| s.1).count();
    let negatives = scores.len() - positives;
    if positives == 0 || negatives == 0 {
        return ((0.0, 0), (0.0, 0));
    }
    // sums of the shares and of their squares, of the positives and of the negatives
    let (mut pos, mut neg) = ((0.0, 0.0), (0.0, 0.0));
    let (mut neg_below, mut pos_below) = (0usize, 0usize);
    let mut i = 0;
    while i < scores.len() {
        let mut j = i;
        let (mut tied_neg, mut tied_pos) = (0usize, 0usize);
        while j < scores.len() && scores[j].0 == scores[i].0 {
            if scores[j].1 {
                tied_pos += 1;
            } else {
                tied_neg += 1;
            }
            j += 1;
        }
        let outranked = (neg_below as f64 + 0.5 * tied_neg as f64) / negatives as f64;
        let above = positives - pos_below - tied_pos;
        let outranking = (above as f64 + 0.5 * tied_pos as f64) / positives as f64;
        pos.0 += tied_pos as f64 * outranked;
        pos.1 += tied_pos as f64 * outranked * outranked;
        neg.0 += tied_neg as f64 * outranking;
        neg.1 += tied_neg as f64 * outranking * outranking;
        neg_below += tied_neg;
        pos_below += tied_pos;
        i = j;
    }
    let variance = |(sum, squares): (f64, f64), n: usize| {
        let mean = sum / n as f64;
        ((squares / n as f64 - mean * mean).max(0.0), n)
    };
    (variance(pos, positives), variance(neg, negatives))
}

/// The area under the ROC curve a set of scores would have if each row were positive with
/// probability `weight` (the expected curve CBPE uses): thresholds at the distinct scores,
/// expected true and false positives accumulated from the highest score down, trapezoids.
/// NaN when the expected positives or negatives are zero.
pub fn expected_auc(mut scores: Vec<(f64, f64)>) -> f64 {
    sort_by_score(&mut scores, |s| s.0);
    expected_auc_descending(scores.into_iter().rev())
}

/// [`expected_auc`] of `(score, weight)` pairs given from the highest score down.
pub fn expected_auc_descending(scores: impl IntoIterator<Item = (f64, f64)>) -> f64 {
    let (mut tp, mut fp, mut area) = (0.0, 0.0, 0.0);
    // the point of the last threshold, and the score being accumulated
    let (mut tp0, mut fp0) = (0.0, 0.0);
    let mut current = None;
    for (score, weight) in scores {
        if current != Some(score) {
            // a new threshold: the trapezoid up to the one before
            area += (fp - fp0) * (tp + tp0) / 2.0;
            (tp0, fp0) = (tp, fp);
            current = Some(score);
        }
        tp += weight;
        fp += 1.0 - weight;
    }
    area += (fp - fp0) * (tp + tp0) / 2.0;
    if tp <= 0.0 || fp <= 0.0 {
        return f64::NAN;
    }
    (area / (tp * fp)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_half_and_needs_both_classes() {
        // scikit-learn: roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
        let s = vec![(0.1, false), (0.4, false), (0.35, true), (0.8, true)];
        assert!((auc_of_labels(s) - 0.75).abs() < 1e-12);
        // roc_auc_score([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == 0.875
        let s = vec![(0.5, false), (0.5, true), (0.2, false), (0.9, true)];
        assert!((auc_of_labels(s) - 0.875).abs() < 1e-12);
        assert!(auc_of_labels(vec![(0.3, true), (0.4, true)]).is_nan());
    }

    #[test]
    fn scores_are_ordered_with_negatives_and_ties() {
        let scores = [3.0, -1.0, 0.0, 2.5, 0.5, -0.0, 0.0, 0.5];
        let order = order_by_score(scores.iter().copied());
        let sorted: Vec<f64> = order.iter().map(|i| scores[*i as usize]).collect();
        assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "{sorted:?}");
        // -0.0 before the zeros (the order of the bits), never between them
        assert_eq!(order[1], 5, "{order:?}");
        // scores equal in their upper 32 bits are ordered by the rest
        let mut rng = fastrand::Rng::with_seed(9);
        let base = 0.5f64.to_bits();
        let scores: Vec<f64> = (0..5000)
            .map(|_| f64::from_bits(base + rng.u64(0..1 << 34)))
            .collect();
        let order = order_by_score(scores.iter().copied());
        let sorted: Vec<f64> = order.iter().map(|i| scores[*i as usize]).collect();
        assert!(sorted.windows(2).all(|w| w[0] <= w[1]));
        let mut seen = order.clone();
        seen.sort_unstable();
        assert!(seen.iter().enumerate().all(|(i, s)| *s as usize == i));
    }

    #[test]
    fn orders_are_those_of_a_comparison_sort_whatever_the_spread() {
        let mut rng = fastrand::Rng::with_seed(13);
        for case in 0..200 {
            let n = rng.usize(0..3000);
            let scores: Vec<f64> = (0..n)
                .map(|_| match case % 5 {
                    // probabilities, sharp ones (many near 0 and 1), a few values, a
                    // cluster with one outlier, values apart by a few units in the last place
                    0 => rng.f64(),
                    1 => 1.0 / (1.0 + (-(rng.f64() - 0.5) * 60.0).exp()),
                    2 => rng.usize(0..7) as f64 / 6.0,
                    3 if rng.usize(0..500) == 0 => 0.0,
                    3 => 0.7 + rng.f64() * 1e-9,
                    _ => f64::from_bits(0.3f64.to_bits() + rng.u64(0..64)),
                })
                .collect();
            let order = order_by_score(scores.iter().copied());
            let mut seen = order.clone();
            seen.sort_unstable();
            assert!(
                seen.iter().enumerate().all(|(i, s)| *s as usize == i),
                "case {case}"
            );
            let ours: Vec<f64> = order.iter().map(|i| scores[*i as usize]).collect();
            let mut theirs = scores.clone();
            theirs.sort_by(f64::total_cmp);
            assert!(
                ours.iter()
                    .zip(&theirs)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "case {case}"
            );
        }
    }

    #[test]
    fn the_expected_curve_of_hard_labels_is_the_realized_one() {
        let s = [(0.1, 0.0), (0.4, 0.0), (0.35, 1.0), (0.8, 1.0), (0.4, 1.0)];
        let labels: Vec<(f64, bool)> = s.iter().map(|(x, y)| (*x, *y == 1.0)).collect();
        let expected = expected_auc(s.to_vec());
        assert!((expected - auc_of_labels(labels)).abs() < 1e-12);
    }

    #[test]
    fn realized_binary_metrics_match_their_definitions() {
        let y_true = [1, 0, 1, 1, 0, UNKNOWN];
        let y_pred = [1, 1, 0, 1, 0, 1];
        let proba = [0.9, 0.6, 0.4, 0.7, 0.2, 0.5];
        let rows = Rows::new(2, &y_pred, Some(&y_true), &proba).unwrap();
        // tp 2, fp 1, fn 1, tn 1 over the five labelled rows
        assert_eq!(realized(&rows, Metric::Accuracy), 3.0 / 5.0);
        assert_eq!(realized(&rows, Metric::Precision), 2.0 / 3.0);
        assert_eq!(realized(&rows, Metric::Recall), 2.0 / 3.0);
        assert_eq!(realized(&rows, Metric::Specificity), 1.0 / 2.0);
        assert!((realized(&rows, Metric::F1) - 2.0 / 3.0).abs() < 1e-12);
        // positives 0.9, 0.4, 0.7 against negatives 0.6, 0.2: 5 of 6 pairs ordered
        assert!((realized(&rows, Metric::RocAuc) - 5.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn multiclass_roc_auc_averages_the_classes_over_labelled_rows() {
        let mut rng = fastrand::Rng::with_seed(5);
        let n = 300;
        let mut proba = Vec::new();
        let (mut y_pred, mut y_true) = (Vec::new(), Vec::new());
        for i in 0..n {
            let p: Vec<f64> = (0..3).map(|_| rng.f64() + 0.01).collect();
            let sum: f64 = p.iter().sum();
            proba.extend(p.iter().map(|v| v / sum));
            y_pred.push(rng.u32(0..3));
            // a third of the rows without a label; some scores tied
            y_true.push(if i % 3 == 0 { UNKNOWN } else { rng.u32(0..3) });
        }
        proba[3..6].copy_from_slice(&[0.2, 0.3, 0.5]);
        proba[6..9].copy_from_slice(&[0.2, 0.3, 0.5]);
        let rows = Rows::new(3, &y_pred, Some(&y_true), &proba).unwrap();
        let expected = (0..3)
            .map(|c| {
                auc_of_labels(
                    (0..n)
                        .filter(|i| y_true[*i] != UNKNOWN)
                        .map(|i| (proba[i * 3 + c], y_true[i] as usize == c))
                        .collect(),
                )
            })
            .sum::<f64>()
            / 3.0;
        assert!((realized(&rows, Metric::RocAuc) - expected).abs() < 1e-12);
    }

    #[test]
    fn bad_rows_are_refused_with_the_column_named() {
        let e = Rows::new(2, &[0, 2], None, &[0.1, 0.2]).unwrap_err();
        assert!(e.to_string().contains("y_pred"), "{e}");
        let e = Rows::new(3, &[0, 1], None, &[0.1, 0.2]).unwrap_err();
        assert!(e.to_string().contains("y_pred_proba"), "{e}");
        let e = Rows::new(2, &[0], Some(&[0, 1]), &[0.1]).unwrap_err();
        assert!(e.to_string().contains("y_true"), "{e}");
        let e = Rows::new(2, &[0], None, &[f64::NAN]).unwrap_err();
        assert!(e.to_string().contains("from 0 to 1"), "{e}");
        let e = Rows::new(2, &[0], None, &[1.5]).unwrap_err();
        assert!(e.to_string().contains("found 1.5"), "{e}");
    }
}
