//! The relation model: column types, values, packed rows and relation descriptions.

pub mod desc;
mod order;
pub mod row;
pub mod scalar;
pub mod values;

#[cfg(test)]
mod tests;

pub use desc::{Column, RelationDesc};
pub use row::{CorruptRow, Datum, DatumIter, DatumList, DatumMap, Row, RowPacker, RowRegion};
pub use scalar::{ColumnType, ScalarType, TypeParseError};
pub use values::{Date, Interval, Numeric, Time, Timestamp};
