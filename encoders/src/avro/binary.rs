//! Avro binary encoding straight from datums into a byte buffer, following the schemas of
//! `schema.rs` (the Avro 1.11 specification's binary encoding: zig-zag varints, length-prefixed
//! bytes and strings, blocked arrays and maps, unions as a branch index then the value).

use outflow_dataflow::relation::{Datum, Numeric};

use super::schema::UNCONSTRAINED_SCALE;
use crate::columns::{for_each_field, for_each_nested, Ctx, Field, Kind, Slot};
use crate::error::{EncodeError, Part};
use crate::{json, text};

/// A `long` (or `int`): zig-zag, then little-endian base-128 groups.
pub(crate) fn put_long(buf: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_long(buf, bytes.len() as i64);
    buf.extend_from_slice(bytes);
}

/// The union branch of `["null", T]`: 0 for null, 1 for the value (zig-zag 1 is the byte 2).
const NULL_BRANCH: u8 = 0;
const VALUE_BRANCH: u8 = 2;

/// Writes the record of a row's columns.
pub(crate) fn write_row<'d>(
    buf: &mut Vec<u8>,
    part: Part,
    fields: &[Field],
    datums: impl Iterator<Item = Datum<'d>>,
) -> Result<(), EncodeError> {
    for_each_field(part, fields, datums, |ctx, datum| {
        write_slot(buf, &ctx.field.slot, datum, ctx)
    })
}

/// Writes the Debezium envelope record: `before` and `after`, each `["null", row]`.
pub(crate) fn write_debezium<'d, B, A>(
    buf: &mut Vec<u8>,
    fields: &[Field],
    before: Option<B>,
    after: Option<A>,
) -> Result<(), EncodeError>
where
    B: Iterator<Item = Datum<'d>>,
    A: Iterator<Item = Datum<'d>>,
{
    match before {
        Some(datums) => {
            buf.push(VALUE_BRANCH);
            write_row(buf, Part::Value, fields, datums)?;
        }
        None => buf.push(NULL_BRANCH),
    }
    match after {
        Some(datums) => {
            buf.push(VALUE_BRANCH);
            write_row(buf, Part::Value, fields, datums)?;
        }
        None => buf.push(NULL_BRANCH),
    }
    Ok(())
}

/// Writes the fields `ENVELOPE DEBEZIUM (FULL)` adds after `before` and `after`: the `source`
/// record (connector, name, topic, time, snapshot, ts_ms), `op` and `ts_ms`.
pub(crate) fn write_debezium_tail(
    buf: &mut Vec<u8>,
    sink: &str,
    topic: &str,
    tail: &json::DebeziumTail<'_>,
) {
    put_bytes(buf, crate::encoder::SOURCE_CONNECTOR.as_bytes());
    put_bytes(buf, sink.as_bytes());
    put_bytes(buf, topic.as_bytes());
    put_long(buf, tail.time);
    buf.push(tail.snapshot as u8);
    put_long(buf, tail.ts_ms);
    put_bytes(buf, tail.op.as_bytes());
    put_long(buf, tail.ts_ms);
}

fn write_slot(
    buf: &mut Vec<u8>,
    slot: &Slot,
    datum: Datum<'_>,
    ctx: Ctx<'_>,
) -> Result<(), EncodeError> {
    if slot.nullable {
        if datum.is_null() {
            buf.push(NULL_BRANCH);
            return Ok(());
        }
        buf.push(VALUE_BRANCH);
    } else if datum.is_null() {
        return Err(ctx.unexpected_null("an Avro schema without a null branch"));
    }
    match (&slot.kind, datum) {
        (Kind::Bool, Datum::True) => buf.push(1),
        (Kind::Bool, Datum::False) => buf.push(0),
        (Kind::Int16, Datum::Int16(v)) => put_long(buf, v as i64),
        (Kind::Int32, Datum::Int32(v)) => put_long(buf, v as i64),
        (Kind::Int64, Datum::Int64(v)) => put_long(buf, v),
        // Unsigned integers are fixed types holding the big-endian bytes.
        (Kind::UInt16, Datum::UInt16(v)) => buf.extend_from_slice(&v.to_be_bytes()),
        (Kind::UInt32, Datum::UInt32(v)) => buf.extend_from_slice(&v.to_be_bytes()),
        (Kind::UInt64, Datum::UInt64(v)) => buf.extend_from_slice(&v.to_be_bytes()),
        (Kind::Float32, Datum::Float32(v)) => buf.extend_from_slice(&v.to_le_bytes()),
        (Kind::Float64, Datum::Float64(v)) => buf.extend_from_slice(&v.to_le_bytes()),
        (Kind::Numeric { scale }, Datum::Numeric(n)) => {
            write_decimal(buf, n, scale.unwrap_or(UNCONSTRAINED_SCALE), ctx)?
        }
        (Kind::Text, Datum::String(s)) => put_bytes(buf, s.as_bytes()),
        (Kind::Char { length }, Datum::String(s)) => {
            let padding = text::char_padding(s, *length);
            put_long(buf, (s.len() + padding) as i64);
            buf.extend_from_slice(s.as_bytes());
            buf.resize(buf.len() + padding, b' ');
        }
        (Kind::Bytes, Datum::Bytes(b)) => put_bytes(buf, b),
        (Kind::Date, Datum::Date(d)) => put_long(buf, d.0 as i64),
        (Kind::Time, Datum::Time(t)) => put_long(buf, t.0 as i64),
        (Kind::Timestamp { millis }, Datum::Timestamp(t))
        | (Kind::TimestampTz { millis }, Datum::TimestampTz(t)) => {
            put_long(buf, if *millis { t.0.div_euclid(1000) } else { t.0 })
        }
        // Materialize's interval layout: months, days, microseconds, little-endian.
        (Kind::Interval, Datum::Interval(iv)) => {
            buf.extend_from_slice(&iv.months.to_le_bytes());
            buf.extend_from_slice(&iv.days.to_le_bytes());
            buf.extend_from_slice(&iv.micros.to_le_bytes());
        }
        (Kind::Uuid, Datum::Uuid(u)) => {
            buf.push(72); // zig-zag 36, the hyphenated form's length
            text::write_uuid(buf, &u);
        }
        (Kind::Jsonb, Datum::Jsonb(s)) => {
            json::check_json(s, ctx)?;
            put_bytes(buf, s.as_bytes());
        }
        (Kind::List(element), Datum::List(list)) => {
            // One block holding every element, then the empty block that ends the array.
            let count = list.iter().count();
            if count > 0 {
                put_long(buf, count as i64);
                for d in list.iter() {
                    write_slot(buf, element, d, ctx)?;
                }
            }
            buf.push(0);
        }
        (Kind::Map(value), Datum::Map(map)) => {
            let count = map.iter().count();
            if count > 0 {
                put_long(buf, count as i64);
                for (k, d) in map.iter() {
                    put_bytes(buf, k.as_bytes());
                    write_slot(buf, value, d, ctx)?;
                }
            }
            buf.push(0);
        }
        (Kind::Record(fields), Datum::List(list)) => {
            for_each_nested(ctx, fields, list.iter(), |field, d| {
                write_slot(buf, &field.slot, d, ctx)
            })?;
        }
        _ => return Err(ctx.mismatch(slot, datum)),
    }
    Ok(())
}

/// A decimal's unscaled value at `scale`, as the shortest big-endian two's complement.
/// Rescaling up can pass 128 bits (39 digits of scale on 38 digits of value), so it is done
/// in 320-bit arithmetic.
fn write_decimal(
    buf: &mut Vec<u8>,
    n: Numeric,
    scale: u8,
    ctx: Ctx<'_>,
) -> Result<(), EncodeError> {
    if n.is_nan() {
        return Err(ctx.error("NaN cannot be written as an Avro decimal".to_string()));
    }
    let (bytes, start) = decimal_unscaled(n, scale, ctx, "column's Avro decimal")?;
    put_bytes(buf, &bytes[start..]);
    Ok(())
}

/// The unscaled value of a (non-NaN) `n` at `scale`: 40 big-endian bytes and where its
/// shortest two's complement starts. `target` names the decimal type in the error for a value
/// with more digits after the point than `scale`.
pub(crate) fn decimal_unscaled(
    n: Numeric,
    scale: u8,
    ctx: Ctx<'_>,
    target: &str,
) -> Result<([u8; 40], usize), EncodeError> {
    let (mantissa, up) = if n.scale() > scale {
        let exact = n.rescale(scale).ok_or_else(|| {
            ctx.error(format!(
                "the value {n} has more than {scale} digits after the decimal point, the scale of the {target}"
            ))
        })?;
        (exact, 0)
    } else {
        (n.mantissa(), scale - n.scale())
    };
    let bytes = Wide::from_i128_scaled(mantissa, up).to_be_bytes();
    let start = shortest_twos_complement_start(&bytes);
    Ok((bytes, start))
}

/// A signed 320-bit integer, little-endian 64-bit limbs in two's complement.
struct Wide([u64; 5]);

impl Wide {
    /// `v × 10^pow`; `pow` ≤ 39 and |v| < 2^127 keep it far inside 320 bits.
    fn from_i128_scaled(v: i128, pow: u8) -> Wide {
        let magnitude = v.unsigned_abs();
        let mut limbs = [magnitude as u64, (magnitude >> 64) as u64, 0, 0, 0];
        let mut left = pow as u32;
        while left > 0 {
            let step = left.min(19);
            let factor = 10u64.pow(step) as u128;
            let mut carry = 0u128;
            for limb in limbs.iter_mut() {
                let product = *limb as u128 * factor + carry;
                *limb = product as u64;
                carry = product >> 64;
            }
            assert_eq!(carry, 0, "decimal rescaling overflowed 320 bits");
            left -= step;
        }
        if v < 0 {
            let mut carry = true;
            for limb in limbs.iter_mut() {
                let (sum, overflow) = (!*limb).overflowing_add(carry as u64);
                *limb = sum;
                carry = overflow;
            }
        }
        Wide(limbs)
    }

    fn to_be_bytes(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        for (i, limb) in self.0.iter().rev().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&limb.to_be_bytes());
        }
        out
    }
}

/// Where the shortest two's-complement form of `bytes` starts: leading 0x00 (or 0xff) bytes
/// go while the next byte's top bit still carries the same sign.
fn shortest_twos_complement_start(bytes: &[u8]) -> usize {
    let mut start = 0;
    while start + 1 < bytes.len() {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long(v: i64) -> Vec<u8> {
        let mut buf = Vec::new();
        put_long(&mut buf, v);
        buf
    }

    #[test]
    fn zigzag_varints() {
        assert_eq!(long(0), [0x00]);
        assert_eq!(long(-1), [0x01]);
        assert_eq!(long(1), [0x02]);
        assert_eq!(long(-64), [0x7f]);
        assert_eq!(long(64), [0x80, 0x01]);
        assert_eq!(long(150), [0xac, 0x02]);
        assert_eq!(
            long(i64::MAX),
            [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        assert_eq!(
            long(i64::MIN),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    fn unscaled(v: i128, pow: u8) -> Vec<u8> {
        let bytes = Wide::from_i128_scaled(v, pow).to_be_bytes();
        bytes[shortest_twos_complement_start(&bytes)..].to_vec()
    }

    #[test]
    fn decimals_are_shortest_twos_complement() {
        assert_eq!(unscaled(0, 0), [0x00]);
        assert_eq!(unscaled(1, 0), [0x01]);
        assert_eq!(unscaled(-1, 0), [0xff]);
        assert_eq!(unscaled(127, 0), [0x7f]);
        assert_eq!(unscaled(128, 0), [0x00, 0x80]);
        assert_eq!(unscaled(-128, 0), [0x80]);
        assert_eq!(unscaled(-129, 0), [0xff, 0x7f]);
        assert_eq!(unscaled(9950, 0), [0x26, 0xde]);
        assert_eq!(unscaled(1, 2), [0x64]);
        // 10^39 = 0x02_f050fe93_8943acc4_5f655680_00000000
        assert_eq!(
            unscaled(1, 39),
            [
                0x02, 0xf0, 0x50, 0xfe, 0x93, 0x89, 0x43, 0xac, 0xc4, 0x5f, 0x65, 0x56, 0x80, 0, 0,
                0, 0
            ]
        );
        // The widest value: 38 nines at scale 0 rescaled to 39 needs 33 bytes.
        let nines = 99_999_999_999_999_999_999_999_999_999_999_999_999i128;
        let wide = unscaled(nines, 39);
        assert_eq!(wide.len(), 33);
        let negative = unscaled(-nines, 39);
        assert_eq!(negative.len(), 33);
        assert!(negative[0] & 0x80 != 0);
    }
}
