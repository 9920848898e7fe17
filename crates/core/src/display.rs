//! How numbers and tables are shown to people: in tables, narration, alert messages and HTML
//! reports.
//!
//! One rule everywhere a value prints: a whole number prints as a whole number (`500`, not
//! `500.0000`), a very small or very large one in scientific notation, anything else with four
//! decimals and the trailing zeros dropped (`0.8`, `0.1235`). Machine-readable output (JSON)
//! keeps the exact value; this is only for reading.

/// Rows as aligned columns under their headers, one line each (trailing spaces trimmed).
pub fn columns(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells.zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// `v` as a person should read it.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == v.trunc() && v.abs() < 1e15 {
        // Whole: no decimals, and no "-0".
        return format!("{}", v as i64);
    }
    if v.abs() < 1e-3 || v.abs() >= 1e9 {
        return format!("{v:.3e}");
    }
    let fixed = format!("{v:.4}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    match trimmed {
        // Rounded to zero at four decimals, yet not zero: shown in full precision instead.
        "0" | "-0" => format!("{v:.3e}"),
        t => t.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::number;

    #[test]
    fn whole_numbers_print_as_integers() {
        assert_eq!(number(500.0), "500");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(-3.0), "-3");
        assert_eq!(number(1e14), "100000000000000");
    }

    #[test]
    fn fractions_keep_four_decimals_without_trailing_zeros() {
        assert_eq!(number(0.8), "0.8");
        assert_eq!(number(0.123456), "0.1235");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(-0.25), "-0.25");
    }

    #[test]
    fn extremes_are_scientific() {
        assert_eq!(number(0.000123), "1.230e-4");
        assert_eq!(number(2.5e12 + 0.5), "2.500e12");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::NEG_INFINITY), "-inf");
    }
}
