//! Outflow: stream a differential dataflow collection into Kafka with the semantics of
//! Materialize's Kafka sinks.

pub use outflow_dataflow as dataflow;
pub use outflow_encoders as encoders;
pub mod connection;
pub mod embedded;
pub mod feed;
pub mod observe;
pub mod producer;
pub mod progress_reader;
pub mod rawlog;
pub mod read;
pub mod run;
pub mod sink;
pub mod status;
pub mod topic;

pub mod protocol;

pub mod partition;
pub mod spec;
pub mod statement;
pub use sink::{SinkError, SinkHandle, SinkKafka, SinkPlan};
pub use spec::{
    ClusterSpec, ConnectionSpec, RegistrySpec, SecretSpec, SinkSpec, SpecError, TableSpec,
};
pub use statement::Catalog;
pub use status::{SinkMonitor, SinkReport, SinkStatus};
