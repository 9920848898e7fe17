//! Fidelity: every drift statistic equals scipy's to 1e-9 relative on the committed fixtures.
//!
//! The fixtures come from `tests/fixtures/make_scipy_fixtures.py` (numpy and scipy as pinned in
//! `tests/interop/requirements.txt`). Samples are regenerated here from their specs with the same
//! LCG as the script, so the JSON stays small while samples reach 40,000 values.

use std::collections::BTreeMap;

use serde_json::Value;
use shipyard_data::columns::ColumnSample;
use shipyard_data::drift::{self, DriftOptions, Kind, Method, TableSample};
use shipyard_data::stats::{self, kolmogorov};

const FIXTURES: &str = include_str!("fixtures/scipy_stats.json");
const RTOL: f64 = 1e-9;

fn fixtures() -> Value {
    serde_json::from_str(FIXTURES).expect("fixture JSON parses")
}

fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "NaN" => f64::NAN,
        Value::String(s) if s == "Infinity" => f64::INFINITY,
        Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
        other => other.as_f64().expect("a number"),
    }
}

/// Relative comparison; values below 1e-300 only need to be tiny on both sides.
fn close(got: f64, want: f64) -> bool {
    if want.is_nan() {
        return got.is_nan();
    }
    if want.is_infinite() || want == 0.0 {
        return got == want || (want == 0.0 && got.abs() < 1e-300);
    }
    ((got - want) / want).abs() <= RTOL
}

fn lcg_uniforms(seed: u64, n: usize) -> Vec<f64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 11) as f64 * 2f64.powi(-53)
        })
        .collect()
}

/// A materialised sample: numeric values, or category labels.
enum Sample {
    Numeric(Vec<f64>),
    Labels(Vec<String>),
}

fn sample(spec: &Value) -> Sample {
    let seed = spec["seed"].as_u64().expect("seed");
    let n = spec["n"].as_u64().expect("n") as usize;
    match spec["kind"].as_str().expect("kind") {
        "uniform" => {
            let (lo, hi) = (num(&spec["lo"]), num(&spec["hi"]));
            Sample::Numeric(lcg_uniforms(seed, n).into_iter().map(|u| lo + (hi - lo) * u).collect())
        }
        "normal" => {
            let us = lcg_uniforms(seed, 2 * n);
            let (mu, sd) = (num(&spec["mu"]), num(&spec["sd"]));
            Sample::Numeric(
                (0..n)
                    .map(|i| {
                        mu + sd
                            * (-2.0 * (1.0 - us[2 * i]).ln()).sqrt()
                            * (2.0 * std::f64::consts::PI * us[2 * i + 1]).cos()
                    })
                    .collect(),
            )
        }
        "integers" => {
            let k = num(&spec["k"]);
            Sample::Numeric(lcg_uniforms(seed, n).into_iter().map(|u| (u * k).floor()).collect())
        }
        "categorical" => {
            let levels: Vec<String> =
                spec["levels"].as_array().expect("levels").iter().map(|l| l.as_str().expect("label").into()).collect();
            let weights: Vec<f64> = spec["weights"].as_array().expect("weights").iter().map(num).collect();
            let total: f64 = weights.iter().sum();
            let mut acc = 0.0;
            let cum: Vec<f64> = weights
                .iter()
                .map(|w| {
                    acc += w;
                    acc / total
                })
                .collect();
            Sample::Labels(
                lcg_uniforms(seed, n)
                    .into_iter()
                    .map(|u| {
                        let mut i = 0;
                        while i < cum.len() - 1 && u >= cum[i] {
                            i += 1;
                        }
                        levels[i].clone()
                    })
                    .collect(),
            )
        }
        other => panic!("unknown sample kind {other}"),
    }
}

fn check(failures: &mut Vec<String>, what: String, got: f64, want: f64) {
    if !close(got, want) {
        failures.push(format!("{what}: got {got:e}, scipy {want:e}"));
    }
}

#[test]
fn special_functions_equal_scipy() {
    let fx = fixtures();
    let special = &fx["special"];
    let mut failures = Vec::new();
    for row in special["kstwo_sf"].as_array().expect("kstwo rows") {
        let (n, d, want) = (row[0].as_u64().expect("n"), num(&row[1]), num(&row[2]));
        check(&mut failures, format!("kstwo.sf({d}, {n})"), kolmogorov::kstwo_sf(n, d), want);
    }
    for row in special["smirnov"].as_array().expect("smirnov rows") {
        let (n, x, want) = (row[0].as_u64().expect("n"), num(&row[1]), num(&row[2]));
        check(&mut failures, format!("smirnov({n}, {x})"), kolmogorov::smirnov_sf(n, x), want);
    }
    for row in special["chi2_sf"].as_array().expect("chi2 rows") {
        let (df, x, want) = (num(&row[0]), num(&row[1]), num(&row[2]));
        check(&mut failures, format!("chi2.sf({x}, {df})"), stats::chi2_sf(x, df), want);
    }
    for row in special["norm_cdf"].as_array().expect("norm rows") {
        let (z, want) = (num(&row[0]), num(&row[1]));
        check(&mut failures, format!("norm.cdf({z})"), stats::norm_cdf(z), want);
    }
    for row in special["binom_ppf"].as_array().expect("binom.ppf rows") {
        let (q, n, p) = (num(&row[0]), row[1].as_u64().expect("n"), num(&row[2]));
        let want = row[3].as_u64().expect("k");
        let got = stats::binom_ppf(q, n, p);
        if got != want {
            failures.push(format!("binom.ppf({q}, {n}, {p}): {got}, scipy {want}"));
        }
    }
    for row in special["norm_ppf"].as_array().expect("norm.ppf rows") {
        let (p, want) = (num(&row[0]), num(&row[1]));
        check(&mut failures, format!("norm.ppf({p})"), stats::norm_ppf(p), want);
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

fn table_of(sample: &Sample) -> TableSample {
    let column = match sample {
        Sample::Numeric(v) => {
            let mut values = v.clone();
            values.sort_by(f64::total_cmp);
            ColumnSample::Numbers { values, integer: false, missing: 0, infinite: 0, sketched: None }
        }
        Sample::Labels(l) => {
            let mut counts = std::collections::HashMap::new();
            for label in l {
                *counts.entry(label.clone()).or_insert(0u64) += 1;
            }
            ColumnSample::Labels { counts, missing: 0, overflow: false, seen: l.len() as u64 }
        }
    };
    TableSample { rows: 0, columns: vec![("x".to_owned(), column)] }
}

/// Jensen-Shannon, PSI and KL go through the drift layer, so Evidently's binning is covered too.
#[test]
fn binned_distances_through_the_drift_layer_equal_scipy() {
    let fx = fixtures();
    let mut failures = Vec::new();
    for case in fx["two_sample"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let (reference, current) = (table_of(&sample(&case["reference"])), table_of(&sample(&case["current"])));
        let kind = if case["numeric"].as_bool().expect("numeric flag") { Kind::Numeric } else { Kind::Categorical };
        for (method, key) in [(Method::Jensenshannon, "jensenshannon"), (Method::Psi, "psi"), (Method::KlDiv, "kl_div")]
        {
            let mut options = DriftOptions::default();
            options.column_methods.insert("x".into(), method);
            options.column_kinds.insert("x".into(), kind);
            let report = drift::compare(&reference, &current, &options).expect("compare");
            check(&mut failures, format!("{name}: {key}"), report.columns[0].statistic, num(&case[key]));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// Per-category `(reference, current)` counts over the union of values, in sorted order.
fn category_counts<K: Ord + Clone>(reference: &[K], current: &[K]) -> Vec<(u64, u64)> {
    let mut counts: BTreeMap<K, (u64, u64)> = BTreeMap::new();
    for k in reference {
        counts.entry(k.clone()).or_default().0 += 1;
    }
    for k in current {
        counts.entry(k.clone()).or_default().1 += 1;
    }
    counts.into_values().collect()
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key(u64);
fn key(v: f64) -> Key {
    // Sort order of the bit pattern is only used for grouping; the values here are non-negative.
    Key(v.to_bits())
}

#[test]
fn two_sample_tests_equal_scipy() {
    let fx = fixtures();
    let mut failures = Vec::new();
    for case in fx["two_sample"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let (reference, current) = (sample(&case["reference"]), sample(&case["current"]));
        let counts = match (&reference, &current) {
            (Sample::Numeric(r), Sample::Numeric(c)) => {
                let all_non_negative = r.iter().chain(c).all(|v| *v >= 0.0);
                if all_non_negative {
                    category_counts(
                        &r.iter().map(|v| key(*v)).collect::<Vec<_>>(),
                        &c.iter().map(|v| key(*v)).collect::<Vec<_>>(),
                    )
                } else {
                    Vec::new()
                }
            }
            (Sample::Labels(r), Sample::Labels(c)) => category_counts(r, c),
            _ => panic!("{name}: mixed sample kinds"),
        };
        if let Some(want) = case.get("chisquare") {
            let got = stats::chisquare_against_reference(&counts);
            check(&mut failures, format!("{name}: chisquare statistic"), got.statistic, num(&want["statistic"]));
            check(&mut failures, format!("{name}: chisquare p"), got.p_value, num(&want["p_value"]));
        }
        if let Some(want) = case.get("chisquare_homogeneity") {
            let got = stats::chi2_contingency_2xk(&counts);
            check(&mut failures, format!("{name}: homogeneity statistic"), got.statistic, num(&want["statistic"]));
            check(&mut failures, format!("{name}: homogeneity p"), got.p_value, num(&want["p_value"]));
        }
        if let Some(want) = case.get("z") {
            let got = stats::z_two_proportions([counts[0], counts[1]]);
            check(&mut failures, format!("{name}: z statistic"), got.statistic, num(&want["statistic"]));
            check(&mut failures, format!("{name}: z p"), got.p_value, num(&want["p_value"]));
        }
        if let (Sample::Numeric(r), Sample::Numeric(c)) = (&reference, &current) {
            let (mut r, mut c) = (r.clone(), c.clone());
            r.sort_by(f64::total_cmp);
            c.sort_by(f64::total_cmp);
            if let Some(want) = case.get("ks") {
                let got = stats::ks_2samp(&r, &c);
                check(&mut failures, format!("{name}: ks statistic"), got.statistic, num(&want["statistic"]));
                check(&mut failures, format!("{name}: ks p"), got.p_value, num(&want["p_value"]));
            }
            if let Some(want) = case.get("wasserstein") {
                check(
                    &mut failures,
                    format!("{name}: wasserstein"),
                    stats::wasserstein(&r, &c),
                    num(&want["distance"]),
                );
                check(
                    &mut failures,
                    format!("{name}: wasserstein normed"),
                    stats::wasserstein_normed(&r, &c),
                    num(&want["normed"]),
                );
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

/// Profiles of numeric columns equal numpy's mean, std (ddof = 1), quantiles and histogram.
#[test]
fn numeric_profiles_equal_numpy() {
    use shipyard_data::profile::ColumnAccumulator;
    let fx = fixtures();
    let mut failures = Vec::new();
    for case in fx["profiles"].as_array().expect("profiles") {
        let Sample::Numeric(values) = sample(&case["sample"]) else { panic!("numeric sample expected") };
        let array: arrow_array::ArrayRef = std::sync::Arc::new(arrow_array::Float64Array::from(values));
        let mut acc = ColumnAccumulator::new("x", &arrow_schema::DataType::Float64).expect("accumulator");
        acc.push(&array).expect("push");
        let p = acc.finish();
        let name = case["sample"].to_string();
        let s = p.numeric.expect("numeric summary");
        assert!(p.exact, "{name}: small samples are exact");
        assert_eq!(p.count, case["count"].as_u64().expect("count"), "{name}");
        assert_eq!(p.distinct, case["distinct"].as_u64().expect("distinct"), "{name}");
        for (label, got, want) in [
            ("min", s.min, &case["min"]),
            ("max", s.max, &case["max"]),
            ("mean", s.mean, &case["mean"]),
            ("std", s.std, &case["std"]),
        ] {
            match (got, want.is_null()) {
                (None, true) => {}
                (Some(g), false) => check(&mut failures, format!("{name}: {label}"), g, num(want)),
                _ => failures.push(format!("{name}: {label}: got {got:?}, numpy {want}")),
            }
        }
        for (q, want) in s.quantiles.iter().zip(case["quantiles"].as_array().expect("quantiles")) {
            assert_eq!(q.q, num(&want[0]));
            check(&mut failures, format!("{name}: quantile {}", q.q), q.value, num(&want[1]));
        }
        let h = s.histogram.expect("histogram");
        let want_edges: Vec<f64> = case["histogram"]["edges"].as_array().expect("edges").iter().map(num).collect();
        let want_counts: Vec<u64> = case["histogram"]["counts"]
            .as_array()
            .expect("counts")
            .iter()
            .map(|c| c.as_u64().expect("count"))
            .collect();
        assert_eq!(h.counts, want_counts, "{name}: histogram counts");
        assert_eq!(h.edges.len(), want_edges.len(), "{name}: histogram edges");
        for (g, w) in h.edges.iter().zip(&want_edges) {
            check(&mut failures, format!("{name}: edge"), *g, *w);
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}
