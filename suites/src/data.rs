//! Reading benchmark files: where the data directory is, and JSONL/JSON/CSV/text readers whose
//! errors name the file, the line and the field. A row that cannot be used is an error, never
//! skipped.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// The data directory: `explicit` (`--data-dir`), else `EVALKIT_DATA`, else
/// `~/.cache/evalkit/data`.
pub fn data_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("EVALKIT_DATA") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/evalkit/data")
}

/// Fails with where to get the file unless it exists.
pub fn require(path: &Path, what: &str, source: &str) -> Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        Err(Error::MissingFile {
            path: path.to_path_buf(),
            what: what.into(),
            source_hint: source.into(),
        })
    }
}

/// Reads a file's bytes (after [`require`]).
fn read_bytes(path: &Path, what: &str, source: &str) -> Result<Vec<u8>> {
    require(path, what, source)?;
    Ok(std::fs::read(path).map_err(|e| evalkit_core::Error::io("reading", path, e))?)
}

/// Why `bytes`, the contents of `path`, are not the UTF-8 text of `what` that was expected:
/// the line and byte offset of the first byte that is not UTF-8, and what the file looks like
/// instead when it starts with the magic bytes of a gzip or parquet file or a UTF-16 byte-order
/// mark.
fn not_text(path: &Path, bytes: &[u8], error: std::str::Utf8Error, what: &str, source: &str) -> Error {
    let at = error.valid_up_to();
    let line = line_of(bytes, at);
    let line_start = bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let position = format!(
        "the byte 0x{:02x} at offset {at} (line {line}, byte {} of the line) is not valid UTF-8",
        bytes[at],
        at - line_start + 1
    );
    let message = if bytes.starts_with(&[0x1f, 0x8b]) {
        format!(
            "looks like a gzip file (it starts with gzip's magic bytes 1f 8b), not text ({position}): {what} is \
             read as uncompressed UTF-8 text; unpack it (gunzip) and put the unpacked file at this path"
        )
    } else if bytes.starts_with(b"PAR1") {
        format!(
            "looks like a parquet file (it starts with parquet's magic bytes `PAR1`), not text ({position}): \
             {what} is read as UTF-8 text, as distributed by {source}"
        )
    } else if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        format!(
            "looks like UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8 ({position}): {what} is \
             read as UTF-8 text; save it as UTF-8"
        )
    } else {
        format!("not UTF-8 text: {position}; {what} is read as UTF-8 text (obtain it again from {source})")
    };
    Error::Unusable {
        path: path.to_path_buf(),
        line: Some(line),
        message,
    }
}

/// The 1-based line of byte `at` of `bytes`.
pub(crate) fn line_of(bytes: &[u8], at: usize) -> usize {
    bytes[..at.min(bytes.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Reads a text file (after [`require`]); a file that is not UTF-8 is refused with the
/// position of its first invalid byte (and what it looks like, where it is a gzip or parquet
/// file).
pub fn read_text(path: &Path, what: &str, source: &str) -> Result<String> {
    let bytes = read_bytes(path, what, source)?;
    let text = String::from_utf8(bytes).map_err(|e| not_text(path, e.as_bytes(), e.utf8_error(), what, source))?;
    // A byte-order mark (a file saved by some Windows editors) is not text of the file.
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Parses one JSON value as `T`; the error names the field ([`field_of`]), or `(json)` where
/// the text is not JSON.
fn parse_value<T: DeserializeOwned>(text: &str) -> std::result::Result<T, (String, serde_json::Error)> {
    let de = &mut serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if inner.is_syntax() || inner.is_eof() {
            "(json)".into()
        } else {
            field_of(&path, &inner)
        };
        (field, inner)
    })?;
    de.end().map_err(|e| ("(json)".to_string(), e))?;
    Ok(value)
}

/// The field a row's deserialization error is about, from `serde_path_to_error`'s path: the
/// path within the row (e.g. `question.choices[2].text`); a missing or unknown field named at
/// the object that lacks or has it (`question.stem`, `answer`); `(row)` where the row as a
/// whole is the wrong type.
pub(crate) fn field_of(path: &str, error: &serde_json::Error) -> String {
    let message = error.to_string();
    let key = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|k| message.split(k).nth(1)?.split('`').next().map(str::to_string));
    match (path, key) {
        ("." | "?", Some(k)) => k,
        ("." | "?", None) => "(row)".into(),
        (p, Some(k)) => format!("{p}.{k}"),
        (p, None) => p.to_string(),
    }
}

/// Parses every non-empty line of a JSON-lines file as `T`.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path, what: &str, source: &str) -> Result<Vec<T>> {
    let text = read_text(path, what, source)?;
    let rows: Vec<T> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_value(l).map_err(|(field, e)| malformed(path, i + 1, &field, json_message(&e))))
        .collect::<Result<_>>()?;
    not_empty(rows, path, what, source)
}

/// serde_json's message without the position it appends (` at line L column C`): in a
/// JSON-lines file that line is the row's own (always 1), and callers name the file's line
/// themselves. A syntax error keeps its column (`EOF while parsing a string at column 358`),
/// which says where in the line the text stops being JSON.
pub(crate) fn json_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&position).unwrap_or(&full);
    if (e.is_syntax() || e.is_eof()) && e.line() != 0 {
        format!("{message} at column {}", e.column())
    } else {
        message.to_string()
    }
}

/// `rows`, or an error naming the file when there are none.
pub(crate) fn not_empty<T>(rows: Vec<T>, path: &Path, what: &str, source: &str) -> Result<Vec<T>> {
    if rows.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
            what: what.into(),
            source_hint: source.into(),
        });
    }
    Ok(rows)
}

/// The 1-based line of row `row` (0-based) of a JSON-lines file as [`read_jsonl`] reads it
/// (blank lines skipped), for errors found after reading; 0 when the file cannot be reread.
pub fn jsonl_line(path: &Path, row: usize) -> usize {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .nth(row)
                .map(|(i, _)| i + 1)
        })
        .unwrap_or(0)
}

/// A malformed-row error.
pub fn malformed(path: &Path, line: usize, field: &str, message: impl Into<String>) -> Error {
    Error::Malformed {
        path: path.to_path_buf(),
        line,
        field: field.into(),
        message: message.into(),
    }
}

/// An error about `path` as a whole (no line of it is at fault): not a file its reader can use.
pub(crate) fn unusable(path: &Path, message: impl Into<String>) -> Error {
    Error::Unusable {
        path: path.to_path_buf(),
        line: None,
        message: message.into(),
    }
}

/// Reads a header-less CSV file; each record must have `width` fields.
pub fn read_csv(path: &Path, width: usize, what: &str, source: &str) -> Result<Vec<Vec<String>>> {
    Ok(read_csv_lines(path, width, what, source)?
        .into_iter()
        .map(|(_, fields)| fields)
        .collect())
}

/// [`read_csv`] with the 1-based file line each record starts on (for errors found after
/// reading: a quoted field may span lines, so a record's index is not its line).
pub fn read_csv_lines(path: &Path, width: usize, what: &str, source: &str) -> Result<Vec<(usize, Vec<String>)>> {
    let bytes = read_bytes(path, what, source)?;
    // The records are text: a file that is not is refused as [`read_text`] refuses it (csv's own
    // error would say little more than `invalid utf-8` of some record).
    if let Err(e) = std::str::from_utf8(&bytes) {
        return Err(not_text(path, &bytes, e, what, source));
    }
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes.as_slice());
    let mut rows = vec![];
    let mut rec = csv::StringRecord::new();
    while r.read_record(&mut rec).map_err(|e| {
        malformed(
            path,
            e.position().map_or(0, |p| p.line() as usize),
            "(record)",
            e.to_string(),
        )
    })? {
        let line = rec.position().map_or(0, |p| p.line() as usize);
        if rec.len() != width {
            // A quote left open reads the rest of the file into one field: say so, with the
            // lines the record took, rather than only how many fields it found.
            let at_end = r.position().byte() as usize >= bytes.len();
            let hint = if rec.iter().any(|f| f.contains('\n')) && at_end {
                format!("; the record runs from line {line} to the end of the file: is a quote left open?")
            } else {
                String::new()
            };
            return Err(malformed(
                path,
                line,
                "(record)",
                format!(
                    "{} field{}, expected {width}{hint}",
                    rec.len(),
                    if rec.len() == 1 { "" } else { "s" }
                ),
            ));
        }
        rows.push((line, rec.iter().map(str::to_string).collect()));
    }
    not_empty(rows, path, what, source)
}

#[cfg(test)]
mod tests {
    use super::{jsonl_line, read_csv, read_jsonl, read_text};
    use crate::Error;

    #[test]
    fn a_bad_row_names_its_field() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Row {
            question: Question,
            answer: bool,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Question {
            stem: String,
            choices: Vec<String>,
        }
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("rows.jsonl");
        let error = |row: &str| {
            std::fs::write(&path, format!("\n{row}\n")).unwrap();
            read_jsonl::<Row>(&path, "rows", "nowhere").unwrap_err().to_string()
        };
        let ok = r#"{"question": {"stem": "s", "choices": ["a"]}, "answer": true}"#;
        std::fs::write(&path, ok).unwrap();
        assert_eq!(read_jsonl::<Row>(&path, "rows", "nowhere").unwrap().len(), 1);
        for (row, want) in [
            (
                r#"{"question": {"stem": "s", "choices": ["a"]}, "answer": "yes"}"#,
                "rows.jsonl:2: field `answer`: invalid type: string \"yes\", expected a boolean",
            ),
            (
                r#"{"question": {"stem": "s", "choices": ["a", 7]}, "answer": true}"#,
                "field `question.choices[1]`: invalid type: integer `7`",
            ),
            (
                r#"{"question": {"choices": ["a"]}, "answer": true}"#,
                "field `question.stem`: missing field `stem`",
            ),
            (
                r#"{"question": {"stem": "s", "choices": ["a"]}}"#,
                "field `answer`: missing field `answer`",
            ),
            (r#"{"question": {"stem": "s""#, "field `(json)`: EOF while parsing"),
            (
                r#"{"question": {"stem": "s", "choices": []}, "answer": true} }"#,
                "field `(json)`: trailing characters",
            ),
            (
                "\"a row\"",
                "field `(row)`: invalid type: string \"a row\", expected struct Row",
            ),
        ] {
            let got = error(row);
            assert!(got.contains(want), "{row}: {got}");
            // The file's line is given once, by the prefix: not serde's line within the row.
            assert!(!got.contains(" at line "), "{row}: {got}");
        }
        // A syntax error keeps serde's column, which says where in the line the JSON breaks.
        let got = error(r#"{"question": {"stem": "s""#);
        assert!(
            got.ends_with("rows.jsonl:2: field `(json)`: EOF while parsing an object at column 25"),
            "{got}"
        );
        let got = error(r#"{"question": {"stem": "s", "choices": []}, "answer": true} }"#);
        assert!(
            got.ends_with("field `(json)`: trailing characters at column 60"),
            "{got}"
        );
    }

    #[test]
    fn a_file_that_is_not_utf8_text_is_refused_with_where_and_what_it_is() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("dev.jsonl");
        let read = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            let jsonl = read_jsonl::<serde_json::Value>(&path, "BoolQ dev (JSONL)", "nowhere")
                .unwrap_err()
                .to_string();
            let csv = read_csv(&path, 1, "a CSV file", "nowhere").unwrap_err().to_string();
            (jsonl, csv)
        };
        let (jsonl, csv) = read(b"{\"a\": 1}\n{\"a\": 2}\n{\"a\": \"x\xffy\"}\n");
        for e in [&jsonl, &csv] {
            assert!(
                e.contains("dev.jsonl:3: not UTF-8 text: the byte 0xff at offset 26 (line 3, byte 9 of the line)"),
                "{e}"
            );
        }
        assert!(jsonl.contains("BoolQ dev (JSONL) is read as UTF-8 text"), "{jsonl}");
        let (jsonl, csv) = read(&[0x1f, 0x8b, 0x08, 0x00, 0x00]);
        for e in [&jsonl, &csv] {
            assert!(e.contains("dev.jsonl:1: looks like a gzip file"), "{e}");
            assert!(e.contains("unpack it (gunzip)"), "{e}");
        }
        let (jsonl, csv) = read(b"PAR1\x15\x04\x15\x00\x00\x00\x8a\x01PAR1");
        for e in [&jsonl, &csv] {
            assert!(e.contains("dev.jsonl:1: looks like a parquet file"), "{e}");
            assert!(e.contains("the byte 0x8a at offset 10"), "{e}");
        }
        let (jsonl, _) = read(&[0xff, 0xfe, b'{', 0]);
        assert!(jsonl.contains("looks like UTF-16 text"), "{jsonl}");
        // Text files read as before, a byte-order mark skipped.
        std::fs::write(&path, "\u{feff}\"x\u{e9}\",y\n").unwrap();
        assert_eq!(read_text(&path, "a file", "nowhere").unwrap(), "\"x\u{e9}\",y\n");
        assert_eq!(read_csv(&path, 2, "a CSV file", "nowhere").unwrap(), [["x\u{e9}", "y"]]);
    }

    #[test]
    fn a_file_without_rows_is_named_and_rows_map_to_their_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let blank = dir.join("blank.jsonl");
        std::fs::write(&blank, "\n  \n").unwrap();
        match read_jsonl::<serde_json::Value>(&blank, "a test split", "nowhere") {
            Err(e @ Error::Empty { .. }) => assert!(e.to_string().contains("blank.jsonl holds no rows"), "{e}"),
            other => panic!("{other:?}"),
        }
        let rows = dir.join("rows.jsonl");
        std::fs::write(&rows, "{\"a\": 1}\n\n{\"a\": 2}\n").unwrap();
        assert_eq!(
            read_jsonl::<serde_json::Value>(&rows, "a test split", "nowhere")
                .unwrap()
                .len(),
            2
        );
        assert_eq!((jsonl_line(&rows, 0), jsonl_line(&rows, 1)), (1, 3));
    }
}
