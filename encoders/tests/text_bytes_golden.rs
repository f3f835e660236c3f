//! FORMAT TEXT and FORMAT BYTES golden tests: the Postgres text form of every type, the raw
//! bytes of bytea and text, NULLs, and the single-column rule.

mod common;

use common::*;
use outflow_dataflow::relation::{Datum, RelationDesc, Row, RowPacker, ScalarType};
use outflow_dataflow::DiffPair;
use outflow_encoders::{validate_formats, EncodedMessage, Envelope, FormatSpec, SinkEncoder};

/// The TEXT form of each value of [`all_values`], by column.
const ALL_VALUES_TEXT: &[(&str, &str)] = &[
    ("b", "t"),
    ("i2", "-32768"),
    ("i4", "2147483647"),
    ("i8", "-9007199254740993"),
    ("u2", "65535"),
    ("u4", "4294967295"),
    ("u8", "18446744073709551615"),
    ("f4", "1.5"),
    ("f8", "-0.1"),
    ("n", "99.50"),
    ("nu", "-12.345"),
    ("t", "héllo \"q\"\n"),
    ("vc", "varchar"),
    ("c", "ab   "),
    ("by", "\\x686900ff"),
    ("d", "2024-02-29"),
    ("tm", "12:34:56.5"),
    ("ts", "2024-05-06 07:08:09.000123"),
    ("ts3", "2024-05-06 07:08:09.123"),
    ("tz", "2024-05-06 07:08:09+00"),
    ("iv", "1 year 2 mons 3 days 04:05:06.5"),
    ("u", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("j", r#"{"a":[1,2],"b":null}"#),
    ("l", "{1,NULL,3}"),
    ("m", "{a=>x,b=>NULL}"),
    ("r", "(7,seven)"),
];

/// A one-column sink over column `index` of [`all_types`], keyed by that column.
fn single_column(index: usize, format: FormatSpec) -> (SinkEncoder, Row) {
    let all = all_types(true);
    let desc = all.project(&[index]);
    let value = Row::pack([all_values().iter().nth(index).unwrap()]);
    (
        encoder(config(
            desc,
            Some(vec![0]),
            Envelope::Upsert,
            format.clone(),
            format,
        )),
        value,
    )
}

#[test]
fn every_type_has_its_text_form() {
    assert_eq!(ALL_VALUES_TEXT.len(), all_types(true).arity());
    for (index, (name, expected)) in ALL_VALUES_TEXT.iter().enumerate() {
        assert_eq!(all_types(true).column(index).name, *name);
        let (encoder, row) = single_column(index, FormatSpec::Text);
        let out = encode(&encoder, &row, &DiffPair::insert(row.clone()));
        assert_eq!(text(out.value()), Some(*expected), "column {name}");
        assert_eq!(text(out.key()), Some(*expected), "key column {name}");
        assert_eq!(out.hash(), seahash::hash(expected.as_bytes()));
    }
}

#[test]
fn composite_values_quote_what_would_be_ambiguous() {
    let desc = RelationDesc::empty()
        .with_column("l", ScalarType::parse("text list").unwrap(), false)
        .with_column("ll", ScalarType::parse("int4 list list").unwrap(), false)
        .with_column(
            "r",
            ScalarType::Record {
                fields: vec![
                    ("a".into(), ScalarType::Text.nullable(true)),
                    ("b".into(), ScalarType::Text.nullable(true)),
                    ("c".into(), ScalarType::Text.nullable(true)),
                    ("d".into(), ScalarType::Text.nullable(true)),
                ],
            },
            false,
        )
        .with_column("m", ScalarType::parse("map[text=>text]").unwrap(), false);
    let mut p = RowPacker::new();
    p.push_list([
        Datum::String("a b"),
        Datum::String(""),
        Datum::String("null"),
        Datum::String("q\"\\"),
        Datum::String("x,y"),
        Datum::Null,
        Datum::String("plain"),
    ]);
    p.push_list_with(|p| {
        p.push_list([Datum::Int32(1), Datum::Int32(2)]);
        p.push_list([]);
        p.push(Datum::Null);
    });
    p.push_list([
        Datum::String("a b"),
        Datum::Null,
        Datum::String(""),
        Datum::String("say \"hi\" (\\)"),
    ]);
    p.push_map([("k=v", Datum::String("x>y")), ("plain", Datum::Null)]);
    let row = p.finish();
    let expected = [
        r#"{"a b","","null","q\"\\","x,y",NULL,plain}"#,
        "{{1,2},{},NULL}",
        r#"("a b",,"","say ""hi"" (\\)")"#,
        r#"{"k=v"=>"x>y",plain=>NULL}"#,
    ];
    for (index, expected) in expected.into_iter().enumerate() {
        let desc = desc.project(&[index]);
        let single = Row::pack([row.iter().nth(index).unwrap()]);
        let encoder = encoder(config(
            desc,
            None,
            Envelope::Upsert,
            FormatSpec::Json,
            FormatSpec::Text,
        ));
        let out = encode(&encoder, &Row::default(), &DiffPair::insert(single));
        assert_eq!(text(out.value()), Some(expected));
    }
}

#[test]
fn bytes_writes_bytea_and_text_as_they_are() {
    let cases = [
        (14, &b"hi\x00\xff"[..]),
        (11, "héllo \"q\"\n".as_bytes()),
        (12, b"varchar"),
        (13, b"ab   "),
    ];
    for (index, expected) in cases {
        let (encoder, row) = single_column(index, FormatSpec::Bytes);
        let out = encode(&encoder, &row, &DiffPair::insert(row.clone()));
        assert_eq!(out.value(), Some(expected));
        assert_eq!(out.key(), Some(expected));
    }
}

#[test]
fn null_values_are_null_and_null_keys_are_empty() {
    for format in [FormatSpec::Text, FormatSpec::Bytes] {
        let (encoder, _) = single_column(14, format);
        let null = Row::pack_slice(&[Datum::Null]);
        let out = encode(&encoder, &null, &DiffPair::insert(null.clone()));
        assert_eq!(out.value(), None);
        // Compacted topics refuse messages without a key, so a NULL key is zero bytes.
        assert_eq!(out.key(), Some(&b""[..]));
    }
}

#[test]
fn text_and_bytes_take_exactly_one_column() {
    let desc = RelationDesc::empty()
        .with_column("id", ScalarType::Int64, false)
        .with_column("name", ScalarType::Text, true)
        .with_column("payload", ScalarType::Bytes, true);
    let check =
        |key: Option<&[usize]>, envelope, key_format: FormatSpec, value_format: FormatSpec| {
            validate_formats(&desc, key, envelope, &key_format, &value_format)
                .map_err(|e| e.to_string())
        };
    let multiple = Err("BYTES or TEXT format with multiple columns not yet supported".to_string());
    assert_eq!(
        check(None, Envelope::Upsert, FormatSpec::Json, FormatSpec::Text),
        multiple
    );
    assert_eq!(
        check(None, Envelope::Upsert, FormatSpec::Json, FormatSpec::Bytes),
        multiple
    );
    assert_eq!(
        check(
            Some(&[0, 1]),
            Envelope::Upsert,
            FormatSpec::Text,
            FormatSpec::Json
        ),
        multiple
    );
    assert_eq!(
        check(
            Some(&[1]),
            Envelope::Upsert,
            FormatSpec::Text,
            FormatSpec::Json
        ),
        Ok(())
    );
    assert_eq!(
        check(
            Some(&[2]),
            Envelope::Upsert,
            FormatSpec::Bytes,
            FormatSpec::Json
        ),
        Ok(())
    );
    assert_eq!(
        check(
            Some(&[0]),
            Envelope::Upsert,
            FormatSpec::Text,
            FormatSpec::Json
        ),
        Ok(())
    );
    assert_eq!(
        check(Some(&[0]), Envelope::Upsert, FormatSpec::Bytes, FormatSpec::Json),
        Err(r#"BYTES format with non-encodable type: key column "id" has type bigint; BYTES writes bytea columns as their bytes and text columns as UTF-8, so cast the column to bytea or text, or use FORMAT TEXT"#.to_string())
    );
    let one = desc.project(&[2]);
    assert_eq!(
        validate_formats(&one, None, Envelope::Debezium, &FormatSpec::Json, &FormatSpec::Bytes).map_err(|e| e.to_string()),
        Err("BYTES value format is not supported with ENVELOPE DEBEZIUM: the before/after pair has no BYTES form; use FORMAT JSON or AVRO for the value, or ENVELOPE UPSERT".to_string())
    );
    assert!(validate_formats(
        &one,
        None,
        Envelope::Upsert,
        &FormatSpec::Json,
        &FormatSpec::Bytes
    )
    .is_ok());
}

#[test]
fn key_errors_name_the_column() {
    let desc = RelationDesc::empty().with_column("id", ScalarType::Int64, false);
    let check = |key: &[usize]| {
        validate_formats(
            &desc,
            Some(key),
            Envelope::Upsert,
            &FormatSpec::Json,
            &FormatSpec::Json,
        )
        .map_err(|e| e.to_string())
    };
    assert_eq!(
        check(&[0, 0]),
        Err("duplicate column referenced in KEY: id".to_string())
    );
    assert_eq!(
        check(&[3]),
        Err("KEY refers to column number 3, but the relation has 1 columns".to_string())
    );
    assert_eq!(
        check(&[]),
        Err(
            "KEY names no columns; name at least one, or leave KEY out for a sink without keys"
                .to_string()
        )
    );
}

#[test]
fn bytes_refuses_a_mistyped_datum() {
    let (encoder, _) = single_column(14, FormatSpec::Bytes);
    let mut out = EncodedMessage::new();
    let wrong = Row::pack_slice(&[Datum::Int32(5)]);
    let err = encoder
        .encode(
            &Row::pack_slice(&[Datum::Bytes(b"k")]),
            &DiffPair::insert(wrong),
            1,
            &mut out,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"value column "by" (bytea): expected a value of type bytea, found Int32(5)"#
    );
}
