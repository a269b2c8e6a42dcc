//! Rules across fields and attributes, resolving the input into a [`Spec`]: the kind, where
//! each role comes from, metrics that fit the kind, templates whose placeholders name fields,
//! answer and choices fields of usable types, and the generation settings.

use crate::ast::Input;
use crate::attr::{AnswerMode, Func, Source};
use crate::ctxt::Ctxt;
use proc_macro2::Span;
use std::collections::BTreeMap;
use syn::{Ident, LitInt, LitStr, Path};

/// The kinds and their metrics come from evalkit-spec, the table the engine reports from.
pub use evalkit_spec::{TaskKind as Kind, ALL_METRICS};

/// What the derive knows about a kind beyond the shared table.
trait KindRoles {
    fn name(self) -> &'static str;
    fn roles(self) -> (&'static [&'static str], &'static [&'static str]);
}

impl KindRoles for Kind {
    fn name(self) -> &'static str {
        self.as_str()
    }

    /// Roles the kind requires and roles it accepts.
    fn roles(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            Kind::MultipleChoice => (&["context"], &["context"]),
            Kind::Loglikelihood => (&["context", "continuation"], &["context", "continuation"]),
            Kind::Perplexity => (&["text"], &["text", "count_text"]),
            Kind::NextToken => (&["text"], &["text"]),
            Kind::Generate => (&["prompt", "target"], &["prompt", "target"]),
        }
    }
}

/// A template split into literal text and field placeholders.
pub enum Piece {
    Lit(String),
    Field(Ident),
}

pub enum Text {
    Field(Ident),
    Template(Vec<Piece>),
    Method(Path),
}

pub enum ListSrc {
    Field(Ident),
    Method(Path),
}

pub struct Spec {
    pub kind: Kind,
    pub name: String,
    pub metrics: Vec<String>,
    pub roles: BTreeMap<String, Text>,
    pub choices: Option<ListSrc>,
    pub contexts: Option<Path>,
    pub extra_metrics: Option<Path>,
    pub answer: Option<(ListSrc, AnswerMode)>,
    pub delimiter: String,
    pub description: String,
    pub num_fewshot: Option<LitInt>,
    pub max_new_tokens: Option<LitInt>,
    pub stop: Vec<LitStr>,
    pub clean: Option<Func>,
    pub check: Option<Func>,
    pub score: Option<Func>,
    pub batch_size: Option<LitInt>,
    pub chunk_size: Option<LitInt>,
    pub limit: Option<LitInt>,
}

/// Splits `"a {x} {{b}}"` into pieces; errors name the placeholder.
fn parse_template(cx: &Ctxt, lit: &LitStr, fields: &[Ident]) -> Vec<Piece> {
    let s = lit.value();
    let mut out = vec![];
    let mut buf = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                buf.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                buf.push('}');
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for d in chars.by_ref() {
                    if d == '}' {
                        closed = true;
                        break;
                    }
                    name.push(d);
                }
                if !closed {
                    cx.error_spanned_by(lit, "unclosed `{` in template (write `{{` for a literal brace)");
                    return out;
                }
                let name = name.trim();
                match fields.iter().find(|f| *f == name) {
                    Some(f) => {
                        if !buf.is_empty() {
                            out.push(Piece::Lit(std::mem::take(&mut buf)));
                        }
                        let mut id = f.clone();
                        id.set_span(lit.span());
                        out.push(Piece::Field(id));
                    }
                    None => cx.error_spanned_by(
                        lit,
                        format!(
                            "placeholder `{{{name}}}` names no field (fields: {})",
                            fields.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(", ")
                        ),
                    ),
                }
            }
            '}' => {
                cx.error_spanned_by(lit, "unmatched `}` in template (write `}}` for a literal brace)");
                return out;
            }
            _ => buf.push(c),
        }
    }
    if !buf.is_empty() {
        out.push(Piece::Lit(buf));
    }
    out
}

/// The field's name spanned at its type, so a type that does not fit the role (a trait
/// bound of the generated code) is reported at the type.
fn spanned_at_type(f: &crate::ast::Field) -> Ident {
    let mut id = f.ident.clone();
    id.set_span(syn::spanned::Spanned::span(&f.original.ty));
    id
}

pub fn validate(cx: &Ctxt, input: &Input) -> Option<Spec> {
    let a = &input.attrs;
    let struct_ident = &input.original.ident;
    for p in &input.original.generics.params {
        if let syn::GenericParam::Lifetime(l) = p {
            cx.error_spanned_by(l, "lifetime parameters are not supported: rows must own their data (an evaluation is a `Box<dyn Evaluation>`, which needs 'static)");
        }
    }
    // The parse error is the one to fix: the rest of that attribute was not read.
    if a.malformed {
        return None;
    }
    let kind = match a.kind.get() {
        None => {
            cx.error_spanned_by(
                struct_ident,
                "missing #[eval(kind = ...)]: one of multiple_choice, loglikelihood, perplexity, next_token, generate",
            );
            return None;
        }
        Some(k) => match Kind::from_name(&k.to_string()) {
            Some(kind) => kind,
            None => {
                cx.error_spanned_by(
                    k,
                    format!("unknown kind `{k}` (multiple_choice, loglikelihood, perplexity, next_token, generate)"),
                );
                return None;
            }
        },
    };
    let field_names: Vec<Ident> = input.fields.iter().map(|f| f.ident.clone()).collect();
    // Partial scoring (WinoGrande): one context per choice and a shared continuation.
    let partial = kind == Kind::MultipleChoice && a.contexts.get().is_some();
    let (required, accepted): (&[&str], &[&str]) = if partial {
        (&["continuation"], &["continuation"])
    } else {
        kind.roles()
    };
    for (attr, span) in [
        ("contexts", a.contexts.span()),
        ("extra_metrics", a.extra_metrics.span()),
    ] {
        if let (Some(s), true) = (span, kind != Kind::MultipleChoice) {
            cx.syn_error(syn::Error::new(
                s,
                format!("`{attr}` applies to kind multiple_choice only"),
            ));
        }
    }

    // What the kind takes, for errors: its text roles, and multiple choice's choices and answer.
    let uses = match (kind, partial) {
        (Kind::MultipleChoice, false) => format!("{}, choices and answer", accepted.join(", ")),
        (Kind::MultipleChoice, true) => format!("contexts, {} and answer", accepted.join(", ")),
        _ => accepted.join(", "),
    };
    // Roles: from the container (template or method) and from fields (verbatim or template).
    let mut roles: BTreeMap<String, Text> = BTreeMap::new();
    let mut role_spans: BTreeMap<String, Span> = BTreeMap::new();
    let mut add_role = |role: &str, id: &Ident, t: Text| {
        if !accepted.contains(&role) {
            cx.error_spanned_by(
                id,
                format!(
                    "`{role}` does not apply to kind {}{} (it uses {})",
                    kind.name(),
                    if partial { " with `contexts`" } else { "" },
                    uses
                ),
            );
        } else if roles.contains_key(role) {
            cx.error_spanned_by(
                id,
                format!("duplicate role `{role}`: it is already given at another field or on the struct"),
            );
        } else {
            role_spans.insert(role.to_string(), id.span());
            roles.insert(role.to_string(), t);
        }
    };
    for (role, id, src) in &a.roles {
        let t = match src {
            Source::Template(lit) => Text::Template(parse_template(cx, lit, &field_names)),
            Source::Method(p) => Text::Method(p.clone()),
        };
        add_role(role, id, t);
    }
    let mut choices: Option<ListSrc> = a.choices.get().map(|p| ListSrc::Method(p.clone()));
    let mut answer: Option<(ListSrc, AnswerMode)> =
        a.answer.get().map(|p| (ListSrc::Method(p.clone()), AnswerMode::Auto));
    for f in &input.fields {
        for (role, id, tpl) in &f.attrs.roles {
            let t = match tpl {
                Some(lit) => Text::Template(parse_template(cx, lit, &field_names)),
                None => Text::Field(f.ident.clone()),
            };
            add_role(role, id, t);
        }
        if let Some(id) = &f.attrs.choices {
            if partial {
                cx.error_spanned_by(
                    id,
                    "`choices` does not apply with `contexts`: in partial scoring the contexts are the choices",
                );
            } else if kind != Kind::MultipleChoice {
                cx.error_spanned_by(id, format!("`choices` does not apply to kind {}", kind.name()));
            } else if choices.is_some() {
                cx.error_spanned_by(
                    id,
                    "duplicate role `choices`: it is already given at another field or on the struct",
                );
            } else {
                choices = Some(ListSrc::Field(spanned_at_type(f)));
            }
        }
        if let Some((id, mode)) = &f.attrs.answer {
            if kind != Kind::MultipleChoice {
                cx.error_spanned_by(id, format!("`answer` does not apply to kind {}", kind.name()));
            } else if answer.is_some() {
                cx.error_spanned_by(
                    id,
                    "duplicate role `answer`: it is already given at another field or on the struct",
                );
            } else {
                answer = Some((ListSrc::Field(spanned_at_type(f)), *mode));
            }
        }
    }
    // A field attribute that did not parse may have been the one missing: its error says so.
    let unread = input.fields.iter().any(|f| f.attrs.malformed);
    for r in required.iter().filter(|_| !unread) {
        if !roles.contains_key(*r) {
            cx.error_spanned_by(struct_ident, format!("kind {} needs a `{r}`: mark a field #[eval({r})] or give #[eval({r} = \"template\")] on the struct", kind.name()));
        }
    }
    if let (true, Some((ListSrc::Field(f), AnswerMode::Text))) = (partial, &answer) {
        cx.error_spanned_by(
            f,
            "`answer = text` does not apply with `contexts`: the choices are whole contexts; give the answer's index (or `answer = Self::method`)",
        );
    }
    if let (true, Some(p)) = (partial, a.choices.get()) {
        cx.error_spanned_by(
            p,
            "`choices` does not apply with `contexts`: in partial scoring the contexts are the choices",
        );
    }
    if kind == Kind::MultipleChoice && !unread {
        if choices.is_none() && !partial {
            cx.error_spanned_by(
                struct_ident,
                "kind multiple_choice needs a choices field: mark one #[eval(choices)]",
            );
        }
        if answer.is_none() {
            cx.error_spanned_by(
                struct_ident,
                "kind multiple_choice needs an answer field: mark one #[eval(answer)]",
            );
        }
    }
    // Metrics.
    let mut metrics = vec![];
    if let Some(list) = a.metrics.get() {
        for m in list {
            let name = m.value();
            // A `score` defines its own names; `extra_metrics` adds names beside the kind's,
            // but a standard metric of another kind is still a mistake.
            let own = (kind == Kind::Generate && a.score.get().is_some())
                || (kind == Kind::MultipleChoice
                    && a.extra_metrics.get().is_some()
                    && !ALL_METRICS.contains(&name.as_str()));
            if kind.metrics().contains(&name.as_str()) || own {
                metrics.push(name);
            } else if ALL_METRICS.contains(&name.as_str()) {
                cx.error_spanned_by(
                    m,
                    format!(
                        "metric `{name}` does not fit kind {} (it reports {})",
                        kind.name(),
                        kind.metrics().join(", ")
                    ),
                );
            } else {
                cx.error_spanned_by(
                    m,
                    format!(
                        "unknown metric `{name}` (kind {} reports {})",
                        kind.name(),
                        kind.metrics().join(", ")
                    ),
                );
            }
        }
    }
    // Unnamed, the kind's own metrics are highlighted, unless a hook may replace them (a
    // `score` defines its own names; an `extra_metrics` returning `acc` keeps only that): then
    // nothing is, as the hook's names are known only when rows are scored.
    if metrics.is_empty() && a.score.get().is_none() && a.extra_metrics.get().is_none() {
        metrics = kind.metrics().iter().map(|s| s.to_string()).collect();
    }
    // Generation settings.
    let gen_only = |span: Option<Span>, what: &str| {
        if let Some(s) = span {
            if kind != Kind::Generate && !(kind == Kind::NextToken && (what == "clean" || what == "check")) {
                cx.syn_error(syn::Error::new(
                    s,
                    format!("`{what}` does not apply to kind {}", kind.name()),
                ));
            }
        }
    };
    gen_only(a.max_new_tokens.span(), "max_new_tokens");
    gen_only(a.stop.span(), "stop");
    gen_only(a.clean.span(), "clean");
    gen_only(a.check.span(), "check");
    gen_only(a.score.span(), "score");
    if kind == Kind::Generate {
        match a.max_new_tokens.get() {
            None => cx.error_spanned_by(
                struct_ident,
                "kind generate needs #[eval(max_new_tokens = N)]: there is no sensible default",
            ),
            Some(n) if n.base10_parse::<usize>().ok() == Some(0) => {
                cx.error_spanned_by(n, "max_new_tokens must be at least 1")
            }
            _ => {}
        }
    }
    for (attr, n) in [("batch_size", a.batch_size.get()), ("chunk_size", a.chunk_size.get())] {
        if let Some(n) = n.filter(|n| n.base10_parse::<usize>().ok() == Some(0)) {
            cx.error_spanned_by(n, format!("{attr} must be at least 1"));
        }
    }
    if matches!(kind, Kind::Perplexity | Kind::NextToken) {
        for (attr, span) in [
            ("description", a.description.span()),
            ("num_fewshot", a.num_fewshot.span()),
        ] {
            if let Some(s) = span {
                cx.syn_error(syn::Error::new(
                    s,
                    format!(
                        "`{attr}` does not apply to kind {}: it scores whole texts, with no context to prefix",
                        kind.name()
                    ),
                ));
            }
        }
    }
    if let Some(stops) = a.stop.get() {
        for s in stops.iter().filter(|s| s.value().is_empty()) {
            cx.error_spanned_by(
                s,
                "an empty stop string would end every generation before its first token",
            );
        }
    }
    if let Some(name) = a.name.get() {
        if let Some(problem) = evalkit_spec::name_problem(&name.value()) {
            cx.error_spanned_by(name, format!("invalid evaluation name: {problem}"));
        }
    }
    if a.delimiter.get().is_some() && kind != Kind::MultipleChoice {
        cx.syn_error(syn::Error::new(
            a.delimiter.span().expect("set"),
            "`delimiter` applies to kind multiple_choice only",
        ));
    }
    Some(Spec {
        kind,
        name: a
            .name
            .get()
            .map(LitStr::value)
            .unwrap_or_else(|| to_snake(&struct_ident.to_string())),
        metrics,
        roles,
        choices,
        contexts: a.contexts.get().cloned(),
        extra_metrics: a.extra_metrics.get().cloned(),
        answer,
        delimiter: a.delimiter.get().map(LitStr::value).unwrap_or_else(|| " ".into()),
        description: a.description.get().map(LitStr::value).unwrap_or_default(),
        num_fewshot: a.num_fewshot.get().cloned(),
        max_new_tokens: a.max_new_tokens.get().cloned(),
        stop: a.stop.get().cloned().unwrap_or_default(),
        clean: a.clean.get().cloned(),
        check: a.check.get().cloned(),
        score: a.score.get().cloned(),
        batch_size: a.batch_size.get().cloned(),
        chunk_size: a.chunk_size.get().cloned(),
        limit: a.limit.get().cloned(),
    })
}

fn to_snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
