//! `SinkPlan`: what a sink is to do, resolved from the statements or built by hand.

use std::time::Duration;

use outflow_protocol::{Cadence, Definition, SinkNames};

use super::SinkError;
use crate::connection::{registry_config, KafkaConnection};
use crate::encoders::{EncoderConfig, Envelope, FormatSpec, RegistryConfig};
use crate::producer::{DeliveryMode, ProducerSettings, DEFAULT_CALL_TIMEOUT};
use crate::spec::{DeliveryGuarantee, SinkSpec};
use crate::statement::Catalog;
use crate::topic::{progress_topic_settings, TopicSettings};

/// Everything a sink needs to run, as data: its spec, the resolved connection and registry, and
/// how it paces itself. Built from a catalog (the statements) or by hand; nothing here talks to
/// a broker until [`SinkPlan::preflight`].
#[derive(Clone, Debug)]
pub struct SinkPlan {
    pub spec: SinkSpec,
    pub connection: KafkaConnection,
    pub registry: Option<RegistryConfig>,
    /// Commit interval, transaction size bound, bytes in flight, the producers'
    /// `transaction.timeout.ms`, retries (see [`Cadence`]).
    pub cadence: Cadence,
    /// The time of the input's snapshot, skipped under `SNAPSHOT = false`. Default 0.
    pub as_of: u64,
    /// Set for brokers whose `read_committed` fetches return aborted records (Tansu): recovery
    /// then reads the progress topic's raw log and applies the control batches itself.
    pub broker_shows_aborted_records: bool,
    /// How long one blocking producer call may take before it is retried (see
    /// [`ProducerSettings::call_timeout`](crate::producer::ProducerSettings::call_timeout)). Default 30 s.
    pub call_timeout: Duration,
}

impl SinkPlan {
    /// A plan for `spec` on `connection`, with the default cadence.
    pub fn new(spec: SinkSpec, connection: KafkaConnection) -> SinkPlan {
        SinkPlan {
            spec,
            connection,
            registry: None,
            cadence: Cadence::default(),
            as_of: 0,
            broker_shows_aborted_records: false,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    /// The plan of sink `name` of `catalog`, with its connection and registry resolved.
    pub fn from_catalog(catalog: &Catalog, name: &str) -> Result<SinkPlan, SinkError> {
        let spec = catalog
            .sink(name)
            .ok_or_else(|| SinkError::UnknownSink(name.to_string()))?
            .clone();
        let connection_spec = catalog
            .connection(&spec.connection)
            .ok_or_else(|| SinkError::UnknownConnection(spec.connection.clone()))?;
        let connection = KafkaConnection::resolve(catalog, connection_spec)?;
        let registry = match avro_registry(&spec) {
            Some(registry_name) => {
                let registry = catalog
                    .registry(registry_name)
                    .ok_or_else(|| SinkError::UnknownConnection(registry_name.to_string()))?;
                Some(registry_config(catalog, registry)?)
            }
            None => None,
        };
        let mut plan = SinkPlan::new(spec, connection);
        plan.registry = registry;
        Ok(plan)
    }

    /// The sink's names in Kafka, derived from its name (so that ACLs on the prefixes keep
    /// working), with the definition its progress records name.
    pub fn names(&self) -> SinkNames {
        SinkNames::new(
            self.spec.name.clone(),
            self.spec.transactional_id_prefix.clone(),
            self.spec.progress_group_id_prefix.clone(),
        )
        .with_definition(self.definition())
    }

    /// What the sink writes, as its progress records name it: the topic, the key columns, the
    /// key and value formats and the envelope. A restart that finds records naming another
    /// definition starts the sink from the beginning (see `docs/protocol.md`); other changes
    /// (columns, `PARTITION BY`, headers, compression, Avro names) resume where it committed.
    pub fn definition(&self) -> Definition {
        let spec = &self.spec;
        let (key, key_format) = match &spec.key {
            Some(key) => (
                key.columns.join(", "),
                spec.key_format
                    .as_ref()
                    .unwrap_or(&spec.value_format)
                    .describe(),
            ),
            None => ("(none)".to_string(), "(none)"),
        };
        let envelope = match spec.envelope {
            Envelope::Upsert => "UPSERT".to_string(),
            Envelope::Debezium => spec.debezium_clause(),
        };
        Definition::new([
            ("topic", spec.topic.clone()),
            ("key", key),
            ("key format", key_format.to_string()),
            ("value format", spec.value_format.describe().to_string()),
            ("envelope", envelope),
        ])
    }

    pub(crate) fn delivery_mode(&self) -> DeliveryMode {
        match self.spec.delivery {
            DeliveryGuarantee::ExactlyOnce => DeliveryMode::ExactlyOnce,
            DeliveryGuarantee::AtLeastOnce => DeliveryMode::AtLeastOnce,
        }
    }

    /// Worker `worker`'s producer settings, as `sink_kafka` starts it: with
    /// [`producer_config`](crate::producer::producer_config) over the connection's options they
    /// are its whole librdkafka configuration (a benchmark's baseline producer uses the same).
    pub fn producer_settings(&self, worker: u32) -> ProducerSettings {
        let mut settings = ProducerSettings::new(
            self.names(),
            worker,
            self.spec.topic.clone(),
            self.connection.progress_topic.clone(),
            &self.cadence,
        );
        settings.mode = self.delivery_mode();
        settings.compression = self.spec.compression;
        settings.call_timeout = self.call_timeout;
        settings
    }

    /// What the preflight creates the data topic with when it is missing (and checks an
    /// existing one against).
    pub fn topic_settings(&self) -> TopicSettings {
        let spec = &self.spec;
        let mut topic = TopicSettings::new(spec.topic.clone());
        topic.partitions = spec.topic_partition_count;
        topic.replication_factor = spec.topic_replication_factor;
        topic.configs = spec.topic_config.clone();
        topic
    }

    /// What the preflight creates the progress topic with when it is missing.
    pub fn progress_topic_settings(&self) -> TopicSettings {
        progress_topic_settings(
            &self.connection.progress_topic,
            self.connection.progress_topic_replication_factor,
        )
    }

    /// What the sink's encoder is configured with, as `sink_kafka` builds it.
    pub fn encoder_config(&self) -> EncoderConfig {
        self.spec.encoder_config()
    }
}

/// The registry connection an Avro key or value format names.
fn avro_registry(spec: &SinkSpec) -> Option<&str> {
    [spec.key_format.as_ref(), Some(&spec.value_format)]
        .into_iter()
        .flatten()
        .find_map(|format| match format {
            FormatSpec::Avro(avro) => Some(avro.registry.as_str()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(rest: &str) -> std::collections::BTreeMap<String, String> {
        let catalog = Catalog::from_sql(&format!(
            "CREATE CONNECTION k TO KAFKA (BROKER 'localhost:9092', SECURITY PROTOCOL PLAINTEXT);
             CREATE TABLE t (id bigint PRIMARY KEY, name text);
             CREATE SINK s FROM t INTO KAFKA CONNECTION k (TOPIC 'topic') KEY (id) {rest};"
        ))
        .unwrap();
        SinkPlan::from_catalog(&catalog, "s")
            .unwrap()
            .definition()
            .0
    }

    #[test]
    fn the_definition_names_the_debezium_and_json_options_only_when_set() {
        let plain = definition("FORMAT JSON ENVELOPE DEBEZIUM");
        assert_eq!(plain["envelope"], "DEBEZIUM");
        assert_eq!(plain["key format"], "JSON");
        assert_eq!(plain["value format"], "JSON");
        // Options set to false are the plain sink: its progress records still apply.
        assert_eq!(
            definition(
                "FORMAT JSON (SCHEMAS ENABLED = false) ENVELOPE DEBEZIUM (FULL = false, TOMBSTONES ON DELETE = false)"
            ),
            plain
        );
        let full = definition(
            "KEY FORMAT JSON VALUE FORMAT JSON (SCHEMAS ENABLED) ENVELOPE DEBEZIUM (FULL, TOMBSTONES ON DELETE)",
        );
        assert_eq!(full["envelope"], "DEBEZIUM (FULL, TOMBSTONES ON DELETE)");
        assert_eq!(full["key format"], "JSON");
        assert_eq!(full["value format"], "JSON (SCHEMAS ENABLED)");
        assert_eq!(
            definition("FORMAT JSON ENVELOPE DEBEZIUM (TOMBSTONES ON DELETE)")["envelope"],
            "DEBEZIUM (TOMBSTONES ON DELETE)"
        );
        assert_eq!(
            definition("FORMAT JSON ENVELOPE UPSERT")["envelope"],
            "UPSERT"
        );
    }
}
