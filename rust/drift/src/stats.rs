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
    Ok(ks_sorted(&a, &b))
}

/// [`ks_statistic`] on samples already sorted in increasing order, without NaN.
pub fn ks_sorted(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len() as f64, b.len() as f64);
    let mut d: f64 = 0.0;
    for_each_value(a, b, |_, i, j| {
        d = d.max((i as f64 / n - j as f64 / m).abs());
    });
    d
}

/// Walks the distinct values of two sorted samples in increasing order, calling
/// `f(value, i, j)` with the counts of each sample at or below the value.
fn for_each_value(a: &[f64], b: &[f64], mut f: impl FnMut(f64, usize, usize)) {
    let (mut i, mut j) = (0usize, 0usize);
    loop {
        let x = match (a.get(i), b.get(j)) {
            (Some(p), Some(q)) => p.min(*q),
            (Some(p), None) => *p,
            (None, Some(q)) => *q,
            (None, None) => break,
        };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        f(x, i, j);
    }
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
    Ok(wasserstein_sorted(&a, &b))
}

/// [`wasserstein`] on finite samples already sorted in increasing order.
pub fn wasserstein_sorted(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len() as f64, b.len() as f64);
    let mut total = 0.0;
    let mut last: Option<(f64, f64)> = None; // (value, |F_a - F_b| from it on)
    for_each_value(a, b, |x, i, j| {
        if let Some((prev, gap)) = last {
            total += gap * (x - prev);
        }
        last = Some((x, (i as f64 / n - j as f64 / m).abs()));
    });
    total
}

/// The two-sample Cramer-von Mises test (scipy.stats.cramervonmises_2samp).
#[derive(Debug, Clone, PartialEq)]
pub struct CramerVonMises {
    pub statistic: f64,
    pub p_value: f64,
}

/// Sum over j = 1..=c of (d - j)^2.
fn squares_from(d: f64, c: f64) -> f64 {
    c * d * d - d * c * (c + 1.0) + c * (c + 1.0) * (2.0 * c + 1.0) / 6.0
}

/// The Cramer-von Mises statistic from the pooled sample's tie groups, in increasing
/// order of value: (count from the first sample, count from the second). Ties get their
/// average rank, as in scipy. Returns (T, U).
pub fn cvm_from_groups(groups: impl Iterator<Item = (u64, u64)>) -> (f64, f64, u64, u64) {
    let (mut a, mut b) = (0u64, 0u64);
    let (mut sx, mut sy) = (0.0, 0.0);
    for (ca, cb) in groups {
        let pooled = (a + b) as f64;
        let rank = pooled + (ca + cb + 1) as f64 / 2.0;
        if ca > 0 {
            sx += squares_from(rank - a as f64, ca as f64);
        }
        if cb > 0 {
            sy += squares_from(rank - b as f64, cb as f64);
        }
        a += ca;
        b += cb;
    }
    let (nx, ny) = (a as f64, b as f64);
    let u = nx * sx + ny * sy;
    let (k, n) = (nx * ny, nx + ny);
    (u / (k * n) - (4.0 * k - 1.0) / (6.0 * n), u, a, b)
}

/// The Cramer-von Mises test on two sorted samples, with scipy's method="auto" p-value:
/// exact when neither sample has more than 20 values, else the asymptotic distribution.
pub fn cramer_von_mises_sorted(a: &[f64], b: &[f64]) -> Result<CramerVonMises> {
    if a.len() < 2 || b.len() < 2 {
        return Err(DriftError::input(
            "sample",
            "the Cramer-von Mises test needs at least two values on each side",
        ));
    }
    let mut groups = Vec::new();
    let (mut pi, mut pj) = (0, 0);
    for_each_value(a, b, |_, i, j| {
        groups.push(((i - pi) as u64, (j - pj) as u64));
        (pi, pj) = (i, j);
    });
    let (t, u, nx, ny) = cvm_from_groups(groups.into_iter());
    Ok(CramerVonMises {
        statistic: t,
        p_value: cvm_pvalue(t, u, nx, ny),
    })
}

/// The p-value of a Cramer-von Mises statistic T (with U, scipy's intermediate) for
/// samples of sizes nx and ny.
pub fn cvm_pvalue(t: f64, u: f64, nx: u64, ny: u64) -> f64 {
    if nx.max(ny) <= 20 {
        return cvm_pvalue_exact(u, nx, ny);
    }
    let (nxf, nyf) = (nx as f64, ny as f64);
    let (k, n) = (nxf * nyf, nxf + nyf);
    let et = (1.0 + 1.0 / n) / 6.0;
    let vt = (n + 1.0) * (4.0 * k * n - 3.0 * (nxf * nxf + nyf * nyf) - 2.0 * k)
        / (45.0 * n * n * 4.0 * k);
    let tn = 1.0 / 6.0 + (t - et) / (45.0 * vt).sqrt();
    if tn < 0.003 {
        1.0
    } else {
        (1.0 - cvm_limit_cdf(tn)).max(0.0)
    }
}

/// exp(q) K_{1/4}(q) from K_v(q) = int_0^inf exp(-q cosh t) cosh(v t) dt (DLMF 10.32.9),
/// by the trapezoidal rule, which converges geometrically on this integrand.
fn scaled_bessel_k_quarter(q: f64) -> f64 {
    let h: f64 = 0.01;
    let mut sum = 0.5; // t = 0
    let mut t: f64 = h;
    loop {
        let term = (-q * (t.cosh() - 1.0)).exp() * (t / 4.0).cosh();
        sum += term;
        if term < 1e-17 * sum {
            break;
        }
        t += h;
    }
    sum * h
}

/// The CDF of the one-sample Cramer-von Mises statistic's limiting distribution
/// (Csorgo and Faraway 1996, eq. 1.3), summed until a term is below 1e-7 as scipy does.
fn cvm_limit_cdf(x: f64) -> f64 {
    use statrs::function::gamma::ln_gamma;
    let mut total = 0.0;
    let mut k = 0.0f64;
    loop {
        let u = (ln_gamma(k + 0.5) - ln_gamma(k + 1.0)).exp()
            / (std::f64::consts::PI.powf(1.5) * x.sqrt());
        let y = 4.0 * k + 1.0;
        let q = y * y / (16.0 * x);
        // exp(-q) K(q) = exp(-2q) (exp(q) K(q))
        let z = u * y.sqrt() * (-2.0 * q).exp() * scaled_bessel_k_quarter(q);
        total += z;
        if z.abs() < 1e-7 {
            break;
        }
        k += 1.0;
    }
    total
}

/// The exact null distribution of U by the recursion of Xiao, Gordon and Yakovlev (2006),
/// as scipy's `_pval_cvm_2samp_exact` evaluates it.
fn cvm_pvalue_exact(u: f64, m: u64, n: u64) -> f64 {
    use std::collections::BTreeMap;
    let lcm = m / gcd(m, n) * n;
    let (a, b) = (lcm / m, lcm / n);
    let mn = (m * n) as f64;
    let zeta = ((lcm * lcm * (m + n)) as f64 * (6.0 * u - mn * (4.0 * mn - 1.0)) / (6.0 * mn * mn))
        .floor();
    let mut gs: Vec<BTreeMap<u64, u64>> = vec![BTreeMap::new(); m as usize + 1];
    gs[0].insert(0, 1);
    for uu in 0..=n {
        let mut next = Vec::with_capacity(gs.len());
        let mut tmp: BTreeMap<u64, u64> = BTreeMap::new();
        for (v, g) in gs.iter().enumerate() {
            for (val, f) in g {
                *tmp.entry(*val).or_insert(0) += f;
            }
            let diff = (a * v as u64) as i64 - (b * uu) as i64;
            let res = (diff * diff) as u64;
            tmp = tmp.into_iter().map(|(val, f)| (val + res, f)).collect();
            next.push(tmp.clone());
        }
        gs = next;
    }
    let combinations = binomial(m + n, m);
    let hits: f64 = gs[m as usize]
        .iter()
        .filter(|(val, _)| **val as f64 >= zeta)
        .map(|(_, f)| *f as f64)
        .sum();
    hits / combinations
}

fn binomial(n: u64, k: u64) -> f64 {
    let mut r = 1.0;
    for i in 0..k {
        r = r * (n - i) as f64 / (i + 1) as f64;
    }
    r.round()
}

/// Both sides must describe the same categories or bins.
fn same_length(what: &str, unit: &str, reference: &[f64], current: &[f64]) -> Result<()> {
    if reference.len() != current.len() {
        return Err(DriftError::input(
            what,
            format!(
                "{} reference {unit} but {} current ones",
                reference.len(),
                current.len()
            ),
        ));
    }
    Ok(())
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
    same_length("counts", "categories", reference, current)?;
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
    same_length("bins", "bins", reference, current)?;
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

/// Samples up to this size get the exact two-sample KS p-value (scipy's `MAX_AUTO_N`).
pub const KS_EXACT_MAX_N: usize = 10_000;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// P(D >= h/n) for two samples of equal size n: the proportion of lattice paths from (0,0)
/// to (n,n) that touch one of the lines x - y = +-h. The alternating sum of binomial ratios
/// is evaluated from the innermost term outwards, which avoids subtractive cancellation.
fn prob_outside_square(n: u64, h: u64) -> f64 {
    let (n, h) = (n as f64, h as f64);
    let mut p = 0.0;
    let mut k = (n / h).floor();
    while k >= 0.0 {
        let mut term = 1.0;
        let mut j = 0.0;
        while j < h {
            term = (n - k * h - j) * term / (n + k * h + j + 1.0);
            j += 1.0;
        }
        p = term * (1.0 - p);
        k -= 1.0;
    }
    2.0 * p
}

/// P(D >= h/lcm(m, n)) for samples of sizes m and n: the proportion of lattice paths from
/// (0,0) to (m,n) that leave the band |x/m - y/n| < h/lcm. Hodges' inside method, carrying
/// the probability of having left the band (Viehmann 2021) so that small p-values keep
/// their precision. One column of the lattice is kept and only the band is visited.
fn prob_outside_band(m: u64, n: u64, g: u64, h: u64) -> f64 {
    let (m, n) = if m >= n { (m, n) } else { (n, m) };
    let (mg, ng, h) = ((m / g) as i64, (n / g) as i64, h as i64);
    let n = n as usize;
    // Inside the band at (x, y) exactly when |ng*x - mg*y| < h.
    let window = |x: i64| -> (usize, usize) {
        let lo = (ng * x - h).div_euclid(mg) + 1;
        let hi = -(-(ng * x + h)).div_euclid(mg) - 1;
        (lo.max(0) as usize, hi.min(n as i64).max(-1) as usize)
    };
    // column[y]: probability that a uniformly random path to (x, y) has left the band
    let mut column = vec![1.0f64; n + 1];
    let (mut lo, hi) = window(0);
    if lo <= hi && hi <= n {
        column[lo..=hi].fill(0.0);
    }
    for x in 1..=(m as i64) {
        let (new_lo, new_hi) = window(x);
        if new_lo > new_hi || new_hi > n {
            return 1.0;
        }
        column[lo..new_lo.min(n + 1)].fill(1.0);
        let xf = x as f64;
        for y in new_lo..=new_hi {
            let below = if y == 0 { 0.0 } else { column[y - 1] };
            let yf = y as f64;
            column[y] = (column[y] * xf + below * yf) / (xf + yf);
        }
        lo = new_lo;
    }
    column[n]
}

/// The exact two-sided p-value of the two-sample KS statistic `d` for sample sizes n1 and
/// n2, as scipy.stats.ks_2samp computes it when both samples have at most
/// [`KS_EXACT_MAX_N`] values. `None` when scipy would use the asymptotic distribution
/// instead (larger samples, or an exact sum that lost precision).
pub fn ks_pvalue_exact(d: f64, n1: usize, n2: usize) -> Option<f64> {
    if n1.max(n2) > KS_EXACT_MAX_N || n1 == 0 || n2 == 0 {
        return None;
    }
    let (a, b) = (n1 as u64, n2 as u64);
    let g = gcd(a, b);
    let lcm = (a / g) * b;
    let h = (d * lcm as f64).round_ties_even() as u64; // numpy rounds half to even
    if h == 0 {
        return Some(1.0);
    }
    let p = if a == b {
        prob_outside_square(a, h)
    } else {
        prob_outside_band(a, b, g, h)
    };
    // A value rounded just outside [0, 1] means the exact sum lost precision: scipy then
    // switches to the asymptotic distribution, and so do we (None).
    (0.0..=1.0).contains(&p).then_some(p)
}

/// The two-sided p-value of the two-sample KS statistic `d` for sample sizes n1 and n2, as
/// scipy.stats.ks_2samp(method="auto") computes it: exact up to [`KS_EXACT_MAX_N`] values
/// per sample, else Smirnov's asymptotic distribution, kstwo(round(n1 n2 / (n1 + n2))).
pub fn ks_pvalue(d: f64, n1: usize, n2: usize) -> f64 {
    if let Some(p) = ks_pvalue_exact(d, n1, n2) {
        return p;
    }
    let (m, n) = (n1.max(n2) as f64, n1.min(n2) as f64);
    let en = (m * n / (m + n)).round_ties_even().max(1.0);
    crate::kolmogorov::kolmogorov_sf(en as u64, d)
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
    fn exact_ks_pvalues() {
        // scipy.stats.ks_2samp p-values for these (d, n1, n2)
        for (d, n1, n2, expected) in [
            (0.5, 4, 4, 0.771_428_571_428_571_4),
            (0.6, 5, 10, 0.165_834_165_834_165_83),
            (1.0, 3, 7, 0.016_666_666_666_666_67),
            (0.0, 5, 5, 1.0),
        ] {
            let p = ks_pvalue_exact(d, n1, n2).unwrap();
            assert!(
                (p - expected).abs() <= 1e-12 * expected.max(1e-300),
                "d={d} n=({n1},{n2}): {p} vs {expected}"
            );
        }
        assert!(ks_pvalue_exact(0.1, 20_000, 5).is_none());
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
