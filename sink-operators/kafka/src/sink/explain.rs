//! `SinkPlan::explain`: what a sink will do, without a broker or a registry — the Avro schemas
//! it would register and their subjects, the topics it would create, how it partitions, the
//! names it uses in Kafka (and so the ACLs it needs), and one message per envelope case.
//!
//! Everything comes from what the sink itself uses: the schemas from
//! [`SinkEncoder::avro_schemas`], the subjects from [`subject`], the topics from
//! [`SinkPlan::topic_settings`] and [`SinkPlan::progress_topic_settings`], the names from
//! [`SinkPlan::names`], the messages from the sink's encoder and the partition from the sink's
//! own partition hash. The example rows are made of fixed values per type ([`example_row`]),
//! read through the change feed's JSON decoder.

use std::collections::BTreeMap;

use serde::Serialize;

use super::produce::partition_hash;
use super::{SinkError, SinkPlan};
use crate::dataflow::{DiffPair, RelationDesc, Row, RowPacker, ScalarType};
use crate::encoders::decode::{
    confluent_schema_id, debezium_from_avro, row_from_avro, row_from_json,
};
use crate::encoders::{
    row_json, EncodedMessage, EncoderConfig, Envelope, FormatSpec, Part, SinkEncoder,
};
use crate::partition::partition_for;
use crate::spec::DeliveryGuarantee;
use crate::topic::TopicSettings;

/// The schema id the examples carry in their Confluent header: the registry assigns the real
/// one when the sink registers the schema.
pub const EXAMPLE_SCHEMA_ID: i32 = 0;

/// What a sink will do, as [`SinkPlan::explain`] finds it.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub sink: String,
    /// The relation it reads.
    pub from: String,
    pub envelope: &'static str,
    pub key: Option<Vec<String>>,
    pub key_format: Option<&'static str>,
    pub value_format: &'static str,
    pub delivery: &'static str,
    pub compression: &'static str,
    /// The Avro schemas it registers, key first.
    pub schemas: Vec<SchemaPlan>,
    pub topic: TopicPlan,
    pub progress_topic: TopicPlan,
    pub partitioning: String,
    /// The worker count the names below are for.
    pub workers: u32,
    pub transactional_ids: Vec<String>,
    pub progress_groups: Vec<String>,
    pub progress_reader_group: String,
    pub acls: Vec<AclPlan>,
    pub examples: Vec<ExampleMessage>,
}

/// One schema the sink registers.
#[derive(Clone, Debug, Serialize)]
pub struct SchemaPlan {
    pub part: &'static str,
    pub subject: String,
    /// The compatibility level set on a subject that has none; `None`: the registry's.
    pub compatibility: Option<&'static str>,
    /// The schema's JSON text, as registered.
    pub schema: String,
}

/// A topic as the sink would create it.
#[derive(Clone, Debug, Serialize)]
pub struct TopicPlan {
    pub name: String,
    /// `None`: the broker's default.
    pub partitions: Option<i32>,
    /// `None`: the broker's default.
    pub replication_factor: Option<i32>,
    pub configs: BTreeMap<String, String>,
}

impl From<TopicSettings> for TopicPlan {
    fn from(settings: TopicSettings) -> TopicPlan {
        TopicPlan {
            name: settings.name,
            partitions: settings.partitions,
            replication_factor: settings.replication_factor,
            configs: settings.configs,
        }
    }
}

/// One ACL a principal needs for the sink (the README's table).
#[derive(Clone, Debug, Serialize)]
pub struct AclPlan {
    pub resource_type: &'static str,
    pub name: String,
    pub pattern_type: &'static str,
    pub operations: &'static str,
    pub used_for: &'static str,
}

/// One message the sink would write.
#[derive(Clone, Debug, Serialize)]
pub struct ExampleMessage {
    /// `insert`, `update` or `delete`.
    pub case: &'static str,
    pub time: u64,
    pub key: Option<RenderedPart>,
    /// `None`: a tombstone.
    pub value: Option<RenderedPart>,
    pub headers: Vec<(String, Option<String>)>,
    /// The message's partition, or how it is found when the partition count is the broker's.
    pub partition: String,
}

/// A key or value: its bytes, and what they say.
#[derive(Clone, Debug, Serialize)]
pub struct RenderedPart {
    pub format: &'static str,
    /// JSON and TEXT: the bytes as text; BYTES: `\x…` hex; AVRO: the decoded datum in FORMAT
    /// JSON (a DEBEZIUM value as `{"before": …, "after": …}`).
    pub text: String,
    /// The bytes in hex (for AVRO, the Confluent header with [`EXAMPLE_SCHEMA_ID`] first).
    pub hex: String,
}

impl SinkPlan {
    /// What this sink will do on `workers` workers, computed without any I/O.
    ///
    /// ```
    /// use outflow::{statement::Catalog, SinkPlan};
    ///
    /// let catalog = Catalog::from_sql(
    ///     "CREATE CONNECTION k TO KAFKA (BROKER 'kafka.example.com:9092');
    ///      CREATE CONNECTION csr TO CONFLUENT SCHEMA REGISTRY (URL 'https://csr.example.com');
    ///      CREATE TABLE orders (id bigint PRIMARY KEY, total numeric(10,2));
    ///      CREATE SINK s FROM orders INTO KAFKA CONNECTION k (TOPIC 'orders') KEY (id)
    ///        FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr ENVELOPE UPSERT;",
    /// )?;
    /// let explanation = SinkPlan::from_catalog(&catalog, "s")?.explain(2)?;
    /// let subjects: Vec<&str> = explanation.schemas.iter().map(|s| s.subject.as_str()).collect();
    /// assert_eq!(subjects, ["orders-key", "orders-value"]);
    /// assert_eq!(explanation.transactional_ids, ["outflow-s-0", "outflow-s-1"]);
    /// let delete = &explanation.examples[2];
    /// assert_eq!((delete.case, delete.key.as_ref().unwrap().text.as_str()), ("delete", r#"{"id":1}"#));
    /// assert!(delete.value.is_none(), "a tombstone");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn explain(&self, workers: u32) -> Result<Explanation, SinkError> {
        let spec = &self.spec;
        let config = self.encoder_config();
        let avro = SinkEncoder::avro_schemas(&config)?;
        let mut schemas = Vec::new();
        for (part, schema, format) in [
            (
                Part::Key,
                avro.key,
                spec.key_format.as_ref().unwrap_or(&spec.value_format),
            ),
            (Part::Value, avro.value, &spec.value_format),
        ] {
            let (Some(schema), FormatSpec::Avro(avro_spec)) = (schema, format) else {
                continue;
            };
            let level = match part {
                Part::Key => avro_spec.key_compatibility,
                Part::Value => avro_spec.value_compatibility,
            };
            schemas.push(SchemaPlan {
                part: part.as_str(),
                subject: config.subject(part, avro_spec),
                compatibility: level.map(|l| l.as_str()),
                schema,
            });
        }
        let encoder = SinkEncoder::with_schema_ids(
            config.clone(),
            Some(EXAMPLE_SCHEMA_ID),
            Some(EXAMPLE_SCHEMA_ID),
        )?;
        let names = self.names();
        let topic: TopicPlan = self.topic_settings().into();
        let examples = self.examples(&config, &encoder, &schemas, topic.partitions)?;
        let exactly_once = spec.delivery == DeliveryGuarantee::ExactlyOnce;
        let key_desc = spec.key.as_ref();
        Ok(Explanation {
            sink: spec.name.clone(),
            from: config.relation.clone(),
            envelope: envelope_name(spec.envelope),
            key: key_desc.map(|k| k.columns.clone()),
            key_format: key_desc.map(|_| config.key_format.name()),
            value_format: spec.value_format.name(),
            delivery: spec.delivery.as_str(),
            compression: spec.compression.as_str(),
            schemas,
            partitioning: self.partitioning(),
            workers,
            transactional_ids: if exactly_once {
                (0..workers).map(|w| names.transactional_id(w)).collect()
            } else {
                Vec::new()
            },
            progress_groups: (0..workers).map(|w| names.progress_group_id(w)).collect(),
            progress_reader_group: names.progress_reader_group(),
            acls: self.acls(exactly_once),
            progress_topic: self.progress_topic_settings().into(),
            topic,
            examples,
        })
    }

    fn partitioning(&self) -> String {
        let spec = &self.spec;
        let count = match spec.topic_partition_count {
            Some(count) => format!("{count} partitions (TOPIC PARTITION COUNT)"),
            None => "the topic's partition count (the broker's default when the sink creates it)"
                .to_string(),
        };
        match (&spec.partition_by, spec.key.is_some()) {
            (Some(expr), _) => format!(
                "PARTITION BY {expr}, on the row after the change (before, for a delete), \
                 modulo {count}; a NULL or a failing expression goes to partition 0"
            ),
            (None, true) => format!(
                "kafka_murmur2 of the encoded key (without the Confluent header) modulo {count}, \
                 as the Java client partitions"
            ),
            (None, false) => format!(
                "keyless: the stable hash of the row's pairing key modulo {count}, so a row's \
                 changes stay on one partition"
            ),
        }
    }

    fn acls(&self, exactly_once: bool) -> Vec<AclPlan> {
        let spec = &self.spec;
        let progress = &self.connection.progress_topic;
        let mut acls = vec![
            AclPlan {
                resource_type: "Topic",
                name: spec.topic.clone(),
                pattern_type: "LITERAL",
                operations: "Write, Create",
                used_for:
                    "producing (Write includes Describe); Create only when the topic is missing",
            },
            AclPlan {
                resource_type: "Topic",
                name: progress.clone(),
                pattern_type: "LITERAL",
                operations: "Read, Write, Create",
                used_for: "progress records and recovery; Create only when the topic is missing",
            },
            AclPlan {
                resource_type: "Group",
                name: spec.progress_group_id_prefix.clone(),
                pattern_type: "PREFIXED",
                operations: "Read",
                used_for: "the progress groups' transactional offsets and the progress reader",
            },
        ];
        if exactly_once {
            acls.push(AclPlan {
                resource_type: "TransactionalId",
                name: spec.transactional_id_prefix.clone(),
                pattern_type: "PREFIXED",
                operations: "Write",
                used_for: "init_transactions and fencing; Write includes the Describe that \
                           outflow txn list needs",
            });
        }
        let checked = if spec.topic_config.is_empty() {
            vec![progress.clone()]
        } else {
            vec![progress.clone(), spec.topic.clone()]
        };
        for topic in checked {
            acls.push(AclPlan {
                resource_type: "Topic",
                name: topic,
                pattern_type: "LITERAL",
                operations: "DescribeConfigs (optional)",
                used_for: "checking an existing topic's configs against the sink's",
            });
        }
        acls
    }

    fn examples(
        &self,
        config: &EncoderConfig,
        encoder: &SinkEncoder,
        schemas: &[SchemaPlan],
        partitions: Option<i32>,
    ) -> Result<Vec<ExampleMessage>, SinkError> {
        let spec = &self.spec;
        let example = |keep: &[usize], variant| {
            example_row(&spec.desc, keep, variant).map_err(|message| SinkError::Explain {
                sink: spec.name.clone(),
                message,
            })
        };
        let first = example(&[], 0)?;
        // An update changes every column but the key's.
        let second = example(spec.pairing.columns().unwrap_or(&[]), 1)?;
        let mut cases = vec![(
            "insert",
            1,
            DiffPair {
                before: None,
                after: Some(first.clone()),
            },
        )];
        // Without a key nothing pairs: a changed row is a delete and an insert.
        if spec.pairing.columns().is_some() {
            cases.push((
                "update",
                2,
                DiffPair {
                    before: Some(first.clone()),
                    after: Some(second.clone()),
                },
            ));
        }
        let deleted = if spec.pairing.columns().is_some() {
            second
        } else {
            first
        };
        cases.push((
            "delete",
            3,
            DiffPair {
                before: Some(deleted),
                after: None,
            },
        ));
        let schema_of = |part: &str| {
            schemas.iter().find(|s| s.part == part).map(|s| {
                apache_avro::Schema::parse_str(&s.schema)
                    .expect("a generated schema is parsed when it is generated")
            })
        };
        let key_schema = schema_of("key");
        let value_schema = schema_of("value");
        let key_desc = spec.key.as_ref().map(|k| spec.desc.project(&k.indices));
        let mut packer = RowPacker::new();
        let mut message = EncodedMessage::new();
        let mut examples = Vec::new();
        for (case, time, pair) in cases {
            let row = pair.after.clone().or(pair.before.clone()).expect("a side");
            let (key, _) = spec.pairing.split(row, &mut packer);
            encoder.encode(&key, &pair, time, &mut message)?;
            let hash = partition_hash(spec.partition_by.as_ref(), &key, &pair, &message);
            let partition = match (hash, partitions) {
                (Err(error), _) => format!("0 (PARTITION BY failed: {error})"),
                (Ok(hash), Some(count)) => partition_for(hash, count).to_string(),
                (Ok(None), None) => "0".to_string(),
                (Ok(Some(hash)), None) => format!("hash {hash} modulo the partition count"),
            };
            let render_key = |bytes: &[u8]| -> Result<RenderedPart, String> {
                let desc = key_desc.as_ref().expect("only keyed sinks have a key");
                render(&config.key_format, bytes, |body| {
                    let schema = key_schema.as_ref().expect("an Avro key has a schema");
                    row_from_avro(desc, schema, body)
                        .map(|row| row_json(desc, &(0..desc.arity()).collect::<Vec<_>>(), &row))
                        .map_err(|e| e.to_string())
                })
            };
            let render_value = |bytes: &[u8]| -> Result<RenderedPart, String> {
                render(&config.value_format, bytes, |body| {
                    let schema = value_schema.as_ref().expect("an Avro value has a schema");
                    avro_value_text(&spec.desc, spec.envelope, schema, body)
                })
            };
            let failed = |message: String| SinkError::Explain {
                sink: spec.name.clone(),
                message: format!("the example {case} message does not decode: {message}"),
            };
            examples.push(ExampleMessage {
                case,
                time,
                key: message.key().map(render_key).transpose().map_err(failed)?,
                value: message
                    .value()
                    .map(render_value)
                    .transpose()
                    .map_err(failed)?,
                headers: message
                    .headers()
                    .map(|(name, value)| {
                        (
                            name.to_string(),
                            value.map(|v| String::from_utf8_lossy(v).into_owned()),
                        )
                    })
                    .collect(),
                partition,
            });
        }
        Ok(examples)
    }
}

fn envelope_name(envelope: Envelope) -> &'static str {
    match envelope {
        Envelope::Upsert => "UPSERT",
        Envelope::Debezium => "DEBEZIUM",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn render(
    format: &FormatSpec,
    bytes: &[u8],
    avro: impl FnOnce(&[u8]) -> Result<String, String>,
) -> Result<RenderedPart, String> {
    let text = match format {
        FormatSpec::Json | FormatSpec::JsonWithSchema | FormatSpec::Text => {
            String::from_utf8_lossy(bytes).into_owned()
        }
        FormatSpec::Bytes => format!("\\x{}", hex(bytes)),
        FormatSpec::Avro(_) => {
            let (_, body) = confluent_schema_id(bytes).map_err(|e| e.to_string())?;
            avro(body)?
        }
    };
    Ok(RenderedPart {
        format: format.name(),
        text,
        hex: hex(bytes),
    })
}

/// An Avro value in FORMAT JSON: the row, or a DEBEZIUM value's `{"before", "after"}`.
fn avro_value_text(
    desc: &RelationDesc,
    envelope: Envelope,
    schema: &apache_avro::Schema,
    body: &[u8],
) -> Result<String, String> {
    let all: Vec<usize> = (0..desc.arity()).collect();
    let json = |row: &Option<Row>| match row {
        Some(row) => row_json(desc, &all, row),
        None => "null".to_string(),
    };
    match envelope {
        Envelope::Upsert => row_from_avro(desc, schema, body)
            .map(|row| row_json(desc, &all, &row))
            .map_err(|e| e.to_string()),
        Envelope::Debezium => debezium_from_avro(desc, schema, body)
            .map(|pair| {
                format!(
                    r#"{{"before":{},"after":{}}}"#,
                    json(&pair.before),
                    json(&pair.after)
                )
            })
            .map_err(|e| e.to_string()),
    }
}

/// A row of `desc` made of fixed example values, `variant` 0 or 1 (the columns in `keep`
/// always take variant 0), read through the change feed's JSON decoder.
pub fn example_row(desc: &RelationDesc, keep: &[usize], variant: u8) -> Result<Row, String> {
    let object: serde_json::Map<String, serde_json::Value> = desc
        .columns()
        .iter()
        .enumerate()
        .map(|(index, column)| {
            let variant = if keep.contains(&index) { 0 } else { variant };
            (
                column.name.clone(),
                example_value(&column.typ.scalar_type, variant),
            )
        })
        .collect();
    let text = serde_json::Value::Object(object).to_string();
    row_from_json(desc, &text)
        .map_err(|e| format!("the example row {text} does not fit the relation: {e}"))
}

/// The FORMAT JSON of an example value of `typ`; variants 0 and 1 differ.
pub fn example_value(typ: &ScalarType, variant: u8) -> serde_json::Value {
    use serde_json::{json, Value};
    let v = u64::from(variant);
    match typ {
        ScalarType::Bool => Value::Bool(variant == 0),
        ScalarType::Int16
        | ScalarType::Int32
        | ScalarType::Int64
        | ScalarType::UInt16
        | ScalarType::UInt32
        | ScalarType::UInt64 => json!(1 + v),
        ScalarType::Float32 | ScalarType::Float64 => json!(1.5 + v as f64),
        ScalarType::Numeric { precision, scale } => {
            let scale = scale.unwrap_or(0);
            let integer_digits = precision.map_or(1, |p| p.saturating_sub(scale));
            let text = match (integer_digits, scale) {
                (0, _) => format!("0.{}", 1 + v),
                (_, 0) => format!("{}", 1 + v),
                (_, s) => format!("{}.{}", 1 + v, "5".repeat(s.min(2) as usize)),
            };
            Value::Number(text.parse().expect("a decimal is a JSON number"))
        }
        ScalarType::Text | ScalarType::VarChar { .. } | ScalarType::Char { .. } => {
            json!(["a", "b"][variant as usize % 2])
        }
        ScalarType::Bytes => json!(["AQ==", "Ag=="][variant as usize % 2]),
        ScalarType::Date => json!(format!("2024-05-0{}", 1 + v)),
        ScalarType::Time => json!(format!("12:0{}:00", v)),
        ScalarType::Timestamp { .. } => json!(format!("2024-05-0{}T12:00:00", 1 + v)),
        ScalarType::TimestampTz { .. } => json!(format!("2024-05-0{}T12:00:00Z", 1 + v)),
        ScalarType::Interval => json!(["1 day", "2 days"][variant as usize % 2]),
        ScalarType::Uuid => json!(format!("00000000-0000-0000-0000-00000000000{}", 1 + v)),
        ScalarType::Jsonb => json!({ "example": 1 + v }),
        ScalarType::List { element } => json!([example_value(element, variant)]),
        ScalarType::Map { value } => json!({ "a": example_value(value, variant) }),
        ScalarType::Record { fields } => Value::Object(
            fields
                .iter()
                .map(|(name, column)| (name.clone(), example_value(&column.scalar_type, variant)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::ColumnType;

    #[test]
    fn every_type_has_example_values_that_differ_and_decode() {
        let types = [
            ScalarType::Bool,
            ScalarType::Int16,
            ScalarType::Int32,
            ScalarType::Int64,
            ScalarType::UInt16,
            ScalarType::UInt32,
            ScalarType::UInt64,
            ScalarType::Float32,
            ScalarType::Float64,
            ScalarType::Numeric {
                precision: None,
                scale: None,
            },
            ScalarType::Numeric {
                precision: Some(2),
                scale: Some(2),
            },
            ScalarType::Numeric {
                precision: Some(38),
                scale: Some(9),
            },
            ScalarType::Text,
            ScalarType::VarChar {
                max_length: Some(1),
            },
            ScalarType::Char { length: Some(1) },
            ScalarType::Bytes,
            ScalarType::Date,
            ScalarType::Time,
            ScalarType::Timestamp { precision: None },
            ScalarType::TimestampTz { precision: Some(3) },
            ScalarType::Interval,
            ScalarType::Uuid,
            ScalarType::Jsonb,
            ScalarType::List {
                element: Box::new(ScalarType::Int32),
            },
            ScalarType::Map {
                value: Box::new(ScalarType::Text),
            },
            ScalarType::Record {
                fields: vec![(
                    "f".to_string(),
                    ColumnType {
                        scalar_type: ScalarType::Date,
                        nullable: false,
                    },
                )],
            },
        ];
        let desc = types
            .iter()
            .enumerate()
            .fold(RelationDesc::empty(), |desc, (i, typ)| {
                desc.with_column(format!("c{i}"), typ.clone(), false)
            });
        let first = example_row(&desc, &[], 0).unwrap();
        let second = example_row(&desc, &[0], 1).unwrap();
        let firsts: Vec<_> = first.iter().collect();
        let seconds: Vec<_> = second.iter().collect();
        assert_eq!(firsts[0], seconds[0], "a kept column keeps its value");
        for (i, (a, b)) in firsts.iter().zip(&seconds).enumerate().skip(1) {
            assert_ne!(a, b, "column c{i} ({:?})", types[i]);
        }
        let all: Vec<usize> = (0..desc.arity()).collect();
        let json = row_json(&desc, &all, &first);
        assert!(
            json.contains(r#""c10":0.10,"c11":1.550000000,"#),
            "numerics keep their declared scale: {json}"
        );
    }
}
