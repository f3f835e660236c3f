//! The formats read back: a message part (or a change feed's row) in JSON, Avro, TEXT or BYTES
//! becomes the row of the relation it was written from, so that what the encoders write
//! decodes to what they were given (`tests/decode_roundtrip.rs` holds them to it).
//!
//! Each format has one entry, driven by the same per-column type tree as its encoder:
//! [`row_from_json`] (and [`debezium_from_json`]), [`row_from_avro`] (and
//! [`debezium_from_avro`]) with the writer schema the caller fetched, [`row_from_text`] and
//! [`row_from_bytes`]. Numerics are read from their digits, never through a float. An error
//! names the column and its declared type, then where inside a nested value the fault is.
//!
//! What does not come back as it went: `char(n)` values lose their trailing blanks (the
//! padding the encoders add, insignificant in Postgres), and an unconstrained numeric in Avro
//! comes back at the smallest scale that holds it exactly (Avro decimals have one scale). In
//! JSON a jsonb `null` is the same `null` as SQL NULL, and reads back as SQL NULL.
//!
//! ```
//! use outflow_dataflow::{Datum, RelationDesc, Row, ScalarType};
//! use outflow_dataflow::relation::Numeric;
//! use outflow_encoders::decode::row_from_json;
//!
//! let desc = RelationDesc::empty()
//!     .with_column("id", ScalarType::Int64, false)
//!     .with_column("amount", ScalarType::parse("numeric(38,2)").unwrap(), true);
//! let row = row_from_json(&desc, r#"{"id":1,"amount":12345678901234567.89}"#).unwrap();
//! let amount = Numeric::new(1234567890123456789, 2);
//! assert_eq!(row, Row::pack([Datum::Int64(1), Datum::Numeric(amount)]));
//! ```

mod avro;
mod connect;
mod json;
mod text;

pub use avro::{confluent_schema_id, debezium_from_avro, row_from_avro};
pub use connect::{debezium_from_connect_json, row_from_connect_json};
pub use json::{debezium_from_json, row_from_json};
pub use text::{row_from_bytes, row_from_text};

use outflow_dataflow::relation::values::MICROS_PER_DAY;
use outflow_dataflow::relation::{
    Date, Interval, Numeric, RelationDesc, Row, RowPacker, ScalarType, Timestamp,
};

use crate::columns::{fields_of, Field};
use crate::error::DecodeError;

/// A problem inside one column's value; the column is named when it becomes a
/// [`DecodeError`].
type Problem = String;

/// The fields of every column of `desc`, with the unique names the encoders write.
fn fields(desc: &RelationDesc) -> Vec<Field> {
    fields_of(desc, &(0..desc.arity()).collect::<Vec<_>>())
}

fn in_column(field: &Field, problem: Problem) -> DecodeError {
    DecodeError::Column {
        column: field.source_name.clone(),
        typ: field.slot.typ.to_string(),
        problem,
    }
}

/// Decodes one value per field with `push`, into a row.
fn decode_row<V>(
    fields: &[Field],
    values: impl IntoIterator<Item = V>,
    mut push: impl FnMut(&mut RowPacker, &Field, V) -> Result<(), Problem>,
) -> Result<Row, DecodeError> {
    let mut packer = RowPacker::new();
    for (field, value) in fields.iter().zip(values) {
        push(&mut packer, field, value).map_err(|problem| in_column(field, problem))?;
    }
    Ok(packer.finish())
}

/// A numeric read from its digits (`-12.340`, `1e3`, `NaN`). A constrained column's value is
/// rounded to the column's scale as Postgres rounds (half away from zero), then refused, as
/// Postgres refuses it, when more digits are left before the point than `precision − scale`.
fn numeric(text: &str, typ: &ScalarType) -> Result<Numeric, Problem> {
    let parsed = Numeric::parse(text).ok_or_else(|| format!("expected a numeric, found {text}"))?;
    let ScalarType::Numeric { precision, scale } = *typ else {
        return Ok(parsed);
    };
    if parsed.is_nan() || (precision.is_none() && scale.is_none()) {
        return Ok(parsed);
    }
    let scale = scale.unwrap_or(0);
    let overflow = || match precision {
        Some(p) => format!(
            "numeric field overflow: a field with precision {p}, scale {scale} must round to an \
             absolute value less than 10^{}",
            p - scale
        ),
        None => format!("numeric field overflow: {text} does not fit a numeric with scale {scale}"),
    };
    let mantissa = rounded(&parsed, scale).ok_or_else(overflow)?;
    if let Some(p) = precision {
        let limit = 10i128.checked_pow(p as u32);
        if limit.is_some_and(|limit| mantissa.unsigned_abs() >= limit.unsigned_abs()) {
            return Err(overflow());
        }
    }
    Ok(Numeric::new(mantissa, scale))
}

/// `value`'s mantissa at `scale` digits after the point, rounded half away from zero; `None`
/// when it does not fit an `i128`.
fn rounded(value: &Numeric, scale: u8) -> Option<i128> {
    let (mantissa, from) = (value.mantissa(), value.scale());
    if scale >= from {
        return mantissa.checked_mul(10i128.checked_pow((scale - from) as u32)?);
    }
    let Some(divisor) = 10i128.checked_pow((from - scale) as u32) else {
        // More than 38 digits dropped: every representable mantissa rounds to zero.
        return Some(0);
    };
    let (quotient, remainder) = (mantissa / divisor, mantissa % divisor);
    let away = remainder.unsigned_abs() >= divisor.unsigned_abs().div_ceil(2);
    Some(match (away, mantissa < 0) {
        (false, _) => quotient,
        (true, false) => quotient + 1,
        (true, true) => quotient - 1,
    })
}

/// A text value as a column of type `typ` holds it: Postgres refuses the NUL character in text,
/// and a value longer than `varchar(n)` or `char(n)` unless what is beyond `n` is blanks (which
/// it cuts off); `char(n)` values lose their trailing blanks, the padding the encoders add.
fn text_value<'a>(value: &'a str, typ: &ScalarType) -> Result<&'a str, Problem> {
    if value.contains('\0') {
        return Err("invalid byte sequence for encoding \"UTF8\": 0x00".to_string());
    }
    let limit = match typ {
        ScalarType::VarChar { max_length } => *max_length,
        ScalarType::Char { length } => *length,
        _ => None,
    };
    let value = match limit.and_then(|n| value.char_indices().nth(n as usize)) {
        Some((cut, _)) if value[cut..].bytes().all(|b| b == b' ') => &value[..cut],
        Some(_) => return Err(format!("value too long for type {typ}")),
        None => value,
    };
    Ok(match typ {
        ScalarType::Char { .. } => unpadded(value),
        _ => value,
    })
}
/// An integer of type `T` from decimal text.
fn integer<T: TryFrom<i128>>(text: &str, what: &str) -> Result<T, Problem> {
    let parsed: i128 = text
        .trim()
        .parse()
        .map_err(|_| format!("expected {what}, found {text}"))?;
    T::try_from(parsed).map_err(|_| format!("{parsed} is out of range for {what}"))
}

/// A float from its digits, or `NaN`, `Infinity`, `-Infinity` as both JSON (as strings) and
/// Postgres's text write them. Digits beyond the type's range (`1e300` for a `real`), above or
/// below, are refused as Postgres refuses them.
fn float<T>(text: &str, typ: &ScalarType) -> Result<T, Problem>
where
    T: std::str::FromStr + From<f32> + Copy + PartialEq,
{
    let special = match text.trim() {
        "NaN" => Some(f32::NAN),
        "Infinity" | "inf" => Some(f32::INFINITY),
        "-Infinity" | "-inf" => Some(f32::NEG_INFINITY),
        _ => None,
    };
    if let Some(v) = special {
        return Ok(T::from(v));
    }
    let digits = text.trim();
    let value: T = digits
        .parse()
        .map_err(|_| format!("expected a number, found {text}"))?;
    let infinite = value == T::from(f32::INFINITY) || value == T::from(f32::NEG_INFINITY);
    let mantissa = digits.split(['e', 'E']).next().unwrap_or("");
    let underflow = value == T::from(0.0) && mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b));
    // Rust also reads `infinity` and `nan` spelled otherwise; Postgres does too.
    let spelled = mantissa.bytes().any(|b| b.is_ascii_alphabetic());
    if (infinite || underflow) && !spelled {
        return Err(format!("\"{digits}\" is out of range for type {typ}"));
    }
    Ok(value)
}

fn date(text: &str) -> Result<Date, Problem> {
    Date::parse(text).ok_or_else(|| format!("expected a date YYYY-MM-DD, found {text}"))
}

/// A timestamp, refused (rather than overflowing) beyond the days that `Timestamp::parse`
/// can count in microseconds: about 292,000 years either side of 1970. (The earliest
/// microseconds of `i64`, a day's worth before that, have a text form that does not read back.)
fn timestamp(text: &str) -> Result<Timestamp, Problem> {
    let wrong = || format!("expected a timestamp YYYY-MM-DD HH:MM:SS[.ffffff], found {text}");
    let out_of_range = || format!("{text} is out of range for a timestamp");
    let trimmed = text.trim();
    // The date ends at the first `T` or space, as `Timestamp::parse` reads it.
    let (date_text, rest) = trimmed.split_at(trimmed.find(['T', ' ']).unwrap_or(trimmed.len()));
    let days = Date::parse(date_text).ok_or_else(wrong)?.0 as i64;
    let last_day = i64::MAX / MICROS_PER_DAY;
    if !(-last_day..=last_day).contains(&days) {
        return Err(out_of_range());
    }
    // On the outermost days any time of day fits, but an offset may not.
    let utc = rest.ends_with(['Z', 'z'])
        || rest.ends_with("+00")
        || rest.ends_with("+00:00")
        || !rest.contains(['+', '-']);
    if days.abs() >= last_day - 1 && !utc {
        return Err(out_of_range());
    }
    Timestamp::parse(trimmed).ok_or_else(wrong)
}

/// Postgres's `postgres`-style interval text, as the encoders write it:
/// `1 year 2 mons 3 days 04:05:06.5`, `-1 days -00:00:01`.
fn interval(text: &str) -> Result<Interval, Problem> {
    parse_interval(text).ok_or_else(|| format!("expected an interval, found {text}"))
}

fn parse_interval(text: &str) -> Option<Interval> {
    // Summed wider than the fields, so that `-2562047788:00:54.775808` (`i64::MIN`) reads.
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i128);
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        if word.contains(':') {
            let (negative, clock) = match word.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, word.strip_prefix('+').unwrap_or(word)),
            };
            let mut parts = clock.split(':');
            let hours: i128 = parts.next()?.parse().ok()?;
            let minutes: i128 = parts.next()?.parse().ok()?;
            let seconds = parts.next().unwrap_or("0");
            if parts.next().is_some() || hours < 0 || minutes < 0 {
                return None;
            }
            let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
            let whole: i128 = whole.parse().ok()?;
            if whole < 0 || fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let fraction: i128 = if fraction.is_empty() {
                0
            } else {
                format!("{fraction:0<6}").parse().ok()?
            };
            let total = hours
                .checked_mul(60)?
                .checked_add(minutes)?
                .checked_mul(60)?
                .checked_add(whole)?
                .checked_mul(1_000_000)?
                .checked_add(fraction)?;
            micros = micros.checked_add(if negative { -total } else { total })?;
            continue;
        }
        let amount: i64 = word.parse().ok()?;
        let unit = words.next()?;
        match unit.trim_end_matches('s') {
            "year" => months = months.checked_add(amount.checked_mul(12)?)?,
            "mon" | "month" => months = months.checked_add(amount)?,
            "day" => days = days.checked_add(amount)?,
            _ => return None,
        }
    }
    Some(Interval {
        months: i32::try_from(months).ok()?,
        days: i32::try_from(days).ok()?,
        micros: i64::try_from(micros).ok()?,
    })
}

/// `char(n)` values lose the blanks the encoders pad them with.
fn unpadded(s: &str) -> &str {
    s.trim_end_matches(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_read_back() {
        let cases = [
            Interval {
                months: 14,
                days: 3,
                micros: 4 * 3_600_000_000 + 5 * 60_000_000 + 6_500_000,
            },
            Interval {
                months: i32::MIN,
                days: i32::MIN,
                micros: i64::MIN,
            },
            Interval {
                months: i32::MAX,
                days: i32::MAX,
                micros: i64::MAX,
            },
            Interval::default(),
        ];
        for interval in cases {
            assert_eq!(parse_interval(&interval.to_string()), Some(interval));
        }
        assert_eq!(parse_interval("99999999999999999:00"), None);
        assert_eq!(parse_interval("3 fortnights"), None);
    }

    #[test]
    fn timestamps_beyond_the_range_are_errors() {
        assert!(timestamp("300000-01-01 00:00:00").is_err());
        assert!(timestamp("-300000-01-01 00:00:00").is_err());
        let latest = Timestamp(i64::MAX);
        assert_eq!(timestamp(&latest.to_string()), Ok(latest));
        assert!(timestamp(&format!("{}+05", latest)).is_err());
        assert_eq!(
            timestamp("2024-05-06T07:08:09Z"),
            Ok(Timestamp::parse("2024-05-06 07:08:09").unwrap())
        );
    }
}
