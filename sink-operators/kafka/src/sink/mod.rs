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
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::trace::{BatchCursor, Cursor, Navigable, TraceReader};
use differential_dataflow::VecCollection;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Capability, Operator, Probe};
use timely::dataflow::{ProbeHandle, Stream};
use timely::progress::frontier::MutableAntichain;
use timely::scheduling::SyncActivator;

use crate::connection::{registry_config, KafkaConnection};
use crate::dataflow::operators::{
    CombineAtTimestamp, CombineOptions, Combined, KeyBy, KeyViolation, PairCredit,
};
use crate::dataflow::{stable_key_hash, DiffPair, Row};
use crate::encoders::{
    EncodedMessage, EncoderConfig, RegistryConfig, SchemaRegistryClient, SinkEncoder,
};
use crate::partition::{key_partition_hash, partition_for};
use crate::producer::{DeliveryMode, ProducerDriver, ProducerSettings, SinkRecord};
use crate::progress_reader::{recover, RecoverOptions};
use crate::spec::{DeliveryGuarantee, SinkSpec};
use crate::statement::Catalog;
use crate::status::{SinkMonitor, SinkStatus};
use crate::topic::{ensure_data_topic, ensure_progress_topic, PartitionWatch, TopicSettings};
use outflow_protocol::{Action, Cadence, Event, Machine, Recovery, SinkNames, Status};

/// Pairs a worker lets combining emit ahead of what its producer has taken.
const PAIR_CREDIT: usize = 16 * 1024;
/// How often the startup operators look for their producer's progress.
const STARTUP_POLL: Duration = Duration::from_millis(5);

/// Everything a sink needs to run: its spec, the resolved connection and registry, and how it
/// paces itself. Built from a catalog (the statements) or by hand.
#[derive(Clone, Debug)]
pub struct SinkPlan {
    pub spec: SinkSpec,
    pub connection: KafkaConnection,
    pub registry: Option<RegistryConfig>,
    /// Commit interval, transaction size bound, bytes in flight (see [`Cadence`]).
    pub cadence: Cadence,
    /// The time of the input's snapshot, skipped under `SNAPSHOT = false`. Default 0.
    pub as_of: u64,
    /// Set for brokers whose `read_committed` fetches return aborted records (Tansu): recovery
    /// then reads the progress topic's raw log and applies the control batches itself.
    pub broker_shows_aborted_records: bool,
    /// Where the workers of this process report status and statistics.
    pub monitor: SinkMonitor,
    /// `transaction.timeout.ms` of the workers' producers (see
    /// [`ProducerSettings::transaction_timeout`]). A commit that keeps timing out for longer
    /// than this fails the sink: by then the broker has aborted the transaction or fenced the
    /// producer. Default 60 s.
    pub transaction_timeout: Duration,
    /// How long one blocking producer call may take before it is retried (see
    /// [`ProducerSettings::call_timeout`]). Default 30 s.
    pub call_timeout: Duration,
}

impl SinkPlan {
    /// A plan for `spec` on `connection`, with the default cadence.
    pub fn new(spec: SinkSpec, connection: KafkaConnection) -> SinkPlan {
        let monitor = SinkMonitor::new(spec.name.clone());
        SinkPlan {
            spec,
            connection,
            registry: None,
            cadence: Cadence::default(),
            as_of: 0,
            broker_shows_aborted_records: false,
            monitor,
            transaction_timeout: Duration::from_secs(60),
            call_timeout: Duration::from_secs(30),
        }
    }

    /// The plan of sink `name` of `catalog`, with its connection and registry resolved.
    pub fn from_catalog(catalog: &Catalog, name: &str) -> Result<SinkPlan, SinkError> {
        let spec = catalog
            .sink(name)
            .ok_or_else(|| SinkError::UnknownSink(name.to_string()))?
            .clone();
        let connection_spec = catalog
            .connection(&spec.connection)
            .ok_or_else(|| SinkError::UnknownConnection(spec.connection.clone()))?;
        let connection = KafkaConnection::resolve(catalog, connection_spec)?;
        let registry = match avro_registry(&spec) {
            Some(registry_name) => {
                let registry = catalog
                    .registry(registry_name)
                    .ok_or_else(|| SinkError::UnknownConnection(registry_name.to_string()))?;
                Some(registry_config(catalog, registry)?)
            }
            None => None,
        };
        let mut plan = SinkPlan::new(spec, connection);
        plan.registry = registry;
        Ok(plan)
    }

    fn names(&self) -> SinkNames {
        SinkNames::new(
            self.spec.name.clone(),
            self.spec.transactional_id_prefix.clone(),
            self.spec.progress_group_id_prefix.clone(),
        )
    }

    fn delivery_mode(&self) -> DeliveryMode {
        match self.spec.delivery {
            DeliveryGuarantee::ExactlyOnce => DeliveryMode::ExactlyOnce,
            DeliveryGuarantee::AtLeastOnce => DeliveryMode::AtLeastOnce,
        }
    }

    /// What the sink's encoder is configured with, as `sink_kafka` builds it.
    pub fn encoder_config(&self) -> EncoderConfig {
        let spec = &self.spec;
        EncoderConfig {
            desc: spec.desc.clone(),
            relation: spec.from.clone().unwrap_or_else(|| spec.name.clone()),
            key_columns: spec.key.as_ref().map(|k| k.indices.clone()),
            envelope: spec.envelope,
            key_format: spec
                .key_format
                .clone()
                .unwrap_or_else(|| spec.value_format.clone()),
            value_format: spec.value_format.clone(),
            headers_column: spec.headers.as_ref().map(|c| c.index),
            topic: spec.topic.clone(),
        }
    }
}

/// The registry connection an Avro key or value format names.
fn avro_registry(spec: &SinkSpec) -> Option<&str> {
    use crate::encoders::FormatSpec;
    [spec.key_format.as_ref(), Some(&spec.value_format)]
        .into_iter()
        .flatten()
        .find_map(|format| match format {
            FormatSpec::Avro(avro) => Some(avro.registry.as_str()),
            _ => None,
        })
}

/// What a sink hands back on each worker: the committed frontier as a probe, and the sink's
/// status, history and statistics.
pub struct SinkHandle<'scope> {
    /// `probe.less_than(&t)` is false once every update before `t` of this worker's keys is
    /// committed in Kafka; `probe.done()` once all are.
    pub probe: ProbeHandle<u64>,
    /// The committed frontier as a stream (no data; its frontier is the committed frontier).
    pub committed: Stream<'scope, u64, Vec<u64>>,
    pub monitor: SinkMonitor,
}

/// `sink_kafka`: writes a collection of rows to Kafka as the plan's sink describes.
///
/// Implemented for a `VecCollection<u64, Row, isize>` (keyed and arranged here) and for an
/// existing arrangement of `(key, row)` placed by the stable key hash (no second copy).
pub trait SinkKafka<'scope> {
    fn sink_kafka(self, plan: &SinkPlan) -> Result<SinkHandle<'scope>, SinkError>;
}

impl<'scope> SinkKafka<'scope> for VecCollection<'scope, u64, Row, isize> {
    fn sink_kafka(self, plan: &SinkPlan) -> Result<SinkHandle<'scope>, SinkError> {
        let key = plan.spec.pairing.clone();
        let scope = self.inner.scope();
        let credit = PairCredit::new(PAIR_CREDIT);
        let combined = self
            .key_by(&key)
            .combine_at_timestamp_with(&key, combine_options(plan, &credit));
        render(scope, plan, combined, credit)
    }
}

impl<'scope, Tr> SinkKafka<'scope> for Arranged<'scope, Tr>
where
    Tr: TraceReader<Time = u64, Batch: Navigable> + 'static,
    for<'a> BatchCursor<Tr>: Cursor<Key<'a> = &'a Row, Val<'a> = &'a Row, Time = u64, Diff = isize>,
{
    fn sink_kafka(self, plan: &SinkPlan) -> Result<SinkHandle<'scope>, SinkError> {
        let key = plan.spec.pairing.clone();
        let scope = self.stream.scope();
        let credit = PairCredit::new(PAIR_CREDIT);
        let combined = self.combine_at_timestamp_with(&key, combine_options(plan, &credit));
        render(scope, plan, combined, credit)
    }
}

fn combine_options(plan: &SinkPlan, credit: &PairCredit) -> CombineOptions<u64> {
    let options = CombineOptions::default().with_credit(credit.clone());
    if plan.spec.snapshot {
        options
    } else {
        options.without_snapshot(plan.as_of)
    }
}

/// What the sink operators of one worker share: the machine, its driver, and the bookkeeping
/// of what was staged and committed.
struct WorkerSink {
    worker: usize,
    machine: Machine<Arc<SinkRecord>>,
    driver: ProducerDriver<Arc<SinkRecord>>,
    started: Instant,
    monitor: SinkMonitor,
    announced: bool,
    paused: bool,
    /// The committed frontier the machine last reported.
    committed: Option<Option<u64>>,
    /// Messages and bytes staged per time and not yet covered by the committed frontier.
    staged: BTreeMap<u64, (u64, u64)>,
    /// When the input frontier first passed each staged time, for the commit latency.
    passed_at: BTreeMap<u64, Instant>,
    failed: Option<String>,
}

/// A worker's sink state lives as long as the sink's operators: when the dataflow is dropped
/// or finishes, so is the sink, and its status says so (a failure stays the last word).
impl Drop for WorkerSink {
    fn drop(&mut self) {
        if self.failed.is_none() {
            self.monitor.set_status(self.worker, SinkStatus::Dropped);
        }
    }
}

impl WorkerSink {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Carries out the machine's actions and feeds it the driver's results until neither is
    /// left.
    fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(action) = self.machine.poll_action() {
                progressed = true;
                if let Some(for_us) = self.driver.execute(action) {
                    self.apply(for_us);
                }
            }
            while let Some(event) = self.driver.poll_event() {
                progressed = true;
                match &event {
                    Event::Committed(Ok(())) => self
                        .monitor
                        .update(self.worker, |s| s.transactions_committed += 1),
                    Event::Aborted(Ok(())) => self
                        .monitor
                        .update(self.worker, |s| s.transactions_aborted += 1),
                    _ => {}
                }
                self.handle(event);
            }
            if !progressed {
                return;
            }
        }
    }

    fn handle(&mut self, event: Event<Arc<SinkRecord>>) {
        let now = self.now();
        if let Err(error) = self.machine.handle(now, event) {
            // The operator broke the machine's contract: a bug here, reported rather than
            // written to Kafka.
            self.fail(format!("internal error: {error}"));
        }
    }

    fn fail(&mut self, error: String) {
        if self.failed.is_none() {
            self.monitor.set_status(
                self.worker,
                SinkStatus::Failed {
                    error: error.clone(),
                },
            );
            self.failed = Some(error);
        }
    }

    fn apply(&mut self, action: Action<Arc<SinkRecord>>) {
        match action {
            Action::Announced => self.announced = true,
            Action::Pause => self.paused = true,
            Action::Resume => self.paused = false,
            Action::Status(status) => {
                let status = match status {
                    Status::Starting => SinkStatus::Starting,
                    Status::Running => SinkStatus::Running,
                    Status::Stalled { error, retry_at } => SinkStatus::Stalled {
                        error,
                        retry_in_ms: retry_at.saturating_sub(self.now()).as_millis() as u64,
                    },
                    Status::Failed { error } => {
                        self.failed.get_or_insert_with(|| error.clone());
                        SinkStatus::Failed { error }
                    }
                };
                if self.failed.is_none() || status.is_failed() {
                    self.monitor.set_status(self.worker, status);
                }
            }
            Action::Frontier(frontier) => {
                self.committed = Some(frontier);
                let bound = frontier.unwrap_or(u64::MAX);
                let mut messages = 0;
                let mut bytes = 0;
                while let Some((&time, &(m, b))) = self.staged.first_key_value() {
                    if frontier.is_some() && time >= bound {
                        break;
                    }
                    self.staged.remove(&time);
                    messages += m;
                    bytes += b;
                }
                let latency = self
                    .passed_at
                    .range(..bound)
                    .next_back()
                    .map(|(_, at)| at.elapsed().as_millis() as u64);
                self.passed_at = if frontier.is_some() {
                    self.passed_at.split_off(&bound)
                } else {
                    BTreeMap::new()
                };
                self.monitor.update(self.worker, |s| {
                    s.messages_committed += messages;
                    s.bytes_committed += bytes;
                    s.committed_frontier = Some(bound);
                    if latency.is_some() {
                        s.frontier_to_commit_ms = latency;
                    }
                });
            }
            other => unreachable!("the driver hands back only caller actions, not {other:?}"),
        }
    }
}

/// Builds the sink's operators on one worker.
fn render<'scope>(
    scope: timely::dataflow::Scope<'scope, u64>,
    plan: &SinkPlan,
    combined: Combined<'scope, u64>,
    credit: PairCredit,
) -> Result<SinkHandle<'scope>, SinkError> {
    let worker = scope.index();
    let workers = scope.peers();
    let spec = &plan.spec;
    let client = plan.connection.client_config().clone();
    let monitor = plan.monitor.clone();
    monitor.set_status(worker, SinkStatus::Starting);

    // The connection, topics and schemas first: they fail fast with the user's mistakes (a
    // wrong address, certificate or password) before any producer, naming the connection.
    if let Err(error) = plan.connection.check() {
        monitor.set_status(
            worker,
            SinkStatus::Failed {
                error: error.to_string(),
            },
        );
        return Err(error.into());
    }
    let mut topic = TopicSettings::new(spec.topic.clone());
    topic.partitions = spec.topic_partition_count;
    topic.replication_factor = spec.topic_replication_factor;
    topic.configs = spec.topic_config.clone();
    let report = ensure_data_topic(&client, &topic)?;
    if !report.differences.is_empty() {
        monitor.note(report.to_string());
    }
    // Partitions added to the topic while the sink runs are used from the next refresh on; the
    // refresh runs on a thread of its own so that a slow broker never holds up the worker.
    let partitions = {
        let monitor = monitor.clone();
        let topic_name = spec.topic.clone();
        PartitionWatch::start(
            &client,
            &spec.topic,
            report.partitions,
            spec.topic_metadata_refresh_interval,
            Box::new(move |old, new| {
                monitor.note(format!(
                    "topic {topic_name} went from {old} to {new} partitions"
                ));
            }),
        )?
    };
    let progress = ensure_progress_topic(
        &client,
        &plan.connection.progress_topic,
        plan.connection.progress_topic_replication_factor,
    )?;
    if !progress.differences.is_empty() {
        monitor.note(progress.to_string());
    }
    let registry = plan
        .registry
        .clone()
        .map(SchemaRegistryClient::new)
        .transpose()?;
    let encoder = SinkEncoder::new(plan.encoder_config(), registry.as_ref())?;

    let names = plan.names();
    let mut settings = ProducerSettings::new(
        names.clone(),
        worker as u32,
        spec.topic.clone(),
        plan.connection.progress_topic.clone(),
        &plan.cadence,
    );
    settings.mode = plan.delivery_mode();
    settings.compression = spec.compression.as_str().to_string();
    settings.transaction_timeout = plan.transaction_timeout;
    settings.call_timeout = plan.call_timeout;

    // The driver wakes whichever of this worker's sink operators waits on it.
    let wakers: Arc<Mutex<Vec<SyncActivator>>> = Arc::new(Mutex::new(Vec::new()));
    let wake = {
        let wakers = Arc::clone(&wakers);
        Box::new(move || {
            for activator in wakers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                let _ = activator.activate();
            }
        })
    };
    let driver = ProducerDriver::start(&client, settings, wake)?;
    let machine = Machine::new(
        names.clone(),
        plan.cadence.clone(),
        worker as u32,
        workers as u32,
    );
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
    let register = |address: &[usize]| {
        wakers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(scope.worker().sync_activator_for(address.to_vec()));
    };

    // Step 1 of startup, on every worker: initialize transactions, then tell worker 0.
    let init_state = Rc::clone(&shared);
    let readiness = source::<
        _,
        timely::container::CapacityContainerBuilder<Vec<(usize, Result<(), String>)>>,
        _,
        _,
    >(scope, "OutflowSinkInit", |capability, info| {
        register(&info.address);
        // Another of this worker's sink operators may take the driver's answer; the
        // startup operators look again shortly rather than rely on being woken.
        let activator = scope.activator_for(info.address.clone());
        let mut capability = Some(capability);
        move |output| {
            let mut state = init_state.borrow_mut();
            state.pump();
            let outcome = if let Some(error) = &state.failed {
                Some(Err(error.clone()))
            } else if state.driver.is_initialized() {
                Some(Ok(()))
            } else {
                None
            };
            match (outcome, capability.take()) {
                (Some(outcome), Some(cap)) => output.session(&cap).give((state.worker, outcome)),
                (None, cap @ Some(_)) => {
                    capability = cap;
                    activator.activate_after(STARTUP_POLL);
                }
                _ => {}
            }
        }
    });

    // Steps 2 to 4, on worker 0: recover once every worker has initialized, announce the run,
    // and hand the recovery to every worker.
    let recover_state = Rc::clone(&shared);
    let recover_client = client.clone();
    let progress_topic = plan.connection.progress_topic.clone();
    let options = RecoverOptions {
        mode: plan.delivery_mode(),
        reader_shows_aborted: plan.broker_shows_aborted_records,
        ..RecoverOptions::default()
    };
    let recovered = readiness
        .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<Result<String, String>>>, _, _, _>(
            Exchange::new(|_: &(usize, Result<(), String>)| 0u64),
            "OutflowSinkRecover",
            |capability, info| {
                register(&info.address);
                let activator = scope.worker().sync_activator_for(info.address.to_vec());
                let poll = scope.activator_for(info.address.clone());
                let mut capability = Some(capability);
                let mut errors: Vec<String> = Vec::new();
                let mut reported = 0usize;
                let mut pending: Option<mpsc::Receiver<Result<Recovery, String>>> = None;
                let mut recovery: Option<Arc<Recovery>> = None;
                move |(input, _frontier), output| {
                    input.for_each(|_, data| {
                        for (worker, outcome) in data.drain(..) {
                            reported += 1;
                            if let Err(error) = outcome {
                                errors.push(format!("worker {worker}: {error}"));
                            }
                        }
                    });
                    let Some(cap) = capability.as_ref() else { return };
                    if worker != 0 {
                        capability = None;
                        return;
                    }
                    // Every worker reports once, success or error. The reports are counted rather
                    // than read off the frontier, which is empty until progress first reaches this
                    // operator.
                    if reported < workers {
                        return;
                    }
                    if !errors.is_empty() {
                        output.session(cap).give(Err(errors.join("; ")));
                        capability = None;
                        return;
                    }
                    if recovery.is_none() && pending.is_none() {
                        let (send, receive) = mpsc::channel();
                        let (client, names, topic, activator) =
                            (recover_client.clone(), names.clone(), progress_topic.clone(), activator.clone());
                        std::thread::spawn(move || {
                            let result = recover(&client, &names, &topic, workers as u32, options)
                                .map_err(|error| format!("cannot recover from the progress topic: {error}"));
                            let _ = send.send(result);
                            let _ = activator.activate();
                        });
                        pending = Some(receive);
                    }
                    let mut state = recover_state.borrow_mut();
                    if let Some(receive) = &pending {
                        match receive.try_recv() {
                            Ok(Ok(found)) => {
                                for disagreement in &found.disagreements {
                                    state.monitor.note(format!("progress recovery: {disagreement:?}"));
                                }
                                let found = Arc::new(found);
                                recovery = Some(Arc::clone(&found));
                                pending = None;
                                                state.handle(Event::Recovered(found));
                            }
                            Ok(Err(error)) => {
                                pending = None;
                                state.fail(error.clone());
                                output.session(cap).give(Err(error));
                                capability = None;
                                return;
                            }
                            Err(_) => {
                                poll.activate_after(STARTUP_POLL);
                                return;
                            }
                        }
                    }
                    state.pump();
                    if let Some(error) = state.failed.clone() {
                        output.session(cap).give(Err(error));
                        capability = None;
                    } else if !state.announced {
                        poll.activate_after(STARTUP_POLL);
                    } else {
                        let recovery = recovery.as_ref().expect("announced only after recovering");
                        let json = serde_json::to_string(&**recovery).expect("recoveries serialize");
                        output.session(cap).give(Ok(json));
                        capability = None;
                    }
                }
            },
        )
        .broadcast();

    // The sink itself: resume filter, encoding, partitioning, and the machine's transactions.
    let mut builder = OperatorBuilder::new("OutflowSinkKafka".to_owned(), scope);
    let address = builder.operator_info().address;
    register(&address);
    let activator = scope.activator_for(address.clone());
    let mut pairs_input = builder.new_input(combined.pairs, Pipeline);
    let mut violations_input = builder.new_input(combined.violations, Pipeline);
    let mut recovery_input = builder.new_input(recovered, Pipeline);
    let (_committed_output, committed) = builder.new_output::<Vec<u64>>();

    let enforced = spec.key_is_enforced();
    let partition_by = spec.partition_by.clone();
    let violation_count = combined.violation_count.clone();
    let sink_state = Rc::clone(&shared);
    let sink_name = spec.name.clone();
    builder.build(move |mut capabilities| {
        let mut capability: Option<Capability<u64>> = capabilities.pop();
        let mut recovery: Option<Arc<Recovery>> = None;
        // Pairs by (time, key position). Combining emits a batch key by key, so when one batch
        // spans several times (the input ran ahead of the sink) their pairs interleave; the
        // machine takes them in (time, position) order. A pair at a time the input frontier has
        // not passed may still be followed by pairs of that time with larger keys only (a time
        // lies in one batch, read in key order), so pairs at the frontier's time go out at once
        // and only later times wait: a snapshot streams, a backlog waits for its batch.
        let mut stash: BTreeMap<(u64, Vec<u8>), VecDeque<(Row, DiffPair<Row>)>> = BTreeMap::new();
        let mut message = EncodedMessage::new();
        let mut violations_seen = 0u64;
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
            let mut received = 0usize;
            pairs_input.for_each(|_, data| {
                for (key, time, pair) in data.drain(..) {
                    received += 1;
                    stash
                        .entry((time, key.order_key()))
                        .or_default()
                        .push_back((key, pair));
                }
            });
            owed_credit += received;
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
                    violations_seen += 1;
                    if enforced {
                        state.fail(violation_error(&sink_name, &violation));
                    }
                }
            });
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
                owed_credit = 0;
                credit.grant(drained.max(PAIR_CREDIT));
                return;
            }

            if let (Some(resume), None) = (recovery.as_ref(), state.failed.as_ref()) {
                // Feed pairs while the machine takes them, in (time, position) order, up to the
                // input frontier's time.
                let input = frontiers[0]
                    .frontier()
                    .iter()
                    .chain(frontiers[1].frontier().iter())
                    .min()
                    .copied();
                // Counted here and reported once per activation: the monitor is shared.
                let (mut staged_messages, mut staged_bytes) = (0u64, 0u64);
                while !state.paused {
                    let Some(mut entry) = stash.first_entry() else {
                        break;
                    };
                    let time = entry.key().0;
                    if input.is_some_and(|input| time > input) {
                        break;
                    }
                    let position = entry.key().1.clone();
                    let (key, pair) = entry
                        .get_mut()
                        .pop_front()
                        .expect("stash entries are never empty");
                    if entry.get().is_empty() {
                        entry.remove();
                    }
                    if resume
                        .resume
                        .should_skip(stable_key_hash(&key), time, &position)
                    {
                        continue;
                    }
                    if let Err(error) = encoder.encode(&key, &pair, time, &mut message) {
                        state.fail(format!(
                            "cannot encode an update of sink {sink_name} at time {time}: {error}"
                        ));
                        break;
                    }
                    let hash = match &partition_by {
                        Some(expr) => pair
                            .after
                            .as_ref()
                            .or(pair.before.as_ref())
                            .and_then(|row| expr.partition_hash(row)),
                        None if message.key().is_some() => {
                            key_partition_hash(message.key_payload())
                        }
                        None => Some(stable_key_hash(&key)),
                    };
                    let record = SinkRecord {
                        partition: Some(partition_for(hash, partitions.current())),
                        key: message.key().map(<[u8]>::to_vec),
                        value: message.value().map(<[u8]>::to_vec),
                        headers: message
                            .headers()
                            .map(|(n, v)| (n.to_string(), v.map(<[u8]>::to_vec)))
                            .collect(),
                        timestamp: None,
                    };
                    let bytes = record.key.as_ref().map_or(0, Vec::len)
                        + record.value.as_ref().map_or(0, Vec::len)
                        + record
                            .headers
                            .iter()
                            .map(|(n, v)| n.len() + v.as_ref().map_or(0, Vec::len))
                            .sum::<usize>();
                    let entry = state.staged.entry(time).or_default();
                    entry.0 += 1;
                    entry.1 += bytes as u64;
                    staged_messages += 1;
                    staged_bytes += bytes as u64;
                    state.handle(Event::Message {
                        time,
                        position,
                        bytes,
                        message: Arc::new(record),
                    });
                    state.pump();
                }
                if staged_messages > 0 {
                    state.monitor.update(state.worker, |s| {
                        s.messages_staged += staged_messages;
                        s.bytes_staged += staged_bytes;
                    });
                }
                // The frontier the machine may rely on: nothing stashed is before it.
                let frontier = match (stash.first_key_value().map(|((t, _), _)| *t), input) {
                    (Some(stashed), Some(input)) => Some(stashed.min(input)),
                    (Some(stashed), None) => Some(stashed),
                    (None, input) => input,
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
            let feedable = stash.first_key_value().is_some_and(|((time, _), _)| {
                frontiers[0]
                    .frontier()
                    .iter()
                    .chain(frontiers[1].frontier().iter())
                    .min()
                    .is_none_or(|input| time <= input)
            });
            if feedable && !state.paused && state.failed.is_none() && recovery.is_some() {
                activator.activate();
            }
        }
    });

    let probe = ProbeHandle::new();
    let committed = committed.probe_with(&probe);
    Ok(SinkHandle {
        probe,
        committed,
        monitor,
    })
}

fn violation_error(sink: &str, violation: &KeyViolation<u64>) -> String {
    format!("sink {sink}: {violation}; the KEY is not unique in the data (use KEY (...) NOT ENFORCED to write such keys anyway)")
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
    Key(#[from] crate::dataflow::operators::OperatorError),
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
}
