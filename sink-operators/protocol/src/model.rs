//! A deterministic in-memory transactional log that follows Kafka's transaction semantics
//! (KIP-98), and a driver that runs [`Machine`]s against it with injected faults. It exists to
//! test the protocol: crash and fault schedules run here by the thousand, in memory.
//!
//! What it models: topics of partitions of entries; per transactional id a producer id and an
//! epoch, bumped by every `init_transactions`, which also aborts the previous holder's open
//! transaction (ABORT markers) and fences it (its later calls fail with a fenced error);
//! transactions that span partitions and consumer-group offsets, closed by COMMIT or ABORT
//! markers; `read_committed` reads up to the last stable offset, with visibility decided by the
//! markers, and the variant some brokers serve that also shows aborted records; group offsets
//! that appear only when their transaction commits. The client side ([`ModelProducer`]) keeps
//! librdkafka's rules: a transaction with a failed send can only be aborted, and a commit that
//! timed out is resolved by calling commit again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use super::machine::{Action, ErrorKind, Event, Machine, Status, TxnError};
use super::ProtocolError;

/// One entry of a partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A record written in a transaction of `producer_id`.
    Record {
        /// The writer.
        producer_id: u64,
        /// The key.
        key: Vec<u8>,
        /// The value (`None`: a tombstone).
        value: Option<Vec<u8>>,
    },
    /// A control marker ending `producer_id`'s transaction on this partition.
    Marker {
        /// The writer.
        producer_id: u64,
        /// COMMIT or ABORT.
        commit: bool,
    },
}

/// What `init_transactions` hands a producer: its identity for later calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerHandle {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id the log assigned to the transactional id.
    pub producer_id: u64,
    /// The epoch of this initialization; an older epoch is fenced.
    pub epoch: u32,
}

/// How a reader sees transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// `isolation.level=read_committed`: committed records below the last stable offset.
    ReadCommitted,
    /// What a broker that sends no aborted-transaction list serves a `read_committed` client:
    /// every record below the last stable offset, aborted ones included.
    ReadCommittedShowingAborted,
}

/// A record a reader sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Visible {
    /// Its offset in the partition.
    pub offset: u64,
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Option<Vec<u8>>,
}

#[derive(Default)]
struct OpenTxn {
    partitions: BTreeSet<(String, u32)>,
    offsets: BTreeMap<String, u64>,
}

struct TransactionalIdState {
    producer_id: u64,
    epoch: u32,
    open: Option<OpenTxn>,
}

/// The broker side: topics, transactional ids and committed group offsets.
#[derive(Default)]
pub struct TxnLog {
    topics: BTreeMap<String, Vec<Vec<Entry>>>,
    ids: BTreeMap<String, TransactionalIdState>,
    next_producer_id: u64,
    offsets: BTreeMap<String, u64>,
}

fn fenced(handle: &ProducerHandle, epoch: u32) -> TxnError {
    TxnError::new(
        ErrorKind::Fenced,
        format!(
            "ProducerFenced: {} epoch {} is older than epoch {epoch}",
            handle.transactional_id, handle.epoch
        ),
    )
}

fn write_markers(
    topics: &mut BTreeMap<String, Vec<Vec<Entry>>>,
    producer_id: u64,
    open: &OpenTxn,
    commit: bool,
) {
    for (topic, partition) in &open.partitions {
        let log = &mut topics
            .get_mut(topic)
            .expect("a transaction only touches existing topics")[*partition as usize];
        log.push(Entry::Marker {
            producer_id,
            commit,
        });
    }
}

impl TxnLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates `topic` with `partitions` empty partitions.
    pub fn create_topic(&mut self, topic: &str, partitions: u32) {
        assert!(partitions > 0, "topic {topic} needs a partition");
        self.topics
            .insert(topic.to_string(), vec![Vec::new(); partitions as usize]);
    }

    /// `init_transactions`: bumps the id's epoch, aborts what the previous holder left open, and
    /// so fences it.
    pub fn init_transactions(&mut self, transactional_id: &str) -> ProducerHandle {
        let TxnLog {
            topics,
            ids,
            next_producer_id,
            ..
        } = self;
        let state = ids.entry(transactional_id.to_string()).or_insert_with(|| {
            *next_producer_id += 1;
            TransactionalIdState {
                producer_id: *next_producer_id,
                epoch: 0,
                open: None,
            }
        });
        if let Some(open) = state.open.take() {
            write_markers(topics, state.producer_id, &open, false);
        }
        state.epoch += 1;
        ProducerHandle {
            transactional_id: transactional_id.to_string(),
            producer_id: state.producer_id,
            epoch: state.epoch,
        }
    }

    fn current(&mut self, handle: &ProducerHandle) -> Result<&mut TransactionalIdState, TxnError> {
        let state = self
            .ids
            .get_mut(&handle.transactional_id)
            .expect("a handle comes from init_transactions");
        if state.epoch == handle.epoch {
            Ok(state)
        } else {
            Err(fenced(handle, state.epoch))
        }
    }

    /// Appends a record to `topic`/`partition` in the handle's transaction; returns its offset.
    pub fn produce(
        &mut self,
        handle: &ProducerHandle,
        topic: &str,
        partition: u32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<u64, TxnError> {
        let state = self.current(handle)?;
        let open = state.open.get_or_insert_with(OpenTxn::default);
        open.partitions.insert((topic.to_string(), partition));
        let producer_id = state.producer_id;
        let log = &mut self
            .topics
            .get_mut(topic)
            .unwrap_or_else(|| panic!("produce to topic {topic}, which does not exist"))
            [partition as usize];
        log.push(Entry::Record {
            producer_id,
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        });
        Ok(log.len() as u64 - 1)
    }

    /// Adds a group offset to the handle's transaction; it shows once the transaction commits.
    pub fn send_offsets(
        &mut self,
        handle: &ProducerHandle,
        group: &str,
        offset: u64,
    ) -> Result<(), TxnError> {
        let state = self.current(handle)?;
        state
            .open
            .get_or_insert_with(OpenTxn::default)
            .offsets
            .insert(group.to_string(), offset);
        Ok(())
    }

    /// Ends the handle's transaction with COMMIT or ABORT markers. Ending when nothing is open
    /// succeeds and does nothing, as an empty transaction does.
    pub fn end_transaction(
        &mut self,
        handle: &ProducerHandle,
        commit: bool,
    ) -> Result<(), TxnError> {
        let state = self.current(handle)?;
        let producer_id = state.producer_id;
        if let Some(open) = state.open.take() {
            write_markers(&mut self.topics, producer_id, &open, commit);
            if commit {
                self.offsets.extend(open.offsets);
            }
        }
        Ok(())
    }

    /// The transactional ids with open transactions.
    pub fn open_transactions(&self) -> Vec<String> {
        self.ids
            .iter()
            .filter(|(_, state)| state.open.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The raw entries of a partition, markers included.
    pub fn entries(&self, topic: &str, partition: u32) -> &[Entry] {
        &self.topics[topic][partition as usize]
    }

    /// How many partitions `topic` has.
    pub fn partitions(&self, topic: &str) -> u32 {
        self.topics[topic].len() as u32
    }

    /// The offset of the first record of a still-open transaction, or the end of the partition.
    pub fn last_stable_offset(&self, topic: &str, partition: u32) -> u64 {
        let (_, last_stable) = self.resolve(topic, partition);
        last_stable
    }

    /// Outcome of every entry (`Some(commit)` once a marker decided it) and the last stable offset.
    fn resolve(&self, topic: &str, partition: u32) -> (Vec<Option<bool>>, u64) {
        let entries = self.entries(topic, partition);
        let mut outcome = vec![None; entries.len()];
        let mut undecided: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (index, entry) in entries.iter().enumerate() {
            match entry {
                Entry::Record { producer_id, .. } => {
                    undecided.entry(*producer_id).or_default().push(index)
                }
                Entry::Marker {
                    producer_id,
                    commit,
                } => {
                    for decided in undecided.remove(producer_id).unwrap_or_default() {
                        outcome[decided] = Some(*commit);
                    }
                }
            }
        }
        let last_stable = undecided
            .values()
            .filter_map(|indices| indices.first())
            .min()
            .map_or(entries.len(), |first| *first) as u64;
        (outcome, last_stable)
    }

    /// What a consumer with `isolation` reads from the start of a partition.
    pub fn read(&self, topic: &str, partition: u32, isolation: Isolation) -> Vec<Visible> {
        let (outcome, last_stable) = self.resolve(topic, partition);
        self.entries(topic, partition)
            .iter()
            .enumerate()
            .take(last_stable as usize)
            .filter_map(
                |(offset, entry)| match (entry, outcome[offset], isolation) {
                    (Entry::Record { key, value, .. }, Some(true), _)
                    | (
                        Entry::Record { key, value, .. },
                        Some(false),
                        Isolation::ReadCommittedShowingAborted,
                    ) => Some(Visible {
                        offset: offset as u64,
                        key: key.clone(),
                        value: value.clone(),
                    }),
                    _ => None,
                },
            )
            .collect()
    }

    /// The committed offset of `group` (on the progress partition), if any.
    pub fn committed_offset(&self, group: &str) -> Option<u64> {
        self.offsets.get(group).copied()
    }

    /// Forgets `group`'s committed offset, as `offsets.retention.minutes` does.
    pub fn expire_offset(&mut self, group: &str) -> bool {
        self.offsets.remove(group).is_some()
    }

    /// The groups with committed offsets.
    pub fn groups(&self) -> Vec<String> {
        self.offsets.keys().cloned().collect()
    }
}

/// A fault to inject into one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call works.
    None,
    /// The call fails with this kind and has no effect (a timed-out `init_transactions` does
    /// take effect on the broker).
    Fail(ErrorKind),
    /// A send reaches the log but its delivery report says it failed.
    FailAfterWrite(ErrorKind),
    /// A commit times out; whether the broker committed is `committed`.
    CommitTimeout {
        /// Whether the commit happened.
        committed: bool,
    },
}

/// Which client call a fault would hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `init_transactions`.
    Init,
    /// `begin_transaction`.
    Begin,
    /// A data send.
    Produce,
    /// The progress record's send.
    ProduceProgress,
    /// `send_offsets_to_transaction`.
    SendOffsets,
    /// `commit_transaction`.
    Commit,
    /// `abort_transaction`.
    Abort,
}

fn injected(kind: ErrorKind, op: Op) -> TxnError {
    TxnError::new(kind, format!("injected {kind:?} in {op:?}"))
}

/// The client side of one transactional producer, with librdkafka's state rules. Calls that
/// break them (the machine asking for something a real client refuses) panic.
pub struct ModelProducer {
    transactional_id: String,
    handle: Option<ProducerHandle>,
    in_transaction: bool,
    abort_required: bool,
    /// A commit timed out; the next call must be commit.
    commit_in_doubt: bool,
    /// The commit that timed out did happen on the broker.
    commit_happened: bool,
}

impl ModelProducer {
    /// A producer for `transactional_id`, not yet initialized.
    pub fn new(transactional_id: impl Into<String>) -> Self {
        ModelProducer {
            transactional_id: transactional_id.into(),
            handle: None,
            in_transaction: false,
            abort_required: false,
            commit_in_doubt: false,
            commit_happened: false,
        }
    }

    fn handle(&self) -> &ProducerHandle {
        self.handle.as_ref().unwrap_or_else(|| {
            panic!(
                "{}: transactional call before init_transactions succeeded",
                self.transactional_id
            )
        })
    }

    fn expect_transaction(&self, call: &str) {
        assert!(
            self.in_transaction,
            "{}: {call} outside a transaction",
            self.transactional_id
        );
    }

    /// `init_transactions`.
    pub fn init(&mut self, log: &mut TxnLog, fault: Fault) -> Result<(), TxnError> {
        assert!(
            !self.in_transaction,
            "{}: init_transactions inside a transaction",
            self.transactional_id
        );
        match fault {
            Fault::Fail(kind) => {
                if kind == ErrorKind::TimedOut {
                    log.init_transactions(&self.transactional_id);
                }
                Err(injected(kind, Op::Init))
            }
            _ => {
                self.handle = Some(log.init_transactions(&self.transactional_id));
                Ok(())
            }
        }
    }

    /// `begin_transaction`: local to the client, as in Kafka.
    pub fn begin(&mut self, fault: Fault) -> Result<(), TxnError> {
        self.handle();
        assert!(
            !self.in_transaction,
            "{}: begin_transaction while one is open",
            self.transactional_id
        );
        if let Fault::Fail(kind) = fault {
            return Err(injected(kind, Op::Begin));
        }
        self.in_transaction = true;
        self.abort_required = false;
        self.commit_in_doubt = false;
        self.commit_happened = false;
        Ok(())
    }

    /// A send in the open transaction.
    pub fn send(
        &mut self,
        log: &mut TxnLog,
        topic: &str,
        partition: u32,
        key: &[u8],
        value: &[u8],
        fault: Fault,
    ) -> Result<(), TxnError> {
        self.expect_transaction("send");
        assert!(
            !self.commit_in_doubt,
            "{}: send after a commit timed out",
            self.transactional_id
        );
        let result = match fault {
            Fault::Fail(kind) => Err(injected(kind, Op::Produce)),
            Fault::FailAfterWrite(kind) => log
                .produce(self.handle(), topic, partition, key, Some(value))
                .and(Err(injected(kind, Op::Produce))),
            _ => log
                .produce(self.handle(), topic, partition, key, Some(value))
                .map(drop),
        };
        if result.is_err() {
            self.abort_required = true;
        }
        result
    }

    /// `send_offsets_to_transaction`.
    pub fn send_offsets(
        &mut self,
        log: &mut TxnLog,
        group: &str,
        offset: u64,
        fault: Fault,
    ) -> Result<(), TxnError> {
        self.expect_transaction("send_offsets_to_transaction");
        if self.abort_required {
            return Err(TxnError::new(
                ErrorKind::Abortable,
                "a send of this transaction failed",
            ));
        }
        match fault {
            Fault::Fail(kind) => {
                if kind == ErrorKind::Abortable {
                    self.abort_required = true;
                }
                Err(injected(kind, Op::SendOffsets))
            }
            _ => log.send_offsets(self.handle(), group, offset),
        }
    }

    /// `commit_transaction`.
    pub fn commit(&mut self, log: &mut TxnLog, fault: Fault) -> Result<(), TxnError> {
        self.expect_transaction("commit_transaction");
        if self.abort_required {
            return Err(TxnError::new(
                ErrorKind::Abortable,
                "a send of this transaction failed",
            ));
        }
        let result = match fault {
            // A commit that already happened can only be confirmed.
            _ if self.commit_happened => log.end_transaction(self.handle(), true),
            Fault::Fail(kind) => {
                if kind == ErrorKind::Abortable {
                    self.abort_required = true;
                }
                Err(injected(kind, Op::Commit))
            }
            Fault::CommitTimeout { committed } => {
                if committed {
                    log.end_transaction(self.handle(), true)?;
                    self.commit_happened = true;
                }
                self.commit_in_doubt = true;
                Err(injected(ErrorKind::TimedOut, Op::Commit))
            }
            _ => log.end_transaction(self.handle(), true),
        };
        if result.is_ok() {
            self.in_transaction = false;
            self.commit_in_doubt = false;
            self.commit_happened = false;
        }
        result
    }

    /// `abort_transaction`.
    pub fn abort(&mut self, log: &mut TxnLog, fault: Fault) -> Result<(), TxnError> {
        self.expect_transaction("abort_transaction");
        assert!(
            !self.commit_happened,
            "{}: aborted a transaction whose timed-out commit had happened",
            self.transactional_id
        );
        if let Fault::Fail(kind) = fault {
            return Err(injected(kind, Op::Abort));
        }
        log.end_transaction(self.handle(), false)?;
        self.in_transaction = false;
        self.abort_required = false;
        self.commit_in_doubt = false;
        Ok(())
    }
}

/// A message the model can write: where it goes and its bytes.
pub trait ModelMessage: Clone {
    /// The data-topic partition.
    fn partition(&self) -> u32;
    /// The key bytes.
    fn key(&self) -> &[u8];
    /// The value bytes.
    fn value(&self) -> &[u8];
}

/// The topics a [`ModelWorker`] writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelTopics {
    /// The data topic.
    pub data: String,
    /// The one-partition progress topic.
    pub progress: String,
}

/// An action of the machine that needs no broker: the driver's caller acts on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// [`Action::Status`].
    Status(Status),
    /// [`Action::Frontier`].
    Frontier(Option<u64>),
    /// [`Action::Announced`].
    Announced,
    /// [`Action::Pause`].
    Pause,
    /// [`Action::Resume`].
    Resume,
}

/// What one [`ModelWorker::execute`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    /// The call, if the action was one.
    pub op: Option<Op>,
    /// The fault injected into it.
    pub fault: Fault,
    /// The call's result.
    pub result: Option<Result<(), TxnError>>,
    /// The action, if it was one the caller acts on.
    pub observation: Option<Observation>,
}

impl fmt::Display for Executed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(observation) = &self.observation {
            return write!(f, "reports {observation:?}");
        }
        if let Some(op) = self.op {
            write!(f, "{op:?}")?;
        }
        if self.fault != Fault::None {
            write!(f, " with {:?}", self.fault)?;
        }
        match &self.result {
            Some(Ok(())) => write!(f, " -> ok"),
            Some(Err(error)) => write!(f, " -> {error}"),
            None => Ok(()),
        }
    }
}

/// A driver that runs one [`Machine`] against a [`TxnLog`], one action per step, so a test can
/// interleave workers, crash them between any two steps (drop the worker: its producer vanishes
/// with whatever it left open) or keep them running as zombies.
pub struct ModelWorker<M> {
    machine: Machine<M>,
    producer: ModelProducer,
    topics: ModelTopics,
    actions: VecDeque<Action<M>>,
    deliveries: VecDeque<(u64, usize, Result<(), TxnError>)>,
    initialized: bool,
}

impl<M: ModelMessage> ModelWorker<M> {
    /// Drives `machine`, writing to `topics`.
    pub fn new(mut machine: Machine<M>, topics: ModelTopics) -> Self {
        let producer = ModelProducer::new(machine.transactional_id());
        let actions = std::iter::from_fn(|| machine.poll_action()).collect();
        ModelWorker {
            machine,
            producer,
            topics,
            actions,
            deliveries: VecDeque::new(),
            initialized: false,
        }
    }

    /// The machine.
    pub fn machine(&self) -> &Machine<M> {
        &self.machine
    }

    /// Whether `init_transactions` has succeeded.
    pub fn initialized(&self) -> bool {
        self.initialized
    }

    /// Whether an action waits to be executed.
    pub fn has_action(&self) -> bool {
        !self.actions.is_empty()
    }

    /// Whether a delivery report waits to be handed to the machine.
    pub fn has_delivery(&self) -> bool {
        !self.deliveries.is_empty()
    }

    /// Hands the machine an event from outside the broker (input, recovery, a tick).
    pub fn handle(&mut self, now: Duration, event: Event<M>) -> Result<(), ProtocolError> {
        self.machine.handle(now, event)?;
        self.actions
            .extend(std::iter::from_fn(|| self.machine.poll_action()));
        Ok(())
    }

    /// Hands the machine the oldest delivery report.
    pub fn deliver(&mut self, now: Duration) -> Result<(), ProtocolError> {
        let (transaction, bytes, result) = self
            .deliveries
            .pop_front()
            .expect("a delivery report waits");
        self.handle(
            now,
            Event::Delivered {
                transaction,
                bytes,
                result,
            },
        )
    }

    /// Executes the oldest action against `log`, asking `faults` what to inject into a call.
    pub fn execute(
        &mut self,
        log: &mut TxnLog,
        now: Duration,
        faults: &mut dyn FnMut(Op) -> Fault,
    ) -> Result<Executed, ProtocolError> {
        let action = self.actions.pop_front().expect("an action waits");
        let observed = |observation| Executed {
            op: None,
            fault: Fault::None,
            result: None,
            observation: Some(observation),
        };
        let (op, fault, result, event) = match action {
            Action::Status(status) => return Ok(observed(Observation::Status(status))),
            Action::Frontier(frontier) => return Ok(observed(Observation::Frontier(frontier))),
            Action::Announced => return Ok(observed(Observation::Announced)),
            Action::Pause => return Ok(observed(Observation::Pause)),
            Action::Resume => return Ok(observed(Observation::Resume)),
            Action::InitTransactions => {
                let fault = faults(Op::Init);
                let result = self.producer.init(log, fault);
                self.initialized |= result.is_ok();
                (
                    Op::Init,
                    fault,
                    result.clone(),
                    Some(Event::Initialized(result)),
                )
            }
            Action::BeginTransaction => {
                let fault = faults(Op::Begin);
                let result = self.producer.begin(fault);
                (Op::Begin, fault, result.clone(), Some(Event::Began(result)))
            }
            Action::Produce {
                transaction,
                bytes,
                message,
            } => {
                let fault = faults(Op::Produce);
                let topic = &self.topics.data;
                let result = self.producer.send(
                    log,
                    topic,
                    message.partition(),
                    message.key(),
                    message.value(),
                    fault,
                );
                self.deliveries
                    .push_back((transaction, bytes, result.clone()));
                (Op::Produce, fault, result, None)
            }
            Action::ProduceProgress {
                transaction,
                bytes,
                key,
                value,
            } => {
                let fault = faults(Op::ProduceProgress);
                let topic = &self.topics.progress;
                let result = self
                    .producer
                    .send(log, topic, 0, key.as_bytes(), &value, fault);
                self.deliveries
                    .push_back((transaction, bytes, result.clone()));
                (Op::ProduceProgress, fault, result, None)
            }
            Action::SendOffsets { group, offset } => {
                let fault = faults(Op::SendOffsets);
                let result = self.producer.send_offsets(log, &group, offset, fault);
                (
                    Op::SendOffsets,
                    fault,
                    result.clone(),
                    Some(Event::OffsetsSent(result)),
                )
            }
            Action::CommitTransaction => {
                let fault = faults(Op::Commit);
                let result = self.producer.commit(log, fault);
                (
                    Op::Commit,
                    fault,
                    result.clone(),
                    Some(Event::Committed(result)),
                )
            }
            Action::AbortTransaction => {
                let fault = faults(Op::Abort);
                let result = self.producer.abort(log, fault);
                (
                    Op::Abort,
                    fault,
                    result.clone(),
                    Some(Event::Aborted(result)),
                )
            }
        };
        if let Some(event) = event {
            self.handle(now, event)?;
        }
        Ok(Executed {
            op: Some(op),
            fault,
            result: Some(result),
            observation: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "data";

    fn values(log: &TxnLog, isolation: Isolation) -> Vec<Vec<u8>> {
        log.read(TOPIC, 0, isolation)
            .into_iter()
            .map(|v| v.value.unwrap())
            .collect()
    }

    fn log() -> TxnLog {
        let mut log = TxnLog::new();
        log.create_topic(TOPIC, 1);
        log
    }

    #[test]
    fn read_committed_shows_committed_records_up_to_the_last_stable_offset() {
        let mut log = log();
        let a = log.init_transactions("a");
        let b = log.init_transactions("b");
        log.produce(&a, TOPIC, 0, b"k", Some(b"a1")).unwrap();
        log.produce(&b, TOPIC, 0, b"k", Some(b"b1")).unwrap();
        log.end_transaction(&b, true).unwrap();
        // a's open transaction holds back everything after its first record.
        assert!(values(&log, Isolation::ReadCommitted).is_empty());
        assert_eq!(log.last_stable_offset(TOPIC, 0), 0);
        log.end_transaction(&a, false).unwrap();
        assert_eq!(values(&log, Isolation::ReadCommitted), vec![b"b1".to_vec()]);
        assert_eq!(
            values(&log, Isolation::ReadCommittedShowingAborted),
            vec![b"a1".to_vec(), b"b1".to_vec()]
        );
        assert_eq!(log.last_stable_offset(TOPIC, 0), 4);
    }

    #[test]
    fn init_aborts_the_open_transaction_and_fences_the_old_epoch() {
        let mut log = log();
        let old = log.init_transactions("t");
        log.produce(&old, TOPIC, 0, b"k", Some(b"zombie")).unwrap();
        log.send_offsets(&old, "g", 7).unwrap();
        let new = log.init_transactions("t");
        assert_eq!(
            (new.producer_id, new.epoch),
            (old.producer_id, old.epoch + 1)
        );
        assert_eq!(
            log.entries(TOPIC, 0).last(),
            Some(&Entry::Marker {
                producer_id: old.producer_id,
                commit: false
            })
        );
        for error in [
            log.produce(&old, TOPIC, 0, b"k", Some(b"late"))
                .map(drop)
                .unwrap_err(),
            log.send_offsets(&old, "g", 8).unwrap_err(),
            log.end_transaction(&old, true).unwrap_err(),
        ] {
            assert_eq!(error.kind, ErrorKind::Fenced);
        }
        assert!(values(&log, Isolation::ReadCommitted).is_empty());
        assert_eq!(log.committed_offset("g"), None);
        assert!(log.open_transactions().is_empty());
    }

    #[test]
    fn group_offsets_show_only_when_their_transaction_commits() {
        let mut log = log();
        let t = log.init_transactions("t");
        log.send_offsets(&t, "g", 3).unwrap();
        assert_eq!(log.committed_offset("g"), None);
        log.end_transaction(&t, false).unwrap();
        assert_eq!(log.committed_offset("g"), None);
        log.send_offsets(&t, "g", 4).unwrap();
        log.end_transaction(&t, true).unwrap();
        assert_eq!(log.committed_offset("g"), Some(4));
        assert!(log.expire_offset("g"));
        assert_eq!(log.committed_offset("g"), None);
    }

    #[test]
    fn a_timed_out_commit_is_confirmed_by_the_retry_either_way() {
        for committed in [true, false] {
            let mut log = log();
            let mut producer = ModelProducer::new("t");
            producer.init(&mut log, Fault::None).unwrap();
            producer.begin(Fault::None).unwrap();
            producer
                .send(&mut log, TOPIC, 0, b"k", b"v", Fault::None)
                .unwrap();
            let error = producer
                .commit(&mut log, Fault::CommitTimeout { committed })
                .unwrap_err();
            assert_eq!(error.kind, ErrorKind::TimedOut);
            assert_eq!(
                values(&log, Isolation::ReadCommitted).len(),
                usize::from(committed)
            );
            // Even an injected abortable error cannot undo a commit that happened.
            producer.commit(&mut log, Fault::None).unwrap();
            assert_eq!(values(&log, Isolation::ReadCommitted), vec![b"v".to_vec()]);
        }
    }

    #[test]
    fn a_failed_send_leaves_only_abort() {
        let mut log = log();
        let mut producer = ModelProducer::new("t");
        producer.init(&mut log, Fault::None).unwrap();
        producer.begin(Fault::None).unwrap();
        let error = producer
            .send(
                &mut log,
                TOPIC,
                0,
                b"k",
                b"v",
                Fault::FailAfterWrite(ErrorKind::Retriable),
            )
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::Retriable);
        assert_eq!(
            producer.commit(&mut log, Fault::None).unwrap_err().kind,
            ErrorKind::Abortable
        );
        producer.abort(&mut log, Fault::None).unwrap();
        assert!(values(&log, Isolation::ReadCommitted).is_empty());
        assert_eq!(
            values(&log, Isolation::ReadCommittedShowingAborted),
            vec![b"v".to_vec()]
        );
    }

    #[test]
    #[should_panic(expected = "whose timed-out commit had happened")]
    fn aborting_a_commit_that_happened_is_caught() {
        let mut log = log();
        let mut producer = ModelProducer::new("t");
        producer.init(&mut log, Fault::None).unwrap();
        producer.begin(Fault::None).unwrap();
        producer
            .send(&mut log, TOPIC, 0, b"k", b"v", Fault::None)
            .unwrap();
        producer
            .commit(&mut log, Fault::CommitTimeout { committed: true })
            .unwrap_err();
        let _ = producer.abort(&mut log, Fault::None);
    }
}
