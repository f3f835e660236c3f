//! Outflow's statement front end: the guide's `CREATE …` statements, the typed specs they
//! become (sinks, connections, secrets, tables, clusters) and the builders that run the same
//! validation from Rust, and `PARTITION BY` expressions. No I/O happens here.
//!
//! Modules, each importing only those listed before it: [`options`] (the options of each
//! clause), [`error`] (`SpecError` and the sites it blames), [`librdkafka`] (the settings
//! `LIBRDKAFKA OPTIONS` may pass through), [`syntax`] (tokens, the parsed
//! form, the parser), [`partition`] (`PARTITION BY` expressions), [`spec`] (the specs and
//! their builders), [`statement`] (statements executed into a [`Catalog`]).

pub mod error;
pub mod librdkafka;
pub mod options;
pub mod partition;
pub mod spec;
pub mod statement;
pub mod syntax;

pub use spec::{
    ClusterSpec, ConnectionSpec, RegistrySpec, SecretSpec, SinkSpec, SpecError, TableSpec,
};
pub use statement::Catalog;
