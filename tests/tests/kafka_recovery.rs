//! Recovery of the exactly-once sink on Apache Kafka, the twin of `sink_recovery.rs`'s
//! kill-and-restart test (which runs on Tansu): a sink process (`sink_process
//! --broker-hides-aborted`) killed with SIGKILL at seeded moments and restarted with other worker
//! counts loses and repeats nothing.
//!
//! Kafka decides what is committed: topics are read by a librdkafka consumer at
//! `read_committed` ([`outflow_tests::committed`]). A killed producer leaves its transaction
//! open, which holds `read_committed` readers at the last stable offset until the next instance
//! fences it; so between rounds the topic is read up to its last stable offset
//! ([`committed::read_stable`]), and at the end up to its high watermark, which requires every
//! transaction to be decided.
//!
//! `OUTFLOW_RECOVERY_SEED=<n>` replays a seed, `OUTFLOW_RECOVERY_ROUNDS=<n>` kills and restarts
//! more often than the default 3.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use outflow::{SinkReport, SinkStatus};
use outflow_tests::broker::unique_name;
use outflow_tests::committed::{self, assert_topic_holds};
use outflow_tests::kafka::Kafka;
use outflow_tests::pipeline::{expected_json, random_history, upserts_by_key};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SINK_PROCESS: &str = env!("CARGO_BIN_EXE_sink_process");
/// How long one run of a sink may take before the test gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn bootstrap() -> String {
    Kafka::shared().bootstrap()
}

/// The seed of a test's random choices: `OUTFLOW_RECOVERY_SEED`, or a fresh one, printed so a
/// failure can be replayed.
fn seed(test: &str) -> u64 {
    let seed = match std::env::var("OUTFLOW_RECOVERY_SEED") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("OUTFLOW_RECOVERY_SEED={text:?} is not a number")),
        Err(_) => rand::random::<u32>() as u64,
    };
    eprintln!("{test}: seed {seed} (replay with OUTFLOW_RECOVERY_SEED={seed})");
    seed
}

fn rounds() -> usize {
    match std::env::var("OUTFLOW_RECOVERY_ROUNDS") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("OUTFLOW_RECOVERY_ROUNDS={text:?} is not a number")),
        Err(_) => 3,
    }
}

// ---------------------------------------------------------------------------------------------
// What a topic holds

/// Checks that what a `read_committed` consumer sees of the topic now holds, per key, a prefix
/// of the expected sequence: nothing written twice, nothing out of order, nothing invented.
/// Returns how many messages it holds.
fn assert_prefixes(
    topic: &str,
    expected: &BTreeMap<i64, Vec<Option<String>>>,
    context: &str,
) -> usize {
    let records = committed::read_stable(&bootstrap(), topic)
        .unwrap_or_else(|e| panic!("{context}: reading {topic}: {e}"));
    for (id, values) in upserts_by_key(&records) {
        let want = expected.get(&id).map_or(&[][..], Vec::as_slice);
        assert!(
            values.len() <= want.len() && values[..] == want[..values.len()],
            "{context}: key {id} holds {values:?}, which is not a prefix of {want:?}"
        );
    }
    records.len()
}

struct SinkProcess {
    child: Child,
    /// The process's stderr (its debug reports included), for failure messages.
    stderr: tempfile::NamedTempFile,
    /// `(transactions committed, messages committed)` as the process prints them.
    progress: Receiver<(u64, u64)>,
    report: Receiver<SinkReport>,
}

#[derive(Clone, Debug)]
struct ProcessArgs {
    sink: String,
    prefix: String,
    seed: u64,
    keys: i64,
    times: u64,
    changes: usize,
    pace_ms: u64,
    max_transaction_bytes: Option<usize>,
}

impl SinkProcess {
    fn spawn(args: &ProcessArgs, workers: usize) -> SinkProcess {
        let mut command = Command::new(SINK_PROCESS);
        command
            .args([
                "--bootstrap",
                &bootstrap(),
                "--sink",
                &args.sink,
                "--prefix",
                &args.prefix,
            ])
            .args([
                "--workers",
                &workers.to_string(),
                "--seed",
                &args.seed.to_string(),
            ])
            .args([
                "--keys",
                &args.keys.to_string(),
                "--times",
                &args.times.to_string(),
            ])
            .args([
                "--changes",
                &args.changes.to_string(),
                "--pace-ms",
                &args.pace_ms.to_string(),
            ])
            .args(["--timeout-s", &RUN_TIMEOUT.as_secs().to_string()])
            .arg("--broker-hides-aborted");
        if let Some(bytes) = args.max_transaction_bytes {
            command.args(["--max-transaction-bytes", &bytes.to_string()]);
        }
        let stderr = tempfile::NamedTempFile::new().expect("a file for sink_process's stderr");
        let mut child = command
            .env("OUTFLOW_TEST_DEBUG", "1")
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("reopen the stderr file"))
            .spawn()
            .expect("sink_process starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (progress_send, progress) = mpsc::channel();
        let (report_send, report) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(counts) = line.strip_prefix("progress ") {
                    let mut numbers = counts
                        .split(' ')
                        .map(|n| n.parse::<u64>().expect("counts are numbers"));
                    let _ = progress_send.send((numbers.next().unwrap(), numbers.next().unwrap()));
                } else if let Some(json) = line.strip_prefix("report ") {
                    let value: serde_json::Value =
                        serde_json::from_str(json).expect("the report is JSON");
                    let _ = report_send.send(report_from_json(&value));
                }
            }
        });
        SinkProcess {
            child,
            stderr,
            progress,
            report,
        }
    }

    /// What recovery reported about disagreeing records and offsets, from the debug reports.
    fn recovery_notes(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
        let mut notes: Vec<String> = text
            .split("progress recovery: ")
            .skip(1)
            .map(|note| note.split("\", ").next().unwrap_or(note).to_string())
            .collect();
        notes.dedup();
        notes
    }

    /// The last lines the process wrote to stderr.
    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until `reached` holds for the printed counts, then waits `delay` more and kills the
    /// process with SIGKILL. Returns false when the process ended first, which it must do
    /// successfully.
    fn kill_when(&mut self, reached: impl Fn(u64, u64) -> bool, delay: Duration) -> bool {
        let deadline = Instant::now() + RUN_TIMEOUT;
        loop {
            match self.progress.recv_timeout(Duration::from_millis(100)) {
                Ok((transactions, messages)) if reached(transactions, messages) => break,
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().unwrap();
                    assert!(
                        status.success(),
                        "sink_process ended with {status}; its stderr:\n{}",
                        self.stderr_tail()
                    );
                    return false;
                }
            }
            assert!(
                Instant::now() < deadline,
                "sink_process neither reached the kill point nor ended within {RUN_TIMEOUT:?}; its stderr:\n{}",
                self.stderr_tail()
            );
        }
        thread::sleep(delay);
        // `Child::kill` sends SIGKILL on Unix: no destructor, no abort of open transactions.
        let killed = self.child.kill().is_ok();
        self.child.wait().unwrap();
        killed
    }

    fn finish(mut self) -> (ExitStatus, SinkReport) {
        let status = self.child.wait().unwrap();
        let report = self
            .report
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| {
                panic!(
                    "sink_process ended with {status} without a report; its stderr:\n{}",
                    self.stderr_tail()
                )
            });
        (status, report)
    }
}

impl Drop for SinkProcess {
    /// A test that fails part way leaves no sink running behind it.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The parts of a report the tests look at; `SinkReport` serializes but does not deserialize.
fn report_from_json(value: &serde_json::Value) -> SinkReport {
    let status = match value["status"].as_str() {
        Some("failed") => SinkStatus::Failed {
            error: value["error"].as_str().unwrap_or_default().to_string(),
        },
        Some("stalled") => SinkStatus::Stalled {
            error: value["error"].as_str().unwrap_or_default().to_string(),
            retry_in_ms: 0,
        },
        Some("starting") => SinkStatus::Starting,
        Some("dropped") => SinkStatus::Dropped,
        _ => SinkStatus::Running,
    };
    let total = &value["total"];
    let number = |name: &str| total[name].as_u64().unwrap_or_default();
    let mut report = SinkReport {
        name: value["name"].as_str().unwrap_or_default().to_string(),
        delivery: if value["delivery"] == "at-least-once" {
            "at-least-once"
        } else {
            "exactly-once"
        },
        status,
        history: Vec::new(),
        notes: value["notes"]
            .as_array()
            .map_or_else(Vec::new, |n| n.iter().map(|v| v.to_string()).collect()),
        total: Default::default(),
        workers: BTreeMap::new(),
    };
    report.total.messages_committed = number("messages_committed");
    report.total.transactions_committed = number("transactions_committed");
    report.total.transactions_aborted = number("transactions_aborted");
    report.total.committed_frontier = total["committed_frontier"].as_u64();
    report
}

#[test]
fn a_sink_killed_at_random_moments_and_restarted_with_other_worker_counts_loses_and_repeats_nothing(
) {
    let seed = seed("kill-restart");
    let mut rng = StdRng::seed_from_u64(seed);
    let args = ProcessArgs {
        sink: unique_name("killed"),
        prefix: unique_name("tx"),
        seed,
        keys: 40,
        times: 60,
        changes: 8,
        // Startup (topics, init_transactions, recovery) takes about a second, during which the
        // first times are fed at once; the rest trickle in over commits of their own.
        pace_ms: 40,
        max_transaction_bytes: None,
    };
    let history = random_history(args.seed, args.keys, args.times, args.changes);
    let expected = expected_json(&history);
    let total: usize = expected.values().map(Vec::len).sum();

    let mut killed_mid_stream = 0;
    for round in 0..rounds() {
        let workers = 1 + round % 3;
        // The first run creates the topic.
        let held = if round == 0 {
            0
        } else {
            assert_prefixes(&args.sink, &expected, &format!("before round {round}"))
        };
        let remaining = (total - held) as u64;
        let threshold = rng.gen_range(1..=(remaining / 2).max(1));
        let delay = Duration::from_millis(rng.gen_range(0..30));
        let mut process = SinkProcess::spawn(&args, workers);
        let killed = process.kill_when(|_, messages| messages >= threshold, delay);
        for note in process.recovery_notes() {
            eprintln!("round {round}: recovery noted {note}");
        }
        let held_after = assert_prefixes(&args.sink, &expected, &format!("after round {round}"));
        eprintln!(
            "round {round}: {workers} workers, kill after {threshold} messages + {delay:?}: {}, topic holds \
             {held_after} of {total}",
            if killed { "killed" } else { "ended first" }
        );
        if killed && held_after < total {
            killed_mid_stream += 1;
        }
    }
    assert!(
        killed_mid_stream > 0 || rounds() == 0,
        "no round was killed before the end; the kills prove nothing"
    );

    let workers = 1 + rounds() % 3;
    let (status, report) = SinkProcess::spawn(&args, workers).finish();
    assert!(
        status.success(),
        "the last run ended with {status}: {report:#?}"
    );
    let records = assert_topic_holds(&bootstrap(), &args.sink, &expected, &format!("seed {seed}"));
    assert_eq!(records.len(), total, "seed {seed}");
}
