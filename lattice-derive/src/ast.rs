//! The derive's model of its input: a struct and its fields, with their original tokens.

use syn::{Data, DeriveInput, Member, Type, spanned::Spanned};

use crate::attr;

/// A struct the derive can work on.
pub struct Input<'a> {
    /// The parsed `DeriveInput`, for the name and generics.
    pub original: &'a DeriveInput,
    /// Struct-level attributes.
    pub attrs: attr::Container,
    /// The fields, in declaration order (none for a unit struct: `Self {}` builds those too).
    pub fields: Vec<Field<'a>>,
}

/// One field.
pub struct Field<'a> {
    /// `self.<member>`: a name or an index.
    pub member: Member,
    /// The field's type, with its span for error messages.
    pub ty: &'a Type,
    /// Field-level attributes.
    pub attrs: attr::Field,
}

impl<'a> Input<'a> {
    /// Reads the input; enums and unions are rejected with a message saying what to do instead.
    pub fn from_syn(input: &'a DeriveInput) -> syn::Result<Self> {
        let data = match &input.data {
            Data::Struct(data) => data,
            Data::Enum(data) => {
                return Err(syn::Error::new(
                    data.enum_token.span,
                    "#[derive(Lattice)] works on structs, not enums: variants have no field-wise merge. \
                     Store the enum in a lattice instead (`Lww<E>`, `Priority<P, E>`, `Max<E>` for an ordered enum), \
                     or implement `Lattice` by hand",
                ));
            }
            Data::Union(data) => {
                return Err(syn::Error::new(
                    data.union_token.span,
                    "#[derive(Lattice)] works on structs, not unions: use a struct whose fields are lattices",
                ));
            }
        };
        let attrs = attr::container(&input.attrs)?;
        let mut fields = Vec::new();
        let mut errors: Option<syn::Error> = None;
        for (index, field) in data.fields.iter().enumerate() {
            let member = match &field.ident {
                Some(ident) => Member::Named(ident.clone()),
                None => Member::Unnamed(syn::Index { index: index as u32, span: field.ty.span() }),
            };
            match attr::field(&field.attrs) {
                Ok(attrs) => fields.push(Field { member, ty: &field.ty, attrs }),
                Err(e) => match &mut errors {
                    Some(all) => all.combine(e),
                    None => errors = Some(e),
                },
            }
        }
        if let Some(errors) = errors {
            return Err(errors);
        }
        Ok(Self { original: input, attrs, fields })
    }
}
