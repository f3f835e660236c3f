//! The per-worker exactly-once state machine: when to begin, produce, record progress, commit,
//! abort and retry, driven by events and answering with actions.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::progress::{Claim, Point, ProgressRecord};
use super::recovery::Recovery;
use super::{hex, ProtocolError, SinkNames};

/// How often a worker commits and how much it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cadence {
    /// A transaction whose times are all complete commits once it has been open this long;
    /// after transactions that committed sooner because they were full
    /// ([`Cadence::max_transaction_bytes`]), once this long has passed since the first of them
    /// opened, so that a burst commits on the interval's schedule.
    /// Default 1 s, Materialize's once-per-second: each commit writes a marker to every
    /// partition the transaction touched and waits for the coordinator (a few milliseconds on
    /// Kafka), which at this interval costs well under a percent of the time.
    pub commit_interval: Duration,
    /// A transaction commits at the first time boundary once it holds this many message bytes,
    /// and a single time is committed in chunks of this size. The open transaction's messages
    /// are kept for a resend after an abort, so a worker keeps at most twice this (the earlier
    /// times of the transaction plus one chunk) plus one message. Default 32 MiB: a third of a
    /// second of a producer's full speed, far below any transaction timeout.
    pub max_transaction_bytes: usize,
    /// The caller must pause feeding messages once messages waiting for the next transaction
    /// plus messages not yet acknowledged by the broker reach this many bytes
    /// ([`Action::Pause`]), and may resume at half of it ([`Action::Resume`]). Default 8 MiB.
    pub max_in_flight_bytes: usize,
    /// A worker whose input frontier moved without data records its progress in a
    /// transaction of its own at most this often (and always when the input is done), so a
    /// restart does not redo idle time. Default 10 s: idle workers cost the transaction
    /// coordinator little, and the frontier reported to the caller does not wait for it.
    pub idle_progress_interval: Duration,
    /// The first wait after a failed call; it doubles with each consecutive failure.
    /// Default 100 ms.
    pub retry_backoff: Duration,
    /// The longest wait between retries. Default 10 s.
    pub max_retry_backoff: Duration,
    /// The broker's `transaction.timeout.ms` for this worker's producer: a transaction open
    /// longer is aborted by the coordinator, which bumps the producer's epoch, so that the
    /// producer's next call fails as fenced. The machine names that cause in its error when
    /// the transaction was open (or the broker silent) for longer. Default 60 s.
    pub transaction_timeout: Duration,
    /// A call or a send the broker has not answered for this long makes the worker report
    /// stalled while it goes on waiting, and running again once the broker answers. Default 5 s.
    pub answer_overdue: Duration,
    /// A worker whose calls have kept failing for this long stops with an error instead of
    /// retrying for ever. Default 10 minutes.
    pub give_up_after: Duration,
}

/// The default of [`Cadence::transaction_timeout`]: a minute, a tenth of what Kafka allows by
/// default (`transaction.max.timeout.ms` is 15 minutes), long enough for a commit interval and a
/// full transaction's bytes on a slow link.
pub const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for Cadence {
    fn default() -> Self {
        Cadence {
            commit_interval: Duration::from_secs(1),
            max_transaction_bytes: 32 << 20,
            max_in_flight_bytes: 8 << 20,
            idle_progress_interval: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(100),
            max_retry_backoff: Duration::from_secs(10),
            transaction_timeout: DEFAULT_TRANSACTION_TIMEOUT,
            answer_overdue: Duration::from_secs(5),
            give_up_after: Duration::from_secs(600),
        }
    }
}

/// How a transactional call failed, in the classes librdkafka distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The call may be repeated as is (`RDKafkaError::is_retriable`).
    Retriable,
    /// The transaction must be aborted (`RDKafkaError::txn_requires_abort`); the machine resends
    /// its messages in a new one.
    Abortable,
    /// The call timed out and its outcome is unknown: a commit may have happened. The machine
    /// repeats the call, which reports the real outcome.
    TimedOut,
    /// Another producer with the same transactional id initialized after this one
    /// (`ProducerFenced`, `InvalidProducerEpoch`).
    Fenced,
    /// The producer is unusable (`RDKafkaError::is_fatal`).
    Fatal,
    /// The broker does not support transactions (for example `UnsupportedVersion` from
    /// `init_transactions`). A principal without Write on its transactional id is refused, not
    /// unsupported: that is `Fatal`, with an error naming the ACL.
    Unsupported,
}

/// A failed transactional call, as the driver classified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnError {
    /// What the machine should do about it.
    pub kind: ErrorKind,
    /// The client's message, shown in the sink's status.
    pub message: String,
}

impl TxnError {
    /// An error of `kind` with the client's `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        TxnError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for TxnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Retriable => "retriable",
            ErrorKind::Abortable => "abortable",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::Fenced => "fenced",
            ErrorKind::Fatal => "fatal",
            ErrorKind::Unsupported => "unsupported",
        };
        write!(f, "{} ({kind})", self.message)
    }
}

impl std::error::Error for TxnError {}

/// What the sink reports about this worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// Initializing transactions or waiting for recovery.
    Starting,
    /// Producing and committing.
    Running,
    /// A call failed; the machine retries at `retry_at` (on the caller's clock).
    Stalled {
        /// What failed.
        error: String,
        /// When the next attempt happens.
        retry_at: Duration,
    },
    /// The machine stopped for good; the sink must be restarted (or reconfigured).
    Failed {
        /// Why.
        error: String,
    },
}

/// Something that happened to the worker: its input, or the result of an [`Action`].
#[derive(Clone, Debug)]
pub enum Event<M> {
    /// The result of [`Action::InitTransactions`].
    Initialized(Result<(), TxnError>),
    /// The run's recovery. Worker 0 gets it once every worker has initialized and the progress
    /// topic was read; the others once worker 0 answered [`Action::Announced`].
    Recovered(Arc<Recovery>),
    /// An encoded message of one of this worker's keys. Messages come in time order and, within
    /// a time, in position order; `position` is a stable function of the key (for example its
    /// encoded bytes) and messages with equal positions are never split across transactions.
    /// `bytes` is what the message costs in memory and on the wire.
    Message {
        /// The update's time.
        time: u64,
        /// The key's sort position within the time (a [`Bytes`], so that a caller can hand
        /// out slices of one buffer and the machine keep them without copying).
        position: Bytes,
        /// The message's size in bytes.
        bytes: usize,
        /// The message, handed back in [`Action::Produce`].
        message: M,
    },
    /// The input frontier advanced: no message at a time before `Some(t)` will come; `None`:
    /// no message at all will come.
    Frontier(Option<u64>),
    /// The broker acknowledged (or failed) a message of [`Action::Produce`] or
    /// [`Action::ProduceProgress`]; `transaction` and `bytes` echo the action's. A send that
    /// fails at once is reported the same way.
    Delivered {
        /// The action's `transaction`.
        transaction: u64,
        /// The action's `bytes`.
        bytes: usize,
        /// The delivery's outcome.
        result: Result<(), TxnError>,
    },
    /// The result of [`Action::BeginTransaction`].
    Began(Result<(), TxnError>),
    /// The result of [`Action::SendOffsets`].
    OffsetsSent(Result<(), TxnError>),
    /// The result of [`Action::CommitTransaction`].
    Committed(Result<(), TxnError>),
    /// The result of [`Action::AbortTransaction`].
    Aborted(Result<(), TxnError>),
    /// Time passed; deliver it at [`Machine::next_wakeup`].
    Tick,
}

impl<M> Event<M> {
    fn name(&self) -> &'static str {
        match self {
            Event::Initialized(_) => "Initialized",
            Event::Recovered(_) => "Recovered",
            Event::Message { .. } => "Message",
            Event::Frontier(_) => "Frontier",
            Event::Delivered { .. } => "Delivered",
            Event::Began(_) => "Began",
            Event::OffsetsSent(_) => "OffsetsSent",
            Event::Committed(_) => "Committed",
            Event::Aborted(_) => "Aborted",
            Event::Tick => "Tick",
        }
    }
}

/// What the machine asks of its driver. The transactional calls (`InitTransactions`,
/// `BeginTransaction`, `SendOffsets`, `CommitTransaction`, `AbortTransaction`) are answered by
/// exactly one result event each, and the machine asks for no other call until then; produces
/// are answered by [`Event::Delivered`] whenever the broker acknowledges them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<M> {
    /// `init_transactions` with this worker's transactional id.
    InitTransactions,
    /// `begin_transaction`.
    BeginTransaction,
    /// Send a data message in the open transaction.
    Produce {
        /// Echo in [`Event::Delivered`].
        transaction: u64,
        /// Echo in [`Event::Delivered`].
        bytes: usize,
        /// The message.
        message: M,
    },
    /// Send this worker's progress record to partition 0 of the progress topic, last in the
    /// transaction.
    ProduceProgress {
        /// Echo in [`Event::Delivered`].
        transaction: u64,
        /// Echo in [`Event::Delivered`].
        bytes: usize,
        /// `{sink_id}/{worker}`.
        key: String,
        /// The record's JSON.
        value: Vec<u8>,
    },
    /// `send_offsets_to_transaction`: commit `offset` for partition 0 of the progress topic in
    /// consumer group `group`, within the transaction.
    SendOffsets {
        /// `{progress_group_id_prefix}{sink_id}-{worker}`.
        group: String,
        /// The `seq` of the progress record in this transaction.
        offset: u64,
    },
    /// `commit_transaction`.
    CommitTransaction,
    /// `abort_transaction`.
    AbortTransaction,
    /// Worker 0 only: the run's first transaction committed, so the other workers may now get
    /// [`Event::Recovered`].
    Announced,
    /// Stop feeding messages (frontier advances may still come).
    Pause,
    /// Feeding messages may go on.
    Resume,
    /// The worker's status changed.
    Status(Status),
    /// Every update of this worker's keys before this time is committed in Kafka (`None`: all
    /// of them). Never moves backwards.
    Frontier(Option<u64>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    Init,
    Begin,
    SendOffsets,
    Commit,
    Abort,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Call::Init => "init_transactions",
            Call::Begin => "begin_transaction",
            Call::SendOffsets => "send_offsets_to_transaction",
            Call::Commit => "commit_transaction",
            Call::Abort => "abort_transaction",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Initializing,
    AwaitingRecovery,
    Idle,
    Beginning,
    Open,
    SendingOffsets,
    Committing,
    Aborting,
    Backoff { until: Duration, then: Call },
    Failed,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Initializing => "initializing transactions",
            Phase::AwaitingRecovery => "waiting for recovery",
            Phase::Idle => "between transactions",
            Phase::Beginning => "beginning a transaction",
            Phase::Open => "producing in an open transaction",
            Phase::SendingOffsets => "sending offsets",
            Phase::Committing => "committing",
            Phase::Aborting => "aborting",
            Phase::Backoff { .. } => "waiting to retry",
            Phase::Failed => "failed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxnKind {
    /// Worker 0's first transaction: only its progress record, which announces the run.
    Announce,
    /// Only a progress record, for a frontier that moved without data.
    Progress,
    Data,
}

struct Staged<M> {
    time: u64,
    position: Bytes,
    bytes: usize,
    message: M,
}

/// The transaction being built, kept across aborted attempts until it commits.
struct Txn<M> {
    kind: TxnKind,
    messages: Vec<(usize, M)>,
    bytes: usize,
    last: Option<(u64, Bytes)>,
    /// Bytes of this transaction at the time of `last`.
    time_bytes: usize,
    /// Where its commit interval started: its opening, or that of the full transactions
    /// before it ([`Machine`]'s `interval_from`).
    started_at: Duration,
    /// Set once the transaction is closing: the point its progress record claims.
    closing: Option<Point>,
    seq: Option<u64>,
}

/// The exactly-once protocol of one worker, without I/O.
///
/// Feed it [`Event`]s with [`Machine::handle`] and carry out what [`Machine::poll_action`]
/// returns, in order. `M` is the encoded message; the machine keeps the messages of the open
/// transaction to resend them after an abort, so it clones each once.
pub struct Machine<M> {
    names: SinkNames,
    cadence: Cadence,
    worker: u32,
    workers: u32,
    progress_key: String,
    group: String,
    phase: Phase,
    actions: VecDeque<Action<M>>,
    status: Status,
    recovered: bool,
    announced: bool,
    base: Vec<Claim>,
    next_seq: u64,
    /// The point of the last committed progress record (or where the run started).
    recorded: Point,
    recorded_at: Duration,
    reported: Option<Point>,
    input: Point,
    last_fed: Option<(u64, Bytes)>,
    pending: VecDeque<Staged<M>>,
    pending_bytes: usize,
    txn: Option<Txn<M>>,
    attempt: u64,
    attempt_live: bool,
    in_flight: usize,
    poisoned: Option<TxnError>,
    abort_reason: String,
    failures: u32,
    paused: bool,
    /// The clock of the event being handled.
    clock: Duration,
    /// When the transactional call in flight was asked for.
    call_since: Option<Duration>,
    /// When the broker last answered anything (a call, a delivery).
    last_answer: Duration,
    /// Where the next transaction's commit interval starts, when not at its own opening: the
    /// opening of a data transaction that committed before its interval was up (it filled to
    /// `max_transaction_bytes`), so that the commit after a full one keeps the interval's
    /// schedule rather than waiting a whole interval more.
    interval_from: Option<Duration>,
    /// Whether the current stalled status is the broker's silence, not a failed call.
    overdue: bool,
    /// When the current run of failed calls began.
    failing_since: Option<Duration>,
    /// When the current attempt of the transaction being built began.
    attempt_began: Duration,
    /// Set when the worker must stop with this error once its open transaction is aborted, so
    /// that `read_committed` readers do not wait for the broker to time it out.
    doomed: Option<String>,
    /// Whether the broker has begun the current attempt's transaction (`begin_transaction`
    /// answered) and it has not ended.
    open_on_broker: bool,
    /// The caller asked for the input frontier to be recorded without waiting for the idle
    /// interval ([`Machine::record_input_frontier`]).
    record_requested: bool,
}

impl<M: Clone> Machine<M> {
    /// The machine of worker `worker` of a run of `workers`. Its first action initializes
    /// transactions.
    pub fn new(names: SinkNames, cadence: Cadence, worker: u32, workers: u32) -> Self {
        assert!(
            worker < workers,
            "worker {worker} is not below the worker count {workers}"
        );
        let progress_key = names.progress_key(worker);
        let group = names.progress_group_id(worker);
        let mut machine = Machine {
            names,
            cadence,
            worker,
            workers,
            progress_key,
            group,
            phase: Phase::Initializing,
            actions: VecDeque::new(),
            status: Status::Starting,
            recovered: false,
            announced: worker != 0,
            base: Vec::new(),
            next_seq: 0,
            recorded: Point::START,
            recorded_at: Duration::ZERO,
            reported: None,
            input: Point::START,
            last_fed: None,
            pending: VecDeque::new(),
            pending_bytes: 0,
            txn: None,
            attempt: 0,
            attempt_live: false,
            in_flight: 0,
            poisoned: None,
            abort_reason: String::new(),
            failures: 0,
            paused: false,
            clock: Duration::ZERO,
            call_since: None,
            last_answer: Duration::ZERO,
            interval_from: None,
            overdue: false,
            failing_since: None,
            attempt_began: Duration::ZERO,
            doomed: None,
            open_on_broker: false,
            record_requested: false,
        };
        machine.actions.push_back(Action::Status(Status::Starting));
        machine.actions.push_back(Action::InitTransactions);
        machine
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action<M>> {
        self.actions.pop_front()
    }

    /// The worker's current status.
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The committed frontier last reported with [`Action::Frontier`]: `Some(Some(t))` means
    /// every update before `t`, `Some(None)` all of them, `None` nothing reported yet.
    pub fn committed_frontier(&self) -> Option<Option<u64>> {
        self.reported.as_ref().map(Point::time)
    }

    /// Records the input frontier in a progress record as soon as nothing else is open, without
    /// waiting for the idle interval: for a caller whose input stopped moving for now (a feed
    /// that ended) and that wants the progress topic to say how far it got before it stops.
    /// [`Machine::input_recorded`] tells when it is committed.
    pub fn record_input_frontier(&mut self, now: Duration) {
        self.record_requested = true;
        // Handled as a timer firing (the machine's clock moves to `now`): it starts the record if
        // nothing else is open.
        if let Err(error) = self.handle(now, Event::Tick) {
            unreachable!("a tick is valid in every phase: {error}");
        }
    }

    /// Whether a committed progress record (or the recovery) covers the input frontier.
    pub fn input_recorded(&self) -> bool {
        self.recorded >= self.input
    }

    /// The transactional id this worker uses.
    pub fn transactional_id(&self) -> String {
        self.names.transactional_id(self.worker)
    }

    /// When to deliver the next [`Event::Tick`], on the clock `handle` is given; `None` when
    /// no timer is running.
    pub fn next_wakeup(&self) -> Option<Duration> {
        let overdue = self
            .waiting_since()
            .filter(|_| !self.overdue)
            .map(|since| since + self.cadence.answer_overdue);
        let timer = self.timer();
        match (timer, overdue) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Since when the worker has waited for the broker without an answer, if it waits.
    fn waiting_since(&self) -> Option<Duration> {
        if matches!(self.phase, Phase::Failed | Phase::Backoff { .. }) {
            return None;
        }
        match self.call_since {
            Some(asked) => Some(asked.max(self.last_answer)),
            None if self.attempt_live && self.in_flight > 0 => Some(self.last_answer),
            None => None,
        }
    }

    fn timer(&self) -> Option<Duration> {
        match self.phase {
            Phase::Backoff { until, .. } => Some(until),
            Phase::Open => {
                let txn = self.txn.as_ref()?;
                let (last_time, _) = txn.last.as_ref()?;
                (txn.closing.is_none() && self.input_passes(*last_time))
                    .then(|| txn.started_at + self.cadence.commit_interval)
            }
            Phase::Idle
                if self.recovered && self.pending.is_empty() && self.input > self.recorded =>
            {
                Some(self.recorded_at + self.cadence.idle_progress_interval)
            }
            _ => None,
        }
    }

    /// Applies `event`, which happened at `now` (any monotonic clock, the same for every call).
    /// An error means the caller broke the machine's contract; the machine is unchanged.
    pub fn handle(&mut self, now: Duration, event: Event<M>) -> Result<(), ProtocolError> {
        if self.phase == Phase::Failed {
            return Ok(());
        }
        let name = event.name();
        self.clock = now;
        match &event {
            Event::Initialized(result)
            | Event::Began(result)
            | Event::OffsetsSent(result)
            | Event::Committed(result)
            | Event::Aborted(result) => {
                let ok = result.is_ok();
                self.call_since = None;
                self.answered(now, ok);
            }
            Event::Delivered { transaction, .. }
                if self.attempt_live && *transaction == self.attempt =>
            {
                self.answered(now, true);
            }
            _ => {}
        }
        if self.doomed.is_some() {
            match event {
                Event::Aborted(_) => {
                    let message = self.doomed.take().expect("checked above");
                    self.stop(message);
                }
                Event::Initialized(_)
                | Event::Began(_)
                | Event::OffsetsSent(_)
                | Event::Committed(_) => {
                    self.phase = Phase::Aborting;
                    self.ask(Action::AbortTransaction);
                }
                _ => {}
            }
            return Ok(());
        }
        match event {
            Event::Initialized(result) => {
                self.expect(Phase::Initializing, name)?;
                match result {
                    Ok(()) => {
                        self.failures = 0;
                        self.failing_since = None;
                        self.phase = Phase::AwaitingRecovery;
                        self.set_status(Status::Starting);
                    }
                    Err(error) => self.call_failed(now, Call::Init, error),
                }
            }
            Event::Recovered(recovery) => {
                self.expect(Phase::AwaitingRecovery, name)?;
                self.recover(now, &recovery)?;
            }
            Event::Message {
                time,
                position,
                bytes,
                message,
            } => {
                self.accept(time, position, bytes, message)?;
            }
            Event::Frontier(frontier) => {
                let frontier = Point::frontier(frontier);
                if frontier > self.input {
                    self.input = frontier;
                }
            }
            Event::Delivered {
                transaction,
                bytes,
                result,
            } => {
                if self.attempt_live && transaction == self.attempt {
                    self.in_flight = self.in_flight.saturating_sub(bytes);
                    if let Err(error) = result {
                        self.delivery_failed(error);
                    }
                }
            }
            Event::Began(result) => {
                self.expect(Phase::Beginning, name)?;
                match result {
                    Ok(()) => self.began(),
                    Err(error) => self.call_failed(now, Call::Begin, error),
                }
            }
            Event::OffsetsSent(result) => {
                self.expect(Phase::SendingOffsets, name)?;
                match result {
                    Ok(()) if self.poisoned.is_some() => self.start_abort(),
                    Ok(()) => {
                        self.phase = Phase::Committing;
                        self.ask(Action::CommitTransaction);
                    }
                    Err(error) => self.call_failed(now, Call::SendOffsets, error),
                }
            }
            Event::Committed(result) => {
                self.expect(Phase::Committing, name)?;
                match result {
                    Ok(()) => self.committed(now),
                    Err(error) => self.call_failed(now, Call::Commit, error),
                }
            }
            Event::Aborted(result) => {
                self.expect(Phase::Aborting, name)?;
                match result {
                    Ok(()) => self.aborted(now),
                    Err(error) => self.call_failed(now, Call::Abort, error),
                }
            }
            Event::Tick => {}
        }
        self.check_overdue(now);
        self.pump(now);
        self.update_pressure();
        Ok(())
    }

    fn expect(&self, phase: Phase, event: &'static str) -> Result<(), ProtocolError> {
        if self.phase == phase {
            Ok(())
        } else {
            Err(ProtocolError::UnexpectedEvent {
                sink_id: self.names.sink_id.clone(),
                worker: self.worker,
                event,
                state: self.phase.name(),
            })
        }
    }

    fn recover(&mut self, now: Duration, recovery: &Recovery) -> Result<(), ProtocolError> {
        if recovery.workers != self.workers {
            return Err(ProtocolError::WorkerCountMismatch {
                sink_id: self.names.sink_id.clone(),
                worker: self.worker,
                workers: self.workers,
                recovered: recovery.workers,
            });
        }
        self.recovered = true;
        self.next_seq = recovery.next_seq;
        self.recorded = recovery.resume.start_for_worker(self.worker, self.workers);
        self.recorded_at = now;
        if self.worker == 0 {
            self.base = recovery.resume.claims().to_vec();
        }
        self.phase = Phase::Idle;
        self.set_status(Status::Running);
        self.report(self.recorded.clone());
        Ok(())
    }

    fn accept(
        &mut self,
        time: u64,
        position: Bytes,
        bytes: usize,
        message: M,
    ) -> Result<(), ProtocolError> {
        let sink_id = || self.names.sink_id.clone();
        match &self.input {
            Point::Done => {
                return Err(ProtocolError::MessageAfterDone {
                    sink_id: sink_id(),
                    worker: self.worker,
                    time,
                })
            }
            Point::At { time: frontier, .. } if time < *frontier => {
                return Err(ProtocolError::MessageBeforeFrontier {
                    sink_id: sink_id(),
                    worker: self.worker,
                    time,
                    frontier: *frontier,
                })
            }
            Point::At { .. } => {}
        }
        if let Some((previous_time, previous_position)) = &self.last_fed {
            if (time, &position) < (*previous_time, previous_position) {
                return Err(ProtocolError::MessageOutOfOrder {
                    sink_id: sink_id(),
                    worker: self.worker,
                    time,
                    position: hex(&position),
                    previous_time: *previous_time,
                    previous_position: hex(previous_position),
                });
            }
        }
        if self.recovered && self.recorded.covers(time, &position) {
            return Err(ProtocolError::MessageAlreadyCommitted {
                sink_id: sink_id(),
                worker: self.worker,
                time,
                position: hex(&position),
            });
        }
        self.last_fed = Some((time, position.clone()));
        self.pending_bytes += bytes;
        self.pending.push_back(Staged {
            time,
            position,
            bytes,
            message,
        });
        Ok(())
    }

    fn input_passes(&self, time: u64) -> bool {
        match &self.input {
            Point::Done => true,
            Point::At { time: frontier, .. } => *frontier > time,
        }
    }

    /// Starts whatever the current phase allows, until the machine waits for an event.
    fn pump(&mut self, now: Duration) {
        match self.phase {
            Phase::Idle => self.start_next(now),
            Phase::Open => self.fill(now),
            Phase::Backoff { until, then } if now >= until => self.retry(then),
            _ => {}
        }
    }

    fn start_next(&mut self, now: Duration) {
        if !self.recovered {
            return;
        }
        let kind = if !self.announced {
            TxnKind::Announce
        } else if !self.pending.is_empty() {
            TxnKind::Data
        } else if self.input > self.recorded
            && (self.input == Point::Done
                || self.record_requested
                || now >= self.recorded_at + self.cadence.idle_progress_interval)
        {
            TxnKind::Progress
        } else {
            // Nothing of ours is pending or open, so everything before the input frontier is
            // in Kafka already, without a transaction to say so.
            self.report(self.input.clone());
            return;
        };
        self.txn = Some(Txn {
            kind,
            messages: Vec::new(),
            bytes: 0,
            last: None,
            time_bytes: 0,
            started_at: match self.interval_from.take() {
                Some(from) if now < from + self.cadence.commit_interval => from,
                _ => now,
            },
            closing: None,
            seq: None,
        });
        self.begin();
    }

    fn begin(&mut self) {
        self.open_on_broker = false;
        self.attempt_began = self.clock;
        self.attempt += 1;
        self.attempt_live = true;
        self.in_flight = 0;
        self.poisoned = None;
        self.phase = Phase::Beginning;
        self.ask(Action::BeginTransaction);
    }

    fn began(&mut self) {
        self.phase = Phase::Open;
        self.open_on_broker = true;
        self.recovered_from_stall();
        let txn = self
            .txn
            .as_ref()
            .expect("a transaction begins only when one is being built");
        if self.in_flight == 0 && !txn.messages.is_empty() {
            self.last_answer = self.clock;
        }
        for (bytes, message) in &txn.messages {
            self.in_flight += bytes;
            self.actions.push_back(Action::Produce {
                transaction: self.attempt,
                bytes: *bytes,
                message: message.clone(),
            });
        }
    }

    /// Moves pending messages into the open transaction and closes it when a rule says so.
    fn fill(&mut self, now: Duration) {
        let mut txn = self.txn.take().expect("an open phase has a transaction");
        if txn.kind == TxnKind::Progress && !self.pending.is_empty() {
            // Messages arrived while the progress-only transaction began: the input frontier
            // may be past them, so it can only be claimed once they are in.
            txn.kind = TxnKind::Data;
        }
        if txn.closing.is_none() {
            match txn.kind {
                TxnKind::Announce => txn.closing = Some(self.recorded.clone()),
                TxnKind::Progress => txn.closing = Some(self.input.clone()),
                TxnKind::Data => {
                    while let Some(next) = self.pending.front() {
                        if let Some(point) = self.close_before(&txn, next, now) {
                            txn.closing = Some(point);
                            break;
                        }
                        let staged = self.pending.pop_front().expect("front exists");
                        self.pending_bytes -= staged.bytes;
                        match &txn.last {
                            Some((time, _)) if *time == staged.time => {
                                txn.time_bytes += staged.bytes
                            }
                            _ => txn.time_bytes = staged.bytes,
                        }
                        txn.last = Some((staged.time, staged.position));
                        txn.bytes += staged.bytes;
                        txn.messages.push((staged.bytes, staged.message.clone()));
                        self.quiet_until_now();

                        self.in_flight += staged.bytes;
                        self.actions.push_back(Action::Produce {
                            transaction: self.attempt,
                            bytes: staged.bytes,
                            message: staged.message,
                        });
                    }
                    let last_time = txn.last.as_ref().map(|(time, _)| *time);
                    if let (true, Some(last_time)) = (txn.closing.is_none(), last_time) {
                        let due = txn.bytes >= self.cadence.max_transaction_bytes
                            || now >= txn.started_at + self.cadence.commit_interval
                            || self.input == Point::Done;
                        if due && self.input_passes(last_time) {
                            txn.closing = Some(self.input.clone());
                        }
                    }
                }
            }
        }
        let closing = txn.closing.is_some();
        self.txn = Some(txn);
        if closing {
            self.close();
        }
    }

    /// Whether the transaction must close before `next` joins it, and at which point.
    fn close_before(&self, txn: &Txn<M>, next: &Staged<M>, now: Duration) -> Option<Point> {
        let (last_time, last_position) = txn.last.as_ref()?;
        if next.time > *last_time {
            // Messages come in time order, so every time before `next` is complete.
            let due = txn.bytes >= self.cadence.max_transaction_bytes
                || now >= txn.started_at + self.cadence.commit_interval;
            due.then_some(Point::At {
                time: next.time,
                position: None,
            })
        } else if next.position > *last_position
            && txn.time_bytes >= self.cadence.max_transaction_bytes
        {
            // A time too large for one transaction: commit a chunk that ends where a new
            // position begins, so a key's messages at one time never straddle two transactions.
            Some(Point::At {
                time: *last_time,
                position: Some(last_position.to_vec()),
            })
        } else {
            None
        }
    }

    fn close(&mut self) {
        if self.poisoned.is_some() {
            self.start_abort();
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let txn = self
            .txn
            .as_mut()
            .expect("closing a transaction that exists");
        txn.seq = Some(seq);
        let record = ProgressRecord {
            seq,
            workers: self.workers,
            worker: self.worker,
            point: txn
                .closing
                .clone()
                .expect("a closing transaction has its point"),
            base: self.base.clone(),
            definition: self.names.definition.clone(),
        };
        let value = record.to_json();
        let bytes = self.progress_key.len() + value.len();
        self.quiet_until_now();

        self.in_flight += bytes;
        self.actions.push_back(Action::ProduceProgress {
            transaction: self.attempt,
            bytes,
            key: self.progress_key.clone(),
            value,
        });
        self.ask(Action::SendOffsets {
            group: self.group.clone(),
            offset: seq,
        });
        self.phase = Phase::SendingOffsets;
    }

    fn committed(&mut self, now: Duration) {
        let txn = self
            .txn
            .take()
            .expect("a commit finishes the transaction being built");
        let point = txn.closing.expect("a committed transaction was closing");
        if txn.kind == TxnKind::Data && now < txn.started_at + self.cadence.commit_interval {
            self.interval_from = Some(txn.started_at);
        }
        self.recorded = point.clone();
        self.recorded_at = now;
        if self.recorded >= self.input {
            self.record_requested = false;
        }
        self.attempt_live = false;
        self.in_flight = 0;
        self.failures = 0;
        self.failing_since = None;
        self.phase = Phase::Idle;
        self.recovered_from_stall();
        if txn.kind == TxnKind::Announce {
            self.announced = true;
            self.actions.push_back(Action::Announced);
        }
        self.report(point);
    }

    fn delivery_failed(&mut self, error: TxnError) {
        const SEND: &str = "a send";
        match error.kind {
            ErrorKind::Fenced | ErrorKind::Fatal | ErrorKind::Unsupported => {
                self.fail_for(&error, SEND);
            }
            ErrorKind::Retriable | ErrorKind::Abortable | ErrorKind::TimedOut => {
                if self.poisoned.is_none() {
                    self.poisoned = Some(error);
                }
                if self.phase == Phase::Open {
                    self.start_abort();
                }
            }
        }
    }

    fn start_abort(&mut self) {
        if let Some(error) = &self.poisoned {
            self.abort_reason = format!("a send failed: {error}");
        }
        self.phase = Phase::Aborting;
        self.ask(Action::AbortTransaction);
    }

    fn aborted(&mut self, now: Duration) {
        self.attempt_live = false;
        self.in_flight = 0;
        self.poisoned = None;
        let error = std::mem::take(&mut self.abort_reason);
        self.stall(
            now,
            Call::Begin,
            format!("{error}; resending the open transaction"),
        );
    }

    fn call_failed(&mut self, now: Duration, call: Call, error: TxnError) {
        match error.kind {
            ErrorKind::Fenced | ErrorKind::Fatal | ErrorKind::Unsupported => {
                self.fail_for(&error, &call.to_string());
            }
            ErrorKind::Abortable if matches!(call, Call::SendOffsets | Call::Commit) => {
                self.abort_reason = format!("{call} failed: {error}");
                self.start_abort();
            }
            _ => self.stall(now, call, format!("{call} failed: {error}")),
        }
    }

    fn stall(&mut self, now: Duration, then: Call, error: String) {
        let failing_since = *self.failing_since.get_or_insert(now);
        if now.saturating_sub(failing_since) >= self.cadence.give_up_after {
            let sink = &self.names.sink_id;
            let message = format!(
                "worker {} gave up after {} failed attempts over {} s (the limit is {} s; \
                 restart sink {sink:?} once the broker is reachable): {error}",
                self.worker,
                self.failures + 1,
                now.saturating_sub(failing_since).as_secs(),
                self.cadence.give_up_after.as_secs(),
            );
            self.stop(message);
            return;
        }
        let doublings = self.failures.min(20);
        self.failures += 1;
        let backoff = self
            .cadence
            .retry_backoff
            .saturating_mul(1 << doublings)
            .min(self.cadence.max_retry_backoff);
        let until = now + backoff;
        self.phase = Phase::Backoff { until, then };
        self.set_status(Status::Stalled {
            error,
            retry_at: until,
        });
    }

    fn retry(&mut self, call: Call) {
        match call {
            Call::Init => {
                self.phase = Phase::Initializing;
                self.ask(Action::InitTransactions);
            }
            Call::Begin => self.begin(),
            Call::SendOffsets if self.poisoned.is_some() => self.start_abort(),
            Call::SendOffsets => {
                let seq = self
                    .txn
                    .as_ref()
                    .and_then(|txn| txn.seq)
                    .expect("offsets follow a record");
                self.phase = Phase::SendingOffsets;
                self.ask(Action::SendOffsets {
                    group: self.group.clone(),
                    offset: seq,
                });
            }
            // A commit that timed out may have happened: only the commit call can tell, so it
            // is repeated even when a send failed meanwhile.
            Call::Commit => {
                self.phase = Phase::Committing;
                self.ask(Action::CommitTransaction);
            }
            Call::Abort => {
                self.phase = Phase::Aborting;
                self.ask(Action::AbortTransaction);
            }
        }
    }

    fn fail_for(&mut self, error: &TxnError, call: &str) {
        const SEND: &str = "a send";
        let id = self.names.transactional_id(self.worker);
        let sink = &self.names.sink_id;
        let open_for = self
            .attempt_live
            .then(|| self.clock.saturating_sub(self.attempt_began));
        let silent_for = self.clock.saturating_sub(self.last_answer);
        let timeout = self.cadence.transaction_timeout;
        let timed_out = match open_for.filter(|open| *open >= timeout) {
            Some(open) => Some(("its transaction stayed open", open)),
            None => (silent_for >= timeout).then_some(("the broker did not answer", silent_for)),
        };
        let message = match (error.kind, timed_out) {
            (ErrorKind::Fenced | ErrorKind::Fatal, Some((what, how_long))) => {
                let failed = if error.kind == ErrorKind::Fenced {
                    "was fenced"
                } else {
                    "failed for good"
                };
                format!(
                    "transactional id {id:?} {failed} during {call} after {what} for {} ms, \
                     longer than the transaction timeout of {} ms: the broker aborted the open \
                     transaction and bumped the producer's epoch (or a newer instance of sink \
                     {sink:?} took the id over meanwhile). Nothing of that transaction is \
                     visible; restart sink {sink:?} to resume exactly once from its last commit \
                     ({error})",
                    how_long.as_millis(),
                    timeout.as_millis(),
                )
            }
            (ErrorKind::Fenced, None) => format!(
                "transactional id {id:?} was fenced during {call}: a newer instance of sink {sink:?} \
                 took it over, so this one stops ({error})"
            ),
            (ErrorKind::Unsupported, _) => format!(
                "the broker does not support transactions ({error}); sink {sink:?} needs them for \
                 exactly-once delivery: use a broker with transactions, or run the sink in \
                 at-least-once mode"
            ),
            (ErrorKind::Fatal, None) if call == SEND => format!(
                "cannot write a message ({error}); the open transaction is aborted and the sink \
                 stops"
            ),
            _ => format!(
                "fatal producer error for transactional id {id:?} during {call} ({error}); \
                 restart sink {sink:?}"
            ),
        };
        if error.kind != ErrorKind::Fenced && self.attempt_live && self.open_on_broker {
            // The transaction holds back `read_committed` readers until it ends: abort it first
            // (after the call in flight, if any, has answered).
            self.doomed = Some(message);
            if self.call_since.is_none() {
                self.phase = Phase::Aborting;
                self.ask(Action::AbortTransaction);
            }
            return;
        }
        self.stop(message);
    }

    /// Stops for good with `message`.
    fn stop(&mut self, message: String) {
        self.phase = Phase::Failed;
        self.txn = None;
        self.pending.clear();
        self.pending_bytes = 0;
        self.call_since = None;
        self.set_status(Status::Failed { error: message });
    }

    /// Asks the driver for a transactional call.
    fn ask(&mut self, call: Action<M>) {
        self.call_since = Some(self.clock);
        self.actions.push_back(call);
    }

    /// Sends are about to be in flight: if none were, the broker's silence starts now.
    fn quiet_until_now(&mut self) {
        if self.in_flight == 0 {
            self.last_answer = self.clock;
        }
    }

    /// The broker answered a call or a send at `now`.
    fn answered(&mut self, now: Duration, ok: bool) {
        self.last_answer = now;
        if std::mem::take(&mut self.overdue) && ok {
            self.recovered_from_stall();
        }
    }

    /// Reports stalled once the broker has been silent for longer than `answer_overdue`.
    fn check_overdue(&mut self, now: Duration) {
        if self.overdue || !matches!(self.status, Status::Running) {
            return;
        }
        let Some(since) = self.waiting_since() else {
            return;
        };
        let silent = now.saturating_sub(since);
        if silent >= self.cadence.answer_overdue {
            self.overdue = true;
            let waiting_for = match self.phase {
                Phase::Open => "acknowledgements of sent messages".to_string(),
                phase => format!("an answer while {}", phase.name()),
            };
            self.set_status(Status::Stalled {
                error: format!(
                    "the broker has not answered for {} ms (waiting for {waiting_for})",
                    silent.as_millis()
                ),
                retry_at: now,
            });
        }
    }

    fn recovered_from_stall(&mut self) {
        if matches!(self.status, Status::Stalled { .. }) {
            self.set_status(Status::Running);
        }
    }

    fn set_status(&mut self, status: Status) {
        if self.status != status {
            self.status = status.clone();
            self.actions.push_back(Action::Status(status));
        }
    }

    fn report(&mut self, point: Point) {
        let frontier = Point::frontier(point.time());
        if self
            .reported
            .as_ref()
            .is_none_or(|reported| frontier > *reported)
        {
            self.actions.push_back(Action::Frontier(frontier.time()));
            self.reported = Some(frontier);
        }
    }

    fn update_pressure(&mut self) {
        if self.phase == Phase::Failed {
            return;
        }
        let load = self.pending_bytes + self.in_flight;
        if !self.paused && load >= self.cadence.max_in_flight_bytes {
            self.paused = true;
            self.actions.push_back(Action::Pause);
        } else if self.paused && load <= self.cadence.max_in_flight_bytes / 2 {
            self.paused = false;
            self.actions.push_back(Action::Resume);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ProgressScan, Resume};
    use std::collections::BTreeMap;

    type TestMachine = Machine<&'static str>;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn names() -> SinkNames {
        SinkNames::new("s", "tx-", "pg-")
    }

    fn cadence() -> Cadence {
        Cadence {
            commit_interval: ms(100),
            max_transaction_bytes: 10,
            max_in_flight_bytes: 1000,
            idle_progress_interval: ms(1000),
            retry_backoff: ms(10),
            max_retry_backoff: ms(40),
            ..Cadence::default()
        }
    }

    fn fresh(workers: u32) -> Arc<Recovery> {
        Arc::new(ProgressScan::new(&names()).recover(&BTreeMap::new(), workers))
    }

    fn drain(machine: &mut TestMachine) -> Vec<Action<&'static str>> {
        std::iter::from_fn(|| machine.poll_action()).collect()
    }

    fn ok(
        machine: &mut TestMachine,
        now: u64,
        event: Event<&'static str>,
    ) -> Vec<Action<&'static str>> {
        machine.handle(ms(now), event).unwrap();
        drain(machine)
    }

    fn message(time: u64, position: &str, bytes: usize, text: &'static str) -> Event<&'static str> {
        Event::Message {
            time,
            position: Bytes::copy_from_slice(position.as_bytes()),
            bytes,
            message: text,
        }
    }

    fn record_of(actions: &[Action<&'static str>]) -> ProgressRecord {
        actions
            .iter()
            .find_map(|action| match action {
                Action::ProduceProgress { key, value, .. } => {
                    Some(ProgressRecord::parse(key, value).unwrap())
                }
                _ => None,
            })
            .expect("a progress record was produced")
    }

    fn produced(actions: &[Action<&'static str>]) -> Vec<&'static str> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Produce { message, .. } => Some(*message),
                _ => None,
            })
            .collect()
    }

    /// A worker 1 machine that is running (worker 1 does not announce).
    fn running(workers: u32) -> TestMachine {
        let mut machine = Machine::new(names(), cadence(), 1, workers);
        assert_eq!(
            drain(&mut machine),
            vec![Action::Status(Status::Starting), Action::InitTransactions]
        );
        assert!(ok(&mut machine, 0, Event::Initialized(Ok(()))).is_empty());
        let actions = ok(&mut machine, 0, Event::Recovered(fresh(workers)));
        assert_eq!(
            actions,
            vec![Action::Status(Status::Running), Action::Frontier(Some(0))]
        );
        machine
    }

    /// Commits the transaction whose closing actions are `actions`; returns what followed.
    fn commit(machine: &mut TestMachine, now: u64) -> Vec<Action<&'static str>> {
        assert_eq!(
            ok(machine, now, Event::OffsetsSent(Ok(()))),
            vec![Action::CommitTransaction]
        );
        ok(machine, now, Event::Committed(Ok(())))
    }

    #[test]
    fn worker_zero_announces_the_run_before_anything_else() {
        let mut machine: TestMachine = Machine::new(names(), cadence(), 0, 2);
        drain(&mut machine);
        ok(&mut machine, 0, Event::Initialized(Ok(())));
        let mut scan = ProgressScan::new(&names());
        let old = ProgressRecord {
            seq: 4,
            workers: 1,
            worker: 0,
            point: Point::At {
                time: 7,
                position: None,
            },
            base: vec![],
            definition: None,
        };
        scan.push(b"s/0", Some(&old.to_json())).unwrap();
        let recovery = Arc::new(scan.recover(&BTreeMap::from([(0, 4)]), 2));
        machine.handle(ms(0), message(7, "a", 1, "early")).unwrap();
        let actions = ok(&mut machine, 0, Event::Recovered(recovery));
        assert_eq!(
            actions,
            vec![
                Action::Status(Status::Running),
                Action::Frontier(Some(7)),
                Action::BeginTransaction
            ]
        );
        let actions = ok(&mut machine, 1, Event::Began(Ok(())));
        let record = record_of(&actions);
        assert_eq!(record.seq, 5);
        assert_eq!((record.workers, record.worker), (2, 0));
        assert_eq!(
            record.point,
            Point::At {
                time: 7,
                position: None
            }
        );
        assert_eq!(
            record.base,
            vec![Claim {
                workers: 1,
                worker: 0,
                point: old.point.clone()
            }]
        );
        assert!(
            produced(&actions).is_empty(),
            "the announcement carries no data"
        );
        assert_eq!(
            actions.last(),
            Some(&Action::SendOffsets {
                group: "pg-s-0".into(),
                offset: 5
            })
        );
        let actions = commit(&mut machine, 2);
        assert_eq!(actions, vec![Action::Announced, Action::BeginTransaction]);
    }

    #[test]
    fn a_transaction_closes_at_a_time_boundary_once_the_interval_passed() {
        let mut machine = running(2);
        assert_eq!(
            ok(&mut machine, 0, message(1, "a", 2, "a1")),
            vec![Action::BeginTransaction]
        );
        assert_eq!(
            ok(&mut machine, 0, Event::Began(Ok(()))),
            vec![Action::Produce {
                transaction: 1,
                bytes: 2,
                message: "a1"
            }]
        );
        assert_eq!(
            produced(&ok(&mut machine, 10, message(1, "b", 2, "b1"))),
            vec!["b1"]
        );
        // Time 2 starts before the interval passed: same transaction.
        assert_eq!(
            produced(&ok(&mut machine, 20, message(2, "a", 2, "a2"))),
            vec!["a2"]
        );
        // The frontier passes 2 but the interval has not elapsed.
        assert!(ok(&mut machine, 50, Event::Frontier(Some(3))).is_empty());
        assert_eq!(machine.next_wakeup(), Some(ms(100)));
        let actions = ok(&mut machine, 100, Event::Tick);
        let record = record_of(&actions);
        assert_eq!(
            record.point,
            Point::At {
                time: 3,
                position: None
            }
        );
        assert!(record.base.is_empty(), "only worker 0 carries the base");
        assert_eq!(commit(&mut machine, 110), vec![Action::Frontier(Some(3))]);
        assert_eq!(machine.committed_frontier(), Some(Some(3)));
    }

    #[test]
    fn after_a_full_transaction_the_next_commits_on_the_interval_begun_before_it() {
        let mut machine = running(2);
        ok(&mut machine, 0, message(1, "a", 6, "a1"));
        ok(&mut machine, 0, Event::Began(Ok(())));
        ok(&mut machine, 10, message(2, "a", 6, "a2"));
        // 12 bytes reach the bound of 10: the transaction closes at the next time, well
        // before its interval is up.
        let actions = ok(&mut machine, 20, message(3, "a", 1, "a3"));
        assert_eq!(
            record_of(&actions).point,
            Point::At {
                time: 3,
                position: None
            }
        );
        assert_eq!(
            commit(&mut machine, 30),
            vec![Action::Frontier(Some(3)), Action::BeginTransaction]
        );
        assert_eq!(
            produced(&ok(&mut machine, 30, Event::Began(Ok(())))),
            vec!["a3"]
        );
        // Time 3 is complete at 40: its transaction commits 100 ms after the full one opened
        // (at 0), not 100 ms after it opened itself (at 30).
        assert!(ok(&mut machine, 40, Event::Frontier(Some(4))).is_empty());
        assert_eq!(machine.next_wakeup(), Some(ms(100)));
        let actions = ok(&mut machine, 100, Event::Tick);
        assert_eq!(
            record_of(&actions).point,
            Point::At {
                time: 4,
                position: None
            }
        );
        assert_eq!(commit(&mut machine, 105), vec![Action::Frontier(Some(4))]);
        // That one was not full: the next interval starts with the next transaction.
        ok(&mut machine, 120, message(4, "a", 1, "a4"));
        ok(&mut machine, 120, Event::Began(Ok(())));
        assert!(ok(&mut machine, 130, Event::Frontier(Some(5))).is_empty());
        assert_eq!(machine.next_wakeup(), Some(ms(220)));
    }

    #[test]
    fn a_time_still_open_keeps_the_transaction_open() {
        let mut machine = running(2);
        ok(&mut machine, 0, message(4, "a", 1, "a4"));
        ok(&mut machine, 0, Event::Began(Ok(())));
        // Interval passed, but time 4 may still get messages.
        assert!(ok(&mut machine, 500, Event::Tick).is_empty());
        assert!(ok(&mut machine, 500, Event::Frontier(Some(4))).is_empty());
        let actions = ok(&mut machine, 500, Event::Frontier(Some(9)));
        assert_eq!(
            record_of(&actions).point,
            Point::At {
                time: 9,
                position: None
            }
        );
    }

    #[test]
    fn a_big_time_commits_in_chunks_at_position_boundaries() {
        let mut machine = running(2);
        ok(&mut machine, 0, message(0, "a", 6, "a"));
        ok(&mut machine, 0, Event::Began(Ok(())));
        assert_eq!(
            produced(&ok(&mut machine, 0, message(0, "b", 6, "b"))),
            vec!["b"]
        );
        // 12 bytes at time 0 reach the bound; "b" again has the same position and stays.
        assert_eq!(
            produced(&ok(&mut machine, 0, message(0, "b", 1, "b'"))),
            vec!["b'"]
        );
        let actions = ok(&mut machine, 0, message(0, "c", 6, "c"));
        assert!(produced(&actions).is_empty());
        assert_eq!(
            record_of(&actions).point,
            Point::At {
                time: 0,
                position: Some(b"b".to_vec())
            }
        );
        let actions = commit(&mut machine, 1);
        assert_eq!(
            actions,
            vec![Action::BeginTransaction],
            "the chunk covers no whole time"
        );
        assert_eq!(machine.committed_frontier(), Some(Some(0)));
        assert_eq!(
            produced(&ok(&mut machine, 1, Event::Began(Ok(())))),
            vec!["c"]
        );
        let actions = ok(&mut machine, 1, Event::Frontier(None));
        assert_eq!(record_of(&actions).point, Point::Done);
        assert_eq!(commit(&mut machine, 2), vec![Action::Frontier(None)]);
    }

    #[test]
    fn a_small_time_is_never_split_even_when_the_transaction_is_full() {
        let mut machine = running(2);
        ok(&mut machine, 0, message(0, "a", 8, "a0"));
        ok(&mut machine, 0, Event::Began(Ok(())));
        // Time 1 starts in a transaction holding 8 bytes and takes it past the bound, but its
        // own bytes stay below the bound, so it is not split.
        for (position, text) in [("a", "a1"), ("b", "b1"), ("c", "c1")] {
            let actions = ok(&mut machine, 0, message(1, position, 3, text));
            assert_eq!(produced(&actions), vec![text]);
            assert!(record_of_opt(&actions).is_none());
        }
        let actions = ok(&mut machine, 0, message(2, "a", 1, "a2"));
        assert!(produced(&actions).is_empty());
        assert_eq!(
            record_of(&actions).point,
            Point::At {
                time: 2,
                position: None
            }
        );
    }

    fn record_of_opt(actions: &[Action<&'static str>]) -> Option<ProgressRecord> {
        actions.iter().find_map(|action| match action {
            Action::ProduceProgress { key, value, .. } => {
                Some(ProgressRecord::parse(key, value).unwrap())
            }
            _ => None,
        })
    }

    #[test]
    fn idle_frontiers_are_reported_at_once_and_recorded_rarely() {
        let mut machine = running(2);
        assert_eq!(
            ok(&mut machine, 10, Event::Frontier(Some(5))),
            vec![Action::Frontier(Some(5))]
        );
        assert_eq!(
            ok(&mut machine, 20, Event::Frontier(Some(6))),
            vec![Action::Frontier(Some(6))]
        );
        assert_eq!(machine.next_wakeup(), Some(ms(1000)));
        assert_eq!(
            ok(&mut machine, 1000, Event::Tick),
            vec![Action::BeginTransaction]
        );
        let actions = ok(&mut machine, 1000, Event::Began(Ok(())));
        assert_eq!(
            record_of(&actions).point,
            Point::At {
                time: 6,
                position: None
            }
        );
        assert!(commit(&mut machine, 1001).is_empty());
        // The end is recorded without waiting.
        assert_eq!(
            ok(&mut machine, 1002, Event::Frontier(None)),
            vec![Action::BeginTransaction]
        );
        let actions = ok(&mut machine, 1002, Event::Began(Ok(())));
        assert_eq!(record_of(&actions).point, Point::Done);
        assert_eq!(commit(&mut machine, 1003), vec![Action::Frontier(None)]);
        assert_eq!(machine.next_wakeup(), None);
    }

    #[test]
    fn a_requested_record_of_the_input_frontier_does_not_wait_for_the_idle_interval() {
        let mut machine = running(2);
        assert_eq!(
            ok(&mut machine, 10, Event::Frontier(Some(5))),
            vec![Action::Frontier(Some(5))]
        );
        assert!(!machine.input_recorded());
        machine.record_input_frontier(ms(20));
        assert_eq!(drain(&mut machine), vec![Action::BeginTransaction]);
        let actions = ok(&mut machine, 20, Event::Began(Ok(())));
        assert_eq!(
            record_of(&actions).point,
            Point::At {
                time: 5,
                position: None
            }
        );
        assert!(commit(&mut machine, 21).is_empty());
        assert!(machine.input_recorded());
        // Later idle frontiers wait for the interval again.
        assert_eq!(
            ok(&mut machine, 30, Event::Frontier(Some(6))),
            vec![Action::Frontier(Some(6))]
        );
        assert_eq!(machine.next_wakeup(), Some(ms(1021)));
    }

    #[test]
    fn a_progress_transaction_takes_the_messages_that_arrived_while_it_began() {
        let mut machine = running(2);
        // The idle interval has passed, so the frontier gets a transaction of its own.
        assert_eq!(
            ok(&mut machine, 1000, Event::Frontier(Some(4))),
            vec![Action::BeginTransaction]
        );
        ok(&mut machine, 1001, message(4, "a", 1, "a4"));
        ok(&mut machine, 1002, Event::Frontier(Some(5)));
        let actions = ok(&mut machine, 1003, Event::Began(Ok(())));
        assert_eq!(produced(&actions), vec!["a4"]);
        // The frontier is past the message, but the transaction is young: no claim yet, and
        // certainly not one that skips the message.
        assert!(record_of_opt(&actions).is_none());
        let actions = ok(&mut machine, 1100, Event::Tick);
        assert_eq!(
            record_of(&actions).point,
            Point::At {
                time: 5,
                position: None
            }
        );
        assert_eq!(produced(&actions), Vec::<&str>::new());
    }

    #[test]
    fn a_timed_out_commit_is_retried_never_aborted() {
        let mut machine = running(2);
        ok(&mut machine, 0, message(0, "a", 1, "a"));
        ok(&mut machine, 0, Event::Began(Ok(())));
        ok(&mut machine, 0, Event::Frontier(None));
        assert_eq!(
            ok(&mut machine, 0, Event::OffsetsSent(Ok(()))),
            vec![Action::CommitTransaction]
        );
        let timeout = TxnError::new(ErrorKind::TimedOut, "EndTxn timed out");
        let actions = ok(&mut machine, 5, Event::Committed(Err(timeout)));
        assert!(
            matches!(&actions[..], [Action::Status(Status::Stalled { retry_at, .. })] if *retry_at == ms(15))
        );
        assert!(ok(&mut machine, 14, Event::Tick).is_empty());
        assert_eq!(
            ok(&mut machine, 15, Event::Tick),
            vec![Action::CommitTransaction]
        );
        let actions = ok(&mut machine, 16, Event::Committed(Ok(())));
        assert_eq!(
            actions,
            vec![Action::Status(Status::Running), Action::Frontier(None)]
        );
    }

    #[test]
    fn an_abortable_commit_aborts_and_resends_the_transaction_with_a_new_seq() {
        let mut machine = running(2);
        ok(&mut machine, 0, message(0, "a", 1, "a"));
        ok(&mut machine, 0, Event::Began(Ok(())));
        ok(&mut machine, 0, message(0, "b", 1, "b"));
        let first = record_of(&ok(&mut machine, 100, Event::Frontier(Some(1))));
        ok(&mut machine, 100, Event::OffsetsSent(Ok(())));
        let error = TxnError::new(ErrorKind::Abortable, "coordinator aborted");
        assert_eq!(
            ok(&mut machine, 101, Event::Committed(Err(error))),
            vec![Action::AbortTransaction]
        );
        let actions = ok(&mut machine, 102, Event::Aborted(Ok(())));
        assert!(
            matches!(&actions[..], [Action::Status(Status::Stalled { error, retry_at })] if error.contains("coordinator aborted") && *retry_at == ms(112))
        );
        assert_eq!(
            ok(&mut machine, 112, Event::Tick),
            vec![Action::BeginTransaction]
        );
        let actions = ok(&mut machine, 112, Event::Began(Ok(())));
        assert_eq!(produced(&actions), vec!["a", "b"]);
        let second = record_of(&actions);
        assert_eq!(second.point, first.point);
        assert!(
            second.seq > first.seq,
            "a seq is never reused, even after an abort"
        );
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::Produce { transaction: 2, .. })));
    }

    #[test]
    fn a_silent_broker_makes_the_worker_stalled_until_it_answers() {
        let mut machine = running(2);
        assert_eq!(
            ok(&mut machine, 0, message(0, "a", 1, "a")),
            vec![Action::BeginTransaction]
        );
        assert_eq!(machine.next_wakeup(), Some(ms(5000)));
        assert!(ok(&mut machine, 4999, Event::Tick).is_empty());
        let actions = ok(&mut machine, 5000, Event::Tick);
        assert!(
            matches!(&actions[..], [Action::Status(Status::Stalled { error, .. })]
                if error.contains("has not answered for 5000 ms") && error.contains("beginning a transaction")),
            "{actions:?}"
        );
        assert_eq!(machine.next_wakeup(), None, "reported once");
        let actions = ok(&mut machine, 7000, Event::Began(Ok(())));
        assert!(
            actions.contains(&Action::Status(Status::Running)),
            "{actions:?}"
        );
        // The message now waits for its acknowledgement, which is due 5 s after it was sent.
        assert_eq!(machine.next_wakeup(), Some(ms(12000)));
    }

    #[test]
    fn calls_that_keep_failing_stop_the_worker_after_the_give_up_bound() {
        let cadence = Cadence {
            give_up_after: ms(1000),
            ..cadence()
        };
        let mut machine: TestMachine = Machine::new(names(), cadence, 1, 2);
        drain(&mut machine);
        let error = || TxnError::new(ErrorKind::TimedOut, "broker down");
        let mut now = 0;
        loop {
            let actions = ok(&mut machine, now, Event::Initialized(Err(error())));
            if let Some(Action::Status(Status::Failed { error })) = actions.last() {
                assert!(
                    error.contains("gave up after") && error.contains("broker down"),
                    "{error}"
                );
                assert!(now >= 1000, "gave up at {now} ms");
                break;
            }
            assert!(now < 2000, "still retrying at {now} ms");
            now = machine
                .next_wakeup()
                .expect("a retry is scheduled")
                .as_millis() as u64;
            assert_eq!(
                ok(&mut machine, now, Event::Tick),
                vec![Action::InitTransactions]
            );
        }
        assert_eq!(machine.next_wakeup(), None);
    }

    #[test]
    fn a_fence_after_the_transaction_timeout_names_the_timeout_not_a_newer_instance() {
        let mut machine = running(2);
        ok(&mut machine, 0, message(0, "a", 1, "a"));
        ok(&mut machine, 0, Event::Began(Ok(())));
        ok(
            &mut machine,
            1,
            Event::Delivered {
                transaction: 1,
                bytes: 1,
                result: Ok(()),
            },
        );
        ok(&mut machine, 61_000, Event::Frontier(Some(1)));
        let fenced = TxnError::new(ErrorKind::Fenced, "ProducerFenced");
        ok(
            &mut machine,
            61_001,
            Event::OffsetsSent(Err(fenced.clone())),
        );
        let Status::Failed { error } = machine.status().clone() else {
            panic!("{:?}", machine.status())
        };
        assert!(
            error.contains("after its transaction stayed open for 61001 ms, longer than the transaction timeout of 60000 ms")
                && error.contains("restart sink"),
            "{error}"
        );

        // Within the timeout, a fence means a newer instance.
        let mut machine = running(2);
        ok(&mut machine, 0, message(0, "a", 1, "a"));
        ok(&mut machine, 0, Event::Began(Ok(())));
        ok(&mut machine, 100, Event::Frontier(Some(1)));
        ok(&mut machine, 101, Event::OffsetsSent(Err(fenced)));
        let Status::Failed { error } = machine.status().clone() else {
            panic!("{:?}", machine.status())
        };
        assert!(error.contains("a newer instance"), "{error}");
    }

    #[test]
    fn a_message_the_broker_refuses_aborts_the_transaction_before_the_worker_stops() {
        let mut machine = running(2);
        ok(&mut machine, 0, message(0, "a", 1, "a"));
        ok(&mut machine, 0, Event::Began(Ok(())));
        ok(&mut machine, 0, message(0, "b", 1, "b"));
        let too_large = TxnError::new(ErrorKind::Fatal, "key \"b\": MessageSizeTooLarge");
        let actions = ok(
            &mut machine,
            1,
            Event::Delivered {
                transaction: 1,
                bytes: 1,
                result: Err(too_large),
            },
        );
        assert_eq!(actions, vec![Action::AbortTransaction]);
        assert_eq!(
            machine.status(),
            &Status::Running,
            "not failed before the abort"
        );
        let actions = ok(&mut machine, 2, Event::Aborted(Ok(())));
        assert!(
            matches!(&actions[..], [Action::Status(Status::Failed { error })]
                if error.contains("cannot write a message") && error.contains("key \"b\"")),
            "{actions:?}"
        );
    }

    #[test]
    fn a_failed_send_aborts_and_late_reports_of_the_old_attempt_are_ignored() {
        let mut machine = running(2);
        ok(&mut machine, 0, message(0, "a", 1, "a"));
        ok(&mut machine, 0, Event::Began(Ok(())));
        let error = TxnError::new(ErrorKind::Retriable, "message timed out");
        let actions = ok(
            &mut machine,
            1,
            Event::Delivered {
                transaction: 1,
                bytes: 1,
                result: Err(error.clone()),
            },
        );
        assert_eq!(actions, vec![Action::AbortTransaction]);
        ok(&mut machine, 2, Event::Aborted(Ok(())));
        ok(&mut machine, 20, Event::Tick);
        assert_eq!(
            produced(&ok(&mut machine, 20, Event::Began(Ok(())))),
            vec!["a"]
        );
        // A late failure of attempt 1 must not poison attempt 2.
        let late = ok(
            &mut machine,
            21,
            Event::Delivered {
                transaction: 1,
                bytes: 1,
                result: Err(error),
            },
        );
        assert!(late.is_empty());
        let actions = ok(&mut machine, 22, Event::Frontier(None));
        assert!(record_of_opt(&actions).is_some());
    }

    #[test]
    fn a_send_failing_while_offsets_are_sent_aborts_instead_of_committing() {
        let mut machine = running(2);
        ok(&mut machine, 0, message(0, "a", 1, "a"));
        ok(&mut machine, 0, Event::Began(Ok(())));
        ok(&mut machine, 0, Event::Frontier(None));
        let error = TxnError::new(ErrorKind::Retriable, "broker down");
        assert!(ok(
            &mut machine,
            1,
            Event::Delivered {
                transaction: 1,
                bytes: 1,
                result: Err(error)
            }
        )
        .is_empty());
        assert_eq!(
            ok(&mut machine, 1, Event::OffsetsSent(Ok(()))),
            vec![Action::AbortTransaction]
        );
    }

    #[test]
    fn fencing_fails_the_worker_for_good() {
        let mut machine = running(2);
        ok(&mut machine, 0, message(0, "a", 1, "a"));
        ok(&mut machine, 0, Event::Began(Ok(())));
        let fenced = TxnError::new(ErrorKind::Fenced, "ProducerFenced");
        let actions = ok(
            &mut machine,
            1,
            Event::Delivered {
                transaction: 1,
                bytes: 1,
                result: Err(fenced),
            },
        );
        let [Action::Status(Status::Failed { error })] = &actions[..] else {
            panic!("{actions:?}")
        };
        assert!(
            error.contains("\"tx-s-1\"") && error.contains("fenced"),
            "{error}"
        );
        assert!(ok(&mut machine, 2, Event::Frontier(None)).is_empty());
        assert!(
            ok(&mut machine, 2, Event::Committed(Ok(()))).is_empty(),
            "a failed machine ignores events"
        );
    }

    #[test]
    fn a_broker_without_transactions_points_at_the_at_least_once_mode() {
        let mut machine: TestMachine = Machine::new(names(), cadence(), 0, 1);
        drain(&mut machine);
        let error = TxnError::new(ErrorKind::Unsupported, "InitProducerId: UnsupportedVersion");
        let actions = ok(&mut machine, 0, Event::Initialized(Err(error)));
        let [Action::Status(Status::Failed { error })] = &actions[..] else {
            panic!("{actions:?}")
        };
        assert!(error.contains("at-least-once"), "{error}");
    }

    #[test]
    fn a_retriable_init_is_retried_with_growing_backoff() {
        let mut machine: TestMachine = Machine::new(names(), cadence(), 0, 1);
        drain(&mut machine);
        let error = || TxnError::new(ErrorKind::Retriable, "coordinator loading");
        let mut now = 0;
        for backoff in [10, 20, 40, 40] {
            let actions = ok(&mut machine, now, Event::Initialized(Err(error())));
            assert!(
                matches!(&actions[..], [Action::Status(Status::Stalled { retry_at, .. })] if *retry_at == ms(now + backoff)),
                "{actions:?}"
            );
            now += backoff;
            assert_eq!(
                ok(&mut machine, now, Event::Tick),
                vec![Action::InitTransactions]
            );
        }
        assert_eq!(
            ok(&mut machine, now, Event::Initialized(Ok(()))),
            vec![Action::Status(Status::Starting)]
        );
    }

    #[test]
    fn the_caller_pauses_while_too_much_is_in_flight() {
        let mut machine = Machine::new(
            names(),
            Cadence {
                max_in_flight_bytes: 4,
                ..cadence()
            },
            1,
            2,
        );
        drain(&mut machine);
        ok(&mut machine, 0, Event::Initialized(Ok(())));
        ok(&mut machine, 0, Event::Recovered(fresh(2)));
        ok(&mut machine, 0, message(0, "a", 2, "a"));
        let actions = ok(&mut machine, 0, message(0, "b", 2, "b"));
        assert_eq!(actions, vec![Action::Pause]);
        let actions = ok(&mut machine, 0, Event::Began(Ok(())));
        assert_eq!(produced(&actions), vec!["a", "b"]);
        assert!(
            !actions.contains(&Action::Resume),
            "produced but not yet acknowledged"
        );
        let actions = ok(
            &mut machine,
            1,
            Event::Delivered {
                transaction: 1,
                bytes: 2,
                result: Ok(()),
            },
        );
        assert_eq!(actions, vec![Action::Resume]);
    }

    #[test]
    fn contract_violations_are_errors_naming_the_worker() {
        let mut machine = running(2);
        machine.handle(ms(0), message(3, "b", 1, "b")).unwrap();
        let error = machine.handle(ms(0), message(3, "a", 1, "a")).unwrap_err();
        assert!(
            matches!(error, ProtocolError::MessageOutOfOrder { worker: 1, .. }),
            "{error}"
        );
        machine.handle(ms(0), Event::Frontier(Some(5))).unwrap();
        let error = machine.handle(ms(0), message(4, "z", 1, "z")).unwrap_err();
        assert!(matches!(
            error,
            ProtocolError::MessageBeforeFrontier {
                time: 4,
                frontier: 5,
                ..
            }
        ));
        let error = machine.handle(ms(0), Event::Committed(Ok(()))).unwrap_err();
        assert!(error.to_string().contains("Committed"), "{error}");
        machine.handle(ms(0), Event::Frontier(None)).unwrap();
        let error = machine.handle(ms(0), message(9, "z", 1, "z")).unwrap_err();
        assert!(matches!(error, ProtocolError::MessageAfterDone { .. }));
        let other = Arc::new(Recovery {
            workers: 3,
            ..(*fresh(1)).clone()
        });
        let mut machine: TestMachine = Machine::new(names(), cadence(), 0, 2);
        machine.handle(ms(0), Event::Initialized(Ok(()))).unwrap();
        let error = machine.handle(ms(0), Event::Recovered(other)).unwrap_err();
        assert!(matches!(
            error,
            ProtocolError::WorkerCountMismatch {
                workers: 2,
                recovered: 3,
                ..
            }
        ));
    }

    #[test]
    fn messages_the_topic_already_holds_are_refused() {
        let mut machine: TestMachine = Machine::new(names(), cadence(), 0, 1);
        machine.handle(ms(0), Event::Initialized(Ok(()))).unwrap();
        let recovery = Recovery {
            resume: Resume::new([Claim {
                workers: 1,
                worker: 0,
                point: Point::At {
                    time: 2,
                    position: Some(b"m".to_vec()),
                },
            }]),
            ..(*fresh(1)).clone()
        };
        machine
            .handle(ms(0), Event::Recovered(Arc::new(recovery)))
            .unwrap();
        let error = machine.handle(ms(0), message(2, "k", 1, "k")).unwrap_err();
        assert!(
            matches!(
                error,
                ProtocolError::MessageAlreadyCommitted { time: 2, .. }
            ),
            "{error}"
        );
        machine.handle(ms(0), message(2, "n", 1, "n")).unwrap();
    }
}
