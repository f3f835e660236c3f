//! FORMAT AVRO read back: the Confluent header, then the datum read with its writer schema
//! (which the caller fetched from the registry by the header's id), then each field mapped to
//! its column by position, as Materialize's schema mapping (`avro/schema.rs`) lays them out.

use apache_avro::types::Value as AvroValue;
use apache_avro::Schema;
use outflow_dataflow::relation::values::{parse_uuid, NUMERIC_MAX_SCALE};
use outflow_dataflow::relation::{Date, Datum, Interval, Numeric, RelationDesc, Row, RowPacker};
use outflow_dataflow::relation::{Time, Timestamp};
use outflow_dataflow::DiffPair;

use super::{fields, text_value, Problem};
use crate::avro::schema::UNCONSTRAINED_SCALE;
use crate::avro::CONFLUENT_HEADER_LEN;
use crate::columns::{Field, Kind, Slot};
use crate::error::DecodeError;

/// The schema id of a message in the Confluent wire format, and the Avro body after it.
pub fn confluent_schema_id(message: &[u8]) -> Result<(i32, &[u8]), DecodeError> {
    match message {
        [0, a, b, c, d, body @ ..] => Ok((i32::from_be_bytes([*a, *b, *c, *d]), body)),
        _ => Err(DecodeError::Message(format!(
            "not in the Confluent wire format (magic byte 0 and a {}-byte header)",
            CONFLUENT_HEADER_LEN
        ))),
    }
}

/// The row of `desc` in the Avro `body` (the message after its Confluent header), written
/// with `writer_schema`: a record with one field per column, in column order.
pub fn row_from_avro(
    desc: &RelationDesc,
    writer_schema: &Schema,
    body: &[u8],
) -> Result<Row, DecodeError> {
    let value = read_datum(writer_schema, body)?;
    row_from_record(&fields(desc), &value)
}

/// The `{before, after}` record of ENVELOPE DEBEZIUM, each `["null", row]`.
pub fn debezium_from_avro(
    desc: &RelationDesc,
    writer_schema: &Schema,
    body: &[u8],
) -> Result<DiffPair<Row>, DecodeError> {
    let AvroValue::Record(parts) = read_datum(writer_schema, body)? else {
        return Err(DecodeError::Message(
            "the Avro value is not a {before, after} record".to_string(),
        ));
    };
    let fields = fields(desc);
    let part = |name: &str| -> Result<Option<Row>, DecodeError> {
        let value = parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| unwrap_union(v));
        match value {
            None | Some(AvroValue::Null) => Ok(None),
            Some(v) => row_from_record(&fields, v)
                .map(Some)
                .map_err(|e| DecodeError::Message(format!("\"{name}\": {e}"))),
        }
    };
    Ok(DiffPair {
        before: part("before")?,
        after: part("after")?,
    })
}

fn read_datum(schema: &Schema, mut body: &[u8]) -> Result<AvroValue, DecodeError> {
    let value = apache_avro::reader::datum::GenericDatumReader::builder(schema)
        .build()
        .and_then(|reader| reader.read_value(&mut body))
        .map_err(|e| DecodeError::Message(format!("not a datum of the writer schema: {e}")))?;
    if !body.is_empty() {
        return Err(DecodeError::Message(format!(
            "{} bytes follow the datum of the writer schema",
            body.len()
        )));
    }
    Ok(value)
}

fn unwrap_union(value: &AvroValue) -> &AvroValue {
    match value {
        AvroValue::Union(_, inner) => inner,
        other => other,
    }
}

fn row_from_record(fields: &[Field], value: &AvroValue) -> Result<Row, DecodeError> {
    let AvroValue::Record(values) = unwrap_union(value) else {
        return Err(DecodeError::Message(format!(
            "expected an Avro record, found {value:?}"
        )));
    };
    if values.len() != fields.len() {
        return Err(DecodeError::Message(format!(
            "the Avro record has {} fields, the relation {} columns",
            values.len(),
            fields.len()
        )));
    }
    super::decode_row(
        fields,
        values.iter().map(|(_, v)| v),
        |packer, field, value| push_value(packer, &field.slot, value),
    )
}

fn push_value(packer: &mut RowPacker, slot: &Slot, value: &AvroValue) -> Result<(), Problem> {
    let value = unwrap_union(value);
    let mismatch = || format!("the Avro value {value:?} is not a {}", slot.typ);
    if let AvroValue::Null = value {
        if !slot.nullable {
            return Err("null in a NOT NULL column".to_string());
        }
        packer.push(Datum::Null);
        return Ok(());
    }
    let long = || match value {
        AvroValue::Int(v) | AvroValue::Date(v) | AvroValue::TimeMillis(v) => Some(*v as i64),
        AvroValue::Long(v)
        | AvroValue::TimeMicros(v)
        | AvroValue::TimestampMicros(v)
        | AvroValue::TimestampMillis(v)
        | AvroValue::LocalTimestampMicros(v)
        | AvroValue::LocalTimestampMillis(v) => Some(*v),
        _ => None,
    };
    let fixed = |size: usize| match value {
        AvroValue::Fixed(n, bytes) if *n == size => Some(bytes.as_slice()),
        _ => None,
    };
    let datum = match (&slot.kind, value) {
        (Kind::Bool, AvroValue::Boolean(b)) => Datum::from_bool(*b),
        (Kind::Int16, _) => Datum::Int16(
            long()
                .and_then(|v| i16::try_from(v).ok())
                .ok_or_else(mismatch)?,
        ),
        (Kind::Int32, _) => Datum::Int32(
            long()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(mismatch)?,
        ),
        (Kind::Int64, _) => Datum::Int64(long().ok_or_else(mismatch)?),
        // Unsigned integers are fixed types holding the big-endian bytes.
        (Kind::UInt16, _) => Datum::UInt16(u16::from_be_bytes(
            fixed(2).ok_or_else(mismatch)?.try_into().expect("2 bytes"),
        )),
        (Kind::UInt32, _) => Datum::UInt32(u32::from_be_bytes(
            fixed(4).ok_or_else(mismatch)?.try_into().expect("4 bytes"),
        )),
        (Kind::UInt64, _) => Datum::UInt64(u64::from_be_bytes(
            fixed(8).ok_or_else(mismatch)?.try_into().expect("8 bytes"),
        )),
        (Kind::Float32, AvroValue::Float(v)) => Datum::Float32(*v),
        (Kind::Float64, AvroValue::Double(v)) => Datum::Float64(*v),
        (Kind::Numeric { scale }, AvroValue::Decimal(d)) => {
            let bytes = Vec::<u8>::try_from(d).map_err(|e| e.to_string())?;
            Datum::Numeric(decimal(&bytes, *scale)?)
        }
        (Kind::Numeric { scale }, AvroValue::Bytes(bytes)) => {
            Datum::Numeric(decimal(bytes, *scale)?)
        }
        (Kind::Text | Kind::Char { .. }, AvroValue::String(s)) => {
            Datum::String(text_value(s, &slot.typ)?)
        }
        (Kind::Jsonb, AvroValue::String(s)) => Datum::Jsonb(s),
        (Kind::Bytes, AvroValue::Bytes(b)) => Datum::Bytes(b),
        (Kind::Date, AvroValue::Date(d) | AvroValue::Int(d)) => Datum::Date(Date(*d)),
        (Kind::Time, _) => Datum::Time(Time(
            long()
                .and_then(|v| u64::try_from(v).ok())
                .filter(|v| *v < 86_400_000_000)
                .ok_or_else(mismatch)?,
        )),
        (Kind::Timestamp { .. } | Kind::TimestampTz { .. }, _) => {
            let micros = match value {
                AvroValue::TimestampMillis(ms) | AvroValue::LocalTimestampMillis(ms) => {
                    ms.checked_mul(1000).ok_or_else(mismatch)?
                }
                _ => long().ok_or_else(mismatch)?,
            };
            if matches!(slot.kind, Kind::Timestamp { .. }) {
                Datum::Timestamp(Timestamp(micros))
            } else {
                Datum::TimestampTz(Timestamp(micros))
            }
        }
        // Materialize's interval layout: months, days, microseconds, little-endian.
        (Kind::Interval, _) => {
            let b = fixed(16).ok_or_else(mismatch)?;
            Datum::Interval(Interval {
                months: i32::from_le_bytes(b[0..4].try_into().expect("4 bytes")),
                days: i32::from_le_bytes(b[4..8].try_into().expect("4 bytes")),
                micros: i64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            })
        }
        (Kind::Uuid, AvroValue::Uuid(u)) => Datum::Uuid(*u.as_bytes()),
        (Kind::Uuid, AvroValue::String(s)) => Datum::Uuid(parse_uuid(s).ok_or_else(mismatch)?),
        (Kind::List(element), AvroValue::Array(items)) => {
            let mut result = Ok(());
            packer.push_list_with(|p| {
                for (i, item) in items.iter().enumerate() {
                    if let Err(e) = push_value(p, element, item) {
                        if result.is_ok() {
                            result = Err(format!("element {i}: {e}"));
                        }
                        p.push(Datum::Null);
                    }
                }
            });
            return result;
        }
        (Kind::Map(value_slot), AvroValue::Map(entries)) => {
            let mut rows: Vec<(&str, Row)> = Vec::with_capacity(entries.len());
            for (key, item) in entries {
                let mut one = RowPacker::new();
                push_value(&mut one, value_slot, item)
                    .map_err(|e| format!("entry \"{key}\": {e}"))?;
                rows.push((key, one.finish()));
            }
            packer.push_map(rows.iter().map(|(k, row)| (*k, row.unpack_first())));
            return Ok(());
        }
        (Kind::Record(fields), AvroValue::Record(values)) if fields.len() == values.len() => {
            let mut result = Ok(());
            packer.push_list_with(|p| {
                for (field, (_, item)) in fields.iter().zip(values) {
                    if let Err(e) = push_value(p, &field.slot, item) {
                        if result.is_ok() {
                            result = Err(format!("field \"{}\": {e}", field.name));
                        }
                        p.push(Datum::Null);
                    }
                }
            });
            return result;
        }
        _ => return Err(mismatch()),
    };
    packer.push(datum);
    Ok(())
}

/// An Avro decimal (big-endian two's complement, any length) at the column's scale. An
/// unconstrained numeric is written at scale 39 and comes back at the smallest scale that
/// holds it exactly. The digits are found by long division of the bytes, so no value is
/// rounded and none is too wide to read.
fn decimal(bytes: &[u8], scale: Option<u8>) -> Result<Numeric, Problem> {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut magnitude = bytes.to_vec();
    if negative {
        // Two's complement: invert, then add one.
        let mut carry = true;
        for byte in magnitude.iter_mut().rev() {
            let (sum, overflow) = (!*byte).overflowing_add(carry as u8);
            *byte = sum;
            carry = overflow;
        }
    }
    // Decimal digits, least significant first.
    let mut digits = Vec::new();
    while magnitude.iter().any(|b| *b != 0) {
        let mut remainder = 0u32;
        for byte in magnitude.iter_mut() {
            let current = (remainder << 8) | *byte as u32;
            *byte = (current / 10) as u8;
            remainder = current % 10;
        }
        digits.push(remainder as u8);
    }
    let (mut scale, trailing) = match scale {
        Some(scale) => (scale, 0),
        None => {
            // Zero has no digits at all, so every place of its scale is a trailing zero.
            let zeros = if digits.is_empty() {
                usize::MAX
            } else {
                digits.iter().take_while(|d| **d == 0).count()
            };
            (UNCONSTRAINED_SCALE, zeros.min(UNCONSTRAINED_SCALE as usize))
        }
    };
    scale -= trailing as u8;
    let significant = &digits[trailing.min(digits.len())..];
    let mut mantissa: i128 = 0;
    for digit in significant.iter().rev() {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(*digit as i128))
            .ok_or_else(|| {
                format!(
                    "the Avro decimal has {} significant digits, more than a numeric holds",
                    significant.len()
                )
            })?;
    }
    if scale > NUMERIC_MAX_SCALE {
        return Err(format!(
            "the Avro decimal's scale {scale} exceeds {NUMERIC_MAX_SCALE}"
        ));
    }
    Ok(Numeric::new(
        if negative { -mantissa } else { mantissa },
        scale,
    ))
}
