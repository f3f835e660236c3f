//! Recovery of the exactly-once sink against a real broker: a second instance fencing the
//! first, processes killed with SIGKILL at seeded moments and restarted with other worker
//! counts, snapshots committed in chunks and resumed after their last committed key, group
//! offsets that agree with the progress records, and back-pressure.
//!
//! Each body takes the broker ([`Target`]). Apache Kafka runs every one (module `kafka`): the
//! sink trusts its `read_committed`, and topics are read by a librdkafka consumer at
//! `read_committed`. Tansu (module `tansu`) runs those that recover from the raw log of the
//! progress topic, with the control batches applied by the sink itself (the kills, the chunked
//! snapshot, the group offsets): its `read_committed` shows aborted records, and its topics are
//! audited with the raw-log reader. Fencing and back-pressure do not depend on that reader and
//! run on Kafka only.
//!
//! A killed producer leaves its transaction open. On Kafka that holds `read_committed` readers
//! at the last stable offset until the next instance fences it, so between rounds a topic is
//! read up to its last stable offset, and at the end up to its high watermark, which requires
//! every transaction to be decided.
//!
//! The kill moments come from a seed printed by each test; `OUTFLOW_RECOVERY_SEED=<n>` replays
//! one, and `OUTFLOW_RECOVERY_ROUNDS=<n>` kills and restarts more often than the default 3.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use outflow::dataflow::{Datum, Row};
use outflow::producer::{ProducerDriver, ProducerSettings, SinkRecord};
use outflow::progress_reader::{self, RecoverOptions};
use outflow::statement::Catalog;
use outflow::topic::{ensure_data_topic, ensure_progress_topic, TopicSettings};
use outflow::{SinkPlan, SinkReport, SinkStatus};
use outflow_protocol::{Action, Cadence, Event, Machine, Point, ProgressRecord, SinkNames, Status};
use outflow_tests::broker::unique_name;
use outflow_tests::pipeline::{
    expected_json, history_catalog_sql, key_id, random_history, run_prepared, run_sink,
    upserts_by_key, RunOptions,
};
use outflow_tests::rawlog::LogRecord;
use outflow_tests::target::Target;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const SINK_PROCESS: &str = env!("CARGO_BIN_EXE_sink_process");
/// How long one run of a sink may take before the test gives up on it.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

mod kafka {
    use super::*;

    #[test]
    fn a_second_instance_fences_the_first_and_every_update_is_written_once() {
        super::a_second_instance_fences_the_first(Target::Kafka);
    }

    #[test]
    fn a_sink_killed_at_random_moments_and_restarted_with_other_worker_counts_loses_and_repeats_nothing(
    ) {
        super::killed_and_restarted(Target::Kafka);
    }

    #[test]
    fn a_snapshot_larger_than_a_transaction_commits_in_key_order_and_resumes_after_the_last_committed_key(
    ) {
        super::snapshot_in_chunks(Target::Kafka);
    }

    #[test]
    fn committed_group_offsets_name_committed_progress_records() {
        super::group_offsets(Target::Kafka);
    }

    #[test]
    fn a_large_snapshot_with_a_small_in_flight_bound_completes_exactly_once() {
        super::small_in_flight_bound(Target::Kafka);
    }

    #[test]
    fn the_producer_never_holds_more_than_the_in_flight_bound() {
        super::in_flight_bound(Target::Kafka);
    }
}

mod tansu {
    use super::*;

    #[test]
    fn a_sink_killed_at_random_moments_and_restarted_with_other_worker_counts_loses_and_repeats_nothing(
    ) {
        super::killed_and_restarted(Target::Tansu);
    }

    #[test]
    fn a_snapshot_larger_than_a_transaction_commits_in_key_order_and_resumes_after_the_last_committed_key(
    ) {
        super::snapshot_in_chunks(Target::Tansu);
    }

    #[test]
    fn committed_group_offsets_name_committed_progress_records_and_never_run_ahead() {
        super::group_offsets(Target::Tansu);
    }
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

/// The statements of an upsert sink named after its topic, as `sink_process` builds them.
fn sink_sql(target: Target, sink: &str, prefix: &str) -> String {
    format!(
        "{}
         CREATE SINK \"{sink}\" FROM t INTO KAFKA CONNECTION k (TOPIC '{sink}', TOPIC PARTITION COUNT 3,
             TRANSACTIONAL ID PREFIX '{prefix}', PROGRESS GROUP ID PREFIX '{prefix}')
           KEY (id) FORMAT JSON ENVELOPE UPSERT;",
        history_catalog_sql(&target.bootstrap())
    )
}

fn plan(target: Target, sink: &str, prefix: &str) -> SinkPlan {
    plan_from_sql(target, sink, &sink_sql(target, sink, prefix))
}

fn plan_from_sql(target: Target, sink: &str, sql: &str) -> SinkPlan {
    let catalog = Catalog::from_sql(sql).unwrap_or_else(|e| panic!("{}", e.render("test.sql")));
    target.test_plan(SinkPlan::from_catalog(&catalog, sink).unwrap())
}

fn record_id(record: &LogRecord) -> i64 {
    key_id(record).expect("upsert messages have keys with an id")
}

/// Checks that what a `read_committed` reader sees of the topic now holds, per key, a prefix of
/// the expected sequence: nothing written twice, nothing out of order, nothing invented.
/// Returns how many messages it holds.
fn assert_prefixes(
    target: Target,
    topic: &str,
    expected: &BTreeMap<i64, Vec<Option<String>>>,
    context: &str,
) -> usize {
    let records = target.read_stable(topic);
    for (id, values) in upserts_by_key(&records) {
        let want = expected.get(&id).map_or(&[][..], Vec::as_slice);
        assert!(
            values.len() <= want.len() && values[..] == want[..values.len()],
            "{context}: key {id} holds {values:?}, which is not a prefix of {want:?}"
        );
    }
    records.len()
}

/// The progress records of `sink` among `records` (read from a progress topic), in offset
/// order.
fn progress_records(records: Vec<LogRecord>, sink: &str) -> Vec<(String, ProgressRecord)> {
    let prefix = format!("{sink}/");
    records
        .into_iter()
        .filter_map(|record| {
            let key = String::from_utf8(record.key?).ok()?;
            key.starts_with(&prefix).then_some(())?;
            let value = record.value.expect("progress records are never tombstones");
            let parsed = ProgressRecord::parse(&key, &value).unwrap_or_else(|e| panic!("{e}"));
            Some((key, parsed))
        })
        .collect()
}

/// The committed offset of `group` on partition 0 of `topic`, read as a consumer of the group.
fn group_offset(target: Target, group: &str, topic: &str) -> Option<i64> {
    let consumer: BaseConsumer = target
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition(topic, 0);
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    match committed
        .find_partition(topic, 0)
        .expect("the answer names partition 0")
        .offset()
    {
        Offset::Offset(offset) => Some(offset),
        Offset::Invalid => None,
        other => panic!("group {group}: unexpected committed offset {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// A sink in a process of its own

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
    target: Target,
    sink: String,
    prefix: String,
    seed: u64,
    keys: i64,
    times: u64,
    changes: usize,
    pace_ms: u64,
    max_transaction_bytes: Option<usize>,
    /// A progress topic of the sink's own, when a test reads it.
    progress_topic: Option<String>,
}

impl SinkProcess {
    fn spawn(args: &ProcessArgs, workers: usize) -> SinkProcess {
        let mut command = Command::new(SINK_PROCESS);
        command
            .args([
                "--bootstrap",
                &args.target.bootstrap(),
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
            .args(["--timeout-s", &RUN_TIMEOUT.as_secs().to_string()]);
        if let Some(bytes) = args.max_transaction_bytes {
            command.args(["--max-transaction-bytes", &bytes.to_string()]);
        }
        if let Some(topic) = &args.progress_topic {
            command.args(["--progress-topic", topic]);
        }
        if !args.target.shows_aborted() {
            command.arg("--broker-hides-aborted");
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
        delivery: "exactly-once",
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

// ---------------------------------------------------------------------------------------------
// Fencing

fn a_second_instance_fences_the_first(target: Target) {
    let sink = unique_name("fence");
    let prefix = unique_name("tx");
    let history = random_history(31, 30, 40, 10);

    // The first instance feeds slowly, so the second starts while it is mid-stream.
    let first_sink = plan(target, &sink, &prefix)
        .preflight()
        .expect("the sink prepares");
    let first_monitor = first_sink.monitor().clone();
    let first_history = history.clone();
    let first = thread::spawn(move || {
        let options = RunOptions {
            workers: 2,
            pace: Some(Duration::from_millis(40)),
            timeout: Duration::from_secs(15),
            stop_at: None,
        };
        run_prepared(first_sink, first_history, options)
    });
    let deadline = Instant::now() + RUN_TIMEOUT;
    while first_monitor.report().total.messages_committed == 0 {
        assert!(
            Instant::now() < deadline,
            "the first instance never committed: {:#?}",
            first_monitor.report()
        );
        thread::sleep(Duration::from_millis(5));
    }
    let committed_by_first_before = first_monitor.report().total.messages_committed;

    let second = run_sink(
        plan(target, &sink, &prefix),
        history.clone(),
        RunOptions {
            workers: 2,
            ..RunOptions::default()
        },
    );
    assert!(
        !second.status.is_failed(),
        "the second instance failed: {second:#?}"
    );
    assert_eq!(
        second.total.committed_frontier,
        Some(u64::MAX),
        "the second instance did not finish: {second:#?}"
    );

    // Whatever the first instance still attempts, the topic holds each update once.
    target.assert_topic_holds(&sink, &expected_json(&history), "at the end");

    let first_now = first_monitor.report();
    let first = first.join().expect("the first instance's thread");
    eprintln!(
        "first instance: committed {committed_by_first_before} messages before the second started; status after \
         the second finished: {:?}; final status {:?}; history {:#?}",
        first_now.status, first.status, first.history
    );
    assert!(
        !matches!(first.status, SinkStatus::Running),
        "the fenced instance still reports running: {first:#?}"
    );
    if let SinkStatus::Failed { error } = &first.status {
        assert!(
            error.contains("fenced"),
            "the first instance failed for another reason: {error}"
        );
    }
    target.assert_topic_holds(
        &sink,
        &expected_json(&history),
        "the fenced instance wrote after the second finished",
    );
}

// ---------------------------------------------------------------------------------------------
// Killed processes

fn killed_and_restarted(target: Target) {
    let seed = seed("kill-restart");
    let mut rng = StdRng::seed_from_u64(seed);
    let args = ProcessArgs {
        target,
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
        progress_topic: None,
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
            assert_prefixes(
                target,
                &args.sink,
                &expected,
                &format!("before round {round}"),
            )
        };
        let remaining = (total - held) as u64;
        let threshold = rng.gen_range(1..=(remaining / 2).max(1));
        let delay = Duration::from_millis(rng.gen_range(0..30));
        let mut process = SinkProcess::spawn(&args, workers);
        let killed = process.kill_when(|_, messages| messages >= threshold, delay);
        for note in process.recovery_notes() {
            eprintln!("round {round}: recovery noted {note}");
        }
        let held_after = assert_prefixes(
            target,
            &args.sink,
            &expected,
            &format!("after round {round}"),
        );
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
    let records = target.assert_topic_holds(&args.sink, &expected, &format!("seed {seed}"));
    assert_eq!(records.len(), total, "seed {seed}");
}

fn snapshot_in_chunks(target: Target) {
    let seed = seed("snapshot");
    let mut rng = StdRng::seed_from_u64(seed);
    // One time with about 2 600 rows of about 110 bytes: some 70 chunks of 4 KiB.
    let args = ProcessArgs {
        target,
        sink: unique_name("snapshot"),
        prefix: unique_name("tx"),
        seed,
        keys: 3000,
        times: 1,
        changes: 6000,
        pace_ms: 0,
        max_transaction_bytes: Some(4096),
        // Read after the kill: on Kafka, a transaction another test's killed process left open
        // on a shared progress topic would hide the committed records after it.
        progress_topic: Some(unique_name("snapshot-progress")),
    };
    let history = random_history(args.seed, args.keys, args.times, args.changes);
    let expected = expected_json(&history);
    let ids: BTreeSet<i64> = expected.keys().copied().collect();
    assert!(
        history.iter().all(|u| u.time == 1) && ids.len() > 2000,
        "the snapshot is one large time"
    );

    // The first transaction only announces the run; kill after a few chunks.
    let chunks = rng.gen_range(4..=20u64);
    let delay = Duration::from_millis(rng.gen_range(0..10));
    let mut process = SinkProcess::spawn(&args, 1);
    assert!(
        process.kill_when(|transactions, _| transactions >= chunks, delay),
        "the snapshot finished before the kill"
    );

    let progress_topic = args.progress_topic.as_deref().unwrap();
    let records = progress_records(target.read_stable(progress_topic), &args.sink);
    let positions: Vec<Vec<u8>> = records
        .iter()
        .filter_map(|(_, record)| match &record.point {
            Point::At {
                time: 1,
                position: Some(position),
            } => Some(position.clone()),
            _ => None,
        })
        .collect();
    assert!(
        positions.len() + 1 >= chunks as usize,
        "{} chunk records for {chunks} commits: {records:?}",
        positions.len()
    );
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "chunk positions do not grow: {positions:?}"
    );
    let (_, last) = records.last().expect("committed progress records");
    let Point::At {
        time: 1,
        position: Some(last_position),
    } = &last.point
    else {
        panic!("the last record is not a chunk of time 1: {last:?}")
    };

    // Exactly the keys up to the recorded position are in the topic, once each, and each
    // partition holds them in key order.
    let data = target.read_stable(&args.sink);
    let key_position = |id: i64| Row::pack_slice(&[Datum::Int64(id)]).order_key();
    let written: Vec<i64> = data.iter().map(record_id).collect();
    let written_set: BTreeSet<i64> = written.iter().copied().collect();
    assert_eq!(
        written.len(),
        written_set.len(),
        "a key was written twice before the kill"
    );
    let up_to_position: BTreeSet<i64> = ids
        .iter()
        .copied()
        .filter(|&id| key_position(id) <= *last_position)
        .collect();
    assert_eq!(
        written_set, up_to_position,
        "the committed keys are not those up to the recorded position"
    );
    for partition in 0..3 {
        let in_partition: Vec<i64> = data
            .iter()
            .filter(|r| r.partition == partition)
            .map(record_id)
            .collect();
        assert!(
            in_partition.windows(2).all(|w| w[0] < w[1]),
            "partition {partition} is not in key order"
        );
    }
    eprintln!(
        "killed after {} of {} keys in {} chunks",
        written_set.len(),
        ids.len(),
        positions.len()
    );

    // A restart on two workers writes the rest, and nothing again.
    let (status, report) = SinkProcess::spawn(&args, 2).finish();
    assert!(
        status.success(),
        "the restart ended with {status}: {report:#?}"
    );
    assert_eq!(
        report.total.messages_committed as usize,
        ids.len() - written_set.len(),
        "{report:#?}"
    );
    target.assert_topic_holds(&args.sink, &expected, &format!("seed {seed}"));
}

// ---------------------------------------------------------------------------------------------
// Group offsets and progress records

fn group_offsets(target: Target) {
    let sink = unique_name("offsets");
    let prefix = unique_name("tx");
    // A progress topic of its own. Tansu moves a committed transaction's offsets to its group
    // only once every other transaction that wrote below it in a partition it wrote to has
    // ended as well; on the progress topic the other tests of this file share, one of theirs
    // is often open under load (a killed process's stays open until its restart), which can
    // withhold this sink's offsets for longer than any wait here. Kafka has no such coupling,
    // but its readers stop at such a transaction.
    let progress = unique_name("offsets-progress");
    let sql = sink_sql(target, &sink, &prefix).replacen(
        "SECURITY PROTOCOL PLAINTEXT",
        &format!("SECURITY PROTOCOL PLAINTEXT, PROGRESS TOPIC '{progress}'"),
        1,
    );
    let history = random_history(41, 30, 10, 10);
    // Three workers stop half way, two finish: worker 2's last record is from the first run.
    let first = run_sink(
        plan_from_sql(target, &sink, &sql),
        history.clone(),
        RunOptions {
            workers: 3,
            stop_at: Some(6),
            ..RunOptions::default()
        },
    );
    assert!(!first.status.is_failed(), "{first:#?}");
    let second = run_sink(
        plan_from_sql(target, &sink, &sql),
        history.clone(),
        RunOptions {
            workers: 2,
            ..RunOptions::default()
        },
    );
    assert!(!second.status.is_failed(), "{second:#?}");
    target.assert_topic_holds(&sink, &expected_json(&history), "after two runs");

    let names = SinkNames::new(&sink, &prefix, &prefix);
    let mut committed: BTreeMap<String, Vec<ProgressRecord>> = BTreeMap::new();
    for (key, record) in progress_records(target.read_committed(&progress), &sink) {
        committed.entry(key).or_default().push(record);
    }
    assert_eq!(
        committed.keys().cloned().collect::<Vec<_>>(),
        (0..3).map(|w| names.progress_key(w)).collect::<Vec<_>>()
    );
    for worker in 0..3u32 {
        let records = &committed[&names.progress_key(worker)];
        let record = records.last().unwrap();
        let group = names.progress_group_id(worker);
        // On Kafka the group names the last committed record once the commit returns. Tansu
        // releases a transaction's offsets only when every transaction overlapping it in a
        // partition is prepared, and, releasing them, looks at one pending epoch per
        // transactional id: when a run left a transaction of epoch 0 pending (a stop while
        // another was open), a later release may apply epoch 0's offsets and leave those of
        // epoch 1 pending for good. So on Tansu the agreement is awaited, and where it does
        // not come the group must still name a committed record of this worker, never one
        // after it.
        let offset = match target {
            Target::Kafka => group_offset(target, &group, &progress),
            Target::Tansu => {
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut offset = group_offset(target, &group, &progress);
                while offset != Some(record.seq as i64) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(100));
                    offset = group_offset(target, &group, &progress);
                }
                offset
            }
        };
        if target == Target::Kafka {
            assert_eq!(
                offset,
                Some(record.seq as i64),
                "group {group}: the last committed record of worker {worker} is {record:?}"
            );
        } else if offset != Some(record.seq as i64) {
            assert!(
                offset.is_none_or(|seq| records.iter().any(|r| r.seq as i64 == seq)),
                "group {group} names seq {offset:?}, not a committed record of worker {worker}: \
                 {records:?}"
            );
            eprintln!(
                "group {group} names seq {offset:?}, the last committed record is {}: the \
                 broker withholds the newer offsets",
                record.seq
            );
        }
        let expected_workers = if worker < 2 { 2 } else { 3 };
        assert_eq!(record.workers, expected_workers, "{record:?}");
        if worker < 2 {
            assert_eq!(record.point, Point::Done, "{record:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Back-pressure

fn small_in_flight_bound(target: Target) {
    let sink = unique_name("pressure");
    let prefix = unique_name("tx");
    let history = random_history(53, 4000, 1, 8000);
    let mut plan = plan(target, &sink, &prefix);
    plan.cadence.max_in_flight_bytes = 16 << 10;
    plan.cadence.max_transaction_bytes = 64 << 10;
    let report = run_sink(
        plan,
        history.clone(),
        RunOptions {
            workers: 2,
            ..RunOptions::default()
        },
    );
    assert!(!report.status.is_failed(), "{report:#?}");
    assert_eq!(
        report.total.committed_frontier,
        Some(u64::MAX),
        "{report:#?}"
    );
    // The one time is larger than the transaction bound: it commits in chunks.
    assert!(
        report.total.transactions_committed as usize
            > report.total.bytes_committed as usize / (64 << 10),
        "the snapshot was not split at the 64 KiB transaction bound: {report:#?}"
    );
    target.assert_topic_holds(&sink, &expected_json(&history), "at the end");
}

/// The bound as the producer sees it: one worker's machine and driver stepped on the test
/// thread, feeding a snapshot as fast as the machine lets it, sampling the driver's bytes in
/// flight (handed to librdkafka and not yet acknowledged) after every step.
fn in_flight_bound(target: Target) {
    let sink = unique_name("inflight");
    let data_topic = sink.clone();
    let progress_topic = unique_name("inflight-progress");
    let config = target.client_config();
    let mut topic = TopicSettings::new(&data_topic);
    topic.partitions = Some(3);
    ensure_data_topic(&config, &topic).unwrap();
    ensure_progress_topic(&config, &progress_topic, None).unwrap();

    let bound = 16usize << 10;
    let cadence = Cadence {
        commit_interval: Duration::from_millis(50),
        max_transaction_bytes: 64 << 10,
        max_in_flight_bytes: bound,
        idle_progress_interval: Duration::from_millis(200),
        retry_backoff: Duration::from_millis(50),
        max_retry_backoff: Duration::from_secs(1),
        ..Cadence::default()
    };
    let names = SinkNames::new(&sink, "tx-", "pg-");
    let settings = ProducerSettings::new(names.clone(), 0, &data_topic, &progress_topic, &cadence);
    let test_thread = thread::current();
    let driver: ProducerDriver<SinkRecord> =
        ProducerDriver::start(&config, settings, Box::new(move || test_thread.unpark())).unwrap();
    let mut machine = Machine::new(names.clone(), cadence, 0, 1);
    let started = Instant::now();
    let deadline = started + RUN_TIMEOUT;

    let mut paused = false;
    let mut announced = false;
    let mut pauses = 0;
    let mut largest_in_flight = 0i64;
    let mut failure = None;
    let mut step = |machine: &mut Machine<SinkRecord>, paused: &mut bool, announced: &mut bool| {
        let now = started.elapsed();
        if machine.next_wakeup().is_some_and(|at| at <= now) {
            machine.handle(now, Event::Tick).unwrap();
        }
        for action in driver.step(machine, now).expect("the machine's contract") {
            match action {
                Action::Pause => {
                    *paused = true;
                    pauses += 1;
                }
                Action::Resume => *paused = false,
                Action::Announced => *announced = true,
                Action::Status(status @ (Status::Failed { .. } | Status::Stalled { .. })) => {
                    failure = Some(status)
                }
                _ => {}
            }
        }
        largest_in_flight = largest_in_flight.max(driver.stats().bytes_in_flight);
        assert!(failure.is_none(), "the worker stopped: {failure:?}");
        assert!(
            Instant::now() < deadline,
            "the snapshot did not finish within {RUN_TIMEOUT:?}"
        );
    };

    while !driver.is_initialized() {
        step(&mut machine, &mut paused, &mut announced);
        thread::park_timeout(Duration::from_millis(5));
    }
    let options = RecoverOptions {
        reader_shows_aborted: target.shows_aborted(),
        ..RecoverOptions::default()
    };
    let recovery = progress_reader::recover(&config, &names, &progress_topic, 1, options).unwrap();
    machine
        .handle(started.elapsed(), Event::Recovered(Arc::new(recovery)))
        .unwrap();
    while !announced {
        step(&mut machine, &mut paused, &mut announced);
        thread::park_timeout(Duration::from_millis(5));
    }

    let keys = 3000u32;
    let value = "v".repeat(150);
    let mut largest_message = 0;
    let mut next = 0u32;
    while next < keys {
        if paused {
            step(&mut machine, &mut paused, &mut announced);
            thread::park_timeout(Duration::from_millis(1));
            continue;
        }
        let key = format!("{next:08}");
        let bytes = key.len() + value.len();
        largest_message = largest_message.max(bytes);
        let message = SinkRecord {
            partition: None,
            key: Some(key.clone().into_bytes()),
            value: Some(value.clone().into_bytes()),
            headers: Vec::new(),
            timestamp: None,
        };
        machine
            .handle(
                started.elapsed(),
                Event::Message {
                    time: 1,
                    position: key.into_bytes().into(),
                    bytes,
                    message,
                },
            )
            .unwrap();
        next += 1;
        step(&mut machine, &mut paused, &mut announced);
    }
    machine
        .handle(started.elapsed(), Event::Frontier(None))
        .unwrap();
    while machine.committed_frontier() != Some(None) {
        step(&mut machine, &mut paused, &mut announced);
        thread::park_timeout(Duration::from_millis(5));
    }
    driver.shutdown();

    eprintln!(
        "in-flight bound {bound} B: largest sample {largest_in_flight} B, {pauses} pauses, {} B fed",
        keys as usize * (8 + value.len())
    );
    assert!(
        pauses > 0,
        "the bound never paused the input; the test proves nothing"
    );
    // The machine pauses once the bound is reached, so the message that reaches it and the
    // progress record of the transaction may go beyond it.
    let slack = largest_message + 512;
    assert!(
        largest_in_flight as usize <= bound + slack,
        "{largest_in_flight} B in flight, above the bound {bound} B + {slack} B"
    );
    let committed = target.read_committed(&data_topic);
    let keys_written: BTreeSet<Vec<u8>> = committed.iter().filter_map(|r| r.key.clone()).collect();
    assert_eq!(
        (committed.len(), keys_written.len()),
        (keys as usize, keys as usize)
    );
}
