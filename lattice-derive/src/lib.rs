//! `#[derive(Lattice)]`, re-exported by `lattice-core` as `lattice_core::Lattice` (feature
//! `derive`, on by default). See the documentation of that re-export for the attributes and
//! examples; this crate is an implementation detail.
//!
//! The macro works in phases, each in its own module: `ast` reads the input into a small
//! model that keeps the original tokens for spans, `attr` parses `#[lattice(...)]`,
//! `valid` checks what can only be checked once everything is parsed, and `expand` writes
//! the impls with fully qualified paths. Every mistake becomes one spanned error, and a
//! fallback impl is emitted after an error so the user sees that error and not a cascade.
#![warn(missing_docs)]

mod ast;
mod attr;
mod expand;
mod valid;

use proc_macro::TokenStream;

/// Derives `lattice_core::Lattice` for a struct: the product lattice of its fields.
#[proc_macro_derive(Lattice, attributes(lattice))]
pub fn derive_lattice(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}
