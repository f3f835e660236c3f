//! A relation with a column of every type, a row of values for it, and helpers to build
//! encoders over it, shared by the golden tests of each format.
#![allow(dead_code)]

use outflow_dataflow::relation::values::parse_uuid;
use outflow_dataflow::relation::{
    Date, Datum, Interval, Numeric, RelationDesc, Row, RowPacker, ScalarType, Time, Timestamp,
};
use outflow_dataflow::DiffPair;
use outflow_encoders::{
    AvroFormatSpec, EncodedMessage, EncoderConfig, Envelope, FormatSpec, SinkEncoder,
};

/// Column names and types, in order. Every type of the relation model appears once.
pub fn all_types(nullable: bool) -> RelationDesc {
    let types = [
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
    let mut desc = RelationDesc::empty();
    for (name, typ) in types {
        desc = desc.with_column(name, ScalarType::parse(typ).unwrap(), nullable);
    }
    let record = ScalarType::Record {
        fields: vec![
            ("f1".to_string(), ScalarType::Int32.nullable(false)),
            ("f2".to_string(), ScalarType::Text.nullable(true)),
        ],
    };
    desc.with_column("r", record, nullable)
}

pub const UUID: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";

/// One value per column of [`all_types`].
pub fn all_values() -> Row {
    let mut p = RowPacker::new();
    p.push(Datum::True);
    p.push(Datum::Int16(i16::MIN));
    p.push(Datum::Int32(i32::MAX));
    p.push(Datum::Int64(-9_007_199_254_740_993));
    p.push(Datum::UInt16(u16::MAX));
    p.push(Datum::UInt32(u32::MAX));
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

/// NULL in every column.
pub fn all_nulls(arity: usize) -> Row {
    Row::pack(std::iter::repeat_n(Datum::Null, arity))
}

pub fn avro_spec() -> AvroFormatSpec {
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

pub fn config(
    desc: RelationDesc,
    key: Option<Vec<usize>>,
    envelope: Envelope,
    key_format: FormatSpec,
    value_format: FormatSpec,
) -> EncoderConfig {
    EncoderConfig {
        desc,
        relation: "t".to_string(),
        key_columns: key,
        envelope,
        debezium: Default::default(),
        sink: "s".to_string(),
        key_format,
        value_format,
        headers_column: None,
        topic: "topic".to_string(),
    }
}

/// An encoder whose Avro parts get schema ids 1 (key) and 2 (value).
pub fn encoder(config: EncoderConfig) -> SinkEncoder {
    SinkEncoder::with_schema_ids(config, Some(1), Some(2)).unwrap()
}

pub fn encode(encoder: &SinkEncoder, key: &Row, pair: &DiffPair<Row>) -> EncodedMessage {
    let mut out = EncodedMessage::new();
    encoder.encode(key, pair, 42, &mut out).unwrap();
    out
}

pub fn text(bytes: Option<&[u8]>) -> Option<&str> {
    bytes.map(|b| std::str::from_utf8(b).unwrap())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex with spaces and `|` allowed for readability in expected values.
pub fn unhex(text: &str) -> Vec<u8> {
    let digits: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {text:?}"
    );
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
        .collect()
}
