//! Checks that need the whole parsed input.

use crate::ast::Input;

/// At most one field may be `dominating`.
pub fn check(input: &Input<'_>) -> syn::Result<()> {
    let mut dominating = input.fields.iter().filter_map(|f| f.attrs.dominating);
    if let (Some(_first), Some(second)) = (dominating.next(), dominating.next()) {
        return Err(syn::Error::new(
            second,
            "only one field can be `#[lattice(dominating)]`: the struct is ordered by that field first. \
             To order by several fields, make them one field of a tuple type, e.g. `(u64, u64)`",
        ));
    }
    Ok(())
}
