//! Sink status, its history, and statistics per worker and in total, readable in code and
//! exportable as JSON and Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// What a sink (or one of its workers) is doing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum SinkStatus {
    /// Creating topics, registering schemas, initializing transactions, recovering.
    Starting,
    /// Producing and committing.
    Running,
    /// A call failed and is retried; nothing committed is lost.
    Stalled { error: String, retry_in_ms: u64 },
    /// Stopped for good; the sink must be restarted or reconfigured.
    Failed { error: String },
    /// Shut down by its owner.
    Dropped,
}

impl SinkStatus {
    /// How bad the status is, to pick the sink's status among its workers'.
    fn severity(&self) -> u8 {
        match self {
            SinkStatus::Running => 0,
            SinkStatus::Dropped => 1,
            SinkStatus::Starting => 2,
            SinkStatus::Stalled { .. } => 3,
            SinkStatus::Failed { .. } => 4,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            SinkStatus::Starting => "starting",
            SinkStatus::Running => "running",
            SinkStatus::Stalled { .. } => "stalled",
            SinkStatus::Failed { .. } => "failed",
            SinkStatus::Dropped => "dropped",
        }
    }

    pub fn is_failed(&self) -> bool {
        matches!(self, SinkStatus::Failed { .. })
    }
}

/// One change of the sink's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusChange {
    /// Milliseconds since the Unix epoch.
    pub occurred_at_ms: u64,
    /// The worker whose change it was.
    pub worker: usize,
    #[serde(flatten)]
    pub status: SinkStatus,
}

/// Counters of one worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerStatistics {
    pub messages_staged: u64,
    pub bytes_staged: u64,
    pub messages_committed: u64,
    pub bytes_committed: u64,
    /// Committed transactions (exactly-once; always 0 at-least-once).
    pub transactions_committed: u64,
    pub transactions_aborted: u64,
    /// At-least-once: flushes that had the broker acknowledge every message before them (the
    /// place of a commit when there are no transactions; always 0 exactly-once).
    pub flushes: u64,
    pub key_violations: u64,
    /// Messages whose `PARTITION BY` expression failed (overflow, division by zero, a
    /// negative value, …): each went to partition 0, as Materialize places them.
    pub partition_errors: u64,
    /// Every update of this worker's keys before this time is in Kafka; `None` before the
    /// first commit; `u64::MAX` when everything is.
    pub committed_frontier: Option<u64>,
    /// The time from the input frontier passing a time to that time being committed, in
    /// milliseconds, for the last commit.
    pub frontier_to_commit_ms: Option<u64>,
    /// When this worker's open transaction began (`begin_transaction` answered), in
    /// milliseconds since the Unix epoch; `None` while none is open (and always at least once).
    pub transaction_opened_at_ms: Option<u64>,
    /// How long the open transaction has been open, in milliseconds, when the report was made.
    /// A transaction held open keeps `read_committed` readers of its partitions waiting.
    pub open_transaction_age_ms: Option<u64>,
    /// When this worker last committed (a transaction, or at least once a flush), in
    /// milliseconds since the Unix epoch; `None` before its first commit in this process.
    pub last_commit_at_ms: Option<u64>,
    /// The time since the last commit, in milliseconds, when the report was made.
    pub since_last_commit_ms: Option<u64>,
    /// How long this worker's most recent commits took (the newest 1024), in microseconds,
    /// oldest first: percentiles for benchmarks and tools; not in the status file.
    #[serde(skip)]
    pub commit_micros: Vec<u64>,
}

impl WorkerStatistics {
    /// Sets the ages from the timestamps, as of `now_ms`.
    fn age(&mut self, now_ms: u64) {
        self.open_transaction_age_ms = self
            .transaction_opened_at_ms
            .map(|at| now_ms.saturating_sub(at));
        self.since_last_commit_ms = self.last_commit_at_ms.map(|at| now_ms.saturating_sub(at));
    }

    fn add(&mut self, other: &WorkerStatistics) {
        self.messages_staged += other.messages_staged;
        self.bytes_staged += other.bytes_staged;
        self.messages_committed += other.messages_committed;
        self.bytes_committed += other.bytes_committed;
        self.transactions_committed += other.transactions_committed;
        self.transactions_aborted += other.transactions_aborted;
        self.flushes += other.flushes;
        self.key_violations += other.key_violations;
        self.partition_errors += other.partition_errors;
        self.frontier_to_commit_ms = self.frontier_to_commit_ms.max(other.frontier_to_commit_ms);
        // The totals name the oldest open transaction and the most recent commit.
        self.transaction_opened_at_ms = match (
            self.transaction_opened_at_ms,
            other.transaction_opened_at_ms,
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_commit_at_ms = self.last_commit_at_ms.max(other.last_commit_at_ms);
        self.commit_micros.extend_from_slice(&other.commit_micros);
    }
}

/// The state of one sink in this process: status, history and statistics of its workers.
/// Clones share it; every worker of the process writes its part.
#[derive(Clone, Debug, Default)]
pub struct SinkMonitor {
    inner: Arc<Mutex<MonitorState>>,
}

#[derive(Debug, Default)]
struct MonitorState {
    name: String,
    at_least_once: bool,
    workers: BTreeMap<usize, WorkerState>,
    history: Vec<StatusChange>,
    notes: Vec<String>,
}

#[derive(Debug)]
struct WorkerState {
    status: SinkStatus,
    statistics: WorkerStatistics,
}

/// A copy of a sink's state at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SinkReport {
    pub name: String,
    /// `exactly-once` (transactions) or `at-least-once` (flushes, no transactions).
    pub delivery: &'static str,
    /// The worst status among the workers (failed, stalled, starting, dropped, running).
    #[serde(flatten)]
    pub status: SinkStatus,
    pub history: Vec<StatusChange>,
    /// Remarks that are not errors: topic settings that differ from the statement's, progress
    /// records that disagree with group offsets.
    pub notes: Vec<String>,
    pub total: WorkerStatistics,
    pub workers: BTreeMap<usize, WorkerStatistics>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl SinkMonitor {
    pub fn new(name: impl Into<String>) -> SinkMonitor {
        let monitor = SinkMonitor::default();
        monitor.lock().name = name.into();
        monitor
    }

    fn lock(&self) -> MutexGuard<'_, MonitorState> {
        // A worker that panicked while holding the lock leaves counters, never broken
        // invariants: reading them is still right.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Marks the sink as one that delivers at least once: it commits by flushing, without
    /// transactions, and [`SinkMonitor::committed`] counts flushes.
    pub fn set_at_least_once(&self, at_least_once: bool) {
        self.lock().at_least_once = at_least_once;
    }

    /// Counts one commit of worker `worker`: a transaction, or at least once a flush.
    pub fn committed(&self, worker: usize) {
        let mut state = self.lock();
        let at_least_once = state.at_least_once;
        let name = state.name.clone();
        let entry = state.workers.entry(worker).or_insert_with(|| WorkerState {
            status: SinkStatus::Starting,
            statistics: WorkerStatistics::default(),
        });
        entry.statistics.last_commit_at_ms = Some(now_ms());
        entry.statistics.transaction_opened_at_ms = None;
        if at_least_once {
            entry.statistics.flushes += 1;
            tracing::debug!(sink = %name, worker, flushes = entry.statistics.flushes, "flushed");
        } else {
            entry.statistics.transactions_committed += 1;
            tracing::debug!(
                sink = %name,
                worker,
                transactions = entry.statistics.transactions_committed,
                "transaction committed"
            );
        }
    }

    /// Worker `worker` began a transaction (exactly-once only: at least once, nothing is held
    /// open for readers).
    pub fn transaction_began(&self, worker: usize) {
        let mut state = self.lock();
        if state.at_least_once {
            return;
        }
        let entry = state.workers.entry(worker).or_insert_with(|| WorkerState {
            status: SinkStatus::Starting,
            statistics: WorkerStatistics::default(),
        });
        entry.statistics.transaction_opened_at_ms = Some(now_ms());
    }

    /// Worker `worker`'s open transaction ended without a commit (aborted).
    pub fn transaction_aborted(&self, worker: usize) {
        self.update(worker, |s| {
            s.transactions_aborted += 1;
            s.transaction_opened_at_ms = None;
        });
    }

    /// Records worker `worker`'s status, adding a history entry (and a log line) when it
    /// changed.
    pub fn set_status(&self, worker: usize, status: SinkStatus) {
        let mut state = self.lock();
        let entry = state.workers.entry(worker).or_insert_with(|| WorkerState {
            status: SinkStatus::Starting,
            statistics: WorkerStatistics::default(),
        });
        let changed = entry.status != status;
        let first = state.history.iter().all(|c| c.worker != worker);
        if changed || first {
            state
                .workers
                .get_mut(&worker)
                .expect("inserted above")
                .status = status.clone();
            let sink = &state.name;
            match &status {
                SinkStatus::Failed { error } => {
                    tracing::error!(%sink, worker, "failed: {error}")
                }
                SinkStatus::Stalled { error, retry_in_ms } => {
                    tracing::warn!(%sink, worker, retry_in_ms, "stalled: {error}")
                }
                other => tracing::info!(%sink, worker, "{}", other.name()),
            }
            state.history.push(StatusChange {
                occurred_at_ms: now_ms(),
                worker,
                status,
            });
        }
    }

    /// Updates worker `worker`'s statistics.
    pub fn update(&self, worker: usize, f: impl FnOnce(&mut WorkerStatistics)) {
        let mut state = self.lock();
        let entry = state.workers.entry(worker).or_insert_with(|| WorkerState {
            status: SinkStatus::Starting,
            statistics: WorkerStatistics::default(),
        });
        f(&mut entry.statistics);
    }

    /// Adds a remark (deduplicated).
    pub fn note(&self, note: impl Into<String>) {
        let note = note.into();
        let mut state = self.lock();
        if !state.notes.contains(&note) {
            state.notes.push(note);
        }
    }

    /// The sink's status: the worst of its workers'.
    pub fn status(&self) -> SinkStatus {
        let state = self.lock();
        state
            .workers
            .values()
            .map(|w| &w.status)
            .max_by_key(|s| s.severity())
            .cloned()
            .unwrap_or(SinkStatus::Starting)
    }

    /// The committed frontier over this process's workers: the least of theirs.
    pub fn committed_frontier(&self) -> Option<u64> {
        let state = self.lock();
        if state.workers.is_empty() {
            return None;
        }
        state
            .workers
            .values()
            .map(|w| w.statistics.committed_frontier)
            .min()
            .flatten()
    }

    pub fn report(&self) -> SinkReport {
        let state = self.lock();
        let now = now_ms();
        let mut total = WorkerStatistics::default();
        for worker in state.workers.values() {
            total.add(&worker.statistics);
        }
        total.age(now);
        total.committed_frontier = if state.workers.is_empty() {
            None
        } else {
            state
                .workers
                .values()
                .map(|w| w.statistics.committed_frontier)
                .min()
                .flatten()
        };
        drop(state);
        let status = self.status();
        let state = self.lock();
        SinkReport {
            name: state.name.clone(),
            delivery: if state.at_least_once {
                "at-least-once"
            } else {
                "exactly-once"
            },
            status,
            history: state.history.clone(),
            notes: state.notes.clone(),
            total,
            workers: state
                .workers
                .iter()
                .map(|(w, s)| {
                    let mut statistics = s.statistics.clone();
                    statistics.age(now);
                    (*w, statistics)
                })
                .collect(),
        }
    }
}

impl SinkReport {
    /// The statistics in Prometheus's text exposition format, one series per worker.
    pub fn prometheus(reports: &[SinkReport]) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, fn(&WorkerStatistics) -> u64); 9] = [
            (
                "outflow_messages_staged_total",
                "Messages handed to the producer.",
                |s| s.messages_staged,
            ),
            (
                "outflow_bytes_staged_total",
                "Bytes handed to the producer.",
                |s| s.bytes_staged,
            ),
            (
                "outflow_messages_committed_total",
                "Messages in committed transactions.",
                |s| s.messages_committed,
            ),
            (
                "outflow_bytes_committed_total",
                "Bytes in committed transactions.",
                |s| s.bytes_committed,
            ),
            (
                "outflow_transactions_committed_total",
                "Committed transactions.",
                |s| s.transactions_committed,
            ),
            (
                "outflow_transactions_aborted_total",
                "Aborted transactions.",
                |s| s.transactions_aborted,
            ),
            (
                "outflow_flushes_total",
                "At-least-once flushes (commits without a transaction).",
                |s| s.flushes,
            ),
            (
                "outflow_key_violations_total",
                "Keys found holding several rows at one time.",
                |s| s.key_violations,
            ),
            (
                "outflow_partition_errors_total",
                "Messages sent to partition 0 because their PARTITION BY expression failed.",
                |s| s.partition_errors,
            ),
        ];
        for (name, help, get) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for report in reports {
                for (worker, stats) in &report.workers {
                    let _ = writeln!(
                        out,
                        "{name}{{sink=\"{}\",worker=\"{worker}\"}} {}",
                        escape(&report.name),
                        get(stats)
                    );
                }
            }
        }
        let _ = writeln!(out, "# HELP outflow_committed_frontier Every update before this time is in Kafka.\n# TYPE outflow_committed_frontier gauge");
        for report in reports {
            for (worker, stats) in &report.workers {
                if let Some(frontier) = stats.committed_frontier {
                    let _ = writeln!(
                        out,
                        "outflow_committed_frontier{{sink=\"{}\",worker=\"{worker}\"}} {frontier}",
                        escape(&report.name)
                    );
                }
            }
        }
        type Age = fn(&WorkerStatistics) -> Option<u64>;
        let ages: [(&str, &str, Age); 2] = [
            (
                "outflow_open_transaction_age_seconds",
                "How long the worker's open transaction has been open (absent when none is); \
                 read_committed readers of its partitions wait for it.",
                |s| s.open_transaction_age_ms,
            ),
            (
                "outflow_since_last_commit_seconds",
                "Time since the worker's last commit (absent before the first).",
                |s| s.since_last_commit_ms,
            ),
        ];
        for (name, help, get) in ages {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for report in reports {
                for (worker, stats) in &report.workers {
                    if let Some(ms) = get(stats) {
                        let _ = writeln!(
                            out,
                            "{name}{{sink=\"{}\",worker=\"{worker}\"}} {}.{:03}",
                            escape(&report.name),
                            ms / 1000,
                            ms % 1000
                        );
                    }
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP outflow_sink_up 1 when the sink is running.\n# TYPE outflow_sink_up gauge"
        );
        for report in reports {
            let up = u8::from(report.status == SinkStatus::Running);
            let _ = writeln!(
                out,
                "outflow_sink_up{{sink=\"{}\",status=\"{}\"}} {up}",
                escape(&report.name),
                report.status.name()
            );
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_the_worst_and_history_records_changes() {
        let monitor = SinkMonitor::new("s");
        monitor.set_status(0, SinkStatus::Running);
        monitor.set_status(1, SinkStatus::Running);
        monitor.set_status(1, SinkStatus::Running);
        assert_eq!(monitor.status(), SinkStatus::Running);
        monitor.set_status(
            1,
            SinkStatus::Stalled {
                error: "broker down".into(),
                retry_in_ms: 100,
            },
        );
        assert!(matches!(monitor.status(), SinkStatus::Stalled { .. }));
        monitor.set_status(1, SinkStatus::Running);
        let report = monitor.report();
        let statuses: Vec<&str> = report.history.iter().map(|c| c.status.name()).collect();
        assert_eq!(statuses, ["running", "running", "stalled", "running"]);
    }

    #[test]
    fn an_open_transaction_has_an_age_until_it_commits() {
        let monitor = SinkMonitor::new("s");
        monitor.set_status(0, SinkStatus::Running);
        let report = monitor.report();
        assert_eq!(report.workers[&0].open_transaction_age_ms, None);
        assert_eq!(report.workers[&0].since_last_commit_ms, None);
        let text = SinkReport::prometheus(&[report]);
        assert!(
            !text.contains("outflow_open_transaction_age_seconds{"),
            "{text}"
        );

        monitor.transaction_began(0);
        monitor.update(0, |s| s.transaction_opened_at_ms = Some(now_ms() - 2_500));
        let report = monitor.report();
        let age = report.workers[&0].open_transaction_age_ms.unwrap();
        assert!((2_500..60_000).contains(&age), "{age}");
        assert_eq!(report.total.open_transaction_age_ms, Some(age));
        let text = SinkReport::prometheus(&[report]);
        let line = text
            .lines()
            .find(|l| {
                l.starts_with("outflow_open_transaction_age_seconds{sink=\"s\",worker=\"0\"} ")
            })
            .unwrap_or_else(|| panic!("{text}"));
        let seconds: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(seconds >= 2.5, "{line}");

        monitor.committed(0);
        let report = monitor.report();
        assert_eq!(report.workers[&0].open_transaction_age_ms, None);
        assert!(report.workers[&0].since_last_commit_ms.is_some());
        let text = SinkReport::prometheus(&[report]);
        assert!(
            text.contains("outflow_since_last_commit_seconds{sink=\"s\",worker=\"0\"} "),
            "{text}"
        );

        monitor.transaction_began(0);
        monitor.transaction_aborted(0);
        let report = monitor.report();
        assert_eq!(report.workers[&0].open_transaction_age_ms, None);
        assert_eq!(report.workers[&0].transactions_aborted, 1);
    }

    #[test]
    fn at_least_once_holds_no_transaction_open() {
        let monitor = SinkMonitor::new("s");
        monitor.set_at_least_once(true);
        monitor.transaction_began(0);
        monitor.committed(0);
        let report = monitor.report();
        assert_eq!(report.workers[&0].open_transaction_age_ms, None);
        assert!(report.workers[&0].since_last_commit_ms.is_some());
        assert_eq!(report.workers[&0].flushes, 1);
    }

    #[test]
    fn totals_add_up_and_export() {
        let monitor = SinkMonitor::new("orders");
        monitor.update(0, |s| {
            s.messages_committed = 3;
            s.committed_frontier = Some(5);
        });
        monitor.update(1, |s| {
            s.messages_committed = 4;
            s.committed_frontier = Some(7);
        });
        monitor.set_status(0, SinkStatus::Running);
        monitor.set_status(1, SinkStatus::Running);
        let report = monitor.report();
        assert_eq!(report.total.messages_committed, 7);
        assert_eq!(report.total.committed_frontier, Some(5));
        let text = SinkReport::prometheus(&[report.clone()]);
        assert!(
            text.contains("outflow_messages_committed_total{sink=\"orders\",worker=\"1\"} 4"),
            "{text}"
        );
        assert!(text.contains("outflow_sink_up{sink=\"orders\",status=\"running\"} 1"));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["status"], "running");
        assert_eq!(json["total"]["messages_committed"], 7);
    }
}
