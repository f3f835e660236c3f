//! `outflow run`: every sink of a statements file, over a change feed of its tables, on a
//! timely cluster of one or more processes.
//!
//! Worker 0 applies the feed (read and parsed on a thread of its own) to one input per table;
//! each sink reads its table's collection through `sink_kafka`. The run ends when every sink
//! has committed everything (the feed's end closes the inputs), or, after a bad feed line, once
//! the sinks have committed every time before the last good one: the inputs never move past
//! that time, so no time is half written. A restart replays the feed from the start; the
//! sinks' recovery skips what the topics already hold.

use std::cell::Cell;
use std::collections::VecDeque;
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
use outflow::sink::{PreparedSink, SinkKafka, SinkPlan};
use outflow::statement::Catalog;
use outflow::status::{SinkMonitor, SinkReport, SinkStatus};

/// Updates worker 0 may have fed beyond the slowest sink's committed frontier; it reads no
/// more of the feed until the sinks catch up, so memory stays bounded on a long feed.
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
    ) {
        for sink in &mut self.sinks {
            sink.broker_shows_aborted_records = broker_shows_aborted_records;
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
            writeln!(
                f,
                "sink {}: {} messages, {} bytes, {} transactions committed ({} aborted), committed frontier {frontier}",
                report.name,
                report.total.messages_committed,
                report.total.bytes_committed,
                report.total.transactions_committed,
                report.total.transactions_aborted,
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
    /// A bad feed line; every time before the last good one was committed.
    #[error("{error} (every time before {committed_before} is committed; nothing of that time or later was fed)")]
    Feed {
        error: FeedError,
        committed_before: u64,
        summary: RunSummary,
    },
    #[error("worker {worker}: {message}")]
    Worker { worker: usize, message: String },
}

/// Runs `plan` over the feed until the sinks have committed all of it, or a feed line is bad,
/// or a sink fails.
pub fn run(plan: RunPlan, options: RunOptions) -> Result<RunSummary, RunError> {
    // Connections, topics and schemas, before any dataflow: a mistake fails here, naming it.
    let mut prepared: Vec<PreparedSink> = Vec::with_capacity(plan.sinks.len());
    for sink in &plan.sinks {
        match sink.preflight() {
            Ok(ready) => prepared.push(ready),
            Err(error) => {
                let message = error.to_string();
                // The status file says why the run ended, as it does for a sink that fails later.
                if let Some(path) = &options.status_file {
                    let failed = SinkMonitor::new(sink.spec.name.clone());
                    failed.set_status(
                        0,
                        SinkStatus::Failed {
                            error: message.clone(),
                        },
                    );
                    let state = RunState {
                        monitors: prepared
                            .iter()
                            .map(|s| s.monitor().clone())
                            .chain([failed])
                            .collect(),
                        rows_fed: Default::default(),
                    };
                    if let Err(io) = crate::observe::write_status(path, &state) {
                        tracing::warn!("cannot write the status file {}: {io}", path.display());
                    }
                }
                return Err(RunError::Sink {
                    sink: sink.spec.name.clone(),
                    message,
                });
            }
        }
    }
    let state = RunState {
        monitors: prepared.iter().map(|s| s.monitor().clone()).collect(),
        rows_fed: Default::default(),
    };
    let holds_worker_zero = match &options.timely.communication {
        timely::CommunicationConfig::Cluster { process, .. } => *process == 0,
        _ => true,
    };
    let feed = if holds_worker_zero {
        Some(spawn_reader(
            options.feed.open()?,
            plan.tables.clone(),
            options.pace,
        ))
    } else {
        None
    };
    let feed = Arc::new(Mutex::new(feed));
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

    let rows_fed = Arc::clone(&state.rows_fed);
    let worker_plan = plan.clone();
    let worker_sinks = prepared.clone();
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
                for (sink, &table) in sinks.iter().zip(&plan.sink_tables) {
                    let handle = collections[table].clone().sink_kafka(sink).map_err(|e| {
                        RunError::Sink {
                            sink: sink.plan().spec.name.clone(),
                            message: e.to_string(),
                        }
                    })?;
                    probes.push(handle.probe);
                }
                // Worker 0 tells every worker, in every process, the time a bad feed line stopped
                // the inputs at.
                let (stop_input, stop) = scope.new_collection::<u64, isize>();
                stop.inner
                    .broadcast()
                    .inspect(move |(time, _, _)| seen.set(Some(*time)));
                Ok::<_, RunError>((inputs, probes, stop_input))
            });
        let (inputs, probes, stop_input) = match built {
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
        loop {
            let mut waiting_on_feed = false;
            if let Some(f) = feeder.as_mut() {
                let committed = committed_frontier(&probes);
                match f.pump(committed) {
                    Pumped::Fed(n) => waiting_on_feed = n == 0,
                    Pumped::Held => {}
                    Pumped::Finished => {}
                    Pumped::Stopped(error) => feed_error = Some(error),
                }
            }
            if let Some(failed) = sinks.iter().find(|s| s.monitor().status().is_failed()) {
                let message = match failed.monitor().status() {
                    outflow::status::SinkStatus::Failed { error } => error,
                    other => other.name().to_string(),
                };
                for dataflow in worker.installed_dataflows() {
                    worker.drop_dataflow(dataflow);
                }
                return Err(RunError::Sink {
                    sink: failed.plan().spec.name.clone(),
                    message,
                });
            }
            let finished = match stop_seen.get() {
                Some(stop) => probes.iter().all(|p| !p.less_than(&stop)),
                None => probes.iter().all(|p| p.done()),
            };
            if finished {
                break;
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
        match (feed_error, stop_seen.get()) {
            (Some(error), Some(stop)) => Err(RunError::Feed {
                error,
                committed_before: stop,
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
        Err(error) => Err(error),
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
    /// The feed ended and the inputs are closed.
    Finished,
    /// A bad line: the inputs stay at the last good time.
    Stopped(FeedError),
}

/// Worker 0's side of the feed: applies parsed lines to the inputs.
struct Feeder {
    receiver: Receiver<FeedMessage>,
    inputs: Option<Vec<InputSession<u64, Row, isize>>>,
    stop_input: Option<InputSession<u64, u64, isize>>,
    time: u64,
    /// Updates fed per time, until the sinks commit that time.
    uncommitted: VecDeque<(u64, u64)>,
    uncommitted_total: u64,
    rows_fed: Arc<std::sync::atomic::AtomicU64>,
    /// A bad line was read: the inputs stay where they are.
    stopped: bool,
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
            inputs: Some(inputs),
            stop_input: Some(stop_input),
            time: 0,
            uncommitted: VecDeque::new(),
            uncommitted_total: 0,
            rows_fed,
            stopped: false,
        }
    }

    fn pump(&mut self, committed: Option<u64>) -> Pumped {
        let Some(inputs) = self.inputs.as_mut() else {
            return Pumped::Finished;
        };
        if self.stopped {
            return Pumped::Held;
        }
        while let Some(&(time, count)) = self.uncommitted.front() {
            if committed.is_some_and(|c| time >= c) {
                break;
            }
            self.uncommitted.pop_front();
            self.uncommitted_total -= count;
        }
        if self.uncommitted_total >= MAX_UNCOMMITTED_UPDATES {
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
                    ..
                } => {
                    if time > self.time {
                        self.time = time;
                        inputs.iter_mut().for_each(|input| input.advance_to(time));
                    }
                    inputs[table].update(row, diff);
                    match self.uncommitted.back_mut() {
                        Some((t, count)) if *t == time => *count += 1,
                        _ => self.uncommitted.push_back((time, 1)),
                    }
                    self.uncommitted_total += 1;
                    self.rows_fed.fetch_add(1, Ordering::Relaxed);
                }
                FeedMessage::Item {
                    item: FeedItem::Advance(time),
                    ..
                } => {
                    if time > self.time {
                        self.time = time;
                        inputs.iter_mut().for_each(|input| input.advance_to(time));
                    }
                }
                FeedMessage::End => {
                    self.inputs = None;
                    self.stop_input = None;
                    return Pumped::Finished;
                }
                FeedMessage::Error(error) => {
                    inputs.iter_mut().for_each(InputSession::flush);
                    if let Some(stop) = self.stop_input.as_mut() {
                        stop.insert(self.time);
                        stop.flush();
                    }
                    self.stopped = true;
                    tracing::warn!("{error}; stopping the inputs at time {}", self.time);
                    return Pumped::Stopped(error);
                }
            }
            if self.uncommitted_total >= MAX_UNCOMMITTED_UPDATES {
                break;
            }
        }
        inputs.iter_mut().for_each(InputSession::flush);
        Pumped::Fed(fed)
    }
}
