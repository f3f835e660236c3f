//! The `outflow` program against a real broker: `run` a statements file over a change feed,
//! then `read` prints exactly the feed's final state; a bad feed line stops the run with its
//! line number and leaves the topics committed up to the last good time and no further; a
//! DEBEZIUM key need not be unique; materialized views are refused.
//!
//! On Apache Kafka (module `kafka`, every test) neither `run` nor `read` is given
//! `--broker-shows-aborted`, and what the topics hold is audited with a librdkafka consumer at
//! `read_committed` ([`outflow_tests::committed`]). On Tansu (module `tansu`), whose
//! `read_committed` shows aborted records, the round trip runs with `--broker-shows-aborted`,
//! the path where `run` recovers and `read` reads from the raw log with the control batches
//! applied, and the topics are audited with the raw-log reader.

mod cli;

use std::collections::BTreeMap;

use cli::{order_json, outflow, text, update_line, write_file};
use outflow_tests::broker::unique_name;
use outflow_tests::target::Target;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Two sinks of one `orders` table: JSON UPSERT and JSON DEBEZIUM.
struct Setup {
    target: Target,
    dir: tempfile::TempDir,
    statements: String,
    upsert: String,
    debezium: String,
}

fn setup(target: Target) -> Setup {
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
        bootstrap = target.bootstrap()
    );
    let statements = write_file(&dir, "statements.sql", &sql);
    Setup {
        target,
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
        "--commit-interval-ms",
        "50",
    ];
    args.extend(broker_flags(setup.target));
    args.extend_from_slice(extra);
    args
}

/// `--broker-shows-aborted` where the target needs it.
fn broker_flags(target: Target) -> &'static [&'static str] {
    if target.shows_aborted() {
        &["--broker-shows-aborted"]
    } else {
        &[]
    }
}

/// `outflow read`'s lines: the rows, and the frontier line last.
fn read(setup: &Setup, sink: &str) -> (Vec<String>, serde_json::Value) {
    let mut args = vec!["read", setup.statements.as_str(), "--sink", sink];
    args.extend(broker_flags(setup.target));
    let output = outflow(&args);
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
fn committed_times(target: Target, topic: &str) -> Vec<u64> {
    target
        .read_committed(topic)
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

mod kafka {
    use super::Target::Kafka;

    #[test]
    fn run_then_read_prints_the_final_state() {
        super::run_then_read(Kafka);
    }

    #[test]
    fn every_bad_feed_line_names_its_line_and_nothing_after_the_last_good_time_is_written() {
        super::bad_feed_lines(Kafka);
    }

    #[test]
    fn a_debezium_key_that_is_not_unique_runs_end_to_end() {
        super::debezium_key_not_unique(Kafka);
    }
}

mod tansu {
    #[test]
    fn run_then_read_prints_the_final_state() {
        super::run_then_read(super::Target::Tansu);
    }
}

fn run_then_read(target: Target) {
    let setup = setup(target);
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
    let before = committed_times(setup.target, &setup.upsert).len();
    let again = outflow(&run_args(&setup, &feed, &[]));
    assert!(
        again.status.success(),
        "second run failed: {}",
        text(&again.stderr)
    );
    assert_eq!(committed_times(setup.target, &setup.upsert).len(), before);
    assert_eq!(read(&setup, &setup.upsert).0, expected);
}

fn bad_feed_lines(target: Target) {
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
        let setup = setup(target);
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
            let times = committed_times(setup.target, sink);
            assert!(
                !times.is_empty() && times.iter().all(|&t| t < 3),
                "{bad}: sink {sink} committed times {times:?}"
            );
        }
    }
}

/// Under DEBEZIUM, `KEY (…)` names the message key and what pairs updates; unlike UPSERT it need
/// not be a known unique key (as in Materialize). A key that gains a second row is written, not
/// refused: each row's changes go out in order, under the key.
fn debezium_key_not_unique(target: Target) {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_name("cli-debezium-loose-key");
    let sql = format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{bootstrap}', SECURITY PROTOCOL PLAINTEXT);
         CREATE TABLE u (k bigint NOT NULL, val text);
         CREATE SINK \"{topic}\" FROM u INTO KAFKA CONNECTION k (TOPIC '{topic}',
             TRANSACTIONAL ID PREFIX '{topic}-', PROGRESS GROUP ID PREFIX '{topic}-')
           KEY (k) FORMAT JSON ENVELOPE DEBEZIUM;",
        bootstrap = target.bootstrap()
    );
    let statements = write_file(&dir, "statements.sql", &sql);
    let check = outflow(&["check", &statements]);
    assert!(check.status.success(), "{}", text(&check.stderr));

    let lines = [
        update_line("u", 1, 1, r#"{"k":1,"val":"a"}"#),
        update_line("u", 1, 1, r#"{"k":2,"val":"b"}"#),
        // Key 1 gains a second row.
        update_line("u", 2, 1, r#"{"k":1,"val":"c"}"#),
        // One of its rows changes, then goes.
        update_line("u", 3, -1, r#"{"k":1,"val":"a"}"#),
        update_line("u", 3, 1, r#"{"k":1,"val":"d"}"#),
        update_line("u", 4, -1, r#"{"k":1,"val":"d"}"#),
        r#"{"advance": 5}"#.to_string(),
    ];
    let feed = write_file(&dir, "feed.jsonl", &(lines.join("\n") + "\n"));
    let output = outflow(
        &[
            "run",
            &statements,
            "--feed",
            &feed,
            "--commit-interval-ms",
            "50",
        ]
        .into_iter()
        .chain(broker_flags(target).iter().copied())
        .collect::<Vec<_>>(),
    );
    assert!(
        output.status.success(),
        "run failed: {}\n{}",
        text(&output.stderr),
        text(&output.stdout)
    );

    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for record in target.read_committed(&topic) {
        let key = String::from_utf8(record.key.expect("a message key")).unwrap();
        let value = String::from_utf8(record.value.expect("a Debezium value")).unwrap();
        by_key.entry(key).or_default().push(value);
    }
    let expected: BTreeMap<String, Vec<String>> = [
        (
            r#"{"k":1}"#.to_string(),
            vec![
                r#"{"before":null,"after":{"k":1,"val":"a"}}"#.to_string(),
                r#"{"before":null,"after":{"k":1,"val":"c"}}"#.to_string(),
                r#"{"before":{"k":1,"val":"a"},"after":{"k":1,"val":"d"}}"#.to_string(),
                r#"{"before":{"k":1,"val":"d"},"after":null}"#.to_string(),
            ],
        ),
        (
            r#"{"k":2}"#.to_string(),
            vec![r#"{"before":null,"after":{"k":2,"val":"b"}}"#.to_string()],
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(by_key, expected);
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
