//! FORMAT JSON (SCHEMAS ENABLED) read back: the `payload` of a `{"schema", "payload"}`
//! message, whose values are in Connect's representation (decimals as base64 bytes, dates
//! as days, times and timestamps as integers, jsonb as a string), rewritten into FORMAT
//! JSON's text and read by the JSON decoder, so that both formats share one reader.

use base64::Engine as _;
use outflow_dataflow::relation::{Date, RelationDesc, Row, Time, Timestamp};
use outflow_dataflow::DiffPair;
use serde_json::Value;

use super::{fields, Problem};
use crate::columns::{Field, Kind, Slot};
use crate::error::DecodeError;
use crate::{json, text};

/// The row of `desc` that a `{"schema": …, "payload": {…}}` message holds.
pub fn row_from_connect_json(desc: &RelationDesc, message: &str) -> Result<Row, DecodeError> {
    let payload = payload(message)?;
    let fields = fields(desc);
    let row = row_text(&fields, &payload)?;
    super::row_from_json(desc, &row)
}

/// The `before` and `after` rows of a Debezium value with an embedded schema.
pub fn debezium_from_connect_json(
    desc: &RelationDesc,
    message: &str,
) -> Result<DiffPair<Row>, DecodeError> {
    let payload = payload(message)?;
    let Value::Object(parts) = &payload else {
        return Err(DecodeError::Message(
            "the payload of a DEBEZIUM value is not an object".to_string(),
        ));
    };
    let fields = fields(desc);
    let part = |name: &str| -> Result<Option<Row>, DecodeError> {
        match parts.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(row) => {
                let text = row_text(&fields, row)?;
                super::row_from_json(desc, &text)
                    .map(Some)
                    .map_err(|e| DecodeError::Message(format!("\"{name}\": {e}")))
            }
        }
    };
    Ok(DiffPair {
        before: part("before")?,
        after: part("after")?,
    })
}

fn payload(message: &str) -> Result<Value, DecodeError> {
    let value: Value = serde_json::from_str(message)
        .map_err(|e| DecodeError::Message(format!("not JSON: {e}")))?;
    match value {
        Value::Object(mut object) if object.contains_key("schema") => object
            .remove("payload")
            .ok_or_else(|| DecodeError::Message("the message has no \"payload\"".to_string())),
        _ => Err(DecodeError::Message(
            "expected a {\"schema\": …, \"payload\": …} object".to_string(),
        )),
    }
}

/// The FORMAT JSON text of a payload row.
fn row_text(fields: &[Field], row: &Value) -> Result<String, DecodeError> {
    let Value::Object(object) = row else {
        return Err(DecodeError::Message(format!(
            "expected a row object, found {row}"
        )));
    };
    let mut out = Vec::new();
    out.push(b'{');
    for (i, (name, value)) in object.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_str(&mut out, name);
        out.push(b':');
        match fields.iter().find(|f| f.name == *name) {
            Some(field) => {
                write(&mut out, &field.slot, value).map_err(|problem| DecodeError::Column {
                    column: field.source_name.clone(),
                    typ: field.slot.typ.to_string(),
                    problem,
                })?
            }
            // The JSON decoder names the unknown column.
            None => out.extend_from_slice(value.to_string().as_bytes()),
        }
    }
    out.push(b'}');
    String::from_utf8(out).map_err(|e| DecodeError::Message(e.to_string()))
}

fn write(out: &mut Vec<u8>, slot: &Slot, value: &Value) -> Result<(), Problem> {
    if value.is_null() {
        out.extend_from_slice(b"null");
        return Ok(());
    }
    let integer = || {
        value
            .as_i64()
            .ok_or_else(|| format!("expected an integer, found {value}"))
    };
    match &slot.kind {
        Kind::Numeric { .. } | Kind::UInt64 => {
            let scale = match &slot.kind {
                Kind::Numeric { scale } => {
                    scale.unwrap_or(crate::avro::schema::UNCONSTRAINED_SCALE)
                }
                _ => 0,
            };
            let Value::String(encoded) = value else {
                return Err(format!("expected a base64 Decimal, found {value}"));
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("the Decimal {encoded:?} is not base64: {e}"))?;
            let mut digits = decimal_text(&bytes, scale);
            // An unconstrained numeric comes back at the smallest scale that holds it, as
            // from Avro: the fixed scale 39 is the format's, not the value's.
            if matches!(slot.kind, Kind::Numeric { scale: None }) && digits.contains('.') {
                let kept = digits.trim_end_matches('0').trim_end_matches('.').len();
                digits.truncate(kept);
            }
            out.extend_from_slice(digits.as_bytes());
        }
        Kind::Date => {
            let days =
                i32::try_from(integer()?).map_err(|_| format!("{value} days is out of range"))?;
            quoted(out, |out| text::write_date(out, Date(days)));
        }
        Kind::Time => {
            let micros =
                u64::try_from(integer()?).map_err(|_| format!("{value} is a negative time"))?;
            quoted(out, |out| text::write_time(out, Time(micros)));
        }
        Kind::Timestamp { millis } | Kind::TimestampTz { millis } => {
            let n = integer()?;
            let micros = if *millis {
                n.checked_mul(1000)
                    .ok_or_else(|| format!("{n} ms is out of range"))?
            } else {
                n
            };
            quoted(out, |out| {
                text::write_timestamp(out, Timestamp(micros), b'T');
                if matches!(slot.kind, Kind::TimestampTz { .. }) {
                    out.push(b'Z');
                }
            });
        }
        Kind::Jsonb => {
            let Value::String(document) = value else {
                return Err(format!(
                    "expected the jsonb document as a string, found {value}"
                ));
            };
            out.extend_from_slice(document.as_bytes());
        }
        Kind::List(element) => {
            let Value::Array(items) = value else {
                return Err(format!("expected an array, found {value}"));
            };
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, element, item)?;
            }
            out.push(b']');
        }
        Kind::Map(values) => {
            let Value::Object(entries) = value else {
                return Err(format!("expected an object, found {value}"));
            };
            out.push(b'{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json::write_str(out, k);
                out.push(b':');
                write(out, values, v)?;
            }
            out.push(b'}');
        }
        Kind::Record(fields) => {
            let text = row_text(fields, value).map_err(|e| e.to_string())?;
            out.extend_from_slice(text.as_bytes());
        }
        _ => out.extend_from_slice(value.to_string().as_bytes()),
    }
    Ok(())
}

fn quoted(out: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
    out.push(b'"');
    f(out);
    out.push(b'"');
}

/// The decimal text of a big-endian two's complement unscaled value at `scale`.
fn decimal_text(bytes: &[u8], scale: u8) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    // The magnitude, big-endian: negate a negative two's complement value.
    let mut magnitude: Vec<u8> = if negative {
        let mut m: Vec<u8> = bytes.iter().map(|b| !b).collect();
        for b in m.iter_mut().rev() {
            let (sum, overflow) = b.overflowing_add(1);
            *b = sum;
            if !overflow {
                break;
            }
        }
        m
    } else {
        bytes.to_vec()
    };
    // Repeated division by 10 of the big-endian magnitude.
    let mut digits = Vec::new();
    while magnitude.iter().any(|&b| b != 0) {
        let mut remainder = 0u32;
        for b in magnitude.iter_mut() {
            let current = (remainder << 8) | *b as u32;
            *b = (current / 10) as u8;
            remainder = current % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    while digits.len() <= scale as usize {
        digits.push(b'0');
    }
    digits.reverse();
    let point = digits.len() - scale as usize;
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(&digits[..point]).expect("digits are ASCII"));
    if scale > 0 {
        out.push('.');
        out.push_str(std::str::from_utf8(&digits[point..]).expect("digits are ASCII"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::decimal_text;

    #[test]
    fn decimals_read_from_twos_complement() {
        assert_eq!(decimal_text(&[0x26, 0xde], 2), "99.50");
        assert_eq!(decimal_text(&[0x00], 0), "0");
        assert_eq!(decimal_text(&[0xff], 0), "-1");
        assert_eq!(decimal_text(&[0x80], 1), "-12.8");
        assert_eq!(decimal_text(&[0x01], 3), "0.001");
        assert_eq!(
            decimal_text(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 0),
            "18446744073709551615"
        );
    }
}
