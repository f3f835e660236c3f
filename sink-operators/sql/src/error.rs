//! `SpecError`, the one error of the crate, and what it points at: a [`Site`] (the semantic
//! piece of a statement or builder it blames) and, once the statement layer has placed that
//! site in the text, a [`Position`].
//!
//! Validation (the builders of [`crate::spec`]) knows sites, never text: a builder called from
//! Rust yields errors with a site and no position. The statement layer knows where each site of
//! a statement is written and fills in the position; the lexer, the parser and `PARTITION BY`
//! expressions, which read text themselves, give positions directly.

use std::fmt;

use outflow_encoders::Part;
use serde::Serialize;

use crate::options::{
    AvroFormatOption, DebeziumEnvelopeOption, JsonFormatOption, KafkaConnectionOption,
    RegistryConnectionOption, SinkOption, SinkWithOption,
};

/// A place in statement text: 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Position {
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The piece of a statement, or of the builder calls that stand for one, that an error is
/// about. Indices count in the order the pieces were given: columns and constraints of a
/// table, columns of a `KEY`, `DOC ON` options of a format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Site {
    /// The statement as a whole; also where a site the statement did not write points.
    Statement,
    /// The name the statement creates.
    Name,
    /// The value of an option of a Kafka connection.
    KafkaOption(KafkaConnectionOption),
    /// The value of an option of a schema registry connection.
    RegistryOption(RegistryConnectionOption),
    /// The value of an option of a sink's `INTO KAFKA CONNECTION c (…)`.
    SinkOption(SinkOption),
    Column(usize),
    Constraint(usize),
    ConstraintColumn(usize, usize),
    /// A sink's `FROM` relation.
    From,
    /// A sink's `IN CLUSTER`.
    Cluster,
    /// A sink's Kafka connection.
    Connection,
    /// A sink's `KEY (…)` clause.
    Key,
    KeyColumn(usize),
    Headers,
    /// The format clause describing the key or the value.
    Format(Part),
    /// The schema registry connection of an Avro format.
    Registry(Part),
    /// The value of an Avro format option.
    FormatOption(Part, AvroFormatOption),
    /// A `DOC ON` option of an Avro format.
    Doc(Part, usize),
    Envelope,
    /// An option of `ENVELOPE DEBEZIUM (…)`.
    EnvelopeOption(DebeziumEnvelopeOption),
    /// An option of `FORMAT JSON (…)` for the key or the value.
    JsonFormatOption(Part, JsonFormatOption),
    /// The value of a `WITH (…)` option.
    With(SinkWithOption),
}

/// A statement or spec that cannot be accepted. `message` names the offending thing;
/// `detail` and `hint` follow Postgres's habit of explaining and suggesting on lines of their
/// own. `site` says what the error is about; `position` points at the offending token when the
/// spec came from statement text (for a builder, only a `partition_by` expression has
/// positions, counted in its own text). Never holds a secret's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    pub site: Option<Site>,
    pub position: Option<Position>,
}

impl SpecError {
    pub fn new(message: impl Into<String>) -> SpecError {
        SpecError {
            message: message.into(),
            detail: None,
            hint: None,
            site: None,
            position: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> SpecError {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> SpecError {
        self.hint = Some(hint.into());
        self
    }

    /// Names what the error is about, unless a more precise site is already named.
    pub fn site(mut self, site: Site) -> SpecError {
        self.site.get_or_insert(site);
        self
    }

    /// Sets the position unless a more precise one is already known.
    pub fn at(mut self, position: Position) -> SpecError {
        self.position.get_or_insert(position);
        self
    }

    /// The error as a compiler would print it: `FILE:LINE:COL: error: message`, then
    /// `DETAIL:` and `HINT:` lines.
    pub fn render(&self, file: &str) -> String {
        let mut out = match self.position {
            Some(p) => format!("{file}:{}:{}: error: {}", p.line, p.column, self.message),
            None => format!("{file}: error: {}", self.message),
        };
        if let Some(detail) = &self.detail {
            out.push_str("\nDETAIL: ");
            out.push_str(detail);
        }
        if let Some(hint) = &self.hint {
            out.push_str("\nHINT: ");
            out.push_str(hint);
        }
        out
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecError {}

/// Something worth telling about an accepted statement, e.g. that a key is not enforced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub message: String,
    pub position: Option<Position>,
}
