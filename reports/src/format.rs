//! Numbers and labels as every renderer writes them, so the terminal, the
//! Markdown and the HTML never disagree about a value.

use crate::model::{Basis, LoadModel};

/// µs as ms, 3 significant digits (whole ms from 1000 ms up; at most µs precision).
pub(crate) fn ms(us: u64) -> String {
    sig3(us as f64 / 1000.0, 3)
}

/// `v` to 3 significant digits, never more than `decimals_max` decimals;
/// from 1000 up, whole numbers (rounding 1234 to 1230 hides more than it helps).
pub(crate) fn sig3(v: f64, decimals_max: usize) -> String {
    if !v.is_finite() {
        return "n/a".to_string();
    }
    let a = v.abs();
    if a >= 1000.0 {
        return format!("{v:.0}");
    }
    if a == 0.0 {
        return "0".to_string();
    }
    let magnitude = a.log10().floor() as i32;
    let mut decimals = (2 - magnitude).max(0) as usize;
    // 9.996 at 2 decimals is "10.00": four digits, so one decimal fewer.
    let scale = 10f64.powi(decimals as i32);
    if decimals > 0 && (a * scale).round() / scale >= 10f64.powi(magnitude + 1) {
        decimals -= 1;
    }
    let decimals = decimals.min(decimals_max);
    let text = format!("{v:.decimals$}");
    if text
        .trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        // Below the precision shown: say so rather than print a misleading 0.
        return format!("<{}", 10f64.powi(-(decimals as i32)));
    }
    text
}

/// A plain number: whole numbers without decimals, others to 3 significant
/// digits without trailing zeros (`1.5`, `12.3`).
pub(crate) fn num(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let text = sig3(v, 3);
    if text.contains('.') && !text.starts_with('<') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// A duration in ms, as people say it: `250 ms`, `1.5 s`, `20 s`.
pub(crate) fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{} s", num(ms as f64 / 1000.0))
    }
}

/// How load was offered, in one line.
pub(crate) fn model(m: &LoadModel) -> String {
    match m {
        LoadModel::Closed { users } => format!("closed loop, {users} users"),
        LoadModel::Open {
            rate_per_sec,
            max_in_flight,
        } => format!(
            "open loop, {} journeys/s, at most {max_in_flight} in flight",
            num(*rate_per_sec)
        ),
    }
}

/// What a headline latency measures.
pub(crate) fn basis(b: Basis) -> &'static str {
    match b {
        Basis::Raw => "raw",
        Basis::Corrected => "corrected",
        Basis::IntendedStart => "intended start",
    }
}

/// ✓ holds, ✗ violated, · anything else (not judged).
pub(crate) fn outcome_mark(outcome: &str) -> &'static str {
    match outcome {
        "holds" => "✓",
        "violated" => "✗",
        _ => "·",
    }
}

/// `pass` or `FAIL` (capitals so a failure catches the eye).
pub(crate) fn pass_fail(passed: bool) -> &'static str {
    if passed { "pass" } else { "FAIL" }
}

/// Text made safe for HTML element content and quoted attribute values.
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// Text made inert for Markdown: a `<` that could open an HTML tag, comment
/// or declaration is backslash-escaped; `p99<50ms` stays as written.
pub(crate) fn markdown_inert(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let opens_tag = c == '<'
            && chars
                .peek()
                .is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?'));
        if opens_tag {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the significant-digit rule at every magnitude, including the
    // rounding carry and values below the precision shown.
    #[test]
    fn ms_keeps_three_significant_digits() {
        assert_eq!(ms(0), "0");
        assert_eq!(ms(1), "0.001");
        assert_eq!(ms(12), "0.012");
        assert_eq!(ms(123), "0.123");
        assert_eq!(ms(1_234), "1.23");
        assert_eq!(ms(9_996), "10.0");
        assert_eq!(ms(12_345), "12.3");
        assert_eq!(ms(99_960), "100");
        assert_eq!(ms(123_456), "123");
        assert_eq!(ms(1_234_567), "1235");
        assert_eq!(sig3(0.0001, 3), "<0.001");
        assert_eq!(sig3(-2.5, 3), "-2.50");
        assert_eq!(sig3(f64::NAN, 3), "n/a");
    }

    // Proves the labels people read: durations, models, escaping.
    #[test]
    fn labels() {
        assert_eq!(duration(250), "250 ms");
        assert_eq!(duration(1_500), "1.5 s");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(0.25), "0.25");
        assert_eq!(duration(20_000), "20 s");
        assert_eq!(
            model(&LoadModel::Open {
                rate_per_sec: 500.0,
                max_in_flight: 200
            }),
            "open loop, 500 journeys/s, at most 200 in flight"
        );
        assert_eq!(
            model(&LoadModel::Closed { users: 50 }),
            "closed loop, 50 users"
        );
        assert_eq!(
            markdown_inert("p99<50ms <script> </b> <!--"),
            "p99<50ms \\<script> \\</b> \\<!--"
        );
        assert_eq!(
            escape_html(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
