//! Executes parsed statements against a [`Catalog`]: each statement is turned into calls on
//! the spec builders, so that statements and Rust code are validated by the same code.
//!
//! The builders and the catalog blame a [`Site`]; the [`Sites`] of a statement say where it
//! wrote each one, and give a failed statement's error its position.

use std::collections::{HashMap, HashSet};

use outflow_dataflow::ScalarType;
use outflow_encoders::{
    AvroFormatSpec, CompatibilityLevel, DebeziumOptions, DocComment, DocScope, DocTarget, Envelope,
    FormatSpec, Part, SubjectNameStrategy,
};

use super::catalog::{Catalog, Item};
use crate::error::{Notice, Position, Site, SpecError};
use crate::options::{
    AvroFormatOption, DebeziumEnvelopeOption, JsonFormatOption, KafkaConnectionOption, OptionName,
    RegistryConnectionOption, SinkOption, SinkWithOption,
};
use crate::spec::{
    check_librdkafka_setting, parse_duration, ClusterSpec, Compression, ConnectionSpec,
    DeliveryGuarantee, RegistryBuilder, SaslMechanism, SecretSpec, SecurityProtocol, SinkSpec,
    StringOrSecret, TableSpec,
};
use crate::syntax::ast::*;

/// Where each [`Site`] of one statement is written.
#[derive(Clone, Debug, Default)]
struct Sites(HashMap<Site, Position>);

impl Sites {
    fn of_statement(pos: Position, name: &Ident) -> Sites {
        let mut sites = Sites::default();
        sites.set(Site::Statement, pos);
        sites.set(Site::Name, name.pos);
        sites
    }

    fn set(&mut self, site: Site, pos: Position) {
        self.0.insert(site, pos);
    }

    /// The position of `site`, or of the statement when the statement did not write it.
    fn at(&self, site: Site) -> Option<Position> {
        self.0
            .get(&site)
            .or_else(|| self.0.get(&Site::Statement))
            .copied()
    }

    /// Gives an error without a position the position of its site (of the statement, when it
    /// names none).
    fn locate(&self, mut error: SpecError) -> SpecError {
        if error.position.is_none() {
            error.position = self.at(error.site.unwrap_or(Site::Statement));
        }
        error
    }
}

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
        let mut sites = Sites::of_statement(statement.pos(), name);
        let new_name = if is_cluster {
            self.check_new_cluster(&name.name)
        } else {
            self.check_new_item(&name.name)
        };
        new_name.map_err(|e| sites.locate(e))?;
        self.plan(statement, &mut sites)
            .map_err(|e| sites.locate(e))
    }

    fn plan(&mut self, statement: &Statement, sites: &mut Sites) -> Result<Vec<Notice>, SpecError> {
        match statement {
            Statement::CreateSecret(s) => {
                self.insert_item(
                    s.name.name.clone(),
                    Item::Secret(SecretSpec::new(&s.name.name, s.value.clone())),
                );
                Ok(Vec::new())
            }
            Statement::CreateConnection(c) => match &c.options {
                ConnectionOptions::Kafka(options) => {
                    self.create_kafka_connection(c, options, sites)
                }
                ConnectionOptions::ConfluentSchemaRegistry(options) => {
                    self.create_registry_connection(c, options, sites)
                }
            },
            Statement::CreateTable(t) => self.create_table(t, sites),
            Statement::CreateCluster(c) => {
                let cluster =
                    ClusterSpec::new(&c.name.name, &c.size).map_err(|e| e.at(c.size_pos))?;
                self.insert_cluster(cluster);
                Ok(Vec::new())
            }
            Statement::CreateSink(s) => self.create_sink(s, sites),
        }
    }

    fn create_kafka_connection(
        &mut self,
        stmt: &CreateConnection,
        options: &[SqlOption<KafkaConnectionOption>],
        sites: &mut Sites,
    ) -> Result<Vec<Notice>, SpecError> {
        use KafkaConnectionOption as O;
        let mut builder = ConnectionSpec::builder(&stmt.name.name);
        let broker = options.iter().find(|o| o.name == O::Broker);
        let brokers = options.iter().find(|o| o.name == O::Brokers);
        if let (Some(a), Some(b)) = (broker, brokers) {
            return Err(
                SpecError::new("cannot specify both BROKER and BROKERS").at(a.pos.max(b.pos))
            );
        }
        for opt in options {
            sites.set(Site::KafkaOption(opt.name), opt.value_pos);
            builder = match opt.name {
                O::Broker => builder.broker(opt.str()?),
                O::Brokers => builder.brokers(opt.list()?.iter().map(|(a, _)| a.clone())),
                O::SecurityProtocol => {
                    let text = opt.word()?;
                    let protocol = SecurityProtocol::parse(text).ok_or_else(|| {
                        let known: Vec<&str> =
                            SecurityProtocol::ALL.iter().map(|p| p.as_str()).collect();
                        SpecError::new(format!("unknown {}: {text}", opt.name))
                            .hint(format!("the protocols are {}", known.join(", ")))
                            .at(opt.value_pos)
                    })?;
                    builder.security_protocol(protocol)
                }
                O::SaslMechanisms => {
                    let text = opt.word()?;
                    let mechanism = SaslMechanism::parse(text).ok_or_else(|| {
                        let known: Vec<&str> =
                            SaslMechanism::ALL.iter().map(|m| m.as_str()).collect();
                        SpecError::new(format!("unknown {}: {text}", opt.name))
                            .hint(format!("the mechanisms are {}", known.join(", ")))
                            .at(opt.value_pos)
                    })?;
                    builder.sasl_mechanism(mechanism)
                }
                O::SaslUsername => builder.sasl_username(opt.string_or_secret()?),
                O::SaslPassword => builder.sasl_password(&opt.secret()?.name),
                O::SaslOauthbearerTokenEndpoint => builder.oauthbearer_token_endpoint(opt.str()?),
                O::SaslOauthbearerClientId => {
                    builder.oauthbearer_client_id(opt.string_or_secret()?)
                }
                O::SaslOauthbearerClientSecret => {
                    builder.oauthbearer_client_secret(&opt.secret()?.name)
                }
                O::SaslOauthbearerScope => builder.oauthbearer_scope(opt.str()?),
                O::SslKey => builder.ssl_key(&opt.secret()?.name),
                O::SslCertificate => builder.ssl_certificate(opt.string_or_secret()?),
                O::SslCertificateAuthority => {
                    builder.ssl_certificate_authority(opt.string_or_secret()?)
                }
                O::ProgressTopic => builder.progress_topic(opt.str()?),
                O::ProgressTopicReplicationFactor => {
                    builder.progress_topic_replication_factor_raw(opt.int()?)
                }
                O::LibrdkafkaOptions => {
                    let mut seen = HashSet::new();
                    for setting in opt.settings()? {
                        let value = match &setting.value {
                            SettingValue::Str(s) => StringOrSecret::Value(s.clone()),
                            SettingValue::Secret(secret) => StringOrSecret::secret(&secret.name),
                        };
                        // Checked here too, so that an error points at the setting's key.
                        check_librdkafka_setting(&setting.key, &value)
                            .map_err(|e| e.at(setting.pos))?;
                        if !seen.insert(setting.key.as_str()) {
                            return Err(SpecError::new(format!(
                                "LIBRDKAFKA OPTIONS sets '{}' more than once",
                                setting.key
                            ))
                            .at(setting.pos));
                        }
                        if let SettingValue::Secret(secret) = &setting.value {
                            self.resolve_secret(&secret.name)
                                .map_err(|e| e.at(secret.pos))?;
                        }
                        builder = builder.librdkafka_option(&setting.key, value);
                    }
                    builder
                }
            };
        }
        let spec = builder.build()?;
        self.check_secret_refs(
            spec.secret_refs()
                .into_iter()
                .map(|(option, secret)| (Site::KafkaOption(option), secret)),
        )?;
        self.insert_item(spec.name.clone(), Item::Connection(spec));
        Ok(Vec::new())
    }

    fn create_registry_connection(
        &mut self,
        stmt: &CreateConnection,
        options: &[SqlOption<RegistryConnectionOption>],
        sites: &mut Sites,
    ) -> Result<Vec<Notice>, SpecError> {
        use RegistryConnectionOption as O;
        let mut builder = RegistryBuilder::without_url(&stmt.name.name);
        for opt in options {
            sites.set(Site::RegistryOption(opt.name), opt.value_pos);
            builder = match opt.name {
                O::Url => builder.url(opt.str()?),
                O::Username => builder.username(opt.string_or_secret()?),
                O::Password => builder.password(&opt.secret()?.name),
                O::SslKey => builder.ssl_key(&opt.secret()?.name),
                O::SslCertificate => builder.ssl_certificate(opt.string_or_secret()?),
                O::SslCertificateAuthority => {
                    builder.ssl_certificate_authority(opt.string_or_secret()?)
                }
            };
        }
        let spec = builder.build()?;
        self.check_secret_refs(
            spec.secret_refs()
                .into_iter()
                .map(|(option, secret)| (Site::RegistryOption(option), secret)),
        )?;
        self.insert_item(spec.name.clone(), Item::Registry(spec));
        Ok(Vec::new())
    }

    fn create_table(
        &mut self,
        stmt: &CreateTable,
        sites: &mut Sites,
    ) -> Result<Vec<Notice>, SpecError> {
        let mut builder = TableSpec::builder(&stmt.name.name);
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
        let spec = builder.build()?;
        self.insert_item(spec.name.clone(), Item::Table(spec));
        Ok(Vec::new())
    }

    fn create_sink(
        &mut self,
        stmt: &CreateSink,
        sites: &mut Sites,
    ) -> Result<Vec<Notice>, SpecError> {
        sites.set(Site::From, stmt.from.pos);
        let table = self.resolve_sink_source(&stmt.from.name)?;
        let mut builder =
            SinkSpec::builder(&stmt.name.name, table.desc.clone()).from_relation(&stmt.from.name);

        if let Some(cluster) = &stmt.in_cluster {
            sites.set(Site::Cluster, cluster.pos);
            builder = builder.in_cluster(&cluster.name);
        }
        sites.set(Site::Connection, stmt.connection.pos);
        builder = builder.connection(&stmt.connection.name);

        for opt in &stmt.options {
            sites.set(Site::SinkOption(opt.name), opt.value_pos);
            builder = match opt.name {
                SinkOption::Topic => builder.topic(opt.str()?),
                SinkOption::TopicPartitionCount => builder.topic_partition_count_raw(opt.int()?),
                SinkOption::TopicReplicationFactor => {
                    builder.topic_replication_factor_raw(opt.int()?)
                }
                SinkOption::TopicConfig => {
                    let mut seen = HashSet::new();
                    for (key, value, pos) in opt.map()? {
                        if !seen.insert(key) {
                            return Err(SpecError::new(format!(
                                "{} key '{key}' specified more than once",
                                opt.name
                            ))
                            .at(*pos));
                        }
                        builder = builder.topic_config(key, value);
                    }
                    builder
                }
                SinkOption::TopicMetadataRefreshInterval => {
                    let text = opt.str()?;
                    let interval = parse_duration(text).ok_or_else(|| {
                        SpecError::new(format!("invalid {}: '{text}' is not a duration", opt.name))
                            .hint("e.g. '30s', '5 minutes' or '1h'")
                            .at(opt.value_pos)
                    })?;
                    builder.topic_metadata_refresh_interval(interval)
                }
                SinkOption::PartitionBy => builder.partition_by_parsed(opt.expr()?.clone()),
                SinkOption::CompressionType => {
                    let text = opt.word()?;
                    let compression = Compression::parse(text).ok_or_else(|| {
                        let known: Vec<&str> =
                            Compression::ALL.iter().map(|c| c.as_str()).collect();
                        SpecError::new(format!("invalid {}: {text}", opt.name))
                            .hint(format!("the compression types are {}", known.join(", ")))
                            .at(opt.value_pos)
                    })?;
                    builder.compression(compression)
                }
                SinkOption::TransactionalIdPrefix => builder.transactional_id_prefix(opt.str()?),
                SinkOption::ProgressGroupIdPrefix => builder.progress_group_id_prefix(opt.str()?),
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
                builder = builder.format(format_spec(format, &[Part::Key, Part::Value], sites)?);
            }
            Some(FormatClause::KeyValue { key, value }) => {
                builder = builder
                    .key_format(format_spec(key, &[Part::Key], sites)?)
                    .value_format(format_spec(value, &[Part::Value], sites)?);
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
        if let (Some((EnvelopeKind::Upsert, _)), Some(opt)) =
            (stmt.envelope, stmt.envelope_options.first())
        {
            return Err(SpecError::new(format!(
                "{} is an option of ENVELOPE DEBEZIUM; ENVELOPE UPSERT takes no options",
                opt.name
            ))
            .hint("write ENVELOPE UPSERT without options, or ENVELOPE DEBEZIUM (…)")
            .at(opt.pos));
        }
        if !stmt.envelope_options.is_empty() {
            let mut debezium = DebeziumOptions::default();
            for opt in &stmt.envelope_options {
                sites.set(Site::EnvelopeOption(opt.name), opt.pos);
                match opt.name {
                    DebeziumEnvelopeOption::Full => debezium.full = opt.bool()?,
                    DebeziumEnvelopeOption::TombstonesOnDelete => {
                        debezium.tombstones_on_delete = opt.bool()?
                    }
                }
            }
            builder = builder.debezium_options(debezium);
        }
        for opt in &stmt.with_options {
            sites.set(Site::With(opt.name), opt.value_pos);
            builder = match opt.name {
                SinkWithOption::Snapshot => builder.snapshot(opt.bool()?),
                SinkWithOption::DeliveryGuarantee => {
                    let text = opt.word()?;
                    let delivery = DeliveryGuarantee::parse(text).ok_or_else(|| {
                        SpecError::new(format!("invalid {}: {text}", opt.name))
                            .hint("the guarantees are 'exactly-once' and 'at-least-once'")
                            .at(opt.value_pos)
                    })?;
                    builder.delivery(delivery)
                }
            };
        }

        let spec = builder.build()?;
        self.check_sink_refs(&spec)?;
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

/// The value of an option, as the kind its [`OptionName::value_kind`] says. The parser reads
/// each value as that kind; another is a broken invariant of the parser, reported as an
/// error naming the option rather than a panic.
impl<N: OptionName> SqlOption<N> {
    fn misparsed(&self) -> SpecError {
        SpecError::new(format!(
            "internal error: option {} was parsed with an unexpected value",
            self.name
        ))
        .at(self.pos)
    }

    /// A string (also an interval's text).
    fn str(&self) -> Result<&str, SpecError> {
        match &self.value {
            OptionValue::Str(s) => Ok(s),
            _ => Err(self.misparsed()),
        }
    }

    /// A bare word or a string.
    fn word(&self) -> Result<&str, SpecError> {
        match &self.value {
            OptionValue::Str(s) | OptionValue::Word(s) => Ok(s),
            _ => Err(self.misparsed()),
        }
    }

    fn int(&self) -> Result<i64, SpecError> {
        match self.value {
            OptionValue::Int(n) => Ok(n),
            _ => Err(self.misparsed()),
        }
    }

    fn bool(&self) -> Result<bool, SpecError> {
        match self.value {
            OptionValue::Bool(b) => Ok(b),
            _ => Err(self.misparsed()),
        }
    }

    fn secret(&self) -> Result<&Ident, SpecError> {
        match &self.value {
            OptionValue::Secret(secret) => Ok(secret),
            _ => Err(self.misparsed()),
        }
    }

    fn string_or_secret(&self) -> Result<StringOrSecret, SpecError> {
        match &self.value {
            OptionValue::Str(s) => Ok(StringOrSecret::Value(s.clone())),
            OptionValue::Secret(secret) => Ok(StringOrSecret::secret(&secret.name)),
            _ => Err(self.misparsed()),
        }
    }

    fn list(&self) -> Result<&[(String, Position)], SpecError> {
        match &self.value {
            OptionValue::List(items) => Ok(items),
            _ => Err(self.misparsed()),
        }
    }

    fn settings(&self) -> Result<&[Setting], SpecError> {
        match &self.value {
            OptionValue::Settings(settings) => Ok(settings),
            _ => Err(self.misparsed()),
        }
    }

    fn map(&self) -> Result<&[(String, String, Position)], SpecError> {
        match &self.value {
            OptionValue::Map(entries) => Ok(entries),
            _ => Err(self.misparsed()),
        }
    }

    fn expr(&self) -> Result<&Expr, SpecError> {
        match &self.value {
            OptionValue::Expr(expr) => Ok(expr),
            _ => Err(self.misparsed()),
        }
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
    let (registry, options, docs) = match &format.kind {
        FormatKind::Json { options } => {
            let mut schemas_enabled = false;
            for opt in options {
                for &part in parts {
                    sites.set(Site::JsonFormatOption(part, opt.name), opt.pos);
                }
                match opt.name {
                    JsonFormatOption::SchemasEnabled => schemas_enabled = opt.bool()?,
                }
            }
            return Ok(if schemas_enabled {
                FormatSpec::JsonWithSchema
            } else {
                FormatSpec::Json
            });
        }
        FormatKind::Text => return Ok(FormatSpec::Text),
        FormatKind::Bytes => return Ok(FormatSpec::Bytes),
        FormatKind::Avro {
            registry,
            options,
            docs,
        } => (registry, options, docs),
    };
    for &part in parts {
        sites.set(Site::Registry(part), registry.pos);
    }
    let mut avro = AvroFormatSpec {
        registry: registry.name.clone(),
        ..AvroFormatSpec::default()
    };
    for opt in options {
        for &part in parts {
            sites.set(Site::FormatOption(part, opt.name), opt.value_pos);
        }
        match opt.name {
            AvroFormatOption::KeyCompatibilityLevel => {
                avro.key_compatibility = Some(compatibility_level(opt)?)
            }
            AvroFormatOption::ValueCompatibilityLevel => {
                avro.value_compatibility = Some(compatibility_level(opt)?)
            }
            AvroFormatOption::KeySubjectNameStrategy => {
                avro.key_subject_name_strategy = subject_name_strategy(opt)?
            }
            AvroFormatOption::ValueSubjectNameStrategy => {
                avro.value_subject_name_strategy = subject_name_strategy(opt)?
            }
            AvroFormatOption::AvroKeyFullname => avro.key_fullname = Some(opt.str()?.to_string()),
            AvroFormatOption::AvroValueFullname => {
                avro.value_fullname = Some(opt.str()?.to_string())
            }
            AvroFormatOption::NullDefaults => avro.null_defaults = opt.bool()?,
        }
    }
    for (i, doc) in docs.iter().enumerate() {
        for &part in parts {
            sites.set(Site::Doc(part, i), doc.pos);
        }
        avro.docs.push(DocComment {
            target: match &doc.on.column {
                Some(column) => DocTarget::Column {
                    relation: doc.on.relation.name.clone(),
                    column: column.name.clone(),
                },
                None => DocTarget::Type(doc.on.relation.name.clone()),
            },
            scope: match doc.on.part {
                DocPart::Key => DocScope::Key,
                DocPart::Value => DocScope::Value,
                DocPart::Both => DocScope::Both,
            },
            text: doc.text.clone(),
        });
    }
    Ok(FormatSpec::Avro(avro))
}

fn compatibility_level(opt: &SqlOption<AvroFormatOption>) -> Result<CompatibilityLevel, SpecError> {
    let text = opt.word()?;
    CompatibilityLevel::parse(text).ok_or_else(|| {
        let known: Vec<&str> = CompatibilityLevel::ALL.iter().map(|l| l.as_str()).collect();
        SpecError::new(format!("invalid {}: {text}", opt.name))
            .hint(format!("the levels are {}", known.join(", ")))
            .at(opt.value_pos)
    })
}

fn subject_name_strategy(
    opt: &SqlOption<AvroFormatOption>,
) -> Result<SubjectNameStrategy, SpecError> {
    let text = opt.word()?;
    SubjectNameStrategy::parse(text).ok_or_else(|| {
        let known: Vec<String> = SubjectNameStrategy::ALL
            .iter()
            .map(|s| format!("{} ({})", s.short_name(), s.as_str()))
            .collect();
        SpecError::new(format!("invalid {}: {text}", opt.name))
            .hint(format!("the strategies are {}", known.join(", ")))
            .at(opt.value_pos)
    })
}
