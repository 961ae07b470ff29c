//! The drift report: per column, a statistical test between reference and current, the
//! data-quality checks, and the numbers behind the charts.
//!
//! Two modes. `profile` compares two profiles: numeric statistics are read from the
//! shared histogram grid and are approximate within its rank-error bound (reported per
//! column). `exact` compares two in-memory datasets: numeric statistics use every value
//! and equal scipy's. Categorical statistics are exact in both modes while a column has at
//! most [`MAX_EXACT_CATEGORIES`](crate::categories::MAX_EXACT_CATEGORIES) distinct values.

use std::collections::HashMap;

use arrow_array::RecordBatch;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{DriftError, Result};
use crate::grid::{self, Buckets};
use crate::profile::{visit_numbers, ColumnProfile, Kind, Profile};
use crate::stats;

/// A drift test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Ks,
    Wasserstein,
    Psi,
    JensenShannon,
    Hellinger,
    Kl,
    ChiSquare,
    CramerVonMises,
}

impl Method {
    pub const ALL: [Method; 8] = [
        Method::Ks,
        Method::Wasserstein,
        Method::Psi,
        Method::JensenShannon,
        Method::Hellinger,
        Method::Kl,
        Method::ChiSquare,
        Method::CramerVonMises,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Ks => "ks",
            Method::Wasserstein => "wasserstein",
            Method::Psi => "psi",
            Method::JensenShannon => "jensenshannon",
            Method::Hellinger => "hellinger",
            Method::Kl => "kl_div",
            Method::ChiSquare => "chisquare",
            Method::CramerVonMises => "cramer_von_mises",
        }
    }

    pub fn parse(text: &str) -> Result<Method> {
        let t = text.to_ascii_lowercase().replace(['-', ' '], "_");
        Ok(match t.as_str() {
            "ks" | "kolmogorov_smirnov" => Method::Ks,
            "wasserstein" | "wasserstein_distance" | "emd" => Method::Wasserstein,
            "psi" => Method::Psi,
            "jensenshannon" | "js" | "jensen_shannon" => Method::JensenShannon,
            "hellinger" => Method::Hellinger,
            "kl_div" | "kl" | "kullback_leibler" => Method::Kl,
            "chisquare" | "chi_square" | "chi2" => Method::ChiSquare,
            "cramer_von_mises" | "cvm" => Method::CramerVonMises,
            _ => {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                return Err(DriftError::input(
                    "method",
                    format!("'{text}' is not a drift method; use \"auto\" or one of {names:?}"),
                ));
            }
        })
    }

    /// True when the test gives a p-value and drift means p below the threshold; else the
    /// statistic is a distance and drift means distance at or above it.
    pub fn is_test(self) -> bool {
        matches!(
            self,
            Method::Ks | Method::ChiSquare | Method::CramerVonMises
        )
    }

    pub fn default_threshold(self) -> f64 {
        if self.is_test() {
            0.05
        } else {
            0.1
        }
    }

    fn numeric_only(self) -> bool {
        matches!(
            self,
            Method::Ks | Method::Wasserstein | Method::CramerVonMises
        )
    }
}

/// How columns are compared. `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct Options {
    /// One method for every column; `None` picks per column ("auto").
    pub method: Option<Method>,
    pub column_methods: HashMap<String, Method>,
    pub threshold: Option<f64>,
    pub column_thresholds: HashMap<String, f64>,
    /// Numeric columns to compare as categories.
    pub categorical: Vec<String>,
    /// The dataset drifts when at least this share of the compared columns drift.
    pub drift_share: f64,
    /// A change in the share of missing values larger than this flags the column.
    pub missing_rate_change: f64,
    /// "auto" uses tests (KS, chi-square) up to this many reference values, distances
    /// (Wasserstein, Jensen-Shannon) above.
    pub small_sample: u64,
    /// Integer columns with at most this many distinct reference values are categories.
    pub max_integer_categories: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            method: None,
            column_methods: HashMap::new(),
            threshold: None,
            column_thresholds: HashMap::new(),
            categorical: Vec::new(),
            drift_share: 0.5,
            missing_rate_change: 0.05,
            small_sample: 1000,
            max_integer_categories: 20,
        }
    }
}

/// Reference and current distributions for a chart, as shares of each side's values.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Chart {
    /// "histogram" (numeric: `edges` has one more entry than the shares) or "bars".
    pub kind: &'static str,
    pub edges: Vec<f64>,
    pub labels: Vec<String>,
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
}

/// One column's verdict and the numbers behind it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ColumnReport {
    pub column: String,
    /// How the column was compared: "numeric", "categorical", "datetime" or "none".
    pub kind: &'static str,
    pub reference_type: String,
    pub current_type: String,
    pub method: Option<&'static str>,
    /// Infinite for KL when the current data misses a reference bin (JSON: "inf").
    #[serde(serialize_with = "non_finite_as_text")]
    pub statistic: Option<f64>,
    pub p_value: Option<f64>,
    pub threshold: Option<f64>,
    /// In profile mode, how far the numeric statistic can be from the exact one (for KS:
    /// the two histograms' rank errors added).
    pub statistic_error: Option<f64>,
    pub drifted: bool,
    /// Why the column was flagged, or why it was not tested.
    pub reasons: Vec<String>,
    pub reference_rows: u64,
    pub current_rows: u64,
    pub reference_missing: f64,
    pub current_missing: f64,
    pub reference_mean: Option<f64>,
    pub current_mean: Option<f64>,
    pub reference_std: Option<f64>,
    pub current_std: Option<f64>,
    pub reference_min: Option<f64>,
    pub reference_max: Option<f64>,
    pub current_min: Option<f64>,
    pub current_max: Option<f64>,
    pub reference_distinct: Option<f64>,
    pub current_distinct: Option<f64>,
    /// Current categories the reference never had (the most frequent 20).
    pub unseen_categories: Vec<String>,
    /// Share of current values in categories the reference never had.
    pub unseen_share: f64,
    /// Share of current numeric values outside the reference's [min, max].
    pub out_of_range_share: f64,
    pub reference_constant: bool,
    pub current_constant: bool,
    pub type_mismatch: bool,
    pub chart: Chart,
}

/// JSON has no infinity: such values are written as the strings "inf", "-inf", "nan".
fn non_finite_as_text<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) if !x.is_finite() => s.serialize_str(&x.to_string().to_lowercase()),
        Some(x) => s.serialize_f64(*x),
        None => s.serialize_none(),
    }
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// "exact" or "profile".
    pub mode: &'static str,
    pub columns: Vec<ColumnReport>,
    /// Reference columns absent from the current data.
    pub missing_columns: Vec<String>,
    /// Current columns absent from the reference.
    pub extra_columns: Vec<String>,
    pub reference_rows: u64,
    pub current_rows: u64,
    pub drift_share: f64,
    pub drifted_share: f64,
    pub dataset_drift: bool,
}

/// The values of one numeric column, finite and sorted, for exact statistics.
struct Sorted {
    reference: Vec<f64>,
    current: Vec<f64>,
}

fn finite_sorted(batches: &[RecordBatch], column: &str) -> Vec<f64> {
    let mut out = Vec::new();
    for b in batches {
        if let Some(a) = b.column_by_name(column) {
            out.reserve(a.len());
            visit_numbers(a.as_ref(), |xs| {
                out.extend(xs.iter().filter(|x| x.is_finite()).map(|x| x + 0.0));
            });
        }
    }
    radsort::sort(&mut out);
    out
}

/// Compares two profiles (approximate numeric statistics, within the reported bound).
pub fn compare_profiles(reference: &Profile, current: &Profile, opts: &Options) -> Result<Report> {
    compare(reference, current, opts, None)
}

/// Compares two in-memory datasets exactly: the same report, with numeric statistics
/// computed on every value (equal to scipy's).
pub fn compare_exact(
    reference: &[RecordBatch],
    current: &[RecordBatch],
    opts: &Options,
) -> Result<Report> {
    let (r, c) = rayon::join(
        || Profile::of_batches(reference),
        || Profile::of_batches(current),
    );
    compare(&r?, &c?, opts, Some((reference, current)))
}

fn compare(
    reference: &Profile,
    current: &Profile,
    opts: &Options,
    raw: Option<(&[RecordBatch], &[RecordBatch])>,
) -> Result<Report> {
    for name in opts
        .column_methods
        .keys()
        .chain(opts.column_thresholds.keys())
        .chain(&opts.categorical)
    {
        if reference.column(name).is_none() {
            return Err(DriftError::input(
                format!("column '{name}'"),
                "an option names it, but the reference has no such column",
            ));
        }
    }
    let missing_columns: Vec<String> = reference
        .columns
        .iter()
        .filter(|c| current.column(&c.name).is_none())
        .map(|c| c.name.clone())
        .collect();
    let extra_columns: Vec<String> = current
        .columns
        .iter()
        .filter(|c| reference.column(&c.name).is_none())
        .map(|c| c.name.clone())
        .collect();
    let pairs: Vec<(&ColumnProfile, &ColumnProfile)> = reference
        .columns
        .iter()
        .filter_map(|r| current.column(&r.name).map(|c| (r, c)))
        .collect();
    let columns: Vec<ColumnReport> = pairs
        .into_par_iter()
        .map(|(r, c)| {
            let sorted = raw
                .filter(|_| r.kind.is_numeric() && c.kind.is_numeric())
                .map(|(rb, cb)| {
                    let (reference, current) =
                        rayon::join(|| finite_sorted(rb, &r.name), || finite_sorted(cb, &c.name));
                    Sorted { reference, current }
                });
            compare_column(r, c, opts, sorted.as_ref())
        })
        .collect::<Result<_>>()?;
    let tested = columns
        .iter()
        .filter(|c| c.method.is_some() || c.drifted)
        .count();
    let drifted = columns.iter().filter(|c| c.drifted).count();
    let drifted_share = if tested == 0 {
        0.0
    } else {
        drifted as f64 / tested as f64
    };
    Ok(Report {
        mode: if raw.is_some() { "exact" } else { "profile" },
        columns,
        missing_columns,
        extra_columns,
        reference_rows: reference.rows,
        current_rows: current.rows,
        drift_share: opts.drift_share,
        drifted_share,
        dataset_drift: tested > 0 && drifted_share >= opts.drift_share,
    })
}

fn fmt(x: f64) -> String {
    if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) {
        format!("{x:.3e}")
    } else {
        format!("{x:.3}")
    }
}

/// Category counts of both sides over the union of categories: the reference's first,
/// then categories only the current has; the mass beyond kept counts is one more entry.
struct Aligned {
    labels: Vec<String>,
    reference: Vec<f64>,
    current: Vec<f64>,
    unseen: Vec<(String, f64)>,
}

fn align_categories(r: &ColumnProfile, c: &ColumnProfile) -> Aligned {
    let (rc, cc) = (
        r.categories.as_ref().expect("categorical"),
        c.categories.as_ref().expect("categorical"),
    );
    let mut labels = Vec::new();
    let (mut reference, mut current, mut unseen) = (Vec::new(), Vec::new(), Vec::new());
    for (k, n) in rc.sorted() {
        labels.push(k.to_owned());
        reference.push(n as f64);
        current.push(cc.count(k) as f64);
    }
    for (k, n) in cc.sorted() {
        if rc.count(k) == 0 {
            labels.push(k.to_owned());
            reference.push(0.0);
            current.push(n as f64);
            unseen.push((k.to_owned(), n as f64));
        }
    }
    if rc.other() + cc.other() > 0 {
        labels.push("(other)".into());
        reference.push(rc.other() as f64);
        current.push(cc.other() as f64);
    }
    Aligned {
        labels,
        reference,
        current,
        unseen,
    }
}

/// Integer columns compared as categories: each bucket that holds a single integer is
/// one category (buckets of larger numbers group a few neighbours).
fn align_buckets(r: &Buckets, c: &Buckets) -> Aligned {
    let mut out = Aligned {
        labels: Vec::new(),
        reference: Vec::new(),
        current: Vec::new(),
        unseen: Vec::new(),
    };
    for (k, a, b) in merged_counts(r, c) {
        let label = fmt_value(grid::anchor(k));
        if a == 0 {
            out.unseen.push((label.clone(), b as f64));
        }
        out.labels.push(label);
        out.reference.push(a as f64);
        out.current.push(b as f64);
    }
    out
}

fn fmt_value(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// numpy.quantile's default (linear) interpolation on a sorted sample.
fn numpy_quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let t = pos - lo as f64;
    let a = sorted[lo];
    let b = sorted[(lo + 1).min(sorted.len() - 1)];
    let d = b - a;
    if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}

/// Reference deciles as bin edges: bins are (-inf, e1], (e1, e2], ..., (ek, inf).
fn exact_bins(s: &Sorted) -> (Vec<f64>, Vec<f64>) {
    let mut edges: Vec<f64> = (1..10)
        .map(|i| numpy_quantile(&s.reference, f64::from(i) / 10.0))
        .collect();
    edges.dedup();
    let count = |v: &[f64]| -> Vec<f64> {
        let mut out = Vec::with_capacity(edges.len() + 1);
        let mut prev = 0;
        for e in &edges {
            let at = v.partition_point(|x| x <= e);
            out.push((at - prev) as f64);
            prev = at;
        }
        out.push((v.len() - prev) as f64);
        out
    };
    (count(&s.reference), count(&s.current))
}

/// Reference deciles snapped to bucket edges, so both sides' counts are exact sums of
/// buckets: bins are [k_i, k_{i+1}) in bucket keys.
fn grid_bins(r: &Buckets, c: &Buckets) -> (Vec<f64>, Vec<f64>) {
    let mut edges: Vec<u32> = Vec::new();
    for i in 1..10 {
        let target = r.total as f64 * f64::from(i) / 10.0;
        let at = r.cum.partition_point(|n| (*n as f64) < target);
        if at + 1 < r.keys.len() {
            let edge = r.keys[at] + 1;
            if edges.last() != Some(&edge) {
                edges.push(edge);
            }
        }
    }
    let count = |b: &Buckets| -> Vec<f64> {
        let mut out = Vec::with_capacity(edges.len() + 1);
        let mut prev = 0;
        for e in &edges {
            let at = b.count_below_key(*e);
            out.push((at - prev) as f64);
            prev = at;
        }
        out.push((b.total - prev) as f64);
        out
    };
    (count(r), count(c))
}

struct Outcome {
    statistic: f64,
    p_value: Option<f64>,
    error: Option<f64>,
}

fn binned(method: Method, reference: &[f64], current: &[f64]) -> Result<Outcome> {
    let (statistic, p_value) = match method {
        Method::Psi => (stats::psi(reference, current)?, None),
        Method::JensenShannon => (stats::js_distance(reference, current)?, None),
        Method::Hellinger => (stats::hellinger(reference, current)?, None),
        Method::Kl => (stats::kl_divergence(reference, current)?, None),
        Method::ChiSquare => {
            let c = stats::chi_square(reference, current)?;
            (c.statistic, Some(c.p_value))
        }
        other => unreachable!("{other:?} is not a binned method"),
    };
    Ok(Outcome {
        statistic,
        p_value,
        error: None,
    })
}

fn numeric_outcome(
    method: Method,
    r: &Buckets,
    c: &Buckets,
    ref_std: f64,
    integer: bool,
    sorted: Option<&Sorted>,
) -> Result<Outcome> {
    let norm = ref_std.max(0.001); // Evidently's floor for a constant reference
    if !method.numeric_only() {
        let (a, b) = match sorted {
            Some(s) => exact_bins(s),
            None => grid_bins(r, c),
        };
        return binned(method, &a, &b);
    }
    Ok(match (method, sorted) {
        (Method::Ks, Some(s)) => {
            let d = stats::ks_sorted(&s.reference, &s.current);
            Outcome {
                statistic: d,
                p_value: Some(stats::ks_pvalue(d, s.reference.len(), s.current.len())),
                error: None,
            }
        }
        (Method::Ks, None) => {
            let d = grid_ks(r, c);
            Outcome {
                statistic: d,
                p_value: Some(stats::ks_pvalue(d, r.total as usize, c.total as usize)),
                error: Some(r.rank_error(integer) + c.rank_error(integer)),
            }
        }
        (Method::Wasserstein, Some(s)) => Outcome {
            statistic: stats::wasserstein_sorted(&s.reference, &s.current) / norm,
            p_value: None,
            error: None,
        },
        (Method::Wasserstein, None) => Outcome {
            statistic: grid_wasserstein(r, c) / norm,
            p_value: None,
            error: None,
        },
        (Method::CramerVonMises, Some(s)) => {
            let t = stats::cramer_von_mises_sorted(&s.reference, &s.current)?;
            Outcome {
                statistic: t.statistic,
                p_value: Some(t.p_value),
                error: None,
            }
        }
        (Method::CramerVonMises, None) => {
            if r.total < 2 || c.total < 2 {
                return Err(DriftError::input(
                    "sample",
                    "the Cramer-von Mises test needs at least two values on each side",
                ));
            }
            let (t, u, nx, ny) =
                stats::cvm_from_groups(merged_counts(r, c).into_iter().map(|(_, a, b)| (a, b)));
            Outcome {
                statistic: t,
                p_value: Some(stats::cvm_pvalue(t, u, nx, ny)),
                error: None,
            }
        }
        _ => unreachable!(),
    })
}

/// (key, reference count, current count) over the union of buckets, in increasing order.
fn merged_counts(r: &Buckets, c: &Buckets) -> Vec<(u32, u64, u64)> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(r.keys.len().max(c.keys.len()));
    while i < r.keys.len() || j < c.keys.len() {
        let ka = r.keys.get(i).copied().unwrap_or(u32::MAX);
        let kb = c.keys.get(j).copied().unwrap_or(u32::MAX);
        let k = ka.min(kb);
        let a = if ka == k {
            i += 1;
            r.counts[i - 1]
        } else {
            0
        };
        let b = if kb == k {
            j += 1;
            c.counts[j - 1]
        } else {
            0
        };
        out.push((k, a, b));
    }
    out
}

/// KS statistic at every bucket edge: a lower bound on the exact statistic, short of it
/// by at most the two rank errors.
fn grid_ks(r: &Buckets, c: &Buckets) -> f64 {
    let (n, m) = (r.total as f64, c.total as f64);
    let (mut a, mut b) = (0u64, 0u64);
    let mut d: f64 = 0.0;
    for (_, ca, cb) in merged_counts(r, c) {
        a += ca;
        b += cb;
        d = d.max((a as f64 / n - b as f64 / m).abs());
    }
    d
}

/// The area between the two CDFs, each linear inside a bucket.
fn grid_wasserstein(r: &Buckets, c: &Buckets) -> f64 {
    let (n, m) = (r.total as f64, c.total as f64);
    let lo = r.min.min(c.min);
    let hi = r.max.max(c.max);
    let merged = merged_counts(r, c);
    let (mut fa, mut fb) = (0.0, 0.0);
    let mut total = 0.0;
    for (idx, (k, ca, cb)) in merged.iter().copied().enumerate() {
        let x0 = grid::lower_edge(k).max(lo);
        let x1 = grid::lower_edge(k + 1).min(hi).max(x0);
        let (ga, gb) = (fa + ca as f64 / n, fb + cb as f64 / m);
        let (d0, d1) = (fa - fb, ga - gb);
        let w = x1 - x0;
        total += if d0 * d1 >= 0.0 {
            (d0.abs() + d1.abs()) / 2.0 * w
        } else {
            (d0 * d0 + d1 * d1) / (2.0 * (d1 - d0).abs()) * w
        };
        (fa, fb) = (ga, gb);
        if let Some((next, _, _)) = merged.get(idx + 1) {
            let gap = grid::lower_edge(*next).min(hi) - x1;
            if gap > 0.0 {
                total += (fa - fb).abs() * gap;
            }
        }
    }
    total
}

fn numeric_chart(r: &Buckets, c: &Buckets) -> Chart {
    let lo = r
        .quantile(0.005)
        .unwrap_or(0.0)
        .min(c.quantile(0.005).unwrap_or(f64::INFINITY));
    let hi = r
        .quantile(0.995)
        .unwrap_or(0.0)
        .max(c.quantile(0.995).unwrap_or(f64::NEG_INFINITY));
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, lo + 0.5)
    };
    let bins = 30;
    let edges: Vec<f64> = (0..=bins)
        .map(|i| lo + (hi - lo) * f64::from(i) / f64::from(bins))
        .collect();
    let shares = |b: &Buckets| -> Vec<f64> {
        edges
            .windows(2)
            .map(|w| (b.cdf(w[1]) - b.cdf(w[0])).max(0.0))
            .collect()
    };
    Chart {
        kind: "histogram",
        reference: shares(r),
        current: shares(c),
        edges,
        labels: Vec::new(),
    }
}

fn bar_chart(a: &Aligned) -> Chart {
    let (tr, tc) = (
        a.reference.iter().sum::<f64>().max(1.0),
        a.current.iter().sum::<f64>().max(1.0),
    );
    let mut idx: Vec<usize> = (0..a.labels.len()).collect();
    idx.sort_by(|x, y| {
        let sx = (a.reference[*x] / tr).max(a.current[*x] / tc);
        let sy = (a.reference[*y] / tr).max(a.current[*y] / tc);
        sy.total_cmp(&sx)
    });
    let shown = 20;
    let mut chart = Chart {
        kind: "bars",
        ..Chart::default()
    };
    for i in idx.iter().take(shown) {
        chart.labels.push(a.labels[*i].clone());
        chart.reference.push(a.reference[*i] / tr);
        chart.current.push(a.current[*i] / tc);
    }
    if idx.len() > shown {
        let rest = &idx[shown..];
        chart.labels.push(format!("({} more)", rest.len()));
        chart
            .reference
            .push(rest.iter().map(|i| a.reference[*i]).sum::<f64>() / tr);
        chart
            .current
            .push(rest.iter().map(|i| a.current[*i]).sum::<f64>() / tc);
    }
    chart
}

fn compare_column(
    r: &ColumnProfile,
    c: &ColumnProfile,
    opts: &Options,
    sorted: Option<&Sorted>,
) -> Result<ColumnReport> {
    let name = &r.name;
    let mut out = ColumnReport {
        column: name.clone(),
        kind: "none",
        reference_type: r.dtype.clone(),
        current_type: c.dtype.clone(),
        reference_rows: r.rows,
        current_rows: c.rows,
        reference_missing: r.missing_rate(),
        current_missing: c.missing_rate(),
        ..ColumnReport::default()
    };
    let change = out.current_missing - out.reference_missing;
    if change.abs() > opts.missing_rate_change {
        out.drifted = true;
        out.reasons.push(format!(
            "missing values {} -> {} of rows",
            fmt(out.reference_missing),
            fmt(out.current_missing)
        ));
    }
    let numeric = r.kind.is_numeric() && c.kind.is_numeric();
    let integer = r.kind == Kind::Integer && c.kind == Kind::Integer;
    let categorical = matches!(r.kind, Kind::Boolean | Kind::Categorical)
        && matches!(c.kind, Kind::Boolean | Kind::Categorical);
    if !numeric && !categorical && r.kind != Kind::Null && c.kind != Kind::Null {
        out.type_mismatch = true;
        out.drifted = true;
        out.reasons.push(format!(
            "type changed from {} ({}) to {} ({})",
            r.kind.name(),
            r.dtype,
            c.kind.name(),
            c.dtype
        ));
        return Ok(out);
    }
    if r.values() == 0 || c.values() == 0 {
        out.reasons.push(format!(
            "not tested: the {} has no values",
            if r.values() == 0 {
                "reference"
            } else {
                "current data"
            }
        ));
        return Ok(out);
    }
    let chosen = opts.column_methods.get(name).copied().or(opts.method);
    let threshold = |m: Method| {
        opts.column_thresholds
            .get(name)
            .copied()
            .or(opts.threshold)
            .unwrap_or_else(|| m.default_threshold())
    };
    // the distributions to compare: a numeric pair, or aligned category counts
    let mut aligned: Option<Aligned> = None;
    let mut numeric_pair: Option<(Buckets, Buckets)> = None;
    if numeric {
        let (rn, cn) = (
            r.numeric.as_ref().expect("numeric"),
            c.numeric.as_ref().expect("numeric"),
        );
        out.reference_mean = Some(rn.moments.mean);
        out.current_mean = Some(cn.moments.mean);
        out.reference_std = Some(rn.moments.std());
        out.current_std = Some(cn.moments.std());
        (out.reference_min, out.reference_max) = (rn.min, rn.max);
        (out.current_min, out.current_max) = (cn.min, cn.max);
        out.reference_constant = rn.min == rn.max;
        out.current_constant = cn.min == cn.max;
        let (rb, cb) = (rn.buckets(), cn.buckets());
        let few = rb.keys.len() <= opts.max_integer_categories
            && rb.keys.iter().all(|k| grid::width(*k) <= 1.0);
        let as_categories = opts.categorical.contains(name)
            || (chosen.is_none_or(|m| !m.numeric_only()) && integer && few);
        if as_categories {
            out.kind = "categorical";
            let a = align_buckets(&rb, &cb);
            out.reference_distinct = Some(rb.keys.len() as f64);
            out.current_distinct = Some(cb.keys.len() as f64);
            aligned = Some(a);
        } else {
            out.kind = if r.kind == Kind::Datetime {
                "datetime"
            } else {
                "numeric"
            };
            let (lo, hi) = (rn.min.unwrap_or(0.0), rn.max.unwrap_or(0.0));
            out.out_of_range_share = match sorted {
                Some(s) => {
                    let below = s.current.partition_point(|x| *x < lo);
                    let above = s.current.len() - s.current.partition_point(|x| *x <= hi);
                    (below + above) as f64 / s.current.len().max(1) as f64
                }
                None => {
                    let below = cb.count_below_key(grid::key_of(lo));
                    let above = cb.total - cb.count_below_key(grid::key_of(hi) + 1);
                    (below + above) as f64 / cb.total.max(1) as f64
                }
            };
            out.chart = numeric_chart(&rb, &cb);
            numeric_pair = Some((rb, cb));
        }
    } else {
        out.kind = "categorical";
        let (rc, cc) = (
            r.categories.as_ref().expect("categorical"),
            c.categories.as_ref().expect("categorical"),
        );
        out.reference_distinct = Some(rc.distinct());
        out.current_distinct = Some(cc.distinct());
        out.reference_constant = rc.distinct() <= 1.0;
        out.current_constant = cc.distinct() <= 1.0;
        aligned = Some(align_categories(r, c));
    }
    if let Some(a) = &aligned {
        let total: f64 = a.current.iter().sum();
        let mut unseen = a.unseen.clone();
        unseen.sort_by(|x, y| y.1.total_cmp(&x.1));
        out.unseen_share = unseen.iter().map(|u| u.1).sum::<f64>() / total.max(1.0);
        out.unseen_categories = unseen.into_iter().take(20).map(|u| u.0).collect();
        out.chart = bar_chart(a);
    }
    let method = match chosen {
        Some(m) => m,
        None if out.kind == "datetime" => {
            out.reasons.push(
                "not tested: datetimes move forward by nature; pick a method to test one".into(),
            );
            return Ok(out);
        }
        None => {
            let small = r.values() <= opts.small_sample;
            match (aligned.is_some(), small) {
                (true, true) => Method::ChiSquare,
                (true, false) => Method::JensenShannon,
                (false, true) => Method::Ks,
                (false, false) => Method::Wasserstein,
            }
        }
    };
    let outcome = if let Some(a) = &aligned {
        if method.numeric_only() {
            return Err(DriftError::input(
                format!("column '{name}'"),
                format!(
                    "the {} method needs numbers, and the column holds categories; use psi, \
                     jensenshannon, hellinger, kl_div or chisquare",
                    method.name()
                ),
            ));
        }
        binned(method, &a.reference, &a.current)
    } else {
        let (rb, cb) = numeric_pair.as_ref().expect("numeric");
        numeric_outcome(
            method,
            rb,
            cb,
            out.reference_std.unwrap_or(0.0),
            integer,
            sorted,
        )
    }
    .map_err(|e| match e {
        DriftError::Input { what, reason } => DriftError::input(
            format!("column '{name}' ({})", method.name()),
            format!("{what}: {reason}"),
        ),
        other => other,
    })?;
    let limit = threshold(method);
    out.method = Some(method.name());
    out.statistic = Some(outcome.statistic);
    out.p_value = outcome.p_value;
    out.threshold = Some(limit);
    out.statistic_error = outcome.error;
    let fired = match outcome.p_value {
        Some(p) if method.is_test() => p < limit,
        _ => outcome.statistic >= limit,
    };
    if fired {
        out.drifted = true;
        out.reasons.push(match outcome.p_value {
            Some(p) if method.is_test() => {
                format!("{} p-value {} < {}", method.name(), fmt(p), fmt(limit))
            }
            _ => format!(
                "{} {} >= {}",
                method.name(),
                fmt(outcome.statistic),
                fmt(limit)
            ),
        });
    }
    Ok(out)
}
