//! Exact two-sample statistics on raw values and divergences between binned distributions.
//! Each follows scipy's definition so that results can be checked against it (the pytest
//! suite does, on random cases).

use statrs::distribution::{ChiSquared, ContinuousCDF};

use crate::error::{DriftError, Result};

fn sorted_finite(what: &str, values: &[f64]) -> Result<Vec<f64>> {
    if values.is_empty() {
        return Err(DriftError::input(what, "the sample is empty"));
    }
    if let Some(bad) = values.iter().find(|v| v.is_nan()) {
        return Err(DriftError::input(
            what,
            format!("the sample holds {bad}; drop missing values first"),
        ));
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(sorted)
}

/// The two-sample Kolmogorov-Smirnov statistic: the largest distance between the two
/// empirical CDFs (scipy.stats.ks_2samp's `statistic`).
pub fn ks_statistic(reference: &[f64], current: &[f64]) -> Result<f64> {
    let a = sorted_finite("reference", reference)?;
    let b = sorted_finite("current", current)?;
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut d: f64 = 0.0;
    // Walk both sorted samples; at each distinct value both CDFs include every tie.
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    Ok(d)
}

/// The first Wasserstein (earth mover's) distance between two samples
/// (scipy.stats.wasserstein_distance): the area between their empirical CDFs.
pub fn wasserstein(reference: &[f64], current: &[f64]) -> Result<f64> {
    let a = sorted_finite("reference", reference)?;
    let b = sorted_finite("current", current)?;
    if a.iter().chain(&b).any(|v| v.is_infinite()) {
        return Err(DriftError::input(
            "sample",
            "infinite values have no finite Wasserstein distance",
        ));
    }
    let mut all: Vec<f64> = a.iter().chain(&b).copied().collect();
    all.sort_by(f64::total_cmp);
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut total = 0.0;
    for w in all.windows(2) {
        let (x, next) = (w[0], w[1]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        total += (i as f64 / n - j as f64 / m).abs() * (next - x);
    }
    Ok(total)
}

/// A chi-square test of homogeneity on a 2 x k table of counts.
#[derive(Debug, Clone, PartialEq)]
pub struct ChiSquare {
    pub statistic: f64,
    pub p_value: f64,
    pub dof: usize,
}

/// Chi-square test that two samples of categories share one distribution, on their counts
/// per category (scipy.stats.chi2_contingency on the 2 x k table, with its default Yates
/// correction when there is one degree of freedom). Categories absent from both are ignored.
pub fn chi_square(reference: &[f64], current: &[f64]) -> Result<ChiSquare> {
    if reference.len() != current.len() {
        return Err(DriftError::input(
            "counts",
            format!(
                "{} reference categories but {} current ones",
                reference.len(),
                current.len()
            ),
        ));
    }
    if let Some(bad) = reference
        .iter()
        .chain(current)
        .find(|c| !c.is_finite() || **c < 0.0)
    {
        return Err(DriftError::input("counts", format!("{bad} is not a count")));
    }
    let cells: Vec<(f64, f64)> = reference
        .iter()
        .zip(current)
        .map(|(r, c)| (*r, *c))
        .filter(|(r, c)| r + c > 0.0)
        .collect();
    let (rows_a, rows_b): (f64, f64) = cells
        .iter()
        .fold((0.0, 0.0), |(x, y), (r, c)| (x + r, y + c));
    if rows_a == 0.0 || rows_b == 0.0 {
        return Err(DriftError::input(
            "counts",
            "one of the samples has no observations",
        ));
    }
    let total = rows_a + rows_b;
    let dof = cells.len().saturating_sub(1);
    if dof == 0 {
        return Ok(ChiSquare {
            statistic: 0.0,
            p_value: 1.0,
            dof,
        });
    }
    let mut statistic = 0.0;
    for (r, c) in &cells {
        let col = r + c;
        for (observed, row) in [(*r, rows_a), (*c, rows_b)] {
            let expected = row * col / total;
            let mut o = observed;
            if dof == 1 {
                // Yates: move each observation half a count towards its expectation
                let diff = expected - o;
                o += diff.signum() * diff.abs().min(0.5);
            }
            statistic += (o - expected).powi(2) / expected;
        }
    }
    let dist =
        ChiSquared::new(dof as f64).map_err(|e| DriftError::input("chi-square", e.to_string()))?;
    Ok(ChiSquare {
        statistic,
        p_value: dist.sf(statistic),
        dof,
    })
}

fn proportions(what: &str, counts: &[f64]) -> Result<Vec<f64>> {
    if let Some(bad) = counts.iter().find(|c| !c.is_finite() || **c < 0.0) {
        return Err(DriftError::input(
            what,
            format!("{bad} is not a count or proportion"),
        ));
    }
    let total: f64 = counts.iter().sum();
    if total <= 0.0 {
        return Err(DriftError::input(what, "the distribution is empty"));
    }
    Ok(counts.iter().map(|c| c / total).collect())
}

fn paired(reference: &[f64], current: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
    if reference.len() != current.len() {
        return Err(DriftError::input(
            "bins",
            format!(
                "{} reference bins but {} current ones",
                reference.len(),
                current.len()
            ),
        ));
    }
    Ok((
        proportions("reference", reference)?,
        proportions("current", current)?,
    ))
}

/// Proportion floor used by PSI for empty bins, so that one empty bin does not make the
/// index infinite (the convention of most PSI implementations).
pub const PSI_EPSILON: f64 = 1e-4;

/// Population Stability Index: sum over bins of (cur - ref) * ln(cur / ref), with each
/// proportion floored at [`PSI_EPSILON`].
pub fn psi(reference: &[f64], current: &[f64]) -> Result<f64> {
    let (p, q) = paired(reference, current)?;
    Ok(p.iter()
        .zip(&q)
        .map(|(r, c)| {
            let (r, c) = (r.max(PSI_EPSILON), c.max(PSI_EPSILON));
            (c - r) * (c / r).ln()
        })
        .sum())
}

fn relative_entropy(p: f64, q: f64) -> f64 {
    if p == 0.0 {
        0.0
    } else if q == 0.0 {
        f64::INFINITY
    } else {
        // ln p - ln q, not ln(p / q): the ratio overflows when q is subnormal
        p * (p.ln() - q.ln())
    }
}

/// Kullback-Leibler divergence KL(reference || current) in nats (scipy.stats.entropy(p, q));
/// infinite when the current distribution misses a bin the reference has.
pub fn kl_divergence(reference: &[f64], current: &[f64]) -> Result<f64> {
    let (p, q) = paired(reference, current)?;
    Ok(p.iter()
        .zip(&q)
        .map(|(a, b)| relative_entropy(*a, *b))
        .sum())
}

/// Jensen-Shannon distance in nats (scipy.spatial.distance.jensenshannon): the square root
/// of the divergence, between 0 and sqrt(ln 2).
pub fn js_distance(reference: &[f64], current: &[f64]) -> Result<f64> {
    let (p, q) = paired(reference, current)?;
    let divergence: f64 = p
        .iter()
        .zip(&q)
        .map(|(a, b)| {
            let m = (a + b) / 2.0;
            (relative_entropy(*a, m) + relative_entropy(*b, m)) / 2.0
        })
        .sum();
    Ok(divergence.max(0.0).sqrt())
}

/// Hellinger distance, between 0 (same) and 1 (disjoint): sqrt(1/2 * sum (sqrt p - sqrt q)^2).
pub fn hellinger(reference: &[f64], current: &[f64]) -> Result<f64> {
    let (p, q) = paired(reference, current)?;
    let sum: f64 = p
        .iter()
        .zip(&q)
        .map(|(a, b)| (a.sqrt() - b.sqrt()).powi(2))
        .sum();
    Ok((sum / 2.0).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn ks_counts_ties_on_both_sides() {
        close(
            ks_statistic(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]).unwrap(),
            0.0,
        );
        close(ks_statistic(&[1.0, 2.0], &[3.0, 4.0]).unwrap(), 1.0);
        close(
            ks_statistic(&[1.0, 1.0, 2.0, 3.0], &[1.0, 2.0]).unwrap(),
            0.25, // at 2: 3/4 of the first sample vs all of the second
        );
        close(
            ks_statistic(&[0.0, 1.0, 2.0, 3.0], &[2.0, 3.0]).unwrap(),
            0.5,
        );
    }

    #[test]
    fn wasserstein_of_a_shift_is_the_shift() {
        let a: Vec<f64> = (0..100).map(f64::from).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 2.5).collect();
        close(wasserstein(&a, &b).unwrap(), 2.5);
        close(
            wasserstein(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0]).unwrap(),
            5.0,
        );
    }

    #[test]
    fn chi_square_applies_yates_at_one_degree_of_freedom() {
        // 2 x 2 table [[10, 20], [20, 10]]: scipy gives 5.4 with the correction
        let r = chi_square(&[10.0, 20.0], &[20.0, 10.0]).unwrap();
        assert_eq!(r.dof, 1);
        close(r.statistic, 5.4);
        let same = chi_square(&[5.0, 5.0, 0.0], &[5.0, 5.0, 0.0]).unwrap();
        assert_eq!((same.dof, same.statistic), (1, 0.0));
        assert!(chi_square(&[1.0], &[1.0, 2.0]).is_err());
        assert!(chi_square(&[0.0, 0.0], &[1.0, 2.0]).is_err());
    }

    #[test]
    fn divergences_are_zero_for_equal_and_maximal_for_disjoint() {
        let p = [1.0, 2.0, 3.0];
        for f in [psi, kl_divergence, js_distance, hellinger] {
            close(f(&p, &[2.0, 4.0, 6.0]).unwrap(), 0.0);
        }
        close(hellinger(&[1.0, 0.0], &[0.0, 1.0]).unwrap(), 1.0);
        close(
            js_distance(&[1.0, 0.0], &[0.0, 1.0]).unwrap(),
            std::f64::consts::LN_2.sqrt(),
        );
        assert!(kl_divergence(&[1.0, 1.0], &[1.0, 0.0])
            .unwrap()
            .is_infinite());
        assert!(psi(&[1.0, 1.0], &[1.0, 0.0]).unwrap().is_finite());
    }

    #[test]
    fn bad_samples_are_named() {
        let err = ks_statistic(&[], &[1.0]).unwrap_err().to_string();
        assert_eq!(err, "reference: the sample is empty");
        let err = wasserstein(&[1.0, f64::NAN], &[1.0])
            .unwrap_err()
            .to_string();
        assert!(err.contains("NaN"), "{err}");
    }
}
