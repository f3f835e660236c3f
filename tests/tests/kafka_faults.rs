//! What only a real broker shows about a sink's transactions: a transaction the broker aborts
//! because it stayed open past `transaction.timeout.ms`, the broker killed and restarted on its
//! log directory, and an outage longer than the transaction timeout. Each test starts a broker
//! of its own where it kills or times out things a shared broker's other tests rely on; a
//! message the broker refuses and a key violation show how a sink stops, on the shared broker.

use std::time::{Duration, Instant};

use outflow::producer::DeliveryMode;
use outflow::statement::Catalog;
use outflow::topic::{ensure_data_topic, ensure_progress_topic, TopicSettings};
use outflow::{SinkPlan, SinkReport, SinkStatus};
use outflow_protocol::{Cadence, SinkNames, Status};
use outflow_tests::broker::unique_name;
use outflow_tests::committed::{self, assert_topic_holds};
use outflow_tests::driver::DriverWorker;
use outflow_tests::kafka::{Kafka, KafkaSettings};
use outflow_tests::pipeline::{
    expected_json, history_catalog_sql, random_history, run_prepared, RunOptions, Update,
};
use rdkafka::config::ClientConfig;

/// A broker that aborts timed-out transactions within half a second of their timeout (the
/// default check runs every 10 s).
fn broker() -> Kafka {
    Kafka::start_with(
        KafkaSettings::default()
            .property(
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                "500",
            )
            .property("transaction.max.timeout.ms", "900000"),
    )
}

fn connection(kafka: &Kafka) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka.bootstrap());
    config
}

fn topics(kafka: &Kafka, prefix: &str) -> (String, String) {
    let data = unique_name(&format!("{prefix}-data"));
    let progress = unique_name(&format!("{prefix}-progress"));
    let mut settings = TopicSettings::new(&data);
    settings.partitions = Some(2);
    ensure_data_topic(&connection(kafka), &settings).unwrap();
    ensure_progress_topic(&connection(kafka), &progress, None).unwrap();
    (data, progress)
}

fn values(kafka: &Kafka, topic: &str) -> Vec<String> {
    let mut values: Vec<String> = committed::read_committed(&kafka.bootstrap(), topic)
        .unwrap()
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap_or_default()).unwrap())
        .collect();
    values.sort();
    values
}

#[test]
fn a_transaction_the_broker_timed_out_fails_the_worker_with_the_cause_and_a_restart_writes_it_once()
{
    let kafka = broker();
    let (data, progress) = topics(&kafka, "txn-timeout");
    let names = SinkNames::new(unique_name("txn-timeout"), "tx-", "pg-");
    // A commit interval far above the transaction timeout keeps the transaction open while the
    // test waits, as a worker whose thread is held up (or whose process is paused) would; a
    // sink refuses such a cadence, the bare machine does not.
    let cadence = Cadence {
        commit_interval: Duration::from_secs(3600),
        transaction_timeout: Duration::from_secs(2),
        ..Cadence::default()
    };
    let start = |cadence: &Cadence| {
        DriverWorker::start(
            &connection(&kafka),
            &names,
            &data,
            &progress,
            cadence.clone(),
            DeliveryMode::ExactlyOnce,
            |_| {},
        )
    };
    let mut worker = start(&cadence);
    worker.initialize_and_recover(DeliveryMode::ExactlyOnce);
    worker.feed(1, "a", "a@1");
    worker.feed(1, "b", "b@1");
    worker.advance_to(Some(2));
    worker.run_until("the messages delivered", |w| {
        w.driver.stats().messages_in_flight == 0 && w.driver.stats().delivered_messages >= 2
    });
    // The broker aborts the transaction once it is 2 s old and bumps the producer's epoch.
    std::thread::sleep(Duration::from_secs(4));
    worker.feed(2, "a", "a@2");
    worker.advance_to(None);
    worker.run_until("the worker failing", |w| {
        matches!(w.machine.status(), Status::Failed { .. })
    });
    let Status::Failed { error } = worker.machine.status().clone() else {
        unreachable!()
    };
    assert!(
        error.contains("longer than the transaction timeout of 2000 ms")
            && error.contains("the broker aborted the open transaction")
            && error.contains(&names.transactional_id(0)),
        "{error}"
    );
    worker.driver.shutdown();
    assert!(
        values(&kafka, &data).is_empty(),
        "the aborted transaction stays invisible"
    );

    // The restart a user (or a supervisor) makes resumes from the last commit and writes the
    // lost transaction once.
    let mut again = start(&Cadence {
        commit_interval: Duration::from_millis(50),
        ..Cadence::default()
    });
    let recovery = again.initialize_and_recover(DeliveryMode::ExactlyOnce);
    assert_eq!(recovery.resume_time(), Some(0), "{recovery:?}");
    again.feed(1, "a", "a@1");
    again.feed(1, "b", "b@1");
    again.feed(2, "a", "a@2");
    again.advance(None);
    again.driver.shutdown();
    assert_eq!(values(&kafka, &data), ["a@1", "a@2", "b@1"]);
}

fn upsert_plan(kafka: &Kafka, topic: &str, transaction_timeout: Duration) -> SinkPlan {
    let prefix = unique_name("tx");
    let sql = format!(
        "{}
         CREATE SINK \"{topic}\" FROM t INTO KAFKA CONNECTION k (TOPIC '{topic}', TOPIC PARTITION COUNT 2,
             TRANSACTIONAL ID PREFIX '{prefix}', PROGRESS GROUP ID PREFIX '{prefix}')
           KEY (id) FORMAT JSON ENVELOPE UPSERT;",
        history_catalog_sql(&kafka.bootstrap())
    );
    let catalog = Catalog::from_sql(&sql).unwrap_or_else(|e| panic!("{}", e.render("test.sql")));
    let mut plan = SinkPlan::from_catalog(&catalog, topic).unwrap();
    plan.broker_shows_aborted_records = false;
    plan.cadence.commit_interval = Duration::from_millis(100);
    plan.cadence.idle_progress_interval = Duration::from_millis(500);
    plan.cadence.max_retry_backoff = Duration::from_secs(1);
    plan.cadence.transaction_timeout = transaction_timeout;
    plan
}

/// Runs `plan` over `history` paced at `pace` per time on a thread of its own, while `fault`
/// runs on the test thread; returns the sink's report.
fn run_with_fault(
    plan: SinkPlan,
    history: &[Update],
    pace: Duration,
    fault: impl FnOnce(&outflow::SinkMonitor),
) -> SinkReport {
    let sink = plan.preflight().expect("preflight");
    let monitor = sink.monitor().clone();
    let history = history.to_vec();
    let run = std::thread::spawn(move || {
        run_prepared(
            sink,
            history,
            RunOptions {
                workers: 2,
                pace: Some(pace),
                timeout: Duration::from_secs(120),
                stop_at: None,
            },
        )
    });
    fault(&monitor);
    run.join().expect("the run's thread")
}

/// Waits until `monitor` has committed something past `time`.
fn wait_for_commit_past(monitor: &outflow::SinkMonitor, time: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while monitor.committed_frontier().is_none_or(|f| f <= time) {
        assert!(Instant::now() < deadline, "{:#?}", monitor.report());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The statuses the sink reported, in order, without repeats.
fn status_names(report: &SinkReport) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for change in &report.history {
        let name = change.status.name();
        if names.last() != Some(&name) {
            names.push(name);
        }
    }
    names
}

#[test]
fn a_broker_killed_and_restarted_mid_run_stalls_the_sink_and_loses_nothing() {
    let mut kafka = broker();
    let topic = unique_name("broker-kill");
    let history = random_history(11, 30, 60, 6);
    let plan = upsert_plan(&kafka, &topic, Duration::from_secs(60));
    let bootstrap = kafka.bootstrap();
    let report = run_with_fault(plan, &history, Duration::from_millis(100), |monitor| {
        wait_for_commit_past(monitor, 5);
        kafka.kill();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(monitor.status(), SinkStatus::Stalled { .. }) {
            assert!(
                Instant::now() < deadline,
                "no stalled status while the broker is down: {:#?}",
                monitor.report()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        kafka.restart();
    });
    eprintln!("history: {:?}", status_names(&report));
    assert!(!report.status.is_failed(), "{report:#?}");
    let names = status_names(&report);
    let stalled = names.iter().position(|n| *n == "stalled").expect("stalled");
    assert!(
        names[stalled..].contains(&"running"),
        "running again after the stall: {names:?}"
    );
    assert_topic_holds(
        &bootstrap,
        &topic,
        &expected_json(&history),
        "after the broker restart",
    );
}

#[test]
fn an_outage_longer_than_the_transaction_timeout_ends_in_bounded_time_and_a_rerun_writes_once() {
    let mut kafka = broker();
    let topic = unique_name("outage");
    let history = random_history(13, 30, 60, 6);
    let timeout = Duration::from_secs(6);
    let plan = upsert_plan(&kafka, &topic, timeout);
    let bootstrap = kafka.bootstrap();
    let began = Instant::now();
    let report = run_with_fault(
        plan.clone(),
        &history,
        Duration::from_millis(100),
        |monitor| {
            wait_for_commit_past(monitor, 5);
            // A controlled shutdown: after a SIGKILL, Kafka 4.3 may time out the open
            // transactions on restart before the partitions have leaders again, skip their
            // abort markers ("these partitions are likely deleted already"), and leave the
            // partitions with a hanging transaction that holds read_committed readers back.
            kafka.stop();
            std::thread::sleep(timeout + Duration::from_secs(4));
            kafka.restart();
        },
    );
    eprintln!(
        "after {:.1?}: {:?} {:?}",
        began.elapsed(),
        status_names(&report),
        report.status
    );
    match &report.status {
        SinkStatus::Failed { error } => assert!(
            error.contains("longer than the transaction timeout"),
            "a clear error: {error}"
        ),
        _ => {
            assert_topic_holds(
                &bootstrap,
                &topic,
                &expected_json(&history),
                "recovered in the run",
            );
        }
    }
    assert!(
        status_names(&report).contains(&"stalled"),
        "stalled during the outage: {:?}",
        status_names(&report)
    );
    // Whatever the first run did, a rerun completes the topic exactly once.
    let report = outflow_tests::pipeline::run_sink(plan, history.clone(), RunOptions::default());
    assert!(!report.status.is_failed(), "{report:#?}");
    assert_topic_holds(
        &bootstrap,
        &topic,
        &expected_json(&history),
        "after the rerun",
    );
}

fn history_row(id: i64, value: &str) -> outflow::dataflow::Row {
    outflow::dataflow::Row::pack_slice(&[
        outflow::dataflow::Datum::Int64(id),
        outflow::dataflow::Datum::String(value),
        outflow::dataflow::Datum::Numeric(outflow::dataflow::relation::Numeric::new(100, 2)),
    ])
}

#[test]
fn a_row_larger_than_a_message_may_be_fails_naming_its_key_and_leaves_no_transaction_open() {
    let kafka = Kafka::shared();
    let topic = unique_name("oversize");
    let mut plan = upsert_plan(kafka, &topic, Duration::from_secs(60));
    plan.cadence.commit_interval = Duration::from_millis(50);
    let huge = "x".repeat(2 << 20);
    let history = vec![
        Update {
            time: 1,
            row: history_row(1, "small"),
            diff: 1,
        },
        Update {
            time: 2,
            row: history_row(2, "small too"),
            diff: 1,
        },
        Update {
            time: 2,
            row: history_row(7, &huge),
            diff: 1,
        },
    ];
    // Paced so that time 1 commits (the sink starts within the pause) before time 2 comes.
    let report = run_with_fault(plan, &history, Duration::from_secs(3), |_| {});
    let SinkStatus::Failed { error } = &report.status else {
        panic!("the oversize row did not fail the sink: {report:#?}");
    };
    assert!(
        error.contains("cannot write a message")
            && error.contains(r#"key {"id":7}"#)
            && error.contains("MessageSizeTooLarge")
            && error.contains("the open transaction is aborted"),
        "{error}"
    );
    assert!(!error.contains(&huge[..64]), "the value is not printed");
    // Time 1 was committed before; time 2's transaction was aborted, so a read_committed
    // reader reaches the end at once instead of waiting out the transaction timeout.
    let began = Instant::now();
    let records = committed::read_stable(&kafka.bootstrap(), &topic).unwrap();
    let keys: Vec<Option<i64>> = records
        .iter()
        .map(outflow_tests::pipeline::key_id)
        .collect();
    assert_eq!(keys, [Some(1)], "{records:?}");
    assert!(
        began.elapsed() < Duration::from_secs(10),
        "the read waited {:?}",
        began.elapsed()
    );
}

#[test]
fn a_broker_that_comes_back_without_its_data_is_reported_as_having_lost_it() {
    let mut kafka = broker();
    let topic = unique_name("lost-data");
    let history = random_history(17, 30, 60, 6);
    let plan = upsert_plan(&kafka, &topic, Duration::from_secs(10));
    let began = Instant::now();
    let report = run_with_fault(plan, &history, Duration::from_millis(100), |monitor| {
        wait_for_commit_past(monitor, 5);
        kafka.restart_empty();
    });
    eprintln!(
        "after {:.1?}: {:?} {:?}",
        began.elapsed(),
        status_names(&report),
        report.status
    );
    let SinkStatus::Failed { error } = &report.status else {
        panic!("{report:#?}");
    };
    assert!(
        error.contains("the broker lost committed data") && !error.contains("a newer instance"),
        "{error}"
    );
}

#[test]
fn a_key_violation_fails_the_sink_after_committing_every_earlier_time() {
    let kafka = Kafka::shared();
    let topic = unique_name("violation");
    let plan = upsert_plan(kafka, &topic, Duration::from_secs(60));
    let update = |time, id, value: &str| Update {
        time,
        row: history_row(id, value),
        diff: 1,
    };
    // Fed at once, without pauses: time 3's duplicate key arrives with times 1 and 2.
    let history = vec![
        update(1, 1, "one"),
        update(2, 2, "two"),
        update(3, 3, "three"),
        update(3, 3, "again"),
        update(4, 4, "four"),
    ];
    let report = outflow_tests::pipeline::run_sink(plan, history, RunOptions::default());
    let SinkStatus::Failed { error } = &report.status else {
        panic!("the duplicate key did not fail the sink: {report:#?}");
    };
    assert!(
        error.contains(r#"key {"id":3} is not unique at time 3"#),
        "{error}"
    );
    let records = committed::read_stable(&kafka.bootstrap(), &topic).unwrap();
    let mut keys: Vec<Option<i64>> = records
        .iter()
        .map(outflow_tests::pipeline::key_id)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [Some(1), Some(2)],
        "times 1 and 2 are committed, 3 and 4 are not"
    );
}
