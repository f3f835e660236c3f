//! FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY: schema generation and the binary encoding,
//! framed in Confluent's wire format.

pub(crate) mod binary;
pub(crate) mod schema;

pub use schema::SOURCE_FULLNAME as DEBEZIUM_SOURCE_FULLNAME;

/// The Confluent wire format's header length: magic byte 0, then the schema id as a 4-byte
/// big-endian integer.
pub const CONFLUENT_HEADER_LEN: usize = 5;

pub(crate) fn write_confluent_header(buf: &mut Vec<u8>, schema_id: i32) {
    buf.push(0);
    buf.extend_from_slice(&schema_id.to_be_bytes());
}
