//! Secure Kafka connections: TLS with an authority and client certificates through a
//! TLS-terminating proxy (stunnel) in front of Tansu, and SASL PLAIN / SCRAM options.
//!
//! Tansu cannot serve TLS and refuses every SASL mechanism in its handshake answer, and
//! librdkafka's mock cluster has no SASL at all, so TLS is tested end to end through the
//! proxy, while SASL is tested as far as the peers here allow: the librdkafka options each
//! mechanism produces, and SASL attempts (plaintext and over TLS) against a broker that refuses
//! them, which must fail fast naming the connection and never the password, in the error or in
//! librdkafka's log at `debug=all`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use outflow::connection::{ConnectionError, KafkaConnection};
use outflow::statement::Catalog;
use outflow::topic::{ensure_data_topic, TopicSettings};
use outflow::{SinkPlan, SinkStatus};
use outflow_tests::broker::{shared_broker, unique_name};
use outflow_tests::pipeline::{
    expected_upserts, history_row_json, random_history, run_sink, RunOptions,
};
use outflow_tests::tls::{fixture, ProxySettings, TlsBroker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, TopicPartitionList};

const PASSWORD: &str = "correct-horse-battery-staple";
/// How long a failing probe may take: the probe's own timeout plus room for a loaded machine.
const PROBE_TIMEOUT: Duration = Duration::from_secs(4);
const FAIL_WITHIN: Duration = Duration::from_secs(8);

/// The body of the client key, without its armour: what would leak if the key leaked.
fn client_key_body() -> String {
    fixture("client.key")
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(PASSWORD), "the SASL password leaked: {text}");
    for line in fixture("client.key")
        .lines()
        .filter(|l| !l.starts_with("-----"))
    {
        assert!(!text.contains(line), "the client key leaked: {text}");
    }
    assert!(
        !text.contains(&client_key_body()),
        "the client key leaked: {text}"
    );
}

/// Statements for a connection `k` to `bootstrap` over TLS; `tls_options` lists its SSL
/// options, the certificates given as secrets the way a user holding them in a vault would.
fn tls_catalog_sql(
    bootstrap: &str,
    authority: &str,
    client_certificate: Option<(&str, &str)>,
) -> String {
    let mut sql = format!("CREATE SECRET ca AS '{}';\n", fixture(authority));
    let mut options = vec![
        format!("BROKER '{bootstrap}'"),
        "SSL CERTIFICATE AUTHORITY = SECRET ca".to_string(),
    ];
    if let Some((certificate, key)) = client_certificate {
        sql.push_str(&format!(
            "CREATE SECRET client_key AS '{}';\n",
            fixture(key)
        ));
        sql.push_str(&format!(
            "CREATE SECRET client_certificate AS '{}';\n",
            fixture(certificate)
        ));
        options.push("SSL KEY = SECRET client_key".to_string());
        options.push("SSL CERTIFICATE = SECRET client_certificate".to_string());
    }
    sql.push_str(&format!(
        "CREATE CONNECTION k TO KAFKA ({});\n",
        options.join(", ")
    ));
    sql.push_str(
        "CREATE TABLE t (id bigint PRIMARY KEY, value text NOT NULL, amount numeric(10,2) NOT NULL);\n",
    );
    sql
}

fn resolve(sql: &str) -> KafkaConnection {
    let catalog = Catalog::from_sql(sql).unwrap_or_else(|e| panic!("{}", e.render("test.sql")));
    KafkaConnection::resolve(&catalog, catalog.connection("k").expect("connection k")).unwrap()
}

/// Runs the probe and checks it failed fast, naming the connection and hiding the secrets in
/// the error and in librdkafka's log lines; returns the error and those lines.
fn failed_probe(connection: &KafkaConnection) -> (ConnectionError, Vec<String>) {
    let started = Instant::now();
    let probe = connection.probe(PROBE_TIMEOUT);
    let took = started.elapsed();
    let error = probe.result.expect_err("the probe should fail");
    let message = error.to_string();
    eprintln!("probe failed after {took:?}: {message}");
    assert!(
        took < FAIL_WITHIN,
        "the probe took {took:?} to fail: {message}"
    );
    assert!(
        message.contains("Kafka connection \"k\""),
        "the error does not name the connection: {message}"
    );
    assert_eq!(error.connection(), "k");
    assert_no_secret(&message);
    assert_no_secret(&format!("{error:?}"));
    assert_no_secret(&probe.log.join("\n"));
    (error, probe.log)
}

/// Produces one message through `config` and reads it back through it, from the start of
/// partition 0.
fn produce_and_consume(config: &ClientConfig, topic: &str) {
    let producer: BaseProducer = config.create().expect("producer over TLS");
    producer
        .send(
            BaseRecord::to(topic)
                .partition(0)
                .key("k1")
                .payload("over tls"),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue");
    producer
        .flush(Duration::from_secs(15))
        .expect("the message is delivered over TLS");

    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", unique_name("secure-group"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer over TLS");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Offset(0))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            Instant::now() < deadline,
            "the message never came back over TLS"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                assert_eq!(message.key(), Some(&b"k1"[..]));
                assert_eq!(message.payload(), Some(&b"over tls"[..]));
                return;
            }
            Some(Err(error)) => panic!("consuming over TLS: {error}"),
            None => {}
        }
    }
}

/// Every message of `topic`'s `partitions` partitions, read with `isolation.level =
/// read_committed` through `config`, partition by partition in offset order; waits for
/// `expected` messages.
fn read_all(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    expected: u64,
) -> Vec<(Vec<u8>, Option<String>)> {
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", unique_name("secure-audit"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer over TLS");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, rdkafka::Offset::Offset(0))
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    type Offsetted = (i64, Vec<u8>, Option<String>);
    let mut by_partition: BTreeMap<i32, Vec<Offsetted>> = BTreeMap::new();
    let mut seen = 0u64;
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen < expected {
        assert!(
            Instant::now() < deadline,
            "read {seen} of {expected} messages of {topic} over TLS"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let value = message
                    .payload()
                    .map(|v| String::from_utf8(v.to_vec()).unwrap());
                let entry = (
                    message.offset(),
                    message.key().unwrap_or_default().to_vec(),
                    value,
                );
                by_partition
                    .entry(message.partition())
                    .or_default()
                    .push(entry);
                seen += 1;
            }
            Some(Err(error)) => panic!("reading {topic} over TLS: {error}"),
            None => {}
        }
    }
    by_partition
        .into_values()
        .flat_map(|mut messages| {
            messages.sort_by_key(|(offset, _, _)| *offset);
            messages.into_iter().map(|(_, key, value)| (key, value))
        })
        .collect()
}

#[test]
fn sink_round_trips_over_tls_with_the_right_authority() {
    let proxied = TlsBroker::start(ProxySettings::default());
    let topic = unique_name("tls-sink");
    let prefix = unique_name("tls-tx");
    let sql = format!(
        "{}CREATE SINK \"{topic}\" FROM t INTO KAFKA CONNECTION k (TOPIC '{topic}', TOPIC PARTITION COUNT 2,
             TRANSACTIONAL ID PREFIX '{prefix}', PROGRESS GROUP ID PREFIX '{prefix}')
           KEY (id) FORMAT JSON ENVELOPE UPSERT;",
        tls_catalog_sql(&proxied.bootstrap(), "ca.pem", None)
    );
    let catalog = Catalog::from_sql(&sql).unwrap_or_else(|e| panic!("{}", e.render("test.sql")));
    let mut plan = SinkPlan::from_catalog(&catalog, &topic).unwrap();
    assert_eq!(
        plan.connection.client_config().get("security.protocol"),
        Some("SSL")
    );
    plan.connection
        .check()
        .unwrap_or_else(|e| panic!("{e}\n{}", proxied.proxy_log()));
    plan.broker_shows_aborted_records = true;
    plan.cadence.commit_interval = Duration::from_millis(50);
    plan.cadence.idle_progress_interval = Duration::from_millis(200);

    let history = random_history(11, 12, 5, 6);
    let connection = plan.connection.clone();
    let report = run_sink(
        plan,
        history.clone(),
        RunOptions {
            timeout: Duration::from_secs(30),
            ..RunOptions::default()
        },
    );
    assert!(
        !report.status.is_failed(),
        "sink over TLS failed: {report:#?}\n{}",
        proxied.proxy_log()
    );
    assert!(
        report
            .history
            .iter()
            .any(|c| c.status == SinkStatus::Running),
        "{report:#?}"
    );

    // Read back through TLS as well. Tansu's read_committed shows aborted records, so the
    // comparison is only sound because the run aborted nothing (the raw-log audit cannot be
    // used here: it follows metadata to the advertised address, which speaks only TLS).
    assert_eq!(report.total.transactions_aborted, 0, "{report:#?}");
    let records = read_all(
        connection.client_config(),
        &topic,
        2,
        report.total.messages_committed,
    );
    let mut by_key: BTreeMap<i64, Vec<Option<String>>> = BTreeMap::new();
    for (key, value) in &records {
        let key: serde_json::Value = serde_json::from_slice(key).unwrap();
        by_key
            .entry(key["id"].as_i64().unwrap())
            .or_default()
            .push(value.clone());
    }
    let expected: BTreeMap<i64, Vec<Option<String>>> = expected_upserts(&history)
        .into_iter()
        .map(|(id, values)| {
            (
                id,
                values
                    .iter()
                    .map(|v| v.as_ref().map(history_row_json))
                    .collect(),
            )
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(by_key, expected);
}

#[test]
fn trusted_client_certificate_passes_mutual_tls() {
    let proxied = TlsBroker::start(ProxySettings {
        require_client_certificate: true,
    });
    let connection = resolve(&tls_catalog_sql(
        &proxied.bootstrap(),
        "ca.pem",
        Some(("client.pem", "client.key")),
    ));
    connection
        .check()
        .unwrap_or_else(|e| panic!("{e}\n{}", proxied.proxy_log()));
    assert_no_secret(&format!("{connection:?}"));

    let topic = unique_name("mtls");
    let mut settings = TopicSettings::new(topic.clone());
    settings.partitions = Some(1);
    let report = ensure_data_topic(connection.client_config(), &settings).unwrap_or_else(|e| {
        panic!(
            "creating {topic} over mutual TLS: {e}\n{}",
            proxied.proxy_log()
        )
    });
    assert!(report.created);
    produce_and_consume(connection.client_config(), &topic);
}

#[test]
fn wrong_authority_fails_fast_naming_the_connection() {
    let proxied = TlsBroker::start(ProxySettings::default());
    let connection = resolve(&tls_catalog_sql(&proxied.bootstrap(), "other-ca.pem", None));
    let (error, _) = failed_probe(&connection);
    let message = error.to_string();
    assert!(matches!(error, ConnectionError::Tls { .. }), "{error:?}");
    assert!(
        message.starts_with(&format!(
            "cannot connect to Kafka connection \"k\" at {}: ",
            proxied.bootstrap()
        )),
        "{message}"
    );
    assert!(
        message.contains("certificate verify failed")
            && message.contains("check SSL CERTIFICATE AUTHORITY"),
        "{message}"
    );
    assert!(
        message.contains("SSL CERTIFICATE AUTHORITY"),
        "the hint is missing: {message}"
    );
}

#[test]
fn missing_or_untrusted_client_certificate_is_refused() {
    let proxied = TlsBroker::start(ProxySettings {
        require_client_certificate: true,
    });
    for (case, client) in [
        ("no client certificate", None),
        (
            "a stranger's certificate",
            Some(("other-client.pem", "other-client.key")),
        ),
    ] {
        let connection = resolve(&tls_catalog_sql(&proxied.bootstrap(), "ca.pem", client));
        let (error, _) = failed_probe(&connection);
        let message = error.to_string();
        assert!(
            matches!(error, ConnectionError::Tls { .. }),
            "{case}: {error:?}"
        );
        assert!(
            message.contains("certificate required")
                && message.contains("set SSL CERTIFICATE and SSL KEY"),
            "{case}: {message}"
        );
        assert!(
            message.contains(&proxied.bootstrap()),
            "{case}: the error does not name the address: {message}"
        );
    }
    // The proxy saw the refusals as certificate failures, not as some other fault.
    // (librdkafka offers no certificate the server's list of acceptable authorities rules out,
    // so the stranger's certificate never reaches the proxy either.)
    let log = proxied.proxy_log();
    assert!(log.contains("peer did not return a certificate"), "{log}");
}

fn sasl_connection_sql(bootstrap: &str, protocol: &str, mechanism: &str) -> String {
    format!(
        "CREATE SECRET kafka_password AS '{PASSWORD}';
         CREATE CONNECTION k TO KAFKA (
             BROKER '{bootstrap}', SECURITY PROTOCOL {protocol},
             SASL MECHANISMS = '{mechanism}', SASL USERNAME = 'alice', SASL PASSWORD = SECRET kafka_password);"
    )
}

#[test]
fn sasl_mechanisms_become_librdkafka_options() {
    for protocol in ["SASL_PLAINTEXT", "SASL_SSL"] {
        for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let connection = resolve(&sasl_connection_sql(
                "broker.example:9093",
                protocol,
                mechanism,
            ));
            let config = connection.client_config();
            let expected = [
                ("bootstrap.servers", "broker.example:9093"),
                ("security.protocol", protocol),
                ("sasl.mechanisms", mechanism),
                ("sasl.username", "alice"),
                ("sasl.password", PASSWORD),
            ];
            for (key, value) in expected {
                assert_eq!(
                    config.get(key),
                    Some(value),
                    "{protocol} {mechanism}: {key}"
                );
            }
            assert_eq!(config.get("ssl.key.pem"), None);
            // librdkafka accepts the options as they are: a client builds.
            let _: BaseProducer = config
                .create()
                .unwrap_or_else(|e| panic!("{protocol} {mechanism}: {e}"));
            let printed = format!("{connection:?}");
            assert!(
                printed.contains("sasl.password") && printed.contains(protocol),
                "{printed}"
            );
            assert_no_secret(&printed);
            assert_eq!(
                connection.redact(&format!("user alice password {PASSWORD}")),
                "user alice password <redacted>"
            );
        }
    }
}

#[test]
fn sasl_without_a_sasl_listener_fails_naming_the_connection_not_the_password() {
    // Tansu answers the SASL handshake, refusing every mechanism.
    let mut plaintext = resolve(&sasl_connection_sql(
        &shared_broker().bootstrap(),
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",
    ));
    // Every debug context, so that the probe's log shows anything librdkafka prints.
    plaintext.set("debug", "all");
    let (error, log) = failed_probe(&plaintext);
    assert!(
        matches!(error, ConnectionError::Authentication { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&shared_broker().bootstrap()) && message.contains("SCRAM-SHA-512"),
        "{message}"
    );
    assert!(
        message.contains("check SASL MECHANISMS, SASL USERNAME and SASL PASSWORD"),
        "{message}"
    );
    // The log is not an empty shell: librdkafka spoke of the SASL exchange and of its options.
    let log = log.join("\n");
    assert!(
        log.contains("SASL") && log.contains("sasl.password"),
        "{log}"
    );

    // Over TLS the handshake succeeds and SASL is what fails.
    let proxied = TlsBroker::start(ProxySettings::default());
    let sql = format!(
        "CREATE SECRET ca AS '{}';
         CREATE SECRET kafka_password AS '{PASSWORD}';
         CREATE CONNECTION k TO KAFKA (
             BROKER '{}', SSL CERTIFICATE AUTHORITY = SECRET ca,
             SASL MECHANISMS = 'PLAIN', SASL USERNAME = 'alice', SASL PASSWORD = SECRET kafka_password);",
        fixture("ca.pem"),
        proxied.bootstrap()
    );
    let mut over_tls = resolve(&sql);
    assert_eq!(
        over_tls.client_config().get("security.protocol"),
        Some("SASL_SSL")
    );
    over_tls.set("debug", "security,broker,protocol");
    let (error, _) = failed_probe(&over_tls);
    assert!(
        matches!(error, ConnectionError::Authentication { .. }),
        "TLS itself should succeed: {error:?}"
    );
}

#[test]
fn key_material_that_is_not_pem_is_refused_without_repeating_it() {
    let sql = format!(
        "CREATE SECRET client_key AS 'not-a-key-but-still-secret-{PASSWORD}';
         CREATE SECRET client_certificate AS '{}';
         CREATE CONNECTION k TO KAFKA (
             BROKER '127.0.0.1:9', SSL KEY = SECRET client_key, SSL CERTIFICATE = SECRET client_certificate);",
        fixture("client.pem")
    );
    let connection = resolve(&sql);
    let error = connection
        .check_within(PROBE_TIMEOUT)
        .expect_err("a key that is not PEM is refused");
    let message = error.to_string();
    assert!(
        matches!(error, ConnectionError::Options { .. }),
        "{error:?}"
    );
    assert!(
        message.starts_with("invalid options for Kafka connection \"k\""),
        "{message}"
    );
    assert_no_secret(&message);
    assert!(!message.contains("not-a-key-but-still-secret"), "{message}");
}
