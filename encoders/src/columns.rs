//! The encoders' view of a relation: unique column names and a type tree per column, built
//! once per sink so that encoding a row is a walk over its datums and this tree.

use std::collections::HashSet;

use outflow_dataflow::relation::{ColumnType, Datum, RelationDesc, ScalarType};

use crate::error::{EncodeError, Part};
use crate::json;

/// A column's (or a nested value's) type as the encoders need it.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub nullable: bool,
    pub kind: Kind,
    /// The SQL type, for error messages.
    pub typ: ScalarType,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    Bool,
    Int16,
    Int32,
    Int64,
    UInt16,
    UInt32,
    UInt64,
    Float32,
    Float64,
    /// `scale` is `None` for an unconstrained numeric.
    Numeric {
        scale: Option<u8>,
    },
    Text,
    /// `char(n)`: blank-padded to `n` characters on output, as Postgres prints it.
    Char {
        length: Option<u32>,
    },
    Bytes,
    Date,
    Time,
    /// `millis` when the declared precision is at most 3 (Avro `timestamp-millis`).
    Timestamp {
        millis: bool,
    },
    TimestampTz {
        millis: bool,
    },
    Interval,
    Uuid,
    Jsonb,
    /// Elements are always nullable, whatever the column says.
    List(Box<Slot>),
    /// Values are always nullable.
    Map(Box<Slot>),
    Record(Vec<Field>),
}

/// A named column or record field.
#[derive(Clone, Debug)]
pub(crate) struct Field {
    /// Unique within its record: the JSON key, and the stem of the Avro field name.
    pub name: String,
    /// The name as the relation spells it, which `DOC ON COLUMN` refers to.
    pub source_name: String,
    /// `"name":`, escaped once here rather than on every row.
    pub json_key: Box<[u8]>,
    pub slot: Slot,
}

impl Slot {
    pub fn new(typ: &ColumnType) -> Slot {
        Slot::of(&typ.scalar_type, typ.nullable)
    }

    fn of(scalar: &ScalarType, nullable: bool) -> Slot {
        let kind = match scalar {
            ScalarType::Bool => Kind::Bool,
            ScalarType::Int16 => Kind::Int16,
            ScalarType::Int32 => Kind::Int32,
            ScalarType::Int64 => Kind::Int64,
            ScalarType::UInt16 => Kind::UInt16,
            ScalarType::UInt32 => Kind::UInt32,
            ScalarType::UInt64 => Kind::UInt64,
            ScalarType::Float32 => Kind::Float32,
            ScalarType::Float64 => Kind::Float64,
            // `numeric(p)` parses with scale 0; a scale without a precision still constrains.
            ScalarType::Numeric { precision, scale } => Kind::Numeric {
                scale: if precision.is_some() || scale.is_some() {
                    Some(scale.unwrap_or(0))
                } else {
                    None
                },
            },
            ScalarType::Text | ScalarType::VarChar { .. } => Kind::Text,
            ScalarType::Char { length } => Kind::Char { length: *length },
            ScalarType::Bytes => Kind::Bytes,
            ScalarType::Date => Kind::Date,
            ScalarType::Time => Kind::Time,
            ScalarType::Timestamp { precision } => Kind::Timestamp {
                millis: matches!(precision, Some(p) if *p <= 3),
            },
            ScalarType::TimestampTz { precision } => Kind::TimestampTz {
                millis: matches!(precision, Some(p) if *p <= 3),
            },
            ScalarType::Interval => Kind::Interval,
            ScalarType::Uuid => Kind::Uuid,
            ScalarType::Jsonb => Kind::Jsonb,
            ScalarType::List { element } => Kind::List(Box::new(Slot::of(element, true))),
            ScalarType::Map { value } => Kind::Map(Box::new(Slot::of(value, true))),
            ScalarType::Record { fields } => {
                Kind::Record(fields_from(fields.iter().map(|(n, t)| (n.as_str(), t))))
            }
        };
        Slot {
            nullable,
            kind,
            typ: scalar.clone(),
        }
    }
}

/// The fields for the columns at `indices` of `desc`, in that order.
pub(crate) fn fields_of(desc: &RelationDesc, indices: &[usize]) -> Vec<Field> {
    fields_from(indices.iter().map(|&i| {
        let column = desc.column(i);
        (column.name.as_str(), &column.typ)
    }))
}

pub(crate) fn fields_from<'a>(
    columns: impl Iterator<Item = (&'a str, &'a ColumnType)>,
) -> Vec<Field> {
    let columns: Vec<_> = columns.collect();
    let names = unique_names(columns.iter().map(|(name, _)| *name));
    columns
        .into_iter()
        .zip(names)
        .map(|((source_name, typ), name)| {
            let mut json_key = Vec::with_capacity(name.len() + 3);
            json::write_str(&mut json_key, &name);
            json_key.push(b':');
            Field {
                name,
                source_name: source_name.to_string(),
                json_key: json_key.into(),
                slot: Slot::new(typ),
            }
        })
        .collect()
}

/// Makes repeated names unique the way Materialize does, so that consumers moving between the
/// two see the same keys: the second `a` becomes `a1`, the third `a2`; a stem ending in a digit
/// gets an `_` first (`x1`, `x1` → `x1`, `x1_1`).
pub(crate) fn unique_names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = HashSet::new();
    names
        .map(|stem| {
            let mut name = stem.to_string();
            let mut n = 1;
            while seen.contains(&name) {
                name.truncate(stem.len());
                if name.ends_with(|c: char| c.is_ascii_digit()) {
                    name.push('_');
                }
                name.push_str(&n.to_string());
                n += 1;
            }
            seen.insert(name.clone());
            name
        })
        .collect()
}

/// The top-level column a datum belongs to, for error messages that point at it.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub part: Part,
    pub field: &'a Field,
}

impl Ctx<'_> {
    pub fn error(&self, problem: String) -> EncodeError {
        EncodeError::Datum {
            part: self.part,
            column: self.field.name.clone(),
            typ: self.field.slot.typ.to_string(),
            problem,
        }
    }

    /// A datum whose kind is not the one its type calls for.
    pub fn mismatch(&self, slot: &Slot, datum: Datum<'_>) -> EncodeError {
        self.error(format!(
            "expected a value of type {}, found {datum:?}",
            slot.typ
        ))
    }

    pub fn unexpected_null(&self, format: &str) -> EncodeError {
        self.error(format!(
            "the column is NOT NULL but holds NULL, which {format} cannot write"
        ))
    }
}

/// Walks `fields` and `datums` together, failing when their lengths differ.
pub(crate) fn for_each_field<'d, F>(
    part: Part,
    fields: &[Field],
    mut datums: impl Iterator<Item = Datum<'d>>,
    mut f: F,
) -> Result<(), EncodeError>
where
    F: FnMut(Ctx<'_>, Datum<'d>) -> Result<(), EncodeError>,
{
    for (i, field) in fields.iter().enumerate() {
        let Some(datum) = datums.next() else {
            return Err(EncodeError::Arity {
                part,
                expected: fields.len(),
                found: i,
            });
        };
        f(Ctx { part, field }, datum)?;
    }
    let extra = datums.count();
    if extra > 0 {
        return Err(EncodeError::Arity {
            part,
            expected: fields.len(),
            found: fields.len() + extra,
        });
    }
    Ok(())
}

/// Nested records are checked the same way, reporting against the enclosing column.
pub(crate) fn for_each_nested<'d, F>(
    ctx: Ctx<'_>,
    fields: &[Field],
    mut datums: impl Iterator<Item = Datum<'d>>,
    mut f: F,
) -> Result<(), EncodeError>
where
    F: FnMut(&Field, Datum<'d>) -> Result<(), EncodeError>,
{
    for (i, field) in fields.iter().enumerate() {
        let Some(datum) = datums.next() else {
            return Err(ctx.error(format!(
                "a record value has {i} fields, its type has {}",
                fields.len()
            )));
        };
        f(field, datum)?;
    }
    let extra = datums.count();
    if extra > 0 {
        return Err(ctx.error(format!(
            "a record value has {} fields, its type has {}",
            fields.len() + extra,
            fields.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_get_numbers() {
        assert_eq!(
            unique_names(["a", "a", "a", "b"].into_iter()),
            ["a", "a1", "a2", "b"]
        );
        assert_eq!(unique_names(["x1", "x1"].into_iter()), ["x1", "x1_1"]);
        assert_eq!(
            unique_names(["a", "a1", "a"].into_iter()),
            ["a", "a1", "a2"]
        );
    }
}
