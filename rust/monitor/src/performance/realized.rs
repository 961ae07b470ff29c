//! Realized performance beyond the confusion-count metrics of [`super::metrics`]: log
//! loss, calibration error and the confusion matrix of a classifier's labelled rows, and a
//! regressor's MAE, RMSE, MAPE and R², each the way scikit-learn computes it (the
//! calibration error is the binned one of `sklearn.calibration.calibration_curve`).

use super::metrics::{Rows, UNKNOWN};

/// Bins of the calibration error (equal width over [0, 1]).
pub const CALIBRATION_BINS: usize = 10;

/// The labelled rows of `rows` (those whose true class is known).
fn labelled(rows: &Rows<'_>) -> Vec<usize> {
    match rows.y_true {
        None => Vec::new(),
        Some(t) => (0..rows.len()).filter(|i| t[*i] != UNKNOWN).collect(),
    }
}

/// The mean negative log-likelihood of the true classes (probabilities clipped to
/// [eps, 1 - eps], as scikit-learn's `log_loss`, which since 1.5 no longer rescales rows to
/// sum to one); NaN without labels.
pub fn log_loss(rows: &Rows<'_>) -> f64 {
    let idx = labelled(rows);
    let Some(t) = rows.y_true else {
        return f64::NAN;
    };
    if idx.is_empty() {
        return f64::NAN;
    }
    let eps = f64::EPSILON;
    let mut sum = 0.0;
    for &i in &idx {
        sum -= rows.p(i, t[i] as usize).clamp(eps, 1.0 - eps).ln();
    }
    sum / idx.len() as f64
}

/// The expected calibration error over [`CALIBRATION_BINS`] equal-width bins: for a binary
/// problem of the positive class's probability against the share of positives, for a
/// multiclass one of the top class's probability against the share of rows it is right;
/// each bin's gap weighted by its share of rows. A probability on an edge falls in the bin
/// below it, as in `calibration_curve` (whose edges are `i * 0.1`). NaN without labels.
pub fn calibration_error(rows: &Rows<'_>) -> f64 {
    let idx = labelled(rows);
    let Some(t) = rows.y_true else {
        return f64::NAN;
    };
    if idx.is_empty() {
        return f64::NAN;
    }
    let mut bins = [(0u64, 0.0f64, 0.0f64); CALIBRATION_BINS];
    for &i in &idx {
        let (confidence, hit) = if rows.classes == 2 {
            (rows.p(i, 1), t[i] == 1)
        } else {
            let top = (0..rows.classes)
                .max_by(|a, b| rows.p(i, *a).total_cmp(&rows.p(i, *b)))
                .unwrap_or(0);
            (rows.p(i, top), t[i] as usize == top)
        };
        let b = (1..CALIBRATION_BINS)
            .filter(|e| (*e as f64) * (1.0 / CALIBRATION_BINS as f64) < confidence)
            .count();
        bins[b].0 += 1;
        bins[b].1 += confidence;
        bins[b].2 += f64::from(u8::from(hit));
    }
    let n = idx.len() as f64;
    bins.iter()
        .filter(|b| b.0 > 0)
        .map(|(count, conf, hits)| {
            let c = *count as f64;
            (hits / c - conf / c).abs() * c / n
        })
        .sum()
}

/// The confusion matrix of the labelled rows, row-major: `[true][predicted]`.
pub fn confusion(rows: &Rows<'_>) -> Vec<u64> {
    let k = rows.classes;
    let mut m = vec![0u64; k * k];
    if let Some(t) = rows.y_true {
        for i in labelled(rows) {
            m[t[i] as usize * k + rows.y_pred[i] as usize] += 1;
        }
    }
    m
}

/// A regressor's errors on rows whose target is known.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Regression {
    pub mae: f64,
    pub rmse: f64,
    pub mape: f64,
    pub r2: f64,
}

/// MAE, RMSE, MAPE (relative to `max(|y|, eps)`) and R² (1 when the targets are constant
/// and matched exactly, 0 when constant and missed, NaN for one pair) over the pairs whose
/// target and prediction are numbers; NaN everywhere without any.
pub fn regression(y_pred: &[f64], y_true: &[f64]) -> Regression {
    let pairs: Vec<(f64, f64)> = y_pred
        .iter()
        .zip(y_true)
        .filter(|(p, t)| t.is_finite() && p.is_finite())
        .map(|(p, t)| (*p, *t))
        .collect();
    if pairs.is_empty() {
        return Regression {
            mae: f64::NAN,
            rmse: f64::NAN,
            mape: f64::NAN,
            r2: f64::NAN,
        };
    }
    let n = pairs.len() as f64;
    let mean = pairs.iter().map(|(_, t)| t).sum::<f64>() / n;
    let (mut abs, mut sq, mut rel, mut total) = (0.0, 0.0, 0.0, 0.0);
    for (p, t) in &pairs {
        let e = t - p;
        abs += e.abs();
        sq += e * e;
        rel += e.abs() / t.abs().max(f64::EPSILON);
        total += (t - mean) * (t - mean);
    }
    let r2 = if pairs.len() < 2 {
        f64::NAN
    } else if total > 0.0 {
        1.0 - sq / total
    } else if sq == 0.0 {
        1.0
    } else {
        0.0
    };
    Regression {
        mae: abs / n,
        rmse: (sq / n).sqrt(),
        mape: rel / n,
        r2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_log_loss_calibration_and_confusion() {
        let y_pred = [1, 0, 1, 1];
        let y_true = [1, 0, 0, UNKNOWN];
        let proba = [0.9, 0.2, 0.6, 0.7];
        let rows = Rows::new(2, &y_pred, Some(&y_true), &proba).unwrap();
        let expected = -(0.9f64.ln() + 0.8f64.ln() + 0.4f64.ln()) / 3.0;
        assert!((log_loss(&rows) - expected).abs() < 1e-12);
        // bins: 0.2 (negative), 0.6 (negative), 0.9 (positive)
        let ece = (0.2 + 0.6 + 0.1) / 3.0;
        assert!((calibration_error(&rows) - ece).abs() < 1e-12);
        assert_eq!(confusion(&rows), vec![1, 1, 0, 1]);
        // on an edge, the bin below (as calibration_curve): 0.5 and 0.45 share bin 4
        let (y_pred, y_true, proba) = ([1, 0], [0, 1], [0.5, 0.45]);
        let rows = Rows::new(2, &y_pred, Some(&y_true), &proba).unwrap();
        assert!((calibration_error(&rows) - 0.025).abs() < 1e-12);
    }

    #[test]
    fn regression_errors_and_constant_targets() {
        let r = regression(&[1.0, 2.0, 4.0], &[1.0, 3.0, f64::NAN]);
        assert_eq!((r.mae, r.rmse), (0.5, (0.5f64).sqrt()));
        assert!((r.mape - (1.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(r.r2, 1.0 - 1.0 / 2.0);
        assert_eq!(regression(&[2.0, 2.0], &[2.0, 2.0]).r2, 1.0);
        assert_eq!(regression(&[1.0, 3.0], &[2.0, 2.0]).r2, 0.0);
        assert!(regression(&[1.0], &[f64::NAN]).mae.is_nan());
        assert!(regression(&[1.0], &[2.0]).r2.is_nan());
        assert_eq!(regression(&[f64::NAN, 1.0, 2.0], &[5.0, 1.0, 3.0]).mae, 0.5);
    }
}
