//! Code generation: the only place with `quote!`. Emits the kind's row-trait impl and the
//! `Benchmark` impl inside `const _: () = { ... };`, with fully qualified paths; on errors, the
//! `compile_error!`s plus a stub `Benchmark` impl so no secondary errors follow.

use crate::ast::Input;
use crate::attr::{AnswerMode, Func};
use crate::ctxt::Ctxt;
use crate::valid::{validate, Kind, ListSrc, Piece, Spec, Text};
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

/// The path of evalkit-core as the user's crate sees it.
fn krate(input: &Input) -> TokenStream {
    if let Some(p) = input.attrs.krate.get() {
        return quote!(#p);
    }
    use proc_macro_crate::{crate_name, FoundCrate};
    match crate_name("evalkit") {
        Ok(FoundCrate::Itself) => return quote!(::evalkit::core),
        Ok(FoundCrate::Name(n)) => {
            let id = format_ident!("{}", n);
            return quote!(::#id::core);
        }
        Err(_) => {}
    }
    match crate_name("evalkit-core") {
        Ok(FoundCrate::Name(n)) => {
            let id = format_ident!("{}", n);
            quote!(::#id)
        }
        _ => quote!(::evalkit_core),
    }
}

pub fn derive(node: &syn::DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let parsed = Input::from_syn(&cx, node);
    let spec = parsed.as_ref().and_then(|input| validate(&cx, input));
    match (cx.check(), parsed, spec) {
        (Ok(()), Some(input), Some(spec)) => expand(&input, &spec),
        (Err(e), parsed, _) => {
            let k = parsed.as_ref().map(krate).unwrap_or_else(|| quote!(::evalkit_core));
            let errors = e.to_compile_error();
            let stub = fallback(node, &k);
            quote! { #errors #stub }
        }
        _ => syn::Error::new_spanned(&node.ident, "invalid #[derive(Evaluation)] input").to_compile_error(),
    }
}

/// A stub `Benchmark` impl emitted next to errors, so uses of the type raise no more errors.
fn fallback(node: &syn::DeriveInput, k: &TokenStream) -> TokenStream {
    if !matches!(node.data, syn::Data::Struct(_)) || !node.generics.params.is_empty() {
        return quote!();
    }
    let ident = &node.ident;
    quote! {
        const _: () = {
            #[automatically_derived]
            impl #k::__private::Benchmark for #ident {
                const NAME: &'static str = "";
                const KIND: #k::__private::TaskKind = #k::__private::TaskKind::MultipleChoice;
                const METRICS: &'static [&'static str] = &[];
                fn example(&self) -> #k::__private::Result<(#k::__private::String, #k::__private::String), #k::__private::RowError> {
                    ::core::unreachable!()
                }
                fn evaluation(_: #k::__private::String, _: #k::__private::Vec<Self>, _: #k::__private::Option<#k::__private::FewShot>) -> #k::__private::Box<dyn #k::__private::Evaluation> {
                    ::core::unreachable!()
                }
            }
        };
    }
}

fn text(t: &Text, k: &TokenStream) -> TokenStream {
    match t {
        Text::Field(f) => quote_spanned!(f.span()=> #k::__private::RoleText::role_text(&self.#f)),
        Text::Method(p) => quote_spanned!(p.span()=> #k::__private::MethodText::method_text(#p(self))),
        Text::Template(pieces) => {
            let mut fmt = String::new();
            let mut args = vec![];
            for p in pieces {
                match p {
                    Piece::Lit(s) => fmt.push_str(&s.replace('{', "{{").replace('}', "}}")),
                    Piece::Field(f) => {
                        fmt.push_str("{}");
                        args.push(quote_spanned!(f.span()=> self.#f));
                    }
                }
            }
            quote!(::std::format!(#fmt #(, #args)*))
        }
    }
}

fn role(spec: &Spec, name: &str, k: &TokenStream) -> TokenStream {
    spec.roles
        .get(name)
        .map(|t| text(t, k))
        .unwrap_or_else(|| quote!(#k::__private::String::new()))
}

fn clean_fn(f: &Func, k: &TokenStream, arg: TokenStream) -> TokenStream {
    const BUILTIN: &[&str] = &[
        "trim",
        "identity",
        "first_number",
        "last_number",
        "normalize_number",
        "gsm8k_strict",
        "gsm8k_flexible",
    ];
    // A function's return value reaches `String` through `CleanedText`, whose error names
    // `clean` where a function returns something else.
    match f {
        Func::Path(p) if p.get_ident().is_some_and(|i| BUILTIN.contains(&i.to_string().as_str())) => {
            quote_spanned!(p.span()=> #k::__private::builtins::#p(#arg))
        }
        Func::Method(m) => quote_spanned!(m.span()=> #k::__private::CleanedText::cleaned_text(self.#m(#arg))),
        Func::Path(p) => quote_spanned!(p.span()=> #k::__private::CleanedText::cleaned_text(#p(#arg))),
        Func::Regex(lit) => quote! {{
            static RE: #k::__private::OnceLock<#k::__private::Regex> = #k::__private::OnceLock::new();
            #k::__private::builtins::regex_extract(RE.get_or_init(|| #k::__private::Regex::new(#lit).expect("regex validated at compile time")), #arg)
        }},
    }
}

fn check_fn(f: &Func, k: &TokenStream) -> TokenStream {
    const BUILTIN: &[&str] = &["exact_match", "trimmed_match", "number_match"];
    match f {
        Func::Path(p) if p.get_ident().is_some_and(|i| BUILTIN.contains(&i.to_string().as_str())) => {
            quote_spanned!(p.span()=> #k::__private::builtins::#p(target, cleaned))
        }
        Func::Method(m) => quote_spanned!(m.span()=> self.#m(target, cleaned)),
        Func::Path(p) => quote_spanned!(p.span()=> #p(target, cleaned)),
        Func::Regex(lit) => {
            quote_spanned!(lit.span()=> ::core::compile_error!("`check` takes a function path, not a regex"))
        }
    }
}

fn opt(v: &Option<syn::LitInt>) -> TokenStream {
    match v {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    }
}

fn expand(input: &Input, spec: &Spec) -> TokenStream {
    let k = krate(input);
    let ident = &input.original.ident;
    let mut generics = input.original.generics.clone();
    let type_params: Vec<syn::Ident> = generics.type_params().map(|t| t.ident.clone()).collect();
    {
        let wc = generics.make_where_clause();
        for t in &type_params {
            wc.predicates.push(syn::parse_quote!(#t: 'static));
        }
    }
    let (impl_g, ty_g, where_c) = generics.split_for_impl();
    let p = quote!(#k::__private);
    let name = &spec.name;
    let metrics = &spec.metrics;
    let (bs, cs, lim) = (opt(&spec.batch_size), opt(&spec.chunk_size), opt(&spec.limit));
    let delim = &spec.delimiter;
    let description = &spec.description;
    let num_fewshot = match &spec.num_fewshot {
        Some(n) => quote!(#n),
        None => quote!(0),
    };

    let (kind_impl, kind_ident, task, example) = match spec.kind {
        Kind::MultipleChoice => {
            let answer = match spec.answer.as_ref().expect("validated") {
                (ListSrc::Field(f), AnswerMode::Letter) => {
                    quote_spanned!(f.span()=> #p::answer_letter(&#p::AnswerLetter::letter(&self.#f), &__choices))
                }
                (ListSrc::Field(f), AnswerMode::Text) => {
                    quote_spanned!(f.span()=> #p::answer_text(#p::AnswerText::text(&self.#f), &__choices))
                }
                (ListSrc::Field(f), _) => {
                    quote_spanned!(f.span()=> #p::AnswerIndex::answer_index(&self.#f, &__choices))
                }
                (ListSrc::Method(m), _) => {
                    quote_spanned!(m.span()=> #p::AnswerIndex::answer_index(&#m(self), &__choices))
                }
            };
            let extra = spec.extra_metrics.as_ref().map(|m| {
                quote_spanned! {m.span()=>
                    fn extra_metrics(&self, item: &#p::McItem, loglikelihoods: &[f64]) -> #p::Vec<(&'static str, f64)> {
                        #m(self, item, loglikelihoods)
                    }
                }
            });
            let (body, item, example) = match &spec.contexts {
                // Partial scoring: the contexts are the choices; one continuation after each.
                Some(m) => {
                    let cont = role(spec, "continuation", &k);
                    let contexts = quote_spanned!(m.span()=> #p::IntoRowResult::into_row_result(#m(self)));
                    (
                        quote! {
                            let __choices: #p::Vec<#p::String> = #contexts?;
                            let __continuation: #p::String = #cont;
                            let __answer: usize = #answer?;
                        },
                        quote!(#p::McItem::partial_with_delimiter(&__choices, &__continuation, __answer, #delim)),
                        quote!(#p::ToString::to_string(__continuation.trim_start())),
                    )
                }
                None => {
                    let context = role(spec, "context", &k);
                    let choices = match spec.choices.as_ref().expect("validated") {
                        ListSrc::Field(f) => quote_spanned!(f.span()=> #p::to_choices(&self.#f)),
                        ListSrc::Method(m) => quote_spanned!(m.span()=> #p::to_choices(&#m(self))),
                    };
                    (
                        quote! {
                            let __context: #p::String = #context;
                            let __choices: #p::Vec<#p::String> = #choices;
                            let __answer: usize = #answer?;
                        },
                        quote!(#p::McItem::shared_with_delimiter(__context, &__choices, __answer, #delim)),
                        quote!(__right),
                    )
                }
            };
            let example_context = if spec.contexts.is_some() {
                quote!(__right)
            } else {
                quote!(__context)
            };
            (
                quote! {
                    #[automatically_derived]
                    impl #impl_g #p::MultipleChoice for #ident #ty_g #where_c {
                        fn get(&self) -> #p::Result<#p::McItem, #p::RowError> {
                            #body
                            #p::Result::Ok(#item)
                        }
                        #extra
                    }
                },
                quote!(MultipleChoice),
                quote!(MultipleChoiceTask),
                quote! {
                    #body
                    let __right = __choices.get(__answer).cloned().ok_or_else(|| #p::RowError::new(::std::format!("answer index {} out of range for {} choices", __answer, __choices.len())))?;
                    #p::Result::Ok((#example_context, #example))
                },
            )
        }
        Kind::Loglikelihood => {
            let (context, cont) = (role(spec, "context", &k), role(spec, "continuation", &k));
            (
                quote! {
                    #[automatically_derived]
                    impl #impl_g #p::Loglikelihood for #ident #ty_g #where_c {
                        fn get(&self) -> #p::Result<#p::LlItem, #p::RowError> {
                            #p::Result::Ok(#p::LlItem { context: #context, continuation: #cont })
                        }
                    }
                },
                quote!(Loglikelihood),
                quote!(LoglikelihoodTask),
                quote!(#p::Result::Ok((#context, ::std::string::String::from(::std::convert::AsRef::<str>::as_ref(&(#cont)))))),
            )
        }
        Kind::Perplexity => {
            let t = role(spec, "text", &k);
            let count = match spec.roles.get("count_text") {
                Some(c) => {
                    let c = text(c, &k);
                    quote!(#p::Option::Some(#c))
                }
                None => quote!(#p::Option::None),
            };
            (
                quote! {
                    #[automatically_derived]
                    impl #impl_g #p::Perplexity for #ident #ty_g #where_c {
                        fn get(&self) -> #p::Result<#p::PplItem, #p::RowError> {
                            #p::Result::Ok(#p::PplItem { text: #t, count_text: #count })
                        }
                    }
                },
                quote!(Perplexity),
                quote!(PerplexityTask),
                quote!(#p::Result::Ok((#t, #p::String::new()))),
            )
        }
        Kind::NextToken => {
            let t = role(spec, "text", &k);
            let clean = spec.clean.as_ref().map(|f| {
                let call = clean_fn(f, &k, quote!(prediction));
                quote!(fn clean(&self, prediction: &str) -> #p::String { #call })
            });
            let check = spec.check.as_ref().map(|f| {
                let call = check_fn(f, &k);
                quote!(fn check(&self, target: &str, cleaned: &str) -> bool { #call })
            });
            (
                quote! {
                    #[automatically_derived]
                    impl #impl_g #p::NextToken for #ident #ty_g #where_c {
                        fn get(&self) -> #p::Result<#p::String, #p::RowError> {
                            #p::Result::Ok(#t)
                        }
                        #clean
                        #check
                    }
                },
                quote!(NextToken),
                quote!(NextTokenTask),
                quote!(#p::Result::Ok((#t, #p::String::new()))),
            )
        }
        Kind::Generate => {
            let (prompt, target) = (role(spec, "prompt", &k), role(spec, "target", &k));
            let n = spec.max_new_tokens.as_ref().expect("validated");
            let stop = &spec.stop;
            let clean = spec.clean.as_ref().map(|f| {
                let call = clean_fn(f, &k, quote!(generated));
                quote!(fn clean(&self, generated: &str) -> #p::String { #call })
            });
            let check = spec.check.as_ref().map(|f| {
                let call = check_fn(f, &k);
                quote!(fn check(&self, target: &str, cleaned: &str) -> bool { #call })
            });
            let score = spec.score.as_ref().map(|f| {
                let call = match f {
                    Func::Method(m) => quote_spanned!(m.span()=> self.#m(target, cleaned)),
                    Func::Path(path) => quote_spanned!(path.span()=> #path(target, cleaned)),
                    Func::Regex(lit) => quote_spanned!(lit.span()=> ::core::compile_error!("`score` takes a function path, not a regex")),
                };
                quote!(fn score(&self, target: &str, cleaned: &str) -> #p::Vec<(#p::String, f64)> { #call })
            });
            (
                quote! {
                    #[automatically_derived]
                    impl #impl_g #p::Generate for #ident #ty_g #where_c {
                        fn max_new_tokens() -> usize { #n }
                        fn stop() -> #p::Vec<#p::String> { ::std::vec![#(#p::String::from(#stop)),*] }
                        fn get(&self) -> #p::Result<#p::GenItem, #p::RowError> {
                            #p::Result::Ok(#p::GenItem { prompt: #prompt, target: #target })
                        }
                        #clean
                        #check
                        #score
                    }
                },
                quote!(Generate),
                quote!(GenerateTask),
                quote!(#p::Result::Ok((#prompt, #target))),
            )
        }
    };
    quote! {
        const _: () = {
            #kind_impl

            #[automatically_derived]
            impl #impl_g #p::Benchmark for #ident #ty_g #where_c {
                const NAME: &'static str = #name;
                const KIND: #p::TaskKind = #p::TaskKind::#kind_ident;
                const METRICS: &'static [&'static str] = &[#(#metrics),*];
                const DELIMITER: &'static str = #delim;
                const DESCRIPTION: &'static str = #description;
                const NUM_FEWSHOT: usize = #num_fewshot;
                fn defaults() -> #p::Defaults {
                    #p::Defaults { batch_size: #bs, chunk_size: #cs, limit: #lim }
                }
                fn example(&self) -> #p::Result<(#p::String, #p::String), #p::RowError> {
                    #example
                }
                fn evaluation(name: #p::String, rows: #p::Vec<Self>, fewshot: #p::Option<#p::FewShot>) -> #p::Box<dyn #p::Evaluation> {
                    let mut task = #p::#task::new(name, rows);
                    task.defaults = <Self as #p::Benchmark>::defaults();
                    task.fewshot = fewshot;
                    #p::Box::new(task)
                }
            }
        };
    }
}
