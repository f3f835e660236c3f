//! The sink's surface against a real broker (Tansu): topic administration, partitioning,
//! compression, headers, `SNAPSHOT = false`, status and statistics.
//!
//! Every topic is audited with the raw-log reader, which applies `read_committed` from the
//! control batches itself (Tansu's own fetch shows aborted records).

use std::collections::BTreeMap;
use std::time::Duration;

use outflow::dataflow::{Datum, Row, RowPacker};
use outflow::partition::{crc32, kafka_murmur2, seahash};
use outflow::statement::Catalog;
use outflow::{SinkPlan, SinkReport, SinkStatus};
use outflow_tests::broker::{create_topic, shared_broker, unique_name};
use outflow_tests::pipeline::{run_sink, RunOptions, Update};
use outflow_tests::rawlog::{self, LogRecord};

fn bootstrap() -> String {
    shared_broker().bootstrap()
}

fn plan(sql: &str, sink: &str) -> SinkPlan {
    let catalog = Catalog::from_sql(sql).unwrap_or_else(|e| panic!("{}", e.render("test.sql")));
    let mut plan = SinkPlan::from_catalog(&catalog, sink).unwrap();
    plan.broker_shows_aborted_records = true;
    plan.cadence.commit_interval = Duration::from_millis(50);
    plan.cadence.idle_progress_interval = Duration::from_millis(200);
    plan
}

/// A table `t (id int8 primary key, name text, h map[text => text])` and a connection `k`.
fn catalog_sql() -> String {
    format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{}', SECURITY PROTOCOL PLAINTEXT);
         CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL, h map[text => text]);",
        bootstrap()
    )
}

/// A sink named after its topic, with its own transactional and group prefixes.
fn sink_sql(topic: &str, options: &str, rest: &str) -> String {
    let prefix = unique_name("tx");
    format!(
        "{}
         CREATE SINK \"{topic}\" FROM t INTO KAFKA CONNECTION k (TOPIC '{topic}',
             TRANSACTIONAL ID PREFIX '{prefix}', PROGRESS GROUP ID PREFIX '{prefix}'{options})
           {rest};",
        catalog_sql()
    )
}

fn row(id: i64, name: &str, headers: &[(&str, &str)]) -> Row {
    let mut packer = RowPacker::new();
    packer.push(Datum::Int64(id));
    packer.push(Datum::String(name));
    packer.push_map(headers.iter().map(|(n, v)| (*n, Datum::String(v))));
    packer.finish()
}

/// Time 1 inserts 24 rows (names include the Java client's murmur2 test vectors), time 2
/// renames the first 8, time 3 deletes rows 8 to 11.
fn naming_history() -> Vec<Update> {
    let name = |id: i64| match id {
        0 => "21".to_string(),
        1 => "foobar".to_string(),
        2 => "abc".to_string(),
        id => format!("name-{id}"),
    };
    let mut history = Vec::new();
    for id in 0..24 {
        history.push(Update {
            time: 1,
            row: row(id, &name(id), &[]),
            diff: 1,
        });
    }
    for id in 0..8 {
        history.push(Update {
            time: 2,
            row: row(id, &name(id), &[]),
            diff: -1,
        });
        history.push(Update {
            time: 2,
            row: row(id, &format!("renamed-{id}"), &[]),
            diff: 1,
        });
    }
    for id in 8..12 {
        history.push(Update {
            time: 3,
            row: row(id, &name(id), &[]),
            diff: -1,
        });
    }
    history
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

fn key_id(record: &LogRecord) -> i64 {
    json(record.key.as_deref().expect("upsert messages have keys"))["id"]
        .as_i64()
        .expect("key has an id")
}

fn header<'a>(record: &'a LogRecord, name: &str) -> Option<&'a [u8]> {
    record
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_deref())
}

fn assert_completed(report: &SinkReport) {
    assert!(!report.status.is_failed(), "sink failed: {report:#?}");
    assert!(
        report
            .history
            .iter()
            .any(|c| c.status == SinkStatus::Running),
        "never running: {:#?}",
        report.history
    );
}

/// Runs a sink partitioned by `function(name)` over [`naming_history`] and checks that every
/// message, tombstones included (placed by the row before the delete), is in the partition the
/// function names.
fn partition_by(function: &str, hash: fn(&[u8]) -> u64) {
    let topic = unique_name(&format!("by-{function}"));
    let sql = sink_sql(
        &topic,
        &format!(", TOPIC PARTITION COUNT 5, PARTITION BY = {function}(name)"),
        "KEY (id) FORMAT JSON ENVELOPE UPSERT",
    );
    let report = run_sink(
        plan(&sql, &topic),
        naming_history(),
        RunOptions {
            workers: 2,
            ..RunOptions::default()
        },
    );
    assert_completed(&report);
    let records = rawlog::read_committed(&bootstrap(), &topic).unwrap();
    assert_eq!(records.len(), 24 + 8 + 4, "{records:?}");
    let mut last_name: BTreeMap<i64, String> = BTreeMap::new();
    let mut sorted = records.clone();
    // Per key, the order of the messages is the order of times; the header says which.
    sorted.sort_by_key(|r| {
        (
            key_id(r),
            String::from_utf8(header(r, "outflow-time").unwrap().to_vec()).unwrap(),
        )
    });
    let mut used = std::collections::BTreeSet::new();
    for record in &sorted {
        let id = key_id(record);
        let name = match &record.value {
            Some(value) => json(value)["name"].as_str().unwrap().to_string(),
            None => last_name
                .get(&id)
                .cloned()
                .unwrap_or_else(|| panic!("tombstone of key {id} before any value")),
        };
        let expected = (hash(name.as_bytes()) % 5) as i32;
        assert_eq!(
            record.partition, expected,
            "{function}({name:?}) for key {id}: {record:?}"
        );
        used.insert(record.partition);
        last_name.insert(id, name);
    }
    assert!(used.len() > 1, "every message in one partition: {used:?}");
}

#[test]
fn partition_by_kafka_murmur2_places_messages_as_the_java_client() {
    partition_by("kafka_murmur2", |bytes| kafka_murmur2(bytes) as u64);
    // The Java client's vectors (UtilsTest.testMurmur2) with 5 partitions.
    assert_eq!(
        [b"21".as_slice(), b"foobar", b"abc"].map(|k| kafka_murmur2(k) % 5),
        [0, 1, 2]
    );
}

#[test]
fn partition_by_crc32_places_every_message() {
    partition_by("crc32", |bytes| u64::from(crc32(bytes)));
}

#[test]
fn partition_by_seahash_places_every_message() {
    partition_by("seahash", seahash);
}

#[test]
fn the_default_partitioner_is_kafka_murmur2_of_the_key() {
    let topic = unique_name("default-partitioner");
    let sql = sink_sql(
        &topic,
        ", TOPIC PARTITION COUNT 5",
        "KEY (name) NOT ENFORCED KEY FORMAT TEXT VALUE FORMAT JSON ENVELOPE UPSERT",
    );
    let history: Vec<Update> = naming_history()
        .into_iter()
        .filter(|u| u.time == 1)
        .collect();
    let report = run_sink(
        plan(&sql, &topic),
        history,
        RunOptions {
            workers: 2,
            ..RunOptions::default()
        },
    );
    assert_completed(&report);
    let records = rawlog::read_committed(&bootstrap(), &topic).unwrap();
    assert_eq!(records.len(), 24);
    let mut by_key = BTreeMap::new();
    for record in &records {
        let key = record.key.clone().expect("a TEXT key");
        assert_eq!(record.partition, kafka_murmur2(&key) % 5, "{record:?}");
        by_key.insert(String::from_utf8(key).unwrap(), record.partition);
    }
    // Where the Java client puts these keys: toPositive(murmur2(key)) % 5 from its own vectors.
    assert_eq!((by_key["21"], by_key["foobar"], by_key["abc"]), (0, 1, 2));
}

#[test]
fn every_compression_type_round_trips() {
    let runs: Vec<_> = ["none", "gzip", "snappy", "lz4", "zstd"]
        .into_iter()
        .map(|codec| {
            std::thread::spawn(move || {
                let topic = unique_name(&format!("codec-{codec}"));
                let sql = sink_sql(
                    &topic,
                    &format!(", COMPRESSION TYPE = '{codec}'"),
                    "KEY (id) FORMAT JSON ENVELOPE UPSERT",
                );
                let report = run_sink(plan(&sql, &topic), naming_history(), RunOptions::default());
                (codec, topic, report)
            })
        })
        .collect();
    for run in runs {
        let (codec, topic, report) = run.join().unwrap();
        assert_completed(&report);
        let records = rawlog::read_committed(&bootstrap(), &topic).unwrap();
        assert_eq!(records.len(), 36, "{codec}");
        let renamed = records
            .iter()
            .filter(|r| {
                r.value
                    .as_deref()
                    .is_some_and(|v| json(v)["name"].as_str().unwrap().starts_with("renamed-"))
            })
            .count();
        assert_eq!(renamed, 8, "{codec}");
    }
}

#[test]
fn the_headers_column_and_the_time_arrive_as_headers() {
    let topic = unique_name("headers");
    let sql = sink_sql(&topic, "", "KEY (id) HEADERS h FORMAT JSON ENVELOPE UPSERT");
    let history = vec![
        Update {
            time: 3,
            row: row(1, "a", &[("trace", "t-1"), ("tenant", "acme")]),
            diff: 1,
        },
        Update {
            time: 4,
            row: row(2, "b", &[]),
            diff: 1,
        },
    ];
    let report = run_sink(plan(&sql, &topic), history, RunOptions::default());
    assert_completed(&report);
    let mut records = rawlog::read_committed(&bootstrap(), &topic).unwrap();
    records.sort_by_key(key_id);
    let headers: Vec<Vec<(String, Option<String>)>> = records
        .iter()
        .map(|r| {
            r.headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.clone(),
                        v.as_ref().map(|v| String::from_utf8(v.clone()).unwrap()),
                    )
                })
                .collect()
        })
        .collect();
    let pair = |n: &str, v: &str| (n.to_string(), Some(v.to_string()));
    assert_eq!(
        headers[0].iter().find(|(n, _)| n == "outflow-time"),
        Some(&pair("outflow-time", "3"))
    );
    assert!(
        headers[0].contains(&pair("trace", "t-1")) && headers[0].contains(&pair("tenant", "acme")),
        "{headers:?}"
    );
    assert_eq!(headers[1], vec![pair("outflow-time", "4")]);
}

#[test]
fn snapshot_false_skips_the_updates_at_the_as_of() {
    let topic = unique_name("no-snapshot");
    let sql = sink_sql(
        &topic,
        "",
        "KEY (id) FORMAT JSON ENVELOPE UPSERT WITH (SNAPSHOT = false)",
    );
    let mut plan = plan(&sql, &topic);
    plan.as_of = 1;
    let history = vec![
        Update {
            time: 1,
            row: row(1, "a", &[]),
            diff: 1,
        },
        Update {
            time: 1,
            row: row(2, "b", &[]),
            diff: 1,
        },
        Update {
            time: 1,
            row: row(3, "c", &[]),
            diff: 1,
        },
        Update {
            time: 2,
            row: row(1, "a", &[]),
            diff: -1,
        },
        Update {
            time: 2,
            row: row(1, "a2", &[]),
            diff: 1,
        },
        Update {
            time: 2,
            row: row(2, "b", &[]),
            diff: -1,
        },
        Update {
            time: 3,
            row: row(4, "d", &[]),
            diff: 1,
        },
    ];
    let report = run_sink(plan, history, RunOptions::default());
    assert_completed(&report);
    let mut records = rawlog::read_committed(&bootstrap(), &topic).unwrap();
    records.sort_by_key(key_id);
    let seen: Vec<(i64, Option<String>, String)> = records
        .iter()
        .map(|r| {
            let name = r
                .value
                .as_deref()
                .map(|v| json(v)["name"].as_str().unwrap().to_string());
            (
                key_id(r),
                name,
                String::from_utf8(header(r, "outflow-time").unwrap().to_vec()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (1, Some("a2".into()), "2".into()),
            (2, None, "2".into()),
            (4, Some("d".into()), "3".into())
        ]
    );
}

#[test]
fn an_existing_topic_with_other_settings_is_used_and_noted_in_the_status() {
    let topic = unique_name("existing");
    create_topic(&bootstrap(), &topic, 2, &[("retention.ms", "1000")]);
    let sql = sink_sql(
        &topic,
        ", TOPIC PARTITION COUNT 4, TOPIC CONFIG MAP['retention.ms' => '5000']",
        "KEY (id) FORMAT JSON ENVELOPE UPSERT",
    );
    let report = run_sink(plan(&sql, &topic), naming_history(), RunOptions::default());
    assert_completed(&report);
    let note = report
        .notes
        .iter()
        .find(|n| n.contains(&topic))
        .unwrap_or_else(|| panic!("no note about the topic: {report:#?}"));
    assert!(
        note.contains("has 2 partitions, not the 4 requested"),
        "{note}"
    );
    assert!(note.contains("retention.ms"), "{note}");
    let records = rawlog::read_committed(&bootstrap(), &topic).unwrap();
    assert_eq!(records.len(), 36);
    assert!(records.iter().all(|r| r.partition < 2), "{records:?}");
    assert_eq!(rawlog::partition_count(&bootstrap(), &topic).unwrap(), 2);
}

#[test]
fn a_created_topic_gets_the_requested_partitions_and_configs() {
    let topic = unique_name("created");
    let sql = sink_sql(
        &topic,
        ", TOPIC PARTITION COUNT 3, TOPIC REPLICATION FACTOR 1, TOPIC CONFIG MAP['retention.ms' => '7200000']",
        "KEY (id) FORMAT JSON ENVELOPE UPSERT",
    );
    let report = run_sink(plan(&sql, &topic), naming_history(), RunOptions::default());
    assert_completed(&report);
    assert!(
        report.notes.iter().all(|n| !n.contains(&topic)),
        "{:?}",
        report.notes
    );
    assert_eq!(rawlog::partition_count(&bootstrap(), &topic).unwrap(), 3);
    let configs = rawlog::describe_configs(&bootstrap(), &topic).unwrap();
    assert_eq!(
        configs.get("retention.ms").map(String::as_str),
        Some("7200000"),
        "{configs:?}"
    );
}

#[test]
fn a_progress_topic_with_several_partitions_is_refused() {
    let topic = unique_name("progress-refused");
    let progress = unique_name("progress-wide");
    create_topic(&bootstrap(), &progress, 2, &[]);
    let sql = sink_sql(&topic, "", "KEY (id) FORMAT JSON ENVELOPE UPSERT").replace(
        "SECURITY PROTOCOL PLAINTEXT",
        &format!("SECURITY PROTOCOL PLAINTEXT, PROGRESS TOPIC '{progress}'"),
    );
    // The refusal comes from the preflight, before any dataflow is built.
    let error = plan(&sql, &topic)
        .preflight()
        .err()
        .map(|e| e.to_string())
        .expect("the sink is refused");
    assert!(
        error.contains(&progress)
            && error.contains("single partition")
            && error.contains("2 partitions"),
        "{error}"
    );
}

#[test]
fn statistics_add_up_to_what_the_topic_holds() {
    let topic = unique_name("statistics");
    let sql = sink_sql(
        &topic,
        ", TOPIC PARTITION COUNT 3",
        "KEY (id) HEADERS h FORMAT JSON ENVELOPE UPSERT",
    );
    let mut history = naming_history();
    history.push(Update {
        time: 4,
        row: row(30, "with-headers", &[("a", "1"), ("bb", "22")]),
        diff: 1,
    });
    let report = run_sink(
        plan(&sql, &topic),
        history,
        RunOptions {
            workers: 3,
            ..RunOptions::default()
        },
    );
    assert_completed(&report);
    let records = rawlog::read_committed(&bootstrap(), &topic).unwrap();
    let bytes: usize = records
        .iter()
        .map(|r| {
            r.key.as_ref().map_or(0, Vec::len)
                + r.value.as_ref().map_or(0, Vec::len)
                + r.headers
                    .iter()
                    .map(|(n, v)| n.len() + v.as_ref().map_or(0, Vec::len))
                    .sum::<usize>()
        })
        .sum();
    let total = &report.total;
    assert_eq!(
        total.messages_committed as usize,
        records.len(),
        "{report:#?}"
    );
    assert_eq!(total.bytes_committed as usize, bytes, "{report:#?}");
    assert_eq!(
        (total.messages_staged, total.bytes_staged),
        (total.messages_committed, total.bytes_committed)
    );
    assert_eq!(report.workers.len(), 3);
    let per_worker: u64 = report.workers.values().map(|w| w.messages_committed).sum();
    assert_eq!(per_worker, total.messages_committed);
    assert!(
        report
            .workers
            .values()
            .all(|w| w.transactions_committed > 0),
        "{report:#?}"
    );
    assert_eq!(total.transactions_aborted, 0);
    assert_eq!(
        total.committed_frontier,
        Some(u64::MAX),
        "everything was committed"
    );
    assert!(total.frontier_to_commit_ms.is_some(), "{report:#?}");
    // The dataflow finished: every worker's last word is that its sink was dropped.
    assert_eq!(report.status, SinkStatus::Dropped, "{:#?}", report.history);
    for worker in 0..3 {
        let statuses: Vec<&str> = report
            .history
            .iter()
            .filter(|c| c.worker == worker)
            .map(|c| c.status.name())
            .collect();
        assert_eq!(
            statuses,
            ["starting", "running", "dropped"],
            "worker {worker}"
        );
    }
    let times: Vec<u64> = report.history.iter().map(|c| c.occurred_at_ms).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]) && times[0] > 0,
        "{times:?}"
    );
    let text = SinkReport::prometheus(&[report.clone()]);
    assert!(
        text.contains(&format!(
            "outflow_messages_committed_total{{sink=\"{topic}\",worker=\"0\"}}"
        )),
        "{text}"
    );
}

/// Tansu has no CreatePartitions, so a topic cannot grow under a running sink here; the watch
/// the sink partitions by is started with a count that is out of date instead, as it would be
/// after partitions were added, and must catch up within a refresh interval without anyone
/// waiting on it.
#[test]
fn the_partition_count_is_reread_every_refresh_interval() {
    let topic = unique_name("watched");
    create_topic(&bootstrap(), &topic, 4, &[]);
    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", bootstrap());
    let (changes, changed) = std::sync::mpsc::channel();
    let started = std::time::Instant::now();
    let watch = outflow::topic::PartitionWatch::start(
        &config,
        &topic,
        1,
        Duration::from_millis(100),
        Box::new(move |old, new| changes.send((old, new)).unwrap()),
    )
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "starting the watch waited for the broker"
    );
    assert_eq!(watch.current(), 1);
    assert_eq!(
        changed.recv_timeout(Duration::from_secs(5)).unwrap(),
        (1, 4)
    );
    assert_eq!(watch.current(), 4);
    drop(watch);
    assert!(
        changed.recv_timeout(Duration::from_millis(400)).is_err(),
        "the count changed again"
    );
}
