//! Built-in `clean`, `check` and `score` functions for generation benchmarks, usable by name in
//! `#[eval(clean = ..., check = ...)]`: trimming, number extraction (first, last, GSM8K's strict
//! `#### N` and flexible last-number rules), regex extraction, exact match.

use regex::Regex;
use std::sync::OnceLock;

/// Removes leading and trailing whitespace.
pub fn trim(s: &str) -> String {
    s.trim().to_string()
}

/// The text unchanged.
pub fn identity(s: &str) -> String {
    s.to_string()
}

/// Exact string match.
pub fn exact_match(target: &str, cleaned: &str) -> bool {
    target == cleaned
}

/// Exact match after trimming both sides.
pub fn trimmed_match(target: &str, cleaned: &str) -> bool {
    target.trim() == cleaned.trim()
}

/// Numeric equality after [`normalize_number`] of both sides.
pub fn number_match(target: &str, cleaned: &str) -> bool {
    let (t, c) = (normalize_number(target), normalize_number(cleaned));
    !c.is_empty() && t == c
}

fn number_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"-?[0-9][0-9,]*(?:\.[0-9]+)?").expect("valid regex"))
}

/// The first number in the text (empty when none).
///
/// ```
/// assert_eq!(evalkit_core::builtins::first_number("It costs 1,200 dollars, not 3"), "1,200");
/// ```
pub fn first_number(s: &str) -> String {
    number_re().find(s).map(|m| m.as_str().to_string()).unwrap_or_default()
}

/// The last number in the text (empty when none).
pub fn last_number(s: &str) -> String {
    number_re()
        .find_iter(s)
        .last()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default()
}

/// Drops `,` and `$` and a trailing `.` (lm-eval's GSM8K `ignore_case`/`regexes_to_ignore`).
///
/// ```
/// assert_eq!(evalkit_core::builtins::normalize_number("$1,234."), "1234");
/// ```
pub fn normalize_number(s: &str) -> String {
    let t: String = s.trim().chars().filter(|&c| c != ',' && c != '$').collect();
    t.strip_suffix('.').unwrap_or(&t).to_string()
}

/// GSM8K strict extraction: the number after `#### ` (lm-eval `strict-match`), else `[invalid]`.
///
/// ```
/// assert_eq!(evalkit_core::builtins::gsm8k_strict("so 5 + 4 = 9\n#### 9"), "9");
/// assert_eq!(evalkit_core::builtins::gsm8k_strict("the answer is 9"), "[invalid]");
/// ```
pub fn gsm8k_strict(s: &str) -> String {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"#### (-?[0-9.,]+)").expect("valid regex"));
    re.captures(s)
        .and_then(|c| c.get(1))
        .map_or_else(|| "[invalid]".to_string(), |m| m.as_str().to_string())
}

/// GSM8K flexible extraction: the last match of `(-?[$0-9.,]{2,})|(-?[0-9]+)` (lm-eval
/// `flexible-extract`, group_select -1), else `[invalid]`.
///
/// ```
/// assert_eq!(evalkit_core::builtins::gsm8k_flexible("3 apples and $1,200 total"), "$1,200");
/// ```
pub fn gsm8k_flexible(s: &str) -> String {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| Regex::new(r"(-?[$0-9.,]{2,})|(-?[0-9]+)").expect("valid regex"));
    re.captures_iter(s)
        .last()
        .and_then(|c| c.get(1).or_else(|| c.get(2)))
        .map_or_else(|| "[invalid]".to_string(), |m| m.as_str().to_string())
}

/// The first capture group (or whole match) of `pattern` in the text, empty when none.
pub fn regex_extract(re: &Regex, s: &str) -> String {
    re.captures(s)
        .map(|c| c.get(1).or_else(|| c.get(0)).map_or("", |m| m.as_str()).to_string())
        .unwrap_or_default()
}
