//! Column types: `ScalarType`, `ColumnType`, and parsing of Postgres-style type names.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The type of a column's values, without nullability.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ScalarType {
    Bool,
    Int16,
    Int32,
    Int64,
    UInt16,
    UInt32,
    UInt64,
    Float32,
    Float64,
    /// `numeric(precision, scale)`, or unconstrained `numeric` when `max_scale` is absent.
    /// Values hold at most 38 significant digits (the mantissa is an `i128`).
    Numeric {
        precision: Option<u8>,
        scale: Option<u8>,
    },
    Text,
    VarChar {
        max_length: Option<u32>,
    },
    Char {
        length: Option<u32>,
    },
    Bytes,
    Date,
    Time,
    /// Microsecond resolution; `precision` (0..=6) only changes how the value is described
    /// (e.g. Avro picks `timestamp-millis` for precision ≤ 3).
    Timestamp {
        precision: Option<u8>,
    },
    TimestampTz {
        precision: Option<u8>,
    },
    Interval,
    Uuid,
    Jsonb,
    List {
        element: Box<ScalarType>,
    },
    /// A map from text to the value type.
    Map {
        value: Box<ScalarType>,
    },
    Record {
        fields: Vec<(String, ColumnType)>,
    },
}

/// A column's type: the scalar type and whether NULL may appear.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ColumnType {
    pub scalar_type: ScalarType,
    pub nullable: bool,
}

impl ScalarType {
    pub fn nullable(self, nullable: bool) -> ColumnType {
        ColumnType {
            scalar_type: self,
            nullable,
        }
    }

    /// Parses a Postgres-style type name: `bigint`, `integer`, `double precision`,
    /// `character varying(20)`, `numeric(10, 2)`, `timestamp(3) with time zone`,
    /// `int4 list`, `text[]`, `map[text => int8]`, …  Case-insensitive.
    pub fn parse(name: &str) -> Result<ScalarType, TypeParseError> {
        let normalized = normalize(name);
        parse_normalized(&normalized).ok_or_else(|| TypeParseError {
            name: name.trim().to_string(),
        })
    }

    /// The canonical name, which [`ScalarType::parse`] reads back.
    pub fn name(&self) -> String {
        self.to_string()
    }
}

/// An unknown or malformed type name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("type \"{name}\" does not exist")]
pub struct TypeParseError {
    pub name: String,
}

/// Lowercase, single spaces, no spaces inside parentheses or around `=>` and `,`.
fn normalize(name: &str) -> String {
    let lowered = name.trim().to_ascii_lowercase();
    let mut out = String::with_capacity(lowered.len());
    let mut pending_space = false;
    for c in lowered.chars() {
        if c.is_whitespace() {
            pending_space = true;
            continue;
        }
        let glue = matches!(c, '(' | ')' | ',' | '[' | ']' | '=' | '>');
        let last_glues = out.ends_with(['(', ',', '[', '=', '>']);
        if pending_space && !glue && !last_glues && !out.is_empty() {
            out.push(' ');
        }
        pending_space = false;
        out.push(c);
    }
    out
}

fn parse_normalized(s: &str) -> Option<ScalarType> {
    if let Some(inner) = s.strip_suffix(" list") {
        return Some(ScalarType::List {
            element: Box::new(parse_normalized(inner)?),
        });
    }
    if let Some(inner) = s.strip_suffix("[]") {
        return Some(ScalarType::List {
            element: Box::new(parse_normalized(inner)?),
        });
    }
    if let Some(inner) = s.strip_prefix("map[").and_then(|r| r.strip_suffix(']')) {
        let (key, value) = inner.split_once("=>")?;
        if !matches!(parse_normalized(key)?, ScalarType::Text) {
            return None;
        }
        return Some(ScalarType::Map {
            value: Box::new(parse_normalized(value)?),
        });
    }
    let (base, args) = match s.find('(') {
        Some(open) => {
            let close = s.find(')')?;
            let args: Option<Vec<u32>> = s[open + 1..close]
                .split(',')
                .map(|a| a.trim().parse().ok())
                .collect();
            let rest = s[close + 1..].trim();
            let base = format!(
                "{}{}{}",
                s[..open].trim(),
                if rest.is_empty() { "" } else { " " },
                rest
            );
            (base, args?)
        }
        None => (s.to_string(), Vec::new()),
    };
    let no_args = args.is_empty();
    let one_arg = |max: u32| -> Option<Option<u32>> {
        match args.as_slice() {
            [] => Some(None),
            [a] if *a <= max => Some(Some(*a)),
            _ => None,
        }
    };
    let ty = match base.as_str() {
        "bool" | "boolean" if no_args => ScalarType::Bool,
        "smallint" | "int2" if no_args => ScalarType::Int16,
        "int" | "integer" | "int4" if no_args => ScalarType::Int32,
        "bigint" | "int8" if no_args => ScalarType::Int64,
        "uint2" if no_args => ScalarType::UInt16,
        "uint4" if no_args => ScalarType::UInt32,
        "uint8" if no_args => ScalarType::UInt64,
        "real" | "float4" if no_args => ScalarType::Float32,
        "double precision" | "double" | "float8" if no_args => ScalarType::Float64,
        "float" => match args.as_slice() {
            [] => ScalarType::Float64,
            [p] if (1..=24).contains(p) => ScalarType::Float32,
            [p] if (25..=53).contains(p) => ScalarType::Float64,
            _ => return None,
        },
        "numeric" | "decimal" => match args.as_slice() {
            [] => ScalarType::Numeric {
                precision: None,
                scale: None,
            },
            [p] if (1..=39).contains(p) => ScalarType::Numeric {
                precision: Some(*p as u8),
                scale: Some(0),
            },
            [p, sc] if (1..=39).contains(p) && sc <= p => ScalarType::Numeric {
                precision: Some(*p as u8),
                scale: Some(*sc as u8),
            },
            _ => return None,
        },
        "text" | "string" if no_args => ScalarType::Text,
        "varchar" | "character varying" => ScalarType::VarChar {
            max_length: one_arg(10_485_760)?,
        },
        "char" | "character" | "bpchar" => ScalarType::Char {
            length: one_arg(10_485_760)?.or(Some(1)),
        },
        "bytea" | "bytes" if no_args => ScalarType::Bytes,
        "date" if no_args => ScalarType::Date,
        "time" | "time without time zone" if no_args => ScalarType::Time,
        "timestamp" | "timestamp without time zone" => ScalarType::Timestamp {
            precision: one_arg(6)?.map(|p| p as u8),
        },
        "timestamptz" | "timestamp with time zone" => ScalarType::TimestampTz {
            precision: one_arg(6)?.map(|p| p as u8),
        },
        "interval" if no_args => ScalarType::Interval,
        "uuid" if no_args => ScalarType::Uuid,
        "jsonb" | "json" if no_args => ScalarType::Jsonb,
        _ => return None,
    };
    Some(ty)
}

impl fmt::Display for ScalarType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScalarType::Bool => f.write_str("boolean"),
            ScalarType::Int16 => f.write_str("smallint"),
            ScalarType::Int32 => f.write_str("integer"),
            ScalarType::Int64 => f.write_str("bigint"),
            ScalarType::UInt16 => f.write_str("uint2"),
            ScalarType::UInt32 => f.write_str("uint4"),
            ScalarType::UInt64 => f.write_str("uint8"),
            ScalarType::Float32 => f.write_str("real"),
            ScalarType::Float64 => f.write_str("double precision"),
            ScalarType::Numeric {
                precision: Some(p),
                scale,
            } => {
                write!(f, "numeric({p},{})", scale.unwrap_or(0))
            }
            ScalarType::Numeric {
                precision: None, ..
            } => f.write_str("numeric"),
            ScalarType::Text => f.write_str("text"),
            ScalarType::VarChar {
                max_length: Some(n),
            } => write!(f, "character varying({n})"),
            ScalarType::VarChar { max_length: None } => f.write_str("character varying"),
            ScalarType::Char { length: Some(n) } => write!(f, "character({n})"),
            ScalarType::Char { length: None } => f.write_str("character"),
            ScalarType::Bytes => f.write_str("bytea"),
            ScalarType::Date => f.write_str("date"),
            ScalarType::Time => f.write_str("time"),
            ScalarType::Timestamp { precision: Some(p) } => write!(f, "timestamp({p})"),
            ScalarType::Timestamp { precision: None } => f.write_str("timestamp"),
            ScalarType::TimestampTz { precision: Some(p) } => {
                write!(f, "timestamp({p}) with time zone")
            }
            ScalarType::TimestampTz { precision: None } => f.write_str("timestamp with time zone"),
            ScalarType::Interval => f.write_str("interval"),
            ScalarType::Uuid => f.write_str("uuid"),
            ScalarType::Jsonb => f.write_str("jsonb"),
            ScalarType::List { element } => write!(f, "{element} list"),
            ScalarType::Map { value } => write!(f, "map[text=>{value}]"),
            ScalarType::Record { fields } => {
                f.write_str("record(")?;
                for (i, (name, ty)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(
                        f,
                        "{name} {}{}",
                        ty.scalar_type,
                        if ty.nullable { "" } else { " not null" }
                    )?;
                }
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_names_and_aliases() {
        let cases = [
            ("bigint", ScalarType::Int64),
            ("INT8", ScalarType::Int64),
            ("integer", ScalarType::Int32),
            ("int", ScalarType::Int32),
            ("smallint", ScalarType::Int16),
            ("boolean", ScalarType::Bool),
            ("bool", ScalarType::Bool),
            ("double precision", ScalarType::Float64),
            ("Double   Precision", ScalarType::Float64),
            ("real", ScalarType::Float32),
            ("float(10)", ScalarType::Float32),
            ("uint8", ScalarType::UInt64),
            ("text", ScalarType::Text),
            (
                "character varying",
                ScalarType::VarChar { max_length: None },
            ),
            (
                "character varying ( 20 )",
                ScalarType::VarChar {
                    max_length: Some(20),
                },
            ),
            (
                "varchar(5)",
                ScalarType::VarChar {
                    max_length: Some(5),
                },
            ),
            ("char(3)", ScalarType::Char { length: Some(3) }),
            ("char", ScalarType::Char { length: Some(1) }),
            (
                "numeric",
                ScalarType::Numeric {
                    precision: None,
                    scale: None,
                },
            ),
            (
                "numeric(10, 2)",
                ScalarType::Numeric {
                    precision: Some(10),
                    scale: Some(2),
                },
            ),
            (
                "decimal(5)",
                ScalarType::Numeric {
                    precision: Some(5),
                    scale: Some(0),
                },
            ),
            ("bytea", ScalarType::Bytes),
            ("date", ScalarType::Date),
            ("time", ScalarType::Time),
            ("timestamp", ScalarType::Timestamp { precision: None }),
            ("timestamp(3)", ScalarType::Timestamp { precision: Some(3) }),
            (
                "timestamp with time zone",
                ScalarType::TimestampTz { precision: None },
            ),
            (
                "timestamp(6) with time zone",
                ScalarType::TimestampTz { precision: Some(6) },
            ),
            ("timestamptz", ScalarType::TimestampTz { precision: None }),
            ("interval", ScalarType::Interval),
            ("uuid", ScalarType::Uuid),
            ("jsonb", ScalarType::Jsonb),
            (
                "int4 list",
                ScalarType::List {
                    element: Box::new(ScalarType::Int32),
                },
            ),
            (
                "text[]",
                ScalarType::List {
                    element: Box::new(ScalarType::Text),
                },
            ),
            (
                "map[text => bigint]",
                ScalarType::Map {
                    value: Box::new(ScalarType::Int64),
                },
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(ScalarType::parse(name), Ok(expected.clone()), "{name}");
            assert_eq!(
                ScalarType::parse(&expected.name()),
                Ok(expected),
                "round trip of {name}"
            );
        }
    }

    #[test]
    fn bad_names_are_named_in_the_error() {
        for bad in [
            "bigintt",
            "numeric(50)",
            "numeric(2,5)",
            "timestamp(7)",
            "map[int4=>text]",
            "varchar(x)",
            "",
        ] {
            let err = ScalarType::parse(bad).unwrap_err();
            assert_eq!(err.name, bad.trim());
            assert!(err.to_string().contains(bad.trim()));
        }
    }
}
