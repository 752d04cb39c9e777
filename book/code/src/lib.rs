//! The Rust code of the book in `book/src`: every sample is included from here with
//! `{{#include ...:anchor}}`, and `cargo test --workspace` compiles and runs it, so nothing in
//! the book can drift from code that builds.
#![warn(missing_docs)]

pub mod custom;
