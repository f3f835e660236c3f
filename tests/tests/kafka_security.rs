//! Secure connections and the guide's "Required Kafka ACLs", against Apache Kafka's SASL_SSL
//! and SSL listeners and its `StandardAuthorizer` (`outflow_tests::kafka`).
//!
//! SCRAM with the right password carries a sink end to end, and a wrong one fails within
//! seconds naming the connection and the mechanism, the password printed nowhere; so do
//! OAUTHBEARER client credentials, with tokens from a test token endpoint, and a wrong client
//! secret; unsigned OAUTHBEARER tokens set up through `LIBRDKAFKA OPTIONS` carry a sink too; TLS is
//! verified against the harness's authority; the SSL listener refuses a client without a
//! certificate with an error naming the connection. An ordinary SCRAM user (`alice`) holding
//! exactly the permissions of the README's ACL table runs a sink through `outflow run`; each
//! case below withholds one of them and checks the error names the missing permission and its
//! resource. Every case has its own topics, sink, prefixes and progress topic, so they share
//! one broker and run side by side.

mod cli;

use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cli::{order_json, outflow_binary, update_line, write_file};
use outflow::connection::ConnectionError;
use outflow::encoders::Secret;
use outflow::spec::{ConnectionSpec, SaslMechanism, SecretSpec, StringOrSecret};
use outflow::statement::Catalog;
use outflow::{SinkError, SinkPlan};
use outflow_tests::acl::Grant;
use outflow_tests::broker::{create_topic, unique_name};
use outflow_tests::committed;
use outflow_tests::kafka::{
    AclOperation, AclResource, Kafka, Listener, ScramMechanism, ADMIN, ALICE, OAUTH_REQUIRED_SCOPE,
};
use outflow_tests::oauth::{TokenEndpoint, TokenRequest, TokenSettings};
use outflow_tests::pipeline::{
    assert_topic_holds, expected_json, random_history, run_sink, RunOptions,
};
use outflow_tests::tls::fixture;

/// How long a refused run may take to report its error: the connection check's 10 s at most,
/// with room for a loaded machine. A wrong password or a refused handshake must come well
/// before it.
const FAIL_WITHIN: Duration = Duration::from_secs(25);
/// What a run that works may take.
const RUN_WITHIN: Duration = Duration::from_secs(120);

/// The statements of one case: connection `secure`, a table `orders` and a sink on it.
struct Case {
    dir: tempfile::TempDir,
    sink: String,
    topic: String,
    progress_topic: String,
    prefix: String,
    statements: String,
    feed: String,
}

/// The orders the feed writes, as FORMAT JSON writes them, by order id.
fn orders() -> Vec<String> {
    (1..=6)
        .map(|id| order_json(id, &format!("c{}", id % 3), 1000 + id))
        .collect()
}

fn feed_text() -> String {
    let rows = orders();
    let mut lines: Vec<String> = rows[..3]
        .iter()
        .map(|row| update_line("orders", 1, 1, row))
        .collect();
    lines.push(r#"{"advance": 2}"#.to_string());
    lines.extend(rows[3..].iter().map(|row| update_line("orders", 2, 1, row)));
    // Time 2 is complete, so the run writes it and exits.
    lines.push(r#"{"advance": 3}"#.to_string());
    lines.join("\n") + "\n"
}

/// `connection` is the option list of `CREATE CONNECTION secure`, without its progress topic;
/// `secrets` are `CREATE SECRET` statements it names.
fn case(label: &str, secrets: &str, connection: &str) -> Case {
    case_with(label, secrets, connection, "")
}

/// `sink_options` are appended to the sink's `WITH`-less option list, e.g. `, TOPIC CONFIG …`.
fn case_with(label: &str, secrets: &str, connection: &str, sink_options: &str) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let sink = unique_name(&format!("sec-{label}"));
    let topic = format!("{sink}-data");
    let progress_topic = format!("{sink}-progress");
    let prefix = format!("{sink}-tx-");
    let sql = format!(
        "{secrets}
         CREATE CONNECTION secure TO KAFKA ({connection}, PROGRESS TOPIC '{progress_topic}');
         CREATE TABLE orders (order_id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL);
         CREATE SINK \"{sink}\" FROM orders INTO KAFKA CONNECTION secure (TOPIC '{topic}',
             TOPIC PARTITION COUNT 2, TRANSACTIONAL ID PREFIX '{prefix}', PROGRESS GROUP ID PREFIX '{prefix}'{sink_options})
           KEY (order_id) FORMAT JSON ENVELOPE UPSERT;"
    );
    let statements = write_file(&dir, "statements.sql", &sql);
    let feed = write_file(&dir, "feed.jsonl", &feed_text());
    Case {
        dir,
        sink,
        topic,
        progress_topic,
        prefix,
        statements,
        feed,
    }
}

/// A SASL_SSL connection as `username` with `password`, trusting `authority`.
fn scram_case(
    label: &str,
    mechanism: ScramMechanism,
    username: &str,
    password: &str,
    authority: &str,
) -> Case {
    scram_case_with(label, mechanism, username, password, authority, "")
}

fn scram_case_with(
    label: &str,
    mechanism: ScramMechanism,
    username: &str,
    password: &str,
    authority: &str,
    sink_options: &str,
) -> Case {
    let kafka = Kafka::shared();
    let secrets = format!(
        "CREATE SECRET password AS '{password}';\nCREATE SECRET authority AS '{authority}';"
    );
    let connection = format!(
        "BROKER '{}', SECURITY PROTOCOL SASL_SSL, SASL MECHANISMS = '{}', \
         SASL USERNAME = '{username}', SASL PASSWORD = SECRET password, \
         SSL CERTIFICATE AUTHORITY = SECRET authority",
        kafka.bootstrap_for(Listener::SaslSsl),
        mechanism.name()
    );
    case_with(label, &secrets, &connection, sink_options)
}

fn harness_authority() -> String {
    std::fs::read_to_string(Kafka::shared().ca_path()).unwrap()
}

/// What one `outflow run` showed.
#[derive(Debug)]
struct Run {
    /// `None` when it was still running at the end (stalled) and was killed.
    exit: Option<ExitStatus>,
    stderr: String,
    stdout: String,
    /// The status file at the end, if it was written.
    status: Option<serde_json::Value>,
    took: Duration,
}

impl Run {
    /// The sink's status in the status file: `(status, error)`.
    fn sink_status(&self) -> Option<(String, String)> {
        let sink = self.status.as_ref()?["sinks"].as_array()?.first()?.clone();
        Some((
            sink["status"].as_str()?.to_string(),
            sink["error"].as_str().unwrap_or_default().to_string(),
        ))
    }

    /// stderr and the status file, for assertions on what a user sees.
    fn shown(&self) -> String {
        format!(
            "{}\n{}",
            self.stderr,
            self.status
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default()
        )
    }
}

/// Runs `outflow run` on the case, until it exits or, if it keeps running, until 3 s after its
/// status file said the sink stalled or failed, or `limit` passes; then kills it.
fn run(case: &Case, limit: Duration) -> Run {
    let status_path = case.dir.path().join("status.json");
    let binary = outflow_binary();
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(["run", &case.statements, "--feed", &case.feed])
        .args(["--commit-interval-ms", "50", "--status"])
        .arg(&status_path)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("outflow starts");
    let mut stdout_pipe = child.stdout.take().unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stdout_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout_pipe.read_to_string(&mut text);
        text
    });
    let stderr_reader = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let read_status = |path: &Path| {
        std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
    };
    let mut stuck_since: Option<Instant> = None;
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break Some(exit);
        }
        let stuck = read_status(&status_path).is_some_and(|status| {
            status["sinks"].as_array().is_some_and(|sinks| {
                sinks
                    .iter()
                    .any(|s| s["status"] == "stalled" || s["status"] == "failed")
            })
        });
        // A failed sink ends the run a moment after its status says so; a stalled one keeps
        // it going.
        if stuck && stuck_since.is_none() {
            stuck_since = Some(Instant::now());
        }
        let given_up = stuck_since.is_some_and(|since| since.elapsed() >= Duration::from_secs(3));
        if given_up || started.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let took = started.elapsed();
    Run {
        exit,
        stdout: stdout_reader.join().unwrap(),
        stderr: stderr_reader.join().unwrap(),
        status: read_status(&status_path),
        took,
    }
}

/// The data topic's records at `read_committed`, as `key => value` text.
fn committed_values(topic: &str) -> Vec<String> {
    let mut values: Vec<String> = committed::read_committed(&Kafka::shared().bootstrap(), topic)
        .unwrap_or_else(|e| panic!("reading {topic}: {e}"))
        .iter()
        .map(|record| String::from_utf8(record.value.clone().expect("a value")).unwrap())
        .collect();
    values.sort();
    values
}

fn expected_values() -> Vec<String> {
    let mut values = orders();
    values.sort();
    values
}

fn assert_succeeded(label: &str, case: &Case, run: &Run) {
    assert!(
        run.exit.is_some_and(|e| e.success()),
        "{label}: outflow run did not succeed in {:?}: {}\n{}",
        run.took,
        run.stderr,
        run.stdout
    );
    assert_eq!(committed_values(&case.topic), expected_values(), "{label}");
}

/// Reads the preflight's error of the case's sink through the library.
fn preflight_error(case: &Case) -> (SinkError, Duration) {
    let sql = std::fs::read_to_string(&case.statements).unwrap();
    let catalog = Catalog::from_sql(&sql).unwrap_or_else(|e| panic!("{}", e.render("case")));
    let plan = SinkPlan::from_catalog(&catalog, &case.sink).unwrap();
    let started = Instant::now();
    let error = plan.preflight().expect_err("the preflight should fail");
    (error, started.elapsed())
}

#[test]
fn scram_runs_a_sink_and_a_wrong_password_fails_fast_without_printing_it() {
    for mechanism in ScramMechanism::ALL {
        let right = scram_case(
            "scram",
            mechanism,
            ADMIN.name,
            ADMIN.password,
            &harness_authority(),
        );
        let done = run(&right, RUN_WITHIN);
        assert_succeeded(mechanism.name(), &right, &done);
        assert!(!done.shown().contains(ADMIN.password), "{}", done.shown());
        println!(
            "{mechanism}: the sink ran over SASL_SSL in {:.1?}",
            done.took
        );

        const WRONG: &str = "wrong-password-71f3";
        let wrong = scram_case(
            "scram-wrong",
            mechanism,
            ADMIN.name,
            WRONG,
            &harness_authority(),
        );
        let refused = run(&wrong, FAIL_WITHIN);
        println!(
            "{mechanism}, wrong password: exit {:?} after {:.1?}: {}",
            refused.exit,
            refused.took,
            refused.stderr.trim()
        );
        assert!(
            refused.exit.is_some_and(|e| !e.success()),
            "{mechanism}: a wrong password must stop the run: {refused:?}"
        );
        assert!(
            refused.took < Duration::from_secs(10),
            "{mechanism}: a wrong password took {:?} to fail",
            refused.took
        );
        let shown = refused.shown();
        assert!(
            shown.contains(&format!(
                "cannot connect to Kafka connection \"secure\" at {}: SASL {mechanism} \
                 authentication as user \"admin\" failed",
                Kafka::shared().bootstrap_for(Listener::SaslSsl)
            )),
            "{mechanism}: {shown}"
        );
        assert!(
            shown.contains("check SASL MECHANISMS, SASL USERNAME and SASL PASSWORD"),
            "{shown}"
        );
        assert!(!shown.contains(WRONG), "the password leaked: {shown}");
        // The status file says the same, though the run ended before its sink was built.
        let (status, error) = refused.sink_status().expect("a status file");
        assert_eq!(status, "failed", "{shown}");
        assert!(
            error.contains(&format!(
                "SASL {mechanism} authentication as user \"admin\" failed"
            )),
            "{error}"
        );
    }
}

#[test]
fn tls_is_verified_against_the_authority_and_the_ssl_listener_wants_a_certificate() {
    let kafka = Kafka::shared();
    let wrong_authority = scram_case(
        "wrong-ca",
        ScramMechanism::Sha256,
        ADMIN.name,
        ADMIN.password,
        &fixture("other-ca.pem"),
    );
    let (error, took) = preflight_error(&wrong_authority);
    let message = error.to_string();
    println!("wrong authority, after {took:.1?}: {message}");
    assert!(
        matches!(error, SinkError::Connection(ConnectionError::Tls { .. })),
        "{error:?}"
    );
    assert!(
        message.starts_with(&format!(
            "cannot connect to Kafka connection \"secure\" at {}: ",
            kafka.bootstrap_for(Listener::SaslSsl)
        )) && message.contains("certificate verify failed")
            && message.contains("check SSL CERTIFICATE AUTHORITY"),
        "{message}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");

    let no_certificate = case(
        "no-cert",
        &format!("CREATE SECRET authority AS '{}';", harness_authority()),
        &format!(
            "BROKER '{}', SECURITY PROTOCOL SSL, SSL CERTIFICATE AUTHORITY = SECRET authority",
            kafka.bootstrap_for(Listener::Ssl)
        ),
    );
    let (error, took) = preflight_error(&no_certificate);
    let message = error.to_string();
    println!("no client certificate, after {took:.1?}: {message}");
    assert!(
        matches!(error, SinkError::Connection(ConnectionError::Tls { .. })),
        "{error:?}"
    );
    assert!(
        message.starts_with(&format!(
            "cannot connect to Kafka connection \"secure\" at {}: ",
            kafka.bootstrap_for(Listener::Ssl)
        )) && message.contains("set SSL CERTIFICATE and SSL KEY"),
        "{message}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// The client the test token endpoint knows.
const OAUTH_CLIENT: &str = "outflow-sink";
const OAUTH_SECRET: &str = "oauth-secret-4d2e";

fn token_endpoint() -> TokenEndpoint {
    TokenEndpoint::start(TokenSettings {
        client_id: OAUTH_CLIENT.to_string(),
        client_secret: OAUTH_SECRET.to_string(),
        // A super user: the case needs no ACLs.
        subject: ADMIN.name.to_string(),
        lifetime: Duration::from_secs(3600),
    })
}

/// A SASL_SSL connection with OAUTHBEARER client credentials against `endpoint`.
fn oauth_case(label: &str, endpoint: &TokenEndpoint, client_secret: &str, scope: &str) -> Case {
    let kafka = Kafka::shared();
    let secrets = format!(
        "CREATE SECRET client_secret AS '{client_secret}';\nCREATE SECRET authority AS '{}';",
        harness_authority()
    );
    let connection = format!(
        "BROKER '{}', SECURITY PROTOCOL SASL_SSL, SASL MECHANISMS = 'OAUTHBEARER', \
         SASL OAUTHBEARER TOKEN ENDPOINT = '{}', SASL OAUTHBEARER CLIENT ID = '{OAUTH_CLIENT}', \
         SASL OAUTHBEARER CLIENT SECRET = SECRET client_secret, SASL OAUTHBEARER SCOPE = '{scope}', \
         SSL CERTIFICATE AUTHORITY = SECRET authority",
        kafka.bootstrap_for(Listener::SaslSsl),
        endpoint.url()
    );
    case(label, &secrets, &connection)
}

#[test]
fn oauthbearer_client_credentials_run_a_sink_and_a_wrong_secret_fails_without_printing_it() {
    let kafka = Kafka::shared();
    let endpoint = token_endpoint();
    let right = oauth_case("oauth", &endpoint, OAUTH_SECRET, OAUTH_REQUIRED_SCOPE);
    let done = run(&right, RUN_WITHIN);
    assert_succeeded("OAUTHBEARER", &right, &done);
    assert!(!done.shown().contains(OAUTH_SECRET), "{}", done.shown());
    // librdkafka fetched its tokens from the endpoint with the connection's credentials and
    // scope; the broker took them (it requires that scope of every token).
    let requests = endpoint.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        assert_eq!(
            request,
            &TokenRequest {
                client_id: Some(OAUTH_CLIENT.to_string()),
                authenticated: true,
                grant_type: Some("client_credentials".to_string()),
                scope: Some(OAUTH_REQUIRED_SCOPE.to_string()),
            }
        );
    }
    println!(
        "OAUTHBEARER: the sink ran over SASL_SSL in {:.1?}, {} token request(s)",
        done.took,
        requests.len()
    );

    const WRONG: &str = "wrong-oauth-secret-93ab";
    let wrong = oauth_case("oauth-wrong", &endpoint, WRONG, OAUTH_REQUIRED_SCOPE);
    let refused = run(&wrong, FAIL_WITHIN);
    println!(
        "OAUTHBEARER, wrong client secret: exit {:?} after {:.1?}: {}",
        refused.exit,
        refused.took,
        refused.stderr.trim()
    );
    assert!(
        refused.exit.is_some_and(|e| !e.success()),
        "a wrong client secret must stop the run: {refused:?}"
    );
    let shown = refused.shown();
    assert!(
        shown.contains(&format!(
            "cannot connect to Kafka connection \"secure\" at {}: SASL OAUTHBEARER authentication \
             as OAuth client \"{OAUTH_CLIENT}\" with a token from {} failed",
            kafka.bootstrap_for(Listener::SaslSsl),
            endpoint.url()
        )),
        "{shown}"
    );
    assert!(
        shown.contains("check SASL OAUTHBEARER TOKEN ENDPOINT, SASL OAUTHBEARER CLIENT ID"),
        "{shown}"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{OAUTH_CLIENT}:{WRONG}"));
    assert!(!shown.contains(WRONG), "the secret leaked: {shown}");
    assert!(!shown.contains(&basic), "the secret leaked: {shown}");
    let (status, error) = refused.sink_status().expect("a status file");
    assert_eq!(status, "failed", "{shown}");
    assert!(error.contains("SASL OAUTHBEARER authentication"), "{error}");
    assert!(endpoint
        .requests()
        .iter()
        .any(|r| !r.authenticated && r.client_id.as_deref() == Some(OAUTH_CLIENT)));

    // A token of another scope: the endpoint issues it, the broker refuses it.
    let scoped = oauth_case("oauth-scope", &endpoint, OAUTH_SECRET, "reports.read");
    let (error, took) = preflight_error(&scoped);
    let message = error.to_string();
    println!("OAUTHBEARER, a scope the broker does not accept, after {took:.1?}: {message}");
    assert!(
        matches!(
            error,
            SinkError::Connection(ConnectionError::Authentication { .. })
        ),
        "{error:?}"
    );
    assert!(
        message.starts_with(&format!(
            "cannot connect to Kafka connection \"secure\" at {}: SASL OAUTHBEARER authentication \
             as OAuth client \"{OAUTH_CLIENT}\"",
            kafka.bootstrap_for(Listener::SaslSsl)
        )),
        "{message}"
    );
    assert!(!message.contains(OAUTH_SECRET), "{message}");
}

#[test]
fn oauthbearer_client_credentials_through_the_rust_api() {
    let kafka = Kafka::shared();
    let endpoint = token_endpoint();
    let sink = unique_name("sec-oauth-api");
    let topic = format!("{sink}-data");
    let mut catalog = Catalog::new();
    catalog
        .add_secret(SecretSpec::new("client_secret", Secret::new(OAUTH_SECRET)))
        .unwrap();
    catalog
        .add_secret(SecretSpec::new(
            "authority",
            Secret::new(harness_authority()),
        ))
        .unwrap();
    catalog
        .add_connection(
            ConnectionSpec::builder("secure")
                .broker(kafka.bootstrap_for(Listener::SaslSsl))
                .sasl_mechanism(SaslMechanism::OAuthBearer)
                .oauthbearer_token_endpoint(endpoint.url())
                .oauthbearer_client_id(OAUTH_CLIENT)
                .oauthbearer_client_secret("client_secret")
                .oauthbearer_scope(OAUTH_REQUIRED_SCOPE)
                .ssl_certificate_authority(StringOrSecret::secret("authority"))
                .librdkafka_option("client.id", "outflow-oauth-api")
                .progress_topic(format!("{sink}-progress"))
                .build()
                .unwrap(),
        )
        .unwrap();
    catalog
        .execute_sql(&format!(
            "CREATE TABLE t (id bigint PRIMARY KEY, value text NOT NULL, amount numeric(10,2) NOT NULL);
             CREATE SINK \"{sink}\" FROM t INTO KAFKA CONNECTION secure (TOPIC '{topic}',
                 TRANSACTIONAL ID PREFIX '{sink}-', PROGRESS GROUP ID PREFIX '{sink}-')
               KEY (id) FORMAT JSON ENVELOPE UPSERT;"
        ))
        .unwrap_or_else(|e| panic!("{}", e.render("case")));
    let plan = SinkPlan::from_catalog(&catalog, &sink).unwrap();
    let history = random_history(11, 12, 3, 6);
    let report = run_sink(
        plan,
        history.clone(),
        RunOptions {
            timeout: RUN_WITHIN,
            ..RunOptions::default()
        },
    );
    assert!(!report.status.is_failed(), "{report:#?}");
    assert_topic_holds(
        &kafka.bootstrap(),
        &topic,
        &expected_json(&history),
        "OAUTHBEARER through the Rust API",
    );
    assert!(endpoint
        .requests()
        .iter()
        .all(|r| r.authenticated && r.scope.as_deref() == Some(OAUTH_REQUIRED_SCOPE)));
    assert!(!endpoint.requests().is_empty());
}

#[test]
fn librdkafka_options_reach_the_client_unsecured_oauthbearer_tokens() {
    let kafka = Kafka::shared();
    // librdkafka makes the token itself from `sasl.oauthbearer.config`: nothing but the
    // passed-through settings can authenticate this connection.
    let with_config = |label: &str, config: &str| {
        let secrets = format!(
            "CREATE SECRET jwt AS '{config}';\nCREATE SECRET authority AS '{}';",
            harness_authority()
        );
        let connection = format!(
            "BROKER '{}', SECURITY PROTOCOL SASL_SSL, SASL MECHANISMS = 'OAUTHBEARER', \
             SSL CERTIFICATE AUTHORITY = SECRET authority, \
             LIBRDKAFKA OPTIONS ('enable.sasl.oauthbearer.unsecure.jwt' = 'true', \
                 'sasl.oauthbearer.config' = SECRET jwt, 'client.id' = 'outflow-passthrough', \
                 'socket.keepalive.enable' = 'true')",
            kafka.bootstrap_for(Listener::SaslSsl)
        );
        case(label, &secrets, &connection)
    };
    let right = with_config(
        "passthrough",
        &format!("principal={} scope={OAUTH_REQUIRED_SCOPE}", ADMIN.name),
    );
    // `outflow check` names the secret and shows the settings, never the secret's text.
    let checked = Command::new(outflow_binary())
        .args(["check", &right.statements])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{printed}");
    assert!(
        printed.contains(
            "\"librdkafka_options\":{\"client.id\":\"outflow-passthrough\",\
             \"enable.sasl.oauthbearer.unsecure.jwt\":\"true\",\
             \"sasl.oauthbearer.config\":{\"secret\":\"jwt\"},\
             \"socket.keepalive.enable\":\"true\"}"
        ),
        "{printed}"
    );
    assert!(!printed.contains("principal="), "{printed}");
    let done = run(&right, RUN_WITHIN);
    assert_succeeded("unsecured OAUTHBEARER", &right, &done);
    println!(
        "unsecured OAUTHBEARER through LIBRDKAFKA OPTIONS: the sink ran in {:.1?}",
        done.took
    );
    // The same without the scope the broker requires: the value passed through is the one
    // the broker judged.
    let unscoped = with_config("passthrough-unscoped", &format!("principal={}", ADMIN.name));
    let (error, took) = preflight_error(&unscoped);
    println!("unsecured OAUTHBEARER without the scope, after {took:.1?}: {error}");
    assert!(
        matches!(
            error,
            SinkError::Connection(ConnectionError::Authentication { .. })
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("cannot connect to Kafka connection \"secure\" at ")
            && error
                .to_string()
                .contains("SASL OAUTHBEARER authentication failed")
            && error
                .to_string()
                .contains("check the OAUTHBEARER settings of LIBRDKAFKA OPTIONS"),
        "{error}"
    );
}

/// The permissions of the README's ACL table for `case`, each a separate grant so that a case
/// can withhold one: `(what it is called in a test name, the grant)`.
fn required_acls(case: &Case) -> Vec<(&'static str, Grant)> {
    use AclOperation::*;
    vec![
        (
            "progress topic Read",
            (AclResource::Topic(case.progress_topic.clone()), vec![Read]),
        ),
        (
            "progress topic Write",
            (AclResource::Topic(case.progress_topic.clone()), vec![Write]),
        ),
        (
            "progress topic Create",
            (
                AclResource::Topic(case.progress_topic.clone()),
                vec![Create],
            ),
        ),
        (
            "data topic Write",
            (AclResource::Topic(case.topic.clone()), vec![Write]),
        ),
        (
            "data topic Create",
            (AclResource::Topic(case.topic.clone()), vec![Create]),
        ),
        (
            "TransactionalId Write",
            (
                AclResource::TransactionalIdPrefix(case.prefix.clone()),
                vec![Write],
            ),
        ),
        (
            "Group Read",
            (AclResource::GroupPrefix(case.prefix.clone()), vec![Read]),
        ),
    ]
}

/// A sink over SASL_SSL as alice, holding every permission of the table but `withheld`, and
/// the `extra` grants.
fn alice_run(label: &str, withheld: Option<&str>, extra: fn(&Case) -> Vec<Grant>) -> (Case, Run) {
    let case = scram_case(
        label,
        ScramMechanism::Sha512,
        ALICE.name,
        ALICE.password,
        &harness_authority(),
    );
    let grants: Vec<Grant> = required_acls(&case)
        .into_iter()
        .filter(|(name, _)| Some(*name) != withheld)
        .map(|(_, grant)| grant)
        .chain(extra(&case))
        .collect();
    Kafka::shared()
        .grant(&ALICE.principal(), &grants)
        .expect("granting alice's ACLs");
    let limit = if withheld.is_some() {
        FAIL_WITHIN
    } else {
        RUN_WITHIN
    };
    let outcome = run(&case, limit);
    (case, outcome)
}

/// Withholds `withheld` and checks the run stops (or stalls) with an error containing every
/// one of `expected` (after `{…}` placeholders are filled in from the case).
fn refused_without(label: &str, withheld: &str, expected: &[&str]) {
    refused_with(label, withheld, |_| Vec::new(), expected);
}

fn refused_with(label: &str, withheld: &str, extra: fn(&Case) -> Vec<Grant>, expected: &[&str]) {
    let (case, outcome) = alice_run(label, Some(withheld), extra);
    let shown = outcome.shown();
    let error = outcome
        .sink_status()
        .map(|(_, error)| error)
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| outcome.stderr.trim().to_string());
    println!(
        "without {withheld}: exit {:?}, status {:?} after {:.1?}: {error}",
        outcome.exit,
        outcome.sink_status().map(|(s, _)| s),
        outcome.took
    );
    assert!(
        outcome.exit.is_none_or(|e| !e.success()),
        "without {withheld} the sink still ran: {shown}"
    );
    for text in expected {
        let text = text
            .replace("{sink}", &case.sink)
            .replace("{topic}", &case.topic)
            .replace("{progress}", &case.progress_topic)
            .replace("{prefix}", &case.prefix);
        assert!(
            shown.contains(&text),
            "without {withheld}: the error lacks {text:?}: {shown}"
        );
    }
    assert!(!shown.contains(ALICE.password), "{shown}");
    assert!(
        outcome.took < FAIL_WITHIN,
        "without {withheld}: {:?}",
        outcome.took
    );
}

#[test]
fn the_acl_table_suffices_for_an_ordinary_user() {
    let (case, outcome) = alice_run("acl-all", None, |_| Vec::new());
    println!("alice with the ACL table: {:.1?}", outcome.took);
    assert_succeeded("alice", &case, &outcome);
}

#[test]
fn without_read_on_the_progress_topic() {
    refused_without(
        "no-progress-read",
        "progress topic Read",
        &[
            "not authorized to Read topic '{progress}'",
            "grant Read and Write on topic '{progress}'",
        ],
    );
}

#[test]
fn without_write_on_the_progress_topic() {
    refused_without(
        "no-progress-write",
        "progress topic Write",
        &["not authorized to Write to topic '{progress}'"],
    );
}

#[test]
fn without_create_on_the_progress_topic() {
    refused_without(
        "no-progress-create",
        "progress topic Create",
        &["not authorized to Create topic '{progress}'"],
    );
}

#[test]
fn without_write_on_the_data_topic() {
    refused_without(
        "no-data-write",
        "data topic Write",
        &[
            "not authorized to Describe topic '{topic}' (reading metadata)",
            "the sink's data topic needs Write",
        ],
    );
}

#[test]
fn without_create_on_the_data_topic() {
    refused_without(
        "no-data-create",
        "data topic Create",
        &["not authorized to Create topic '{topic}'"],
    );
}

#[test]
fn without_write_on_the_transactional_ids() {
    refused_without(
        "no-txn-write",
        "TransactionalId Write",
        &[
            "not authorized to Write to TransactionalId '{prefix}{sink}-0'",
            "grant Write on TransactionalId prefix '{prefix}' (pattern type PREFIXED)",
        ],
    );
}

#[test]
fn without_read_on_the_progress_groups() {
    refused_without(
        "no-group-read",
        "Group Read",
        // Which request meets the refusal first is a race: the progress reader's lookup of
        // its group `{prefix}{sink}-reader` (Describe), or, when the reader reaches the end of
        // the empty topic before that lookup's answer, the worker's transactional offset
        // commit for `{prefix}{sink}-0` (Read). Either names a group under the prefix.
        &[
            "not authorized to ",
            " group '{prefix}{sink}-",
            "grant Read on Group prefix '{prefix}' (pattern type PREFIXED)",
        ],
    );
}

/// The progress reader's group is allowed, the workers' groups are not: the transactional
/// offset commit beside the first progress record is refused.
#[test]
fn without_read_on_the_worker_progress_group() {
    refused_with(
        "no-worker-group",
        "Group Read",
        |case| {
            vec![(
                AclResource::Group(format!("{}{}-reader", case.prefix, case.sink)),
                vec![AclOperation::Read],
            )]
        },
        &[
            "during send_offsets_to_transaction",
            "not authorized to Read group '{prefix}{sink}-0'",
            "grant Read on Group prefix '{prefix}' (pattern type PREFIXED)",
        ],
    );
}

/// An existing data topic and `TOPIC CONFIG`: the preflight describes the topic's configs to
/// report differences, which takes DescribeConfigs on it, beyond the table. Without it the sink
/// still runs, and its status says the configs went unchecked and why.
#[test]
fn topic_config_of_an_existing_topic_needs_describe_configs_on_it() {
    let case = scram_case_with(
        "describe-configs",
        ScramMechanism::Sha512,
        ALICE.name,
        ALICE.password,
        &harness_authority(),
        ", TOPIC CONFIG MAP['retention.ms' => '7200000']",
    );
    create_topic(&Kafka::shared().bootstrap(), &case.topic, 2, &[]);
    let grants: Vec<Grant> = required_acls(&case)
        .into_iter()
        .map(|(_, grant)| grant)
        .collect();
    Kafka::shared()
        .grant(&ALICE.principal(), &grants)
        .expect("granting alice's ACLs");
    let notes = |run: &Run| {
        run.status
            .as_ref()
            .map(|s| s["sinks"][0]["notes"].to_string())
            .unwrap_or_default()
    };
    let unchecked = run(&case, RUN_WITHIN);
    assert_succeeded("without DescribeConfigs", &case, &unchecked);
    let expected = format!(
        "was not checked against the requested configs: the broker described none of them, as \
         Kafka does for a principal not authorized to DescribeConfigs topic '{topic}'; grant \
         DescribeConfigs on topic '{topic}'",
        topic = case.topic
    );
    println!("without DescribeConfigs: {}", notes(&unchecked));
    assert!(
        notes(&unchecked).contains(&expected),
        "{}",
        notes(&unchecked)
    );

    Kafka::shared()
        .grant(
            &ALICE.principal(),
            &[(
                AclResource::Topic(case.topic.clone()),
                vec![AclOperation::DescribeConfigs],
            )],
        )
        .expect("granting DescribeConfigs");
    let checked = run(&case, RUN_WITHIN);
    assert!(checked.exit.is_some_and(|e| e.success()), "{checked:?}");
    println!("with DescribeConfigs: {}", notes(&checked));
    // The existing topic keeps the broker's retention, and the status says so.
    assert!(
        notes(&checked).contains("retention.ms") && notes(&checked).contains("604800000"),
        "{}",
        notes(&checked)
    );
    // The rerun finds the progress topic too, and checks it is compacted: DescribeConfigs on
    // the progress topic, which alice lacks.
    assert!(
        notes(&checked).contains(&format!(
            "as Kafka does for a principal not authorized to DescribeConfigs topic '{}'",
            case.progress_topic
        )),
        "{}",
        notes(&checked)
    );
}

/// `outflow txn list` over an SSL connection with a client certificate, as that certificate's
/// ordinary principal: without Describe on the sink's TransactionalId prefix the refusal names
/// the id and the ACL that grants it; with it, the ids are listed.
#[test]
fn txn_list_needs_describe_on_the_transactional_ids() {
    let kafka = Kafka::shared();
    let sink = unique_name("sec-txn");
    let prefix = format!("{sink}-tx-");
    let progress_topic = format!("{sink}-progress");
    let dir = tempfile::tempdir().unwrap();
    let statements = |connection: &str| {
        format!(
            "CREATE CONNECTION secure TO KAFKA ({connection}, PROGRESS TOPIC '{progress_topic}');
             CREATE TABLE orders (order_id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL);
             CREATE SINK \"{sink}\" FROM orders INTO KAFKA CONNECTION secure (TOPIC '{sink}',
                 TRANSACTIONAL ID PREFIX '{prefix}', PROGRESS GROUP ID PREFIX '{prefix}')
               KEY (order_id) FORMAT JSON ENVELOPE UPSERT;"
        )
    };
    // The super user runs the sink over PLAINTEXT, so the progress topic names worker 0.
    let plaintext = write_file(
        &dir,
        "plaintext.sql",
        &statements(&format!(
            "BROKER '{}', SECURITY PROTOCOL PLAINTEXT",
            kafka.bootstrap()
        )),
    );
    let feed = write_file(&dir, "feed.jsonl", &feed_text());
    let output = Command::new(outflow_binary())
        .args([
            "run",
            &plaintext,
            "--feed",
            &feed,
            "--commit-interval-ms",
            "50",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let read = |path: &Path| std::fs::read_to_string(path).unwrap();
    let certificate = outflow_tests::kafka::ClientCertificate::trusted();
    let ssl = write_file(
        &dir,
        "ssl.sql",
        &format!(
            "CREATE SECRET key AS '{}';\nCREATE SECRET authority AS '{}';\n{}",
            read(&certificate.key),
            harness_authority(),
            statements(&format!(
                "BROKER '{}', SECURITY PROTOCOL SSL, SSL KEY = SECRET key, \
                 SSL CERTIFICATE = '{}', SSL CERTIFICATE AUTHORITY = SECRET authority",
                kafka.bootstrap_for(Listener::Ssl),
                read(&certificate.certificate)
            ))
        ),
    );
    let principal = outflow_tests::kafka::SSL_CLIENT_PRINCIPAL;
    kafka
        .grant(
            principal,
            &[(
                AclResource::Topic(progress_topic.clone()),
                vec![AclOperation::Read],
            )],
        )
        .unwrap();
    let list = || {
        Command::new(outflow_binary())
            .args(["txn", "list", &ssl, "--sink", &sink])
            .output()
            .unwrap()
    };
    let refused = list();
    let message = String::from_utf8_lossy(&refused.stderr).into_owned();
    println!("without Describe on the ids: {message}");
    assert!(!refused.status.success());
    assert!(
        message.contains(&format!(
            "error: sink \"{sink}\": FindCoordinator for TransactionalId '{prefix}{sink}-0': not authorized to Describe TransactionalId \
             '{prefix}{sink}-0'; grant Describe on TransactionalId prefix '{prefix}' (pattern type \
             PREFIXED)"
        )),
        "{message}"
    );

    kafka
        .grant(
            principal,
            &[(
                AclResource::TransactionalIdPrefix(prefix.clone()),
                vec![AclOperation::Describe],
            )],
        )
        .unwrap();
    let listed = list();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let shown = String::from_utf8_lossy(&listed.stdout);
    assert!(
        shown.contains(&format!("{prefix}{sink}-0  worker 0  ")) && !shown.contains("Ongoing"),
        "{shown}"
    );
}
