//! The declarative description of how a sink's keys and values are encoded.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How updates are shaped into messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    /// Key plus the full row; a delete is a tombstone (null value).
    Upsert,
    /// `{"before": row | null, "after": row | null}`, and with [`DebeziumOptions::full`] also
    /// `source`, `op` and `ts_ms`.
    Debezium,
}

/// `ENVELOPE DEBEZIUM (FULL, TOMBSTONES ON DELETE)`: what a Debezium message holds besides
/// `before` and `after`. Both default to false, which is Materialize's envelope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DebeziumOptions {
    /// `FULL`: each value also carries `source` (connector, sink, topic, logical time, whether
    /// the row is part of the snapshot, production time), `op` (`r`, `c`, `u` or `d`) and
    /// `ts_ms` (the production time, in milliseconds since the Unix epoch), as Kafka Connect's
    /// Debezium consumers expect.
    pub full: bool,
    /// `TOMBSTONES ON DELETE`: a delete is followed by a message with the same key and a null
    /// value, which lets log compaction drop the key.
    pub tombstones_on_delete: bool,
}

impl DebeziumOptions {
    pub fn is_default(&self) -> bool {
        *self == DebeziumOptions::default()
    }
}

/// The format of one message part (the key or the value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "format")]
pub enum FormatSpec {
    Json,
    Text,
    Bytes,
    Avro(AvroFormatSpec),
    /// `JSON (SCHEMAS ENABLED)`: `{"schema": …, "payload": …}`, the JSON of Kafka Connect's
    /// `JsonConverter` with `schemas.enable=true`.
    #[serde(rename = "json_with_schema")]
    JsonWithSchema,
}

impl FormatSpec {
    pub fn name(&self) -> &'static str {
        match self {
            FormatSpec::Json | FormatSpec::JsonWithSchema => "JSON",
            FormatSpec::Text => "TEXT",
            FormatSpec::Bytes => "BYTES",
            FormatSpec::Avro(_) => "AVRO",
        }
    }

    /// The format as a statement writes it, with the options that change its bytes:
    /// `JSON (SCHEMAS ENABLED)` beside `JSON`.
    pub fn describe(&self) -> &'static str {
        match self {
            FormatSpec::JsonWithSchema => "JSON (SCHEMAS ENABLED)",
            other => other.name(),
        }
    }
}

/// `AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION c (...)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvroFormatSpec {
    /// The name of the schema registry connection.
    pub registry: String,
    pub key_compatibility: Option<CompatibilityLevel>,
    pub value_compatibility: Option<CompatibilityLevel>,
    /// `KEY SUBJECT NAME STRATEGY`: the subject the key schema is registered under.
    #[serde(default)]
    pub key_subject_name_strategy: SubjectNameStrategy,
    /// `VALUE SUBJECT NAME STRATEGY`: the subject the value schema is registered under.
    #[serde(default)]
    pub value_subject_name_strategy: SubjectNameStrategy,
    /// `AVRO KEY FULLNAME`: the key record's full name (default `row`).
    pub key_fullname: Option<String>,
    /// `AVRO VALUE FULLNAME`: the value record's full name (default `envelope`).
    pub value_fullname: Option<String>,
    /// `NULL DEFAULTS`: nullable fields get `"default": null`.
    pub null_defaults: bool,
    pub docs: Vec<DocComment>,
}

/// `[KEY|VALUE] DOC ON {TYPE t | COLUMN t.c} = '…'`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocComment {
    pub target: DocTarget,
    pub scope: DocScope,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocTarget {
    /// A documented relation: attached to the record generated for it.
    Type(String),
    /// A documented column of a relation: attached to the field.
    Column { relation: String, column: String },
}

/// Which schemas a `DOC ON` applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocScope {
    Key,
    Value,
    Both,
}

/// Confluent Schema Registry subject compatibility levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
    None,
}

impl CompatibilityLevel {
    pub const ALL: [CompatibilityLevel; 7] = [
        CompatibilityLevel::Backward,
        CompatibilityLevel::BackwardTransitive,
        CompatibilityLevel::Forward,
        CompatibilityLevel::ForwardTransitive,
        CompatibilityLevel::Full,
        CompatibilityLevel::FullTransitive,
        CompatibilityLevel::None,
    ];

    /// The registry's spelling, e.g. `BACKWARD_TRANSITIVE`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
            CompatibilityLevel::None => "NONE",
        }
    }

    /// Parses a level case-insensitively; `None` when it is not one of the seven.
    pub fn parse(s: &str) -> Option<CompatibilityLevel> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the registry subject of a schema is named, as Confluent's serializers name it
/// (`key.subject.name.strategy`, `value.subject.name.strategy`). The compatibility level of a
/// part is set on the subject its strategy names.
///
/// ```
/// use outflow_encoders::{Part, SubjectNameStrategy};
///
/// assert_eq!(SubjectNameStrategy::Topic.subject("orders", Part::Key, "row"), "orders-key");
/// assert_eq!(
///     SubjectNameStrategy::Record.subject("orders", Part::Value, "com.shop.Order"),
///     "com.shop.Order"
/// );
/// assert_eq!(
///     SubjectNameStrategy::TopicRecord.subject("orders", Part::Value, "com.shop.Order"),
///     "orders-com.shop.Order"
/// );
/// assert_eq!(SubjectNameStrategy::parse("topic-record"), Some(SubjectNameStrategy::TopicRecord));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SubjectNameStrategy {
    /// `{topic}-key` / `{topic}-value`: one subject per topic and part (the default).
    #[default]
    #[serde(rename = "TopicNameStrategy")]
    Topic,
    /// `{fullname}`: the record's full name, shared by every topic that carries the record.
    #[serde(rename = "RecordNameStrategy")]
    Record,
    /// `{topic}-{fullname}`: per topic and record.
    #[serde(rename = "TopicRecordNameStrategy")]
    TopicRecord,
}

impl SubjectNameStrategy {
    pub const ALL: [SubjectNameStrategy; 3] = [
        SubjectNameStrategy::Topic,
        SubjectNameStrategy::Record,
        SubjectNameStrategy::TopicRecord,
    ];

    /// Confluent's name, e.g. `TopicRecordNameStrategy`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SubjectNameStrategy::Topic => "TopicNameStrategy",
            SubjectNameStrategy::Record => "RecordNameStrategy",
            SubjectNameStrategy::TopicRecord => "TopicRecordNameStrategy",
        }
    }

    /// The short name: `topic`, `record`, `topic-record`.
    pub fn short_name(&self) -> &'static str {
        match self {
            SubjectNameStrategy::Topic => "topic",
            SubjectNameStrategy::Record => "record",
            SubjectNameStrategy::TopicRecord => "topic-record",
        }
    }

    /// Parses Confluent's name or the short name, case-insensitively (`topic_record` too).
    pub fn parse(s: &str) -> Option<SubjectNameStrategy> {
        let short = s.replace('_', "-");
        Self::ALL.into_iter().find(|strategy| {
            strategy.as_str().eq_ignore_ascii_case(s)
                || strategy.short_name().eq_ignore_ascii_case(&short)
        })
    }

    /// The subject of `part`'s schema on `topic`, whose top-level record is `fullname`.
    pub fn subject(&self, topic: &str, part: crate::Part, fullname: &str) -> String {
        match self {
            SubjectNameStrategy::Topic => format!("{topic}-{}", part.as_str()),
            SubjectNameStrategy::Record => fullname.to_string(),
            SubjectNameStrategy::TopicRecord => format!("{topic}-{fullname}"),
        }
    }
}

impl fmt::Display for SubjectNameStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A secret value (`CREATE SECRET`, passwords, keys). It never shows in `Debug`,
/// `Display`, serialized specs, logs or errors; `expose` is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret's value, for handing to a client library and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{s}").contains("hunter2"));
        assert!(!serde_json::to_string(&s).unwrap().contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn compatibility_levels_round_trip() {
        for level in CompatibilityLevel::ALL {
            assert_eq!(CompatibilityLevel::parse(level.as_str()), Some(level));
        }
        assert_eq!(
            CompatibilityLevel::parse("backward"),
            Some(CompatibilityLevel::Backward)
        );
        assert_eq!(CompatibilityLevel::parse("SIDEWAYS"), None);
    }
}
