//! A recursive-descent parser for the statements of the Kafka sinks guide.

use std::collections::HashSet;

use outflow_encoders::Secret;

use super::ast::*;
use super::lexer::{tokenize, Token, TokenKind};
use crate::error::{Position, SpecError};
use crate::options::{AvroFormatOption, ClusterOption, OptionName, ValueKind};

/// Parses a file of `;`-separated statements.
pub fn parse_statements(text: &str) -> Result<Vec<Statement>, SpecError> {
    let mut parser = Parser::new(text)?;
    let mut statements = Vec::new();
    loop {
        while parser.eat(&TokenKind::Semicolon) {}
        if parser.at_eof() {
            return Ok(statements);
        }
        statements.push(parser.statement()?);
        if !parser.eat(&TokenKind::Semicolon) && !parser.at_eof() {
            return Err(parser.unexpected("\";\" at the end of the statement"));
        }
    }
}

/// Parses a scalar expression on its own, as `SinkBuilder::partition_by` takes it.
pub fn parse_expr(text: &str) -> Result<Expr, SpecError> {
    let mut parser = Parser::new(text)?;
    let expr = parser.expr()?;
    if !parser.at_eof() {
        return Err(parser.unexpected("the end of the expression"));
    }
    Ok(expr)
}

/// Words that end a column's type in `CREATE TABLE`.
const COLUMN_CONSTRAINT_WORDS: &[&str] = &[
    "NOT",
    "NULL",
    "PRIMARY",
    "UNIQUE",
    "CONSTRAINT",
    "DEFAULT",
    "REFERENCES",
    "CHECK",
];

/// Reserved words that cannot start an expression: they end one (`CASE … END`) or join two.
const EXPRESSION_END_WORDS: &[&str] = &[
    "WHEN", "THEN", "ELSE", "END", "AND", "OR", "NOT", "IS", "FROM", "FOR", "AS",
];

fn is_quoted(token: &Token) -> bool {
    matches!(token.kind, TokenKind::Word { quoted: true, .. })
}

/// Words that may continue a type name after `::` or `AS`.
const TYPE_CONTINUATION_WORDS: &[&str] = &[
    "PRECISION",
    "VARYING",
    "WITH",
    "WITHOUT",
    "TIME",
    "ZONE",
    "LIST",
];

pub(crate) struct Parser {
    tokens: Vec<Token>,
    next: usize,
}

impl Parser {
    fn new(text: &str) -> Result<Parser, SpecError> {
        Ok(Parser {
            tokens: tokenize(text)?,
            next: 0,
        })
    }

    fn peek(&self) -> &Token {
        &self.tokens[self.next.min(self.tokens.len() - 1)]
    }

    fn peek_nth(&self, n: usize) -> &Token {
        &self.tokens[(self.next + n).min(self.tokens.len() - 1)]
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.next < self.tokens.len() - 1 {
            self.next += 1;
        }
        token
    }

    fn at_eof(&self) -> bool {
        self.peek().kind == TokenKind::Eof
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        if &self.peek().kind == kind {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, kind: TokenKind, what: &str) -> Result<Position, SpecError> {
        if self.peek().kind == kind {
            Ok(self.advance().pos)
        } else {
            Err(self.unexpected(what))
        }
    }

    fn unexpected(&self, expected: &str) -> SpecError {
        let token = self.peek();
        SpecError::new(format!("expected {expected}, found {}", token.describe())).at(token.pos)
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        self.peek().is_keyword(kw)
    }

    /// Whether the next tokens are the keywords `kws`, in order.
    fn peek_keywords(&self, kws: &[&str]) -> bool {
        self.peek_words(kws.iter().copied())
    }

    fn peek_words<'a>(&self, kws: impl Iterator<Item = &'a str>) -> bool {
        kws.enumerate()
            .all(|(i, kw)| self.peek_nth(i).is_keyword(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        if self.peek_keyword(kw) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn eat_keywords(&mut self, kws: &[&str]) -> bool {
        if self.peek_keywords(kws) {
            self.next += kws.len();
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<Position, SpecError> {
        if self.peek_keyword(kw) {
            Ok(self.advance().pos)
        } else {
            Err(self.unexpected(kw))
        }
    }

    fn expect_keywords(&mut self, kws: &[&str]) -> Result<(), SpecError> {
        for kw in kws {
            self.expect_keyword(kw)?;
        }
        Ok(())
    }

    fn ident(&mut self, what: &str) -> Result<Ident, SpecError> {
        match &self.peek().kind {
            TokenKind::Word { text, quoted } => {
                let name = if *quoted {
                    text.clone()
                } else {
                    text.to_lowercase()
                };
                let pos = self.advance().pos;
                Ok(Ident { name, pos })
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn string(&mut self, what: &str) -> Result<(String, Position), SpecError> {
        match &self.peek().kind {
            TokenKind::Str(s) => {
                let s = s.clone();
                Ok((s, self.advance().pos))
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn if_not_exists(&mut self) -> bool {
        self.eat_keywords(&["IF", "NOT", "EXISTS"])
    }

    fn statement(&mut self) -> Result<Statement, SpecError> {
        let start = self.peek().clone();
        if !start.is_keyword("CREATE") {
            let what = match &start.kind {
                TokenKind::Word { text, .. } => text.to_uppercase(),
                _ => return Err(self.unexpected("a statement")),
            };
            return Err(SpecError::new(format!("unsupported statement: {what}"))
                .hint("outflow reads CREATE SECRET, CREATE CONNECTION, CREATE TABLE, CREATE CLUSTER and CREATE SINK statements")
                .at(start.pos));
        }
        self.advance();
        let pos = start.pos;
        if self.eat_keyword("SECRET") {
            self.create_secret(pos).map(Statement::CreateSecret)
        } else if self.eat_keyword("CONNECTION") {
            self.create_connection(pos).map(Statement::CreateConnection)
        } else if self.eat_keyword("TABLE") {
            self.create_table(pos).map(Statement::CreateTable)
        } else if self.eat_keyword("CLUSTER") {
            self.create_cluster(pos).map(Statement::CreateCluster)
        } else if self.eat_keyword("SINK") {
            self.create_sink(pos)
                .map(|s| Statement::CreateSink(Box::new(s)))
        } else if self.peek_keywords(&["MATERIALIZED", "VIEW"]) || self.peek_keyword("VIEW") {
            let what = if self.peek_keyword("VIEW") {
                "CREATE VIEW"
            } else {
                "CREATE MATERIALIZED VIEW"
            };
            Err(SpecError::new(format!("{what} is not supported"))
                .detail("Views are written in Rust, as differential dataflow operators that feed a sink.")
                .hint("see examples/ for pipelines written in Rust")
                .at(pos))
        } else {
            let what = match &self.peek().kind {
                TokenKind::Word { text, .. } => format!("CREATE {}", text.to_uppercase()),
                _ => return Err(self.unexpected("SECRET, CONNECTION, TABLE, CLUSTER or SINK")),
            };
            Err(SpecError::new(format!("unsupported statement: {what}"))
                .hint("outflow reads CREATE SECRET, CREATE CONNECTION, CREATE TABLE, CREATE CLUSTER and CREATE SINK statements")
                .at(pos))
        }
    }

    fn create_secret(&mut self, pos: Position) -> Result<CreateSecret, SpecError> {
        let if_not_exists = self.if_not_exists();
        let name = self.ident("a secret name")?;
        self.expect_keyword("AS")?;
        // Whatever follows AS may be the secret, quoted or not: errors never show it.
        let shown = name.name.clone();
        let value_pos = self.peek().pos;
        let value = match &self.peek().kind {
            TokenKind::Str(s) => {
                let s = s.clone();
                self.advance();
                s
            }
            _ => {
                return Err(SpecError::new(format!(
                    "CREATE SECRET {shown}: the secret's value must be a string literal (the text written is not shown)"
                ))
                .hint(format!("quote the value: CREATE SECRET {shown} AS '…'"))
                .at(value_pos))
            }
        };
        if !matches!(self.peek().kind, TokenKind::Semicolon | TokenKind::Eof) {
            return Err(SpecError::new(format!(
                "CREATE SECRET {shown}: expected \";\" after the secret's value (the text written is not shown)"
            ))
            .hint(format!("a secret's value is one string literal: CREATE SECRET {shown} AS '…'"))
            .at(self.peek().pos));
        }
        Ok(CreateSecret {
            pos,
            if_not_exists,
            name,
            value: Secret::new(value),
        })
    }

    fn create_connection(&mut self, pos: Position) -> Result<CreateConnection, SpecError> {
        let if_not_exists = self.if_not_exists();
        let name = self.ident("a connection name")?;
        self.expect_keyword("TO")?;
        let options = if self.eat_keyword("KAFKA") {
            ConnectionOptions::Kafka(self.option_list("KAFKA CONNECTION")?)
        } else if self.eat_keywords(&["CONFLUENT", "SCHEMA", "REGISTRY"]) {
            ConnectionOptions::ConfluentSchemaRegistry(
                self.option_list("CONFLUENT SCHEMA REGISTRY CONNECTION")?,
            )
        } else {
            return Err(self.unexpected("KAFKA or CONFLUENT SCHEMA REGISTRY"));
        };
        Ok(CreateConnection {
            pos,
            if_not_exists,
            name,
            options,
        })
    }

    fn create_cluster(&mut self, pos: Position) -> Result<CreateCluster, SpecError> {
        let if_not_exists = self.if_not_exists();
        let name = self.ident("a cluster name")?;
        let options: Vec<SqlOption<ClusterOption>> = if self.peek().kind == TokenKind::LParen {
            self.option_list("CLUSTER")?
        } else if self.peek_keyword("SIZE") {
            vec![self.option("CLUSTER")?]
        } else {
            Vec::new()
        };
        match options.into_iter().next() {
            Some(SqlOption {
                name: ClusterOption::Size,
                value: OptionValue::Str(size),
                value_pos,
                ..
            }) => Ok(CreateCluster {
                pos,
                if_not_exists,
                name,
                size,
                size_pos: value_pos,
            }),
            _ => Err(
                SpecError::new(format!("CREATE CLUSTER {} must specify SIZE", name.name))
                    .hint("e.g. CREATE CLUSTER sink_cluster SIZE = 'medium'")
                    .at(pos),
            ),
        }
    }

    fn create_table(&mut self, pos: Position) -> Result<CreateTable, SpecError> {
        let if_not_exists = self.if_not_exists();
        let name = self.ident("a table name")?;
        self.expect(TokenKind::LParen, "\"(\" and the table's columns")?;
        let mut columns = Vec::new();
        let mut constraints = Vec::new();
        if !self.eat(&TokenKind::RParen) {
            loop {
                let start = self.peek().pos;
                let named_constraint = self.eat_keyword("CONSTRAINT");
                if named_constraint {
                    self.ident("a constraint name")?;
                }
                if self.eat_keywords(&["PRIMARY", "KEY"]) {
                    constraints.push(TableConstraint {
                        pos: start,
                        primary_key: true,
                        columns: self.column_list()?,
                    });
                } else if self.eat_keyword("UNIQUE") {
                    constraints.push(TableConstraint {
                        pos: start,
                        primary_key: false,
                        columns: self.column_list()?,
                    });
                } else if named_constraint {
                    return Err(self.unexpected("PRIMARY KEY or UNIQUE"));
                } else {
                    columns.push(self.column_def()?);
                }
                if self.eat(&TokenKind::RParen) {
                    break;
                }
                self.expect(TokenKind::Comma, "\",\" or \")\"")?;
            }
        }
        Ok(CreateTable {
            pos,
            if_not_exists,
            name,
            columns,
            constraints,
        })
    }

    fn column_list(&mut self) -> Result<Vec<Ident>, SpecError> {
        self.expect(TokenKind::LParen, "\"(\"")?;
        let mut columns = vec![self.ident("a column name")?];
        while self.eat(&TokenKind::Comma) {
            columns.push(self.ident("a column name")?);
        }
        self.expect(TokenKind::RParen, "\",\" or \")\"")?;
        Ok(columns)
    }

    fn column_def(&mut self) -> Result<ColumnDef, SpecError> {
        let name = self.ident("a column name or a table constraint")?;
        let type_pos = self.peek().pos;
        let mut type_tokens: Vec<String> = Vec::new();
        let mut depth = 0usize;
        loop {
            let token = self.peek();
            match &token.kind {
                TokenKind::Eof | TokenKind::Semicolon => break,
                TokenKind::Comma | TokenKind::RParen if depth == 0 => break,
                TokenKind::Word { quoted: false, .. }
                    if depth == 0
                        && COLUMN_CONSTRAINT_WORDS.iter().any(|w| token.is_keyword(w)) =>
                {
                    break
                }
                TokenKind::LParen | TokenKind::LBracket => depth += 1,
                TokenKind::RParen | TokenKind::RBracket => depth = depth.saturating_sub(1),
                _ => {}
            }
            type_tokens.push(token.text());
            self.advance();
        }
        if type_tokens.is_empty() {
            return Err(
                SpecError::new(format!("column \"{}\" needs a type", name.name)).at(type_pos),
            );
        }
        let mut column = ColumnDef {
            name,
            type_name: join_type_tokens(&type_tokens),
            type_pos,
            not_null: false,
            primary_key: None,
            unique: None,
        };
        loop {
            let pos = self.peek().pos;
            if self.eat_keywords(&["NOT", "NULL"]) {
                column.not_null = true;
            } else if self.eat_keyword("NULL") {
                // Nullable is the default; Postgres accepts saying so.
            } else if self.eat_keywords(&["PRIMARY", "KEY"]) {
                column.primary_key = Some(pos);
            } else if self.eat_keyword("UNIQUE") {
                column.unique = Some(pos);
            } else if self.peek_keyword("CONSTRAINT") {
                self.advance();
                self.ident("a constraint name")?;
            } else if let Some(word) = ["DEFAULT", "REFERENCES", "CHECK"]
                .iter()
                .find(|w| self.peek_keyword(w))
            {
                return Err(SpecError::new(format!("{word} is not supported in CREATE TABLE"))
                    .detail("Tables describe the rows of a change feed; only types, NOT NULL, PRIMARY KEY and UNIQUE matter to a sink.")
                    .at(pos));
            } else {
                return Ok(column);
            }
        }
    }

    fn create_sink(&mut self, pos: Position) -> Result<CreateSink, SpecError> {
        let if_not_exists = self.if_not_exists();
        let name = self.ident("a sink name")?;
        let in_cluster = if self.eat_keywords(&["IN", "CLUSTER"]) {
            Some(self.ident("a cluster name")?)
        } else {
            None
        };
        self.expect_keyword("FROM")?;
        let from = self.ident("the name of the table the sink reads")?;
        self.expect_keywords(&["INTO", "KAFKA", "CONNECTION"])?;
        let connection = self.ident("a Kafka connection name")?;
        let options = if self.peek().kind == TokenKind::LParen {
            self.option_list("KAFKA CONNECTION")?
        } else {
            Vec::new()
        };
        let mut sink = CreateSink {
            pos,
            if_not_exists,
            name,
            in_cluster,
            from,
            connection,
            options,
            key: None,
            headers: None,
            format: None,
            envelope: None,
            envelope_options: Vec::new(),
            with_options: Vec::new(),
        };
        let mut seen_with = false;
        loop {
            let token = self.peek().clone();
            let twice = |clause: &str| {
                SpecError::new(format!("{clause} specified more than once")).at(token.pos)
            };
            if self.peek_keywords(&["KEY", "FORMAT"]) {
                if sink.format.is_some() {
                    return Err(twice("FORMAT"));
                }
                self.next += 2;
                let key = self.format(token.pos)?;
                let value_pos = self.peek().pos;
                self.expect_keywords(&["VALUE", "FORMAT"])?;
                let value = self.format(value_pos)?;
                sink.format = Some(FormatClause::KeyValue { key, value });
            } else if self.peek_keyword("KEY") {
                if sink.key.is_some() {
                    return Err(twice("KEY"));
                }
                self.advance();
                let columns = self.column_list()?;
                let not_enforced = self.eat_keywords(&["NOT", "ENFORCED"]);
                sink.key = Some(KeyClause {
                    pos: token.pos,
                    columns,
                    not_enforced,
                });
            } else if self.peek_keyword("HEADERS") {
                if sink.headers.is_some() {
                    return Err(twice("HEADERS"));
                }
                self.advance();
                sink.headers = Some(self.ident("the name of the headers column")?);
            } else if self.peek_keyword("FORMAT") {
                if sink.format.is_some() {
                    return Err(twice("FORMAT"));
                }
                self.advance();
                sink.format = Some(FormatClause::Bare(self.format(token.pos)?));
            } else if self.peek_keywords(&["VALUE", "FORMAT"]) {
                return Err(SpecError::new("VALUE FORMAT must follow KEY FORMAT")
                    .hint("write KEY FORMAT f VALUE FORMAT g, or FORMAT f for both")
                    .at(token.pos));
            } else if self.peek_keyword("ENVELOPE") {
                if sink.envelope.is_some() {
                    return Err(twice("ENVELOPE"));
                }
                self.advance();
                let envelope_pos = self.peek().pos;
                let envelope = if self.eat_keyword("UPSERT") {
                    EnvelopeKind::Upsert
                } else if self.eat_keyword("DEBEZIUM") {
                    EnvelopeKind::Debezium
                } else {
                    return Err(self.unexpected("UPSERT or DEBEZIUM"));
                };
                sink.envelope = Some((envelope, envelope_pos));
                if self.peek().kind == TokenKind::LParen {
                    sink.envelope_options = self.option_list("ENVELOPE")?;
                }
            } else if self.peek_keyword("WITH") {
                if seen_with {
                    return Err(twice("WITH"));
                }
                seen_with = true;
                self.advance();
                sink.with_options = self.option_list("WITH")?;
            } else if matches!(token.kind, TokenKind::Semicolon | TokenKind::Eof) {
                return Ok(sink);
            } else {
                return Err(self.unexpected(
                    "KEY, HEADERS, FORMAT, KEY FORMAT, ENVELOPE, WITH or the end of the statement",
                ));
            }
        }
    }

    /// A format after `FORMAT`, `KEY FORMAT` or `VALUE FORMAT`; `pos` is that clause's.
    fn format(&mut self, pos: Position) -> Result<Format, SpecError> {
        let token = self.peek().clone();
        let kind = if self.eat_keyword("JSON") {
            if self.peek_keyword("ARRAY") {
                return Err(
                    SpecError::new("JSON ARRAY format in sinks not yet supported").at(token.pos),
                );
            }
            let options = if self.peek().kind == TokenKind::LParen {
                self.option_list("JSON")?
            } else {
                Vec::new()
            };
            FormatKind::Json { options }
        } else if self.eat_keyword("TEXT") {
            FormatKind::Text
        } else if self.eat_keyword("BYTES") {
            FormatKind::Bytes
        } else if self.eat_keyword("AVRO") {
            self.expect_keywords(&["USING", "CONFLUENT", "SCHEMA", "REGISTRY", "CONNECTION"])?;
            let registry = self.ident("a schema registry connection name")?;
            let (options, docs) = if self.peek().kind == TokenKind::LParen {
                self.registry_format_options()?
            } else {
                (Vec::new(), Vec::new())
            };
            for (words, name) in [
                (&["SEED"][..], "SEED"),
                (&["KEY", "STRATEGY"][..], "KEY STRATEGY"),
                (&["VALUE", "STRATEGY"][..], "VALUE STRATEGY"),
            ] {
                if self.peek_keywords(words) {
                    return Err(SpecError::new(format!(
                        "{name} option does not make sense with sinks"
                    ))
                    .at(self.peek().pos));
                }
            }
            FormatKind::Avro {
                registry,
                options,
                docs,
            }
        } else if let TokenKind::Word { text, .. } = &token.kind {
            return Err(SpecError::new(format!("sink format {} not yet supported", text.to_uppercase()))
                .hint("the formats are JSON, TEXT, BYTES and AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION …")
                .at(token.pos));
        } else {
            return Err(self.unexpected("JSON, TEXT, BYTES or AVRO"));
        };
        Ok(Format { pos, kind })
    }

    /// The options of `AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION c (…)`, where
    /// `DOC ON` options name their target before the `=`.
    fn registry_format_options(
        &mut self,
    ) -> Result<(Vec<SqlOption<AvroFormatOption>>, Vec<DocOption>), SpecError> {
        self.expect(TokenKind::LParen, "\"(\"")?;
        let mut options: Vec<SqlOption<AvroFormatOption>> = Vec::new();
        let mut docs = Vec::new();
        let mut seen_docs = HashSet::new();
        if self.eat(&TokenKind::RParen) {
            return Ok((options, docs));
        }
        loop {
            let pos = self.peek().pos;
            let part = if self.peek_keywords(&["KEY", "DOC", "ON"]) {
                self.next += 1;
                Some(DocPart::Key)
            } else if self.peek_keywords(&["VALUE", "DOC", "ON"]) {
                self.next += 1;
                Some(DocPart::Value)
            } else if self.peek_keywords(&["DOC", "ON"]) {
                Some(DocPart::Both)
            } else {
                None
            };
            if let Some(part) = part {
                self.next += 2;
                let (relation, column) = if self.eat_keyword("TYPE") {
                    (self.ident("a relation name")?, None)
                } else if self.eat_keyword("COLUMN") {
                    let relation = self.ident("a relation name")?;
                    self.expect(
                        TokenKind::Dot,
                        "\".\" and a column name (COLUMN relation.column)",
                    )?;
                    (relation, Some(self.ident("a column name")?))
                } else {
                    return Err(self.unexpected("TYPE or COLUMN"));
                };
                let target = (
                    part,
                    relation.name.clone(),
                    column.as_ref().map(|c| c.name.clone()),
                );
                if !seen_docs.insert(target) {
                    let prefix = match part {
                        DocPart::Key => "KEY ",
                        DocPart::Value => "VALUE ",
                        DocPart::Both => "",
                    };
                    let what = match &column {
                        Some(c) => format!("COLUMN {}.{}", relation.name, c.name),
                        None => format!("TYPE {}", relation.name),
                    };
                    return Err(SpecError::new(format!(
                        "{prefix}DOC ON {what} specified more than once"
                    ))
                    .at(pos));
                }
                self.expect(TokenKind::Equals, "\"=\" and the documentation text")?;
                let (text, text_pos) = self.string("the documentation text as a string")?;
                docs.push(DocOption {
                    pos,
                    on: DocOn {
                        part,
                        relation,
                        column,
                    },
                    text,
                    text_pos,
                });
            } else {
                let option = self.option("AVRO")?;
                if options.iter().any(|o| o.name == option.name) {
                    return Err(SpecError::new(format!(
                        "{} specified more than once",
                        option.name
                    ))
                    .at(option.pos));
                }
                options.push(option);
            }
            if self.eat(&TokenKind::RParen) {
                return Ok((options, docs));
            }
            self.expect(TokenKind::Comma, "\",\" or \")\"")?;
        }
    }

    /// `( option, … )`, each option at most once.
    fn option_list<N: OptionName>(
        &mut self,
        context: &str,
    ) -> Result<Vec<SqlOption<N>>, SpecError> {
        self.expect(TokenKind::LParen, "\"(\"")?;
        let mut options: Vec<SqlOption<N>> = Vec::new();
        if self.eat(&TokenKind::RParen) {
            return Ok(options);
        }
        loop {
            let option = self.option(context)?;
            if options.iter().any(|o| o.name == option.name) {
                return Err(
                    SpecError::new(format!("{} specified more than once", option.name))
                        .at(option.pos),
                );
            }
            options.push(option);
            if self.eat(&TokenKind::RParen) {
                return Ok(options);
            }
            self.expect(TokenKind::Comma, "\",\" or \")\"")?;
        }
    }

    /// One `NAME [=] value`, the name matched as the longest known option.
    fn option<N: OptionName>(&mut self, context: &str) -> Result<SqlOption<N>, SpecError> {
        let pos = self.peek().pos;
        let Some(option) = N::ALL
            .iter()
            .copied()
            .filter(|o| self.peek_words(o.words()))
            .max_by_key(|o| o.words().count())
        else {
            let mut words = Vec::new();
            let mut n = 0;
            while let TokenKind::Word { text, .. } = &self.peek_nth(n).kind {
                words.push(text.to_uppercase());
                n += 1;
            }
            let known: Vec<&str> = N::ALL.iter().map(|o| o.name()).collect();
            if words.is_empty() {
                return Err(self.unexpected(&format!("a {context} option")));
            }
            return Err(
                SpecError::new(format!("unknown {context} option: {}", words.join(" ")))
                    .hint(format!("the {context} options are {}", known.join(", ")))
                    .at(pos),
            );
        };
        self.next += option.words().count();
        self.eat(&TokenKind::Equals);
        let value_pos = self.peek().pos;
        let value = self.option_value(option.name(), option.value_kind())?;
        // A secret option is blamed on the secret's name, not the SECRET keyword.
        let value_pos = match &value {
            OptionValue::Secret(secret) => secret.pos,
            _ => value_pos,
        };
        Ok(SqlOption {
            name: option,
            pos,
            value,
            value_pos,
        })
    }

    /// The value of the option `name`, parsed as its `kind` says.
    fn option_value(&mut self, name: &str, kind: ValueKind) -> Result<OptionValue, SpecError> {
        let token = self.peek().clone();
        let value = match (kind, &token.kind) {
            (
                ValueKind::Str | ValueKind::StrOrSecret | ValueKind::Word | ValueKind::Interval,
                TokenKind::Str(s),
            ) => OptionValue::Str(s.clone()),
            (ValueKind::Secret | ValueKind::StrOrSecret, _) if token.is_keyword("SECRET") => {
                self.advance();
                return Ok(OptionValue::Secret(self.ident("a secret name")?));
            }
            (ValueKind::Secret, TokenKind::Str(_)) => {
                return Err(SpecError::new(format!("{name} must be a SECRET"))
                    .hint(format!(
                        "store the value with CREATE SECRET, then write {name} = SECRET name"
                    ))
                    .at(token.pos));
            }
            (ValueKind::Word, TokenKind::Word { text, quoted }) => OptionValue::Word(if *quoted {
                text.clone()
            } else {
                text.to_lowercase()
            }),
            (ValueKind::Interval, _) if token.is_keyword("INTERVAL") => {
                self.advance();
                return Ok(OptionValue::Str(
                    self.string("an interval string, e.g. INTERVAL '30s'")?.0,
                ));
            }
            (ValueKind::Int, TokenKind::Minus | TokenKind::Number(_)) => {
                let negative = self.eat(&TokenKind::Minus);
                let digits = match &self.peek().kind {
                    TokenKind::Number(n) => n.clone(),
                    _ => return Err(self.unexpected(&format!("an integer for {name}"))),
                };
                let parsed = digits.parse::<i64>().map(|n| if negative { -n } else { n });
                let n = parsed.map_err(|_| {
                    SpecError::new(format!("{name} must be an integer, not {digits}")).at(token.pos)
                })?;
                self.advance();
                return Ok(OptionValue::Int(n));
            }
            (ValueKind::Bool, TokenKind::Comma | TokenKind::RParen) => {
                return Ok(OptionValue::Bool(true))
            }
            (
                ValueKind::Bool,
                TokenKind::Word {
                    text,
                    quoted: false,
                }
                | TokenKind::Str(text),
            ) => match text.to_ascii_lowercase().as_str() {
                "true" | "on" => OptionValue::Bool(true),
                "false" | "off" => OptionValue::Bool(false),
                _ => return Err(self.unexpected(&format!("true or false for {name}"))),
            },
            (ValueKind::StrList, TokenKind::LParen) => {
                self.advance();
                let mut items = vec![self.string("a string")?];
                while self.eat(&TokenKind::Comma) {
                    items.push(self.string("a string")?);
                }
                self.expect(TokenKind::RParen, "\",\" or \")\"")?;
                return Ok(OptionValue::List(items));
            }
            (ValueKind::Map, _) if token.is_keyword("MAP") => {
                self.advance();
                self.expect(TokenKind::LBracket, "\"[\"")?;
                let mut entries = Vec::new();
                if !self.eat(&TokenKind::RBracket) {
                    loop {
                        let (key, pos) = self.string("a string key")?;
                        self.expect(TokenKind::Arrow, "\"=>\"")?;
                        let (value, _) = self.string("a string value")?;
                        entries.push((key, value, pos));
                        if self.eat(&TokenKind::RBracket) {
                            break;
                        }
                        self.expect(TokenKind::Comma, "\",\" or \"]\"")?;
                    }
                }
                return Ok(OptionValue::Map(entries));
            }
            (ValueKind::Settings, TokenKind::LParen) => {
                self.advance();
                let mut settings = Vec::new();
                if self.eat(&TokenKind::RParen) {
                    return Ok(OptionValue::Settings(settings));
                }
                loop {
                    let (key, pos) = self.string(&format!("a quoted setting name for {name}"))?;
                    self.expect(TokenKind::Equals, "\"=\" and the setting's value")?;
                    let value = if self.eat_keyword("SECRET") {
                        SettingValue::Secret(self.ident("a secret name")?)
                    } else {
                        match &self.peek().kind {
                            TokenKind::Str(s) => {
                                let s = s.clone();
                                self.advance();
                                SettingValue::Str(s)
                            }
                            _ => {
                                return Err(self.unexpected(&format!(
                                    "a string or SECRET name for '{key}' in {name}"
                                )))
                            }
                        }
                    };
                    settings.push(Setting { key, pos, value });
                    if self.eat(&TokenKind::RParen) {
                        return Ok(OptionValue::Settings(settings));
                    }
                    self.expect(TokenKind::Comma, "\",\" or \")\"")?;
                }
            }
            (ValueKind::Expr, _) => return Ok(OptionValue::Expr(self.expr()?)),
            (kind, _) => {
                let expected = match kind {
                    ValueKind::Str | ValueKind::Interval => "a string",
                    ValueKind::Int => "an integer",
                    ValueKind::StrOrSecret => "a string or SECRET name",
                    ValueKind::Secret => "SECRET name",
                    ValueKind::Word => "a word or a string",
                    ValueKind::Bool => "true or false",
                    ValueKind::StrList => "a parenthesized list of strings",
                    ValueKind::Map => "MAP['key' => 'value', …]",
                    ValueKind::Settings => "('name' = 'value', …)",
                    ValueKind::Expr => "an expression",
                };
                return Err(self.unexpected(&format!("{expected} for {name}")));
            }
        };
        self.advance();
        Ok(value)
    }

    /// A scalar expression, with Postgres's precedence: `OR`, `AND`, `NOT`, `IS [NOT]
    /// NULL`, comparisons (non-associative), `||`, `+ -`, `* / %`, unary `-`, `::`.
    pub(crate) fn expr(&mut self) -> Result<Expr, SpecError> {
        self.binary_expr(1)
    }

    fn binary_op(&self) -> Option<BinaryOp> {
        let token = self.peek();
        Some(match &token.kind {
            TokenKind::Equals => BinaryOp::Eq,
            TokenKind::NotEquals => BinaryOp::NotEq,
            TokenKind::Less => BinaryOp::Lt,
            TokenKind::LessEquals => BinaryOp::LtEq,
            TokenKind::Greater => BinaryOp::Gt,
            TokenKind::GreaterEquals => BinaryOp::GtEq,
            TokenKind::Concat => BinaryOp::Concat,
            TokenKind::Plus => BinaryOp::Add,
            TokenKind::Minus => BinaryOp::Sub,
            TokenKind::Star => BinaryOp::Mul,
            TokenKind::Slash => BinaryOp::Div,
            TokenKind::Percent => BinaryOp::Mod,
            _ if token.is_keyword("OR") => BinaryOp::Or,
            _ if token.is_keyword("AND") => BinaryOp::And,
            _ => return None,
        })
    }

    /// Operators that bind at least as tightly as `min`, by precedence climbing; `NOT` (3)
    /// and `IS` (4) sit between `AND` and the comparisons.
    fn binary_expr(&mut self, min: u8) -> Result<Expr, SpecError> {
        let mut left = if min <= 3 && self.peek_keyword("NOT") {
            let pos = self.advance().pos;
            let operand = self.binary_expr(3)?;
            Expr {
                pos,
                kind: ExprKind::Unary {
                    op: UnaryOp::Not,
                    expr: Box::new(operand),
                },
            }
        } else {
            self.unary_expr()?
        };
        loop {
            if min <= 4 && self.peek_keyword("IS") {
                self.advance();
                let negated = self.eat_keyword("NOT");
                self.expect_keyword("NULL")?;
                left = Expr {
                    pos: left.pos,
                    kind: ExprKind::IsNull {
                        expr: Box::new(left),
                        negated,
                    },
                };
                continue;
            }
            let Some(op) = self.binary_op() else {
                return Ok(left);
            };
            let precedence = op.precedence();
            if precedence < min {
                return Ok(left);
            }
            let op_pos = self.advance().pos;
            let right = self.binary_expr(precedence + 1)?;
            if precedence == 5 {
                if let Some(next) = self.binary_op().filter(|o| o.precedence() == 5) {
                    return Err(SpecError::new(format!(
                        "syntax error at or near \"{}\"",
                        next.symbol()
                    ))
                    .hint("comparisons do not chain: write a < b AND b < c")
                    .at(self.peek().pos));
                }
            }
            left = Expr {
                pos: left.pos,
                kind: ExprKind::Binary {
                    op,
                    op_pos,
                    left: Box::new(left),
                    right: Box::new(right),
                },
            };
        }
    }

    /// Unary minus binds looser than `::` (`-1::uint8` is `-(1::uint8)`), but a minus written
    /// right before a number makes a negative literal, as Postgres's grammar does.
    fn unary_expr(&mut self) -> Result<Expr, SpecError> {
        if self.peek().kind == TokenKind::Plus {
            self.advance();
            return self.unary_expr();
        }
        if self.peek().kind != TokenKind::Minus {
            return self.postfix_expr();
        }
        let pos = self.advance().pos;
        let operand = self.unary_expr()?;
        let kind = match operand.kind {
            ExprKind::Number(n) if !n.starts_with('-') => ExprKind::Number(format!("-{n}")),
            kind => ExprKind::Unary {
                op: UnaryOp::Neg,
                expr: Box::new(Expr {
                    pos: operand.pos,
                    kind,
                }),
            },
        };
        Ok(Expr { pos, kind })
    }

    fn postfix_expr(&mut self) -> Result<Expr, SpecError> {
        let mut expr = self.primary_expr()?;
        while self.eat(&TokenKind::DoubleColon) {
            let (type_name, type_pos) = self.type_name()?;
            expr = Expr {
                pos: expr.pos,
                kind: ExprKind::Cast {
                    expr: Box::new(expr),
                    type_name,
                    type_pos,
                },
            };
        }
        Ok(expr)
    }

    fn primary_expr(&mut self) -> Result<Expr, SpecError> {
        let token = self.peek().clone();
        let pos = token.pos;
        let followed_by_paren = self.peek_nth(1).kind == TokenKind::LParen;
        let kind = match &token.kind {
            TokenKind::LParen => {
                self.advance();
                let inner = self.expr()?;
                self.expect(TokenKind::RParen, "\")\"")?;
                return Ok(inner);
            }
            TokenKind::Str(s) => ExprKind::Str(s.clone()),
            TokenKind::Number(n) => ExprKind::Number(n.clone()),
            _ if token.is_keyword("NULL") => ExprKind::Null,
            _ if token.is_keyword("TRUE") => ExprKind::Bool(true),
            _ if token.is_keyword("FALSE") => ExprKind::Bool(false),
            _ if token.is_keyword("CASE") => {
                self.advance();
                return self.case_expr(pos);
            }
            _ if token.is_keyword("CAST") && followed_by_paren => {
                self.next += 2;
                let inner = self.expr()?;
                self.expect_keyword("AS")?;
                let (type_name, type_pos) = self.type_name()?;
                self.expect(TokenKind::RParen, "\")\"")?;
                return Ok(Expr {
                    pos,
                    kind: ExprKind::Cast {
                        expr: Box::new(inner),
                        type_name,
                        type_pos,
                    },
                });
            }
            _ if EXPRESSION_END_WORDS.iter().any(|w| token.is_keyword(w)) => {
                return Err(self.unexpected("an expression"))
            }
            TokenKind::Word { .. } => {
                let name = self.ident("a column or function name")?;
                if !self.eat(&TokenKind::LParen) {
                    return Ok(Expr {
                        pos,
                        kind: ExprKind::Column(name),
                    });
                }
                let args = match name.name.as_str() {
                    "substring" if !is_quoted(&token) => self.substring_args()?,
                    "trim" if !is_quoted(&token) => return self.trim_args(name),
                    _ => self.call_args()?,
                };
                return Ok(Expr {
                    pos,
                    kind: ExprKind::Call { name, args },
                });
            }
            _ => return Err(self.unexpected("an expression")),
        };
        self.advance();
        Ok(Expr { pos, kind })
    }

    /// The arguments after `(`, through `)`.
    fn call_args(&mut self) -> Result<Vec<Expr>, SpecError> {
        let mut args = Vec::new();
        if !self.eat(&TokenKind::RParen) {
            args.push(self.expr()?);
            while self.eat(&TokenKind::Comma) {
                args.push(self.expr()?);
            }
            self.expect(TokenKind::RParen, "\",\" or \")\"")?;
        }
        Ok(args)
    }

    /// `substring(x, from [, for])` or `substring(x FROM from [FOR for])` / `(x FOR for)`.
    fn substring_args(&mut self) -> Result<Vec<Expr>, SpecError> {
        let string = self.expr()?;
        if !self.peek_keyword("FROM") && !self.peek_keyword("FOR") {
            let mut args = vec![string];
            while self.eat(&TokenKind::Comma) {
                args.push(self.expr()?);
            }
            self.expect(TokenKind::RParen, "\",\" or \")\"")?;
            return Ok(args);
        }
        let start = if self.eat_keyword("FROM") {
            self.expr()?
        } else {
            Expr {
                pos: self.peek().pos,
                kind: ExprKind::Number("1".to_string()),
            }
        };
        let mut args = vec![string, start];
        if self.eat_keyword("FOR") {
            args.push(self.expr()?);
        }
        self.expect(TokenKind::RParen, "\")\"")?;
        Ok(args)
    }

    /// `trim([BOTH | LEADING | TRAILING] [characters] [FROM] string)` or `trim(string [,
    /// characters])`, as a call of `btrim`, `ltrim` or `rtrim`.
    fn trim_args(&mut self, name: Ident) -> Result<Expr, SpecError> {
        let function = if self.eat_keyword("LEADING") {
            "ltrim"
        } else if self.eat_keyword("TRAILING") {
            "rtrim"
        } else {
            self.eat_keyword("BOTH");
            "btrim"
        };
        let args = if self.eat_keyword("FROM") {
            self.call_args()?
        } else {
            let first = self.expr()?;
            if self.eat_keyword("FROM") {
                let string = self.expr()?;
                self.expect(TokenKind::RParen, "\")\"")?;
                vec![string, first]
            } else {
                let mut args = vec![first];
                while self.eat(&TokenKind::Comma) {
                    args.push(self.expr()?);
                }
                self.expect(TokenKind::RParen, "\",\" or \")\"")?;
                args
            }
        };
        Ok(Expr {
            pos: name.pos,
            kind: ExprKind::Call {
                name: Ident {
                    name: function.to_string(),
                    pos: name.pos,
                },
                args,
            },
        })
    }

    /// After `CASE`: `[operand] WHEN … THEN … [ELSE …] END`.
    fn case_expr(&mut self, pos: Position) -> Result<Expr, SpecError> {
        let operand = if self.peek_keyword("WHEN") {
            None
        } else {
            Some(Box::new(self.expr()?))
        };
        let mut branches = Vec::new();
        while self.eat_keyword("WHEN") {
            let condition = self.expr()?;
            self.expect_keyword("THEN")?;
            branches.push((condition, self.expr()?));
        }
        if branches.is_empty() {
            return Err(self.unexpected("WHEN"));
        }
        let otherwise = if self.eat_keyword("ELSE") {
            Some(Box::new(self.expr()?))
        } else {
            None
        };
        if !self.eat_keyword("END") {
            return Err(self.unexpected(if otherwise.is_some() {
                "END"
            } else {
                "WHEN, ELSE or END"
            }));
        }
        Ok(Expr {
            pos,
            kind: ExprKind::Case {
                operand,
                branches,
                otherwise,
            },
        })
    }

    /// A type name after `::` or `AS`: a word, optional `(args)`, and the words that make up
    /// multi-word names (`double precision`, `timestamp with time zone`), optional `[]`.
    fn type_name(&mut self) -> Result<(String, Position), SpecError> {
        let pos = self.peek().pos;
        if !matches!(self.peek().kind, TokenKind::Word { .. }) {
            return Err(self.unexpected("a type name"));
        }
        let mut parts = vec![self.advance().text()];
        loop {
            if self.peek().kind == TokenKind::LParen {
                parts.push(self.advance().text());
                loop {
                    let token = self.advance();
                    match token.kind {
                        TokenKind::RParen => break,
                        TokenKind::Number(_) | TokenKind::Comma => parts.push(token.text()),
                        _ => {
                            return Err(SpecError::new(format!(
                                "expected a type modifier, found {}",
                                token.describe()
                            ))
                            .at(token.pos))
                        }
                    }
                }
                parts.push(")".to_string());
            } else if self.peek().kind == TokenKind::LBracket
                && self.peek_nth(1).kind == TokenKind::RBracket
            {
                self.next += 2;
                parts.extend(["[".to_string(), "]".to_string()]);
            } else if TYPE_CONTINUATION_WORDS.iter().any(|w| self.peek_keyword(w)) {
                parts.push(self.advance().text());
            } else {
                return Ok((join_type_tokens(&parts), pos));
            }
        }
    }
}

/// Writes a type back as people do: `numeric(10, 2)`, `map[text => int8]`, `text[]`.
fn join_type_tokens(tokens: &[String]) -> String {
    let mut out = String::new();
    for token in tokens {
        let glued_left = matches!(token.as_str(), "(" | ")" | "," | "[" | "]");
        let after_open = out.ends_with(['(', '[']);
        if !out.is_empty() && !glued_left && !after_open {
            out.push(' ');
        }
        out.push_str(token);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::KafkaConnectionOption;

    fn one(text: &str) -> Statement {
        let mut statements = parse_statements(text).unwrap();
        assert_eq!(statements.len(), 1);
        statements.remove(0)
    }

    #[test]
    fn identifiers_fold_to_lowercase_unless_quoted() {
        let Statement::CreateTable(t) =
            one(r#"CREATE TABLE Orders ("Order ID" BIGINT, Region TEXT)"#)
        else {
            panic!("not a table")
        };
        assert_eq!(t.name.name, "orders");
        assert_eq!(t.columns[0].name.name, "Order ID");
        assert_eq!(t.columns[1].name.name, "region");
    }

    #[test]
    fn table_types_and_constraints() {
        let Statement::CreateTable(t) = one(
            "create table t (a numeric(10, 2) not null, b timestamp(3) with time zone unique, \
             c map[text => int8] primary key, d text[], CONSTRAINT u UNIQUE (a, b))",
        ) else {
            panic!("not a table")
        };
        let types: Vec<&str> = t.columns.iter().map(|c| c.type_name.as_str()).collect();
        assert_eq!(
            types,
            [
                "numeric(10, 2)",
                "timestamp(3) with time zone",
                "map[text => int8]",
                "text[]"
            ]
        );
        assert!(t.columns[0].not_null);
        assert!(t.columns[1].unique.is_some());
        assert!(t.columns[2].primary_key.is_some());
        assert_eq!(t.constraints.len(), 1);
        assert!(!t.constraints[0].primary_key);
    }

    #[test]
    fn expressions_bind_casts_tighter_than_concatenation() {
        let e = parse_expr("kafka_murmur2(a::text || 'x') ").unwrap();
        let ExprKind::Call { name, args } = e.kind else {
            panic!("not a call")
        };
        assert_eq!(name.name, "kafka_murmur2");
        let ExprKind::Binary {
            op: BinaryOp::Concat,
            left,
            right,
            ..
        } = &args[0].kind
        else {
            panic!("not a concatenation")
        };
        assert!(matches!(&left.kind, ExprKind::Cast { type_name, .. } if type_name == "text"));
        assert_eq!(right.kind, ExprKind::Str("x".into()));
        let e = parse_expr("CAST(x AS double precision)").unwrap();
        assert!(
            matches!(e.kind, ExprKind::Cast { type_name, .. } if type_name == "double precision")
        );
        assert!(parse_expr("a b").is_err());
    }

    /// The shape of an expression with every operator parenthesized.
    fn shape(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Column(c) => c.name.clone(),
            ExprKind::Str(s) => format!("'{s}'"),
            ExprKind::Number(n) => n.clone(),
            ExprKind::Null => "NULL".into(),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Cast {
                expr, type_name, ..
            } => format!("{}::{type_name}", shape(expr)),
            ExprKind::Binary {
                op, left, right, ..
            } => format!("({} {} {})", shape(left), op.symbol(), shape(right)),
            ExprKind::Unary {
                op: UnaryOp::Not,
                expr,
            } => format!("(NOT {})", shape(expr)),
            ExprKind::Unary { expr, .. } => format!("(-{})", shape(expr)),
            ExprKind::IsNull { expr, negated } => {
                format!(
                    "({} IS {}NULL)",
                    shape(expr),
                    if *negated { "NOT " } else { "" }
                )
            }
            ExprKind::Case {
                operand,
                branches,
                otherwise,
            } => {
                let mut out = "CASE".to_string();
                if let Some(o) = operand {
                    out += &format!(" {}", shape(o));
                }
                for (w, t) in branches {
                    out += &format!(" WHEN {} THEN {}", shape(w), shape(t));
                }
                if let Some(o) = otherwise {
                    out += &format!(" ELSE {}", shape(o));
                }
                out + " END"
            }
            ExprKind::Call { name, args } => format!(
                "{}({})",
                name.name,
                args.iter().map(shape).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    #[test]
    fn expressions_follow_postgres_precedence() {
        let cases = [
            ("a + b * c", "(a + (b * c))"),
            ("a * b + c % d", "((a * b) + (c % d))"),
            ("a - b - c", "((a - b) - c)"),
            ("a || b + 1", "(a || (b + 1))"),
            ("a = b || c", "(a = (b || c))"),
            ("-a::int8", "(-a::int8)"),
            ("-1::uint8", "(-1::uint8)"),
            ("- 1", "-1"),
            ("(-1)::uint8", "-1::uint8"),
            (
                "a = 1 AND b <> 2 OR NOT c",
                "(((a = 1) AND (b <> 2)) OR (NOT c))",
            ),
            ("NOT a = b", "(NOT (a = b))"),
            ("a = b IS NULL", "((a = b) IS NULL)"),
            ("a IS NOT NULL AND b != c", "((a IS NOT NULL) AND (b <> c))"),
            (
                "a >= 1 AND a <= 2 AND a < 3 AND a > 0",
                "((((a >= 1) AND (a <= 2)) AND (a < 3)) AND (a > 0))",
            ),
            (
                "CASE WHEN a = 'eu' THEN 0 ELSE seahash(a) END",
                "CASE WHEN (a = 'eu') THEN 0 ELSE seahash(a) END",
            ),
            ("case a when 1 then 'x' end", "CASE a WHEN 1 THEN 'x' END"),
            ("substring(a FROM 2 FOR 3)", "substring(a, 2, 3)"),
            ("substring(a FOR 3)", "substring(a, 1, 3)"),
            ("substring(a, 2)", "substring(a, 2)"),
            ("trim(a)", "btrim(a)"),
            ("trim(LEADING 'x' FROM a)", "ltrim(a, 'x')"),
            ("trim(TRAILING FROM a)", "rtrim(a)"),
            ("trim(both from a)", "btrim(a)"),
            ("CAST(a AS int8) % 3", "(a::int8 % 3)"),
            ("coalesce(a, NULL, TRUE)", "coalesce(a, NULL, true)"),
        ];
        for (text, expected) in cases {
            assert_eq!(shape(&parse_expr(text).unwrap()), expected, "{text}");
        }
        let err = |text: &str| {
            let e = parse_expr(text).unwrap_err();
            (e.message, e.position.map(|p| p.column))
        };
        assert_eq!(
            err("a < b < c"),
            ("syntax error at or near \"<\"".to_string(), Some(7))
        );
        assert_eq!(
            err("CASE a END"),
            (
                "expected WHEN, found identifier \"end\"".to_string(),
                Some(8)
            )
        );
        assert_eq!(
            err("CASE WHEN a THEN 1"),
            (
                "expected WHEN, ELSE or END, found end of input".to_string(),
                Some(19)
            )
        );
        assert_eq!(
            err("a + "),
            (
                "expected an expression, found end of input".to_string(),
                Some(5)
            )
        );
        assert_eq!(
            err("CASE WHEN a THEN END"),
            (
                "expected an expression, found identifier \"end\"".to_string(),
                Some(18)
            )
        );
        assert_eq!(
            err("a IS 1"),
            ("expected NULL, found number 1".to_string(), Some(6))
        );
    }

    #[test]
    fn options_with_and_without_equals() {
        let Statement::CreateConnection(c) =
            one("CREATE CONNECTION k TO KAFKA (BROKER 'b:9092', SASL MECHANISMS = 'PLAIN', SASL USERNAME SECRET u, \
             SASL PASSWORD = SECRET p, PROGRESS TOPIC REPLICATION FACTOR 3)")
        else {
            panic!("not a connection")
        };
        let ConnectionOptions::Kafka(options) = c.options else {
            panic!("not a Kafka connection")
        };
        let names: Vec<KafkaConnectionOption> = options.iter().map(|o| o.name).collect();
        assert_eq!(
            names,
            [
                KafkaConnectionOption::Broker,
                KafkaConnectionOption::SaslMechanisms,
                KafkaConnectionOption::SaslUsername,
                KafkaConnectionOption::SaslPassword,
                KafkaConnectionOption::ProgressTopicReplicationFactor,
            ]
        );
        assert!(matches!(options[4].value, OptionValue::Int(3)));
    }

    #[test]
    fn sink_clauses_in_either_order() {
        for text in [
            "CREATE SINK s FROM t INTO KAFKA CONNECTION k (TOPIC 't') FORMAT JSON ENVELOPE UPSERT KEY (id)",
            "CREATE SINK s FROM t INTO KAFKA CONNECTION k (TOPIC 't') KEY (id) FORMAT JSON ENVELOPE UPSERT",
        ] {
            let Statement::CreateSink(s) = one(text) else { panic!("not a sink") };
            assert_eq!(s.key.unwrap().columns[0].name, "id");
            assert!(matches!(s.format, Some(FormatClause::Bare(Format { kind: FormatKind::Json { .. }, .. }))));
            assert_eq!(s.envelope.map(|e| e.0), Some(EnvelopeKind::Upsert));
        }
    }

    #[test]
    fn parse_errors_point_at_the_token() {
        let err = parse_statements(
            "CREATE SINK s\n  FROM t INTO KAFKA CONNECTION k (TOPIC 't', TOPIC 'u')",
        )
        .unwrap_err();
        assert_eq!(err.message, "TOPIC specified more than once");
        assert_eq!(
            err.position,
            Some(Position {
                line: 2,
                column: 46
            })
        );
        let err = parse_statements("CREATE SINK s FROM t INTO KAFKA CONNECTION k (TOPICS 't')")
            .unwrap_err();
        assert_eq!(err.message, "unknown KAFKA CONNECTION option: TOPICS");
        let err = parse_statements("CREATE SECRET s 'hunter2'").unwrap_err();
        assert_eq!(err.message, "expected AS, found a string literal");
    }

    #[test]
    fn a_secret_is_never_shown_quoted_or_not() {
        for text in [
            "CREATE SECRET pw AS Hunter2",
            "CREATE SECRET pw AS Hunter2;",
            "CREATE SECRET pw AS \"Hunter2\"",
            "CREATE SECRET pw AS 12345Hunter2",
            "CREATE SECRET pw AS 'Hunter' 'Hunter2'",
            "CREATE SECRET pw AS 'Hunter2' Hunter2",
            "CREATE SECRET pw AS Hunter2 'Hunter2'",
        ] {
            let err = parse_statements(text).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(
                !shown.to_lowercase().contains("hunter"),
                "{text}: the error shows the secret: {shown}"
            );
            assert!(
                err.message.starts_with("CREATE SECRET pw: "),
                "{text}: {err}"
            );
        }
        let err = parse_statements("CREATE SECRET pw AS Hunter2").unwrap_err();
        assert_eq!(
            err.message,
            "CREATE SECRET pw: the secret's value must be a string literal (the text written is not shown)"
        );
    }
}
