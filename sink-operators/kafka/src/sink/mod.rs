//! `sink_kafka`: renders a sink into the dataflow — keying, combining into before/after pairs,
//! encoding, partitioning, and one transactional producer per worker driven by the protocol's
//! state machine.
//!
//! ```text
//! rows ─ key_by ─ arrange by key hash ─ combine_at_timestamp ─┬─ pairs ──────┐
//!                                                             └─ violations ─┤
//! SinkInit (every worker: init transactions) ─▶ worker 0: SinkRecover ─▶ broadcast ─▶ SinkKafka ─▶ committed
//! ```
//!
//! A sink runs in two steps. [`SinkPlan::preflight`] does the blocking admin work once per
//! process, before the dataflow is built (connection check, data and progress topics, Avro
//! schemas); `sink_kafka` on the [`PreparedSink`] it returns then renders the operators, one
//! per file: `init`, `recover` (worker 0), `produce` (the sink itself), sharing a
//! worker's state (`worker`).
//!
//! Startup follows the order of [`outflow_protocol`]: every worker initializes its producer
//! (fencing the previous holder of its transactional id); once all have, worker 0 reads the
//! progress topic, fences retired ids, recovers, and announces the run in its first
//! transaction; the recovery is then broadcast and every worker's machine starts. Pairs that
//! the topic already holds are dropped by the resume filter before they are encoded.
//!
//! Partitioning: with `PARTITION BY`, the expression's value on the row (`after`, or `before`
//! for a delete) modulo the partition count, NULL or negative values going to partition 0.
//! Without it, `kafka_murmur2` of the encoded key without any Confluent header (so a key keeps
//! its partition when its Avro schema id changes, and JSON, TEXT and BYTES keys land where the
//! Java client puts them). Keyless messages are spread by the stable hash of the row's pairing
//! key (its unique key, or the whole row), so one row's updates stay in order on one
//! partition.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::trace::{BatchCursor, Cursor, Navigable, TraceReader};
use differential_dataflow::VecCollection;
use outflow_protocol::Machine;
use timely::dataflow::operators::Probe;
use timely::dataflow::{ProbeHandle, Scope, Stream};

use crate::dataflow::operators::{CombineAtTimestamp, CombineOptions, Combined, KeyBy, PairCredit};
use crate::dataflow::Row;
use crate::producer::ProducerDriver;
use crate::status::{SinkMonitor, SinkStatus};
use worker::{Wakers, WorkerSink};

mod explain;
mod init;
mod plan;
mod preflight;
mod produce;
mod recover;
mod worker;

pub use explain::{
    example_row, example_value, AclPlan, ExampleMessage, Explanation, RenderedPart, SchemaPlan,
    TopicPlan, EXAMPLE_SCHEMA_ID,
};
pub use plan::SinkPlan;
pub use preflight::PreparedSink;

/// Pairs a worker lets combining emit ahead of what its producer has taken.
const PAIR_CREDIT: usize = 16 * 1024;
/// How often the startup operators look for their producer's progress.
const STARTUP_POLL: Duration = Duration::from_millis(5);

/// What a sink hands back on each worker: the committed frontier as a probe, and the sink's
/// status, history and statistics.
pub struct SinkHandle<'scope> {
    /// `probe.less_than(&t)` is false once every update before `t` of this worker's keys is
    /// committed in Kafka; `probe.done()` once all are.
    pub probe: ProbeHandle<u64>,
    /// The committed frontier as a stream (no data; its frontier is the committed frontier).
    pub committed: Stream<'scope, u64, Vec<u64>>,
    pub monitor: SinkMonitor,
    shared: Rc<RefCell<WorkerSink>>,
}

impl SinkHandle<'_> {
    /// What a caller may ask of this worker's sink between steps of the worker; it outlives
    /// the dataflow's building closure.
    pub fn control(&self) -> SinkControl {
        SinkControl {
            shared: Rc::clone(&self.shared),
        }
    }
}

/// Requests to one worker's sink, made between steps of the worker (not from an operator).
#[derive(Clone)]
pub struct SinkControl {
    shared: Rc<RefCell<WorkerSink>>,
}

impl SinkControl {
    /// Asks the sink to write its input frontier into a progress record now, rather than after
    /// the idle interval (a worker whose input moved without data for it records the new
    /// frontier only every `idle_progress_interval`). For a caller whose input stopped moving
    /// before it stops the dataflow: the progress topic then says how far the input got, so a
    /// restart and `outflow read` start from there. [`SinkControl::input_recorded`] tells when
    /// it is committed.
    pub fn record_input_frontier(&self) {
        let mut state = self.shared.borrow_mut();
        let now = state.now();
        state.machine.record_input_frontier(now);
        state.pump();
    }

    /// Whether a committed progress record covers this worker's input frontier.
    pub fn input_recorded(&self) -> bool {
        self.shared.borrow().machine.input_recorded()
    }
}

/// `sink_kafka`: writes a collection of rows to Kafka as the prepared sink describes.
///
/// Implemented for a `VecCollection<u64, Row, isize>` (keyed and arranged here) and for an
/// existing arrangement of `(key, row)` placed by the stable key hash (no second copy).
pub trait SinkKafka<'scope> {
    fn sink_kafka(self, sink: &PreparedSink) -> Result<SinkHandle<'scope>, SinkError>;
}

impl<'scope> SinkKafka<'scope> for VecCollection<'scope, u64, Row, isize> {
    fn sink_kafka(self, sink: &PreparedSink) -> Result<SinkHandle<'scope>, SinkError> {
        let key = sink.plan.spec.pairing.clone();
        let scope = self.inner.scope();
        let credit = PairCredit::new(PAIR_CREDIT);
        let combined = self
            .key_by(&key)
            .combine_at_timestamp_with(&key, combine_options(&sink.plan, &credit));
        render(scope, sink, combined, credit)
    }
}

impl<'scope, Tr> SinkKafka<'scope> for Arranged<'scope, Tr>
where
    Tr: TraceReader<Time = u64, Batch: Navigable> + 'static,
    for<'a> BatchCursor<Tr>: Cursor<Key<'a> = &'a Row, Val<'a> = &'a Row, Time = u64, Diff = isize>,
{
    fn sink_kafka(self, sink: &PreparedSink) -> Result<SinkHandle<'scope>, SinkError> {
        let key = sink.plan.spec.pairing.clone();
        let scope = self.stream.scope();
        let credit = PairCredit::new(PAIR_CREDIT);
        let combined = self.combine_at_timestamp_with(&key, combine_options(&sink.plan, &credit));
        render(scope, sink, combined, credit)
    }
}

fn combine_options(plan: &SinkPlan, credit: &PairCredit) -> CombineOptions<u64> {
    let mut options = CombineOptions::default().with_credit(credit.clone());
    // A key's last message is its value under UPSERT: copies of one row add nothing, so a
    // NOT ENFORCED key with a huge multiplicity writes one message, not one per copy.
    if plan.spec.envelope == crate::encoders::Envelope::Upsert {
        options = options.collapse_repeats();
    }
    if plan.spec.snapshot {
        options
    } else {
        options.without_snapshot(plan.as_of)
    }
}

/// Builds the sink's operators on one worker.
fn render<'scope>(
    scope: Scope<'scope, u64>,
    sink: &PreparedSink,
    combined: Combined<'scope, u64>,
    credit: PairCredit,
) -> Result<SinkHandle<'scope>, SinkError> {
    let worker = scope.index();
    let workers = scope.peers();
    let plan = &sink.plan;
    let monitor = sink.monitor().clone();
    monitor.set_status(worker, SinkStatus::Starting);

    let names = plan.names();
    let settings = plan.producer_settings(worker as u32);

    // The driver wakes whichever of this worker's sink operators waits on it.
    let wakers = Wakers::default();
    let wake = {
        let wakers = wakers.clone();
        Box::new(move || wakers.wake_all())
    };
    let driver = ProducerDriver::start(plan.connection.client_config(), settings, wake)?;
    let machine = Machine::new(names, plan.cadence.clone(), worker as u32, workers as u32);
    let shared = Rc::new(RefCell::new(WorkerSink {
        worker,
        machine,
        driver,
        started: Instant::now(),
        monitor: monitor.clone(),
        announced: false,
        paused: false,
        committed: None,
        staged: BTreeMap::new(),
        passed_at: BTreeMap::new(),
        failed: None,
    }));

    let readiness = init::init(scope, Rc::clone(&shared), &wakers);
    let recovered =
        recover::recover_on_worker_zero(scope, plan, readiness, Rc::clone(&shared), &wakers);
    let committed = produce::produce(
        scope,
        sink,
        combined,
        recovered,
        credit,
        Rc::clone(&shared),
        &wakers,
    );

    let probe = ProbeHandle::new();
    let committed = committed.probe_with(&probe);
    Ok(SinkHandle {
        probe,
        committed,
        monitor,
        shared,
    })
}

/// Why a sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("unknown sink \"{0}\"")]
    UnknownSink(String),
    #[error("unknown connection \"{0}\"")]
    UnknownConnection(String),
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Connection(#[from] crate::connection::ConnectionError),
    #[error(transparent)]
    Topic(#[from] crate::topic::TopicError),
    #[error(transparent)]
    Encode(#[from] crate::encoders::EncodeError),
    #[error(transparent)]
    Registry(#[from] crate::encoders::RegistryError),
    #[error(transparent)]
    Producer(#[from] crate::producer::ProducerError),
    /// `explain` could not render its examples (a bug: they are made from the declared types).
    #[error("sink \"{sink}\": {message}")]
    Explain { sink: String, message: String },
    /// The broker would abort every transaction before the sink commits it.
    #[error(
        "sink \"{sink}\": the commit interval ({commit_interval_ms} ms) must be below half the \
         transaction timeout ({transaction_timeout_ms} ms), or the broker aborts transactions \
         before they commit: shorten the commit interval or lengthen the transaction timeout"
    )]
    CommitIntervalTooLong {
        sink: String,
        commit_interval_ms: u128,
        transaction_timeout_ms: u128,
    },
}
