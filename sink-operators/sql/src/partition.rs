//! Partitioners: the hash functions `PARTITION BY` may call (`kafka_murmur2`, `crc32`,
//! `seahash`), typed `PARTITION BY` expressions evaluated on rows, and the mapping from a
//! hash to a partition.
//!
//! ```
//! use outflow_dataflow::{Datum, RelationDesc, Row, ScalarType};
//! use outflow_sql::partition::{kafka_murmur2, partition_for, PartitionExpr};
//!
//! let desc = RelationDesc::empty()
//!     .with_column("order_id", ScalarType::Int64, false)
//!     .with_column("region", ScalarType::Text, true);
//! let expr = PartitionExpr::parse("kafka_murmur2(region)", &desc).unwrap();
//! let row = Row::pack([Datum::Int64(7), Datum::String("emea")]);
//! let hash = expr.partition_hash(&row);
//! assert_eq!(hash, Some(kafka_murmur2(b"emea") as u64));
//! // The Java client's partition for the key bytes "emea".
//! assert_eq!(partition_for(hash, 6), (kafka_murmur2(b"emea") % 6) as i32);
//! ```

use std::fmt;

use outflow_dataflow::relation::Numeric;
use outflow_dataflow::{Datum, RelationDesc, Row, ScalarType};
use outflow_encoders::text::{format_text, try_format_text};
use serde::{Serialize, Serializer};

use crate::error::SpecError;
use crate::syntax::ast::{Expr, ExprKind};

/// Kafka's MurmurHash2 (`org.apache.kafka.common.utils.Utils.murmur2`): 32 bits, seed
/// `0x9747b28c`, little-endian words. Returns the raw, possibly negative, value.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, &byte) in tail.iter().enumerate() {
            h ^= u32::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// `kafka_murmur2(x)`: the Java client's `toPositive(murmur2(bytes))`, so that
/// `kafka_murmur2(key) % partitions` is the partition the Java producer picks for `key`.
pub fn kafka_murmur2(data: &[u8]) -> i32 {
    murmur2(data) & 0x7fff_ffff
}

/// `crc32(x)`: CRC-32 (IEEE 802.3).
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// `seahash(x)`: SeaHash with the crate's default seeds.
pub fn seahash(data: &[u8]) -> u64 {
    seahash::hash(data)
}

/// The partition for a hash: `hash % partition_count`, and partition 0 when there is no hash
/// (a NULL or negative `PARTITION BY` value, an evaluation error, a message without a key) or
/// no partitions are known yet.
pub fn partition_for(hash: Option<u64>, partition_count: i32) -> i32 {
    match (hash, u64::try_from(partition_count)) {
        (Some(hash), Ok(count)) if count > 0 => (hash % count) as i32,
        _ => 0,
    }
}

/// The hash of a message when the sink has no `PARTITION BY`: `kafka_murmur2` of the key's
/// encoded bytes without the 5-byte Confluent header of an Avro key
/// (`EncodedMessage::key_payload`). A key therefore never moves partition when its Avro
/// schema id changes, and JSON, TEXT and BYTES keys land where the Java client would put
/// them. Keyless messages have no hash here; the sink spreads them by the stable hash of the
/// row's pairing key (see the `outflow` crate's sink).
pub fn key_partition_hash(key_payload: Option<&[u8]>) -> Option<u64> {
    key_payload.map(|key| kafka_murmur2(key) as u64)
}

/// The hash functions a `PARTITION BY` expression may call. Each takes `text` (its UTF-8
/// bytes) or `bytea`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashFunction {
    /// Returns `integer`.
    KafkaMurmur2,
    /// Returns `uint4`.
    Crc32,
    /// Returns `uint8`.
    Seahash,
}

impl HashFunction {
    pub fn name(&self) -> &'static str {
        match self {
            HashFunction::KafkaMurmur2 => "kafka_murmur2",
            HashFunction::Crc32 => "crc32",
            HashFunction::Seahash => "seahash",
        }
    }

    fn by_name(name: &str) -> Option<HashFunction> {
        [
            HashFunction::KafkaMurmur2,
            HashFunction::Crc32,
            HashFunction::Seahash,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }

    fn return_type(&self) -> ScalarType {
        match self {
            HashFunction::KafkaMurmur2 => ScalarType::Int32,
            HashFunction::Crc32 => ScalarType::UInt32,
            HashFunction::Seahash => ScalarType::UInt64,
        }
    }

    fn apply(&self, data: &[u8]) -> Datum<'static> {
        match self {
            HashFunction::KafkaMurmur2 => Datum::Int32(kafka_murmur2(data)),
            HashFunction::Crc32 => Datum::UInt32(crc32(data)),
            HashFunction::Seahash => Datum::UInt64(seahash(data)),
        }
    }
}

/// A `PARTITION BY` expression checked against a relation: column references, literals,
/// casts, `||` and the hash functions, with an integer (or numeric) result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionExpr {
    root: Node,
    typ: ScalarType,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Column {
        index: usize,
        name: String,
    },
    Literal(Literal),
    Cast {
        input: Box<Node>,
        from: ScalarType,
        to: ScalarType,
    },
    Concat {
        left: Box<Node>,
        right: Box<Node>,
        bytes: bool,
    },
    Hash {
        function: HashFunction,
        input: Box<Node>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Literal {
    Text(String),
    Bytes(Vec<u8>),
    Int32(i32),
    Int64(i64),
    Numeric(Numeric),
}

/// The value of an expression: a datum of the row (or a literal), or one computed here.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Datum(Datum<'a>),
    Text(String),
    Bytes(Vec<u8>),
}

impl Value<'_> {
    pub fn datum(&self) -> Datum<'_> {
        match self {
            Value::Datum(d) => *d,
            Value::Text(s) => Datum::String(s),
            Value::Bytes(b) => Datum::Bytes(b),
        }
    }
}

/// An expression that failed on a row, e.g. a cast out of range. The sink writes such rows
/// to partition 0.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

impl PartitionExpr {
    /// Parses and checks `text` against `desc`, allowing every column.
    pub fn parse(text: &str, desc: &RelationDesc) -> Result<PartitionExpr, SpecError> {
        PartitionExpr::plan(&crate::syntax::parse_expr(text)?, desc, None)
    }

    /// Checks a parsed expression. When `allowed_columns` is given (the key under
    /// `ENVELOPE DEBEZIUM`), other columns may not be referenced.
    pub(crate) fn plan(
        expr: &Expr,
        desc: &RelationDesc,
        allowed_columns: Option<&[usize]>,
    ) -> Result<PartitionExpr, SpecError> {
        let planner = Planner {
            desc,
            allowed_columns,
        };
        let (root, typ) = planner.plan(expr)?;
        if !is_integer(&typ) && !matches!(typ, ScalarType::Numeric { .. }) {
            return Err(SpecError::new(format!(
                "PARTITION BY expression must have an integer type, not {typ}"
            ))
            .hint("hash the columns, e.g. PARTITION BY = kafka_murmur2(customer_id::text)")
            .at(expr.pos));
        }
        Ok(PartitionExpr { root, typ })
    }

    /// The type of the expression's value before it becomes a hash.
    pub fn result_type(&self) -> &ScalarType {
        &self.typ
    }

    /// The indices of the columns the expression reads, in ascending order.
    pub fn columns(&self) -> Vec<usize> {
        let mut columns = Vec::new();
        self.root.collect_columns(&mut columns);
        columns.sort_unstable();
        columns.dedup();
        columns
    }

    /// Evaluates the expression on a row of the relation it was checked against.
    pub fn eval<'a>(&'a self, row: &'a Row) -> Result<Value<'a>, EvalError> {
        self.root.eval(&row.unpack())
    }

    /// The hash that picks the row's partition (see [`partition_for`]): the value as a
    /// `uint8`, or `None` when it is NULL, negative or fails to evaluate.
    pub fn partition_hash(&self, row: &Row) -> Option<u64> {
        match self.eval(row).ok()?.datum() {
            Datum::Int16(v) => u64::try_from(v).ok(),
            Datum::Int32(v) => u64::try_from(v).ok(),
            Datum::Int64(v) => u64::try_from(v).ok(),
            Datum::UInt16(v) => Some(v.into()),
            Datum::UInt32(v) => Some(v.into()),
            Datum::UInt64(v) => Some(v),
            Datum::Numeric(n) => u64::try_from(numeric_to_integer(n).ok()?).ok(),
            _ => None,
        }
    }
}

impl fmt::Display for PartitionExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

impl Serialize for PartitionExpr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

struct Planner<'a> {
    desc: &'a RelationDesc,
    allowed_columns: Option<&'a [usize]>,
}

impl Planner<'_> {
    fn plan(&self, expr: &Expr) -> Result<(Node, ScalarType), SpecError> {
        let (node, typ) = match &expr.kind {
            ExprKind::Column(ident) => {
                let Some((index, column_type)) = self.desc.get_by_name(&ident.name) else {
                    return Err(SpecError::new(format!(
                        "column \"{}\" does not exist",
                        ident.name
                    ))
                    .at(ident.pos));
                };
                if self
                    .allowed_columns
                    .is_some_and(|allowed| !allowed.contains(&index))
                {
                    return Err(SpecError::new(format!(
                        "PARTITION BY expression cannot refer to non-key column \"{}\"",
                        ident.name
                    ))
                    .detail("When using ENVELOPE DEBEZIUM, only columns in the key can be referenced in the PARTITION BY expression.")
                    .at(ident.pos));
                }
                (
                    Node::Column {
                        index,
                        name: ident.name.clone(),
                    },
                    column_type.scalar_type.clone(),
                )
            }
            ExprKind::Str(s) => (Node::Literal(Literal::Text(s.clone())), ScalarType::Text),
            ExprKind::Number(n) => number_literal(n).ok_or_else(|| {
                SpecError::new(format!("number {n} is out of range")).at(expr.pos)
            })?,
            ExprKind::Cast {
                expr: inner,
                type_name,
                type_pos,
            } => {
                let to = ScalarType::parse(type_name)
                    .map_err(|e| SpecError::new(e.to_string()).at(*type_pos))?;
                let (input, from) = self.plan(inner)?;
                if from == to {
                    return Ok((input, to));
                }
                if !cast_supported(&from, &to) {
                    return Err(SpecError::new(format!(
                        "CAST does not support casting from {from} to {to}"
                    ))
                    .hint("PARTITION BY casts go to text, bytea, numeric or an integer type")
                    .at(*type_pos));
                }
                (
                    Node::Cast {
                        input: Box::new(input),
                        from,
                        to: to.clone(),
                    },
                    to,
                )
            }
            ExprKind::Concat(left, right) => {
                let (mut left, mut left_type) = self.plan(left)?;
                let (mut right, mut right_type) = self.plan(right)?;
                // An unadorned string literal next to bytea is bytea input, as in Postgres.
                let coerce = |node: &mut Node,
                              typ: &mut ScalarType,
                              other: &ScalarType|
                 -> Result<(), SpecError> {
                    if let (Node::Literal(Literal::Text(s)), ScalarType::Bytes) = (&*node, other) {
                        let bytes = parse_bytea(s).map_err(|e| SpecError::new(e.0).at(expr.pos))?;
                        *node = Node::Literal(Literal::Bytes(bytes));
                        *typ = ScalarType::Bytes;
                    }
                    Ok(())
                };
                coerce(&mut left, &mut left_type, &right_type.clone())?;
                coerce(&mut right, &mut right_type, &left_type.clone())?;
                let no_operator = || {
                    SpecError::new(format!(
                        "operator does not exist: {left_type} || {right_type}"
                    ))
                    .hint("|| joins text to text (or any value cast to text) and bytea to bytea")
                    .at(expr.pos)
                };
                match (&left_type, &right_type) {
                    (ScalarType::Bytes, ScalarType::Bytes) => (
                        Node::Concat {
                            left: Box::new(left),
                            right: Box::new(right),
                            bytes: true,
                        },
                        ScalarType::Bytes,
                    ),
                    (ScalarType::Bytes, _) | (_, ScalarType::Bytes) => return Err(no_operator()),
                    (l, r) if is_string(l) || is_string(r) => {
                        let as_text = |node: Node, typ: &ScalarType| {
                            if is_string(typ) {
                                node
                            } else {
                                Node::Cast {
                                    input: Box::new(node),
                                    from: typ.clone(),
                                    to: ScalarType::Text,
                                }
                            }
                        };
                        let left = as_text(left, l);
                        let right = as_text(right, r);
                        (
                            Node::Concat {
                                left: Box::new(left),
                                right: Box::new(right),
                                bytes: false,
                            },
                            ScalarType::Text,
                        )
                    }
                    _ => return Err(no_operator()),
                }
            }
            ExprKind::Call { name, args } => {
                let planned = args
                    .iter()
                    .map(|a| self.plan(a))
                    .collect::<Result<Vec<_>, _>>()?;
                let types: Vec<String> = planned.iter().map(|(_, t)| t.to_string()).collect();
                let function = HashFunction::by_name(&name.name);
                let takes = |t: &ScalarType| is_string(t) || *t == ScalarType::Bytes;
                match (function, planned.len()) {
                    (Some(function), 1) if takes(&planned[0].1) => {
                        let (input, _) = planned.into_iter().next().expect("one argument");
                        (
                            Node::Hash {
                                function,
                                input: Box::new(input),
                            },
                            function.return_type(),
                        )
                    }
                    _ => {
                        let error = SpecError::new(format!(
                            "function {}({}) does not exist",
                            name.name,
                            types.join(", ")
                        ))
                        .at(name.pos);
                        return Err(match function {
                            Some(f) => error.hint(format!(
                                "{0} takes one text or bytea argument: cast it, e.g. {0}(customer_id::text)",
                                f.name()
                            )),
                            None => error.hint("the functions are kafka_murmur2, crc32 and seahash"),
                        });
                    }
                }
            }
        };
        Ok((fold_constant(node, expr)?, typ))
    }
}

/// A row whose datums do not have the types of the relation the expression was checked
/// against.
fn mismatch(expected: &str, got: &[Datum<'_>]) -> EvalError {
    EvalError(format!(
        "expected {expected}, but the row holds {got:?}: it does not match the relation"
    ))
}

/// Evaluates a node whose inputs are all literals, so that a bad literal cast is an error in
/// the statement rather than a row silently sent to partition 0.
fn fold_constant(node: Node, expr: &Expr) -> Result<Node, SpecError> {
    if matches!(node, Node::Literal(_) | Node::Column { .. }) || !node.is_constant() {
        return Ok(node);
    }
    let value = node
        .eval(&[])
        .map_err(|e| SpecError::new(e.0).at(expr.pos))?;
    let literal = match value.datum() {
        Datum::String(s) => Literal::Text(s.to_string()),
        Datum::Bytes(b) => Literal::Bytes(b.to_vec()),
        Datum::Int32(v) => Literal::Int32(v),
        Datum::Int64(v) => Literal::Int64(v),
        Datum::Numeric(n) => Literal::Numeric(n),
        // Other results (small and unsigned integers) keep their cast, which prints the type.
        _ => return Ok(node),
    };
    Ok(Node::Literal(literal))
}

fn number_literal(text: &str) -> Option<(Node, ScalarType)> {
    if !text.contains(['.', 'e', 'E']) {
        if let Ok(v) = text.parse::<i32>() {
            return Some((Node::Literal(Literal::Int32(v)), ScalarType::Int32));
        }
        if let Ok(v) = text.parse::<i64>() {
            return Some((Node::Literal(Literal::Int64(v)), ScalarType::Int64));
        }
    }
    let n = Numeric::parse(text)?;
    Some((
        Node::Literal(Literal::Numeric(n)),
        ScalarType::Numeric {
            precision: None,
            scale: None,
        },
    ))
}

fn is_string(t: &ScalarType) -> bool {
    matches!(
        t,
        ScalarType::Text | ScalarType::VarChar { .. } | ScalarType::Char { .. }
    )
}

fn is_integer(t: &ScalarType) -> bool {
    matches!(
        t,
        ScalarType::Int16
            | ScalarType::Int32
            | ScalarType::Int64
            | ScalarType::UInt16
            | ScalarType::UInt32
            | ScalarType::UInt64
    )
}

fn cast_supported(from: &ScalarType, to: &ScalarType) -> bool {
    let numeric_like = |t: &ScalarType| {
        is_integer(t)
            || matches!(
                t,
                ScalarType::Numeric { .. } | ScalarType::Float32 | ScalarType::Float64
            )
    };
    match to {
        t if is_string(t) => true,
        ScalarType::Bytes => is_string(from) || *from == ScalarType::Bytes,
        t if is_integer(t) => numeric_like(from) || is_string(from) || *from == ScalarType::Bool,
        ScalarType::Numeric { .. } => numeric_like(from) || is_string(from),
        _ => false,
    }
}

impl Node {
    fn is_constant(&self) -> bool {
        match self {
            Node::Column { .. } => false,
            Node::Literal(_) => true,
            Node::Cast { input, .. } | Node::Hash { input, .. } => input.is_constant(),
            Node::Concat { left, right, .. } => left.is_constant() && right.is_constant(),
        }
    }

    fn collect_columns(&self, out: &mut Vec<usize>) {
        match self {
            Node::Column { index, .. } => out.push(*index),
            Node::Literal(_) => {}
            Node::Cast { input, .. } | Node::Hash { input, .. } => input.collect_columns(out),
            Node::Concat { left, right, .. } => {
                left.collect_columns(out);
                right.collect_columns(out);
            }
        }
    }

    fn eval<'a>(&'a self, datums: &[Datum<'a>]) -> Result<Value<'a>, EvalError> {
        Ok(match self {
            Node::Column { index, name } => Value::Datum(
                *datums
                    .get(*index)
                    .ok_or_else(|| EvalError(format!("the row has no column \"{name}\"")))?,
            ),
            Node::Literal(literal) => Value::Datum(match literal {
                Literal::Text(s) => Datum::String(s),
                Literal::Bytes(b) => Datum::Bytes(b),
                Literal::Int32(v) => Datum::Int32(*v),
                Literal::Int64(v) => Datum::Int64(*v),
                Literal::Numeric(n) => Datum::Numeric(*n),
            }),
            Node::Cast { input, from, to } => {
                let value = input.eval(datums)?;
                if value.datum().is_null() {
                    return Ok(Value::Datum(Datum::Null));
                }
                cast(value, from, to)?
            }
            Node::Concat { left, right, bytes } => {
                let (left, right) = (left.eval(datums)?, right.eval(datums)?);
                match (left.datum(), right.datum()) {
                    (Datum::Null, _) | (_, Datum::Null) => Value::Datum(Datum::Null),
                    (Datum::Bytes(l), Datum::Bytes(r)) if *bytes => Value::Bytes([l, r].concat()),
                    (Datum::String(l), Datum::String(r)) if !bytes => Value::Text([l, r].concat()),
                    (l, r) => return Err(mismatch(if *bytes { "bytea" } else { "text" }, &[l, r])),
                }
            }
            Node::Hash { function, input } => {
                let value = input.eval(datums)?;
                Value::Datum(match value.datum() {
                    Datum::Null => Datum::Null,
                    Datum::String(s) => function.apply(s.as_bytes()),
                    Datum::Bytes(b) => function.apply(b),
                    other => return Err(mismatch("text or bytea", &[other])),
                })
            }
        })
    }

    fn fmt_operand(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if matches!(self, Node::Concat { .. }) {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Column { name, .. } => {
                let plain = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                    && name.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$'
                    });
                if plain {
                    f.write_str(name)
                } else {
                    write!(f, "\"{}\"", name.replace('"', "\"\""))
                }
            }
            Node::Literal(Literal::Text(s)) => write!(f, "'{}'", s.replace('\'', "''")),
            Node::Literal(Literal::Bytes(b)) => write!(
                f,
                "'{}'::bytea",
                format_text(Datum::Bytes(b), &ScalarType::Bytes)
            ),
            Node::Literal(Literal::Int32(v)) => write!(f, "{v}"),
            Node::Literal(Literal::Int64(v)) => write!(f, "{v}"),
            Node::Literal(Literal::Numeric(n)) => write!(f, "{n}"),
            Node::Cast { input, to, .. } => {
                input.fmt_operand(f)?;
                write!(f, "::{to}")
            }
            Node::Concat { left, right, .. } => {
                write!(f, "{left} || ")?;
                right.fmt_operand(f)
            }
            Node::Hash { function, input } => write!(f, "{}({input})", function.name()),
        }
    }
}

fn cast<'a>(value: Value<'a>, from: &ScalarType, to: &ScalarType) -> Result<Value<'a>, EvalError> {
    let datum = value.datum();
    if is_string(to) {
        let mut text = match datum {
            Datum::String(s) => s.to_string(),
            other => try_format_text(other, from).map_err(|e| EvalError(e.to_string()))?,
        };
        match to {
            ScalarType::VarChar {
                max_length: Some(n),
            } => truncate_chars(&mut text, *n as usize),
            ScalarType::Char { length: Some(n) } => {
                truncate_chars(&mut text, *n as usize);
                let len = text.chars().count();
                text.extend(std::iter::repeat_n(' ', *n as usize - len));
            }
            _ => {}
        }
        return Ok(Value::Text(text));
    }
    if *to == ScalarType::Bytes {
        return match datum {
            Datum::Bytes(b) => Ok(Value::Bytes(b.to_vec())),
            Datum::String(s) => Ok(Value::Bytes(parse_bytea(s)?)),
            other => Err(EvalError(format!("cannot cast {other:?} to bytea"))),
        };
    }
    if let ScalarType::Numeric { .. } = to {
        let n = match datum {
            Datum::Numeric(n) => n,
            Datum::String(s) => Numeric::parse(s).ok_or_else(|| {
                EvalError(format!("invalid input syntax for type numeric: \"{s}\""))
            })?,
            Datum::Float32(v) => float_to_numeric(v.into())?,
            Datum::Float64(v) => float_to_numeric(v)?,
            other => Numeric::new(integer_of(other, to)?, 0),
        };
        return Ok(Value::Datum(Datum::Numeric(n)));
    }
    let v = integer_of(datum, to)?;
    let out_of_range = || EvalError(format!("{to} out of range"));
    Ok(Value::Datum(match to {
        ScalarType::Int16 => Datum::Int16(v.try_into().map_err(|_| out_of_range())?),
        ScalarType::Int32 => Datum::Int32(v.try_into().map_err(|_| out_of_range())?),
        ScalarType::Int64 => Datum::Int64(v.try_into().map_err(|_| out_of_range())?),
        ScalarType::UInt16 => Datum::UInt16(v.try_into().map_err(|_| out_of_range())?),
        ScalarType::UInt32 => Datum::UInt32(v.try_into().map_err(|_| out_of_range())?),
        ScalarType::UInt64 => Datum::UInt64(v.try_into().map_err(|_| out_of_range())?),
        other => panic!("cast to {other} was accepted by the planner but has no evaluation"),
    }))
}

/// The integer a datum converts to, rounding numerics and floats half away from zero.
fn integer_of(datum: Datum<'_>, to: &ScalarType) -> Result<i128, EvalError> {
    match datum {
        Datum::Int16(v) => Ok(v.into()),
        Datum::Int32(v) => Ok(v.into()),
        Datum::Int64(v) => Ok(v.into()),
        Datum::UInt16(v) => Ok(v.into()),
        Datum::UInt32(v) => Ok(v.into()),
        Datum::UInt64(v) => Ok(v.into()),
        Datum::True => Ok(1),
        Datum::False => Ok(0),
        Datum::Numeric(n) => numeric_to_integer(n),
        Datum::Float32(v) => float_to_integer(v.into(), to),
        Datum::Float64(v) => float_to_integer(v, to),
        Datum::String(s) => s
            .trim()
            .parse::<i128>()
            .map_err(|_| EvalError(format!("invalid input syntax for type {to}: \"{s}\""))),
        other => Err(EvalError(format!("cannot cast {other:?} to {to}"))),
    }
}

fn numeric_to_integer(n: Numeric) -> Result<i128, EvalError> {
    if n.is_nan() {
        return Err(EvalError("cannot convert NaN to an integer".to_string()));
    }
    let divisor = 10i128
        .checked_pow(n.scale().into())
        .ok_or_else(|| EvalError("numeric out of range".to_string()))?;
    let (quotient, remainder) = (n.mantissa() / divisor, n.mantissa() % divisor);
    let round_away = remainder.unsigned_abs() * 2 >= divisor.unsigned_abs();
    Ok(if round_away {
        quotient + n.mantissa().signum()
    } else {
        quotient
    })
}

fn float_to_integer(v: f64, to: &ScalarType) -> Result<i128, EvalError> {
    if !v.is_finite() || v.abs() >= 1e38 {
        return Err(EvalError(format!("{to} out of range")));
    }
    Ok(v.round() as i128)
}

fn float_to_numeric(v: f64) -> Result<Numeric, EvalError> {
    if v.is_nan() {
        return Ok(Numeric::NAN);
    }
    Numeric::parse(&format!("{v}")).ok_or_else(|| EvalError("numeric out of range".to_string()))
}

fn truncate_chars(s: &mut String, n: usize) {
    if let Some((at, _)) = s.char_indices().nth(n) {
        s.truncate(at);
    }
}

/// Postgres's bytea input: `\x` followed by hex digit pairs, or the escape format where `\\`
/// is a backslash and `\ooo` an octal byte.
fn parse_bytea(s: &str) -> Result<Vec<u8>, EvalError> {
    let invalid = || EvalError("invalid input syntax for type bytea".to_string());
    if let Some(hex) = s.strip_prefix("\\x").or_else(|| s.strip_prefix("\\X")) {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return Err(invalid());
        }
        return digits
            .chunks(2)
            .map(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .ok_or_else(invalid)
            })
            .collect();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = bytes
                .get(i + 1..i + 4)
                .filter(|o| o[0] <= b'3' && o.iter().all(|b| (b'0'..=b'7').contains(b)));
            let octal = octal.ok_or_else(invalid)?;
            out.push(octal.iter().fold(0u8, |acc, d| acc * 8 + (d - b'0')));
            i += 4;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use outflow_dataflow::relation::{Date, Interval, Timestamp};
    use outflow_dataflow::RowPacker;

    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Kafka's UtilsTest.testMurmur2.
        let vectors: [(&str, i32); 6] = [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            ("abc", 479470107),
        ];
        for (input, expected) in vectors {
            assert_eq!(murmur2(input.as_bytes()), expected, "{input}");
            assert_eq!(
                kafka_murmur2(input.as_bytes()),
                expected & 0x7fff_ffff,
                "{input}"
            );
        }
        assert!(kafka_murmur2(b"21") >= 0);
    }

    #[test]
    fn crc32_and_seahash_vectors() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414f_a339
        );
        // The seahash crate's own reference vector.
        assert_eq!(seahash(b"to be or not to be"), 1988685042348123509);
    }

    #[test]
    fn partitions_from_hashes() {
        assert_eq!(partition_for(Some(10), 4), 2);
        assert_eq!(partition_for(Some(u64::MAX), 7), (u64::MAX % 7) as i32);
        assert_eq!(partition_for(None, 4), 0);
        assert_eq!(partition_for(Some(10), 0), 0);
        assert_eq!(partition_for(Some(10), -3), 0);
        assert_eq!(key_partition_hash(None), None);
        assert_eq!(
            key_partition_hash(Some(b"21")),
            Some(kafka_murmur2(b"21") as u64)
        );
    }

    fn desc() -> RelationDesc {
        RelationDesc::empty()
            .with_column("id", ScalarType::Int64, false)
            .with_column("region", ScalarType::Text, true)
            .with_column("payload", ScalarType::Bytes, true)
            .with_column(
                "amount",
                ScalarType::Numeric {
                    precision: Some(10),
                    scale: Some(2),
                },
                true,
            )
            .with_column("Mixed Case", ScalarType::Int32, true)
            .with_column("day", ScalarType::Date, true)
    }

    fn row(id: i64, region: Option<&str>) -> Row {
        Row::pack([
            Datum::Int64(id),
            region.map_or(Datum::Null, Datum::String),
            Datum::Bytes(b"\x01\x02"),
            Datum::Numeric(Numeric::new(-1250, 2)),
            Datum::Int32(-5),
            Datum::Date(Date::from_ymd(2024, 5, 6).unwrap()),
        ])
    }

    fn hash(expr: &str, row: &Row) -> Option<u64> {
        PartitionExpr::parse(expr, &desc())
            .unwrap()
            .partition_hash(row)
    }

    #[test]
    fn evaluation_on_rows() {
        let r = row(42, Some("emea"));
        assert_eq!(
            hash("kafka_murmur2(region)", &r),
            Some(kafka_murmur2(b"emea") as u64)
        );
        assert_eq!(
            hash("kafka_murmur2(id::text)", &r),
            Some(kafka_murmur2(b"42") as u64)
        );
        assert_eq!(
            hash("crc32(region || '-' || id)", &r),
            Some(crc32(b"emea-42").into())
        );
        assert_eq!(
            hash("seahash(payload || '\\x03')", &r),
            Some(seahash(&[1, 2, 3]))
        );
        assert_eq!(hash("seahash(region::bytea)", &r), Some(seahash(b"emea")));
        assert_eq!(
            hash("kafka_murmur2(day::text)", &r),
            Some(kafka_murmur2(b"2024-05-06") as u64)
        );
        assert_eq!(hash("id", &r), Some(42));
        assert_eq!(hash("(id)::uint8", &r), Some(42));
        assert_eq!(hash("amount", &r), None, "negative");
        assert_eq!(hash("\"Mixed Case\"", &r), None, "negative");
    }

    #[test]
    fn nulls_negatives_and_errors_have_no_hash() {
        let r = row(-3, None);
        assert_eq!(hash("kafka_murmur2(region)", &r), None);
        assert_eq!(hash("crc32(region || 'x')", &r), None);
        assert_eq!(hash("id", &r), None);
        assert_eq!(hash("id::uint8", &r), None, "a cast out of range fails");
        assert_eq!(hash("region::int8", &row(1, Some("not a number"))), None);
        assert_eq!(hash("region::int8", &row(1, Some(" 17 "))), Some(17));
        assert_eq!(hash("amount::int8", &r), None, "-12.50 rounds to -13");
    }

    #[test]
    fn rows_of_another_relation_are_errors() {
        let expr = PartitionExpr::parse("crc32(region)", &desc()).unwrap();
        let wrong = Row::pack([Datum::Int64(1), Datum::Int64(2)]);
        assert!(expr
            .eval(&wrong)
            .unwrap_err()
            .0
            .contains("does not match the relation"));
        assert_eq!(expr.partition_hash(&wrong), None);
        assert_eq!(
            expr.partition_hash(&Row::pack([Datum::Int64(1)])),
            None,
            "too few columns"
        );
    }

    #[test]
    fn typechecking_errors() {
        let err = |expr: &str| PartitionExpr::parse(expr, &desc()).unwrap_err();
        let e = err("region");
        assert_eq!(
            e.message,
            "PARTITION BY expression must have an integer type, not text"
        );
        assert_eq!(e.position.map(|p| p.column), Some(1));
        let e = err("kafka_murmur2(nope)");
        assert_eq!(e.message, "column \"nope\" does not exist");
        assert_eq!(e.position.map(|p| p.column), Some(15));
        assert_eq!(
            err("kafka_murmur2(id)").message,
            "function kafka_murmur2(bigint) does not exist"
        );
        assert_eq!(
            err("md5(region)").message,
            "function md5(text) does not exist"
        );
        assert_eq!(
            err("crc32(region, region)").message,
            "function crc32(text, text) does not exist"
        );
        assert_eq!(
            err("crc32(payload || region)").message,
            "operator does not exist: bytea || text"
        );
        assert_eq!(
            err("crc32(day::jsonb)").message,
            "CAST does not support casting from date to jsonb"
        );
        assert_eq!(
            err("crc32(region::nosuchtype)").message,
            "type \"nosuchtype\" does not exist"
        );
        assert_eq!(
            err("'abc'::int8").message,
            "invalid input syntax for type bigint: \"abc\""
        );
        assert!(err("99999999999999999999999999999999999999999")
            .message
            .contains("out of range"));
    }

    #[test]
    fn debezium_expressions_may_only_read_the_key() {
        let expr = crate::syntax::parse_expr("crc32(id::text || region)").unwrap();
        let err = PartitionExpr::plan(&expr, &desc(), Some(&[0])).unwrap_err();
        assert_eq!(
            err.message,
            "PARTITION BY expression cannot refer to non-key column \"region\""
        );
        assert_eq!(
            err.detail.as_deref(),
            Some("When using ENVELOPE DEBEZIUM, only columns in the key can be referenced in the PARTITION BY expression.")
        );
        assert!(PartitionExpr::plan(&expr, &desc(), Some(&[0, 1])).is_ok());
    }

    #[test]
    fn expressions_print_normalized() {
        let print = |expr: &str| PartitionExpr::parse(expr, &desc()).unwrap().to_string();
        assert_eq!(print("KAFKA_MURMUR2( Region )"), "kafka_murmur2(region)");
        assert_eq!(print("crc32(region || id)"), "crc32(region || id::text)");
        assert_eq!(
            print("seahash((region || 'x')::bytea)"),
            "seahash((region || 'x')::bytea)"
        );
        assert_eq!(print("\"Mixed Case\"::int8"), "\"Mixed Case\"::bigint");
        assert_eq!(print("crc32('it''s')"), "crc32('it''s')");
        assert_eq!(print("'7'::int4"), "7");
    }

    #[test]
    fn text_forms() {
        let text = |d: Datum<'_>, t: ScalarType| format_text(d, &t);
        assert_eq!(text(Datum::True, ScalarType::Bool), "t");
        assert_eq!(text(Datum::Float64(1.5), ScalarType::Float64), "1.5");
        assert_eq!(text(Datum::Float64(1e21), ScalarType::Float64), "1e+21");
        assert_eq!(text(Datum::Float64(0.00001), ScalarType::Float64), "1e-05");
        assert_eq!(
            text(Datum::Float32(1234567.0), ScalarType::Float32),
            "1.234567e+06"
        );
        assert_eq!(
            text(Datum::Float64(f64::NEG_INFINITY), ScalarType::Float64),
            "-Infinity"
        );
        assert_eq!(text(Datum::Bytes(b"hi"), ScalarType::Bytes), "\\x6869");
        assert_eq!(
            text(
                Datum::TimestampTz(Timestamp(0)),
                ScalarType::TimestampTz { precision: None }
            ),
            "1970-01-01 00:00:00+00"
        );
        assert_eq!(
            text(
                Datum::Interval(Interval {
                    months: 1,
                    days: 0,
                    micros: 0
                }),
                ScalarType::Interval
            ),
            "1 mon"
        );

        let list_type = ScalarType::List {
            element: Box::new(ScalarType::Text),
        };
        let mut packer = RowPacker::new();
        packer.push_list([
            Datum::String("a"),
            Datum::String("b c"),
            Datum::Null,
            Datum::String("null"),
            Datum::String(""),
        ]);
        let list = packer.finish();
        assert_eq!(
            format_text(list.unpack_first(), &list_type),
            "{a,\"b c\",NULL,\"null\",\"\"}"
        );

        let mut packer = RowPacker::new();
        packer.push_map([("k", Datum::String("v")), ("a=b", Datum::Null)]);
        let map = packer.finish();
        let map_type = ScalarType::Map {
            value: Box::new(ScalarType::Text),
        };
        assert_eq!(
            format_text(map.unpack_first(), &map_type),
            "{\"a=b\"=>NULL,k=>v}"
        );

        let record_type = ScalarType::Record {
            fields: vec![
                ("x".into(), ScalarType::Int32.nullable(true)),
                ("y".into(), ScalarType::Text.nullable(true)),
            ],
        };
        let mut packer = RowPacker::new();
        packer.push_list([Datum::Null, Datum::String("a,b")]);
        let record = packer.finish();
        assert_eq!(
            format_text(record.unpack_first(), &record_type),
            "(,\"a,b\")"
        );
    }

    #[test]
    fn bytea_input() {
        assert_eq!(parse_bytea("\\x0aFF").unwrap(), vec![0x0a, 0xff]);
        assert_eq!(parse_bytea("a\\\\b\\001").unwrap(), b"a\\b\x01".to_vec());
        assert!(parse_bytea("\\x0").is_err());
        assert!(parse_bytea("\\9").is_err());
    }
}
