//! An order-preserving byte encoding of rows: `a < b` exactly when
//! `a.order_key() < b.order_key()` as byte strings.
//!
//! The sink records how far through one time's keys a chunked snapshot got as such bytes
//! (the progress record's position), so positions compare without decoding.
//!
//! Each datum is its kind tag followed by a self-delimiting body, so concatenations compare
//! like the sequences they encode:
//! - signed integers and temporal values big-endian with the sign bit flipped; unsigned
//!   big-endian; floats by their IEEE total-order bits;
//! - text, bytea and jsonb with `0x00` escaped as `0x00 0xff` and ended by `0x00 0x00`;
//! - numerics as sign, decimal exponent and digits (negated for negative values), then the
//!   scale, so that `1.0 < 1.00 < 1.01`;
//! - lists and maps as `0x01`-prefixed elements ended by `0x00`.

use std::cmp::Ordering;

use super::row::{Datum, Row};
use super::values::Numeric;

impl Row {
    /// The order-preserving encoding of this row (see the module docs).
    pub fn order_key(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.byte_len() + 8);
        self.write_order_key(&mut out);
        out
    }

    /// Appends [`Row::order_key`] to `out`, for callers that reuse a buffer.
    pub fn write_order_key(&self, out: &mut Vec<u8>) {
        for datum in self.iter() {
            write_datum(datum, out);
        }
    }
}

fn write_datum(datum: Datum<'_>, out: &mut Vec<u8>) {
    out.push(datum_tag(&datum));
    match datum {
        Datum::Null | Datum::False | Datum::True => {}
        Datum::Int16(v) => out.extend_from_slice(&((v as u16) ^ 0x8000).to_be_bytes()),
        Datum::Int32(v) => out.extend_from_slice(&((v as u32) ^ 0x8000_0000).to_be_bytes()),
        Datum::Int64(v) => out.extend_from_slice(&signed64(v)),
        Datum::UInt16(v) => out.extend_from_slice(&v.to_be_bytes()),
        Datum::UInt32(v) => out.extend_from_slice(&v.to_be_bytes()),
        Datum::UInt64(v) => out.extend_from_slice(&v.to_be_bytes()),
        Datum::Float32(v) => {
            let bits = v.to_bits();
            let ordered = if bits >> 31 == 1 {
                !bits
            } else {
                bits ^ 0x8000_0000
            };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Datum::Float64(v) => {
            let bits = v.to_bits();
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits ^ (1 << 63)
            };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Datum::Numeric(n) => write_numeric(n, out),
        Datum::String(s) | Datum::Jsonb(s) => write_escaped(s.as_bytes(), out),
        Datum::Bytes(b) => write_escaped(b, out),
        Datum::Date(d) => out.extend_from_slice(&((d.0 as u32) ^ 0x8000_0000).to_be_bytes()),
        Datum::Time(t) => out.extend_from_slice(&t.0.to_be_bytes()),
        Datum::Timestamp(t) | Datum::TimestampTz(t) => out.extend_from_slice(&signed64(t.0)),
        Datum::Interval(iv) => {
            out.extend_from_slice(&((iv.months as u32) ^ 0x8000_0000).to_be_bytes());
            out.extend_from_slice(&((iv.days as u32) ^ 0x8000_0000).to_be_bytes());
            out.extend_from_slice(&signed64(iv.micros));
        }
        Datum::Uuid(u) => out.extend_from_slice(&u),
        Datum::List(list) => {
            for element in list.iter() {
                out.push(1);
                write_datum(element, out);
            }
            out.push(0);
        }
        Datum::Map(map) => {
            for (key, value) in map.iter() {
                out.push(1);
                write_escaped(key.as_bytes(), out);
                write_datum(value, out);
            }
            out.push(0);
        }
    }
}

/// The kind order of `Datum`'s `Ord`, which is the packed encoding's tag.
fn datum_tag(datum: &Datum<'_>) -> u8 {
    datum.tag()
}

fn signed64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn write_escaped(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// Sign class (negative < zero < positive < NaN), then for non-zero values the decimal
/// exponent and significant digits (bytes inverted when negative), then the scale.
fn write_numeric(n: Numeric, out: &mut Vec<u8>) {
    if n.is_nan() {
        out.push(4);
        return;
    }
    let mantissa = n.mantissa();
    if mantissa == 0 {
        out.push(2);
        out.push(n.scale());
        return;
    }
    let digits = mantissa.unsigned_abs().to_string();
    let exponent = digits.len() as i32 - n.scale() as i32;
    let significant = digits.trim_end_matches('0');
    let start = out.len();
    out.extend_from_slice(&(((exponent as i16) as u16) ^ 0x8000).to_be_bytes());
    out.extend(significant.bytes().map(|d| d - b'0' + 1));
    out.push(0);
    if mantissa < 0 {
        for b in &mut out[start..] {
            *b = !*b;
        }
        out.insert(start, 1);
    } else {
        out.insert(start, 3);
    }
    out.push(n.scale());
}

/// Numeric order, exact at any magnitude: the order of the encodings above.
pub(crate) fn compare_numeric(a: &Numeric, b: &Numeric) -> Ordering {
    let (mut x, mut y) = (Vec::with_capacity(24), Vec::with_capacity(24));
    write_numeric(*a, &mut x);
    write_numeric(*b, &mut y);
    x.cmp(&y)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::relation::{Date, Interval, RowPacker, Timestamp};

    #[test]
    fn numerics_order_exactly() {
        let texts = [
            "-1000",
            "-999.99",
            "-1.5",
            "-1.50",
            "-1",
            "-0.001",
            "0",
            "0.00",
            "0.001",
            "0.5",
            "1",
            "1.0",
            "1.00",
            "1.01",
            "9.99",
            "10",
            "123456789012345678901234567890123456",
            "NaN",
        ];
        let values: Vec<Numeric> = texts.iter().map(|t| Numeric::parse(t).unwrap()).collect();
        for (i, a) in values.iter().enumerate() {
            for (j, b) in values.iter().enumerate() {
                assert_eq!(
                    compare_numeric(a, b),
                    i.cmp(&j),
                    "{} vs {}",
                    texts[i],
                    texts[j]
                );
            }
        }
    }

    fn arb_row() -> impl Strategy<Value = Row> {
        let datum = prop_oneof![
            Just(0u8).prop_map(|_| Kind::Null),
            any::<bool>().prop_map(Kind::Bool),
            any::<i64>().prop_map(Kind::I64),
            any::<i16>().prop_map(Kind::I16),
            any::<u32>().prop_map(Kind::U32),
            any::<f64>().prop_map(Kind::F64),
            (any::<i64>(), 0u8..6).prop_map(|(m, s)| Kind::Num(m, s)),
            "[a\\x00b]{0,4}".prop_map(Kind::Text),
            proptest::collection::vec(0u8..3, 0..4).prop_map(Kind::Bytes),
            (any::<i32>(), any::<i32>(), any::<i64>())
                .prop_map(|(m, d, u)| Kind::Interval(m, d, u)),
            any::<i32>().prop_map(Kind::Date),
            proptest::collection::vec(-2i64..3, 0..3).prop_map(Kind::List),
        ];
        proptest::collection::vec(datum, 0..4).prop_map(|kinds| {
            let mut p = RowPacker::new();
            for k in kinds {
                match k {
                    Kind::Null => p.push(Datum::Null),
                    Kind::Bool(b) => p.push(Datum::from_bool(b)),
                    Kind::I64(v) => p.push(Datum::Int64(v)),
                    Kind::I16(v) => p.push(Datum::Int16(v)),
                    Kind::U32(v) => p.push(Datum::UInt32(v)),
                    Kind::F64(v) => p.push(Datum::Float64(v)),
                    Kind::Num(m, s) => p.push(Datum::Numeric(Numeric::new(m as i128, s))),
                    Kind::Text(t) => p.push(Datum::String(&t)),
                    Kind::Bytes(b) => p.push(Datum::Bytes(&b)),
                    Kind::Interval(months, days, micros) => p.push(Datum::Interval(Interval {
                        months,
                        days,
                        micros,
                    })),
                    Kind::Date(d) => p.push(Datum::Date(Date(d))),
                    Kind::List(l) => p.push_list(l.into_iter().map(Datum::Int64)),
                }
            }
            p.finish()
        })
    }

    #[derive(Clone, Debug)]
    enum Kind {
        Null,
        Bool(bool),
        I64(i64),
        I16(i16),
        U32(u32),
        F64(f64),
        Num(i64, u8),
        Text(String),
        Bytes(Vec<u8>),
        Interval(i32, i32, i64),
        Date(i32),
        List(Vec<i64>),
    }

    proptest! {
        #[test]
        fn encoding_order_is_row_order(a in arb_row(), b in arb_row()) {
            prop_assert_eq!(a.order_key().cmp(&b.order_key()), a.cmp(&b), "{:?} vs {:?}", a, b);
        }
    }

    #[test]
    fn mixed_kinds_and_prefixes() {
        let rows = [
            Row::pack_slice(&[]),
            Row::pack_slice(&[Datum::Null]),
            Row::pack_slice(&[Datum::Int64(-5)]),
            Row::pack_slice(&[Datum::Int64(-5), Datum::String("")]),
            Row::pack_slice(&[Datum::Int64(-5), Datum::String("\0")]),
            Row::pack_slice(&[Datum::Int64(-5), Datum::String("a")]),
            Row::pack_slice(&[Datum::Int64(7)]),
            Row::pack_slice(&[Datum::String("a")]),
            Row::pack_slice(&[Datum::Timestamp(Timestamp(-3))]),
            Row::pack_slice(&[Datum::Timestamp(Timestamp(2))]),
        ];
        for (i, a) in rows.iter().enumerate() {
            for (j, b) in rows.iter().enumerate() {
                assert_eq!(a.cmp(b), i.cmp(&j), "{a:?} vs {b:?}");
                assert_eq!(
                    a.order_key().cmp(&b.order_key()),
                    i.cmp(&j),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }
}
