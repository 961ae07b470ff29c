//! The distribution of the one-sample Kolmogorov-Smirnov statistic D_n, which scipy's
//! two-sample test uses past its exact range (`kstwo.sf(d, round(n1 n2 / (n1 + n2)))`).
//!
//! Simard & L'Ecuyer (2011) pick an algorithm by region of (n, x): Ruben-Gambino closed
//! forms at the edges, the Durbin matrix (Marsaglia-Tsang-Wang) and Pomeranz recursions for
//! moderate n * x^2, the Pelz-Good expansion for large n, and the one-sided Smirnov sum
//! (Birnbaum-Tingey) in the upper tail. The regions and cut-offs follow scipy's choices, so
//! that p-values agree with it.

use std::f64::consts::PI;

const SCALE_EXP: i32 = 128;

fn two_pow(e: i32) -> f64 {
    2f64.powi(e)
}

/// ln(n! / n^n) by Stirling's series, without the cancellation of n ln n - ln n!.
fn log_nfactorial_div_n_pow_n(n: f64) -> f64 {
    // B_{2j} / (2j (2j - 1)) for j = 8 .. 1, highest power first
    const STIRLING: [f64; 8] = [
        -3617.0 / 122_400.0,
        1.0 / 156.0,
        -691.0 / 360_360.0,
        1.0 / 1188.0,
        -1.0 / 1680.0,
        1.0 / 1260.0,
        -1.0 / 360.0,
        1.0 / 12.0,
    ];
    let rn = 1.0 / n;
    let z = rn / n;
    let series = STIRLING.iter().fold(0.0, |acc, c| acc * z + c);
    n.ln() / 2.0 - n + (2.0 * PI).ln() / 2.0 + rn * series
}

/// P(D+_n >= x), the one-sided Smirnov statistic's upper tail, by the Birnbaum-Tingey sum
/// x * sum_j C(n, j) (x + j/n)^(j-1) (1 - x - j/n)^(n-j), in logarithms.
pub fn smirnov_sf(n: u64, x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x >= 1.0 {
        return 0.0;
    }
    let nf = n as f64;
    let last = (nf * (1.0 - x)).floor() as u64;
    let mut logs = Vec::with_capacity(last as usize + 1);
    let mut ln_binom = 0.0; // ln C(n, 0)
    for j in 0..=last {
        if j > 0 {
            ln_binom += ((n - j + 1) as f64).ln() - (j as f64).ln();
        }
        let jf = j as f64;
        let rest = 1.0 - x - jf / nf;
        let tail = if n == j {
            0.0
        } else if rest <= 0.0 {
            continue;
        } else {
            (nf - jf) * rest.ln()
        };
        logs.push(ln_binom + (jf - 1.0) * (x + jf / nf).ln() + tail);
    }
    let Some(top) = logs.iter().copied().reduce(f64::max) else {
        return 0.0;
    };
    let sum: f64 = logs.iter().map(|l| (l - top).exp()).sum();
    (x * top.exp() * sum).clamp(0.0, 1.0)
}

fn matmul(a: &[f64], b: &[f64], m: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * m];
    for i in 0..m {
        for k in 0..m {
            let aik = a[i * m + k];
            if aik == 0.0 {
                continue;
            }
            for j in 0..m {
                out[i * m + j] += aik * b[k * m + j];
            }
        }
    }
    out
}

/// P(D_n <= d) by the Durbin matrix, as Marsaglia, Tsang and Wang compute it: the (k, k)
/// entry of H^n times n!/n^n, with d = (k - h)/n, rescaling to stay within range.
fn cdf_durbin(n: u64, d: f64) -> f64 {
    if d >= 1.0 {
        return 1.0;
    }
    let nd = n as f64 * d;
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;
    let mut v = vec![0.0; m];
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] = (1.0 - h.powi(j as i32)) * fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powi(m as i32) - 2.0 * h.powi(m as i32);
    v[m - 1] = (1.0 + tt) * fac;
    let mut hm = vec![0.0; m * m];
    for i in 1..m {
        for r in (i - 1)..m {
            hm[r * m + i] = w[r - (i - 1)];
        }
    }
    for r in 0..m {
        hm[r * m] = v[r];
        hm[(m - 1) * m + r] = v[m - 1 - r];
    }
    let mut power = vec![0.0; m * m];
    for i in 0..m {
        power[i * m + i] = 1.0;
    }
    let (mut e_power, mut e_h) = (0i32, 0i32);
    let mut remaining = n;
    while remaining > 0 {
        if remaining % 2 == 1 {
            power = matmul(&power, &hm, m);
            e_power += e_h;
        }
        hm = matmul(&hm, &hm, m);
        e_h *= 2;
        if hm[(k - 1) * m + (k - 1)].abs() > two_pow(SCALE_EXP) {
            hm.iter_mut().for_each(|x| *x /= two_pow(SCALE_EXP));
            e_h += SCALE_EXP;
        }
        remaining /= 2;
    }
    let mut p = power[(k - 1) * m + (k - 1)];
    let nf = n as f64;
    for i in 1..=n {
        p = i as f64 * p / nf;
        if p.abs() < two_pow(-SCALE_EXP) {
            p *= two_pow(SCALE_EXP);
            e_power -= SCALE_EXP;
        }
    }
    (p * 2f64.powi(e_power)).clamp(0.0, 1.0)
}

fn pomeranz_window(i: i64, n: i64, ll: i64, ceilf: i64, roundf: i64) -> (i64, i64) {
    let (j1, j2) = if i == 0 {
        (-ll - ceilf - 1, ll + ceilf - 1)
    } else {
        let (half, odd) = ((i + 1) / 2, (i + 1) % 2);
        if odd == 0 {
            if half == n + 1 {
                (n - ll - ceilf - 1, n + ll + ceilf - 1)
            } else {
                (half - 1 - ll - roundf - 1, half + ll - 1 + ceilf - 1)
            }
        } else {
            (half - 1 - ll - 1, half + ll + roundf - 1)
        }
    };
    ((j1 + 2).max(0), j2.min(n))
}

/// P(D_n <= x) by Pomeranz's recursion: rows of convolutions with (nearly) Poisson weights.
fn cdf_pomeranz(n: u64, x: f64) -> f64 {
    let nn = n as i64;
    let t = n as f64 * x;
    let ll = t.floor() as i64;
    let f = t - ll as f64;
    let g = f.min(1.0 - f);
    let ceilf = i64::from(f > 0.0);
    let roundf = i64::from(f > 0.5);
    let npwrs = (2 * (ll + 1)) as usize;
    let (mut gp, mut two_gp, mut one_m2gp) = (vec![1.0; npwrs], vec![1.0; npwrs], vec![1.0; npwrs]);
    let nf = n as f64;
    for m in 1..npwrs {
        let mf = m as f64;
        gp[m] = gp[m - 1] * (g / nf) / mf;
        two_gp[m] = two_gp[m - 1] * (2.0 * g / nf) / mf;
        one_m2gp[m] = one_m2gp[m - 1] * ((1.0 - 2.0 * g) / nf) / mf;
    }
    let mut v0 = vec![0.0; npwrs];
    let mut v1 = vec![0.0; npwrs];
    v1[0] = 1.0;
    let (mut v0s, mut v1s) = (0i64, 0i64);
    let mut exponent = 0i32;
    let (mut j1, _) = pomeranz_window(0, nn, ll, ceilf, roundf);
    for i in 1..(2 * nn + 2) {
        let k1 = j1;
        std::mem::swap(&mut v0, &mut v1);
        std::mem::swap(&mut v0s, &mut v1s);
        v1.iter_mut().for_each(|x| *x = 0.0);
        let (nj1, nj2) = pomeranz_window(i, nn, ll, ceilf, roundf);
        j1 = nj1;
        let powers = if i == 1 || i == 2 * nn + 1 {
            &gp
        } else if i % 2 == 1 {
            &two_gp
        } else {
            &one_m2gp
        };
        let len2 = nj2 - k1 + 1;
        if len2 > 0 {
            let len2 = len2 as usize;
            let start = (k1 - v0s) as usize;
            let a = &v0[start..start + len2];
            let b = &powers[..len2];
            let conv_start = (nj1 - k1) as usize;
            let conv_len = (nj2 - nj1 + 1) as usize;
            for (out, c) in (conv_start..conv_start + conv_len).enumerate() {
                // the c-th term of the full convolution of a and b
                let lo = c.saturating_sub(len2 - 1);
                v1[out] = (lo..=c.min(len2 - 1)).map(|i| a[i] * b[c - i]).sum();
            }
            let top = v1.iter().copied().fold(0.0, f64::max);
            if top > 0.0 && top < two_pow(-SCALE_EXP) {
                v1.iter_mut().for_each(|x| *x *= two_pow(SCALE_EXP));
                exponent -= SCALE_EXP;
            }
            v1s = v0s + nj1 - k1;
        }
    }
    let mut answer = v1[(nn - v1s) as usize];
    for m in 1..=n {
        if answer.abs() > two_pow(SCALE_EXP) {
            answer *= two_pow(-SCALE_EXP);
            exponent += SCALE_EXP;
        }
        answer *= m as f64;
    }
    (answer * 2f64.powi(exponent)).clamp(0.0, 1.0)
}

/// P(D_n <= x) by the Pelz-Good asymptotic expansion (Li-Chien/Korolyuk terms to n^-3/2).
fn cdf_pelz_good(n: u64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let (pi2, pi4, pi6) = (PI * PI, PI.powi(4), PI.powi(6));
    let sqrt2pi = (2.0 * PI).sqrt();
    let z = (n as f64).sqrt() * x;
    let (z2, z3, z4, z6) = (z * z, z.powi(3), z.powi(4), z.powi(6));
    let qlog = -pi2 / 8.0 / z2;
    if qlog < -708.0 {
        return 0.0;
    }
    let q = qlog.exp();
    let (k1a, k1b) = (-z2, pi2 / 4.0);
    let (k2a, k2b, k2c) = (
        6.0 * z6 + 2.0 * z4,
        (2.0 * z4 - 5.0 * z2) * pi2 / 4.0,
        pi4 * (1.0 - 2.0 * z2) / 16.0,
    );
    let k3d = pi6 * (5.0 - 30.0 * z2) / 64.0;
    let k3c = pi4 * (-60.0 * z2 + 212.0 * z4) / 16.0;
    let k3b = pi2 * (135.0 * z4 - 96.0 * z6) / 4.0;
    let k3a = -30.0 * z6 - 90.0 * z.powi(8);
    let mut k = [0.0f64; 4];
    let maxk = (16.0 * z / PI).ceil() as i64;
    for kk in (1..=maxk).rev() {
        let m = (2 * kk - 1) as f64;
        let (m2, m4, m6) = (m * m, m.powi(4), m.powi(6));
        let qpower = q.powf(8.0 * kk as f64);
        let coeffs = [
            1.0,
            k1a + k1b * m2,
            k2a + k2b * m2 + k2c * m4,
            k3a + k3b * m2 + k3c * m4 + k3d * m6,
        ];
        for (kv, c) in k.iter_mut().zip(coeffs) {
            *kv = *kv * qpower + c;
        }
    }
    let denominators = [z, 6.0 * z4, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (kv, d) in k.iter_mut().zip(denominators) {
        *kv = *kv * q * sqrt2pi / d;
    }
    let q2 = (-pi2 / 2.0 / z2).exp();
    let sqrt3z = 3f64.sqrt() * z;
    let (mut extra2, mut extra3) = (0.0, 0.0);
    for kk in (1..=maxk).rev() {
        let kf = kk as f64;
        let k2 = kf * kf;
        let qp = q2.powf(k2);
        extra2 += k2 * qp;
        let kspi = PI * kf;
        extra3 += (sqrt3z + kspi) * (sqrt3z - kspi) * k2 * qp;
    }
    k[2] += extra2 * pi2 * sqrt2pi / (-36.0 * z3);
    k[3] += extra3 * pi2 * sqrt2pi / (216.0 * z6);
    let nf = n as f64;
    k.iter()
        .enumerate()
        .map(|(i, kv)| kv / nf.powf(i as f64 / 2.0))
        .sum()
}

/// P(D_n > x): the survival function of the two-sided one-sample KS statistic
/// (scipy.stats.kstwo.sf).
pub fn kolmogorov_sf(n: u64, x: f64) -> f64 {
    if n == 0 || x.is_nan() {
        return f64::NAN;
    }
    if x >= 1.0 {
        return 0.0;
    }
    if x <= 0.0 {
        return 1.0;
    }
    let nf = n as f64;
    let t = nf * x;
    if t <= 1.0 {
        if t <= 0.5 {
            return 1.0;
        }
        let cdf = if n <= 140 {
            (1..=n).map(|i| i as f64 / nf * (2.0 * t - 1.0)).product()
        } else {
            (log_nfactorial_div_n_pow_n(nf) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return (1.0 - cdf).clamp(0.0, 1.0);
    }
    if t >= nf - 1.0 {
        return (2.0 * (1.0 - x).powf(nf)).clamp(0.0, 1.0);
    }
    if x >= 0.5 {
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    let nx2 = t * x;
    if n <= 140 {
        let sf = if nx2 <= 0.754693 {
            1.0 - cdf_durbin(n, x)
        } else if nx2 <= 4.0 {
            1.0 - cdf_pomeranz(n, x)
        } else {
            2.0 * smirnov_sf(n, x)
        };
        return sf.clamp(0.0, 1.0);
    }
    if nx2 >= 370.0 {
        return 0.0;
    }
    if nx2 >= 2.2 {
        return (2.0 * smirnov_sf(n, x)).clamp(0.0, 1.0);
    }
    let cdf = if nx2 >= 18.0 {
        1.0
    } else if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        cdf_durbin(n, x)
    } else {
        cdf_pelz_good(n, x)
    };
    (1.0 - cdf).clamp(0.0, 1.0)
}
