//! Outflow's encoders: JSON, Avro with a Confluent Schema Registry, TEXT and BYTES, shaped by
//! the upsert or Debezium envelope, and the same formats decoded back into rows. Knows
//! nothing of Kafka clients or dataflow.

pub mod avro;
mod columns;
pub mod decode;
pub mod encoder;
pub mod error;
mod json;
#[cfg(feature = "registry")]
pub mod registry;
pub mod spec;
pub mod text;

pub use avro::CONFLUENT_HEADER_LEN;
pub use encoder::{
    subject, validate_formats, validate_headers_column, AvroSchemas, EncodedMessage, EncoderConfig,
    Headers, OwnedMessage, SinkEncoder, DEFAULT_KEY_FULLNAME, DEFAULT_VALUE_FULLNAME,
    RESERVED_HEADER_PREFIX, TIME_HEADER,
};
pub use error::{DecodeError, EncodeError, Part};
pub use json::row_json;
#[cfg(feature = "registry")]
pub use registry::{
    CompatibilityCheck, RegistryConfig, RegistryError, SchemaRegistryClient, SubjectVersion,
    VersionSelector,
};
pub use spec::{
    AvroFormatSpec, CompatibilityLevel, DocComment, DocScope, DocTarget, Envelope, FormatSpec,
    Secret,
};
