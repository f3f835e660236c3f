//! The exactly-once protocol as a pure state machine: progress records, recovery, the per-worker
//! transaction machine, and an in-memory transactional log to test them against.
//!
//! Nothing here talks to Kafka. A driver executes the [`Action`]s a [`Machine`] asks for against
//! a transactional producer and reports each result back as an [`Event`]; the timely operator
//! feeds the machine encoded messages and frontier advances. [`model`] is a second driver that
//! runs the same machines against a deterministic log that follows KIP-98.
//!
//! # What is on disk
//!
//! Each worker `w` owns the keys whose stable hash is `w` modulo the worker count, produces them
//! with the transactional id `{transactional_id_prefix}{sink_id}-{w}`, and commits with every
//! transaction a [`ProgressRecord`] (key `{sink_id}/{w}`) and a transactional offset for the group
//! `{progress_group_id_prefix}{sink_id}-{w}` whose value is the record's `seq`. A committed record
//! is a [`Claim`]: every update of the worker's keys before its [`Point`] is in the data topic.
//! Claims stay true forever, because committed data is never taken back, so recovery may combine
//! any number of them; worker 0's records also carry the claims the run started from (`base`),
//! because a restart with a different worker count leaves keys whose state is described only by
//! the previous run's records, and those records are overwritten key by key (the topic is
//! compacted).
//!
//! # Starting a run
//!
//! The order matters: a previous run's producer that is not fenced before the progress topic is
//! read can still commit after it, and its data would then be written twice.
//!
//! 1. Every worker of the new run builds its producer and runs its [`Machine`] until the machine
//!    has initialized transactions (this fences the previous holder of each id below the new
//!    worker count, and aborts what it left open).
//! 2. When all have, one place (the driver on worker 0) reads the progress topic to its end with
//!    `isolation.level=read_committed` into a [`ProgressScan`] ([`ProgressScan::showing_aborted`]
//!    when the reader may show aborted records, as librdkafka's does on Tansu), and fences the
//!    ids it names in [`ProgressScan::retired_transactional_ids`] (`init_transactions` with a
//!    throwaway producer).
//! 3. It reads the progress topic again, reads the committed offsets of the groups of
//!    [`ProgressScan::workers_with_records`], and calls [`ProgressScan::recover`]. If the new
//!    recovery names a retired id that step 2 did not fence, fence it and repeat step 3.
//! 4. It hands the [`Recovery`] to worker 0's machine ([`Event::Recovered`]). Worker 0's first
//!    transaction announces the run (its worker count and the claims it starts from); when the
//!    machine answers [`Action::Announced`], the driver hands the recovery to the other workers.
//!    A run whose announcement never committed has produced nothing, and a later run learns the
//!    worker count of every run that may have produced from the announcements it reads.
//! 5. The dataflow reproduces every update at times at or after [`Recovery::resume_time`] and
//!    drops the updates [`should_skip`] names before encoding them.
//!
//! A worker of a run that is being replaced must not call `init_transactions` after the new run
//! has read the progress topic; the machine never does once its first call succeeded, and a run
//! is announced only after every one of its workers succeeded, so a late call can only come
//! from a run that never produced anything. It still takes the id over and fails the new run's
//! worker with a fenced error, which costs a restart but no duplicate.
//!
//! # Driving a machine
//!
//! - Carry out the actions in the order [`Machine::poll_action`] returns them. Each
//!   transactional call gets exactly one result event; the machine asks for nothing else until
//!   it has it, so the blocking calls of librdkafka's transactional producer fit directly.
//! - Report every send, data or progress, with [`Event::Delivered`], echoing the action's
//!   `transaction` and `bytes`; a send refused at once (queue full, fenced) is reported the same
//!   way. Late reports of an aborted attempt are ignored by the machine.
//! - Classify errors with [`ErrorKind`]: `txn_requires_abort` is `Abortable`, `is_retriable` is
//!   `Retriable`, a timeout of `commit_transaction` (or any call whose outcome is unknown) is
//!   `TimedOut`, `ProducerFenced`/`InvalidProducerEpoch` are `Fenced`, `is_fatal` is `Fatal`,
//!   and a broker without transactions is `Unsupported`. A commit that timed out is resolved by
//!   committing again, which the machine asks for; never abort it on your own.
//! - [`Action::SendOffsets`] is `send_offsets_to_transaction` with the group's metadata (a
//!   consumer with `group.id` set to `group`) and offset `offset` for partition 0 of the progress
//!   topic: the offset is a sequence number, not a position in the topic.
//! - Deliver [`Event::Tick`] at [`Machine::next_wakeup`]; the clock passed to `handle` is any
//!   monotonic one, the same for every call.
//! - Stop feeding messages on [`Action::Pause`] until [`Action::Resume`]; frontier advances may
//!   still be fed. The machine keeps the open transaction's messages (up to about twice
//!   [`Cadence::max_transaction_bytes`]) to resend them after an abort, so the operator never
//!   replays anything.
//! - Set `transaction.timeout.ms` above the commit interval plus the longest time the input may
//!   take to complete a timestamp: a transaction stays open until its last time is complete.
//! - [`Action::Frontier`] is the committed frontier to publish: every update of the worker's
//!   keys before it is in Kafka. It moves without a transaction while the worker is idle.

mod machine;
pub mod model;
mod progress;
mod recovery;

/// The type of a message's sort position in [`Event::Message`].
pub use bytes::Bytes;
pub use machine::{
    Action, Cadence, ErrorKind, Event, Machine, Status, TxnError, DEFAULT_TRANSACTION_TIMEOUT,
};
pub use progress::{Claim, Definition, Point, ProgressRecord, PROGRESS_RECORD_VERSION};
pub use recovery::{should_skip, Disagreement, PreviousWorker, ProgressScan, Recovery, Resume};

/// The names a sink's workers use in Kafka, derived from the sink id and the user's prefixes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkNames {
    /// Identifies the sink across restarts; part of every name below.
    pub sink_id: String,
    /// `TRANSACTIONAL ID PREFIX`: worker `w` uses `{prefix}{sink_id}-{w}`.
    pub transactional_id_prefix: String,
    /// `PROGRESS GROUP ID PREFIX`: worker `w` commits offsets for `{prefix}{sink_id}-{w}`.
    pub progress_group_id_prefix: String,
    /// What the sink writes; every progress record names it, and recovery trusts no record
    /// that names another. `None`: records name none and every record is trusted.
    pub definition: Option<Definition>,
}

impl SinkNames {
    /// Names for `sink_id` with the given prefixes.
    pub fn new(
        sink_id: impl Into<String>,
        transactional_id_prefix: impl Into<String>,
        progress_group_id_prefix: impl Into<String>,
    ) -> Self {
        SinkNames {
            sink_id: sink_id.into(),
            transactional_id_prefix: transactional_id_prefix.into(),
            progress_group_id_prefix: progress_group_id_prefix.into(),
            definition: None,
        }
    }

    /// The same names, for a sink that writes what `definition` says.
    pub fn with_definition(mut self, definition: Definition) -> Self {
        self.definition = Some(definition);
        self
    }

    /// The transactional id of worker `worker`.
    pub fn transactional_id(&self, worker: u32) -> String {
        format!(
            "{}{}-{}",
            self.transactional_id_prefix, self.sink_id, worker
        )
    }

    /// The consumer group whose offset on partition 0 of the progress topic names the `seq` of
    /// worker `worker`'s last committed progress record.
    pub fn progress_group_id(&self, worker: u32) -> String {
        format!(
            "{}{}-{}",
            self.progress_group_id_prefix, self.sink_id, worker
        )
    }

    /// The consumer group of the reader that recovery and `outflow read` read the progress
    /// topic with (only looked up, never joined).
    pub fn progress_reader_group(&self) -> String {
        format!("{}{}-reader", self.progress_group_id_prefix, self.sink_id)
    }

    /// The progress-topic key of worker `worker`'s records.
    pub fn progress_key(&self, worker: u32) -> String {
        format!("{}/{}", self.sink_id, worker)
    }
}

/// What went wrong in the protocol: a progress record that cannot be trusted, or a caller that
/// broke the machine's contract.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A record under one of this sink's keys does not parse.
    #[error("malformed progress record at key {key:?}: {problem}")]
    MalformedRecord {
        /// The record's key.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A record was written by a newer format than this build reads.
    #[error(
        "progress record at key {key:?} has format version {version}, but this build reads only \
         version {supported}; upgrade outflow before restarting the sink"
    )]
    UnsupportedVersion {
        /// The record's key.
        key: String,
        /// The version it declares.
        version: u64,
        /// The version this build writes and reads.
        supported: u64,
    },
    /// A message came at a time the input frontier had already passed.
    #[error(
        "worker {worker} of sink {sink_id:?} got a message at time {time} after its input \
         frontier reached {frontier}; every update must be fed before the frontier passes its time"
    )]
    MessageBeforeFrontier {
        /// The sink.
        sink_id: String,
        /// The worker.
        worker: u32,
        /// The message's time.
        time: u64,
        /// The input frontier at that moment.
        frontier: u64,
    },
    /// A message came after the input was declared done.
    #[error(
        "worker {worker} of sink {sink_id:?} got a message at time {time} after its input was done"
    )]
    MessageAfterDone {
        /// The sink.
        sink_id: String,
        /// The worker.
        worker: u32,
        /// The message's time.
        time: u64,
    },
    /// Messages came out of (time, position) order.
    #[error(
        "worker {worker} of sink {sink_id:?} got a message at time {time} position {position} \
         after one at time {previous_time} position {previous_position}; messages must come in \
         time order and, within a time, in position order"
    )]
    MessageOutOfOrder {
        /// The sink.
        sink_id: String,
        /// The worker.
        worker: u32,
        /// The message's time.
        time: u64,
        /// The message's position, in hex.
        position: String,
        /// The previous message's time.
        previous_time: u64,
        /// The previous message's position, in hex.
        previous_position: String,
    },
    /// A message the topic already holds reached the machine: the resume filter was skipped.
    #[error(
        "worker {worker} of sink {sink_id:?} got a message at time {time} position {position} \
         that its committed progress already covers; apply the resume filter before the machine"
    )]
    MessageAlreadyCommitted {
        /// The sink.
        sink_id: String,
        /// The worker.
        worker: u32,
        /// The message's time.
        time: u64,
        /// The message's position, in hex.
        position: String,
    },
    /// An event arrived that answers no action the machine asked for.
    #[error(
        "worker {worker} of sink {sink_id:?} got {event} while {state}; report only the results \
         of the actions the machine asked for, once each"
    )]
    UnexpectedEvent {
        /// The sink.
        sink_id: String,
        /// The worker.
        worker: u32,
        /// The event.
        event: &'static str,
        /// What the machine was doing.
        state: &'static str,
    },
    /// The recovery handed to a machine was computed for another worker count.
    #[error(
        "worker {worker} of sink {sink_id:?} runs with {workers} workers but was handed a \
         recovery computed for {recovered}"
    )]
    WorkerCountMismatch {
        /// The sink.
        sink_id: String,
        /// The worker.
        worker: u32,
        /// The machine's worker count.
        workers: u32,
        /// The recovery's worker count.
        recovered: u32,
    },
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    out
}

pub(crate) fn unhex(text: &str) -> Result<Vec<u8>, String> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(format!("hex string {text:?} has an odd number of digits"));
    }
    bytes
        .chunks(2)
        .map(|pair| match (digit(pair[0]), digit(pair[1])) {
            (Some(high), Some(low)) => Ok(high << 4 | low),
            _ => Err(format!("{text:?} is not a hex string")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_patterns() {
        let names = SinkNames::new("u42", "txn-", "grp-");
        assert_eq!(names.transactional_id(3), "txn-u42-3");
        assert_eq!(names.progress_group_id(0), "grp-u42-0");
        assert_eq!(names.progress_key(7), "u42/7");
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let bytes = vec![0u8, 1, 0xab, 0xff, 0x10];
        assert_eq!(hex(&bytes), "0001abff10");
        assert_eq!(unhex("0001abff10").unwrap(), bytes);
        assert_eq!(unhex("0001ABFF10").unwrap(), bytes);
        assert!(unhex("abc").unwrap_err().contains("odd"));
        assert!(unhex("zz").unwrap_err().contains("not a hex"));
    }
}
