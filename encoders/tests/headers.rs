//! Message headers: the logical time on every message, and a HEADERS column's entries under
//! UPSERT, with Outflow's reserved names kept out.

mod common;

use common::*;
use outflow_dataflow::relation::{Datum, RelationDesc, Row, RowPacker, ScalarType};
use outflow_dataflow::DiffPair;
use outflow_encoders::{EncodedMessage, Envelope, FormatSpec, SinkEncoder, TIME_HEADER};

fn headers(out: &EncodedMessage) -> Vec<(&str, Option<&str>)> {
    out.headers()
        .map(|(n, v)| (n, v.map(|v| std::str::from_utf8(v).unwrap())))
        .collect()
}

fn with_headers(value_type: &str) -> SinkEncoder {
    let desc = RelationDesc::empty()
        .with_column("id", ScalarType::Int32, false)
        .with_column(
            "h",
            ScalarType::parse(&format!("map[text=>{value_type}]")).unwrap(),
            true,
        );
    let mut config = config(
        desc,
        Some(vec![0]),
        Envelope::Upsert,
        FormatSpec::Json,
        FormatSpec::Json,
    );
    config.headers_column = Some(1);
    encoder(config)
}

fn row_with_map<'a>(id: i32, entries: impl IntoIterator<Item = (&'a str, Datum<'a>)>) -> Row {
    let mut p = RowPacker::new();
    p.push(Datum::Int32(id));
    p.push_map(entries);
    p.finish()
}

#[test]
fn every_message_carries_its_logical_time() {
    for envelope in [Envelope::Upsert, Envelope::Debezium] {
        let desc = RelationDesc::empty().with_column("id", ScalarType::Int32, false);
        let encoder = encoder(config(
            desc,
            None,
            envelope,
            FormatSpec::Json,
            FormatSpec::Json,
        ));
        let mut out = EncodedMessage::new();
        let row = Row::pack_slice(&[Datum::Int32(1)]);
        encoder
            .encode(
                &Row::default(),
                &DiffPair::insert(row.clone()),
                1_720_032_185_312,
                &mut out,
            )
            .unwrap();
        assert_eq!(headers(&out), [(TIME_HEADER, Some("1720032185312"))]);
        encoder
            .encode(&Row::default(), &DiffPair::delete(row), u64::MAX, &mut out)
            .unwrap();
        assert_eq!(
            headers(&out),
            [("outflow-time", Some("18446744073709551615"))]
        );
        assert_eq!(
            out.user_bytes(),
            out.value().map_or(0, <[u8]>::len),
            "the time header is not the user's"
        );
    }
}

#[test]
fn a_headers_column_adds_its_entries_in_key_order() {
    let encoder = with_headers("text");
    let row = row_with_map(
        1,
        [
            ("z", Datum::String("last")),
            ("a", Datum::String("first")),
            ("outflow-time", Datum::String("forged")),
            ("OUTFLOW-anything", Datum::String("reserved")),
            ("n", Datum::Null),
            ("materialize-timestamp", Datum::String("kept")),
        ],
    );
    let out = encode(
        &encoder,
        &Row::pack_slice(&[Datum::Int32(1)]),
        &DiffPair::insert(row),
    );
    assert_eq!(
        headers(&out),
        [
            ("outflow-time", Some("42")),
            ("a", Some("first")),
            ("materialize-timestamp", Some("kept")),
            ("n", None),
            ("z", Some("last")),
        ]
    );
    // The column stays in the value.
    assert_eq!(
        text(out.value()),
        Some(
            r#"{"id":1,"h":{"OUTFLOW-anything":"reserved","a":"first","materialize-timestamp":"kept","n":null,"outflow-time":"forged","z":"last"}}"#
        )
    );
    let user_headers = "a".len()
        + "first".len()
        + "materialize-timestamp".len()
        + "kept".len()
        + "n".len()
        + "z".len()
        + "last".len();
    assert_eq!(
        out.user_bytes(),
        out.key().unwrap().len() + out.value().unwrap().len() + user_headers
    );
}

#[test]
fn bytea_header_values_are_kept_as_they_are() {
    let encoder = with_headers("bytea");
    let row = row_with_map(1, [("bin", Datum::Bytes(b"\x00\xff"))]);
    let out = encode(
        &encoder,
        &Row::pack_slice(&[Datum::Int32(1)]),
        &DiffPair::insert(row),
    );
    let all: Vec<_> = out.headers().collect();
    assert_eq!(
        all,
        [
            ("outflow-time", Some(&b"42"[..])),
            ("bin", Some(&b"\x00\xff"[..]))
        ]
    );
    let owned = out.to_owned_message();
    assert_eq!(
        owned.headers[1],
        ("bin".to_string(), Some(vec![0x00, 0xff]))
    );
}

#[test]
fn a_null_map_adds_no_headers_and_a_delete_takes_the_old_rows() {
    let encoder = with_headers("text");
    let key = Row::pack_slice(&[Datum::Int32(1)]);
    let null_map = Row::pack_slice(&[Datum::Int32(1), Datum::Null]);
    let out = encode(&encoder, &key, &DiffPair::insert(null_map));
    assert_eq!(headers(&out), [("outflow-time", Some("42"))]);

    let old = row_with_map(1, [("trace", Datum::String("abc"))]);
    let out = encode(&encoder, &key, &DiffPair::delete(old));
    assert_eq!(out.value(), None);
    assert_eq!(
        headers(&out),
        [("outflow-time", Some("42")), ("trace", Some("abc"))]
    );

    let new = row_with_map(1, [("trace", Datum::String("new"))]);
    let out = encode(
        &encoder,
        &key,
        &DiffPair::update(row_with_map(1, [("trace", Datum::String("old"))]), new),
    );
    assert_eq!(
        headers(&out),
        [("outflow-time", Some("42")), ("trace", Some("new"))]
    );
}

#[test]
fn headers_column_errors() {
    let desc = RelationDesc::empty()
        .with_column("id", ScalarType::Int32, false)
        .with_column("h", ScalarType::parse("map[text=>text]").unwrap(), true)
        .with_column("bad", ScalarType::parse("map[text=>int4]").unwrap(), true);
    let build = |envelope, column| {
        let mut config = config(
            desc.clone(),
            Some(vec![0]),
            envelope,
            FormatSpec::Json,
            FormatSpec::Json,
        );
        config.headers_column = Some(column);
        SinkEncoder::with_schema_ids(config, None, None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(build(Envelope::Upsert, 1), Ok(()));
    assert_eq!(
        build(Envelope::Debezium, 1),
        Err("HEADERS option is not supported with ENVELOPE DEBEZIUM".to_string())
    );
    assert_eq!(
        build(Envelope::Upsert, 2),
        Err(r#"HEADERS column must have type map[text => text] or map[text => bytea]; column "bad" has type map[text=>integer]"#.to_string())
    );
    assert_eq!(
        build(Envelope::Upsert, 0),
        Err(r#"HEADERS column must have type map[text => text] or map[text => bytea]; column "id" has type integer"#.to_string())
    );
    assert_eq!(
        build(Envelope::Upsert, 9),
        Err("HEADERS refers to column number 9, but the relation has 3 columns".to_string())
    );
}
