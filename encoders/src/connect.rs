//! FORMAT JSON (SCHEMAS ENABLED): the JSON of Kafka Connect's `JsonConverter` with
//! `schemas.enable=true`, an envelope `{"schema": …, "payload": …}` whose schema is Connect's
//! JSON description of a `Schema` and whose payload is the value as that schema reads it.
//!
//! Each SQL type maps to the Connect type that holds every value exactly:
//!
//! | SQL type | Connect schema | payload |
//! |---|---|---|
//! | `boolean` | `boolean` | `true` |
//! | `smallint`, `integer`, `bigint` | `int16`, `int32`, `int64` | number |
//! | `uint2`, `uint4` | `int32`, `int64` | number |
//! | `uint8` | `bytes` named `org.apache.kafka.connect.data.Decimal`, scale 0 | base64 of the big-endian two's complement |
//! | `real`, `double precision` | `float`, `double` | number (NaN and the infinities are refused: Connect's JSON has no spelling for them) |
//! | `numeric(p,s)` | `Decimal` with `scale` = s | base64 of the unscaled value |
//! | `numeric` | `Decimal` with `scale` 39 (the Avro mapping's) | base64 of the unscaled value at scale 39 |
//! | `text`, `varchar`, `char(n)` | `string` | string (`char(n)` blank-padded) |
//! | `bytea` | `bytes` | base64 |
//! | `uuid` | `string` named `io.debezium.data.Uuid` | hyphenated lowercase |
//! | `jsonb` | `string` named `io.debezium.data.Json` | the document's text as a string |
//! | `date` | `int32` named `org.apache.kafka.connect.data.Date` | days since 1970-01-01 |
//! | `time` | `int64` named `io.debezium.time.MicroTime` | microseconds since midnight |
//! | `timestamp(p)`, `timestamptz(p)`, p ≤ 3 | `int64` named `org.apache.kafka.connect.data.Timestamp` | milliseconds since the epoch (UTC) |
//! | `timestamp`, `timestamptz` (p > 3 or none) | `int64` named `io.debezium.time.MicroTimestamp` | microseconds since the epoch (UTC) |
//! | `interval` | `string` | Postgres's text form |
//! | list | `array` of optional items | array |
//! | `map[text => T]` | `map` of `string` keys to optional values | object |
//! | record | `struct` of its fields (optional where nullable) | object |
//!
//! Connect's own `Time` and `Timestamp` count milliseconds, so they hold only the types whose
//! values have no finer digits; microsecond types take the names Debezium gives them in its
//! default `time.precision.mode` (`adaptive`). A nullable column is an `optional` field.

use base64::Engine as _;
use outflow_dataflow::relation::{Datum, Numeric};
use serde_json::{json, Value};

use crate::avro::binary::decimal_unscaled;
use crate::avro::schema::UNCONSTRAINED_SCALE;
use crate::columns::{for_each_field, for_each_nested, Ctx, Field, Kind, Slot};
use crate::error::{EncodeError, Part};
use crate::{json, text};

pub(crate) const DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
pub(crate) const DATE: &str = "org.apache.kafka.connect.data.Date";
pub(crate) const TIMESTAMP: &str = "org.apache.kafka.connect.data.Timestamp";
pub(crate) const MICRO_TIME: &str = "io.debezium.time.MicroTime";
pub(crate) const MICRO_TIMESTAMP: &str = "io.debezium.time.MicroTimestamp";
pub(crate) const UUID: &str = "io.debezium.data.Uuid";
pub(crate) const JSON: &str = "io.debezium.data.Json";

/// The name of the Debezium envelope's struct, and of its `source` struct.
pub(crate) const ENVELOPE_NAME: &str = "outflow.debezium.envelope";
pub(crate) const SOURCE_NAME: &str = "outflow.debezium.source";

/// The struct of a row's columns.
pub(crate) fn row_schema(fields: &[Field], optional: bool) -> Value {
    json!({
        "type": "struct",
        "fields": fields.iter().map(|f| field_schema(&f.name, slot_schema(&f.slot))).collect::<Vec<_>>(),
        "optional": optional,
    })
}

/// The Debezium envelope: `before` and `after` (optional row structs), and under FULL the
/// `source` struct, `op` and `ts_ms`.
pub(crate) fn debezium_schema(fields: &[Field], full: bool) -> Value {
    let mut envelope = vec![
        field_schema("before", row_schema(fields, true)),
        field_schema("after", row_schema(fields, true)),
    ];
    if full {
        let plain = |t: &str| json!({ "type": t, "optional": false });
        let source = json!({
            "type": "struct",
            "fields": [
                field_schema("connector", plain("string")),
                field_schema("name", plain("string")),
                field_schema("topic", plain("string")),
                field_schema("time", plain("int64")),
                field_schema("snapshot", plain("boolean")),
                field_schema("ts_ms", plain("int64")),
            ],
            "optional": false,
            "name": SOURCE_NAME,
        });
        envelope.push(field_schema("source", source));
        envelope.push(field_schema("op", plain("string")));
        envelope.push(field_schema("ts_ms", plain("int64")));
    }
    json!({ "type": "struct", "fields": envelope, "optional": false, "name": ENVELOPE_NAME })
}

fn field_schema(name: &str, schema: Value) -> Value {
    let mut schema = schema;
    schema["field"] = json!(name);
    schema
}

fn slot_schema(slot: &Slot) -> Value {
    let mut schema = kind_schema(&slot.kind);
    schema["optional"] = json!(slot.nullable);
    schema
}

fn named(typ: &str, name: &str) -> Value {
    json!({ "type": typ, "name": name, "version": 1 })
}

fn decimal(scale: u8) -> Value {
    json!({ "type": "bytes", "name": DECIMAL, "version": 1, "parameters": { "scale": scale.to_string() } })
}

fn kind_schema(kind: &Kind) -> Value {
    match kind {
        Kind::Bool => json!({ "type": "boolean" }),
        Kind::Int16 => json!({ "type": "int16" }),
        Kind::Int32 | Kind::UInt16 => json!({ "type": "int32" }),
        Kind::Int64 | Kind::UInt32 => json!({ "type": "int64" }),
        Kind::UInt64 => decimal(0),
        Kind::Float32 => json!({ "type": "float" }),
        Kind::Float64 => json!({ "type": "double" }),
        Kind::Numeric { scale } => decimal(scale.unwrap_or(UNCONSTRAINED_SCALE)),
        Kind::Text | Kind::Char { .. } | Kind::Interval => json!({ "type": "string" }),
        Kind::Bytes => json!({ "type": "bytes" }),
        Kind::Uuid => named("string", UUID),
        Kind::Jsonb => named("string", JSON),
        Kind::Date => named("int32", DATE),
        Kind::Time => named("int64", MICRO_TIME),
        Kind::Timestamp { millis } | Kind::TimestampTz { millis } => {
            named("int64", if *millis { TIMESTAMP } else { MICRO_TIMESTAMP })
        }
        Kind::List(element) => json!({ "type": "array", "items": slot_schema(element) }),
        Kind::Map(value) => json!({
            "type": "map",
            "keys": { "type": "string", "optional": false },
            "values": slot_schema(value),
        }),
        // Its `optional` is replaced by the slot's.
        Kind::Record(fields) => row_schema(fields, false),
    }
}

/// The bytes that open a message of this schema: `{"schema":…,"payload":`.
pub(crate) fn envelope_prefix(schema: &Value) -> Box<[u8]> {
    let mut prefix = br#"{"schema":"#.to_vec();
    serde_json::to_writer(&mut prefix, schema).expect("writing to a Vec cannot fail");
    prefix.extend_from_slice(br#","payload":"#);
    prefix.into_boxed_slice()
}

/// Writes the payload object of a row's datums.
pub(crate) fn write_row<'d>(
    buf: &mut Vec<u8>,
    part: Part,
    fields: &[Field],
    datums: impl Iterator<Item = Datum<'d>>,
) -> Result<(), EncodeError> {
    buf.push(b'{');
    let mut first = true;
    for_each_field(part, fields, datums, |ctx, datum| {
        if !first {
            buf.push(b',');
        }
        first = false;
        buf.extend_from_slice(&ctx.field.json_key);
        write_slot(buf, &ctx.field.slot, datum, ctx)
    })?;
    buf.push(b'}');
    Ok(())
}

fn write_slot(
    buf: &mut Vec<u8>,
    slot: &Slot,
    datum: Datum<'_>,
    ctx: Ctx<'_>,
) -> Result<(), EncodeError> {
    if datum.is_null() {
        if !slot.nullable {
            return Err(ctx.unexpected_null("a Connect field that is not optional"));
        }
        buf.extend_from_slice(b"null");
        return Ok(());
    }
    match (&slot.kind, datum) {
        (Kind::Bool, Datum::True) => buf.extend_from_slice(b"true"),
        (Kind::Bool, Datum::False) => buf.extend_from_slice(b"false"),
        (Kind::Int16, Datum::Int16(v)) => text::push_i64(buf, v as i64),
        (Kind::Int32, Datum::Int32(v)) => text::push_i64(buf, v as i64),
        (Kind::Int64, Datum::Int64(v)) => text::push_i64(buf, v),
        (Kind::UInt16, Datum::UInt16(v)) => text::push_u64(buf, v as u64),
        (Kind::UInt32, Datum::UInt32(v)) => text::push_u64(buf, v as u64),
        (Kind::UInt64, Datum::UInt64(v)) => write_decimal(buf, Numeric::new(v as i128, 0), 0, ctx)?,
        (Kind::Float32, Datum::Float32(v)) => {
            finite(v as f64, ctx)?;
            json::write_number(buf, datum);
        }
        (Kind::Float64, Datum::Float64(v)) => {
            finite(v, ctx)?;
            json::write_number(buf, datum);
        }
        (Kind::Numeric { scale }, Datum::Numeric(n)) => {
            write_decimal(buf, n, scale.unwrap_or(UNCONSTRAINED_SCALE), ctx)?
        }
        (Kind::Text, Datum::String(s)) => json::write_str(buf, s),
        (Kind::Char { length }, Datum::String(s)) => json::write_padded_str(buf, s, *length),
        (Kind::Bytes, Datum::Bytes(b)) => write_base64(buf, b),
        (Kind::Uuid, Datum::Uuid(u)) => quoted(buf, |buf| text::write_uuid(buf, &u)),
        (Kind::Jsonb, Datum::Jsonb(s)) => {
            json::check_json(s, ctx)?;
            json::write_str(buf, s);
        }
        (Kind::Date, Datum::Date(d)) => text::push_i64(buf, d.0 as i64),
        (Kind::Time, Datum::Time(t)) => text::push_u64(buf, t.0),
        (Kind::Timestamp { millis }, Datum::Timestamp(t))
        | (Kind::TimestampTz { millis }, Datum::TimestampTz(t)) => {
            text::push_i64(buf, if *millis { t.0.div_euclid(1000) } else { t.0 })
        }
        (Kind::Interval, Datum::Interval(iv)) => quoted(buf, |buf| text::write_interval(buf, iv)),
        (Kind::List(element), Datum::List(list)) => {
            buf.push(b'[');
            for (i, d) in list.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_slot(buf, element, d, ctx)?;
            }
            buf.push(b']');
        }
        (Kind::Map(value), Datum::Map(map)) => {
            buf.push(b'{');
            for (i, (k, d)) in map.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                json::write_str(buf, k);
                buf.push(b':');
                write_slot(buf, value, d, ctx)?;
            }
            buf.push(b'}');
        }
        (Kind::Record(fields), Datum::List(list)) => {
            buf.push(b'{');
            let mut first = true;
            for_each_nested(ctx, fields, list.iter(), |field, d| {
                if !first {
                    buf.push(b',');
                }
                first = false;
                buf.extend_from_slice(&field.json_key);
                write_slot(buf, &field.slot, d, ctx)
            })?;
            buf.push(b'}');
        }
        _ => return Err(ctx.mismatch(slot, datum)),
    }
    Ok(())
}

fn finite(v: f64, ctx: Ctx<'_>) -> Result<(), EncodeError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(ctx.error(format!(
            "{v} cannot be written as JSON with an embedded schema: Kafka Connect's JsonConverter reads only finite numbers"
        )))
    }
}

fn write_decimal(
    buf: &mut Vec<u8>,
    n: Numeric,
    scale: u8,
    ctx: Ctx<'_>,
) -> Result<(), EncodeError> {
    if n.is_nan() {
        return Err(ctx.error("NaN cannot be written as a Kafka Connect Decimal".to_string()));
    }
    let (bytes, start) = decimal_unscaled(n, scale, ctx, "Kafka Connect Decimal")?;
    write_base64(buf, &bytes[start..]);
    Ok(())
}

fn write_base64(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.push(b'"');
    let start = buf.len();
    let len = base64::encoded_len(bytes.len(), true).expect("lengths fit base64 output");
    buf.resize(start + len, 0);
    base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut buf[start..])
        .expect("the buffer was sized by encoded_len");
    buf.push(b'"');
}

fn quoted(buf: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
    buf.push(b'"');
    f(buf);
    buf.push(b'"');
}
