//! Row model tests: packing round trips, ordering, serde, columnation.

use std::cmp::Ordering;

use columnation::ColumnStack;
use proptest::prelude::*;

use super::*;

fn sample_datums() -> Vec<Datum<'static>> {
    vec![
        Datum::Null,
        Datum::False,
        Datum::True,
        Datum::Int16(-7),
        Datum::Int32(i32::MIN),
        Datum::Int64(i64::MAX),
        Datum::UInt16(65_535),
        Datum::UInt32(4_000_000_000),
        Datum::UInt64(u64::MAX),
        Datum::Float32(1.5),
        Datum::Float64(f64::NAN),
        Datum::Float64(-0.0),
        Datum::Numeric(Numeric::new(9950, 2)),
        Datum::Numeric(Numeric::NAN),
        Datum::String("héllo"),
        Datum::Bytes(&[0, 1, 255]),
        Datum::Date(Date(19_000)),
        Datum::Time(Time(3_600_000_001)),
        Datum::Timestamp(Timestamp(-1)),
        Datum::TimestampTz(Timestamp(1_700_000_000_000_000)),
        Datum::Interval(Interval {
            months: 1,
            days: -2,
            micros: 3,
        }),
        Datum::Uuid([7; 16]),
        Datum::Jsonb(r#"{"a":[1,2]}"#),
    ]
}

#[test]
fn every_datum_round_trips() {
    let datums = sample_datums();
    let row = Row::pack_slice(&datums);
    let back = row.unpack();
    assert_eq!(back.len(), datums.len());
    for (a, b) in datums.iter().zip(back.iter()) {
        assert_eq!(a.cmp(b), Ordering::Equal, "{a:?} vs {b:?}");
    }
    assert_eq!(Row::from_bytes(row.data().to_vec()).unwrap(), row);
}

#[test]
fn nested_lists_records_and_maps() {
    let mut packer = RowPacker::new();
    packer.push(Datum::Int64(1));
    packer.push_list([Datum::Int32(1), Datum::Null, Datum::Int32(3)]);
    packer.push_map([("b", Datum::String("two")), ("a", Datum::Null)]);
    packer.push_list_with(|p| {
        p.push(Datum::String("inner"));
        p.push_list([Datum::True]);
    });
    let row = packer.finish();
    let datums = row.unpack();
    let Datum::List(list) = datums[1] else {
        panic!("not a list: {:?}", datums[1])
    };
    assert_eq!(
        list.iter().collect::<Vec<_>>(),
        vec![Datum::Int32(1), Datum::Null, Datum::Int32(3)]
    );
    let Datum::Map(map) = datums[2] else {
        panic!("not a map")
    };
    assert_eq!(
        map.iter().collect::<Vec<_>>(),
        vec![("a", Datum::Null), ("b", Datum::String("two"))]
    );
    let Datum::List(record) = datums[3] else {
        panic!("not a record")
    };
    let fields: Vec<_> = record.iter().collect();
    assert_eq!(fields[0], Datum::String("inner"));
    assert!(matches!(fields[1], Datum::List(l) if l.len() == 1));
}

#[test]
fn corrupt_bytes_are_refused() {
    assert!(Row::from_bytes(vec![99]).is_err());
    assert!(Row::from_bytes(vec![5, 1, 2]).is_err());
    assert!(Row::from_bytes(vec![12, 2, 0, 0, 0, 0xff, 0xfe]).is_err());
    assert!(Row::from_bytes(vec![21, 1, 0, 0, 0, 99]).is_err());
}

#[test]
fn ordering_is_by_datum() {
    let r = |d: &[Datum]| Row::pack_slice(d);
    assert!(r(&[Datum::Int64(2)]) < r(&[Datum::Int64(10)]));
    assert!(r(&[Datum::Int64(-1)]) < r(&[Datum::Int64(0)]));
    assert!(r(&[Datum::Null]) < r(&[Datum::Int64(i64::MIN)]));
    assert!(r(&[Datum::String("a")]) < r(&[Datum::String("b")]));
    assert!(r(&[Datum::Int64(1), Datum::String("z")]) < r(&[Datum::Int64(2), Datum::String("a")]));
    assert!(r(&[Datum::Int64(1)]) < r(&[Datum::Int64(1), Datum::Null]));
    assert!(r(&[Datum::Float64(-1.0)]) < r(&[Datum::Float64(0.5)]));
    assert!(r(&[Datum::Numeric(Numeric::new(5, 1))]) < r(&[Datum::Numeric(Numeric::new(6, 0))]));
}

#[test]
fn serde_round_trip() {
    let row = Row::pack_slice(&sample_datums());
    let json = serde_json::to_vec(&row).unwrap();
    assert_eq!(serde_json::from_slice::<Row>(&json).unwrap(), row);
    assert!(serde_json::from_slice::<Row>(b"[99]").is_err());
}

#[test]
fn columnation_stack_holds_rows() {
    let rows: Vec<Row> = (0..1000i64)
        .map(|i| {
            Row::pack_slice(&[
                Datum::Int64(i),
                Datum::String(if i % 2 == 0 { "even" } else { "odd" }),
            ])
        })
        .collect();
    let mut stack = ColumnStack::<Row>::default();
    for row in &rows {
        stack.copy(row);
    }
    assert_eq!(stack.len(), rows.len());
    for (held, original) in stack.iter().zip(rows.iter()) {
        assert_eq!(held, original);
    }
    let mut allocations = 0;
    stack.heap_size(|_, capacity| allocations += usize::from(capacity > 0));
    assert!(
        allocations < rows.len() / 10,
        "rows were not region-allocated: {allocations} allocations"
    );
    stack.clear();
    assert_eq!(stack.len(), 0);
}

fn arb_datum() -> impl Strategy<Value = OwnedDatum> {
    prop_oneof![
        Just(OwnedDatum::Null),
        any::<bool>().prop_map(OwnedDatum::Bool),
        any::<i64>().prop_map(OwnedDatum::Int64),
        any::<i32>().prop_map(OwnedDatum::Int32),
        any::<f64>().prop_map(OwnedDatum::Float64),
        (any::<i64>(), 0u8..10).prop_map(|(m, s)| OwnedDatum::Numeric(m, s)),
        ".{0,12}".prop_map(OwnedDatum::Text),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(OwnedDatum::Bytes),
        proptest::collection::vec(any::<i16>(), 0..4).prop_map(OwnedDatum::List),
    ]
}

#[derive(Clone, Debug)]
enum OwnedDatum {
    Null,
    Bool(bool),
    Int64(i64),
    Int32(i32),
    Float64(f64),
    Numeric(i64, u8),
    Text(String),
    Bytes(Vec<u8>),
    List(Vec<i16>),
}

fn pack(datums: &[OwnedDatum]) -> Row {
    let mut p = RowPacker::new();
    for d in datums {
        match d {
            OwnedDatum::Null => p.push(Datum::Null),
            OwnedDatum::Bool(b) => p.push(Datum::from_bool(*b)),
            OwnedDatum::Int64(i) => p.push(Datum::Int64(*i)),
            OwnedDatum::Int32(i) => p.push(Datum::Int32(*i)),
            OwnedDatum::Float64(f) => p.push(Datum::Float64(*f)),
            OwnedDatum::Numeric(m, s) => p.push(Datum::Numeric(Numeric::new(*m as i128, *s))),
            OwnedDatum::Text(s) => p.push(Datum::String(s)),
            OwnedDatum::Bytes(b) => p.push(Datum::Bytes(b)),
            OwnedDatum::List(l) => p.push_list(l.iter().map(|i| Datum::Int16(*i))),
        }
    }
    p.finish()
}

proptest! {
    #[test]
    fn packing_round_trips(datums in proptest::collection::vec(arb_datum(), 0..6)) {
        let row = pack(&datums);
        let again = Row::pack(row.iter());
        prop_assert_eq!(&again, &row);
        prop_assert_eq!(Row::from_bytes(row.data().to_vec()).unwrap(), row);
    }

    #[test]
    fn order_agrees_with_equality(
        a in proptest::collection::vec(arb_datum(), 0..4),
        b in proptest::collection::vec(arb_datum(), 0..4),
        c in proptest::collection::vec(arb_datum(), 0..4),
    ) {
        let (ra, rb, rc) = (pack(&a), pack(&b), pack(&c));
        prop_assert_eq!(ra.cmp(&rb) == Ordering::Equal, ra == rb);
        prop_assert_eq!(ra.cmp(&rb), rb.cmp(&ra).reverse());
        if ra <= rb && rb <= rc {
            prop_assert!(ra <= rc);
        }
    }
}
