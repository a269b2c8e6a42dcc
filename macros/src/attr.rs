//! Parsing of `#[eval(...)]` on the struct (container) and on fields, into structs of
//! `Option`s. Each attribute may appear once; unknown names are errors spanned at the name.

use crate::ctxt::Ctxt;
use syn::meta::ParseNestedMeta;
use syn::{Expr, ExprLit, Ident, Lit, LitInt, LitStr, Path};

/// The string roles a row can fill.
pub const TEXT_ROLES: &[&str] = &["context", "continuation", "prompt", "target", "text", "count_text"];

/// Where a string role comes from.
#[derive(Clone)]
pub enum Source {
    /// A template over fields: `"Question: {question}\nAnswer:"`.
    Template(LitStr),
    /// A method or function taking `&Self`.
    Method(Path),
}

/// A `clean`/`check`/`score` function.
#[derive(Clone)]
pub enum Func {
    /// A path to a function (a bare built-in name resolves to evalkit's built-in).
    Path(Path),
    /// `regex("...")`: the first capture group of the pattern.
    Regex(LitStr),
    /// `self.name`: a method of the row, called with the hook's arguments after `&self`.
    Method(Ident),
}

/// How an answer field is read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AnswerMode {
    /// By the field's type (integer index, char letter, bool).
    Auto,
    /// An integer index.
    Index,
    /// A letter `A`.. (or `1`..).
    Letter,
    /// The text of the right choice.
    Text,
}

/// One attribute value with the token it came from (for spans).
pub struct Attr<T> {
    pub value: Option<(proc_macro2::Span, T)>,
    name: &'static str,
}

impl<T> Attr<T> {
    pub fn none(name: &'static str) -> Self {
        Attr { value: None, name }
    }
    pub fn set(&mut self, cx: &Ctxt, span: &Ident, v: T) {
        if self.value.is_some() {
            cx.error_spanned_by(span, format!("duplicate #[eval({})] attribute", self.name));
        } else {
            self.value = Some((span.span(), v));
        }
    }
    pub fn get(&self) -> Option<&T> {
        self.value.as_ref().map(|(_, v)| v)
    }
    pub fn span(&self) -> Option<proc_macro2::Span> {
        self.value.as_ref().map(|(s, _)| *s)
    }
}

/// Struct-level `#[eval(...)]`.
pub struct Container {
    pub name: Attr<LitStr>,
    pub kind: Attr<Ident>,
    /// Metric names: identifiers, or strings for names that are not (`"pass@1"`).
    pub metrics: Attr<Vec<LitStr>>,
    pub roles: Vec<(String, Ident, Source)>,
    pub choices: Attr<Path>,
    pub answer: Attr<Path>,
    /// Partial scoring: one context per choice (`fn(&Self) -> Vec<String>` or a `Result` of it).
    pub contexts: Attr<Path>,
    /// Metrics computed from all choices' log-likelihoods (`fn(&Self, &McItem, &[f64])`).
    pub extra_metrics: Attr<Path>,
    pub delimiter: Attr<LitStr>,
    pub description: Attr<LitStr>,
    pub num_fewshot: Attr<LitInt>,
    pub max_new_tokens: Attr<LitInt>,
    pub stop: Attr<Vec<LitStr>>,
    pub clean: Attr<Func>,
    pub check: Attr<Func>,
    pub score: Attr<Func>,
    pub batch_size: Attr<LitInt>,
    pub chunk_size: Attr<LitInt>,
    pub limit: Attr<LitInt>,
    pub krate: Attr<Path>,
    /// A struct-level attribute did not parse: what follows the mistake in it was not read,
    /// so what it may have set cannot be called missing.
    pub malformed: bool,
}

/// Field-level `#[eval(...)]`.
pub struct FieldAttrs {
    pub roles: Vec<(String, Ident, Option<LitStr>)>,
    pub choices: Option<Ident>,
    pub answer: Option<(Ident, AnswerMode)>,
    /// An attribute failed to parse: what it would have marked is unknown.
    pub malformed: bool,
}

fn lit_str(meta: &ParseNestedMeta) -> syn::Result<LitStr> {
    meta.value()?.parse()
}

fn lit_int(meta: &ParseNestedMeta) -> syn::Result<LitInt> {
    let v: LitInt = meta.value()?.parse()?;
    v.base10_parse::<usize>()?;
    Ok(v)
}

fn path_value(meta: &ParseNestedMeta, what: &str) -> syn::Result<Path> {
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Path(p) => Ok(p.path),
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected a function path for `{what}`, e.g. `{what} = my_fn` or `{what} = Self::method`"),
        )),
    }
}

fn func_value(meta: &ParseNestedMeta, what: &str) -> syn::Result<Func> {
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Path(p) => Ok(Func::Path(p.path)),
        Expr::Field(syn::ExprField {
            base,
            member: syn::Member::Named(name),
            ..
        }) if matches!(&*base, Expr::Path(p) if p.path.is_ident("self")) => Ok(Func::Method(name)),
        Expr::Call(call) => match (&*call.func, call.args.first()) {
            (Expr::Path(p), Some(Expr::Lit(ExprLit { lit: Lit::Str(s), .. })))
                if p.path.is_ident("regex") && call.args.len() == 1 =>
            {
                if let Err(e) = regex::Regex::new(&s.value()) {
                    return Err(syn::Error::new_spanned(s, format!("invalid regex: {e}")));
                }
                Ok(Func::Regex(s.clone()))
            }
            _ => Err(syn::Error::new_spanned(
                call,
                format!("expected a function path or `regex(\"...\")` for `{what}`"),
            )),
        },
        other => Err(syn::Error::new_spanned(
            other,
            format!("expected a function path for `{what}`, e.g. `{what} = my_fn` or `{what} = self.method`"),
        )),
    }
}

impl Container {
    pub fn from_ast(cx: &Ctxt, input: &syn::DeriveInput) -> Self {
        let mut c = Container {
            name: Attr::none("name"),
            kind: Attr::none("kind"),
            metrics: Attr::none("metrics"),
            roles: vec![],
            choices: Attr::none("choices"),
            answer: Attr::none("answer"),
            contexts: Attr::none("contexts"),
            extra_metrics: Attr::none("extra_metrics"),
            delimiter: Attr::none("delimiter"),
            description: Attr::none("description"),
            num_fewshot: Attr::none("num_fewshot"),
            max_new_tokens: Attr::none("max_new_tokens"),
            stop: Attr::none("stop"),
            clean: Attr::none("clean"),
            check: Attr::none("check"),
            score: Attr::none("score"),
            batch_size: Attr::none("batch_size"),
            chunk_size: Attr::none("chunk_size"),
            limit: Attr::none("limit"),
            krate: Attr::none("crate"),
            malformed: false,
        };
        for attr in input.attrs.iter().filter(|a| a.path().is_ident("eval")) {
            let r = attr.parse_nested_meta(|meta| {
                let Some(id) = meta.path.get_ident().cloned() else {
                    return Err(meta.error("expected an attribute name"));
                };
                let key = id.to_string();
                // One list of the names (which the suggestions for an unknown one come from):
                // a name is refused here unless listed, and every listed name has its arm below
                // (a unit test parses each).
                if !STRUCT_ATTRIBUTES.contains(&key.as_str()) && !TEXT_ROLES.contains(&key.as_str()) {
                    return Err(syn::Error::new_spanned(&id, unknown_struct_attribute(&key)));
                }
                match key.as_str() {
                    "name" => c.name.set(cx, &id, lit_str(&meta)?),
                    "kind" => {
                        let value = meta.value()?;
                        if let Ok(quoted) = value.parse::<LitStr>() {
                            return Err(syn::Error::new_spanned(
                                &quoted,
                                format!("kind takes a name, not a string: kind = {}", quoted.value()),
                            ));
                        }
                        let v: Ident = value.parse()?;
                        c.kind.set(cx, &id, v)
                    }
                    "metrics" => {
                        let content;
                        syn::parenthesized!(content in meta.input);
                        let mut v = vec![];
                        while !content.is_empty() {
                            let look = content.lookahead1();
                            if look.peek(LitStr) {
                                v.push(content.parse::<LitStr>()?);
                            } else if look.peek(Ident) {
                                let m: Ident = content.parse()?;
                                v.push(LitStr::new(&m.to_string(), m.span()));
                            } else {
                                return Err(look.error());
                            }
                            if !content.is_empty() {
                                content.parse::<syn::Token![,]>()?;
                            }
                        }
                        c.metrics.set(cx, &id, v)
                    }
                    "choices" => c.choices.set(cx, &id, path_value(&meta, "choices")?),
                    "answer" => {
                        let path = path_value(&meta, "answer")?;
                        // The field forms, written on the struct: rustc would only say it finds
                        // no function `letter`.
                        if let Some(form) = ["letter", "text"].into_iter().find(|f| path.is_ident(f)) {
                            return Err(syn::Error::new_spanned(
                                &path,
                                format!(
                                    "`answer = {form}` is a field attribute: put #[eval(answer = {form})] on the answer field (on the struct, `answer = ...` names a method that returns the index, e.g. `answer = Self::label`)"
                                ),
                            ));
                        }
                        c.answer.set(cx, &id, path)
                    }
                    "contexts" => c.contexts.set(cx, &id, path_value(&meta, "contexts")?),
                    "extra_metrics" => c.extra_metrics.set(cx, &id, path_value(&meta, "extra_metrics")?),
                    "delimiter" => c.delimiter.set(cx, &id, lit_str(&meta)?),
                    "description" => c.description.set(cx, &id, lit_str(&meta)?),
                    "num_fewshot" => c.num_fewshot.set(cx, &id, lit_int(&meta)?),
                    "max_new_tokens" => c.max_new_tokens.set(cx, &id, lit_int(&meta)?),
                    "stop" => {
                        let mut v = vec![];
                        if meta.input.peek(syn::Token![=]) {
                            v.push(lit_str(&meta)?);
                        } else {
                            let content;
                            syn::parenthesized!(content in meta.input);
                            let list =
                                content.parse_terminated(<LitStr as syn::parse::Parse>::parse, syn::Token![,])?;
                            v.extend(list);
                        }
                        c.stop.set(cx, &id, v)
                    }
                    "clean" => c.clean.set(cx, &id, func_value(&meta, "clean")?),
                    "check" => c.check.set(cx, &id, func_value(&meta, "check")?),
                    "score" => c.score.set(cx, &id, func_value(&meta, "score")?),
                    "batch_size" => c.batch_size.set(cx, &id, lit_int(&meta)?),
                    "chunk_size" => c.chunk_size.set(cx, &id, lit_int(&meta)?),
                    "limit" => c.limit.set(cx, &id, lit_int(&meta)?),
                    "crate" => c.krate.set(cx, &id, path_value(&meta, "crate")?),
                    k if TEXT_ROLES.contains(&k) => {
                        let expr: Expr = meta.value()?.parse()?;
                        let src = match expr {
                            Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) => Source::Template(s),
                            Expr::Path(p) => Source::Method(p.path),
                            other => {
                                return Err(syn::Error::new_spanned(
                                    other,
                                    format!("expected a template string or a method path for `{k}`"),
                                ))
                            }
                        };
                        if c.roles.iter().any(|(r, _, _)| r == k) {
                            cx.error_spanned_by(&id, format!("duplicate #[eval({k})] attribute"));
                        } else {
                            c.roles.push((key, id, src));
                        }
                    }
                    listed => unreachable!("STRUCT_ATTRIBUTES lists `{listed}`, which has no arm here"),
                }
                Ok(())
            });
            if let Err(e) = r {
                cx.syn_error(e);
                c.malformed = true;
            }
        }
        c
    }
}

/// The struct-level attributes (besides the text roles): the parser takes these names and no
/// others.
const STRUCT_ATTRIBUTES: &[&str] = &[
    "name",
    "kind",
    "metrics",
    "choices",
    "answer",
    "contexts",
    "extra_metrics",
    "delimiter",
    "description",
    "num_fewshot",
    "max_new_tokens",
    "stop",
    "clean",
    "check",
    "score",
    "batch_size",
    "chunk_size",
    "limit",
    "crate",
];

/// The error for an unknown struct attribute: the one it likely meant, else every name. The
/// likely one is the longest known name the key contains (`target_delimiter` holds
/// `delimiter`), else the shortest that contains the key (`metric` → `metrics`, not
/// `extra_metrics`), where exactly one is.
fn unknown_struct_attribute(key: &str) -> String {
    let known = || STRUCT_ATTRIBUTES.iter().chain(TEXT_ROLES).copied();
    let pick = |names: Vec<&'static str>, longest: bool| -> Option<&'static str> {
        let len = if longest {
            names.iter().map(|k| k.len()).max()
        } else {
            names.iter().map(|k| k.len()).min()
        }?;
        match names.iter().filter(|k| k.len() == len).collect::<Vec<_>>().as_slice() {
            [one] => Some(**one),
            _ => None,
        }
    };
    let contained = known().filter(|k| key.contains(k)).collect();
    let containing = known().filter(|k| k.contains(key)).collect();
    let likely = (key.len() > 2)
        .then(|| pick(contained, true).or_else(|| pick(containing, false)))
        .flatten();
    match likely {
        Some(one) => format!("unknown eval attribute `{key}`: did you mean `{one}`?"),
        _ => format!(
            "unknown eval attribute `{key}` (the struct takes {})",
            known().collect::<Vec<_>>().join(", ")
        ),
    }
}

impl FieldAttrs {
    pub fn from_field(cx: &Ctxt, field: &syn::Field) -> Self {
        let mut f = FieldAttrs {
            roles: vec![],
            choices: None,
            answer: None,
            malformed: false,
        };
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("eval")) {
            let r = attr.parse_nested_meta(|meta| {
                let Some(id) = meta.path.get_ident().cloned() else {
                    return Err(meta.error("expected an attribute name"));
                };
                let key = id.to_string();
                match key.as_str() {
                    "choices" => {
                        if f.choices.replace(id.clone()).is_some() {
                            cx.error_spanned_by(&id, "duplicate #[eval(choices)] attribute");
                        }
                    }
                    "answer" => {
                        let mode = if meta.input.peek(syn::Token![=]) {
                            let m: Ident = meta.value()?.parse()?;
                            match m.to_string().as_str() {
                                "index" => AnswerMode::Index,
                                "letter" => AnswerMode::Letter,
                                "text" => AnswerMode::Text,
                                other => {
                                    return Err(syn::Error::new_spanned(
                                        &m,
                                        format!("unknown answer form `{other}` (index, letter or text)"),
                                    ))
                                }
                            }
                        } else {
                            AnswerMode::Auto
                        };
                        if f.answer.replace((id.clone(), mode)).is_some() {
                            cx.error_spanned_by(&id, "duplicate #[eval(answer)] attribute");
                        }
                    }
                    k if TEXT_ROLES.contains(&k) => {
                        let template = if meta.input.peek(syn::Token![=]) {
                            Some(lit_str(&meta)?)
                        } else {
                            None
                        };
                        if f.roles.iter().any(|(r, _, _)| r == k) {
                            cx.error_spanned_by(&id, format!("duplicate #[eval({k})] attribute"));
                        } else {
                            f.roles.push((key, id, template));
                        }
                    }
                    _ => {
                        return Err(syn::Error::new_spanned(
                            &id,
                            format!("unknown eval field attribute `{key}`"),
                        ))
                    }
                }
                Ok(())
            });
            if let Err(e) = r {
                cx.syn_error(e);
                f.malformed = true;
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names an unknown attribute's suggestion comes from are the ones the parser takes:
    /// it refuses any other, and each listed one reaches its arm (an unlisted arm would be
    /// unreachable; a listed name without one would panic here).
    #[test]
    fn every_listed_struct_attribute_is_parsed() {
        let errors = |key: &str| {
            let input: syn::DeriveInput =
                syn::parse_str(&format!("#[eval({key} = 0)] struct S;")).expect("parses as an item");
            let cx = Ctxt::new();
            let _ = Container::from_ast(&cx, &input);
            cx.check().err().map(|e| e.to_string()).unwrap_or_default()
        };
        for key in STRUCT_ATTRIBUTES.iter().chain(TEXT_ROLES) {
            assert!(
                !errors(key).contains("unknown eval attribute"),
                "{key}: {}",
                errors(key)
            );
        }
        assert!(errors("metric").contains("did you mean `metrics`?"));
    }
}
