//! `SinkKey` and the `key_by` operator: which columns identify a row for the sink.

use differential_dataflow::difference::Semigroup;
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use timely::progress::Timestamp;

use crate::relation::{RelationDesc, Row, RowPacker};

/// The key that pairs a sink's updates, and whether messages carry it.
///
/// Three cases, as in Materialize:
/// - `KEY (columns)` given: the key pairs updates and is every message's key.
/// - no `KEY`, but the relation has a known unique key: its first unique key pairs updates
///   (an update of a row comes out as one `DiffPair`), but messages carry no key.
/// - neither: the whole row is its own key. Nothing pairs (a changed row is a delete and an
///   insert), duplicates are legitimate, and messages carry no key.
///
/// The key row is also what places a row on a worker (`stable_key_hash(key) % peers`), which
/// is part of the recovery contract: for a sink without any key, that is the hash of the whole
/// row.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SinkKey {
    /// `KEY (columns)`; `enforced` is false for `KEY (...) NOT ENFORCED`.
    Declared { columns: Vec<usize>, enforced: bool },
    /// The relation's own unique key, used to pair updates only.
    Relation { columns: Vec<usize> },
    /// No key: each whole row. Arranged as `(row, empty row)`, so the row is stored once.
    WholeRow,
}

/// What a key promises about the rows it identifies, which decides how combining treats a key
/// that holds several rows (see [`KeyViolation`](crate::operators::KeyViolation)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Uniqueness {
    /// The key was validated as unique (or is the relation's own): a violation withholds the
    /// key's pairs at that time and is an error.
    Enforced,
    /// `NOT ENFORCED`: a violation is reported and counted, and the pairs are still emitted.
    NotEnforced,
    /// No key: several copies of a row are legitimate and never reported.
    Multiset,
}

impl SinkKey {
    /// The key that pairs a sink's updates when it declares no `KEY`: the relation's first
    /// known unique key, else the whole row. A declared key is resolved, and validated, once,
    /// with the sink's spec (`outflow-sql`), which stores the resulting `SinkKey`.
    ///
    /// ```
    /// use outflow_dataflow::operators::{SinkKey, Uniqueness};
    /// use outflow_dataflow::{RelationDesc, ScalarType};
    ///
    /// let desc = RelationDesc::empty()
    ///     .with_column("id", ScalarType::Int64, false)
    ///     .with_column("name", ScalarType::Text, true)
    ///     .with_key(vec![0]);
    /// let natural = SinkKey::natural(&desc);
    /// assert_eq!(natural, SinkKey::Relation { columns: vec![0] });
    /// assert!(!natural.is_message_key());
    /// assert_eq!(natural.uniqueness(), Uniqueness::Enforced);
    /// let keyless = RelationDesc::empty().with_column("v", ScalarType::Int64, false);
    /// assert_eq!(SinkKey::natural(&keyless).uniqueness(), Uniqueness::Multiset);
    /// ```
    pub fn natural(desc: &RelationDesc) -> SinkKey {
        match desc.keys().first() {
            Some(columns) => SinkKey::Relation {
                columns: columns.clone(),
            },
            None => SinkKey::WholeRow,
        }
    }

    /// The key's columns, `None` for a whole-row key.
    pub fn columns(&self) -> Option<&[usize]> {
        match self {
            SinkKey::Declared { columns, .. } | SinkKey::Relation { columns } => Some(columns),
            SinkKey::WholeRow => None,
        }
    }

    /// Whether messages carry the key (only a declared `KEY` is a message key).
    pub fn is_message_key(&self) -> bool {
        matches!(self, SinkKey::Declared { .. })
    }

    pub fn uniqueness(&self) -> Uniqueness {
        match self {
            SinkKey::Declared { enforced: true, .. } | SinkKey::Relation { .. } => {
                Uniqueness::Enforced
            }
            SinkKey::Declared {
                enforced: false, ..
            } => Uniqueness::NotEnforced,
            SinkKey::WholeRow => Uniqueness::Multiset,
        }
    }

    /// The `(key, value)` that the arrangement holds for `row`.
    ///
    /// Panics if `row` has fewer columns than the key names: rows must match the relation the
    /// key was resolved against.
    pub fn split(&self, row: Row, packer: &mut RowPacker) -> (Row, Row) {
        match self.columns() {
            Some(columns) => {
                packer.clear();
                for &column in columns {
                    let datum = row.iter().nth(column).unwrap_or_else(|| {
                        panic!("row {row:?} has no column {column}, which the sink key names")
                    });
                    packer.push(datum);
                }
                (packer.finish_and_reuse(), row)
            }
            None => (row, Row::default()),
        }
    }
}

/// Pairs each row of a collection with its sink key.
pub trait KeyBy<'scope, T: Timestamp, R: Semigroup> {
    /// The `(key, value)` collection to arrange: `(key columns, row)`, or `(row, empty row)`
    /// for a whole-row key. The key's placement on workers is decided by the arrangement
    /// ([`ArrangeBySinkKey`](crate::operators::ArrangeBySinkKey)), not here.
    ///
    /// ```
    /// use differential_dataflow::input::Input;
    /// use outflow_dataflow::operators::{KeyBy, SinkKey};
    /// use outflow_dataflow::{Datum, Row};
    ///
    /// timely::example(|scope| {
    ///     let rows = vec![Row::pack_slice(&[Datum::Int64(1), Datum::String("a")])];
    ///     let key = SinkKey::Declared { columns: vec![0], enforced: true };
    ///     scope.new_collection_from(rows).1
    ///         .key_by(&key)
    ///         .inspect(|((key, row), _time, _diff)| {
    ///             assert_eq!(key, &Row::pack_slice(&[Datum::Int64(1)]));
    ///             assert_eq!(row.unpack().len(), 2);
    ///         });
    /// });
    /// ```
    fn key_by(self, key: &SinkKey) -> VecCollection<'scope, T, (Row, Row), R>;
}

impl<'scope, T: Timestamp, R: Semigroup + 'static> KeyBy<'scope, T, R>
    for VecCollection<'scope, T, Row, R>
{
    fn key_by(self, key: &SinkKey) -> VecCollection<'scope, T, (Row, Row), R> {
        let key = key.clone();
        let mut packer = RowPacker::new();
        self.map(move |row| key.split(row, &mut packer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relation::{Datum, ScalarType};

    fn desc() -> RelationDesc {
        RelationDesc::empty()
            .with_column("id", ScalarType::Int64, false)
            .with_column("region", ScalarType::Text, true)
            .with_column("amount", ScalarType::Int64, false)
            .with_key(vec![0])
    }

    #[test]
    fn natural_keys_are_the_relations_first_unique_key_or_the_whole_row() {
        let natural = SinkKey::natural(&desc());
        assert_eq!(natural, SinkKey::Relation { columns: vec![0] });
        assert!(!natural.is_message_key());
        let declared = SinkKey::Declared {
            columns: vec![1, 0],
            enforced: true,
        };
        assert!(declared.is_message_key());
        assert_eq!(declared.uniqueness(), Uniqueness::Enforced);
        let keyless = RelationDesc::empty().with_column("v", ScalarType::Int64, false);
        let whole = SinkKey::natural(&keyless);
        assert_eq!(
            (whole.columns(), whole.is_message_key(), whole.uniqueness()),
            (None, false, Uniqueness::Multiset)
        );
    }

    #[test]
    fn split_projects_the_key_in_declared_order() {
        let row = Row::pack_slice(&[Datum::Int64(7), Datum::String("eu"), Datum::Int64(5)]);
        let mut packer = RowPacker::new();
        let key = SinkKey::Declared {
            columns: vec![2, 1],
            enforced: false,
        };
        assert_eq!(
            key.split(row.clone(), &mut packer),
            (
                Row::pack_slice(&[Datum::Int64(5), Datum::String("eu")]),
                row.clone()
            )
        );
        assert_eq!(
            SinkKey::WholeRow.split(row.clone(), &mut packer),
            (row, Row::default())
        );
    }
}
