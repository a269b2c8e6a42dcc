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

/// A row hook's result: a plain value, or a `Result` whose error is the row's.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the contexts of a partial-scoring row",
    label = "this method must return the contexts, one per choice",
    note = "a `contexts` method returns Vec<String> or Result<Vec<String>, RowError>"
)]
pub trait IntoRowResult<T> {
    /// The value, or the row error.
    fn into_row_result(self) -> Result<T, RowError>;
}

impl IntoRowResult<Vec<String>> for Vec<String> {
    fn into_row_result(self) -> Result<Vec<String>, RowError> {
        Ok(self)
    }
}

impl IntoRowResult<Vec<String>> for Result<Vec<String>, RowError> {
    fn into_row_result(self) -> Result<Vec<String>, RowError> {
        self
    }
}

/// A role field rendered as text (any `Display` type).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot fill a text role of a benchmark row",
    label = "this field's type does not implement `Display`",
    note = "mark a String (or any Display type), or compute the text: #[eval(context = Self::method)] on the struct"
)]
pub trait RoleText {
    /// The field as a string.
    fn role_text(&self) -> String;
}

impl<T: std::fmt::Display + ?Sized> RoleText for T {
    fn role_text(&self) -> String {
        self.to_string()
    }
}

/// A text role computed by a method (`#[eval(context = Self::method)]`): its return value.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot fill a text role of a benchmark row",
    label = "this method must return the text",
    note = "a text role's method returns String, &str, Box<str>, Cow<str> or char"
)]
pub trait MethodText {
    /// The returned value as a string.
    fn method_text(self) -> String;
}

/// What a `clean` function (`#[eval(clean = f)]`) returns: the cleaned generation.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a cleaned generation",
    label = "`clean` must return the cleaned text",
    note = "a `clean` function takes the generation (&str) and returns String, &str, Box<str>, Cow<str> or char"
)]
pub trait CleanedText {
    /// The returned value as a string.
    fn cleaned_text(self) -> String;
}

macro_rules! text_impls {
    ($($t:ty),*) => {$(
        impl MethodText for $t {
            fn method_text(self) -> String {
                self.into()
            }
        }
        impl CleanedText for $t {
            fn cleaned_text(self) -> String {
                self.into()
            }
        }
    )*};
}
text_impls!(String, &str, &String, Box<str>, std::borrow::Cow<'_, str>, char);

/// Converts a choices field to `Vec<String>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the choices of a multiple-choice row",
    label = "expected a list of strings",
    note = "use a list such as Vec<String>, [&str; N] or Box<[String]>, or compute them: #[eval(choices = Self::method)]"
)]
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

impl<S: AsRef<str>> AsChoices for Box<[S]> {
    fn as_choices(&self) -> Vec<String> {
        self.as_ref().as_choices()
    }
}

impl<C: AsChoices + ?Sized> AsChoices for &C {
    fn as_choices(&self) -> Vec<String> {
        (**self).as_choices()
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
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be read as the index of the right choice",
    label = "expected an integer index, a char letter or a bool",
    note = "a string answer field needs its form: #[eval(answer = letter)] (\"B\") or #[eval(answer = text)] (the right choice's text); a method named by `answer = Self::method` returns the index (usize, or Result<usize, RowError>)"
)]
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

impl AnswerIndex for Result<usize, RowError> {
    fn answer_index(&self, _: &[String]) -> Result<usize, RowError> {
        self.clone()
    }
}

impl AnswerIndex for bool {
    fn answer_index(&self, _: &[String]) -> Result<usize, RowError> {
        Ok(usize::from(*self))
    }
}

/// An answer field read as a letter (`#[eval(answer = letter)]`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be read as an answer letter",
    label = "expected a string or a char",
    note = "#[eval(answer = letter)] reads \"A\", \"B\", ... (or \"1\", \"2\", ...) from a String, &str or char"
)]
pub trait AnswerLetter {
    /// The letter as a string.
    fn letter(&self) -> String;
}

impl AnswerLetter for char {
    fn letter(&self) -> String {
        self.to_string()
    }
}

impl AnswerLetter for str {
    fn letter(&self) -> String {
        self.to_string()
    }
}

impl AnswerLetter for String {
    fn letter(&self) -> String {
        self.clone()
    }
}

impl AnswerLetter for Box<str> {
    fn letter(&self) -> String {
        self.to_string()
    }
}

impl<T: AnswerLetter + ?Sized> AnswerLetter for &T {
    fn letter(&self) -> String {
        (**self).letter()
    }
}

/// An answer field read as the right choice's text (`#[eval(answer = text)]`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be read as the text of the right choice",
    label = "expected a string",
    note = "#[eval(answer = text)] compares a String or &str with each choice"
)]
pub trait AnswerText {
    /// The text.
    fn text(&self) -> &str;
}

impl<S: AsRef<str> + ?Sized> AnswerText for S {
    fn text(&self) -> &str {
        self.as_ref()
    }
}

/// A letter answer: `A`, `B`, … (or `1`, `2`, … as some ARC rows have) → 0, 1, …
pub fn answer_letter(s: &str, choices: &[String]) -> Result<usize, RowError> {
    let t = s.trim();
    let mut chars = t.chars();
    let index = match (chars.next(), chars.next()) {
        (Some(c @ 'A'..='Z'), None) => c as usize - 'A' as usize,
        (Some(c @ 'a'..='z'), None) => c as usize - 'a' as usize,
        _ => match t.parse::<usize>() {
            Ok(n) if n >= 1 => n - 1,
            _ => {
                return Err(RowError::new(format!(
                    "answer {s:?} is not a letter A, B, ... or a number 1, 2, ..."
                )))
            }
        },
    };
    if index >= choices.len() {
        return Err(RowError::new(format!(
            "answer {s:?} is choice {}, but the row has {} choices",
            index + 1,
            choices.len()
        )));
    }
    Ok(index)
}

/// A text answer: the index of the choice equal to it.
pub fn answer_text(s: &str, choices: &[String]) -> Result<usize, RowError> {
    choices
        .iter()
        .position(|c| c == s)
        .ok_or_else(|| RowError::new(format!("answer {s:?} matches no choice")))
}

#[cfg(test)]
mod tests {
    use super::answer_letter;

    #[test]
    fn answer_letters_are_read_and_checked_against_the_choices() {
        let choices: Vec<String> = ["x", "y", "z"].map(String::from).to_vec();
        assert_eq!(answer_letter("B", &choices).ok(), Some(1));
        assert_eq!(answer_letter(" c ", &choices).ok(), Some(2));
        assert_eq!(answer_letter("1", &choices).ok(), Some(0));
        let e = answer_letter("E", &choices).expect_err("out of range");
        assert!(
            e.to_string()
                .contains("answer \"E\" is choice 5, but the row has 3 choices"),
            "{e}"
        );
        let e = answer_letter("BB", &choices).expect_err("not a letter");
        assert!(e.to_string().contains("is not a letter"), "{e}");
    }
}
