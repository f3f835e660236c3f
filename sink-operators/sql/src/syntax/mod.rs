//! The statements' syntax: tokens that remember where they start, the parsed form of each
//! statement ([`ast`]), and the parser. Pure syntax: names are not resolved and nothing is
//! validated beyond the grammar, so this module needs only [`crate::error`] and the option
//! tables of [`crate::options`].

pub mod ast;
mod lexer;
mod parser;

pub use parser::{parse_expr, parse_statements};
