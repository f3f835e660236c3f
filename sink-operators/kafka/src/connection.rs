//! Kafka and schema-registry connections: turning a `CREATE CONNECTION` spec and the catalog's
//! secrets into a librdkafka configuration or a registry client configuration, and probing a
//! Kafka connection before a sink relies on it.
//!
//! Security: `SSL` and `SASL_SSL` connections carry the authority, client certificate and key
//! as PEM text (`ssl.ca.pem`, `ssl.certificate.pem`, `ssl.key.pem`), so nothing is read from
//! disk; SASL uses `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` with a username and password.
//! librdkafka's default hostname check stays on: broker certificates must name the address the
//! client connects to. Every value that came from a secret is kept for redaction, and the
//! probe's errors and log lines pass through it.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::encoders::{RegistryConfig, Secret};
use crate::spec::{
    ConnectionSpec, OAuthBearerSpec, RegistrySpec, SaslMechanism, SecurityProtocol, SpecError,
    StringOrSecret,
};
use crate::statement::Catalog;

/// How long [`KafkaConnection::check`] waits for the brokers to answer.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one metadata attempt of the probe blocks before it looks at the failures recorded
/// meanwhile: a handshake failure is reported within this, not at the end of the timeout.
const PROBE_SLICE: Duration = Duration::from_millis(250);

/// Log lines a probe keeps; librdkafka at `debug=all` writes thousands.
const PROBE_LOG_LINES: usize = 2_000;

/// librdkafka options whose values are secrets whoever set them; values set through
/// [`KafkaConnection::set`] under these names are redacted like `CREATE SECRET` values.
const SECRET_OPTIONS: [&str; 6] = [
    "sasl.password",
    "ssl.key.pem",
    "ssl.key.password",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
];

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
    /// Every option value that came from a secret, for [`KafkaConnection::redact`].
    secrets: Vec<Secret>,
}

impl KafkaConnection {
    /// Resolves `connection`'s secrets in `catalog`.
    pub fn resolve(
        catalog: &Catalog,
        connection: &ConnectionSpec,
    ) -> Result<KafkaConnection, SpecError> {
        let mut config = ClientConfig::new();
        let mut secrets = Vec::new();
        // Secrets that are not a secret's value itself (an encoding of one, a sensitive
        // setting given in the clear through the Rust API).
        let mut derived_secrets = Vec::new();
        config.set("bootstrap.servers", connection.brokers.join(","));
        config.set("security.protocol", connection.security_protocol.as_str());
        // Topics are created by the sink with the settings the user gave, never by a metadata
        // request that happens to name a missing topic.
        config.set("allow.auto.create.topics", "false");
        let mut reveal = |value: &StringOrSecret| -> Result<String, SpecError> {
            let clear = catalog.reveal(value)?.to_string();
            if value.secret_ref().is_some() {
                secrets.push(Secret::new(clear.clone()));
            }
            Ok(clear)
        };
        if let Some(sasl) = &connection.sasl {
            config.set("sasl.mechanisms", sasl.mechanism.as_str());
            config.set("sasl.username", reveal(&sasl.username)?);
            config.set(
                "sasl.password",
                reveal(&StringOrSecret::Secret(sasl.password.clone()))?,
            );
        }
        match &connection.oauthbearer {
            Some(OAuthBearerSpec::ClientCredentials(oauth)) => {
                config.set("sasl.mechanisms", SaslMechanism::OAuthBearer.as_str());
                config.set("sasl.oauthbearer.method", "oidc");
                config.set("sasl.oauthbearer.token.endpoint.url", &oauth.token_endpoint);
                let client_id = reveal(&oauth.client_id)?;
                let client_secret = reveal(&StringOrSecret::Secret(oauth.client_secret.clone()))?;
                // librdkafka sends the pair as HTTP basic credentials; should that header ever
                // reach a log line, it is redacted too.
                derived_secrets.push(Secret::new(
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{client_id}:{client_secret}")),
                ));
                config.set("sasl.oauthbearer.client.id", client_id);
                config.set("sasl.oauthbearer.client.secret", client_secret);
                if let Some(scope) = &oauth.scope {
                    config.set("sasl.oauthbearer.scope", scope);
                }
            }
            Some(OAuthBearerSpec::Unsecured) => {
                config.set("sasl.mechanisms", SaslMechanism::OAuthBearer.as_str());
            }
            None => {}
        }
        if let Some(key) = &connection.ssl_key {
            config.set("ssl.key.pem", reveal(&StringOrSecret::Secret(key.clone()))?);
        }
        if let Some(certificate) = &connection.ssl_certificate {
            config.set("ssl.certificate.pem", reveal(certificate)?);
        }
        if let Some(authority) = &connection.ssl_certificate_authority {
            config.set("ssl.ca.pem", reveal(authority)?);
        }
        // `LIBRDKAFKA OPTIONS`: the spec allowed each key, none of which Outflow sets above.
        for (key, value) in &connection.librdkafka_options {
            let value = reveal(value)?;
            if SECRET_OPTIONS.contains(&key.as_str()) {
                derived_secrets.push(Secret::new(value.clone()));
            }
            config.set(key, value);
        }
        secrets.extend(derived_secrets);
        Ok(KafkaConnection {
            name: connection.name.clone(),
            config,
            progress_topic: connection.progress_topic.clone(),
            progress_topic_replication_factor: connection.progress_topic_replication_factor,
            secrets,
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
            secrets: Vec::new(),
        }
    }

    /// The librdkafka options every client of this connection starts from.
    ///
    /// They hold secrets in the clear: never print them (`ClientConfig`'s `Debug` shows every
    /// value).
    pub fn client_config(&self) -> &ClientConfig {
        &self.config
    }

    /// The `bootstrap.servers` list.
    pub fn brokers(&self) -> &str {
        self.config.get("bootstrap.servers").unwrap_or_default()
    }

    /// Sets a raw librdkafka option: the escape hatch for settings the statements don't name.
    /// Values of options that hold passwords or keys are redacted like secrets.
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut Self {
        let value = value.into();
        if SECRET_OPTIONS.contains(&key) && !value.is_empty() {
            self.secrets.push(Secret::new(value.clone()));
        }
        self.config.set(key, value);
        self
    }

    /// `text` with every secret value of this connection replaced by `<redacted>`; for
    /// messages from librdkafka or a broker before they reach an error, a status or a log.
    pub fn redact(&self, text: &str) -> String {
        redact_with(&self.secrets, text)
    }

    /// Asks the brokers for metadata within [`CHECK_TIMEOUT`], so that a wrong address,
    /// authority, certificate or password is reported at once, naming the connection, rather
    /// than as a timeout of whatever first uses it.
    pub fn check(&self) -> Result<(), ConnectionError> {
        self.probe(CHECK_TIMEOUT).result
    }

    /// [`KafkaConnection::check`] with another timeout.
    pub fn check_within(&self, timeout: Duration) -> Result<(), ConnectionError> {
        self.probe(timeout).result
    }

    /// The check, with the librdkafka log lines it produced (redacted), for diagnosing a
    /// failure: set the raw option `debug` (e.g. `security,broker`) for more of them.
    pub fn probe(&self, timeout: Duration) -> Probe {
        let context = ProbeContext {
            secrets: self.secrets.clone(),
            brokers: self
                .brokers()
                .split(',')
                .filter(|b| !b.trim().is_empty())
                .count()
                .max(1),
            state: Mutex::new(ProbeState::default()),
        };
        let mut config = self.config.clone();
        let millis = |d: Duration| d.as_millis().clamp(1, i32::MAX as u128).to_string();
        // librdkafka's defaults wait 30 s for a TCP and TLS setup and back off up to 10 s
        // between attempts; a probe must fail within its own timeout.
        config.set(
            "socket.connection.setup.timeout.ms",
            millis(timeout.max(Duration::from_secs(1))),
        );
        config.set("reconnect.backoff.ms", "50");
        config.set("reconnect.backoff.max.ms", "500");
        config.set_log_level(RDKafkaLogLevel::Debug);
        let producer: ThreadedProducer<ProbeContext> = match config.create_with_context(context) {
            Ok(producer) => producer,
            Err(error) => {
                let reason = self.redact(&describe_client_error(&error));
                let result = Err(ConnectionError::Options {
                    connection: self.name.clone(),
                    reason,
                });
                return Probe {
                    result,
                    log: Vec::new(),
                };
            }
        };
        let started = Instant::now();
        let outcome = loop {
            if let Some(failure) = producer.context().decisive_failure() {
                break Err(self.failure(failure));
            }
            let elapsed = started.elapsed();
            if elapsed >= timeout {
                let last = producer.context().last_failure();
                break Err(match last {
                    Some(failure) => self.failure(failure),
                    None => ConnectionError::NoAnswer {
                        connection: self.name.clone(),
                        address: self.brokers().to_string(),
                        waited: timeout,
                        hint: no_answer_hint(
                            self.config
                                .get("security.protocol")
                                .and_then(SecurityProtocol::parse),
                        ),
                    },
                });
            }
            let slice = PROBE_SLICE.min(timeout - elapsed);
            // A failed attempt is retried until the timeout; what caused it reaches the
            // context's error callback.
            if producer.client().fetch_metadata(None, slice).is_ok() {
                break Ok(());
            }
        };
        Probe {
            result: outcome,
            log: producer.context().take_log(),
        }
    }

    /// "SASL SCRAM-SHA-256 authentication as user \"alice\"": what was tried, for an
    /// authentication error. A username that came from a secret is redacted.
    fn sasl_attempt(&self) -> String {
        let mechanism = self
            .config
            .get("sasl.mechanisms")
            .or_else(|| self.config.get("sasl.mechanism"));
        let mut attempt = match mechanism {
            Some(mechanism) => format!("SASL {mechanism} authentication"),
            // librdkafka's default mechanism.
            None => "SASL GSSAPI authentication".to_string(),
        };
        if let Some(username) = self.config.get("sasl.username") {
            attempt.push_str(&format!(" as user \"{}\"", self.redact(username)));
        }
        if let Some(client_id) = self.config.get("sasl.oauthbearer.client.id") {
            attempt.push_str(&format!(
                " as OAuth client \"{}\" with a token from {}",
                self.redact(client_id),
                self.config
                    .get("sasl.oauthbearer.token.endpoint.url")
                    .unwrap_or_default()
            ));
        }
        attempt
    }

    fn failure(&self, failure: Failure) -> ConnectionError {
        let (address, reason) = split_broker_prefix(&failure.reason);
        let address = address.unwrap_or_else(|| self.brokers().to_string());
        let reason = self.redact(reason);
        let connection = self.name.clone();
        let lower = reason.to_ascii_lowercase();
        if failure.code == RDKafkaErrorCode::Authentication || lower.contains("sasl") {
            let oidc = self.config.get("sasl.oauthbearer.method") == Some("oidc");
            let oauthbearer = self.config.get("sasl.mechanisms") == Some("OAUTHBEARER");
            ConnectionError::Authentication {
                connection,
                address,
                attempt: self.sasl_attempt(),
                reason,
                hint: if oidc {
                    "; check SASL OAUTHBEARER TOKEN ENDPOINT, SASL OAUTHBEARER CLIENT ID, SASL \
                     OAUTHBEARER CLIENT SECRET and SASL OAUTHBEARER SCOPE, and that the brokers \
                     accept OAUTHBEARER tokens of that provider on this port"
                } else if oauthbearer {
                    "; check the OAUTHBEARER settings of LIBRDKAFKA OPTIONS \
                     (sasl.oauthbearer.config), and that the brokers accept such tokens on this \
                     port"
                } else {
                    "; check SASL MECHANISMS, SASL USERNAME and SASL PASSWORD, and that the \
                     brokers accept that mechanism on this port"
                },
            }
        } else if failure.code == RDKafkaErrorCode::SSL
            || lower.contains("ssl")
            || lower.contains("tls")
        {
            let has_certificate = ["ssl.certificate.pem", "ssl.certificate.location"]
                .iter()
                .any(|key| self.config.get(key).is_some_and(|v| !v.is_empty()));
            ConnectionError::Tls {
                connection,
                address,
                hint: tls_hint(&lower, has_certificate),
                reason,
            }
        } else {
            ConnectionError::Unreachable {
                connection,
                address,
                reason,
            }
        }
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
            .field("security.protocol", &self.config.get("security.protocol"))
            .field("options", &keys)
            .field("progress_topic", &self.progress_topic)
            .finish()
    }
}

/// Why a Kafka connection cannot be used. Messages name the connection and the broker, never
/// a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// librdkafka refused the options (a certificate or key that is not PEM, an unknown
    /// option).
    #[error("invalid options for Kafka connection \"{connection}\": {reason}")]
    Options {
        /// The connection.
        connection: String,
        /// librdkafka's reason, redacted.
        reason: String,
    },
    /// The TLS handshake failed: the brokers' certificate is not trusted, a client certificate
    /// is missing or refused, or the port does not speak TLS.
    #[error("cannot connect to Kafka connection \"{connection}\" at {address}: {reason}{hint}")]
    Tls {
        connection: String,
        /// The broker that failed, `host:port`.
        address: String,
        reason: String,
        hint: &'static str,
    },
    /// SASL authentication failed.
    #[error(
        "cannot connect to Kafka connection \"{connection}\" at {address}: {attempt} failed: \
         {reason}{hint}"
    )]
    Authentication {
        connection: String,
        address: String,
        /// The mechanism and the user: "SASL SCRAM-SHA-256 authentication as user \"alice\"".
        attempt: String,
        reason: String,
        hint: &'static str,
    },
    /// The brokers could not be reached (refused, unresolvable, disconnected).
    #[error("cannot connect to Kafka connection \"{connection}\" at {address}: {reason}")]
    Unreachable {
        connection: String,
        address: String,
        reason: String,
    },
    /// The brokers took the connection but never answered.
    #[error(
        "Kafka connection \"{connection}\" at {address} did not answer within {waited:?}{hint}"
    )]
    NoAnswer {
        connection: String,
        address: String,
        waited: Duration,
        hint: &'static str,
    },
}

impl ConnectionError {
    /// The connection's name.
    pub fn connection(&self) -> &str {
        match self {
            ConnectionError::Options { connection, .. }
            | ConnectionError::Tls { connection, .. }
            | ConnectionError::Authentication { connection, .. }
            | ConnectionError::Unreachable { connection, .. }
            | ConnectionError::NoAnswer { connection, .. } => connection,
        }
    }
}

/// What [`KafkaConnection::probe`] found.
#[derive(Debug)]
pub struct Probe {
    /// `Ok` once a broker answered a metadata request.
    pub result: Result<(), ConnectionError>,
    /// librdkafka's log lines during the probe, secrets redacted.
    pub log: Vec<String>,
}

/// A librdkafka error reported through the error callback.
#[derive(Clone, Debug)]
struct Failure {
    code: RDKafkaErrorCode,
    reason: String,
}

#[derive(Default)]
struct ProbeState {
    /// A failure that retrying will not cure: a handshake or authentication failure, or every
    /// broker down after at least one reason was given.
    decisive: Option<Failure>,
    /// The most telling failure so far: the latest with a reason of its own.
    last: Option<Failure>,
    /// Brokers that failed to connect at least once.
    failed_brokers: BTreeSet<String>,
    log: Vec<String>,
}

/// The probe's client context: records failures and log lines instead of printing them, with
/// secrets redacted before anything is kept.
struct ProbeContext {
    secrets: Vec<Secret>,
    /// How many bootstrap brokers there are.
    brokers: usize,
    state: Mutex<ProbeState>,
}

impl ProbeContext {
    fn state(&self) -> std::sync::MutexGuard<'_, ProbeState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn decisive_failure(&self) -> Option<Failure> {
        self.state().decisive.clone()
    }

    fn last_failure(&self) -> Option<Failure> {
        self.state().last.clone()
    }

    fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.state().log)
    }
}

impl ClientContext for ProbeContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let line = redact_with(&self.secrets, &format!("{facility} {message}"));
        tracing::debug!(target: "librdkafka", ?level, "{line}");
        let mut state = self.state();
        if state.log.len() < PROBE_LOG_LINES {
            state.log.push(line);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
        let reason = redact_with(&self.secrets, reason);
        tracing::debug!(target: "librdkafka", %code, "{reason}");
        let mut state = self.state();
        let failure = Failure { code, reason };
        // A TLS alert (a client certificate refused after the handshake seemed done, in TLS
        // 1.3) comes as a transport error, and retrying meets the same alert.
        let tls_refusal =
            failure.reason.contains("SSL routines") || failure.reason.contains("SSL alert");
        match code {
            _ if tls_refusal => {
                state.decisive.get_or_insert(failure.clone());
                state.last = Some(failure);
            }
            RDKafkaErrorCode::SSL | RDKafkaErrorCode::Authentication => {
                state.decisive.get_or_insert(failure.clone());
                state.last = Some(failure);
            }
            // "1/1 brokers are down" says nothing the failure before it did not.
            RDKafkaErrorCode::AllBrokersDown => {
                let decisive = state.last.clone().unwrap_or(failure);
                state.decisive.get_or_insert(decisive);
            }
            _ => {
                // Once every bootstrap broker has failed, retrying within the probe's
                // timeout only repeats the failures.
                if let (Some(address), _) = split_broker_prefix(&failure.reason) {
                    state.failed_brokers.insert(address);
                    if state.failed_brokers.len() >= self.brokers {
                        state.decisive.get_or_insert(failure.clone());
                    }
                }
                state.last = Some(failure);
            }
        }
    }
}

impl ProducerContext for ProbeContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

fn describe_client_error(error: &KafkaError) -> String {
    match error {
        KafkaError::ClientConfig(_, description, key, _) => {
            format!("invalid value for client option {key:?}: {description}")
        }
        KafkaError::ClientCreation(reason) => reason.clone(),
        other => other.to_string(),
    }
}

/// librdkafka starts connection errors with `ssl://host:port/id: ` (or `host:port/id: ` in
/// plaintext); the address goes into the message's own "at …", the rest is the reason.
fn split_broker_prefix(reason: &str) -> (Option<String>, &str) {
    let Some((prefix, message)) = reason.split_once(": ") else {
        return (None, reason);
    };
    if prefix.is_empty() || prefix.contains(char::is_whitespace) {
        return (None, reason);
    }
    let broker = prefix
        .split_once("://")
        .map_or(prefix, |(_scheme, rest)| rest);
    match broker.rsplit_once('/') {
        Some((address, _id)) if !address.is_empty() => (Some(address.to_string()), message),
        _ => (None, reason),
    }
}

/// `has_certificate`: whether the connection presents a client certificate.
fn tls_hint(reason: &str, has_certificate: bool) -> &'static str {
    let refused_client = reason.contains("certificate required")
        || reason.contains("handshake failure")
        || reason.contains("bad certificate");
    if reason.contains("certificate verify failed") || reason.contains("could not be verified") {
        "; check SSL CERTIFICATE AUTHORITY: it must be the authority that signed the brokers' \
         certificates, and they must name the address connected to"
    } else if refused_client && !has_certificate {
        // TLS 1.3 servers refuse a missing certificate with a "bad certificate" alert after
        // the handshake, TLS 1.2 servers with "certificate required" or a handshake failure.
        "; the brokers require a client certificate and the connection presents none: set SSL \
         CERTIFICATE and SSL KEY"
    } else if reason.contains("certificate required") || reason.contains("handshake failure") {
        "; the brokers require a client certificate they trust: set SSL CERTIFICATE and SSL KEY"
    } else if reason.contains("unknown ca") || reason.contains("bad certificate") {
        "; the brokers do not trust the client certificate: check SSL CERTIFICATE and SSL KEY"
    } else if reason.contains("wrong version number") || reason.contains("packet length too long") {
        "; the brokers do not speak TLS on this port: check SECURITY PROTOCOL"
    } else {
        ""
    }
}

/// `protocol` is the one in effect: the connection's, or one set through
/// [`KafkaConnection::set`].
fn no_answer_hint(protocol: Option<SecurityProtocol>) -> &'static str {
    match protocol {
        Some(SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl) => {
            "; the brokers took the connection but not the SASL handshake: check SECURITY \
             PROTOCOL and that the listener on this port is configured for SASL"
        }
        Some(SecurityProtocol::Ssl) => {
            "; the brokers took the connection but did not answer over TLS: check SECURITY PROTOCOL"
        }
        _ => "; check BROKERS and SECURITY PROTOCOL",
    }
}

fn redact_with(secrets: &[Secret], text: &str) -> String {
    let mut text = text.to_string();
    for secret in secrets {
        let value = secret.expose();
        if !value.is_empty() {
            text = text.replace(value, "<redacted>");
        }
        // A PEM key might be quoted one line at a time; its armour lines are not secret.
        for line in value.lines().map(str::trim) {
            if line.len() >= 16 && !line.starts_with("-----") {
                text = text.replace(line, "<redacted>");
            }
        }
    }
    text
}

/// Resolves a schema registry connection's secrets into a client configuration.
pub fn registry_config(
    catalog: &Catalog,
    registry: &RegistrySpec,
) -> Result<RegistryConfig, SpecError> {
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
        value
            .as_ref()
            .map(|v| catalog.reveal(v).map(str::to_string))
            .transpose()
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
        let connection =
            KafkaConnection::resolve(&catalog, catalog.connection("k").unwrap()).unwrap();
        let config = connection.client_config();
        assert_eq!(config.get("bootstrap.servers"), Some("a:9092,b:9092"));
        assert_eq!(config.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(config.get("sasl.mechanisms"), Some("SCRAM-SHA-256"));
        assert_eq!(config.get("sasl.username"), Some("alice"));
        assert_eq!(config.get("sasl.password"), Some("hunter2"));
        assert_eq!(config.get("ssl.certificate.pem"), Some("cert-pem"));
        assert_eq!(connection.progress_topic, "progress");
        let printed = format!("{connection:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("BEGIN PRIVATE KEY"),
            "{printed}"
        );
        assert!(printed.contains("sasl.password"));
    }

    #[test]
    fn every_value_from_a_secret_is_redacted() {
        let catalog = Catalog::from_sql(STATEMENTS).unwrap();
        let mut connection =
            KafkaConnection::resolve(&catalog, catalog.connection("k").unwrap()).unwrap();
        connection.set("ssl.key.password", "passphrase-for-the-key");
        let text = "auth hunter2 key -----BEGIN PRIVATE KEY-----secret pass passphrase-for-the-key user alice";
        assert_eq!(
            connection.redact(text),
            "auth <redacted> key <redacted> pass <redacted> user alice"
        );
        // An option given in the clear is not a secret; one line of a multi-line key is.
        let key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----\n";
        let redacted = redact_with(
            &[Secret::new(key)],
            "line MIGHAgEAMBMGByqGSM49AgEGCCqGSM49 quoted",
        );
        assert_eq!(redacted, "line <redacted> quoted");
        assert_eq!(connection.redact("cert-pem"), "cert-pem");
    }

    #[test]
    fn oauthbearer_and_passed_through_settings_reach_librdkafka_redacted() {
        let catalog = Catalog::from_sql(
            "CREATE SECRET client_secret AS 'oauth-secret-hunter2';
             CREATE SECRET passphrase AS 'passphrase-hunter2';
             CREATE CONNECTION k TO KAFKA (
                 BROKER 'a:9092',
                 SASL MECHANISMS = 'OAUTHBEARER',
                 SASL OAUTHBEARER TOKEN ENDPOINT = 'https://idp.example.com/token',
                 SASL OAUTHBEARER CLIENT ID = 'sink-client',
                 SASL OAUTHBEARER CLIENT SECRET = SECRET client_secret,
                 SASL OAUTHBEARER SCOPE = 'kafka',
                 LIBRDKAFKA OPTIONS ('client.id' = 'orders-sink',
                     'sasl.oauthbearer.extensions' = 'logicalCluster=lkc-1,identityPoolId=pool-2',
                     'ssl.key.password' = SECRET passphrase)
             );",
        )
        .unwrap();
        let connection =
            KafkaConnection::resolve(&catalog, catalog.connection("k").unwrap()).unwrap();
        let config = connection.client_config();
        for (key, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "OAUTHBEARER"),
            ("sasl.oauthbearer.method", "oidc"),
            (
                "sasl.oauthbearer.token.endpoint.url",
                "https://idp.example.com/token",
            ),
            ("sasl.oauthbearer.client.id", "sink-client"),
            ("sasl.oauthbearer.client.secret", "oauth-secret-hunter2"),
            ("sasl.oauthbearer.scope", "kafka"),
            ("client.id", "orders-sink"),
            (
                "sasl.oauthbearer.extensions",
                "logicalCluster=lkc-1,identityPoolId=pool-2",
            ),
            ("ssl.key.password", "passphrase-hunter2"),
        ] {
            assert_eq!(config.get(key), Some(value), "{key}");
        }
        assert_eq!(config.get("sasl.username"), None);
        let basic =
            base64::engine::general_purpose::STANDARD.encode("sink-client:oauth-secret-hunter2");
        let text = format!("{connection:?} secret {} and {basic}", "passphrase-hunter2");
        let shown = connection.redact(&text);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains(&basic), "{shown}");
        // librdkafka takes every one of them: each is a setting it knows.
        let probe = connection.probe(Duration::from_millis(100));
        assert!(
            !matches!(probe.result, Err(ConnectionError::Options { .. })),
            "{:?}",
            probe.result
        );
    }

    #[test]
    fn broker_prefixes_become_the_address() {
        assert_eq!(
            split_broker_prefix("ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: bad"),
            (
                Some("127.0.0.1:9093".to_string()),
                "SSL handshake failed: bad"
            )
        );
        assert_eq!(
            split_broker_prefix("sasl_plaintext://b:9092/1: Disconnected"),
            (Some("b:9092".to_string()), "Disconnected")
        );
        assert_eq!(
            split_broker_prefix(
                "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused"
            ),
            (
                Some("127.0.0.1:9".to_string()),
                "Connect to ipv4#127.0.0.1:9 failed: Connection refused"
            )
        );
        assert_eq!(
            split_broker_prefix("1/1 brokers are down"),
            (None, "1/1 brokers are down")
        );
        assert_eq!(
            split_broker_prefix("Local: Timed out: x"),
            (None, "Local: Timed out: x")
        );
    }

    #[test]
    fn a_refused_client_certificate_is_told_from_a_missing_one() {
        let alert = "receive failed: ssl routines::sslv3 alert bad certificate";
        assert!(tls_hint(alert, false).contains("presents none: set SSL CERTIFICATE and SSL KEY"));
        assert!(tls_hint(alert, true).contains("do not trust the client certificate"));
        assert!(tls_hint("certificate verify failed", false).contains("SSL CERTIFICATE AUTHORITY"));
    }

    #[test]
    fn sasl_failures_name_the_mechanism_and_the_user() {
        let catalog = Catalog::from_sql(STATEMENTS).unwrap();
        let connection =
            KafkaConnection::resolve(&catalog, catalog.connection("k").unwrap()).unwrap();
        assert_eq!(
            connection.sasl_attempt(),
            "SASL SCRAM-SHA-256 authentication as user \"alice\""
        );
        let error = connection.failure(Failure {
            code: RDKafkaErrorCode::Authentication,
            reason: "sasl_ssl://a:9092/bootstrap: SASL authentication error: hunter2 refused"
                .to_string(),
        });
        assert_eq!(
            error.to_string(),
            "cannot connect to Kafka connection \"k\" at a:9092: SASL SCRAM-SHA-256 \
             authentication as user \"alice\" failed: SASL authentication error: <redacted> \
             refused; check SASL MECHANISMS, SASL USERNAME and SASL PASSWORD, and that the \
             brokers accept that mechanism on this port"
        );
    }

    #[test]
    fn an_unreachable_broker_is_named_quickly() {
        // A port nobody listens on: the connection is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let connection = KafkaConnection::plaintext("local", format!("127.0.0.1:{port}"));
        let started = Instant::now();
        let error = connection.check_within(Duration::from_secs(5)).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?} {error}",
            started.elapsed()
        );
        let message = error.to_string();
        assert!(
            message.starts_with(&format!(
                "cannot connect to Kafka connection \"local\" at 127.0.0.1:{port}: "
            )),
            "{message}"
        );
        assert!(
            matches!(error, ConnectionError::Unreachable { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn a_silent_peer_is_reported_at_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        // Accepts connections and never says a word.
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().collect();
            drop(held);
        });
        let connection = KafkaConnection::plaintext("quiet", address.to_string());
        let started = Instant::now();
        let error = connection.check_within(Duration::from_secs(1)).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?} {error}",
            started.elapsed()
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!("Kafka connection \"quiet\" at {address}")),
            "{message}"
        );
        assert!(
            matches!(
                error,
                ConnectionError::NoAnswer { .. } | ConnectionError::Unreachable { .. }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn registry_options_carry_basic_auth() {
        let catalog = Catalog::from_sql(STATEMENTS).unwrap();
        let config = registry_config(&catalog, catalog.registry("csr").unwrap()).unwrap();
        assert_eq!(config.url, "https://registry.example.com");
        assert_eq!(config.username.as_deref(), Some("bob"));
        assert_eq!(
            config.password.as_ref().map(Secret::expose),
            Some("swordfish")
        );
        assert!(!format!("{config:?}").contains("swordfish"));
    }
}
