//! Both ways: rows encoded by the encoders decode back to the same rows, in JSON and Avro
//! (keys, UPSERT values, DEBEZIUM before/after), TEXT and BYTES, for every type at the
//! extremes of its range and for random rows.

mod common;

use apache_avro::Schema;
use common::*;
use outflow_dataflow::relation::values::{parse_uuid, MICROS_PER_DAY};
use outflow_dataflow::relation::{
    ColumnType, Date, Datum, Interval, Numeric, RelationDesc, Row, RowPacker, ScalarType, Time,
    Timestamp,
};
use outflow_dataflow::DiffPair;
use outflow_encoders::decode::{
    confluent_schema_id, debezium_from_avro, debezium_from_json, row_from_avro, row_from_bytes,
    row_from_json, row_from_text,
};
use outflow_encoders::{DecodeError, Envelope, FormatSpec, SinkEncoder};
use proptest::prelude::*;

/// Every type the encoders support, with the widest numeric and a nested record.
fn wide_types() -> RelationDesc {
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
        ("n", "numeric(38,2)"),
        ("n0", "numeric(10)"),
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
        ("tz3", "timestamptz(3)"),
        ("iv", "interval"),
        ("u", "uuid"),
        ("j", "jsonb"),
        ("l", "int4 list"),
        ("ll", "text list list"),
        ("m", "map[text=>text]"),
        ("mn", "map[text=>numeric]"),
    ];
    let mut desc = RelationDesc::empty().with_column("id", ScalarType::Int64, false);
    for (name, typ) in types {
        desc = desc.with_column(name, ScalarType::parse(typ).unwrap(), true);
    }
    let inner = ScalarType::Record {
        fields: vec![
            ("x".to_string(), ScalarType::Float64.nullable(true)),
            ("x".to_string(), ScalarType::Text.nullable(true)),
        ],
    };
    let record = ScalarType::Record {
        fields: vec![
            ("f1".to_string(), ScalarType::Int32.nullable(false)),
            ("f2".to_string(), ScalarType::Text.nullable(true)),
            ("f3".to_string(), inner.nullable(true)),
            (
                "f4".to_string(),
                ScalarType::parse("date list").unwrap().nullable(true),
            ),
        ],
    };
    desc.with_column("r", record, true)
}

fn nested(f: impl FnOnce(&mut RowPacker)) -> Row {
    let mut p = RowPacker::new();
    f(&mut p);
    p.finish()
}

fn pick<T>(low: bool, a: T, b: T) -> T {
    if low {
        a
    } else {
        b
    }
}

/// The smallest and largest value of every column, as far as each format holds them.
fn extremes(low: bool) -> Row {
    let nines = 99_999_999_999_999_999_999_999_999_999_999_999_999i128;
    // The latest timestamp, and the earliest whose text reads back (a day after i64::MIN).
    let first_day = -(i64::MAX / MICROS_PER_DAY) * MICROS_PER_DAY;
    let ts = pick(low, Timestamp(first_day), Timestamp(i64::MAX));
    let ts_millis = pick(low, Timestamp(first_day), Timestamp(i64::MAX / 1000 * 1000));
    let list =
        nested(|p| p.push_list([Datum::Int32(i32::MIN), Datum::Null, Datum::Int32(i32::MAX)]));
    let list_list = nested(|p| {
        p.push_list_with(|p| {
            p.push_list([Datum::String("{a,b}"), Datum::String("NULL"), Datum::Null]);
            p.push_list([]);
            p.push_list([Datum::String(""), Datum::String("x \"y\" \\z")]);
            p.push(Datum::Null);
        })
    });
    let map = nested(|p| {
        p.push_map([
            ("", Datum::String("empty key")),
            ("k=>v", Datum::String("a,b}")),
            ("NULL", Datum::Null),
            ("plain", Datum::String("NULL")),
        ])
    });
    let map_numeric = nested(|p| {
        p.push_map([
            ("max", Datum::Numeric(Numeric::new(nines, 0))),
            ("tiny", Datum::Numeric(Numeric::new(-1, 39))),
        ])
    });
    let record = nested(|p| {
        p.push_list_with(|p| {
            p.push(Datum::Int32(pick(low, i32::MIN, i32::MAX)));
            p.push(Datum::String("(a,\"b\")\\"));
            p.push_list([Datum::Float64(f64::NEG_INFINITY), Datum::String("")]);
            p.push_list([Datum::Date(Date(pick(low, -2_451_545, 2_145_031_948)))]);
        })
    });
    let mut p = RowPacker::new();
    p.push(Datum::Int64(pick(low, i64::MIN, i64::MAX)));
    p.push(Datum::from_bool(low));
    p.push(Datum::Int16(pick(low, i16::MIN, i16::MAX)));
    p.push(Datum::Int32(pick(low, i32::MIN, i32::MAX)));
    p.push(Datum::Int64(pick(low, i64::MIN, i64::MAX)));
    p.push(Datum::UInt16(pick(low, 0, u16::MAX)));
    p.push(Datum::UInt32(pick(low, 0, u32::MAX)));
    p.push(Datum::UInt64(pick(low, 0, u64::MAX)));
    p.push(Datum::Float32(pick(low, f32::MIN_POSITIVE / 8.0, f32::MAX)));
    p.push(Datum::Float64(pick(
        low,
        -f64::MAX,
        f64::MIN_POSITIVE / 1024.0,
    )));
    p.push(Datum::Numeric(Numeric::new(pick(low, -nines, nines), 2)));
    p.push(Datum::Numeric(Numeric::new(
        pick(low, -9_999_999_999, 9_999_999_999),
        0,
    )));
    // Unconstrained numerics without trailing zeros, so that Avro's fixed scale keeps them.
    p.push(Datum::Numeric(Numeric::new(
        pick(low, -nines, 1),
        pick(low, 0, 39),
    )));
    p.push(Datum::String(pick(
        low,
        "",
        "héllo \"q\"\n\t\u{1}\u{7f} 😀 {a,b} (c) NULL",
    )));
    p.push(Datum::String(pick(low, "", "varchar")));
    p.push(Datum::String(pick(low, "", "a b")));
    p.push(Datum::Bytes(pick(low, &b""[..], &b"\x00\xff\\x\"{},"[..])));
    p.push(Datum::Date(Date(pick(low, -2_451_545, 2_145_031_948))));
    p.push(Datum::Time(Time(pick(low, 0, 86_399_999_999))));
    p.push(Datum::Timestamp(ts));
    p.push(Datum::Timestamp(ts_millis));
    p.push(Datum::TimestampTz(ts));
    p.push(Datum::TimestampTz(ts_millis));
    p.push(Datum::Interval(Interval {
        months: pick(low, i32::MIN, i32::MAX),
        days: pick(low, i32::MIN, i32::MAX),
        micros: pick(low, i64::MIN, i64::MAX),
    }));
    p.push(Datum::Uuid(pick(low, [0; 16], [0xff; 16])));
    // (A jsonb `null` is FORMAT JSON's `null`, which reads back as SQL NULL: see below.)
    p.push(Datum::Jsonb(pick(
        low,
        "[]",
        r#"{"a": [1, 2.50, 12345678901234567890123456789], "b": {"c": "d\"e"}}"#,
    )));
    p.push(list.unpack_first());
    p.push(list_list.unpack_first());
    p.push(map.unpack_first());
    p.push(map_numeric.unpack_first());
    p.push(record.unpack_first());
    p.finish()
}

/// A row of plain values: what a pipeline mostly sends.
fn ordinary() -> Row {
    let mut p = RowPacker::new();
    p.push(Datum::Int64(7));
    p.push(Datum::True);
    p.push(Datum::Int16(-1));
    p.push(Datum::Int32(42));
    p.push(Datum::Int64(-9_007_199_254_740_993));
    p.push(Datum::UInt16(1));
    p.push(Datum::UInt32(2));
    p.push(Datum::UInt64(3));
    p.push(Datum::Float32(0.1));
    p.push(Datum::Float64(-0.0));
    p.push(Datum::Numeric(Numeric::new(1_234_567_890_123_456_789, 2)));
    p.push(Datum::Numeric(Numeric::new(-12, 0)));
    p.push(Datum::Numeric(Numeric::new(
        3_141_592_653_589_793_238_462_643_383_279_502_884,
        37,
    )));
    p.push(Datum::String("text"));
    p.push(Datum::String("vc"));
    p.push(Datum::String("ab"));
    p.push(Datum::Bytes(b"hi"));
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
        Timestamp::parse("1969-12-31 23:59:59.999999").unwrap(),
    ));
    p.push(Datum::TimestampTz(
        Timestamp::parse("-0044-03-15 12:00:00").unwrap(),
    ));
    p.push(Datum::Interval(Interval {
        months: -14,
        days: 3,
        micros: -1,
    }));
    p.push(Datum::Uuid(parse_uuid(UUID).unwrap()));
    p.push(Datum::Jsonb(r#"{"a":[1,2],"b":null}"#));
    p.push(Datum::Null);
    p.push(Datum::Null);
    p.push(Datum::Null);
    p.push(Datum::Null);
    p.push(Datum::Null);
    p.finish()
}

/// A row whose every nullable column is NULL.
fn nulls(desc: &RelationDesc) -> Row {
    Row::pack(
        std::iter::once(Datum::Int64(0)).chain(std::iter::repeat_n(Datum::Null, desc.arity() - 1)),
    )
}

/// NaN and the infinities, which JSON writes as strings and Avro and TEXT as themselves.
fn specials() -> Row {
    let base = nulls(&wide_types());
    let mut datums: Vec<Datum<'_>> = base.iter().collect();
    datums[8] = Datum::Float32(f32::NAN);
    datums[9] = Datum::Float64(f64::INFINITY);
    Row::pack(&datums)
}

fn avro() -> FormatSpec {
    FormatSpec::Avro(avro_spec())
}

fn schema(text: Option<&str>) -> Schema {
    Schema::parse_str(text.expect("an Avro part has a schema")).unwrap()
}

/// Encodes `row` as key (column 0) and UPSERT value in `format`, decodes both, and checks
/// that they come back.
fn upsert_round_trip(desc: &RelationDesc, format: FormatSpec, row: &Row) {
    let encoder = encoder(config(
        desc.clone(),
        Some(vec![0]),
        Envelope::Upsert,
        format.clone(),
        format.clone(),
    ));
    let key = Row::pack([row.iter().next().unwrap()]);
    let pair = DiffPair {
        before: None,
        after: Some(row.clone()),
    };
    let message = encode(&encoder, &key, &pair);
    let key_desc = desc.project(&[0]);
    let (value, key_back) = match format {
        FormatSpec::Json => (
            row_from_json(desc, text(message.value()).unwrap()),
            row_from_json(&key_desc, text(message.key()).unwrap()),
        ),
        FormatSpec::Avro(_) => {
            let (value_id, value_body) = confluent_schema_id(message.value().unwrap()).unwrap();
            let (key_id, key_body) = confluent_schema_id(message.key().unwrap()).unwrap();
            assert_eq!((key_id, value_id), (1, 2));
            (
                row_from_avro(desc, &schema(encoder.value_schema()), value_body),
                row_from_avro(&key_desc, &schema(encoder.key_schema()), key_body),
            )
        }
        _ => unreachable!("TEXT and BYTES are checked column by column"),
    };
    assert_eq!(value.unwrap(), *row, "{format:?} value");
    assert_eq!(key_back.unwrap(), key, "{format:?} key");
}

fn debezium_round_trip(desc: &RelationDesc, format: FormatSpec, pair: &DiffPair<Row>) {
    let encoder = encoder(config(
        desc.clone(),
        None,
        Envelope::Debezium,
        format.clone(),
        format.clone(),
    ));
    let message = encode(&encoder, &Row::default(), pair);
    let back = match format {
        FormatSpec::Json => debezium_from_json(desc, text(message.value()).unwrap()),
        FormatSpec::Avro(_) => {
            let (_, body) = confluent_schema_id(message.value().unwrap()).unwrap();
            debezium_from_avro(desc, &schema(encoder.value_schema()), body)
        }
        _ => unreachable!("DEBEZIUM values are JSON or Avro"),
    };
    assert_eq!(back.unwrap(), *pair, "{format:?}");
}

/// Each column of `row` alone in FORMAT TEXT (and BYTES where it applies), as a value.
fn single_column_round_trips(desc: &RelationDesc, row: &Row) {
    for (index, datum) in row.iter().enumerate() {
        if datum.is_null() {
            continue;
        }
        let column = desc.column(index);
        let one =
            RelationDesc::empty().with_column(&column.name, column.typ.scalar_type.clone(), true);
        let single = Row::pack([datum]);
        let mut formats = vec![FormatSpec::Text];
        if matches!(
            column.typ.scalar_type,
            ScalarType::Bytes
                | ScalarType::Text
                | ScalarType::VarChar { .. }
                | ScalarType::Char { .. }
        ) {
            formats.push(FormatSpec::Bytes);
        }
        for format in formats {
            let encoder = SinkEncoder::new(
                config(
                    one.clone(),
                    None,
                    Envelope::Upsert,
                    FormatSpec::Json,
                    format.clone(),
                ),
                None,
            )
            .unwrap();
            let pair = DiffPair {
                before: None,
                after: Some(single.clone()),
            };
            let message = encode(&encoder, &Row::default(), &pair);
            let bytes = message.value().unwrap();
            let back = match format {
                FormatSpec::Text => row_from_text(&one, bytes),
                _ => row_from_bytes(&one, bytes),
            };
            assert_eq!(
                back.unwrap(),
                single,
                "{format:?} column {} {:?}",
                column.name,
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

#[test]
fn every_type_round_trips_at_its_extremes() {
    let desc = wide_types();
    for row in [extremes(true), extremes(false), ordinary(), nulls(&desc)] {
        upsert_round_trip(&desc, FormatSpec::Json, &row);
        upsert_round_trip(&desc, avro(), &row);
        single_column_round_trips(&desc, &row);
    }
}

#[test]
fn nan_and_infinities_round_trip() {
    let desc = wide_types();
    let row = specials();
    upsert_round_trip(&desc, FormatSpec::Json, &row);
    upsert_round_trip(&desc, avro(), &row);
    single_column_round_trips(&desc, &row);
    // Avro decimals have no NaN; JSON and TEXT write it.
    let mut datums: Vec<Datum<'_>> = row.iter().collect();
    datums[10] = Datum::Numeric(Numeric::NAN);
    datums[12] = Datum::Numeric(Numeric::NAN);
    let row = Row::pack(&datums);
    upsert_round_trip(&desc, FormatSpec::Json, &row);
    single_column_round_trips(&desc, &row);
}

#[test]
fn debezium_pairs_round_trip() {
    let desc = wide_types();
    let pairs = [
        DiffPair {
            before: Some(extremes(true)),
            after: Some(extremes(false)),
        },
        DiffPair {
            before: None,
            after: Some(ordinary()),
        },
        DiffPair {
            before: Some(nulls(&desc)),
            after: None,
        },
    ];
    for pair in &pairs {
        debezium_round_trip(&desc, FormatSpec::Json, pair);
        debezium_round_trip(&desc, avro(), pair);
    }
}

/// The golden tests' relation and row come back too, repeated column names and all.
#[test]
fn the_golden_row_round_trips() {
    let desc = all_types(true);
    let mut row: Vec<Datum<'_>> = Vec::new();
    let values = all_values();
    row.extend(values.iter());
    let row = Row::pack(&row);
    upsert_round_trip(&desc, FormatSpec::Json, &row);
    upsert_round_trip(&desc, avro(), &row);
    single_column_round_trips(&desc, &row);

    let repeated = RelationDesc::empty()
        .with_column("a", ScalarType::Int64, false)
        .with_column("a", ScalarType::Text, true)
        .with_column("a1", ScalarType::Text, true);
    let row = Row::pack([
        Datum::Int64(1),
        Datum::String("second"),
        Datum::String("third"),
    ]);
    upsert_round_trip(&repeated, FormatSpec::Json, &row);
    upsert_round_trip(&repeated, avro(), &row);
}

#[test]
fn numerics_wider_than_a_double_come_back_exactly() {
    let desc = RelationDesc::empty()
        .with_column("id", ScalarType::Int64, false)
        .with_column("amount", ScalarType::parse("numeric(38,2)").unwrap(), true);
    let exact = Numeric::parse("12345678901234567.89").unwrap();
    let row = Row::pack([Datum::Int64(1), Datum::Numeric(exact)]);
    upsert_round_trip(&desc, FormatSpec::Json, &row);
    upsert_round_trip(&desc, avro(), &row);
    single_column_round_trips(&desc, &row);
    let back = row_from_json(&desc, r#"{"id":1,"amount":12345678901234567.89}"#).unwrap();
    assert_eq!(back.iter().nth(1), Some(Datum::Numeric(exact)));
    assert_eq!(exact.to_string(), "12345678901234567.89");
    // Nested numerics keep their digits too.
    let list =
        RelationDesc::empty().with_column("l", ScalarType::parse("numeric list").unwrap(), true);
    let back = row_from_json(&list, "[[0.1000000000000000055511151231257827, 1e-39]]").unwrap();
    let expected = nested(|p| {
        p.push_list([
            Datum::Numeric(Numeric::new(
                1_000_000_000_000_000_055_511_151_231_257_827,
                34,
            )),
            Datum::Numeric(Numeric::new(1, 39)),
        ])
    });
    assert_eq!(back, expected);
}

#[test]
fn errors_name_the_column_and_its_declared_type() {
    let desc = wide_types();
    let error = row_from_json(&desc, r#"{"id":1,"n":"1e37"}"#).unwrap_err();
    assert_eq!(
        error,
        DecodeError::Column {
            column: "n".to_string(),
            typ: "numeric(38,2)".to_string(),
            problem: "numeric field overflow: a field with precision 38, scale 2 must round to an absolute value less than 10^36".to_string(),
        }
    );
    let error = row_from_json(&desc, r#"{"id":1,"l":[1,"x"]}"#).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"column "l" (integer list): element 1: expected an integer, found x"#
    );
    let error = row_from_json(&desc, r#"{"id":null}"#).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"column "id" (bigint): null in a NOT NULL column"#
    );
    let error = row_from_json(&desc, r#"{"id":1,"nope":2}"#).unwrap_err();
    assert!(
        error.to_string().starts_with(r#"unknown column "nope""#),
        "{error}"
    );
    let text =
        RelationDesc::empty().with_column("ts", ScalarType::parse("timestamp").unwrap(), true);
    let error = row_from_text(&text, b"300000-01-01 00:00:00").unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"column "ts" (timestamp): 300000-01-01 00:00:00 is out of range for a timestamp"#
    );
    let error = row_from_avro(&desc, &Schema::parse_str(r#""long""#).unwrap(), &[2]).unwrap_err();
    assert!(
        error.to_string().contains("expected an Avro record"),
        "{error}"
    );
    assert!(confluent_schema_id(&[1, 0, 0, 0, 1]).is_err());
}

// ---------------------------------------------------------------------------------------------
// Random rows.

/// A strategy for one value (a one-datum row) of `typ`; NULL as often as one in six when
/// `nullable`.
fn any_value(typ: &ScalarType, nullable: bool) -> BoxedStrategy<Row> {
    let value = any_non_null(typ);
    if nullable {
        prop_oneof![1 => Just(Row::pack([Datum::Null])), 5 => value].boxed()
    } else {
        value
    }
}

fn one(datum: Datum<'_>) -> Row {
    Row::pack([datum])
}

fn any_non_null(typ: &ScalarType) -> BoxedStrategy<Row> {
    const MAX_MANTISSA: i128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;
    let ts_micros = i64::MAX / MICROS_PER_DAY * MICROS_PER_DAY;
    match typ {
        ScalarType::Bool => any::<bool>().prop_map(|b| one(Datum::from_bool(b))).boxed(),
        ScalarType::Int16 => any::<i16>().prop_map(|v| one(Datum::Int16(v))).boxed(),
        ScalarType::Int32 => any::<i32>().prop_map(|v| one(Datum::Int32(v))).boxed(),
        ScalarType::Int64 => any::<i64>().prop_map(|v| one(Datum::Int64(v))).boxed(),
        ScalarType::UInt16 => any::<u16>().prop_map(|v| one(Datum::UInt16(v))).boxed(),
        ScalarType::UInt32 => any::<u32>().prop_map(|v| one(Datum::UInt32(v))).boxed(),
        ScalarType::UInt64 => any::<u64>().prop_map(|v| one(Datum::UInt64(v))).boxed(),
        // Every bit pattern; NaNs as the one NaN the decoders make.
        ScalarType::Float32 => any::<u32>()
            .prop_map(|bits| {
                let v = f32::from_bits(bits);
                one(Datum::Float32(if v.is_nan() { f32::NAN } else { v }))
            })
            .boxed(),
        ScalarType::Float64 => any::<u64>()
            .prop_map(|bits| {
                let v = f64::from_bits(bits);
                one(Datum::Float64(if v.is_nan() { f64::NAN } else { v }))
            })
            .boxed(),
        ScalarType::Numeric {
            precision: None,
            scale: None,
        } => (-MAX_MANTISSA..=MAX_MANTISSA, 0u8..=39)
            // Without trailing zeros, as Avro's fixed scale gives them back.
            .prop_map(|(mut mantissa, mut scale)| {
                while scale > 0 && mantissa % 10 == 0 {
                    mantissa /= 10;
                    scale -= 1;
                }
                one(Datum::Numeric(Numeric::new(mantissa, scale)))
            })
            .boxed(),
        ScalarType::Numeric { precision, scale } => {
            let scale = scale.unwrap_or(0);
            // Within the declared precision: the decoders refuse more digits.
            let max = precision
                .and_then(|p| 10i128.checked_pow(p as u32))
                .map_or(MAX_MANTISSA, |limit| (limit - 1).min(MAX_MANTISSA));
            (-max..=max)
                .prop_map(move |mantissa| one(Datum::Numeric(Numeric::new(mantissa, scale))))
                .boxed()
        }
        // Postgres text holds no NUL, and a varchar(n) at most n characters.
        ScalarType::Text | ScalarType::VarChar { max_length: None } => any::<String>()
            .prop_map(|s| one(Datum::String(&s.replace('\0', ""))))
            .boxed(),
        ScalarType::VarChar {
            max_length: Some(n),
        } => {
            let n = *n as usize;
            any::<String>()
                .prop_map(move |s| {
                    let s: String = s.chars().filter(|c| *c != '\0').take(n).collect();
                    one(Datum::String(&s))
                })
                .boxed()
        }
        ScalarType::Char { .. } => "[a-z {},\"\\\\]{0,5}"
            .prop_map(|s| one(Datum::String(s.trim_end_matches(' '))))
            .boxed(),
        ScalarType::Bytes => prop::collection::vec(any::<u8>(), 0..20)
            .prop_map(|b| one(Datum::Bytes(&b)))
            .boxed(),
        ScalarType::Uuid => any::<[u8; 16]>().prop_map(|u| one(Datum::Uuid(u))).boxed(),
        ScalarType::Jsonb => prop_oneof![
            any::<i64>().prop_map(|v| v.to_string()),
            any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
            (any::<String>(), -MAX_MANTISSA..=MAX_MANTISSA).prop_map(|(k, v)| format!(
                "{{{}: [{v}.5, true]}}",
                serde_json::to_string(&k).unwrap()
            )),
        ]
        .prop_map(|s| one(Datum::Jsonb(&s)))
        .boxed(),
        ScalarType::Date => (-2_451_545i32..=2_145_031_948)
            .prop_map(|d| one(Datum::Date(Date(d))))
            .boxed(),
        ScalarType::Time => (0u64..86_400_000_000)
            .prop_map(|t| one(Datum::Time(Time(t))))
            .boxed(),
        ScalarType::Timestamp { precision } | ScalarType::TimestampTz { precision } => {
            let millis = matches!(precision, Some(p) if *p <= 3);
            let tz = matches!(typ, ScalarType::TimestampTz { .. });
            (-ts_micros..=i64::MAX)
                .prop_map(move |mut micros| {
                    if millis {
                        micros = micros.div_euclid(1000) * 1000;
                        micros = micros.max(-ts_micros);
                    }
                    let ts = Timestamp(micros);
                    one(if tz {
                        Datum::TimestampTz(ts)
                    } else {
                        Datum::Timestamp(ts)
                    })
                })
                .boxed()
        }
        ScalarType::Interval => (any::<i32>(), any::<i32>(), any::<i64>())
            .prop_map(|(months, days, micros)| {
                one(Datum::Interval(Interval {
                    months,
                    days,
                    micros,
                }))
            })
            .boxed(),
        ScalarType::List { element } => prop::collection::vec(any_value(element, true), 0..4)
            .prop_map(|items| one_of(|p| p.push_list(items.iter().map(Row::unpack_first))))
            .boxed(),
        ScalarType::Map { value } => {
            prop::collection::btree_map(any::<String>(), any_value(value, true), 0..4)
                .prop_map(|entries| {
                    one_of(|p| {
                        p.push_map(entries.iter().map(|(k, v)| (k.as_str(), v.unpack_first())))
                    })
                })
                .boxed()
        }
        ScalarType::Record { fields } => fields
            .iter()
            .map(|(_, typ)| any_value(&typ.scalar_type, typ.nullable))
            .collect::<Vec<_>>()
            .prop_map(|values| one_of(|p| p.push_list(values.iter().map(Row::unpack_first))))
            .boxed(),
    }
}

fn one_of(f: impl FnOnce(&mut RowPacker)) -> Row {
    nested(f)
}

fn any_row(desc: &RelationDesc) -> impl Strategy<Value = Row> {
    desc.columns()
        .iter()
        .map(|c| any_value(&c.typ.scalar_type, c.typ.nullable))
        .collect::<Vec<_>>()
        .prop_map(|values| Row::pack(values.iter().map(Row::unpack_first)))
}

/// Random rows exercise the Avro decimal's full width and the text quoting rules; nested
/// numerics in JSON keep their digits.
fn random_types() -> RelationDesc {
    let mut desc = wide_types();
    let column_type = |s: &str| ColumnType {
        scalar_type: ScalarType::parse(s).unwrap(),
        nullable: true,
    };
    for (name, typ) in [
        ("nl", "numeric list"),
        ("rl", "map[text=>bytea] list"),
        ("il", "interval list list"),
    ] {
        let t = column_type(typ);
        desc = desc.with_column(name, t.scalar_type, t.nullable);
    }
    desc
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_rows_round_trip(row in any_row(&random_types())) {
        let desc = random_types();
        upsert_round_trip(&desc, FormatSpec::Json, &row);
        upsert_round_trip(&desc, avro(), &row);
        single_column_round_trips(&desc, &row);
    }

    #[test]
    fn random_debezium_pairs_round_trip(
        before in prop::option::of(any_row(&wide_types())),
        after in prop::option::of(any_row(&wide_types())),
    ) {
        prop_assume!(before.is_some() || after.is_some());
        let desc = wide_types();
        let pair = DiffPair { before, after };
        debezium_round_trip(&desc, FormatSpec::Json, &pair);
        debezium_round_trip(&desc, avro(), &pair);
    }
}

/// FORMAT JSON embeds a jsonb value as it is, so the jsonb `null` and SQL NULL are both
/// `null` there and read back as SQL NULL; Avro and TEXT keep them apart.
#[test]
fn a_jsonb_null_reads_back_as_sql_null_from_json_only() {
    let desc = RelationDesc::empty()
        .with_column("id", ScalarType::Int64, false)
        .with_column("j", ScalarType::Jsonb, true);
    let row = Row::pack([Datum::Int64(1), Datum::Jsonb("null")]);
    upsert_round_trip(&desc, avro(), &row);
    single_column_round_trips(&desc, &row);
    let back = row_from_json(&desc, r#"{"id":1,"j":null}"#).unwrap();
    assert_eq!(back, Row::pack([Datum::Int64(1), Datum::Null]));
}

/// The declared types hold as Postgres holds them: numerics rounded to their scale (half away
/// from zero) and refused beyond their precision, varchar(n) and char(n) refused beyond n
/// characters unless the excess is blanks, floats refused beyond their range, no NUL in text,
/// no column named twice.
#[test]
fn values_are_held_to_their_declared_types() {
    let typ = |t: &str| ScalarType::parse(t).unwrap();
    let desc = RelationDesc::empty()
        .with_column("id", ScalarType::Int64, false)
        .with_column("amt", typ("numeric(5,2)"), true)
        .with_column("v", typ("varchar(3)"), true)
        .with_column("c", typ("char(3)"), true)
        .with_column("f", typ("real"), true)
        .with_column("d", typ("double precision"), true)
        .with_column("t", typ("text"), true)
        .with_column("whole", typ("numeric(3)"), true);
    let value = |json: &str, column: usize| {
        row_from_json(&desc, json)
            .map(|row| match row.iter().nth(column).unwrap() {
                Datum::Numeric(n) => n.to_string(),
                Datum::String(s) => s.to_string(),
                Datum::Float32(f) => f.to_string(),
                Datum::Float64(f) => format!("{f:e}"),
                other => format!("{other:?}"),
            })
            .map_err(|e| e.to_string())
    };
    // Rounding half away from zero, as Postgres's numeric(5,2) does.
    assert_eq!(value(r#"{"id":1,"amt":1.005}"#, 1).unwrap(), "1.01");
    assert_eq!(value(r#"{"id":1,"amt":-1.005}"#, 1).unwrap(), "-1.01");
    assert_eq!(value(r#"{"id":1,"amt":1.004}"#, 1).unwrap(), "1.00");
    assert_eq!(value(r#"{"id":1,"amt":"999.994"}"#, 1).unwrap(), "999.99");
    assert_eq!(value(r#"{"id":1,"amt":2}"#, 1).unwrap(), "2.00");
    assert_eq!(value(r#"{"id":1,"whole":"-2.5"}"#, 7).unwrap(), "-3");
    let overflow = r#"column "amt" (numeric(5,2)): numeric field overflow: a field with precision 5, scale 2 must round to an absolute value less than 10^3"#;
    assert_eq!(
        value(r#"{"id":1,"amt":123456.78}"#, 1).unwrap_err(),
        overflow
    );
    // 999.995 rounds up to 1000.00, which has four digits before the point.
    assert_eq!(value(r#"{"id":1,"amt":999.995}"#, 1).unwrap_err(), overflow);
    assert_eq!(
        value(r#"{"id":1,"whole":1000}"#, 7).unwrap_err(),
        r#"column "whole" (numeric(3,0)): numeric field overflow: a field with precision 3, scale 0 must round to an absolute value less than 10^3"#
    );
    assert_eq!(value(r#"{"id":1,"amt":"NaN"}"#, 1).unwrap(), "NaN");

    assert_eq!(value(r#"{"id":1,"v":"abc"}"#, 2).unwrap(), "abc");
    assert_eq!(value(r#"{"id":1,"v":"abc   "}"#, 2).unwrap(), "abc");
    assert_eq!(
        value(r#"{"id":1,"v":"abcdef"}"#, 2).unwrap_err(),
        r#"column "v" (character varying(3)): value too long for type character varying(3)"#
    );
    assert_eq!(value(r#"{"id":1,"v":"ééé"}"#, 2).unwrap(), "ééé");
    assert_eq!(value(r#"{"id":1,"c":"ab"}"#, 3).unwrap(), "ab");
    assert_eq!(value(r#"{"id":1,"c":"abc  "}"#, 3).unwrap(), "abc");
    assert_eq!(
        value(r#"{"id":1,"c":"abcd"}"#, 3).unwrap_err(),
        r#"column "c" (character(3)): value too long for type character(3)"#
    );

    assert_eq!(
        value(r#"{"id":1,"f":1e300}"#, 4).unwrap_err(),
        r#"column "f" (real): "1e300" is out of range for type real"#
    );
    assert_eq!(
        value(r#"{"id":1,"f":"-1e39"}"#, 4).unwrap_err(),
        r#"column "f" (real): "-1e39" is out of range for type real"#
    );
    assert_eq!(
        value(r#"{"id":1,"f":1e-50}"#, 4).unwrap_err(),
        r#"column "f" (real): "1e-50" is out of range for type real"#
    );
    assert_eq!(
        value(r#"{"id":1,"d":1e400}"#, 5).unwrap_err(),
        r#"column "d" (double precision): "1e400" is out of range for type double precision"#
    );
    assert_eq!(value(r#"{"id":1,"d":1e300}"#, 5).unwrap(), "1e300");
    assert_eq!(value(r#"{"id":1,"f":"Infinity"}"#, 4).unwrap(), "inf");
    assert_eq!(value(r#"{"id":1,"f":0.0}"#, 4).unwrap(), "0");

    assert_eq!(
        value(r#"{"id":1,"t":"a\u0000b"}"#, 6).unwrap_err(),
        r#"column "t" (text): invalid byte sequence for encoding "UTF8": 0x00"#
    );
    assert_eq!(
        value(r#"{"id":1,"v":"\u0000"}"#, 2).unwrap_err(),
        r#"column "v" (character varying(3)): invalid byte sequence for encoding "UTF8": 0x00"#
    );
    assert_eq!(
        value(r#"{"id":1,"t":"x","t":"y"}"#, 6).unwrap_err(),
        r#"column "t" appears twice"#
    );
    // TEXT reads are held to the same types.
    let vc = RelationDesc::empty().with_column("v", typ("varchar(3)"), false);
    assert_eq!(
        outflow_encoders::decode::row_from_text(&vc, b"abcd")
            .unwrap_err()
            .to_string(),
        r#"column "v" (character varying(3)): value too long for type character varying(3)"#
    );
}
