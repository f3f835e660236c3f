//! FORMAT JSON golden tests: the exact text for every type, NULLs, keys and both envelopes.

mod common;

use common::*;
use outflow_dataflow::relation::{Datum, Numeric, RelationDesc, Row, RowPacker, ScalarType};
use outflow_dataflow::DiffPair;
use outflow_encoders::{EncodedMessage, Envelope, FormatSpec};

const ALL_VALUES_JSON: &str = concat!(
    r#"{"b":true,"i2":-32768,"i4":2147483647,"i8":-9007199254740993,"u2":65535,"u4":4294967295,"#,
    r#""u8":18446744073709551615,"f4":1.5,"f8":-0.1,"n":99.50,"nu":-12.345,"t":"héllo \"q\"\n","#,
    r#""vc":"varchar","c":"ab   ","by":"aGkA/w==","d":"2024-02-29","tm":"12:34:56.5","#,
    r#""ts":"2024-05-06T07:08:09.000123","ts3":"2024-05-06T07:08:09.123","tz":"2024-05-06T07:08:09Z","#,
    r#""iv":"1 year 2 mons 3 days 04:05:06.5","u":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","#,
    r#""j":{"a":[1,2],"b":null},"l":[1,null,3],"m":{"a":"x","b":null},"r":{"f1":7,"f2":"seven"}}"#,
);

const ALL_NULLS_JSON: &str = concat!(
    r#"{"b":null,"i2":null,"i4":null,"i8":null,"u2":null,"u4":null,"u8":null,"f4":null,"f8":null,"#,
    r#""n":null,"nu":null,"t":null,"vc":null,"c":null,"by":null,"d":null,"tm":null,"ts":null,"#,
    r#""ts3":null,"tz":null,"iv":null,"u":null,"j":null,"l":null,"m":null,"r":null}"#,
);

fn upsert_json(desc: RelationDesc, key: Option<Vec<usize>>) -> outflow_encoders::SinkEncoder {
    encoder(config(
        desc,
        key,
        Envelope::Upsert,
        FormatSpec::Json,
        FormatSpec::Json,
    ))
}

#[test]
fn every_type_has_its_json_form() {
    let encoder = upsert_json(all_types(true), Some(vec![3]));
    let out = encode(
        &encoder,
        &Row::pack_slice(&[Datum::Int64(-9_007_199_254_740_993)]),
        &DiffPair::insert(all_values()),
    );
    assert_eq!(text(out.value()), Some(ALL_VALUES_JSON));
    assert_eq!(text(out.key()), Some(r#"{"i8":-9007199254740993}"#));
    // The text is JSON, and reads back to the same document.
    let parsed: serde_json::Value = serde_json::from_slice(out.value().unwrap()).unwrap();
    assert_eq!(parsed["t"], "héllo \"q\"\n");
    assert_eq!(parsed["j"]["a"][1], 2);
}

#[test]
fn not_null_columns_encode_the_same() {
    let encoder = upsert_json(all_types(false), None);
    let out = encode(&encoder, &Row::default(), &DiffPair::insert(all_values()));
    assert_eq!(text(out.value()), Some(ALL_VALUES_JSON));
    assert_eq!(out.key(), None);
    assert_eq!(out.hash(), 0);
}

#[test]
fn null_in_every_column() {
    let desc = all_types(true);
    let encoder = upsert_json(desc.clone(), None);
    let out = encode(
        &encoder,
        &Row::default(),
        &DiffPair::insert(all_nulls(desc.arity())),
    );
    assert_eq!(text(out.value()), Some(ALL_NULLS_JSON));
}

#[test]
fn nulls_inside_lists_maps_and_records() {
    let desc = RelationDesc::empty()
        .with_column("l", ScalarType::parse("text list").unwrap(), true)
        .with_column("m", ScalarType::parse("map[text=>int8]").unwrap(), true)
        .with_column(
            "r",
            ScalarType::Record {
                fields: vec![
                    ("a".into(), ScalarType::Text.nullable(true)),
                    ("a".into(), ScalarType::Int64.nullable(true)),
                ],
            },
            true,
        );
    let mut p = RowPacker::new();
    p.push_list([Datum::Null, Datum::String("")]);
    p.push_map([("k", Datum::Null)]);
    p.push_list([Datum::Null, Datum::Null]);
    let out = encode(
        &upsert_json(desc, None),
        &Row::default(),
        &DiffPair::insert(p.finish()),
    );
    // Repeated record field names are made unique, as column names are.
    assert_eq!(
        text(out.value()),
        Some(r#"{"l":[null,""],"m":{"k":null},"r":{"a":null,"a1":null}}"#)
    );
}

#[test]
fn floats_numerics_and_strings_edge_cases() {
    let desc = RelationDesc::empty()
        .with_column("f8", ScalarType::Float64, false)
        .with_column("f4", ScalarType::Float32, false)
        .with_column("n", ScalarType::parse("numeric").unwrap(), false)
        .with_column("s", ScalarType::Text, false);
    let encoder = upsert_json(desc, None);
    let cases: &[(f64, f32, Numeric, &str, &str)] = &[
        (
            f64::NAN,
            f32::NAN,
            Numeric::NAN,
            "\u{0}\u{1f}\t",
            r#"{"f8":"NaN","f4":"NaN","n":"NaN","s":"\u0000\u001f\t"}"#,
        ),
        (
            f64::INFINITY,
            f32::NEG_INFINITY,
            Numeric::new(-5, 3),
            "\\/",
            r#"{"f8":"Infinity","f4":"-Infinity","n":-0.005,"s":"\\/"}"#,
        ),
        (
            f64::NEG_INFINITY,
            0.1,
            Numeric::new(0, 2),
            "",
            r#"{"f8":"-Infinity","f4":0.1,"n":0.00,"s":""}"#,
        ),
        (
            1e300,
            3.4028235e38,
            Numeric::new(12, 0),
            "😀",
            r#"{"f8":1e+300,"f4":3.4028235e+38,"n":12,"s":"😀"}"#,
        ),
        (
            -0.0,
            1e-7,
            Numeric::new(-99_999_999_999_999_999_999_999_999_999_999_999_999, 38),
            "\r\u{8}\u{c}",
            r#"{"f8":-0.0,"f4":1e-7,"n":-0.99999999999999999999999999999999999999,"s":"\r\b\f"}"#,
        ),
    ];
    for &(f8, f4, n, s, expected) in cases {
        let row = Row::pack_slice(&[
            Datum::Float64(f8),
            Datum::Float32(f4),
            Datum::Numeric(n),
            Datum::String(s),
        ]);
        let out = encode(&encoder, &Row::default(), &DiffPair::insert(row));
        assert_eq!(text(out.value()), Some(expected));
        serde_json::from_slice::<serde_json::Value>(out.value().unwrap()).unwrap();
    }
}

#[test]
fn keys_are_objects_of_the_key_columns_in_key_order() {
    let desc = RelationDesc::empty()
        .with_column("id", ScalarType::Int64, false)
        .with_column("region", ScalarType::Text, false)
        .with_column("total", ScalarType::parse("numeric(10,2)").unwrap(), false);
    let encoder = upsert_json(desc, Some(vec![1, 0]));
    let key = Row::pack_slice(&[Datum::String("eu"), Datum::Int64(7)]);
    let row = Row::pack_slice(&[
        Datum::Int64(7),
        Datum::String("eu"),
        Datum::Numeric(Numeric::new(9950, 2)),
    ]);
    let out = encode(&encoder, &key, &DiffPair::insert(row));
    assert_eq!(text(out.key()), Some(r#"{"region":"eu","id":7}"#));
    assert_eq!(
        text(out.value()),
        Some(r#"{"id":7,"region":"eu","total":99.50}"#)
    );
    assert_eq!(out.key_payload(), out.key());
    assert_eq!(out.hash(), seahash::hash(br#"{"region":"eu","id":7}"#));
}

#[test]
fn repeated_column_names_are_made_unique() {
    let desc = RelationDesc::empty()
        .with_column("a", ScalarType::Int32, false)
        .with_column("a", ScalarType::Int32, false)
        .with_column("x1", ScalarType::Int32, false)
        .with_column("x1", ScalarType::Int32, false);
    let row = Row::pack_slice(&[
        Datum::Int32(1),
        Datum::Int32(2),
        Datum::Int32(3),
        Datum::Int32(4),
    ]);
    let out = encode(
        &upsert_json(desc, None),
        &Row::default(),
        &DiffPair::insert(row),
    );
    assert_eq!(text(out.value()), Some(r#"{"a":1,"a1":2,"x1":3,"x1_1":4}"#));
}

fn orders() -> (RelationDesc, Row, Row) {
    let desc = RelationDesc::empty()
        .with_column("product_id", ScalarType::Int32, false)
        .with_column("quantity", ScalarType::Int32, true)
        .with_key(vec![0]);
    let old = Row::pack_slice(&[Datum::Int32(101), Datum::Int32(50)]);
    let new = Row::pack_slice(&[Datum::Int32(101), Datum::Int32(45)]);
    (desc, old, new)
}

#[test]
fn upsert_shapes() {
    let (desc, old, new) = orders();
    let encoder = upsert_json(desc, Some(vec![0]));
    let key = Row::pack_slice(&[Datum::Int32(101)]);

    let insert = encode(&encoder, &key, &DiffPair::insert(old.clone()));
    assert_eq!(text(insert.key()), Some(r#"{"product_id":101}"#));
    assert_eq!(
        text(insert.value()),
        Some(r#"{"product_id":101,"quantity":50}"#)
    );

    let update = encode(&encoder, &key, &DiffPair::update(old.clone(), new));
    assert_eq!(
        text(update.value()),
        Some(r#"{"product_id":101,"quantity":45}"#)
    );

    let delete = encode(&encoder, &key, &DiffPair::delete(old));
    assert_eq!(text(delete.key()), Some(r#"{"product_id":101}"#));
    assert_eq!(delete.value(), None, "a delete is a tombstone");
}

#[test]
fn debezium_shapes() {
    let (desc, old, new) = orders();
    let encoder = encoder(config(
        desc,
        Some(vec![0]),
        Envelope::Debezium,
        FormatSpec::Json,
        FormatSpec::Json,
    ));
    let key = Row::pack_slice(&[Datum::Int32(101)]);
    let cases = [
        (
            DiffPair::insert(old.clone()),
            r#"{"before":null,"after":{"product_id":101,"quantity":50}}"#,
        ),
        (
            DiffPair::update(old.clone(), new.clone()),
            r#"{"before":{"product_id":101,"quantity":50},"after":{"product_id":101,"quantity":45}}"#,
        ),
        (
            DiffPair::delete(new),
            r#"{"before":{"product_id":101,"quantity":45},"after":null}"#,
        ),
    ];
    for (pair, expected) in cases {
        let out = encode(&encoder, &key, &pair);
        assert_eq!(text(out.key()), Some(r#"{"product_id":101}"#));
        assert_eq!(text(out.value()), Some(expected));
    }
}

#[test]
fn debezium_without_a_key_has_no_key() {
    let (desc, old, _) = orders();
    let encoder = encoder(config(
        desc,
        None,
        Envelope::Debezium,
        FormatSpec::Json,
        FormatSpec::Json,
    ));
    let out = encode(&encoder, &Row::default(), &DiffPair::delete(old));
    assert_eq!(out.key(), None);
    assert_eq!(out.hash(), 0);
    assert_eq!(
        text(out.value()),
        Some(r#"{"before":{"product_id":101,"quantity":50},"after":null}"#)
    );
}

#[test]
fn buffers_are_reused_without_leftovers() {
    let (desc, old, new) = orders();
    let encoder = upsert_json(desc, Some(vec![0]));
    let key = Row::pack_slice(&[Datum::Int32(101)]);
    let mut out = EncodedMessage::new();
    encoder
        .encode(&key, &DiffPair::insert(old.clone()), 1, &mut out)
        .unwrap();
    encoder
        .encode(&key, &DiffPair::delete(old), 2, &mut out)
        .unwrap();
    assert_eq!(out.value(), None);
    encoder
        .encode(&key, &DiffPair::insert(new), 3, &mut out)
        .unwrap();
    assert_eq!(
        text(out.value()),
        Some(r#"{"product_id":101,"quantity":45}"#)
    );
    assert_eq!(
        out.headers().collect::<Vec<_>>(),
        [("outflow-time", Some(&b"3"[..]))]
    );
}

#[test]
fn type_mismatches_and_bad_jsonb_name_the_column() {
    let desc = RelationDesc::empty()
        .with_column("qty", ScalarType::Int32, false)
        .with_column("doc", ScalarType::Jsonb, true);
    let encoder = upsert_json(desc, None);
    let mut out = EncodedMessage::new();
    let wrong = Row::pack_slice(&[Datum::String("seven"), Datum::Null]);
    let err = encoder
        .encode(&Row::default(), &DiffPair::insert(wrong), 1, &mut out)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"value column "qty" (integer): expected a value of type integer, found String("seven")"#
    );

    let bad_json = Row::pack_slice(&[Datum::Int32(1), Datum::Jsonb("{not json")]);
    let err = encoder
        .encode(&Row::default(), &DiffPair::insert(bad_json), 1, &mut out)
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(r#"value column "doc" (jsonb): the jsonb value is not valid JSON"#),
        "{err}"
    );

    let short = Row::pack_slice(&[Datum::Int32(1)]);
    let err = encoder
        .encode(&Row::default(), &DiffPair::insert(short), 1, &mut out)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the value row has 1 columns, but the sink's value has 2"
    );
}
