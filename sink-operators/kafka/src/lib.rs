//! Outflow: stream a differential dataflow collection into Kafka with the semantics of
//! Materialize's Kafka sinks.
//!
//! This is the crate pipelines depend on. A sink is a [`SinkPlan`] (a [`SinkSpec`] from the
//! guide's statements through a [`Catalog`], or from the builders in [`spec`], plus its
//! resolved connection), rendered by [`SinkKafka::sink_kafka`] on a collection or an
//! arrangement; its [`SinkMonitor`] reports status and statistics. The modules below the
//! re-exports are the librdkafka edge (connections, topics, the per-worker producer, progress
//! recovery, the raw-log reader, a sink's transactions at the coordinators, the embedded broker)
//! for tools that drive it directly.
//!
//! # Allocator
//!
//! The library sets no global allocator: that is the program's choice. A sink packs the
//! messages of its open transaction into shared buffers ([`record`]), so its own allocations
//! per message are few; what remains (the dataflow's rows, librdkafka's copies) still favours
//! an allocator built for many threads: the `outflow` program and the bench use jemalloc
//! (`#[global_allocator] static A: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;`),
//! and a pipeline that sinks much should consider the same.

pub use outflow_dataflow as dataflow;
pub use outflow_encoders as encoders;
pub use outflow_sql::{partition, spec, statement};

pub mod acl;
pub mod connection;
pub mod embedded;
pub mod producer;
pub mod progress_reader;
pub mod rawlog;
pub mod record;
pub mod sink;
pub mod status;
pub mod topic;
pub mod transactions;

pub use outflow_sql::{
    Catalog, ClusterSpec, ConnectionSpec, RegistrySpec, SecretSpec, SinkSpec, SpecError, TableSpec,
};
pub use sink::{PreparedSink, SinkControl, SinkError, SinkHandle, SinkKafka, SinkPlan};
pub use status::{SinkMonitor, SinkReport, SinkStatus};
