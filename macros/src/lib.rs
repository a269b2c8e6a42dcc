//! `#[derive(Evaluation)]`: a dataset row struct plus a few `#[eval(...)]` attributes becomes a
//! complete, compile-time-checked evaluation of one of evalkit's five kinds. See the
//! `evalkit` crate's documentation for the attribute language.
//!
//! Four stages, four files: `ast` (a borrowing IR of the input), `attr` (attribute
//! parsing), `valid` (rules across fields) and `expand` (the only place with `quote!`).

mod ast;
mod attr;
mod ctxt;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Derives `Benchmark` and the kind's row trait for a struct. See the `evalkit` crate docs.
#[proc_macro_derive(Evaluation, attributes(eval))]
pub fn derive_evaluation(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}
