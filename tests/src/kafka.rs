//! Apache Kafka for tests: a single-node KRaft cluster (broker and controller in one JVM) from
//! the project's pinned jars, run as a child process on free loopback ports.
//!
//! It is the reference broker (`DESIGN.md`, "Brokers and registries in tests"): what it does is
//! what Kafka does, `read_committed` and fencing included. The jars are those of
//! `tests/kafka/pom.xml`, found through `KAFKA_LIBS`, else in `<workspace>/.tools/kafka/libs`,
//! which `.ci/install-kafka` fills with Maven on first use; `java` is `$JAVA_HOME/bin/java`,
//! else the one on the `PATH`.
//!
//! Each broker has its own folder: `server.properties`, the formatted log directory `data/`, and
//! `kafka.log` (the broker's standard output and error, appended to across restarts). Its
//! listeners, all on 127.0.0.1:
//!
//! | listener | security | principal |
//! |---|---|---|
//! | `PLAINTEXT` | none | `User:ANONYMOUS`, a super user: the harness and most tests |
//! | `SASL_SSL` | TLS, then SCRAM-SHA-256 or SCRAM-SHA-512; or OAUTHBEARER with an unsigned token | `User:<name>` of a [`ScramUser`]; a token's `sub` |
//! | `SSL` | TLS with a client certificate required | the certificate's CN ([`SSL_CLIENT_PRINCIPAL`]) |
//! | `CONTROLLER` | none | KRaft's own; not advertised to clients |
//!
//! The broker presents `tests/fixtures/kafka-tls/server.pem` (SAN `IP:127.0.0.1`) and trusts
//! client certificates signed by `ca.pem` there (see [`crate::tls`]). OAUTHBEARER on `SASL_SSL`
//! takes unsigned JWS tokens (`{"alg":"none"}`, as [`crate::oauth::TokenEndpoint`] issues them)
//! through Kafka's unsecured validator, which checks their expiry and requires the scope
//! [`OAUTH_REQUIRED_SCOPE`]; the principal is the token's `sub`. The `StandardAuthorizer`
//! is on with `allow.everyone.if.no.acl.found=false`: a principal that is neither `ANONYMOUS`
//! nor `admin` may do only what ACLs ([`Kafka::add_acls`]) allow it.
//!
//! Topics are not created on first use (`auto.create.topics.enable=false`): a sink must create
//! its topics itself, and auto-creation would hide a sink that forgot to.

use std::env;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::broker::{read_log, spawn_from_lasting_thread, tail, workspace_root};
use crate::tls::fixtures_dir;

/// The Kafka release of `tests/kafka/pom.xml`; the harness refuses an installation of another.
pub const KAFKA_VERSION: &str = "4.3.2";

/// Logged by `kafka.server.KafkaRaftServer` once every listener accepts requests.
const READY_LINE: &str = "Kafka Server started";
/// A cold JVM on a busy 2-core machine takes several seconds; allow for a build beside it.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// A graceful shutdown of a single node takes a few seconds; past this it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const START_ATTEMPTS: usize = 3;

/// The broker's JVM: a heap for a shared 2-core, 24 GiB machine, the serial collector (no
/// concurrent GC threads competing for the cores) and only the C1 compiler, which brings a
/// cold start from 2.1 s to 1.6 s on an idle machine and from 5.7 s to 3.8 s beside a cargo
/// build; the broker's own CPU cost in tests is small.
/// `OUTFLOW_KAFKA_JVM_OPTS` (split on whitespace) replaces these.
const BROKER_JVM_OPTIONS: &[&str] = &[
    "-Xms256m",
    "-Xmx1g",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
];

/// Kafka's command-line tools and the Java programs of `tests/kafka/java`: short-lived.
const TOOL_JVM_OPTIONS: &[&str] = &[
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
];

/// A listener clients can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Listener {
    Plaintext,
    SaslSsl,
    Ssl,
}

impl Listener {
    /// The listener's name, which is also its `security.protocol`.
    pub fn name(self) -> &'static str {
        match self {
            Listener::Plaintext => "PLAINTEXT",
            Listener::SaslSsl => "SASL_SSL",
            Listener::Ssl => "SSL",
        }
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The SCRAM mechanisms the `SASL_SSL` listener offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The name in `sasl.mechanism(s)` and in `kafka-storage format --add-scram`.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A SCRAM user, with credentials for both mechanisms, created when the storage is formatted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ScramUser {
    pub name: &'static str,
    pub password: &'static str,
}

impl ScramUser {
    /// The principal ACLs name: `User:<name>`.
    pub fn principal(&self) -> String {
        format!("User:{}", self.name)
    }
}

impl fmt::Debug for ScramUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The scope the `SASL_SSL` listener requires of an OAUTHBEARER token.
pub const OAUTH_REQUIRED_SCOPE: &str = "outflow.sink";

/// A super user (`super.users`), like the `PLAINTEXT` listener's `ANONYMOUS`.
pub const ADMIN: ScramUser = ScramUser {
    name: "admin",
    password: "admin-secret",
};

/// An ordinary user: the authorizer lets it do only what ACLs allow.
pub const ALICE: ScramUser = ScramUser {
    name: "alice",
    password: "alice-secret",
};

/// Every SCRAM user of a broker.
pub const SCRAM_USERS: [ScramUser; 2] = [ADMIN, ALICE];

/// The principal of a client presenting `tests/fixtures/kafka-tls/client.pem` on the `SSL`
/// listener: its subject `CN=outflow-test-client`, shortened by `ssl.principal.mapping.rules`.
/// Not a super user.
pub const SSL_CLIENT_PRINCIPAL: &str = "User:outflow-test-client";

/// A client certificate and its key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl ClientCertificate {
    /// `client.pem`, signed by the authority the broker trusts.
    pub fn trusted() -> ClientCertificate {
        ClientCertificate {
            certificate: fixtures_dir().join("client.pem"),
            key: fixtures_dir().join("client.key"),
        }
    }

    /// `other-client.pem`, signed by an authority the broker does not know.
    pub fn untrusted() -> ClientCertificate {
        ClientCertificate {
            certificate: fixtures_dir().join("other-client.pem"),
            key: fixtures_dir().join("other-client.key"),
        }
    }
}

/// How a client connects, which also picks the listener.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `PLAINTEXT`, as the super user `ANONYMOUS`.
    Plaintext,
    /// `SASL_SSL` with a SCRAM mechanism.
    Scram {
        mechanism: ScramMechanism,
        username: String,
        password: String,
    },
    /// `SSL`, with or without a client certificate (the broker requires one).
    Tls {
        certificate: Option<ClientCertificate>,
    },
}

impl ClientAuth {
    /// SCRAM as one of the broker's users.
    pub fn scram(mechanism: ScramMechanism, user: &ScramUser) -> ClientAuth {
        ClientAuth::Scram {
            mechanism,
            username: user.name.to_owned(),
            password: user.password.to_owned(),
        }
    }

    /// TLS with the trusted client certificate.
    pub fn client_certificate() -> ClientAuth {
        ClientAuth::Tls {
            certificate: Some(ClientCertificate::trusted()),
        }
    }

    /// The listener this kind of client connects to.
    pub fn listener(&self) -> Listener {
        match self {
            ClientAuth::Plaintext => Listener::Plaintext,
            ClientAuth::Scram { .. } => Listener::SaslSsl,
            ClientAuth::Tls { .. } => Listener::Ssl,
        }
    }
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAuth::Plaintext => f.write_str("Plaintext"),
            ClientAuth::Scram {
                mechanism,
                username,
                ..
            } => f
                .debug_struct("Scram")
                .field("mechanism", mechanism)
                .field("username", username)
                .finish_non_exhaustive(),
            ClientAuth::Tls { certificate } => f
                .debug_struct("Tls")
                .field("certificate", certificate)
                .finish(),
        }
    }
}

/// What a test may change about a broker before it starts.
#[derive(Clone, Debug, Default)]
pub struct KafkaSettings {
    /// `auto.create.topics.enable`; off unless a test asks.
    pub auto_create_topics: bool,
    /// More `server.properties` lines, after (and so overriding) the harness's own.
    pub properties: Vec<(String, String)>,
}

impl KafkaSettings {
    /// Adds a `server.properties` entry, e.g. `transaction.max.timeout.ms`.
    pub fn property(mut self, key: &str, value: &str) -> KafkaSettings {
        self.properties.push((key.to_owned(), value.to_owned()));
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ports {
    plaintext: u16,
    sasl_ssl: u16,
    ssl: u16,
    controller: u16,
}

impl Ports {
    fn pick() -> io::Result<Ports> {
        // Held together so that the four differ; released just before the broker binds them.
        let listeners: Vec<std::net::TcpListener> = (0..4)
            .map(|_| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
            .collect::<io::Result<_>>()?;
        let port = |i: usize| listeners[i].local_addr().map(|a| a.port());
        Ok(Ports {
            plaintext: port(0)?,
            sasl_ssl: port(1)?,
            ssl: port(2)?,
            controller: port(3)?,
        })
    }

    fn of(&self, listener: Listener) -> u16 {
        match listener {
            Listener::Plaintext => self.plaintext,
            Listener::SaslSsl => self.sasl_ssl,
            Listener::Ssl => self.ssl,
        }
    }
}

/// A single-node Kafka cluster, owned by the test that started it and killed on drop.
pub struct Kafka {
    child: Option<Child>,
    ports: Ports,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    started_in: Duration,
    starts: u32,
    files: AtomicU64,
}

impl Kafka {
    /// Starts a fresh broker with the default settings and waits until it serves requests.
    ///
    /// # Panics
    ///
    /// When Java or the jars cannot be found, or the broker does not come up; the message
    /// carries the reason and the end of the broker's log.
    pub fn start() -> Kafka {
        Kafka::start_with(KafkaSettings::default())
    }

    /// Like [`Kafka::start`], with settings.
    pub fn start_with(settings: KafkaSettings) -> Kafka {
        match Kafka::try_start_with(settings) {
            Ok(kafka) => kafka,
            Err(error) => panic!("could not start Apache Kafka {KAFKA_VERSION}: {error}"),
        }
    }

    /// Like [`Kafka::start_with`], returning the failure instead of panicking.
    pub fn try_start_with(settings: KafkaSettings) -> io::Result<Kafka> {
        let install = Installation::get()?;
        let dir = tempfile::Builder::new()
            .prefix("outflow-kafka-")
            .tempdir()?;
        let path = dir.path().to_path_buf();
        write_server_keystore(&path)?;
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let ports = Ports::pick()?;
            fs::write(
                path.join("server.properties"),
                server_properties(&path, ports, &settings),
            )?;
            if attempt == 1 {
                format_storage(install, &path)?;
            }
            let mut kafka = Kafka {
                child: None,
                ports,
                dir: None,
                path: path.clone(),
                started_in: Duration::ZERO,
                starts: 0,
                files: AtomicU64::new(0),
            };
            match kafka.launch() {
                Ok(()) => {
                    kafka.dir = Some(dir);
                    return Ok(kafka);
                }
                Err(failure) => {
                    // Another process may take a port between our probe and the broker's bind;
                    // only that race is worth other ports.
                    let lost_port_race = failure.to_string().contains("Address already in use");
                    failures.push(format!("attempt {attempt}: {failure}"));
                    if !lost_port_race {
                        break;
                    }
                }
            }
        }
        let kept = dir.keep();
        Err(io::Error::other(format!(
            "the broker did not become ready (its folder is kept at {}):\n{}",
            kept.display(),
            failures.join("\n")
        )))
    }

    /// The `bootstrap.servers` of the `PLAINTEXT` listener.
    pub fn bootstrap(&self) -> String {
        self.bootstrap_for(Listener::Plaintext)
    }

    /// The `bootstrap.servers` of a listener.
    pub fn bootstrap_for(&self, listener: Listener) -> String {
        format!("127.0.0.1:{}", self.port(listener))
    }

    /// A listener's port; it stays the same across [`Kafka::restart`].
    pub fn port(&self, listener: Listener) -> u16 {
        self.ports.of(listener)
    }

    /// The authority that signed the broker's certificate and the trusted client certificate.
    pub fn ca_path(&self) -> PathBuf {
        fixtures_dir().join("ca.pem")
    }

    /// The trusted client certificate for the `SSL` listener.
    pub fn client_certificate_path(&self) -> PathBuf {
        ClientCertificate::trusted().certificate
    }

    /// The key of [`Kafka::client_certificate_path`].
    pub fn client_key_path(&self) -> PathBuf {
        ClientCertificate::trusted().key
    }

    /// The SCRAM users created when the storage was formatted.
    pub fn scram_users(&self) -> &'static [ScramUser] {
        &SCRAM_USERS
    }

    /// The broker's folder: `server.properties`, `data/`, `kafka.log`.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The KRaft log directory (`log.dirs`), which survives [`Kafka::kill`] and
    /// [`Kafka::restart`].
    pub fn log_dir(&self) -> PathBuf {
        self.path.join("data")
    }

    /// The file that receives the broker's standard output and error.
    pub fn log_path(&self) -> PathBuf {
        self.path.join("kafka.log")
    }

    /// What the broker has logged so far, every start included.
    pub fn log(&self) -> String {
        read_log(&self.log_path())
    }

    /// The broker's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the broker process is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// How long the last start took, from spawning the JVM to serving a metadata request.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Kills the broker with SIGKILL, as a crash would; the log directory stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the broker gracefully (SIGTERM, then a controlled shutdown), killing it if it
    /// takes longer than a minute; returns how long it took.
    pub fn stop(&mut self) -> Duration {
        let began = Instant::now();
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child, which has not been reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        began.elapsed()
    }

    /// Starts the broker again on the same log directory and ports: after [`Kafka::kill`] it
    /// recovers as from a crash; a running broker is stopped gracefully first.
    ///
    /// # Panics
    ///
    /// When it does not come up, with the end of its log.
    pub fn restart(&mut self) {
        if let Err(error) = self.try_restart() {
            panic!("could not restart Apache Kafka: {error}");
        }
    }

    /// Like [`Kafka::restart`], returning the failure instead of panicking.
    pub fn try_restart(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            self.stop();
        }
        self.launch()
    }

    /// Kills the broker and starts it again on the same ports with an empty, newly formatted
    /// log directory: a broker that lost its data (a new disk, a cluster rebuilt under the same
    /// address).
    pub fn restart_empty(&mut self) {
        self.kill();
        let install = Installation::get().expect("the jars were found at the first start");
        let data = self.log_dir();
        fs::remove_dir_all(&data).unwrap_or_else(|e| panic!("removing {}: {e}", data.display()));
        format_storage(install, &self.path).expect("formatting the broker's storage");
        if let Err(error) = self.launch() {
            panic!("could not restart Apache Kafka on empty storage: {error}");
        }
    }

    /// A librdkafka client configuration for this broker: `bootstrap.servers` of the
    /// listener `auth` picks, and its security settings.
    pub fn client_config(&self, auth: &ClientAuth) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap_for(auth.listener()));
        match auth {
            ClientAuth::Plaintext => {}
            ClientAuth::Scram {
                mechanism,
                username,
                password,
            } => {
                config
                    .set("security.protocol", "SASL_SSL")
                    .set("sasl.mechanism", mechanism.name())
                    .set("sasl.username", username)
                    .set("sasl.password", password)
                    .set("ssl.ca.location", path_str(&self.ca_path()));
            }
            ClientAuth::Tls { certificate } => {
                config
                    .set("security.protocol", "SSL")
                    .set("ssl.ca.location", path_str(&self.ca_path()));
                if let Some(certificate) = certificate {
                    config
                        .set(
                            "ssl.certificate.location",
                            path_str(&certificate.certificate),
                        )
                        .set("ssl.key.location", path_str(&certificate.key));
                }
            }
        }
        config
    }

    /// A Java client properties file (`--command-config` of Kafka's tools) for `auth`, written
    /// into the broker's folder. `bootstrap.servers` is in it too.
    pub fn java_client_properties(&self, auth: &ClientAuth) -> io::Result<PathBuf> {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        let mut text = format!(
            "bootstrap.servers={}\nsecurity.protocol={}\n",
            self.bootstrap_for(auth.listener()),
            auth.listener().name()
        );
        match auth {
            ClientAuth::Plaintext => {}
            ClientAuth::Scram {
                mechanism,
                username,
                password,
            } => {
                text.push_str(&format!(
                    "sasl.mechanism={}\n\
                     sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \
                     required username=\"{username}\" password=\"{password}\";\n",
                    mechanism.name()
                ));
            }
            ClientAuth::Tls { certificate } => {
                if let Some(certificate) = certificate {
                    let keystore = self.path.join(format!("client-{n}-keystore.pem"));
                    write_pem_keystore(&keystore, &certificate.key, &certificate.certificate)?;
                    text.push_str(&format!(
                        "ssl.keystore.type=PEM\nssl.keystore.location={}\n",
                        keystore.display()
                    ));
                }
            }
        }
        if auth.listener() != Listener::Plaintext {
            text.push_str(&format!(
                "ssl.truststore.type=PEM\nssl.truststore.location={}\n",
                self.ca_path().display()
            ));
        }
        let path = self.path.join(format!("client-{n}.properties"));
        fs::write(&path, text)?;
        Ok(path)
    }

    /// Reads `topic` from the beginning with Kafka's own console consumer
    /// (`org.apache.kafka.tools.consumer.ConsoleConsumer`) over `PLAINTEXT`, and returns its
    /// output lines, `key<TAB>value` (`null` for a missing key or value). It stops after
    /// `max_messages`, or once no record came for `idle`.
    pub fn console_consume(
        &self,
        topic: &str,
        max_messages: usize,
        isolation: Isolation,
        idle: Duration,
    ) -> io::Result<Vec<String>> {
        let mut command = java_tool("org.apache.kafka.tools.consumer.ConsoleConsumer")?;
        command
            .args(["--bootstrap-server", &self.bootstrap(), "--topic", topic])
            .args(["--from-beginning", "--isolation-level", isolation.name()])
            .args(["--max-messages", &max_messages.to_string()])
            .args(["--timeout-ms", &idle.as_millis().to_string()])
            .args(["--formatter-property", "print.key=true"])
            .args(["--formatter-property", "key.separator=\t"]);
        let output = run(&mut command)?;
        // On `idle` the consumer exits non-zero after printing what it read: that is an
        // answer, not a failure.
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() && !stderr.contains("TimeoutException") {
            return Err(tool_failure("the console consumer", &output));
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    }

    /// Where Kafka's Java producer, with its default partitioner, puts each of `keys` on
    /// `topic`: it sends one record per key (`tests/kafka/java/KeyPartitions.java`, over
    /// `PLAINTEXT`) and returns the partition the broker stored each in, in the order of `keys`.
    pub fn java_key_partitions(&self, topic: &str, keys: &[Vec<u8>]) -> io::Result<Vec<i32>> {
        let mut command = java_source_command("KeyPartitions.java")?;
        command
            .arg(self.bootstrap())
            .arg(topic)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("running KeyPartitions.java: {e}")))?;
        let input: String = keys
            .iter()
            .map(|key| {
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                hex + "\n"
            })
            .collect();
        let mut stdin = child.stdin.take().expect("piped stdin");
        // Written from a thread: the program prints as it goes, and a full pipe either way
        // would stall both.
        let writer = thread::spawn(move || stdin.write_all(input.as_bytes()));
        let output = child.wait_with_output()?;
        writer.join().expect("the writer thread")?;
        if !output.status.success() {
            return Err(tool_failure("KeyPartitions.java", &output));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let partitions: Vec<i32> = stdout
            .lines()
            .map(|line| {
                line.split(' ')
                    .nth(2)
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| io::Error::other(format!("KeyPartitions.java printed {line:?}")))
            })
            .collect::<io::Result<_>>()?;
        if partitions.len() != keys.len() {
            return Err(io::Error::other(format!(
                "KeyPartitions.java placed {} records for {} keys:\n{stdout}",
                partitions.len(),
                keys.len()
            )));
        }
        Ok(partitions)
    }

    /// Allows `principal` (`User:alice`) the `operations` on `resource`, with Kafka's
    /// `AclCommand` over `PLAINTEXT`, and waits until the broker's authorizer lists them.
    pub fn add_acls(
        &self,
        principal: &str,
        operations: &[AclOperation],
        resource: &AclResource,
    ) -> io::Result<()> {
        let added = self.acl_command("--add", principal, operations, resource)?;
        // AclCommand returns once the controller committed the ACLs and then lists what the
        // broker's authorizer holds, which applies them from the metadata log a moment later.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut listed = String::from_utf8_lossy(&added.stdout).into_owned();
        loop {
            let missing: Vec<_> = operations
                .iter()
                .filter(|operation| !lists_acl(&listed, principal, operation.name()))
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "ACLs {missing:?} for {principal} on {resource:?} not listed within 30 s:\n{listed}"
                )));
            }
            thread::sleep(Duration::from_millis(100));
            listed = self.list_acls(resource)?;
        }
    }

    /// Removes what [`Kafka::add_acls`] added.
    pub fn remove_acls(
        &self,
        principal: &str,
        operations: &[AclOperation],
        resource: &AclResource,
    ) -> io::Result<()> {
        self.acl_command("--remove", principal, operations, resource)
            .map(drop)
    }

    /// `AclCommand --list` for one resource pattern: its text, one `(principal=…,
    /// host=…, operation=…, permissionType=…)` line per ACL.
    pub fn list_acls(&self, resource: &AclResource) -> io::Result<String> {
        let mut command = java_tool("org.apache.kafka.tools.AclCommand")?;
        command
            .args(["--bootstrap-server", &self.bootstrap(), "--list"])
            .args(resource.arguments());
        let output = run(&mut command)?;
        if !output.status.success() {
            return Err(tool_failure("AclCommand --list", &output));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn acl_command(
        &self,
        action: &str,
        principal: &str,
        operations: &[AclOperation],
        resource: &AclResource,
    ) -> io::Result<Output> {
        let mut command = java_tool("org.apache.kafka.tools.AclCommand")?;
        command
            .args(["--bootstrap-server", &self.bootstrap(), action, "--force"])
            .args(["--allow-principal", principal])
            .args(resource.arguments());
        for operation in operations {
            command.args(["--operation", operation.name()]);
        }
        let output = run(&mut command)?;
        if !output.status.success() {
            return Err(tool_failure(&format!("AclCommand {action}"), &output));
        }
        Ok(output)
    }

    /// Spawns the JVM on the prepared folder and waits until it answers a metadata request.
    fn launch(&mut self) -> io::Result<()> {
        let install = Installation::get()?;
        let log_path = self.log_path();
        let mut log = File::options().create(true).append(true).open(&log_path)?;
        self.starts += 1;
        writeln!(log, "=== outflow test harness: start {} ===", self.starts)?;
        let log_start = fs::metadata(&log_path)?.len() as usize;

        let mut command = Command::new(&install.java);
        command
            .args(broker_jvm_options())
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                kafka_dir().join("log4j2-broker.properties").display()
            ))
            .arg("-cp")
            .arg(install.classpath())
            .arg("kafka.Kafka")
            .arg(self.path.join("server.properties"))
            .current_dir(&self.path)
            .env_remove("KAFKA_OPTS")
            .env_remove("JAVA_TOOL_OPTIONS")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        die_with_parent(&mut command);
        let began = Instant::now();
        let mut child = spawn_from_lasting_thread(command).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("spawning {}: {e}", install.java.display()),
            )
        })?;
        match self.wait_until_ready(&mut child, &log_path, log_start) {
            Ok(()) => {
                self.started_in = began.elapsed();
                self.child = Some(child);
                Ok(())
            }
            Err(reason) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = read_log(&log_path);
                Err(io::Error::other(format!(
                    "{reason}\n--- {} (last lines) ---\n{}",
                    log_path.display(),
                    tail(log.get(log_start..).unwrap_or(&log), 40)
                )))
            }
        }
    }

    fn wait_until_ready(
        &self,
        child: &mut Child,
        log_path: &Path,
        log_start: usize,
    ) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("exited before it was ready ({status})"));
            }
            let log = read_log(log_path);
            if log.get(log_start..).is_some_and(|l| l.contains(READY_LINE)) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!("no {READY_LINE:?} within {READY_TIMEOUT:?}"));
            }
            thread::sleep(Duration::from_millis(20));
        }
        // The log line says the sockets accept; a metadata answer naming this broker says it
        // serves requests (and that nothing else squats on the port).
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.plaintext));
        TcpStream::connect_timeout(&address, Duration::from_secs(5))
            .map_err(|e| format!("logged {READY_LINE:?} but {address} refuses: {e}"))?;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .map_err(|e| format!("metadata client: {e}"))?;
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(30))
            .map_err(|e| format!("metadata request to {}: {e}", self.bootstrap()))?;
        let brokers: Vec<_> = metadata
            .brokers()
            .iter()
            .map(|b| (b.host().to_owned(), b.port()))
            .collect();
        if brokers != [("127.0.0.1".to_owned(), i32::from(self.ports.plaintext))] {
            return Err(format!("metadata names brokers {brokers:?}, not this one"));
        }
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("exited while becoming ready ({status})"));
        }
        Ok(())
    }

    /// One broker shared by every test of this process that does not need one of its own.
    ///
    /// Tests sharing it must name their topics, groups and transactional ids with
    /// [`crate::broker::unique_name`], and must not kill, stop or restart it (they cannot: it
    /// is only lent). It lives until the process exits and is killed then (or, should the
    /// process die without exiting, by the kernel through `PR_SET_PDEATHSIG`); its folder is
    /// removed at exit unless `OUTFLOW_KEEP_BROKER_LOG` is set. Its folder is printed when it
    /// starts.
    pub fn shared() -> &'static Kafka {
        static SHARED: OnceLock<Kafka> = OnceLock::new();
        SHARED.get_or_init(|| {
            let kafka = Kafka::start();
            eprintln!(
                "shared Apache Kafka {KAFKA_VERSION} at {} (pid {}, started in {:.1?}, folder {})",
                kafka.bootstrap(),
                kafka.pid().unwrap_or_default(),
                kafka.started_in(),
                kafka.dir().display()
            );
            register_shared_cleanup(&kafka);
            kafka
        })
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            // The test failed: keep the folder where the message says it is.
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "Kafka folder kept at {} (last lines of kafka.log below)\n{}",
                    kept.display(),
                    tail(&read_log(&kept.join("kafka.log")), 40)
                );
            }
        }
    }
}

/// `isolation.level` of a reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    ReadUncommitted,
}

impl Isolation {
    pub fn name(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read_committed",
            Isolation::ReadUncommitted => "read_uncommitted",
        }
    }
}

/// An operation an ACL allows, as `AclCommand --operation` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl AclOperation {
    pub fn name(self) -> &'static str {
        match self {
            AclOperation::All => "All",
            AclOperation::Read => "Read",
            AclOperation::Write => "Write",
            AclOperation::Create => "Create",
            AclOperation::Delete => "Delete",
            AclOperation::Alter => "Alter",
            AclOperation::Describe => "Describe",
            AclOperation::ClusterAction => "ClusterAction",
            AclOperation::DescribeConfigs => "DescribeConfigs",
            AclOperation::AlterConfigs => "AlterConfigs",
            AclOperation::IdempotentWrite => "IdempotentWrite",
        }
    }
}

/// The resource pattern an ACL applies to: a literal name, or every name with a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AclResource {
    Topic(String),
    TopicPrefix(String),
    Group(String),
    GroupPrefix(String),
    TransactionalId(String),
    TransactionalIdPrefix(String),
    Cluster,
}

impl AclResource {
    fn arguments(&self) -> Vec<String> {
        let (flag, name, prefixed) = match self {
            AclResource::Topic(name) => ("--topic", name, false),
            AclResource::TopicPrefix(name) => ("--topic", name, true),
            AclResource::Group(name) => ("--group", name, false),
            AclResource::GroupPrefix(name) => ("--group", name, true),
            AclResource::TransactionalId(name) => ("--transactional-id", name, false),
            AclResource::TransactionalIdPrefix(name) => ("--transactional-id", name, true),
            AclResource::Cluster => return vec!["--cluster".to_owned()],
        };
        let pattern = if prefixed { "prefixed" } else { "literal" };
        vec![
            flag.to_owned(),
            name.clone(),
            "--resource-pattern-type".to_owned(),
            pattern.to_owned(),
        ]
    }
}

/// Whether `AclCommand` output lists an ALLOW of `operation` for `principal`; it spells
/// operations in upper snake case (`IDEMPOTENT_WRITE`).
fn lists_acl(listed: &str, principal: &str, operation: &str) -> bool {
    let wanted = operation.to_ascii_uppercase();
    listed.lines().any(|line| {
        let listed_operation = line
            .split_once("operation=")
            .and_then(|(_, rest)| rest.split([',', ')']).next())
            .map(|o| o.replace('_', ""));
        line.contains(&format!("principal={principal},"))
            && line.contains("permissionType=ALLOW")
            && listed_operation.as_deref() == Some(wanted.as_str())
    })
}

/// A command that runs one of Kafka's Java classes (a tool's `main`) from the tests' jars, with
/// warnings on standard error and nothing else logged.
pub fn java_tool(main_class: &str) -> io::Result<Command> {
    let mut command = java_with_classpath()?;
    command.arg(main_class);
    Ok(command)
}

/// A command that runs a single-file Java program of `tests/kafka/java/` (e.g.
/// `KeyPartitions.java`) in source-file mode, compiled in memory against the tests' jars.
/// One message as Kafka Connect's `JsonConverter` reads it (`ConnectValues.java`): the Connect
/// data of its key and value, each with its schema described (see that program's header for
/// the notation).
#[derive(Clone, Debug, PartialEq)]
pub struct ConnectRecord {
    pub key: serde_json::Value,
    pub key_schema: serde_json::Value,
    pub value: serde_json::Value,
    pub value_schema: serde_json::Value,
}

/// A message's key and value; `None` for an absent part (a tombstone's value).
pub type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Feeds each `(key, value)` message of `topic` through Kafka Connect's own `JsonConverter`
/// (`org.apache.kafka.connect.json`, configured with `schemas.enable` as given, as the key
/// converter for keys and the value converter for values) and returns what Connect made of
/// each, in order. A message Connect refuses fails the whole call with Connect's error.
pub fn connect_json_records(
    topic: &str,
    schemas_enable: bool,
    messages: &[KeyValue],
) -> io::Result<Vec<ConnectRecord>> {
    let mut command = java_source_command("ConnectValues.java")?;
    command
        .arg(topic)
        .arg(schemas_enable.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("running ConnectValues.java: {e}")))?;
    let hex = |part: &Option<Vec<u8>>| match part {
        Some(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        None => "-".to_string(),
    };
    let input: String = messages
        .iter()
        .map(|(key, value)| format!("{} {}\n", hex(key), hex(value)))
        .collect();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output()?;
    writer.join().expect("the writer thread")?;
    if !output.status.success() {
        return Err(tool_failure("ConnectValues.java", &output));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let records: Vec<ConnectRecord> = stdout
        .lines()
        .map(|line| {
            let mut record: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                io::Error::other(format!("ConnectValues.java printed {line:?}: {e}"))
            })?;
            let mut take = |name: &str| record[name].take();
            Ok(ConnectRecord {
                key: take("key"),
                key_schema: take("key_schema"),
                value: take("value"),
                value_schema: take("value_schema"),
            })
        })
        .collect::<io::Result<_>>()?;
    if records.len() != messages.len() {
        return Err(io::Error::other(format!(
            "ConnectValues.java printed {} records for {} messages:\n{stdout}",
            records.len(),
            messages.len()
        )));
    }
    Ok(records)
}

pub fn java_source_command(file_name: &str) -> io::Result<Command> {
    let source = kafka_dir().join("java").join(file_name);
    if !source.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no Java program {}", source.display()),
        ));
    }
    let mut command = java_with_classpath()?;
    command.arg(source);
    Ok(command)
}

fn java_with_classpath() -> io::Result<Command> {
    let install = Installation::get()?;
    let mut command = Command::new(&install.java);
    command
        .args(TOOL_JVM_OPTIONS)
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            kafka_dir().join("log4j2-tools.properties").display()
        ))
        .arg("-cp")
        .arg(install.classpath())
        .env_remove("KAFKA_OPTS")
        .env_remove("JAVA_TOOL_OPTIONS")
        .stdin(Stdio::null());
    Ok(command)
}

/// Runs a tool to its end, capturing what it prints.
fn run(command: &mut Command) -> io::Result<Output> {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running {command:?}: {e}")))
}

fn tool_failure(what: &str, output: &Output) -> io::Error {
    io::Error::other(format!(
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// `tests/kafka`: the pom, the logging configurations, the Java programs.
fn kafka_dir() -> PathBuf {
    workspace_root().join("tests/kafka")
}

/// Java and the jars, found once per process.
struct Installation {
    java: PathBuf,
    libs: PathBuf,
}

impl Installation {
    fn get() -> io::Result<&'static Installation> {
        static FOUND: OnceLock<Installation> = OnceLock::new();
        if let Some(found) = FOUND.get() {
            return Ok(found);
        }
        let found = Installation::find()?;
        Ok(FOUND.get_or_init(|| found))
    }

    fn find() -> io::Result<Installation> {
        let java = match env::var_os("JAVA_HOME").filter(|home| !home.is_empty()) {
            Some(home) => PathBuf::from(home).join("bin/java"),
            None => PathBuf::from("java"),
        };
        let libs = match env::var_os("KAFKA_LIBS").filter(|libs| !libs.is_empty()) {
            Some(libs) => PathBuf::from(libs),
            None => install_kafka()?,
        };
        let broker_jar = libs.join(format!("kafka_2.13-{KAFKA_VERSION}.jar"));
        if !broker_jar.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} is missing: the harness runs Kafka {KAFKA_VERSION}; run .ci/setup, or \
                     point KAFKA_LIBS at a folder of its jars",
                    broker_jar.display()
                ),
            ));
        }
        let probe = Command::new(&java).arg("-version").output();
        if !probe.as_ref().is_ok_and(|o| o.status.success()) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "cannot run {} ({}): install Java 17 (.ci/setup does) or set JAVA_HOME",
                    java.display(),
                    probe.map_or_else(|e| e.to_string(), |o| o.status.to_string())
                ),
            ));
        }
        Ok(Installation { java, libs })
    }

    fn classpath(&self) -> String {
        format!("{}/*", self.libs.display())
    }
}

/// Runs `.ci/install-kafka`, which fills `.tools/kafka/libs` unless it holds the pom's jars
/// already (it takes a lock, so parallel test binaries install once), and returns that folder.
fn install_kafka() -> io::Result<PathBuf> {
    let script = workspace_root().join(".ci/install-kafka");
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running {}: {e}", script.display())))?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{} failed ({}); run .ci/setup, or point KAFKA_LIBS at a folder of the Kafka \
             {KAFKA_VERSION} jars:\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let libs = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let marker = libs.with_file_name("VERSION");
    let installed = fs::read_to_string(&marker).unwrap_or_default();
    if installed.lines().next() != Some(&format!("kafka {KAFKA_VERSION}")) {
        return Err(io::Error::other(format!(
            "{} says {:?}, but tests/src/kafka.rs runs Kafka {KAFKA_VERSION}: make \
             tests/kafka/pom.xml and KAFKA_VERSION agree",
            marker.display(),
            installed.lines().next().unwrap_or("")
        )));
    }
    Ok(libs)
}

fn broker_jvm_options() -> Vec<String> {
    match env::var("OUTFLOW_KAFKA_JVM_OPTS") {
        Ok(options) if !options.trim().is_empty() => {
            options.split_whitespace().map(str::to_owned).collect()
        }
        _ => BROKER_JVM_OPTIONS.iter().map(|&o| o.to_owned()).collect(),
    }
}

/// The broker's certificate chain and key in one PEM file: Kafka's PEM key store format.
fn write_server_keystore(dir: &Path) -> io::Result<()> {
    let fixtures = fixtures_dir();
    write_pem_keystore(
        &dir.join("server-keystore.pem"),
        &fixtures.join("server.key"),
        &fixtures.join("server.pem"),
    )
}

fn write_pem_keystore(path: &Path, key: &Path, certificate: &Path) -> io::Result<()> {
    let read = |p: &Path| {
        fs::read_to_string(p)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", p.display())))
    };
    fs::write(path, format!("{}\n{}", read(key)?, read(certificate)?))
}

/// `server.properties` of a single-node combined broker and controller.
fn server_properties(dir: &Path, ports: Ports, settings: &KafkaSettings) -> String {
    let Ports {
        plaintext,
        sasl_ssl,
        ssl,
        controller,
    } = ports;
    let data = dir.join("data");
    let keystore = dir.join("server-keystore.pem");
    let truststore = fixtures_dir().join("ca.pem");
    let super_users = format!("User:ANONYMOUS;{}", ADMIN.principal());
    let scram_login = "org.apache.kafka.common.security.scram.ScramLoginModule required;";
    let mut properties: Vec<(String, String)> = vec![
        ("process.roles", "broker,controller".to_owned()),
        ("node.id", "1".to_owned()),
        // A static quorum of one: nothing about it is stored in the log, so the ports may
        // change between start attempts.
        (
            "controller.quorum.voters",
            format!("1@127.0.0.1:{controller}"),
        ),
        ("controller.listener.names", "CONTROLLER".to_owned()),
        (
            "listeners",
            format!(
                "PLAINTEXT://127.0.0.1:{plaintext},SASL_SSL://127.0.0.1:{sasl_ssl},\
                 SSL://127.0.0.1:{ssl},CONTROLLER://127.0.0.1:{controller}"
            ),
        ),
        (
            "advertised.listeners",
            format!(
                "PLAINTEXT://127.0.0.1:{plaintext},SASL_SSL://127.0.0.1:{sasl_ssl},\
                 SSL://127.0.0.1:{ssl}"
            ),
        ),
        (
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL,CONTROLLER:PLAINTEXT".to_owned(),
        ),
        ("inter.broker.listener.name", "PLAINTEXT".to_owned()),
        ("log.dirs", data.display().to_string()),
        // One node: nothing can be replicated, and the internal topics must not wait for
        // replicas that will never exist.
        ("offsets.topic.replication.factor", "1".to_owned()),
        ("offsets.topic.num.partitions", "4".to_owned()),
        ("transaction.state.log.replication.factor", "1".to_owned()),
        ("transaction.state.log.min.isr", "1".to_owned()),
        ("transaction.state.log.num.partitions", "4".to_owned()),
        (
            "share.coordinator.state.topic.replication.factor",
            "1".to_owned(),
        ),
        ("share.coordinator.state.topic.min.isr", "1".to_owned()),
        ("default.replication.factor", "1".to_owned()),
        ("min.insync.replicas", "1".to_owned()),
        ("num.partitions", "1".to_owned()),
        ("group.initial.rebalance.delay.ms", "0".to_owned()),
        // A broker restarted after SIGKILL may register again only once the controller has
        // fenced its previous incarnation, when that one's session expires: 9 s by default.
        ("broker.session.timeout.ms", "4000".to_owned()),
        ("broker.heartbeat.interval.ms", "1000".to_owned()),
        (
            "auto.create.topics.enable",
            settings.auto_create_topics.to_string(),
        ),
        // Two cores: a few threads each, and a small compaction buffer (the default takes
        // 128 MiB of heap).
        ("num.network.threads", "2".to_owned()),
        ("num.io.threads", "2".to_owned()),
        ("background.threads", "2".to_owned()),
        ("num.recovery.threads.per.data.dir", "1".to_owned()),
        ("num.replica.fetchers", "1".to_owned()),
        ("log.cleaner.threads", "1".to_owned()),
        ("log.cleaner.dedupe.buffer.size", "16777216".to_owned()),
        // Authorization.
        (
            "authorizer.class.name",
            "org.apache.kafka.metadata.authorizer.StandardAuthorizer".to_owned(),
        ),
        ("super.users", super_users),
        ("allow.everyone.if.no.acl.found", "false".to_owned()),
        // TLS on SASL_SSL and SSL, from PEM files.
        ("ssl.keystore.type", "PEM".to_owned()),
        ("ssl.keystore.location", keystore.display().to_string()),
        ("ssl.truststore.type", "PEM".to_owned()),
        ("ssl.truststore.location", truststore.display().to_string()),
        ("listener.name.ssl.ssl.client.auth", "required".to_owned()),
        // CN=outflow-test-client becomes User:outflow-test-client.
        (
            "ssl.principal.mapping.rules",
            "RULE:^CN=(.*?)$/$1/,DEFAULT".to_owned(),
        ),
        // SCRAM on SASL_SSL; the credentials were written when the storage was formatted.
        (
            "listener.name.sasl_ssl.sasl.enabled.mechanisms",
            "SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER".to_owned(),
        ),
        // OAUTHBEARER on SASL_SSL: Kafka's validator of unsigned tokens, which checks the
        // expiry and the scope (the broker's own login token is never used: the listener is
        // not the inter-broker one).
        (
            "listener.name.sasl_ssl.oauthbearer.sasl.jaas.config",
            format!(
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
                 unsecuredLoginStringClaim_sub=\"admin\" \
                 unsecuredValidatorRequiredScope=\"{OAUTH_REQUIRED_SCOPE}\";"
            ),
        ),
        (
            "listener.name.sasl_ssl.oauthbearer.sasl.server.callback.handler.class",
            "org.apache.kafka.common.security.oauthbearer.internals.unsecured.\
             OAuthBearerUnsecuredValidatorCallbackHandler"
                .to_owned(),
        ),
        (
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config",
            scram_login.to_owned(),
        ),
        (
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config",
            scram_login.to_owned(),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    properties.extend(settings.properties.iter().cloned());
    let mut text = String::from("# Written by the Outflow test harness (tests/src/kafka.rs).\n");
    for (key, value) in properties {
        text.push_str(&format!("{key}={}\n", escape_property(&value)));
    }
    text
}

/// A `.properties` value: backslashes are escapes there.
fn escape_property(value: &str) -> String {
    value.replace('\\', "\\\\")
}

/// `kafka-storage format`: a new cluster id, and the SCRAM credentials of every user.
fn format_storage(install: &Installation, dir: &Path) -> io::Result<()> {
    let mut command = Command::new(&install.java);
    command
        .args(TOOL_JVM_OPTIONS)
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            kafka_dir().join("log4j2-tools.properties").display()
        ))
        .arg("-cp")
        .arg(install.classpath())
        .args(["kafka.tools.StorageTool", "format", "--config"])
        .arg(dir.join("server.properties"))
        .args(["--cluster-id", &new_cluster_id()])
        .env_remove("KAFKA_OPTS")
        .env_remove("JAVA_TOOL_OPTIONS")
        .stdin(Stdio::null());
    for user in SCRAM_USERS {
        for mechanism in ScramMechanism::ALL {
            command.arg("--add-scram").arg(format!(
                "{}=[name={},password={}]",
                mechanism.name(),
                user.name,
                user.password
            ));
        }
    }
    let output = run(&mut command)?;
    // The tool prints the configuration and the salted credentials; keep them out of the
    // test's output, in a file beside the log.
    let mut record = output.stdout.clone();
    record.extend_from_slice(&output.stderr);
    fs::write(dir.join("format.log"), &record)?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "kafka-storage format failed ({}); see {}:\n{}",
            output.status,
            dir.join("format.log").display(),
            tail(&String::from_utf8_lossy(&output.stderr), 20)
        )));
    }
    Ok(())
}

/// A cluster id as Kafka writes them: 16 random bytes, URL-safe base64 without padding, never
/// starting with '-' (which a command line would take for a flag).
fn new_cluster_id() -> String {
    loop {
        let bytes: [u8; 16] = rand::random();
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("test file path {} is not UTF-8", path.display()))
}

/// Makes the child die with this process: SIGKILL when the thread that forked it exits (see
/// [`spawn_from_lasting_thread`], which forks from a thread that lives as long as the process).
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (prctl, getppid, _exit).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the signal was armed.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Kills the shared broker and removes its folder when the process exits normally.
fn register_shared_cleanup(kafka: &Kafka) {
    static SHARED_PID: AtomicU64 = AtomicU64::new(0);
    static SHARED_DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn at_exit() {
        let pid = SHARED_PID.load(Ordering::SeqCst);
        if pid != 0 {
            // SAFETY: signalling a child we spawned and never reaped: nothing waits on the
            // shared broker, so the pid cannot have been reused.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        if env::var_os("OUTFLOW_KEEP_BROKER_LOG").is_none() {
            if let Some(dir) = SHARED_DIR.get() {
                let _ = fs::remove_dir_all(dir);
            }
        }
    }
    SHARED_PID.store(u64::from(kafka.pid().unwrap_or(0)), Ordering::SeqCst);
    let _ = SHARED_DIR.set(kafka.dir().to_path_buf());
    // SAFETY: registering a plain extern "C" function with no captured state.
    unsafe {
        libc::atexit(at_exit);
    }
}
