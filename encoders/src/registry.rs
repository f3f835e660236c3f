//! A blocking client for the Confluent Schema Registry REST API: registering Avro schemas,
//! reading them back by id, and managing subject compatibility levels.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use ureq::rustls;
use ureq::rustls::pki_types::pem::PemObject;
use ureq::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::spec::{CompatibilityLevel, Secret};

/// The media type Confluent's registry speaks; plain JSON is accepted as a fallback by every
/// registry we know of, so it is listed too.
const ACCEPT: &str = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; qs=0.9, application/json; qs=0.5";
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Confluent error codes this client reacts to.
const SUBJECT_NOT_FOUND: i64 = 40401;
const VERSION_NOT_FOUND: i64 = 40402;
const SCHEMA_NOT_FOUND: i64 = 40403;
const SUBJECT_LEVEL_COMPATIBILITY_NOT_CONFIGURED: i64 = 40408;
const INVALID_SCHEMA: i64 = 42201;

/// How to reach a schema registry: `CREATE CONNECTION … TO CONFLUENT SCHEMA REGISTRY`.
#[derive(Clone)]
pub struct RegistryConfig {
    /// Base URL, e.g. `https://registry.example.com:8081`; may carry a path prefix.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `SSL CERTIFICATE AUTHORITY`: PEM certificates trusted instead of the built-in web roots.
    pub ssl_certificate_authority: Option<String>,
    /// `SSL CERTIFICATE`: the client's PEM certificate chain, for mutual TLS.
    pub ssl_certificate: Option<String>,
    /// `SSL KEY`: the client certificate's PEM private key.
    pub ssl_key: Option<Secret>,
    /// Limit on a whole request, connection included.
    pub timeout: Duration,
}

impl RegistryConfig {
    pub fn new(url: impl Into<String>) -> RegistryConfig {
        RegistryConfig {
            url: url.into(),
            username: None,
            password: None,
            ssl_certificate_authority: None,
            ssl_certificate: None,
            ssl_key: None,
            timeout: Duration::from_secs(30),
        }
    }

    pub fn with_basic_auth(
        mut self,
        username: impl Into<String>,
        password: Option<Secret>,
    ) -> Self {
        self.username = Some(username.into());
        self.password = password;
        self
    }
}

impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Certificates are public, but their PEM text drowns the rest of the output.
        let pem = |p: &Option<String>| p.as_ref().map(|p| format!("<{} bytes of PEM>", p.len()));
        f.debug_struct("RegistryConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field(
                "ssl_certificate_authority",
                &pem(&self.ssl_certificate_authority),
            )
            .field("ssl_certificate", &pem(&self.ssl_certificate))
            .field("ssl_key", &self.ssl_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What went wrong talking to a schema registry. No variant ever carries a password or key.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid schema registry connection {url:?}: {reason}")]
    InvalidConfig { url: String, reason: String },
    #[error("invalid schema registry {setting}: {reason}")]
    InvalidTls {
        setting: &'static str,
        reason: String,
    },
    #[error("schema registry at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{}", authentication_message(url, username.as_deref()))]
    AuthenticationFailed {
        url: String,
        username: Option<String>,
    },
    #[error("schema registry at {url} refused access to {} (HTTP 403): {message}", user_label(username.as_deref()))]
    Forbidden {
        url: String,
        username: Option<String>,
        message: String,
    },
    #[error("schema registry request {method} {url} failed with HTTP {status}{}: {message}", error_code.map(|c| format!(" (error code {c})")).unwrap_or_default())]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        error_code: Option<i64>,
        message: String,
    },
    #[error("schema registry at {url} has no schema with id {id}")]
    SchemaNotFound { url: String, id: i32 },
    #[error("schema registry rejected the schema for subject {subject:?} as invalid: {message}")]
    InvalidSchema { subject: String, message: String },
    #[error("the schema for subject {subject:?} is incompatible with the versions registered there, so it was not registered: {}", reasons.join("; "))]
    Incompatible {
        subject: String,
        reasons: Vec<String>,
    },
    #[error("schema registry at {url} sent a response this client cannot read: {reason}")]
    InvalidResponse { url: String, reason: String },
}

fn user_label(username: Option<&str>) -> String {
    match username {
        Some(user) => format!("user {user:?}"),
        None => "anonymous requests".to_string(),
    }
}

fn authentication_message(url: &str, username: Option<&str>) -> String {
    match username {
        Some(user) => format!(
            "schema registry at {url} rejected the credentials of user {user:?} (HTTP 401); check the connection's USERNAME and PASSWORD"
        ),
        None => format!(
            "schema registry at {url} requires authentication (HTTP 401); give the connection a USERNAME and PASSWORD"
        ),
    }
}

/// A schema as the registry stores it under a subject.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: i32,
    pub id: i32,
    pub schema: String,
}

/// The registry's answer to "may this schema be written to this subject?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompatibilityCheck {
    pub is_compatible: bool,
    /// The registry's reasons, when it gives any (Confluent does with `verbose=true`).
    pub messages: Vec<String>,
}

/// Which registered version of a subject a compatibility check compares against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionSelector {
    Latest,
    Number(i32),
}

impl fmt::Display for VersionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionSelector::Latest => f.write_str("latest"),
            VersionSelector::Number(n) => write!(f, "{n}"),
        }
    }
}

/// A non-2xx answer other than an authentication failure, kept apart so that callers can turn
/// the "not found" codes into `None` before it becomes a [`RegistryError`].
#[derive(Debug)]
struct ApiError {
    method: &'static str,
    url: String,
    status: u16,
    error_code: Option<i64>,
    message: String,
}

impl ApiError {
    fn is_code(&self, code: i64) -> bool {
        self.error_code == Some(code)
    }

    fn into_error(self) -> RegistryError {
        RegistryError::Status {
            method: self.method,
            url: self.url,
            status: self.status,
            error_code: self.error_code,
            message: self.message,
        }
    }
}

/// A Confluent Schema Registry client. Cheap to share behind an `Arc`; every method takes
/// `&self` and the caches are internally locked.
pub struct SchemaRegistryClient {
    base_url: String,
    username: Option<String>,
    authorization: Option<String>,
    agent: ureq::Agent,
    /// Registering is idempotent but costs a round trip; a sink re-publishes the same two
    /// schemas on every render.
    ids: Mutex<HashMap<(String, String), i32>>,
    /// Ids are immutable in a registry, so a schema fetched once never needs fetching again.
    schemas: Mutex<HashMap<i32, String>>,
}

impl fmt::Debug for SchemaRegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistryClient")
            .field("url", &self.base_url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl SchemaRegistryClient {
    /// Validates the configuration and prepares the HTTP agent; sends nothing.
    pub fn new(config: RegistryConfig) -> Result<SchemaRegistryClient, RegistryError> {
        let base_url = normalize_base_url(&config.url)?;
        let mut builder = ureq::AgentBuilder::new()
            .timeout(config.timeout)
            .timeout_connect(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("outflow/", env!("CARGO_PKG_VERSION")));
        if let Some(tls) = tls_config(&config)? {
            builder = builder.tls_config(tls);
        }
        if config.password.is_some() && config.username.is_none() {
            return Err(RegistryError::InvalidConfig {
                url: base_url,
                reason: "a PASSWORD was given without a USERNAME".to_string(),
            });
        }
        let authorization = config.username.as_ref().map(|user| {
            let password = config.password.as_ref().map(Secret::expose).unwrap_or("");
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Basic {token}")
        });
        Ok(SchemaRegistryClient {
            base_url,
            username: config.username,
            authorization,
            agent: builder.build(),
            ids: Mutex::new(HashMap::new()),
            schemas: Mutex::new(HashMap::new()),
        })
    }

    /// The registry's base URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// Publishes a schema the way a sink does each time it starts: if `level` is given and the
    /// subject has no level of its own yet, sets it (an existing, different level is left
    /// alone, as Materialize does, so that an operator's choice in the registry wins); then
    /// asks the registry whether the schema is compatible, and only then registers it.
    /// An incompatible schema is refused with the registry's reasons and nothing is written.
    pub fn publish(
        &self,
        subject: &str,
        schema: &str,
        level: Option<CompatibilityLevel>,
    ) -> Result<i32, RegistryError> {
        if let Some(id) = self.cached_id(subject, schema) {
            return Ok(id);
        }
        if let Some(level) = level {
            if self.subject_compatibility_level(subject)?.is_none() {
                self.set_compatibility_level(subject, level)?;
            }
        }
        let check = self.check_compatibility(subject, schema)?;
        if !check.is_compatible {
            let reasons = if check.messages.is_empty() {
                vec!["the registry gave no reason".to_string()]
            } else {
                check.messages
            };
            return Err(RegistryError::Incompatible {
                subject: subject.to_string(),
                reasons,
            });
        }
        self.register(subject, schema)
    }

    /// The id this client already registered `schema` under `subject` with, if any.
    pub fn cached_id(&self, subject: &str, schema: &str) -> Option<i32> {
        let ids = self
            .ids
            .lock()
            .expect("schema registry id cache poisoned by a panic");
        ids.get(&(subject.to_string(), schema.to_string())).copied()
    }

    /// `POST /subjects/{subject}/versions`: registers an Avro schema (or finds it already
    /// registered) and returns its global id. The registry enforces the subject's
    /// compatibility level here too; its refusal becomes [`RegistryError::Incompatible`].
    pub fn register(&self, subject: &str, schema: &str) -> Result<i32, RegistryError> {
        if let Some(id) = self.cached_id(subject, schema) {
            return Ok(id);
        }
        let path = format!("/subjects/{}/versions", encode_path_segment(subject));
        let reply = self.call("POST", &path, Some(json!({ "schema": schema })))?;
        let body = match reply {
            Ok(body) => body,
            Err(e) if e.status == 409 => {
                return Err(RegistryError::Incompatible {
                    subject: subject.to_string(),
                    reasons: vec![e.message],
                })
            }
            Err(e) if e.is_code(INVALID_SCHEMA) || e.status == 422 => {
                return Err(RegistryError::InvalidSchema {
                    subject: subject.to_string(),
                    message: e.message,
                })
            }
            Err(e) => return Err(e.into_error()),
        };
        #[derive(Deserialize)]
        struct Registered {
            id: i32,
        }
        let Registered { id } = self.parse(&path, body)?;
        self.ids
            .lock()
            .expect("schema registry id cache poisoned by a panic")
            .insert((subject.to_string(), schema.to_string()), id);
        self.schemas
            .lock()
            .expect("schema registry schema cache poisoned by a panic")
            .entry(id)
            .or_insert_with(|| schema.to_string());
        Ok(id)
    }

    /// `GET /schemas/ids/{id}`: the schema text registered under a global id.
    pub fn schema_by_id(&self, id: i32) -> Result<String, RegistryError> {
        if let Some(schema) = self
            .schemas
            .lock()
            .expect("schema registry schema cache poisoned by a panic")
            .get(&id)
        {
            return Ok(schema.clone());
        }
        let path = format!("/schemas/ids/{id}");
        let body = match self.call("GET", &path, None)? {
            Ok(body) => body,
            Err(e) if e.is_code(SCHEMA_NOT_FOUND) || e.status == 404 => {
                return Err(RegistryError::SchemaNotFound {
                    url: self.base_url.clone(),
                    id,
                })
            }
            Err(e) => return Err(e.into_error()),
        };
        #[derive(Deserialize)]
        struct Stored {
            schema: String,
        }
        let Stored { schema } = self.parse(&path, body)?;
        self.schemas
            .lock()
            .expect("schema registry schema cache poisoned by a panic")
            .insert(id, schema.clone());
        Ok(schema)
    }

    /// `GET /subjects/{subject}/versions/latest`; `None` when the subject has no versions.
    pub fn latest_version(&self, subject: &str) -> Result<Option<SubjectVersion>, RegistryError> {
        let path = format!("/subjects/{}/versions/latest", encode_path_segment(subject));
        match self.call("GET", &path, None)? {
            Ok(body) => self.parse(&path, body).map(Some),
            Err(e) if e.is_code(SUBJECT_NOT_FOUND) || e.is_code(VERSION_NOT_FOUND) => Ok(None),
            Err(e) => Err(e.into_error()),
        }
    }

    /// `GET /config/{subject}`: the subject's own level; `None` when it only inherits the
    /// registry's global level.
    pub fn subject_compatibility_level(
        &self,
        subject: &str,
    ) -> Result<Option<CompatibilityLevel>, RegistryError> {
        let path = format!("/config/{}", encode_path_segment(subject));
        match self.call("GET", &path, None)? {
            Ok(body) => self.parse_level(&path, &body).map(Some),
            Err(e)
                if e.is_code(SUBJECT_LEVEL_COMPATIBILITY_NOT_CONFIGURED)
                    || e.is_code(SUBJECT_NOT_FOUND) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into_error()),
        }
    }

    /// `GET /config`: the level subjects without their own inherit.
    pub fn global_compatibility_level(&self) -> Result<CompatibilityLevel, RegistryError> {
        let body = self
            .call("GET", "/config", None)?
            .map_err(ApiError::into_error)?;
        self.parse_level("/config", &body)
    }

    /// `PUT /config/{subject}`.
    pub fn set_compatibility_level(
        &self,
        subject: &str,
        level: CompatibilityLevel,
    ) -> Result<(), RegistryError> {
        let path = format!("/config/{}", encode_path_segment(subject));
        let body = json!({ "compatibility": level.as_str() });
        self.call("PUT", &path, Some(body))?
            .map_err(ApiError::into_error)?;
        Ok(())
    }

    /// Asks whether `schema` may be registered under `subject`, against the versions the
    /// subject's level says to compare with (all of them for the transitive levels). A subject
    /// with no versions accepts anything.
    pub fn check_compatibility(
        &self,
        subject: &str,
        schema: &str,
    ) -> Result<CompatibilityCheck, RegistryError> {
        let path = format!(
            "/compatibility/subjects/{}/versions?verbose=true",
            encode_path_segment(subject)
        );
        match self.call("POST", &path, Some(json!({ "schema": schema })))? {
            Ok(body) => self.parse_check(&path, body),
            Err(e) if e.is_code(SUBJECT_NOT_FOUND) || e.is_code(VERSION_NOT_FOUND) => {
                Ok(CompatibilityCheck {
                    is_compatible: true,
                    messages: Vec::new(),
                })
            }
            // Registries older than Confluent 5.5 only know the per-version endpoint; the
            // registration itself still enforces the transitive levels there.
            Err(e) if e.status == 404 || e.status == 405 => {
                self.check_compatibility_with(subject, VersionSelector::Latest, schema)
            }
            Err(e) if e.is_code(INVALID_SCHEMA) || e.status == 422 => {
                Err(RegistryError::InvalidSchema {
                    subject: subject.to_string(),
                    message: e.message,
                })
            }
            Err(e) => Err(e.into_error()),
        }
    }

    /// `POST /compatibility/subjects/{subject}/versions/{version}?verbose=true`: compares
    /// with one registered version, in the direction the subject's level asks for.
    pub fn check_compatibility_with(
        &self,
        subject: &str,
        version: VersionSelector,
        schema: &str,
    ) -> Result<CompatibilityCheck, RegistryError> {
        let path = format!(
            "/compatibility/subjects/{}/versions/{version}?verbose=true",
            encode_path_segment(subject)
        );
        match self.call("POST", &path, Some(json!({ "schema": schema })))? {
            Ok(body) => self.parse_check(&path, body),
            Err(e)
                if e.is_code(SUBJECT_NOT_FOUND)
                    || (e.is_code(VERSION_NOT_FOUND) && version == VersionSelector::Latest) =>
            {
                Ok(CompatibilityCheck {
                    is_compatible: true,
                    messages: Vec::new(),
                })
            }
            Err(e) if e.is_code(INVALID_SCHEMA) => Err(RegistryError::InvalidSchema {
                subject: subject.to_string(),
                message: e.message,
            }),
            Err(e) => Err(e.into_error()),
        }
    }

    fn parse_check(&self, path: &str, body: Value) -> Result<CompatibilityCheck, RegistryError> {
        #[derive(Deserialize)]
        struct Answer {
            is_compatible: bool,
            #[serde(default)]
            messages: Vec<String>,
        }
        let Answer {
            is_compatible,
            messages,
        } = self.parse(path, body)?;
        Ok(CompatibilityCheck {
            is_compatible,
            messages,
        })
    }

    fn parse_level(&self, path: &str, body: &Value) -> Result<CompatibilityLevel, RegistryError> {
        // Confluent answers GET with `compatibilityLevel`, PUT with `compatibility`.
        let text = body
            .get("compatibilityLevel")
            .or_else(|| body.get("compatibility"))
            .and_then(Value::as_str)
            .ok_or_else(|| RegistryError::InvalidResponse {
                url: self.endpoint(path),
                reason: format!("expected a compatibility level, got {body}"),
            })?;
        CompatibilityLevel::parse(text).ok_or_else(|| RegistryError::InvalidResponse {
            url: self.endpoint(path),
            reason: format!("unknown compatibility level {text:?}"),
        })
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: Value,
    ) -> Result<T, RegistryError> {
        serde_json::from_value(body).map_err(|e| RegistryError::InvalidResponse {
            url: self.endpoint(path),
            reason: e.to_string(),
        })
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// Sends one request. Transport and authentication failures are errors outright; other
    /// non-2xx answers come back as the inner `Err` for the caller to interpret.
    fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Result<Value, ApiError>, RegistryError> {
        let url = self.endpoint(path);
        let mut request = self.agent.request(method, &url).set("Accept", ACCEPT);
        if let Some(authorization) = &self.authorization {
            request = request.set("Authorization", authorization);
        }
        let result = match body {
            Some(body) => request
                .set("Content-Type", CONTENT_TYPE)
                .send_string(&body.to_string()),
            None => request.call(),
        };
        let shown_url = url.split('?').next().unwrap_or(&url).to_string();
        match result {
            Ok(response) => {
                let text = response
                    .into_string()
                    .map_err(|e| RegistryError::Unreachable {
                        url: shown_url.clone(),
                        reason: format!("reading the response failed: {e}"),
                    })?;
                if text.trim().is_empty() {
                    return Ok(Ok(Value::Null));
                }
                serde_json::from_str(&text)
                    .map(Ok)
                    .map_err(|e| RegistryError::InvalidResponse {
                        url: shown_url,
                        reason: format!("the body is not JSON ({e}): {}", excerpt(&text)),
                    })
            }
            Err(ureq::Error::Transport(transport)) => Err(RegistryError::Unreachable {
                url: shown_url,
                reason: describe_transport(&transport),
            }),
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                let (error_code, message) = parse_error_body(status, &text);
                match status {
                    401 => Err(RegistryError::AuthenticationFailed {
                        url: shown_url,
                        username: self.username.clone(),
                    }),
                    403 => Err(RegistryError::Forbidden {
                        url: shown_url,
                        username: self.username.clone(),
                        message,
                    }),
                    _ => Ok(Err(ApiError {
                        method,
                        url: shown_url,
                        status,
                        error_code,
                        message,
                    })),
                }
            }
        }
    }
}

/// Reads Confluent's `{"error_code": N, "message": "..."}`; anything else (a proxy's HTML
/// page, say) is quoted, shortened.
fn parse_error_body(status: u16, text: &str) -> (Option<i64>, String) {
    #[derive(Deserialize)]
    struct ErrorBody {
        error_code: Option<i64>,
        message: Option<String>,
    }
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(ErrorBody {
            error_code,
            message,
        }) if error_code.is_some() || message.is_some() => (
            error_code,
            message.unwrap_or_else(|| format!("HTTP {status}")),
        ),
        _ if text.trim().is_empty() => (None, format!("HTTP {status} with an empty body")),
        _ => (None, excerpt(text)),
    }
}

fn excerpt(text: &str) -> String {
    const LIMIT: usize = 200;
    let text = text.trim();
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// ureq's own rendering repeats the URL, which the error already names, and its message
/// often repeats the kind and the underlying cause; each piece is kept once.
fn describe_transport(transport: &ureq::Transport) -> String {
    let mut pieces = vec![transport.kind().to_string()];
    pieces.extend(transport.message().map(str::to_string));
    let mut source = std::error::Error::source(transport);
    while let Some(cause) = source {
        pieces.push(cause.to_string());
        source = cause.source();
    }
    let mut reason = String::new();
    for piece in pieces {
        if reason.contains(&piece) {
            continue;
        }
        if piece.contains(&reason) {
            reason = piece;
        } else {
            reason.push_str(": ");
            reason.push_str(&piece);
        }
    }
    reason
}

/// Checks the base URL and drops trailing slashes, so paths can be appended. Credentials in
/// the URL are refused: they would end up in every error message.
fn normalize_base_url(url: &str) -> Result<String, RegistryError> {
    let invalid = |reason: &str| RegistryError::InvalidConfig {
        url: redact_userinfo(url),
        reason: reason.to_string(),
    };
    let trimmed = url.trim();
    let rest = if let Some(rest) = trimmed.strip_prefix("https://") {
        rest
    } else if let Some(rest) = trimmed.strip_prefix("http://") {
        rest
    } else {
        return Err(invalid("the URL must start with http:// or https://"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(invalid(
            "credentials in the URL are not accepted; use the connection's USERNAME and PASSWORD",
        ));
    }
    if authority.is_empty() {
        return Err(invalid("the URL has no host"));
    }
    if rest.contains(['?', '#']) {
        return Err(invalid("the URL may not carry a query or fragment"));
    }
    Ok(trimmed.trim_end_matches('/').to_string())
}

fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Percent-encodes a subject for use as one path segment: subjects are free text, and a `/`
/// or `?` in one must not change the route.
fn encode_path_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn tls_config(config: &RegistryConfig) -> Result<Option<Arc<rustls::ClientConfig>>, RegistryError> {
    if config.ssl_certificate_authority.is_none()
        && config.ssl_certificate.is_none()
        && config.ssl_key.is_none()
    {
        return Ok(None);
    }
    tls_client_config(
        config.ssl_certificate_authority.as_deref(),
        config.ssl_certificate.as_deref(),
        config.ssl_key.as_ref().map(|key| key.expose()),
    )
    .map(Some)
    .map_err(|(setting, reason)| RegistryError::InvalidTls { setting, reason })
}

/// A TLS client configuration from the PEM text of a connection's `SSL CERTIFICATE AUTHORITY`
/// (else the web's roots), `SSL CERTIFICATE` and `SSL KEY`; an error names the option at fault
/// and why. For the registry client, and for raw Kafka connections (`outflow::rawlog`).
pub fn tls_client_config(
    authority: Option<&str>,
    certificate: Option<&str>,
    key: Option<&str>,
) -> Result<Arc<rustls::ClientConfig>, (&'static str, String)> {
    // Named explicitly rather than taken from the process default, which is ambiguous (and
    // panics) when another crate in the build enables a second rustls provider.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ("TLS protocol versions", e.to_string()))?;

    let mut roots = rustls::RootCertStore::empty();
    match authority {
        Some(pem) => {
            for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let certificate = certificate
                    .map_err(|e| ("SSL CERTIFICATE AUTHORITY", format!("not valid PEM: {e}")))?;
                roots
                    .add(certificate)
                    .map_err(|e| ("SSL CERTIFICATE AUTHORITY", e.to_string()))?;
            }
            if roots.is_empty() {
                return Err((
                    "SSL CERTIFICATE AUTHORITY",
                    "contains no PEM CERTIFICATE block".to_string(),
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = builder.with_root_certificates(roots);

    let tls = match (certificate, key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(certificate_pem), Some(key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(certificate_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ("SSL CERTIFICATE", format!("not valid PEM: {e}")))?;
            if chain.is_empty() {
                return Err((
                    "SSL CERTIFICATE",
                    "contains no PEM CERTIFICATE block".to_string(),
                ));
            }
            // The PEM parser's messages can quote the offending line, so none of it is
            // passed on for the key.
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|_| {
                (
                    "SSL KEY",
                    "no PKCS#8, PKCS#1 or SEC1 PEM private key found".to_string(),
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ("SSL CERTIFICATE and SSL KEY", e.to_string()))?
        }
        (Some(_), None) => return Err(("SSL CERTIFICATE", "given without an SSL KEY".to_string())),
        (None, Some(_)) => return Err(("SSL KEY", "given without an SSL CERTIFICATE".to_string())),
    };
    Ok(Arc::new(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_lose_trailing_slashes_and_keep_path_prefixes() {
        assert_eq!(
            normalize_base_url("http://localhost:8081/").unwrap(),
            "http://localhost:8081"
        );
        assert_eq!(
            normalize_base_url(" https://sr.example.com/registry// ").unwrap(),
            "https://sr.example.com/registry"
        );
    }

    #[test]
    fn base_urls_with_credentials_are_refused_without_echoing_them() {
        let err = normalize_base_url("https://alice:hunter2@sr.example.com").unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("https://<redacted>@sr.example.com"), "{text}");
        assert!(text.contains("USERNAME and PASSWORD"), "{text}");
    }

    #[test]
    fn base_urls_need_a_scheme_and_host_and_no_query() {
        for url in ["localhost:8081", "ftp://x", "http://", "http://x/?a=b"] {
            assert!(
                matches!(
                    normalize_base_url(url),
                    Err(RegistryError::InvalidConfig { .. })
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn subjects_are_percent_encoded_as_one_segment() {
        assert_eq!(encode_path_segment("orders-value"), "orders-value");
        assert_eq!(encode_path_segment("a/b c?d"), "a%2Fb%20c%3Fd");
        assert_eq!(encode_path_segment("é"), "%C3%A9");
    }

    #[test]
    fn confluent_error_bodies_are_read() {
        let (code, message) = parse_error_body(
            409,
            r#"{"error_code":409,"message":"Schema being registered is incompatible"}"#,
        );
        assert_eq!(code, Some(409));
        assert_eq!(message, "Schema being registered is incompatible");
    }

    #[test]
    fn foreign_error_bodies_are_quoted_shortened() {
        let (code, message) = parse_error_body(502, &format!("<html>{}</html>", "x".repeat(500)));
        assert_eq!(code, None);
        assert!(message.starts_with("<html>xxx") && message.ends_with('…'));
        assert_eq!(message.chars().count(), 201);
        assert_eq!(parse_error_body(500, "  ").1, "HTTP 500 with an empty body");
    }

    #[test]
    fn status_errors_name_method_url_code_and_message() {
        let err = ApiError {
            method: "GET",
            url: "http://sr:8081/subjects/t-value/versions/latest".to_string(),
            status: 500,
            error_code: Some(50001),
            message: "Error in the backend data store".to_string(),
        }
        .into_error();
        assert_eq!(
            err.to_string(),
            "schema registry request GET http://sr:8081/subjects/t-value/versions/latest failed with HTTP 500 (error code 50001): Error in the backend data store"
        );
    }

    #[test]
    fn authentication_errors_name_the_user_not_the_password() {
        let err = RegistryError::AuthenticationFailed {
            url: "http://sr:8081/config".to_string(),
            username: Some("alice".to_string()),
        };
        assert_eq!(
            err.to_string(),
            "schema registry at http://sr:8081/config rejected the credentials of user \"alice\" (HTTP 401); check the connection's USERNAME and PASSWORD"
        );
        let anonymous = RegistryError::AuthenticationFailed {
            url: "http://sr:8081/config".to_string(),
            username: None,
        };
        assert!(anonymous
            .to_string()
            .contains("give the connection a USERNAME"));
    }

    #[test]
    fn incompatibility_names_the_subject_and_quotes_the_reasons() {
        let err = RegistryError::Incompatible {
            subject: "orders-value".to_string(),
            reasons: vec![
                "Field 'id' does not match".to_string(),
                "{compatibility: 'BACKWARD'}".to_string(),
            ],
        };
        let text = err.to_string();
        assert!(text.contains("\"orders-value\""), "{text}");
        assert!(
            text.contains("Field 'id' does not match; {compatibility: 'BACKWARD'}"),
            "{text}"
        );
    }

    #[test]
    fn debug_output_redacts_password_and_key() {
        let mut config = RegistryConfig::new("https://sr:8081")
            .with_basic_auth("alice", Some(Secret::new("hunter2")));
        config.ssl_key = Some(Secret::new(
            "-----BEGIN PRIVATE KEY-----\nsecretkeymaterial",
        ));
        let text = format!("{config:?}");
        assert!(text.contains("alice"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("secretkeymaterial"),
            "{text}"
        );
        let client = SchemaRegistryClient::new(
            RegistryConfig::new("http://sr:8081")
                .with_basic_auth("alice", Some(Secret::new("hunter2"))),
        )
        .unwrap();
        let text = format!("{client:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("aHVudGVy"),
            "{text}"
        );
    }

    #[test]
    fn the_client_can_be_shared_between_workers() {
        fn shareable<T: Send + Sync>() {}
        shareable::<SchemaRegistryClient>();
        shareable::<RegistryError>();
    }

    #[test]
    fn a_password_needs_a_username() {
        let mut config = RegistryConfig::new("http://sr:8081");
        config.password = Some(Secret::new("hunter2"));
        let err = SchemaRegistryClient::new(config).unwrap_err();
        assert!(err
            .to_string()
            .contains("PASSWORD was given without a USERNAME"));
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn tls_settings_are_validated_up_front() {
        let mut config = RegistryConfig::new("https://sr:8081");
        config.ssl_certificate_authority = Some("not a certificate".to_string());
        let err = SchemaRegistryClient::new(config).unwrap_err();
        assert!(
            err.to_string().contains("SSL CERTIFICATE AUTHORITY"),
            "{err}"
        );

        let mut config = RegistryConfig::new("https://sr:8081");
        config.ssl_key = Some(Secret::new(
            "-----BEGIN PRIVATE KEY-----\nhunter2\n-----END PRIVATE KEY-----\n",
        ));
        let err = SchemaRegistryClient::new(config).unwrap_err();
        assert!(
            err.to_string().contains("SSL KEY") && !err.to_string().contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn unreachable_registries_are_named() {
        // A port that was just free and is closed again: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = RegistryConfig::new(format!("http://127.0.0.1:{port}"));
        config.timeout = Duration::from_secs(5);
        let client = SchemaRegistryClient::new(config).unwrap();
        let err = client.schema_by_id(1).unwrap_err();
        assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
        let expected =
            format!("schema registry at http://127.0.0.1:{port}/schemas/ids/1 is unreachable");
        assert!(err.to_string().starts_with(&expected), "{err}");
    }
}
