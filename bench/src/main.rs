//! Throughput harness: a snapshot of N rows, a stream of inserts, updates and deletes over K
//! keys fed all at once (throughput), then a paced phase of small rounds at a fixed interval
//! (latency), through Outflow's sink path.
//!
//! Each scenario runs in a fresh process (this binary again, with `--run-scenario`), so that
//! its peak resident memory (`VmHWM`, which only grows) is its own. A scenario is one of:
//!
//! - `encode`: rows encoded as inserts, no keying or combining (what encoding alone costs);
//! - `combine`: `key_by` → `combine_at_timestamp`, pairs counted and dropped;
//! - `encode+combine`: `key_by` → `combine_at_timestamp` → `SinkEncoder::encode`, output
//!   discarded: the sink's path without a producer (broker-free);
//! - `sink`: `sink_kafka` into the embedded broker (librdkafka's mock cluster, in process) or
//!   a real broker (`--broker kafka`: the test harness's Apache Kafka, started once for the
//!   run; `--broker HOST:PORT`: one already running), exactly-once or at-least-once. Its clock
//!   starts at its first committed frontier (after the announce transaction).
//!
//! Every scenario is compared with what bounds it, measured in the same process:
//! - broker-free ones with a bare encode loop over the same changes (times the workers), and a
//!   `serde_json` loop over the rows as plain values;
//! - sinks with their parts: the same rows through `encode+combine` on as many workers, and raw
//!   librdkafka producers — the sink's own, less the sink: one per worker, configured by the
//!   same `producer_config` over the same `SinkPlan::producer_settings` (lz4, linger, batch
//!   sizes, idempotence, the queue bound), sending each worker's messages with the sink's
//!   encoded bytes, `outflow-time` header and explicit partition, to the same broker, and, for
//!   exactly-once, in transactions closed with the sink's cadence (between times once open for
//!   the commit interval, or at the transaction size bound), deliveries awaited before each
//!   commit as the sink's driver does; at-least-once producers wait for deliveries at the same
//!   points. `ratio_vs_parts` is the sink over both done one after the other.
//!
//! Beside the rates: allocations per snapshot row (a counting global allocator, `usage.rs`),
//! CPU time per snapshot row by thread (worker, producer I/O, librdkafka, the broker), and the
//! sinks' commit durations beside the raw producers'.
//!
//! `cargo run --release -p outflow-bench -- --json-out FILE` runs the standard suite (its broker
//! scenarios on `--broker`, by default `kafka`; `--broker none` leaves them out); flags such as
//! `--stage`, `--target`, `--columns` or `--workers` run one scenario instead.

mod allocator;
mod plot;
mod usage;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use differential_dataflow::input::{Input, InputSession};
use outflow::dataflow::operators::{CombineAtTimestamp, KeyBy, SinkKey};
use outflow::dataflow::relation::{Numeric, Timestamp};
use outflow::dataflow::{Datum, DiffPair, Row};
use outflow::embedded::EmbeddedBroker;
use outflow::encoders::{EncodedMessage, EncoderConfig, SinkEncoder};
use outflow::partition::{key_partition_hash, partition_for};
use outflow::producer::{producer_config, DeliveryMode, ProducerSettings};
use outflow::spec::DeliveryGuarantee;
use outflow::statement::Catalog;
use outflow::{SinkKafka, SinkMonitor, SinkPlan};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::probe::{Handle as ProbeHandle, Probe};

/// The allocator of the `outflow` program, so that the figures are what it runs at; built with
/// `--no-default-features`, the bench measures the system allocator instead.
/// Allocations are counted on the way (`usage.rs`).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: usage::Counting<tikv_jemallocator::Jemalloc> =
    usage::Counting(tikv_jemallocator::Jemalloc);
#[cfg(not(feature = "jemalloc"))]
#[global_allocator]
static ALLOCATOR: usage::Counting<std::alloc::System> = usage::Counting(std::alloc::System);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
enum Stage {
    Encode,
    Combine,
    #[value(name = "encode+combine")]
    #[serde(rename = "encode+combine")]
    EncodeCombine,
    Sink,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
enum Target {
    /// No broker: the stages before the producer.
    None,
    /// The embedded broker: librdkafka's mock cluster in this process.
    Mock,
    /// The broker `--broker` names.
    Broker,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
enum Format {
    Json,
    Avro,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
enum EnvelopeKind {
    Upsert,
    Debezium,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "kebab-case")]
enum Delivery {
    ExactlyOnce,
    AtLeastOnce,
}

/// One measurement: what runs, on what, over what workload.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Scenario {
    name: String,
    stage: Stage,
    target: Target,
    broker: Option<String>,
    format: Format,
    envelope: EnvelopeKind,
    delivery: Delivery,
    workers: usize,
    /// Columns of the row, the key `id bigint` included.
    columns: usize,
    /// Rows of the snapshot (keys `0..rows`).
    rows: u64,
    /// Changes of the stream, each an insert, update or delete of one key.
    changes: u64,
    /// Keys the stream draws from (`>= rows`: the keys above `rows` start absent).
    keys: u64,
    /// Timestamps the stream is spread over.
    rounds: u64,
    /// Rounds of the paced phase after the stream: one every `paced_interval_ms`, each with
    /// `paced_changes` changes (split over the workers), for latency at a fixed rate.
    #[serde(default = "default_paced_rounds")]
    paced_rounds: u64,
    #[serde(default = "default_paced_changes")]
    paced_changes: u64,
    #[serde(default = "default_paced_interval_ms")]
    paced_interval_ms: u64,
    partitions: i32,
    commit_interval_ms: u64,
    /// The broker shows aborted records to `read_committed` readers (Tansu): the sink recovers
    /// from the progress topic's raw log.
    #[serde(default)]
    broker_shows_aborted: bool,
    /// What the broker is, for the figures: `Apache Kafka 4.3.2 (test harness)` or the
    /// address given.
    #[serde(default)]
    broker_label: Option<String>,
    /// The broker's process, when it runs on this machine (the harness's Kafka), for its CPU
    /// time.
    #[serde(default)]
    broker_pid: Option<u32>,
}

fn default_paced_rounds() -> u64 {
    30
}

fn default_paced_changes() -> u64 {
    200
}

fn default_paced_interval_ms() -> u64 {
    50
}

#[derive(Parser)]
#[command(
    about = "Throughput of Outflow's sink path, with a raw producer and serde_json as baselines"
)]
struct Args {
    /// Write each scenario's figures here as JSON.
    #[arg(long)]
    json_out: Option<std::path::PathBuf>,
    /// The plot of throughput against workers and row width (SVG); default: next to
    /// `--json-out`, or `bench-results.svg`.
    #[arg(long)]
    svg_out: Option<std::path::PathBuf>,
    /// Where the broker scenarios run: `kafka` starts the test harness's Apache Kafka broker
    /// for the run, `HOST:PORT` uses a running broker, `none` leaves them out. The suite's
    /// default is `kafka`; a single scenario talks to a broker only when this is given.
    #[arg(long)]
    broker: Option<String>,
    /// The broker of `--broker HOST:PORT` shows aborted records to `read_committed` readers
    /// (Tansu).
    #[arg(long)]
    broker_shows_aborted: bool,
    /// Run one scenario with this stage instead of the suite.
    #[arg(long)]
    stage: Option<Stage>,
    #[arg(long)]
    target: Option<Target>,
    #[arg(long)]
    format: Option<Format>,
    #[arg(long)]
    envelope: Option<EnvelopeKind>,
    #[arg(long)]
    delivery: Option<Delivery>,
    #[arg(long)]
    workers: Option<usize>,
    #[arg(long)]
    columns: Option<usize>,
    #[arg(long)]
    rows: Option<u64>,
    #[arg(long)]
    changes: Option<u64>,
    #[arg(long)]
    keys: Option<u64>,
    #[arg(long)]
    rounds: Option<u64>,
    #[arg(long)]
    commit_interval_ms: Option<u64>,
    /// Internal: run the scenario given as JSON and print its outcome.
    #[arg(long, hide = true)]
    run_scenario: Option<String>,
}

/// What a scenario's process measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Outcome {
    snapshot_rows: u64,
    snapshot_secs: f64,
    snapshot_bytes: u64,
    stream_rows: u64,
    stream_secs: f64,
    stream_bytes: u64,
    /// Per paced round: from the input passing its time to the output (the committed
    /// frontier, for a sink) passing it.
    latencies_ms: Vec<f64>,
    /// Changes of the paced phase and its length.
    paced_rows: u64,
    paced_secs: f64,
    /// Allocations during the snapshot, process-wide.
    snapshot_allocations: u64,
    /// CPU time during the snapshot per thread group (`usage::cpu_by_group`), in ns.
    snapshot_cpu_ns: BTreeMap<String, u64>,
    /// For a sink: the same rows through `encode+combine` in this process after it (the
    /// necessary parts besides producing), rows/s and allocations per snapshot row.
    encode_combine_rows_per_sec: Option<f64>,
    encode_combine_allocations_per_row: Option<f64>,
    /// A bare loop of `SinkEncoder::encode` over the same changes on one thread, rows/s: the
    /// broker-free limit of one worker.
    encode_loop_rows_per_sec: f64,
    peak_rss_bytes: u64,
    transactions: u64,
    raw_producer_rows_per_sec: f64,
    serde_json_rows_per_sec: f64,
    /// How long each of the sink's commits took during the snapshot and the stream (the
    /// announce transaction before them left out), in µs.
    commit_micros: Vec<u64>,
    /// The raw producers' `commit_transaction` calls, after their deliveries (exactly-once),
    /// in µs.
    raw_commit_micros: Vec<u64>,
    error: Option<String>,
}

const RESULT_PREFIX: &str = "OUTFLOW-BENCH-RESULT ";

fn main() {
    let args = Args::parse();
    if let Some(json) = &args.run_scenario {
        let scenario: Scenario =
            serde_json::from_str(json).expect("the parent passes a valid scenario");
        let outcome = run_scenario(&scenario).unwrap_or_else(|error| Outcome {
            error: Some(error),
            ..Outcome::default()
        });
        println!(
            "{RESULT_PREFIX}{}",
            serde_json::to_string(&outcome).expect("outcomes serialize")
        );
        return;
    }
    let started = Instant::now();
    let single = single_scenario_requested(&args);
    let broker_arg = match (&args.broker, single) {
        (Some(broker), _) => Some(broker.as_str()),
        (None, false) => Some("kafka"),
        (None, true) => None,
    };
    // Lives until the end of the run; the broker dies with this process.
    let mut harness_kafka = None;
    let broker: Option<(String, String)> = match broker_arg {
        None | Some("none") => None,
        Some("kafka") => match outflow_tests::kafka::Kafka::try_start_with(Default::default()) {
            Ok(kafka) => {
                let address = kafka.bootstrap();
                println!(
                    "Apache Kafka {} started at {address} in {:.1} s",
                    outflow_tests::kafka::KAFKA_VERSION,
                    kafka.started_in().as_secs_f64()
                );
                harness_kafka = Some(kafka);
                Some((address, "kafka".to_string()))
            }
            Err(error) => {
                eprintln!(
                    "cannot start Apache Kafka, the Kafka scenarios are left out ({error}); \
                     `.ci/setup` installs it, `--broker none` skips it"
                );
                None
            }
        },
        Some(address) => Some((address.to_string(), "broker".to_string())),
    };
    let broker = broker.as_ref().map(|(a, l)| (a.as_str(), l.as_str()));
    let mut scenarios = if single {
        vec![single_scenario(&args, broker)]
    } else {
        standard_suite(broker, args.broker_shows_aborted)
    };
    let label = match (harness_kafka.is_some(), broker) {
        (true, _) => Some(format!(
            "Apache Kafka {} (test harness, single node)",
            outflow_tests::kafka::KAFKA_VERSION
        )),
        (false, Some((address, _))) => Some(address.to_string()),
        (false, None) => None,
    };
    let broker_pid = harness_kafka.as_ref().and_then(|k| k.pid());
    for scenario in &mut scenarios {
        if scenario.target == Target::Broker {
            scenario.broker_label = label.clone();
            scenario.broker_pid = broker_pid;
        }
    }
    println!(
        "outflow-bench: {} scenarios, each in its own process; snapshot then stream, figures per scenario",
        scenarios.len()
    );
    // A broker started for this run is a fresh JVM: its first scenario would pay for the
    // compilation of the broker's produce and transaction paths (the first Kafka scenario's
    // broker took 3-4x the CPU per row of the same scenario later in the run). One unmeasured
    // run of that scenario warms it.
    if harness_kafka.is_some() {
        if let Some(first) = scenarios.iter().find(|s| s.target == Target::Broker) {
            let warm_up = Scenario {
                name: format!("warm-up ({})", first.name),
                ..first.clone()
            };
            let began = Instant::now();
            let outcome = spawn_scenario(&warm_up);
            println!(
                "broker warmed up by an unmeasured run of {} in {:.1} s{}",
                first.name,
                began.elapsed().as_secs_f64(),
                outcome
                    .error
                    .map_or(String::new(), |e| format!(" (it failed: {e})"))
            );
        }
    }
    let mut rows = Vec::new();
    for scenario in &scenarios {
        let outcome = spawn_scenario(scenario);
        let figures = Figures::from(scenario, &outcome);
        println!("{}", figures.line());
        rows.push(figures);
    }
    println!();
    print_table(&rows);
    print_breakdown(&rows);
    print_fair_baselines(&rows);
    print_cpu(&rows);
    print_targets(&rows);
    println!("\nsuite took {:.0} s", started.elapsed().as_secs_f64());
    drop(harness_kafka);
    if let Some(path) = &args.json_out {
        let json = serde_json::to_string_pretty(&rows).expect("figures serialize");
        std::fs::write(path, json + "\n")
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        println!("figures written to {}", path.display());
    }
    let svg_path = args
        .svg_out
        .clone()
        .unwrap_or_else(|| match &args.json_out {
            Some(json) => json.with_extension("svg"),
            None => "bench-results.svg".into(),
        });
    if let Some(svg) = plot::render(&rows) {
        std::fs::write(&svg_path, svg)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", svg_path.display()));
        println!("plot written to {}", svg_path.display());
    }
}

fn base_scenario(name: &str) -> Scenario {
    Scenario {
        name: name.to_string(),
        stage: Stage::EncodeCombine,
        target: Target::None,
        broker: None,
        format: Format::Json,
        envelope: EnvelopeKind::Upsert,
        delivery: Delivery::ExactlyOnce,
        workers: 1,
        columns: 8,
        rows: 200_000,
        changes: 100_000,
        keys: 250_000,
        rounds: 20,
        paced_rounds: default_paced_rounds(),
        paced_changes: default_paced_changes(),
        paced_interval_ms: default_paced_interval_ms(),
        partitions: 6,
        commit_interval_ms: 100,
        broker_shows_aborted: false,
        broker_label: None,
        broker_pid: None,
    }
}

/// 400,000 messages: enough that the wait for each phase's last commit (a transaction closes
/// `commit_interval` after it opened, up to one interval after the phase's last row) is a small
/// part of the phase's time. The mock cluster keeps at most 100,000 messages or 5 MiB per
/// partition and drops its oldest beyond that, which nothing here reads.
fn broker_scenario(name: &str, broker: Option<&str>, shows_aborted: bool) -> Scenario {
    Scenario {
        stage: Stage::Sink,
        target: if broker.is_some() {
            Target::Broker
        } else {
            Target::Mock
        },
        broker: broker.map(str::to_string),
        broker_shows_aborted: shows_aborted && broker.is_some(),
        rows: 200_000,
        changes: 200_000,
        keys: 250_000,
        ..base_scenario(name)
    }
}

/// The broker-free and mock-cluster scenarios, then, with `broker` (address and label), the
/// sink on it beside the fair raw producer.
fn standard_suite(broker: Option<(&str, &str)>, shows_aborted: bool) -> Vec<Scenario> {
    let mut suite = Vec::new();
    for workers in [1, 2] {
        for (stage, label) in [
            (Stage::Encode, "encode"),
            (Stage::Combine, "combine"),
            (Stage::EncodeCombine, "encode+combine"),
        ] {
            suite.push(Scenario {
                stage,
                workers,
                ..base_scenario(&format!("{label} json upsert w{workers}"))
            });
        }
    }
    for columns in [2, 4, 16, 32] {
        suite.push(Scenario {
            columns,
            ..base_scenario(&format!("encode+combine json upsert c{columns} w1"))
        });
    }
    for workers in [1, 2] {
        suite.push(Scenario {
            format: Format::Avro,
            workers,
            ..base_scenario(&format!("encode+combine avro upsert w{workers}"))
        });
    }
    suite.push(Scenario {
        envelope: EnvelopeKind::Debezium,
        ..base_scenario("encode+combine json debezium w1")
    });
    for workers in [1, 2] {
        for (delivery, label) in [
            (Delivery::ExactlyOnce, "eo"),
            (Delivery::AtLeastOnce, "alo"),
        ] {
            suite.push(Scenario {
                delivery,
                workers,
                ..broker_scenario(
                    &format!("sink mock json upsert {label} w{workers}"),
                    None,
                    false,
                )
            });
        }
    }
    suite.push(Scenario {
        format: Format::Avro,
        workers: 2,
        ..broker_scenario("sink mock avro upsert eo w2", None, false)
    });
    suite.push(Scenario {
        envelope: EnvelopeKind::Debezium,
        workers: 2,
        ..broker_scenario("sink mock json debezium eo w2", None, false)
    });
    if let Some((address, at)) = broker {
        let on = |name: String| broker_scenario(&name, Some(address), shows_aborted);
        for workers in [1, 2] {
            for (delivery, label) in [
                (Delivery::ExactlyOnce, "eo"),
                (Delivery::AtLeastOnce, "alo"),
            ] {
                suite.push(Scenario {
                    delivery,
                    workers,
                    ..on(format!("sink {at} json upsert {label} w{workers}"))
                });
            }
        }
        suite.push(Scenario {
            format: Format::Avro,
            workers: 2,
            ..on(format!("sink {at} avro upsert eo w2"))
        });
        // At the default 1 s commit interval, with a snapshot that spans several commits.
        for (delivery, label) in [
            (Delivery::ExactlyOnce, "eo"),
            (Delivery::AtLeastOnce, "alo"),
        ] {
            suite.push(Scenario {
                delivery,
                commit_interval_ms: 1000,
                // The stream runs several seconds, so that the wait for its last commit (up to
                // the 1 s interval) moves its rate by a fraction, not by whole intervals.
                rows: 400_000,
                changes: 1_200_000,
                keys: 450_000,
                ..on(format!("sink {at} json upsert {label} w1 1s"))
            });
        }
    }
    suite
}

/// Whether the flags describe one scenario rather than the suite.
fn single_scenario_requested(args: &Args) -> bool {
    args.stage.is_some()
        || args.target.is_some()
        || args.format.is_some()
        || args.envelope.is_some()
        || args.delivery.is_some()
        || args.workers.is_some()
        || args.columns.is_some()
        || args.rows.is_some()
        || args.changes.is_some()
        || args.keys.is_some()
        || args.rounds.is_some()
}

/// The scenario the flags describe, on `broker` (address and label) if given.
fn single_scenario(args: &Args, broker: Option<(&str, &str)>) -> Scenario {
    let target = args.target.unwrap_or(if broker.is_some() {
        Target::Broker
    } else {
        Target::None
    });
    let stage = args.stage.unwrap_or(if target == Target::None {
        Stage::EncodeCombine
    } else {
        Stage::Sink
    });
    let mut scenario = if stage == Stage::Sink {
        broker_scenario(
            "custom",
            broker.map(|(address, _)| address),
            args.broker_shows_aborted,
        )
    } else {
        base_scenario("custom")
    };
    scenario.stage = stage;
    scenario.target = if stage == Stage::Sink && target == Target::None {
        Target::Mock
    } else {
        target
    };
    if stage != Stage::Sink {
        scenario.target = Target::None;
    }
    macro_rules! take {
        ($($field:ident),*) => { $( if let Some(value) = args.$field { scenario.$field = value; } )* };
    }
    take!(
        format,
        envelope,
        delivery,
        workers,
        columns,
        rows,
        changes,
        rounds,
        commit_interval_ms
    );
    scenario.keys = args.keys.unwrap_or(scenario.keys.max(scenario.rows));
    assert!(
        scenario.columns >= 1,
        "--columns must be at least 1 (the key)"
    );
    assert!(scenario.workers >= 1, "--workers must be at least 1");
    assert!(scenario.rounds >= 1, "--rounds must be at least 1");
    assert!(
        scenario.keys >= scenario.rows,
        "--keys must be at least --rows"
    );
    assert!(
        scenario.target != Target::Broker || scenario.broker.is_some(),
        "--target broker needs --broker kafka or --broker HOST:PORT"
    );
    scenario.name = format!(
        "{} {} {} {} {} c{} w{}",
        match stage {
            Stage::Encode => "encode",
            Stage::Combine => "combine",
            Stage::EncodeCombine => "encode+combine",
            Stage::Sink => "sink",
        },
        match scenario.format {
            Format::Json => "json",
            Format::Avro => "avro",
        },
        match scenario.envelope {
            EnvelopeKind::Upsert => "upsert",
            EnvelopeKind::Debezium => "debezium",
        },
        match scenario.target {
            Target::None => "",
            Target::Mock => "mock",
            Target::Broker => match broker {
                Some((_, label)) => label,
                None => "broker",
            },
        },
        match (stage, scenario.delivery) {
            (Stage::Sink, Delivery::ExactlyOnce) => "eo",
            (Stage::Sink, Delivery::AtLeastOnce) => "alo",
            _ => "",
        },
        scenario.columns,
        scenario.workers
    )
    .split_whitespace()
    .collect::<Vec<_>>()
    .join(" ");
    scenario
}

fn spawn_scenario(scenario: &Scenario) -> Outcome {
    let exe = std::env::current_exe().expect("own path");
    let json = serde_json::to_string(scenario).expect("scenarios serialize");
    let output = match Command::new(exe).args(["--run-scenario", &json]).output() {
        Ok(output) => output,
        Err(error) => {
            return Outcome {
                error: Some(format!("cannot start the scenario process: {error}")),
                ..Outcome::default()
            }
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout
        .lines()
        .find_map(|line| line.strip_prefix(RESULT_PREFIX))
    {
        Some(result) => serde_json::from_str(result).expect("the child prints a valid outcome"),
        None => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            Outcome {
                error: Some(format!(
                    "scenario process exited with {}: {}",
                    output.status,
                    tail.join(" | ")
                )),
                ..Outcome::default()
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The workload.

/// SQL type of column `index` (0 is the key).
fn column_type(index: usize) -> &'static str {
    match index {
        0 => "bigint",
        _ => [
            "integer",
            "text",
            "numeric(12, 2)",
            "double precision",
            "boolean",
            "timestamp",
            "text",
        ][(index - 1) % 7],
    }
}

fn table_sql(columns: usize) -> String {
    let mut sql = String::from("CREATE TABLE bench (id bigint PRIMARY KEY");
    for index in 1..columns {
        let _ = write!(sql, ", c{index} {} NOT NULL", column_type(index));
    }
    sql + ");"
}

const BASE_TIME: i64 = 1_714_982_400_000_000;

/// Row `id` at `version`: the same `(id, version)` always gives the same row.
fn make_row(id: u64, version: u64, columns: usize) -> Row {
    let texts: Vec<String> = (1..columns)
        .map(|index| match (index - 1) % 7 {
            1 => format!("customer-{id:08}"),
            6 => format!("note {version} on order {id}: leave at the door"),
            _ => String::new(),
        })
        .collect();
    let mut datums = Vec::with_capacity(columns);
    datums.push(Datum::Int64(id as i64));
    for index in 1..columns {
        let mix = id.wrapping_mul(31).wrapping_add(version * 7 + index as u64);
        datums.push(match (index - 1) % 7 {
            0 => Datum::Int32((mix % 100_000) as i32),
            1 | 6 => Datum::String(&texts[index - 1]),
            2 => Datum::Numeric(Numeric::new((mix % 1_000_000_000) as i128, 2)),
            3 => Datum::Float64(mix as f64 * 0.001),
            4 => Datum::from_bool(mix % 2 == 0),
            _ => Datum::Timestamp(Timestamp(
                BASE_TIME + (mix % 100_000_000) as i64 * 1_000_000,
            )),
        });
    }
    Row::pack_slice(&datums)
}

/// One worker's input: its share of the snapshot, of each stream round and of each paced
/// round as `(row, diff)` updates, with the snapshot's and the stream's changes as
/// before/after pairs for the baselines.
struct Workload {
    snapshot: Vec<Row>,
    rounds: Vec<Vec<(Row, isize)>>,
    /// Changes in the rounds: an update is two of their updates, an insert or delete one.
    changes: u64,
    paced: Vec<Vec<(Row, isize)>>,
    paced_changes: u64,
    pairs: Vec<(u64, DiffPair<Row>)>,
}

/// Worker `index` of `peers` owns the keys `≡ index (mod peers)`, so the workers' changes never
/// touch one key twice at one time. Changes walk the owned keys in order; a present key is
/// updated (80%) or deleted, an absent one inserted.
fn workload(scenario: &Scenario, index: usize, peers: usize) -> Workload {
    let owned: Vec<u64> = (index as u64..scenario.keys).step_by(peers).collect();
    let mut version: BTreeMap<u64, Option<u64>> = owned
        .iter()
        .map(|&id| (id, (id < scenario.rows).then_some(0)))
        .collect();
    let snapshot: Vec<Row> = owned
        .iter()
        .filter(|&&id| id < scenario.rows)
        .map(|&id| make_row(id, 0, scenario.columns))
        .collect();
    let mut pairs: Vec<(u64, DiffPair<Row>)> = snapshot
        .iter()
        .map(|row| (0, DiffPair::insert(row.clone())))
        .collect();
    let share_of =
        |total: u64| total / peers as u64 + u64::from((index as u64) < total % peers as u64);
    let share = share_of(scenario.changes);
    let per_round = share.div_ceil(scenario.rounds).max(1) as usize;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ index as u64;
    let mut cursor = 0usize;
    // `count` changes at `time`: the updates, and the changes as pairs.
    let mut changes_at = |time: u64, count: usize| {
        let mut updates = Vec::new();
        let mut changes = Vec::new();
        for _ in 0..count {
            let id = owned[cursor % owned.len()];
            cursor += 1;
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let slot = version.get_mut(&id).expect("owned keys have a slot");
            let before = slot.map(|v| make_row(id, v, scenario.columns));
            let after = match slot {
                Some(_) if seed % 5 == 0 => None,
                _ => Some(make_row(id, time, scenario.columns)),
            };
            *slot = after.as_ref().map(|_| time);
            if let Some(row) = &before {
                updates.push((row.clone(), -1));
            }
            if let Some(row) = &after {
                updates.push((row.clone(), 1));
            }
            changes.push((time, DiffPair { before, after }));
        }
        (updates, changes)
    };
    let mut rounds = Vec::new();
    let mut left = share as usize;
    for round in 0..scenario.rounds {
        let count = per_round.min(left).min(owned.len());
        left -= count;
        let (updates, changes) = changes_at(round + 1, count);
        pairs.extend(changes);
        rounds.push(updates);
    }
    let paced_share = share_of(scenario.paced_changes) as usize;
    let paced = (0..scenario.paced_rounds)
        .map(|round| changes_at(scenario.rounds + 1 + round, paced_share.min(owned.len())).0)
        .collect();
    Workload {
        snapshot,
        rounds,
        changes: (share as usize - left) as u64,
        paced,
        paced_changes: scenario.paced_rounds * paced_share.min(owned.len()) as u64,
        pairs,
    }
}

fn sink_sql(
    scenario: &Scenario,
    bootstrap: &str,
    registry: &str,
    topic: &str,
    prefix: &str,
) -> String {
    let format = match scenario.format {
        Format::Json => "FORMAT JSON".to_string(),
        Format::Avro => "FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr".to_string(),
    };
    let envelope = match scenario.envelope {
        EnvelopeKind::Upsert => "UPSERT",
        EnvelopeKind::Debezium => "DEBEZIUM",
    };
    format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{bootstrap}', SECURITY PROTOCOL PLAINTEXT);
         CREATE CONNECTION csr TO CONFLUENT SCHEMA REGISTRY (URL '{registry}');
         {}
         CREATE SINK \"{topic}\" FROM bench INTO KAFKA CONNECTION k (TOPIC '{topic}',
             TOPIC PARTITION COUNT {}, TRANSACTIONAL ID PREFIX '{prefix}', PROGRESS GROUP ID PREFIX '{prefix}')
           KEY (id) {format} ENVELOPE {envelope};",
        table_sql(scenario.columns),
        scenario.partitions
    )
}

/// An encoder that needs no registry: Avro gets fixed schema ids.
fn offline_encoder(config: &EncoderConfig, format: Format) -> Result<SinkEncoder, String> {
    match format {
        Format::Json => SinkEncoder::new(config.clone(), None),
        Format::Avro => SinkEncoder::with_schema_ids(config.clone(), Some(1), Some(2)),
    }
    .map_err(|e| format!("cannot build the encoder: {e}"))
}

/// What the sink counts as a message's bytes: key, value and headers.
fn message_bytes(message: &EncodedMessage) -> u64 {
    let headers: usize = message
        .headers()
        .map(|(n, v)| n.len() + v.map_or(0, <[u8]>::len))
        .sum();
    (message.key().map_or(0, <[u8]>::len) + message.value().map_or(0, <[u8]>::len) + headers) as u64
}

// ---------------------------------------------------------------------------------------------
// One scenario, in its own process.

fn run_scenario(scenario: &Scenario) -> Result<Outcome, String> {
    // The broker and registry live in this process for its whole run; the workers reach them
    // over loopback.
    let embedded = match scenario.target {
        Target::Mock => Some(EmbeddedBroker::start().map_err(|e| e.to_string())?),
        _ => None,
    };
    let registry = (scenario.format == Format::Avro && scenario.stage == Stage::Sink)
        .then(outflow_tests::registry::SchemaRegistry::start);
    let bootstrap = match (&embedded, &scenario.broker) {
        (Some(broker), _) => broker.bootstrap(),
        (None, Some(address)) => address.clone(),
        // Broker-free: the plan is only read for its encoder configuration.
        (None, None) => "127.0.0.1:9".to_string(),
    };
    let registry_url = registry
        .as_ref()
        .map_or("http://127.0.0.1:9".to_string(), |r| r.url().to_string());
    let unique = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let topic = format!("bench-{unique}");
    let catalog = Catalog::from_sql(&sink_sql(
        scenario,
        &bootstrap,
        &registry_url,
        &topic,
        &format!("bench-{unique}-"),
    ))
    .map_err(|e| e.render("bench.sql"))?;
    let mut plan = SinkPlan::from_catalog(&catalog, &topic).map_err(|e| e.to_string())?;
    plan.cadence.commit_interval = Duration::from_millis(scenario.commit_interval_ms);
    // Tansu shows aborted records to read_committed readers; the embedded broker's `prepare`
    // sets what it needs.
    plan.broker_shows_aborted_records = scenario.broker_shows_aborted;
    if scenario.delivery == Delivery::AtLeastOnce {
        plan.spec.delivery = DeliveryGuarantee::AtLeastOnce;
    }
    if let Some(broker) = &embedded {
        broker.prepare(&mut plan).map_err(|e| e.to_string())?;
    }
    let config = plan.encoder_config();

    let mut outcome = measure(scenario, &plan, &config)?;
    outcome.peak_rss_bytes = proc_status("VmHWM:");

    // The baselines, after the peak was taken.
    let encoder = offline_encoder(&config, scenario.format)?;
    let everything = workload(scenario, 0, 1);
    outcome.serde_json_rows_per_sec = serde_json_loop(&everything.snapshot, scenario.columns);
    outcome.encode_loop_rows_per_sec = encode_loop(&encoder, &everything.pairs);
    drop(everything);
    if scenario.stage != Stage::Sink {
        return Ok(outcome);
    }
    // The sink's necessary parts besides producing: the same rows through encode+combine, in
    // this process, on as many workers.
    let parts = measure(
        &Scenario {
            stage: Stage::EncodeCombine,
            target: Target::None,
            ..scenario.clone()
        },
        &plan,
        &config,
    )?;
    let parts_secs = parts.snapshot_secs + parts.stream_secs;
    if parts_secs > 0.0 {
        outcome.encode_combine_rows_per_sec =
            Some((parts.snapshot_rows + parts.stream_rows) as f64 / parts_secs);
    }
    if parts.snapshot_rows > 0 {
        outcome.encode_combine_allocations_per_row =
            Some(parts.snapshot_allocations as f64 / parts.snapshot_rows as f64);
    }

    // Each worker's messages, pre-encoded as the sink encodes and partitions them, on a
    // producer of its own with the sink's settings.
    let shares = (0..scenario.workers)
        .map(|worker| raw_messages(scenario, &encoder, worker))
        .collect::<Result<Vec<_>, String>>()?;
    // The sink's plan under another name and topic: other transactional ids and data, every
    // producer setting the same.
    let mut raw_plan = plan.clone();
    raw_plan.spec.name = format!("{}-raw", plan.spec.name);
    raw_plan.spec.topic = format!("{topic}-raw");
    let client = plan.connection.client_config().clone();
    match &embedded {
        Some(broker) => broker
            .create_topic(&raw_plan.spec.topic, scenario.partitions)
            .map_err(|e| e.to_string())?,
        None => {
            let mut settings = outflow::topic::TopicSettings::new(&raw_plan.spec.topic);
            settings.partitions = Some(scenario.partitions);
            outflow::topic::ensure_data_topic(&client, &settings).map_err(|e| e.to_string())?;
        }
    }
    let (rate, commits) = raw_producers(&client, &raw_plan, &shares)?;
    outcome.raw_producer_rows_per_sec = rate;
    outcome.raw_commit_micros = commits;
    Ok(outcome)
}

/// A bare loop of the sink's encoder over the snapshot's and the stream's changes on one
/// thread, keys projected beforehand: the fastest of three passes, in rows/s.
fn encode_loop(encoder: &SinkEncoder, pairs: &[(u64, DiffPair<Row>)]) -> f64 {
    let keyed: Vec<(Row, u64, &DiffPair<Row>)> = pairs
        .iter()
        .map(|(time, pair)| {
            let side = pair.after.as_ref().or(pair.before.as_ref());
            (
                side.expect("a change has a side").project(&[0]),
                *time,
                pair,
            )
        })
        .collect();
    let mut message = EncodedMessage::new();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        for (key, time, pair) in &keyed {
            encoder
                .encode(key, pair, *time, &mut message)
                .expect("bench rows encode");
            std::hint::black_box(&message);
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    keyed.len() as f64 / best
}

/// Runs the dataflow of the scenario's stage: the snapshot, then the stream, timed.
fn measure(
    scenario: &Scenario,
    plan: &SinkPlan,
    config: &EncoderConfig,
) -> Result<Outcome, String> {
    let workers = scenario.workers;
    let barrier = Arc::new(Barrier::new(workers));
    let bytes = Arc::new(AtomicU64::new(0));
    let (scenario, plan, config) = (scenario.clone(), plan.clone(), config.clone());
    let shared = Arc::new(Mutex::new(Outcome::default()));
    let result = Arc::clone(&shared);
    // Only the sink stage talks to a broker; its topics and schemas are prepared before the
    // dataflow, outside the timed part.
    let prepared = match scenario.stage {
        Stage::Sink => Some(plan.preflight().map_err(|e| e.to_string())?),
        _ => None,
    };
    let monitor = prepared.as_ref().map_or_else(
        || SinkMonitor::new(plan.spec.name.clone()),
        |p| p.monitor().clone(),
    );
    let worker_monitor = monitor.clone();
    let guards = timely::execute(timely::Config::process(workers), move |worker| -> Result<(), String> {
        let (index, peers) = (worker.index(), worker.peers());
        let input_data = workload(&scenario, index, peers);
        let key = SinkKey::Declared { columns: vec![0], enforced: true };
        let probe = ProbeHandle::new();
        let encoder = offline_encoder(&config, scenario.format)?;
        let counted = Arc::clone(&bytes);
        let mut input: InputSession<u64, Row, isize> = worker.dataflow::<u64, _, _>(|scope| -> Result<_, String> {
            let (input, rows) = scope.new_collection::<Row, isize>();
            match scenario.stage {
                Stage::Encode => {
                    let mut message = EncodedMessage::new();
                    rows.inner
                        .unary::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(Pipeline, "EncodeOnly", move |_, _| {
                            move |input, _output| {
                                let mut local = 0;
                                input.for_each(|_, data| {
                                    for (row, time, diff) in data.drain(..) {
                                        let pair = if diff > 0 { DiffPair::insert(row) } else { DiffPair::delete(row) };
                                        let side = pair.after.as_ref().or(pair.before.as_ref()).expect("one side");
                                        let key = side.project(&[0]);
                                        encoder.encode(&key, &pair, time, &mut message).expect("bench rows encode");
                                        local += message_bytes(&message);
                                    }
                                });
                                counted.fetch_add(local, Ordering::Relaxed);
                            }
                        })
                        .probe_with(&probe);
                }
                Stage::Combine => {
                    let pairs = Rc::new(Cell::new(0u64));
                    rows.key_by(&key)
                        .combine_at_timestamp(&key)
                        .pairs
                        .unary::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(Pipeline, "CountPairs", move |_, _| {
                            move |input, _output| {
                                input.for_each(|_, data| {
                                    pairs.set(pairs.get() + data.len() as u64);
                                    data.clear();
                                });
                            }
                        })
                        .probe_with(&probe);
                }
                Stage::EncodeCombine => {
                    let mut message = EncodedMessage::new();
                    rows.key_by(&key)
                        .combine_at_timestamp(&key)
                        .pairs
                        .unary::<timely::container::CapacityContainerBuilder<Vec<()>>, _, _, _>(Pipeline, "EncodeDiscard", move |_, _| {
                            move |input, _output| {
                                let mut local = 0;
                                input.for_each(|_, data| {
                                    for (key, time, pair) in data.drain(..) {
                                        encoder.encode(&key, &pair, time, &mut message).expect("bench rows encode");
                                        local += message_bytes(&message);
                                    }
                                });
                                counted.fetch_add(local, Ordering::Relaxed);
                            }
                        })
                        .probe_with(&probe);
                }
                Stage::Sink => {
                    let sink = prepared.as_ref().expect("the sink stage is prepared");
                    let handle = rows.sink_kafka(sink).map_err(|e| e.to_string())?;
                    handle.committed.probe_with(&probe);
                }
            }
            Ok(input)
        })?;
        let failed = || worker_monitor.status().is_failed();
        let wait = |worker: &mut timely::worker::Worker, time: u64| -> Result<(), String> {
            let deadline = Instant::now() + Duration::from_secs(120);
            while probe.less_than(&time) {
                if failed() {
                    return Err(format!("the sink failed: {:?}", worker_monitor.status()));
                }
                if Instant::now() > deadline {
                    return Err(format!("time {time} was not through after 120 s"));
                }
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
            Ok(())
        };
        let bytes_now = |monitor: &outflow::SinkMonitor| match scenario.stage {
            Stage::Sink => monitor.report().total.bytes_committed,
            _ => bytes.load(Ordering::Relaxed),
        };
        // A sink first starts its producers, recovers and commits its announce transaction:
        // the clock starts at its first committed frontier.
        if scenario.stage == Stage::Sink {
            let deadline = Instant::now() + Duration::from_secs(60);
            while worker_monitor.committed_frontier().is_none() && Instant::now() < deadline && !failed() {
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
        }
        // Commits timed so far (the announce transaction's) are not the workload's.
        let commits_timed = |monitor: &outflow::SinkMonitor| {
            monitor
                .report()
                .workers
                .get(&index)
                .map_or(Vec::new(), |s| s.commit_micros.clone())
        };
        let commits_before = commits_timed(&worker_monitor).len();
        // Worker 0 reads the counters while the others wait at the next barrier.
        let usage_now = || {
            let mut cpu = usage::cpu_by_group("self");
            if let Some(pid) = scenario.broker_pid {
                cpu.extend(usage::cpu_by_group(&pid.to_string()));
            }
            (usage::allocations(), cpu)
        };
        barrier.wait();
        let usage_before = (index == 0).then(usage_now);
        barrier.wait();
        let start = Instant::now();
        let start_bytes = bytes_now(&worker_monitor);
        for chunk in input_data.snapshot.chunks(20_000) {
            for row in chunk {
                input.insert(row.clone());
            }
            input.flush();
            worker.step();
        }
        input.advance_to(1);
        input.flush();
        wait(worker, 1)?;
        barrier.wait();
        let snapshot_secs = start.elapsed().as_secs_f64();
        let usage_after = (index == 0).then(usage_now);
        barrier.wait();
        let snapshot_bytes = bytes_now(&worker_monitor) - start_bytes;

        // The stream for throughput: every round fed at once, ahead of the commits.
        let stream_start = Instant::now();
        let rounds = input_data.rounds.len() as u64;
        for (round, updates) in input_data.rounds.iter().enumerate() {
            for (row, diff) in updates {
                input.update(row.clone(), *diff);
            }
            input.advance_to(round as u64 + 2);
            input.flush();
            worker.step();
        }
        wait(worker, rounds + 1)?;
        barrier.wait();
        let stream_secs = stream_start.elapsed().as_secs_f64();
        let stream_bytes = bytes_now(&worker_monitor) - start_bytes - snapshot_bytes;

        // The paced phase for latency: a round every `paced_interval_ms`, each timed from the
        // input passing its time to the output passing it.
        let interval = Duration::from_millis(scenario.paced_interval_ms);
        let first = rounds + 1;
        let paced_start = Instant::now();
        let mut advanced_at: Vec<Instant> = Vec::new();
        let mut latencies: Vec<f64> = Vec::new();
        let record = |latencies: &mut Vec<f64>, advanced_at: &[Instant]| {
            while latencies.len() < advanced_at.len()
                && !probe.less_than(&(first + latencies.len() as u64 + 1))
            {
                latencies.push(advanced_at[latencies.len()].elapsed().as_secs_f64() * 1e3);
            }
        };
        for (round, updates) in input_data.paced.iter().enumerate() {
            let due = paced_start + interval * round as u32;
            loop {
                record(&mut latencies, &advanced_at);
                let now = Instant::now();
                if now >= due {
                    break;
                }
                if failed() {
                    return Err(format!("the sink failed: {:?}", worker_monitor.status()));
                }
                worker.step_or_park(Some(due - now));
            }
            for (row, diff) in updates {
                input.update(row.clone(), *diff);
            }
            input.advance_to(first + round as u64 + 1);
            input.flush();
            advanced_at.push(Instant::now());
        }
        while latencies.len() < advanced_at.len() {
            wait(worker, first + latencies.len() as u64 + 1)?;
            record(&mut latencies, &advanced_at);
        }
        barrier.wait();
        let paced_secs = paced_start.elapsed().as_secs_f64();
        let commits = commits_timed(&worker_monitor);
        {
            let mut outcome = result.lock().unwrap_or_else(|p| p.into_inner());
            outcome
                .commit_micros
                .extend_from_slice(commits.get(commits_before..).unwrap_or_default());
            outcome.snapshot_rows += input_data.snapshot.len() as u64;
            outcome.stream_rows += input_data.changes;
            outcome.paced_rows += input_data.paced_changes;
            if let (Some((allocations_before, cpu_before)), Some((allocations_after, cpu_after))) =
                (&usage_before, &usage_after)
            {
                outcome.snapshot_allocations = allocations_after - allocations_before;
                outcome.snapshot_cpu_ns = usage::cpu_delta(cpu_before, cpu_after);
            }
            if index == 0 {
                outcome.snapshot_secs = snapshot_secs;
                outcome.stream_secs = stream_secs;
                outcome.snapshot_bytes = snapshot_bytes;
                outcome.stream_bytes = stream_bytes;
                outcome.latencies_ms = latencies;
                outcome.paced_secs = paced_secs;
            }
        }
        drop(input);
        let deadline = Instant::now() + Duration::from_secs(60);
        while worker.step_or_park(Some(Duration::from_millis(1))) && Instant::now() < deadline && !failed() {}
        Ok(())
    })
    .map_err(|e| format!("timely: {e}"))?;
    for outcome in guards.join() {
        outcome.map_err(|e| format!("a worker stopped: {e}"))??;
    }
    let mut outcome = shared.lock().unwrap_or_else(|p| p.into_inner()).clone();
    outcome.transactions = monitor.report().total.transactions_committed;
    Ok(outcome)
}

/// A message as the sink sends it, pre-encoded.
struct RawMessage {
    time: u64,
    partition: i32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    /// Key, value and headers, as the sink counts a message towards its transaction's size.
    bytes: usize,
}

/// Worker `worker`'s messages, in the order of its pairs: encoded by the sink's encoder, on the
/// partition the sink picks (`kafka_murmur2` of the key without a Confluent header), with the
/// encoder's headers (`outflow-time`).
fn raw_messages(
    scenario: &Scenario,
    encoder: &SinkEncoder,
    worker: usize,
) -> Result<Vec<RawMessage>, String> {
    let workload = workload(scenario, worker, scenario.workers);
    let mut message = EncodedMessage::new();
    let mut messages = Vec::with_capacity(workload.pairs.len());
    for (time, pair) in &workload.pairs {
        let row = pair
            .after
            .as_ref()
            .or(pair.before.as_ref())
            .expect("a pair has a side");
        encoder
            .encode(&row.project(&[0]), pair, *time, &mut message)
            .map_err(|e| format!("baseline encode: {e}"))?;
        messages.push(RawMessage {
            time: *time,
            partition: partition_for(
                key_partition_hash(message.key_payload()),
                scenario.partitions,
            ),
            key: message.key().map(<[u8]>::to_vec),
            value: message.value().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|(n, v)| (n.to_string(), v.map(<[u8]>::to_vec)))
                .collect(),
            bytes: message_bytes(&message) as usize,
        });
    }
    Ok(messages)
}

/// Passes of the raw producers over their messages; the fastest counts.
const RAW_PASSES: usize = 3;

/// One raw producer's pass: from the common start to its last acknowledgement or commit, and
/// its `commit_transaction` calls' µs.
type RawPass = (Duration, Vec<u64>);

/// Messages per second of one raw producer per share, started together, in the fastest of
/// [`RAW_PASSES`] passes, and that pass's commit durations (µs).
fn raw_producers(
    client: &ClientConfig,
    plan: &SinkPlan,
    shares: &[Vec<RawMessage>],
) -> Result<(f64, Vec<u64>), String> {
    let ready = Barrier::new(shares.len());
    let results: Vec<Result<Vec<RawPass>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .iter()
            .enumerate()
            .map(|(worker, messages)| {
                let settings = plan.producer_settings(worker as u32);
                let ready = &ready;
                scope.spawn(move || raw_producer(client, &settings, plan, messages, ready))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a raw producer panicked".into()))
            })
            .collect()
    });
    let results = results.into_iter().collect::<Result<Vec<_>, String>>()?;
    let messages: usize = shares.iter().map(Vec::len).sum();
    let mut best = (0.0, Vec::new());
    for pass in 0..RAW_PASSES {
        let slowest = results
            .iter()
            .map(|passes| passes[pass].0)
            .max()
            .unwrap_or_default();
        let rate = messages as f64 / slowest.as_secs_f64();
        if rate > best.0 {
            let commits = results.iter().flat_map(|p| p[pass].1.clone()).collect();
            best = (rate, commits);
        }
    }
    Ok(best)
}

/// One worker's raw producer: `producer_config` over the connection's options and the sink's
/// settings for this worker; for exactly-once, transactions closed as the sink's cadence closes
/// them. Makes [`RAW_PASSES`] passes over `messages`, each started with the other producers.
fn raw_producer(
    client: &ClientConfig,
    settings: &ProducerSettings,
    plan: &SinkPlan,
    messages: &[RawMessage],
    ready: &Barrier,
) -> Result<Vec<RawPass>, String> {
    let transactional = settings.mode == DeliveryMode::ExactlyOnce;
    let topic = settings.data_topic.as_str();
    let fail = |what: &str, e: KafkaError| format!("raw producer {what}: {e}");
    // Connecting, fencing and learning the topic's leaders are not part of the figure.
    let setup = || -> Result<ThreadedProducer<DefaultProducerContext>, String> {
        let producer: ThreadedProducer<DefaultProducerContext> = producer_config(client, settings)
            .create()
            .map_err(|e| fail("create", e))?;
        if transactional {
            producer
                .init_transactions(settings.call_timeout)
                .map_err(|e| fail("init_transactions", e))?;
            producer
                .begin_transaction()
                .map_err(|e| fail("begin_transaction", e))?;
        }
        for partition in 0..plan.spec.topic_partition_count.unwrap_or(1) {
            let record = BaseRecord::<[u8], [u8]>::to(topic)
                .partition(partition)
                .payload(b"warm-up".as_slice());
            producer.send(record).map_err(|(e, _)| fail("send", e))?;
        }
        end_batch(&producer, transactional, settings)?;
        Ok(producer)
    };
    let producer = setup();
    let mut failure = producer.as_ref().err().cloned();
    let mut passes = Vec::new();
    for _ in 0..RAW_PASSES {
        // Every producer waits for the others, also one that failed, so that none waits
        // forever.
        ready.wait();
        if let (None, Ok(producer)) = (&failure, &producer) {
            match raw_pass(producer, transactional, settings, plan, messages) {
                Ok(pass) => passes.push(pass),
                Err(error) => failure = Some(error),
            }
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(passes),
    }
}

/// One pass of a raw producer over its messages.
fn raw_pass(
    producer: &ThreadedProducer<DefaultProducerContext>,
    transactional: bool,
    settings: &ProducerSettings,
    plan: &SinkPlan,
    messages: &[RawMessage],
) -> Result<RawPass, String> {
    let topic = settings.data_topic.as_str();
    let fail = |what: &str, e: KafkaError| format!("raw producer {what}: {e}");
    let cadence = &plan.cadence;
    let start = Instant::now();
    let mut commits = Vec::new();
    let mut opened = Instant::now();
    let mut open_bytes = 0usize;
    if transactional {
        producer
            .begin_transaction()
            .map_err(|e| fail("begin_transaction", e))?;
    }
    let mut last_time = messages.first().map_or(0, |m| m.time);
    for message in messages {
        // Like the sink's: a transaction closes between times once it has been open for the
        // commit interval, or within a time once it holds the size bound.
        let between_times = message.time != last_time;
        last_time = message.time;
        if open_bytes > 0
            && (open_bytes >= cadence.max_transaction_bytes
                || (between_times && opened.elapsed() >= cadence.commit_interval))
        {
            commits.extend(end_batch(producer, transactional, settings)?);
            if transactional {
                producer
                    .begin_transaction()
                    .map_err(|e| fail("begin_transaction", e))?;
            }
            opened = Instant::now();
            open_bytes = 0;
        }
        let mut headers = OwnedHeaders::new_with_capacity(message.headers.len());
        for (name, value) in &message.headers {
            headers = headers.insert(Header {
                key: name.as_str(),
                value: value.as_deref(),
            });
        }
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .partition(message.partition)
            .headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &message.value {
            record = record.payload(value.as_slice());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(fail("send", e)),
            }
        }
        open_bytes += message.bytes;
    }
    commits.extend(end_batch(producer, transactional, settings)?);
    Ok((start.elapsed(), commits))
}

/// Waits for every delivery with librdkafka's own flush, as the sink's driver does
/// (rust-rdkafka's flush polls in fixed slices), then commits (exactly-once); the commit call's
/// µs, what a commit costs on the broker once its data is there.
fn end_batch(
    producer: &ThreadedProducer<DefaultProducerContext>,
    transactional: bool,
    settings: &ProducerSettings,
) -> Result<Option<u64>, String> {
    let timeout_ms = settings.call_timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: the pointer is the live handle of `producer`, and `rd_kafka_flush` may be called
    // from any thread.
    let code =
        unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), timeout_ms) };
    match RDKafkaErrorCode::from(code) {
        RDKafkaErrorCode::NoError => {}
        code => return Err(format!("raw producer flush: {code}")),
    }
    if !transactional {
        return Ok(None);
    }
    let started = Instant::now();
    producer
        .commit_transaction(settings.call_timeout)
        .map_err(|e| format!("raw producer commit_transaction: {e}"))?;
    Ok(Some(started.elapsed().as_micros() as u64))
}

/// A row as plain values, for serde.
enum Plain {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

struct PlainRow<'a> {
    names: &'a [String],
    values: Vec<Plain>,
}

impl Serialize for PlainRow<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.values.len()))?;
        for (name, value) in self.names.iter().zip(&self.values) {
            match value {
                Plain::Int(v) => map.serialize_entry(name, v)?,
                Plain::Float(v) => map.serialize_entry(name, v)?,
                Plain::Bool(v) => map.serialize_entry(name, v)?,
                Plain::Text(v) => map.serialize_entry(name, v)?,
            }
        }
        map.end()
    }
}

/// Rows per second of `serde_json::to_writer` over the snapshot's rows as plain values (made
/// before timing; timestamps and numerics ready-made), best of three.
fn serde_json_loop(rows: &[Row], columns: usize) -> f64 {
    let names: Vec<String> = (0..columns)
        .map(|i| {
            if i == 0 {
                "id".to_string()
            } else {
                format!("c{i}")
            }
        })
        .collect();
    let plain: Vec<PlainRow> = rows
        .iter()
        .map(|row| PlainRow {
            names: &names,
            values: row
                .iter()
                .map(|datum| match datum {
                    Datum::Int64(v) => Plain::Int(v),
                    Datum::Int32(v) => Plain::Int(v.into()),
                    Datum::Float64(v) => Plain::Float(v),
                    Datum::Numeric(n) => Plain::Float(n.to_f64()),
                    Datum::True => Plain::Bool(true),
                    Datum::False => Plain::Bool(false),
                    Datum::String(s) => Plain::Text(s.to_string()),
                    other => Plain::Text(format!("{other:?}")),
                })
                .collect(),
        })
        .collect();
    let mut buffer = Vec::with_capacity(4096);
    let mut best = f64::MAX;
    for _ in 0..3 {
        let start = Instant::now();
        for row in &plain {
            buffer.clear();
            serde_json::to_writer(&mut buffer, std::hint::black_box(row))
                .expect("serializing to a Vec");
            std::hint::black_box(&buffer);
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    rows.len() as f64 / best
}

/// `VmHWM` or `VmRSS` of this process, in bytes.
fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

// ---------------------------------------------------------------------------------------------
// Figures, the table, the breakdown and the plot.

/// A scenario's figures, as written to `--json-out`.
#[derive(Clone, Debug, Serialize)]
struct Figures {
    name: String,
    stage: Stage,
    target: Target,
    /// The broker, for `target: broker`: Apache Kafka of the test harness, or the address given.
    broker: Option<String>,
    format: Format,
    envelope: EnvelopeKind,
    delivery: Option<Delivery>,
    workers: usize,
    columns: usize,
    snapshot_rows: u64,
    stream_changes: u64,
    /// Snapshot rows and stream changes over the time of both.
    rows_per_sec: f64,
    /// Message bytes (key, value, headers) over the time of both.
    mb_per_sec: f64,
    snapshot_rows_per_sec: f64,
    snapshot_mb_per_sec: f64,
    stream_rows_per_sec: f64,
    stream_mb_per_sec: f64,
    /// Per round of the paced phase (a round every `paced_interval_ms`), from the input
    /// passing its time to the output passing it (for a sink: the committed frontier).
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    paced_interval_ms: u64,
    paced_rows_per_sec: f64,
    /// Allocations through the global allocator per snapshot row, process-wide (C code's
    /// `malloc`s, librdkafka's, are not counted).
    allocations_per_row: f64,
    /// The same for encode+combine over the same rows (for a sink: measured in its process
    /// after it).
    encode_combine_allocations_per_row: Option<f64>,
    /// CPU time per snapshot row by thread group: `worker` (timely), `producer I/O`,
    /// `librdkafka` (its threads, the mock cluster's included), `broker` (the harness's
    /// Kafka process), `other`; in µs.
    cpu_us_per_row: BTreeMap<String, f64>,
    peak_rss_bytes: u64,
    transactions_per_sec: Option<f64>,
    /// The sink's commit interval (sinks only).
    commit_interval_ms: Option<u64>,
    /// The sink's commits during the snapshot and the stream, from the delivery wait to the
    /// broker's answer (at-least-once: the batch end), as its producer driver times them.
    commit_p50_ms: Option<f64>,
    commit_p99_ms: Option<f64>,
    /// The raw producers' `commit_transaction` calls after their deliveries were reported
    /// (exactly-once only): what a commit costs on the broker.
    raw_commit_p50_ms: Option<f64>,
    raw_commit_p99_ms: Option<f64>,
    /// Sinks: `rows_per_sec` over the raw producers' messages/s: the same messages (bytes,
    /// headers, partitions), the sink's producer settings, one producer per worker, the same
    /// broker, transactions with the sink's cadence for exactly-once.
    ratio_vs_raw_producer: Option<f64>,
    /// Sinks: `rows_per_sec` over `1 / (1/encode_combine + 1/raw_producer)`, the rate of the
    /// sink's necessary parts done one after the other, measured in the same process.
    ratio_vs_parts: Option<f64>,
    encode_combine_rows_per_sec: Option<f64>,
    /// Broker-free scenarios that encode: `rows_per_sec` over a bare encode loop's rows/s
    /// times the workers (their limit if nothing but encoding cost anything).
    ratio_vs_encode_loop: Option<f64>,
    encode_loop_rows_per_sec: f64,
    /// `rows_per_sec` over a bare `serde_json` encode loop's rows/s on one thread.
    ratio_vs_serde_json: f64,
    raw_producer_rows_per_sec: f64,
    serde_json_rows_per_sec: f64,
    error: Option<String>,
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Percentile `p` of durations in µs, in ms.
fn percentile_micros(micros: &[u64], p: f64) -> f64 {
    let ms: Vec<f64> = micros.iter().map(|&us| us as f64 / 1e3).collect();
    percentile(&ms, p)
}

impl Figures {
    fn from(scenario: &Scenario, outcome: &Outcome) -> Figures {
        let per = |count: f64, secs: f64| if secs > 0.0 { count / secs } else { 0.0 };
        let total_secs = outcome.snapshot_secs + outcome.stream_secs;
        let rows_per_sec = per(
            (outcome.snapshot_rows + outcome.stream_rows) as f64,
            total_secs,
        );
        let ratio = |base: f64| (base > 0.0).then(|| rows_per_sec / base);
        let sink = scenario.stage == Stage::Sink;
        let allocations_per_row = if outcome.snapshot_rows > 0 {
            outcome.snapshot_allocations as f64 / outcome.snapshot_rows as f64
        } else {
            0.0
        };
        let parts_rate = match (
            outcome.encode_combine_rows_per_sec,
            outcome.raw_producer_rows_per_sec,
        ) {
            (Some(parts), raw) if parts > 0.0 && raw > 0.0 => 1.0 / (1.0 / parts + 1.0 / raw),
            _ => 0.0,
        };
        Figures {
            name: scenario.name.clone(),
            stage: scenario.stage,
            target: scenario.target,
            broker: scenario.broker_label.clone(),
            format: scenario.format,
            envelope: scenario.envelope,
            delivery: (scenario.stage == Stage::Sink).then_some(scenario.delivery),
            workers: scenario.workers,
            columns: scenario.columns,
            snapshot_rows: outcome.snapshot_rows,
            stream_changes: outcome.stream_rows,
            rows_per_sec,
            mb_per_sec: per(
                (outcome.snapshot_bytes + outcome.stream_bytes) as f64 / 1e6,
                total_secs,
            ),
            snapshot_rows_per_sec: per(outcome.snapshot_rows as f64, outcome.snapshot_secs),
            snapshot_mb_per_sec: per(outcome.snapshot_bytes as f64 / 1e6, outcome.snapshot_secs),
            stream_rows_per_sec: per(outcome.stream_rows as f64, outcome.stream_secs),
            stream_mb_per_sec: per(outcome.stream_bytes as f64 / 1e6, outcome.stream_secs),
            latency_p50_ms: percentile(&outcome.latencies_ms, 50.0),
            latency_p99_ms: percentile(&outcome.latencies_ms, 99.0),
            paced_interval_ms: scenario.paced_interval_ms,
            paced_rows_per_sec: per(outcome.paced_rows as f64, outcome.paced_secs),
            allocations_per_row,
            encode_combine_allocations_per_row: match scenario.stage {
                Stage::EncodeCombine => Some(allocations_per_row),
                _ => outcome.encode_combine_allocations_per_row,
            },
            cpu_us_per_row: outcome
                .snapshot_cpu_ns
                .iter()
                .map(|(group, ns)| {
                    (
                        group.clone(),
                        *ns as f64 / 1e3 / outcome.snapshot_rows.max(1) as f64,
                    )
                })
                .collect(),
            peak_rss_bytes: outcome.peak_rss_bytes,
            transactions_per_sec: (scenario.stage == Stage::Sink)
                .then(|| per(outcome.transactions as f64, total_secs)),
            commit_interval_ms: sink.then_some(scenario.commit_interval_ms),
            commit_p50_ms: sink.then(|| percentile_micros(&outcome.commit_micros, 50.0)),
            commit_p99_ms: sink.then(|| percentile_micros(&outcome.commit_micros, 99.0)),
            raw_commit_p50_ms: (!outcome.raw_commit_micros.is_empty())
                .then(|| percentile_micros(&outcome.raw_commit_micros, 50.0)),
            raw_commit_p99_ms: (!outcome.raw_commit_micros.is_empty())
                .then(|| percentile_micros(&outcome.raw_commit_micros, 99.0)),
            ratio_vs_raw_producer: sink
                .then(|| ratio(outcome.raw_producer_rows_per_sec))
                .flatten(),
            ratio_vs_parts: sink.then(|| ratio(parts_rate)).flatten(),
            encode_combine_rows_per_sec: outcome.encode_combine_rows_per_sec,
            ratio_vs_encode_loop: matches!(scenario.stage, Stage::Encode | Stage::EncodeCombine)
                .then(|| ratio(outcome.encode_loop_rows_per_sec * scenario.workers as f64))
                .flatten(),
            encode_loop_rows_per_sec: outcome.encode_loop_rows_per_sec,
            ratio_vs_serde_json: ratio(outcome.serde_json_rows_per_sec).unwrap_or(0.0),
            raw_producer_rows_per_sec: outcome.raw_producer_rows_per_sec,
            serde_json_rows_per_sec: outcome.serde_json_rows_per_sec,
            error: outcome.error.clone(),
        }
    }

    fn line(&self) -> String {
        match &self.error {
            Some(error) => format!("{:<40} FAILED: {error}", self.name),
            None => format!(
                "{:<40} {:>9.0} rows/s {:>7.1} MB/s  (snapshot {:.0}/s, stream {:.0}/s, p50 {:.1} ms)",
                self.name, self.rows_per_sec, self.mb_per_sec, self.snapshot_rows_per_sec, self.stream_rows_per_sec, self.latency_p50_ms
            ),
        }
    }
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or("-".to_string(), |r| format!("{r:.2}"))
}

fn print_table(rows: &[Figures]) {
    println!(
        "{:<40} {:>10} {:>7} {:>10} {:>10} {:>8} {:>8} {:>7} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "scenario",
        "rows/s",
        "MB/s",
        "snap r/s",
        "strm r/s",
        "p50 ms",
        "p99 ms",
        "RSS MB",
        "txn/s",
        "cmt p50",
        "cmt p99",
        "alloc/r",
        "xLimit",
        "xSerde"
    );
    for f in rows {
        if let Some(error) = &f.error {
            println!("{:<40} FAILED: {error}", f.name);
            continue;
        }
        println!(
            "{:<40} {:>10.0} {:>7.1} {:>10.0} {:>10.0} {:>8.1} {:>8.1} {:>7.0} {:>6} {:>7} {:>7} {:>7.1} {:>7} {:>7.2}",
            f.name,
            f.rows_per_sec,
            f.mb_per_sec,
            f.snapshot_rows_per_sec,
            f.stream_rows_per_sec,
            f.latency_p50_ms,
            f.latency_p99_ms,
            f.peak_rss_bytes as f64 / 1e6,
            f.transactions_per_sec.map_or("-".to_string(), |t| format!("{t:.1}")),
            f.commit_p50_ms.map_or("-".to_string(), |t| format!("{t:.1}")),
            f.commit_p99_ms.map_or("-".to_string(), |t| format!("{t:.1}")),
            f.allocations_per_row,
            ratio_text(f.ratio_vs_parts.or(f.ratio_vs_encode_loop)),
            f.ratio_vs_serde_json
        );
    }
    println!(
        "  (p50/p99: latency per round of the paced phase; alloc/r: allocations per snapshot row; \
         xLimit: sinks over their parts, encode+combine then the raw producer, one after the other; \
         encode scenarios over a bare encode loop times the workers)"
    );
}

/// CPU time per snapshot row by thread group, the scenarios that measured it.
fn print_cpu(rows: &[Figures]) {
    let groups: std::collections::BTreeSet<&str> = rows
        .iter()
        .flat_map(|f| f.cpu_us_per_row.keys().map(String::as_str))
        .collect();
    if groups.is_empty() {
        return;
    }
    println!("\nCPU µs per snapshot row, by thread:");
    let mut header = format!("{:<40}", "scenario");
    for group in &groups {
        let _ = write!(header, " {group:>13}");
    }
    println!("{header}");
    for f in rows.iter().filter(|f| f.error.is_none()) {
        let mut line = format!("{:<40}", f.name);
        for group in &groups {
            let _ = match f.cpu_us_per_row.get(*group) {
                Some(us) => write!(line, " {us:>13.2}"),
                None => write!(line, " {:>13}", "-"),
            };
        }
        println!("{line}");
    }
}

/// The produce path's targets, each as a figure of this run against its bound.
fn print_targets(rows: &[Figures]) {
    let sinks: Vec<&Figures> = rows
        .iter()
        .filter(|f| f.stage == Stage::Sink && f.error.is_none())
        .collect();
    if sinks.is_empty() {
        return;
    }
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    println!("\ntargets (exactly-once unless noted):");
    for f in &sinks {
        if f.delivery == Some(Delivery::ExactlyOnce) {
            if let Some(parts) = f.ratio_vs_parts {
                println!(
                    "  {:<40} throughput over its parts   {parts:>6.2}  (≥ 0.90: {})",
                    f.name,
                    verdict(parts >= 0.9)
                );
            }
        }
        if let Some(own) = f.encode_combine_allocations_per_row {
            println!(
                "  {:<40} allocations per row         {:>6.1}  (≤ encode+combine's {own:.1} + 1: {})",
                f.name,
                f.allocations_per_row,
                verdict(f.allocations_per_row <= own + 1.0)
            );
        }
        if let Some(interval) = f.commit_interval_ms {
            let bound = interval as f64 + 50.0;
            println!(
                "  {:<40} paced latency p99           {:>6.1}  (≤ {bound:.0} ms at {:.0} rows/s: {})",
                f.name,
                f.latency_p99_ms,
                f.paced_rows_per_sec,
                verdict(f.latency_p99_ms <= bound)
            );
        }
    }
    // Exactly-once beside at-least-once on the same broker, workers and commit interval.
    for eo in sinks
        .iter()
        .filter(|f| f.delivery == Some(Delivery::ExactlyOnce))
    {
        let alo = sinks.iter().find(|f| {
            f.delivery == Some(Delivery::AtLeastOnce)
                && f.target == eo.target
                && f.workers == eo.workers
                && f.format == eo.format
                && f.envelope == eo.envelope
                && f.commit_interval_ms == eo.commit_interval_ms
                && f.snapshot_rows == eo.snapshot_rows
        });
        if let Some(alo) = alo {
            let ratio = eo.rows_per_sec / alo.rows_per_sec;
            println!(
                "  {:<40} over at-least-once          {ratio:>6.2}  (≥ 0.95 at a 1 s interval: {})",
                eo.name,
                if eo.commit_interval_ms == Some(1000) {
                    verdict(ratio >= 0.95)
                } else {
                    "not its interval"
                }
            );
        }
    }
}

/// Where a row's time goes, from the stages measured apart at one worker: encoding alone,
/// combining alone, both, then producing without and with transactions.
fn print_breakdown(rows: &[Figures]) {
    let micros = |pick: &dyn Fn(&Figures) -> bool| {
        rows.iter()
            .find(|f| {
                f.error.is_none()
                    && f.workers == 1
                    && f.format == Format::Json
                    && f.envelope == EnvelopeKind::Upsert
                    && pick(f)
            })
            .map(|f| (1e6 / f.snapshot_rows_per_sec, f.columns))
    };
    let encode = micros(&|f| f.stage == Stage::Encode && f.columns == 8);
    let combine = micros(&|f| f.stage == Stage::Combine && f.columns == 8);
    let both = micros(&|f| f.stage == Stage::EncodeCombine && f.columns == 8);
    let at_least_once =
        micros(&|f| f.stage == Stage::Sink && f.delivery == Some(Delivery::AtLeastOnce));
    let exactly_once =
        micros(&|f| f.stage == Stage::Sink && f.delivery == Some(Delivery::ExactlyOnce));
    let (Some(encode), Some(combine), Some(both)) = (encode, combine, both) else {
        return;
    };
    // The snapshot is the bulk figure, measured alike for every stage.
    println!("\nwhere a row's time goes (1 worker, JSON upsert, 8 columns; µs per snapshot row):");
    println!("  encoding                         {:>7.2}", encode.0);
    println!("  keying, arranging, combining     {:>7.2}", combine.0);
    println!("  both, in one dataflow            {:>7.2}", both.0);
    if let Some(alo) = at_least_once {
        println!(
            "  producing (at-least-once − both) {:>7.2}   at-least-once sink: {:.2}",
            alo.0 - both.0,
            alo.0
        );
        if let Some(eo) = exactly_once {
            println!(
                "  committing (exactly-once − ALO)  {:>7.2}   exactly-once sink:  {:.2}",
                eo.0 - alo.0,
                eo.0
            );
        }
    }
    println!("  (sink rows: the broker scenarios' smaller workload; the rest: broker-free)");
}

/// The sinks beside their fair baselines: the raw producers with the sink's settings, messages,
/// broker and (exactly-once) commit cadence, in the same process.
fn print_fair_baselines(rows: &[Figures]) {
    let sinks: Vec<&Figures> = rows
        .iter()
        .filter(|f| f.stage == Stage::Sink && f.error.is_none())
        .collect();
    if sinks.is_empty() {
        return;
    }
    println!(
        "\nsinks against raw producers with the sink's settings, messages and commit cadence:"
    );
    println!(
        "{:<40} {:>10} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "scenario", "sink r/s", "raw r/s", "ratio", "cmt p50", "cmt p99", "raw p50", "raw p99"
    );
    for f in sinks {
        println!(
            "{:<40} {:>10.0} {:>10.0} {:>7} {:>9.1} {:>9.1} {:>9} {:>9}",
            f.name,
            f.rows_per_sec,
            f.raw_producer_rows_per_sec,
            ratio_text(f.ratio_vs_raw_producer),
            f.commit_p50_ms.unwrap_or(0.0),
            f.commit_p99_ms.unwrap_or(0.0),
            f.raw_commit_p50_ms
                .map_or("-".to_string(), |t| format!("{t:.1}")),
            f.raw_commit_p99_ms
                .map_or("-".to_string(), |t| format!("{t:.1}"))
        );
    }
    println!(
        "  (ms; cmt: the sink's commits, from its delivery wait to the broker's answer, at-least-once \
         its batch ends; raw: the raw producers' commit_transaction after their deliveries; raw r/s: \
         the fastest of {RAW_PASSES} passes)"
    );
}
