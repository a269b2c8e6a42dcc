//! HellaSwag validation (lm-eval `hellaswag`): context and endings. The copy we hold (klosax's
//! cleaned text, three parts in order) has `ctx` already preprocessed and is used verbatim; rows
//! in the original Hugging Face layout (`activity_label`, `ctx_a`, `ctx_b`) are built exactly
//! as lm-eval does: `preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())`.

use crate::data::read_jsonl;
use crate::error::{Error, Result};
use crate::LoadOptions;
use evalkit_core::Evaluation;
use serde::Deserialize;

/// One HellaSwag item.
#[derive(Debug, Clone, Evaluation)]
#[eval(name = "hellaswag", kind = multiple_choice, metrics(acc, acc_norm))]
pub struct Hellaswag {
    /// The context.
    #[eval(context)]
    pub ctx: String,
    /// The four endings.
    #[eval(choices)]
    pub endings: Vec<String>,
    /// Index of the right ending.
    #[eval(answer)]
    pub label: usize,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Raw {
    Original {
        activity_label: String,
        ctx_a: String,
        ctx_b: String,
        endings: Vec<String>,
        label: LabelValue,
    },
    Cleaned {
        ctx: String,
        endings: Vec<String>,
        label: LabelValue,
    },
}

/// A label as the files hold it: a number, or a number in a string (the original files); any
/// other value is refused by [`convert`], naming the row.
type LabelValue = serde_json::Value;

/// lm-eval's `hellaswag.utils.preprocess`.
///
/// ```
/// assert_eq!(evalkit_suites::hellaswag::preprocess(" A man [title] walks  in [step] "), "A man. walks in ");
/// ```
pub fn preprocess(text: &str) -> String {
    let t = text.trim().replace(" [title]", ". ");
    let re = regex::Regex::new(r"\[.*?\]").expect("valid regex");
    re.replace_all(&t, "").replace("  ", " ")
}

/// Python's `str.capitalize`: first character upper-cased, the rest lower-cased.
pub fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c.flat_map(char::to_lowercase)).collect())
        .unwrap_or_default()
}

const SOURCE: &str = "https://github.com/rowanz/hellaswag (data/hellaswag_val.jsonl, read in place of the three parts), or klosax/hellaswag_text_data";

/// Reads one part file.
pub fn read(path: &std::path::Path) -> Result<Vec<Hellaswag>> {
    let raw = read_jsonl(path, "a HellaSwag validation file", SOURCE).map_err(|e| match e {
        // serde's word for a row that is neither layout.
        Error::Malformed {
            path, line, message, ..
        } if message.contains("untagged enum") => Error::Malformed {
            path,
            line,
            field: "(row)".into(),
            message: "neither layout: the original's fields `activity_label`, `ctx_a`, `ctx_b`, `endings` and \
                      `label`, or the cleaned copy's `ctx`, `endings` and `label` (each a string, `endings` a \
                      list of strings)"
                .into(),
        },
        other => other,
    })?;
    convert(raw, |i| (path.to_path_buf(), crate::data::jsonl_line(path, i)))
}

/// The items of `raw`; `at(i)` is the file and line (or hub row) of row `i` (for errors).
fn convert(raw: Vec<Raw>, at: impl Fn(usize) -> (std::path::PathBuf, usize)) -> Result<Vec<Hellaswag>> {
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let (ctx, endings, label) = match r {
                Raw::Cleaned { ctx, endings, label } => (ctx, endings, label),
                Raw::Original {
                    activity_label,
                    ctx_a,
                    ctx_b,
                    endings,
                    label,
                } => (
                    preprocess(&format!("{activity_label}: {ctx_a} {}", capitalize(&ctx_b))),
                    endings.iter().map(|e| preprocess(e)).collect(),
                    label,
                ),
            };
            let index = match &label {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.parse().ok(),
                _ => None,
            };
            let label = index
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n < endings.len())
                .ok_or_else(|| {
                    let (path, line) = at(i);
                    crate::data::malformed(
                        &path,
                        line,
                        "label",
                        format!("{label} is not an index of `endings` (it has {})", endings.len()),
                    )
                })?;
            Ok(Hellaswag { ctx, endings, label })
        })
        .collect()
}

/// Loads `hellaswag` from its three parts, in order.
pub fn load(opts: &LoadOptions, name: &str) -> Result<Vec<Box<dyn evalkit_core::Evaluation>>> {
    opts.no_fewshot(name)?;
    if let Some((src, hub)) = opts.hub_source(name)? {
        let located: Vec<crate::hub::Located<Raw>> = crate::hub::load_rows_located(&src, hub)?;
        let (raw, at): (Vec<Raw>, Vec<_>) = located.into_iter().map(|r| (r.row, (r.file, r.index))).unzip();
        // Hub rows are numbered from 1 in their parquet file, as the hub's own errors number them.
        let rows = convert(raw, |i| at[i].clone())?;
        return Ok(vec![evalkit_core::task(rows).named(name).build()]);
    }
    let dir = opts.data_dir.join("hellaswag");
    // The original file, where present, is what lm-eval reads; else klosax's three parts.
    let original = dir.join("hellaswag_val.jsonl");
    let rows = if original.is_file() {
        read(&original)?
    } else {
        let mut rows = vec![];
        for part in 1..=3 {
            rows.extend(read(&dir.join(format!("hellaswag_val_klosax.part{part}of3.jsonl")))?);
        }
        rows
    };
    Ok(vec![evalkit_core::task(rows).named(name).build()])
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_original_validation_file_is_read_in_place_of_the_parts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("hellaswag")).unwrap();
        let row = r#"{"ind": 24, "activity_label": "Roof shingle removal", "ctx_a": "A man is sitting on a roof.", "ctx_b": "he", "ctx": "A man is sitting on a roof. he", "endings": ["a", "b", "c", "d"], "label": "3", "split": "val"}"#;
        std::fs::write(
            dir.path().join("hellaswag/hellaswag_val.jsonl"),
            format!("{row}\n{row}\n"),
        )
        .unwrap();
        let e = super::load(&crate::LoadOptions::new(dir.path().to_path_buf()), "hellaswag").unwrap();
        assert_eq!(e[0].len(), 2);
        let rows = super::read(&dir.path().join("hellaswag/hellaswag_val.jsonl")).unwrap();
        assert_eq!(rows[0].ctx, "Roof shingle removal: A man is sitting on a roof. He");
        assert_eq!(rows[0].label, 3);
    }

    #[test]
    fn bad_rows_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("part.jsonl");
        let bad = |row: &str| {
            std::fs::write(&path, row).unwrap();
            super::read(&path).expect_err("refused").to_string()
        };
        let msg = bad(r#"{"ctx": "c", "endings": ["a", "b"], "label": -1}"#);
        assert!(msg.contains("part.jsonl:1: field `label`: -1 is not an index"), "{msg}");
        let msg = bad(r#"{"ctx": "c", "endings": ["a", "b"], "label": "2"}"#);
        assert!(
            msg.contains("part.jsonl:1: field `label`: \"2\" is not an index of `endings` (it has 2)"),
            "{msg}"
        );
        let msg = bad(r#"{"context": "c", "endings": ["a", "b"], "label": 1}"#);
        assert!(msg.contains("part.jsonl:1: field `(row)`: neither layout"), "{msg}");
        // Blank lines are skipped, and the line named is the file's.
        let msg = bad("{\"ctx\": \"c\", \"endings\": [\"a\"], \"label\": 0}\n\n\n{\"ctx\": \"c\", \"endings\": [\"a\"], \"label\": 1}\n");
        assert!(msg.contains("part.jsonl:4: field `label`: 1 is not an index"), "{msg}");
    }
}
