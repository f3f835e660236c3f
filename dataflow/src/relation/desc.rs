//! `RelationDesc`: the columns of a relation and its known unique keys.

use serde::{Deserialize, Serialize};

use super::scalar::{ColumnType, ScalarType};

/// Column names, types, nullability, and the known unique keys (from PRIMARY KEY and
/// UNIQUE constraints), each a set of column indices.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RelationDesc {
    columns: Vec<Column>,
    keys: Vec<Vec<usize>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(flatten)]
    pub typ: ColumnType,
}

impl RelationDesc {
    pub fn empty() -> RelationDesc {
        RelationDesc::default()
    }

    /// Adds a column.
    pub fn with_column(
        mut self,
        name: impl Into<String>,
        scalar_type: ScalarType,
        nullable: bool,
    ) -> RelationDesc {
        self.columns.push(Column {
            name: name.into(),
            typ: ColumnType {
                scalar_type,
                nullable,
            },
        });
        self
    }

    /// Declares a unique key by column indices. Keys are kept sorted and without repeats;
    /// the indices must name columns (a bug in the caller otherwise).
    pub fn with_key(mut self, mut key: Vec<usize>) -> RelationDesc {
        assert!(
            key.iter().all(|&c| c < self.columns.len()),
            "key {key:?} names a column past the end"
        );
        key.sort_unstable();
        key.dedup();
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
        self
    }

    pub fn arity(&self) -> usize {
        self.columns.len()
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    pub fn column(&self, index: usize) -> &Column {
        &self.columns[index]
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    pub fn types(&self) -> impl Iterator<Item = &ColumnType> {
        self.columns.iter().map(|c| &c.typ)
    }

    /// The index and type of the column called `name` (exact match, as names are
    /// normalized when a statement is parsed).
    pub fn get_by_name(&self, name: &str) -> Option<(usize, &ColumnType)> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .map(|i| (i, &self.columns[i].typ))
    }

    /// The known unique keys.
    pub fn keys(&self) -> &[Vec<usize>] {
        &self.keys
    }

    /// Whether the columns `cols` are known to be unique: they include some known key.
    pub fn is_unique(&self, cols: &[usize]) -> bool {
        self.keys
            .iter()
            .any(|key| key.iter().all(|c| cols.contains(c)))
    }

    /// A description of the columns at `indices`, in that order, without keys.
    pub fn project(&self, indices: &[usize]) -> RelationDesc {
        RelationDesc {
            columns: indices.iter().map(|&i| self.columns[i].clone()).collect(),
            keys: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_lookup() {
        let desc = RelationDesc::empty()
            .with_column("id", ScalarType::Int64, false)
            .with_column("region", ScalarType::Text, true)
            .with_column("hour", ScalarType::Timestamp { precision: None }, false)
            .with_key(vec![0])
            .with_key(vec![2, 1])
            .with_key(vec![1, 2]);
        assert_eq!(desc.keys(), &[vec![0], vec![1, 2]]);
        assert!(desc.is_unique(&[0, 1]));
        assert!(desc.is_unique(&[2, 1]));
        assert!(!desc.is_unique(&[1]));
        assert_eq!(
            desc.get_by_name("region").map(|(i, t)| (i, t.nullable)),
            Some((1, true))
        );
        assert_eq!(desc.get_by_name("nope"), None);
        assert_eq!(
            desc.project(&[2, 0]).names().collect::<Vec<_>>(),
            ["hour", "id"]
        );
        let json = serde_json::to_string(&desc).unwrap();
        assert_eq!(serde_json::from_str::<RelationDesc>(&json).unwrap(), desc);
    }
}
