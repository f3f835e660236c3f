//! `Catalog`: the objects created so far, by name, and the checks that references between
//! them resolve. Its errors name the [`Site`] at fault; the statement layer places them.

use std::collections::BTreeMap;

use outflow_encoders::{Part, Secret};
use serde::Serialize;

use crate::error::{Notice, Site, SpecError};
use crate::spec::{
    avro_of, ClusterSpec, ConnectionSpec, RegistrySpec, SecretRef, SecretSpec, SecurityProtocol,
    SinkSpec, StringOrSecret, TableSpec,
};
use crate::syntax::parse_statements;

/// Secrets, connections, tables and sinks share one namespace, as in Materialize; clusters
/// have their own.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    items: BTreeMap<String, Item>,
    clusters: BTreeMap<String, ClusterSpec>,
    order: Vec<ObjectKey>,
}

#[derive(Clone, Debug)]
pub(super) enum Item {
    Secret(SecretSpec),
    Connection(ConnectionSpec),
    Registry(RegistrySpec),
    Table(TableSpec),
    Sink(Box<SinkSpec>),
}

impl Item {
    fn kind(&self) -> &'static str {
        match self {
            Item::Secret(_) => "secret",
            Item::Connection(_) | Item::Registry(_) => "connection",
            Item::Table(_) => "table",
            Item::Sink(_) => "sink",
        }
    }
}

#[derive(Clone, Debug)]
enum ObjectKey {
    Item(String),
    Cluster(String),
}

/// One object of a catalog, as `outflow check` prints it: the spec with a `kind` field.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CatalogObject<'a> {
    Secret(&'a SecretSpec),
    KafkaConnection(&'a ConnectionSpec),
    SchemaRegistryConnection(&'a RegistrySpec),
    Table(&'a TableSpec),
    Cluster(&'a ClusterSpec),
    Sink(&'a SinkSpec),
}

impl CatalogObject<'_> {
    pub fn name(&self) -> &str {
        match self {
            CatalogObject::Secret(s) => &s.name,
            CatalogObject::KafkaConnection(c) => &c.name,
            CatalogObject::SchemaRegistryConnection(r) => &r.name,
            CatalogObject::Table(t) => &t.name,
            CatalogObject::Cluster(c) => &c.name,
            CatalogObject::Sink(s) => &s.name,
        }
    }
}

impl Catalog {
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Points every Kafka connection at `brokers` (`host:port,…`) over plaintext, without
    /// credentials, and every schema registry connection at `registry`, without credentials:
    /// for running a statements file written for production against local peers.
    pub fn redirect(&mut self, brokers: Option<&str>, registry: Option<&str>) {
        for item in self.items.values_mut() {
            match item {
                Item::Connection(connection) => {
                    if let Some(brokers) = brokers {
                        connection.brokers =
                            brokers.split(',').map(|b| b.trim().to_string()).collect();
                        connection.security_protocol = SecurityProtocol::Plaintext;
                        connection.sasl = None;
                        connection.oauthbearer = None;
                        // Pass-through settings about TLS and SASL have nothing to talk to.
                        connection.librdkafka_options.retain(|key, _| {
                            !["ssl.", "sasl.", "https.", "enable.sasl."]
                                .iter()
                                .any(|prefix| key.starts_with(prefix))
                        });
                        connection.ssl_key = None;
                        connection.ssl_certificate = None;
                        connection.ssl_certificate_authority = None;
                        // A local broker has one replica.
                        connection.progress_topic_replication_factor = None;
                    }
                }
                Item::Registry(spec) => {
                    if let Some(registry) = registry {
                        spec.url = registry.to_string();
                        spec.username = None;
                        spec.password = None;
                        spec.ssl_key = None;
                        spec.ssl_certificate = None;
                        spec.ssl_certificate_authority = None;
                    }
                }
                Item::Sink(sink) if brokers.is_some() => sink.topic_replication_factor = None,
                _ => {}
            }
        }
    }

    /// A catalog of the objects a file of statements creates.
    pub fn from_sql(text: &str) -> Result<Catalog, SpecError> {
        let mut catalog = Catalog::new();
        catalog.execute_sql(text)?;
        Ok(catalog)
    }

    /// Parses and executes statements in order, stopping at the first error (the objects
    /// created before it stay).
    pub fn execute_sql(&mut self, text: &str) -> Result<Vec<Notice>, SpecError> {
        let mut notices = Vec::new();
        for statement in parse_statements(text)? {
            notices.extend(self.execute(&statement)?);
        }
        Ok(notices)
    }

    pub fn secret(&self, name: &str) -> Option<&SecretSpec> {
        match self.items.get(name) {
            Some(Item::Secret(s)) => Some(s),
            _ => None,
        }
    }

    pub fn connection(&self, name: &str) -> Option<&ConnectionSpec> {
        match self.items.get(name) {
            Some(Item::Connection(c)) => Some(c),
            _ => None,
        }
    }

    pub fn registry(&self, name: &str) -> Option<&RegistrySpec> {
        match self.items.get(name) {
            Some(Item::Registry(r)) => Some(r),
            _ => None,
        }
    }

    pub fn table(&self, name: &str) -> Option<&TableSpec> {
        match self.items.get(name) {
            Some(Item::Table(t)) => Some(t),
            _ => None,
        }
    }

    pub fn sink(&self, name: &str) -> Option<&SinkSpec> {
        match self.items.get(name) {
            Some(Item::Sink(s)) => Some(s),
            _ => None,
        }
    }

    pub fn cluster(&self, name: &str) -> Option<&ClusterSpec> {
        self.clusters.get(name)
    }

    /// Every object, in the order it was created.
    pub fn objects(&self) -> impl Iterator<Item = CatalogObject<'_>> {
        self.order.iter().map(|key| match key {
            ObjectKey::Cluster(name) => CatalogObject::Cluster(&self.clusters[name]),
            ObjectKey::Item(name) => match &self.items[name] {
                Item::Secret(s) => CatalogObject::Secret(s),
                Item::Connection(c) => CatalogObject::KafkaConnection(c),
                Item::Registry(r) => CatalogObject::SchemaRegistryConnection(r),
                Item::Table(t) => CatalogObject::Table(t),
                Item::Sink(s) => CatalogObject::Sink(s),
            },
        })
    }

    /// The sinks, in the order they were created.
    pub fn sinks(&self) -> impl Iterator<Item = &SinkSpec> {
        self.objects().filter_map(|o| match o {
            CatalogObject::Sink(s) => Some(s),
            _ => None,
        })
    }

    /// The secret a reference names.
    pub fn secret_value(&self, secret: &SecretRef) -> Result<&Secret, SpecError> {
        Ok(&self.resolve_secret(secret.name())?.value)
    }

    /// The clear value of an option that may be a secret, for handing to a client library;
    /// never print it.
    pub fn reveal<'a>(&'a self, value: &'a StringOrSecret) -> Result<&'a str, SpecError> {
        match value {
            StringOrSecret::Value(v) => Ok(v),
            StringOrSecret::Secret(s) => Ok(self.secret_value(s)?.expose()),
        }
    }

    pub fn add_secret(&mut self, secret: SecretSpec) -> Result<(), SpecError> {
        self.check_new_item(&secret.name)?;
        self.insert_item(secret.name.clone(), Item::Secret(secret));
        Ok(())
    }

    /// Adds a Kafka connection whose secrets are already in the catalog.
    pub fn add_connection(&mut self, connection: ConnectionSpec) -> Result<(), SpecError> {
        self.check_new_item(&connection.name)?;
        self.check_secret_refs(
            connection
                .secret_refs()
                .into_iter()
                .map(|(option, secret)| (Site::KafkaOption(option), secret)),
        )?;
        self.insert_item(connection.name.clone(), Item::Connection(connection));
        Ok(())
    }

    /// Adds a schema registry connection whose secrets are already in the catalog.
    pub fn add_registry(&mut self, registry: RegistrySpec) -> Result<(), SpecError> {
        self.check_new_item(&registry.name)?;
        self.check_secret_refs(
            registry
                .secret_refs()
                .into_iter()
                .map(|(option, secret)| (Site::RegistryOption(option), secret)),
        )?;
        self.insert_item(registry.name.clone(), Item::Registry(registry));
        Ok(())
    }

    pub fn add_table(&mut self, table: TableSpec) -> Result<(), SpecError> {
        self.check_new_item(&table.name)?;
        self.insert_item(table.name.clone(), Item::Table(table));
        Ok(())
    }

    pub fn add_cluster(&mut self, cluster: ClusterSpec) -> Result<(), SpecError> {
        self.check_new_cluster(&cluster.name)?;
        self.insert_cluster(cluster);
        Ok(())
    }

    /// Adds a sink after checking what it names: its table (if it names one, with the same
    /// columns), cluster, Kafka connection and schema registry connections.
    pub fn add_sink(&mut self, sink: SinkSpec) -> Result<(), SpecError> {
        self.check_new_item(&sink.name)?;
        self.check_sink_refs(&sink)?;
        self.insert_item(sink.name.clone(), Item::Sink(Box::new(sink)));
        Ok(())
    }

    pub(super) fn insert_item(&mut self, name: String, item: Item) {
        self.order.push(ObjectKey::Item(name.clone()));
        self.items.insert(name, item);
    }

    pub(super) fn insert_cluster(&mut self, cluster: ClusterSpec) {
        self.order.push(ObjectKey::Cluster(cluster.name.clone()));
        self.clusters.insert(cluster.name.clone(), cluster);
    }

    /// The kind of the item called `name`, if there is one.
    pub(super) fn item_kind(&self, name: &str) -> Option<&'static str> {
        self.items.get(name).map(Item::kind)
    }

    pub(super) fn check_new_item(&self, name: &str) -> Result<(), SpecError> {
        match self.items.get(name) {
            Some(existing) => Err(SpecError::new(format!(
                "{} \"{name}\" already exists",
                existing.kind()
            ))
            .site(Site::Name)),
            None => Ok(()),
        }
    }

    pub(super) fn check_new_cluster(&self, name: &str) -> Result<(), SpecError> {
        match self.clusters.contains_key(name) {
            true => {
                Err(SpecError::new(format!("cluster \"{name}\" already exists")).site(Site::Name))
            }
            false => Ok(()),
        }
    }

    fn unknown(name: &str) -> SpecError {
        SpecError::new(format!("unknown catalog item '{name}'"))
    }

    pub(super) fn resolve_secret(&self, name: &str) -> Result<&SecretSpec, SpecError> {
        match self.items.get(name) {
            Some(Item::Secret(s)) => Ok(s),
            Some(_) => Err(SpecError::new(format!("\"{name}\" is not a secret"))),
            None => Err(Self::unknown(name)
                .hint(format!("create it first with CREATE SECRET {name} AS '…'"))),
        }
    }

    /// Checks that each secret exists; an error names the site that refers to it.
    pub(super) fn check_secret_refs<'a>(
        &self,
        refs: impl IntoIterator<Item = (Site, &'a SecretRef)>,
    ) -> Result<(), SpecError> {
        for (site, secret) in refs {
            self.resolve_secret(secret.name())
                .map_err(|e| e.site(site))?;
        }
        Ok(())
    }

    /// The table a sink reads. Other kinds of items cannot be exported.
    pub(super) fn resolve_sink_source(&self, name: &str) -> Result<&TableSpec, SpecError> {
        match self.items.get(name) {
            Some(Item::Table(t)) => Ok(t),
            Some(other) => Err(SpecError::new(format!(
                "{name} is a {}, which cannot be exported as a sink",
                other.kind()
            ))),
            None => Err(Self::unknown(name)),
        }
        .map_err(|e| e.site(Site::From))
    }

    fn resolve_kafka(&self, name: &str) -> Result<&ConnectionSpec, SpecError> {
        match self.items.get(name) {
            Some(Item::Connection(c)) => Ok(c),
            Some(_) => Err(SpecError::new(format!(
                "\"{name}\" is not a kafka connection"
            ))),
            None => Err(Self::unknown(name)),
        }
    }

    fn resolve_registry(&self, name: &str) -> Result<&RegistrySpec, SpecError> {
        match self.items.get(name) {
            Some(Item::Registry(r)) => Ok(r),
            Some(_) => Err(SpecError::new(format!(
                "\"{name}\" is not a schema registry connection"
            ))),
            None => Err(Self::unknown(name)),
        }
    }

    fn resolve_cluster(&self, name: &str) -> Result<&ClusterSpec, SpecError> {
        self.clusters
            .get(name)
            .ok_or_else(|| SpecError::new(format!("unknown cluster '{name}'")))
    }

    /// Checks what a sink names: its table, cluster, Kafka and schema registry connections.
    pub(super) fn check_sink_refs(&self, sink: &SinkSpec) -> Result<(), SpecError> {
        if let Some(from) = &sink.from {
            let table = self.resolve_sink_source(from)?;
            if table.desc != sink.desc {
                return Err(SpecError::new(format!(
                    "sink \"{}\" describes the rows of \"{from}\" differently from the table",
                    sink.name
                ))
                .hint(format!(
                    "build the sink with the description in Catalog::table(\"{from}\")"
                ))
                .site(Site::From));
            }
        }
        if let Some(cluster) = &sink.cluster {
            self.resolve_cluster(cluster)
                .map_err(|e| e.site(Site::Cluster))?;
        }
        self.resolve_kafka(&sink.connection)
            .map_err(|e| e.site(Site::Connection))?;
        for (part, format) in [
            (Part::Key, sink.key_format.as_ref()),
            (Part::Value, Some(&sink.value_format)),
        ] {
            if let Some(avro) = format.and_then(avro_of) {
                self.resolve_registry(&avro.registry)
                    .map_err(|e| e.site(Site::Registry(part)))?;
            }
        }
        Ok(())
    }
}
