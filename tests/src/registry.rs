//! A Confluent-API schema registry for tests: a real HTTP server on a free loopback port, with
//! Avro compatibility levels enforced by apache-avro's schema-resolution rules.
//!
//! It keeps everything in memory and knows Avro only (no schema references, no Protobuf or JSON
//! Schema, no deletes, no modes or contexts): what a sink touches, answered as Confluent does.

use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tiny_http::{Header, Method, Response, Server};

/// Confluent's compatibility levels, in the registry's spelling.
pub const LEVELS: [&str; 7] = [
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
];

/// A running registry. Dropping it stops the server and frees its port.
pub struct SchemaRegistry {
    url: String,
    server: Arc<Server>,
    state: Arc<Mutex<State>>,
    thread: Option<JoinHandle<()>>,
    tls_front: Option<TlsFront>,
}

/// What [`SchemaRegistry::start_tls`] serves with, all PEM.
#[derive(Clone)]
pub struct TlsSettings {
    pub certificate_chain_pem: String,
    pub private_key_pem: String,
    /// When set, a client must present a certificate signed by one of these.
    pub client_ca_pem: Option<String>,
}

/// One version of a subject, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredVersion {
    pub version: i32,
    pub id: i32,
    pub schema: String,
}

impl SchemaRegistry {
    /// Starts a registry that accepts every request.
    pub fn start() -> SchemaRegistry {
        SchemaRegistry::launch(None)
    }

    /// Starts a registry reachable only over TLS, at an `https://127.0.0.1:…` URL.
    pub fn start_tls(tls: TlsSettings) -> SchemaRegistry {
        let mut registry = SchemaRegistry::launch(None);
        let backend = registry
            .server
            .server_addr()
            .to_ip()
            .expect("the backend listens on 127.0.0.1");
        let front = TlsFront::start(&tls, backend);
        registry.url = format!("https://127.0.0.1:{}", front.port);
        registry.tls_front = Some(front);
        registry
    }

    /// Starts a registry that answers 401 to any request without these basic-auth credentials.
    pub fn start_with_auth(username: &str, password: &str) -> SchemaRegistry {
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        SchemaRegistry::launch(Some(format!("Basic {token}")))
    }

    fn launch(authorization: Option<String>) -> SchemaRegistry {
        let server = Server::http("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("test schema registry cannot bind a loopback port: {e}"));
        let port = server
            .server_addr()
            .to_ip()
            .expect("a server bound to 127.0.0.1 has an IP address")
            .port();
        let server = Arc::new(server);
        let state = Arc::new(Mutex::new(State::new(authorization)));
        let thread = {
            let server = Arc::clone(&server);
            let state = Arc::clone(&state);
            std::thread::Builder::new()
                .name(format!("schema-registry-{port}"))
                .spawn(move || serve(&server, &state))
                .expect("spawning the schema registry thread")
        };
        SchemaRegistry {
            url: format!("http://127.0.0.1:{port}"),
            server,
            state,
            thread: Some(thread),
            tls_front: None,
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Subjects with at least one version, sorted.
    pub fn subjects(&self) -> Vec<String> {
        self.lock()
            .subjects
            .iter()
            .filter(|(_, s)| !s.versions.is_empty())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// A subject's versions, oldest first; empty for an unknown subject.
    pub fn versions(&self, subject: &str) -> Vec<RegisteredVersion> {
        let state = self.lock();
        let Some(entry) = state.subjects.get(subject) else {
            return Vec::new();
        };
        entry
            .versions
            .iter()
            .map(|&(version, id)| RegisteredVersion {
                version,
                id,
                schema: state.schemas[index(id)].text.clone(),
            })
            .collect()
    }

    /// Every request served so far, as `"METHOD /path?query"`, in order; lets tests see
    /// which calls a client made and which it answered from its cache.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("test schema registry state poisoned by a panic in its handler")
    }
}

impl Drop for SchemaRegistry {
    fn drop(&mut self) {
        if let Some(front) = self.tls_front.take() {
            front.stop();
        }
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Terminates TLS in front of the plain registry: tiny_http's own TLS support would pull in an
/// older rustls. Each request is relayed on a fresh backend connection that the backend closes
/// after answering, so a response ends where the backend's stream does.
struct TlsFront {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl TlsFront {
    fn start(tls: &TlsSettings, backend: SocketAddr) -> TlsFront {
        let config = Arc::new(server_config(tls));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| {
            panic!("test schema registry cannot bind a loopback port for TLS: {e}")
        });
        let port = listener
            .local_addr()
            .expect("a bound listener has an address")
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(format!("schema-registry-tls-{port}"))
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let (config, stop) = (Arc::clone(&config), Arc::clone(&stop));
                        let _ = std::thread::Builder::new()
                            .name(format!("schema-registry-tls-{port}-connection"))
                            .spawn(move || relay(stream, config, backend, &stop));
                    }
                })
                .expect("spawning the schema registry TLS thread")
        };
        TlsFront { port, stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        let _ = self.thread.join();
    }
}

fn server_config(tls: &TlsSettings) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_slice_iter(tls.certificate_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("test schema registry certificate chain is not PEM: {e}"));
    let key = PrivateKeyDer::from_pem_slice(tls.private_key_pem.as_bytes())
        .unwrap_or_else(|e| panic!("test schema registry private key is not PEM: {e}"));
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let builder = match &tls.client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let certificate =
                    certificate.unwrap_or_else(|e| panic!("test client CA is not PEM: {e}"));
                roots
                    .add(certificate)
                    .unwrap_or_else(|e| panic!("test client CA is unusable: {e}"));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap_or_else(|e| panic!("test client CA is unusable: {e}"));
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(chain, key)
        .unwrap_or_else(|e| panic!("test schema registry certificate and key do not match: {e}"))
}

/// Serves one TLS connection until the client leaves, the handshake fails or the registry stops.
fn relay(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    backend: SocketAddr,
    stop: &AtomicBool,
) {
    // Bounded reads let an idle kept-alive connection notice the registry stopping.
    if stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .is_err()
    {
        return;
    }
    let Ok(connection) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let mut buffered = Vec::new();
    while let Some(request) = read_request(&mut tls, &mut buffered, stop) {
        let Some(response) = forward(&request, backend) else {
            return;
        };
        if tls.write_all(&response).and_then(|()| tls.flush()).is_err() {
            return;
        }
    }
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

/// Reads one HTTP request (head and `Content-Length` body); `None` at the end of the
/// connection. Bytes past the request stay in `buffered` for the next one.
fn read_request(tls: &mut impl Read, buffered: &mut Vec<u8>, stop: &AtomicBool) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(head_end) = buffered
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
        {
            let head = String::from_utf8_lossy(&buffered[..head_end]).to_ascii_lowercase();
            let body_length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buffered.len() >= head_end + body_length {
                let rest = buffered.split_off(head_end + body_length);
                return Some(std::mem::replace(buffered, rest));
            }
        }
        match tls.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buffered.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
}

/// Sends a request to the plain registry with `Connection: close` and returns all it answers.
fn forward(request: &[u8], backend: SocketAddr) -> Option<Vec<u8>> {
    let line_end = request.windows(2).position(|w| w == b"\r\n")? + 2;
    let mut upstream = TcpStream::connect(backend).ok()?;
    upstream.write_all(&request[..line_end]).ok()?;
    upstream.write_all(b"Connection: close\r\n").ok()?;
    upstream.write_all(&request[line_end..]).ok()?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response).ok()?;
    Some(response)
}

struct StoredSchema {
    text: String,
    parsed: Schema,
}

#[derive(Default)]
struct Subject {
    /// `(version, global id)`, oldest first.
    versions: Vec<(i32, i32)>,
    compatibility: Option<&'static str>,
}

struct State {
    authorization: Option<String>,
    global_compatibility: &'static str,
    /// Schema with id `n` is at index `n - 1`.
    schemas: Vec<StoredSchema>,
    ids_by_canonical_text: HashMap<String, i32>,
    subjects: BTreeMap<String, Subject>,
    requests: Vec<String>,
}

fn index(id: i32) -> usize {
    usize::try_from(id - 1).expect("schema ids start at 1")
}

impl State {
    fn new(authorization: Option<String>) -> State {
        State {
            authorization,
            global_compatibility: "BACKWARD",
            schemas: Vec::new(),
            ids_by_canonical_text: HashMap::new(),
            subjects: BTreeMap::new(),
            requests: Vec::new(),
        }
    }

    fn level_of(&self, subject: &str) -> &'static str {
        self.subjects
            .get(subject)
            .and_then(|s| s.compatibility)
            .unwrap_or(self.global_compatibility)
    }
}

/// A handler's answer: HTTP status and JSON body.
type Reply = (u16, Value);

fn error(status: u16, error_code: i64, message: impl Into<String>) -> Reply {
    (
        status,
        json!({ "error_code": error_code, "message": message.into() }),
    )
}

fn serve(server: &Server, state: &Mutex<State>) {
    for mut request in server.incoming_requests() {
        let mut body = String::new();
        let read = request.as_reader().read_to_string(&mut body);
        let method = request.method().clone();
        let url = request.url().to_string();
        let authorization = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .map(|h| h.value.as_str().to_string());
        let (status, reply) = {
            let mut state = match state.lock() {
                Ok(state) => state,
                Err(poisoned) => poisoned.into_inner(),
            };
            state.requests.push(format!("{method} {url}"));
            if state.authorization.is_some() && state.authorization != authorization {
                error(401, 401, "Unauthorized")
            } else if read.is_err() {
                error(400, 400, "the request body is not UTF-8")
            } else {
                handle(&mut state, &method, &url, &body)
            }
        };
        let mut response = Response::from_string(reply.to_string())
            .with_status_code(status)
            .with_header(
                Header::from_bytes("Content-Type", "application/vnd.schemaregistry.v1+json")
                    .expect("a static header is valid"),
            );
        if status == 401 {
            response = response.with_header(
                Header::from_bytes("WWW-Authenticate", "Basic realm=\"SchemaRegistry\"")
                    .expect("a static header is valid"),
            );
        }
        // A client that hung up has nobody left to tell.
        let _ = request.respond(response);
    }
}

fn handle(state: &mut State, method: &Method, url: &str, body: &str) -> Reply {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let verbose = query.split('&').any(|pair| pair == "verbose=true");
    let default_to_global = query.split('&').any(|pair| pair == "defaultToGlobal=true");
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method, segments.as_slice()) {
        (Method::Get, ["subjects"]) => {
            let names: Vec<&String> = state
                .subjects
                .iter()
                .filter(|(_, s)| !s.versions.is_empty())
                .map(|(n, _)| n)
                .collect();
            (200, json!(names))
        }
        (Method::Post, ["subjects", subject, "versions"]) => register(state, subject, body),
        (Method::Post, ["subjects", subject]) => lookup(state, subject, body),
        (Method::Get, ["subjects", subject, "versions"]) => {
            match existing_subject(state, subject) {
                Ok(entry) => (
                    200,
                    json!(entry.versions.iter().map(|&(v, _)| v).collect::<Vec<_>>()),
                ),
                Err(reply) => reply,
            }
        }
        (Method::Get, ["subjects", subject, "versions", version]) => {
            match find_version(state, subject, version) {
                Ok((version, id)) => (
                    200,
                    json!({
                        "subject": subject,
                        "version": version,
                        "id": id,
                        "schema": state.schemas[index(id)].text,
                    }),
                ),
                Err(reply) => reply,
            }
        }
        (Method::Get, ["schemas", "ids", id]) => {
            match id
                .parse::<i32>()
                .ok()
                .filter(|&id| id >= 1 && index(id) < state.schemas.len())
            {
                Some(id) => (200, json!({ "schema": state.schemas[index(id)].text })),
                None => error(404, 40403, format!("Schema {id} not found")),
            }
        }
        (Method::Get, ["config"]) => (
            200,
            json!({ "compatibilityLevel": state.global_compatibility }),
        ),
        (Method::Put, ["config"]) => match parse_level(body) {
            Ok(level) => {
                state.global_compatibility = level;
                (200, json!({ "compatibility": level }))
            }
            Err(reply) => reply,
        },
        (Method::Get, ["config", subject]) => {
            match state.subjects.get(*subject).and_then(|s| s.compatibility) {
                Some(level) => (200, json!({ "compatibilityLevel": level })),
                None if default_to_global => (
                    200,
                    json!({ "compatibilityLevel": state.global_compatibility }),
                ),
                None => error(
                    404,
                    40408,
                    format!(
                        "Subject '{subject}' does not have subject-level compatibility configured"
                    ),
                ),
            }
        }
        (Method::Put, ["config", subject]) => match parse_level(body) {
            Ok(level) => {
                state
                    .subjects
                    .entry(subject.to_string())
                    .or_default()
                    .compatibility = Some(level);
                (200, json!({ "compatibility": level }))
            }
            Err(reply) => reply,
        },
        (Method::Post, ["compatibility", "subjects", subject, "versions"]) => {
            test_compatibility(state, subject, None, body, verbose)
        }
        (Method::Post, ["compatibility", "subjects", subject, "versions", version]) => {
            test_compatibility(state, subject, Some(version), body, verbose)
        }
        (
            _,
            ["subjects"]
            | ["subjects", _]
            | ["subjects", _, "versions"]
            | ["subjects", _, "versions", _],
        )
        | (_, ["schemas", "ids", _] | ["config"] | ["config", _])
        | (
            _,
            ["compatibility", "subjects", _, "versions"]
            | ["compatibility", "subjects", _, "versions", _],
        ) => error(405, 405, "HTTP 405 Method Not Allowed"),
        _ => error(404, 404, "HTTP 404 Not Found"),
    }
}

fn existing_subject<'a>(state: &'a State, subject: &str) -> Result<&'a Subject, Reply> {
    state
        .subjects
        .get(subject)
        .filter(|s| !s.versions.is_empty())
        .ok_or_else(|| error(404, 40401, format!("Subject '{subject}' not found.")))
}

/// Resolves `latest`, `-1` or a version number to `(version, id)`.
fn find_version(state: &State, subject: &str, version: &str) -> Result<(i32, i32), Reply> {
    let number = match version {
        "latest" | "-1" => None,
        other => match other.parse::<i32>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                return Err(error(
                    422,
                    42202,
                    format!(
                        "The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
                    ),
                ))
            }
        },
    };
    let entry = existing_subject(state, subject)?;
    let found = match number {
        None => entry.versions.last().copied(),
        Some(n) => entry.versions.iter().copied().find(|&(v, _)| v == n),
    };
    found.ok_or_else(|| error(404, 40402, format!("Version {version} not found.")))
}

fn parse_level(body: &str) -> Result<&'static str, Reply> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| error(400, 400, format!("Unexpected body: {e}")))?;
    let requested = value
        .get("compatibility")
        .and_then(Value::as_str)
        .unwrap_or("");
    LEVELS.iter().copied().find(|level| level.eq_ignore_ascii_case(requested)).ok_or_else(|| {
        error(
            422,
            42203,
            "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive",
        )
    })
}

/// Reads `{"schema": "...", "schemaType": "AVRO"}` and parses the Avro schema in it.
fn parse_schema_request(body: &str) -> Result<(String, Schema), Reply> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| error(400, 400, format!("Unexpected body: {e}")))?;
    match value.get("schemaType").and_then(Value::as_str) {
        None | Some("AVRO") => {}
        Some(other) => {
            return Err(error(
                422,
                42201,
                format!("Invalid schema type {other}: this registry stores AVRO only"),
            ))
        }
    }
    let Some(text) = value.get("schema").and_then(Value::as_str) else {
        return Err(error(422, 42201, "Empty schema"));
    };
    let parsed = Schema::parse_str(text).map_err(|e| {
        error(
            422,
            42201,
            format!("Invalid schema {text} with refs [] of type AVRO, details: {e}"),
        )
    })?;
    Ok((text.to_string(), parsed))
}

/// Confluent treats schemas that differ only in layout as the same schema: compare their JSON
/// with objects' keys sorted and no whitespace.
fn canonical_text(text: &str) -> String {
    fn sorted(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let entries: BTreeMap<String, Value> =
                    map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(entries.into_iter().collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
            other => other,
        }
    }
    match serde_json::from_str::<Value>(text) {
        Ok(value) => sorted(value).to_string(),
        Err(_) => text.to_string(),
    }
}

fn register(state: &mut State, subject: &str, body: &str) -> Reply {
    let (text, parsed) = match parse_schema_request(body) {
        Ok(schema) => schema,
        Err(reply) => return reply,
    };
    let canonical = canonical_text(&text);
    let known_id = state.ids_by_canonical_text.get(&canonical).copied();
    // Re-registering a schema a subject already holds is a no-op, compatibility unchecked.
    if let (Some(id), Some(entry)) = (known_id, state.subjects.get(subject)) {
        if entry.versions.iter().any(|&(_, v_id)| v_id == id) {
            return (200, json!({ "id": id }));
        }
    }
    let level = state.level_of(subject);
    let previous: Vec<(i32, &Schema)> = state
        .subjects
        .get(subject)
        .map(|s| {
            s.versions
                .iter()
                .map(|&(v, id)| (v, &state.schemas[index(id)].parsed))
                .collect()
        })
        .unwrap_or_default();
    let problems = check_against_level(level, &parsed, &previous);
    if !problems.is_empty() {
        return error(
            409,
            409,
            format!(
                "Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]",
                problems.join(", ")
            ),
        );
    }
    let id = match known_id {
        Some(id) => id,
        None => {
            state.schemas.push(StoredSchema { text, parsed });
            let id = i32::try_from(state.schemas.len()).expect("fewer than 2^31 schemas in a test");
            state.ids_by_canonical_text.insert(canonical, id);
            id
        }
    };
    let entry = state.subjects.entry(subject.to_string()).or_default();
    let version = entry.versions.last().map_or(1, |&(v, _)| v + 1);
    entry.versions.push((version, id));
    (200, json!({ "id": id }))
}

/// `POST /subjects/{subject}`: is this schema registered under the subject, and as what?
fn lookup(state: &State, subject: &str, body: &str) -> Reply {
    let (text, _) = match parse_schema_request(body) {
        Ok(schema) => schema,
        Err(reply) => return reply,
    };
    let entry = match existing_subject(state, subject) {
        Ok(entry) => entry,
        Err(reply) => return reply,
    };
    let id = state
        .ids_by_canonical_text
        .get(&canonical_text(&text))
        .copied();
    match entry.versions.iter().find(|&&(_, v_id)| Some(v_id) == id) {
        Some(&(version, id)) => (
            200,
            json!({ "subject": subject, "version": version, "id": id, "schema": state.schemas[index(id)].text }),
        ),
        None => error(404, 40403, "Schema not found"),
    }
}

fn test_compatibility(
    state: &State,
    subject: &str,
    version: Option<&str>,
    body: &str,
    verbose: bool,
) -> Reply {
    let (_, parsed) = match parse_schema_request(body) {
        Ok(schema) => schema,
        Err(reply) => return reply,
    };
    let level = state.level_of(subject);
    let problems = match version {
        // Without a version the level decides which versions count, as on registration; a
        // subject without versions accepts anything.
        None => {
            let previous: Vec<(i32, &Schema)> = state
                .subjects
                .get(subject)
                .map(|s| {
                    s.versions
                        .iter()
                        .map(|&(v, id)| (v, &state.schemas[index(id)].parsed))
                        .collect()
                })
                .unwrap_or_default();
            check_against_level(level, &parsed, &previous)
        }
        Some(version) => match find_version(state, subject, version) {
            Ok((version, id)) => check_against_level(
                non_transitive(level),
                &parsed,
                &[(version, &state.schemas[index(id)].parsed)],
            ),
            Err(reply) => return reply,
        },
    };
    let mut answer = json!({ "is_compatible": problems.is_empty() });
    if verbose {
        answer["messages"] = json!(problems);
    }
    (200, answer)
}

/// Against one chosen version, a transitive level means the same as its plain form.
fn non_transitive(level: &'static str) -> &'static str {
    level.strip_suffix("_TRANSITIVE").unwrap_or(level)
}

/// Which directions a level checks, and against which of the previous versions (oldest first).
/// Returns one message per failed check; empty means compatible. An unknown level is a bug in
/// this server, since levels are validated when set.
pub fn check_against_level(level: &str, new: &Schema, previous: &[(i32, &Schema)]) -> Vec<String> {
    let (backward, forward, transitive) = match level {
        "NONE" => return Vec::new(),
        "BACKWARD" => (true, false, false),
        "BACKWARD_TRANSITIVE" => (true, false, true),
        "FORWARD" => (false, true, false),
        "FORWARD_TRANSITIVE" => (false, true, true),
        "FULL" => (true, true, false),
        "FULL_TRANSITIVE" => (true, true, true),
        other => panic!("test schema registry holds an unknown compatibility level {other:?}"),
    };
    let compared: &[(i32, &Schema)] = if transitive {
        previous
    } else {
        &previous[previous.len().saturating_sub(1)..]
    };
    let mut problems = Vec::new();
    for &(version, old) in compared {
        if backward {
            if let Err(reason) = can_read(old, new) {
                problems.push(format!(
                    "{{compatibility: '{level}', oldSchemaVersion: {version}}}: the new schema cannot read data written with version {version}: {reason}"
                ));
            }
        }
        if forward {
            if let Err(reason) = can_read(new, old) {
                problems.push(format!(
                    "{{compatibility: '{level}', oldSchemaVersion: {version}}}: version {version} cannot read data written with the new schema: {reason}"
                ));
            }
        }
    }
    problems
}

/// Avro schema resolution, strictly: apache-avro answers `Partial` when only some of the
/// writer's values resolve (a union branch or enum symbol the reader lacks, or a changed
/// field type inside a union), and a registry must refuse that.
pub fn can_read(writer: &Schema, reader: &Schema) -> Result<(), String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => Ok(()),
        Ok(Compatibility::Partial) => Err(
            "only part of the writer's data can be read: a union branch or enum symbol of the writer has no matching reader type"
                .to_string(),
        ),
        Err(e) => {
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                reason.push_str(": ");
                reason.push_str(&cause.to_string());
                source = cause.source();
            }
            Err(reason)
        }
    }
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                decoded.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(text: &str) -> Schema {
        Schema::parse_str(text).unwrap()
    }

    fn record(fields: &str) -> Schema {
        schema(&format!(
            r#"{{"type":"record","name":"row","fields":[{fields}]}}"#
        ))
    }

    #[test]
    fn a_type_change_inside_a_nullable_union_is_refused() {
        let envelope = |id_type: &str| {
            schema(&format!(
                r#"{{"type":"record","name":"envelope","fields":[
                    {{"name":"before","type":["null",{{"type":"record","name":"row","fields":[{{"name":"id","type":"{id_type}"}}]}}]}},
                    {{"name":"after","type":["null","row"]}}]}}"#
            ))
        };
        let (old, new) = (envelope("long"), envelope("string"));
        // The library's own verdict is the lenient one this server must not pass through.
        assert_eq!(
            SchemaCompatibility::can_read(&old, &new),
            Ok(Compatibility::Partial)
        );
        assert!(can_read(&old, &new)
            .unwrap_err()
            .contains("only part of the writer's data"));
        let problems = check_against_level("BACKWARD", &new, &[(1, &old)]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("{compatibility: 'BACKWARD', oldSchemaVersion: 1}"),
            "{problems:?}"
        );
    }

    #[test]
    fn levels_check_the_directions_they_name() {
        let v1 = record(r#"{"name":"a","type":"long"}"#);
        let with_required = record(r#"{"name":"a","type":"long"},{"name":"b","type":"string"}"#);
        // Readers of the new schema need a default for `b`; readers of the old one ignore it.
        assert_eq!(
            check_against_level("BACKWARD", &with_required, &[(1, &v1)]).len(),
            1
        );
        assert!(check_against_level("FORWARD", &with_required, &[(1, &v1)]).is_empty());
        assert_eq!(
            check_against_level("FULL", &with_required, &[(1, &v1)]).len(),
            1
        );
        assert!(check_against_level("NONE", &with_required, &[(1, &v1)]).is_empty());
        let message = &check_against_level("BACKWARD", &with_required, &[(1, &v1)])[0];
        assert!(
            message.contains("Field 'b' in reader schema must have a default value"),
            "{message}"
        );
    }

    #[test]
    fn transitive_levels_compare_with_every_version() {
        let v1 = record(r#"{"name":"a","type":"long"}"#);
        let v2 = record(r#"{"name":"a","type":"long"},{"name":"b","type":"string","default":"x"}"#);
        let v3 = record(r#"{"name":"a","type":"long"},{"name":"b","type":"string"}"#);
        let previous = [(1, &v1), (2, &v2)];
        assert!(check_against_level("BACKWARD", &v3, &previous).is_empty());
        let problems = check_against_level("BACKWARD_TRANSITIVE", &v3, &previous);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("version 1"), "{problems:?}");
    }

    #[test]
    fn layout_does_not_change_a_schema_identity() {
        assert_eq!(
            canonical_text(r#"{"type": "record", "name": "r", "fields": []}"#),
            canonical_text(r#"{"fields":[],"name":"r","type":"record"}"#)
        );
        assert_ne!(
            canonical_text(
                r#"{"type":"record","name":"r","fields":[{"name":"a","type":"long"},{"name":"b","type":"long"}]}"#
            ),
            canonical_text(
                r#"{"type":"record","name":"r","fields":[{"name":"b","type":"long"},{"name":"a","type":"long"}]}"#
            )
        );
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
