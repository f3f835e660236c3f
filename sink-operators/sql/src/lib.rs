//! Outflow's statement front end: the guide's `CREATE …` statements, the typed specs they
//! become (sinks, connections, secrets, tables, clusters) and the builders that run the same
//! validation from Rust, and `PARTITION BY` expressions. No I/O happens here.

pub mod partition;
pub mod spec;
pub mod statement;

pub use spec::{
    ClusterSpec, ConnectionSpec, RegistrySpec, SecretSpec, SinkSpec, SpecError, TableSpec,
};
pub use statement::Catalog;
