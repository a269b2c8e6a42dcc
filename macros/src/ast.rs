//! A borrowing IR of the derive input: the struct's named fields with their parsed attributes,
//! each keeping the original `syn::Field` for spans.

use crate::attr::{Container, FieldAttrs};
use crate::ctxt::Ctxt;

pub struct Input<'a> {
    pub original: &'a syn::DeriveInput,
    pub attrs: Container,
    pub fields: Vec<Field<'a>>,
}

pub struct Field<'a> {
    pub original: &'a syn::Field,
    pub ident: syn::Ident,
    pub attrs: FieldAttrs,
}

impl<'a> Input<'a> {
    /// `None` (with an error recorded) for anything but a struct with named fields.
    pub fn from_syn(cx: &Ctxt, input: &'a syn::DeriveInput) -> Option<Self> {
        let attrs = Container::from_ast(cx, input);
        let fields = match &input.data {
            syn::Data::Struct(s) => match &s.fields {
                syn::Fields::Named(named) => named
                    .named
                    .iter()
                    .map(|f| Field {
                        original: f,
                        ident: f.ident.clone().expect("named field"),
                        attrs: FieldAttrs::from_field(cx, f),
                    })
                    .collect(),
                syn::Fields::Unnamed(_) => {
                    cx.error_spanned_by(
                        &input.ident,
                        "#[derive(Evaluation)] needs a struct with named fields; tuple structs are not supported",
                    );
                    return None;
                }
                syn::Fields::Unit => {
                    cx.error_spanned_by(
                        &input.ident,
                        "#[derive(Evaluation)] needs a struct with named fields; a unit struct has no data",
                    );
                    return None;
                }
            },
            syn::Data::Enum(e) => {
                cx.error_spanned_by(
                    e.enum_token,
                    "#[derive(Evaluation)] is for structs (one value per dataset row), not enums",
                );
                return None;
            }
            syn::Data::Union(u) => {
                cx.error_spanned_by(u.union_token, "#[derive(Evaluation)] is for structs, not unions");
                return None;
            }
        };
        Some(Input {
            original: input,
            attrs,
            fields,
        })
    }
}
