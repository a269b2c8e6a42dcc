//! evalkit: evaluate language models on benchmarks, in Rust, on libtorch.
//!
//! This crate is the facade: it re-exports the engine ([`core`]), the derive macro
//! ([`Evaluation`](macro@Evaluation)) and the standard suites ([`suites`]), and holds the
//! `evalkit` command-line tool.
//!
//! # Defining a benchmark
//!
//! A benchmark is a struct, one value per dataset row; `#[derive(Evaluation)]` turns it into
//! a complete evaluation of one of five kinds. Struct-level `#[eval(...)]` names the
//! evaluation, its kind and settings; field-level `#[eval(...)]` marks the roles fields play.
//!
//! ```
//! use evalkit::Evaluation;
//!
//! #[derive(Evaluation)]
//! #[eval(name = "arc_easy", kind = multiple_choice, metrics(acc, acc_norm))]
//! struct ArcEasy {
//!     #[eval(context = "Question: {question}\nAnswer:")]
//!     question: String,
//!     #[eval(choices)]
//!     choices: Vec<String>,
//!     #[eval(answer = letter)]
//!     answer_key: String,
//! }
//!
//! let rows = vec![ArcEasy { question: "2+2?".into(), choices: vec!["4".into(), "5".into()], answer_key: "A".into() }];
//! let eval = evalkit::core::task(rows).build();
//! assert_eq!(eval.name(), "arc_easy");
//! ```
//!
//! The attribute language:
//!
//! | where | attribute | meaning |
//! |---|---|---|
//! | struct | `name = "..."` | evaluation name (default: the struct name in snake case) |
//! | struct | `kind = multiple_choice \| loglikelihood \| perplexity \| next_token \| generate` | the kind (required) |
//! | struct | `metrics(a, b)` | the metrics to highlight; each must fit the kind |
//! | struct | `context`/`continuation`/`prompt`/`target`/`text`/`count_text` `= "template"` or `= path` | a role from a template over fields (`{field}`, `{{` for a brace) or from a method `fn(&Self) -> String` |
//! | struct | `choices = path`, `answer = path` | computed choices (`fn(&Self) -> Vec<String>`) or answer |
//! | struct | `delimiter = " "` | between context and choice (multiple choice) |
//! | struct | `max_new_tokens = N`, `stop("a", "b")` | generation length (required) and stop strings |
//! | struct | `clean = f`, `check = f`, `score = f` | generation hooks: a built-in name (`trim`, `first_number`, `last_number`, `gsm8k_strict`, `gsm8k_flexible`, `exact_match`, `number_match`, ...), any function path, or `clean = regex("...")` |
//! | struct | `batch_size = N`, `chunk_size = N`, `limit = N` | per-evaluation defaults |
//! | field | `context`, `prompt`, `text`, ... | the field is that role, verbatim; `context = "template"` renders a template instead |
//! | field | `choices` | the choices (`Vec<String>`, `[&str; N]`, ...) |
//! | field | `answer` / `answer = index \| letter \| text` | the answer: an integer index, a letter (`"B"`, `'B'`), or the right choice's text |

pub use evalkit_core as core;
pub use evalkit_macros::Evaluation;
pub use evalkit_suites as suites;

extern crate self as evalkit;
