//! `outflow run`: every sink of a statements file, over a change feed of its tables, on a
//! timely cluster of one or more processes.
//!
//! Worker 0 applies the feed (read and parsed on a thread of its own) to one input per table;
//! each sink reads its table's collection through `sink_kafka`. The inputs move only as far as
//! the feed proves complete: every time before the feed's last time (the time of its last
//! update or advance). The run ends once the sinks have committed every time before it, at the
//! feed's end or after a bad feed line; the inputs never move past that time, so no time is
//! half written, and never close, so no progress record says "done" and a longer feed can
//! always continue where a shorter one stopped. A feed that ends with updates at its last time
//! (an upstream that stopped inside a time) leaves them unwritten and the run fails saying so.
//! A restart replays the feed from the start; the sinks' recovery skips what the topics
//! already hold.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::BufRead;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use differential_dataflow::input::{Input, InputSession};
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Inspect;
use timely::dataflow::ProbeHandle;

use crate::feed::{spawn_reader, FeedError, FeedItem, FeedMessage, FeedTables};
use crate::observe::{Observers, RunState};
use outflow::dataflow::Row;
use outflow::sink::{PreparedSink, SinkControl, SinkKafka, SinkPlan};
use outflow::statement::Catalog;
use outflow::status::{SinkMonitor, SinkReport};

/// Updates of complete times (before the feed's current time) that worker 0 may have fed beyond
/// the slowest sink's committed frontier; it reads no more of the feed until the sinks catch
/// up, so memory stays bounded on a long feed. The updates of the current time are never held
/// back: the sinks cannot commit a time before the feed has moved past it, so holding them
/// would wait forever. A single large time streams into the sinks' arrangements instead and
/// commits in chunks once the feed moves on.
const MAX_UNCOMMITTED_UPDATES: u64 = 200_000;
/// Feed messages applied between two steps of the worker.
const FEED_BATCH: usize = 1024;

/// The sinks of a statements file and the tables they read.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub sinks: Vec<SinkPlan>,
    /// The table each sink reads, as a number in `tables`.
    pub sink_tables: Vec<usize>,
    pub tables: FeedTables,
    /// The worker count the sinks' `IN CLUSTER` asks for (the largest), if any does.
    pub cluster_workers: Option<usize>,
}

impl RunPlan {
    /// The plan of every sink of `catalog`, in the order of the statements.
    pub fn from_catalog(catalog: &Catalog) -> Result<RunPlan, RunError> {
        let mut plan = RunPlan {
            sinks: Vec::new(),
            sink_tables: Vec::new(),
            tables: FeedTables::new(),
            cluster_workers: None,
        };
        for spec in catalog.sinks() {
            let table_name = spec.from.clone().ok_or_else(|| RunError::Plan {
                sink: spec.name.clone(),
                message: "the sink names no FROM table, so no feed can reach it".to_string(),
            })?;
            let table = catalog.table(&table_name).ok_or_else(|| RunError::Plan {
                sink: spec.name.clone(),
                message: format!("FROM {table_name} is not a table of the statements file"),
            })?;
            let sink = SinkPlan::from_catalog(catalog, &spec.name).map_err(|e| RunError::Plan {
                sink: spec.name.clone(),
                message: e.to_string(),
            })?;
            if let Some(cluster) = spec.cluster.as_ref().and_then(|c| catalog.cluster(c)) {
                plan.cluster_workers = Some(plan.cluster_workers.unwrap_or(0).max(cluster.workers));
            }
            plan.sink_tables
                .push(plan.tables.add(&table_name, &table.desc));
            plan.sinks.push(sink);
        }
        if plan.sinks.is_empty() {
            return Err(RunError::NoSinks);
        }
        // A feed may also update tables no sink reads (a feed written for a whole schema).
        for object in catalog.objects() {
            if let outflow::statement::CatalogObject::Table(table) = object {
                plan.tables.add(&table.name, &table.desc);
            }
        }
        Ok(plan)
    }

    /// Applies the run's settings to every sink.
    pub fn configure(
        &mut self,
        broker_shows_aborted_records: bool,
        commit_interval: Option<Duration>,
        transaction_timeout: Option<Duration>,
    ) {
        for sink in &mut self.sinks {
            sink.broker_shows_aborted_records = broker_shows_aborted_records;
            if let Some(timeout) = transaction_timeout {
                sink.cadence.transaction_timeout = timeout;
            }
            if let Some(interval) = commit_interval {
                sink.cadence.commit_interval = interval;
                sink.cadence.idle_progress_interval =
                    sink.cadence.idle_progress_interval.min(interval * 4);
            }
        }
    }
}

/// Where the feed comes from. Only the process that holds worker 0 reads it.
pub enum FeedSource {
    Stdin,
    File(PathBuf),
}

impl fmt::Debug for FeedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedSource::Stdin => f.write_str("Stdin"),
            FeedSource::File(path) => write!(f, "File({})", path.display()),
        }
    }
}

impl FeedSource {
    fn open(self) -> Result<Box<dyn BufRead + Send>, RunError> {
        Ok(match self {
            FeedSource::Stdin => Box::new(std::io::BufReader::new(std::io::stdin())),
            FeedSource::File(path) => {
                let file = std::fs::File::open(&path).map_err(|e| {
                    RunError::Io(format!("cannot open the feed {}: {e}", path.display()))
                })?;
                Box::new(std::io::BufReader::new(file))
            }
        })
    }
}

/// How to run.
#[derive(Debug)]
pub struct RunOptions {
    pub timely: timely::Config,
    pub feed: FeedSource,
    /// Slept each time the feed's time moves forward (to watch a run, or interrupt it).
    pub pace: Option<Duration>,
    pub status_file: Option<PathBuf>,
    pub metrics: Option<std::net::SocketAddr>,
    /// A progress line on stderr, when it is a terminal.
    pub progress_line: bool,
    /// Stop every sink when one fails; otherwise the others go on to the end of the feed.
    pub fail_fast: bool,
}

/// What a finished run did.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub sinks: Vec<SinkReport>,
}

impl fmt::Display for RunSummary {
    /// One line per sink: messages, bytes, transactions and the committed frontier.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for report in &self.sinks {
            let frontier = match report.total.committed_frontier {
                None => "none".to_string(),
                Some(u64::MAX) => "done".to_string(),
                Some(t) => t.to_string(),
            };
            let commits = if report.delivery == "at-least-once" {
                format!(
                    "{} flushes (at-least-once, no transactions)",
                    report.total.flushes
                )
            } else {
                format!(
                    "{} transactions committed ({} aborted)",
                    report.total.transactions_committed, report.total.transactions_aborted
                )
            };
            writeln!(
                f,
                "sink {}: {} messages, {} bytes, {commits}, committed frontier {frontier}",
                report.name, report.total.messages_committed, report.total.bytes_committed,
            )?;
        }
        Ok(())
    }
}

/// Why a run stopped short.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the statements create no sink")]
    NoSinks,
    #[error("sink {sink}: {message}")]
    Plan { sink: String, message: String },
    #[error("{0}")]
    Io(String),
    #[error("cannot start the timely cluster: {0}")]
    Cluster(String),
    #[error("sink {sink}: {message}")]
    Sink { sink: String, message: String },
    /// A sink failed while the run went on; the other sinks finished (unless `--fail-fast`).
    #[error("sink {sink}: {message}")]
    SinkFailed {
        sink: String,
        message: String,
        summary: RunSummary,
    },
    /// A bad feed line; every time before the last good one was committed.
    #[error("{error} (every time before {committed_before} is committed; nothing of that time or later was fed)")]
    Feed {
        error: FeedError,
        committed_before: u64,
        summary: RunSummary,
    },
    #[error("worker {worker}: {message}")]
    Worker { worker: usize, message: String },
    /// The feed ended with updates at a time no later line completed; every time before it is
    /// committed, that time is not.
    #[error("the feed ended inside time {time}: {incomplete} update(s) at time {time} are not written, because no later line shows that time {time} is complete (every time before {time} is committed; end a finished feed with {{\"advance\": {next}}}, and a rerun whose feed completes time {time} writes them)", next = time.saturating_add(1))]
    EndedInside {
        time: u64,
        incomplete: u64,
        summary: RunSummary,
    },
}

/// Runs `plan` over the feed until the sinks have committed all of it, or a feed line is bad,
/// or a sink fails.
pub fn run(plan: RunPlan, options: RunOptions) -> Result<RunSummary, RunError> {
    let holds_worker_zero = match &options.timely.communication {
        timely::CommunicationConfig::Cluster { process, .. } => *process == 0,
        _ => true,
    };
    let source = if holds_worker_zero {
        Some(options.feed.open()?)
    } else {
        None
    };
    let state = RunState {
        monitors: plan
            .sinks
            .iter()
            .map(|sink| SinkMonitor::new(sink.spec.name.clone()))
            .collect(),
        rows_fed: Default::default(),
    };
    // The status file and the metrics show the start-up too, and a sink that fails in it.
    let observers = Observers::start(
        state.clone(),
        options.status_file.clone(),
        options.metrics,
        options.progress_line,
    )
    .map_err(|e| RunError::Io(e.to_string()))?;
    if let Some(address) = observers.metrics_address {
        tracing::info!("metrics at http://{address}/metrics");
    }
    // Connections, topics and schemas, before any dataflow: a mistake fails here, naming it.
    let prepared: Result<Vec<PreparedSink>, RunError> = plan
        .sinks
        .iter()
        .zip(&state.monitors)
        .map(|(sink, monitor)| {
            sink.preflight_with(monitor.clone())
                .map_err(|e| RunError::Sink {
                    sink: sink.spec.name.clone(),
                    message: e.to_string(),
                })
        })
        .collect();
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            if let Err(e) = observers.finish() {
                tracing::warn!("{e}");
            }
            return Err(error);
        }
    };
    let feed = source.map(|source| spawn_reader(source, plan.tables.clone(), options.pace));
    let feed = Arc::new(Mutex::new(feed));

    let rows_fed = Arc::clone(&state.rows_fed);
    let worker_plan = plan.clone();
    let worker_sinks = prepared.clone();
    let fail_fast = options.fail_fast;
    let guards = timely::execute(options.timely, move |worker| {
        let index = worker.index();
        let plan = worker_plan.clone();
        let sinks = worker_sinks.clone();
        let stop_seen: Rc<Cell<Option<u64>>> = Rc::new(Cell::new(None));
        let seen = Rc::clone(&stop_seen);
        let built =
            worker.dataflow::<u64, _, _>(|scope| {
                let mut inputs: Vec<InputSession<u64, Row, isize>> = Vec::new();
                let mut collections = Vec::new();
                for _ in 0..plan.tables.len() {
                    let (input, collection) = scope.new_collection::<Row, isize>();
                    inputs.push(input);
                    collections.push(collection);
                }
                let mut probes: Vec<ProbeHandle<u64>> = Vec::new();
                let mut controls: Vec<SinkControl> = Vec::new();
                for (sink, &table) in sinks.iter().zip(&plan.sink_tables) {
                    let handle = collections[table].clone().sink_kafka(sink).map_err(|e| {
                        RunError::Sink {
                            sink: sink.plan().spec.name.clone(),
                            message: e.to_string(),
                        }
                    })?;
                    controls.push(handle.control());
                    probes.push(handle.probe);
                }
                // Worker 0 tells every worker, in every process, the time a bad feed line stopped
                // the inputs at.
                let (stop_input, stop) = scope.new_collection::<u64, isize>();
                stop.inner
                    .broadcast()
                    .inspect(move |(time, _, _)| seen.set(Some(*time)));
                Ok::<_, RunError>((inputs, probes, controls, stop_input))
            });
        let (inputs, probes, controls, stop_input) = match built {
            Ok(built) => built,
            Err(error) => {
                for dataflow in worker.installed_dataflows() {
                    worker.drop_dataflow(dataflow);
                }
                return Err(error);
            }
        };
        let receiver = if index == 0 {
            feed.lock().unwrap_or_else(|p| p.into_inner()).take()
        } else {
            None
        };
        let mut feeder = receiver
            .map(|receiver| Feeder::new(receiver, inputs, stop_input, Arc::clone(&rows_fed)));

        let mut feed_error: Option<FeedError> = None;
        let mut failure_lines: Option<String> = None;
        let mut ended_inside: Option<(u64, u64)> = None;
        let mut recording = false;
        loop {
            let mut waiting_on_feed = false;
            if let Some(f) = feeder.as_mut() {
                let committed = committed_frontier(&probes);
                match f.pump(committed) {
                    Pumped::Fed(n) => waiting_on_feed = n == 0,
                    Pumped::Held => {}
                    Pumped::Ended { time, incomplete } => {
                        if incomplete > 0 {
                            ended_inside = Some((time, incomplete));
                        }
                    }
                    Pumped::Stopped(error) => feed_error = Some(error),
                }
            }
            if let Some(f) = feeder.as_mut() {
                let committed = sinks
                    .iter()
                    .map(|s| s.monitor().committed_frontier().unwrap_or(0))
                    .min()
                    .unwrap_or(0);
                f.forget_lines_before(committed);
            }
            if let Some((index, failed)) = sinks
                .iter()
                .enumerate()
                .find(|(_, s)| s.monitor().status().is_failed())
            {
                if failure_lines.is_none() {
                    // A sink fails at the first time it cannot write, after committing every
                    // time before it: its committed frontier is that time.
                    failure_lines = Some(
                        match (feeder.as_ref(), failed.monitor().committed_frontier()) {
                            (Some(f), Some(time)) => {
                                let table = plan.sink_tables[index];
                                f.lines_of(table, plan.tables.name(table), time)
                            }
                            _ => String::new(),
                        },
                    );
                }
                if fail_fast {
                    for dataflow in worker.installed_dataflows() {
                        worker.drop_dataflow(dataflow);
                    }
                    return Err(sink_failed(failed, failure_lines.as_deref()));
                }
            }
            let finished = match stop_seen.get() {
                Some(stop) => probes.iter().all(|p| !p.less_than(&stop)),
                None => probes.iter().all(|p| p.done()),
            };
            if finished {
                // Everything before the stop is committed; the progress records of workers
                // that had no data for the last times may still name an earlier frontier.
                // Recording the stop keeps a restart and `outflow read` from starting earlier.
                if !recording {
                    recording = true;
                    controls.iter().for_each(SinkControl::record_input_frontier);
                }
                // A failed sink records nothing more; the others finish.
                let recorded = controls.iter().zip(&sinks).all(|(control, sink)| {
                    control.input_recorded() || sink.monitor().status().is_failed()
                });
                if recorded {
                    break;
                }
            }
            worker.step_or_park(Some(Duration::from_millis(if waiting_on_feed {
                1
            } else {
                10
            })));
        }
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
        if let Some(failed) = sinks.iter().find(|s| s.monitor().status().is_failed()) {
            return Err(sink_failed(failed, failure_lines.as_deref()));
        }
        match (feed_error, ended_inside, stop_seen.get()) {
            (Some(error), _, Some(stop)) => Err(RunError::Feed {
                error,
                committed_before: stop,
                summary: RunSummary { sinks: Vec::new() },
            }),
            (None, Some((time, incomplete)), _) => Err(RunError::EndedInside {
                time,
                incomplete,
                summary: RunSummary { sinks: Vec::new() },
            }),
            _ => Ok(()),
        }
    })
    .map_err(RunError::Cluster)?;

    let mut outcome = Ok(());
    for (worker, result) in guards.join().into_iter().enumerate() {
        let result = result.unwrap_or_else(|panic| {
            Err(RunError::Worker {
                worker,
                message: format!("panicked: {panic}"),
            })
        });
        if let (Err(error), Ok(())) = (result, &outcome) {
            outcome = Err(error);
        }
    }
    if let Err(e) = observers.finish() {
        tracing::warn!("{e}");
    }
    let summary = RunSummary {
        sinks: state.reports(),
    };
    match outcome {
        Ok(()) => Ok(summary),
        Err(RunError::Feed {
            error,
            committed_before,
            ..
        }) => Err(RunError::Feed {
            error,
            committed_before,
            summary,
        }),
        Err(RunError::EndedInside {
            time, incomplete, ..
        }) => Err(RunError::EndedInside {
            time,
            incomplete,
            summary,
        }),
        Err(RunError::SinkFailed { sink, message, .. }) => Err(RunError::SinkFailed {
            sink,
            message,
            summary,
        }),
        Err(error) => Err(error),
    }
}

/// The error of a sink that failed while the run went on.
fn sink_failed(sink: &outflow::PreparedSink, lines: Option<&str>) -> RunError {
    let mut message = match sink.monitor().status() {
        outflow::status::SinkStatus::Failed { error } => error,
        other => other.name().to_string(),
    };
    message.push_str(lines.unwrap_or_default());
    RunError::SinkFailed {
        sink: sink.plan().spec.name.clone(),
        message,
        summary: RunSummary { sinks: Vec::new() },
    }
}

/// The least committed frontier over the sinks; `None` when all are done.
fn committed_frontier(probes: &[ProbeHandle<u64>]) -> Option<u64> {
    probes
        .iter()
        .filter_map(|p| p.with_frontier(|f| f.iter().min().copied()))
        .min()
}

enum Pumped {
    /// Applied this many feed messages.
    Fed(usize),
    /// Waiting for the sinks to commit before reading more.
    Held,
    /// The feed ended: the inputs stay at the feed's last time, which this many updates were
    /// fed at (they are written once a later feed completes that time).
    Ended { time: u64, incomplete: u64 },
    /// A bad line: the inputs stay at the last good time.
    Stopped(FeedError),
}

/// Worker 0's side of the feed: applies parsed lines to the inputs.
struct Feeder {
    receiver: Receiver<FeedMessage>,
    inputs: Vec<InputSession<u64, Row, isize>>,
    stop_input: InputSession<u64, u64, isize>,
    /// The feed's time: every time before it is complete.
    time: u64,
    /// Updates fed per time, until the sinks commit that time.
    uncommitted: Uncommitted,
    rows_fed: Arc<std::sync::atomic::AtomicU64>,
    /// The feed ended or a bad line was read: the inputs stay where they are.
    stopped: bool,
    /// The first and last feed line of each table's updates per time not yet committed, to
    /// point a sink's error at the lines it is about.
    lines: BTreeMap<(usize, u64), (u64, u64)>,
}

/// Updates fed per time and not committed yet.
#[derive(Default)]
struct Uncommitted {
    per_time: VecDeque<(u64, u64)>,
    total: u64,
}

impl Uncommitted {
    fn add(&mut self, time: u64) {
        match self.per_time.back_mut() {
            Some((t, count)) if *t == time => *count += 1,
            _ => self.per_time.push_back((time, 1)),
        }
        self.total += 1;
    }

    /// Forgets the times before `committed` (`None`: everything is committed).
    fn committed(&mut self, committed: Option<u64>) {
        while let Some(&(time, count)) = self.per_time.front() {
            if committed.is_some_and(|c| time >= c) {
                break;
            }
            self.per_time.pop_front();
            self.total -= count;
        }
    }

    /// Updates fed at `time`.
    fn at(&self, time: u64) -> u64 {
        match self.per_time.back() {
            Some(&(t, count)) if t == time => count,
            _ => 0,
        }
    }

    /// Whether the sinks must commit before more of the feed is read, the feed being at
    /// `current`: too many updates of complete times wait for their commit.
    fn full(&self, current: u64) -> bool {
        self.total - self.at(current) >= MAX_UNCOMMITTED_UPDATES
    }
}

impl Feeder {
    fn new(
        receiver: Receiver<FeedMessage>,
        inputs: Vec<InputSession<u64, Row, isize>>,
        stop_input: InputSession<u64, u64, isize>,
        rows_fed: Arc<std::sync::atomic::AtomicU64>,
    ) -> Feeder {
        Feeder {
            receiver,
            inputs,
            stop_input,
            time: 0,
            uncommitted: Uncommitted::default(),
            rows_fed,
            stopped: false,
            lines: BTreeMap::new(),
        }
    }

    /// Forgets the lines of times every sink has committed (a failed sink keeps the time it
    /// failed at: nothing of it is committed).
    fn forget_lines_before(&mut self, committed: u64) {
        self.lines.retain(|(_, time), _| *time >= committed);
    }

    /// The feed lines that hold `table`'s updates at `time`, as an error's suffix.
    fn lines_of(&self, table: usize, table_name: &str, time: u64) -> String {
        match self.lines.get(&(table, time)) {
            Some((first, last)) if first == last => {
                format!(" (feed line {first} holds table {table_name}'s update at time {time})")
            }
            Some((first, last)) => format!(
                " (feed lines {first}–{last} hold table {table_name}'s updates at time {time})"
            ),
            None => String::new(),
        }
    }

    /// Stops the inputs at the feed's time: every worker learns it, and the run ends once the
    /// sinks have committed every time before it.
    fn stop(&mut self) {
        self.inputs.iter_mut().for_each(InputSession::flush);
        self.stop_input.insert(self.time);
        self.stop_input.flush();
        self.stopped = true;
    }

    fn pump(&mut self, committed: Option<u64>) -> Pumped {
        if self.stopped {
            return Pumped::Held;
        }
        self.uncommitted.committed(committed);
        if self.uncommitted.full(self.time) {
            return Pumped::Held;
        }
        let mut fed = 0;
        while fed < FEED_BATCH {
            let message = match self.receiver.try_recv() {
                Ok(message) => message,
                Err(TryRecvError::Empty) => break,
                // The reader ends only after sending End or an error; a vanished reader panicked.
                Err(TryRecvError::Disconnected) => FeedMessage::Error(FeedError {
                    line: 0,
                    message: "the feed reader stopped unexpectedly".to_string(),
                }),
            };
            fed += 1;
            match message {
                FeedMessage::Item {
                    item:
                        FeedItem::Update {
                            table,
                            time,
                            row,
                            diff,
                        },
                    line,
                } => {
                    self.lines
                        .entry((table, time))
                        .and_modify(|(_, last)| *last = line)
                        .or_insert((line, line));
                    self.advance_to(time);
                    self.inputs[table].update(row, diff);
                    self.uncommitted.add(time);
                    self.rows_fed.fetch_add(1, Ordering::Relaxed);
                }
                FeedMessage::Item {
                    item: FeedItem::Advance(time),
                    ..
                } => self.advance_to(time),
                FeedMessage::End => {
                    // The end of a feed proves no more than its last time: the updates at
                    // that time may be followed by more of it in a longer feed, so the time
                    // stays open (never recorded as done) and a rerun writes it once complete.
                    self.stop();
                    let incomplete = self.uncommitted.at(self.time);
                    if incomplete > 0 {
                        tracing::warn!(
                            "the feed ended inside time {}: its {incomplete} update(s) are not written",
                            self.time
                        );
                    } else {
                        tracing::info!(
                            "the feed ended; every time before {} is complete",
                            self.time
                        );
                    }
                    return Pumped::Ended {
                        time: self.time,
                        incomplete,
                    };
                }
                FeedMessage::Error(error) => {
                    self.stop();
                    tracing::warn!("{error}; stopping the inputs at time {}", self.time);
                    return Pumped::Stopped(error);
                }
            }
            if self.uncommitted.full(self.time) {
                break;
            }
        }
        self.inputs.iter_mut().for_each(InputSession::flush);
        Pumped::Fed(fed)
    }

    fn advance_to(&mut self, time: u64) {
        if time > self.time {
            self.time = time;
            self.inputs
                .iter_mut()
                .for_each(|input| input.advance_to(time));
        }
    }
}
