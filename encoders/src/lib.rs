//! Outflow's encoders: JSON, Avro with a Confluent Schema Registry, TEXT and BYTES, shaped by
//! the upsert or Debezium envelope. Knows nothing of Kafka clients or dataflow.

pub mod registry;
pub mod spec;

pub use spec::{
    AvroFormatSpec, CompatibilityLevel, DocComment, DocScope, DocTarget, Envelope, FormatSpec,
    Secret,
};
pub use registry::{
    CompatibilityCheck, RegistryConfig, RegistryError, SchemaRegistryClient, SubjectVersion,
    VersionSelector,
};
