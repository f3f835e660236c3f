//! `outflow explain` without a broker or a registry: what a sink will do, printed from the
//! statements alone, with example messages made by the sink's own encoder.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

/// A listener that stands in for the broker and the registry: explain must never connect.
struct Untouched(TcpListener);

impl Untouched {
    fn new() -> Untouched {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Untouched(listener)
    }

    fn address(&self) -> String {
        self.0.local_addr().unwrap().to_string()
    }

    fn assert_untouched(&self) {
        match self.0.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("explain connected to {} from {peer}", self.address()),
            Err(e) => panic!("accept: {e}"),
        }
    }
}

const TABLE: &str = "CREATE TABLE t (id bigint PRIMARY KEY, b boolean, n numeric(10,2), tx text,
    c char(3), by bytea, dt date, ts timestamp, tz timestamptz, iv interval, uu uuid, j jsonb,
    l bigint list, m map[text => bigint], h map[text => text]);
  CREATE TABLE v (x bigint, y text);";

fn statements(dir: &Path, broker: &str, registry: &str, sinks: &str) -> String {
    let sql = format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{broker}', SECURITY PROTOCOL PLAINTEXT);
         CREATE CONNECTION csr TO CONFLUENT SCHEMA REGISTRY (URL 'http://{registry}');
         {TABLE}
         {sinks}"
    );
    let path = dir.join("statements.sql");
    std::fs::write(&path, sql).unwrap();
    path.display().to_string()
}

fn explain(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_outflow"))
        .arg("explain")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

const INSERTED: &str = r#"{"id":1,"b":true,"n":1.55,"tx":"a","c":"a  ","by":"AQ==","dt":"2024-05-01","ts":"2024-05-01T12:00:00","tz":"2024-05-01T12:00:00Z","iv":"1 day","uu":"00000000-0000-0000-0000-000000000001","j":{"example":1},"l":[1],"m":{"a":1},"h":{"a":"a"}}"#;
const UPDATED: &str = r#"{"id":1,"b":false,"n":2.55,"tx":"b","c":"b  ","by":"Ag==","dt":"2024-05-02","ts":"2024-05-02T12:00:00","tz":"2024-05-02T12:00:00Z","iv":"2 days","uu":"00000000-0000-0000-0000-000000000002","j":{"example":2},"l":[2],"m":{"a":2},"h":{"a":"b"}}"#;

#[test]
fn an_upsert_sink_is_explained_without_touching_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, registry) = (Untouched::new(), Untouched::new());
    let file = statements(
        dir.path(),
        &broker.address(),
        &registry.address(),
        "CREATE SINK s FROM t INTO KAFKA CONNECTION k (TOPIC 'orders', TOPIC PARTITION COUNT 4,
             TOPIC CONFIG MAP['retention.ms' => '3600000'], PARTITION BY = (id % 3)::uint8,
             TRANSACTIONAL ID PREFIX 'app-', PROGRESS GROUP ID PREFIX 'grp-')
           KEY (id) FORMAT JSON ENVELOPE UPSERT HEADERS h;",
    );
    let (ok, text, stderr) = explain(&[&file, "--sink", "s", "--workers", "2"]);
    assert!(ok, "{stderr}");
    broker.assert_untouched();
    registry.assert_untouched();
    for expected in [
        "sink s FROM t: ENVELOPE UPSERT, KEY (id) FORMAT JSON, VALUE FORMAT JSON, exactly-once, compression lz4",
        "topic orders: partitions 4, replication factor the broker's default, configs retention.ms=3600000",
        "progress topic _outflow-progress-k: partitions 1, replication factor the broker's default, configs cleanup.policy=compact",
        "partitioning: PARTITION BY (id % 3)::uint8, on the row after the change (before, for a delete), modulo 4 partitions (TOPIC PARTITION COUNT)",
        "transactional ids: app-s-0, app-s-1",
        "progress groups: grp-s-0, grp-s-1",
        "progress reader group: grp-s-reader",
        "TransactionalId app- (PREFIXED): Write",
        "Group grp- (PREFIXED): Read",
        "Topic orders (LITERAL): DescribeConfigs (optional)",
        "  insert at time 1, partition 1:\n    key   (JSON): {\"id\":1}\n",
        "  delete at time 3, partition 1:\n    key   (JSON): {\"id\":1}\n    value: none (a tombstone)\n    headers: outflow-time=3, a=b\n",
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
    assert!(
        text.contains(&format!(
            "    value (JSON): {INSERTED}\n    headers: outflow-time=1, a=a\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("  update at time 2, partition 1:\n    key   (JSON): {{\"id\":1}}\n    value (JSON): {UPDATED}\n")),
        "{text}"
    );
    assert!(
        !text.contains("schema, subject"),
        "a JSON sink registers nothing: {text}"
    );
}

#[test]
fn an_avro_debezium_sink_shows_its_schemas_and_subjects_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, registry) = (Untouched::new(), Untouched::new());
    let file = statements(
        dir.path(),
        &broker.address(),
        &registry.address(),
        "CREATE SINK changes FROM t INTO KAFKA CONNECTION k (TOPIC 'changes') KEY (id)
           FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr (
             VALUE COMPATIBILITY LEVEL 'FULL', AVRO KEY FULLNAME 'app.Key',
             AVRO VALUE FULLNAME 'app.Change')
           ENVELOPE DEBEZIUM;",
    );
    let (ok, json, stderr) = explain(&[&file, "--sink", "changes", "--json"]);
    assert!(ok, "{stderr}");
    broker.assert_untouched();
    registry.assert_untouched();
    let e: serde_json::Value = serde_json::from_str(&json).unwrap();
    let subjects: Vec<(&str, &str, &serde_json::Value)> = e["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["part"].as_str().unwrap(),
                s["subject"].as_str().unwrap(),
                &s["compatibility"],
            )
        })
        .collect();
    assert_eq!(
        subjects,
        [
            ("key", "changes-key", &serde_json::Value::Null),
            ("value", "changes-value", &serde_json::json!("FULL")),
        ]
    );
    let value: serde_json::Value =
        serde_json::from_str(e["schemas"][1]["schema"].as_str().unwrap()).unwrap();
    assert_eq!(value["name"], "Change");
    assert_eq!(value["namespace"], "app");
    let fields: Vec<&str> = value["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["before", "after"]);
    let key: serde_json::Value =
        serde_json::from_str(e["schemas"][0]["schema"].as_str().unwrap()).unwrap();
    assert_eq!(
        key["fields"],
        serde_json::json!([{"name": "id", "type": "long"}])
    );

    assert_eq!(
        e["transactional_ids"],
        serde_json::json!(["outflow-changes-0"])
    );
    let examples = e["examples"].as_array().unwrap();
    let cases: Vec<&str> = examples
        .iter()
        .map(|m| m["case"].as_str().unwrap())
        .collect();
    assert_eq!(cases, ["insert", "update", "delete"]);
    let update = &examples[1];
    assert_eq!(update["key"]["format"], "AVRO");
    assert_eq!(update["key"]["text"], r#"{"id":1}"#);
    assert_eq!(
        update["value"]["text"].as_str().unwrap(),
        format!(r#"{{"before":{INSERTED},"after":{UPDATED}}}"#)
    );
    // Magic byte 0, schema id 0, then the Avro long 1 (zig-zag 2).
    assert_eq!(update["key"]["hex"], "000000000002");
    assert_eq!(
        examples[2]["value"]["text"].as_str().unwrap(),
        format!(r#"{{"before":{UPDATED},"after":null}}"#)
    );
    assert_eq!(
        examples[2]["headers"],
        serde_json::json!([["outflow-time", "3"]])
    );
}

#[test]
fn a_keyless_sink_has_no_update_and_a_bytes_key_is_shown_in_hex() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, registry) = (Untouched::new(), Untouched::new());
    let file = statements(
        dir.path(),
        &broker.address(),
        &registry.address(),
        "CREATE SINK keyless FROM v INTO KAFKA CONNECTION k (TOPIC 'keyless')
           FORMAT JSON ENVELOPE DEBEZIUM WITH (DELIVERY GUARANTEE = 'at-least-once');
         CREATE TABLE w (y text);
         CREATE SINK raw FROM w INTO KAFKA CONNECTION k (TOPIC 'raw') KEY (y) NOT ENFORCED
           KEY FORMAT BYTES VALUE FORMAT TEXT ENVELOPE UPSERT;",
    );
    let (ok, json, stderr) = explain(&[&file, "--sink", "keyless", "--json"]);
    assert!(ok, "{stderr}");
    let e: serde_json::Value = serde_json::from_str(&json).unwrap();
    let cases: Vec<&str> = e["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["case"].as_str().unwrap())
        .collect();
    assert_eq!(cases, ["insert", "delete"]);
    assert_eq!(e["examples"][0]["key"], serde_json::Value::Null);
    assert_eq!(e["delivery"], "at-least-once");
    assert_eq!(e["transactional_ids"], serde_json::json!([]));
    assert!(
        e["partitioning"].as_str().unwrap().starts_with("keyless"),
        "{e}"
    );

    let (ok, json, stderr) = explain(&[&file, "--sink", "raw", "--json"]);
    assert!(ok, "{stderr}");
    let e: serde_json::Value = serde_json::from_str(&json).unwrap();
    let insert = &e["examples"][0];
    assert_eq!(insert["key"]["text"], "\\x61");
    assert_eq!(insert["value"]["format"], "TEXT");
    broker.assert_untouched();
    registry.assert_untouched();
}

#[test]
fn an_unknown_sink_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = statements(dir.path(), "127.0.0.1:1", "127.0.0.1:1", "");
    let (ok, _, stderr) = explain(&[&file, "--sink", "nope"]);
    assert!(!ok);
    assert_eq!(stderr.trim(), "error: unknown sink \"nope\"");
}
