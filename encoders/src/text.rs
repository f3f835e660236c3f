//! Postgres text forms written straight into a byte buffer, without going through `fmt` or
//! temporary strings: the TEXT format, header values, and JSON's dates, times and intervals
//! all use them. Each agrees with the `Display` of the value type in `outflow-dataflow`
//! (the tests hold them to it).

use std::fmt::Write as _;

use outflow_dataflow::relation::{
    ColumnType, Date, Datum, Interval, Numeric, ScalarType, Time, Timestamp,
};

use crate::columns::{fields_from, for_each_nested, Ctx, Kind, Slot};
use crate::error::{EncodeError, Part};

/// The Postgres text form of `datum`, a value of SQL type `typ`: what `::text` gives, and
/// what FORMAT TEXT writes. NULL gives the empty string; callers decide what a NULL becomes.
///
/// Panics when `datum` is not a value of `typ`; [`try_format_text`] returns an error instead.
///
/// ```
/// use outflow_dataflow::{Datum, RowPacker, ScalarType};
/// use outflow_encoders::text::format_text;
///
/// assert_eq!(format_text(Datum::Float64(1e21), &ScalarType::Float64), "1e+21");
/// let mut packer = RowPacker::new();
/// packer.push_list([Datum::String("a b"), Datum::Null]);
/// let list = packer.finish();
/// let typ = ScalarType::List { element: Box::new(ScalarType::Text) };
/// assert_eq!(format_text(list.unpack_first(), &typ), r#"{"a b",NULL}"#);
/// ```
pub fn format_text(datum: Datum<'_>, typ: &ScalarType) -> String {
    try_format_text(datum, typ).unwrap_or_else(|e| panic!("format_text: {e}"))
}

/// [`format_text`], or the error that says how `datum` does not fit `typ`.
pub fn try_format_text(datum: Datum<'_>, typ: &ScalarType) -> Result<String, EncodeError> {
    if datum.is_null() {
        return Ok(String::new());
    }
    // An expression's value has no column name; Postgres calls such a column `?column?`.
    let column_type = ColumnType {
        scalar_type: typ.clone(),
        nullable: true,
    };
    let fields = fields_from(std::iter::once(("?column?", &column_type)));
    let field = &fields[0];
    let mut buf = Vec::new();
    write_text(
        &mut buf,
        &field.slot,
        datum,
        Ctx {
            part: Part::Value,
            field,
        },
    )?;
    Ok(String::from_utf8(buf).expect("the text forms of valid datums are UTF-8"))
}

/// "00" through "99", so that digits are produced two at a time.
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Writes the decimal digits of `v` at the end of `out`, returning where they start.
fn digits_u64(mut v: u64, out: &mut [u8; 40]) -> usize {
    let mut at = out.len();
    while v >= 100 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        at -= 2;
        out[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if v >= 10 {
        at -= 2;
        out[at..at + 2].copy_from_slice(&DIGIT_PAIRS[v as usize * 2..v as usize * 2 + 2]);
    } else {
        at -= 1;
        out[at] = b'0' + v as u8;
    }
    at
}

/// As [`digits_u64`] for up to 39 digits: 128-bit division only for the digits past 19.
fn digits_u128(v: u128, out: &mut [u8; 40]) -> usize {
    const TEN_19: u128 = 10_000_000_000_000_000_000;
    if v <= u64::MAX as u128 {
        return digits_u64(v as u64, out);
    }
    let (high, low) = (v / TEN_19, (v % TEN_19) as u64);
    let mut low_digits = [0u8; 40];
    let low_start = digits_u64(low, &mut low_digits);
    // The low part always fills 19 digits, with zeros where it is short.
    out[21..].fill(b'0');
    out[low_start..].copy_from_slice(&low_digits[low_start..]);
    let mut high_digits = [0u8; 40];
    let high_start = digits_u128(high, &mut high_digits);
    let high_len = 40 - high_start;
    out[21 - high_len..21].copy_from_slice(&high_digits[high_start..]);
    21 - high_len
}

/// Decimal digits of `v`.
pub(crate) fn push_u64(buf: &mut Vec<u8>, v: u64) {
    let mut digits = [0u8; 40];
    let at = digits_u64(v, &mut digits);
    buf.extend_from_slice(&digits[at..]);
}

pub(crate) fn push_i64(buf: &mut Vec<u8>, v: i64) {
    if v < 0 {
        buf.push(b'-');
    }
    push_u64(buf, v.unsigned_abs());
}

/// Two digits, for values below 100.
fn push_2(buf: &mut Vec<u8>, v: u64) {
    let pair = (v % 100) as usize * 2;
    buf.extend_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
}

/// `v` with leading zeros to at least `width` digits.
fn push_padded(buf: &mut Vec<u8>, v: u64, width: usize) {
    if width == 2 && v < 100 {
        return push_2(buf, v);
    }
    let mut digits = [0u8; 40];
    let at = digits_u64(v, &mut digits);
    for _ in (digits.len() - at)..width {
        buf.push(b'0');
    }
    buf.extend_from_slice(&digits[at..]);
}

/// `YYYY-MM-DD`; years before 1 are written with a minus sign (astronomical numbering), as
/// `Date`'s `Display` does.
pub(crate) fn write_date(buf: &mut Vec<u8>, date: Date) {
    let (y, m, d) = date.to_ymd();
    if y < 0 {
        buf.push(b'-');
    }
    push_padded(buf, y.unsigned_abs() as u64, 4);
    buf.push(b'-');
    push_padded(buf, m as u64, 2);
    buf.push(b'-');
    push_padded(buf, d as u64, 2);
}

/// `.ffffff` without trailing zeros; nothing for a whole second.
fn write_fraction(buf: &mut Vec<u8>, micros: u64) {
    if micros == 0 {
        return;
    }
    let mut digits = [0u8; 6];
    let mut rest = micros;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let len = 6 - digits.iter().rev().take_while(|&&d| d == b'0').count();
    buf.push(b'.');
    buf.extend_from_slice(&digits[..len]);
}

/// `HH:MM:SS` from a count of seconds; hours may exceed two digits (intervals).
fn write_hms(buf: &mut Vec<u8>, secs: u64) {
    push_padded(buf, secs / 3600, 2);
    buf.push(b':');
    push_padded(buf, secs / 60 % 60, 2);
    buf.push(b':');
    push_padded(buf, secs % 60, 2);
}

/// `HH:MM:SS[.ffffff]`.
pub(crate) fn write_time(buf: &mut Vec<u8>, time: Time) {
    write_hms(buf, time.0 / 1_000_000);
    write_fraction(buf, time.0 % 1_000_000);
}

/// `YYYY-MM-DD{sep}HH:MM:SS[.ffffff]`.
pub(crate) fn write_timestamp(buf: &mut Vec<u8>, ts: Timestamp, sep: u8) {
    write_date(buf, ts.date());
    buf.push(sep);
    write_time(buf, ts.time());
}

/// Postgres's `postgres` interval style, as `Interval`'s `Display`: `1 year 2 mons 3 days 04:05:06.5`.
pub(crate) fn write_interval(buf: &mut Vec<u8>, iv: Interval) {
    let start = buf.len();
    let unit = |buf: &mut Vec<u8>, n: i64, one: &[u8], many: &[u8]| {
        if n == 0 {
            return;
        }
        if buf.len() > start {
            buf.push(b' ');
        }
        push_i64(buf, n);
        buf.push(b' ');
        buf.extend_from_slice(if n == 1 { one } else { many });
    };
    unit(buf, (iv.months / 12) as i64, b"year", b"years");
    unit(buf, (iv.months % 12) as i64, b"mon", b"mons");
    unit(buf, iv.days as i64, b"day", b"days");
    if iv.micros != 0 || buf.len() == start {
        if buf.len() > start {
            buf.push(b' ');
        }
        if iv.micros < 0 {
            buf.push(b'-');
        }
        let abs = iv.micros.unsigned_abs();
        write_hms(buf, abs / 1_000_000);
        write_fraction(buf, abs % 1_000_000);
    }
}

/// The hyphenated lowercase form.
pub(crate) fn write_uuid(buf: &mut Vec<u8>, bytes: &[u8; 16]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            buf.push(b'-');
        }
        buf.push(HEX[(b >> 4) as usize]);
        buf.push(HEX[(b & 0xf) as usize]);
    }
}

/// A finite numeric with its scale kept (`99.50`, `0.05`, `-12`); `NaN` for NaN.
pub(crate) fn write_numeric(buf: &mut Vec<u8>, n: Numeric) {
    if n.is_nan() {
        buf.extend_from_slice(b"NaN");
        return;
    }
    let mut digits = [0u8; 40];
    let at = digits_u128(n.mantissa().unsigned_abs(), &mut digits);
    let digits = &digits[at..];
    let scale = n.scale() as usize;
    if n.mantissa() < 0 {
        buf.push(b'-');
    }
    if scale == 0 {
        buf.extend_from_slice(digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        buf.extend_from_slice(int);
        buf.push(b'.');
        buf.extend_from_slice(frac);
    } else {
        buf.extend_from_slice(b"0.");
        buf.resize(buf.len() + scale - digits.len(), b'0');
        buf.extend_from_slice(digits);
    }
}

/// A fixed-size stack buffer for `fmt` output that must not touch the heap.
struct StackText {
    bytes: [u8; 40],
    len: usize,
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Postgres's float output (`extra_float_digits` = 1, its default since version 12): the
/// shortest digits that read back to the same value, in fixed notation when the decimal
/// exponent is in [-4, 15) for double precision or [-4, 6) for real, else as `1.5e+20`;
/// `NaN`, `Infinity`, `-Infinity`.
pub(crate) fn write_pg_float(buf: &mut Vec<u8>, v: f64, single: bool) {
    if v.is_nan() {
        buf.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        buf.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    // Rust's `{:e}` gives the shortest round-tripping digits for the value's own width.
    let mut text = StackText {
        bytes: [0; 40],
        len: 0,
    };
    let written = if single {
        write!(text, "{:e}", v as f32)
    } else {
        write!(text, "{v:e}")
    };
    written.expect("a float's exponent form fits in 40 bytes");
    let text = &text.bytes[..text.len];
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let e_at = text
        .iter()
        .position(|&b| b == b'e')
        .expect("exponent form has an e");
    let exponent: i32 = std::str::from_utf8(&text[e_at + 1..])
        .ok()
        .and_then(|e| e.parse().ok())
        .expect("exponent form has a decimal exponent");
    let mut digits = [0u8; 20];
    let mut n = 0;
    for &b in &text[..e_at] {
        if b != b'.' {
            digits[n] = b;
            n += 1;
        }
    }
    let digits = &digits[..n];
    if negative {
        buf.push(b'-');
    }
    let fixed_limit = if single { 6 } else { 15 };
    if (-4..fixed_limit).contains(&exponent) {
        if exponent < 0 {
            buf.extend_from_slice(b"0.");
            buf.resize(buf.len() + (-exponent - 1) as usize, b'0');
            buf.extend_from_slice(digits);
        } else {
            let int_len = exponent as usize + 1;
            if digits.len() <= int_len {
                buf.extend_from_slice(digits);
                buf.resize(buf.len() + int_len - digits.len(), b'0');
            } else {
                buf.extend_from_slice(&digits[..int_len]);
                buf.push(b'.');
                buf.extend_from_slice(&digits[int_len..]);
            }
        }
    } else {
        buf.push(digits[0]);
        if digits.len() > 1 {
            buf.push(b'.');
            buf.extend_from_slice(&digits[1..]);
        }
        buf.push(b'e');
        buf.push(if exponent < 0 { b'-' } else { b'+' });
        push_padded(buf, exponent.unsigned_abs() as u64, 2);
    }
}

/// `\x` followed by lowercase hex, Postgres's default `bytea_output`.
pub(crate) fn write_bytea_hex(buf: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf.reserve(2 + 2 * bytes.len());
    buf.extend_from_slice(b"\\x");
    for b in bytes {
        buf.push(HEX[(b >> 4) as usize]);
        buf.push(HEX[(b & 0xf) as usize]);
    }
}

/// The blank padding `char(n)` adds to `s` on output.
pub(crate) fn char_padding(s: &str, length: Option<u32>) -> usize {
    match length {
        Some(n) => (n as usize).saturating_sub(s.chars().count()),
        None => 0,
    }
}

/// The Postgres text form of a non-NULL datum of the given type.
pub(crate) fn write_text(
    buf: &mut Vec<u8>,
    slot: &Slot,
    datum: Datum<'_>,
    ctx: Ctx<'_>,
) -> Result<(), EncodeError> {
    match (&slot.kind, datum) {
        (Kind::Bool, Datum::True) => buf.push(b't'),
        (Kind::Bool, Datum::False) => buf.push(b'f'),
        (Kind::Int16, Datum::Int16(v)) => push_i64(buf, v as i64),
        (Kind::Int32, Datum::Int32(v)) => push_i64(buf, v as i64),
        (Kind::Int64, Datum::Int64(v)) => push_i64(buf, v),
        (Kind::UInt16, Datum::UInt16(v)) => push_u64(buf, v as u64),
        (Kind::UInt32, Datum::UInt32(v)) => push_u64(buf, v as u64),
        (Kind::UInt64, Datum::UInt64(v)) => push_u64(buf, v),
        (Kind::Float32, Datum::Float32(v)) => write_pg_float(buf, v as f64, true),
        (Kind::Float64, Datum::Float64(v)) => write_pg_float(buf, v, false),
        (Kind::Numeric { .. }, Datum::Numeric(n)) => write_numeric(buf, n),
        (Kind::Text, Datum::String(s)) => buf.extend_from_slice(s.as_bytes()),
        (Kind::Char { length }, Datum::String(s)) => {
            buf.extend_from_slice(s.as_bytes());
            buf.resize(buf.len() + char_padding(s, *length), b' ');
        }
        (Kind::Bytes, Datum::Bytes(b)) => write_bytea_hex(buf, b),
        (Kind::Date, Datum::Date(d)) => write_date(buf, d),
        (Kind::Time, Datum::Time(t)) => write_time(buf, t),
        (Kind::Timestamp { .. }, Datum::Timestamp(t)) => write_timestamp(buf, t, b' '),
        (Kind::TimestampTz { .. }, Datum::TimestampTz(t)) => {
            write_timestamp(buf, t, b' ');
            buf.extend_from_slice(b"+00");
        }
        (Kind::Interval, Datum::Interval(iv)) => write_interval(buf, iv),
        (Kind::Uuid, Datum::Uuid(u)) => write_uuid(buf, &u),
        (Kind::Jsonb, Datum::Jsonb(s)) => buf.extend_from_slice(s.as_bytes()),
        (Kind::List(element), Datum::List(list)) => {
            buf.push(b'{');
            for (i, d) in list.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_element(buf, element, d, ctx, Quoting::List)?;
            }
            buf.push(b'}');
        }
        (Kind::Map(value), Datum::Map(map)) => {
            buf.push(b'{');
            for (i, (k, d)) in map.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                write_quoted_if_needed(buf, k.as_bytes(), Quoting::Map);
                buf.extend_from_slice(b"=>");
                write_element(buf, value, d, ctx, Quoting::Map)?;
            }
            buf.push(b'}');
        }
        (Kind::Record(fields), Datum::List(list)) => {
            buf.push(b'(');
            let mut first = true;
            for_each_nested(ctx, fields, list.iter(), |field, d| {
                if !first {
                    buf.push(b',');
                }
                first = false;
                // A NULL field is written as nothing at all between the commas.
                if d.is_null() {
                    return Ok(());
                }
                write_element(buf, &field.slot, d, ctx, Quoting::Record)
            })?;
            buf.push(b')');
        }
        _ => return Err(ctx.mismatch(slot, datum)),
    }
    Ok(())
}

/// The quoting rules of the three composite text forms.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// `{a,"b c",NULL}`: backslash escapes.
    List,
    /// `{k=>v}`: as lists, with `=` and `>` special too.
    Map,
    /// `(a,"b c",)`: quotes doubled, backslashes doubled.
    Record,
}

fn write_element(
    buf: &mut Vec<u8>,
    slot: &Slot,
    datum: Datum<'_>,
    ctx: Ctx<'_>,
    quoting: Quoting,
) -> Result<(), EncodeError> {
    if datum.is_null() {
        buf.extend_from_slice(b"NULL");
        return Ok(());
    }
    // Nested lists and maps are written bare inside lists and maps, as Postgres does for
    // arrays; everything else is quoted when its text would be ambiguous.
    if quoting != Quoting::Record && matches!(slot.kind, Kind::List(_) | Kind::Map(_)) {
        return write_text(buf, slot, datum, ctx);
    }
    let mut element = Vec::new();
    write_text(&mut element, slot, datum, ctx)?;
    write_quoted_if_needed(buf, &element, quoting);
    Ok(())
}

fn write_quoted_if_needed(buf: &mut Vec<u8>, text: &[u8], quoting: Quoting) {
    let special: &[u8] = match quoting {
        Quoting::List => b"{},\"\\",
        Quoting::Map => b"{},\"\\=>",
        Quoting::Record => b"(),\"\\",
    };
    let needs_quotes = text.is_empty()
        || text
            .iter()
            .any(|b| special.contains(b) || b.is_ascii_whitespace())
        || (quoting != Quoting::Record && text.eq_ignore_ascii_case(b"NULL"));
    if !needs_quotes {
        buf.extend_from_slice(text);
        return;
    }
    buf.push(b'"');
    for &b in text {
        match (quoting, b) {
            (Quoting::Record, b'"') => buf.extend_from_slice(b"\"\""),
            (Quoting::Record, b'\\') => buf.extend_from_slice(b"\\\\"),
            (_, b'"' | b'\\') => {
                buf.push(b'\\');
                buf.push(b);
            }
            _ => buf.push(b),
        }
    }
    buf.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut buf = Vec::new();
        f(&mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn floats_print_as_postgres() {
        let cases: &[(f64, bool, &str)] = &[
            (0.0, false, "0"),
            (-0.0, false, "-0"),
            (1.0, false, "1"),
            (1.5, false, "1.5"),
            (100.0, false, "100"),
            (0.1, false, "0.1"),
            (0.0001, false, "0.0001"),
            (0.00001, false, "1e-05"),
            (123456789012345.0, false, "123456789012345"),
            (1e15, false, "1e+15"),
            (1.5e300, false, "1.5e+300"),
            (-2.5e-10, false, "-2.5e-10"),
            (f64::MAX, false, "1.7976931348623157e+308"),
            (f64::NAN, false, "NaN"),
            (f64::INFINITY, false, "Infinity"),
            (f64::NEG_INFINITY, false, "-Infinity"),
            (0.1f32 as f64, true, "0.1"),
            (123456.0, true, "123456"),
            (1234567.0, true, "1.234567e+06"),
            (3.4028235e38f32 as f64, true, "3.4028235e+38"),
        ];
        for &(v, single, expected) in cases {
            assert_eq!(
                text(|b| write_pg_float(b, v, single)),
                expected,
                "{v} single={single}"
            );
        }
    }

    #[test]
    fn fixed_cases() {
        assert_eq!(
            text(|b| write_uuid(
                b,
                &[
                    0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd,
                    0x38, 0x0a, 0x11
                ]
            )),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert_eq!(text(|b| write_bytea_hex(b, b"hi\x00\xff")), "\\x686900ff");
        assert_eq!(text(|b| write_numeric(b, Numeric::new(9950, 2))), "99.50");
        assert_eq!(text(|b| write_numeric(b, Numeric::new(-5, 3))), "-0.005");
        assert_eq!(text(|b| write_numeric(b, Numeric::new(0, 2))), "0.00");
        assert_eq!(
            text(|b| write_numeric(b, Numeric::new(i128::MIN + 1, 39))),
            format!("{}", Numeric::new(i128::MIN + 1, 39))
        );
        assert_eq!(text(|b| write_numeric(b, Numeric::NAN)), "NaN");
        assert_eq!(text(|b| push_i64(b, i64::MIN)), i64::MIN.to_string());
    }

    proptest! {
        #[test]
        fn dates_match_display(days in -1_000_000i32..3_000_000) {
            prop_assert_eq!(text(|b| write_date(b, Date(days))), Date(days).to_string());
        }

        #[test]
        fn times_match_display(micros in 0u64..86_400_000_000, whole in any::<bool>()) {
            let t = Time(if whole { micros / 1_000_000 * 1_000_000 } else { micros });
            prop_assert_eq!(text(|b| write_time(b, t)), t.to_string());
        }

        #[test]
        fn timestamps_match_display(micros in -100_000_000_000_000_000i64..100_000_000_000_000_000) {
            prop_assert_eq!(text(|b| write_timestamp(b, Timestamp(micros), b' ')), Timestamp(micros).to_string());
        }

        #[test]
        fn intervals_match_display(months in -1000i32..1000, days in -1000i32..1000, micros in any::<i64>().prop_filter("", |m| *m != i64::MIN), zero in 0u8..4) {
            let iv = Interval {
                months: if zero == 1 { 0 } else { months },
                days: if zero == 2 { 0 } else { days },
                micros: if zero == 3 { 0 } else { micros },
            };
            prop_assert_eq!(text(|b| write_interval(b, iv)), iv.to_string());
        }

        #[test]
        fn numerics_match_display(mantissa in any::<i64>(), scale in 0u8..=39) {
            let n = Numeric::new(mantissa as i128 * 1_000_003, scale);
            prop_assert_eq!(text(|b| write_numeric(b, n)), n.to_string());
        }

        #[test]
        fn floats_read_back(bits in any::<u64>()) {
            let v = f64::from_bits(bits);
            let printed = text(|b| write_pg_float(b, v, false));
            let back: f64 = match printed.as_str() {
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                other => other.parse().unwrap(),
            };
            prop_assert!(back == v || (v.is_nan() && back.is_nan()), "{} printed as {}", v, printed);
        }
    }
}
