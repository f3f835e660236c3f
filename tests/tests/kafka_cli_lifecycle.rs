//! What `outflow run` does over the life of a sink, on Apache Kafka: a large snapshot at one
//! time streams through; the end of a feed closes the inputs only at what the feed proved
//! complete, so a longer feed continues where a shorter one stopped; a sink whose definition
//! changed starts anew instead of skipping; a sink that fails at start-up is recorded as failed;
//! at-least-once runs count flushes, not transactions; `-v` says what the sinks do; and the
//! metrics endpoint is not held up by a slow client.
//!
//! Topics are audited with a librdkafka consumer at `read_committed`
//! ([`outflow_tests::committed`]); Kafka hides aborted records, so no `--broker-shows-aborted`.

mod cli;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cli::{outflow, outflow_binary, text, write_file};
use outflow_tests::broker::unique_name;
use outflow_tests::committed;
use outflow_tests::kafka::Kafka;
use outflow_tests::registry::SchemaRegistry;

/// A statements file with one sink `name` of table `t (id bigint PRIMARY KEY, name text)`,
/// writing to `topic` with the given sink options.
fn statements(dir: &tempfile::TempDir, name: &str, topic: &str, options: &str) -> String {
    let sql = format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{bootstrap}', SECURITY PROTOCOL PLAINTEXT);
         CREATE TABLE t (id bigint PRIMARY KEY, name text);
         CREATE SINK \"{name}\" FROM t INTO KAFKA CONNECTION k (TOPIC '{topic}',
             TRANSACTIONAL ID PREFIX '{name}-', PROGRESS GROUP ID PREFIX '{name}-'{options})
           KEY (id) FORMAT JSON ENVELOPE UPSERT;",
        bootstrap = Kafka::shared().bootstrap()
    );
    write_file(dir, "statements.sql", &sql)
}

fn row(id: u64, time: u64) -> String {
    format!(r#"{{"table":"t","time":{time},"diff":1,"row":{{"id":{id},"name":"n{id}"}}}}"#)
}

fn run(statements: &str, feed: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "run",
        statements,
        "--feed",
        feed,
        "--commit-interval-ms",
        "50",
    ];
    args.extend_from_slice(extra);
    outflow(&args)
}

/// Runs `outflow ARGS`, killing it (and failing) if it has not exited within `limit`.
fn run_within(limit: Duration, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(outflow_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("outflow starts");
    // Drain the pipes on threads, so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = out.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = err.read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "outflow {args:?} did not finish within {limit:?}: {}",
                text(&err.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The committed messages of `topic`: (key, value) text in offset order per partition.
fn committed_messages(topic: &str) -> Vec<(String, String)> {
    committed::read_committed(&Kafka::shared().bootstrap(), topic)
        .unwrap()
        .into_iter()
        .map(|record| {
            (
                String::from_utf8(record.key.unwrap_or_default()).unwrap(),
                String::from_utf8(record.value.unwrap_or_default()).unwrap(),
            )
        })
        .collect()
}

/// How many committed messages `topic` holds per key.
fn count_by_key(topic: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (key, _) in committed_messages(topic) {
        *counts.entry(key).or_default() += 1;
    }
    counts
}

fn keys(ids: &[u64]) -> BTreeMap<String, usize> {
    ids.iter()
        .map(|id| (format!(r#"{{"id":{id}}}"#), 1))
        .collect()
}

/// The feed of `MAX_UNCOMMITTED_UPDATES` rows at one time used to stall: the feed was held
/// until the time committed, and the time could not commit before it was all fed.
#[test]
fn a_snapshot_of_200000_rows_at_one_time_is_written() {
    const ROWS: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("life-snapshot");
    let statements = statements(&dir, &name, &name, "");
    let mut feed = String::with_capacity(ROWS as usize * 48);
    for id in 1..=ROWS {
        feed.push_str(&format!(r#"{{"table":"t","time":1,"row":{{"id":{id}}}}}"#));
        feed.push('\n');
    }
    feed.push_str("{\"advance\": 2}\n");
    let feed = write_file(&dir, "feed.jsonl", &feed);
    let started = Instant::now();
    let output = run_within(
        Duration::from_secs(300),
        &[
            "run",
            &statements,
            "--feed",
            &feed,
            "--commit-interval-ms",
            "50",
            "--workers",
            "2",
        ],
    );
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "run failed: {}\n{stdout}",
        text(&output.stderr)
    );
    eprintln!("{ROWS} rows at one time in {:.1?}", started.elapsed());
    assert!(
        stdout.contains(&format!("sink {name}: {ROWS} messages,")),
        "{stdout}"
    );
    assert!(stdout.contains("committed frontier 2"), "{stdout}");
    let messages = committed_messages(&name);
    assert_eq!(messages.len() as u64, ROWS);
    assert_eq!(
        messages
            .iter()
            .map(|(k, _)| k)
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64,
        ROWS
    );
}

/// Feed A stops inside time 2 (an upstream that died); feed B is A plus the rest of time 2 and
/// later times. The end of A must not mark the sink done: B writes ids 2, 3 and 4.
#[test]
fn a_feed_that_ends_inside_a_time_leaves_it_to_a_longer_feed() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("life-ended");
    let statements = statements(&dir, &name, &name, "");
    let a = [row(1, 1), r#"{"advance": 2}"#.to_string(), row(2, 2)];
    let feed_a = write_file(&dir, "a.jsonl", &(a.join("\n") + "\n"));
    let output = run(&statements, &feed_a, &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{feed_a}: error: the feed ended inside time 2: 1 update(s) at time 2 are not written, \
             because no later line shows that time 2 is complete (every time before 2 is committed; \
             end a finished feed with {{\"advance\": 3}}, and a rerun whose feed completes time 2 writes them)"
        )),
        "{stderr}"
    );
    assert!(
        text(&output.stdout).contains("committed frontier 2"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(count_by_key(&name), keys(&[1]));

    let b = [
        row(1, 1),
        r#"{"advance": 2}"#.to_string(),
        row(2, 2),
        row(3, 2),
        r#"{"advance": 3}"#.to_string(),
        row(4, 3),
        r#"{"advance": 4}"#.to_string(),
    ];
    let feed_b = write_file(&dir, "b.jsonl", &(b.join("\n") + "\n"));
    let output = run(&statements, &feed_b, &[]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("sink {name}: 3 messages,"))
            && stdout.contains("committed frontier 4"),
        "{stdout}"
    );
    assert_eq!(count_by_key(&name), keys(&[1, 2, 3, 4]));

    // The same feed again: everything is committed, nothing more is written, and that is no
    // error (the feed ends with an advance).
    let output = run(&statements, &feed_b, &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains(&format!("sink {name}: 0 messages,")),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(count_by_key(&name), keys(&[1, 2, 3, 4]));
}

/// The same sink name, another topic: the progress records of the first topic say nothing
/// about the second, so the second run writes the whole feed to it.
#[test]
fn a_sink_writing_another_topic_starts_anew() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("life-retopic");
    let (x1, x2) = (format!("{name}-x1"), format!("{name}-x2"));
    let feed = [row(1, 1), row(2, 1), r#"{"advance": 2}"#.to_string()];
    let feed = write_file(&dir, "feed.jsonl", &(feed.join("\n") + "\n"));

    let first = statements(&dir, &name, &x1, "");
    let output = run(&first, &feed, &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(count_by_key(&x1), keys(&[1, 2]));

    let second = statements(&dir, &name, &x2, "");
    let status = dir.path().join("status.json");
    let output = run(&second, &feed, &["--status", status.to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains(&format!("sink {name}: 2 messages,")),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(count_by_key(&x2), keys(&[1, 2]));
    assert_eq!(count_by_key(&x1), keys(&[1, 2]));
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    let notes = document["sinks"][0]["notes"].to_string();
    assert!(
        notes.contains(&format!(
            "the progress records were written by another definition of the sink (topic \\\"{x1}\\\" → \\\"{x2}\\\"); it starts from the beginning and writes its whole input to topic {x2}"
        )),
        "{notes}"
    );

    // Run again on x2: now the records name x2, and nothing is written twice.
    let output = run(&second, &feed, &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(count_by_key(&x2), keys(&[1, 2]));
}

/// A topic the broker cannot create (3 replicas on a one-broker cluster) fails the sink before
/// it runs: the status file says so, with the error.
#[test]
fn a_sink_that_fails_at_start_up_is_recorded_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("life-startfail");
    let statements = statements(&dir, &name, &name, ", TOPIC REPLICATION FACTOR 3");
    let feed = write_file(&dir, "feed.jsonl", &(row(1, 1) + "\n{\"advance\": 2}\n"));
    let status = dir.path().join("status.json");
    let output = run(&statements, &feed, &["--status", status.to_str().unwrap()]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("error: sink {name}: ")),
        "{stderr}"
    );
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    let sink = &document["sinks"][0];
    assert_eq!(sink["status"], "failed", "{sink}");
    let error = sink["error"].as_str().unwrap();
    assert!(
        error.contains(&name) && error.contains("replication"),
        "{error}"
    );
    let history = sink["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|c| c["status"] == "failed" && c["error"] == error),
        "{sink}"
    );
    // The log says it too, at the default level.
    assert!(stderr.contains("failed: "), "{stderr}");
}

/// At least once there are no transactions: the run counts flushes; `-v` logs the start,
/// the recovery and each status change of the sink.
#[test]
fn at_least_once_counts_flushes_and_verbose_runs_say_what_the_sink_does() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("life-alo");
    let statements = statements(&dir, &name, &name, "");
    let text_sql = std::fs::read_to_string(&statements).unwrap().replace(
        "ENVELOPE UPSERT;",
        "ENVELOPE UPSERT WITH (DELIVERY GUARANTEE = 'at-least-once');",
    );
    std::fs::write(&statements, text_sql).unwrap();
    let feed = [
        row(1, 1),
        r#"{"advance": 2}"#.to_string(),
        row(2, 2),
        r#"{"advance": 3}"#.to_string(),
    ];
    let feed = write_file(&dir, "feed.jsonl", &(feed.join("\n") + "\n"));
    let status = dir.path().join("status.json");
    let output = run(
        &statements,
        &feed,
        &["-v", "--status", status.to_str().unwrap()],
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}\n{stdout}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with(&format!("sink {name}:")))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        summary.contains("flushes (at-least-once, no transactions)")
            && !summary.contains("transactions committed"),
        "{summary}"
    );
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    let total = &document["sinks"][0]["total"];
    assert_eq!(total["transactions_committed"], 0, "{total}");
    assert!(total["flushes"].as_u64().unwrap() > 0, "{total}");
    assert_eq!(document["sinks"][0]["delivery"], "at-least-once");
    assert_eq!(count_by_key(&name), keys(&[1, 2]));

    for said in [
        "starting: checking the connection, topics and schemas",
        "sink prepared",
        "recovered: no committed progress; starting from the beginning",
        "running",
        "dropped",
    ] {
        let line = stderr
            .lines()
            .find(|l| l.contains(" INFO ") && l.contains(said) && l.contains(&name));
        assert!(line.is_some(), "no info line saying {said:?}:\n{stderr}");
    }
}

/// A client that sends its request a byte at a time neither holds up a scrape nor the end of
/// the run.
#[test]
fn a_slow_metrics_client_holds_up_neither_scrapes_nor_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("life-metrics");
    let statements = statements(&dir, &name, &name, "");
    let mut child = Command::new(outflow_binary())
        .args([
            "run",
            &statements,
            "--feed",
            "-",
            "--commit-interval-ms",
            "50",
            "--metrics",
            "localhost:0",
            "-v",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("outflow starts");
    let (send, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let address = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the run logs its metrics address");
        if let Some(at) = line.find("metrics at http://") {
            let rest = &line[at + "metrics at http://".len()..];
            break rest.trim_end_matches("/metrics").to_string();
        }
    };
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}", row(1, 1)).unwrap();
    stdin.flush().unwrap();

    let mut slow = TcpStream::connect(&address).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        .unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..80 {
            if slow.write_all(b"a").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let mut scrape = TcpStream::connect(&address).unwrap();
    scrape
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    scrape
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    scrape.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains(&format!("outflow_sink_up{{sink=\"{name}\"")),
        "{response}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the scrape took {:?}",
        started.elapsed()
    );

    writeln!(stdin, "{{\"advance\": 2}}").unwrap();
    drop(stdin);
    let ending = Instant::now();
    // The slow client trickles for 20 s; the run must not wait for it.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            ending.elapsed() < Duration::from_secs(15),
            "the run did not exit while a slow client trickled"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    eprintln!("the run exited {:?} after its feed ended", ending.elapsed());
    assert_eq!(count_by_key(&name), keys(&[1]));
    drop(trickle);
}

/// `GET /metrics` from the run's metrics server at `address`.
fn scrape(address: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    response
}

/// The value of the series `name{labels}` in a Prometheus text answer.
fn series(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().parse().unwrap())
}

/// The JSON documents `outflow txn list --json` prints, by transactional id.
fn listed(statements: &str, sink: &str) -> BTreeMap<String, serde_json::Value> {
    let output = outflow(&["txn", "list", statements, "--sink", sink, "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                value["transactional_id"].as_str().unwrap().to_string(),
                value,
            )
        })
        .collect()
}

/// A sink process killed with SIGKILL inside a transaction leaves it open: a `read_committed`
/// reader stops at its first offset until the broker's transaction timeout. The run's metrics
/// and status file show the open transaction's age and the time since the last commit growing
/// while it is held open; `outflow txn list` shows the id as Ongoing with its epoch and open
/// time beside the sink's other ids; `outflow txn abort` refuses while the process runs and
/// without proof that it is gone, and with `--force` aborts it: the reader then reaches the
/// high watermark, the topic holds nothing of the aborted transaction, and a later run writes
/// the lost time exactly once.
#[test]
fn a_transaction_a_killed_run_left_open_is_listed_and_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("life-txn");
    let statements = statements(&dir, &name, &name, "");
    let first: Vec<String> = (1..=6).map(|id| row(id, 1)).collect();
    let feed = write_file(
        &dir,
        "first.jsonl",
        &(first.join("\n") + "\n{\"advance\": 2}\n"),
    );
    // Two workers: the progress records say ids 0 and 1 were used.
    let output = run(&statements, &feed, &["--workers", "2"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(count_by_key(&name), keys(&[1, 2, 3, 4, 5, 6]));

    // One worker, whose transactions stay open for two minutes: the row of time 3 waits in an
    // open transaction.
    let status = dir.path().join("status.json");
    let mut child = Command::new(outflow_binary())
        .args([
            "run",
            &statements,
            "--feed",
            "-",
            "--workers",
            "1",
            "--commit-interval-ms",
            "120000",
            "--transaction-timeout-ms",
            "300000",
            "--status",
            status.to_str().unwrap(),
            "--metrics",
            "localhost:0",
            "-v",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("outflow starts");
    let (send, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let address = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the run logs its metrics address");
        if let Some(at) = line.find("metrics at http://") {
            let rest = &line[at + "metrics at http://".len()..];
            break rest.trim_end_matches("/metrics").to_string();
        }
    };
    let mut stdin = child.stdin.take().unwrap();
    for line in &first {
        writeln!(stdin, "{line}").unwrap();
    }
    writeln!(stdin, "{}\n{{\"advance\": 4}}", row(7, 3)).unwrap();
    stdin.flush().unwrap();

    let labels = format!("sink=\"{name}\",worker=\"0\"");
    let age = "outflow_open_transaction_age_seconds";
    let since = "outflow_since_last_commit_seconds";
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let metrics = scrape(&address);
        if let (Some(open), Some(committed)) = (
            series(&metrics, age, &labels),
            series(&metrics, since, &labels),
        ) {
            break (open, committed);
        }
        assert!(
            Instant::now() < deadline,
            "no open transaction in the metrics: {metrics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let status_age = |document: &serde_json::Value| {
        document["sinks"][0]["workers"]["0"]["open_transaction_age_ms"].as_u64()
    };
    let read_status = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&status).unwrap()).unwrap()
    };
    // The status file is rewritten every second.
    let status_before = loop {
        let document = read_status();
        if let Some(age) = status_age(&document) {
            break age;
        }
        assert!(
            Instant::now() < deadline,
            "no open transaction in the status file: {document}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(2500));
    let metrics = scrape(&address);
    let after = (
        series(&metrics, age, &labels).expect("still open"),
        series(&metrics, since, &labels).expect("still no commit"),
    );
    assert!(after.0 > before.0, "{age}: {before:?} then {after:?}");
    assert!(after.1 > before.1, "{since}: {before:?} then {after:?}");
    let document = read_status();
    assert!(
        status_age(&document).is_some_and(|age| age > status_before),
        "{document}"
    );
    assert!(
        document["sinks"][0]["workers"]["0"]["since_last_commit_ms"]
            .as_u64()
            .is_some(),
        "{document}"
    );
    assert_eq!(document["pid"].as_u64(), Some(u64::from(child.id())));

    // The process runs: its status file says so.
    let refused = outflow(&[
        "txn",
        "abort",
        &statements,
        "--sink",
        &name,
        "--status",
        status.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    let message = text(&refused.stderr);
    assert!(
        message.contains(&format!("process {}", child.id()))
            && message.contains("is running on this host"),
        "{message}"
    );

    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);

    // The killed run's transaction holds the topic's last stable offset below its end.
    let raw = outflow::rawlog::read_topic(&Kafka::shared().bootstrap(), &name).unwrap();
    let open = raw.open();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].record.key.as_deref(), Some(&br#"{"id":7}"#[..]));
    let stable = committed::read_stable(&Kafka::shared().bootstrap(), &name).unwrap();
    assert_eq!(stable.len(), 6, "{stable:?}");

    let id = |worker: u32| format!("{name}-{name}-{worker}");
    let states = listed(&statements, &name);
    assert_eq!(
        states.keys().cloned().collect::<Vec<_>>(),
        [id(0), id(1)],
        "{states:?}"
    );
    let hanging = &states[&id(0)];
    assert_eq!(hanging["state"], "Ongoing", "{hanging}");
    assert_eq!(hanging["open"], true, "{hanging}");
    let epoch = hanging["producer_epoch"].as_i64().expect("an epoch");
    let started = hanging["transaction_started_at_ms"]
        .as_i64()
        .expect("an open time");
    assert!(
        started > 0 && hanging["open_for_ms"].as_u64().is_some(),
        "{hanging}"
    );
    assert!(
        hanging["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().starts_with(&format!("{name}["))),
        "{hanging}"
    );
    let retired = &states[&id(1)];
    assert!(
        ["Empty", "CompleteCommit", "CompleteAbort"].contains(&retired["state"].as_str().unwrap()),
        "{retired}"
    );
    assert_eq!(retired["open"], false, "{retired}");
    let shown = outflow(&["txn", "list", &statements, "--sink", &name]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let shown = text(&shown.stdout);
    assert!(
        shown.contains(&format!("{}  worker 0  Ongoing", id(0))) && shown.contains("open since"),
        "{shown}"
    );

    // Nothing proves the process gone without its status file.
    let refused = outflow(&["txn", "abort", &statements, "--sink", &name]);
    assert!(!refused.status.success());
    let message = text(&refused.stderr);
    assert!(
        message.contains("nothing says the sink's process is gone") && message.contains(&id(0)),
        "{message}"
    );
    let aborted = outflow(&["txn", "abort", &statements, "--sink", &name, "--force"]);
    assert!(aborted.status.success(), "{}", text(&aborted.stderr));
    assert!(
        text(&aborted.stdout).contains(&format!("aborted {}", id(0))),
        "{}",
        text(&aborted.stdout)
    );

    // The reader reaches the high watermark, and the aborted row is nowhere.
    assert_eq!(count_by_key(&name), keys(&[1, 2, 3, 4, 5, 6]));
    let raw = outflow::rawlog::read_topic(&Kafka::shared().bootstrap(), &name).unwrap();
    assert!(raw.open().is_empty(), "{:?}", raw.open());
    let states = listed(&statements, &name);
    let ended = &states[&id(0)];
    assert_eq!(ended["open"], false, "{ended}");
    assert!(ended["producer_epoch"].as_i64().unwrap() > epoch, "{ended}");

    // A later run writes time 3 once.
    let second = write_file(
        &dir,
        "second.jsonl",
        &(first.join("\n") + "\n" + &row(7, 3) + "\n{\"advance\": 4}\n"),
    );
    let output = run(&statements, &second, &["--workers", "1"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(count_by_key(&name), keys(&[1, 2, 3, 4, 5, 6, 7]));
}

/// `outflow explain` prints the schemas a run registers: the same subjects, and the same schema
/// text under each.
#[test]
fn explain_prints_the_schemas_a_run_registers() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("life-explain");
    let registry = SchemaRegistry::start();
    let sql = format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{bootstrap}', SECURITY PROTOCOL PLAINTEXT);
         CREATE CONNECTION csr TO CONFLUENT SCHEMA REGISTRY (URL '{url}');
         CREATE TABLE t (id bigint PRIMARY KEY, name text, amount numeric(10,2), at timestamptz);
         CREATE SINK \"{name}-u\" FROM t INTO KAFKA CONNECTION k (TOPIC '{name}-u',
             TRANSACTIONAL ID PREFIX '{name}-', PROGRESS GROUP ID PREFIX '{name}-')
           KEY (id) FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr (
             VALUE DOC ON COLUMN t.name = 'the name') ENVELOPE UPSERT;
         CREATE SINK \"{name}-d\" FROM t INTO KAFKA CONNECTION k (TOPIC '{name}-d',
             TRANSACTIONAL ID PREFIX '{name}-', PROGRESS GROUP ID PREFIX '{name}-')
           KEY (id) FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr (
             NULL DEFAULTS = true) ENVELOPE DEBEZIUM;",
        bootstrap = Kafka::shared().bootstrap(),
        url = registry.url(),
    );
    let statements = write_file(&dir, "statements.sql", &sql);
    let mut explained = BTreeMap::new();
    for sink in [format!("{name}-u"), format!("{name}-d")] {
        let output = outflow(&["explain", &statements, "--sink", &sink, "--json"]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        let explanation: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        for schema in explanation["schemas"].as_array().unwrap() {
            explained.insert(
                schema["subject"].as_str().unwrap().to_string(),
                schema["schema"].as_str().unwrap().to_string(),
            );
        }
    }
    assert!(
        registry.subjects().is_empty(),
        "explain registered something"
    );

    let feed = write_file(
        &dir,
        "feed.jsonl",
        concat!(
            r#"{"table":"t","time":1,"diff":1,"row":{"id":1,"name":"a","amount":1.50,"at":"2024-05-01T12:00:00Z"}}"#,
            "\n{\"advance\": 2}\n"
        ),
    );
    let output = run(&statements, &feed, &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        registry.subjects(),
        explained.keys().cloned().collect::<Vec<_>>()
    );
    for (subject, schema) in &explained {
        let versions = registry.versions(subject);
        assert_eq!(versions.len(), 1, "{subject}: {versions:?}");
        assert_eq!(&versions[0].schema, schema, "{subject}");
    }
}

/// Through the Rust API: a transactional id of the sink that no progress record names (a run
/// that died before its first commit) is found through ListTransactions, and aborting it
/// fences its holder.
#[test]
fn an_id_only_the_broker_knows_is_listed_and_aborted_through_the_rust_api() {
    use outflow::transactions::{self, FoundIn};
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("life-txn-api");
    let statements = statements(&dir, &name, &name, "");
    let catalog =
        outflow::Catalog::from_sql(&std::fs::read_to_string(&statements).unwrap()).unwrap();
    let plan = outflow::SinkPlan::from_catalog(&catalog, &name).unwrap();
    // The topics, as a run creates them.
    drop(plan.preflight().unwrap());
    assert_eq!(transactions::list(&plan).unwrap(), []);

    let id = format!("{name}-{name}-5");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", Kafka::shared().bootstrap())
        .set("transactional.id", &id)
        .create()
        .unwrap();
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).unwrap();
    producer.begin_transaction().unwrap();
    producer
        .send(BaseRecord::to(&name).key("k").payload("v"))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(timeout).unwrap();

    let states = transactions::list(&plan).unwrap();
    assert_eq!(states.len(), 1, "{states:?}");
    let hanging = &states[0];
    assert_eq!(
        (
            hanging.transactional_id.as_str(),
            hanging.worker,
            hanging.found_in
        ),
        (id.as_str(), 5, FoundIn::Broker)
    );
    assert_eq!(hanging.state.as_deref(), Some("Ongoing"));
    assert!(hanging.is_open() && hanging.transaction_started_at_ms.is_some());
    assert_eq!(hanging.partitions, [format!("{name}[0]")]);

    transactions::abort(&plan, &id).unwrap();
    let states = transactions::list(&plan).unwrap();
    assert!(!states[0].is_open(), "{states:?}");
    assert!(
        states[0].producer_epoch > hanging.producer_epoch,
        "{states:?}"
    );
    assert!(
        producer.commit_transaction(timeout).is_err(),
        "the fenced holder cannot commit"
    );
    assert_eq!(count_by_key(&name), BTreeMap::new());
}
