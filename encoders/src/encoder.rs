//! `SinkEncoder`: turns one key and `DiffPair` at a time into the parts of a Kafka message —
//! key bytes, value bytes or a tombstone, headers, and the partitioning hash — under the
//! upsert or Debezium envelope, with the key and value formats chosen separately.
//!
//! Building an encoder does everything that can be done once: validation, Avro schema
//! generation and registration. Encoding a row then writes into the buffers of a reused
//! [`EncodedMessage`] and allocates nothing once they have grown to the rows' size.
//!
//! ```
//! use outflow_dataflow::relation::{Datum, Numeric, RelationDesc, Row, ScalarType};
//! use outflow_dataflow::DiffPair;
//! use outflow_encoders::{EncodedMessage, EncoderConfig, Envelope, FormatSpec, SinkEncoder};
//!
//! let desc = RelationDesc::empty()
//!     .with_column("order_id", ScalarType::Int64, false)
//!     .with_column("total", ScalarType::parse("numeric(10,2)").unwrap(), false)
//!     .with_key(vec![0]);
//! let config = EncoderConfig {
//!     desc,
//!     relation: "orders".to_string(),
//!     key_columns: Some(vec![0]),
//!     envelope: Envelope::Upsert,
//!     key_format: FormatSpec::Json,
//!     value_format: FormatSpec::Json,
//!     headers_column: None,
//!     topic: "orders_json".to_string(),
//! };
//! // No Avro part, so no schema registry.
//! let encoder = SinkEncoder::new(config, None).unwrap();
//!
//! let mut message = EncodedMessage::new();
//! let key = Row::pack_slice(&[Datum::Int64(123)]);
//! let row = Row::pack_slice(&[Datum::Int64(123), Datum::Numeric(Numeric::new(9950, 2))]);
//! encoder.encode(&key, &DiffPair::insert(row.clone()), 7, &mut message).unwrap();
//! assert_eq!(message.key(), Some(&br#"{"order_id":123}"#[..]));
//! assert_eq!(message.value(), Some(&br#"{"order_id":123,"total":99.50}"#[..]));
//! assert_eq!(message.headers().collect::<Vec<_>>(), [("outflow-time", Some(&b"7"[..]))]);
//!
//! // A delete is a tombstone.
//! encoder.encode(&key, &DiffPair::delete(row), 8, &mut message).unwrap();
//! assert_eq!(message.value(), None);
//! ```

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

use outflow_dataflow::relation::{Datum, RelationDesc, Row, ScalarType};
use outflow_dataflow::DiffPair;

use crate::avro::schema::{self as avro_schema, SchemaOptions, DEBEZIUM_ROW_NAME};
use crate::avro::{binary as avro_binary, write_confluent_header, CONFLUENT_HEADER_LEN};
use crate::columns::{fields_of, for_each_field, Field, Kind};
use crate::error::{EncodeError, Part};
#[cfg(feature = "registry")]
use crate::registry::SchemaRegistryClient;
use crate::spec::{AvroFormatSpec, DocScope, DocTarget, Envelope, FormatSpec};
use crate::{json, text};

/// The header every message carries: the logical time of its update, in decimal ASCII.
pub const TIME_HEADER: &str = "outflow-time";

/// Header names starting with this (in any letter case) belong to Outflow. Entries of a
/// `HEADERS` column with such names are skipped, so that a column cannot forge or shadow
/// [`TIME_HEADER`] or any header Outflow adds later.
pub const RESERVED_HEADER_PREFIX: &str = "outflow-";

/// The default record name of the key schema.
pub const DEFAULT_KEY_FULLNAME: &str = "row";
/// The default record name of the value schema, under either envelope.
pub const DEFAULT_VALUE_FULLNAME: &str = "envelope";

/// What a sink encodes and how: the relation, its key, the envelope and the two formats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderConfig {
    pub desc: RelationDesc,
    /// The name of the relation the sink reads, which `DOC ON TYPE` and `DOC ON COLUMN`
    /// targets must name.
    pub relation: String,
    /// `KEY (...)`: column indices into `desc`, in key order. `None`: messages have no key.
    pub key_columns: Option<Vec<usize>>,
    pub envelope: Envelope,
    /// Ignored when there is no key.
    pub key_format: FormatSpec,
    pub value_format: FormatSpec,
    /// `HEADERS col`: a `map[text => text]` or `map[text => bytea]` column (UPSERT only).
    pub headers_column: Option<usize>,
    /// The topic, which names the registry subjects `{topic}-key` and `{topic}-value`.
    pub topic: String,
}

impl EncoderConfig {
    /// Checks everything that needs no schema registry: formats against columns, the key,
    /// the headers column, Avro names and doc targets.
    pub fn validate(&self) -> Result<(), EncodeError> {
        validate_formats(
            &self.desc,
            self.key_columns.as_deref(),
            self.envelope,
            &self.key_format,
            &self.value_format,
        )?;
        if let Some(column) = self.headers_column {
            validate_headers_column(&self.desc, self.envelope, column)?;
        }
        for (part, spec) in self.avro_parts() {
            schema_options(spec, part, &self.relation, &self.desc)?;
        }
        Ok(())
    }

    /// The Avro-formatted parts and their specs.
    fn avro_parts(&self) -> impl Iterator<Item = (Part, &AvroFormatSpec)> {
        let key = match (&self.key_columns, &self.key_format) {
            (Some(_), FormatSpec::Avro(spec)) => Some((Part::Key, spec)),
            _ => None,
        };
        let value = match &self.value_format {
            FormatSpec::Avro(spec) => Some((Part::Value, spec)),
            _ => None,
        };
        key.into_iter().chain(value)
    }
}

/// The format checks of `CREATE SINK`, for the statement front end: TEXT and BYTES need
/// exactly one column (and BYTES a bytea or text one), TEXT and BYTES values have no
/// Debezium form, KEY must name distinct existing columns, and the AVRO FULLNAME options
/// must be valid Avro names that go together.
pub fn validate_formats(
    desc: &RelationDesc,
    key_columns: Option<&[usize]>,
    envelope: Envelope,
    key_format: &FormatSpec,
    value_format: &FormatSpec,
) -> Result<(), EncodeError> {
    if let Some(key) = key_columns {
        if key.is_empty() {
            return Err(EncodeError::EmptyKey);
        }
        let mut seen = HashSet::new();
        for &index in key {
            if index >= desc.arity() {
                return Err(EncodeError::KeyColumnOutOfRange {
                    index,
                    arity: desc.arity(),
                });
            }
            if !seen.insert(index) {
                return Err(EncodeError::DuplicateKeyColumn {
                    column: desc.column(index).name.clone(),
                });
            }
        }
        check_single_column(Part::Key, key_format, desc, key)?;
    }
    if matches!(value_format, FormatSpec::Text | FormatSpec::Bytes)
        && envelope == Envelope::Debezium
    {
        return Err(EncodeError::TextOrBytesWithDebezium {
            format: value_format.name(),
        });
    }
    let all: Vec<usize> = (0..desc.arity()).collect();
    check_single_column(Part::Value, value_format, desc, &all)?;

    let key_spec = match key_format {
        FormatSpec::Avro(spec) if key_columns.is_some() => Some(spec),
        _ => None,
    };
    let value_spec = match value_format {
        FormatSpec::Avro(spec) => Some(spec),
        _ => None,
    };
    if key_columns.is_none() {
        let avro_specs = [key_format, value_format]
            .into_iter()
            .filter_map(|f| match f {
                FormatSpec::Avro(spec) => Some(spec),
                _ => None,
            });
        for spec in avro_specs {
            if spec.key_fullname.is_some() {
                return Err(EncodeError::KeyFullnameWithoutKey);
            }
        }
    }
    if let (Some(key_spec), Some(value_spec)) = (key_spec, value_spec) {
        if key_spec.key_fullname.is_some() != value_spec.value_fullname.is_some() {
            return Err(EncodeError::FullnamesNotPaired);
        }
    }
    if let Some(name) = key_spec.and_then(|s| s.key_fullname.as_deref()) {
        avro_schema::check_fullname(name).map_err(|reason| EncodeError::InvalidFullname {
            part: Part::Key,
            name: name.to_string(),
            reason,
        })?;
    }
    if let Some(name) = value_spec.and_then(|s| s.value_fullname.as_deref()) {
        avro_schema::check_fullname(name).map_err(|reason| EncodeError::InvalidFullname {
            part: Part::Value,
            name: name.to_string(),
            reason,
        })?;
        // The row record inside the envelope takes the envelope's namespace, so a value
        // record called `row` would be defined twice.
        if envelope == Envelope::Debezium && name.rsplit('.').next() == Some(DEBEZIUM_ROW_NAME) {
            return Err(EncodeError::InvalidFullname {
                part: Part::Value,
                name: name.to_string(),
                reason: format!(
                    "under ENVELOPE DEBEZIUM the value record holds a record named \"{DEBEZIUM_ROW_NAME}\", so the value record needs another name"
                ),
            });
        }
    }
    Ok(())
}

fn check_single_column(
    part: Part,
    format: &FormatSpec,
    desc: &RelationDesc,
    columns: &[usize],
) -> Result<(), EncodeError> {
    let bytes = match format {
        FormatSpec::Text => false,
        FormatSpec::Bytes => true,
        FormatSpec::Json | FormatSpec::Avro(_) => return Ok(()),
    };
    match columns {
        [] => Err(EncodeError::NoColumnsTextOrBytes {
            format: format.name(),
            part,
        }),
        [index] => {
            let column = desc.column(*index);
            let encodable = matches!(
                column.typ.scalar_type,
                ScalarType::Bytes
                    | ScalarType::Text
                    | ScalarType::VarChar { .. }
                    | ScalarType::Char { .. }
            );
            if bytes && !encodable {
                return Err(EncodeError::BytesType {
                    part,
                    column: column.name.clone(),
                    typ: column.typ.scalar_type.to_string(),
                });
            }
            Ok(())
        }
        _ => Err(EncodeError::MultipleColumnsTextOrBytes {
            part,
            columns: columns.len(),
        }),
    }
}

/// The `HEADERS col` checks: UPSERT only, and a map from text to text or bytea.
pub fn validate_headers_column(
    desc: &RelationDesc,
    envelope: Envelope,
    column: usize,
) -> Result<(), EncodeError> {
    if envelope == Envelope::Debezium {
        return Err(EncodeError::HeadersWithDebezium);
    }
    if column >= desc.arity() {
        return Err(EncodeError::HeadersColumnOutOfRange {
            index: column,
            arity: desc.arity(),
        });
    }
    let col = desc.column(column);
    match &col.typ.scalar_type {
        ScalarType::Map { value }
            if matches!(
                **value,
                ScalarType::Text
                    | ScalarType::VarChar { .. }
                    | ScalarType::Char { .. }
                    | ScalarType::Bytes
            ) =>
        {
            Ok(())
        }
        other => Err(EncodeError::HeadersType {
            column: col.name.clone(),
            typ: other.to_string(),
        }),
    }
}

/// The schema options of one part: NULL DEFAULTS and the docs that apply to it, where docs
/// marked KEY or VALUE win over unmarked ones.
fn schema_options(
    spec: &AvroFormatSpec,
    part: Part,
    relation: &str,
    desc: &RelationDesc,
) -> Result<SchemaOptions, EncodeError> {
    let mut options = SchemaOptions {
        null_defaults: spec.null_defaults,
        ..SchemaOptions::default()
    };
    let applies = |scope: DocScope| {
        matches!(
            (scope, part),
            (DocScope::Both, _) | (DocScope::Key, Part::Key) | (DocScope::Value, Part::Value)
        )
    };
    let unmarked_first = spec
        .docs
        .iter()
        .filter(|d| d.scope == DocScope::Both)
        .chain(spec.docs.iter().filter(|d| d.scope != DocScope::Both));
    for doc in unmarked_first {
        let marker = match doc.scope {
            DocScope::Key => "KEY ",
            DocScope::Value => "VALUE ",
            DocScope::Both => "",
        };
        let doc_on = match &doc.target {
            DocTarget::Type(t) => format!("{marker}DOC ON TYPE {t}"),
            DocTarget::Column { relation, column } => {
                format!("{marker}DOC ON COLUMN {relation}.{column}")
            }
        };
        if doc.text.is_empty() {
            return Err(EncodeError::EmptyDoc { doc_on });
        }
        let unknown = || EncodeError::UnknownDocTarget {
            doc_on: doc_on.clone(),
            relation: relation.to_string(),
        };
        match &doc.target {
            DocTarget::Type(t) if t == relation => {
                if applies(doc.scope) {
                    options.type_doc = Some(doc.text.clone());
                }
            }
            DocTarget::Column {
                relation: r,
                column,
            } if r == relation && desc.get_by_name(column).is_some() => {
                if applies(doc.scope) {
                    options.column_docs.insert(column.clone(), doc.text.clone());
                }
            }
            _ => return Err(unknown()),
        }
    }
    Ok(options)
}

/// The registry subject of a topic's key or value schema: `{topic}-key`, `{topic}-value` (the
/// registry's `TopicNameStrategy`).
pub fn subject(topic: &str, part: Part) -> String {
    format!("{topic}-{}", part.as_str())
}

/// The Avro schemas a sink registers, as JSON text; `None` for parts not in Avro.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvroSchemas {
    pub key: Option<String>,
    pub value: Option<String>,
}

/// How one part (key or value) is written.
#[derive(Clone, Debug)]
enum PartFormat {
    Json,
    Avro { schema: String, schema_id: i32 },
    Text,
    Bytes,
}

#[derive(Clone, Debug)]
struct PartEncoder {
    part: Part,
    fields: Vec<Field>,
    format: PartFormat,
}

/// Encodes a sink's updates into Kafka message parts. Cheap to clone for each worker.
#[derive(Clone, Debug)]
pub struct SinkEncoder {
    envelope: Envelope,
    key: Option<PartEncoder>,
    value: PartEncoder,
    headers_column: Option<usize>,
}

impl SinkEncoder {
    /// Validates `config`, generates the Avro schemas of Avro-formatted parts and publishes
    /// them to `registry` under `{topic}-key` and `{topic}-value` (setting the spec's
    /// compatibility level on a subject that has none, and checking compatibility before
    /// registering). A schema the registry finds incompatible refuses the encoder, with the
    /// subject and the registry's reasons in the error.
    #[cfg(feature = "registry")]
    pub fn new(
        config: EncoderConfig,
        registry: Option<&SchemaRegistryClient>,
    ) -> Result<SinkEncoder, EncodeError> {
        let topic = config.topic.clone();
        SinkEncoder::build(config, |part, subject, schema, spec| {
            let registry = registry.ok_or(EncodeError::MissingRegistry { part })?;
            let level = match part {
                Part::Key => spec.key_compatibility,
                Part::Value => spec.value_compatibility,
            };
            registry
                .publish(subject, schema, level)
                .map_err(|source| EncodeError::Registry {
                    part,
                    topic: topic.clone(),
                    source,
                })
        })
    }

    /// As [`SinkEncoder::new`], with schema ids given instead of registered: for benchmarks,
    /// tests, and callers that registered the schemas themselves. An Avro part without an id
    /// is refused.
    pub fn with_schema_ids(
        config: EncoderConfig,
        key_schema_id: Option<i32>,
        value_schema_id: Option<i32>,
    ) -> Result<SinkEncoder, EncodeError> {
        SinkEncoder::build(config, |part, _, _, _| {
            let id = match part {
                Part::Key => key_schema_id,
                Part::Value => value_schema_id,
            };
            id.ok_or(EncodeError::MissingRegistry { part })
        })
    }

    /// The Avro schemas `config` would register, without registering them.
    pub fn avro_schemas(config: &EncoderConfig) -> Result<AvroSchemas, EncodeError> {
        config.validate()?;
        let mut schemas = AvroSchemas {
            key: None,
            value: None,
        };
        for (part, spec) in config.avro_parts() {
            let schema = generate_schema(config, part, spec)?;
            match part {
                Part::Key => schemas.key = Some(schema),
                Part::Value => schemas.value = Some(schema),
            }
        }
        Ok(schemas)
    }

    fn build<R>(config: EncoderConfig, mut schema_id: R) -> Result<SinkEncoder, EncodeError>
    where
        R: FnMut(Part, &str, &str, &AvroFormatSpec) -> Result<i32, EncodeError>,
    {
        config.validate()?;
        let mut part_format =
            |part: Part, format: &FormatSpec| -> Result<PartFormat, EncodeError> {
                Ok(match format {
                    FormatSpec::Json => PartFormat::Json,
                    FormatSpec::Text => PartFormat::Text,
                    FormatSpec::Bytes => PartFormat::Bytes,
                    FormatSpec::Avro(spec) => {
                        let schema = generate_schema(&config, part, spec)?;
                        let subject = subject(&config.topic, part);
                        let id = schema_id(part, &subject, &schema, spec)?;
                        PartFormat::Avro {
                            schema,
                            schema_id: id,
                        }
                    }
                })
            };
        let key = match &config.key_columns {
            Some(columns) => Some(PartEncoder {
                part: Part::Key,
                fields: fields_of(&config.desc, columns),
                format: part_format(Part::Key, &config.key_format)?,
            }),
            None => None,
        };
        let all: Vec<usize> = (0..config.desc.arity()).collect();
        let value = PartEncoder {
            part: Part::Value,
            fields: fields_of(&config.desc, &all),
            format: part_format(Part::Value, &config.value_format)?,
        };
        Ok(SinkEncoder {
            envelope: config.envelope,
            key,
            value,
            headers_column: config.headers_column,
        })
    }

    /// Whether messages carry a key.
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    pub fn key_schema(&self) -> Option<&str> {
        self.key.as_ref().and_then(PartEncoder::schema)
    }

    pub fn value_schema(&self) -> Option<&str> {
        self.value.schema()
    }

    pub fn key_schema_id(&self) -> Option<i32> {
        self.key.as_ref().and_then(PartEncoder::schema_id)
    }

    pub fn value_schema_id(&self) -> Option<i32> {
        self.value.schema_id()
    }

    /// Encodes the update of `key` at `time` into `out`, replacing what it held.
    ///
    /// `key` holds the KEY columns' values in KEY order; it is ignored when the sink has no
    /// KEY. Under UPSERT the value is `pair.after`, or a tombstone when there is none; under
    /// DEBEZIUM it is the `{before, after}` envelope. Headers are [`TIME_HEADER`] and, under
    /// UPSERT with a `HEADERS` column, that column's entries (from `after`, or `before` for a
    /// delete).
    pub fn encode(
        &self,
        key: &Row,
        pair: &DiffPair<Row>,
        time: u64,
        out: &mut EncodedMessage,
    ) -> Result<(), EncodeError> {
        out.clear();
        if let Some(key_encoder) = &self.key {
            let present = key_encoder.encode(key, &mut out.key, true)?;
            debug_assert!(present, "keys are always present");
            out.key_present = true;
            out.key_payload_start = key_encoder.payload_start();
            out.hash = seahash::hash(&out.key[out.key_payload_start..]);
        }
        match self.envelope {
            Envelope::Upsert => {
                if let Some(after) = &pair.after {
                    out.value_present = self.value.encode(after, &mut out.value, false)?;
                }
            }
            Envelope::Debezium => {
                if pair.before.is_none() && pair.after.is_none() {
                    return Err(EncodeError::EmptyUpdate {
                        key: format!("{key:?}"),
                    });
                }
                self.value.encode_debezium(pair, &mut out.value)?;
                out.value_present = true;
            }
        }
        out.push_header_with(TIME_HEADER, |buf| text::push_u64(buf, time));
        if let Some(column) = self.headers_column {
            if let Some(row) = pair.after.as_ref().or(pair.before.as_ref()) {
                self.add_column_headers(row, column, out)?;
            }
        }
        Ok(())
    }

    fn add_column_headers(
        &self,
        row: &Row,
        column: usize,
        out: &mut EncodedMessage,
    ) -> Result<(), EncodeError> {
        let field = &self.value.fields[column];
        let ctx = crate::columns::Ctx {
            part: Part::Value,
            field,
        };
        let datum = row.iter().nth(column).ok_or(EncodeError::Arity {
            part: Part::Value,
            expected: self.value.fields.len(),
            found: row.iter().count(),
        })?;
        let map = match datum {
            // A NULL map adds no headers.
            Datum::Null => return Ok(()),
            Datum::Map(map) => map,
            other => return Err(ctx.mismatch(&field.slot, other)),
        };
        for (name, value) in map.iter() {
            let reserved = name
                .as_bytes()
                .get(..RESERVED_HEADER_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_HEADER_PREFIX.as_bytes()));
            if reserved {
                continue;
            }
            match value {
                Datum::String(s) => out.push_user_header(name, Some(s.as_bytes())),
                Datum::Bytes(b) => out.push_user_header(name, Some(b)),
                Datum::Null => out.push_user_header(name, None),
                other => {
                    return Err(ctx.error(format!(
                        "header {name:?} has the value {other:?}, which is neither text nor bytea"
                    )))
                }
            }
        }
        Ok(())
    }
}

impl PartEncoder {
    fn schema(&self) -> Option<&str> {
        match &self.format {
            PartFormat::Avro { schema, .. } => Some(schema),
            _ => None,
        }
    }

    fn schema_id(&self) -> Option<i32> {
        match &self.format {
            PartFormat::Avro { schema_id, .. } => Some(*schema_id),
            _ => None,
        }
    }

    /// Where the encoded bytes start once the Confluent header is skipped.
    fn payload_start(&self) -> usize {
        match self.format {
            PartFormat::Avro { .. } => CONFLUENT_HEADER_LEN,
            _ => 0,
        }
    }

    /// Writes `row` in this part's format; `Ok(false)` when the part is absent (a NULL in a
    /// TEXT or BYTES value). A NULL TEXT or BYTES key is written as zero bytes instead,
    /// because compacted topics refuse messages without a key.
    fn encode(&self, row: &Row, buf: &mut Vec<u8>, is_key: bool) -> Result<bool, EncodeError> {
        match &self.format {
            PartFormat::Json => json::write_row(buf, self.part, &self.fields, row.iter())?,
            PartFormat::Avro { schema_id, .. } => {
                write_confluent_header(buf, *schema_id);
                avro_binary::write_row(buf, self.part, &self.fields, row.iter())?;
            }
            PartFormat::Text | PartFormat::Bytes => {
                let bytes = matches!(self.format, PartFormat::Bytes);
                let mut present = true;
                for_each_field(self.part, &self.fields, row.iter(), |ctx, datum| {
                    match datum {
                        Datum::Null => present = is_key,
                        Datum::Bytes(b) if bytes => buf.extend_from_slice(b),
                        Datum::String(s) if bytes => {
                            buf.extend_from_slice(s.as_bytes());
                            if let Kind::Char { length } = ctx.field.slot.kind {
                                buf.resize(buf.len() + text::char_padding(s, length), b' ');
                            }
                        }
                        datum if bytes => return Err(ctx.mismatch(&ctx.field.slot, datum)),
                        datum => text::write_text(buf, &ctx.field.slot, datum, ctx)?,
                    }
                    Ok(())
                })?;
                return Ok(present);
            }
        }
        Ok(true)
    }

    fn encode_debezium(&self, pair: &DiffPair<Row>, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        let before = pair.before.as_ref().map(Row::iter);
        let after = pair.after.as_ref().map(Row::iter);
        match &self.format {
            PartFormat::Json => json::write_debezium(buf, &self.fields, before, after),
            PartFormat::Avro { schema_id, .. } => {
                write_confluent_header(buf, *schema_id);
                avro_binary::write_debezium(buf, &self.fields, before, after)
            }
            PartFormat::Text | PartFormat::Bytes => {
                unreachable!("validation refuses TEXT and BYTES values under ENVELOPE DEBEZIUM")
            }
        }
    }
}

fn generate_schema(
    config: &EncoderConfig,
    part: Part,
    spec: &AvroFormatSpec,
) -> Result<String, EncodeError> {
    let options = schema_options(spec, part, &config.relation, &config.desc)?;
    let schema = match part {
        Part::Key => {
            let columns = config
                .key_columns
                .as_deref()
                .expect("only keyed sinks have a key schema");
            let fullname = spec.key_fullname.as_deref().unwrap_or(DEFAULT_KEY_FULLNAME);
            avro_schema::row_schema(fullname, &fields_of(&config.desc, columns), &options)
        }
        Part::Value => {
            let all: Vec<usize> = (0..config.desc.arity()).collect();
            let fields = fields_of(&config.desc, &all);
            let fullname = spec
                .value_fullname
                .as_deref()
                .unwrap_or(DEFAULT_VALUE_FULLNAME);
            match config.envelope {
                Envelope::Upsert => avro_schema::row_schema(fullname, &fields, &options),
                Envelope::Debezium => avro_schema::debezium_schema(fullname, &fields, &options),
            }
        }
    };
    let text = schema.to_string();
    apache_avro::Schema::parse_str(&text).map_err(|e| EncodeError::InvalidGeneratedSchema {
        part,
        reason: e.to_string(),
        schema: text.clone(),
    })?;
    Ok(text)
}

/// One encoded message, with buffers that are kept between messages.
#[derive(Clone, Default)]
pub struct EncodedMessage {
    key: Vec<u8>,
    key_present: bool,
    key_payload_start: usize,
    value: Vec<u8>,
    value_present: bool,
    header_bytes: Vec<u8>,
    headers: Vec<HeaderSpan>,
    /// Names and values of the headers taken from the HEADERS column.
    user_header_len: usize,
    hash: u64,
}

#[derive(Clone, Debug)]
struct HeaderSpan {
    name: Range<usize>,
    value: Option<Range<usize>>,
}

impl EncodedMessage {
    pub fn new() -> EncodedMessage {
        EncodedMessage::default()
    }

    fn clear(&mut self) {
        self.key.clear();
        self.key_present = false;
        self.key_payload_start = 0;
        self.value.clear();
        self.value_present = false;
        self.header_bytes.clear();
        self.headers.clear();
        self.user_header_len = 0;
        self.hash = 0;
    }

    /// The key bytes; `None` when the sink has no KEY.
    pub fn key(&self) -> Option<&[u8]> {
        self.key_present.then_some(&self.key[..])
    }

    /// The key bytes without the Confluent header of an Avro key, so that a partitioner
    /// hashing them keeps each key on its partition when the key's schema id changes. The
    /// same as [`EncodedMessage::key`] for other formats.
    pub fn key_payload(&self) -> Option<&[u8]> {
        self.key_present
            .then(|| &self.key[self.key_payload_start..])
    }

    /// The value bytes; `None` for a tombstone (or a NULL TEXT/BYTES value).
    pub fn value(&self) -> Option<&[u8]> {
        self.value_present.then_some(&self.value[..])
    }

    /// Materialize's default partitioning hash: SeaHash of [`EncodedMessage::key_payload`],
    /// or 0 without a key.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The headers, in order: [`TIME_HEADER`] first, then those of the HEADERS column in the
    /// map's key order.
    pub fn headers(&self) -> Headers<'_> {
        Headers {
            message: self,
            next: 0,
        }
    }

    /// The bytes a user is charged for: key, value, and the names and values of the headers
    /// from the HEADERS column (Outflow's own headers are not counted).
    pub fn user_bytes(&self) -> usize {
        self.key().map_or(0, <[u8]>::len)
            + self.value().map_or(0, <[u8]>::len)
            + self.user_header_len
    }

    /// An owned copy, for callers that keep messages beyond the next `encode`.
    pub fn to_owned_message(&self) -> OwnedMessage {
        OwnedMessage {
            key: self.key().map(<[u8]>::to_vec),
            value: self.value().map(<[u8]>::to_vec),
            headers: self
                .headers()
                .map(|(n, v)| (n.to_string(), v.map(<[u8]>::to_vec)))
                .collect(),
            hash: self.hash,
        }
    }

    fn push_user_header(&mut self, name: &str, value: Option<&[u8]>) {
        self.user_header_len += name.len() + value.map_or(0, <[u8]>::len);
        let name_start = self.header_bytes.len();
        self.header_bytes.extend_from_slice(name.as_bytes());
        let name = name_start..self.header_bytes.len();
        let value = value.map(|v| {
            let start = self.header_bytes.len();
            self.header_bytes.extend_from_slice(v);
            start..self.header_bytes.len()
        });
        self.headers.push(HeaderSpan { name, value });
    }

    fn push_header_with(&mut self, name: &str, value: impl FnOnce(&mut Vec<u8>)) {
        let name_start = self.header_bytes.len();
        self.header_bytes.extend_from_slice(name.as_bytes());
        let name = name_start..self.header_bytes.len();
        let value_start = self.header_bytes.len();
        value(&mut self.header_bytes);
        self.headers.push(HeaderSpan {
            name,
            value: Some(value_start..self.header_bytes.len()),
        });
    }
}

impl fmt::Debug for EncodedMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        f.debug_struct("EncodedMessage")
            .field("key", &self.key().map(text))
            .field("value", &self.value().map(text))
            .field(
                "headers",
                &self
                    .headers()
                    .map(|(n, v)| (n, v.map(text)))
                    .collect::<Vec<_>>(),
            )
            .field("hash", &self.hash)
            .finish()
    }
}

/// The headers of an [`EncodedMessage`]: `(name, value)`, where a value may be null.
pub struct Headers<'a> {
    message: &'a EncodedMessage,
    next: usize,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        let span = self.message.headers.get(self.next)?;
        self.next += 1;
        let bytes = &self.message.header_bytes;
        let name = std::str::from_utf8(&bytes[span.name.clone()])
            .expect("header names are copied from str");
        Some((name, span.value.clone().map(|r| &bytes[r])))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.message.headers.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Headers<'_> {}

/// An [`EncodedMessage`] copied out of its buffers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedMessage {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub hash: u64,
}
