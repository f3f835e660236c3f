//! The change feed `outflow run` replays: JSON lines of updates to the tables of a statements
//! file, and the decoding of FORMAT JSON values into rows that it shares with `outflow read`.
//!
//! ```text
//! {"table": "orders", "time": 5, "diff": 1, "row": {"order_id": 1, "region": "eu"}}
//! {"table": "orders", "time": 5, "diff": 1, "row": [2, "us"]}
//! {"advance": 7}
//! ```
//!
//! A row is an object by column name (missing nullable columns are NULL) or an array in
//! column order; values are written as FORMAT JSON writes them (`encoders/JSON.md`), so a
//! topic written as JSON can be replayed, and a number may also come as a string. Times never
//! go back: an update's time is at least the time of every earlier line, and
//! `{"advance": t}` says that no update before `t` follows. Every time the feed moves past is
//! complete, so the sinks may commit it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::BufRead;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use outflow::dataflow::relation::values::parse_uuid;
use outflow::dataflow::relation::{Date, Interval, Numeric, Time, Timestamp};
use outflow::dataflow::{ColumnType, Datum, RelationDesc, Row, RowPacker, ScalarType};

/// Lines the reader may parse ahead of the dataflow; it blocks beyond that, so the feed is
/// never held in memory whole.
const FEED_QUEUE: usize = 4096;

/// A feed line that cannot be applied, with its line number (from 1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("feed line {line}: {message}")]
pub struct FeedError {
    pub line: u64,
    pub message: String,
}

/// One parsed feed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedItem {
    /// `row` of table number `table` (in [`FeedTables`] order) gains `diff` copies at `time`.
    Update {
        table: usize,
        time: u64,
        row: Row,
        diff: isize,
    },
    /// No update before this time follows.
    Advance(u64),
}

/// What the reader thread hands the dataflow.
#[derive(Debug)]
pub enum FeedMessage {
    Item {
        line: u64,
        item: FeedItem,
    },
    /// The line could not be read or applied; nothing after it is read.
    Error(FeedError),
    /// The end of the feed.
    End,
}

/// The tables a feed may update, by name, with their column descriptions.
#[derive(Clone, Debug, Default)]
pub struct FeedTables {
    tables: Vec<(String, RelationDesc)>,
}

impl FeedTables {
    pub fn new() -> FeedTables {
        FeedTables::default()
    }

    /// Adds a table (once) and returns its number.
    pub fn add(&mut self, name: &str, desc: &RelationDesc) -> usize {
        if let Some(index) = self.index(name) {
            return index;
        }
        self.tables.push((name.to_string(), desc.clone()));
        self.tables.len() - 1
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.tables.iter().position(|(n, _)| n == name)
    }

    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    pub fn name(&self, table: usize) -> &str {
        &self.tables[table].0
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine<'a> {
    table: Option<String>,
    time: Option<u64>,
    diff: Option<i64>,
    #[serde(borrow)]
    row: Option<&'a RawValue>,
    advance: Option<u64>,
}

/// Parses feed lines in order and holds the feed's frontier, so that a line going back in time
/// is refused.
#[derive(Clone, Debug)]
pub struct FeedParser {
    tables: FeedTables,
    /// No update before this time may follow.
    frontier: u64,
    /// The line that set the frontier, for the error message.
    frontier_line: Option<u64>,
}

impl FeedParser {
    pub fn new(tables: FeedTables) -> FeedParser {
        FeedParser {
            tables,
            frontier: 0,
            frontier_line: None,
        }
    }

    /// Every update before this time has been read.
    pub fn frontier(&self) -> u64 {
        self.frontier
    }

    /// Parses line `line` (numbered from 1); `None` for a blank line.
    pub fn parse(&mut self, line: u64, text: &str) -> Result<Option<FeedItem>, FeedError> {
        let error = |message: String| FeedError { line, message };
        if text.trim().is_empty() {
            return Ok(None);
        }
        let raw: RawLine<'_> =
            serde_json::from_str(text).map_err(|e| error(format!("not a feed line: {e}")))?;
        if let Some(advance) = raw.advance {
            if raw.table.is_some() || raw.time.is_some() || raw.diff.is_some() || raw.row.is_some()
            {
                return Err(error("an \"advance\" line has no other fields".to_string()));
            }
            self.check_time(line, advance, "advance")?;
            self.set_frontier(line, advance);
            return Ok(Some(FeedItem::Advance(advance)));
        }
        let table_name = raw
            .table
            .ok_or_else(|| error("missing \"table\" (or \"advance\")".to_string()))?;
        let time = raw
            .time
            .ok_or_else(|| error("missing \"time\"".to_string()))?;
        let diff = raw.diff.unwrap_or(1);
        let diff = isize::try_from(diff).map_err(|_| error(format!("diff {diff} does not fit")))?;
        let row = raw
            .row
            .ok_or_else(|| error("missing \"row\"".to_string()))?;
        let table = self.tables.index(&table_name).ok_or_else(|| {
            let known: Vec<&str> = self.tables.tables.iter().map(|(n, _)| n.as_str()).collect();
            error(format!(
                "unknown table \"{table_name}\" (the tables are {})",
                known.join(", ")
            ))
        })?;
        self.check_time(line, time, "time")?;
        let desc = &self.tables.tables[table].1;
        let row = row_from_raw(desc, row).map_err(|e| error(format!("table {table_name}: {e}")))?;
        self.set_frontier(line, time);
        Ok(Some(FeedItem::Update {
            table,
            time,
            row,
            diff,
        }))
    }

    fn check_time(&self, line: u64, time: u64, what: &str) -> Result<(), FeedError> {
        if time < self.frontier {
            let since = self
                .frontier_line
                .map(|l| format!(" (set by line {l})"))
                .unwrap_or_default();
            return Err(FeedError {
                line,
                message: format!(
                    "{what} {time} goes back in time: the feed is already at time {}{since}",
                    self.frontier
                ),
            });
        }
        Ok(())
    }

    fn set_frontier(&mut self, line: u64, time: u64) {
        if time > self.frontier {
            self.frontier = time;
            self.frontier_line = Some(line);
        }
    }
}

/// Reads `source` line by line on a thread of its own and sends what it parses; `pace`, when
/// set, is slept each time the feed's time moves forward, so that a run can be watched or
/// interrupted part way. The thread ends after the end of the feed or the first error.
pub fn spawn_reader(
    source: Box<dyn BufRead + Send>,
    tables: FeedTables,
    pace: Option<Duration>,
) -> Receiver<FeedMessage> {
    let (send, receive) = std::sync::mpsc::sync_channel(FEED_QUEUE);
    std::thread::Builder::new()
        .name("outflow-feed".to_string())
        .spawn(move || read_feed(source, FeedParser::new(tables), pace, send))
        .expect("the feed reader thread starts");
    receive
}

fn read_feed(
    mut source: Box<dyn BufRead + Send>,
    mut parser: FeedParser,
    pace: Option<Duration>,
    send: SyncSender<FeedMessage>,
) {
    let mut line = 0u64;
    let mut text = String::new();
    loop {
        text.clear();
        line += 1;
        match source.read_line(&mut text) {
            Ok(0) => {
                let _ = send.send(FeedMessage::End);
                return;
            }
            Ok(_) => {}
            Err(e) => {
                let _ = send.send(FeedMessage::Error(FeedError {
                    line,
                    message: format!("cannot read the feed: {e}"),
                }));
                return;
            }
        }
        let before = parser.frontier();
        match parser.parse(line, &text) {
            Ok(None) => {}
            Ok(Some(item)) => {
                if let (Some(pace), true) = (pace, parser.frontier() > before) {
                    std::thread::sleep(pace);
                }
                if send.send(FeedMessage::Item { line, item }).is_err() {
                    return;
                }
            }
            Err(error) => {
                let _ = send.send(FeedMessage::Error(error));
                return;
            }
        }
    }
}

/// Why a value does not fit its column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueError(pub String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A row from a feed line's `row`: an object by column name or an array in column order.
/// Numbers of numeric columns are read from their text, so no digit is lost.
fn row_from_raw(desc: &RelationDesc, raw: &RawValue) -> Result<Row, ValueError> {
    let text = raw.get().trim_start();
    let mut values: Vec<Option<&RawValue>> = vec![None; desc.arity()];
    if text.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(raw.get())
            .map_err(|e| ValueError(format!("\"row\" is not an array of values: {e}")))?;
        if items.len() != desc.arity() {
            return Err(ValueError(format!(
                "the row has {} values but the table has {} columns",
                items.len(),
                desc.arity()
            )));
        }
        values = items.into_iter().map(Some).collect();
    } else if text.starts_with('{') {
        let fields: Vec<(String, &RawValue)> =
            serde_json::from_str::<BTreeMap<String, &RawValue>>(raw.get())
                .map_err(|e| ValueError(format!("\"row\" is not an object of values: {e}")))?
                .into_iter()
                .collect();
        for (name, value) in fields {
            let (index, _) = desc.get_by_name(&name).ok_or_else(|| {
                ValueError(format!(
                    "unknown column \"{name}\" (the columns are {})",
                    desc.names().collect::<Vec<_>>().join(", ")
                ))
            })?;
            values[index] = Some(value);
        }
    } else {
        return Err(ValueError(
            "\"row\" must be an object or an array".to_string(),
        ));
    }
    let mut packer = RowPacker::new();
    for (index, value) in values.into_iter().enumerate() {
        let column = desc.column(index);
        let result = match value {
            None => push_json(&mut packer, &column.typ, &Value::Null),
            Some(raw) => push_raw(&mut packer, &column.typ, raw),
        };
        result.map_err(|e| {
            ValueError(format!(
                "column \"{}\" ({}): {e}",
                column.name,
                column.typ.scalar_type.name()
            ))
        })?;
    }
    Ok(packer.finish())
}

fn push_raw(packer: &mut RowPacker, ty: &ColumnType, raw: &RawValue) -> Result<(), ValueError> {
    let text = raw.get().trim();
    if let ScalarType::Numeric { scale, .. } = ty.scalar_type {
        if text.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) {
            return push_numeric(packer, text, scale);
        }
    }
    let value: Value =
        serde_json::from_str(raw.get()).map_err(|e| ValueError(format!("not JSON: {e}")))?;
    push_json(packer, ty, &value)
}

/// A row from a JSON object by column name (as FORMAT JSON writes rows) or an array in column
/// order. Absent nullable columns are NULL.
pub fn row_from_json(desc: &RelationDesc, value: &Value) -> Result<Row, ValueError> {
    let mut packer = RowPacker::new();
    match value {
        Value::Object(fields) => {
            if let Some(name) = fields.keys().find(|name| desc.get_by_name(name).is_none()) {
                return Err(ValueError(format!("unknown column \"{name}\"")));
            }
            for column in desc.columns() {
                let value = fields.get(&column.name).unwrap_or(&Value::Null);
                push_json(&mut packer, &column.typ, value)
                    .map_err(|e| ValueError(format!("column \"{}\": {e}", column.name)))?;
            }
        }
        Value::Array(items) if items.len() == desc.arity() => {
            for (column, value) in desc.columns().iter().zip(items) {
                push_json(&mut packer, &column.typ, value)
                    .map_err(|e| ValueError(format!("column \"{}\": {e}", column.name)))?;
            }
        }
        other => {
            return Err(ValueError(format!(
                "expected a row object, found {}",
                kind_of(other)
            )))
        }
    }
    Ok(packer.finish())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(expected: &str, value: &Value) -> ValueError {
    ValueError(format!(
        "expected {expected}, found {} {}",
        kind_of(value),
        truncated(value)
    ))
}

fn truncated(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > 40 {
        let mut end = 40;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// The text of a number, or of a string holding one.
fn number_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.trim().to_string()),
        _ => None,
    }
}

fn integer<T: TryFrom<i128>>(value: &Value, what: &str) -> Result<T, ValueError> {
    let text = number_text(value).ok_or_else(|| wrong(what, value))?;
    let parsed: i128 = text.parse().map_err(|_| wrong(what, value))?;
    T::try_from(parsed).map_err(|_| ValueError(format!("{parsed} is out of range for {what}")))
}

fn float(value: &Value) -> Result<f64, ValueError> {
    match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| wrong("a number", value)),
        Value::String(s) => match s.trim() {
            "NaN" => Ok(f64::NAN),
            "Infinity" | "inf" => Ok(f64::INFINITY),
            "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(|_| wrong("a number", value)),
        },
        _ => Err(wrong("a number", value)),
    }
}

fn push_numeric(packer: &mut RowPacker, text: &str, scale: Option<u8>) -> Result<(), ValueError> {
    let parsed = Numeric::parse(text)
        .ok_or_else(|| ValueError(format!("expected a numeric, found {text}")))?;
    let numeric = match scale {
        Some(scale) if !parsed.is_nan() => {
            let mantissa = parsed.rescale(scale).ok_or_else(|| {
                ValueError(format!("{text} does not fit a numeric with scale {scale}"))
            })?;
            Numeric::new(mantissa, scale)
        }
        _ => parsed,
    };
    packer.push(Datum::Numeric(numeric));
    Ok(())
}

fn string<'a>(value: &'a Value, what: &str) -> Result<&'a str, ValueError> {
    value.as_str().ok_or_else(|| wrong(what, value))
}

/// Pushes `value`, in the FORMAT JSON encoding of `ty`, onto `packer`.
pub fn push_json(packer: &mut RowPacker, ty: &ColumnType, value: &Value) -> Result<(), ValueError> {
    if value.is_null() {
        if !ty.nullable {
            return Err(ValueError("null in a NOT NULL column".to_string()));
        }
        packer.push(Datum::Null);
        return Ok(());
    }
    push_scalar(packer, &ty.scalar_type, value)
}

fn push_scalar(packer: &mut RowPacker, ty: &ScalarType, value: &Value) -> Result<(), ValueError> {
    let datum = match ty {
        ScalarType::Bool => match value {
            Value::Bool(b) => Datum::from_bool(*b),
            Value::String(s) if s == "true" || s == "t" => Datum::True,
            Value::String(s) if s == "false" || s == "f" => Datum::False,
            _ => return Err(wrong("a boolean", value)),
        },
        ScalarType::Int16 => Datum::Int16(integer(value, "a smallint")?),
        ScalarType::Int32 => Datum::Int32(integer(value, "an integer")?),
        ScalarType::Int64 => Datum::Int64(integer(value, "a bigint")?),
        ScalarType::UInt16 => Datum::UInt16(integer(value, "a uint2")?),
        ScalarType::UInt32 => Datum::UInt32(integer(value, "a uint4")?),
        ScalarType::UInt64 => Datum::UInt64(integer(value, "a uint8")?),
        ScalarType::Float32 => Datum::Float32(float(value)? as f32),
        ScalarType::Float64 => Datum::Float64(float(value)?),
        ScalarType::Numeric { scale, .. } => {
            let text = number_text(value).ok_or_else(|| wrong("a numeric", value))?;
            return push_numeric(packer, &text, *scale);
        }
        ScalarType::Text | ScalarType::VarChar { .. } | ScalarType::Char { .. } => {
            Datum::String(string(value, "a string")?)
        }
        ScalarType::Bytes => {
            let bytes = base64_decode(string(value, "a base64 string")?)
                .ok_or_else(|| wrong("standard base64", value))?;
            packer.push(Datum::Bytes(&bytes));
            return Ok(());
        }
        ScalarType::Date => Datum::Date(
            Date::parse(string(value, "a date")?)
                .ok_or_else(|| wrong("a date YYYY-MM-DD", value))?,
        ),
        ScalarType::Time => Datum::Time(
            Time::parse(string(value, "a time")?).ok_or_else(|| wrong("a time HH:MM:SS", value))?,
        ),
        ScalarType::Timestamp { .. } => Datum::Timestamp(
            Timestamp::parse(string(value, "a timestamp")?)
                .ok_or_else(|| wrong("a timestamp YYYY-MM-DDTHH:MM:SS", value))?,
        ),
        ScalarType::TimestampTz { .. } => Datum::TimestampTz(
            Timestamp::parse(string(value, "a timestamp")?)
                .ok_or_else(|| wrong("a timestamp YYYY-MM-DDTHH:MM:SSZ", value))?,
        ),
        ScalarType::Interval => Datum::Interval(
            parse_interval(string(value, "an interval")?)
                .ok_or_else(|| wrong("an interval", value))?,
        ),
        ScalarType::Uuid => {
            Datum::Uuid(parse_uuid(string(value, "a uuid")?).ok_or_else(|| wrong("a uuid", value))?)
        }
        ScalarType::Jsonb => {
            let text = value.to_string();
            packer.push(Datum::Jsonb(&text));
            return Ok(());
        }
        ScalarType::List { element } => {
            let items = value.as_array().ok_or_else(|| wrong("an array", value))?;
            let element = ColumnType {
                scalar_type: (**element).clone(),
                nullable: true,
            };
            let mut result = Ok(());
            packer.push_list_with(|p| {
                for (i, item) in items.iter().enumerate() {
                    if let Err(e) = push_json(p, &element, item) {
                        result = Err(ValueError(format!("element {i}: {e}")));
                        p.push(Datum::Null);
                    }
                }
            });
            return result;
        }
        ScalarType::Map { value: value_type } => {
            let fields = value.as_object().ok_or_else(|| wrong("an object", value))?;
            let element = ColumnType {
                scalar_type: (**value_type).clone(),
                nullable: true,
            };
            let mut entries: Vec<(&str, Row)> = Vec::with_capacity(fields.len());
            for (key, item) in fields {
                let mut one = RowPacker::new();
                push_json(&mut one, &element, item)
                    .map_err(|e| ValueError(format!("entry \"{key}\": {e}")))?;
                entries.push((key, one.finish()));
            }
            packer.push_map(entries.iter().map(|(k, row)| (*k, row.unpack_first())));
            return Ok(());
        }
        ScalarType::Record { fields } => {
            let values: Vec<&Value> = match value {
                Value::Object(object) => {
                    if let Some(name) = object.keys().find(|n| !fields.iter().any(|(f, _)| f == *n))
                    {
                        return Err(ValueError(format!("the record has no field \"{name}\"")));
                    }
                    fields
                        .iter()
                        .map(|(name, _)| object.get(name).unwrap_or(&Value::Null))
                        .collect()
                }
                Value::Array(items) if items.len() == fields.len() => items.iter().collect(),
                _ => return Err(wrong("a record object", value)),
            };
            let mut result = Ok(());
            packer.push_list_with(|p| {
                for ((name, field_type), item) in fields.iter().zip(values) {
                    if let Err(e) = push_json(p, field_type, item) {
                        if result.is_ok() {
                            result = Err(ValueError(format!("field \"{name}\": {e}")));
                        }
                        p.push(Datum::Null);
                    }
                }
            });
            return result;
        }
    };
    packer.push(datum);
    Ok(())
}

/// Reads Postgres's `postgres`-style interval text, as FORMAT JSON writes it:
/// `1 year 2 mons 3 days 04:05:06.5`, `-1 days -00:00:01`.
pub fn parse_interval(text: &str) -> Option<Interval> {
    let mut interval = Interval::default();
    let mut words = text.split_whitespace().peekable();
    while let Some(word) = words.next() {
        if word.contains(':') {
            let (negative, clock) = match word.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, word.strip_prefix('+').unwrap_or(word)),
            };
            let mut parts = clock.split(':');
            let hours: i64 = parts.next()?.parse().ok()?;
            let minutes: i64 = parts.next()?.parse().ok()?;
            let seconds = parts.next().unwrap_or("0");
            if parts.next().is_some() {
                return None;
            }
            let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
            let whole: i64 = whole.parse().ok()?;
            if fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let micros: i64 = if fraction.is_empty() {
                0
            } else {
                format!("{fraction:0<6}").parse().ok()?
            };
            let total = ((hours * 60 + minutes) * 60 + whole) * 1_000_000 + micros;
            interval.micros += if negative { -total } else { total };
            continue;
        }
        let amount: i64 = word.parse().ok()?;
        let unit = words.next()?;
        match unit.trim_end_matches('s') {
            "year" => interval.months += i32::try_from(amount * 12).ok()?,
            "mon" | "month" => interval.months += i32::try_from(amount).ok()?,
            "day" => interval.days += i32::try_from(amount).ok()?,
            _ => return None,
        }
    }
    Some(interval)
}

/// Standard base64 with padding, as FORMAT JSON writes `bytea`.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(b: u8) -> Option<u32> {
        Some(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i + 1 == bytes.len() / 4;
        let padding = chunk.iter().rev().take_while(|&&b| b == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &b in &chunk[..4 - padding] {
            n = (n << 6) | sextet(b)?;
        }
        n <<= 6 * padding as u32;
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(out)
}

/// Rows of each table at the end of a feed, for comparing a topic with the feed it came from:
/// table name → row → multiplicity.
pub fn final_state(
    tables: &FeedTables,
    items: &[FeedItem],
) -> HashMap<String, BTreeMap<Row, isize>> {
    let mut state: HashMap<String, BTreeMap<Row, isize>> = HashMap::new();
    for item in items {
        if let FeedItem::Update {
            table, row, diff, ..
        } = item
        {
            let rows = state.entry(tables.name(*table).to_string()).or_default();
            let count = rows.entry(row.clone()).or_insert(0);
            *count += diff;
            if *count == 0 {
                rows.remove(row);
            }
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> FeedTables {
        let mut tables = FeedTables::new();
        let desc = RelationDesc::empty()
            .with_column("id", ScalarType::Int64, false)
            .with_column(
                "amount",
                ScalarType::Numeric {
                    precision: Some(10),
                    scale: Some(2),
                },
                false,
            )
            .with_column("note", ScalarType::Text, true);
        tables.add("t", &desc);
        tables
    }

    #[test]
    fn rows_by_name_or_position_and_numbers_as_text() {
        let mut parser = FeedParser::new(tables());
        let a = parser
            .parse(
                1,
                r#"{"table":"t","time":1,"diff":1,"row":{"id":1,"amount":99.50}}"#,
            )
            .unwrap()
            .unwrap();
        let b = parser
            .parse(
                2,
                r#"{"table":"t","time":1,"diff":1,"row":["1","99.5",null]}"#,
            )
            .unwrap()
            .unwrap();
        let expected = Row::pack_slice(&[
            Datum::Int64(1),
            Datum::Numeric(Numeric::new(9950, 2)),
            Datum::Null,
        ]);
        assert_eq!(
            a,
            FeedItem::Update {
                table: 0,
                time: 1,
                row: expected.clone(),
                diff: 1
            }
        );
        assert_eq!(
            b,
            FeedItem::Update {
                table: 0,
                time: 1,
                row: expected,
                diff: 1
            }
        );
        assert_eq!(parser.parse(3, "  ").unwrap(), None);
        assert_eq!(
            parser.parse(4, r#"{"advance": 3}"#).unwrap(),
            Some(FeedItem::Advance(3))
        );
    }

    #[test]
    fn each_bad_line_names_its_line_and_problem() {
        let mut parser = FeedParser::new(tables());
        parser.parse(1, r#"{"advance": 5}"#).unwrap();
        let cases = [
            (r#"{"table":"t","time":5,"row":{"id":1"#, "not a feed line"),
            (
                r#"{"table":"u","time":5,"row":{"id":1}}"#,
                "unknown table \"u\"",
            ),
            (
                r#"{"table":"t","time":5,"row":{"id":1,"amount":1,"colour":"red"}}"#,
                "unknown column \"colour\"",
            ),
            (
                r#"{"table":"t","time":5,"row":{"id":"one","amount":1}}"#,
                "column \"id\" (bigint): expected a bigint",
            ),
            (
                r#"{"table":"t","time":5,"row":{"amount":1}}"#,
                "column \"id\" (bigint): null in a NOT NULL column",
            ),
            (
                r#"{"table":"t","time":4,"row":{"id":1,"amount":1}}"#,
                "time 4 goes back in time",
            ),
            (r#"{"advance": 2}"#, "advance 2 goes back in time"),
        ];
        for (i, (line, expected)) in cases.into_iter().enumerate() {
            let error = parser.parse(i as u64 + 2, line).unwrap_err();
            assert_eq!(error.line, i as u64 + 2);
            assert!(error.to_string().contains(expected), "{line}: {error}");
        }
    }

    #[test]
    fn intervals_and_base64_read_back() {
        let interval = Interval {
            months: 14,
            days: 3,
            micros: 4 * 3_600_000_000 + 5 * 60_000_000 + 6_500_000,
        };
        assert_eq!(parse_interval(&interval.to_string()), Some(interval));
        assert_eq!(base64_decode("aGk="), Some(b"hi".to_vec()));
        assert_eq!(base64_decode("aGk"), None);
    }
}
