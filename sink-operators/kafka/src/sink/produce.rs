//! `OutflowSinkKafka`: the sink itself, on every worker. It drops the pairs the topic already
//! holds (the resume filter), encodes, partitions, and feeds the messages and the input
//! frontier to the protocol's machine, whose actions become the producer's transactions; its
//! output's frontier is the committed frontier.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use outflow_protocol::{Event, Recovery};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, Stream};
use timely::progress::frontier::MutableAntichain;

use super::recover::Recovered;
use super::worker::{Wakers, WorkerSink};
use super::{PreparedSink, PAIR_CREDIT};
use crate::dataflow::operators::{Combined, KeyViolation, PairCredit, Refusal};
use crate::dataflow::{stable_key_hash, DiffPair, Row};
use crate::encoders::{now_ms, Change, EncodedMessage, SinkEncoder};
use crate::partition::{key_partition_hash, partition_for, EvalError, PartitionExpr};
use crate::record::{Arena, Parts};
use crate::topic::PartitionWatch;

/// Pairs waiting to be written, by (time, key position).
type Stash = BTreeMap<(u64, Vec<u8>), VecDeque<(Row, DiffPair<Row>)>>;

/// The hash whose remainder by the partition count is a message's partition (`None`:
/// partition 0): with `PARTITION BY`, the expression's value on the row after the change (before,
/// for a delete); else `kafka_murmur2` of the encoded key without its Confluent header; keyless,
/// the stable hash of the pairing key. An expression that fails on the row is the error; the
/// message then goes to partition 0.
pub(crate) fn partition_hash(
    partition_by: Option<&PartitionExpr>,
    key: &Row,
    pair: &DiffPair<Row>,
    message: &EncodedMessage,
) -> Result<Option<u64>, EvalError> {
    match partition_by {
        Some(expr) => match pair.after.as_ref().or(pair.before.as_ref()) {
            None => Ok(None),
            Some(row) => expr.partition(row),
        },
        None if message.key().is_some() => Ok(key_partition_hash(message.key_payload())),
        None => Ok(Some(stable_key_hash(key))),
    }
}

pub(super) fn produce<'scope>(
    scope: Scope<'scope, u64>,
    sink: &PreparedSink,
    combined: Combined<'scope, u64>,
    recovered: Stream<'scope, u64, Vec<Recovered>>,
    credit: PairCredit,
    sink_state: Rc<RefCell<WorkerSink>>,
    wakers: &Wakers,
) -> Stream<'scope, u64, Vec<u64>> {
    let mut builder = OperatorBuilder::new("OutflowSinkKafka".to_owned(), scope);
    let address = builder.operator_info().address;
    wakers.register(scope, &address);
    let activator = scope.activator_for(address.clone());
    let mut pairs_input = builder.new_input(combined.pairs, Pipeline);
    let mut violations_input = builder.new_input(combined.violations, Pipeline);
    let mut recovery_input = builder.new_input(recovered, Pipeline);
    let (_committed_output, committed) = builder.new_output::<Vec<u64>>();

    let spec = &sink.plan.spec;
    let mut feeder = Feeder {
        encoder: sink.encoder.clone(),
        message: EncodedMessage::new(),
        arena: Arena::new(),
        partitions: Arc::clone(&sink.partitions),
        partition_by: spec.partition_by.clone(),
        sink_name: spec.name.clone(),
        snapshot_time: sink.plan.as_of,
        partition_error_noted: false,
        staged_messages: 0,
        staged_bytes: 0,
        partition_errors: 0,
    };
    let enforced = spec.key_is_enforced();
    let violation_count = combined.violation_count.clone();
    let sink_name = spec.name.clone();
    let shown = ShownRows {
        desc: spec.desc.clone(),
        key_columns: spec
            .pairing
            .columns()
            .map(<[usize]>::to_vec)
            .unwrap_or_else(|| (0..spec.desc.arity()).collect()),
    };
    builder.build(move |mut capabilities| {
        let mut capability: Option<Capability<u64>> = capabilities.pop();
        let mut recovery: Option<Arc<Recovery>> = None;
        // Pairs by (time, key position). Combining emits a batch key by key, so when one batch
        // spans several times (the input ran ahead of the sink) their pairs interleave; the
        // machine takes them in (time, position) order. A pair at a time the input frontier has
        // not passed may still be followed by pairs of that time with larger keys only (a time
        // lies in one batch, read in key order), so pairs at the frontier's time go out at once
        // and only later times wait: a snapshot streams, a backlog waits for its batch.
        let mut stash: Stash = BTreeMap::new();
        // Pairs at the input frontier's time that came while nothing was stashed but could not
        // go to the machine at once (its producer was full, or recovery not yet done): already
        // in (time, position) order, so they wait in arrival order, ahead of the stash.
        let mut waiting: VecDeque<(u64, Row, DiffPair<Row>)> = VecDeque::new();
        let mut violations_seen = 0u64;
        // A key violation that fails the sink, at its time: everything before that time is
        // committed first (so the run keeps what the input proved good), then the sink fails.
        let mut fail_at: Option<(u64, String)> = None;
        let mut warned_keys: HashSet<Row> = HashSet::new();
        let mut owed_credit = 0usize;
        let mut last_frontier: Option<Option<u64>> = None;
        move |frontiers: &[MutableAntichain<u64>]| {
            let mut state = sink_state.borrow_mut();
            state.pump();

            recovery_input.for_each(|_, data| {
                for outcome in data.drain(..) {
                    match outcome {
                        Ok(json) => {
                            let found: Recovery =
                                serde_json::from_str(&json).expect("recoveries deserialize");
                            let found = Arc::new(found);
                            if state.worker != 0 {
                                state.handle(Event::Recovered(Arc::clone(&found)));
                            }
                            recovery = Some(found);
                        }
                        Err(error) => state.fail(error),
                    }
                }
            });
            violations_input.for_each(|_, data| {
                for violation in data.drain(..) {
                    let skipped = recovery.as_ref().is_some_and(|r| {
                        r.resume.should_skip(
                            stable_key_hash(&violation.key),
                            violation.time,
                            &violation.key.order_key(),
                        )
                    });
                    if skipped {
                        continue;
                    }
                    if violation.refusal.is_none() {
                        violations_seen += 1;
                    }
                    if enforced || violation.refusal.is_some() {
                        if fail_at.as_ref().is_none_or(|(at, _)| violation.time < *at) {
                            fail_at = Some((violation.time, violation_error(&shown, &violation)));
                        }
                    } else if warned_keys.len() < WARNED_KEYS && warned_keys.insert(violation.key.clone()) {
                        let warning = not_unique_warning(&shown, &violation);
                        tracing::warn!("sink {sink_name}: {warning}");
                        state.monitor.note(warning);
                        if warned_keys.len() == WARNED_KEYS {
                            state.monitor.note(format!(
                                "more keys than the {WARNED_KEYS} above are not unique; they are counted in key_violations only"
                            ));
                        }
                    }
                }
            });
            // The input frontier's time: pairs at it go to the machine at once while nothing
            // waits in the stash (a snapshot, a stream that keeps up), in the order they come.
            let input = frontiers[0]
                .frontier()
                .iter()
                .chain(frontiers[1].frontier().iter())
                .min()
                .copied();
            let mut received = 0usize;
            pairs_input.for_each(|_, data| {
                for (key, time, pair) in data.drain(..) {
                    received += 1;
                    let in_order = stash.is_empty() && Some(time) == input;
                    let direct = in_order
                        && waiting.is_empty()
                        && !state.paused
                        && state.failed.is_none()
                        && fail_at.as_ref().is_none_or(|(at, _)| time < *at);
                    match recovery.as_ref().filter(|_| direct) {
                        Some(resume) => {
                            key.write_order_key(feeder.arena.position_buffer());
                            feeder.feed(&mut state, resume, key, time, pair);
                        }
                        None if in_order => waiting.push_back((time, key, pair)),
                        None => stash
                            .entry((time, key.order_key()))
                            .or_default()
                            .push_back((key, pair)),
                    }
                }
            });
            owed_credit += received;
            let counted = violation_count.get();
            state.monitor.update(state.worker, |s| {
                s.key_violations = counted.max(violations_seen)
            });

            if state.failed.is_some() {
                // A failed sink writes nothing more: it lets go of its output and drains its
                // inputs, so that the dataflow can shut down and its owner can report the error.
                capability = None;
                let drained = owed_credit;
                stash.clear();
                waiting.clear();
                owed_credit = 0;
                credit.grant(drained.max(PAIR_CREDIT));
                return;
            }

            if let (Some(resume), None) = (recovery.as_ref(), state.failed.as_ref()) {
                // Feed waiting pairs, then stashed ones, while the machine takes them, in (time,
                // position) order, up to the input frontier's time (waiting pairs are at it).
                while !state.paused && state.failed.is_none() {
                    let Some((time, _, _)) = waiting.front() else {
                        break;
                    };
                    if fail_at.as_ref().is_some_and(|(at, _)| *time >= *at) {
                        break;
                    }
                    let (time, key, pair) = waiting.pop_front().expect("front exists");
                    key.write_order_key(feeder.arena.position_buffer());
                    feeder.feed(&mut state, resume, key, time, pair);
                }
                while waiting.is_empty() && !state.paused && state.failed.is_none() {
                    let Some(mut entry) = stash.first_entry() else {
                        break;
                    };
                    let time = entry.key().0;
                    if input.is_some_and(|input| time > input)
                        || fail_at.as_ref().is_some_and(|(at, _)| time >= *at)
                    {
                        break;
                    }
                    feeder
                        .arena
                        .position_buffer()
                        .extend_from_slice(&entry.key().1);
                    let (key, pair) = entry
                        .get_mut()
                        .pop_front()
                        .expect("stash entries are never empty");
                    if entry.get().is_empty() {
                        entry.remove();
                    }
                    feeder.feed(&mut state, resume, key, time, pair);
                }
                feeder.report(&state);
                // The frontier the machine may rely on: nothing waiting or stashed is before it.
                let held = waiting
                    .front()
                    .map(|(t, _, _)| *t)
                    .or_else(|| stash.first_key_value().map(|((t, _), _)| *t));
                let frontier = match (held, input) {
                    (Some(stashed), Some(input)) => Some(stashed.min(input)),
                    (Some(stashed), None) => Some(stashed),
                    (None, input) => input,
                };
                // Nothing at or after a failing violation's time is written, nor claimed.
                let frontier = match &fail_at {
                    Some((at, _)) => Some(frontier.map_or(*at, |f| f.min(*at))),
                    None => frontier,
                };
                if state.failed.is_none() && last_frontier != Some(frontier) {
                    last_frontier = Some(frontier);
                    let now = Instant::now();
                    let bound = frontier.unwrap_or(u64::MAX);
                    let times: Vec<u64> = state.staged.range(..bound).map(|(t, _)| *t).collect();
                    for time in times {
                        state.passed_at.entry(time).or_insert(now);
                    }
                    state.handle(Event::Frontier(frontier));
                }
            }

            // Credit returns as pairs reach the stash, which is bounded by combining's batches,
            // except while the producer is full: then combining waits.
            if !state.paused && owed_credit > 0 {
                credit.grant(owed_credit);
                owed_credit = 0;
            }

            let wakeup = state.machine.next_wakeup();
            let now = state.now();
            if let Some(at) = wakeup {
                if at <= now {
                    state.handle(Event::Tick);
                    activator.activate();
                } else {
                    activator.activate_after(at - now);
                }
            }
            state.pump();

            // The output's frontier is the committed frontier.
            match state.committed {
                Some(None) => capability = None,
                Some(Some(time)) => {
                    if let Some(cap) = capability.as_mut() {
                        if *cap.time() < time {
                            cap.downgrade(&time);
                        }
                    }
                }
                None => {}
            }
            if let Some((at, _)) = &fail_at {
                let committed_before = matches!(state.committed, Some(Some(c)) if c >= *at);
                if committed_before || state.machine.committed_frontier() == Some(None) {
                    let (_, error) = fail_at.take().expect("checked above");
                    state.fail(error);
                    activator.activate();
                    return;
                }
            }
            let next = waiting
                .front()
                .map(|(t, _, _)| *t)
                .or_else(|| stash.first_key_value().map(|((t, _), _)| *t));
            let feedable = next.is_some_and(|time| {
                fail_at.as_ref().is_none_or(|(at, _)| time < *at)
                    && frontiers[0]
                    .frontier()
                    .iter()
                    .chain(frontiers[1].frontier().iter())
                    .min()
                    .is_none_or(|input| time <= *input)
            });
            if feedable && !state.paused && state.failed.is_none() && recovery.is_some() {
                activator.activate();
            }
        }
    });

    committed
}

/// Turns pairs into packed messages for the machine: encodes, partitions, packs into the
/// worker's arena, and counts what it staged until [`Feeder::report`].
struct Feeder {
    encoder: SinkEncoder,
    message: EncodedMessage,
    arena: Arena,
    partitions: Arc<PartitionWatch>,
    partition_by: Option<PartitionExpr>,
    sink_name: String,
    /// Updates at or before the input's snapshot time are its snapshot (Debezium's `r`).
    snapshot_time: u64,
    partition_error_noted: bool,
    staged_messages: u64,
    staged_bytes: u64,
    partition_errors: u64,
}

impl Feeder {
    /// Stages the pair at `time` whose key's position is in the arena's position buffer,
    /// unless the topic already holds it; an encoding error fails the sink.
    fn feed(
        &mut self,
        state: &mut WorkerSink,
        resume: &Recovery,
        key: Row,
        time: u64,
        pair: DiffPair<Row>,
    ) {
        let key_hash = stable_key_hash(&key);
        if resume
            .resume
            .should_skip(key_hash, time, self.arena.position_buffer_contents())
        {
            return;
        }
        let message = &mut self.message;
        let change = Change {
            time,
            snapshot: time <= self.snapshot_time,
            produced_at_ms: now_ms(),
        };
        if let Err(error) = self.encoder.encode_change(&key, &pair, &change, message) {
            state.fail(format!(
                "cannot encode an update of sink {} at time {time}: {error}",
                self.sink_name
            ));
            return;
        }
        let hash = match partition_hash(self.partition_by.as_ref(), &key, &pair, message) {
            Ok(hash) => hash,
            Err(error) => {
                // Materialize sends such a message to partition 0; so do we, counting each and
                // naming the first row per worker.
                self.partition_errors += 1;
                if !self.partition_error_noted {
                    self.partition_error_noted = true;
                    let expr = self
                        .partition_by
                        .as_ref()
                        .expect("only a PARTITION BY expression fails");
                    let row = pair
                        .after
                        .as_ref()
                        .or(pair.before.as_ref())
                        .expect("only a row's PARTITION BY value fails");
                    let note = format!(
                        "PARTITION BY {expr} failed on the row with {} at time {time}: {error}; \
                         the message went to partition 0 (partition_errors counts every such message)",
                        expr.describe_row(row)
                    );
                    tracing::warn!(sink = %self.sink_name, worker = state.worker, "{note}");
                    state.monitor.note(note);
                }
                None
            }
        };
        let partition = partition_for(hash, self.partitions.current());
        self.stage(state, time, partition);
        // A delete under TOMBSTONES ON DELETE is followed by its tombstone, on the same
        // partition, at the same time and position.
        if self.encoder.tombstone_follows(&pair) {
            if let Err(error) = self.encoder.encode_tombstone(&key, time, &mut self.message) {
                state.fail(format!(
                    "cannot encode the tombstone of a delete of sink {} at time {time}: {error}",
                    self.sink_name
                ));
                return;
            }
            self.stage(state, time, partition);
        }
    }

    /// Packs the encoded message, with the position in the arena's position buffer, and hands
    /// it to the machine.
    fn stage(&mut self, state: &mut WorkerSink, time: u64, partition: i32) {
        let message = &self.message;
        let record = self.arena.pack(Parts {
            partition: Some(partition),
            key: message.key(),
            value: message.value(),
            headers: message.headers(),
        });
        let bytes = record.payload_bytes();
        let entry = state.staged.entry(time).or_default();
        entry.0 += 1;
        entry.1 += bytes as u64;
        self.staged_messages += 1;
        self.staged_bytes += bytes as u64;
        state.handle(Event::Message {
            time,
            position: record.position(),
            bytes,
            message: record,
        });
        state.pump();
    }

    /// Adds what was staged since the last report to the worker's statistics (once per
    /// activation: the monitor is shared).
    fn report(&mut self, state: &WorkerSink) {
        if self.staged_messages > 0 || self.partition_errors > 0 {
            let (messages, bytes, errors) = (
                self.staged_messages,
                self.staged_bytes,
                self.partition_errors,
            );
            state.monitor.update(state.worker, |s| {
                s.messages_staged += messages;
                s.bytes_staged += bytes;
                s.partition_errors += errors;
            });
            self.staged_messages = 0;
            self.staged_bytes = 0;
            self.partition_errors = 0;
        }
    }
}

/// Non-unique keys under `NOT ENFORCED` that a worker names on stderr and in the status; more
/// are only counted.
const WARNED_KEYS: usize = 100;

/// How a sink's errors show keys and rows: as FORMAT JSON writes them.
struct ShownRows {
    desc: crate::dataflow::RelationDesc,
    /// The columns of the pairing key, in its order (every column for a keyless sink).
    key_columns: Vec<usize>,
}

impl ShownRows {
    fn key(&self, key: &Row) -> String {
        crate::encoders::row_json(&self.desc, &self.key_columns, key)
    }

    fn row(&self, row: &Row) -> String {
        let all: Vec<usize> = (0..self.desc.arity()).collect();
        crate::encoders::row_json(&self.desc, &all, row)
    }

    /// `n × row, …`, for the rows of a report.
    fn rows<N: std::fmt::Display>(&self, rows: &[(Row, N)]) -> String {
        let shown: Vec<String> = rows
            .iter()
            .map(|(row, n)| format!("{n} × {}", self.row(row)))
            .collect();
        format!("[{}]", shown.join(", "))
    }
}

/// The error a sink fails with: an enforced key that holds several rows, or a change that no
/// message can express (a multiplicity beyond 64 bits, more copies than a key may write).
fn violation_error(shown: &ShownRows, violation: &KeyViolation<u64>) -> String {
    match &violation.refusal {
        Some(Refusal::Overflow { row, count }) => format!(
            "row {} has {count} copies at time {}, beyond the 64-bit range of a multiplicity; nothing of time {} or later is written",
            shown.row(row),
            violation.time,
            violation.time,
        ),
        Some(Refusal::TooManyCopies { messages, limit }) => format!(
            "key {} needs {messages} messages at time {} (one per copy of a row), more than the limit of {limit} one key may write at one time; nothing of time {} or later is written",
            shown.key(&violation.key),
            violation.time,
            violation.time,
        ),
        None => format!(
            "key {} is not unique at time {}: it holds {} rows afterwards {}; the KEY is not unique in the data, so its change at time {} is not written (use KEY (...) NOT ENFORCED to write such keys anyway)",
            shown.key(&violation.key),
            violation.time,
            violation.held_rows(),
            shown.rows(&violation.held),
            violation.time,
        ),
    }
}

/// The warning for a key that is not unique under `NOT ENFORCED`, once per key.
fn not_unique_warning(shown: &ShownRows, violation: &KeyViolation<u64>) -> String {
    format!(
        "key {} is not unique at time {} (NOT ENFORCED: written anyway): it holds {} rows afterwards {}",
        shown.key(&violation.key),
        violation.time,
        violation.held_rows(),
        shown.rows(&violation.held),
    )
}
