//! Process-level faults: `outflow run` over a feed of two tables and four sinks (JSON UPSERT,
//! JSON DEBEZIUM, Avro UPSERT through the test registry, TEXT UPSERT) is killed with SIGKILL
//! at random moments and restarted with other worker counts, finally as a 2-process cluster
//! that runs to the end. Then every topic holds each change exactly once, and `outflow read`
//! prints exactly the feed's final state.
//!
//! The same body runs on Apache Kafka, where `run` and `read` trust the broker's
//! `read_committed` and the topics are read by a librdkafka consumer at `read_committed`, and on
//! Tansu, where they are given `--broker-shows-aborted` (recovery and `read` apply the control
//! batches of the raw log themselves) and the topics are audited with the raw-log reader.
//!
//! `OUTFLOW_FAULT_SEED` replays a seed (each run prints its own); `OUTFLOW_FAULT_ROUNDS` sets
//! how many killed runs come before the last one (default 2; `just faults` runs more).

mod cli;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli::{order_json, outflow, outflow_binary, text, update_line, write_file};
use outflow_tests::broker::unique_name;
use outflow_tests::registry::SchemaRegistry;
use outflow_tests::target::Target;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PACE_MS: &str = "10";
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

struct Feed {
    lines: Vec<String>,
    /// Per table and key, the row after each time at which it changed (`None`: deleted).
    changes: BTreeMap<(&'static str, String), Vec<Option<String>>>,
    orders: BTreeMap<i64, String>,
    tags: BTreeSet<String>,
}

/// The times of the feed of each test.
const FEED_TIMES: u64 = 120;

/// About `times` × 30 updates of `orders` and `tags`, then an advance past the last time.
fn feed(seed: u64, times: u64) -> Feed {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut orders: BTreeMap<i64, String> = BTreeMap::new();
    let mut tags: BTreeSet<String> = BTreeSet::new();
    let mut lines = Vec::new();
    let mut changes: BTreeMap<(&'static str, String), Vec<Option<String>>> = BTreeMap::new();
    for time in 1..=times {
        let mut touched = BTreeSet::new();
        for _ in 0..14 {
            let id = rng.gen_range(1..=150);
            if !touched.insert(id) {
                continue;
            }
            let old = orders.remove(&id);
            if let Some(old) = &old {
                lines.push(update_line("orders", time, -1, old));
            }
            let new = if old.is_some() && rng.gen_bool(0.2) {
                None
            } else {
                let row = order_json(
                    id,
                    &format!("c{}", rng.gen_range(0..9)),
                    rng.gen_range(0..1_000_000),
                );
                lines.push(update_line("orders", time, 1, &row));
                orders.insert(id, row.clone());
                Some(row)
            };
            if old != new {
                changes
                    .entry(("orders", id.to_string()))
                    .or_default()
                    .push(new);
            }
        }
        let mut touched = BTreeSet::new();
        for _ in 0..4 {
            let tag = format!("tag-{}", rng.gen_range(0..60));
            if !touched.insert(tag.clone()) {
                continue;
            }
            let row = format!(r#"{{"tag":"{tag}"}}"#);
            if tags.remove(&tag) {
                lines.push(update_line("tags", time, -1, &row));
                changes.entry(("tags", tag.clone())).or_default().push(None);
            } else {
                tags.insert(tag.clone());
                lines.push(update_line("tags", time, 1, &row));
                changes
                    .entry(("tags", tag.clone()))
                    .or_default()
                    .push(Some(row));
            }
        }
    }
    // A time is complete once the feed moves past it: the last one too.
    lines.push(format!(r#"{{"advance": {}}}"#, times + 1));
    Feed {
        lines,
        changes,
        orders,
        tags,
    }
}

struct Sinks {
    json_upsert: String,
    json_debezium: String,
    avro_upsert: String,
    text_upsert: String,
}

fn statements(target: Target, registry: &SchemaRegistry, prefix: &str) -> (String, Sinks) {
    let sinks = Sinks {
        json_upsert: unique_name("faults-json"),
        json_debezium: unique_name("faults-debezium"),
        avro_upsert: unique_name("faults-avro"),
        text_upsert: unique_name("faults-text"),
    };
    let options = |topic: &str, partitions: u32| {
        format!("TOPIC '{topic}', TOPIC PARTITION COUNT {partitions}, TRANSACTIONAL ID PREFIX '{prefix}', PROGRESS GROUP ID PREFIX '{prefix}'")
    };
    let sql = format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{bootstrap}', SECURITY PROTOCOL PLAINTEXT);
         CREATE CONNECTION csr TO CONFLUENT SCHEMA REGISTRY (URL '{url}');
         CREATE TABLE orders (order_id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL);
         CREATE TABLE tags (tag text PRIMARY KEY);
         CREATE SINK \"{a}\" FROM orders INTO KAFKA CONNECTION k ({oa}) KEY (order_id) FORMAT JSON ENVELOPE UPSERT;
         CREATE SINK \"{b}\" FROM orders INTO KAFKA CONNECTION k ({ob}) KEY (order_id) FORMAT JSON ENVELOPE DEBEZIUM;
         CREATE SINK \"{c}\" FROM orders INTO KAFKA CONNECTION k ({oc}) KEY (order_id)
           FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr ENVELOPE UPSERT;
         CREATE SINK \"{d}\" FROM tags INTO KAFKA CONNECTION k ({od}) KEY (tag) FORMAT TEXT ENVELOPE UPSERT;",
        bootstrap = target.bootstrap(),
        url = registry.url(),
        a = sinks.json_upsert,
        b = sinks.json_debezium,
        c = sinks.avro_upsert,
        d = sinks.text_upsert,
        oa = options(&sinks.json_upsert, 3),
        ob = options(&sinks.json_debezium, 2),
        oc = options(&sinks.avro_upsert, 2),
        od = options(&sinks.text_upsert, 1),
    );
    (sql, sinks)
}

/// `--broker-shows-aborted` where the target needs it.
fn broker_flags(target: Target) -> &'static [&'static str] {
    if target.shows_aborted() {
        &["--broker-shows-aborted"]
    } else {
        &[]
    }
}

fn spawn_run(target: Target, statements: &str, feed: &str, extra: &[String]) -> Child {
    Command::new(outflow_binary())
        .args(["run", statements, "--feed", feed])
        .args(broker_flags(target))
        .args(["--commit-interval-ms", "50", "--pace-ms", PACE_MS])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("outflow starts")
}

/// Waits for `children` to exit on their own, each successfully.
fn wait_all(children: Vec<Child>, what: &str) {
    let deadline = Instant::now() + RUN_TIMEOUT;
    for mut child in children {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let output = child.wait_with_output().unwrap();
                assert!(
                    status.success(),
                    "{what} failed ({status}): {}\n{}",
                    text(&output.stderr),
                    text(&output.stdout)
                );
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let output = child.wait_with_output().unwrap();
                panic!(
                    "{what} did not finish within {RUN_TIMEOUT:?}: {}",
                    text(&output.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs of `processes` processes of `workers` workers each; the children.
fn start(
    target: Target,
    statements: &str,
    feed: &str,
    dir: &tempfile::TempDir,
    processes: usize,
    workers: usize,
) -> Vec<Child> {
    let workers = vec!["--workers".to_string(), workers.to_string()];
    if processes == 1 {
        return vec![spawn_run(target, statements, feed, &workers)];
    }
    let hosts: Vec<String> = (0..processes)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let hostfile = write_file(dir, "hosts", &(hosts.join("\n") + "\n"));
    (0..processes)
        .map(|p| {
            let mut args = workers.clone();
            args.extend([
                "-n".to_string(),
                processes.to_string(),
                "-p".to_string(),
                p.to_string(),
                "-h".to_string(),
                hostfile.clone(),
            ]);
            spawn_run(target, statements, feed, &args)
        })
        .collect()
}

/// Per key, the committed values of a topic in offset order, keyed as `key_of` says.
fn committed_by_key(
    target: Target,
    topic: &str,
    key_of: impl Fn(&[u8]) -> String,
    value_of: impl Fn(Option<&[u8]>) -> Option<String>,
) -> BTreeMap<String, Vec<Option<String>>> {
    let mut out: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    for record in target.read_committed(topic) {
        let key = key_of(record.key.as_deref().expect("keyed messages"));
        out.entry(key)
            .or_default()
            .push(value_of(record.value.as_deref()));
    }
    out
}

fn read_rows(target: Target, statements: &str, sink: &str) -> Vec<String> {
    let mut args = vec!["read", statements, "--sink", sink];
    args.extend(broker_flags(target));
    let output = outflow(&args);
    assert!(
        output.status.success(),
        "read {sink}: {}",
        text(&output.stderr)
    );
    let mut lines: Vec<String> = text(&output.stdout).lines().map(String::from).collect();
    let frontier: serde_json::Value = serde_json::from_str(&lines.pop().unwrap()).unwrap();
    assert_eq!(
        frontier["frontier"],
        serde_json::json!([FEED_TIMES + 1]),
        "sink {sink} has not committed the whole feed: {frontier}"
    );
    lines
}

mod kafka {
    #[test]
    fn killed_and_restarted_runs_write_every_change_exactly_once() {
        super::killed_and_restarted_runs(super::Target::Kafka);
    }
}

mod tansu {
    #[test]
    fn killed_and_restarted_runs_write_every_change_exactly_once() {
        super::killed_and_restarted_runs(super::Target::Tansu);
    }
}

fn killed_and_restarted_runs(target: Target) {
    let seed = std::env::var("OUTFLOW_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let rounds: usize = std::env::var("OUTFLOW_FAULT_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    eprintln!(
        "cli_faults on {}: OUTFLOW_FAULT_SEED={seed} OUTFLOW_FAULT_ROUNDS={rounds}",
        target.name()
    );
    let mut rng = StdRng::seed_from_u64(seed);

    let registry = SchemaRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let (sql, sinks) = statements(target, &registry, &unique_name("faults-tx"));
    let statements = write_file(&dir, "statements.sql", &sql);
    let feed = feed(seed, FEED_TIMES);
    let feed_path = write_file(&dir, "feed.jsonl", &(feed.lines.join("\n") + "\n"));
    eprintln!("cli_faults: {} feed lines", feed.lines.len());

    for round in 0..rounds {
        let workers = rng.gen_range(1..=3);
        // Past startup (topics, transactions, recovery) and into the feed, or not.
        let kill_after = Duration::from_millis(rng.gen_range(500..3500));
        let processes = if round % 3 == 1 { 2 } else { 1 };
        eprintln!("cli_faults: round {round}: {processes} process(es) × {workers} workers, SIGKILL after {kill_after:?}");
        let mut children = start(target, &statements, &feed_path, &dir, processes, workers);
        std::thread::sleep(kill_after);
        for child in &mut children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    eprintln!("cli_faults: last run: 2 processes × 1 worker, to the end");
    wait_all(
        start(target, &statements, &feed_path, &dir, 2, 1),
        "the last run",
    );

    // Exactly once: each key's committed messages are its changes, in order, once each.
    let expected = |table: &str| -> BTreeMap<String, Vec<Option<String>>> {
        feed.changes
            .iter()
            .filter(|((t, _), _)| *t == table)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    };
    let json_key = |bytes: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(bytes).unwrap()["order_id"].to_string()
    };
    let utf8 = |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8(b.to_vec()).unwrap());
    assert_eq!(
        committed_by_key(target, &sinks.json_upsert, json_key, utf8),
        expected("orders"),
        "seed {seed}: JSON UPSERT"
    );
    let after = |bytes: Option<&[u8]>| {
        let value: serde_json::Value =
            serde_json::from_slice(bytes.expect("DEBEZIUM values")).unwrap();
        let after = &value["after"];
        (!after.is_null()).then(|| after.to_string())
    };
    let reencoded: BTreeMap<String, Vec<Option<String>>> = expected("orders")
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.into_iter()
                    .map(|row| {
                        row.map(|r| {
                            serde_json::from_str::<serde_json::Value>(&r)
                                .unwrap()
                                .to_string()
                        })
                    })
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        committed_by_key(target, &sinks.json_debezium, json_key, after),
        reencoded,
        "seed {seed}: JSON DEBEZIUM"
    );
    let text_tags: BTreeMap<String, Vec<Option<String>>> = expected("tags")
        .into_iter()
        .map(|(k, v)| {
            let values = v.into_iter().map(|row| row.map(|_| k.clone())).collect();
            (k, values)
        })
        .collect();
    assert_eq!(
        committed_by_key(
            target,
            &sinks.text_upsert,
            |b| String::from_utf8(b.to_vec()).unwrap(),
            utf8
        ),
        text_tags,
        "seed {seed}: TEXT"
    );
    // Avro keys carry the schema id; the count per key is what is checked here, the values
    // through `outflow read` below.
    let avro_counts: BTreeMap<usize, usize> = committed_by_key(
        target,
        &sinks.avro_upsert,
        |b| format!("{b:?}"),
        |b| b.map(|b| format!("{b:?}")),
    )
    .values()
    .fold(BTreeMap::new(), |mut m, v| {
        *m.entry(v.len()).or_insert(0) += 1;
        m
    });
    let expected_counts: BTreeMap<usize, usize> =
        expected("orders")
            .values()
            .fold(BTreeMap::new(), |mut m, v| {
                *m.entry(v.len()).or_insert(0) += 1;
                m
            });
    assert_eq!(
        avro_counts, expected_counts,
        "seed {seed}: Avro UPSERT messages per key"
    );

    // `outflow read` prints the final state of every sink.
    let orders: Vec<String> = feed.orders.values().cloned().collect();
    let tags: Vec<String> = feed
        .tags
        .iter()
        .map(|t| format!(r#"{{"tag":"{t}"}}"#))
        .collect();
    for sink in [&sinks.json_upsert, &sinks.json_debezium, &sinks.avro_upsert] {
        assert_eq!(
            read_rows(target, &statements, sink),
            orders,
            "seed {seed}: read {sink}"
        );
    }
    assert_eq!(
        read_rows(target, &statements, &sinks.text_upsert),
        tags,
        "seed {seed}: read {}",
        sinks.text_upsert
    );
}
