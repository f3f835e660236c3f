//! Executes parsed statements against a [`Catalog`]: each statement is turned into calls on
//! the spec builders, with the positions of its tokens, so that statements and Rust code are
//! validated by the same code.

use std::collections::HashSet;

use outflow_dataflow::ScalarType;
use outflow_encoders::{
    AvroFormatSpec, CompatibilityLevel, DocComment, DocScope, DocTarget, Envelope, FormatSpec,
};

use super::ast::*;
use super::catalog::{Catalog, Item};
use crate::spec::{
    parse_duration, ClusterSpec, Compression, ConnectionSpec, DeliveryGuarantee, Notice, Part,
    Position, RegistryBuilder, SaslMechanism, SecretSpec, SecurityProtocol, SinkSpec, Site, Sites,
    SpecError, StringOrSecret, TableSpec,
};

impl Catalog {
    /// Executes one statement. `IF NOT EXISTS` on an existing name, and a `KEY … NOT
    /// ENFORCED` that is not a known unique key, are reported as notices.
    pub fn execute(&mut self, statement: &Statement) -> Result<Vec<Notice>, SpecError> {
        let (name, if_not_exists, is_cluster) = match statement {
            Statement::CreateSecret(s) => (&s.name, s.if_not_exists, false),
            Statement::CreateConnection(s) => (&s.name, s.if_not_exists, false),
            Statement::CreateTable(s) => (&s.name, s.if_not_exists, false),
            Statement::CreateCluster(s) => (&s.name, s.if_not_exists, true),
            Statement::CreateSink(s) => (&s.name, s.if_not_exists, false),
        };
        let existing = if is_cluster {
            self.cluster(&name.name).map(|_| "cluster")
        } else {
            self.item_kind(&name.name)
        };
        if let (Some(kind), true) = (existing, if_not_exists) {
            return Ok(vec![Notice {
                message: format!("{kind} \"{}\" already exists, skipping", name.name),
                position: Some(name.pos),
            }]);
        }
        if is_cluster {
            self.check_new_cluster(&name.name, Some(name.pos))?;
        } else {
            self.check_new_item(&name.name, Some(name.pos))?;
        }
        match statement {
            Statement::CreateSecret(s) => {
                self.insert_item(
                    s.name.name.clone(),
                    Item::Secret(SecretSpec::new(&s.name.name, s.value.clone())),
                );
                Ok(Vec::new())
            }
            Statement::CreateConnection(c) => match c.kind {
                ConnectionKind::Kafka => self.create_kafka_connection(c),
                ConnectionKind::ConfluentSchemaRegistry => self.create_registry_connection(c),
            },
            Statement::CreateTable(t) => self.create_table(t),
            Statement::CreateCluster(c) => {
                let cluster =
                    ClusterSpec::new(&c.name.name, &c.size).map_err(|e| e.at(c.size_pos))?;
                self.insert_cluster(cluster);
                Ok(Vec::new())
            }
            Statement::CreateSink(s) => self.create_sink(s),
        }
    }

    fn create_kafka_connection(
        &mut self,
        stmt: &CreateConnection,
    ) -> Result<Vec<Notice>, SpecError> {
        let mut builder = ConnectionSpec::builder(&stmt.name.name);
        let mut sites = statement_sites(stmt.pos, &stmt.name);
        let broker = stmt.options.iter().find(|o| o.name == "BROKER");
        let brokers = stmt.options.iter().find(|o| o.name == "BROKERS");
        if let (Some(a), Some(b)) = (broker, brokers) {
            return Err(
                SpecError::new("cannot specify both BROKER and BROKERS").at(a.pos.max(b.pos))
            );
        }
        for opt in &stmt.options {
            sites.set(Site::Option(opt.name), opt.value_pos);
            builder = match (opt.name, &opt.value) {
                ("BROKER", OptionValue::Str(address)) => builder.broker(address),
                ("BROKERS", OptionValue::List(addresses)) => {
                    builder.brokers(addresses.iter().map(|(a, _)| a.clone()))
                }
                ("SECURITY PROTOCOL", _) => {
                    let text = word_value(opt)?;
                    let protocol = SecurityProtocol::parse(text).ok_or_else(|| {
                        let known: Vec<&str> =
                            SecurityProtocol::ALL.iter().map(|p| p.as_str()).collect();
                        SpecError::new(format!("unknown SECURITY PROTOCOL: {text}"))
                            .hint(format!("the protocols are {}", known.join(", ")))
                            .at(opt.value_pos)
                    })?;
                    builder.security_protocol(protocol)
                }
                ("SASL MECHANISMS", _) => {
                    let text = word_value(opt)?;
                    let mechanism = SaslMechanism::parse(text).ok_or_else(|| {
                        let known: Vec<&str> =
                            SaslMechanism::ALL.iter().map(|m| m.as_str()).collect();
                        SpecError::new(format!("unknown SASL MECHANISMS: {text}"))
                            .hint(format!("the mechanisms are {}", known.join(", ")))
                            .at(opt.value_pos)
                    })?;
                    builder.sasl_mechanism(mechanism)
                }
                ("SASL USERNAME", _) => builder.sasl_username(string_or_secret(opt)?),
                ("SASL PASSWORD", OptionValue::Secret(secret)) => {
                    builder.sasl_password(&secret.name)
                }
                ("SSL KEY", OptionValue::Secret(secret)) => builder.ssl_key(&secret.name),
                ("SSL CERTIFICATE", _) => builder.ssl_certificate(string_or_secret(opt)?),
                ("SSL CERTIFICATE AUTHORITY", _) => {
                    builder.ssl_certificate_authority(string_or_secret(opt)?)
                }
                ("PROGRESS TOPIC", OptionValue::Str(topic)) => builder.progress_topic(topic),
                ("PROGRESS TOPIC REPLICATION FACTOR", OptionValue::Int(n)) => {
                    builder.progress_topic_replication_factor_raw(*n)
                }
                _ => return Err(misparsed(opt)),
            };
        }
        builder.sites = sites.clone();
        let spec = builder.build()?;
        self.check_secret_refs(&spec.secret_refs(), &sites)?;
        self.insert_item(spec.name.clone(), Item::Connection(spec));
        Ok(Vec::new())
    }

    fn create_registry_connection(
        &mut self,
        stmt: &CreateConnection,
    ) -> Result<Vec<Notice>, SpecError> {
        let mut builder = RegistryBuilder::without_url(&stmt.name.name);
        let mut sites = statement_sites(stmt.pos, &stmt.name);
        for opt in &stmt.options {
            sites.set(Site::Option(opt.name), opt.value_pos);
            builder = match (opt.name, &opt.value) {
                ("URL", OptionValue::Str(url)) => builder.url(url),
                ("USERNAME", _) => builder.username(string_or_secret(opt)?),
                ("PASSWORD", OptionValue::Secret(secret)) => builder.password(&secret.name),
                ("SSL KEY", OptionValue::Secret(secret)) => builder.ssl_key(&secret.name),
                ("SSL CERTIFICATE", _) => builder.ssl_certificate(string_or_secret(opt)?),
                ("SSL CERTIFICATE AUTHORITY", _) => {
                    builder.ssl_certificate_authority(string_or_secret(opt)?)
                }
                _ => return Err(misparsed(opt)),
            };
        }
        builder.sites = sites.clone();
        let spec = builder.build()?;
        self.check_secret_refs(&spec.secret_refs(), &sites)?;
        self.insert_item(spec.name.clone(), Item::Registry(spec));
        Ok(Vec::new())
    }

    fn create_table(&mut self, stmt: &CreateTable) -> Result<Vec<Notice>, SpecError> {
        let mut builder = TableSpec::builder(&stmt.name.name);
        let mut sites = statement_sites(stmt.pos, &stmt.name);
        let mut constraint = 0;
        for (i, column) in stmt.columns.iter().enumerate() {
            let scalar_type = ScalarType::parse(&column.type_name)
                .map_err(|e| SpecError::new(e.to_string()).at(column.type_pos))?;
            builder = builder.column(&column.name.name, scalar_type, !column.not_null);
            sites.set(Site::Column(i), column.name.pos);
        }
        for column in &stmt.columns {
            for (pos, primary) in [(column.primary_key, true), (column.unique, false)] {
                let Some(pos) = pos else { continue };
                builder = if primary {
                    builder.primary_key([&column.name.name])
                } else {
                    builder.unique([&column.name.name])
                };
                sites.set(Site::Constraint(constraint), pos);
                sites.set(Site::ConstraintColumn(constraint, 0), column.name.pos);
                constraint += 1;
            }
        }
        for table_constraint in &stmt.constraints {
            let columns = table_constraint.columns.iter().map(|c| c.name.clone());
            builder = if table_constraint.primary_key {
                builder.primary_key(columns)
            } else {
                builder.unique(columns)
            };
            sites.set(Site::Constraint(constraint), table_constraint.pos);
            for (j, column) in table_constraint.columns.iter().enumerate() {
                sites.set(Site::ConstraintColumn(constraint, j), column.pos);
            }
            constraint += 1;
        }
        builder.sites = sites;
        let spec = builder.build()?;
        self.insert_item(spec.name.clone(), Item::Table(spec));
        Ok(Vec::new())
    }

    fn create_sink(&mut self, stmt: &CreateSink) -> Result<Vec<Notice>, SpecError> {
        let mut sites = statement_sites(stmt.pos, &stmt.name);
        sites.set(Site::From, stmt.from.pos);
        let table = self.resolve_sink_source(&stmt.from.name, Some(stmt.from.pos))?;
        let mut builder =
            SinkSpec::builder(&stmt.name.name, table.desc.clone()).from_relation(&stmt.from.name);

        if let Some(cluster) = &stmt.in_cluster {
            sites.set(Site::Cluster, cluster.pos);
            builder = builder.in_cluster(&cluster.name);
        }
        sites.set(Site::Connection, stmt.connection.pos);
        builder = builder.connection(&stmt.connection.name);

        for opt in &stmt.options {
            sites.set(Site::Option(opt.name), opt.value_pos);
            builder = match (opt.name, &opt.value) {
                ("TOPIC", OptionValue::Str(topic)) => builder.topic(topic),
                ("TOPIC PARTITION COUNT", OptionValue::Int(n)) => {
                    builder.topic_partition_count_raw(*n)
                }
                ("TOPIC REPLICATION FACTOR", OptionValue::Int(n)) => {
                    builder.topic_replication_factor_raw(*n)
                }
                ("TOPIC CONFIG", OptionValue::Map(entries)) => {
                    let mut seen = HashSet::new();
                    for (key, value, pos) in entries {
                        if !seen.insert(key) {
                            return Err(SpecError::new(format!(
                                "TOPIC CONFIG key '{key}' specified more than once"
                            ))
                            .at(*pos));
                        }
                        builder = builder.topic_config(key, value);
                    }
                    builder
                }
                ("TOPIC METADATA REFRESH INTERVAL", OptionValue::Str(text)) => {
                    let interval = parse_duration(text).ok_or_else(|| {
                        SpecError::new(format!(
                            "invalid TOPIC METADATA REFRESH INTERVAL: '{text}' is not a duration"
                        ))
                        .hint("e.g. '30s', '5 minutes' or '1h'")
                        .at(opt.value_pos)
                    })?;
                    builder.topic_metadata_refresh_interval(interval)
                }
                ("PARTITION BY", OptionValue::Expr(expr)) => {
                    builder.partition_by_parsed(expr.clone())
                }
                ("COMPRESSION TYPE", _) => {
                    let text = word_value(opt)?;
                    let compression = Compression::parse(text).ok_or_else(|| {
                        let known: Vec<&str> =
                            Compression::ALL.iter().map(|c| c.as_str()).collect();
                        SpecError::new(format!("invalid COMPRESSION TYPE: {text}"))
                            .hint(format!("the compression types are {}", known.join(", ")))
                            .at(opt.value_pos)
                    })?;
                    builder.compression(compression)
                }
                ("TRANSACTIONAL ID PREFIX", OptionValue::Str(prefix)) => {
                    builder.transactional_id_prefix(prefix)
                }
                ("PROGRESS GROUP ID PREFIX", OptionValue::Str(prefix)) => {
                    builder.progress_group_id_prefix(prefix)
                }
                _ => return Err(misparsed(opt)),
            };
        }

        if let Some(key) = &stmt.key {
            sites.set(Site::Key, key.pos);
            for (i, column) in key.columns.iter().enumerate() {
                sites.set(Site::KeyColumn(i), column.pos);
            }
            let columns = key.columns.iter().map(|c| c.name.clone());
            builder = if key.not_enforced {
                builder.key_not_enforced(columns)
            } else {
                builder.key(columns)
            };
        }
        if let Some(headers) = &stmt.headers {
            sites.set(Site::Headers, headers.pos);
            builder = builder.headers(&headers.name);
        }
        match &stmt.format {
            Some(FormatClause::Bare(format)) => {
                builder =
                    builder.format(format_spec(format, &[Part::Key, Part::Value], &mut sites)?);
            }
            Some(FormatClause::KeyValue { key, value }) => {
                builder = builder
                    .key_format(format_spec(key, &[Part::Key], &mut sites)?)
                    .value_format(format_spec(value, &[Part::Value], &mut sites)?);
            }
            None => {}
        }
        if let Some((envelope, pos)) = stmt.envelope {
            sites.set(Site::Envelope, pos);
            builder = builder.envelope(match envelope {
                EnvelopeKind::Upsert => Envelope::Upsert,
                EnvelopeKind::Debezium => Envelope::Debezium,
            });
        }
        for opt in &stmt.with_options {
            sites.set(Site::With(opt.name), opt.value_pos);
            builder = match (opt.name, &opt.value) {
                ("SNAPSHOT", OptionValue::Bool(snapshot)) => builder.snapshot(*snapshot),
                ("DELIVERY GUARANTEE", _) => {
                    let text = word_value(opt)?;
                    let delivery = DeliveryGuarantee::parse(text).ok_or_else(|| {
                        SpecError::new(format!("invalid DELIVERY GUARANTEE: {text}"))
                            .hint("the guarantees are 'exactly-once' and 'at-least-once'")
                            .at(opt.value_pos)
                    })?;
                    builder.delivery(delivery)
                }
                _ => return Err(misparsed(opt)),
            };
        }

        builder.sites = sites.clone();
        let spec = builder.build()?;
        self.check_sink_refs(&spec, &sites)?;
        let mut notices = Vec::new();
        if let (Some(key), Envelope::Upsert) = (&spec.key, spec.envelope) {
            if key.not_enforced && !spec.key_is_unique() {
                notices.push(Notice {
                    message: format!(
                        "KEY ({}) is not a known unique key of \"{}\"; with NOT ENFORCED, rows that share a key \
                         overwrite each other in the topic",
                        key.columns.join(", "),
                        stmt.from.name
                    ),
                    position: sites.at(Site::Key),
                });
            }
        }
        self.insert_item(spec.name.clone(), Item::Sink(Box::new(spec)));
        Ok(notices)
    }
}

fn statement_sites(pos: Position, name: &Ident) -> Sites {
    let mut sites = Sites::default();
    sites.set(Site::Statement, pos);
    sites.set(Site::Name, name.pos);
    sites
}

/// The parser gives each option the kind of value its definition asks for; anything else is
/// a bug in the parser's option tables.
fn misparsed(opt: &SqlOption) -> SpecError {
    SpecError::new(format!(
        "internal error: option {} was parsed with an unexpected value",
        opt.name
    ))
    .at(opt.pos)
}

fn word_value(opt: &SqlOption) -> Result<&str, SpecError> {
    match &opt.value {
        OptionValue::Str(s) | OptionValue::Word(s) => Ok(s),
        _ => Err(misparsed(opt)),
    }
}

fn string_or_secret(opt: &SqlOption) -> Result<StringOrSecret, SpecError> {
    match &opt.value {
        OptionValue::Str(s) => Ok(StringOrSecret::Value(s.clone())),
        OptionValue::Secret(secret) => Ok(StringOrSecret::secret(&secret.name)),
        _ => Err(misparsed(opt)),
    }
}

/// A format clause as a spec; `parts` are the message parts it describes (both for a bare
/// `FORMAT`), whose sites point at this clause.
fn format_spec(
    format: &Format,
    parts: &[Part],
    sites: &mut Sites,
) -> Result<FormatSpec, SpecError> {
    for &part in parts {
        sites.set(Site::Format(part), format.pos);
    }
    let (registry, options) = match &format.kind {
        FormatKind::Json => return Ok(FormatSpec::Json),
        FormatKind::Text => return Ok(FormatSpec::Text),
        FormatKind::Bytes => return Ok(FormatSpec::Bytes),
        FormatKind::Avro { registry, options } => (registry, options),
    };
    for &part in parts {
        sites.set(Site::Registry(part), registry.pos);
    }
    let mut avro = AvroFormatSpec {
        registry: registry.name.clone(),
        key_compatibility: None,
        value_compatibility: None,
        key_fullname: None,
        value_fullname: None,
        null_defaults: false,
        docs: Vec::new(),
    };
    for opt in options {
        for &part in parts {
            if let OptionValue::Doc(..) = opt.value {
                sites.set(Site::Doc(part, avro.docs.len()), opt.pos);
            } else {
                sites.set(Site::FormatOption(part, opt.name), opt.value_pos);
            }
        }
        match (opt.name, &opt.value) {
            ("KEY COMPATIBILITY LEVEL" | "VALUE COMPATIBILITY LEVEL", _) => {
                let text = word_value(opt)?;
                let level = CompatibilityLevel::parse(text).ok_or_else(|| {
                    let known: Vec<&str> =
                        CompatibilityLevel::ALL.iter().map(|l| l.as_str()).collect();
                    SpecError::new(format!("invalid {}: {text}", opt.name))
                        .hint(format!("the levels are {}", known.join(", ")))
                        .at(opt.value_pos)
                })?;
                if opt.name.starts_with("KEY") {
                    avro.key_compatibility = Some(level);
                } else {
                    avro.value_compatibility = Some(level);
                }
            }
            ("AVRO KEY FULLNAME", OptionValue::Str(name)) => avro.key_fullname = Some(name.clone()),
            ("AVRO VALUE FULLNAME", OptionValue::Str(name)) => {
                avro.value_fullname = Some(name.clone())
            }
            ("NULL DEFAULTS", OptionValue::Bool(b)) => avro.null_defaults = *b,
            ("DOC ON", OptionValue::Doc(doc, text)) => avro.docs.push(DocComment {
                target: match &doc.column {
                    Some(column) => DocTarget::Column {
                        relation: doc.relation.name.clone(),
                        column: column.name.clone(),
                    },
                    None => DocTarget::Type(doc.relation.name.clone()),
                },
                scope: match doc.part {
                    DocPart::Key => DocScope::Key,
                    DocPart::Value => DocScope::Value,
                    DocPart::Both => DocScope::Both,
                },
                text: text.clone(),
            }),
            _ => return Err(misparsed(opt)),
        }
    }
    Ok(FormatSpec::Avro(avro))
}
