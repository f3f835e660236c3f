//! What Kafka Connect makes of our messages, on Apache Kafka: sinks with `FORMAT JSON (SCHEMAS
//! ENABLED)` and `ENVELOPE DEBEZIUM (FULL, TOMBSTONES ON DELETE)` run through the Rust API (a
//! catalog's statements over a table of every type), their topics are read at
//! `read_committed`, and every key and value is fed through Connect's own `JsonConverter`
//! (`org.apache.kafka:connect-json`, `schemas.enable=true`), whose Connect values must be the
//! rows; the Debezium messages must carry the right `op`, `source` and `ts_ms`, and a tombstone
//! after each delete. The Avro form of `ENVELOPE DEBEZIUM (FULL)` is checked in the schema the
//! sink registered and decoded back with it. The same options run through `outflow run`, and
//! `outflow read` reads their topics back.

mod cli;

use std::collections::BTreeMap;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use cli::{outflow, text, write_file};
use outflow::dataflow::relation::values::parse_uuid;
use outflow::dataflow::relation::{Date, Interval, Numeric, Time, Timestamp};
use outflow::dataflow::{Datum, RelationDesc, Row, RowPacker, ScalarType};
use outflow::encoders::{decode, now_ms};
use outflow::spec::TableSpec;
use outflow::statement::Catalog;
use outflow::{SinkPlan, SinkReport, SinkStatus};
use outflow_tests::broker::unique_name;
use outflow_tests::kafka::{connect_json_records, ConnectRecord, KeyValue};
use outflow_tests::pipeline::{run_sink, RunOptions, Update};
use outflow_tests::rawlog::LogRecord;
use outflow_tests::registry::SchemaRegistry;
use outflow_tests::target::Target;
use serde_json::{json, Value};

const KAFKA: Target = Target::Kafka;
const UUID: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";

/// `(name, type)` of every column after `id bigint NOT NULL`, all nullable; with the record
/// column `r` last.
const COLUMNS: &[(&str, &str)] = &[
    ("b", "boolean"),
    ("i2", "smallint"),
    ("i4", "integer"),
    ("i8", "bigint"),
    ("u2", "uint2"),
    ("u4", "uint4"),
    ("u8", "uint8"),
    ("f4", "real"),
    ("f8", "double precision"),
    ("n", "numeric(10,2)"),
    ("nu", "numeric"),
    ("t", "text"),
    ("vc", "varchar(10)"),
    ("c", "char(5)"),
    ("by", "bytea"),
    ("d", "date"),
    ("tm", "time"),
    ("ts", "timestamp"),
    ("ts3", "timestamp(3)"),
    ("tz", "timestamptz"),
    ("iv", "interval"),
    ("u", "uuid"),
    ("j", "jsonb"),
    ("l", "int4 list"),
    ("m", "map[text=>text]"),
];

/// The table `t`: `id` (the primary key), a column of every type, and a record.
fn desc() -> RelationDesc {
    let mut desc = RelationDesc::empty().with_column("id", ScalarType::Int64, false);
    for (name, typ) in COLUMNS {
        desc = desc.with_column(*name, ScalarType::parse(typ).unwrap(), true);
    }
    let record = ScalarType::Record {
        fields: vec![
            ("f1".to_string(), ScalarType::Int32.nullable(false)),
            ("f2".to_string(), ScalarType::Text.nullable(true)),
        ],
    };
    desc.with_column("r", record, true).with_key(vec![0])
}

/// Row `id` with a value in every column.
fn full_row(id: i64) -> Row {
    let mut p = RowPacker::new();
    p.push(Datum::Int64(id));
    p.push(Datum::True);
    p.push(Datum::Int16(i16::MIN));
    p.push(Datum::Int32(i32::MAX));
    p.push(Datum::Int64(-9_007_199_254_740_993));
    p.push(Datum::UInt16(u16::MAX));
    p.push(Datum::UInt32(u32::MAX));
    p.push(Datum::UInt64(u64::MAX));
    p.push(Datum::Float32(1.5));
    p.push(Datum::Float64(-0.1));
    p.push(Datum::Numeric(Numeric::new(9950 + id as i128, 2)));
    p.push(Datum::Numeric(Numeric::new(-12345, 3)));
    p.push(Datum::String("héllo \"q\"\n"));
    p.push(Datum::String("varchar"));
    p.push(Datum::String("ab"));
    p.push(Datum::Bytes(b"hi\x00\xff"));
    p.push(Datum::Date(Date::from_ymd(2024, 2, 29).unwrap()));
    p.push(Datum::Time(
        Time::from_hms_micro(12, 34, 56, 500_000).unwrap(),
    ));
    p.push(Datum::Timestamp(
        Timestamp::parse("2024-05-06 07:08:09.000123").unwrap(),
    ));
    p.push(Datum::Timestamp(
        Timestamp::parse("2024-05-06 07:08:09.123").unwrap(),
    ));
    p.push(Datum::TimestampTz(
        Timestamp::parse("2024-05-06 09:08:09+02:00").unwrap(),
    ));
    p.push(Datum::Interval(Interval {
        months: 14,
        days: 3,
        micros: 14_706_500_000,
    }));
    p.push(Datum::Uuid(parse_uuid(UUID).unwrap()));
    p.push(Datum::Jsonb(r#"{"a":[1,2],"b":null}"#));
    p.push_list([Datum::Int32(1), Datum::Null, Datum::Int32(3)]);
    p.push_map([("a", Datum::String("x")), ("b", Datum::Null)]);
    p.push_list([Datum::Int32(7), Datum::String("seven")]);
    p.finish()
}

/// Row `id` with NULL in every other column.
fn null_row(id: i64) -> Row {
    Row::pack(
        std::iter::once(Datum::Int64(id))
            .chain(std::iter::repeat_n(Datum::Null, COLUMNS.len() + 1)),
    )
}

/// What Connect must hold for [`full_row`]`(id)`, in `ConnectValues.java`'s notation: the
/// values as Connect's types hold them, written from the row's values by hand.
fn full_connect(id: i64) -> Value {
    json!({
        "id": id,
        "b": true,
        "i2": -32768,
        "i4": 2147483647,
        "i8": -9007199254740993i64,
        "u2": 65535,
        "u4": 4294967295u64,
        "u8": {"decimal": "18446744073709551615"},
        "f4": 1.5,
        "f8": -0.1,
        "n": {"decimal": format!("{}.{:02}", (9950 + id) / 100, (9950 + id) % 100)},
        // An unconstrained numeric has Connect's Decimal with the fixed scale 39.
        "nu": {"decimal": format!("-12.345{}", "0".repeat(36))},
        "t": "héllo \"q\"\n",
        "vc": "varchar",
        "c": "ab   ",
        "by": {"base64": "aGkA/w=="},
        "d": {"date": "2024-02-29"},
        "tm": 45_296_500_000i64,
        "ts": 1_714_979_289_000_123i64,
        "ts3": {"timestamp": "2024-05-06T07:08:09.123Z"},
        "tz": 1_714_979_289_000_000i64,
        "iv": "1 year 2 mons 3 days 04:05:06.5",
        "u": UUID,
        "j": r#"{"a":[1,2],"b":null}"#,
        "l": [1, null, 3],
        "m": {"a": "x", "b": null},
        "r": {"f1": 7, "f2": "seven"},
    })
}

fn null_connect(id: i64) -> Value {
    let mut value = json!({ "id": id });
    for (name, _) in COLUMNS {
        value[*name] = Value::Null;
    }
    value["r"] = Value::Null;
    value
}

/// The Connect schema of the row struct, in `ConnectValues.java`'s notation.
fn row_schema(optional: bool) -> Value {
    let decimal =
        |scale: u8| format!("BYTES/org.apache.kafka.connect.data.Decimal(scale={scale})?");
    json!({
        "fields": [
            ["id", "INT64"],
            ["b", "BOOLEAN?"],
            ["i2", "INT16?"],
            ["i4", "INT32?"],
            ["i8", "INT64?"],
            ["u2", "INT32?"],
            ["u4", "INT64?"],
            ["u8", decimal(0)],
            ["f4", "FLOAT32?"],
            ["f8", "FLOAT64?"],
            ["n", decimal(2)],
            ["nu", decimal(39)],
            ["t", "STRING?"],
            ["vc", "STRING?"],
            ["c", "STRING?"],
            ["by", "BYTES?"],
            ["d", "INT32/org.apache.kafka.connect.data.Date?"],
            ["tm", "INT64/io.debezium.time.MicroTime?"],
            ["ts", "INT64/io.debezium.time.MicroTimestamp?"],
            ["ts3", "INT64/org.apache.kafka.connect.data.Timestamp?"],
            ["tz", "INT64/io.debezium.time.MicroTimestamp?"],
            ["iv", "STRING?"],
            ["u", "STRING/io.debezium.data.Uuid?"],
            ["j", "STRING/io.debezium.data.Json?"],
            ["l", {"array": "INT32?", "optional": true}],
            ["m", {"map": ["STRING", "STRING?"], "optional": true}],
            ["r", {"fields": [["f1", "INT32"], ["f2", "STRING?"]], "name": null, "optional": true}],
        ],
        "name": null,
        "optional": optional,
    })
}

fn key_connect(id: i64) -> Value {
    json!({ "id": id })
}

fn key_schema() -> Value {
    json!({"fields": [["id", "INT64"]], "name": null, "optional": false})
}

/// A catalog with the connection `k` (and the registry `csr` when given) and the table `t`,
/// then the sink statement `sink`, and the plan of the sink named `name`.
fn plan(name: &str, registry: Option<&SchemaRegistry>, sink: &str) -> SinkPlan {
    let mut sql = format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{}', SECURITY PROTOCOL PLAINTEXT);",
        KAFKA.bootstrap()
    );
    if let Some(registry) = registry {
        sql += &format!(
            "CREATE CONNECTION csr TO CONFLUENT SCHEMA REGISTRY (URL '{}');",
            registry.url()
        );
    }
    let mut catalog =
        Catalog::from_sql(&sql).unwrap_or_else(|e| panic!("{}", e.render("test.sql")));
    catalog.add_table(TableSpec::new("t", desc())).unwrap();
    catalog
        .execute_sql(sink)
        .unwrap_or_else(|e| panic!("{}", e.render("test.sql")));
    KAFKA.test_plan(SinkPlan::from_catalog(&catalog, name).unwrap())
}

fn sink_sql(name: &str, rest: &str) -> String {
    let prefix = unique_name("tx");
    format!(
        "CREATE SINK \"{name}\" FROM t INTO KAFKA CONNECTION k (TOPIC '{name}',
             TRANSACTIONAL ID PREFIX '{prefix}', PROGRESS GROUP ID PREFIX '{prefix}')
           {rest};"
    )
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

fn update(time: u64, row: Row, diff: isize) -> Update {
    Update { time, row, diff }
}

/// Time 0 (the snapshot): rows 1, 2 and 3. Time 1: row 4. Time 2: row 1 becomes all NULL.
/// Time 3: row 2 is deleted.
fn cdc_history() -> Vec<Update> {
    vec![
        update(0, full_row(1), 1),
        update(0, full_row(2), 1),
        update(0, null_row(3), 1),
        update(1, full_row(4), 1),
        update(2, full_row(1), -1),
        update(2, null_row(1), 1),
        update(3, full_row(2), -1),
    ]
}

/// The committed records of `topic` by key id, each key's in offset order.
fn by_key(
    records: Vec<(LogRecord, ConnectRecord)>,
) -> BTreeMap<i64, Vec<(LogRecord, ConnectRecord)>> {
    let mut keyed: BTreeMap<i64, Vec<(LogRecord, ConnectRecord)>> = BTreeMap::new();
    for (log, connect) in records {
        let id = connect.key["id"]
            .as_i64()
            .expect("every message has a key with an id");
        keyed.entry(id).or_default().push((log, connect));
    }
    keyed
}

/// The committed records of `topic`, each with what Connect's JsonConverter makes of it.
fn through_connect(topic: &str) -> Vec<(LogRecord, ConnectRecord)> {
    let records = KAFKA.read_committed(topic);
    let messages: Vec<KeyValue> = records
        .iter()
        .map(|r| (r.key.clone(), r.value.clone()))
        .collect();
    let connect = connect_json_records(topic, true, &messages)
        .unwrap_or_else(|e| panic!("Kafka Connect's JsonConverter refused a message: {e}"));
    records.into_iter().zip(connect).collect()
}

fn time_header(record: &LogRecord) -> u64 {
    let value = record
        .headers
        .iter()
        .find(|(n, _)| n == "outflow-time")
        .and_then(|(_, v)| v.as_deref())
        .expect("an outflow-time header");
    std::str::from_utf8(value).unwrap().parse().unwrap()
}

#[test]
fn every_type_reaches_kafka_connect_as_its_row() {
    let name = unique_name("connect-upsert");
    let plan = plan(
        &name,
        None,
        &sink_sql(
            &name,
            "KEY (id) FORMAT JSON (SCHEMAS ENABLED) ENVELOPE UPSERT",
        ),
    );
    let history = vec![
        update(1, full_row(1), 1),
        update(1, null_row(2), 1),
        update(1, full_row(3), 1),
        update(2, full_row(3), -1),
    ];
    let report = run_sink(plan, history, RunOptions::default());
    assert_completed(&report);

    let keyed = by_key(through_connect(&name));
    assert_eq!(keyed.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    for (id, messages) in &keyed {
        let values: Vec<&Value> = messages.iter().map(|(_, c)| &c.value).collect();
        let expected = match id {
            1 => vec![full_connect(1)],
            2 => vec![null_connect(2)],
            _ => vec![full_connect(3), Value::Null],
        };
        assert_eq!(values, expected.iter().collect::<Vec<_>>(), "key {id}");
        for (_, connect) in messages {
            assert_eq!(connect.key, key_connect(*id));
            assert_eq!(connect.key_schema, key_schema());
            if !connect.value.is_null() {
                assert_eq!(connect.value_schema, row_schema(false), "key {id}");
            }
        }
    }
}

#[test]
fn debezium_full_messages_carry_op_source_time_and_tombstones_connect_reads() {
    let name = unique_name("connect-cdc");
    let plan = plan(
        &name,
        None,
        &sink_sql(
            &name,
            "KEY (id) FORMAT JSON (SCHEMAS ENABLED) ENVELOPE DEBEZIUM (FULL, TOMBSTONES ON DELETE)",
        ),
    );
    assert_eq!(plan.as_of, 0, "the snapshot is the updates at time 0");
    let started = now_ms();
    let report = run_sink(plan, cdc_history(), RunOptions::default());
    let finished = now_ms();
    assert_completed(&report);

    let keyed = by_key(through_connect(&name));
    // (op, time, snapshot, before, after) per message of each key; None: the tombstone.
    type Expected = Option<(&'static str, u64, bool, Value, Value)>;
    let expected: BTreeMap<i64, Vec<Expected>> = BTreeMap::from([
        (
            1,
            vec![
                Some(("r", 0, true, Value::Null, full_connect(1))),
                Some(("u", 2, false, full_connect(1), null_connect(1))),
            ],
        ),
        (
            2,
            vec![
                Some(("r", 0, true, Value::Null, full_connect(2))),
                Some(("d", 3, false, full_connect(2), Value::Null)),
                None,
            ],
        ),
        (3, vec![Some(("r", 0, true, Value::Null, null_connect(3)))]),
        (4, vec![Some(("c", 1, false, Value::Null, full_connect(4)))]),
    ]);
    assert_eq!(
        keyed.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    let envelope_schema = json!({
        "fields": [
            ["before", row_schema(true)],
            ["after", row_schema(true)],
            ["source", {
                "fields": [
                    ["connector", "STRING"],
                    ["name", "STRING"],
                    ["topic", "STRING"],
                    ["time", "INT64"],
                    ["snapshot", "BOOLEAN"],
                    ["ts_ms", "INT64"],
                ],
                "name": "outflow.debezium.source",
                "optional": false,
            }],
            ["op", "STRING"],
            ["ts_ms", "INT64"],
        ],
        "name": "outflow.debezium.envelope",
        "optional": false,
    });
    for (id, messages) in &keyed {
        let wanted = &expected[id];
        assert_eq!(
            messages.len(),
            wanted.len(),
            "messages of key {id}: {messages:#?}"
        );
        for ((log, connect), wanted) in messages.iter().zip(wanted) {
            assert_eq!(connect.key, key_connect(*id));
            assert_eq!(connect.key_schema, key_schema());
            let Some((op, time, snapshot, before, after)) = wanted else {
                assert_eq!(log.value, None, "key {id}: a tombstone follows the delete");
                assert_eq!(connect.value, Value::Null);
                assert_eq!(time_header(log), 3);
                continue;
            };
            let value = &connect.value;
            assert_eq!(connect.value_schema, envelope_schema, "key {id}");
            assert_eq!(value["op"], *op, "key {id}");
            assert_eq!(&value["before"], before, "key {id} op {op}");
            assert_eq!(&value["after"], after, "key {id} op {op}");
            let source = &value["source"];
            assert_eq!(source["connector"], "outflow");
            assert_eq!(source["name"], name.as_str());
            assert_eq!(source["topic"], name.as_str());
            assert_eq!(source["time"], *time, "key {id} op {op}");
            assert_eq!(source["snapshot"], *snapshot, "key {id} op {op}");
            assert_eq!(time_header(log), *time);
            let ts_ms = value["ts_ms"].as_i64().expect("ts_ms is an int64");
            assert!(
                (started..=finished).contains(&ts_ms),
                "ts_ms {ts_ms} is not the production time, within {started}..={finished}"
            );
            assert_eq!(source["ts_ms"], ts_ms);
        }
    }
}

fn avro_field<'a>(record: &'a Avro, name: &str) -> &'a Avro {
    let Avro::Record(fields) = record else {
        panic!("not a record: {record:?}")
    };
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no field {name} in {record:?}"))
}

#[test]
fn debezium_full_in_avro_registers_and_writes_op_source_and_ts_ms() {
    let registry = SchemaRegistry::start();
    let name = unique_name("avro-cdc");
    let plan = plan(
        &name,
        Some(&registry),
        &sink_sql(
            &name,
            "KEY (id) FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr ENVELOPE DEBEZIUM (FULL)",
        ),
    );
    let started = now_ms();
    let report = run_sink(plan, cdc_history(), RunOptions::default());
    let finished = now_ms();
    assert_completed(&report);

    let versions = registry.versions(&format!("{name}-value"));
    assert_eq!(versions.len(), 1, "one value schema registered");
    let registered: Value = serde_json::from_str(&versions[0].schema).unwrap();
    let fields: Vec<&str> = registered["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["before", "after", "source", "op", "ts_ms"]);
    let source = &registered["fields"][2]["type"];
    assert_eq!(
        (&source["namespace"], &source["name"]),
        (&json!("outflow.debezium"), &json!("source"))
    );
    let schema = Schema::parse_str(&versions[0].schema).unwrap();

    let mut seen = Vec::new();
    for record in KAFKA.read_committed(&name) {
        let value = record
            .value
            .as_deref()
            .expect("no tombstones without TOMBSTONES ON DELETE");
        let (id, body) = decode::confluent_schema_id(value).unwrap();
        assert_eq!(id, versions[0].id);
        let pair = decode::debezium_from_avro(&desc(), &schema, body).unwrap();
        let decoded = GenericDatumReader::builder(&schema)
            .build()
            .and_then(|reader| reader.read_value(&mut &body[..]))
            .unwrap();
        let op = match avro_field(&decoded, "op") {
            Avro::String(op) => op.clone(),
            other => panic!("op is {other:?}"),
        };
        let source = avro_field(&decoded, "source");
        let Avro::Long(time) = avro_field(source, "time") else {
            panic!("source.time is not a long")
        };
        let Avro::Boolean(snapshot) = avro_field(source, "snapshot") else {
            panic!("source.snapshot is not a boolean")
        };
        let Avro::Long(ts_ms) = avro_field(&decoded, "ts_ms") else {
            panic!("ts_ms is not a long")
        };
        assert!((started..=finished).contains(ts_ms), "ts_ms {ts_ms}");
        assert_eq!(avro_field(source, "ts_ms"), &Avro::Long(*ts_ms));
        assert_eq!(
            avro_field(source, "connector"),
            &Avro::String("outflow".into())
        );
        assert_eq!(avro_field(source, "name"), &Avro::String(name.clone()));
        assert_eq!(time_header(&record), *time as u64);
        let key = pair
            .after
            .as_ref()
            .or(pair.before.as_ref())
            .and_then(|r| match r.iter().next() {
                Some(Datum::Int64(id)) => Some(id),
                _ => None,
            })
            .unwrap();
        seen.push((key, op, *time, *snapshot, pair.before, pair.after));
    }
    seen.sort_by_key(|(key, _, time, ..)| (*key, *time));
    let expected = vec![
        (1, "r".to_string(), 0, true, None, Some(full_row(1))),
        (
            1,
            "u".to_string(),
            2,
            false,
            Some(full_row(1)),
            Some(null_row(1)),
        ),
        (2, "r".to_string(), 0, true, None, Some(full_row(2))),
        (2, "d".to_string(), 3, false, Some(full_row(2)), None),
        (3, "r".to_string(), 0, true, None, Some(null_row(3))),
        (4, "c".to_string(), 1, false, None, Some(full_row(4))),
    ];
    assert_eq!(seen, expected);
}

/// `outflow run` over a statements file whose sinks use the new options (JSON, JSON with an
/// embedded schema and Avro), then `outflow read` of each: the Debezium FULL messages in plain JSON, with their tombstones, and Connect's
/// reading of the embedded-schema upsert topic.
#[test]
fn outflow_run_writes_and_outflow_read_reads_the_new_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let cdc = unique_name("cli-cdc-full");
    let mixed = unique_name("cli-cdc-schema");
    let upsert = unique_name("cli-upsert-schema");
    let avro = unique_name("cli-cdc-avro");
    let prefix = unique_name("cli-tx");
    let registry = SchemaRegistry::start();
    let sink = |name: &str, rest: &str| {
        format!(
            "CREATE SINK \"{name}\" FROM orders INTO KAFKA CONNECTION k (TOPIC '{name}',
                 TRANSACTIONAL ID PREFIX '{prefix}', PROGRESS GROUP ID PREFIX '{prefix}') {rest};"
        )
    };
    let sql = format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{}', SECURITY PROTOCOL PLAINTEXT);
         CREATE CONNECTION csr TO CONFLUENT SCHEMA REGISTRY (URL '{}');
         CREATE TABLE orders (order_id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL,
                              placed date, at timestamp(3));
         {}
         {}
         {}
         {}",
        KAFKA.bootstrap(),
        registry.url(),
        sink(&cdc, "KEY (order_id) FORMAT JSON ENVELOPE DEBEZIUM (FULL, TOMBSTONES ON DELETE)"),
        sink(&mixed, "KEY (order_id) KEY FORMAT JSON VALUE FORMAT JSON (SCHEMAS ENABLED) ENVELOPE DEBEZIUM (FULL)"),
        sink(&upsert, "KEY (order_id) FORMAT JSON (SCHEMAS ENABLED) ENVELOPE UPSERT"),
        sink(
            &avro,
            "KEY (order_id) FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr \
             ENVELOPE DEBEZIUM (FULL, TOMBSTONES ON DELETE)"
        ),
    );
    let statements = write_file(&dir, "statements.sql", &sql);
    let order = |id: i64, customer: &str, amount: &str| {
        format!(
            r#"{{"order_id":{id},"customer":"{customer}","amount":{amount},"placed":"2024-05-01","at":"2024-05-01T10:00:00.123"}}"#
        )
    };
    let line = |time: u64, diff: i64, row: &str| {
        format!(r#"{{"table":"orders","time":{time},"diff":{diff},"row":{row}}}"#)
    };
    let feed = [
        line(0, 1, &order(1, "ann", "10.50")),
        line(0, 1, &order(2, "bob", "20.00")),
        line(1, 1, &order(3, "cy", "30.25")),
        line(2, -1, &order(1, "ann", "10.50")),
        line(2, 1, &order(1, "ann", "11.75")),
        line(3, -1, &order(2, "bob", "20.00")),
        r#"{"advance": 4}"#.to_string(),
    ]
    .join("\n");
    let feed = write_file(&dir, "feed.jsonl", &feed);
    let started = now_ms();
    let run = outflow(&[
        "run",
        &statements,
        "--feed",
        &feed,
        "--commit-interval-ms",
        "50",
    ]);
    let finished = now_ms();
    assert!(
        run.status.success(),
        "outflow run failed: {}",
        text(&run.stderr)
    );

    for name in [&cdc, &mixed, &upsert, &avro] {
        let read = outflow(&["read", &statements, "--sink", name]);
        assert!(
            read.status.success(),
            "read {name} failed: {}",
            text(&read.stderr)
        );
        let mut lines: Vec<String> = text(&read.stdout).lines().map(String::from).collect();
        let frontier: Value = serde_json::from_str(&lines.pop().expect("a frontier line")).unwrap();
        assert_eq!(frontier["frontier"], json!([4]), "{name}");
        assert_eq!(
            lines,
            [order(1, "ann", "11.75"), order(3, "cy", "30.25")],
            "{name}"
        );
    }

    // The plain JSON Debezium topic: op, source and ts_ms per message, a tombstone after the
    // delete.
    let mut by_id: BTreeMap<i64, Vec<Option<Value>>> = BTreeMap::new();
    for record in KAFKA.read_committed(&cdc) {
        let key: Value = serde_json::from_slice(record.key.as_deref().unwrap()).unwrap();
        let value = record
            .value
            .as_deref()
            .map(|v| serde_json::from_slice::<Value>(v).unwrap());
        by_id
            .entry(key["order_id"].as_i64().unwrap())
            .or_default()
            .push(value);
    }
    let summary = |value: &Option<Value>| {
        value.as_ref().map(|v| {
            let ts_ms = v["ts_ms"].as_i64().unwrap();
            assert!((started..=finished).contains(&ts_ms), "ts_ms {ts_ms}");
            assert_eq!(v["source"]["ts_ms"], ts_ms);
            assert_eq!(v["source"]["connector"], "outflow");
            assert_eq!(v["source"]["name"], cdc.as_str());
            assert_eq!(v["source"]["topic"], cdc.as_str());
            (
                v["op"].as_str().unwrap().to_string(),
                v["source"]["time"].as_u64().unwrap(),
                v["source"]["snapshot"].as_bool().unwrap(),
            )
        })
    };
    // (op, source.time, source.snapshot) of each message; None for a tombstone.
    type Seen = Option<(String, u64, bool)>;
    let seen: BTreeMap<i64, Vec<Seen>> = by_id
        .iter()
        .map(|(id, values)| (*id, values.iter().map(summary).collect()))
        .collect();
    let op = |op: &str, time: u64, snapshot: bool| Some((op.to_string(), time, snapshot));
    assert_eq!(
        seen,
        BTreeMap::from([
            (1, vec![op("r", 0, true), op("u", 2, false)]),
            (2, vec![op("r", 0, true), op("d", 3, false), None]),
            (3, vec![op("c", 1, false)]),
        ])
    );

    // The embedded-schema upsert topic, as Kafka Connect reads it.
    let connect = through_connect(&upsert);
    let values: Vec<(Value, Value)> = connect.into_iter().map(|(_, c)| (c.key, c.value)).collect();
    let connect_order = |id: i64, customer: &str, cents: &str| {
        json!({
            "order_id": id, "customer": customer, "amount": {"decimal": cents},
            "placed": {"date": "2024-05-01"}, "at": {"timestamp": "2024-05-01T10:00:00.123Z"},
        })
    };
    let mut values = values;
    values.sort_by_key(|(key, _)| key["order_id"].as_i64());
    assert_eq!(
        values,
        [
            (json!({"order_id": 1}), connect_order(1, "ann", "10.50")),
            (json!({"order_id": 1}), connect_order(1, "ann", "11.75")),
            (json!({"order_id": 2}), connect_order(2, "bob", "20.00")),
            (json!({"order_id": 2}), Value::Null),
            (json!({"order_id": 3}), connect_order(3, "cy", "30.25")),
        ]
    );
}
