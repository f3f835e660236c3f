//! Outflow: stream a differential dataflow collection into Kafka with the semantics of
//! Materialize's Kafka sinks.

pub use outflow_dataflow as dataflow;
pub use outflow_encoders as encoders;
pub mod progress_reader;
pub mod producer;
pub mod topic;

pub mod protocol;

pub mod partition;
pub mod spec;
pub mod statement;
pub use spec::{ClusterSpec, ConnectionSpec, RegistrySpec, SecretSpec, SinkSpec, SpecError, TableSpec};
pub use statement::Catalog;
