//! Avro interoperability: rows of every type are encoded against the test schema registry, then
//! our bytes are decoded by two implementations that share nothing with ours — Python's
//! fastavro, reading the schema fetched back from the registry, and apache-avro — and schema
//! evolution is checked through encoder construction under BACKWARD compatibility.
//!
//! fastavro is found through `OUTFLOW_PYTHON` (default `python3`); install it with
//! `python3 -m pip install fastavro`.

use std::io::Write as _;
use std::process::{Command, Stdio};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value as Avro;
use apache_avro::Schema;
use outflow::dataflow::relation::values::parse_uuid;
use outflow::dataflow::relation::{
    Date, Datum, Interval, Numeric, RelationDesc, Row, RowPacker, ScalarType, Time, Timestamp,
};
use outflow::dataflow::DiffPair;
use outflow::encoders::{
    AvroFormatSpec, Change, CompatibilityLevel, DebeziumOptions, EncodeError, EncodedMessage,
    EncoderConfig, Envelope, FormatSpec, RegistryConfig, RegistryError, SchemaRegistryClient,
    SinkEncoder,
};
use outflow_tests::registry::SchemaRegistry;
use serde_json::{json, Value};

/// Decodes Confluent-framed messages with fastavro and prints them as JSON, with the values
/// JSON cannot hold tagged by kind.
const FASTAVRO_DECODER: &str = r#"
import datetime, decimal, io, json, sys, uuid
import fastavro

request = json.load(sys.stdin)
schema = fastavro.parse_schema(json.loads(request["schema"]))

def plain(v):
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, bytes):
        return {"hex": v.hex()}
    if isinstance(v, decimal.Decimal):
        return {"decimal": str(v)}
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return {"iso": v.isoformat()}
    if isinstance(v, uuid.UUID):
        return {"uuid": str(v)}
    if isinstance(v, float):
        return {"float": repr(v)}
    return v

out = []
for message in request["messages"]:
    data = bytes.fromhex(message)
    if data[0] != 0:
        raise SystemExit("magic byte is %d, not 0" % data[0])
    body = io.BytesIO(data[5:])
    record = fastavro.schemaless_reader(body, schema)
    rest = body.read()
    if rest:
        raise SystemExit("%d bytes left after the record" % len(rest))
    out.append({"schema_id": int.from_bytes(data[1:5], "big"), "record": plain(record)})
json.dump(out, sys.stdout)
"#;

fn python() -> String {
    std::env::var("OUTFLOW_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Runs the fastavro decoder over `messages` written with `schema`.
fn fastavro_decode(schema: &str, messages: &[&[u8]]) -> Vec<Value> {
    let python = python();
    let probe = Command::new(&python)
        .args(["-c", "import fastavro"])
        .output();
    match probe {
        Ok(output) if output.status.success() => {}
        Ok(_) => panic!(
            "fastavro is not installed for {python}: run `{python} -m pip install fastavro`, \
             or point OUTFLOW_PYTHON at a Python that has it"
        ),
        Err(e) => panic!(
            "cannot run {python} ({e}): install Python 3 and fastavro (`python3 -m pip install fastavro`), \
             or point OUTFLOW_PYTHON at a Python that has it"
        ),
    }
    let hex: Vec<String> = messages
        .iter()
        .map(|m| m.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let request = json!({ "schema": schema, "messages": hex });
    let mut child = Command::new(&python)
        .args(["-c", FASTAVRO_DECODER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {python}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "fastavro could not decode our bytes: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn apache_decode(schema: &str, message: &[u8]) -> Avro {
    assert_eq!(message[0], 0, "magic byte");
    let schema = Schema::parse_str(schema).unwrap();
    let mut body = &message[5..];
    let value = GenericDatumReader::builder(&schema)
        .build()
        .unwrap()
        .read_value(&mut body)
        .unwrap();
    assert!(
        body.is_empty(),
        "{} bytes left after the record",
        body.len()
    );
    value
}

fn all_types() -> RelationDesc {
    let types = [
        ("id", "bigint"),
        ("b", "boolean"),
        ("i2", "smallint"),
        ("i4", "integer"),
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
    let mut desc = RelationDesc::empty();
    for (name, typ) in types {
        desc = desc.with_column(name, ScalarType::parse(typ).unwrap(), name != "id");
    }
    let record = ScalarType::Record {
        fields: vec![
            ("f1".to_string(), ScalarType::Int32.nullable(false)),
            ("f2".to_string(), ScalarType::Text.nullable(true)),
        ],
    };
    desc.with_column("r", record, true).with_key(vec![0])
}

const UUID: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";

fn all_values(id: i64) -> Row {
    let mut p = RowPacker::new();
    p.push(Datum::Int64(id));
    p.push(Datum::True);
    p.push(Datum::Int16(i16::MIN));
    p.push(Datum::Int32(i32::MAX));
    p.push(Datum::UInt16(u16::MAX));
    p.push(Datum::UInt32(7));
    p.push(Datum::UInt64(u64::MAX));
    p.push(Datum::Float32(1.5));
    p.push(Datum::Float64(-0.1));
    p.push(Datum::Numeric(Numeric::new(9950, 2)));
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

fn all_nulls(id: i64, arity: usize) -> Row {
    Row::pack(std::iter::once(Datum::Int64(id)).chain(std::iter::repeat_n(Datum::Null, arity - 1)))
}

/// What fastavro reads back from [`all_values`].
fn all_values_decoded(id: i64) -> Value {
    json!({
        "id": id,
        "b": true,
        "i2": -32768,
        "i4": 2147483647,
        "u2": {"hex": "ffff"},
        "u4": {"hex": "00000007"},
        "u8": {"hex": "ffffffffffffffff"},
        "f4": {"float": "1.5"},
        "f8": {"float": "-0.1"},
        "n": {"decimal": "99.50"},
        "nu": {"decimal": "-12.345000000000000000000000000000000000000"},
        "t": "héllo \"q\"\n",
        "vc": "varchar",
        "c": "ab   ",
        "by": {"hex": "686900ff"},
        "d": {"iso": "2024-02-29"},
        "tm": {"iso": "12:34:56.500000"},
        "ts": {"iso": "2024-05-06T07:08:09.000123+00:00"},
        "ts3": {"iso": "2024-05-06T07:08:09.123000+00:00"},
        "tz": {"iso": "2024-05-06T07:08:09+00:00"},
        "iv": {"hex": "0e00000003000000a061936c03000000"},
        "u": {"uuid": UUID},
        "j": r#"{"a":[1,2],"b":null}"#,
        "l": [1, null, 3],
        "m": {"a": "x", "b": null},
        "r": {"f1": 7, "f2": "seven"},
    })
}

fn avro_spec() -> AvroFormatSpec {
    AvroFormatSpec {
        registry: "csr".to_string(),
        key_compatibility: None,
        value_compatibility: None,
        key_subject_name_strategy: Default::default(),
        value_subject_name_strategy: Default::default(),
        key_fullname: None,
        value_fullname: None,
        null_defaults: false,
        docs: Vec::new(),
    }
}

fn config(
    desc: RelationDesc,
    topic: &str,
    envelope: Envelope,
    spec: AvroFormatSpec,
) -> EncoderConfig {
    EncoderConfig {
        desc,
        relation: "t".to_string(),
        key_columns: Some(vec![0]),
        envelope,
        debezium: Default::default(),
        sink: "s".to_string(),
        key_format: FormatSpec::Avro(spec.clone()),
        value_format: FormatSpec::Avro(spec),
        headers_column: None,
        topic: topic.to_string(),
    }
}

fn client(registry: &SchemaRegistry) -> SchemaRegistryClient {
    SchemaRegistryClient::new(RegistryConfig::new(registry.url())).unwrap()
}

fn encode(encoder: &SinkEncoder, id: i64, pair: DiffPair<Row>) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut out = EncodedMessage::new();
    encoder
        .encode(&Row::pack_slice(&[Datum::Int64(id)]), &pair, 1, &mut out)
        .unwrap();
    (out.key().unwrap().to_vec(), out.value().map(<[u8]>::to_vec))
}

#[test]
fn every_type_round_trips_through_the_registry_and_fastavro() {
    let registry = SchemaRegistry::start();
    let desc = all_types();
    let encoder = SinkEncoder::new(
        config(desc.clone(), "interop", Envelope::Upsert, avro_spec()),
        Some(&client(&registry)),
    )
    .unwrap();
    assert_eq!(registry.subjects(), ["interop-key", "interop-value"]);

    let (key1, value1) = encode(&encoder, 1, DiffPair::insert(all_values(1)));
    let (key2, value2) = encode(&encoder, 2, DiffPair::insert(all_nulls(2, desc.arity())));
    let (value1, value2) = (value1.unwrap(), value2.unwrap());

    // The schemas come back from the registry by the ids in our messages, through a client
    // that has not seen them.
    let fresh = client(&registry);
    let value_id = i32::from_be_bytes(value1[1..5].try_into().unwrap());
    let key_id = i32::from_be_bytes(key1[1..5].try_into().unwrap());
    assert_eq!(Some(value_id), encoder.value_schema_id());
    assert_eq!(Some(key_id), encoder.key_schema_id());
    let value_schema = fresh.schema_by_id(value_id).unwrap();
    let key_schema = fresh.schema_by_id(key_id).unwrap();

    let mut nulls = serde_json::Map::new();
    for column in desc.columns() {
        nulls.insert(column.name.clone(), Value::Null);
    }
    nulls.insert("id".to_string(), json!(2));
    let decoded = fastavro_decode(&value_schema, &[&value1, &value2]);
    assert_eq!(
        decoded[0],
        json!({"schema_id": value_id, "record": all_values_decoded(1)})
    );
    assert_eq!(
        decoded[1],
        json!({"schema_id": value_id, "record": Value::Object(nulls)})
    );

    let keys = fastavro_decode(&key_schema, &[&key1, &key2]);
    assert_eq!(
        keys,
        [
            json!({"schema_id": key_id, "record": {"id": 1}}),
            json!({"schema_id": key_id, "record": {"id": 2}})
        ]
    );

    // apache-avro agrees on every field.
    let Avro::Record(fields) = apache_decode(&value_schema, &value1) else {
        panic!("not a record")
    };
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, desc.names().collect::<Vec<_>>());
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let some = |v: Avro| Avro::Union(1, Box::new(v));
    assert_eq!(field("id"), Avro::Long(1));
    assert_eq!(field("n"), some(Avro::Decimal(vec![0x26, 0xde].into())));
    assert_eq!(
        field("ts"),
        some(Avro::TimestampMicros(1_714_979_289_000_123))
    );
    assert_eq!(field("ts3"), some(Avro::TimestampMillis(1_714_979_289_123)));
    assert_eq!(field("u"), some(Avro::Uuid(UUID.parse().unwrap())));
    assert_eq!(
        field("r"),
        some(Avro::Record(vec![
            ("f1".into(), Avro::Int(7)),
            ("f2".into(), some(Avro::String("seven".into())))
        ]))
    );
    let Avro::Record(null_fields) = apache_decode(&value_schema, &value2) else {
        panic!("not a record")
    };
    assert!(null_fields
        .iter()
        .skip(1)
        .all(|(_, v)| *v == Avro::Union(0, Box::new(Avro::Null))));
    assert_eq!(
        apache_decode(&key_schema, &key2),
        Avro::Record(vec![("id".into(), Avro::Long(2))])
    );
}

#[test]
fn debezium_envelopes_round_trip_through_fastavro() {
    let registry = SchemaRegistry::start();
    let desc = RelationDesc::empty()
        .with_column("id", ScalarType::Int64, false)
        .with_column("price", ScalarType::parse("numeric(10,2)").unwrap(), true)
        .with_key(vec![0]);
    let encoder = SinkEncoder::new(
        config(desc, "cdc", Envelope::Debezium, avro_spec()),
        Some(&client(&registry)),
    )
    .unwrap();
    let old = Row::pack_slice(&[Datum::Int64(7), Datum::Numeric(Numeric::new(2999, 2))]);
    let new = Row::pack_slice(&[Datum::Int64(7), Datum::Null]);
    let messages: Vec<Vec<u8>> = [
        DiffPair::insert(old.clone()),
        DiffPair::update(old, new.clone()),
        DiffPair::delete(new),
    ]
    .into_iter()
    .map(|pair| encode(&encoder, 7, pair).1.unwrap())
    .collect();
    let schema = client(&registry)
        .schema_by_id(encoder.value_schema_id().unwrap())
        .unwrap();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let records: Vec<Value> = fastavro_decode(&schema, &refs)
        .into_iter()
        .map(|m| m["record"].clone())
        .collect();
    let old_json = json!({"id": 7, "price": {"decimal": "29.99"}});
    let new_json = json!({"id": 7, "price": null});
    assert_eq!(
        records,
        [
            json!({"before": null, "after": old_json}),
            json!({"before": old_json, "after": new_json}),
            json!({"before": new_json, "after": null}),
        ]
    );
}

/// ENVELOPE DEBEZIUM (FULL) in Avro, read by fastavro with the schema the registry holds:
/// `source`, `op` and `ts_ms` after `before` and `after`.
#[test]
fn debezium_full_round_trips_through_fastavro() {
    let registry = SchemaRegistry::start();
    let desc = RelationDesc::empty()
        .with_column("id", ScalarType::Int64, false)
        .with_column("price", ScalarType::parse("numeric(10,2)").unwrap(), true)
        .with_key(vec![0]);
    let mut config = config(desc, "cdc-full", Envelope::Debezium, avro_spec());
    config.debezium = DebeziumOptions {
        full: true,
        tombstones_on_delete: false,
    };
    config.sink = "cdc_full".to_string();
    let encoder = SinkEncoder::new(config, Some(&client(&registry))).unwrap();
    let old = Row::pack_slice(&[Datum::Int64(7), Datum::Numeric(Numeric::new(2999, 2))]);
    let new = Row::pack_slice(&[Datum::Int64(7), Datum::Null]);
    let key = Row::pack_slice(&[Datum::Int64(7)]);
    let changes = [
        (DiffPair::insert(old.clone()), 0, true),
        (DiffPair::update(old, new.clone()), 5, false),
        (DiffPair::delete(new), 9, false),
    ];
    let messages: Vec<Vec<u8>> = changes
        .into_iter()
        .map(|(pair, time, snapshot)| {
            let change = Change {
                time,
                snapshot,
                produced_at_ms: 1_700_000_000_000 + time as i64,
            };
            let mut out = EncodedMessage::new();
            encoder
                .encode_change(&key, &pair, &change, &mut out)
                .unwrap();
            out.value().unwrap().to_vec()
        })
        .collect();
    let schema = client(&registry)
        .schema_by_id(encoder.value_schema_id().unwrap())
        .unwrap();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let records: Vec<Value> = fastavro_decode(&schema, &refs)
        .into_iter()
        .map(|m| m["record"].clone())
        .collect();
    let old_json = json!({"id": 7, "price": {"decimal": "29.99"}});
    let new_json = json!({"id": 7, "price": null});
    let tail = |op: &str, time: i64, snapshot: bool| {
        let ts_ms = 1_700_000_000_000 + time;
        (
            json!({"connector": "outflow", "name": "cdc_full", "topic": "cdc-full", "time": time, "snapshot": snapshot, "ts_ms": ts_ms}),
            json!(op),
            json!(ts_ms),
        )
    };
    let expected: Vec<Value> = [
        (Value::Null, old_json.clone(), tail("r", 0, true)),
        (old_json, new_json.clone(), tail("u", 5, false)),
        (new_json, Value::Null, tail("d", 9, false)),
    ]
    .into_iter()
    .map(|(before, after, (source, op, ts_ms))| {
        json!({"before": before, "after": after, "source": source, "op": op, "ts_ms": ts_ms})
    })
    .collect();
    assert_eq!(records, expected);
}

fn orders(extra: &[(&str, &str, bool)]) -> RelationDesc {
    let mut desc = RelationDesc::empty()
        .with_column("id", ScalarType::Int64, false)
        .with_column("qty", ScalarType::Int32, true);
    for (name, typ, nullable) in extra {
        desc = desc.with_column(*name, ScalarType::parse(typ).unwrap(), *nullable);
    }
    desc.with_key(vec![0])
}

fn evolving_spec(null_defaults: bool) -> AvroFormatSpec {
    AvroFormatSpec {
        key_compatibility: Some(CompatibilityLevel::Full),
        value_compatibility: Some(CompatibilityLevel::Backward),
        key_subject_name_strategy: Default::default(),
        value_subject_name_strategy: Default::default(),
        null_defaults,
        ..avro_spec()
    }
}

#[test]
fn schema_evolution_under_backward_compatibility() {
    let registry = SchemaRegistry::start();
    let client = client(&registry);
    let build = |desc: RelationDesc, null_defaults: bool| {
        SinkEncoder::new(
            config(
                desc,
                "evolve",
                Envelope::Upsert,
                evolving_spec(null_defaults),
            ),
            Some(&client),
        )
    };

    let v1 = build(orders(&[]), true).unwrap();
    assert_eq!(
        client.subject_compatibility_level("evolve-value").unwrap(),
        Some(CompatibilityLevel::Backward)
    );
    assert_eq!(
        client.subject_compatibility_level("evolve-key").unwrap(),
        Some(CompatibilityLevel::Full)
    );

    // A nullable column with a null default: readers of the new schema fill it in for old
    // records, so BACKWARD accepts it.
    let v2 = build(orders(&[("note", "text", true)]), true).unwrap();
    assert_ne!(v1.value_schema_id(), v2.value_schema_id());
    assert_eq!(
        v1.key_schema_id(),
        v2.key_schema_id(),
        "the key did not change"
    );
    assert_eq!(registry.versions("evolve-value").len(), 2);

    // A NOT NULL column has no default, so old records cannot be read with the new schema.
    let err = build(
        orders(&[("note", "text", true), ("region", "text", false)]),
        true,
    )
    .unwrap_err();
    let EncodeError::Registry {
        source: RegistryError::Incompatible { subject, reasons },
        ..
    } = &err
    else {
        panic!("expected an incompatibility, got {err:?}")
    };
    assert_eq!(subject, "evolve-value");
    assert!(!reasons.is_empty());
    let message = err.to_string();
    assert!(
        message.starts_with(r#"cannot publish the Avro value schema of topic "evolve": "#),
        "{message}"
    );
    assert!(message.contains("\"evolve-value\""), "{message}");

    // Without NULL DEFAULTS even a nullable column has no default, and is refused the same way.
    let err = build(
        orders(&[("note", "text", true), ("extra", "text", true)]),
        false,
    )
    .unwrap_err();
    assert!(
        matches!(
            &err,
            EncodeError::Registry {
                source: RegistryError::Incompatible { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        registry.versions("evolve-value").len(),
        2,
        "refused schemas are not registered"
    );

    // A restart of the first sink, with a client that has cached nothing, publishes its
    // schema again and gets the id it had.
    let restarted = SinkEncoder::new(
        config(orders(&[]), "evolve", Envelope::Upsert, evolving_spec(true)),
        Some(&self::client(&registry)),
    )
    .unwrap();
    assert_eq!(restarted.value_schema_id(), v1.value_schema_id());
    assert_eq!(registry.versions("evolve-value").len(), 2);
}
