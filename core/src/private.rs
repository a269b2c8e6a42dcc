//! Support for the code `#[derive(Evaluation)]` generates. Not a public API: the derive refers
//! to these items by fully qualified paths so user code needs no imports.

pub use crate::benchmark::Benchmark;
pub use crate::builtins;
pub use crate::fewshot::FewShot;
pub use crate::kinds::{
    Defaults, Evaluation, GenItem, Generate, GenerateTask, LlItem, Loglikelihood, LoglikelihoodTask, McItem,
    MultipleChoice, MultipleChoiceTask, NextToken, NextTokenTask, Perplexity, PerplexityTask, PplItem, RowError,
    TaskKind,
};
pub use regex::Regex;
pub use std::boxed::Box;
pub use std::option::Option;
pub use std::result::Result;
pub use std::string::{String, ToString};
pub use std::sync::OnceLock;
pub use std::vec::Vec;

/// Converts a choices field to `Vec<String>`.
pub trait AsChoices {
    /// The choices as strings.
    fn as_choices(&self) -> Vec<String>;
}

impl<S: AsRef<str>> AsChoices for [S] {
    fn as_choices(&self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_string()).collect()
    }
}

impl<S: AsRef<str>> AsChoices for Vec<S> {
    fn as_choices(&self) -> Vec<String> {
        self.as_slice().as_choices()
    }
}

impl<S: AsRef<str>, const N: usize> AsChoices for [S; N] {
    fn as_choices(&self) -> Vec<String> {
        self.as_slice().as_choices()
    }
}

/// The choices of a field or method result.
pub fn to_choices<C: AsChoices + ?Sized>(c: &C) -> Vec<String> {
    c.as_choices()
}

/// An answer field: an index (integers), a letter (`char`), or yes/no (`bool`: false = 0).
pub trait AnswerIndex {
    /// The index of the correct choice among `choices`.
    fn answer_index(&self, choices: &[String]) -> Result<usize, RowError>;
}

macro_rules! int_answer {
    ($($t:ty),*) => {$(
        impl AnswerIndex for $t {
            #[allow(clippy::unnecessary_cast, unused_comparisons)] // one body for signed and unsigned types
            fn answer_index(&self, _: &[String]) -> Result<usize, RowError> {
                if *self < 0 as $t {
                    return Err(RowError::new(format!("answer index {} is negative", self)));
                }
                Ok(*self as usize)
            }
        }
    )*};
}
int_answer!(usize, u8, u16, u32, u64, i8, i16, i32, i64);

impl AnswerIndex for char {
    fn answer_index(&self, choices: &[String]) -> Result<usize, RowError> {
        answer_letter(&self.to_string(), choices)
    }
}

impl AnswerIndex for bool {
    fn answer_index(&self, _: &[String]) -> Result<usize, RowError> {
        Ok(usize::from(*self))
    }
}

/// A letter answer: `A`, `B`, … (or `1`, `2`, … as some ARC rows have) → 0, 1, …
pub fn answer_letter(s: &str, _choices: &[String]) -> Result<usize, RowError> {
    let t = s.trim();
    let mut chars = t.chars();
    match (chars.next(), chars.next()) {
        (Some(c @ 'A'..='Z'), None) => Ok(c as usize - 'A' as usize),
        (Some(c @ 'a'..='z'), None) => Ok(c as usize - 'a' as usize),
        _ => match t.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n - 1),
            _ => Err(RowError::new(format!(
                "answer {s:?} is not a letter A, B, ... or a number 1, 2, ..."
            ))),
        },
    }
}

/// A text answer: the index of the choice equal to it.
pub fn answer_text(s: &str, choices: &[String]) -> Result<usize, RowError> {
    choices
        .iter()
        .position(|c| c == s)
        .ok_or_else(|| RowError::new(format!("answer {s:?} matches no choice")))
}
