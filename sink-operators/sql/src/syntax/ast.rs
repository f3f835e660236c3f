//! The parsed form of statements, before names are resolved. Every node keeps the position
//! of its first token so that validation can point at it.

use outflow_encoders::Secret;

use crate::error::Position;
use crate::options::{
    AvroFormatOption, DebeziumEnvelopeOption, JsonFormatOption, KafkaConnectionOption,
    RegistryConnectionOption, SinkOption, SinkWithOption,
};

/// An identifier, case-folded to lowercase unless it was double-quoted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub pos: Position,
}

#[derive(Clone, Debug)]
pub enum Statement {
    CreateSecret(CreateSecret),
    CreateConnection(CreateConnection),
    CreateTable(CreateTable),
    CreateCluster(CreateCluster),
    CreateSink(Box<CreateSink>),
}

impl Statement {
    /// The position of the statement's first token.
    pub fn pos(&self) -> Position {
        match self {
            Statement::CreateSecret(s) => s.pos,
            Statement::CreateConnection(s) => s.pos,
            Statement::CreateTable(s) => s.pos,
            Statement::CreateCluster(s) => s.pos,
            Statement::CreateSink(s) => s.pos,
        }
    }
}

/// `CREATE SECRET [IF NOT EXISTS] name AS 'value'`.
#[derive(Clone, Debug)]
pub struct CreateSecret {
    pub pos: Position,
    pub if_not_exists: bool,
    pub name: Ident,
    pub value: Secret,
}

/// What a connection connects to, with the options of that kind of connection.
#[derive(Clone, Debug)]
pub enum ConnectionOptions {
    Kafka(Vec<SqlOption<KafkaConnectionOption>>),
    ConfluentSchemaRegistry(Vec<SqlOption<RegistryConnectionOption>>),
}

/// `CREATE CONNECTION [IF NOT EXISTS] name TO {KAFKA | CONFLUENT SCHEMA REGISTRY} (…)`.
#[derive(Clone, Debug)]
pub struct CreateConnection {
    pub pos: Position,
    pub if_not_exists: bool,
    pub name: Ident,
    pub options: ConnectionOptions,
}

/// One `NAME [=] value` option of a clause whose options are the enum `N` (see
/// [`crate::options`]). The value has the [`ValueKind`](crate::options::ValueKind) the
/// option asks for.
#[derive(Clone, Debug)]
pub struct SqlOption<N> {
    pub name: N,
    pub pos: Position,
    pub value: OptionValue,
    pub value_pos: Position,
}

#[derive(Clone, Debug)]
pub enum OptionValue {
    Str(String),
    Int(i64),
    Bool(bool),
    /// A bare word, e.g. `gzip` in `COMPRESSION TYPE = gzip`.
    Word(String),
    Secret(Ident),
    /// `('a', 'b')`.
    List(Vec<(String, Position)>),
    /// `MAP['k' => 'v', …]`.
    Map(Vec<(String, String, Position)>),
    /// `('key' = 'value' | SECRET name, …)`, in the order written.
    Settings(Vec<Setting>),
    Expr(Expr),
}

/// One `'key' = value` of a [`OptionValue::Settings`]; `pos` is the key's.
#[derive(Clone, Debug)]
pub struct Setting {
    pub key: String,
    pub pos: Position,
    pub value: SettingValue,
}

#[derive(Clone, Debug)]
pub enum SettingValue {
    Str(String),
    Secret(Ident),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DocPart {
    Key,
    Value,
    Both,
}

/// `[KEY | VALUE] DOC ON {TYPE t | COLUMN t.c}`.
#[derive(Clone, Debug)]
pub struct DocOn {
    pub part: DocPart,
    pub relation: Ident,
    pub column: Option<Ident>,
}

/// `[KEY | VALUE] DOC ON … = 'text'`, an option of an Avro format; `pos` is its first token.
#[derive(Clone, Debug)]
pub struct DocOption {
    pub pos: Position,
    pub on: DocOn,
    pub text: String,
    pub text_pos: Position,
}

/// `CREATE TABLE [IF NOT EXISTS] name (columns and constraints)`.
#[derive(Clone, Debug)]
pub struct CreateTable {
    pub pos: Position,
    pub if_not_exists: bool,
    pub name: Ident,
    pub columns: Vec<ColumnDef>,
    pub constraints: Vec<TableConstraint>,
}

#[derive(Clone, Debug)]
pub struct ColumnDef {
    pub name: Ident,
    /// The type as written, re-assembled from its tokens.
    pub type_name: String,
    pub type_pos: Position,
    pub not_null: bool,
    /// Column-level `PRIMARY KEY` / `UNIQUE`, with their positions.
    pub primary_key: Option<Position>,
    pub unique: Option<Position>,
}

#[derive(Clone, Debug)]
pub struct TableConstraint {
    pub pos: Position,
    pub primary_key: bool,
    pub columns: Vec<Ident>,
}

/// `CREATE CLUSTER [IF NOT EXISTS] name [(]SIZE [=] '…'[)]`.
#[derive(Clone, Debug)]
pub struct CreateCluster {
    pub pos: Position,
    pub if_not_exists: bool,
    pub name: Ident,
    pub size: String,
    pub size_pos: Position,
}

/// `CREATE SINK …`. Clauses after the connection options may come in any order; each at
/// most once.
#[derive(Clone, Debug)]
pub struct CreateSink {
    pub pos: Position,
    pub if_not_exists: bool,
    pub name: Ident,
    pub in_cluster: Option<Ident>,
    pub from: Ident,
    pub connection: Ident,
    pub options: Vec<SqlOption<SinkOption>>,
    pub key: Option<KeyClause>,
    pub headers: Option<Ident>,
    pub format: Option<FormatClause>,
    pub envelope: Option<(EnvelopeKind, Position)>,
    /// `ENVELOPE … (…)`: parsed for either envelope, so that validation can refuse options
    /// given to UPSERT by name.
    pub envelope_options: Vec<SqlOption<DebeziumEnvelopeOption>>,
    pub with_options: Vec<SqlOption<SinkWithOption>>,
}

#[derive(Clone, Debug)]
pub struct KeyClause {
    pub pos: Position,
    pub columns: Vec<Ident>,
    pub not_enforced: bool,
}

#[derive(Clone, Debug)]
pub enum FormatClause {
    Bare(Format),
    KeyValue { key: Format, value: Format },
}

#[derive(Clone, Debug)]
pub struct Format {
    pub pos: Position,
    pub kind: FormatKind,
}

#[derive(Clone, Debug)]
pub enum FormatKind {
    Json {
        options: Vec<SqlOption<JsonFormatOption>>,
    },
    Text,
    Bytes,
    Avro {
        registry: Ident,
        options: Vec<SqlOption<AvroFormatOption>>,
        docs: Vec<DocOption>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvelopeKind {
    Upsert,
    Debezium,
}

/// A scalar expression, as `PARTITION BY` takes.
#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub pos: Position,
    pub kind: ExprKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Column(Ident),
    /// A string literal; its type comes from where it is used, as in Postgres.
    Str(String),
    /// A number as written, `-` included when it was negated directly.
    Number(String),
    Null,
    Bool(bool),
    /// `expr::type` or `CAST(expr AS type)`; the type as written.
    Cast {
        expr: Box<Expr>,
        type_name: String,
        type_pos: Position,
    },
    Binary {
        op: BinaryOp,
        op_pos: Position,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
    },
    /// `expr IS [NOT] NULL`.
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    /// `CASE [operand] WHEN … THEN … [ELSE …] END`.
    Case {
        operand: Option<Box<Expr>>,
        branches: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    /// A function call. `substring(x FROM a FOR b)` and `trim(BOTH c FROM x)` arrive as
    /// `substring(x, a, b)` and `btrim(x, c)`.
    Call {
        name: Ident,
        args: Vec<Expr>,
    },
}

/// Binary operators, in Postgres's precedence classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Concat,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl BinaryOp {
    pub fn symbol(&self) -> &'static str {
        match self {
            BinaryOp::Or => "OR",
            BinaryOp::And => "AND",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::Concat => "||",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
        }
    }

    /// How tightly the operator binds; higher binds tighter. Comparisons do not associate.
    pub fn precedence(&self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::Lt
            | BinaryOp::LtEq
            | BinaryOp::Gt
            | BinaryOp::GtEq => 5,
            BinaryOp::Concat => 6,
            BinaryOp::Add | BinaryOp::Sub => 7,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => 8,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Not,
    Neg,
}
