//! Avro sinks against Apache Kafka and the test schema registry: the subject name strategies
//! (`KEY SUBJECT NAME STRATEGY`, `VALUE SUBJECT NAME STRATEGY`), through the Rust API and
//! through `outflow run`. Each run checks the subjects the registry holds, the compatibility
//! level set on each (the subject the strategy names, not `{topic}-key` / `{topic}-value`), and
//! that the schema id in every message's Confluent header is the latest version of the
//! subject its part's strategy names; under the record strategy, topics share a subject and
//! the compatibility level set on it.

mod cli;

use std::collections::BTreeSet;
use std::time::Duration;

use cli::{order_json, outflow, text, update_line, write_file};
use outflow::encoders::{CompatibilityLevel, RegistryConfig, SchemaRegistryClient};
use outflow::rawlog::LogRecord;
use outflow::statement::Catalog;
use outflow::SinkPlan;
use outflow_tests::broker::unique_name;
use outflow_tests::committed;
use outflow_tests::kafka::Kafka;
use outflow_tests::pipeline::{random_history, run_sink, RunOptions};
use outflow_tests::registry::SchemaRegistry;

/// The schema id of a Confluent-framed message part: magic byte 0, then 4 bytes big-endian.
fn schema_id(bytes: &[u8]) -> i32 {
    assert!(
        bytes.len() >= 5 && bytes[0] == 0,
        "not Confluent-framed: {bytes:?}"
    );
    i32::from_be_bytes(bytes[1..5].try_into().unwrap())
}

fn client(registry: &SchemaRegistry) -> SchemaRegistryClient {
    SchemaRegistryClient::new(RegistryConfig::new(registry.url())).unwrap()
}

/// The id of the latest version of `subject`.
fn latest_id(registry: &SchemaRegistry, subject: &str) -> i32 {
    client(registry)
        .latest_version(subject)
        .unwrap()
        .unwrap_or_else(|| panic!("no version of {subject}"))
        .id
}

/// Every key and value of `records` carries the schema id of the latest version of
/// `key_subject` and `value_subject`; returns how many messages there were.
fn assert_ids(
    registry: &SchemaRegistry,
    records: &[LogRecord],
    key_subject: &str,
    value_subject: &str,
) -> usize {
    let key_id = latest_id(registry, key_subject);
    let value_id = latest_id(registry, value_subject);
    assert_ne!(key_id, value_id);
    assert!(!records.is_empty());
    for record in records {
        assert_eq!(schema_id(record.key.as_deref().expect("a key")), key_id);
        if let Some(value) = &record.value {
            assert_eq!(schema_id(value), value_id);
        }
    }
    records.len()
}

#[test]
fn record_and_topic_record_strategies_through_the_rust_api() {
    let kafka = Kafka::shared();
    let registry = SchemaRegistry::start();
    let sink = unique_name("subjects-api");
    let topic = format!("{sink}-data");
    let sql = format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{}', SECURITY PROTOCOL PLAINTEXT,
             PROGRESS TOPIC '{sink}-progress');
         CREATE CONNECTION csr TO CONFLUENT SCHEMA REGISTRY (URL '{}');
         CREATE TABLE t (id bigint PRIMARY KEY, value text NOT NULL, amount numeric(10,2) NOT NULL);
         CREATE SINK \"{sink}\" FROM t INTO KAFKA CONNECTION k (TOPIC '{topic}')
           KEY (id)
           FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr (
             KEY SUBJECT NAME STRATEGY = 'RecordNameStrategy',
             VALUE SUBJECT NAME STRATEGY = 'TopicRecordNameStrategy',
             AVRO KEY FULLNAME = 'outflow.test.OrderKey',
             AVRO VALUE FULLNAME = 'outflow.test.Order',
             KEY COMPATIBILITY LEVEL = 'FULL',
             VALUE COMPATIBILITY LEVEL = 'BACKWARD_TRANSITIVE'
           )
           ENVELOPE UPSERT;",
        kafka.bootstrap(),
        registry.url()
    );
    let catalog = Catalog::from_sql(&sql).unwrap_or_else(|e| panic!("{}", e.render("case")));
    let plan = SinkPlan::from_catalog(&catalog, &sink).unwrap();
    let history = random_history(7, 20, 4, 8);
    let report = run_sink(
        plan,
        history,
        RunOptions {
            workers: 2,
            timeout: Duration::from_secs(120),
            ..RunOptions::default()
        },
    );
    assert!(!report.status.is_failed(), "the sink failed: {report:#?}");

    let key_subject = "outflow.test.OrderKey".to_string();
    let value_subject = format!("{topic}-outflow.test.Order");
    assert_eq!(
        registry.subjects(),
        [key_subject.clone(), value_subject.clone()]
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
    );
    let client = client(&registry);
    assert_eq!(
        client.subject_compatibility_level(&key_subject).unwrap(),
        Some(CompatibilityLevel::Full)
    );
    assert_eq!(
        client.subject_compatibility_level(&value_subject).unwrap(),
        Some(CompatibilityLevel::BackwardTransitive)
    );
    let records = committed::read_committed(&kafka.bootstrap(), &topic).unwrap();
    let messages = assert_ids(&registry, &records, &key_subject, &value_subject);
    println!("{messages} messages carry the ids of {key_subject} and {value_subject}");
}

#[test]
fn outflow_run_registers_under_each_parts_strategy() {
    let kafka = Kafka::shared();
    let registry = SchemaRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let sink = unique_name("subjects-cli");
    let topic = format!("{sink}-data");
    // The key under the default topic strategy, the value under the record strategy.
    let sql = format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{}', SECURITY PROTOCOL PLAINTEXT,
             PROGRESS TOPIC '{sink}-progress');
         CREATE CONNECTION csr TO CONFLUENT SCHEMA REGISTRY (URL '{}');
         CREATE TABLE orders (order_id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL);
         CREATE SINK \"{sink}\" FROM orders INTO KAFKA CONNECTION k (TOPIC '{topic}')
           KEY (order_id)
           FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr (
             KEY COMPATIBILITY LEVEL = 'NONE',
             VALUE SUBJECT NAME STRATEGY = record,
             AVRO KEY FULLNAME = 'outflow.cli.OrderKey',
             AVRO VALUE FULLNAME = 'outflow.cli.{}',
             VALUE COMPATIBILITY LEVEL = 'FORWARD'
           )
           ENVELOPE UPSERT;",
        kafka.bootstrap(),
        registry.url(),
        sink.replace('-', "_")
    );
    let statements = write_file(&dir, "statements.sql", &sql);
    let lines: Vec<String> = (1..=5)
        .map(|id| update_line("orders", 1, 1, &order_json(id, "c", 100 * id)))
        .chain([r#"{"advance": 2}"#.to_string()])
        .collect();
    let feed = write_file(&dir, "feed.jsonl", &(lines.join("\n") + "\n"));

    let checked = outflow(&["check", &statements]);
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    let printed = text(&checked.stdout);
    assert!(
        printed.contains("\"value_subject_name_strategy\":\"RecordNameStrategy\""),
        "{printed}"
    );

    let ran = outflow(&["run", &statements, "--feed", &feed]);
    assert!(
        ran.status.success(),
        "outflow run failed: {}\n{}",
        text(&ran.stderr),
        text(&ran.stdout)
    );

    let key_subject = format!("{topic}-key");
    let value_subject = format!("outflow.cli.{}", sink.replace('-', "_"));
    let mut expected = vec![key_subject.clone(), value_subject.clone()];
    expected.sort();
    assert_eq!(registry.subjects(), expected);
    let client = client(&registry);
    assert_eq!(
        client.subject_compatibility_level(&key_subject).unwrap(),
        Some(CompatibilityLevel::None)
    );
    assert_eq!(
        client.subject_compatibility_level(&value_subject).unwrap(),
        Some(CompatibilityLevel::Forward)
    );
    assert_eq!(
        client
            .subject_compatibility_level(&format!("{topic}-value"))
            .unwrap(),
        None
    );
    let records = committed::read_committed(&kafka.bootstrap(), &topic).unwrap();
    assert_eq!(
        assert_ids(&registry, &records, &key_subject, &value_subject),
        5
    );
}

#[test]
fn the_record_strategy_shares_a_subject_and_its_compatibility_across_topics() {
    let kafka = Kafka::shared();
    let registry = SchemaRegistry::start();
    let name = unique_name("subjects-shared");
    let record = format!("outflow.shared.{}", name.replace('-', "_"));
    // Two sinks on two topics carry the same value record; the second table has a column
    // more, without a default, which BACKWARD refuses: its readers could not read the
    // first sink's records.
    let sink_sql = |sink: &str, table: &str| {
        format!(
            "CREATE SINK \"{sink}\" FROM {table} INTO KAFKA CONNECTION k (TOPIC '{sink}-data')
               KEY (id)
               FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr (
                 VALUE SUBJECT NAME STRATEGY = 'record',
                 AVRO KEY FULLNAME = '{record}Key',
                 AVRO VALUE FULLNAME = '{record}',
                 VALUE COMPATIBILITY LEVEL = 'BACKWARD'
               )
               ENVELOPE UPSERT;"
        )
    };
    let first = format!("{name}-a");
    let same = format!("{name}-b");
    let wider = format!("{name}-c");
    let sql = format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{}', SECURITY PROTOCOL PLAINTEXT,
             PROGRESS TOPIC '{name}-progress');
         CREATE CONNECTION csr TO CONFLUENT SCHEMA REGISTRY (URL '{}');
         CREATE TABLE t (id bigint PRIMARY KEY, value text NOT NULL);
         CREATE TABLE wide (id bigint PRIMARY KEY, value text NOT NULL, extra bigint NOT NULL);
         {} {} {}",
        kafka.bootstrap(),
        registry.url(),
        sink_sql(&first, "t"),
        sink_sql(&same, "t"),
        sink_sql(&wider, "wide"),
    );
    let catalog = Catalog::from_sql(&sql).unwrap_or_else(|e| panic!("{}", e.render("case")));
    let prepare = |sink: &str| SinkPlan::from_catalog(&catalog, sink).unwrap().preflight();
    prepare(&first).unwrap();
    prepare(&same).unwrap();
    // One subject for the value of both topics, holding one version; a key subject per topic.
    let mut expected = vec![
        format!("{first}-data-key"),
        format!("{same}-data-key"),
        record.clone(),
    ];
    expected.sort();
    assert_eq!(registry.subjects(), expected);
    assert_eq!(registry.versions(&record).len(), 1);
    assert_eq!(
        client(&registry)
            .subject_compatibility_level(&record)
            .unwrap(),
        Some(CompatibilityLevel::Backward)
    );

    let error = prepare(&wider).expect_err("BACKWARD refuses a field without a default");
    let message = error.to_string();
    println!("{message}");
    assert!(
        message.contains(&format!(
            "cannot publish the Avro value schema of topic \"{wider}-data\": the schema for \
             subject \"{record}\" is incompatible with the versions registered there"
        )),
        "{message}"
    );
    assert_eq!(registry.versions(&record).len(), 1);
}
