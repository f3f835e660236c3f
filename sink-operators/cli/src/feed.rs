//! The change feed `outflow run` replays: JSON lines of updates to the tables of a statements
//! file. Rows are decoded by the encoders' FORMAT JSON decoder, the one `outflow read` uses.
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
//!
//! Values are held to their columns' declared types as Postgres holds them (the decoder's
//! rules): `numeric(p,s)` rounded to `s` digits and refused beyond `p`, `varchar(n)` and
//! `char(n)` refused beyond `n` characters, floats refused beyond their range, text refused
//! with a NUL, a row refused when it names a column twice. A refused line names its line
//! number, the column and the declared type, and stops the feed there.

use std::io::BufRead;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use outflow::dataflow::{RelationDesc, Row};
use outflow::encoders::decode::row_from_json;

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
        // Without the line's end, so that a parse error's position is on the line it names.
        let text = text.trim_end_matches(['\n', '\r']);
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
        let row = row_from_json(desc, row.get())
            .map_err(|e| error(format!("table {table_name}: {e}")))?;
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
                if send.send(FeedMessage::Item { item }).is_err() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use outflow::dataflow::relation::Numeric;
    use outflow::dataflow::{Datum, ScalarType};

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
}
