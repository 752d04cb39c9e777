//! `#[lattice(...)]` attributes on the struct and on fields.

use syn::{Attribute, LitStr, Path, WherePredicate, punctuated::Punctuated, token::Comma};

/// Attributes on the struct itself.
#[derive(Default)]
pub struct Container {
    /// `crate = "path"`: where lattice-core is, when it was renamed.
    pub crate_path: Option<Path>,
    /// `bound = "T: Trait, ..."`: replaces the inferred where-clause.
    pub bound: Option<Punctuated<WherePredicate, Comma>>,
    /// `arbitrary`: also derive the proptest/quickcheck generators (when those features are on).
    pub arbitrary: bool,
}

/// Attributes on one field.
#[derive(Default)]
pub struct Field {
    /// `dominating`: the struct is ordered lexicographically by this field first.
    pub dominating: Option<proc_macro2::Span>,
}

const CONTAINER_KEYS: &str = "`crate = \"path\"`, `bound = \"T: Trait\"` or `arbitrary`";

/// Parses every `#[lattice(...)]` on the struct. Other attributes are ignored.
pub fn container(attrs: &[Attribute]) -> syn::Result<Container> {
    let mut out = Container::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("lattice")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let value = meta.value().map_err(|_| {
                    meta.error("expected `crate = \"path\"`, e.g. `#[lattice(crate = \"my_lattices\")]`")
                })?;
                let lit: LitStr = value.parse()?;
                if out.crate_path.is_some() {
                    return Err(syn::Error::new(lit.span(), "duplicate `crate` attribute"));
                }
                out.crate_path = Some(lit.parse().map_err(|_| {
                    syn::Error::new(lit.span(), "`crate` must be a path, such as \"lattice_core\" or \"::my::reexport\"")
                })?);
                Ok(())
            } else if meta.path.is_ident("bound") {
                let value = meta.value().map_err(|_| {
                    meta.error("expected `bound = \"T: Lattice\"` (the where-clause to use instead of the inferred one)")
                })?;
                let lit: LitStr = value.parse()?;
                let predicates = lit
                    .parse_with(Punctuated::<WherePredicate, Comma>::parse_terminated)
                    .map_err(|e| syn::Error::new(lit.span(), format!("`bound` must hold where-clause predicates: {e}")))?;
                out.bound = Some(predicates);
                Ok(())
            } else if meta.path.is_ident("arbitrary") {
                if meta.input.peek(syn::Token![=]) {
                    return Err(meta.error("`arbitrary` takes no value: write `#[lattice(arbitrary)]`"));
                }
                out.arbitrary = true;
                Ok(())
            } else if meta.path.is_ident("dominating") {
                Err(meta.error("`dominating` belongs on a field, not on the struct: put `#[lattice(dominating)]` above the field that orders the struct"))
            } else {
                let name = path_name(&meta.path);
                Err(meta.error(format!("unknown lattice attribute `{name}` on a struct; expected {CONTAINER_KEYS}")))
            }
        })?;
    }
    Ok(out)
}

/// Parses every `#[lattice(...)]` on a field.
pub fn field(attrs: &[Attribute]) -> syn::Result<Field> {
    let mut out = Field::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("lattice")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("dominating") {
                if meta.input.peek(syn::Token![=]) {
                    return Err(meta.error("`dominating` takes no value: write `#[lattice(dominating)]`"));
                }
                if out.dominating.is_some() {
                    return Err(meta.error("duplicate `dominating` attribute"));
                }
                out.dominating = Some(meta.path.segments[0].ident.span());
                Ok(())
            } else if meta.path.is_ident("crate") || meta.path.is_ident("bound") || meta.path.is_ident("arbitrary") {
                let name = path_name(&meta.path);
                Err(meta.error(format!("`{name}` belongs on the struct, not on a field")))
            } else {
                let name = path_name(&meta.path);
                Err(meta.error(format!("unknown lattice attribute `{name}` on a field; the only field attribute is `dominating`")))
            }
        })?;
    }
    Ok(out)
}

fn path_name(path: &Path) -> String {
    path.segments.iter().map(|s| s.ident.to_string()).collect::<Vec<_>>().join("::")
}
