//! `Datum`, a borrowed value, and `Row`, a packed sequence of datums.
//!
//! # Packed encoding (version 1)
//!
//! A row is the concatenation of its datums; each datum is a one-byte tag followed by a
//! payload (little-endian integers):
//!
//! | tag | datum | payload |
//! |---|---|---|
//! | 0 | NULL | — |
//! | 1, 2 | false, true | — |
//! | 3, 4, 5 | int2, int4, int8 | 2, 4, 8 bytes |
//! | 6, 7, 8 | uint2, uint4, uint8 | 2, 4, 8 bytes |
//! | 9, 10 | float4, float8 | IEEE bits, 4, 8 bytes |
//! | 11 | numeric | i128 mantissa (16 bytes), scale (1 byte; 255 = NaN) |
//! | 12 | text | u32 length, UTF-8 bytes |
//! | 13 | bytea | u32 length, bytes |
//! | 14 | date | i32 days since 1970-01-01 |
//! | 15 | time | u64 microseconds since midnight |
//! | 16, 17 | timestamp, timestamptz | i64 microseconds since 1970-01-01 (UTC) |
//! | 18 | interval | i32 months, i32 days, i64 microseconds |
//! | 19 | uuid | 16 bytes |
//! | 20 | jsonb | u32 length, JSON text |
//! | 21 | list / record | u32 length, the packed datums |
//! | 22 | map | u32 length, packed (text key, value) pairs in key order |
//!
//! The encoding is the input of [`crate::hash::stable_key_hash`], which decides which worker
//! owns a key and is part of the recovery contract: this table must never change.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::values::{Date, Interval, Numeric, Time, Timestamp};

/// A borrowed value of any scalar type. Lists and records are both [`DatumList`]s; which
/// one a value is comes from its column's type.
#[derive(Clone, Copy, Debug)]
pub enum Datum<'a> {
    Null,
    False,
    True,
    Int16(i16),
    Int32(i32),
    Int64(i64),
    UInt16(u16),
    UInt32(u32),
    UInt64(u64),
    Float32(f32),
    Float64(f64),
    Numeric(Numeric),
    String(&'a str),
    Bytes(&'a [u8]),
    Date(Date),
    Time(Time),
    Timestamp(Timestamp),
    TimestampTz(Timestamp),
    Interval(Interval),
    Uuid([u8; 16]),
    /// A JSON document as its text.
    Jsonb(&'a str),
    List(DatumList<'a>),
    Map(DatumMap<'a>),
}

impl<'a> Datum<'a> {
    pub fn is_null(&self) -> bool {
        matches!(self, Datum::Null)
    }

    pub fn from_bool(b: bool) -> Datum<'static> {
        if b {
            Datum::True
        } else {
            Datum::False
        }
    }

    /// The tag of the packed encoding, which is also the order between datums of different
    /// kinds (NULL first, as a missing value).
    pub(crate) fn tag(&self) -> u8 {
        match self {
            Datum::Null => 0,
            Datum::False => 1,
            Datum::True => 2,
            Datum::Int16(_) => 3,
            Datum::Int32(_) => 4,
            Datum::Int64(_) => 5,
            Datum::UInt16(_) => 6,
            Datum::UInt32(_) => 7,
            Datum::UInt64(_) => 8,
            Datum::Float32(_) => 9,
            Datum::Float64(_) => 10,
            Datum::Numeric(_) => 11,
            Datum::String(_) => 12,
            Datum::Bytes(_) => 13,
            Datum::Date(_) => 14,
            Datum::Time(_) => 15,
            Datum::Timestamp(_) => 16,
            Datum::TimestampTz(_) => 17,
            Datum::Interval(_) => 18,
            Datum::Uuid(_) => 19,
            Datum::Jsonb(_) => 20,
            Datum::List(_) => 21,
            Datum::Map(_) => 22,
        }
    }
}

impl PartialEq for Datum<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Datum<'_> {}

impl PartialOrd for Datum<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Datum<'_> {
    /// Values of one type in their natural order (floats by IEEE total order, numerics by
    /// value then scale, text by bytes); values of different types by kind. Equal exactly
    /// when the packed encodings are equal.
    fn cmp(&self, other: &Self) -> Ordering {
        use Datum::*;
        match (self, other) {
            (Int16(a), Int16(b)) => a.cmp(b),
            (Int32(a), Int32(b)) => a.cmp(b),
            (Int64(a), Int64(b)) => a.cmp(b),
            (UInt16(a), UInt16(b)) => a.cmp(b),
            (UInt32(a), UInt32(b)) => a.cmp(b),
            (UInt64(a), UInt64(b)) => a.cmp(b),
            (Float32(a), Float32(b)) => a.total_cmp(b),
            (Float64(a), Float64(b)) => a.total_cmp(b),
            (Numeric(a), Numeric(b)) => a.cmp(b),
            (String(a), String(b)) => a.cmp(b),
            (Bytes(a), Bytes(b)) => a.cmp(b),
            (Date(a), Date(b)) => a.cmp(b),
            (Time(a), Time(b)) => a.cmp(b),
            (Timestamp(a), Timestamp(b)) => a.cmp(b),
            (TimestampTz(a), TimestampTz(b)) => a.cmp(b),
            (Interval(a), Interval(b)) => a.cmp(b),
            (Uuid(a), Uuid(b)) => a.cmp(b),
            (Jsonb(a), Jsonb(b)) => a.cmp(b),
            (List(a), List(b)) => a.iter().cmp(b.iter()),
            (Map(a), Map(b)) => a.iter().cmp(b.iter()),
            _ => self.tag().cmp(&other.tag()),
        }
    }
}

/// A packed list of datums borrowed from a row (a list or a record value).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct DatumList<'a> {
    data: &'a [u8],
}

impl<'a> DatumList<'a> {
    pub fn iter(&self) -> DatumIter<'a> {
        DatumIter { data: self.data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }
}

impl fmt::Debug for DatumList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A packed map from text to datums, in key order, borrowed from a row.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct DatumMap<'a> {
    data: &'a [u8],
}

impl<'a> DatumMap<'a> {
    pub fn iter(&self) -> DatumMapIter<'a> {
        DatumMapIter {
            inner: DatumIter { data: self.data },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl fmt::Debug for DatumMap<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Iterates the datums of a row or list.
#[derive(Clone)]
pub struct DatumIter<'a> {
    data: &'a [u8],
}

impl<'a> Iterator for DatumIter<'a> {
    type Item = Datum<'a>;

    fn next(&mut self) -> Option<Datum<'a>> {
        if self.data.is_empty() {
            return None;
        }
        // Rows are only built by `RowPacker` or checked by `Row::from_bytes`, so a decoding
        // failure is a broken invariant, and text needs no second UTF-8 check.
        let (datum, rest) = read_datum::<true>(self.data).expect("corrupt packed row");
        self.data = rest;
        Some(datum)
    }
}

/// Iterates the entries of a map.
#[derive(Clone)]
pub struct DatumMapIter<'a> {
    inner: DatumIter<'a>,
}

impl<'a> Iterator for DatumMapIter<'a> {
    type Item = (&'a str, Datum<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let key = match self.inner.next()? {
            Datum::String(s) => s,
            other => panic!("map key is not text: {other:?}"),
        };
        let value = self.inner.next().expect("map key without a value");
        Some((key, value))
    }
}

fn split(data: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (data.len() >= n).then(|| data.split_at(n))
}

fn read_array<const N: usize>(data: &[u8]) -> Option<([u8; N], &[u8])> {
    let (head, rest) = split(data, N)?;
    Some((head.try_into().ok()?, rest))
}

fn read_len_prefixed(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = read_array::<4>(data)?;
    split(rest, u32::from_le_bytes(len) as usize)
}

/// Decodes one datum, returning it and the rest; `None` on malformed input. `TRUSTED` skips
/// the UTF-8 check of text, for bytes that were checked when the row was made.
fn read_datum<const TRUSTED: bool>(data: &[u8]) -> Option<(Datum<'_>, &[u8])> {
    let (&tag, rest) = data.split_first()?;
    Some(match tag {
        0 => (Datum::Null, rest),
        1 => (Datum::False, rest),
        2 => (Datum::True, rest),
        3 => read_array(rest).map(|(b, r)| (Datum::Int16(i16::from_le_bytes(b)), r))?,
        4 => read_array(rest).map(|(b, r)| (Datum::Int32(i32::from_le_bytes(b)), r))?,
        5 => read_array(rest).map(|(b, r)| (Datum::Int64(i64::from_le_bytes(b)), r))?,
        6 => read_array(rest).map(|(b, r)| (Datum::UInt16(u16::from_le_bytes(b)), r))?,
        7 => read_array(rest).map(|(b, r)| (Datum::UInt32(u32::from_le_bytes(b)), r))?,
        8 => read_array(rest).map(|(b, r)| (Datum::UInt64(u64::from_le_bytes(b)), r))?,
        9 => read_array(rest).map(|(b, r)| (Datum::Float32(f32::from_le_bytes(b)), r))?,
        10 => read_array(rest).map(|(b, r)| (Datum::Float64(f64::from_le_bytes(b)), r))?,
        11 => {
            let (m, r) = read_array::<16>(rest)?;
            let (&scale, r) = r.split_first()?;
            let n = if scale == u8::MAX {
                Numeric::NAN
            } else {
                Numeric::new(i128::from_le_bytes(m), scale)
            };
            (Datum::Numeric(n), r)
        }
        12 => {
            let (bytes, r) = read_len_prefixed(rest)?;
            (Datum::String(read_str::<TRUSTED>(bytes)?), r)
        }
        13 => read_len_prefixed(rest).map(|(b, r)| (Datum::Bytes(b), r))?,
        14 => read_array(rest).map(|(b, r)| (Datum::Date(Date(i32::from_le_bytes(b))), r))?,
        15 => read_array(rest).map(|(b, r)| (Datum::Time(Time(u64::from_le_bytes(b))), r))?,
        16 => read_array(rest)
            .map(|(b, r)| (Datum::Timestamp(Timestamp(i64::from_le_bytes(b))), r))?,
        17 => read_array(rest)
            .map(|(b, r)| (Datum::TimestampTz(Timestamp(i64::from_le_bytes(b))), r))?,
        18 => {
            let (months, r) = read_array::<4>(rest)?;
            let (days, r) = read_array::<4>(r)?;
            let (micros, r) = read_array::<8>(r)?;
            let iv = Interval {
                months: i32::from_le_bytes(months),
                days: i32::from_le_bytes(days),
                micros: i64::from_le_bytes(micros),
            };
            (Datum::Interval(iv), r)
        }
        19 => read_array(rest).map(|(b, r)| (Datum::Uuid(b), r))?,
        20 => {
            let (bytes, r) = read_len_prefixed(rest)?;
            (Datum::Jsonb(read_str::<TRUSTED>(bytes)?), r)
        }
        21 => read_len_prefixed(rest).map(|(b, r)| (Datum::List(DatumList { data: b }), r))?,
        22 => read_len_prefixed(rest).map(|(b, r)| (Datum::Map(DatumMap { data: b }), r))?,
        _ => return None,
    })
}

fn read_str<const TRUSTED: bool>(bytes: &[u8]) -> Option<&str> {
    if TRUSTED {
        // SAFETY: trusted bytes come from a `Row`, whose text was a `&str` when packed or was
        // checked by `validate` in `Row::from_bytes`.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// Checks that `data` is a well-formed packed sequence of datums.
fn validate(mut data: &[u8]) -> bool {
    while !data.is_empty() {
        match read_datum::<false>(data) {
            Some((Datum::List(l), rest)) => {
                if !validate(l.data) {
                    return false;
                }
                data = rest;
            }
            Some((Datum::Map(m), rest)) => {
                if !validate(m.data) {
                    return false;
                }
                data = rest;
            }
            Some((_, rest)) => data = rest,
            None => return false,
        }
    }
    true
}

/// An owned, packed sequence of datums. Rows compare datum by datum ([`Datum`]'s order),
/// hash and compare for equality by their packed bytes, and serialize as those bytes.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Row {
    data: Vec<u8>,
}

impl Row {
    /// Packs the datums of an iterator.
    pub fn pack<'a, I, D>(datums: I) -> Row
    where
        I: IntoIterator<Item = D>,
        D: std::borrow::Borrow<Datum<'a>>,
    {
        let mut packer = RowPacker::new();
        for d in datums {
            packer.push(*d.borrow());
        }
        packer.finish()
    }

    pub fn pack_slice(datums: &[Datum<'_>]) -> Row {
        Row::pack(datums)
    }

    pub fn iter(&self) -> DatumIter<'_> {
        DatumIter { data: &self.data }
    }

    pub fn unpack(&self) -> Vec<Datum<'_>> {
        self.iter().collect()
    }

    pub fn unpack_first(&self) -> Datum<'_> {
        self.iter().next().expect("unpack_first on an empty row")
    }

    /// The packed bytes (version 1 encoding, see the module docs).
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Reads a row back from packed bytes, checking them.
    pub fn from_bytes(data: Vec<u8>) -> Result<Row, CorruptRow> {
        if validate(&data) {
            Ok(Row { data })
        } else {
            Err(CorruptRow { len: data.len() })
        }
    }

    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    /// A new row holding the datums at `columns`, in that order.
    pub fn project(&self, columns: &[usize]) -> Row {
        let datums = self.unpack();
        Row::pack(columns.iter().map(|&c| datums[c]))
    }
}

/// Bytes that are not a packed row.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{len} bytes are not a packed row")]
pub struct CorruptRow {
    pub len: usize,
}

impl Ord for Row {
    fn cmp(&self, other: &Self) -> Ordering {
        if self.data == other.data {
            return Ordering::Equal;
        }
        self.iter().cmp(other.iter())
    }
}

impl PartialOrd for Row {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Row")?;
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for Row {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.data)
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Row, D::Error> {
        struct RowVisitor;
        impl<'de> serde::de::Visitor<'de> for RowVisitor {
            type Value = Row;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("packed row bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Row, E> {
                Row::from_bytes(v.to_vec()).map_err(E::custom)
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Row, E> {
                Row::from_bytes(v).map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Row, A::Error> {
                let mut data = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(b) = seq.next_element::<u8>()? {
                    data.push(b);
                }
                Row::from_bytes(data).map_err(serde::de::Error::custom)
            }
        }
        deserializer.deserialize_bytes(RowVisitor)
    }
}

/// Builds a row datum by datum, including nested lists, records and maps.
#[derive(Default)]
pub struct RowPacker {
    data: Vec<u8>,
}

impl RowPacker {
    pub fn new() -> RowPacker {
        RowPacker::default()
    }

    /// Clears the packer so it can build another row, keeping its allocation.
    pub fn clear(&mut self) {
        self.data.clear();
    }

    pub fn finish(self) -> Row {
        Row { data: self.data }
    }

    /// A row of what was pushed so far, leaving the packer empty for reuse.
    pub fn finish_and_reuse(&mut self) -> Row {
        let row = Row {
            data: self.data.clone(),
        };
        self.data.clear();
        row
    }

    fn push_len_prefixed(&mut self, tag: u8, bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).expect("datum larger than 4 GiB");
        self.data.push(tag);
        self.data.extend_from_slice(&len.to_le_bytes());
        self.data.extend_from_slice(bytes);
    }

    pub fn push(&mut self, datum: Datum<'_>) {
        let tag = datum.tag();
        match datum {
            Datum::Null | Datum::False | Datum::True => self.data.push(tag),
            Datum::Int16(v) => self.push_fixed(tag, &v.to_le_bytes()),
            Datum::Int32(v) => self.push_fixed(tag, &v.to_le_bytes()),
            Datum::Int64(v) => self.push_fixed(tag, &v.to_le_bytes()),
            Datum::UInt16(v) => self.push_fixed(tag, &v.to_le_bytes()),
            Datum::UInt32(v) => self.push_fixed(tag, &v.to_le_bytes()),
            Datum::UInt64(v) => self.push_fixed(tag, &v.to_le_bytes()),
            Datum::Float32(v) => self.push_fixed(tag, &v.to_le_bytes()),
            Datum::Float64(v) => self.push_fixed(tag, &v.to_le_bytes()),
            Datum::Numeric(n) => {
                self.data.push(tag);
                let (mantissa, scale) = if n.is_nan() {
                    (0, u8::MAX)
                } else {
                    (n.mantissa(), n.scale())
                };
                self.data.extend_from_slice(&mantissa.to_le_bytes());
                self.data.push(scale);
            }
            Datum::String(s) => self.push_len_prefixed(tag, s.as_bytes()),
            Datum::Bytes(b) => self.push_len_prefixed(tag, b),
            Datum::Date(d) => self.push_fixed(tag, &d.0.to_le_bytes()),
            Datum::Time(t) => self.push_fixed(tag, &t.0.to_le_bytes()),
            Datum::Timestamp(t) | Datum::TimestampTz(t) => self.push_fixed(tag, &t.0.to_le_bytes()),
            Datum::Interval(iv) => {
                self.data.push(tag);
                self.data.extend_from_slice(&iv.months.to_le_bytes());
                self.data.extend_from_slice(&iv.days.to_le_bytes());
                self.data.extend_from_slice(&iv.micros.to_le_bytes());
            }
            Datum::Uuid(u) => self.push_fixed(tag, &u),
            Datum::Jsonb(s) => self.push_len_prefixed(tag, s.as_bytes()),
            Datum::List(l) => self.push_len_prefixed(tag, l.data),
            Datum::Map(m) => self.push_len_prefixed(tag, m.data),
        }
    }

    fn push_fixed(&mut self, tag: u8, bytes: &[u8]) {
        self.data.push(tag);
        self.data.extend_from_slice(bytes);
    }

    /// Pushes a list (or record) whose elements `f` pushes.
    pub fn push_list_with(&mut self, f: impl FnOnce(&mut RowPacker)) {
        self.push_nested(21, f)
    }

    /// Pushes a list of the given datums.
    pub fn push_list<'a>(&mut self, datums: impl IntoIterator<Item = Datum<'a>>) {
        self.push_list_with(|p| datums.into_iter().for_each(|d| p.push(d)))
    }

    /// Pushes a map. Entries are sorted by key (and must not repeat a key) so that equal maps
    /// pack to equal bytes.
    pub fn push_map<'a>(&mut self, entries: impl IntoIterator<Item = (&'a str, Datum<'a>)>) {
        let mut entries: Vec<_> = entries.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        self.push_nested(22, |p| {
            for (k, v) in entries {
                p.push(Datum::String(k));
                p.push(v);
            }
        })
    }

    fn push_nested(&mut self, tag: u8, f: impl FnOnce(&mut RowPacker)) {
        self.data.push(tag);
        let len_at = self.data.len();
        self.data.extend_from_slice(&[0; 4]);
        f(self);
        let len = u32::try_from(self.data.len() - len_at - 4).expect("datum larger than 4 GiB");
        self.data[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// Rows held in flight sit in region-allocated stacks: a row's bytes are copied into a few
/// large shared allocations instead of one allocation per row.
mod columnation_impl {
    use columnation::{Columnation, Region};

    use super::Row;

    impl Columnation for Row {
        type InnerRegion = RowRegion;
    }

    /// The region of [`Row`]s: the bytes live in the region of `Vec<u8>`.
    #[derive(Default)]
    pub struct RowRegion {
        bytes: <Vec<u8> as Columnation>::InnerRegion,
    }

    impl Region for RowRegion {
        type Item = Row;

        unsafe fn copy(&mut self, item: &Row) -> Row {
            // SAFETY: the returned row's vector points into `self.bytes`; the columnation
            // contract (the caller never drops or grows it, and drops the region last) is
            // the caller's to keep, as for `Vec<u8>`.
            Row {
                data: unsafe { self.bytes.copy(&item.data) },
            }
        }

        fn clear(&mut self) {
            self.bytes.clear()
        }

        fn reserve_items<'a, I>(&mut self, items: I)
        where
            Self: 'a,
            I: Iterator<Item = &'a Row> + Clone,
        {
            self.bytes.reserve_items(items.map(|row| &row.data))
        }

        fn reserve_regions<'a, I>(&mut self, regions: I)
        where
            Self: 'a,
            I: Iterator<Item = &'a Self> + Clone,
        {
            self.bytes.reserve_regions(regions.map(|r| &r.bytes))
        }

        fn heap_size(&self, callback: impl FnMut(usize, usize)) {
            self.bytes.heap_size(callback)
        }
    }
}

pub use columnation_impl::RowRegion;
