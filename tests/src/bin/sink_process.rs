//! One run of an upsert sink over a seeded history, as its own process, so that tests can kill it
//! with SIGKILL at any moment and start it again.
//!
//! ```text
//! sink_process --bootstrap HOST:PORT --sink NAME --prefix PREFIX [--workers N] [--seed S]
//!              [--keys K] [--times T] [--changes C] [--pace-ms MS]
//!              [--max-transaction-bytes B] [--max-in-flight-bytes B] [--timeout-s S]
//!              [--progress-topic TOPIC] [--broker-hides-aborted]
//! ```
//!
//! The sink writes `random_history(seed, keys, times, changes)` of the table
//! `t (id int8 primary key, value text, amount numeric(10,2))` to topic NAME (3 partitions) as
//! JSON with ENVELOPE UPSERT, KEY (id). Every run of the same arguments feeds the same history, as
//! a restarted source would replay it. While it runs, the process prints one line to stdout each
//! time its counters move — `progress <transactions committed> <messages committed>` — so a test
//! can pick the moment to kill it; at the end it prints `report <SinkReport as JSON>` and exits 0
//! when everything is committed, 2 when the sink failed, 3 when `--timeout-s` passed first, or 1
//! when the arguments are wrong.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use outflow::statement::Catalog;
use outflow::SinkPlan;
use outflow_tests::pipeline::{history_catalog_sql, random_history, run_prepared, RunOptions};

struct Args {
    bootstrap: String,
    sink: String,
    prefix: String,
    workers: usize,
    seed: u64,
    keys: i64,
    times: u64,
    changes: usize,
    pace: Option<Duration>,
    max_transaction_bytes: Option<usize>,
    max_in_flight_bytes: Option<usize>,
    timeout: Duration,
    /// The connection's progress topic, when not the default one.
    progress_topic: Option<String>,
    /// Off with `--broker-hides-aborted` (Apache Kafka); on by default, for Tansu.
    broker_shows_aborted_records: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        bootstrap: String::new(),
        sink: String::new(),
        prefix: String::new(),
        workers: 1,
        seed: 0,
        keys: 30,
        times: 10,
        changes: 10,
        pace: None,
        max_transaction_bytes: None,
        max_in_flight_bytes: None,
        timeout: Duration::from_secs(60),
        progress_topic: None,
        broker_shows_aborted_records: true,
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        if flag == "--broker-hides-aborted" {
            args.broker_shows_aborted_records = false;
            continue;
        }
        let value = words
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
            value
                .parse()
                .map_err(|_| format!("{flag} takes a number, not {value:?}"))
        }
        match flag.as_str() {
            "--bootstrap" => args.bootstrap = value,
            "--sink" => args.sink = value,
            "--prefix" => args.prefix = value,
            "--workers" => args.workers = number(&flag, &value)?,
            "--seed" => args.seed = number(&flag, &value)?,
            "--keys" => args.keys = number(&flag, &value)?,
            "--times" => args.times = number(&flag, &value)?,
            "--changes" => args.changes = number(&flag, &value)?,
            "--pace-ms" => args.pace = Some(Duration::from_millis(number(&flag, &value)?)),
            "--max-transaction-bytes" => args.max_transaction_bytes = Some(number(&flag, &value)?),
            "--max-in-flight-bytes" => args.max_in_flight_bytes = Some(number(&flag, &value)?),
            "--timeout-s" => args.timeout = Duration::from_secs(number(&flag, &value)?),
            "--progress-topic" => args.progress_topic = Some(value),
            other => return Err(format!("unknown option {other}")),
        }
    }
    for (flag, value) in [
        ("--bootstrap", &args.bootstrap),
        ("--sink", &args.sink),
        ("--prefix", &args.prefix),
    ] {
        if value.is_empty() {
            return Err(format!("{flag} is required"));
        }
    }
    if args.workers == 0 {
        return Err("--workers must be at least 1".to_string());
    }
    Ok(args)
}

/// The statements of the sink: the test table, a plaintext connection, and an upsert sink whose
/// topic, transactional ids and progress groups are named after the sink.
fn sink_sql(bootstrap: &str, sink: &str, prefix: &str) -> String {
    format!(
        "{}
         CREATE SINK \"{sink}\" FROM t INTO KAFKA CONNECTION k (TOPIC '{sink}', TOPIC PARTITION COUNT 3,
             TRANSACTIONAL ID PREFIX '{prefix}', PROGRESS GROUP ID PREFIX '{prefix}')
           KEY (id) FORMAT JSON ENVELOPE UPSERT;",
        history_catalog_sql(bootstrap)
    )
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(problem) => {
            eprintln!("sink_process: {problem}");
            std::process::exit(1);
        }
    };
    let sql = sink_sql(&args.bootstrap, &args.sink, &args.prefix);
    let catalog =
        Catalog::from_sql(&sql).unwrap_or_else(|e| panic!("{}", e.render("sink_process.sql")));
    let mut plan = SinkPlan::from_catalog(&catalog, &args.sink)
        .unwrap_or_else(|e| panic!("sink {}: {e}", args.sink));
    // Tansu's read_committed fetches show aborted records (see DESIGN.md); Kafka's do not.
    plan.broker_shows_aborted_records = args.broker_shows_aborted_records;
    plan.cadence.commit_interval = Duration::from_millis(50);
    plan.cadence.idle_progress_interval = Duration::from_millis(200);
    if let Some(topic) = &args.progress_topic {
        plan.connection.progress_topic = topic.clone();
    }
    if let Some(bytes) = args.max_transaction_bytes {
        plan.cadence.max_transaction_bytes = bytes;
    }
    if let Some(bytes) = args.max_in_flight_bytes {
        plan.cadence.max_in_flight_bytes = bytes;
    }

    // The counters are printed from a thread of their own, so that a kill chosen from them can
    // land anywhere in the workers' transactions, not only between timely steps.
    let sink = plan
        .preflight()
        .unwrap_or_else(|e| panic!("sink {}: {e}", args.sink));
    let monitor = sink.monitor().clone();
    let finished = Arc::new(AtomicBool::new(false));
    let reporter = {
        let finished = Arc::clone(&finished);
        std::thread::spawn(move || {
            let mut last = (u64::MAX, u64::MAX);
            let mut stdout = std::io::stdout();
            while !finished.load(Ordering::Relaxed) {
                let total = monitor.report().total;
                let now = (total.transactions_committed, total.messages_committed);
                if now != last {
                    last = now;
                    // A closed pipe means the test stopped listening; the run goes on.
                    let _ = writeln!(stdout, "progress {} {}", now.0, now.1);
                    let _ = stdout.flush();
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let history = random_history(args.seed, args.keys, args.times, args.changes);
    let options = RunOptions {
        workers: args.workers,
        pace: args.pace,
        timeout: args.timeout,
        stop_at: None,
    };
    let report = run_prepared(sink, history, options);
    finished.store(true, Ordering::Relaxed);
    let _ = reporter.join();

    let json = serde_json::to_string(&report).expect("reports serialize");
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "report {json}");
    let _ = stdout.flush();
    let code = if report.status.is_failed() {
        2
    } else if report.total.committed_frontier != Some(u64::MAX) {
        // Out of time before everything was committed.
        3
    } else {
        0
    };
    std::process::exit(code);
}
