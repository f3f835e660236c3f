//! The sink under faults: librdkafka's mock cluster refusing transactions and taking its
//! broker down, and a fenced producer whose last act is a commit: on Tansu it only ever times
//! out, on Apache Kafka it is refused at once.
//!
//! The mock cluster neither fences nor hides aborted records, and writes no control batches: a
//! reader sees every record a producer delivered, aborted ones included. The audits here
//! account for that gap precisely: the records of an aborted transaction are messages the sink
//! staged but never counted as committed, so per key the committed history must be a
//! subsequence of what the topic shows, the last value must be the final one, and the surplus
//! over all keys is at most `messages_staged - messages_committed` (zero when nothing was
//! aborted, in which case the histories must match exactly).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use outflow::producer::{DeliveryMode, ProducerDriver, ProducerSettings, SinkRecord};
use outflow::statement::Catalog;
use outflow::{SinkPlan, SinkReport, SinkStatus};
use outflow_protocol::{Action, Cadence, ErrorKind, Event, SinkNames, TxnError};
use outflow_tests::broker::unique_name;
use outflow_tests::pipeline::{expected_json, random_history, run_prepared, run_sink, RunOptions};
use outflow_tests::target::Target;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const PROGRESS: &str = "outflow-progress";

/// A one-broker mock cluster with the sink's data topic (3 partitions) and progress topic.
fn mock_cluster(topic: &str) -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster starts");
    cluster.create_topic(topic, 3, 1).unwrap();
    cluster.create_topic(PROGRESS, 1, 1).unwrap();
    cluster
}

fn plan(bootstrap: &str, topic: &str, with: &str) -> SinkPlan {
    let sql = format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{bootstrap}', SECURITY PROTOCOL PLAINTEXT, PROGRESS TOPIC '{PROGRESS}');
         CREATE TABLE t (id bigint PRIMARY KEY, value text NOT NULL, amount numeric(10,2) NOT NULL);
         CREATE SINK \"{topic}\" FROM t INTO KAFKA CONNECTION k (TOPIC '{topic}', TOPIC PARTITION COUNT 3)
           KEY (id) FORMAT JSON ENVELOPE UPSERT {with};"
    );
    let catalog = Catalog::from_sql(&sql).unwrap_or_else(|e| panic!("{}", e.render("test.sql")));
    let mut plan = SinkPlan::from_catalog(&catalog, topic).unwrap();
    plan.broker_shows_aborted_records = true;
    plan.cadence.commit_interval = Duration::from_millis(50);
    plan.cadence.idle_progress_interval = Duration::from_millis(200);
    plan.cadence.retry_backoff = Duration::from_millis(50);
    plan.cadence.max_retry_backoff = Duration::from_millis(400);
    plan
}

/// Every record of `topic` on the mock, per key in offset order (values as JSON text).
fn read_all(
    bootstrap: &str,
    topic: &str,
    expected_at_least: usize,
) -> BTreeMap<i64, Vec<Option<String>>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique_name("audit"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out: BTreeMap<i64, Vec<Option<String>>> = BTreeMap::new();
    let mut count = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline
        && (count < expected_at_least || quiet_since.elapsed() < Duration::from_millis(500))
    {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let key: serde_json::Value =
                    serde_json::from_slice(message.key().unwrap()).unwrap();
                let value = message
                    .payload()
                    .map(|v| String::from_utf8(v.to_vec()).unwrap());
                out.entry(key["id"].as_i64().unwrap())
                    .or_default()
                    .push(value);
                count += 1;
                quiet_since = Instant::now();
            }
            Some(Err(error)) => panic!("reading {topic}: {error}"),
            None => {}
        }
    }
    out
}

/// The audit described at the top of this file.
fn assert_committed_once(
    report: &SinkReport,
    seen: &BTreeMap<i64, Vec<Option<String>>>,
    expected: &BTreeMap<i64, Vec<Option<String>>>,
) {
    let surplus_bound = report.total.messages_staged - report.total.messages_committed;
    let mut surplus = 0;
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (id, want) in expected {
        let got = &seen[id];
        assert_eq!(got.last(), want.last(), "final value of key {id}");
        let mut rest = got.iter();
        for value in want {
            assert!(
                rest.any(|g| g == value),
                "key {id}: committed {want:?} is not within {got:?}"
            );
        }
        surplus += got.len() - want.len();
    }
    assert!(surplus as u64 <= surplus_bound, "{surplus} records beyond the committed ones, but only {surplus_bound} uncommitted: {report:#?}");
    let committed: usize = expected.values().map(Vec::len).sum();
    assert_eq!(
        report.total.messages_committed as usize, committed,
        "{report:#?}"
    );
}

#[test]
fn at_least_once_delivers_everything_through_a_broker_without_transactions() {
    let topic = unique_name("alo");
    let cluster = mock_cluster(&topic);
    // Idempotent producers keep working; transactions do not.
    for api in [
        RDKafkaApiKey::AddPartitionsToTxn,
        RDKafkaApiKey::AddOffsetsToTxn,
        RDKafkaApiKey::EndTxn,
        RDKafkaApiKey::TxnOffsetCommit,
    ] {
        cluster.apiversion(api, None, None).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let history = random_history(31, 30, 8, 12);
    let plan = plan(
        &bootstrap,
        &topic,
        "WITH (DELIVERY GUARANTEE = 'at-least-once')",
    );
    let report = run_sink(
        plan,
        history.clone(),
        RunOptions {
            workers: 2,
            timeout: Duration::from_secs(20),
            ..RunOptions::default()
        },
    );
    assert!(!report.status.is_failed(), "{report:#?}");
    let expected = expected_json(&history);
    let seen = read_all(&bootstrap, &topic, expected.values().map(Vec::len).sum());
    assert_eq!(seen, expected);
}

#[test]
fn exactly_once_against_a_broker_refusing_transactions_points_at_at_least_once() {
    let topic = unique_name("eo-refused");
    let cluster = mock_cluster(&topic);
    cluster.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED; 8],
    );
    let plan = plan(&cluster.bootstrap_servers(), &topic, "");
    let report = run_sink(
        plan,
        random_history(3, 5, 2, 3),
        RunOptions {
            timeout: Duration::from_secs(20),
            ..RunOptions::default()
        },
    );
    let SinkStatus::Failed { error } = &report.status else {
        panic!("the sink did not fail: {report:#?}")
    };
    assert!(error.contains("at-least-once"), "{error}");
    assert!(error.contains("TransactionalId"), "{error}");
    assert_eq!(report.total.messages_committed, 0);
}

#[test]
fn the_sink_stalls_while_the_broker_is_down_and_recovers_exactly_once() {
    let topic = unique_name("outage");
    let cluster = mock_cluster(&topic);
    let bootstrap = cluster.bootstrap_servers();
    let history = random_history(41, 25, 16, 8);
    let mut plan = plan(&bootstrap, &topic, "");
    plan.call_timeout = Duration::from_millis(700);
    plan.cadence.transaction_timeout = Duration::from_secs(30);
    let prepared = plan.preflight().expect("the sink prepares");
    let monitor = prepared.monitor().clone();
    // The mock cluster stays on this thread (its handle is not `Send`); the sink runs beside it.
    let options = RunOptions {
        pace: Some(Duration::from_millis(120)),
        timeout: Duration::from_secs(30),
        ..RunOptions::default()
    };
    let sink = {
        let history = history.clone();
        std::thread::spawn(move || run_prepared(prepared, history, options))
    };
    let waiting = Instant::now();
    while monitor.committed_frontier().is_none_or(|f| f < 4)
        && waiting.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Produce and EndTxn errors the client retries by itself, then an outage it cannot.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    cluster.request_errors(
        RDKafkaApiKey::EndTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE; 2],
    );
    // The outage begins once the client has come through those errors: two commits after
    // them. (librdkafka 2.12 stops looking for its transaction coordinator when EndTxn answers
    // COORDINATOR_NOT_AVAILABLE and every broker is unreachable at its next lookup; its commit
    // then never completes, and the sink fails with the fenced error once the transaction
    // timeout has passed.)
    let committed = |monitor: &outflow::SinkMonitor| monitor.report().total.transactions_committed;
    let before = committed(&monitor);
    let waiting = Instant::now();
    while committed(&monitor) < before + 2 && waiting.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(10));
    }
    cluster.broker_down(1).unwrap();
    let down = Instant::now();
    while !matches!(monitor.status(), SinkStatus::Stalled { .. })
        && down.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    cluster.broker_up(1).unwrap();
    let report = sink.join().unwrap();
    assert!(!report.status.is_failed(), "{report:#?}");
    let stalled = report
        .history
        .iter()
        .position(|c| matches!(&c.status, SinkStatus::Stalled { error, .. } if !error.is_empty()));
    let stalled = stalled
        .unwrap_or_else(|| panic!("the outage never showed as a stall: {:#?}", report.history));
    assert!(
        report.history[stalled..]
            .iter()
            .any(|c| c.status == SinkStatus::Running),
        "the sink did not recover: {:#?}",
        report.history
    );
    let expected = expected_json(&history);
    let seen = read_all(&bootstrap, &topic, expected.values().map(Vec::len).sum());
    assert_committed_once(&report, &seen, &expected);
}

/// A zombie: worker 0 of a sink delivers a record in a transaction, a second instance of the
/// same worker fences it, and the zombie's last act is to commit. Returns the zombie's error,
/// how many of its commits timed out before it, how long that took, and the two drivers.
struct Zombie {
    topic: String,
    error: TxnError,
    timeouts: usize,
    elapsed: Duration,
    zombie: ProducerDriver<SinkRecord>,
    successor: ProducerDriver<SinkRecord>,
}

fn wait_for_event(driver: &ProducerDriver<SinkRecord>) -> Event<SinkRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(event) = driver.poll_event() {
            return event;
        }
        assert!(Instant::now() < deadline, "no answer from the producer");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `init_transactions` until it succeeds, as the machine would: the short call timeout
/// of these producers can pass while the broker creates its transaction state topic.
fn initialize(driver: &ProducerDriver<SinkRecord>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        driver.execute(Action::InitTransactions);
        match wait_for_event(driver) {
            Event::Initialized(Ok(())) => return,
            Event::Initialized(Err(error))
                if matches!(error.kind, ErrorKind::TimedOut | ErrorKind::Retriable)
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => panic!("init_transactions: {other:?}"),
        }
    }
}

fn record(value: &[u8]) -> SinkRecord {
    SinkRecord {
        partition: Some(0),
        key: Some(b"k".to_vec()),
        value: Some(value.to_vec()),
        ..SinkRecord::default()
    }
}

fn zombie_commits(target: Target) -> Zombie {
    let topic = unique_name("zombie");
    let progress = unique_name("zombie-progress");
    target.create_topic(&topic, 1, &[]);
    target.create_topic(&progress, 1, &[]);
    let config = target.client_config();
    let names = SinkNames::new(
        unique_name("zombie-sink"),
        unique_name("tx"),
        unique_name("pg"),
    );
    let mut settings =
        ProducerSettings::new(names, 0, topic.clone(), progress, &Cadence::default());
    settings.mode = DeliveryMode::ExactlyOnce;
    settings.transaction_timeout = Duration::from_millis(2500);
    settings.call_timeout = Duration::from_millis(600);

    let zombie: ProducerDriver<SinkRecord> =
        ProducerDriver::start(&config, settings.clone(), Box::new(|| {})).unwrap();
    initialize(&zombie);
    zombie.execute(Action::BeginTransaction);
    assert!(matches!(wait_for_event(&zombie), Event::Began(Ok(()))));
    zombie.execute(Action::Produce {
        transaction: 1,
        bytes: 2,
        message: record(b"zombie"),
    });
    assert!(matches!(
        wait_for_event(&zombie),
        Event::Delivered { result: Ok(()), .. }
    ));

    let successor: ProducerDriver<SinkRecord> =
        ProducerDriver::start(&config, settings, Box::new(|| {})).unwrap();
    initialize(&successor);

    let started = Instant::now();
    let mut timeouts = 0;
    let error = loop {
        zombie.execute(Action::CommitTransaction);
        match wait_for_event(&zombie) {
            Event::Committed(Err(error)) if error.kind == ErrorKind::TimedOut => timeouts += 1,
            Event::Committed(Err(error)) => break error,
            other => panic!("the zombie's commit did not fail: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still timing out after {timeouts} tries"
        );
    };
    Zombie {
        topic,
        error,
        timeouts,
        elapsed: started.elapsed(),
        zombie,
        successor,
    }
}

/// Tansu answers a fenced producer's EndTxn by closing the connection, so a zombie whose last
/// act is a commit sees only timeouts. Past the transaction timeout the commit is reported as
/// fenced, and the machine fails the worker instead of retrying for ever.
#[test]
fn a_fenced_producer_that_only_commits_fails_after_the_transaction_timeout() {
    let Zombie {
        error,
        timeouts,
        elapsed,
        zombie,
        successor,
        ..
    } = zombie_commits(Target::Tansu);
    assert_eq!(error.kind, ErrorKind::Fenced, "{error}");
    assert!(
        error
            .message
            .contains("longer than the transaction timeout"),
        "{error}"
    );
    assert!(timeouts >= 2, "{timeouts} timeouts before {error}");
    assert!(elapsed >= Duration::from_millis(2500));
    zombie.shutdown();
    successor.shutdown();
}

/// Apache Kafka refuses a fenced producer's EndTxn at once: the zombie's commit fails as fenced
/// on its first try, well within the transaction timeout, and its delivered record never
/// reaches a `read_committed` reader, while the successor's does.
#[test]
fn on_kafka_a_fenced_producer_that_only_commits_is_refused_at_once_and_its_record_never_shows() {
    let Zombie {
        topic,
        error,
        timeouts,
        elapsed,
        zombie,
        successor,
    } = zombie_commits(Target::Kafka);
    assert_eq!(error.kind, ErrorKind::Fenced, "{error}");
    assert_eq!(timeouts, 0, "the commit timed out before {error}");
    assert!(
        elapsed < Duration::from_millis(2500),
        "refused after {elapsed:?}"
    );
    eprintln!("the zombie's commit, refused after {elapsed:?}: {error}");

    successor.execute(Action::BeginTransaction);
    assert!(matches!(wait_for_event(&successor), Event::Began(Ok(()))));
    successor.execute(Action::Produce {
        transaction: 1,
        bytes: 2,
        message: record(b"successor"),
    });
    assert!(matches!(
        wait_for_event(&successor),
        Event::Delivered { result: Ok(()), .. }
    ));
    successor.execute(Action::CommitTransaction);
    assert!(matches!(
        wait_for_event(&successor),
        Event::Committed(Ok(()))
    ));
    let values: Vec<Option<Vec<u8>>> = Target::Kafka
        .read_committed(&topic)
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(values, [Some(b"successor".to_vec())]);
    zombie.shutdown();
    successor.shutdown();
}
