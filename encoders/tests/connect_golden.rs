//! Golden tests of FORMAT JSON (SCHEMAS ENABLED), Kafka Connect's JSON with an embedded schema,
//! and of ENVELOPE DEBEZIUM (FULL) in JSON and Avro: the exact schema and payload for every
//! type, the Debezium fields for each kind of change, and the tombstone after a delete.

mod common;

use common::*;
use outflow_dataflow::relation::{Datum, Numeric, RelationDesc, Row, ScalarType};
use outflow_dataflow::DiffPair;
use outflow_encoders::{
    Change, DebeziumOptions, EncodedMessage, EncoderConfig, Envelope, FormatSpec, SinkEncoder,
    TIME_HEADER,
};
use serde_json::{json, Value};

const ALL_VALUES_PAYLOAD: &str = concat!(
    r#"{"b":true,"i2":-32768,"i4":2147483647,"i8":-9007199254740993,"u2":65535,"u4":4294967295,"#,
    r#""u8":"AP//////////","f4":1.5,"f8":-0.1,"n":"Jt4=","nu":"27ine9C+6VqM5laVcAAAAAA=","#,
    r#""t":"héllo \"q\"\n","vc":"varchar","c":"ab   ","by":"aGkA/w==","d":19782,"tm":45296500000,"#,
    r#""ts":1714979289000123,"ts3":1714979289123,"tz":1714979289000000,"#,
    r#""iv":"1 year 2 mons 3 days 04:05:06.5","u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","#,
    r#""j":"{\"a\":[1,2],\"b\":null}","l":[1,null,3],"m":{"a":"x","b":null},"r":{"f1":7,"f2":"seven"}}"#,
);

/// `(field, type, name, scale)` of each column's Connect schema in [`all_types`].
const ALL_TYPES_SCHEMA: &[(&str, &str, Option<&str>, Option<&str>)] = &[
    ("b", "boolean", None, None),
    ("i2", "int16", None, None),
    ("i4", "int32", None, None),
    ("i8", "int64", None, None),
    ("u2", "int32", None, None),
    ("u4", "int64", None, None),
    (
        "u8",
        "bytes",
        Some("org.apache.kafka.connect.data.Decimal"),
        Some("0"),
    ),
    ("f4", "float", None, None),
    ("f8", "double", None, None),
    (
        "n",
        "bytes",
        Some("org.apache.kafka.connect.data.Decimal"),
        Some("2"),
    ),
    (
        "nu",
        "bytes",
        Some("org.apache.kafka.connect.data.Decimal"),
        Some("39"),
    ),
    ("t", "string", None, None),
    ("vc", "string", None, None),
    ("c", "string", None, None),
    ("by", "bytes", None, None),
    (
        "d",
        "int32",
        Some("org.apache.kafka.connect.data.Date"),
        None,
    ),
    ("tm", "int64", Some("io.debezium.time.MicroTime"), None),
    ("ts", "int64", Some("io.debezium.time.MicroTimestamp"), None),
    (
        "ts3",
        "int64",
        Some("org.apache.kafka.connect.data.Timestamp"),
        None,
    ),
    ("tz", "int64", Some("io.debezium.time.MicroTimestamp"), None),
    ("iv", "string", None, None),
    ("u", "string", Some("io.debezium.data.Uuid"), None),
    ("j", "string", Some("io.debezium.data.Json"), None),
    ("l", "array", None, None),
    ("m", "map", None, None),
    ("r", "struct", None, None),
];

fn connect_config(
    desc: RelationDesc,
    key: Option<Vec<usize>>,
    envelope: Envelope,
    debezium: DebeziumOptions,
) -> EncoderConfig {
    EncoderConfig {
        debezium,
        sink: "orders_cdc".to_string(),
        topic: "orders-cdc".to_string(),
        ..config(
            desc,
            key,
            envelope,
            FormatSpec::JsonWithSchema,
            FormatSpec::JsonWithSchema,
        )
    }
}

fn parts(bytes: Option<&[u8]>) -> (Value, Value) {
    let bytes = bytes.expect("a value");
    assert!(
        bytes.starts_with(br#"{"schema":"#),
        "the schema comes first"
    );
    let mut message: Value = serde_json::from_slice(bytes).unwrap();
    let object = message.as_object_mut().unwrap();
    assert_eq!(object.len(), 2, "schema and payload only");
    (object["schema"].take(), object["payload"].take())
}

/// The text of the payload, as written (not re-serialized), so that digits are compared.
fn payload_text(bytes: &[u8]) -> &str {
    let text = std::str::from_utf8(bytes).unwrap();
    let start = text.find(r#","payload":"#).unwrap() + r#","payload":"#.len();
    &text[start..text.len() - 1]
}

fn change(time: u64, snapshot: bool) -> Change {
    Change {
        time,
        snapshot,
        produced_at_ms: 1_700_000_000_123,
    }
}

fn encode_change(
    encoder: &SinkEncoder,
    key: &Row,
    pair: &DiffPair<Row>,
    change: Change,
) -> EncodedMessage {
    let mut out = EncodedMessage::new();
    encoder.encode_change(key, pair, &change, &mut out).unwrap();
    out
}

#[test]
fn every_type_has_its_connect_schema_and_payload() {
    let encoder = encoder(connect_config(
        all_types(true),
        Some(vec![3]),
        Envelope::Upsert,
        DebeziumOptions::default(),
    ));
    let key = Row::pack_slice(&[Datum::Int64(-9_007_199_254_740_993)]);
    let out = encode(&encoder, &key, &DiffPair::insert(all_values()));
    assert_eq!(payload_text(out.value().unwrap()), ALL_VALUES_PAYLOAD);
    assert_eq!(
        text(out.key()),
        Some(concat!(
            r#"{"schema":{"fields":[{"field":"i8","optional":true,"type":"int64"}],"optional":false,"type":"struct"},"#,
            r#""payload":{"i8":-9007199254740993}}"#
        ))
    );
    let (schema, _) = parts(out.value());
    assert_eq!(schema["type"], "struct");
    assert_eq!(schema["optional"], false);
    let fields = schema["fields"].as_array().unwrap();
    assert_eq!(fields.len(), ALL_TYPES_SCHEMA.len());
    for (field, (name, typ, logical, scale)) in fields.iter().zip(ALL_TYPES_SCHEMA) {
        assert_eq!(field["field"], *name);
        assert_eq!(field["type"], *typ, "{name}");
        assert_eq!(field["optional"], true, "{name}");
        assert_eq!(field["name"].as_str(), *logical, "{name}");
        assert_eq!(field["parameters"]["scale"].as_str(), *scale, "{name}");
        if logical.is_some() {
            assert_eq!(field["version"], 1, "{name}");
        }
    }
    let by_name = |n: &str| fields.iter().find(|f| f["field"] == n).unwrap();
    assert_eq!(
        by_name("l")["items"],
        json!({"type": "int32", "optional": true})
    );
    assert_eq!(
        by_name("m")["keys"],
        json!({"type": "string", "optional": false})
    );
    assert_eq!(
        by_name("m")["values"],
        json!({"type": "string", "optional": true})
    );
    assert_eq!(
        by_name("r")["fields"],
        json!([
            {"field": "f1", "type": "int32", "optional": false},
            {"field": "f2", "type": "string", "optional": true},
        ])
    );
}

#[test]
fn not_null_columns_are_required_fields() {
    let encoder = encoder(connect_config(
        all_types(false),
        None,
        Envelope::Upsert,
        DebeziumOptions::default(),
    ));
    let out = encode(&encoder, &Row::default(), &DiffPair::insert(all_values()));
    assert_eq!(out.key(), None);
    assert_eq!(payload_text(out.value().unwrap()), ALL_VALUES_PAYLOAD);
    let (schema, _) = parts(out.value());
    assert!(schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["optional"] == false));

    // NULL in a NOT NULL column has no Connect form.
    let all = all_values();
    let mut values: Vec<Datum> = all.iter().collect();
    values[0] = Datum::Null;
    let mut message = EncodedMessage::new();
    let err = encoder
        .encode(
            &Row::default(),
            &DiffPair::insert(Row::pack_slice(&values)),
            1,
            &mut message,
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"b\"") && err.contains("not optional"),
        "{err}"
    );
}

#[test]
fn nulls_and_values_connect_cannot_spell() {
    let desc = all_types(true);
    let nulls = encoder(connect_config(
        desc.clone(),
        None,
        Envelope::Upsert,
        DebeziumOptions::default(),
    ));
    let out = encode(
        &nulls,
        &Row::default(),
        &DiffPair::insert(all_nulls(desc.arity())),
    );
    let (_, payload) = parts(out.value());
    assert!(payload.as_object().unwrap().values().all(Value::is_null));

    let float = RelationDesc::empty().with_column("x", ScalarType::Float64, false);
    let numeric =
        RelationDesc::empty().with_column("x", ScalarType::parse("numeric").unwrap(), false);
    for (desc, datum, expected) in [
        (
            float.clone(),
            Datum::Float64(f64::NAN),
            "Kafka Connect's JsonConverter reads only finite numbers",
        ),
        (
            float,
            Datum::Float64(f64::INFINITY),
            "reads only finite numbers",
        ),
        (
            numeric,
            Datum::Numeric(Numeric::NAN),
            "NaN cannot be written as a Kafka Connect Decimal",
        ),
    ] {
        let encoder = encoder(connect_config(
            desc,
            None,
            Envelope::Upsert,
            DebeziumOptions::default(),
        ));
        let mut message = EncodedMessage::new();
        let err = encoder
            .encode(
                &Row::default(),
                &DiffPair::insert(Row::pack_slice(&[datum])),
                1,
                &mut message,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected) && err.contains("\"x\""), "{err}");
    }
}

fn small_desc() -> RelationDesc {
    RelationDesc::empty()
        .with_column("id", ScalarType::Int64, false)
        .with_column("qty", ScalarType::Int32, true)
        .with_key(vec![0])
}

fn row(id: i64, qty: i32) -> Row {
    Row::pack_slice(&[Datum::Int64(id), Datum::Int32(qty)])
}

const SOURCE_SCHEMA: &str = r#"{"fields":[{"field":"connector","optional":false,"type":"string"},{"field":"name","optional":false,"type":"string"},{"field":"topic","optional":false,"type":"string"},{"field":"time","optional":false,"type":"int64"},{"field":"snapshot","optional":false,"type":"boolean"},{"field":"ts_ms","optional":false,"type":"int64"}],"field":"source","name":"outflow.debezium.source","optional":false,"type":"struct"}"#;

#[test]
fn debezium_full_in_json() {
    let full = DebeziumOptions {
        full: true,
        tombstones_on_delete: false,
    };
    let encoder = encoder(EncoderConfig {
        debezium: full,
        sink: "orders_cdc".to_string(),
        topic: "orders-cdc".to_string(),
        ..config(
            small_desc(),
            Some(vec![0]),
            Envelope::Debezium,
            FormatSpec::Json,
            FormatSpec::Json,
        )
    });
    let key = Row::pack_slice(&[Datum::Int64(1)]);
    let source = |time: u64, snapshot: bool| {
        format!(
            r#""source":{{"connector":"outflow","name":"orders_cdc","topic":"orders-cdc","time":{time},"snapshot":{snapshot},"ts_ms":1700000000123}}"#
        )
    };
    let cases = [
        (
            DiffPair::insert(row(1, 5)),
            change(0, true),
            r#"{"before":null,"after":{"id":1,"qty":5},"#.to_string()
                + &source(0, true)
                + r#","op":"r","ts_ms":1700000000123}"#,
        ),
        (
            DiffPair::insert(row(1, 5)),
            change(3, false),
            r#"{"before":null,"after":{"id":1,"qty":5},"#.to_string()
                + &source(3, false)
                + r#","op":"c","ts_ms":1700000000123}"#,
        ),
        (
            DiffPair {
                before: Some(row(1, 5)),
                after: Some(row(1, 6)),
            },
            change(4, false),
            r#"{"before":{"id":1,"qty":5},"after":{"id":1,"qty":6},"#.to_string()
                + &source(4, false)
                + r#","op":"u","ts_ms":1700000000123}"#,
        ),
        (
            DiffPair::delete(row(1, 6)),
            change(5, false),
            r#"{"before":{"id":1,"qty":6},"after":null,"#.to_string()
                + &source(5, false)
                + r#","op":"d","ts_ms":1700000000123}"#,
        ),
    ];
    for (pair, change, expected) in cases {
        let out = encode_change(&encoder, &key, &pair, change);
        assert_eq!(text(out.value()), Some(expected.as_str()));
        assert_eq!(text(out.key()), Some(r#"{"id":1}"#));
        assert_eq!(
            out.headers().collect::<Vec<_>>(),
            [(TIME_HEADER, Some(change.time.to_string().as_bytes()))]
        );
        // Without FULL tombstones are off: a delete is one message.
        assert!(!encoder.tombstone_follows(&pair));
    }

    // A time beyond int64 has no source.time.
    let mut out = EncodedMessage::new();
    let err = encoder
        .encode_change(
            &key,
            &DiffPair::insert(row(1, 5)),
            &change(u64::MAX, false),
            &mut out,
        )
        .unwrap_err();
    assert!(err.to_string().contains("18446744073709551615"), "{err}");

    // Plain DEBEZIUM is unchanged: before and after only, whatever the change says.
    let plain = encoder_of(config(
        small_desc(),
        Some(vec![0]),
        Envelope::Debezium,
        FormatSpec::Json,
        FormatSpec::Json,
    ));
    let out = encode_change(&plain, &key, &DiffPair::insert(row(1, 5)), change(0, true));
    assert_eq!(
        text(out.value()),
        Some(r#"{"before":null,"after":{"id":1,"qty":5}}"#)
    );
}

fn encoder_of(config: EncoderConfig) -> SinkEncoder {
    encoder(config)
}

#[test]
fn debezium_full_with_an_embedded_schema_and_tombstones() {
    let options = DebeziumOptions {
        full: true,
        tombstones_on_delete: true,
    };
    let encoder = encoder(connect_config(
        small_desc(),
        Some(vec![0]),
        Envelope::Debezium,
        options,
    ));
    let key = Row::pack_slice(&[Datum::Int64(1)]);
    let update = DiffPair {
        before: Some(row(1, 5)),
        after: Some(row(1, 6)),
    };
    let out = encode_change(&encoder, &key, &update, change(4, false));
    let row_schema = r#"{"fields":[{"field":"id","optional":false,"type":"int64"},{"field":"qty","optional":true,"type":"int32"}],"optional":true,"type":"struct"}"#;
    let with_field = |schema: &str, field: &str| format!(r#"{{"field":"{field}",{}"#, &schema[1..]);
    let expected_schema = format!(
        r#"{{"fields":[{},{},{SOURCE_SCHEMA},{{"field":"op","optional":false,"type":"string"}},{{"field":"ts_ms","optional":false,"type":"int64"}}],"name":"outflow.debezium.envelope","optional":false,"type":"struct"}}"#,
        with_field(row_schema, "before"),
        with_field(row_schema, "after"),
    );
    let (schema, _) = parts(out.value());
    assert_eq!(
        schema,
        serde_json::from_str::<Value>(&expected_schema).unwrap()
    );
    assert_eq!(
        payload_text(out.value().unwrap()),
        r#"{"before":{"id":1,"qty":5},"after":{"id":1,"qty":6},"source":{"connector":"outflow","name":"orders_cdc","topic":"orders-cdc","time":4,"snapshot":false,"ts_ms":1700000000123},"op":"u","ts_ms":1700000000123}"#
    );
    assert_eq!(
        text(out.key()),
        Some(
            r#"{"schema":{"fields":[{"field":"id","optional":false,"type":"int64"}],"optional":false,"type":"struct"},"payload":{"id":1}}"#
        )
    );

    let delete = DiffPair::delete(row(1, 6));
    assert!(encoder.tombstone_follows(&delete));
    assert!(!encoder.tombstone_follows(&update));
    assert!(!encoder.tombstone_follows(&DiffPair::insert(row(1, 6))));
    let mut tombstone = EncodedMessage::new();
    encoder.encode_tombstone(&key, 5, &mut tombstone).unwrap();
    assert_eq!(tombstone.value(), None);
    assert_eq!(tombstone.key(), out.key());
    assert_eq!(
        tombstone.headers().collect::<Vec<_>>(),
        [(TIME_HEADER, Some(&b"5"[..]))]
    );
}

#[test]
fn debezium_full_in_avro() {
    let options = DebeziumOptions {
        full: true,
        tombstones_on_delete: false,
    };
    let config = EncoderConfig {
        debezium: options,
        sink: "orders_cdc".to_string(),
        topic: "orders-cdc".to_string(),
        ..config(
            small_desc(),
            Some(vec![0]),
            Envelope::Debezium,
            FormatSpec::Avro(avro_spec()),
            FormatSpec::Avro(avro_spec()),
        )
    };
    let schemas = SinkEncoder::avro_schemas(&config).unwrap();
    let schema: Value = serde_json::from_str(schemas.value.as_deref().unwrap()).unwrap();
    assert_eq!(
        schema,
        json!({
            "type": "record",
            "name": "envelope",
            "fields": [
                {"name": "before", "type": ["null", {"type": "record", "name": "row", "fields": [
                    {"name": "id", "type": "long"},
                    {"name": "qty", "type": ["null", "int"]},
                ]}]},
                {"name": "after", "type": ["null", "row"]},
                {"name": "source", "type": {
                    "type": "record", "name": "source", "namespace": "outflow.debezium",
                    "fields": [
                        {"name": "connector", "type": "string"},
                        {"name": "name", "type": "string"},
                        {"name": "topic", "type": "string"},
                        {"name": "time", "type": "long"},
                        {"name": "snapshot", "type": "boolean"},
                        {"name": "ts_ms", "type": "long"},
                    ],
                }},
                {"name": "op", "type": "string"},
                {"name": "ts_ms", "type": "long"},
            ],
        })
    );
    let encoder = encoder(config);
    let key = Row::pack_slice(&[Datum::Int64(1)]);
    let out = encode_change(
        &encoder,
        &key,
        &DiffPair::insert(row(1, 5)),
        change(0, true),
    );
    // Header (schema id 2), before null, after row {1, 5}, then source: "outflow",
    // "orders_cdc", "orders-cdc", time 0, snapshot true, ts_ms; op "r"; ts_ms.
    let ts = "f6 a1 ab fe f9 62"; // zig-zag varint of 1700000000123
    let expected = format!(
        "00 00000002 | 00 | 02 02 02 0a | 0e {} | 14 {} | 14 {} | 00 | 01 | {ts} | 02 72 | {ts}",
        hex(b"outflow"),
        hex(b"orders_cdc"),
        hex(b"orders-cdc"),
    );
    assert_eq!(hex(out.value().unwrap()), hex(&unhex(&expected)));
}

#[test]
fn connect_json_reads_back_as_format_json_does() {
    use outflow_encoders::decode;
    let desc = all_types(true);
    let connect = encoder(connect_config(
        desc.clone(),
        Some(vec![3]),
        Envelope::Upsert,
        DebeziumOptions::default(),
    ));
    let plain = encoder(config(
        desc.clone(),
        Some(vec![3]),
        Envelope::Upsert,
        FormatSpec::Json,
        FormatSpec::Json,
    ));
    let key = Row::pack_slice(&[Datum::Int64(-9_007_199_254_740_993)]);
    for row in [all_values(), all_nulls(desc.arity())] {
        let pair = DiffPair::insert(row);
        let from_connect = encode(&connect, &key, &pair);
        let from_json = encode(&plain, &key, &pair);
        let read = |bytes: Option<&[u8]>| std::str::from_utf8(bytes.unwrap()).unwrap().to_string();
        assert_eq!(
            decode::row_from_connect_json(&desc, &read(from_connect.value())).unwrap(),
            decode::row_from_json(&desc, &read(from_json.value())).unwrap(),
        );
        let key_desc = desc.project(&[3]);
        assert_eq!(
            decode::row_from_connect_json(&key_desc, &read(from_connect.key())).unwrap(),
            key
        );
    }

    let options = DebeziumOptions {
        full: true,
        tombstones_on_delete: true,
    };
    let cdc = encoder(connect_config(
        small_desc(),
        Some(vec![0]),
        Envelope::Debezium,
        options,
    ));
    let update = DiffPair {
        before: Some(row(1, 5)),
        after: Some(row(1, 6)),
    };
    let out = encode_change(
        &cdc,
        &Row::pack_slice(&[Datum::Int64(1)]),
        &update,
        change(4, false),
    );
    let text = std::str::from_utf8(out.value().unwrap()).unwrap();
    assert_eq!(
        decode::debezium_from_connect_json(&small_desc(), text).unwrap(),
        update
    );
}

#[test]
fn tombstones_on_delete_without_full() {
    let encoder = encoder(EncoderConfig {
        debezium: DebeziumOptions {
            full: false,
            tombstones_on_delete: true,
        },
        ..config(
            small_desc(),
            Some(vec![0]),
            Envelope::Debezium,
            FormatSpec::Json,
            FormatSpec::Json,
        )
    });
    let key = Row::pack_slice(&[Datum::Int64(1)]);
    let delete = DiffPair::delete(row(1, 6));
    let out = encode_change(&encoder, &key, &delete, change(5, false));
    assert_eq!(
        text(out.value()),
        Some(r#"{"before":{"id":1,"qty":6},"after":null}"#)
    );
    assert!(encoder.tombstone_follows(&delete));
    let mut tombstone = EncodedMessage::new();
    encoder.encode_tombstone(&key, 5, &mut tombstone).unwrap();
    assert_eq!(
        (text(tombstone.key()), tombstone.value()),
        (Some(r#"{"id":1}"#), None)
    );

    // Without a key there is nothing to tombstone; the options are refused before that.
    let keyless = EncoderConfig {
        debezium: DebeziumOptions {
            full: false,
            tombstones_on_delete: true,
        },
        ..config(
            small_desc(),
            None,
            Envelope::Debezium,
            FormatSpec::Json,
            FormatSpec::Json,
        )
    };
    assert_eq!(
        SinkEncoder::with_schema_ids(keyless, None, None)
            .unwrap_err()
            .to_string(),
        "TOMBSTONES ON DELETE needs a KEY: a tombstone is a message with a key and a null value"
    );
    let upsert = EncoderConfig {
        debezium: DebeziumOptions {
            full: true,
            tombstones_on_delete: false,
        },
        ..config(
            small_desc(),
            Some(vec![0]),
            Envelope::Upsert,
            FormatSpec::Json,
            FormatSpec::Json,
        )
    };
    assert_eq!(
        SinkEncoder::with_schema_ids(upsert, None, None)
            .unwrap_err()
            .to_string(),
        "FULL is an option of ENVELOPE DEBEZIUM; ENVELOPE UPSERT takes no options"
    );
}
