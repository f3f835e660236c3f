//! Outflow's relation model and sink-side dataflow operators.
//!
//! Nothing here knows about Kafka or encodings: rows, their types, the stable key hash that
//! places keys on workers, and the operators that turn a differential collection into
//! per-key `(time, DiffPair { before, after })` updates.

pub mod hash;
pub mod operators;
pub mod pair;
pub mod relation;

pub use hash::{stable_key_hash, worker_for_key};
pub use pair::DiffPair;
pub use relation::{ColumnType, Datum, RelationDesc, Row, RowPacker, ScalarType};
