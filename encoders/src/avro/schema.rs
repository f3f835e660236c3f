//! Avro schemas generated from a relation, following Materialize's mapping so that a topic
//! written by Materialize can be continued by Outflow under the same registry subjects: the
//! named types (`com.materialize.sink.interval`, `.uintN`, `.recordN`) keep Materialize's
//! names because Avro schema resolution matches named types by name.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use crate::columns::{Field, Kind, Slot};

const NAMESPACE: &str = "com.materialize.sink";

/// Unconstrained numerics are written with a fixed scale wide enough for any value; the
/// precision and scale are Materialize's (its aggregate precision and its datum precision).
pub(crate) const UNCONSTRAINED_PRECISION: u8 = 81;
pub(crate) const UNCONSTRAINED_SCALE: u8 = 39;
/// The precision Materialize declares for every constrained numeric, whatever `numeric(p, s)`
/// says: schemas then stay compatible when a column's precision changes.
pub(crate) const CONSTRAINED_PRECISION: u8 = 39;

/// The Debezium envelope's row record.
pub(crate) const DEBEZIUM_ROW_NAME: &str = "row";

/// What a schema's records and fields are documented with, and whether nullable fields
/// default to null.
#[derive(Default)]
pub(crate) struct SchemaOptions {
    pub null_defaults: bool,
    /// `DOC ON TYPE`: the doc of the record that holds the relation's columns.
    pub type_doc: Option<String>,
    /// `DOC ON COLUMN`, by the column's name in the relation.
    pub column_docs: HashMap<String, String>,
}

/// The record `fullname` with one field per column.
pub(crate) fn row_schema(fullname: &str, fields: &[Field], options: &SchemaOptions) -> Value {
    let mut namer = Namer::default();
    relation_record(&mut namer, fullname, fields, options)
}

/// The record `fullname` with fields `before` and `after`, each `["null", row]`, where `row`
/// holds the columns. Under `full` (`ENVELOPE DEBEZIUM (FULL)`) the record also has `source`,
/// the record [`SOURCE_FULLNAME`], `op` (a string) and `ts_ms` (a long), in Debezium's order.
pub(crate) fn debezium_schema(
    fullname: &str,
    fields: &[Field],
    options: &SchemaOptions,
    full: bool,
) -> Value {
    let mut namer = Namer::default();
    let row = relation_record(&mut namer, DEBEZIUM_ROW_NAME, fields, options);
    let mut before = json!({ "name": "before", "type": ["null", row] });
    let mut after = json!({ "name": "after", "type": ["null", DEBEZIUM_ROW_NAME] });
    if options.null_defaults {
        before["default"] = Value::Null;
        after["default"] = Value::Null;
    }
    let mut envelope = vec![before, after];
    if full {
        let (namespace, name) = SOURCE_FULLNAME
            .rsplit_once('.')
            .expect("the source record's full name has a namespace");
        envelope.push(json!({
            "name": "source",
            "type": {
                "type": "record",
                "name": name,
                "namespace": namespace,
                "fields": [
                    { "name": "connector", "type": "string" },
                    { "name": "name", "type": "string" },
                    { "name": "topic", "type": "string" },
                    { "name": "time", "type": "long" },
                    { "name": "snapshot", "type": "boolean" },
                    { "name": "ts_ms", "type": "long" },
                ],
            },
        }));
        envelope.push(json!({ "name": "op", "type": "string" }));
        envelope.push(json!({ "name": "ts_ms", "type": "long" }));
    }
    let mut record = Map::new();
    record.insert("type".into(), json!("record"));
    insert_name(&mut record, fullname);
    record.insert("fields".into(), Value::Array(envelope));
    Value::Object(record)
}

/// The full name of the `source` record of `ENVELOPE DEBEZIUM (FULL)`: fixed, so that its
/// schema stays the same whatever the value record is called.
pub const SOURCE_FULLNAME: &str = "outflow.debezium.source";

/// Writes a record's `name`, and its `namespace` when the name is a dotted full name:
/// `a.b.c.name` is registered as `"name": "name", "namespace": "a.b.c"`, as Materialize
/// registers it. (Both spell the same Avro full name; the registry stores the text.)
fn insert_name(record: &mut Map<String, Value>, fullname: &str) {
    match fullname.rsplit_once('.') {
        Some((namespace, name)) => {
            record.insert("name".into(), json!(name));
            record.insert("namespace".into(), json!(namespace));
        }
        None => {
            record.insert("name".into(), json!(fullname));
        }
    }
}

fn relation_record(
    namer: &mut Namer,
    name: &str,
    fields: &[Field],
    options: &SchemaOptions,
) -> Value {
    let mut record = Map::new();
    record.insert("type".into(), json!("record"));
    insert_name(&mut record, name);
    if let Some(doc) = &options.type_doc {
        record.insert("doc".into(), json!(doc));
    }
    record.insert(
        "fields".into(),
        Value::Array(record_fields(
            namer,
            fields,
            options,
            Some(&options.column_docs),
        )),
    );
    Value::Object(record)
}

fn record_fields(
    namer: &mut Namer,
    fields: &[Field],
    options: &SchemaOptions,
    docs: Option<&HashMap<String, String>>,
) -> Vec<Value> {
    let mut field_names = FieldNamer::default();
    fields
        .iter()
        .map(|field| {
            let mut out = Map::new();
            out.insert("name".into(), json!(field_names.valid_unique(&field.name)));
            out.insert("type".into(), slot_type(namer, &field.slot, options));
            if options.null_defaults && field.slot.nullable {
                out.insert("default".into(), Value::Null);
            }
            if let Some(doc) = docs.and_then(|docs| docs.get(&field.source_name)) {
                out.insert("doc".into(), json!(doc));
            }
            Value::Object(out)
        })
        .collect()
}

fn slot_type(namer: &mut Namer, slot: &Slot, options: &SchemaOptions) -> Value {
    let t = kind_type(namer, &slot.kind, options);
    // Null first, so that `"default": null` is allowed (a union's default is its first branch).
    if slot.nullable {
        json!(["null", t])
    } else {
        t
    }
}

fn kind_type(namer: &mut Namer, kind: &Kind, options: &SchemaOptions) -> Value {
    match kind {
        Kind::Bool => json!("boolean"),
        Kind::Int16 | Kind::Int32 => json!("int"),
        Kind::Int64 => json!("long"),
        Kind::UInt16 => namer.fixed("uint2", 2),
        Kind::UInt32 => namer.fixed("uint4", 4),
        Kind::UInt64 => namer.fixed("uint8", 8),
        Kind::Float32 => json!("float"),
        Kind::Float64 => json!("double"),
        Kind::Numeric { scale } => {
            let (precision, scale) = match scale {
                Some(s) => (CONSTRAINED_PRECISION, *s),
                None => (UNCONSTRAINED_PRECISION, UNCONSTRAINED_SCALE),
            };
            json!({ "type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale })
        }
        Kind::Text | Kind::Char { .. } => json!("string"),
        Kind::Bytes => json!("bytes"),
        Kind::Date => json!({ "type": "int", "logicalType": "date" }),
        Kind::Time => json!({ "type": "long", "logicalType": "time-micros" }),
        Kind::Timestamp { millis } | Kind::TimestampTz { millis } => json!({
            "type": "long",
            "logicalType": if *millis { "timestamp-millis" } else { "timestamp-micros" },
        }),
        Kind::Interval => namer.fixed("interval", 16),
        Kind::Uuid => json!({ "type": "string", "logicalType": "uuid" }),
        Kind::Jsonb => json!({ "type": "string", "connect.name": "io.debezium.data.Json" }),
        Kind::List(element) => {
            json!({ "type": "array", "items": slot_type(namer, element, options) })
        }
        Kind::Map(value) => json!({ "type": "map", "values": slot_type(namer, value, options) }),
        Kind::Record(fields) => {
            let name = namer.record_name();
            json!({ "type": "record", "name": name, "fields": record_fields(namer, fields, options, None) })
        }
    }
}

/// Names the schema's named types: each fixed type is defined where it first appears and
/// referred to by name after that, and anonymous records are numbered across the schema.
#[derive(Default)]
struct Namer {
    records: usize,
    defined: HashSet<&'static str>,
}

impl Namer {
    fn fixed(&mut self, name: &'static str, size: usize) -> Value {
        let fullname = format!("{NAMESPACE}.{name}");
        if self.defined.insert(name) {
            json!({ "type": "fixed", "size": size, "name": fullname })
        } else {
            json!(fullname)
        }
    }

    fn record_name(&mut self) -> String {
        let name = format!("{NAMESPACE}.record{}", self.records);
        self.records += 1;
        name
    }
}

/// Avro field names within one record: valid, and unique after being made valid.
#[derive(Default)]
struct FieldNamer {
    used: HashSet<String>,
}

impl FieldNamer {
    /// `col-a` and `col@a` both become `col_a`; the second gets the smallest number that
    /// makes it unique, `col_a1`.
    fn valid_unique(&mut self, name: &str) -> String {
        let base = valid_name(name);
        let mut candidate = base.clone();
        let mut n = 1;
        while self.used.contains(&candidate) {
            candidate = format!("{base}{n}");
            n += 1;
        }
        self.used.insert(candidate.clone());
        candidate
    }
}

/// Avro names are `[A-Za-z_][A-Za-z0-9_]*`: other characters become `_`, and a leading digit
/// gets an `_` in front.
pub(crate) fn valid_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Checks an `AVRO … FULLNAME`: dot-separated Avro names; the last is the record's name and
/// the rest its namespace.
pub(crate) fn check_fullname(fullname: &str) -> Result<(), String> {
    if fullname.is_empty() {
        return Err("it is empty".to_string());
    }
    for part in fullname.split('.') {
        if part.is_empty() {
            return Err("it has an empty component between dots".to_string());
        }
        let mut chars = part.chars();
        let first = chars.next().expect("non-empty");
        if !(first.is_ascii_alphabetic() || first == '_') {
            return Err(format!(
                "the component \"{part}\" must start with a letter or _"
            ));
        }
        if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
            return Err(format!(
                "the component \"{part}\" contains {bad:?}; only letters, digits and _ are allowed"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_valid_and_unique() {
        let mut namer = FieldNamer::default();
        let names: Vec<_> = ["col-a", "col@a", "1st", "", "ok_1", "ok_1", "é"]
            .iter()
            .map(|n| namer.valid_unique(n))
            .collect();
        assert_eq!(
            names,
            ["col_a", "col_a1", "_1st", "_", "ok_1", "ok_11", "_1"]
        );
    }

    #[test]
    fn fullnames_are_checked() {
        assert!(check_fullname("a.b.c").is_ok());
        assert!(check_fullname("_row").is_ok());
        assert!(check_fullname("a..b")
            .unwrap_err()
            .contains("empty component"));
        assert!(check_fullname("a.1b").unwrap_err().contains("\"1b\""));
        assert!(check_fullname("a-b").unwrap_err().contains("'-'"));
        assert!(check_fullname("").is_err());
    }
}
