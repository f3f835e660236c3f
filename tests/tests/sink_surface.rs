//! The sink's surface on Apache Kafka: topic administration checked through Kafka's own
//! CreateTopics, DescribeConfigs and CreatePartitions, partitioning checked against Kafka's
//! Java producer, compression read back by Kafka's console consumer, headers, `SNAPSHOT =
//! false`, status and statistics.
//!
//! Topics are read by a librdkafka consumer at `read_committed` ([`outflow_tests::committed`]).
//! The compression round trip also runs on Tansu, where the raw-log reader (which the sink's
//! recovery uses on such brokers) decodes the batches of every codec itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use outflow::dataflow::{Datum, Row, RowPacker};
use outflow::partition::{crc32, kafka_murmur2, seahash};
use outflow::statement::Catalog;
use outflow::{SinkPlan, SinkReport, SinkStatus};
use outflow_tests::broker::{block_on, unique_name};
use outflow_tests::kafka::{Isolation, Kafka};
use outflow_tests::pipeline::{run_sink, RunOptions, Update};
use outflow_tests::rawlog::LogRecord;
use outflow_tests::target::Target;
use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, NewPartitions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

const KAFKA: Target = Target::Kafka;

fn plan(sql: &str, sink: &str) -> SinkPlan {
    plan_on(KAFKA, sql, sink)
}

fn plan_on(target: Target, sql: &str, sink: &str) -> SinkPlan {
    let catalog = Catalog::from_sql(sql).unwrap_or_else(|e| panic!("{}", e.render("test.sql")));
    target.test_plan(SinkPlan::from_catalog(&catalog, sink).unwrap())
}

/// A table `t (id int8 primary key, name text, h map[text => text])` and a connection `k`.
fn catalog_sql(target: Target) -> String {
    format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{}', SECURITY PROTOCOL PLAINTEXT);
         CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL, h map[text => text]);",
        target.bootstrap()
    )
}

/// A sink named after its topic, with its own transactional and group prefixes.
fn sink_sql(topic: &str, options: &str, rest: &str) -> String {
    sink_sql_on(KAFKA, topic, options, rest)
}

fn sink_sql_on(target: Target, topic: &str, options: &str, rest: &str) -> String {
    let prefix = unique_name("tx");
    format!(
        "{}
         CREATE SINK \"{topic}\" FROM t INTO KAFKA CONNECTION k (TOPIC '{topic}',
             TRANSACTIONAL ID PREFIX '{prefix}', PROGRESS GROUP ID PREFIX '{prefix}'{options})
           {rest};",
        catalog_sql(target)
    )
}

fn admin() -> AdminClient<DefaultClientContext> {
    KAFKA.client_config().create().expect("an admin client")
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
/// function names. Returns each message's name (the one it was placed by) and partition.
fn partition_by(function: &str, hash: fn(&[u8]) -> u64) -> Vec<(String, i32)> {
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
    let records = KAFKA.read_committed(&topic);
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
    let mut used = BTreeSet::new();
    let mut placed = Vec::new();
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
        placed.push((name.clone(), record.partition));
        last_name.insert(id, name);
    }
    assert!(used.len() > 1, "every message in one partition: {used:?}");
    placed
}

/// Where Kafka's Java producer puts each key of `keys` on a new topic of `partitions`
/// partitions.
fn java_partitions(keys: &[Vec<u8>], partitions: i32) -> Vec<i32> {
    let topic = unique_name(&format!("java-{partitions}"));
    KAFKA.create_topic(&topic, partitions, &[]);
    Kafka::shared()
        .java_key_partitions(&topic, keys)
        .expect("Kafka's Java producer places the keys")
}

#[test]
fn partition_by_kafka_murmur2_places_messages_as_the_java_client() {
    let placed = partition_by("kafka_murmur2", |bytes| kafka_murmur2(bytes) as u64);
    // The Java client's vectors (UtilsTest.testMurmur2) with 5 partitions.
    assert_eq!(
        [b"21".as_slice(), b"foobar", b"abc"].map(|k| kafka_murmur2(k) % 5),
        [0, 1, 2]
    );
    // Kafka's Java producer, given each message's name as its key, picks the same partition.
    let names: Vec<Vec<u8>> = placed.iter().map(|(n, _)| n.clone().into_bytes()).collect();
    let java = java_partitions(&names, 5);
    for ((name, partition), java) in placed.iter().zip(java) {
        assert_eq!(
            *partition, java,
            "kafka_murmur2({name:?}): the sink's partition, then the Java producer's"
        );
    }
}

#[test]
fn partition_by_crc32_places_every_message() {
    partition_by("crc32", |bytes| u64::from(crc32(bytes)));
}

#[test]
fn partition_by_seahash_places_every_message() {
    partition_by("seahash", seahash);
}

/// `PARTITION BY` with arithmetic, a cast and CASE: every message is on the partition the
/// expression names, evaluated as Postgres would; a row whose expression fails (a negative
/// value cast to uint8) goes to partition 0, is counted and named in the status.
#[test]
fn partition_by_case_and_arithmetic_places_every_message() {
    let topic = unique_name("by-case");
    let expr = "CASE WHEN name = 'eu' THEN 0 ELSE (id % 3 + 1)::uint8 END";
    let sql = sink_sql(
        &topic,
        &format!(", TOPIC PARTITION COUNT 4, PARTITION BY = {expr}"),
        "KEY (id) FORMAT JSON ENVELOPE UPSERT",
    );
    let name = |id: i64| match id {
        -5 => "neg".to_string(),
        id if id % 2 == 0 => "eu".to_string(),
        id => format!("us-{id}"),
    };
    let mut history: Vec<Update> = (-5..12)
        .filter(|id| *id >= 0 || *id == -5)
        .map(|id| Update {
            time: 1,
            row: row(id, &name(id), &[]),
            diff: 1,
        })
        .collect();
    // A delete's tombstone is placed by the row before it.
    history.push(Update {
        time: 2,
        row: row(3, &name(3), &[]),
        diff: -1,
    });
    let report = run_sink(
        plan(&sql, &topic),
        history,
        RunOptions {
            workers: 2,
            ..RunOptions::default()
        },
    );
    assert_completed(&report);
    let expected = |id: i64, name: &str| -> i32 {
        if name == "eu" {
            return 0;
        }
        match id % 3 + 1 {
            v if v < 0 => 0,
            v => (v % 4) as i32,
        }
    };
    let records = KAFKA.read_committed(&topic);
    assert_eq!(records.len(), 12 + 1 + 1, "{records:?}");
    let mut used = BTreeSet::new();
    for record in &records {
        let id = key_id(record);
        let name = match &record.value {
            Some(value) => json(value)["name"].as_str().unwrap().to_string(),
            None => name(id),
        };
        assert_eq!(
            record.partition,
            expected(id, &name),
            "{expr} for id {id}, name {name:?}: {record:?}"
        );
        used.insert(record.partition);
    }
    assert_eq!(used, BTreeSet::from([0, 1, 2, 3]));
    assert_eq!(report.total.partition_errors, 1, "{report:#?}");
    let note = report
        .notes
        .iter()
        .find(|n| n.starts_with("PARTITION BY"))
        .unwrap_or_else(|| panic!("no note: {:#?}", report.notes));
    assert_eq!(
        note,
        "PARTITION BY CASE WHEN name = 'eu' THEN 0::numeric ELSE (id % 3 + 1)::uint8::numeric END \
         failed on the row with id = -5, name = 'neg' at time 1: uint8 out of range; the message \
         went to partition 0 (partition_errors counts every such message)"
    );
}

/// The default partitioner with TEXT keys (the key's text) and JSON keys (`{"id":…}`): every
/// message is on the partition Kafka's Java producer picks for the same key bytes.
#[test]
fn the_default_partitioner_puts_keys_where_the_java_producer_does() {
    let history: Vec<Update> = naming_history()
        .into_iter()
        .filter(|u| u.time == 1)
        .collect();
    let sinks = [
        (
            unique_name("default-text"),
            "KEY (name) NOT ENFORCED KEY FORMAT TEXT VALUE FORMAT JSON ENVELOPE UPSERT",
        ),
        (
            unique_name("default-json"),
            "KEY (id) FORMAT JSON ENVELOPE UPSERT",
        ),
    ];
    let mut records = Vec::new();
    for (topic, rest) in &sinks {
        let sql = sink_sql(topic, ", TOPIC PARTITION COUNT 5", rest);
        let report = run_sink(
            plan(&sql, topic),
            history.clone(),
            RunOptions {
                workers: 2,
                ..RunOptions::default()
            },
        );
        assert_completed(&report);
        let read = KAFKA.read_committed(topic);
        assert_eq!(read.len(), 24, "{topic}");
        records.extend(read);
    }
    let keys: Vec<Vec<u8>> = records
        .iter()
        .map(|r| r.key.clone().expect("keyed messages"))
        .collect();
    let java = java_partitions(&keys, 5);
    let mut used = BTreeSet::new();
    for ((record, key), java) in records.iter().zip(&keys).zip(java) {
        let text = String::from_utf8_lossy(key);
        assert_eq!(
            record.partition, java,
            "key {text}: the sink's partition, then the Java producer's"
        );
        assert_eq!(record.partition, kafka_murmur2(key) % 5, "key {text}");
        used.insert(record.partition);
    }
    assert_eq!(used.len(), 5, "the keys spread over every partition");
    let text_key = |name: &str| {
        records
            .iter()
            .find(|r| r.key.as_deref() == Some(name.as_bytes()))
            .map(|r| r.partition)
    };
    // The Java client's own vectors, toPositive(murmur2(key)) % 5.
    assert_eq!(
        (text_key("21"), text_key("foobar"), text_key("abc")),
        (Some(0), Some(1), Some(2))
    );
}

/// Runs a sink of [`naming_history`] for each codec on `target`; returns codec, topic, and
/// the committed records.
fn every_compression_type_round_trips(
    target: Target,
) -> Vec<(&'static str, String, Vec<LogRecord>)> {
    let runs: Vec<_> = ["none", "gzip", "snappy", "lz4", "zstd"]
        .into_iter()
        .map(|codec| {
            std::thread::spawn(move || {
                let topic = unique_name(&format!("codec-{codec}"));
                let sql = sink_sql_on(
                    target,
                    &topic,
                    &format!(", COMPRESSION TYPE = '{codec}'"),
                    "KEY (id) FORMAT JSON ENVELOPE UPSERT",
                );
                let report = run_sink(
                    plan_on(target, &sql, &topic),
                    naming_history(),
                    RunOptions::default(),
                );
                (codec, topic, report)
            })
        })
        .collect();
    let mut topics = Vec::new();
    for run in runs {
        let (codec, topic, report) = run.join().unwrap();
        assert_completed(&report);
        let records = target.read_committed(&topic);
        assert_eq!(records.len(), 36, "{codec} on {}", target.name());
        let renamed = records
            .iter()
            .filter(|r| {
                r.value
                    .as_deref()
                    .is_some_and(|v| json(v)["name"].as_str().unwrap().starts_with("renamed-"))
            })
            .count();
        assert_eq!(renamed, 8, "{codec} on {}", target.name());
        topics.push((codec, topic, records));
    }
    topics
}

/// Each compressed topic is read back by librdkafka and by Kafka's own console consumer at
/// `read_committed`, which print the same messages.
#[test]
fn every_compression_type_round_trips_and_kafkas_console_consumer_reads_it() {
    let topics = every_compression_type_round_trips(KAFKA);
    let readers: Vec<_> = topics
        .into_iter()
        .filter(|(codec, _, _)| *codec != "none")
        .map(|(codec, topic, records)| {
            std::thread::spawn(move || {
                let lines = Kafka::shared()
                    .console_consume(
                        &topic,
                        records.len(),
                        Isolation::ReadCommitted,
                        Duration::from_secs(20),
                    )
                    .unwrap_or_else(|e| panic!("{codec}: {e}"));
                (codec, records, lines)
            })
        })
        .collect();
    for reader in readers {
        let (codec, records, lines) = reader.join().unwrap();
        let text = |bytes: &Option<Vec<u8>>| {
            bytes.as_deref().map_or("null".to_string(), |b| {
                String::from_utf8(b.to_vec()).unwrap()
            })
        };
        let mut expected: Vec<String> = records
            .iter()
            .map(|r| format!("{}\t{}", text(&r.key), text(&r.value)))
            .collect();
        let mut lines = lines;
        expected.sort();
        lines.sort();
        assert_eq!(
            lines, expected,
            "{codec}: the console consumer, read_committed"
        );
    }
}

#[test]
fn on_tansu_every_compression_type_round_trips_through_the_raw_log_reader() {
    every_compression_type_round_trips(Target::Tansu);
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
    let mut records = KAFKA.read_committed(&topic);
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
    let mut records = KAFKA.read_committed(&topic);
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

/// An existing topic is used as it is, and each way it differs from the sink's options is in
/// its notes: Kafka describes every config, so a config left at its default is reported with
/// the default's value, and a replication factor one broker cannot have is reported too.
#[test]
fn an_existing_topic_with_other_settings_is_used_and_noted_in_the_status() {
    let topic = unique_name("existing");
    KAFKA.create_topic(&topic, 2, &[("retention.ms", "1000")]);
    let sql = sink_sql(
        &topic,
        ", TOPIC PARTITION COUNT 4, TOPIC REPLICATION FACTOR 3, \
         TOPIC CONFIG MAP['retention.ms' => '5000', 'cleanup.policy' => 'compact', 'max.message.bytes' => '1048588']",
        "KEY (id) FORMAT JSON ENVELOPE UPSERT",
    );
    let report = run_sink(plan(&sql, &topic), naming_history(), RunOptions::default());
    assert_completed(&report);
    let note = report
        .notes
        .iter()
        .find(|n| n.contains(&topic))
        .unwrap_or_else(|| panic!("no note about the topic: {report:#?}"));
    for difference in [
        "has 2 partitions, not the 4 requested",
        "has replication factor 1, not the 3 requested",
        r#"has retention.ms="1000", not the "5000" requested"#,
        r#"has cleanup.policy="delete", not the "compact" requested"#,
    ] {
        assert!(note.contains(difference), "{difference:?} is not in {note}");
    }
    // max.message.bytes is the broker's default of 1048588: no difference.
    assert!(!note.contains("max.message.bytes"), "{note}");
    let records = KAFKA.read_committed(&topic);
    assert_eq!(records.len(), 36);
    assert!(records.iter().all(|r| r.partition < 2), "{records:?}");
    assert_eq!(KAFKA.partition_count(&topic), 2);
    assert_eq!(
        KAFKA
            .describe_configs(&topic)
            .get("retention.ms")
            .map(String::as_str),
        Some("1000"),
        "the topic was altered"
    );
}

#[test]
fn a_created_topic_gets_the_requested_partitions_replication_and_configs() {
    let topic = unique_name("created");
    let sql = sink_sql(
        &topic,
        ", TOPIC PARTITION COUNT 3, TOPIC REPLICATION FACTOR 1, \
         TOPIC CONFIG MAP['retention.ms' => '7200000', 'cleanup.policy' => 'compact', 'segment.bytes' => '16777216']",
        "KEY (id) FORMAT JSON ENVELOPE UPSERT",
    );
    let report = run_sink(plan(&sql, &topic), naming_history(), RunOptions::default());
    assert_completed(&report);
    assert!(
        report.notes.iter().all(|n| !n.contains(&topic)),
        "{:?}",
        report.notes
    );
    let admin = admin();
    let metadata = admin
        .inner()
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata.topics()[0].partitions();
    assert_eq!(partitions.len(), 3);
    assert!(
        partitions.iter().all(|p| p.replicas().len() == 1),
        "replicas per partition: {:?}",
        partitions
            .iter()
            .map(|p| p.replicas().len())
            .collect::<Vec<_>>()
    );
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let described = block_on(admin.describe_configs([&ResourceSpecifier::Topic(&topic)], &options))
        .expect("DescribeConfigs");
    let resource = described[0].as_ref().expect("the topic's configs");
    for (name, value) in [
        ("retention.ms", "7200000"),
        ("cleanup.policy", "compact"),
        ("segment.bytes", "16777216"),
    ] {
        let entry = resource
            .get(name)
            .unwrap_or_else(|| panic!("DescribeConfigs lacks {name}"));
        assert_eq!(entry.value.as_deref(), Some(value), "{name}");
        assert_eq!(
            entry.source,
            ConfigSource::DynamicTopic,
            "{name} set on the topic"
        );
    }
    let untouched = resource
        .get("max.message.bytes")
        .expect("max.message.bytes");
    assert_eq!(untouched.source, ConfigSource::Default, "{untouched:?}");
}

/// What Kafka refuses at CreateTopics fails the preflight with the topic, the broker's code
/// and the option to change.
#[test]
fn a_topic_kafka_cannot_create_fails_the_preflight_naming_the_option() {
    for (options, code, option) in [
        (
            ", TOPIC REPLICATION FACTOR 3",
            "InvalidReplicationFactor",
            "TOPIC REPLICATION FACTOR",
        ),
        (
            ", TOPIC CONFIG MAP['retention.ms' => 'a week']",
            "InvalidConfig",
            "TOPIC CONFIG",
        ),
    ] {
        let topic = unique_name("refused");
        let sql = sink_sql(&topic, options, "KEY (id) FORMAT JSON ENVELOPE UPSERT");
        let error = plan(&sql, &topic)
            .preflight()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("the sink with{options} was prepared"));
        eprintln!("{options}: {error}");
        assert!(
            error.contains(&topic) && error.contains(code) && error.contains(option),
            "{options}: {error}"
        );
        let exists = admin()
            .inner()
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map(|m| m.topics()[0].error().is_none())
            .unwrap_or(false);
        assert!(!exists, "{options}: the topic was created");
    }
}

#[test]
fn a_progress_topic_with_several_partitions_is_refused() {
    let topic = unique_name("progress-refused");
    let progress = unique_name("progress-wide");
    KAFKA.create_topic(&progress, 2, &[]);
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
    let records = KAFKA.read_committed(&topic);
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
    // Every commit's duration, as the worker's producer timed it, for percentiles.
    for w in report.workers.values() {
        assert_eq!(
            w.commit_micros.len() as u64,
            w.transactions_committed,
            "{report:#?}"
        );
    }
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

/// Partitions added to a topic under its watch (Kafka's CreatePartitions) are seen within a
/// refresh interval, without anyone waiting on the watch.
#[test]
fn the_partition_count_is_reread_every_refresh_interval() {
    let topic = unique_name("watched");
    KAFKA.create_topic(&topic, 2, &[]);
    let (changes, changed) = std::sync::mpsc::channel();
    let started = Instant::now();
    let watch = outflow::topic::PartitionWatch::start(
        &KAFKA.client_config(),
        &topic,
        2,
        Duration::from_millis(100),
        Box::new(move |old, new| changes.send((old, new)).unwrap()),
    )
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "starting the watch waited for the broker"
    );
    assert_eq!(watch.current(), 2);
    assert!(
        changed.recv_timeout(Duration::from_millis(400)).is_err(),
        "the count changed before the topic did"
    );
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let grown = block_on(admin().create_partitions([&NewPartitions::new(&topic, 5)], &options))
        .expect("CreatePartitions");
    assert_eq!(grown, [Ok(topic.clone())]);
    assert_eq!(
        changed.recv_timeout(Duration::from_secs(5)).unwrap(),
        (2, 5)
    );
    assert_eq!(watch.current(), 5);
    drop(watch);
    assert!(
        changed.recv_timeout(Duration::from_millis(400)).is_err(),
        "the count changed again"
    );
}

/// Sinks of one connection starting together all prepare its progress topic: one creates it,
/// the others hear TopicAlreadyExists from CreateTopics while Kafka's metadata may not show
/// the topic yet, and must wait for it rather than call it missing.
#[test]
fn sinks_preparing_one_new_progress_topic_at_once_all_succeed() {
    for _ in 0..3 {
        let topic = unique_name("progress-race");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let preparations: Vec<_> = (0..4)
            .map(|_| {
                let (topic, barrier) = (topic.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    outflow::topic::ensure_progress_topic(&KAFKA.client_config(), &topic, None)
                        .map(|report| report.created)
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        let results: Vec<_> = preparations
            .into_iter()
            .map(|p| p.join().unwrap())
            .collect();
        assert!(results.iter().all(Result::is_ok), "{topic}: {results:?}");
        let created = results.iter().filter(|r| *r == &Ok(true)).count();
        assert_eq!(created, 1, "{topic}: {results:?}");
        assert_eq!(KAFKA.partition_count(&topic), 1);
    }
}
