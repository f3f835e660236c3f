//! One worker of a sink without a dataflow: the protocol's machine and the producer driver,
//! stepped on the test thread, so that a test controls exactly when messages, frontiers and
//! time reach the machine (a transaction left open, a worker paused mid-commit).

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use outflow::producer::{DeliveryMode, ProducerDriver, ProducerSettings, SinkRecord};
use outflow::progress_reader::{self, RecoverOptions};
use outflow_protocol::{Action, Cadence, Event, Machine, Recovery, SinkNames, Status};
use rdkafka::config::ClientConfig;

/// A worker of a one-worker sink: its machine, its driver, and what the machine reported.
pub struct DriverWorker {
    pub machine: Machine<SinkRecord>,
    pub driver: ProducerDriver<SinkRecord>,
    pub statuses: Vec<Status>,
    pub announced: bool,
    connection: ClientConfig,
    progress: String,
    started: Instant,
    /// How long [`DriverWorker::run_until`] waits.
    pub patience: Duration,
}

impl DriverWorker {
    /// Starts worker 0 of 1 of the sink `names`, writing `data` with progress in `progress`;
    /// `adjust` may change the producer settings before the driver starts.
    pub fn start(
        connection: &ClientConfig,
        names: &SinkNames,
        data: &str,
        progress: &str,
        cadence: Cadence,
        mode: DeliveryMode,
        adjust: impl FnOnce(&mut ProducerSettings),
    ) -> DriverWorker {
        let mut settings = ProducerSettings::new(names.clone(), 0, data, progress, &cadence);
        settings.mode = mode;
        settings.call_timeout = Duration::from_secs(10);
        adjust(&mut settings);
        let test_thread = thread::current();
        let driver =
            ProducerDriver::start(connection, settings, Box::new(move || test_thread.unpark()))
                .expect("start the driver");
        DriverWorker {
            machine: Machine::new(names.clone(), cadence, 0, 1),
            driver,
            statuses: Vec::new(),
            announced: false,
            connection: connection.clone(),
            progress: progress.to_owned(),
            started: Instant::now(),
            patience: Duration::from_secs(30),
        }
    }

    /// The machine's clock.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Delivers a due tick, then carries out actions and feeds results until neither is left.
    pub fn pump(&mut self) {
        let now = self.now();
        if self.machine.next_wakeup().is_some_and(|at| at <= now) {
            self.machine.handle(now, Event::Tick).unwrap();
        }
        for action in self
            .driver
            .step(&mut self.machine, now)
            .expect("the machine's contract")
        {
            match action {
                Action::Status(status) => self.statuses.push(status),
                Action::Announced => self.announced = true,
                _ => {}
            }
        }
    }

    /// Pumps until `done`, or panics after [`DriverWorker::patience`] naming `what`.
    pub fn run_until(&mut self, what: &str, done: impl Fn(&DriverWorker) -> bool) {
        let deadline = Instant::now() + self.patience;
        loop {
            self.pump();
            if done(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not happen within {:?}; statuses {:?}",
                self.patience,
                self.statuses
            );
            thread::park_timeout(Duration::from_millis(5));
        }
    }

    /// Initializes transactions, recovers from the progress topic and waits for the run's
    /// announcement.
    pub fn initialize_and_recover(&mut self, mode: DeliveryMode) -> Arc<Recovery> {
        self.run_until("init_transactions", |w| w.driver.is_initialized());
        let options = RecoverOptions {
            mode,
            read_timeout: self.patience,
            ..RecoverOptions::default()
        };
        let names = self.driver.settings().names.clone();
        let recovery = Arc::new(
            progress_reader::recover(&self.connection, &names, &self.progress, 1, options)
                .expect("recover"),
        );
        self.machine
            .handle(self.now(), Event::Recovered(Arc::clone(&recovery)))
            .unwrap();
        self.run_until("the announcement", |w| w.announced);
        recovery
    }

    /// Hands the machine a message of `key` at `time` (value and a header `t` = the time).
    pub fn feed(&mut self, time: u64, key: &str, value: &str) {
        let message = SinkRecord {
            partition: None,
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![("t".to_string(), Some(time.to_string().into_bytes()))],
            timestamp: None,
        };
        let event = Event::Message {
            time,
            position: key.as_bytes().to_vec().into(),
            bytes: key.len() + value.len(),
            message,
        };
        self.machine.handle(self.now(), event).unwrap();
    }

    /// Advances the input frontier without waiting for anything.
    pub fn advance_to(&mut self, frontier: Option<u64>) {
        self.machine
            .handle(self.now(), Event::Frontier(frontier))
            .unwrap();
    }

    /// Advances the input frontier and waits until the machine reports it committed.
    pub fn advance(&mut self, frontier: Option<u64>) {
        self.advance_to(frontier);
        let expected = Some(frontier);
        self.run_until(&format!("a committed frontier of {frontier:?}"), move |w| {
            w.machine.committed_frontier() == expected
        });
    }

    /// Whether the machine ever reported a stalled status.
    pub fn stalled_once(&self) -> bool {
        self.statuses
            .iter()
            .any(|s| matches!(s, Status::Stalled { .. }))
    }
}
