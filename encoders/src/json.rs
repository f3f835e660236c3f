//! FORMAT JSON: a row is an object of its columns, in column order, written straight into a
//! byte buffer. The per-type mapping is documented in `encoders/JSON.md`.

use base64::Engine as _;
use outflow_dataflow::relation::{Datum, RelationDesc, Row};
use serde_json::ser::{CompactFormatter, Formatter};

use crate::columns::{for_each_field, for_each_nested, Ctx, Field, Kind, Slot};
use crate::error::{EncodeError, Part};
use crate::text;

/// Writes `s` as a JSON string literal, escaping what RFC 8259 requires.
pub(crate) fn write_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    write_str_body(buf, s.as_bytes());
    buf.push(b'"');
}

fn write_str_body(buf: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        buf.extend_from_slice(&bytes[run_start..i]);
        run_start = i + 1;
        if escape.is_empty() {
            buf.extend_from_slice(b"\\u00");
            buf.push(HEX[(b >> 4) as usize]);
            buf.push(HEX[(b & 0xf) as usize]);
        } else {
            buf.extend_from_slice(escape);
        }
    }
    buf.extend_from_slice(&bytes[run_start..]);
}

/// `row`, whose datums are the columns `columns` of `desc` in that order, as FORMAT JSON
/// writes it (`{"id":7}`): how messages show a key or row as the user wrote it.
pub fn row_json(desc: &RelationDesc, columns: &[usize], row: &Row) -> String {
    let fields = crate::columns::fields_of(desc, columns);
    let mut buf = Vec::new();
    match write_row(&mut buf, Part::Key, &fields, row.iter()) {
        Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
        Err(_) => format!("{row:?}"),
    }
}

/// Writes the object `{"col": value, ...}` for a row's datums.
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
        write_value(buf, &ctx.field.slot, datum, ctx)
    })?;
    buf.push(b'}');
    Ok(())
}

/// Writes a finite float datum as the shortest text that reads back to it.
pub(crate) fn write_number(buf: &mut Vec<u8>, datum: Datum<'_>) {
    let mut f = CompactFormatter;
    match datum {
        Datum::Float32(v) => f.write_f32(buf, v).expect("writing to a Vec cannot fail"),
        Datum::Float64(v) => f.write_f64(buf, v).expect("writing to a Vec cannot fail"),
        other => unreachable!("write_number is called with floats only, not {other:?}"),
    }
}

/// Writes a `char(n)` value as a string, blank-padded to `n` characters.
pub(crate) fn write_padded_str(buf: &mut Vec<u8>, s: &str, length: Option<u32>) {
    buf.push(b'"');
    write_str_body(buf, s.as_bytes());
    buf.resize(buf.len() + text::char_padding(s, length), b' ');
    buf.push(b'"');
}

fn write_float_special(buf: &mut Vec<u8>, v: f64) {
    buf.extend_from_slice(if v.is_nan() {
        b"\"NaN\""
    } else if v > 0.0 {
        b"\"Infinity\""
    } else {
        b"\"-Infinity\""
    });
}

fn write_value(
    buf: &mut Vec<u8>,
    slot: &Slot,
    datum: Datum<'_>,
    ctx: Ctx<'_>,
) -> Result<(), EncodeError> {
    // Writing into a Vec cannot fail, so serde_json's io::Result is always Ok.
    let mut f = CompactFormatter;
    match (&slot.kind, datum) {
        // A NOT NULL column holding NULL is written as null too: JSON has no reason to refuse it.
        (_, Datum::Null) => buf.extend_from_slice(b"null"),
        (Kind::Bool, Datum::True) => buf.extend_from_slice(b"true"),
        (Kind::Bool, Datum::False) => buf.extend_from_slice(b"false"),
        (Kind::Int16, Datum::Int16(v)) => text::push_i64(buf, v as i64),
        (Kind::Int32, Datum::Int32(v)) => text::push_i64(buf, v as i64),
        (Kind::Int64, Datum::Int64(v)) => text::push_i64(buf, v),
        (Kind::UInt16, Datum::UInt16(v)) => text::push_u64(buf, v as u64),
        (Kind::UInt32, Datum::UInt32(v)) => text::push_u64(buf, v as u64),
        (Kind::UInt64, Datum::UInt64(v)) => text::push_u64(buf, v),
        (Kind::Float32, Datum::Float32(v)) => {
            if v.is_finite() {
                f.write_f32(buf, v).expect("writing to a Vec cannot fail");
            } else {
                write_float_special(buf, v as f64);
            }
        }
        (Kind::Float64, Datum::Float64(v)) => {
            if v.is_finite() {
                f.write_f64(buf, v).expect("writing to a Vec cannot fail");
            } else {
                write_float_special(buf, v);
            }
        }
        (Kind::Numeric { .. }, Datum::Numeric(n)) => {
            if n.is_nan() {
                buf.extend_from_slice(b"\"NaN\"");
            } else {
                text::write_numeric(buf, n);
            }
        }
        (Kind::Text, Datum::String(s)) => write_str(buf, s),
        (Kind::Char { length }, Datum::String(s)) => write_padded_str(buf, s, *length),
        (Kind::Bytes, Datum::Bytes(b)) => {
            buf.push(b'"');
            let start = buf.len();
            let len = base64::encoded_len(b.len(), true).expect("bytea length fits base64 output");
            buf.resize(start + len, 0);
            base64::engine::general_purpose::STANDARD
                .encode_slice(b, &mut buf[start..])
                .expect("the buffer was sized by encoded_len");
            buf.push(b'"');
        }
        (Kind::Uuid, Datum::Uuid(u)) => quoted(buf, |buf| text::write_uuid(buf, &u)),
        (Kind::Jsonb, Datum::Jsonb(s)) => {
            check_json(s, ctx)?;
            buf.extend_from_slice(s.as_bytes());
        }
        (Kind::Date, Datum::Date(d)) => quoted(buf, |buf| text::write_date(buf, d)),
        (Kind::Time, Datum::Time(t)) => quoted(buf, |buf| text::write_time(buf, t)),
        (Kind::Timestamp { .. }, Datum::Timestamp(t)) => {
            quoted(buf, |buf| text::write_timestamp(buf, t, b'T'))
        }
        (Kind::TimestampTz { .. }, Datum::TimestampTz(t)) => quoted(buf, |buf| {
            text::write_timestamp(buf, t, b'T');
            buf.push(b'Z');
        }),
        (Kind::Interval, Datum::Interval(iv)) => quoted(buf, |buf| text::write_interval(buf, iv)),
        (Kind::List(element), Datum::List(list)) => {
            buf.push(b'[');
            for (i, d) in list.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_value(buf, element, d, ctx)?;
            }
            buf.push(b']');
        }
        (Kind::Map(value), Datum::Map(map)) => {
            buf.push(b'{');
            for (i, (k, d)) in map.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_str(buf, k);
                buf.push(b':');
                write_value(buf, value, d, ctx)?;
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
                write_value(buf, &field.slot, d, ctx)
            })?;
            buf.push(b'}');
        }
        _ => return Err(ctx.mismatch(slot, datum)),
    }
    Ok(())
}

fn quoted(buf: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
    buf.push(b'"');
    f(buf);
    buf.push(b'"');
}

/// jsonb values are embedded as they are stored, so one that is not JSON would corrupt the
/// whole message; checking costs a parse that allocates nothing.
pub(crate) fn check_json(s: &str, ctx: Ctx<'_>) -> Result<(), EncodeError> {
    serde_json::from_str::<serde::de::IgnoredAny>(s)
        .map(|_| ())
        .map_err(|e| {
            ctx.error(format!(
                "the jsonb value is not valid JSON ({e}): {}",
                excerpt(s)
            ))
        })
}

fn excerpt(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
        None => format!("{s:?}"),
    }
}

/// The fields a Debezium message carries under `ENVELOPE DEBEZIUM (FULL)` besides `before`
/// and `after`, for one message.
pub(crate) struct DebeziumTail<'a> {
    /// `"connector":"outflow","name":…,"topic":…,`, escaped once per sink.
    pub source_prefix: &'a [u8],
    pub time: i64,
    pub snapshot: bool,
    pub ts_ms: i64,
    pub op: &'static str,
}

impl DebeziumTail<'_> {
    /// Writes `,"source":{…},"op":…,"ts_ms":…`: the envelope's fields after `after`, the
    /// same in FORMAT JSON and in the payload of JSON with an embedded schema.
    pub(crate) fn write_json(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(b",\"source\":{");
        buf.extend_from_slice(self.source_prefix);
        buf.extend_from_slice(b"\"time\":");
        text::push_i64(buf, self.time);
        buf.extend_from_slice(if self.snapshot {
            b",\"snapshot\":true,\"ts_ms\":"
        } else {
            b",\"snapshot\":false,\"ts_ms\":"
        });
        text::push_i64(buf, self.ts_ms);
        buf.extend_from_slice(b"},\"op\":");
        write_str(buf, self.op);
        buf.extend_from_slice(b",\"ts_ms\":");
        text::push_i64(buf, self.ts_ms);
    }
}

/// The JSON members `"connector":"outflow","name":…,"topic":…,` of a sink's `source`.
pub(crate) fn source_prefix(sink: &str, topic: &str) -> Box<[u8]> {
    let mut buf = Vec::new();
    buf.extend_from_slice(b"\"connector\":");
    write_str(&mut buf, crate::encoder::SOURCE_CONNECTOR);
    buf.extend_from_slice(b",\"name\":");
    write_str(&mut buf, sink);
    buf.extend_from_slice(b",\"topic\":");
    write_str(&mut buf, topic);
    buf.push(b',');
    buf.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_what_json_requires() {
        let mut buf = Vec::new();
        write_str(
            &mut buf,
            "a\"b\\c\nd\re\tf\u{8}g\u{c}h\u{1}i\u{1f}j\u{7f}é😀",
        );
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text,
            r#""a\"b\\c\nd\re\tf\bg\fh\u0001i\u001fj"#.to_string() + "\u{7f}é😀\""
        );
        let back: String = serde_json::from_str(&text).unwrap();
        assert_eq!(back, "a\"b\\c\nd\re\tf\u{8}g\u{c}h\u{1}i\u{1f}j\u{7f}é😀");
    }
}
