//! Scalar value types that have no Rust primitive: exact numerics, dates, times, intervals.
//! Their `Display` is the Postgres text form, which the TEXT format and error messages use.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// An exact decimal: `mantissa × 10^-scale`, up to 38 significant digits, or NaN.
/// Two numerics with the same value and different scales (`1.0`, `1.00`) are different
/// values that sort next to each other: the scale is what the user wrote and what the
/// encoders keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Numeric {
    mantissa: i128,
    /// `NAN_SCALE` marks NaN.
    scale: u8,
}

const NAN_SCALE: u8 = u8::MAX;
/// The largest scale a numeric may have (Postgres's limit for constrained numerics is 39).
pub const NUMERIC_MAX_SCALE: u8 = 39;

impl Numeric {
    pub const NAN: Numeric = Numeric {
        mantissa: 0,
        scale: NAN_SCALE,
    };

    /// `mantissa × 10^-scale`. Panics if `scale` exceeds [`NUMERIC_MAX_SCALE`]: scales come
    /// from validated types, so a larger one is a bug in the caller.
    pub fn new(mantissa: i128, scale: u8) -> Numeric {
        assert!(
            scale <= NUMERIC_MAX_SCALE,
            "numeric scale {scale} exceeds {NUMERIC_MAX_SCALE}"
        );
        Numeric { mantissa, scale }
    }

    pub fn is_nan(&self) -> bool {
        self.scale == NAN_SCALE
    }

    pub fn mantissa(&self) -> i128 {
        self.mantissa
    }

    pub fn scale(&self) -> u8 {
        if self.is_nan() {
            0
        } else {
            self.scale
        }
    }

    /// Parses `-12.340`, `1e3`, `NaN`; keeps the written scale.
    pub fn parse(s: &str) -> Option<Numeric> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("nan") {
            return Some(Numeric::NAN);
        }
        let (body, exponent) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
            None => (s, 0),
        };
        let (negative, digits) = match body.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, body.strip_prefix('+').unwrap_or(body)),
        };
        let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        if !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa.checked_mul(10)?.checked_add((b - b'0') as i128)?;
        }
        let mut scale = frac_part.len() as i32 - exponent;
        while scale < 0 {
            mantissa = mantissa.checked_mul(10)?;
            scale += 1;
        }
        if scale > NUMERIC_MAX_SCALE as i32 {
            return None;
        }
        Some(Numeric::new(
            if negative { -mantissa } else { mantissa },
            scale as u8,
        ))
    }

    /// The value as the nearest `f64` (NaN for NaN).
    pub fn to_f64(&self) -> f64 {
        if self.is_nan() {
            return f64::NAN;
        }
        self.mantissa as f64 / 10f64.powi(self.scale as i32)
    }

    /// The value rescaled to `scale` digits after the point, if that is exact and fits.
    pub fn rescale(&self, scale: u8) -> Option<i128> {
        if self.is_nan() || scale > NUMERIC_MAX_SCALE {
            return None;
        }
        if scale >= self.scale {
            self.mantissa
                .checked_mul(10i128.checked_pow((scale - self.scale) as u32)?)
        } else {
            let div = 10i128.checked_pow((self.scale - scale) as u32)?;
            (self.mantissa % div == 0).then(|| self.mantissa / div)
        }
    }
}

impl Ord for Numeric {
    /// Numeric order with NaN above every number (as Postgres), then by scale so that the
    /// order agrees with equality; exact at any magnitude.
    fn cmp(&self, other: &Self) -> Ordering {
        super::order::compare_numeric(self, other)
    }
}

impl PartialOrd for Numeric {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Numeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_nan() {
            return f.write_str("NaN");
        }
        let digits = self.mantissa.unsigned_abs().to_string();
        let scale = self.scale as usize;
        if self.mantissa < 0 {
            f.write_str("-")?;
        }
        if scale == 0 {
            return f.write_str(&digits);
        }
        if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            write!(f, "{int}.{frac}")
        } else {
            write!(f, "0.{}{digits}", "0".repeat(scale - digits.len()))
        }
    }
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Date(pub i32);

impl Date {
    /// The date of a calendar day, if it exists.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Date> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        // Days from civil: shift the year to start in March so leap days fall last.
        let y = if month <= 2 {
            year as i64 - 1
        } else {
            year as i64
        };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = month as i64;
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        i32::try_from(era * 146_097 + doe - 719_468).ok().map(Date)
    }

    pub fn to_ymd(self) -> (i32, u32, u32) {
        let z = self.0 as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + if month <= 2 { 1 } else { 0 }) as i32;
        (year, month, day)
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Date> {
        let s = s.trim();
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let mut parts = s.splitn(3, '-');
        let year: i32 = parts.next()?.parse().ok()?;
        let month = parts.next()?.parse().ok()?;
        let day = parts.next()?.parse().ok()?;
        Date::from_ymd(if negative { -year } else { year }, month, day)
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.to_ymd();
        if y < 0 {
            write!(f, "-{:04}-{m:02}-{d:02}", -y)
        } else {
            write!(f, "{y:04}-{m:02}-{d:02}")
        }
    }
}

pub const MICROS_PER_SECOND: i64 = 1_000_000;
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Microseconds since midnight, below 24 hours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Time(pub u64);

impl Time {
    pub fn from_hms_micro(h: u32, m: u32, s: u32, micros: u32) -> Option<Time> {
        (h < 24 && m < 60 && s < 60 && micros < 1_000_000)
            .then(|| Time(((h as u64 * 60 + m as u64) * 60 + s as u64) * 1_000_000 + micros as u64))
    }

    /// Parses `HH:MM[:SS[.ffffff]]`.
    pub fn parse(s: &str) -> Option<Time> {
        let s = s.trim();
        let (hms, frac) = s.split_once('.').unwrap_or((s, ""));
        let mut parts = hms.split(':');
        let h = parts.next()?.parse().ok()?;
        let m = parts.next()?.parse().ok()?;
        let sec = parts
            .next()
            .map(|p| p.parse())
            .transpose()
            .ok()?
            .unwrap_or(0);
        if parts.next().is_some() || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let micros = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}").parse().ok()?
        };
        Time::from_hms_micro(h, m, sec, micros)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.0 % 1_000_000;
        let secs = self.0 / 1_000_000;
        write!(
            f,
            "{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )?;
        write_fraction(f, micros)
    }
}

/// `.ffffff` with trailing zeros removed; nothing for a whole second.
fn write_fraction(f: &mut fmt::Formatter<'_>, micros: u64) -> fmt::Result {
    if micros == 0 {
        return Ok(());
    }
    let digits = format!("{micros:06}");
    write!(f, ".{}", digits.trim_end_matches('0'))
}

/// Microseconds since 1970-01-01 00:00:00; for `timestamptz`, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_date_time(date: Date, time: Time) -> Timestamp {
        Timestamp(date.0 as i64 * MICROS_PER_DAY + time.0 as i64)
    }

    pub fn date(self) -> Date {
        Date(self.0.div_euclid(MICROS_PER_DAY) as i32)
    }

    pub fn time(self) -> Time {
        Time(self.0.rem_euclid(MICROS_PER_DAY) as u64)
    }

    /// Parses `YYYY-MM-DD[ T]HH:MM:SS[.ffffff]`, optionally followed by `Z` or `+00:00`-style
    /// offsets, which are applied (the result is UTC).
    pub fn parse(s: &str) -> Option<Timestamp> {
        let s = s.trim();
        let split = s.find(['T', ' ']);
        let (date, rest) = match split {
            Some(i) => (&s[..i], s[i + 1..].trim()),
            None => (s, "00:00:00"),
        };
        let date = Date::parse(date)?;
        let (time, offset_secs) = split_offset(rest)?;
        let time = Time::parse(time)?;
        Some(Timestamp(
            Timestamp::from_date_time(date, time).0 - offset_secs * MICROS_PER_SECOND,
        ))
    }
}

/// Splits `12:00:00+02:00`, `12:00:00Z`, `12:00:00-0530` into the time and the offset.
fn split_offset(s: &str) -> Option<(&str, i64)> {
    if let Some(t) = s.strip_suffix(['Z', 'z']) {
        return Some((t.trim(), 0));
    }
    let Some(i) = s.rfind(['+', '-']) else {
        return Some((s, 0));
    };
    let (time, offset) = (&s[..i], &s[i + 1..]);
    let sign = if s.as_bytes()[i] == b'-' { -1 } else { 1 };
    let digits: String = offset.chars().filter(|c| *c != ':').collect();
    let (h, m) = match digits.len() {
        2 => (digits.parse::<i64>().ok()?, 0),
        4 => (
            digits[..2].parse::<i64>().ok()?,
            digits[2..].parse::<i64>().ok()?,
        ),
        _ => return None,
    };
    Some((time.trim(), sign * (h * 3600 + m * 60)))
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.date(), self.time())
    }
}

/// A Postgres interval: months, days and microseconds kept apart, as their lengths vary.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

impl fmt::Display for Interval {
    /// Postgres's `postgres` interval style: `1 year 2 mons 3 days 04:05:06.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let years = self.months / 12;
        let months = self.months % 12;
        let plural =
            |n: i64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        if years != 0 {
            parts.push(plural(years as i64, "year", "years"));
        }
        if months != 0 {
            parts.push(plural(months as i64, "mon", "mons"));
        }
        if self.days != 0 {
            parts.push(plural(self.days as i64, "day", "days"));
        }
        if self.micros != 0 || parts.is_empty() {
            let sign = if self.micros < 0 { "-" } else { "" };
            let abs = self.micros.unsigned_abs();
            let secs = abs / 1_000_000;
            let mut time = format!(
                "{sign}{:02}:{:02}:{:02}",
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            );
            let micros = abs % 1_000_000;
            if micros != 0 {
                time.push_str(&format!(
                    ".{}",
                    format!("{micros:06}").trim_end_matches('0')
                ));
            }
            parts.push(time);
        }
        f.write_str(&parts.join(" "))
    }
}

/// Formats a UUID's 16 bytes as the hyphenated lowercase string.
pub fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Parses a UUID with or without hyphens (and braces).
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s
        .trim()
        .trim_matches(['{', '}'])
        .chars()
        .filter(|c| *c != '-')
        .collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_keeps_its_scale() {
        for text in [
            "99.50",
            "0.05",
            "-0.5",
            "12",
            "-120.000",
            "0",
            "NaN",
            "123456789012345678901234567890.12345678",
        ] {
            assert_eq!(Numeric::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Numeric::parse("1e3").unwrap().to_string(), "1000");
        assert_eq!(Numeric::parse("1.5e-2").unwrap().to_string(), "0.015");
        assert_eq!(Numeric::parse(".5").unwrap().to_string(), "0.5");
        for bad in [
            "",
            "-",
            "1.2.3",
            "abc",
            "1e",
            "99999999999999999999999999999999999999999",
        ] {
            assert!(Numeric::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn numeric_order() {
        let n = |s| Numeric::parse(s).unwrap();
        assert!(n("1.0") < n("1.00"));
        assert!(n("1.00") < n("1.01"));
        assert!(n("-5") < n("0.001"));
        assert!(n("100000") < Numeric::NAN);
        assert_eq!(n("2.50").rescale(1), Some(25));
        assert_eq!(n("2.55").rescale(1), None);
    }

    #[test]
    fn civil_dates() {
        for (y, m, d, days) in [
            (1970, 1, 1, 0),
            (2000, 3, 1, 11_017),
            (1969, 12, 31, -1),
            (2024, 2, 29, 19_782),
        ] {
            let date = Date::from_ymd(y, m, d).unwrap();
            assert_eq!(date.0, days);
            assert_eq!(date.to_ymd(), (y, m, d));
        }
        assert!(Date::from_ymd(2023, 2, 29).is_none());
        assert_eq!(Date::parse("2024-02-29").unwrap().to_string(), "2024-02-29");
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = Date(days).to_ymd();
            assert_eq!(Date::from_ymd(y, m, d), Some(Date(days)));
        }
    }

    #[test]
    fn times_and_timestamps() {
        assert_eq!(Time::parse("12:34:56.5").unwrap().to_string(), "12:34:56.5");
        assert_eq!(Time::parse("00:00").unwrap().to_string(), "00:00:00");
        assert!(Time::parse("24:00:00").is_none());
        let ts = Timestamp::parse("2024-05-06T07:08:09.000123").unwrap();
        assert_eq!(ts.to_string(), "2024-05-06 07:08:09.000123");
        assert_eq!(
            Timestamp::parse("2024-05-06 09:08:09+02:00").unwrap(),
            Timestamp::parse("2024-05-06T07:08:09Z").unwrap()
        );
        assert_eq!(
            Timestamp::parse("1969-12-31 23:59:59").unwrap().0,
            -1_000_000
        );
    }

    #[test]
    fn intervals_print_as_postgres() {
        let iv = Interval {
            months: 14,
            days: 3,
            micros: 4 * 3_600_000_000 + 5 * 60_000_000 + 6_500_000,
        };
        assert_eq!(iv.to_string(), "1 year 2 mons 3 days 04:05:06.5");
        assert_eq!(Interval::default().to_string(), "00:00:00");
        assert_eq!(
            Interval {
                months: 0,
                days: -1,
                micros: -1_000_000
            }
            .to_string(),
            "-1 days -00:00:01"
        );
    }

    #[test]
    fn uuids() {
        let text = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        let bytes = parse_uuid(text).unwrap();
        assert_eq!(format_uuid(&bytes), text);
        assert!(parse_uuid("xyz").is_none());
    }
}
