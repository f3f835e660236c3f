//! `EncodeError`: everything that can stop an encoder from being built or a row from being
//! encoded. Messages name the column, type or value at fault and, where there is one, the fix.

use std::fmt;

#[cfg(feature = "registry")]
use crate::registry::RegistryError;

/// Which part of a Kafka message a column or schema belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    Key,
    Value,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }

    /// `KEY` or `VALUE`, as the statement options spell it.
    pub fn option_word(self) -> &'static str {
        match self {
            Part::Key => "KEY",
            Part::Value => "VALUE",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    // --- Statement validation -----------------------------------------------------------
    #[error("BYTES or TEXT format with multiple columns not yet supported")]
    MultipleColumnsTextOrBytes { part: Part, columns: usize },

    #[error("{format} {part} format needs exactly one column, and the {part} has none")]
    NoColumnsTextOrBytes { format: &'static str, part: Part },

    #[error(
        "BYTES format with non-encodable type: {part} column \"{column}\" has type {typ}; \
         BYTES writes bytea columns as their bytes and text columns as UTF-8, so cast the \
         column to bytea or text, or use FORMAT TEXT"
    )]
    BytesType {
        part: Part,
        column: String,
        typ: String,
    },

    #[error(
        "{format} value format is not supported with ENVELOPE DEBEZIUM: the before/after pair \
         has no {format} form; use FORMAT JSON or AVRO for the value, or ENVELOPE UPSERT"
    )]
    TextOrBytesWithDebezium { format: &'static str },

    #[error("KEY names no columns; name at least one, or leave KEY out for a sink without keys")]
    EmptyKey,

    #[error("KEY refers to column number {index}, but the relation has {arity} columns")]
    KeyColumnOutOfRange { index: usize, arity: usize },

    #[error("duplicate column referenced in KEY: {column}")]
    DuplicateKeyColumn { column: String },

    #[error("HEADERS option is not supported with ENVELOPE DEBEZIUM")]
    HeadersWithDebezium,

    #[error("{option} is an option of ENVELOPE DEBEZIUM; ENVELOPE UPSERT takes no options")]
    DebeziumOptionWithUpsert { option: &'static str },

    #[error(
        "TOMBSTONES ON DELETE needs a KEY: a tombstone is a message with a key and a null value"
    )]
    TombstonesWithoutKey,

    #[error("HEADERS refers to column number {index}, but the relation has {arity} columns")]
    HeadersColumnOutOfRange { index: usize, arity: usize },

    #[error("HEADERS column must have type map[text => text] or map[text => bytea]; column \"{column}\" has type {typ}")]
    HeadersType { column: String, typ: String },

    #[error("Cannot specify AVRO KEY FULLNAME without a corresponding KEY field")]
    KeyFullnameWithoutKey,

    #[error("Must specify both AVRO KEY FULLNAME and AVRO VALUE FULLNAME when specifying generated schema names")]
    FullnamesNotPaired,

    #[error("AVRO {} FULLNAME \"{name}\" is not a valid Avro full name: {reason}", part.option_word())]
    InvalidFullname {
        part: Part,
        name: String,
        reason: String,
    },

    #[error("{doc_on} does not name the sink's relation \"{relation}\" or one of its columns")]
    UnknownDocTarget { doc_on: String, relation: String },

    #[error("{doc_on} cannot be empty")]
    EmptyDoc { doc_on: String },

    #[error("FORMAT AVRO for the {part} needs a schema registry connection, and none was given")]
    MissingRegistry { part: Part },

    #[error("the Avro {part} schema generated for this relation does not parse ({reason}); this is a bug in Outflow's schema generation: {schema}")]
    InvalidGeneratedSchema {
        part: Part,
        reason: String,
        schema: String,
    },

    #[cfg(feature = "registry")]
    #[error("cannot publish the Avro {part} schema of topic \"{topic}\": {source}")]
    Registry {
        part: Part,
        topic: String,
        #[source]
        source: RegistryError,
    },

    // --- Encoding a row -----------------------------------------------------------------
    #[error("the {part} row has {found} columns, but the sink's {part} has {expected}")]
    Arity {
        part: Part,
        expected: usize,
        found: usize,
    },

    #[error("{part} column \"{column}\" ({typ}): {problem}")]
    Datum {
        part: Part,
        column: String,
        typ: String,
        problem: String,
    },

    #[error("an update with neither a before nor an after row cannot be encoded (key {key})")]
    EmptyUpdate { key: String },

    #[error(
        "the logical time {time} is beyond the range of int64, the type of source.time in ENVELOPE DEBEZIUM (FULL) messages"
    )]
    TimeBeyondInt64 { time: u64 },
}

/// Why a message, or a feed line's row, does not decode into a row of its relation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A value that does not fit its column; `typ` is the column's declared type, and
    /// `problem` says where inside a nested value the fault lies.
    #[error("column \"{column}\" ({typ}): {problem}")]
    Column {
        column: String,
        typ: String,
        problem: String,
    },
    /// The message as a whole is not what the format and relation call for.
    #[error("{0}")]
    Message(String),
}
