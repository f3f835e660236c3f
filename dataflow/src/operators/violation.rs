//! `KeyViolation`: a sink key that holds more than one row, and the count of such reports.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::relation::Row;

/// A key whose rows at `time` cannot be told apart by the sink key: after `time` it holds
/// more than one row (or a negative count of one), or `time` retracts or inserts more than
/// one row for it, so no single `DiffPair` describes its change.
///
/// Rows are listed in row order; each distinct row appears once with its number of copies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyViolation<T> {
    pub key: Row,
    pub time: T,
    /// The rows retracted at `time`, with copies.
    pub retracted: Vec<(Row, usize)>,
    /// The rows inserted at `time`, with copies.
    pub inserted: Vec<(Row, usize)>,
    /// The rows the key holds once `time` is applied, with their accumulated counts (never
    /// zero, negative when more copies were retracted than ever inserted).
    pub held: Vec<(Row, isize)>,
    /// Whether the key is enforced (a validated `KEY` or the relation's own key). Then the
    /// key's pairs at `time` were withheld from the pair stream, and a sink must not commit
    /// `time`: the topic would miss this change. Under `NOT ENFORCED` the pairs were emitted.
    pub enforced: bool,
    /// Set when the key's change at `time` cannot be written at all, enforced or not (also
    /// under a keyless sink, where the key is the row): its pairs were withheld, and a sink
    /// must fail rather than commit `time`.
    #[serde(default)]
    pub refusal: Option<Refusal>,
}

/// Why a key's change at one time was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// `row`'s number of copies (in one update, or accumulated) left the 64-bit range of a
    /// multiplicity.
    Overflow { row: Row, count: i128 },
    /// The change takes `messages` messages (copies of rows under a keyless or `NOT ENFORCED`
    /// key), more than the `limit` one key may write at one time.
    TooManyCopies { messages: u128, limit: u64 },
}

impl<T> KeyViolation<T> {
    /// The number of rows the key holds after `time`, counting copies (negative counts
    /// subtract).
    pub fn held_rows(&self) -> isize {
        self.held.iter().map(|(_, count)| count).sum()
    }
}

impl<T: fmt::Debug> fmt::Display for KeyViolation<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.refusal {
            Some(Refusal::Overflow { row, count }) => {
                return write!(
                    f,
                    "row {row:?} has {count} copies at time {:?}, beyond the 64-bit range of a multiplicity",
                    self.time
                )
            }
            Some(Refusal::TooManyCopies { messages, limit }) => {
                return write!(
                    f,
                    "key {:?} needs {messages} messages at time {:?}, more than the {limit} one key may write at one time",
                    self.key, self.time
                )
            }
            None => {}
        }
        let copies = |rows: &[(Row, usize)]| rows.iter().map(|(_, n)| n).sum::<usize>();
        write!(
            f,
            "sink key {:?} is not unique at time {:?}: {} row(s) retracted and {} inserted there, \
             {} held afterwards ({:?}); the sink key must be a unique key of the relation",
            self.key,
            self.time,
            copies(&self.retracted),
            copies(&self.inserted),
            self.held_rows(),
            self.held,
        )?;
        if self.enforced {
            f.write_str("; the key is enforced, so its changes at this time were withheld")?;
        }
        Ok(())
    }
}

/// The number of key violations reported, readable from any thread.
///
/// Each `combine_at_timestamp` operator counts into its own counter unless given one; give the
/// same counter to every worker's operator (create it outside `timely::execute`) to read a
/// process-wide total.
#[derive(Clone, Debug, Default)]
pub struct ViolationCount {
    count: Arc<AtomicU64>,
}

impl ViolationCount {
    pub fn new() -> ViolationCount {
        ViolationCount::default()
    }

    pub fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, violations: u64) {
        self.count.fetch_add(violations, Ordering::Relaxed);
    }
}
