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
//! | struct | `metrics(a, b)` | the metrics to highlight; each must fit the kind (with `score` or `extra_metrics`, any names; a string for a name that is no identifier: `metrics("pass@1")`) |
//! | struct | `context`/`continuation`/`prompt`/`target`/`text`/`count_text` `= "template"` or `= path` | a role from a template over fields (`{field}`, `{{` for a brace) or from a method `fn(&Self) -> String` |
//! | struct | `choices = path`, `answer = path` | computed choices (`fn(&Self) -> Vec<String>`) or answer |
//! | struct | `contexts = path`, with `continuation` | partial scoring (WinoGrande): one context per choice from `fn(&Self) -> Vec<String>` (or a `Result` of it, its error the row's), one continuation scored after each |
//! | struct | `extra_metrics = path` | multiple-choice metrics from every choice's log-likelihood: `fn(&Self, &McItem, &[f64]) -> Vec<(&'static str, f64)>` (TruthfulQA MC2's probability mass); a name equal to a standard one replaces it, and one named `acc` drops the other answer-counting accuracies |
//! | struct | `delimiter = " "` | between context and choice (multiple choice) |
//! | struct | `max_new_tokens = N`, `stop("a", "b")` | generation length (required) and stop strings |
//! | struct | `clean = f`, `check = f`, `score = f` | generation hooks: a built-in name (`trim`, `first_number`, `last_number`, `gsm8k_strict`, `gsm8k_flexible`, `exact_match`, `number_match`, ...), any function path, `self.method` (a method of the row, given the hook's arguments: HumanEval runs its tests this way), or `clean = regex("...")` |
//! | struct | `batch_size = N`, `chunk_size = N`, `limit = N` | per-evaluation defaults |
//! | struct | `num_fewshot = K`, `description = "..."` | few-shot defaults: K examples after the description (`task(rows).fewshot_default(&pool, seed)`; `build()` without a pool warns and runs zero-shot, `.zero_shot()` says so on purpose) |
//! | field | `context`, `prompt`, `text`, ... | the field is that role, verbatim; `context = "template"` renders a template instead |
//! | field | `choices` | the choices: any list of strings (`Vec<String>`, `[&str; N]`, `Box<[String]>`, an alias of one) |
//! | field | `answer` / `answer = index \| letter \| text` | the answer: an integer index, a letter (`"B"`, `'B'`), or the right choice's text |
//!
//! Field types are checked by what they can do (trait bounds whose messages say what fits),
//! so a type alias or a boxed slice works and a wrong type is an error at the field's type.
//!
//! # One example per kind
//!
//! **Multiple choice** — a context, choices, an answer (index, letter or text):
//!
//! ```
//! use evalkit::core::kinds::MultipleChoice;
//! #[derive(evalkit::Evaluation)]
//! #[eval(kind = multiple_choice, context = "{passage}\nQuestion: {question}?\nAnswer:", choices = Self::no_yes)]
//! struct YesNo { passage: String, question: String, #[eval(answer)] answer: bool }
//! impl YesNo { fn no_yes(&self) -> [&'static str; 2] { ["no", "yes"] } }
//!
//! let row = YesNo { passage: "Cats purr.".into(), question: "do cats purr".into(), answer: true };
//! let item = row.get().unwrap();
//! assert_eq!(item.contexts[0], "Cats purr.\nQuestion: do cats purr?\nAnswer:");
//! assert_eq!(item.continuations, [" no", " yes"]);
//! assert_eq!(item.answer, 1);
//! ```
//!
//! Partial scoring and metrics from all the choices — WinoGrande's and TruthfulQA MC2's forms:
//!
//! ```
//! use evalkit::core::kinds::{McItem, MultipleChoice, RowError};
//! #[derive(evalkit::Evaluation)]
//! #[eval(kind = multiple_choice, contexts = Self::filled, continuation = Self::rest,
//!        answer = Self::right, extra_metrics = Self::mass, metrics(acc, mass))]
//! struct Blank { sentence: String, options: [String; 2], right: usize }
//! impl Blank {
//!     fn filled(&self) -> Result<Vec<String>, RowError> {
//!         let (head, _) = self.sentence.split_once('_').ok_or(RowError::new("no blank"))?;
//!         Ok(self.options.iter().map(|o| format!("{head}{o}")).collect())
//!     }
//!     fn rest(&self) -> String { self.sentence.split_once('_').map_or("", |s| s.1).trim().into() }
//!     fn right(&self) -> usize { self.right }
//!     fn mass(&self, _: &McItem, lls: &[f64]) -> Vec<(&'static str, f64)> {
//!         let p: Vec<f64> = lls.iter().map(|l| l.exp()).collect();
//!         vec![("mass", p[self.right] / p.iter().sum::<f64>())]
//!     }
//! }
//! let row = Blank { sentence: "The _ barked.".into(), options: ["cat".into(), "dog".into()], right: 1 };
//! let item = row.get().unwrap();
//! assert_eq!(item.contexts, ["The cat", "The dog"]);
//! assert_eq!(item.continuations, [" barked.", " barked."]);
//! assert_eq!(row.extra_metrics(&item, &[0.5f64.ln(), 0.25f64.ln()]), vec![("mass", 1.0 / 3.0)]);
//! ```
//!
//! **Loglikelihood** — a context and one continuation, here computed by methods:
//!
//! ```
//! use evalkit::core::kinds::Loglikelihood;
//! #[derive(evalkit::Evaluation)]
//! #[eval(name = "lambada_like", kind = loglikelihood, context = Self::head, continuation = Self::last)]
//! struct Passage { text: String }
//! impl Passage {
//!     fn head(&self) -> &str { self.text.rsplit_once(' ').unwrap().0 }
//!     fn last(&self) -> String { format!(" {}", self.text.rsplit_once(' ').unwrap().1) }
//! }
//! let item = Passage { text: "the cat sat".into() }.get().unwrap();
//! assert_eq!((item.context.as_str(), item.continuation.as_str()), ("the cat", " sat"));
//! ```
//!
//! **Perplexity** — whole texts scored in rolling windows; words and bytes may be counted on
//! another text:
//!
//! ```
//! use evalkit::core::kinds::Perplexity;
//! #[derive(evalkit::Evaluation)]
//! #[eval(kind = perplexity, metrics(word_perplexity, bits_per_byte))]
//! struct Article { #[eval(text)] body: String }
//! let eval = evalkit::core::task(vec![Article { body: "Once upon a time.".into() }]).build();
//! assert_eq!((eval.name(), eval.len()), ("article", 1));
//! assert_eq!(Article { body: "x".into() }.get().unwrap().text, "x");
//! ```
//!
//! **Next token** — accuracy of the final token by default, with optional `clean`/`check`:
//!
//! ```
//! use evalkit::core::kinds::NextToken;
//! #[derive(evalkit::Evaluation)]
//! #[eval(kind = next_token, text = "{words} | {words}", clean = trim)]
//! struct Copy { words: String }
//! let row = Copy { words: "a b c".into() };
//! assert_eq!(row.get().unwrap(), "a b c | a b c");
//! assert!(row.check("c", &row.clean(" c ")));
//! ```
//!
//! **Generation** — `max_new_tokens` is required; stop strings and `clean`/`check`/`score`
//! hooks are built-ins by name, any function path, or `regex("...")`:
//!
//! ```
//! use evalkit::core::kinds::Generate;
//! #[derive(evalkit::Evaluation)]
//! #[eval(kind = generate, max_new_tokens = 16, stop("\n"), prompt = "Q: {a} + {b} =", target = "{sum}",
//!        clean = regex(r"(-?[0-9]+)"), check = number_match)]
//! struct Sum { a: i32, b: i32, sum: i32 }
//! let row = Sum { a: 2, b: 3, sum: 5 };
//! assert_eq!(<Sum as Generate>::max_new_tokens(), 16);
//! assert_eq!(row.get().unwrap().prompt, "Q: 2 + 3 =");
//! let cleaned = row.clean(" it is 5, I think");
//! assert_eq!(cleaned, "5");
//! assert_eq!(row.score("5", &cleaned), vec![("exact_match".to_string(), 1.0)]);
//! ```
//!
//! A `score` that needs the whole row is a method, named `self.method`:
//!
//! ```
//! use evalkit::core::kinds::Generate;
//! #[derive(evalkit::Evaluation)]
//! #[eval(kind = generate, max_new_tokens = 64, prompt = "{signature}", score = self.passes, metrics("pass@1"))]
//! struct Code { signature: String, #[eval(target)] expected: String }
//! impl Code {
//!     fn passes(&self, expected: &str, completion: &str) -> Vec<(String, f64)> {
//!         let ok = format!("{}{completion}", self.signature).contains(expected);
//!         vec![("pass@1".into(), f64::from(u8::from(ok)))]
//!     }
//! }
//! let row = Code { signature: "fn one() -> u8 {".into(), expected: "1 }".into() };
//! assert_eq!(row.score("1 }", " 1 }"), vec![("pass@1".to_string(), 1.0)]);
//! ```
//!
//! Rows become an evaluation with [`core::task`]; [`core::evaluator::Evaluator`] runs
//! evaluations on a model and writes results.

pub use evalkit_core as core;
pub use evalkit_macros::Evaluation;
pub use evalkit_suites as suites;
/// What implementing [`core::Model`] for a module of your own needs from `tch`, the libtorch
/// binding evalkit is built on: its `Tensor` is the one the trait takes (another `tch`
/// version in your crate would be another type). Depend on `tch = "=0.24.0"` for the rest.
pub mod tch {
    pub use ::tch::{nn, no_grad, no_grad_guard, Device, IndexOp, Kind, TchError, Tensor};
}

extern crate self as evalkit;
