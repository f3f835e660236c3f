//! FORMAT AVRO golden tests: the generated schemas, the exact bytes for every type (checked
//! against fastavro's encoder when they were written down), NULLs, the Confluent framing, the
//! envelopes, and a decode of our bytes with apache-avro.

mod common;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::{Decimal, Schema};
use common::*;
use outflow_dataflow::relation::{Datum, Numeric, RelationDesc, Row, ScalarType};
use outflow_dataflow::DiffPair;
use outflow_encoders::{
    AvroFormatSpec, CompatibilityLevel, DocComment, DocScope, DocTarget, EncodedMessage, Envelope,
    FormatSpec, SinkEncoder,
};
use serde_json::json;

/// The Avro body of [`all_values`] for [`all_types`]`(false)`, column by column.
const ALL_VALUES_NOT_NULL: &[(&str, &str)] = &[
    ("b", "01"),
    ("i2", "ffff03"),
    ("i4", "feffffff0f"),
    ("i8", "8180808080808020"),
    ("u2", "ffff"),
    ("u4", "ffffffff"),
    ("u8", "ffffffffffffffff"),
    ("f4", "0000c03f"),
    ("f8", "9a9999999999b9bf"),
    // length 2, 9950 big-endian
    ("n", "04 26de"),
    // length 17, -12345 × 10^36 in two's complement
    ("nu", "22 dbb8a77bd0bee95a8ce656957000000000"),
    ("t", "16 68c3a96c6c6f202271220a"),
    ("vc", "0e 76617263686172"),
    // char(5) is blank-padded
    ("c", "0a 6162202020"),
    ("by", "08 686900ff"),
    // 19782 days
    ("d", "8cb502"),
    // 45296500000 µs
    ("tm", "c0f48dbed102"),
    ("ts", "f6a28bb5f7f08b06"),
    // timestamp(3): milliseconds
    ("ts3", "c6e0d9cbe963"),
    ("tz", "80a18bb5f7f08b06"),
    // months 14, days 3, micros 14706500000, little-endian
    ("iv", "0e000000 03000000 a061936c03000000"),
    (
        "u",
        "48 61306565626339392d396330622d346566382d626236642d366262396264333830613131",
    ),
    ("j", "28 7b2261223a5b312c325d2c2262223a6e756c6c7d"),
    // one block of 3: 1, null, 3; then the end block
    ("l", "06 0202 00 0206 00"),
    // one block of 2: "a" => "x", "b" => null; then the end block
    ("m", "04 0261 02 0278 0262 00 00"),
    // f1 = 7, f2 = "seven"
    ("r", "0e 02 0a736576656e"),
];

fn all_values_hex(nullable: bool) -> String {
    let branch = if nullable { "02" } else { "" };
    ALL_VALUES_NOT_NULL
        .iter()
        .map(|(_, hex)| format!("{branch}{hex}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decodes one datum with apache-avro, an implementation independent of ours.
fn decode(schema: &Schema, body: &mut &[u8]) -> Value {
    GenericDatumReader::builder(schema)
        .build()
        .unwrap()
        .read_value(body)
        .unwrap()
}

fn avro() -> FormatSpec {
    FormatSpec::Avro(avro_spec())
}

fn avro_with(f: impl FnOnce(&mut AvroFormatSpec)) -> FormatSpec {
    let mut spec = avro_spec();
    f(&mut spec);
    FormatSpec::Avro(spec)
}

fn parse(schema: &str) -> serde_json::Value {
    serde_json::from_str(schema).unwrap()
}

fn all_types_schema_fields(nullable: bool) -> serde_json::Value {
    let n = |t: serde_json::Value| if nullable { json!(["null", t]) } else { t };
    json!([
        {"name": "b", "type": n(json!("boolean"))},
        {"name": "i2", "type": n(json!("int"))},
        {"name": "i4", "type": n(json!("int"))},
        {"name": "i8", "type": n(json!("long"))},
        {"name": "u2", "type": n(json!({"type": "fixed", "size": 2, "name": "com.materialize.sink.uint2"}))},
        {"name": "u4", "type": n(json!({"type": "fixed", "size": 4, "name": "com.materialize.sink.uint4"}))},
        {"name": "u8", "type": n(json!({"type": "fixed", "size": 8, "name": "com.materialize.sink.uint8"}))},
        {"name": "f4", "type": n(json!("float"))},
        {"name": "f8", "type": n(json!("double"))},
        {"name": "n", "type": n(json!({"type": "bytes", "logicalType": "decimal", "precision": 39, "scale": 2}))},
        {"name": "nu", "type": n(json!({"type": "bytes", "logicalType": "decimal", "precision": 81, "scale": 39}))},
        {"name": "t", "type": n(json!("string"))},
        {"name": "vc", "type": n(json!("string"))},
        {"name": "c", "type": n(json!("string"))},
        {"name": "by", "type": n(json!("bytes"))},
        {"name": "d", "type": n(json!({"type": "int", "logicalType": "date"}))},
        {"name": "tm", "type": n(json!({"type": "long", "logicalType": "time-micros"}))},
        {"name": "ts", "type": n(json!({"type": "long", "logicalType": "timestamp-micros"}))},
        {"name": "ts3", "type": n(json!({"type": "long", "logicalType": "timestamp-millis"}))},
        {"name": "tz", "type": n(json!({"type": "long", "logicalType": "timestamp-micros"}))},
        {"name": "iv", "type": n(json!({"type": "fixed", "size": 16, "name": "com.materialize.sink.interval"}))},
        {"name": "u", "type": n(json!({"type": "string", "logicalType": "uuid"}))},
        {"name": "j", "type": n(json!({"type": "string", "connect.name": "io.debezium.data.Json"}))},
        {"name": "l", "type": n(json!({"type": "array", "items": ["null", "int"]}))},
        {"name": "m", "type": n(json!({"type": "map", "values": ["null", "string"]}))},
        {"name": "r", "type": n(json!({
            "type": "record",
            "name": "com.materialize.sink.record0",
            "fields": [{"name": "f1", "type": "int"}, {"name": "f2", "type": ["null", "string"]}],
        }))},
    ])
}

#[test]
fn every_type_has_its_avro_schema() {
    for nullable in [false, true] {
        let encoder = encoder(config(
            all_types(nullable),
            Some(vec![3]),
            Envelope::Upsert,
            avro(),
            avro(),
        ));
        assert_eq!(
            parse(encoder.value_schema().unwrap()),
            json!({"type": "record", "name": "envelope", "fields": all_types_schema_fields(nullable)}),
        );
        let key_type = if nullable {
            json!(["null", "long"])
        } else {
            json!("long")
        };
        assert_eq!(
            parse(encoder.key_schema().unwrap()),
            json!({"type": "record", "name": "row", "fields": [{"name": "i8", "type": key_type}]}),
        );
    }
}

#[test]
fn every_type_has_its_avro_bytes() {
    for nullable in [false, true] {
        let encoder = encoder(config(
            all_types(nullable),
            None,
            Envelope::Upsert,
            avro(),
            avro(),
        ));
        let out = encode(&encoder, &Row::default(), &DiffPair::insert(all_values()));
        let value = out.value().unwrap();
        assert_eq!(
            hex(&value[..5]),
            "0000000002",
            "magic byte, then value schema id 2"
        );
        assert_eq!(
            hex(&value[5..]),
            hex(&unhex(&all_values_hex(nullable))),
            "nullable = {nullable}"
        );
    }
}

#[test]
fn null_in_every_nullable_column() {
    let desc = all_types(true);
    let encoder = encoder(config(desc.clone(), None, Envelope::Upsert, avro(), avro()));
    let out = encode(
        &encoder,
        &Row::default(),
        &DiffPair::insert(all_nulls(desc.arity())),
    );
    // The null branch, once per column.
    assert_eq!(hex(&out.value().unwrap()[5..]), "00".repeat(desc.arity()));
}

#[test]
fn null_in_a_not_null_column_is_refused() {
    let desc = RelationDesc::empty().with_column("id", ScalarType::Int64, false);
    let encoder = encoder(config(desc, None, Envelope::Upsert, avro(), avro()));
    let mut out = EncodedMessage::new();
    let err = encoder
        .encode(
            &Row::default(),
            &DiffPair::insert(Row::pack_slice(&[Datum::Null])),
            1,
            &mut out,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"value column "id" (bigint): the column is NOT NULL but holds NULL, which an Avro schema without a null branch cannot write"#
    );
}

#[test]
fn apache_avro_reads_our_bytes() {
    let encoder = encoder(config(
        all_types(true),
        None,
        Envelope::Upsert,
        avro(),
        avro(),
    ));
    let out = encode(&encoder, &Row::default(), &DiffPair::insert(all_values()));
    let schema = Schema::parse_str(encoder.value_schema().unwrap()).unwrap();
    let mut body = &out.value().unwrap()[5..];
    let decoded = decode(&schema, &mut body);
    assert!(body.is_empty(), "the record is the whole body");
    let Value::Record(fields) = decoded else {
        panic!("not a record: {decoded:?}")
    };
    let some = |v: Value| Value::Union(1, Box::new(v));
    let expected = vec![
        ("b", some(Value::Boolean(true))),
        ("i2", some(Value::Int(-32768))),
        ("i4", some(Value::Int(i32::MAX))),
        ("i8", some(Value::Long(-9_007_199_254_740_993))),
        ("u2", some(Value::Fixed(2, vec![0xff; 2]))),
        ("u4", some(Value::Fixed(4, vec![0xff; 4]))),
        ("u8", some(Value::Fixed(8, vec![0xff; 8]))),
        ("f4", some(Value::Float(1.5))),
        ("f8", some(Value::Double(-0.1))),
        ("n", some(Value::Decimal(Decimal::from(vec![0x26, 0xde])))),
        // -12.345 at scale 39: -12345 × 10^36, past 128 bits; Decimal compares by value.
        (
            "nu",
            some(Value::Decimal(Decimal::from(unhex(
                "ff ffff dbb8a77bd0bee95a8ce656957000000000",
            )))),
        ),
        ("t", some(Value::String("héllo \"q\"\n".into()))),
        ("vc", some(Value::String("varchar".into()))),
        ("c", some(Value::String("ab   ".into()))),
        ("by", some(Value::Bytes(b"hi\x00\xff".to_vec()))),
        ("d", some(Value::Date(19_782))),
        ("tm", some(Value::TimeMicros(45_296_500_000))),
        ("ts", some(Value::TimestampMicros(1_714_979_289_000_123))),
        ("ts3", some(Value::TimestampMillis(1_714_979_289_123))),
        ("tz", some(Value::TimestampMicros(1_714_979_289_000_000))),
        (
            "iv",
            some(Value::Fixed(
                16,
                unhex("0e000000 03000000 a061936c03000000"),
            )),
        ),
        ("u", some(Value::Uuid(UUID.parse().unwrap()))),
        ("j", some(Value::String(r#"{"a":[1,2],"b":null}"#.into()))),
        (
            "l",
            some(Value::Array(vec![
                some(Value::Int(1)),
                Value::Union(0, Box::new(Value::Null)),
                some(Value::Int(3)),
            ])),
        ),
        (
            "m",
            some(Value::Map(
                [
                    ("a".to_string(), some(Value::String("x".into()))),
                    ("b".to_string(), Value::Union(0, Box::new(Value::Null))),
                ]
                .into_iter()
                .collect(),
            )),
        ),
        (
            "r",
            some(Value::Record(vec![
                ("f1".into(), Value::Int(7)),
                ("f2".into(), some(Value::String("seven".into()))),
            ])),
        ),
    ];
    assert_eq!(fields.len(), expected.len());
    for ((name, value), (expected_name, expected_value)) in fields.iter().zip(expected) {
        assert_eq!(name, expected_name);
        assert_eq!(value, &expected_value, "column {name}");
    }
}

#[test]
fn numerics_are_rescaled_to_the_declared_scale() {
    let desc = RelationDesc::empty()
        .with_column("n2", ScalarType::parse("numeric(10,2)").unwrap(), false)
        .with_column("n", ScalarType::parse("numeric").unwrap(), false);
    let encoder = encoder(config(desc, None, Envelope::Upsert, avro(), avro()));
    let cases: &[(Numeric, Numeric, &str)] = &[
        // 5 → 500 at scale 2; 0 at scale 39 is one zero byte
        (Numeric::new(5, 0), Numeric::new(0, 0), "04 01f4 | 02 00"),
        // 1.2 → 120; -1 → -10^39, 17 bytes
        (
            Numeric::new(12, 1),
            Numeric::new(-1, 0),
            "02 78 | 22 fd0faf016c76bc533ba09aa98000000000",
        ),
        // trailing zeros beyond the scale are dropped exactly: 1.500 → 150; 10^-39 → 1
        (
            Numeric::new(1500, 3),
            Numeric::new(1, 39),
            "04 0096 | 02 01",
        ),
        // -128 needs one byte, -129 two
        (
            Numeric::new(-128, 2),
            Numeric::new(-129, 39),
            "02 80 | 04 ff7f",
        ),
    ];
    for &(n2, n, expected) in cases {
        let out = encode(
            &encoder,
            &Row::default(),
            &DiffPair::insert(Row::pack_slice(&[Datum::Numeric(n2), Datum::Numeric(n)])),
        );
        assert_eq!(
            hex(&out.value().unwrap()[5..]),
            hex(&unhex(expected)),
            "{n2} {n}"
        );
    }
    let mut out = EncodedMessage::new();
    let too_fine = Row::pack_slice(&[
        Datum::Numeric(Numeric::new(1234, 3)),
        Datum::Numeric(Numeric::new(0, 0)),
    ]);
    let err = encoder
        .encode(&Row::default(), &DiffPair::insert(too_fine), 1, &mut out)
        .unwrap_err();
    assert!(
        err.to_string().contains(
            r#"value column "n2" (numeric(10,2)): the value 1.234 has more than 2 digits"#
        ),
        "{err}"
    );
    let nan = Row::pack_slice(&[
        Datum::Numeric(Numeric::new(0, 0)),
        Datum::Numeric(Numeric::NAN),
    ]);
    let err = encoder
        .encode(&Row::default(), &DiffPair::insert(nan), 1, &mut out)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"value column "n" (numeric): NaN cannot be written as an Avro decimal"#
    );
}

#[test]
fn empty_lists_and_maps_are_a_single_end_block() {
    let desc = RelationDesc::empty()
        .with_column("l", ScalarType::parse("text list").unwrap(), false)
        .with_column("m", ScalarType::parse("map[text=>bytea]").unwrap(), false);
    let encoder = encoder(config(desc, None, Envelope::Upsert, avro(), avro()));
    let mut p = outflow_dataflow::relation::RowPacker::new();
    p.push_list([]);
    p.push_map([]);
    let out = encode(&encoder, &Row::default(), &DiffPair::insert(p.finish()));
    assert_eq!(hex(&out.value().unwrap()[5..]), "0000");
}

fn orders() -> RelationDesc {
    RelationDesc::empty()
        .with_column("id", ScalarType::Int64, false)
        .with_column("qty", ScalarType::Int32, true)
        .with_key(vec![0])
}

#[test]
fn keys_are_framed_with_their_own_schema_id_and_hashed_without_it() {
    let key = Row::pack_slice(&[Datum::Int64(123)]);
    let pair = DiffPair::insert(Row::pack_slice(&[Datum::Int64(123), Datum::Int32(5)]));
    let first = SinkEncoder::with_schema_ids(
        config(orders(), Some(vec![0]), Envelope::Upsert, avro(), avro()),
        Some(7),
        Some(8),
    )
    .unwrap();
    let second = SinkEncoder::with_schema_ids(
        config(orders(), Some(vec![0]), Envelope::Upsert, avro(), avro()),
        Some(70_000),
        Some(8),
    )
    .unwrap();
    let a = encode(&first, &key, &pair);
    let b = encode(&second, &key, &pair);
    // 123 zig-zagged is 246 = f6 01.
    assert_eq!(hex(a.key().unwrap()), "0000000007f601");
    assert_eq!(hex(b.key().unwrap()), "0000011170f601");
    assert_eq!(hex(a.key_payload().unwrap()), "f601");
    assert_eq!(a.hash(), seahash::hash(&[0xf6, 0x01]));
    assert_eq!(
        a.hash(),
        b.hash(),
        "a new key schema id does not move the key"
    );
    assert_eq!(
        hex(a.value().unwrap()),
        "0000000008 f601 020a".replace(' ', "")
    );
}

#[test]
fn debezium_envelope_schema_and_bytes() {
    let encoder = encoder(config(
        orders(),
        Some(vec![0]),
        Envelope::Debezium,
        avro(),
        avro(),
    ));
    let row = json!({"type": "record", "name": "row", "fields": [
        {"name": "id", "type": "long"},
        {"name": "qty", "type": ["null", "int"]},
    ]});
    assert_eq!(
        parse(encoder.value_schema().unwrap()),
        json!({"type": "record", "name": "envelope", "fields": [
            {"name": "before", "type": ["null", row]},
            {"name": "after", "type": ["null", "row"]},
        ]}),
    );
    let key = Row::pack_slice(&[Datum::Int64(1)]);
    let old = Row::pack_slice(&[Datum::Int64(1), Datum::Int32(50)]);
    let new = Row::pack_slice(&[Datum::Int64(1), Datum::Null]);
    let cases = [
        (DiffPair::insert(old.clone()), "00 | 02 02 0264"),
        (
            DiffPair::update(old.clone(), new.clone()),
            "02 02 0264 | 02 02 00",
        ),
        (DiffPair::delete(new), "02 02 00 | 00"),
    ];
    let schema = Schema::parse_str(encoder.value_schema().unwrap()).unwrap();
    for (pair, expected) in cases {
        let out = encode(&encoder, &key, &pair);
        assert_eq!(hex(out.key().unwrap()), "000000000102");
        let value = out.value().unwrap();
        assert_eq!(hex(&value[5..]), hex(&unhex(expected)));
        let decoded = decode(&schema, &mut &value[5..]);
        let Value::Record(fields) = decoded else {
            panic!()
        };
        assert_eq!(fields[0].0, "before");
        assert_eq!(
            matches!(fields[0].1, Value::Union(1, _)),
            pair.before.is_some()
        );
        assert_eq!(
            matches!(fields[1].1, Value::Union(1, _)),
            pair.after.is_some()
        );
    }
}

#[test]
fn upsert_delete_is_a_tombstone() {
    let encoder = encoder(config(
        orders(),
        Some(vec![0]),
        Envelope::Upsert,
        avro(),
        avro(),
    ));
    let out = encode(
        &encoder,
        &Row::pack_slice(&[Datum::Int64(1)]),
        &DiffPair::delete(Row::pack_slice(&[Datum::Int64(1), Datum::Int32(3)])),
    );
    assert_eq!(hex(out.key().unwrap()), "000000000102");
    assert_eq!(out.value(), None);
}

#[test]
fn fullnames_namespaces_null_defaults_and_docs() {
    let spec = AvroFormatSpec {
        key_fullname: Some("com.acme.OrderKey".into()),
        value_fullname: Some("com.acme.Order".into()),
        null_defaults: true,
        docs: vec![
            DocComment {
                target: DocTarget::Type("t".into()),
                scope: DocScope::Both,
                text: "orders".into(),
            },
            DocComment {
                target: DocTarget::Type("t".into()),
                scope: DocScope::Key,
                text: "order keys".into(),
            },
            DocComment {
                target: DocTarget::Column {
                    relation: "t".into(),
                    column: "qty".into(),
                },
                scope: DocScope::Value,
                text: "how many".into(),
            },
            DocComment {
                target: DocTarget::Column {
                    relation: "t".into(),
                    column: "id".into(),
                },
                scope: DocScope::Both,
                text: "the order".into(),
            },
        ],
        ..avro_spec()
    };
    let upsert = encoder(config(
        orders(),
        Some(vec![0]),
        Envelope::Upsert,
        FormatSpec::Avro(spec.clone()),
        FormatSpec::Avro(spec.clone()),
    ));
    assert_eq!(
        parse(upsert.key_schema().unwrap()),
        json!({"type": "record", "name": "OrderKey", "namespace": "com.acme", "doc": "order keys", "fields": [
            {"name": "id", "type": "long", "doc": "the order"},
        ]}),
    );
    assert_eq!(
        parse(upsert.value_schema().unwrap()),
        json!({"type": "record", "name": "Order", "namespace": "com.acme", "doc": "orders", "fields": [
            {"name": "id", "type": "long", "doc": "the order"},
            {"name": "qty", "type": ["null", "int"], "default": null, "doc": "how many"},
        ]}),
    );
    // A dotted full name is registered as Materialize registers it: the last component is the
    // name, the rest the namespace. Under DEBEZIUM the relation's docs go to the row record;
    // the envelope's fields default to null too. `row` takes the envelope's namespace.
    let debezium = encoder(config(
        orders(),
        Some(vec![0]),
        Envelope::Debezium,
        FormatSpec::Avro(spec.clone()),
        FormatSpec::Avro(spec),
    ));
    let row = json!({"type": "record", "name": "row", "doc": "orders", "fields": [
        {"name": "id", "type": "long", "doc": "the order"},
        {"name": "qty", "type": ["null", "int"], "default": null, "doc": "how many"},
    ]});
    assert_eq!(
        parse(debezium.value_schema().unwrap()),
        json!({"type": "record", "name": "Order", "namespace": "com.acme", "fields": [
            {"name": "before", "type": ["null", row], "default": null},
            {"name": "after", "type": ["null", "row"], "default": null},
        ]}),
    );
    let parsed = Schema::parse_str(debezium.value_schema().unwrap()).unwrap();
    let Schema::Record(record) = &parsed else {
        panic!()
    };
    assert_eq!(record.name.namespace(), Some("com.acme"));
}

#[test]
fn field_names_are_made_valid_and_nested_records_numbered() {
    let inner = ScalarType::Record {
        fields: vec![("x".into(), ScalarType::Interval.nullable(false))],
    };
    let desc = RelationDesc::empty()
        .with_column("col-a", ScalarType::Int32, false)
        .with_column("col@a", ScalarType::Int32, false)
        .with_column("1st", ScalarType::Interval, false)
        .with_column(
            "r",
            ScalarType::Record {
                fields: vec![("in ner".into(), inner.clone().nullable(true))],
            },
            false,
        )
        .with_column(
            "rs",
            ScalarType::List {
                element: Box::new(inner),
            },
            false,
        );
    let schemas = SinkEncoder::avro_schemas(&config(
        desc,
        None,
        Envelope::Upsert,
        FormatSpec::Json,
        avro(),
    ))
    .unwrap();
    assert_eq!(schemas.key, None);
    let interval = json!({"type": "fixed", "size": 16, "name": "com.materialize.sink.interval"});
    assert_eq!(
        parse(&schemas.value.unwrap()),
        json!({"type": "record", "name": "envelope", "fields": [
            {"name": "col_a", "type": "int"},
            {"name": "col_a1", "type": "int"},
            {"name": "_1st", "type": interval},
            {"name": "r", "type": {"type": "record", "name": "com.materialize.sink.record0", "fields": [
                {"name": "in_ner", "type": ["null", {"type": "record", "name": "com.materialize.sink.record1", "fields": [
                    {"name": "x", "type": "com.materialize.sink.interval"},
                ]}]},
            ]}},
            {"name": "rs", "type": {"type": "array", "items": ["null", {"type": "record", "name": "com.materialize.sink.record2", "fields": [
                {"name": "x", "type": "com.materialize.sink.interval"},
            ]}]}},
        ]}),
    );
}

#[test]
fn key_and_value_formats_are_chosen_separately() {
    let key = Row::pack_slice(&[Datum::Int64(9)]);
    let pair = DiffPair::insert(Row::pack_slice(&[Datum::Int64(9), Datum::Int32(1)]));
    let json_key = encoder(config(
        orders(),
        Some(vec![0]),
        Envelope::Upsert,
        FormatSpec::Json,
        avro(),
    ));
    let out = encode(&json_key, &key, &pair);
    assert_eq!(text(out.key()), Some(r#"{"id":9}"#));
    assert_eq!(hex(out.value().unwrap()), "0000000002120202");
    assert_eq!(json_key.key_schema(), None);
    assert_eq!(json_key.value_schema_id(), Some(2));

    let avro_key = encoder(config(
        orders(),
        Some(vec![0]),
        Envelope::Upsert,
        avro(),
        FormatSpec::Json,
    ));
    let out = encode(&avro_key, &key, &pair);
    assert_eq!(hex(out.key().unwrap()), "000000000112");
    assert_eq!(text(out.value()), Some(r#"{"id":9,"qty":1}"#));
    assert_eq!(avro_key.key_schema_id(), Some(1));
    assert_eq!(avro_key.value_schema(), None);
}

#[test]
fn compatibility_levels_are_part_of_the_spec() {
    // The levels travel to the registry with the schemas (see tests/tests/avro_interop.rs);
    // here only that a spec carrying them builds an encoder.
    let spec = AvroFormatSpec {
        key_compatibility: Some(CompatibilityLevel::Full),
        value_compatibility: Some(CompatibilityLevel::BackwardTransitive),
        key_subject_name_strategy: Default::default(),
        value_subject_name_strategy: Default::default(),
        ..avro_spec()
    };
    let config = config(
        orders(),
        Some(vec![0]),
        Envelope::Upsert,
        FormatSpec::Avro(spec.clone()),
        FormatSpec::Avro(spec),
    );
    assert!(SinkEncoder::with_schema_ids(config.clone(), Some(1), Some(2)).is_ok());
    let err = SinkEncoder::new(config, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "FORMAT AVRO for the key needs a schema registry connection, and none was given"
    );
}

#[test]
fn fullname_and_doc_errors() {
    let with = |f: fn(&mut AvroFormatSpec)| avro_with(f);
    // (key columns, envelope, key format, value format, expected error)
    type Case = (
        Option<Vec<usize>>,
        Envelope,
        FormatSpec,
        FormatSpec,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            None,
            Envelope::Upsert,
            avro(),
            with(|s| s.key_fullname = Some("k".into())),
            "Cannot specify AVRO KEY FULLNAME without a corresponding KEY field",
        ),
        (
            Some(vec![0]),
            Envelope::Upsert,
            with(|s| s.key_fullname = Some("k".into())),
            avro(),
            "Must specify both AVRO KEY FULLNAME and AVRO VALUE FULLNAME when specifying generated schema names",
        ),
        (
            Some(vec![0]),
            Envelope::Upsert,
            with(|s| s.key_fullname = Some("a.1k".into())),
            with(|s| s.value_fullname = Some("v".into())),
            r#"AVRO KEY FULLNAME "a.1k" is not a valid Avro full name: the component "1k" must start with a letter or _"#,
        ),
        (
            None,
            Envelope::Debezium,
            FormatSpec::Json,
            with(|s| s.value_fullname = Some("a.row".into())),
            r#"AVRO VALUE FULLNAME "a.row" is not a valid Avro full name: under ENVELOPE DEBEZIUM the value record holds a record named "row", so the value record needs another name"#,
        ),
        (
            None,
            Envelope::Upsert,
            FormatSpec::Json,
            with(|s| {
                s.docs.push(DocComment {
                    target: DocTarget::Column { relation: "t".into(), column: "nope".into() },
                    scope: DocScope::Value,
                    text: "x".into(),
                })
            }),
            r#"VALUE DOC ON COLUMN t.nope does not name the sink's relation "t" or one of its columns"#,
        ),
        (
            None,
            Envelope::Upsert,
            FormatSpec::Json,
            with(|s| s.docs.push(DocComment { target: DocTarget::Type("t".into()), scope: DocScope::Both, text: String::new() })),
            "DOC ON TYPE t cannot be empty",
        ),
    ];
    for (key, envelope, key_format, value_format, expected) in cases {
        let err = SinkEncoder::with_schema_ids(
            config(orders(), key, envelope, key_format, value_format),
            Some(1),
            Some(2),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), expected);
    }
}
