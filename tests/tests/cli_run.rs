//! The `outflow` program against Tansu: `run` a statements file over a change feed, then
//! `read` prints exactly the feed's final state; a bad feed line stops the run with its line
//! number and leaves the topics committed up to the last good time and no further.
//!
//! Tansu shows aborted records to `read_committed` readers, so the runs pass
//! `--broker-shows-aborted`, and what the topics hold is audited with the raw-log reader.

mod cli;

use std::collections::BTreeMap;

use cli::{order_json, outflow, text, update_line, write_file};
use outflow_tests::broker::{shared_broker, unique_name};
use outflow_tests::rawlog;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Two sinks of one `orders` table: JSON UPSERT and JSON DEBEZIUM.
struct Setup {
    dir: tempfile::TempDir,
    statements: String,
    upsert: String,
    debezium: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let upsert = unique_name("cli-upsert");
    let debezium = unique_name("cli-debezium");
    let prefix = unique_name("cli-tx");
    let sql = format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{bootstrap}', SECURITY PROTOCOL PLAINTEXT);
         CREATE TABLE orders (order_id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL);
         CREATE SINK \"{upsert}\" FROM orders INTO KAFKA CONNECTION k (TOPIC '{upsert}', TOPIC PARTITION COUNT 3,
             TRANSACTIONAL ID PREFIX '{prefix}', PROGRESS GROUP ID PREFIX '{prefix}')
           KEY (order_id) FORMAT JSON ENVELOPE UPSERT;
         CREATE SINK \"{debezium}\" FROM orders INTO KAFKA CONNECTION k (TOPIC '{debezium}', TOPIC PARTITION COUNT 2,
             TRANSACTIONAL ID PREFIX '{prefix}', PROGRESS GROUP ID PREFIX '{prefix}')
           KEY (order_id) FORMAT JSON ENVELOPE DEBEZIUM;",
        bootstrap = shared_broker().bootstrap()
    );
    let statements = write_file(&dir, "statements.sql", &sql);
    Setup {
        dir,
        statements,
        upsert,
        debezium,
    }
}

/// A feed of inserts, updates and deletes of orders at times 1..=`times`, and the rows at its
/// end (by order id, as FORMAT JSON writes them).
fn order_feed(seed: u64, times: u64) -> (Vec<String>, BTreeMap<i64, String>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut current: BTreeMap<i64, String> = BTreeMap::new();
    let mut lines = Vec::new();
    for time in 1..=times {
        let mut touched = std::collections::BTreeSet::new();
        for _ in 0..8 {
            let id = rng.gen_range(1..=25);
            if !touched.insert(id) {
                continue;
            }
            if let Some(old) = current.remove(&id) {
                lines.push(update_line("orders", time, -1, &old));
                if rng.gen_bool(0.25) {
                    continue;
                }
            }
            let row = order_json(
                id,
                &format!("c{}", rng.gen_range(0..5)),
                rng.gen_range(0..100_000),
            );
            lines.push(update_line("orders", time, 1, &row));
            current.insert(id, row);
        }
        if time % 3 == 0 {
            lines.push(format!(r#"{{"advance": {}}}"#, time + 1));
        }
    }
    (lines, current)
}

fn run_args<'a>(setup: &'a Setup, feed: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        setup.statements.as_str(),
        "--feed",
        feed,
        "--broker-shows-aborted",
        "--commit-interval-ms",
        "50",
    ];
    args.extend_from_slice(extra);
    args
}

/// `outflow read`'s lines: the rows, and the frontier line last.
fn read(setup: &Setup, sink: &str) -> (Vec<String>, serde_json::Value) {
    let output = outflow(&[
        "read",
        &setup.statements,
        "--sink",
        sink,
        "--broker-shows-aborted",
    ]);
    assert!(
        output.status.success(),
        "read {sink} failed: {}",
        text(&output.stderr)
    );
    let mut lines: Vec<String> = text(&output.stdout).lines().map(String::from).collect();
    let frontier = serde_json::from_str(&lines.pop().expect("a frontier line")).unwrap();
    (lines, frontier)
}

/// The `outflow-time` of every committed message of `topic`.
fn committed_times(topic: &str) -> Vec<u64> {
    rawlog::read_committed(&shared_broker().bootstrap(), topic)
        .unwrap()
        .iter()
        .map(|record| {
            let (_, value) = record
                .headers
                .iter()
                .find(|(name, _)| name == "outflow-time")
                .expect("outflow-time header");
            String::from_utf8(value.clone().unwrap())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn run_then_read_prints_the_final_state() {
    let setup = setup();
    let (lines, expected) = order_feed(11, 12);
    let feed = write_file(&setup.dir, "feed.jsonl", &(lines.join("\n") + "\n"));
    let status = setup.dir.path().join("status.json").display().to_string();

    let output = outflow(&run_args(
        &setup,
        &feed,
        &["--workers", "2", "--status", &status],
    ));
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "run failed: {}\n{stdout}",
        text(&output.stderr)
    );
    for sink in [&setup.upsert, &setup.debezium] {
        let summary = stdout
            .lines()
            .find(|l| l.starts_with(&format!("sink {sink}:")))
            .unwrap_or_else(|| panic!("no summary of {sink}: {stdout}"));
        // The feed ends with an advance to 13; the end of a feed never marks a sink done.
        assert!(summary.ends_with("committed frontier 13"), "{summary}");
    }

    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    let sinks = document["sinks"].as_array().unwrap();
    assert_eq!(sinks.len(), 2);
    for sink in sinks {
        assert!(
            sink["total"]["messages_committed"].as_u64().unwrap() > 0,
            "{sink}"
        );
        assert!(
            sink["history"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["status"] == "running"),
            "{sink}"
        );
    }
    assert_eq!(
        document["rows_fed"].as_u64().unwrap(),
        lines.iter().filter(|l| l.contains("\"table\"")).count() as u64
    );

    let expected: Vec<String> = expected.into_values().collect();
    for sink in [&setup.upsert, &setup.debezium] {
        let (rows, frontier) = read(&setup, sink);
        assert_eq!(rows, expected, "sink {sink}");
        assert_eq!(frontier["frontier"], serde_json::json!([13]), "{frontier}");
    }

    // Run again on the same feed: everything is committed, so nothing more is written.
    let before = committed_times(&setup.upsert).len();
    let again = outflow(&run_args(&setup, &feed, &[]));
    assert!(
        again.status.success(),
        "second run failed: {}",
        text(&again.stderr)
    );
    assert_eq!(committed_times(&setup.upsert).len(), before);
    assert_eq!(read(&setup, &setup.upsert).0, expected);
}

#[test]
fn every_bad_feed_line_names_its_line_and_nothing_after_the_last_good_time_is_written() {
    let (good, _) = order_feed(5, 2);
    // Rows of times 1 and 2 are complete; time 3 has begun when the bad line comes.
    let started_time_3 = update_line("orders", 3, 1, &order_json(100, "late", 100));
    let bad_lines = [
        (
            r#"{"table":"orders","time":3,"diff":1,"row":{"order_id":1"#,
            "not a feed line",
        ),
        (
            r#"{"table":"customers","time":3,"diff":1,"row":{"id":1}}"#,
            "unknown table \"customers\"",
        ),
        (
            r#"{"table":"orders","time":3,"diff":1,"row":{"order_id":7,"customer":"x","amount":1,"colour":"red"}}"#,
            "unknown column \"colour\"",
        ),
        (
            r#"{"table":"orders","time":3,"diff":1,"row":{"order_id":"seven","customer":"x","amount":1}}"#,
            "expected a bigint",
        ),
        (
            r#"{"table":"orders","time":1,"diff":1,"row":{"order_id":8,"customer":"x","amount":1}}"#,
            "time 1 goes back in time",
        ),
    ];
    // The state after times 1 and 2.
    let mut state: BTreeMap<i64, String> = BTreeMap::new();
    for line in &good {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = value["row"]["order_id"].as_i64().unwrap();
        // The row's text as written, which is how FORMAT JSON writes it.
        let row = &line[line.find(r#""row":"#).unwrap() + 6..line.len() - 1];
        if value["diff"] == 1 {
            state.insert(id, row.to_string());
        } else {
            state.remove(&id);
        }
    }
    let expected: Vec<String> = state.into_values().collect();

    for (bad, problem) in bad_lines {
        let setup = setup();
        let mut lines = good.clone();
        lines.push(started_time_3.clone());
        lines.push(bad.to_string());
        lines.push(update_line("orders", 4, 1, &order_json(200, "never", 1)));
        let bad_line_number = lines.len() - 1;
        let feed = write_file(&setup.dir, "feed.jsonl", &(lines.join("\n") + "\n"));

        let output = outflow(&run_args(&setup, &feed, &[]));
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{bad}: {stderr}");
        assert!(
            stderr.contains(&format!("feed line {bad_line_number}: ")),
            "{bad}: {stderr}"
        );
        assert!(
            stderr.contains(problem),
            "{bad}: expected {problem:?} in {stderr}"
        );

        let (rows, frontier) = read(&setup, &setup.upsert);
        assert_eq!(rows, expected, "{bad}");
        assert_eq!(
            frontier["frontier"],
            serde_json::json!([3]),
            "{bad}: {frontier}"
        );
        for sink in [&setup.upsert, &setup.debezium] {
            let times = committed_times(sink);
            assert!(
                !times.is_empty() && times.iter().all(|&t| t < 3),
                "{bad}: sink {sink} committed times {times:?}"
            );
        }
    }
}

#[test]
fn materialized_views_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let statements = write_file(
        &dir,
        "views.sql",
        "CREATE TABLE t (id bigint PRIMARY KEY);\nCREATE MATERIALIZED VIEW v AS SELECT * FROM t;\n",
    );
    let feed = write_file(&dir, "feed.jsonl", "");
    let output = outflow(&["run", &statements, "--feed", &feed]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("views.sql:2:") && stderr.contains("CREATE MATERIALIZED VIEW"),
        "{stderr}"
    );
}
