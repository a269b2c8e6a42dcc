//! MMLU (lm-eval `mmlu`, `mmlu_<subject>`): 57 subjects, each an evaluation over
//! `mmlu/test/<subject>_test.csv`, with the description `The following are multiple choice
//! questions (with answers) about {subject}.\n\n`, k examples from the first k rows of
//! `mmlu/dev/<subject>_dev.csv` (lm-eval's `first_n`), and the prompt
//! `{question.strip()}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nAnswer:` scored against `" A"`..`" D"`.
//! The group `mmlu` is the micro-average over all rows; `mmlu_stem`, `mmlu_other`,
//! `mmlu_social_sciences` and `mmlu_humanities` (lm-eval's groups) over their subjects' rows.

use crate::data::{malformed, read_csv_lines};
use crate::error::Result;
use crate::LoadOptions;
use evalkit_core::evaluator::Group;
use evalkit_core::fewshot::FewShotSampler;
use evalkit_core::Evaluation;

/// The 57 subjects, in lm-eval's order.
pub const SUBJECTS: [&str; 57] = [
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
];

/// lm-eval's groups under `mmlu`, in its order (`mmlu/default/_mmlu.yaml`): the group
/// `mmlu_<category>` is the micro-average over the subjects of that [`CATEGORY`].
pub const CATEGORIES: [&str; 4] = ["stem", "other", "social_sciences", "humanities"];

/// Each subject's category (lm-eval's `tag: mmlu_<category>_tasks`), in [`SUBJECTS`] order.
pub const CATEGORY: [&str; 57] = [
    "stem",            // abstract_algebra
    "stem",            // anatomy
    "stem",            // astronomy
    "other",           // business_ethics
    "other",           // clinical_knowledge
    "stem",            // college_biology
    "stem",            // college_chemistry
    "stem",            // college_computer_science
    "stem",            // college_mathematics
    "other",           // college_medicine
    "stem",            // college_physics
    "stem",            // computer_security
    "stem",            // conceptual_physics
    "social_sciences", // econometrics
    "stem",            // electrical_engineering
    "stem",            // elementary_mathematics
    "humanities",      // formal_logic
    "other",           // global_facts
    "stem",            // high_school_biology
    "stem",            // high_school_chemistry
    "stem",            // high_school_computer_science
    "humanities",      // high_school_european_history
    "social_sciences", // high_school_geography
    "social_sciences", // high_school_government_and_politics
    "social_sciences", // high_school_macroeconomics
    "stem",            // high_school_mathematics
    "social_sciences", // high_school_microeconomics
    "stem",            // high_school_physics
    "social_sciences", // high_school_psychology
    "stem",            // high_school_statistics
    "humanities",      // high_school_us_history
    "humanities",      // high_school_world_history
    "other",           // human_aging
    "social_sciences", // human_sexuality
    "humanities",      // international_law
    "humanities",      // jurisprudence
    "humanities",      // logical_fallacies
    "stem",            // machine_learning
    "other",           // management
    "other",           // marketing
    "other",           // medical_genetics
    "other",           // miscellaneous
    "humanities",      // moral_disputes
    "humanities",      // moral_scenarios
    "other",           // nutrition
    "humanities",      // philosophy
    "humanities",      // prehistory
    "other",           // professional_accounting
    "humanities",      // professional_law
    "other",           // professional_medicine
    "social_sciences", // professional_psychology
    "social_sciences", // public_relations
    "social_sciences", // security_studies
    "social_sciences", // sociology
    "social_sciences", // us_foreign_policy
    "other",           // virology
    "humanities",      // world_religions
];

/// Official test rows per subject, in [`SUBJECTS`] order (14042 in all).
pub const ROWS: [usize; 57] = [
    100, 135, 152, 100, 265, 144, 100, 100, 100, 173, 102, 100, 235, 114, 145, 378, 126, 100, 310, 203, 100, 165, 198,
    193, 390, 270, 238, 151, 545, 216, 204, 237, 223, 131, 121, 108, 163, 112, 103, 234, 100, 783, 346, 895, 306, 311,
    324, 282, 1534, 272, 612, 110, 245, 201, 100, 166, 171,
];

/// One MMLU question.
#[derive(Debug, Clone, Evaluation)]
#[eval(name = "mmlu", kind = multiple_choice, metrics(acc), choices = Self::letters, context = Self::prompt)]
pub struct Mmlu {
    /// The question.
    pub question: String,
    /// Options A–D.
    pub options: [String; 4],
    /// The answer letter.
    #[eval(answer = letter)]
    pub answer: String,
}

impl Mmlu {
    fn letters(&self) -> [&'static str; 4] {
        ["A", "B", "C", "D"]
    }
    fn prompt(&self) -> String {
        let o = &self.options;
        format!(
            "{}\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer:",
            self.question.trim(),
            o[0],
            o[1],
            o[2],
            o[3]
        )
    }
}

const SOURCE: &str = "https://people.eecs.berkeley.edu/~hendrycks/data.tar (data/test, data/dev)";

/// Reads one subject's CSV (question, A, B, C, D, answer letter).
pub fn read(path: &std::path::Path) -> Result<Vec<Mmlu>> {
    read_csv_lines(path, 6, "an MMLU subject file (CSV without header)", SOURCE)?
        .into_iter()
        .map(|(line, r)| {
            if !matches!(r[5].trim(), "A" | "B" | "C" | "D") {
                return Err(malformed(
                    path,
                    line,
                    "answer",
                    format!("{:?} is not A, B, C or D", r[5]),
                ));
            }
            Ok(Mmlu {
                question: r[0].clone(),
                options: [r[1].clone(), r[2].clone(), r[3].clone(), r[4].clone()],
                answer: r[5].trim().to_string(),
            })
        })
        .collect()
}

/// The evaluation of one subject.
pub fn subject(opts: &LoadOptions, subject: &str) -> Result<Box<dyn Evaluation>> {
    let base = opts.data_dir.join("mmlu");
    let rows = read(&base.join("test").join(format!("{subject}_test.csv")))?;
    let k = opts.num_fewshot.unwrap_or(0);
    let description = format!(
        "The following are multiple choice questions (with answers) about {}.\n\n",
        subject.replace('_', " ")
    );
    let pool = if k > 0 {
        read(&base.join("dev").join(format!("{subject}_dev.csv")))?
    } else {
        vec![]
    };
    let t = evalkit_core::task(rows)
        .named(format!("mmlu_{subject}"))
        .fewshot(&pool, k, FewShotSampler::First, description)
        .map_err(|e| crate::Error::Setting {
            task: format!("mmlu_{subject}"),
            message: e.to_string(),
        })?;
    Ok(t.build())
}

/// Loads `mmlu` (all subjects, the four category groups and the group `mmlu`),
/// `mmlu_<category>` (its subjects and its group) or `mmlu_<subject>`.
pub fn load(opts: &LoadOptions, name: &str) -> Result<crate::Loaded> {
    let rest = name.strip_prefix("mmlu_");
    if let Some(s) = rest.filter(|s| SUBJECTS.contains(s)) {
        return Ok(crate::Loaded {
            evaluations: vec![subject(opts, s)?],
            groups: vec![],
            not_loaded: vec![],
        });
    }
    let categories: Vec<&str> = match rest {
        Some(c) => vec![c],
        None => CATEGORIES.to_vec(),
    };
    let asked: Vec<&str> = SUBJECTS
        .iter()
        .zip(CATEGORY)
        .filter(|(_, c)| categories.contains(c))
        .map(|(s, _)| *s)
        .collect();
    // A subject that does not load leaves the others (and is named, with its groups, under
    // `failed`); where none loads, the first error is the suite's.
    let mut evaluations: Vec<Box<dyn Evaluation>> = vec![];
    let mut not_loaded = vec![];
    for s in &asked {
        match subject(opts, s) {
            Ok(e) => evaluations.push(e),
            Err(e) => not_loaded.push((format!("mmlu_{s}"), e)),
        }
    }
    if evaluations.is_empty() && !not_loaded.is_empty() {
        return Err(not_loaded.swap_remove(0).1);
    }
    let mut groups: Vec<Group> = categories
        .iter()
        .map(|c| Group {
            name: format!("mmlu_{c}"),
            members: SUBJECTS
                .iter()
                .zip(CATEGORY)
                .filter(|(_, sc)| sc == c)
                .map(|(s, _)| format!("mmlu_{s}"))
                .collect(),
        })
        .collect();
    if rest.is_none() {
        groups.push(Group {
            name: "mmlu".into(),
            members: asked.iter().map(|s| format!("mmlu_{s}")).collect(),
        });
    }
    Ok(crate::Loaded {
        evaluations,
        groups,
        not_loaded,
    })
}

/// The official test rows of `mmlu_<category>`.
pub fn category_rows(category: &str) -> usize {
    ROWS.iter()
        .zip(CATEGORY)
        .filter(|(_, c)| *c == category)
        .map(|(n, _)| n)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_error_names_the_line_its_record_starts_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anatomy_test.csv");
        // The first question spans three lines: the second record starts on line 4.
        std::fs::write(&path, "\"What\nis\nthis?\",a,b,c,d,A\nWhy?,a,b,c,d,E\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(
            e.ends_with(r#"anatomy_test.csv:4: field `answer`: "E" is not A, B, C or D"#),
            "{e}"
        );
        // A record of the wrong width is named by the same line.
        std::fs::write(&path, "\"What\nis\nthis?\",a,b,c,d,A\nWhy?,a,b,c,d\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(
            e.ends_with("anatomy_test.csv:4: field `(record)`: 5 fields, expected 6"),
            "{e}"
        );
        // A quote left open reads the rest of the file as one field: the error says so.
        std::fs::write(&path, "Q?,a,b,c,d,A\n\"Why?,a,b,c,d,B\nWhat?,a,b,c,d,C\n").unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "anatomy_test.csv:2: field `(record)`: 1 field, expected 6; the record runs from line 2 to the \
                 end of the file: is a quote left open?"
            ),
            "{e}"
        );
    }

    #[test]
    fn categories_are_lm_evals() {
        let count = |c: &str| CATEGORY.iter().filter(|&&x| x == c).count();
        let counts: Vec<usize> = CATEGORIES.iter().map(|c| count(c)).collect();
        // lm-eval 0.4.13: 19 STEM subjects, 13 other, 12 social sciences, 13 humanities.
        assert_eq!(counts, [19, 13, 12, 13]);
        let of = |s: &str| CATEGORY[SUBJECTS.iter().position(|&x| x == s).expect("a subject")];
        assert_eq!(of("abstract_algebra"), "stem");
        assert_eq!(of("human_sexuality"), "social_sciences");
        assert_eq!(of("professional_law"), "humanities");
        assert_eq!(of("virology"), "other");
        let rows: usize = CATEGORIES.iter().map(|c| category_rows(c)).sum();
        assert_eq!(rows, 14042);
    }
}
