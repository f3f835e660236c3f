//! Typed, validated descriptions of the objects a sink needs — secrets, Kafka and schema
//! registry connections, tables, clusters and sinks — and the builders that produce them.
//!
//! The `CREATE …` statements (see [`crate::statement`]) and the Rust builders below go through
//! the same validation and produce equal specs. A spec can be built, printed (it serializes to
//! JSON with secrets redacted), validated and compared without a broker. Validation knows no
//! statement text: an error names the [`Site`] it blames, and only the statement layer turns
//! that into a line and column.
//!
//! ```
//! use outflow_dataflow::{RelationDesc, ScalarType};
//! use outflow_encoders::{Envelope, FormatSpec};
//! use outflow_sql::spec::SinkSpec;
//!
//! let orders = RelationDesc::empty()
//!     .with_column("order_id", ScalarType::Int64, false)
//!     .with_column("region", ScalarType::Text, true)
//!     .with_key(vec![0]);
//! let sink = SinkSpec::builder("order_updates", orders)
//!     .connection("kafka_connection")
//!     .topic("order_updates")
//!     .key(["order_id"])
//!     .partition_by("kafka_murmur2(region)")
//!     .format(FormatSpec::Json)
//!     .envelope(Envelope::Upsert)
//!     .build()
//!     .unwrap();
//! assert_eq!(sink.transactional_id(3), "outflow-order_updates-3");
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use outflow_dataflow::operators::SinkKey as PairingKey;
use outflow_dataflow::{RelationDesc, ScalarType};
use outflow_encoders::{
    validate_headers_column, AvroFormatSpec, DebeziumOptions, DocScope, DocTarget, EncodeError,
    EncoderConfig, Envelope, FormatSpec, Part, Secret,
};
use serde::{Serialize, Serializer};

use crate::options::{
    AvroFormatOption, DebeziumEnvelopeOption, KafkaConnectionOption, OptionName,
    RegistryConnectionOption, SinkOption,
};
use crate::partition::PartitionExpr;
use crate::syntax::{self, ast};

pub use crate::error::{Notice, Position, Site, SpecError};

/// An error about `site`, found by validation; the statement layer places it in the text.
fn blame(site: Site, message: impl Into<String>) -> SpecError {
    SpecError::new(message).site(site)
}

/// A reference to a secret, by name: `SECRET name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretRef(pub String);

impl SecretRef {
    pub fn new(name: impl Into<String>) -> SecretRef {
        SecretRef(name.into())
    }

    pub fn name(&self) -> &str {
        &self.0
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = BTreeMap::new();
        map.insert("secret", &self.0);
        map.serialize(serializer)
    }
}

/// An option given either in the clear or as a secret (`SASL USERNAME`, `SSL CERTIFICATE`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum StringOrSecret {
    Value(String),
    Secret(SecretRef),
}

impl StringOrSecret {
    pub fn secret(name: impl Into<String>) -> StringOrSecret {
        StringOrSecret::Secret(SecretRef::new(name))
    }

    pub fn secret_ref(&self) -> Option<&SecretRef> {
        match self {
            StringOrSecret::Secret(s) => Some(s),
            StringOrSecret::Value(_) => None,
        }
    }
}

impl From<&str> for StringOrSecret {
    fn from(value: &str) -> StringOrSecret {
        StringOrSecret::Value(value.to_string())
    }
}

impl From<String> for StringOrSecret {
    fn from(value: String) -> StringOrSecret {
        StringOrSecret::Value(value)
    }
}

impl From<SecretRef> for StringOrSecret {
    fn from(value: SecretRef) -> StringOrSecret {
        StringOrSecret::Secret(value)
    }
}

/// `CREATE SECRET name AS 'value'`. The value never prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretSpec {
    pub name: String,
    pub value: Secret,
}

impl SecretSpec {
    pub fn new(name: impl Into<String>, value: Secret) -> SecretSpec {
        SecretSpec {
            name: name.into(),
            value,
        }
    }
}

/// How a Kafka client talks to the brokers (librdkafka's `security.protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Case-insensitive.
    pub fn parse(s: &str) -> Option<SecurityProtocol> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
    }

    fn uses_sasl(&self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    fn uses_tls(&self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SASL mechanisms (librdkafka's `sasl.mechanisms`): three with a username and password, and
/// `OAUTHBEARER`, whose token comes from an OAuth token endpoint ([`OAuthBearerSpec`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    #[serde(rename = "OAUTHBEARER")]
    OAuthBearer,
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 4] = [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
        SaslMechanism::OAuthBearer,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Case-insensitive.
    pub fn parse(s: &str) -> Option<SaslMechanism> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SASL credentials of the password mechanisms: the mechanism (never `OAUTHBEARER`, which
/// is [`OAuthBearerSpec`]), a username, and the password as a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SaslSpec {
    pub mechanism: SaslMechanism,
    pub username: StringOrSecret,
    pub password: SecretRef,
}

/// `SASL MECHANISMS = 'OAUTHBEARER'`: where the client's tokens come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthBearerSpec {
    /// OAuth 2.0 client credentials: librdkafka posts the client id and secret to the token
    /// endpoint (`sasl.oauthbearer.method=oidc`), sends the token it gets to the brokers, and
    /// fetches a new one before it expires.
    ClientCredentials(OAuthClientCredentials),
    /// Unsigned tokens librdkafka makes itself (`LIBRDKAFKA OPTIONS
    /// ('enable.sasl.oauthbearer.unsecure.jwt' = 'true', 'sasl.oauthbearer.config' = SECRET
    /// s)`), which only a development broker accepts.
    Unsecured,
}

/// The client credentials of [`OAuthBearerSpec::ClientCredentials`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OAuthClientCredentials {
    /// `SASL OAUTHBEARER TOKEN ENDPOINT`: an `http://` or `https://` URL.
    pub token_endpoint: String,
    pub client_id: StringOrSecret,
    pub client_secret: SecretRef,
    /// `SASL OAUTHBEARER SCOPE`: the scope requested, when the provider needs one.
    pub scope: Option<String>,
}

/// `CREATE CONNECTION name TO KAFKA (…)`.
///
/// Defaults, as Materialize has them:
/// - `security_protocol`: when not given, `SASL_SSL` if SASL options are present, otherwise
///   `SSL` (TLS is assumed; a broker without TLS needs `SECURITY PROTOCOL PLAINTEXT`);
/// - `progress_topic`: `_outflow-progress-{connection name}` unless `PROGRESS TOPIC` names
///   one. Every sink on the connection shares it;
/// - `progress_topic_replication_factor`: the broker's default when not given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectionSpec {
    pub name: String,
    pub brokers: Vec<String>,
    pub security_protocol: SecurityProtocol,
    pub sasl: Option<SaslSpec>,
    /// `SASL MECHANISMS = 'OAUTHBEARER'` and its token source.
    pub oauthbearer: Option<OAuthBearerSpec>,
    pub ssl_key: Option<SecretRef>,
    pub ssl_certificate: Option<StringOrSecret>,
    pub ssl_certificate_authority: Option<StringOrSecret>,
    pub progress_topic: String,
    pub progress_topic_replication_factor: Option<i32>,
    /// `LIBRDKAFKA OPTIONS (…)`: librdkafka settings passed through to every client of the
    /// connection, each one of [`crate::librdkafka::ALLOWED`].
    pub librdkafka_options: BTreeMap<String, StringOrSecret>,
}

impl ConnectionSpec {
    pub fn builder(name: impl Into<String>) -> ConnectionBuilder {
        ConnectionBuilder {
            name: name.into(),
            ..ConnectionBuilder::default()
        }
    }

    /// The progress topic a connection uses when `PROGRESS TOPIC` is not given.
    pub fn default_progress_topic(connection_name: &str) -> String {
        format!("_outflow-progress-{connection_name}")
    }

    /// The secrets the connection refers to, with the option that names each.
    pub fn secret_refs(&self) -> Vec<(KafkaConnectionOption, &SecretRef)> {
        use KafkaConnectionOption as O;
        let mut refs = Vec::new();
        if let Some(sasl) = &self.sasl {
            if let Some(s) = sasl.username.secret_ref() {
                refs.push((O::SaslUsername, s));
            }
            refs.push((O::SaslPassword, &sasl.password));
        }
        if let Some(OAuthBearerSpec::ClientCredentials(oauth)) = &self.oauthbearer {
            if let Some(s) = oauth.client_id.secret_ref() {
                refs.push((O::SaslOauthbearerClientId, s));
            }
            refs.push((O::SaslOauthbearerClientSecret, &oauth.client_secret));
        }
        if let Some(s) = &self.ssl_key {
            refs.push((O::SslKey, s));
        }
        if let Some(s) = self
            .ssl_certificate
            .as_ref()
            .and_then(StringOrSecret::secret_ref)
        {
            refs.push((O::SslCertificate, s));
        }
        if let Some(s) = self
            .ssl_certificate_authority
            .as_ref()
            .and_then(StringOrSecret::secret_ref)
        {
            refs.push((O::SslCertificateAuthority, s));
        }
        for value in self.librdkafka_options.values() {
            if let Some(s) = value.secret_ref() {
                refs.push((O::LibrdkafkaOptions, s));
            }
        }
        refs
    }
}

/// Builds a [`ConnectionSpec`]; `build` validates it.
#[derive(Clone, Debug, Default)]
pub struct ConnectionBuilder {
    name: String,
    brokers: Vec<String>,
    /// Whether the brokers were given as a list (`BROKERS`), to blame a bad address on it.
    brokers_listed: bool,
    security_protocol: Option<SecurityProtocol>,
    sasl_mechanism: Option<SaslMechanism>,
    sasl_username: Option<StringOrSecret>,
    sasl_password: Option<SecretRef>,
    oauthbearer_token_endpoint: Option<String>,
    oauthbearer_client_id: Option<StringOrSecret>,
    oauthbearer_client_secret: Option<SecretRef>,
    oauthbearer_scope: Option<String>,
    ssl_key: Option<SecretRef>,
    ssl_certificate: Option<StringOrSecret>,
    ssl_certificate_authority: Option<StringOrSecret>,
    progress_topic: Option<String>,
    progress_topic_replication_factor: Option<i64>,
    librdkafka_options: Vec<(String, StringOrSecret)>,
}

impl ConnectionBuilder {
    /// Adds a bootstrap broker, `host:port`.
    pub fn broker(mut self, address: impl Into<String>) -> Self {
        self.brokers.push(address.into());
        self
    }

    pub fn brokers<I: IntoIterator<Item = S>, S: Into<String>>(mut self, addresses: I) -> Self {
        self.brokers.extend(addresses.into_iter().map(Into::into));
        self.brokers_listed = true;
        self
    }

    pub fn security_protocol(mut self, protocol: SecurityProtocol) -> Self {
        self.security_protocol = Some(protocol);
        self
    }

    pub fn sasl_mechanism(mut self, mechanism: SaslMechanism) -> Self {
        self.sasl_mechanism = Some(mechanism);
        self
    }

    pub fn sasl_username(mut self, username: impl Into<StringOrSecret>) -> Self {
        self.sasl_username = Some(username.into());
        self
    }

    /// The SASL password, by the name of the secret holding it.
    pub fn sasl_password(mut self, secret: impl Into<String>) -> Self {
        self.sasl_password = Some(SecretRef::new(secret));
        self
    }

    /// `SASL OAUTHBEARER TOKEN ENDPOINT`: the OAuth token endpoint of `SASL MECHANISMS =
    /// 'OAUTHBEARER'`.
    pub fn oauthbearer_token_endpoint(mut self, url: impl Into<String>) -> Self {
        self.oauthbearer_token_endpoint = Some(url.into());
        self
    }

    pub fn oauthbearer_client_id(mut self, client_id: impl Into<StringOrSecret>) -> Self {
        self.oauthbearer_client_id = Some(client_id.into());
        self
    }

    /// The OAuth client secret, by the name of the secret holding it.
    pub fn oauthbearer_client_secret(mut self, secret: impl Into<String>) -> Self {
        self.oauthbearer_client_secret = Some(SecretRef::new(secret));
        self
    }

    pub fn oauthbearer_scope(mut self, scope: impl Into<String>) -> Self {
        self.oauthbearer_scope = Some(scope.into());
        self
    }

    /// Passes a librdkafka setting through (`LIBRDKAFKA OPTIONS`); `build` refuses settings
    /// off [`crate::librdkafka::ALLOWED`], and secret ones not given as a [`SecretRef`].
    pub fn librdkafka_option(
        mut self,
        key: impl Into<String>,
        value: impl Into<StringOrSecret>,
    ) -> Self {
        self.librdkafka_options.push((key.into(), value.into()));
        self
    }

    /// The client's TLS private key, by the name of the secret holding it.
    pub fn ssl_key(mut self, secret: impl Into<String>) -> Self {
        self.ssl_key = Some(SecretRef::new(secret));
        self
    }

    pub fn ssl_certificate(mut self, certificate: impl Into<StringOrSecret>) -> Self {
        self.ssl_certificate = Some(certificate.into());
        self
    }

    pub fn ssl_certificate_authority(mut self, certificate: impl Into<StringOrSecret>) -> Self {
        self.ssl_certificate_authority = Some(certificate.into());
        self
    }

    pub fn progress_topic(mut self, topic: impl Into<String>) -> Self {
        self.progress_topic = Some(topic.into());
        self
    }

    pub fn progress_topic_replication_factor(mut self, factor: i32) -> Self {
        self.progress_topic_replication_factor = Some(factor.into());
        self
    }

    pub(crate) fn progress_topic_replication_factor_raw(mut self, factor: i64) -> Self {
        self.progress_topic_replication_factor = Some(factor);
        self
    }

    pub fn build(self) -> Result<ConnectionSpec, SpecError> {
        use KafkaConnectionOption as O;
        let site = Site::KafkaOption;
        let broker_option = if self.brokers_listed {
            O::Brokers
        } else {
            O::Broker
        };
        if self.brokers.is_empty() {
            return Err(blame(Site::Statement, "must set one of BROKER or BROKERS"));
        }
        for broker in &self.brokers {
            check_broker_address(broker).map_err(|e| e.site(site(broker_option)))?;
        }
        let librdkafka_options = check_librdkafka_options(self.librdkafka_options)
            .map_err(|e| e.site(site(O::LibrdkafkaOptions)))?;
        let oauth_given = [
            (
                O::SaslOauthbearerTokenEndpoint,
                self.oauthbearer_token_endpoint.is_some(),
            ),
            (
                O::SaslOauthbearerClientId,
                self.oauthbearer_client_id.is_some(),
            ),
            (
                O::SaslOauthbearerClientSecret,
                self.oauthbearer_client_secret.is_some(),
            ),
            (O::SaslOauthbearerScope, self.oauthbearer_scope.is_some()),
        ]
        .into_iter()
        .find(|(_, given)| *given)
        .map(|(option, _)| option);
        let sasl_given = self.sasl_mechanism.is_some()
            || self.sasl_username.is_some()
            || self.sasl_password.is_some()
            || oauth_given.is_some();
        let tls_given = self.ssl_key.is_some()
            || self.ssl_certificate.is_some()
            || self.ssl_certificate_authority.is_some();
        let protocol = self.security_protocol.unwrap_or(if sasl_given {
            SecurityProtocol::SaslSsl
        } else {
            SecurityProtocol::Ssl
        });
        let mut oauthbearer = None;
        let sasl = if protocol.uses_sasl() {
            // Blame the first SASL option given.
            let anchor = [
                (O::SaslMechanisms, self.sasl_mechanism.is_some()),
                (O::SecurityProtocol, self.security_protocol.is_some()),
                (O::SaslUsername, self.sasl_username.is_some()),
                (O::SaslPassword, self.sasl_password.is_some()),
            ]
            .into_iter()
            .find(|(_, given)| *given)
            .map(|(option, _)| option)
            .or(oauth_given)
            .map_or(Site::Statement, site);
            let missing = |option: KafkaConnectionOption| {
                blame(anchor, format!("SASL authentication requires {option}"))
                    .hint("SASL needs SASL MECHANISMS, SASL USERNAME and SASL PASSWORD")
            };
            let mechanism = self
                .sasl_mechanism
                .ok_or_else(|| missing(O::SaslMechanisms))?;
            if mechanism == SaslMechanism::OAuthBearer {
                for (option, given) in [
                    (O::SaslUsername, self.sasl_username.is_some()),
                    (O::SaslPassword, self.sasl_password.is_some()),
                ] {
                    if given {
                        return Err(blame(
                            site(option),
                            format!("{option} cannot be used with SASL MECHANISMS OAUTHBEARER"),
                        )
                        .hint(
                            "OAUTHBEARER takes SASL OAUTHBEARER TOKEN ENDPOINT, SASL OAUTHBEARER \
                             CLIENT ID, SASL OAUTHBEARER CLIENT SECRET and SASL OAUTHBEARER SCOPE",
                        ));
                    }
                }
                let unsecured = matches!(
                    librdkafka_options.get("enable.sasl.oauthbearer.unsecure.jwt"),
                    Some(StringOrSecret::Value(v)) if v == "true"
                );
                if unsecured {
                    if let Some(option) = oauth_given {
                        return Err(blame(
                            site(option),
                            format!(
                                "{option} cannot be used with LIBRDKAFKA OPTIONS \
                                 'enable.sasl.oauthbearer.unsecure.jwt' = 'true'"
                            ),
                        )
                        .hint(
                            "unsecured tokens are made by the client itself: leave out either \
                             the token endpoint options or enable.sasl.oauthbearer.unsecure.jwt",
                        ));
                    }
                    oauthbearer = Some(OAuthBearerSpec::Unsecured);
                } else {
                    let missing = |option: KafkaConnectionOption| {
                        blame(
                            anchor,
                            format!("SASL MECHANISMS OAUTHBEARER requires {option}"),
                        )
                        .hint(
                            "OAUTHBEARER needs SASL OAUTHBEARER TOKEN ENDPOINT, SASL OAUTHBEARER \
                             CLIENT ID and SASL OAUTHBEARER CLIENT SECRET (SCOPE is optional)",
                        )
                    };
                    let token_endpoint = self
                        .oauthbearer_token_endpoint
                        .ok_or_else(|| missing(O::SaslOauthbearerTokenEndpoint))?;
                    check_http_url(O::SaslOauthbearerTokenEndpoint.name(), &token_endpoint)
                        .map_err(|e| e.site(site(O::SaslOauthbearerTokenEndpoint)))?;
                    oauthbearer =
                        Some(OAuthBearerSpec::ClientCredentials(OAuthClientCredentials {
                            token_endpoint,
                            client_id: self
                                .oauthbearer_client_id
                                .ok_or_else(|| missing(O::SaslOauthbearerClientId))?,
                            client_secret: self
                                .oauthbearer_client_secret
                                .ok_or_else(|| missing(O::SaslOauthbearerClientSecret))?,
                            scope: self.oauthbearer_scope,
                        }));
                }
                None
            } else {
                if let Some(option) = oauth_given {
                    return Err(blame(
                        site(option),
                        format!("{option} cannot be used with SASL MECHANISMS {mechanism}"),
                    )
                    .hint("use SASL MECHANISMS = 'OAUTHBEARER'"));
                }
                Some(SaslSpec {
                    mechanism,
                    username: self.sasl_username.ok_or_else(|| missing(O::SaslUsername))?,
                    password: self.sasl_password.ok_or_else(|| missing(O::SaslPassword))?,
                })
            }
        } else {
            if sasl_given {
                let option = if self.sasl_mechanism.is_some() {
                    O::SaslMechanisms
                } else if self.sasl_username.is_some() {
                    O::SaslUsername
                } else if self.sasl_password.is_some() {
                    O::SaslPassword
                } else {
                    oauth_given.unwrap_or(O::SaslMechanisms)
                };
                return Err(blame(
                    site(option),
                    format!("{option} cannot be used with SECURITY PROTOCOL {protocol}"),
                )
                .hint("use SECURITY PROTOCOL SASL_SSL or SASL_PLAINTEXT"));
            }
            None
        };
        if tls_given && !protocol.uses_tls() {
            let option = if self.ssl_key.is_some() {
                O::SslKey
            } else if self.ssl_certificate.is_some() {
                O::SslCertificate
            } else {
                O::SslCertificateAuthority
            };
            return Err(blame(
                site(option),
                format!("{option} cannot be used with SECURITY PROTOCOL {protocol}"),
            )
            .hint("use SECURITY PROTOCOL SSL or SASL_SSL"));
        }
        check_key_pair(
            self.ssl_key.is_some(),
            self.ssl_certificate.is_some(),
            site(O::SslKey),
            site(O::SslCertificate),
        )?;
        let progress_topic = match self.progress_topic {
            Some(topic) => {
                check_topic_name(O::ProgressTopic.name(), &topic)
                    .map_err(|e| e.site(site(O::ProgressTopic)))?;
                topic
            }
            None => ConnectionSpec::default_progress_topic(&self.name),
        };
        let progress_topic_replication_factor = match self.progress_topic_replication_factor {
            Some(n) => Some(i32::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                blame(
                    site(O::ProgressTopicReplicationFactor),
                    "invalid CONNECTION: PROGRESS TOPIC REPLICATION FACTOR must be greater than 0",
                )
            })?),
            None => None,
        };
        Ok(ConnectionSpec {
            name: self.name,
            brokers: self.brokers,
            security_protocol: protocol,
            sasl,
            oauthbearer,
            ssl_key: self.ssl_key,
            ssl_certificate: self.ssl_certificate,
            ssl_certificate_authority: self.ssl_certificate_authority,
            progress_topic,
            progress_topic_replication_factor,
            librdkafka_options,
        })
    }
}

/// `LIBRDKAFKA OPTIONS`: each setting allowed, given once, and a secret one given as a secret.
fn check_librdkafka_options(
    options: Vec<(String, StringOrSecret)>,
) -> Result<BTreeMap<String, StringOrSecret>, SpecError> {
    let mut checked = BTreeMap::new();
    for (key, value) in options {
        check_librdkafka_setting(&key, &value)?;
        if checked.insert(key.clone(), value).is_some() {
            return Err(SpecError::new(format!(
                "LIBRDKAFKA OPTIONS sets '{key}' more than once"
            )));
        }
    }
    Ok(checked)
}

/// One setting of `LIBRDKAFKA OPTIONS`, for the statement layer (which points at the key) and
/// the builder alike.
pub(crate) fn check_librdkafka_setting(key: &str, value: &StringOrSecret) -> Result<(), SpecError> {
    crate::librdkafka::check_setting(key)?;
    if crate::librdkafka::is_secret_setting(key) && value.secret_ref().is_none() {
        return Err(
            SpecError::new(format!("LIBRDKAFKA OPTIONS '{key}' must be a SECRET")).hint(format!(
                "store the value with CREATE SECRET, then write '{key}' = SECRET name"
            )),
        );
    }
    Ok(())
}

/// An `http://` or `https://` URL with a host.
fn check_http_url(option: &str, url: &str) -> Result<(), SpecError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty() && !rest.starts_with('/') && !url.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(SpecError::new(format!(
            "invalid {option} '{url}': expected an http:// or https:// URL"
        ))),
    }
}

/// A client key without its certificate (or the reverse) cannot authenticate.
fn check_key_pair(
    key: bool,
    certificate: bool,
    key_site: Site,
    certificate_site: Site,
) -> Result<(), SpecError> {
    match (key, certificate) {
        (true, false) => Err(blame(key_site, "SSL KEY requires SSL CERTIFICATE")),
        (false, true) => Err(blame(certificate_site, "SSL CERTIFICATE requires SSL KEY")),
        _ => Ok(()),
    }
}

fn check_broker_address(address: &str) -> Result<(), SpecError> {
    let invalid = |why: &str| SpecError::new(format!("invalid broker address '{address}': {why}"));
    if address.trim().is_empty() {
        return Err(invalid("it is empty"));
    }
    if address.contains(',') {
        return Err(
            invalid("it lists several brokers").hint("write BROKERS ('host1:9092', 'host2:9092')")
        );
    }
    if address.chars().any(char::is_whitespace) {
        return Err(invalid("it contains whitespace"));
    }
    // A bracketed IPv6 host may contain colons; the port is what follows the last one.
    let host_port = address.rsplit_once("://").map_or(address, |(_, rest)| rest);
    if let Some((host, port)) = host_port.rsplit_once(':') {
        if !host.ends_with(']') && host.contains(':') && !host.starts_with('[') {
            return Err(invalid("an IPv6 host must be in brackets, e.g. [::1]:9092"));
        }
        if host.is_empty() {
            return Err(invalid("the host is missing"));
        }
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(invalid("the port must be a number from 1 to 65535"));
        }
    }
    Ok(())
}

/// Kafka's rule for topic names.
fn check_topic_name(option: &str, topic: &str) -> Result<(), SpecError> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty()
        || topic.len() > 249
        || topic == "."
        || topic == ".."
        || !topic.chars().all(legal)
    {
        return Err(SpecError::new(format!("invalid {option} '{topic}'"))
            .detail("Kafka topic names are 1 to 249 characters of ASCII letters, digits, '.', '_' and '-', and neither '.' nor '..'."));
    }
    Ok(())
}

/// `CREATE CONNECTION name TO CONFLUENT SCHEMA REGISTRY (…)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RegistrySpec {
    pub name: String,
    pub url: String,
    pub username: Option<StringOrSecret>,
    pub password: Option<SecretRef>,
    pub ssl_key: Option<SecretRef>,
    pub ssl_certificate: Option<StringOrSecret>,
    pub ssl_certificate_authority: Option<StringOrSecret>,
}

impl RegistrySpec {
    pub fn builder(name: impl Into<String>, url: impl Into<String>) -> RegistryBuilder {
        RegistryBuilder {
            name: name.into(),
            url: Some(url.into()),
            ..RegistryBuilder::default()
        }
    }

    /// The secrets the connection refers to, with the option that names each.
    pub fn secret_refs(&self) -> Vec<(RegistryConnectionOption, &SecretRef)> {
        use RegistryConnectionOption as O;
        let mut refs = Vec::new();
        if let Some(s) = self.username.as_ref().and_then(StringOrSecret::secret_ref) {
            refs.push((O::Username, s));
        }
        if let Some(s) = &self.password {
            refs.push((O::Password, s));
        }
        if let Some(s) = &self.ssl_key {
            refs.push((O::SslKey, s));
        }
        if let Some(s) = self
            .ssl_certificate
            .as_ref()
            .and_then(StringOrSecret::secret_ref)
        {
            refs.push((O::SslCertificate, s));
        }
        if let Some(s) = self
            .ssl_certificate_authority
            .as_ref()
            .and_then(StringOrSecret::secret_ref)
        {
            refs.push((O::SslCertificateAuthority, s));
        }
        refs
    }
}

/// Builds a [`RegistrySpec`]; `build` validates it.
#[derive(Clone, Debug, Default)]
pub struct RegistryBuilder {
    name: String,
    url: Option<String>,
    username: Option<StringOrSecret>,
    password: Option<SecretRef>,
    ssl_key: Option<SecretRef>,
    ssl_certificate: Option<StringOrSecret>,
    ssl_certificate_authority: Option<StringOrSecret>,
}

impl RegistryBuilder {
    pub(crate) fn without_url(name: impl Into<String>) -> RegistryBuilder {
        RegistryBuilder {
            name: name.into(),
            ..RegistryBuilder::default()
        }
    }

    pub(crate) fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    pub fn username(mut self, username: impl Into<StringOrSecret>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The password, by the name of the secret holding it.
    pub fn password(mut self, secret: impl Into<String>) -> Self {
        self.password = Some(SecretRef::new(secret));
        self
    }

    pub fn ssl_key(mut self, secret: impl Into<String>) -> Self {
        self.ssl_key = Some(SecretRef::new(secret));
        self
    }

    pub fn ssl_certificate(mut self, certificate: impl Into<StringOrSecret>) -> Self {
        self.ssl_certificate = Some(certificate.into());
        self
    }

    pub fn ssl_certificate_authority(mut self, certificate: impl Into<StringOrSecret>) -> Self {
        self.ssl_certificate_authority = Some(certificate.into());
        self
    }

    pub fn build(self) -> Result<RegistrySpec, SpecError> {
        let url = self
            .url
            .ok_or_else(|| blame(Site::Statement, "must specify URL"))?;
        let site = Site::RegistryOption;
        check_url(&url).map_err(|e| e.site(site(RegistryConnectionOption::Url)))?;
        if self.password.is_some() && self.username.is_none() {
            return Err(blame(
                site(RegistryConnectionOption::Password),
                "PASSWORD requires USERNAME",
            ));
        }
        check_key_pair(
            self.ssl_key.is_some(),
            self.ssl_certificate.is_some(),
            site(RegistryConnectionOption::SslKey),
            site(RegistryConnectionOption::SslCertificate),
        )?;
        Ok(RegistrySpec {
            name: self.name,
            url,
            username: self.username,
            password: self.password,
            ssl_key: self.ssl_key,
            ssl_certificate: self.ssl_certificate,
            ssl_certificate_authority: self.ssl_certificate_authority,
        })
    }
}

fn check_url(url: &str) -> Result<(), SpecError> {
    let invalid = |why: &str| SpecError::new(format!("invalid URL '{url}': {why}"));
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(invalid("it must start with http:// or https://"));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(invalid("it must start with http:// or https://"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() || host.starts_with(':') {
        return Err(invalid("the host is missing"));
    }
    if url.chars().any(char::is_whitespace) {
        return Err(invalid("it contains whitespace"));
    }
    Ok(())
}

/// `CREATE TABLE name (…)`: the relation a sink reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableSpec {
    pub name: String,
    #[serde(rename = "relation", serialize_with = "serialize_desc")]
    pub desc: RelationDesc,
}

impl TableSpec {
    pub fn new(name: impl Into<String>, desc: RelationDesc) -> TableSpec {
        TableSpec {
            name: name.into(),
            desc,
        }
    }

    pub fn builder(name: impl Into<String>) -> TableBuilder {
        TableBuilder {
            name: name.into(),
            ..TableBuilder::default()
        }
    }
}

/// Builds a [`TableSpec`] from columns and key constraints; `PRIMARY KEY` makes its columns
/// `NOT NULL`, and both `PRIMARY KEY` and `UNIQUE` declare unique keys.
#[derive(Clone, Debug, Default)]
pub struct TableBuilder {
    name: String,
    columns: Vec<(String, ScalarType, bool)>,
    constraints: Vec<(bool, Vec<String>)>,
}

impl TableBuilder {
    pub fn column(
        mut self,
        name: impl Into<String>,
        scalar_type: ScalarType,
        nullable: bool,
    ) -> Self {
        self.columns.push((name.into(), scalar_type, nullable));
        self
    }

    pub fn primary_key<I: IntoIterator<Item = S>, S: Into<String>>(mut self, columns: I) -> Self {
        self.constraints
            .push((true, columns.into_iter().map(Into::into).collect()));
        self
    }

    pub fn unique<I: IntoIterator<Item = S>, S: Into<String>>(mut self, columns: I) -> Self {
        self.constraints
            .push((false, columns.into_iter().map(Into::into).collect()));
        self
    }

    pub fn build(mut self) -> Result<TableSpec, SpecError> {
        let mut seen = HashSet::new();
        for (i, (name, _, _)) in self.columns.iter().enumerate() {
            if !seen.insert(name.as_str()) {
                return Err(blame(
                    Site::Column(i),
                    format!("column \"{name}\" specified more than once"),
                ));
            }
        }
        let mut keys = Vec::new();
        let mut has_primary_key = false;
        // Primary keys first, so that a relation's first key is its primary key.
        let mut order: Vec<usize> = (0..self.constraints.len()).collect();
        order.sort_by_key(|&i| !self.constraints[i].0);
        for ci in order {
            let (primary, columns) = &self.constraints[ci];
            let kind = if *primary { "primary key" } else { "unique" };
            if *primary && has_primary_key {
                return Err(blame(
                    Site::Constraint(ci),
                    format!(
                        "multiple primary keys for table \"{}\" are not allowed",
                        self.name
                    ),
                ));
            }
            has_primary_key |= primary;
            let mut indices = Vec::new();
            for (j, column) in columns.iter().enumerate() {
                let Some(index) = self.columns.iter().position(|(name, _, _)| name == column)
                else {
                    return Err(blame(
                        Site::ConstraintColumn(ci, j),
                        format!("column \"{column}\" named in key does not exist"),
                    ));
                };
                if indices.contains(&index) {
                    return Err(blame(
                        Site::ConstraintColumn(ci, j),
                        format!("column \"{column}\" appears twice in {kind} constraint"),
                    ));
                }
                indices.push(index);
            }
            if *primary {
                for &index in &indices {
                    self.columns[index].2 = false;
                }
            }
            keys.push(indices);
        }
        let mut desc = RelationDesc::empty();
        for (name, scalar_type, nullable) in self.columns {
            desc = desc.with_column(name, scalar_type, nullable);
        }
        for key in keys {
            desc = desc.with_key(key);
        }
        Ok(TableSpec {
            name: self.name,
            desc,
        })
    }
}

/// `CREATE CLUSTER name SIZE = '…'`: how many timely workers run the sinks placed on it.
///
/// | size | workers |
/// |---|---|
/// | `25cc`, `50cc`, `xsmall` | 1 |
/// | `100cc`, `small` | 2 |
/// | `200cc`, `medium` | 4 |
/// | `400cc`, `large` | 8 |
/// | `800cc`, `xlarge` | 16 |
/// | `1600cc`, `2xlarge` | 32 |
///
/// Sizes are case-insensitive; the spec keeps the lowercase spelling.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterSpec {
    pub name: String,
    pub size: String,
    pub workers: usize,
}

impl ClusterSpec {
    /// The known sizes and their worker counts.
    pub const SIZES: &'static [(&'static str, usize)] = &[
        ("25cc", 1),
        ("50cc", 1),
        ("100cc", 2),
        ("200cc", 4),
        ("400cc", 8),
        ("800cc", 16),
        ("1600cc", 32),
        ("xsmall", 1),
        ("small", 2),
        ("medium", 4),
        ("large", 8),
        ("xlarge", 16),
        ("2xlarge", 32),
    ];

    pub fn new(name: impl Into<String>, size: &str) -> Result<ClusterSpec, SpecError> {
        let size = size.trim().to_ascii_lowercase();
        match Self::SIZES.iter().find(|(s, _)| *s == size) {
            Some(&(_, workers)) => Ok(ClusterSpec {
                name: name.into(),
                size,
                workers,
            }),
            None => {
                let known: Vec<&str> = Self::SIZES.iter().map(|(s, _)| *s).collect();
                Err(SpecError::new(format!("unknown cluster size '{size}'"))
                    .hint(format!("the sizes are {}", known.join(", "))))
            }
        }
    }
}

/// `COMPRESSION TYPE`, passed to the producer as `compression.type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    #[default]
    Lz4,
    Zstd,
}

impl Compression {
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// librdkafka's name for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Case-insensitive.
    pub fn parse(s: &str) -> Option<Compression> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
    }
}

/// `WITH (DELIVERY GUARANTEE = …)`: ours, not Materialize's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryGuarantee {
    /// Transactional producers and a progress topic: every update appears once to a
    /// `read_committed` reader, across restarts.
    #[default]
    ExactlyOnce,
    /// An idempotent producer without transactions, for brokers that have none: after a
    /// restart, updates since the last recorded progress may appear again.
    AtLeastOnce,
}

impl DeliveryGuarantee {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryGuarantee::ExactlyOnce => "exactly-once",
            DeliveryGuarantee::AtLeastOnce => "at-least-once",
        }
    }

    /// `exactly-once` or `at-least-once`, case-insensitive, `_` for `-` allowed.
    pub fn parse(s: &str) -> Option<DeliveryGuarantee> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "exactly-once" => Some(DeliveryGuarantee::ExactlyOnce),
            "at-least-once" => Some(DeliveryGuarantee::AtLeastOnce),
            _ => None,
        }
    }
}

/// `KEY (c, …) [NOT ENFORCED]`, resolved against the sink's relation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SinkKey {
    pub columns: Vec<String>,
    /// The columns' indices in the relation, in key order.
    #[serde(skip)]
    pub indices: Vec<usize>,
    pub not_enforced: bool,
}

/// A column of the sink's relation, by index and name; prints as its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnRef {
    pub index: usize,
    pub name: String,
}

impl Serialize for ColumnRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

/// The prefix of transactional ids when `TRANSACTIONAL ID PREFIX` is not given.
pub const DEFAULT_TRANSACTIONAL_ID_PREFIX: &str = "outflow-";
/// The prefix of progress consumer groups when `PROGRESS GROUP ID PREFIX` is not given.
pub const DEFAULT_PROGRESS_GROUP_ID_PREFIX: &str = "outflow-";
/// How often the partition count is re-read when `TOPIC METADATA REFRESH INTERVAL` is not
/// given (librdkafka's default; Materialize uses 30 seconds).
pub const DEFAULT_TOPIC_METADATA_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// librdkafka refuses longer metadata refresh intervals.
pub const MAX_TOPIC_METADATA_REFRESH_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// `CREATE SINK …`: what to write, where, and how.
///
/// Defaults: `compression` lz4; `transactional_id_prefix` [`DEFAULT_TRANSACTIONAL_ID_PREFIX`]
/// (worker `w` of sink `s` uses the transactional id `{prefix}{s}-{w}`);
/// `progress_group_id_prefix` [`DEFAULT_PROGRESS_GROUP_ID_PREFIX`] (group
/// `{prefix}{s}-{w}`); `topic_metadata_refresh_interval` 5 minutes; `snapshot` true;
/// `delivery` exactly-once; topic partition count and replication factor: the broker's
/// defaults; the progress topic is the connection's.
///
/// A `KEY FORMAT` given without a `KEY` is dropped, as Materialize does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SinkSpec {
    pub name: String,
    /// The table the sink reads, when it came from a statement or named one.
    pub from: Option<String>,
    #[serde(rename = "relation", serialize_with = "serialize_desc")]
    pub desc: RelationDesc,
    pub cluster: Option<String>,
    /// The name of the Kafka connection.
    pub connection: String,
    pub topic: String,
    pub topic_partition_count: Option<i32>,
    pub topic_replication_factor: Option<i32>,
    /// Applied only when the sink creates the topic.
    pub topic_config: BTreeMap<String, String>,
    pub partition_by: Option<PartitionExpr>,
    pub compression: Compression,
    pub transactional_id_prefix: String,
    pub progress_group_id_prefix: String,
    #[serde(
        rename = "topic_metadata_refresh_interval_ms",
        serialize_with = "serialize_millis"
    )]
    pub topic_metadata_refresh_interval: Duration,
    /// The message key, as `KEY (…)` named it.
    pub key: Option<SinkKey>,
    /// The key that pairs updates into before/after and places rows on workers, resolved once
    /// when the spec is built, envelope-aware: a declared `KEY` pairs, and is enforced as
    /// unique when it was validated as unique (always under UPSERT, unless `NOT ENFORCED`; under
    /// DEBEZIUM only when it is a known unique key, since DEBEZIUM does not require one). Without
    /// a `KEY`, the relation's first unique key pairs, else the whole row. The operators and the
    /// sink read it; nothing re-derives it.
    #[serde(skip)]
    pub pairing: PairingKey,
    /// The `HEADERS` column.
    pub headers: Option<ColumnRef>,
    pub key_format: Option<FormatSpec>,
    pub value_format: FormatSpec,
    pub envelope: Envelope,
    /// `ENVELOPE DEBEZIUM (FULL, TOMBSTONES ON DELETE)`; both off by default, and always
    /// off under UPSERT.
    #[serde(skip_serializing_if = "DebeziumOptions::is_default")]
    pub debezium: DebeziumOptions,
    pub snapshot: bool,
    pub delivery: DeliveryGuarantee,
}

impl SinkSpec {
    /// The envelope as a statement writes it, with its options: `DEBEZIUM`, `DEBEZIUM (FULL)`,
    /// `DEBEZIUM (FULL, TOMBSTONES ON DELETE)`, `UPSERT`.
    pub fn debezium_clause(&self) -> String {
        match self.envelope {
            Envelope::Upsert => "UPSERT".to_string(),
            Envelope::Debezium => {
                let options: Vec<&str> = [
                    (self.debezium.full, DebeziumEnvelopeOption::Full.name()),
                    (
                        self.debezium.tombstones_on_delete,
                        DebeziumEnvelopeOption::TombstonesOnDelete.name(),
                    ),
                ]
                .into_iter()
                .filter_map(|(on, name)| on.then_some(name))
                .collect();
                if options.is_empty() {
                    "DEBEZIUM".to_string()
                } else {
                    format!("DEBEZIUM ({})", options.join(", "))
                }
            }
        }
    }

    /// Starts a sink writing the rows of a relation described by `desc`.
    pub fn builder(name: impl Into<String>, desc: RelationDesc) -> SinkBuilder {
        SinkBuilder {
            name: name.into(),
            desc,
            from: None,
            cluster: None,
            connection: None,
            topic: None,
            topic_partition_count: None,
            topic_replication_factor: None,
            topic_config: BTreeMap::new(),
            partition_by: None,
            compression: Compression::default(),
            transactional_id_prefix: None,
            progress_group_id_prefix: None,
            topic_metadata_refresh_interval: None,
            key: None,
            headers: None,
            key_format: None,
            value_format: None,
            envelope: None,
            debezium: None,
            snapshot: true,
            delivery: DeliveryGuarantee::default(),
        }
    }

    /// What the sink's encoder is configured with.
    pub fn encoder_config(&self) -> EncoderConfig {
        EncoderConfig {
            desc: self.desc.clone(),
            relation: self.from.clone().unwrap_or_else(|| self.name.clone()),
            key_columns: self.key.as_ref().map(|k| k.indices.clone()),
            envelope: self.envelope,
            debezium: self.debezium,
            sink: self.name.clone(),
            key_format: self
                .key_format
                .clone()
                .unwrap_or_else(|| self.value_format.clone()),
            value_format: self.value_format.clone(),
            headers_column: self.headers.as_ref().map(|c| c.index),
            topic: self.topic.clone(),
        }
    }

    /// The schema registry subjects the sink registers its Avro schemas under, key first (by
    /// each part's `SUBJECT NAME STRATEGY`).
    pub fn registry_subjects(&self) -> Vec<(Part, String)> {
        self.encoder_config().subjects()
    }

    /// The transactional id of worker `worker`: `{prefix}{sink name}-{worker}`.
    pub fn transactional_id(&self, worker: usize) -> String {
        format!("{}{}-{worker}", self.transactional_id_prefix, self.name)
    }

    /// The consumer group through which worker `worker` commits progress offsets.
    pub fn progress_group_id(&self, worker: usize) -> String {
        format!("{}{}-{worker}", self.progress_group_id_prefix, self.name)
    }

    /// Whether the key is known to be unique in the relation (false without a key).
    pub fn key_is_unique(&self) -> bool {
        self.key
            .as_ref()
            .is_some_and(|k| self.desc.is_unique(&k.indices))
    }

    /// Whether several rows for one key at one time fail the sink (an enforced key) rather
    /// than being reported and written.
    pub fn key_is_enforced(&self) -> bool {
        self.pairing.uniqueness() == outflow_dataflow::operators::Uniqueness::Enforced
    }
}

/// How the builder was given its `PARTITION BY` expression.
#[derive(Clone, Debug)]
enum PartitionInput {
    Text(String),
    Parsed(ast::Expr),
}

/// Builds a [`SinkSpec`]; `build` runs the validation `CREATE SINK` runs.
#[derive(Clone, Debug)]
pub struct SinkBuilder {
    name: String,
    desc: RelationDesc,
    from: Option<String>,
    cluster: Option<String>,
    connection: Option<String>,
    topic: Option<String>,
    topic_partition_count: Option<i64>,
    topic_replication_factor: Option<i64>,
    topic_config: BTreeMap<String, String>,
    partition_by: Option<PartitionInput>,
    compression: Compression,
    transactional_id_prefix: Option<String>,
    progress_group_id_prefix: Option<String>,
    topic_metadata_refresh_interval: Option<Duration>,
    key: Option<(Vec<String>, bool)>,
    headers: Option<String>,
    key_format: Option<FormatSpec>,
    value_format: Option<FormatSpec>,
    envelope: Option<Envelope>,
    debezium: Option<DebeziumOptions>,
    snapshot: bool,
    delivery: DeliveryGuarantee,
}

impl SinkBuilder {
    /// Names the table the rows come from (used in messages and checked by a [`Catalog`]).
    ///
    /// [`Catalog`]: crate::statement::Catalog
    pub fn from_relation(mut self, table: impl Into<String>) -> Self {
        self.from = Some(table.into());
        self
    }

    pub fn in_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = Some(cluster.into());
        self
    }

    /// The Kafka connection, by name.
    pub fn connection(mut self, connection: impl Into<String>) -> Self {
        self.connection = Some(connection.into());
        self
    }

    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    pub fn topic_partition_count(mut self, count: i32) -> Self {
        self.topic_partition_count = Some(count.into());
        self
    }

    pub(crate) fn topic_partition_count_raw(mut self, count: i64) -> Self {
        self.topic_partition_count = Some(count);
        self
    }

    pub fn topic_replication_factor(mut self, factor: i32) -> Self {
        self.topic_replication_factor = Some(factor.into());
        self
    }

    pub(crate) fn topic_replication_factor_raw(mut self, factor: i64) -> Self {
        self.topic_replication_factor = Some(factor);
        self
    }

    /// Adds one topic config entry, used when the sink creates the topic.
    pub fn topic_config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.topic_config.insert(key.into(), value.into());
        self
    }

    /// A `PARTITION BY` expression in SQL, e.g. `kafka_murmur2(customer_id::text)`; parsed
    /// and typechecked by `build`.
    pub fn partition_by(mut self, expr: impl Into<String>) -> Self {
        self.partition_by = Some(PartitionInput::Text(expr.into()));
        self
    }

    pub(crate) fn partition_by_parsed(mut self, expr: ast::Expr) -> Self {
        self.partition_by = Some(PartitionInput::Parsed(expr));
        self
    }

    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    pub fn transactional_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.transactional_id_prefix = Some(prefix.into());
        self
    }

    pub fn progress_group_id_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.progress_group_id_prefix = Some(prefix.into());
        self
    }

    pub fn topic_metadata_refresh_interval(mut self, interval: Duration) -> Self {
        self.topic_metadata_refresh_interval = Some(interval);
        self
    }

    /// `KEY (…)`: must be a known unique key of the relation under `ENVELOPE UPSERT`.
    pub fn key<I: IntoIterator<Item = S>, S: Into<String>>(mut self, columns: I) -> Self {
        self.key = Some((columns.into_iter().map(Into::into).collect(), false));
        self
    }

    /// `KEY (…) NOT ENFORCED`: the caller vouches that the key is unique.
    pub fn key_not_enforced<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        columns: I,
    ) -> Self {
        self.key = Some((columns.into_iter().map(Into::into).collect(), true));
        self
    }

    /// `HEADERS column`: a `map[text => text]` or `map[text => bytea]` column whose entries
    /// become message headers.
    pub fn headers(mut self, column: impl Into<String>) -> Self {
        self.headers = Some(column.into());
        self
    }

    /// `FORMAT f`: the key (if any) and the value in the same format.
    pub fn format(mut self, format: FormatSpec) -> Self {
        self.key_format = Some(format.clone());
        self.value_format = Some(format);
        self
    }

    pub fn key_format(mut self, format: FormatSpec) -> Self {
        self.key_format = Some(format);
        self
    }

    pub fn value_format(mut self, format: FormatSpec) -> Self {
        self.value_format = Some(format);
        self
    }

    pub fn envelope(mut self, envelope: Envelope) -> Self {
        self.envelope = Some(envelope);
        self
    }

    /// `ENVELOPE DEBEZIUM (FULL, TOMBSTONES ON DELETE)`: `source`, `op` and `ts_ms` in each
    /// value, and a tombstone after each delete (which needs a KEY). Refused under UPSERT.
    pub fn debezium_options(mut self, options: DebeziumOptions) -> Self {
        self.debezium = Some(options);
        self
    }

    /// `WITH (SNAPSHOT = …)`: whether the relation's contents at start are written first.
    pub fn snapshot(mut self, snapshot: bool) -> Self {
        self.snapshot = snapshot;
        self
    }

    pub fn delivery(mut self, delivery: DeliveryGuarantee) -> Self {
        self.delivery = delivery;
        self
    }

    /// Validates the sink as `CREATE SINK` does, in Materialize's order: envelope, key,
    /// headers, topic options, formats, then the partition expression.
    pub fn build(self) -> Result<SinkSpec, SpecError> {
        let desc = &self.desc;
        let envelope = self.envelope.ok_or_else(|| {
            blame(Site::Statement, "ENVELOPE clause is required")
                .hint("add ENVELOPE UPSERT or ENVELOPE DEBEZIUM")
        })?;
        let debezium = self.debezium.unwrap_or_default();
        if envelope == Envelope::Upsert {
            let given = [
                (debezium.full, DebeziumEnvelopeOption::Full),
                (
                    debezium.tombstones_on_delete,
                    DebeziumEnvelopeOption::TombstonesOnDelete,
                ),
            ];
            if let Some((_, option)) = given.into_iter().find(|(on, _)| *on) {
                let hint = match option {
                    DebeziumEnvelopeOption::Full => {
                        "use ENVELOPE DEBEZIUM (FULL), or leave FULL out: an upsert value is the row itself"
                    }
                    DebeziumEnvelopeOption::TombstonesOnDelete => {
                        "leave it out: ENVELOPE UPSERT always writes a delete as a tombstone"
                    }
                };
                return Err(blame(
                    Site::EnvelopeOption(option),
                    format!("{option} is an option of ENVELOPE DEBEZIUM; ENVELOPE UPSERT takes no options"),
                )
                .hint(hint));
            }
        }
        if debezium.tombstones_on_delete && self.key.is_none() {
            return Err(blame(
                Site::EnvelopeOption(DebeziumEnvelopeOption::TombstonesOnDelete),
                "TOMBSTONES ON DELETE needs a KEY: a tombstone is a message with a key and a null value",
            )
            .hint("add KEY (…), or leave TOMBSTONES ON DELETE out"));
        }
        let relation = match &self.from {
            Some(from) => format!("the underlying relation \"{from}\""),
            None => "the underlying relation".to_string(),
        };

        let key = match &self.key {
            Some((columns, not_enforced)) => {
                Some(self.resolve_key(columns, *not_enforced, envelope, &relation)?)
            }
            None => None,
        };

        let pairing = match &key {
            Some(key) => PairingKey::Declared {
                columns: key.indices.clone(),
                enforced: !key.not_enforced && desc.is_unique(&key.indices),
            },
            None => PairingKey::natural(desc),
        };

        let headers = match &self.headers {
            Some(column) => Some(self.resolve_headers(column, envelope)?),
            None => None,
        };

        if key.is_none() && envelope == Envelope::Upsert {
            return Err(
                blame(Site::Envelope, "upsert sinks must specify a key").hint(
                    "add KEY (…) naming a unique key of the relation, or use ENVELOPE DEBEZIUM",
                ),
            );
        }

        let connection = self.connection.clone().ok_or_else(|| {
            blame(Site::Connection, "sink must name a KAFKA CONNECTION")
                .hint("call SinkBuilder::connection")
        })?;
        let topic = self.topic.clone().ok_or_else(|| {
            blame(Site::Connection, "KAFKA CONNECTION must specify TOPIC")
                .hint("e.g. (TOPIC 'orders')")
        })?;
        check_topic_name(SinkOption::Topic.name(), &topic)
            .map_err(|e| e.site(Site::SinkOption(SinkOption::Topic)))?;

        let interval_site = Site::SinkOption(SinkOption::TopicMetadataRefreshInterval);
        let topic_metadata_refresh_interval = self
            .topic_metadata_refresh_interval
            .unwrap_or(DEFAULT_TOPIC_METADATA_REFRESH_INTERVAL);
        if topic_metadata_refresh_interval > MAX_TOPIC_METADATA_REFRESH_INTERVAL {
            return Err(blame(
                interval_site,
                "TOPIC METADATA REFRESH INTERVAL cannot be greater than 1 hour",
            ));
        }
        if topic_metadata_refresh_interval.is_zero() {
            return Err(blame(
                interval_site,
                "TOPIC METADATA REFRESH INTERVAL must be greater than 0",
            ));
        }
        let positive = |value: Option<i64>, option: SinkOption| -> Result<Option<i32>, SpecError> {
            value
                .map(|n| {
                    i32::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
                        blame(
                            Site::SinkOption(option),
                            format!("{option} must be a positive integer"),
                        )
                    })
                })
                .transpose()
        };
        let topic_partition_count =
            positive(self.topic_partition_count, SinkOption::TopicPartitionCount)?;
        let topic_replication_factor = positive(
            self.topic_replication_factor,
            SinkOption::TopicReplicationFactor,
        )?;

        let value_format = self.value_format.clone().ok_or_else(|| {
            blame(Site::Statement, "sink without format not yet supported").hint(
                "add FORMAT JSON, TEXT, BYTES or AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION …",
            )
        })?;
        let key_format = match &key {
            Some(_) => Some(
                self.key_format
                    .clone()
                    .unwrap_or_else(|| value_format.clone()),
            ),
            None => None,
        };
        if let Some(format) = &key_format {
            self.check_avro_options(format, Part::Key, key.is_some())?;
        }
        self.check_avro_options(&value_format, Part::Value, key.is_some())?;
        // What the encoders can build, checked by the encoders themselves, so that a sink
        // accepted here never fails when its encoder is made.
        let encoder = EncoderConfig {
            desc: desc.clone(),
            relation: self.from.clone().unwrap_or_default(),
            key_columns: key.as_ref().map(|k| k.indices.clone()),
            envelope,
            debezium,
            sink: self.name.clone(),
            key_format: key_format.clone().unwrap_or_else(|| value_format.clone()),
            value_format: value_format.clone(),
            headers_column: headers.as_ref().map(|h| h.index),
            topic: topic.clone(),
        };
        encoder.validate().map_err(encoder_error)?;

        let partition_by = match &self.partition_by {
            Some(input) => {
                let expr = match input {
                    PartitionInput::Text(text) => syntax::parse_expr(text)?,
                    PartitionInput::Parsed(expr) => expr.clone(),
                };
                let allowed = match envelope {
                    Envelope::Debezium => {
                        Some(key.as_ref().map(|k| k.indices.clone()).unwrap_or_default())
                    }
                    Envelope::Upsert => None,
                };
                Some(PartitionExpr::plan(&expr, desc, allowed.as_deref())?)
            }
            None => None,
        };

        Ok(SinkSpec {
            name: self.name,
            from: self.from,
            desc: self.desc,
            cluster: self.cluster,
            connection,
            topic,
            topic_partition_count,
            topic_replication_factor,
            topic_config: self.topic_config,
            partition_by,
            compression: self.compression,
            transactional_id_prefix: self
                .transactional_id_prefix
                .unwrap_or_else(|| DEFAULT_TRANSACTIONAL_ID_PREFIX.to_string()),
            progress_group_id_prefix: self
                .progress_group_id_prefix
                .unwrap_or_else(|| DEFAULT_PROGRESS_GROUP_ID_PREFIX.to_string()),
            topic_metadata_refresh_interval,
            key,
            pairing,
            headers,
            key_format,
            value_format,
            envelope,
            debezium,
            snapshot: self.snapshot,
            delivery: self.delivery,
        })
    }

    fn resolve_key(
        &self,
        columns: &[String],
        not_enforced: bool,
        envelope: Envelope,
        relation: &str,
    ) -> Result<SinkKey, SpecError> {
        if columns.is_empty() {
            return Err(blame(Site::Key, "KEY must name at least one column"));
        }
        let mut seen = HashSet::new();
        for (i, column) in columns.iter().enumerate() {
            if !seen.insert(column) {
                return Err(blame(
                    Site::KeyColumn(i),
                    format!("duplicate column referenced in KEY: {column}"),
                ));
            }
        }
        let mut indices = Vec::new();
        for (i, column) in columns.iter().enumerate() {
            match self.desc.get_by_name(column) {
                Some((index, _)) => indices.push(index),
                None => {
                    return Err(blame(
                        Site::KeyColumn(i),
                        format!("column referenced in KEY does not exist: {column}"),
                    ))
                }
            }
        }
        if envelope == Envelope::Upsert && !not_enforced && !self.desc.is_unique(&indices) {
            let quoted = |cols: &mut dyn Iterator<Item = &str>| {
                cols.map(|c| format!("\"{c}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let known = if self.desc.keys().is_empty() {
                "There are no known valid unique keys for the underlying relation.".to_string()
            } else {
                let lines: Vec<String> = self
                    .desc
                    .keys()
                    .iter()
                    .map(|k| {
                        format!(
                            "  ({})",
                            quoted(&mut k.iter().map(|&c| self.desc.column(c).name.as_str()))
                        )
                    })
                    .collect();
                format!(
                    "The following keys are known to be unique for the underlying relation:\n{}",
                    lines.join("\n")
                )
            };
            return Err(blame(Site::Key, "upsert key could not be validated as unique")
                .detail(format!(
                    "Outflow could not prove that the specified upsert envelope key ({}) was a unique key of {relation}. {known}",
                    quoted(&mut columns.iter().map(String::as_str)),
                ))
                .hint("declare the key with PRIMARY KEY or UNIQUE on the table, or write KEY (…) NOT ENFORCED if you know it is unique"));
        }
        Ok(SinkKey {
            columns: columns.to_vec(),
            indices,
            not_enforced,
        })
    }

    fn resolve_headers(&self, column: &str, envelope: Envelope) -> Result<ColumnRef, SpecError> {
        if envelope == Envelope::Debezium {
            return Err(blame(
                Site::Headers,
                "HEADERS option is not supported with ENVELOPE DEBEZIUM",
            ));
        }
        let Some((index, _)) = self.desc.get_by_name(column) else {
            return Err(blame(
                Site::Headers,
                format!("HEADERS column ({column}) is unknown"),
            ));
        };
        validate_headers_column(&self.desc, envelope, index).map_err(encoder_error)?;
        Ok(ColumnRef {
            index,
            name: column.to_string(),
        })
    }

    fn check_avro_options(
        &self,
        format: &FormatSpec,
        part: Part,
        has_key: bool,
    ) -> Result<(), SpecError> {
        let FormatSpec::Avro(avro) = format else {
            return Ok(());
        };
        use AvroFormatOption::{AvroKeyFullname, AvroValueFullname};
        if !has_key && avro.key_fullname.is_some() {
            return Err(blame(
                Site::FormatOption(part, AvroKeyFullname),
                "Cannot specify AVRO KEY FULLNAME without a corresponding KEY field",
            ));
        }
        if has_key && avro.key_fullname.is_some() != avro.value_fullname.is_some() {
            let given = if avro.key_fullname.is_some() {
                AvroKeyFullname
            } else {
                AvroValueFullname
            };
            return Err(blame(
                Site::FormatOption(part, given),
                "Must specify both AVRO KEY FULLNAME and AVRO VALUE FULLNAME when specifying generated schema names",
            ));
        }
        for (option, name) in [
            (AvroKeyFullname, &avro.key_fullname),
            (AvroValueFullname, &avro.value_fullname),
        ] {
            if let Some(name) = name {
                if !is_avro_fullname(name) {
                    return Err(blame(Site::FormatOption(part, option), format!("invalid {option} '{name}'"))
                        .detail("An Avro full name is dot-separated names, each a letter or '_' followed by letters, digits and '_'."));
                }
            }
        }
        // The encoders document the sink's own relation and its columns only (our records
        // have no other named types); the same rule, blamed on the DOC ON that breaks it.
        for (i, doc) in avro.docs.iter().enumerate() {
            let marker = match doc.scope {
                DocScope::Key => "KEY ",
                DocScope::Value => "VALUE ",
                DocScope::Both => "",
            };
            let (doc_on, relation, column) = match &doc.target {
                DocTarget::Type(t) => (format!("{marker}DOC ON TYPE {t}"), t, None),
                DocTarget::Column { relation, column } => (
                    format!("{marker}DOC ON COLUMN {relation}.{column}"),
                    relation,
                    Some(column),
                ),
            };
            if doc.text.is_empty() {
                return Err(blame(
                    Site::Doc(part, i),
                    format!("{doc_on} cannot be empty"),
                ));
            }
            let from = self.from.as_deref().unwrap_or_default();
            if relation != from || column.is_some_and(|c| self.desc.get_by_name(c).is_none()) {
                let error = blame(
                    Site::Doc(part, i),
                    format!("{doc_on} does not name the sink's relation \"{from}\" or one of its columns"),
                );
                return Err(match self.from {
                    Some(_) => error,
                    None => error.hint("name the relation with SinkBuilder::from_relation"),
                });
            }
        }
        Ok(())
    }
}

/// Blames an encoder's validation error on the part of the sink it is about.
fn encoder_error(error: EncodeError) -> SpecError {
    use AvroFormatOption::{AvroKeyFullname, AvroValueFullname};
    let site = match &error {
        EncodeError::MultipleColumnsTextOrBytes { part, .. }
        | EncodeError::NoColumnsTextOrBytes { part, .. }
        | EncodeError::BytesType { part, .. } => Site::Format(*part),
        EncodeError::TextOrBytesWithDebezium { .. } => Site::Format(Part::Value),
        EncodeError::EmptyKey
        | EncodeError::KeyColumnOutOfRange { .. }
        | EncodeError::DuplicateKeyColumn { .. } => Site::Key,
        EncodeError::HeadersWithDebezium
        | EncodeError::HeadersColumnOutOfRange { .. }
        | EncodeError::HeadersType { .. } => Site::Headers,
        EncodeError::DebeziumOptionWithUpsert { option } => {
            Site::EnvelopeOption(if *option == DebeziumEnvelopeOption::Full.name() {
                DebeziumEnvelopeOption::Full
            } else {
                DebeziumEnvelopeOption::TombstonesOnDelete
            })
        }
        EncodeError::TombstonesWithoutKey => {
            Site::EnvelopeOption(DebeziumEnvelopeOption::TombstonesOnDelete)
        }
        EncodeError::KeyFullnameWithoutKey => Site::FormatOption(Part::Value, AvroKeyFullname),
        EncodeError::FullnamesNotPaired => Site::FormatOption(Part::Key, AvroKeyFullname),
        EncodeError::InvalidFullname {
            part: Part::Key, ..
        } => Site::FormatOption(Part::Key, AvroKeyFullname),
        EncodeError::InvalidFullname {
            part: Part::Value, ..
        } => Site::FormatOption(Part::Value, AvroValueFullname),
        _ => Site::Statement,
    };
    blame(site, error.to_string())
}

fn is_avro_fullname(name: &str) -> bool {
    name.split('.').all(|part| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// The registry connection an Avro format names, if the format is Avro.
pub(crate) fn avro_of(format: &FormatSpec) -> Option<&AvroFormatSpec> {
    match format {
        FormatSpec::Avro(avro) => Some(avro),
        _ => None,
    }
}

/// Parses durations as `TOPIC METADATA REFRESH INTERVAL` takes them: `'30s'`, `'5 minutes'`,
/// `'1h 30m'`, `'500ms'`, `'00:05:00'`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim().to_ascii_lowercase();
    if text.is_empty() {
        return None;
    }
    if text.contains(':') {
        let parts: Vec<&str> = text.split(':').collect();
        let (h, m, s) = match parts.as_slice() {
            [h, m] => (*h, *m, "0"),
            [h, m, s] => (*h, *m, *s),
            _ => return None,
        };
        let whole = |p: &str| p.parse::<u64>().ok();
        let seconds = s
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s < 60.0)?;
        let minutes = whole(m).filter(|m| *m < 60)?;
        let total = whole(h)?.checked_mul(3600)?.checked_add(minutes * 60)?;
        return Some(Duration::from_secs(total) + Duration::from_secs_f64(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text.as_str();
    let mut components = 0;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return (components > 0).then_some(total);
        }
        let number_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len]
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite())?;
        rest = rest[number_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let seconds_per_unit = match unit {
            "" if components == 0 && rest.trim().is_empty() => 1.0,
            "us" | "microsecond" | "microseconds" => 1e-6,
            "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => 1e-3,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            _ => return None,
        };
        total = total.checked_add(Duration::try_from_secs_f64(number * seconds_per_unit).ok()?)?;
        components += 1;
    }
}

fn serialize_millis<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u128(duration.as_millis())
}

/// A relation as `{"columns": [{"name", "type", "nullable"}], "keys": [["col", …]]}`.
fn serialize_desc<S: Serializer>(desc: &RelationDesc, serializer: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Column<'a> {
        name: &'a str,
        #[serde(rename = "type")]
        typ: String,
        nullable: bool,
    }
    #[derive(Serialize)]
    struct Desc<'a> {
        columns: Vec<Column<'a>>,
        keys: Vec<Vec<&'a str>>,
    }
    let columns = desc
        .columns()
        .iter()
        .map(|c| Column {
            name: &c.name,
            typ: c.typ.scalar_type.to_string(),
            nullable: c.typ.nullable,
        })
        .collect();
    let keys = desc
        .keys()
        .iter()
        .map(|k| k.iter().map(|&i| desc.column(i).name.as_str()).collect())
        .collect();
    Desc { columns, keys }.serialize(serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let secs = Duration::from_secs;
        for (text, expected) in [
            ("5 minutes", secs(300)),
            ("30s", secs(30)),
            ("1h 30m", secs(5400)),
            ("1 hour", secs(3600)),
            ("500ms", Duration::from_millis(500)),
            ("1.5 seconds", Duration::from_millis(1500)),
            ("00:05:00", secs(300)),
            ("45", secs(45)),
        ] {
            assert_eq!(parse_duration(text), Some(expected), "{text}");
        }
        for bad in ["", "five minutes", "5 fortnights", "1h 30", "-5s", "1:99"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn cluster_sizes() {
        assert_eq!(ClusterSpec::new("c", "Medium").unwrap().workers, 4);
        assert_eq!(ClusterSpec::new("c", "25cc").unwrap().workers, 1);
        let err = ClusterSpec::new("c", "huge").unwrap_err();
        assert_eq!(err.message, "unknown cluster size 'huge'");
        assert!(err
            .hint
            .unwrap()
            .contains("xsmall, small, medium, large, xlarge"));
    }

    #[test]
    fn broker_addresses() {
        for good in ["broker:9092", "b", "[::1]:9092", "10.0.0.1:29092"] {
            assert!(check_broker_address(good).is_ok(), "{good}");
        }
        for bad in ["", "a:9092,b:9092", "host:port", "host:0", ":9092", "a b:1"] {
            assert!(check_broker_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        for good in [
            "https://schema-registry.example.com",
            "http://localhost:8081/prefix",
            "https://u@h:1",
        ] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        for bad in ["schema-registry:8081", "ftp://x", "https://", "http://:80"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn avro_names() {
        assert!(is_avro_fullname("com.example.Row_1"));
        assert!(is_avro_fullname("_x"));
        for bad in ["", "1abc", "a..b", "a-b", "a."] {
            assert!(!is_avro_fullname(bad), "{bad}");
        }
    }

    #[test]
    fn secrets_stay_redacted_in_printed_specs() {
        let secret = SecretSpec::new("pw", Secret::new("hunter2"));
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert!(!serde_json::to_string(&secret).unwrap().contains("hunter2"));
    }
}
