//! Kafka and schema-registry connections: turning a `CREATE CONNECTION` spec and the catalog's
//! secrets into a librdkafka configuration or a registry client configuration.

use std::fmt;

use rdkafka::ClientConfig;

use crate::encoders::{RegistryConfig, Secret};
use crate::spec::{ConnectionSpec, RegistrySpec, SecurityProtocol, SpecError, StringOrSecret};
use crate::statement::Catalog;

/// A Kafka connection ready for clients: librdkafka options, with secrets resolved.
///
/// `Debug` lists the option names only: values may be passwords or private keys.
#[derive(Clone)]
pub struct KafkaConnection {
    /// The connection's name, for errors.
    pub name: String,
    config: ClientConfig,
    /// Where every sink on this connection records its progress.
    pub progress_topic: String,
    pub progress_topic_replication_factor: Option<i32>,
}

impl KafkaConnection {
    /// Resolves `connection`'s secrets in `catalog`.
    pub fn resolve(catalog: &Catalog, connection: &ConnectionSpec) -> Result<KafkaConnection, SpecError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", connection.brokers.join(","));
        config.set("security.protocol", connection.security_protocol.as_str());
        // Topics are created by the sink with the settings the user gave, never by a metadata
        // request that happens to name a missing topic.
        config.set("allow.auto.create.topics", "false");
        if let Some(sasl) = &connection.sasl {
            config.set("sasl.mechanisms", sasl.mechanism.as_str());
            config.set("sasl.username", catalog.reveal(&sasl.username)?);
            config.set("sasl.password", catalog.secret_value(&sasl.password)?.expose());
        }
        if let Some(key) = &connection.ssl_key {
            config.set("ssl.key.pem", catalog.secret_value(key)?.expose());
        }
        if let Some(certificate) = &connection.ssl_certificate {
            config.set("ssl.certificate.pem", catalog.reveal(certificate)?);
        }
        if let Some(authority) = &connection.ssl_certificate_authority {
            config.set("ssl.ca.pem", catalog.reveal(authority)?);
        }
        Ok(KafkaConnection {
            name: connection.name.clone(),
            config,
            progress_topic: connection.progress_topic.clone(),
            progress_topic_replication_factor: connection.progress_topic_replication_factor,
        })
    }

    /// A plaintext connection to `brokers` (`host:port,…`), for tests and local brokers.
    pub fn plaintext(name: impl Into<String>, brokers: impl Into<String>) -> KafkaConnection {
        let name = name.into();
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers.into());
        config.set("security.protocol", SecurityProtocol::Plaintext.as_str());
        config.set("allow.auto.create.topics", "false");
        KafkaConnection {
            progress_topic: ConnectionSpec::default_progress_topic(&name),
            name,
            config,
            progress_topic_replication_factor: None,
        }
    }

    /// The librdkafka options every client of this connection starts from.
    pub fn client_config(&self) -> &ClientConfig {
        &self.config
    }

    /// Sets a raw librdkafka option: the escape hatch for settings the statements don't name.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        self.config.set(key, value);
        self
    }
}

impl fmt::Debug for KafkaConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config_map = self.config.config_map();
        let mut keys: Vec<&str> = config_map.keys().copied().collect();
        keys.sort_unstable();
        f.debug_struct("KafkaConnection")
            .field("name", &self.name)
            .field("bootstrap.servers", &self.config.get("bootstrap.servers"))
            .field("options", &keys)
            .field("progress_topic", &self.progress_topic)
            .finish()
    }
}

/// Resolves a schema registry connection's secrets into a client configuration.
pub fn registry_config(catalog: &Catalog, registry: &RegistrySpec) -> Result<RegistryConfig, SpecError> {
    let mut config = RegistryConfig::new(registry.url.clone());
    if let Some(username) = &registry.username {
        let password: Option<Secret> = match &registry.password {
            Some(secret) => Some(catalog.secret_value(secret)?.clone()),
            None => None,
        };
        config = config.with_basic_auth(catalog.reveal(username)?.to_string(), password);
    }
    if let Some(key) = &registry.ssl_key {
        config.ssl_key = Some(catalog.secret_value(key)?.clone());
    }
    let reveal = |value: &Option<StringOrSecret>| -> Result<Option<String>, SpecError> {
        value.as_ref().map(|v| catalog.reveal(v).map(str::to_string)).transpose()
    };
    config.ssl_certificate = reveal(&registry.ssl_certificate)?;
    config.ssl_certificate_authority = reveal(&registry.ssl_certificate_authority)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATEMENTS: &str = "
        CREATE SECRET kafka_password AS 'hunter2';
        CREATE SECRET ssl_key AS '-----BEGIN PRIVATE KEY-----secret';
        CREATE CONNECTION k TO KAFKA (
            BROKERS ('a:9092', 'b:9092'),
            SASL MECHANISMS = 'SCRAM-SHA-256',
            SASL USERNAME = 'alice',
            SASL PASSWORD = SECRET kafka_password,
            SSL KEY = SECRET ssl_key,
            SSL CERTIFICATE = 'cert-pem',
            PROGRESS TOPIC 'progress'
        );
        CREATE SECRET csr_password AS 'swordfish';
        CREATE CONNECTION csr TO CONFLUENT SCHEMA REGISTRY (
            URL 'https://registry.example.com', USERNAME = 'bob', PASSWORD = SECRET csr_password
        );
    ";

    #[test]
    fn kafka_options_carry_resolved_secrets_but_never_print_them() {
        let catalog = Catalog::from_sql(STATEMENTS).unwrap();
        let connection = KafkaConnection::resolve(&catalog, catalog.connection("k").unwrap()).unwrap();
        let config = connection.client_config();
        assert_eq!(config.get("bootstrap.servers"), Some("a:9092,b:9092"));
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("sasl.mechanisms"), Some("SCRAM-SHA-256"));
        assert_eq!(config.get("sasl.username"), Some("alice"));
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
        assert_eq!(config.get("ssl.certificate.pem"), Some("cert-pem"));
        assert_eq!(connection.progress_topic, "progress");
        let printed = format!("{connection:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("BEGIN PRIVATE KEY"), "{printed}");
        assert!(printed.contains("sasl.password"));
    }

    #[test]
    fn registry_options_carry_basic_auth() {
        let catalog = Catalog::from_sql(STATEMENTS).unwrap();
        let config = registry_config(&catalog, catalog.registry("csr").unwrap()).unwrap();
        assert_eq!(config.url, "https://registry.example.com");
        assert_eq!(config.username.as_deref(), Some("bob"));
        assert_eq!(config.password.as_ref().map(Secret::expose), Some("swordfish"));
        assert!(!format!("{config:?}").contains("swordfish"));
    }
}
