//! FORMAT JSON read back (`encoders/JSON.md`), for topics and for the change feed alike.
//! Every value is taken from its own JSON text, so numbers keep every digit: a numeric is
//! read from its digits and a float by Rust's correctly rounded parser, never through
//! `serde_json`'s number type.
//!
//! Beyond what the encoder writes, a row may be an array in column order, a record an array
//! in field order, a number a string holding one, and a boolean `"t"` or `"f"`.

use std::collections::BTreeMap;

use base64::Engine as _;
use outflow_dataflow::relation::values::parse_uuid;
use outflow_dataflow::relation::{Datum, RelationDesc, Row, RowPacker, Time};
use outflow_dataflow::DiffPair;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::Problem;
use super::{date, fields, float, in_column, integer, interval, numeric, text_value, timestamp};
use crate::columns::{Field, Kind, Slot};
use crate::error::DecodeError;

/// The row of `desc` that the JSON text `json` holds: an object by column name (as FORMAT
/// JSON writes rows; repeated names as the encoder makes them unique, absent columns NULL) or
/// an array in column order.
pub fn row_from_json(desc: &RelationDesc, json: &str) -> Result<Row, DecodeError> {
    let raw = document(json)?;
    row_from_raw(&fields(desc), raw)
}

/// The `{"before": row or null, "after": row or null}` of ENVELOPE DEBEZIUM (whose other
/// members, as FULL writes them, are not rows and are passed over).
pub fn debezium_from_json(desc: &RelationDesc, json: &str) -> Result<DiffPair<Row>, DecodeError> {
    let raw = document(json)?;
    let Ok(Json::Object(parts)) = Json::parse(raw, "part") else {
        return Err(DecodeError::Message(format!(
            "expected a {{\"before\": …, \"after\": …}} object, found {}",
            excerpt(raw.get())
        )));
    };
    // `source`, `op` and `ts_ms` are what ENVELOPE DEBEZIUM (FULL) adds, and `transaction`
    // what other Debezium writers add; the rows are in `before` and `after` alone.
    const MEMBERS: [&str; 6] = ["before", "after", "source", "op", "ts_ms", "transaction"];
    if let Some(name) = parts.keys().find(|k| !MEMBERS.contains(&k.as_str())) {
        return Err(DecodeError::Message(format!(
            "a DEBEZIUM value has \"before\" and \"after\" (and \"source\", \"op\", \"ts_ms\", \"transaction\"), not \"{name}\""
        )));
    }
    let fields = fields(desc);
    let part = |name: &str| -> Result<Option<Row>, DecodeError> {
        match parts.get(name) {
            None => Ok(None),
            Some(raw) if raw.get().trim() == "null" => Ok(None),
            Some(raw) => row_from_raw(&fields, raw)
                .map(Some)
                .map_err(|e| DecodeError::Message(format!("\"{name}\": {e}"))),
        }
    };
    Ok(DiffPair {
        before: part("before")?,
        after: part("after")?,
    })
}

fn document(json: &str) -> Result<&RawValue, DecodeError> {
    serde_json::from_str(json).map_err(|e| DecodeError::Message(format!("not JSON: {e}")))
}

fn row_from_raw(fields: &[Field], raw: &RawValue) -> Result<Row, DecodeError> {
    let values: Vec<Option<&RawValue>> = match Json::parse(raw, "column")
        .map_err(DecodeError::Message)?
    {
        Json::Object(mut object) => {
            if let Some(name) = object
                .keys()
                .find(|name| !fields.iter().any(|f| f.name == **name))
            {
                let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
                return Err(DecodeError::Message(format!(
                    "unknown column \"{name}\" (the columns are {})",
                    names.join(", ")
                )));
            }
            fields.iter().map(|f| object.remove(&f.name)).collect()
        }
        Json::Array(items) if items.len() == fields.len() => items.into_iter().map(Some).collect(),
        Json::Array(items) => {
            return Err(DecodeError::Message(format!(
                "the row has {} values but the relation has {} columns",
                items.len(),
                fields.len()
            )))
        }
        _ => {
            return Err(DecodeError::Message(format!(
                "expected a row object, found {}",
                excerpt(raw.get())
            )))
        }
    };
    let mut packer = RowPacker::new();
    for (field, value) in fields.iter().zip(values) {
        push_value(&mut packer, &field.slot, value).map_err(|p| in_column(field, p))?;
    }
    Ok(packer.finish())
}

/// One JSON value, its parts still as text.
enum Json<'a> {
    Null,
    Bool(bool),
    /// The number's text, every digit of it.
    Number(&'a str),
    String(String),
    Array(Vec<&'a RawValue>),
    Object(BTreeMap<String, &'a RawValue>),
}

impl<'a> Json<'a> {
    /// `raw` is valid JSON already (it was cut from a parsed document), so only its outer
    /// layer is parsed here. An object that names a member twice is refused (rather than one
    /// of its values silently winning); `member` says what its members are, for the message.
    fn parse(raw: &'a RawValue, member: &str) -> Result<Json<'a>, Problem> {
        let text = raw.get().trim();
        let invalid = |e: serde_json::Error| format!("not JSON: {e}");
        Ok(match text.as_bytes().first() {
            Some(b'n') => Json::Null,
            Some(b't') => Json::Bool(true),
            Some(b'f') => Json::Bool(false),
            Some(b'"') => Json::String(serde_json::from_str(text).map_err(invalid)?),
            Some(b'[') => Json::Array(serde_json::from_str(text).map_err(invalid)?),
            Some(b'{') => {
                let Members(members) = serde_json::from_str(text).map_err(invalid)?;
                let mut object = BTreeMap::new();
                for (name, value) in members {
                    if object.contains_key(&name) {
                        return Err(format!("{member} \"{name}\" appears twice"));
                    }
                    object.insert(name, value);
                }
                Json::Object(object)
            }
            _ => Json::Number(text),
        })
    }

    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number(_) => "a number",
            Json::String(_) => "a string",
            Json::Array(_) => "an array",
            Json::Object(_) => "an object",
        }
    }

    /// The text of a number, or of a string holding one.
    fn number_text(&self) -> Option<&str> {
        match self {
            Json::Number(n) => Some(n),
            Json::String(s) => Some(s.trim()),
            _ => None,
        }
    }
}

/// What the members of an object value of type `slot` are called in messages.
fn member_word(slot: &Slot) -> &'static str {
    match slot.kind {
        Kind::Record(_) => "field",
        Kind::Map(_) => "key",
        _ => "member",
    }
}

/// An object's members in the order written, repeated names included.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Visit<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Members<'a>, M::Error> {
                let mut members = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    members.push((name, map.next_value::<&'a RawValue>()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visit(std::marker::PhantomData))
    }
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Pushes the value `raw` (absent: NULL) of type `slot`.
fn push_value(packer: &mut RowPacker, slot: &Slot, raw: Option<&RawValue>) -> Result<(), Problem> {
    let value = match raw {
        Some(raw) => Json::parse(raw, member_word(slot))?,
        None => Json::Null,
    };
    if let Json::Null = value {
        if !slot.nullable {
            return Err("null in a NOT NULL column".to_string());
        }
        packer.push(Datum::Null);
        return Ok(());
    }
    let raw = raw.expect("a value that is not null was present");
    let wrong = |what: &str| {
        format!(
            "expected {what}, found {} {}",
            value.kind(),
            excerpt(raw.get())
        )
    };
    let number = |what: &str| value.number_text().ok_or_else(|| wrong(what));
    let string = |what: &str| match &value {
        Json::String(s) => Ok(s.as_str()),
        _ => Err(wrong(what)),
    };
    let datum = match &slot.kind {
        Kind::Bool => match &value {
            Json::Bool(b) => Datum::from_bool(*b),
            Json::String(s) if s == "true" || s == "t" => Datum::True,
            Json::String(s) if s == "false" || s == "f" => Datum::False,
            _ => return Err(wrong("a boolean")),
        },
        Kind::Int16 => Datum::Int16(integer(number("a smallint")?, "a smallint")?),
        Kind::Int32 => Datum::Int32(integer(number("an integer")?, "an integer")?),
        Kind::Int64 => Datum::Int64(integer(number("a bigint")?, "a bigint")?),
        Kind::UInt16 => Datum::UInt16(integer(number("a uint2")?, "a uint2")?),
        Kind::UInt32 => Datum::UInt32(integer(number("a uint4")?, "a uint4")?),
        Kind::UInt64 => Datum::UInt64(integer(number("a uint8")?, "a uint8")?),
        Kind::Float32 => Datum::Float32(float(number("a number")?, &slot.typ)?),
        Kind::Float64 => Datum::Float64(float(number("a number")?, &slot.typ)?),
        Kind::Numeric { .. } => Datum::Numeric(numeric(number("a numeric")?, &slot.typ)?),
        Kind::Text | Kind::Char { .. } => {
            Datum::String(text_value(string("a string")?, &slot.typ)?)
        }
        Kind::Bytes => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(string("a base64 string")?)
                .map_err(|e| format!("{}: not standard base64 ({e})", excerpt(raw.get())))?;
            packer.push(Datum::Bytes(&bytes));
            return Ok(());
        }
        Kind::Uuid => Datum::Uuid(parse_uuid(string("a uuid")?).ok_or_else(|| wrong("a uuid"))?),
        Kind::Jsonb => Datum::Jsonb(raw.get().trim()),
        Kind::Date => Datum::Date(date(string("a date")?)?),
        Kind::Time => Datum::Time(
            Time::parse(string("a time")?).ok_or_else(|| wrong("a time HH:MM:SS[.ffffff]"))?,
        ),
        Kind::Timestamp { .. } => Datum::Timestamp(timestamp(string("a timestamp")?)?),
        Kind::TimestampTz { .. } => Datum::TimestampTz(timestamp(string("a timestamp")?)?),
        Kind::Interval => Datum::Interval(interval(string("an interval")?)?),
        Kind::List(element) => {
            let Json::Array(items) = &value else {
                return Err(wrong("an array"));
            };
            return push_list(
                packer,
                items.iter().map(|item| (element.as_ref(), *item)),
                |i| format!("element {i}"),
            );
        }
        Kind::Map(value_slot) => {
            let Json::Object(entries) = &value else {
                return Err(wrong("an object"));
            };
            let mut rows: Vec<(&str, Row)> = Vec::with_capacity(entries.len());
            for (key, item) in entries {
                let mut one = RowPacker::new();
                push_value(&mut one, value_slot, Some(item))
                    .map_err(|e| format!("entry \"{key}\": {e}"))?;
                rows.push((key, one.finish()));
            }
            packer.push_map(rows.iter().map(|(k, row)| (*k, row.unpack_first())));
            return Ok(());
        }
        Kind::Record(fields) => {
            let values: Vec<Option<&RawValue>> = match &value {
                Json::Object(object) => {
                    if let Some(name) = object
                        .keys()
                        .find(|n| !fields.iter().any(|f| f.name == **n))
                    {
                        return Err(format!("the record has no field \"{name}\""));
                    }
                    fields
                        .iter()
                        .map(|f| object.get(&f.name).copied())
                        .collect()
                }
                Json::Array(items) if items.len() == fields.len() => {
                    items.iter().copied().map(Some).collect()
                }
                _ => return Err(wrong("a record object")),
            };
            return push_record(packer, fields, values);
        }
    };
    packer.push(datum);
    Ok(())
}

fn push_list<'r>(
    packer: &mut RowPacker,
    items: impl Iterator<Item = (&'r Slot, &'r RawValue)>,
    name: impl Fn(usize) -> String,
) -> Result<(), Problem> {
    let mut result = Ok(());
    packer.push_list_with(|p| {
        for (i, (slot, item)) in items.enumerate() {
            if let Err(e) = push_value(p, slot, Some(item)) {
                if result.is_ok() {
                    result = Err(format!("{}: {e}", name(i)));
                }
                p.push(Datum::Null);
            }
        }
    });
    result
}

fn push_record(
    packer: &mut RowPacker,
    fields: &[Field],
    values: Vec<Option<&RawValue>>,
) -> Result<(), Problem> {
    let mut result = Ok(());
    packer.push_list_with(|p| {
        for (field, item) in fields.iter().zip(values) {
            if let Err(e) = push_value(p, &field.slot, item) {
                if result.is_ok() {
                    result = Err(format!("field \"{}\": {e}", field.name));
                }
                p.push(Datum::Null);
            }
        }
    });
    result
}
