//! The distribution of the Kolmogorov-Smirnov statistic, as scipy computes it.
//!
//! [`kstwo_sf`] is `scipy.stats.kstwo.sf(d, n)`: the survival function of the two-sided one-sample
//! statistic D_n, which `ks_2samp` uses for its asymptotic p-value. It follows Simard and
//! L'Ecuyer (2011) as scipy's `_ksstats._kolmogn` does, branch for branch, so that p-values agree
//! with scipy's to far better than 1e-9: Ruben-Gambino closed forms at the ends, the Durbin matrix
//! (Marsaglia-Tsang-Wang), the Pomeranz recursion, the Pelz-Good expansion, and twice the one-sided
//! Smirnov tail ([`smirnov_sf`]) where it is exact enough.
//!
//! No crate implements these (statrs has no Kolmogorov distribution), hence our own code here.
//! [`smirnov_sf`] is scipy's `special.smirnov` (Birnbaum-Tingey sum); scipy evaluates it in
//! double-double arithmetic, we sum in log space in `f64`, which the fixture tests show is within
//! 1e-12 relative of scipy on the grid we use.

/// Scaling factor used by the matrix and recursion algorithms to stay clear of under/overflow.
const E128: i32 = 128;
const EP128: f64 = 3.402_823_669_209_385e38; // 2^128
const EM128: f64 = 2.938_735_877_055_719e-39; // 2^-128
/// `log` of anything below this underflows `exp` (scipy's `_MIN_LOG`).
const MIN_LOG: f64 = -708.0;
/// Cephes' MINLOG: log of the smallest denormal.
const CEPHES_MINLOG: f64 = -7.451_332_191_019_412e2;

fn clip(p: f64) -> f64 {
    p.clamp(0.0, 1.0)
}

/// `Pr(D_n > x)` for the two-sided one-sample Kolmogorov-Smirnov statistic (`scipy.stats.kstwo.sf`).
pub fn kstwo_sf(n: u64, x: f64) -> f64 {
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
        // Ruben-Gambino: 1/2n <= x <= 1/n.
        if t <= 0.5 {
            return 1.0;
        }
        let cdf = if n <= 140 {
            (1..=n).fold(1.0, |p, i| p * (i as f64 * (1.0 / nf) * (2.0 * t - 1.0)))
        } else {
            (log_nfactorial_div_n_pow_n(nf) + nf * (2.0 * t - 1.0).ln()).exp()
        };
        return clip(1.0 - cdf);
    }
    if t >= nf - 1.0 {
        // Ruben-Gambino at the upper end.
        return clip(2.0 * (1.0 - x).powf(nf));
    }
    if x >= 0.5 {
        return clip(2.0 * smirnov_sf(n, x));
    }
    let nxsquared = t * x;
    if n <= 140 {
        if nxsquared <= 0.754_693 {
            return clip(1.0 - durbin_matrix_cdf(n, x));
        }
        if nxsquared <= 4.0 {
            return clip(1.0 - pomeranz_cdf(n, x));
        }
        return clip(2.0 * smirnov_sf(n, x));
    }
    if nxsquared >= 370.0 {
        return 0.0;
    }
    if nxsquared >= 2.2 {
        return clip(2.0 * smirnov_sf(n, x));
    }
    let cdf = if nxsquared >= 18.0 {
        1.0
    } else if n <= 100_000 && nf * x.powf(1.5) <= 1.4 {
        durbin_matrix_cdf(n, x)
    } else {
        pelz_good_cdf(n, x)
    };
    clip(1.0 - cdf)
}

/// `log(n! / n^n)` by Stirling's series with `n log n` removed up front.
fn log_nfactorial_div_n_pow_n(n: f64) -> f64 {
    // B_{2j}/(2j)/(2j-1) for j = 8..1, highest degree first (as `np.polyval` takes them).
    const STIRLING: [f64; 8] = [
        -2.955_065_359_477_124e-2,
        6.410_256_410_256_41e-3,
        -1.917_526_917_526_917_6e-3,
        8.417_508_417_508_417e-4,
        -5.952_380_952_380_952e-4,
        7.936_507_936_507_937e-4,
        -2.777_777_777_777_778e-3,
        8.333_333_333_333_333e-2,
    ];
    let rn = 1.0 / n;
    let poly = STIRLING.iter().fold(0.0, |acc, c| acc * (rn / n) + c);
    n.ln() / 2.0 - n + (2.0 * std::f64::consts::PI).ln() / 2.0 + rn * poly
}

/// A dense square matrix, row-major; only what the Durbin algorithm needs.
#[derive(Clone)]
struct Matrix {
    m: usize,
    a: Vec<f64>,
}

impl Matrix {
    fn zeros(m: usize) -> Self {
        Matrix { m, a: vec![0.0; m * m] }
    }
    fn identity(m: usize) -> Self {
        let mut id = Self::zeros(m);
        for i in 0..m {
            id.a[i * m + i] = 1.0;
        }
        id
    }
    fn at(&self, i: usize, j: usize) -> f64 {
        self.a[i * self.m + j]
    }
    fn set(&mut self, i: usize, j: usize, v: f64) {
        self.a[i * self.m + j] = v;
    }
    fn mul(&self, other: &Matrix) -> Matrix {
        let m = self.m;
        let mut out = Matrix::zeros(m);
        for i in 0..m {
            let row = &self.a[i * m..(i + 1) * m];
            let dst = &mut out.a[i * m..(i + 1) * m];
            for (k, &lhs) in row.iter().enumerate() {
                if lhs == 0.0 {
                    continue;
                }
                let src = &other.a[k * m..(k + 1) * m];
                for (d, &r) in dst.iter_mut().zip(src) {
                    *d += lhs * r;
                }
            }
        }
        out
    }
    fn scale(&mut self, f: f64) {
        self.a.iter_mut().for_each(|v| *v *= f);
    }
}

/// `Pr(D_n <= d)` by the Durbin matrix, as Marsaglia, Tsang and Wang (2003) evaluate it.
fn durbin_matrix_cdf(n: u64, d: f64) -> f64 {
    if d >= 1.0 {
        return 1.0;
    }
    let nf = n as f64;
    let nd = nf * d;
    if nd <= 0.5 {
        return 0.0;
    }
    let k = nd.ceil() as usize;
    let h = k as f64 - nd;
    let m = 2 * k - 1;

    // v: first column (and, reversed, last row) of H; w[j] = 1/j!.
    let mut v: Vec<f64> = (1..=m).map(|j| 1.0 - h.powi(j as i32)).collect();
    let mut w = vec![0.0; m];
    let mut fac = 1.0;
    for j in 1..=m {
        w[j - 1] = fac;
        fac /= j as f64;
        v[j - 1] *= fac;
    }
    let tt = (2.0 * h - 1.0).max(0.0).powi(m as i32) - 2.0 * h.powi(m as i32);
    v[m - 1] = (1.0 + tt) * fac;

    let mut hm = Matrix::zeros(m);
    for i in 1..m {
        for (r, wv) in (i - 1..m).zip(&w[..m - i + 1]) {
            hm.set(r, i, *wv);
        }
    }
    for (r, vv) in v.iter().enumerate() {
        hm.set(r, 0, *vv);
    }
    for (c, vv) in v.iter().rev().enumerate() {
        hm.set(m - 1, c, *vv);
    }

    let mut power = Matrix::identity(m);
    let mut nn = n;
    let mut expnt: i32 = 0;
    let mut h_expnt: i32 = 0;
    while nn > 0 {
        if nn % 2 == 1 {
            power = power.mul(&hm);
            expnt += h_expnt;
        }
        hm = hm.mul(&hm);
        h_expnt *= 2;
        if hm.at(k - 1, k - 1).abs() > EP128 {
            hm.scale(1.0 / EP128);
            h_expnt += E128;
        }
        nn /= 2;
    }
    let mut p = power.at(k - 1, k - 1);
    for i in 1..=n {
        p = i as f64 * p / nf;
        if p.abs() < EM128 {
            p *= EP128;
            expnt -= E128;
        }
    }
    if expnt != 0 {
        p *= 2f64.powi(expnt);
    }
    clip(p)
}

/// The interval of non-zero entries of row `i` in the Pomeranz recursion.
fn pomeranz_bounds(i: i64, n: i64, ll: i64, ceilf: i64, roundf: i64) -> (i64, i64) {
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

/// `Pr(D_n <= x)` by the Pomeranz (1974) recursion.
fn pomeranz_cdf(n: u64, x: f64) -> f64 {
    let nf = n as f64;
    let n = n as i64;
    let t = nf * x;
    let ll = t.floor() as i64;
    let f = t - ll as f64;
    let g = f.min(1.0 - f);
    let ceilf = i64::from(f > 0.0);
    let roundf = i64::from(f > 0.5);
    let npwrs = (2 * (ll + 1)) as usize;
    // Almost-Poisson weights: (g/n)^m/m!, (2g/n)^m/m!, ((1-2g)/n)^m/m!.
    let mut gpower = vec![1.0; npwrs];
    let mut twogpower = vec![1.0; npwrs];
    let mut onem2gpower = vec![1.0; npwrs];
    let (g_n, two_g_n, one_m2g_n) = (g / nf, 2.0 * g / nf, (1.0 - 2.0 * g) / nf);
    for m in 1..npwrs {
        gpower[m] = gpower[m - 1] * g_n / m as f64;
        twogpower[m] = twogpower[m - 1] * two_g_n / m as f64;
        onem2gpower[m] = onem2gpower[m - 1] * one_m2g_n / m as f64;
    }
    let mut v0 = vec![0.0; npwrs];
    let mut v1 = vec![0.0; npwrs];
    v1[0] = 1.0;
    let (mut v0s, mut v1s): (i64, i64) = (0, 0);
    let mut expnt: i32 = 0;
    let (mut j1, _) = pomeranz_bounds(0, n, ll, ceilf, roundf);
    for i in 1..(2 * n + 2) {
        let k1 = j1;
        std::mem::swap(&mut v0, &mut v1);
        std::mem::swap(&mut v0s, &mut v1s);
        v1.iter_mut().for_each(|v| *v = 0.0);
        let (nj1, j2) = pomeranz_bounds(i, n, ll, ceilf, roundf);
        j1 = nj1;
        let pwrs = if i == 1 || i == 2 * n + 1 {
            &gpower
        } else if i % 2 == 1 {
            &twogpower
        } else {
            &onem2gpower
        };
        let ln2 = j2 - k1 + 1;
        if ln2 > 0 {
            let ln2 = ln2 as usize;
            let start = (k1 - v0s) as usize;
            let src = &v0[start..start + ln2];
            let conv_start = (j1 - k1) as usize;
            let conv_len = (j2 - j1 + 1).max(0) as usize;
            // Entries conv_start .. conv_start + conv_len of the full convolution src * pwrs[..ln2].
            for (out, idx) in v1.iter_mut().take(conv_len).zip(conv_start..) {
                let lo = idx.saturating_sub(ln2 - 1);
                let hi = idx.min(ln2 - 1);
                let mut acc = 0.0;
                for a in lo..=hi {
                    acc += src[a] * pwrs[idx - a];
                }
                *out = acc;
            }
            let max = v1.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            if 0.0 < max && max < EM128 {
                v1.iter_mut().for_each(|v| *v *= EP128);
                expnt -= E128;
            }
            v1s = v0s + j1 - k1;
        }
    }
    let mut ans = v1[(n - v1s) as usize];
    for m in 1..=n {
        if ans.abs() > EP128 {
            ans *= EM128;
            expnt += E128;
        }
        ans *= m as f64;
    }
    if expnt != 0 {
        ans *= 2f64.powi(expnt);
    }
    clip(ans)
}

/// The Pelz-Good (1976) approximation of `Pr(D_n <= x)`.
fn pelz_good_cdf(n: u64, x: f64) -> f64 {
    use std::f64::consts::PI;
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let nf = n as f64;
    let z = nf.sqrt() * x;
    let (z2, z3, z4, z6) = (z * z, z.powi(3), z.powi(4), z.powi(6));
    let qlog = -PI * PI / 8.0 / z2;
    if qlog < MIN_LOG {
        return 0.0;
    }
    let q = qlog.exp();
    let (pi2, pi4, pi6) = (PI * PI, PI.powi(4), PI.powi(6));
    let k1a = -z2;
    let k1b = pi2 / 4.0;
    let k2a = 6.0 * z6 + 2.0 * z4;
    let k2b = (2.0 * z4 - 5.0 * z2) * pi2 / 4.0;
    let k2c = pi4 * (1.0 - 2.0 * z2) / 16.0;
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
        let coeffs = [1.0, k1a + k1b * m2, k2a + k2b * m2 + k2c * m4, k3a + k3b * m2 + k3c * m4 + k3d * m6];
        for (acc, c) in k.iter_mut().zip(coeffs) {
            *acc = *acc * qpower + c;
        }
    }
    let sqrt2pi = (2.0 * PI).sqrt();
    let denominators = [z, 6.0 * z4, 72.0 * z.powi(7), 6480.0 * z.powi(10)];
    for (acc, d) in k.iter_mut().zip(denominators) {
        *acc = *acc * q * sqrt2pi / d;
    }
    let q = (-pi2 / 2.0 / z2).exp();
    let sqrt3z = 3f64.sqrt() * z;
    let (mut k2extra, mut k3extra) = (0.0, 0.0);
    for kk in (1..=maxk).rev() {
        let ks = kk as f64;
        let ksq = ks * ks;
        let qp = q.powf(ksq);
        k2extra += ksq * qp;
        let kspi = PI * ks;
        k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksq * qp;
    }
    k[2] += k2extra * pi2 * sqrt2pi / (-36.0 * z3);
    k[3] += k3extra * pi2 * sqrt2pi / (216.0 * z6);
    let mut sum = 0.0;
    for (i, acc) in k.iter().enumerate() {
        sum += acc / nf.powf(i as f64 / 2.0);
    }
    sum
}

/// `Pr(D+_n >= x)` for the one-sided one-sample statistic (`scipy.special.smirnov(n, x)`).
pub fn smirnov_sf(n: u64, x: f64) -> f64 {
    if n == 0 || !(0.0..=1.0).contains(&x) {
        return f64::NAN;
    }
    if n == 1 {
        return 1.0 - x;
    }
    if x == 0.0 {
        return 1.0;
    }
    if x == 1.0 {
        return 0.0;
    }
    let nf = n as f64;
    let n = n as i64;
    let nx = nf * x;
    let mut nxfl = nx.floor() as i64;
    let mut alpha = nx - nxfl as f64;
    if alpha >= 1.0 {
        nxfl += 1;
        alpha = 0.0;
    }
    let mut n1mxfl = n - nxfl - i64::from(alpha != 0.0);
    let mut n1mxceil = n - nxfl;
    if alpha == 0.0 {
        n1mxfl -= 1;
        n1mxceil += 1;
    }
    // x <= 1/n
    if nxfl == 0 || (nxfl == 1 && alpha == 0.0) {
        let t = (1.0 + x).powf((n - 1) as f64);
        return clip(1.0 - x * t);
    }
    if -2.0 * nf * x * x < CEPHES_MINLOG {
        return 0.0;
    }
    // x >= 1 - 1/n
    if nxfl >= n - 1 {
        return clip((1.0 - x).powf(nf));
    }
    if n > 1_000_000 {
        // p ~ exp(-(6nx+1)^2 / 18n)
        let logp = -(6.0 * nf * x + 1.0).powi(2) / 18.0 / nf;
        // Below ln 1/2 the tail itself is most precise; above, go through the CDF, -expm1(logp).
        return clip(if logp < -std::f64::consts::LN_2 { logp.exp() } else { 1.0 + logp.exp_m1() });
    }
    let n_upper_terms = n - n1mxceil + 1;
    let use_upper = (n_upper_terms <= 1 && x < 0.5) || (n >= 10 && n_upper_terms <= 3 && x <= 0.5 / nf.sqrt());
    // A_v = C(n, v) (1 - x - v/n)^(n - v) (x + v/n)^(v - 1); the sum runs up (lower sum, gives
    // the survival function) or down from v = n (upper sum, gives the CDF, few terms only).
    let (start, step, n_terms) = if use_upper { (n, -1i64, n - n1mxceil + 1) } else { (0, 1i64, n1mxfl + 1) };
    let term = |v: i64, binom: &ScaledBinomial| -> f64 {
        let base2 = ((n - v) as f64 - nx) / nf; // 1 - x - v/n
        let base1 = (v as f64 + nx) / nf; // x + v/n
        let (e2, e1) = ((n - v) as f64, (v - 1) as f64);
        let mut sign = 1.0;
        let ln2 = if e2 == 0.0 {
            0.0
        } else {
            if base2 < 0.0 && (n - v) % 2 == 1 {
                sign = -1.0;
            }
            e2 * base2.abs().ln()
        };
        // One rounding of the large logarithms per term, none accumulated across terms.
        sign * (binom.ln() + ln2 + e1 * base1.ln()).exp()
    };
    let mut sum = 0.0;
    // C(n, j), j counting terms from the start (C(n, j) = C(n, n - j) for the upper sum). Kept as
    // mantissa and binary exponent: a running sum of logarithms would lose ~1e-9 over 10^5 terms.
    let mut binom = ScaledBinomial::one();
    let vmid = n / 2;
    for j in 0..n_terms {
        let v = start + j * step;
        let a = term(v, &binom);
        if a.is_finite() {
            sum += a;
        }
        if a != 0.0 {
            if 4.0 * (n_terms - j) as f64 * a.abs() < f64::EPSILON * sum && j != n_terms - 1 {
                break;
            }
        } else if j > vmid {
            break;
        }
        binom.times((n - j) as f64 / (j + 1) as f64);
    }
    let prob = x * sum;
    clip(if step < 0 { 1.0 - prob } else { prob })
}

/// A positive number as `mantissa * 2^exponent`, for binomial coefficients far beyond `f64`'s range.
struct ScaledBinomial {
    mantissa: f64,
    exponent: i64,
}

impl ScaledBinomial {
    fn one() -> Self {
        ScaledBinomial { mantissa: 1.0, exponent: 0 }
    }
    fn times(&mut self, factor: f64) {
        self.mantissa *= factor;
        // Renormalise into [1, 2): exact, only the exponent changes.
        let e = self.mantissa.log2().floor();
        if e != 0.0 && e.is_finite() {
            self.mantissa *= 2f64.powi(-(e as i32));
            self.exponent += e as i64;
        }
    }
    fn ln(&self) -> f64 {
        self.mantissa.ln() + self.exponent as f64 * std::f64::consts::LN_2
    }
}
