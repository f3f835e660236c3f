//! The state the sink operators of one worker share: the protocol's machine, its producer
//! driver, and the bookkeeping of what was staged and committed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outflow_protocol::{Action, Event, Machine, Status};
use timely::dataflow::Scope;
use timely::scheduling::SyncActivator;

use crate::producer::ProducerDriver;
use crate::record::PackedRecord;
use crate::status::{SinkMonitor, SinkStatus};

/// The activators of one worker's sink operators: the producer driver wakes them all when it
/// has news, whichever operator will take it.
#[derive(Clone, Default)]
pub(super) struct Wakers(Arc<Mutex<Vec<SyncActivator>>>);

impl Wakers {
    pub(super) fn register(&self, scope: Scope<'_, u64>, address: &[usize]) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(scope.worker().sync_activator_for(address.to_vec()));
    }

    pub(super) fn wake_all(&self) {
        for activator in self.0.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = activator.activate();
        }
    }
}

/// What the sink operators of one worker share: the machine, its driver, and the bookkeeping
/// of what was staged and committed.
pub(super) struct WorkerSink {
    pub(super) worker: usize,
    pub(super) machine: Machine<PackedRecord>,
    pub(super) driver: ProducerDriver<PackedRecord>,
    pub(super) started: Instant,
    pub(super) monitor: SinkMonitor,
    pub(super) announced: bool,
    pub(super) paused: bool,
    /// The committed frontier the machine last reported.
    pub(super) committed: Option<Option<u64>>,
    /// Messages and bytes staged per time and not yet covered by the committed frontier.
    pub(super) staged: BTreeMap<u64, (u64, u64)>,
    /// When the input frontier first passed each staged time, for the commit latency.
    pub(super) passed_at: BTreeMap<u64, Instant>,
    pub(super) failed: Option<String>,
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
    pub(super) fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Carries out the machine's actions and feeds it the driver's results until neither is
    /// left.
    pub(super) fn pump(&mut self) {
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
                    Event::Began(Ok(())) => self.monitor.transaction_began(self.worker),
                    Event::Committed(Ok(())) => self.monitor.committed(self.worker),
                    Event::Aborted(Ok(())) => self.monitor.transaction_aborted(self.worker),
                    _ => {}
                }
                self.handle(event);
            }
            if !progressed {
                return;
            }
        }
    }

    pub(super) fn handle(&mut self, event: Event<PackedRecord>) {
        let now = self.now();
        if let Err(error) = self.machine.handle(now, event) {
            // The operator broke the machine's contract: a bug here, reported rather than
            // written to Kafka.
            self.fail(format!("internal error: {error}"));
        }
    }

    pub(super) fn fail(&mut self, error: String) {
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

    fn apply(&mut self, action: Action<PackedRecord>) {
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
                let commit_micros = self.driver.take_commit_micros();
                self.monitor.update(self.worker, |s| {
                    s.commit_micros.extend(commit_micros);
                    let excess = s.commit_micros.len().saturating_sub(1024);
                    s.commit_micros.drain(..excess);
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
