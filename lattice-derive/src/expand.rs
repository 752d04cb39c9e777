//! Writing the impls. Every path is fully qualified; lattice-core's root is resolved once.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{DeriveInput, Path, WherePredicate, parse_quote, spanned::Spanned};

use crate::ast::{Field, Input};
use crate::{attr, valid};

/// The derive's entry: the impls, or one error plus a fallback impl.
pub fn derive(input: &DeriveInput) -> TokenStream {
    let parsed = Input::from_syn(input).and_then(|parsed| {
        valid::check(&parsed)?;
        Ok(parsed)
    });
    match parsed {
        Ok(parsed) => expand(&parsed),
        Err(error) => {
            let error = error.to_compile_error();
            let fallback = fallback(input);
            quote! { #error #fallback }
        }
    }
}

fn crate_path(path: Option<&Path>) -> Path {
    path.cloned().unwrap_or_else(|| parse_quote!(::lattice_core))
}

/// After an error: an impl whose bodies never run, so that uses of the type elsewhere do not
/// add errors of their own. Structs only; an enum or union cannot be given a lattice anyway.
fn fallback(input: &DeriveInput) -> TokenStream {
    if !matches!(input.data, syn::Data::Struct(_)) {
        return TokenStream::new();
    }
    let krate = crate_path(attr::container(&input.attrs).ok().and_then(|a| a.crate_path).as_ref());
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Lattice for #name #ty_generics #where_clause {
            fn merge(&mut self, _: Self) -> bool { ::core::unreachable!() }
            fn bottom() -> Self { ::core::unreachable!() }
            fn is_bottom(&self) -> bool { ::core::unreachable!() }
        }
    }
}

fn expand(input: &Input<'_>) -> TokenStream {
    let krate = crate_path(input.attrs.crate_path.as_ref());
    let name = &input.original.ident;

    let mut generics = input.original.generics.clone();
    let lattice_predicates = lattice_predicates(input, &krate);
    generics.make_where_clause().predicates.extend(lattice_predicates.iter().cloned());
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let dominating = input.fields.iter().find(|f| f.attrs.dominating.is_some());
    let rest: Vec<&Field<'_>> =
        input.fields.iter().filter(|f| f.attrs.dominating.is_none()).collect();
    let rest_members: Vec<_> = rest.iter().map(|f| &f.member).collect();

    let merge_rest = quote! {
        let mut changed = false;
        #( changed |= #krate::Lattice::merge(&mut self.#rest_members, other.#rest_members); )*
        changed
    };
    let merge_ref_rest = quote! {
        let mut changed = false;
        #( changed |= #krate::Lattice::merge_ref(&mut self.#rest_members, &other.#rest_members); )*
        changed
    };
    let leq_rest =
        quote! { true #( && #krate::Lattice::leq(&self.#rest_members, &other.#rest_members) )* };
    let is_bottom_rest = quote! { true #( && #krate::Lattice::is_bottom(&self.#rest_members) )* };
    let rest_bottoms = rest.iter().map(|f| {
        let member = &f.member;
        quote_spanned! {f.ty.span()=> #member: #krate::Lattice::bottom() }
    });

    let (merge, merge_ref, leq, is_bottom, bottom) = match dominating {
        None => (
            merge_rest,
            merge_ref_rest,
            leq_rest,
            is_bottom_rest,
            quote! { Self { #(#rest_bottoms),* } },
        ),
        Some(dom) => {
            let d = &dom.member;
            let ty = dom.ty;
            let min = quote! { <#ty as #krate::Bounded>::min_value() };
            let all_members: Vec<_> = input.fields.iter().map(|f| &f.member).collect();
            (
                quote! {
                    match ::core::cmp::Ord::cmp(&other.#d, &self.#d) {
                        ::core::cmp::Ordering::Greater => { *self = other; true }
                        ::core::cmp::Ordering::Less => false,
                        ::core::cmp::Ordering::Equal => { #merge_rest }
                    }
                },
                quote! {
                    match ::core::cmp::Ord::cmp(&other.#d, &self.#d) {
                        ::core::cmp::Ordering::Greater => {
                            #( ::core::clone::Clone::clone_from(&mut self.#all_members, &other.#all_members); )*
                            true
                        }
                        ::core::cmp::Ordering::Less => false,
                        ::core::cmp::Ordering::Equal => { #merge_ref_rest }
                    }
                },
                quote! {
                    match ::core::cmp::Ord::cmp(&self.#d, &other.#d) {
                        ::core::cmp::Ordering::Less => true,
                        ::core::cmp::Ordering::Greater => false,
                        ::core::cmp::Ordering::Equal => { #leq_rest }
                    }
                },
                quote! { ::core::cmp::PartialEq::eq(&self.#d, &#min) && #is_bottom_rest },
                quote! { Self { #d: #min, #(#rest_bottoms),* } },
            )
        }
    };

    let lattice_impl = quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Lattice for #name #ty_generics #where_clause {
            #[inline]
            fn merge(&mut self, other: Self) -> bool { #merge }
            #[inline]
            fn merge_ref(&mut self, other: &Self) -> bool { #merge_ref }
            #[inline]
            fn bottom() -> Self { #bottom }
            #[inline]
            fn is_bottom(&self) -> bool { #is_bottom }
            #[inline]
            fn leq(&self, other: &Self) -> bool { #leq }
        }
    };

    let generators = if input.attrs.arbitrary {
        generators(input, &krate, &lattice_predicates)
    } else {
        TokenStream::new()
    };
    quote! { #lattice_impl #generators }
}

/// The where-clause: the user's `bound`, or one predicate per field type (spanned at the type,
/// so a field that is not a lattice gets exactly one error, pointing at it).
fn lattice_predicates(input: &Input<'_>, krate: &Path) -> Vec<WherePredicate> {
    if let Some(bound) = &input.attrs.bound {
        let mut predicates: Vec<WherePredicate> = bound.iter().cloned().collect();
        predicates.push(parse_quote!(Self: ::core::clone::Clone));
        return predicates;
    }
    let mut predicates: Vec<WherePredicate> = vec![parse_quote!(Self: ::core::clone::Clone)];
    for field in &input.fields {
        let ty = field.ty;
        let span = ty.span();
        // The bound's own tokens carry the field type's span, so rustc points at the field.
        let krate_here = respan(quote!(#krate), span);
        let predicate: WherePredicate = if field.attrs.dominating.is_some() {
            syn::parse2(quote_spanned! {span=>
                #ty: ::core::cmp::Ord + ::core::clone::Clone + #krate_here::Bounded
            })
            .expect("a type followed by bounds is a where-predicate")
        } else {
            syn::parse2(quote_spanned! {span=> #ty: #krate_here::Lattice })
                .expect("a type followed by a bound is a where-predicate")
        };
        predicates.push(predicate);
    }
    predicates
}

/// `#[lattice(arbitrary)]`: proptest and quickcheck generators, each emitted through a macro of
/// lattice-core's that keeps it only when lattice-core has that feature on. A crate can thus
/// write the attribute once and get the generators in test builds only.
fn generators(
    input: &Input<'_>,
    krate: &Path,
    lattice_predicates: &[WherePredicate],
) -> TokenStream {
    let name = &input.original.ident;
    let mut generics = input.original.generics.clone();
    generics.make_where_clause().predicates.extend(lattice_predicates.iter().cloned());
    let field_types: Vec<_> = input.fields.iter().map(|f| f.ty).collect();
    let members: Vec<_> = input.fields.iter().map(|f| &f.member).collect();

    let mut proptest_generics = generics.clone();
    let where_clause = proptest_generics.make_where_clause();
    where_clause.predicates.push(parse_quote!(Self: ::core::fmt::Debug + 'static));
    for ty in &field_types {
        where_clause
            .predicates
            .push(parse_quote!(#ty: #krate::proptest::arbitrary::Arbitrary + 'static));
    }
    let (impl_generics, ty_generics, where_clause) = proptest_generics.split_for_impl();
    // Nested pairs `(a, (b, (c, ())))` so any number of fields fits proptest's tuple strategies.
    let mut strategy = quote! { #krate::proptest::strategy::Just(()) };
    let mut pattern = quote! { () };
    for (index, ty) in field_types.iter().enumerate().rev() {
        let var = syn::Ident::new(&format!("__field{index}"), Span::call_site());
        strategy = quote! { (#krate::proptest::arbitrary::any::<#ty>(), #strategy) };
        pattern = quote! { (#var, #pattern) };
    }
    let vars =
        (0..field_types.len()).map(|i| syn::Ident::new(&format!("__field{i}"), Span::call_site()));
    let proptest_impl = quote! {
        #krate::__if_proptest! {
            #[automatically_derived]
            impl #impl_generics #krate::proptest::arbitrary::Arbitrary for #name #ty_generics #where_clause {
                type Parameters = ();
                type Strategy = #krate::proptest::strategy::BoxedStrategy<Self>;
                fn arbitrary_with((): ()) -> Self::Strategy {
                    #krate::proptest::strategy::Strategy::boxed(
                        #krate::proptest::strategy::Strategy::prop_map(
                            #strategy,
                            |#pattern| Self { #(#members: #vars),* },
                        ),
                    )
                }
            }
        }
    };

    let mut quickcheck_generics = generics;
    let where_clause = quickcheck_generics.make_where_clause();
    where_clause.predicates.push(parse_quote!(Self: 'static));
    for ty in &field_types {
        where_clause.predicates.push(parse_quote!(#ty: #krate::quickcheck::Arbitrary));
    }
    let (impl_generics, ty_generics, where_clause) = quickcheck_generics.split_for_impl();
    let quickcheck_impl = quote! {
        #krate::__if_quickcheck! {
            #[automatically_derived]
            impl #impl_generics #krate::quickcheck::Arbitrary for #name #ty_generics #where_clause {
                fn arbitrary(_gen: &mut #krate::quickcheck::Gen) -> Self {
                    Self { #(#members: #krate::quickcheck::Arbitrary::arbitrary(_gen)),* }
                }
            }
        }
    };
    quote! { #proptest_impl #quickcheck_impl }
}

/// Gives every token of `tokens` the span `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let proc_macro2::TokenTree::Group(group) = &token {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = proc_macro2::TokenTree::Group(inner);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}
