//! Apache Kafka, the reference broker of the tests (`outflow_tests::kafka`): it starts, stops
//! and recovers its log; it hides aborted and open transactions from `read_committed`
//! readers, which Tansu cannot; it describes topics with their real configs; its SASL_SSL
//! (SCRAM-SHA-256 and -512) and SSL (client certificate required) listeners and its authorizer
//! admit and refuse whom they should; and Kafka's Java producer puts keyed records on the
//! partition that Outflow's `kafka_murmur2` picks.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outflow::partition::{kafka_murmur2, key_partition_hash, partition_for};
use outflow_tests::broker::{block_on, create_topic, unique_name};
use outflow_tests::kafka::{
    java_source_command, AclOperation, AclResource, ClientAuth, ClientCertificate, Isolation,
    Kafka, Listener, ScramMechanism, ADMIN, ALICE, KAFKA_VERSION, SSL_CLIENT_PRINCIPAL,
};
use rdkafka::admin::{
    AdminClient, AdminOptions, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DefaultProducerContext, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A record as a reader sees it: partition, key, value.
type Seen = (i32, Option<String>, Option<String>);

/// Remembers what librdkafka reports through its error and log callbacks, where the reasons
/// for refused connections (authentication, handshakes) appear.
#[derive(Clone, Default)]
struct Recorder {
    lines: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }
}

impl ClientContext for Recorder {
    fn log(&self, _level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.lines
            .lock()
            .unwrap()
            .push(format!("log {facility}: {message}"));
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.lines
            .lock()
            .unwrap()
            .push(format!("error {error}: {reason}"));
    }
}

impl ConsumerContext for Recorder {}

fn send(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    partition: i32,
    key: &str,
    value: &str,
) {
    producer
        .send(
            BaseRecord::to(topic)
                .partition(partition)
                .key(key)
                .payload(value),
        )
        .unwrap_or_else(|(e, _)| panic!("sending {key} to {topic}/{partition}: {e}"));
}

/// Counts acknowledgements and keeps the first delivery failure.
#[derive(Default)]
struct Deliveries {
    acknowledged: Mutex<usize>,
    first_failure: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => *self.acknowledged.lock().unwrap() += 1,
            Err((error, _)) => {
                self.first_failure
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| error.to_string());
            }
        }
    }
}

/// Produces `records` (partition, key, value) without a transaction and waits for every
/// delivery report; `Err` is the first failure.
fn produce(
    config: &ClientConfig,
    topic: &str,
    records: &[(i32, &str, &str)],
) -> Result<(), String> {
    let producer: BaseProducer<Deliveries> = config
        .clone()
        .set("message.timeout.ms", "10000")
        .create_with_context(Deliveries::default())
        .map_err(|e| e.to_string())?;
    for &(partition, key, value) in records {
        producer
            .send(
                BaseRecord::to(topic)
                    .partition(partition)
                    .key(key)
                    .payload(value),
            )
            .map_err(|(e, _)| e.to_string())?;
    }
    producer.flush(TIMEOUT).map_err(|e| e.to_string())?;
    let context = producer.context();
    if let Some(failure) = context.first_failure.lock().unwrap().take() {
        return Err(failure);
    }
    let acknowledged = *context.acknowledged.lock().unwrap();
    if acknowledged != records.len() {
        return Err(format!(
            "{acknowledged} of {} records acknowledged",
            records.len()
        ));
    }
    Ok(())
}

/// Every record a consumer with `isolation` returns, read from offset 0 to the end of each
/// partition (the last stable offset under `read_committed`), sorted. The consumer belongs
/// to `group` and commits its position there at the end, so a reader needs the group's READ.
fn consume(
    config: &ClientConfig,
    topic: &str,
    partitions: i32,
    isolation: Isolation,
    group: &str,
) -> Result<Vec<Seen>, KafkaError> {
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation.name())
        .create()?;
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment.add_partition_offset(topic, partition, Offset::Offset(0))?;
    }
    consumer.assign(&assignment)?;
    let mut at_end = BTreeSet::new();
    let mut seen = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while at_end.len() < partitions as usize {
        if Instant::now() >= deadline {
            return Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => seen.push((
                message.partition(),
                message.key_view::<str>().map(|k| k.unwrap().to_owned()),
                message.payload_view::<str>().map(|v| v.unwrap().to_owned()),
            )),
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(e)) => return Err(e),
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync)?;
    seen.sort();
    Ok(seen)
}

fn seen(records: &[(i32, &str, &str)]) -> Vec<Seen> {
    let mut seen: Vec<Seen> = records
        .iter()
        .map(|&(p, k, v)| (p, Some(k.to_owned()), Some(v.to_owned())))
        .collect();
    seen.sort();
    seen
}

fn admin(config: &ClientConfig) -> AdminClient<DefaultClientContext> {
    config.create().expect("admin client")
}

#[test]
fn starts_recovers_from_a_kill_and_stops() {
    let began = Instant::now();
    let mut kafka = Kafka::start();
    println!(
        "Apache Kafka {KAFKA_VERSION} started in {:.2?} (harness total {:.2?}: storage format \
         and start)",
        kafka.started_in(),
        began.elapsed()
    );
    let bootstrap = kafka.bootstrap();
    let plaintext = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .clone();
    let metadata = admin(&plaintext)
        .inner()
        .fetch_metadata(None, TIMEOUT)
        .expect("metadata");
    let brokers: Vec<_> = metadata
        .brokers()
        .iter()
        .map(|b| (b.id(), b.host().to_owned(), b.port()))
        .collect();
    assert_eq!(
        brokers,
        [(
            1,
            "127.0.0.1".to_owned(),
            i32::from(kafka.port(Listener::Plaintext))
        )]
    );

    let topic = unique_name("restart");
    create_topic(&bootstrap, &topic, 2, &[]);
    let before = [(0, "a", "1"), (1, "b", "2")];
    produce(&plaintext, &topic, &before).expect("produce before the kill");

    let pid = kafka.pid().expect("a running broker has a pid");
    kafka.kill();
    assert!(!kafka.is_running());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/status"))
                .is_ok_and(|s| s.contains("State:\tZ")),
        "pid {pid} outlived kill()"
    );
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, kafka.port(Listener::Plaintext)));
    assert!(
        TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err(),
        "{address} still accepts after kill()"
    );

    kafka.restart();
    println!("restarted after SIGKILL in {:.2?}", kafka.started_in());
    assert_eq!(kafka.bootstrap(), bootstrap, "restart keeps the ports");
    let read = consume(
        &plaintext,
        &topic,
        2,
        Isolation::ReadCommitted,
        &unique_name("g"),
    )
    .expect("read after the restart");
    assert_eq!(read, seen(&before), "records acknowledged before the kill");

    let stopped_in = kafka.stop();
    println!("graceful stop took {stopped_in:.2?}");
    assert!(!kafka.is_running());
    assert!(
        TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_err(),
        "{address} still accepts after stop()"
    );
    // A graceful stop leaves the marker that spares the next start its log recovery; a kill
    // does not (the restart above recovered the logs).
    assert!(
        kafka.log_dir().join(".kafka_cleanshutdown").is_file(),
        "no clean-shutdown marker in {}",
        kafka.log_dir().display()
    );
    let log = kafka.log();
    let (_, after_kill) = log
        .split_once("=== outflow test harness: start 2 ===")
        .expect("the harness marks each start in the log");
    assert!(
        after_kill.contains("Recovering 2 logs") && after_kill.contains("no clean shutdown file"),
        "the restart after the kill did not recover the topic's two partitions"
    );
    assert!(
        log.contains("[BrokerServer id=1] shut down completed"),
        "no completed shutdown in the log:\n{}",
        &log[log.len().saturating_sub(3000)..]
    );
}

#[test]
fn read_committed_sees_only_committed_transactions() {
    let kafka = Kafka::shared();
    let bootstrap = kafka.bootstrap();
    let topic = unique_name("txn");
    create_topic(&bootstrap, &topic, 3, &[]);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", unique_name("txn-producer"))
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");

    let committed = [
        (0, "k0", "committed-1"),
        (1, "k1", "committed-1"),
        (2, "k2", "committed-1"),
    ];
    producer.begin_transaction().unwrap();
    for &(p, k, v) in &committed {
        send(&producer, &topic, p, k, v);
    }
    producer.commit_transaction(TIMEOUT).expect("commit");

    let aborted = [(0, "k0", "ABORTED"), (2, "k2", "ABORTED")];
    producer.begin_transaction().unwrap();
    for &(p, k, v) in &aborted {
        send(&producer, &topic, p, k, v);
    }
    // Flushed, so the aborted records are in the log, not just dropped by the client.
    producer.flush(TIMEOUT).expect("flush before abort");
    producer.abort_transaction(TIMEOUT).expect("abort");

    let later = [(1, "k1", "committed-2")];
    producer.begin_transaction().unwrap();
    for &(p, k, v) in &later {
        send(&producer, &topic, p, k, v);
    }
    producer.commit_transaction(TIMEOUT).expect("second commit");

    let plaintext = kafka.client_config(&ClientAuth::Plaintext);
    let all_committed: Vec<_> = committed.iter().chain(&later).copied().collect();
    assert_eq!(
        consume(
            &plaintext,
            &topic,
            3,
            Isolation::ReadCommitted,
            &unique_name("g")
        )
        .unwrap(),
        seen(&all_committed),
        "read_committed"
    );
    let everything: Vec<_> = all_committed.iter().chain(&aborted).copied().collect();
    assert_eq!(
        consume(
            &plaintext,
            &topic,
            3,
            Isolation::ReadUncommitted,
            &unique_name("g")
        )
        .unwrap(),
        seen(&everything),
        "read_uncommitted shows the aborted records, so they did reach the log"
    );

    // An open transaction holds read_committed readers at the last stable offset.
    let open = [(0, "k0", "open-then-committed")];
    producer.begin_transaction().unwrap();
    send(&producer, &topic, 0, "k0", "open-then-committed");
    producer.flush(TIMEOUT).expect("flush the open transaction");
    assert_eq!(
        consume(
            &plaintext,
            &topic,
            3,
            Isolation::ReadCommitted,
            &unique_name("g")
        )
        .unwrap(),
        seen(&all_committed),
        "read_committed while a transaction is open"
    );
    producer
        .commit_transaction(TIMEOUT)
        .expect("commit the open transaction");
    let finally: Vec<_> = all_committed.iter().chain(&open).copied().collect();
    assert_eq!(
        consume(
            &plaintext,
            &topic,
            3,
            Isolation::ReadCommitted,
            &unique_name("g")
        )
        .unwrap(),
        seen(&finally),
        "read_committed after the commit"
    );

    // Kafka's own Java consumer agrees.
    let mut java: Vec<String> = kafka
        .console_consume(
            &topic,
            finally.len(),
            Isolation::ReadCommitted,
            Duration::from_secs(20),
        )
        .expect("console consumer");
    java.sort();
    let mut expected: Vec<String> = finally
        .iter()
        .map(|(_, k, v)| format!("{k}\t{v}"))
        .collect();
    expected.sort();
    assert_eq!(java, expected, "Kafka's console consumer, read_committed");
}

#[test]
fn created_topic_is_described_with_its_configs() {
    let kafka = Kafka::shared();
    let admin = admin(&kafka.client_config(&ClientAuth::Plaintext));
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let topic = unique_name("described");
    let new_topic = NewTopic::new(&topic, 5, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("retention.ms", "3600000")
        .set("max.message.bytes", "2097152");
    assert_eq!(
        block_on(admin.create_topics([&new_topic], &options)).unwrap(),
        [Ok(topic.clone())]
    );
    assert_eq!(
        block_on(admin.create_topics([&new_topic], &options)).unwrap(),
        [Err((topic.clone(), RDKafkaErrorCode::TopicAlreadyExists))]
    );
    // One broker cannot hold three replicas; Tansu accepts this silently.
    let too_many = unique_name("rf3");
    assert_eq!(
        block_on(admin.create_topics(
            [&NewTopic::new(&too_many, 1, TopicReplication::Fixed(3))],
            &options
        ))
        .unwrap(),
        [Err((too_many, RDKafkaErrorCode::InvalidReplicationFactor))]
    );

    // CreateTopics answers once the controller committed the topic; the broker learns of it
    // from the metadata log a moment later.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(&topic), TIMEOUT)
            .expect("metadata");
        let partitions = metadata.topics()[0].partitions().len();
        if partitions == 5 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metadata shows {partitions} partitions, not 5"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let described = block_on(admin.describe_configs([&ResourceSpecifier::Topic(&topic)], &options))
        .expect("DescribeConfigs");
    let resource = described[0].as_ref().expect("the topic's configs");
    let entry = |name: &str| {
        resource
            .get(name)
            .unwrap_or_else(|| panic!("DescribeConfigs lacks {name}"))
    };
    for (name, value) in [
        ("cleanup.policy", "compact"),
        ("retention.ms", "3600000"),
        ("max.message.bytes", "2097152"),
    ] {
        let entry = entry(name);
        assert_eq!(entry.value.as_deref(), Some(value), "{name}");
        assert_eq!(entry.source, ConfigSource::DynamicTopic, "{name}");
        assert!(!entry.is_default, "{name}");
    }
    // Every topic config is described, the ones not set with the broker's defaults.
    let segment = entry("segment.bytes");
    assert_eq!(segment.value.as_deref(), Some("1073741824"));
    assert_eq!(segment.source, ConfigSource::Default);
    // Set in server.properties, yet described as a cluster-wide dynamic default: Kafka 4
    // copies it into the metadata log at the first start, for eligible leader replicas
    // (KIP-966).
    let min_isr = entry("min.insync.replicas");
    assert_eq!(min_isr.value.as_deref(), Some("1"));
    assert_eq!(min_isr.source, ConfigSource::DynamicDefaultBroker);
    assert!(
        resource.entries.len() > 20,
        "only {} configs described",
        resource.entries.len()
    );
}

/// Whether `config` can fetch metadata; when not, the error and what librdkafka reported
/// through its error and log callbacks, where the reason for a refused connection appears.
/// A refused client retries until its metadata request times out, so this stops at the
/// first reported error instead.
fn probe(config: &ClientConfig) -> Result<(), String> {
    let recorder = Recorder::default();
    let consumer: BaseConsumer<Recorder> = config
        .clone()
        // librdkafka's log level follows the `log` crate's, which is off in tests.
        .set_log_level(RDKafkaLogLevel::Warning)
        .create_with_context(recorder.clone())
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let error = match consumer.fetch_metadata(None, Duration::from_secs(1)) {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };
        // Error events reach the context when the client is polled.
        if let Some(Err(polled)) = consumer.poll(Duration::from_millis(100)) {
            recorder
                .lines
                .lock()
                .unwrap()
                .push(format!("poll {polled}"));
        }
        let reported = recorder.text();
        if reported.contains("error ") || Instant::now() >= deadline {
            return Err(format!("{error}\n{reported}"));
        }
    }
}

#[test]
fn scram_sha_256_and_512_admit_the_right_password_only() {
    let kafka = Kafka::shared();
    let topic = unique_name("scram");
    create_topic(&kafka.bootstrap(), &topic, 1, &[]);
    for mechanism in ScramMechanism::ALL {
        let auth = ClientAuth::scram(mechanism, &ADMIN);
        let config = kafka.client_config(&auth);
        let records = [(0, "user", mechanism.name())];
        produce(&config, &topic, &records)
            .unwrap_or_else(|e| panic!("{mechanism} produce as admin: {e}"));
        let read = consume(
            &config,
            &topic,
            1,
            Isolation::ReadCommitted,
            &unique_name("g"),
        )
        .unwrap_or_else(|e| panic!("{mechanism} read as admin: {e}"));
        assert!(read.contains(&seen(&records)[0]), "{mechanism}: {read:?}");

        let wrong = kafka.client_config(&ClientAuth::Scram {
            mechanism,
            username: ADMIN.name.to_owned(),
            password: "not-the-password".to_owned(),
        });
        let error = probe(&wrong).expect_err("a wrong password must be refused");
        assert!(
            error.contains(&format!(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism {mechanism}"
            )),
            "{mechanism}, wrong password: {error}"
        );
        assert!(
            error.contains("Global error: Authentication (Local: Authentication failure)"),
            "{mechanism}, wrong password, the error event: {error}"
        );
        assert!(
            !error.contains("not-the-password"),
            "the password leaked: {error}"
        );
    }
}

#[test]
fn acls_decide_what_an_ordinary_scram_user_may_do() {
    let kafka = Kafka::shared();
    let topic = unique_name("acl");
    let group = unique_name("acl-group");
    create_topic(&kafka.bootstrap(), &topic, 1, &[]);
    let alice = kafka.client_config(&ClientAuth::scram(ScramMechanism::Sha512, &ALICE));
    let records = [(0, "from", "alice")];

    let refused = produce(&alice, &topic, &records).expect_err("alice has no ACLs yet");
    assert!(
        refused.contains("Topic authorization failed") || refused.contains("TopicAuthorization"),
        "{refused}"
    );

    kafka
        .add_acls(
            &ALICE.principal(),
            &[AclOperation::Write, AclOperation::Read],
            &AclResource::Topic(topic.clone()),
        )
        .expect("topic ACLs");
    produce(&alice, &topic, &records).expect("alice may write now");
    let no_group = consume(&alice, &topic, 1, Isolation::ReadCommitted, &group)
        .expect_err("alice may not commit in the group yet");
    assert!(
        matches!(
            no_group.rdkafka_error_code(),
            Some(RDKafkaErrorCode::GroupAuthorizationFailed)
        ),
        "{no_group}"
    );

    kafka
        .add_acls(
            &ALICE.principal(),
            &[AclOperation::Read],
            &AclResource::GroupPrefix("acl-group".to_owned()),
        )
        .expect("group ACLs");
    assert_eq!(
        consume(&alice, &topic, 1, Isolation::ReadCommitted, &group).unwrap(),
        seen(&records)
    );

    kafka
        .remove_acls(
            &ALICE.principal(),
            &[AclOperation::Write],
            &AclResource::Topic(topic.clone()),
        )
        .expect("remove the write ACL");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match produce(&alice, &topic, &records) {
            Err(e) if e.contains("authorization") || e.contains("Authorization") => break,
            outcome => assert!(
                Instant::now() < deadline,
                "alice still writes after the ACL was removed: {outcome:?}"
            ),
        }
    }
}

#[test]
fn ssl_requires_a_trusted_client_certificate() {
    let kafka = Kafka::shared();
    let topic = unique_name("mtls");
    create_topic(&kafka.bootstrap(), &topic, 1, &[]);
    kafka
        .add_acls(
            SSL_CLIENT_PRINCIPAL,
            &[AclOperation::Write, AclOperation::Read],
            &AclResource::Topic(topic.clone()),
        )
        .expect("topic ACLs for the certificate's principal");
    kafka
        .add_acls(
            SSL_CLIENT_PRINCIPAL,
            &[AclOperation::Read],
            &AclResource::GroupPrefix("mtls-group".to_owned()),
        )
        .expect("group ACLs for the certificate's principal");

    let with_certificate = kafka.client_config(&ClientAuth::client_certificate());
    let records = [(0, "over", "mutual-tls")];
    produce(&with_certificate, &topic, &records).expect("produce with a client certificate");
    assert_eq!(
        consume(
            &with_certificate,
            &topic,
            1,
            Isolation::ReadCommitted,
            &unique_name("mtls-group")
        )
        .expect("read with a client certificate"),
        seen(&records)
    );

    let without = kafka.client_config(&ClientAuth::Tls { certificate: None });
    let error = probe(&without).expect_err("no client certificate must be refused");
    assert!(
        error.contains("alert bad certificate"),
        "without a certificate: {error}"
    );

    let untrusted = kafka.client_config(&ClientAuth::Tls {
        certificate: Some(ClientCertificate::untrusted()),
    });
    let error = probe(&untrusted).expect_err("an unknown authority's certificate must be refused");
    assert!(
        error.contains("alert bad certificate"),
        "untrusted certificate: {error}"
    );
    // TLS 1.3 lists the authorities the server accepts; librdkafka then keeps the certificate.
    assert!(
        error.contains("No matching issuer found in server trusted certificate authorities"),
        "untrusted certificate: {error}"
    );
}

/// Keys whose partitions the Java producer and Outflow must agree on: text, binary, every
/// length from 0 to 40 bytes (murmur2 handles the 1–3 byte tail separately), and non-ASCII.
fn partitioning_keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"a".to_vec(),
        b"emea".to_vec(),
        b"order-17".to_vec(),
        "zürich ☃".as_bytes().to_vec(),
        b"{\"id\":42}".to_vec(),
        vec![0x00],
        vec![0xff; 7],
        vec![0x80, 0x00, 0x00, 0x00],
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for length in 0..=40 {
        for _ in 0..4 {
            let key = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            keys.push(key);
        }
    }
    for n in 0..200 {
        keys.push(format!("customer-{n}").into_bytes());
    }
    keys
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn java_default_partitioner_agrees_with_kafka_murmur2() {
    let kafka = Kafka::shared();
    let keys = partitioning_keys();
    let topics: Vec<(String, i32)> = [12, 7, 1]
        .into_iter()
        .map(|partitions| (unique_name(&format!("murmur2-{partitions}")), partitions))
        .collect();
    for (topic, partitions) in &topics {
        create_topic(&kafka.bootstrap(), topic, *partitions, &[]);
    }
    let mut command = java_source_command("KeyPartitions.java").expect("java");
    command
        .arg(kafka.bootstrap())
        .args(topics.iter().map(|(topic, _)| topic))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("running KeyPartitions.java");
    let mut stdin = child.stdin.take().unwrap();
    for key in &keys {
        writeln!(stdin, "{}", hex(key)).unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "KeyPartitions.java failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        keys.len() * topics.len(),
        "one line per record:\n{stdout}"
    );
    let expected = topics
        .iter()
        .flat_map(|(topic, partitions)| keys.iter().map(move |key| (topic, *partitions, key)));
    let mut used = BTreeSet::new();
    for ((topic, partitions, key), line) in expected.zip(&lines) {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 4, "line {line:?}");
        assert_eq!(
            (fields[0], fields[1]),
            (topic.as_str(), hex(key).as_str()),
            "lines come topic by topic, in key order"
        );
        let java: i32 = fields[2].parse().unwrap();
        assert_eq!(
            java,
            kafka_murmur2(key) % partitions,
            "key {} on {partitions} partitions",
            hex(key)
        );
        assert_eq!(
            partition_for(key_partition_hash(Some(key)), partitions),
            java,
            "the sink's default partition for key {}",
            hex(key)
        );
        used.insert((topic, java));
    }
    for (topic, partitions) in &topics {
        let spread = used.iter().filter(|(t, _)| *t == topic).count();
        assert_eq!(
            spread, *partitions as usize,
            "keys spread over every partition of {topic}"
        );
    }
}
