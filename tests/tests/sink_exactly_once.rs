//! The exactly-once sink against a real broker: round trips of update histories through the
//! UPSERT and DEBEZIUM envelopes, restarts with other worker counts, a non-unique key, and a
//! backlog of many times.
//!
//! Every body runs on Apache Kafka (module `kafka`): the sink trusts the broker's
//! `read_committed` (`broker_shows_aborted_records` off), and every topic is audited with a
//! librdkafka consumer at `read_committed` ([`outflow_tests::committed`]). The restart across
//! worker counts also runs on Tansu (module `tansu`), where the sink recovers from the raw log
//! of its progress topic with the control batches applied, and the topic is audited with the
//! raw-log reader; the other bodies do not depend on the broker's `read_committed` and would
//! only repeat themselves there.

use std::collections::BTreeMap;

use outflow::dataflow::Row;
use outflow::statement::Catalog;
use outflow::{SinkPlan, SinkStatus};
use outflow_tests::broker::unique_name;
use outflow_tests::pipeline::{
    expected_json, history_catalog_sql, random_history, run_sink, RunOptions, Update,
};
use outflow_tests::target::Target;

mod kafka {
    use super::Target::Kafka;

    #[test]
    fn upsert_history_round_trips_exactly_once() {
        super::upsert_history_round_trips(Kafka);
    }

    #[test]
    fn debezium_history_round_trips_exactly_once() {
        super::debezium_history_round_trips(Kafka);
    }

    #[test]
    fn a_restart_with_another_worker_count_writes_nothing_twice() {
        super::restart_with_another_worker_count(Kafka);
    }

    #[test]
    fn a_key_that_is_not_unique_fails_the_sink_with_the_key() {
        super::key_not_unique(Kafka);
    }

    #[test]
    fn a_backlog_of_many_times_in_one_batch_is_written_in_time_order() {
        super::backlog_in_one_batch(Kafka);
    }
}

mod tansu {
    #[test]
    fn a_restart_with_another_worker_count_writes_nothing_twice() {
        super::restart_with_another_worker_count(super::Target::Tansu);
    }
}

fn plan(target: Target, sql: &str, sink: &str) -> SinkPlan {
    let catalog = Catalog::from_sql(sql).unwrap_or_else(|e| panic!("{}", e.render("test.sql")));
    target.test_plan(SinkPlan::from_catalog(&catalog, sink).unwrap())
}

/// Sink names identify progress records on the shared progress topic, so each test has its own.
fn upsert_sink_sql(target: Target, topic: &str, prefix: &str) -> String {
    format!(
        "{}
         CREATE SINK \"{topic}\" FROM t INTO KAFKA CONNECTION k (TOPIC '{topic}', TOPIC PARTITION COUNT 3,
             TRANSACTIONAL ID PREFIX '{prefix}', PROGRESS GROUP ID PREFIX '{prefix}')
           KEY (id) FORMAT JSON ENVELOPE UPSERT;",
        history_catalog_sql(&target.bootstrap())
    )
}

fn assert_running_then_done(report: &outflow::SinkReport) {
    assert!(!report.status.is_failed(), "sink failed: {report:#?}");
    assert!(
        report
            .history
            .iter()
            .any(|c| c.status == SinkStatus::Running),
        "the sink never reported running: {:#?}",
        report.history
    );
}

fn upsert_history_round_trips(target: Target) {
    let topic = unique_name("upsert");
    let prefix = unique_name("tx");
    let history = random_history(7, 40, 12, 15);
    let report = run_sink(
        plan(target, &upsert_sink_sql(target, &topic, &prefix), &topic),
        history.clone(),
        RunOptions {
            workers: 2,
            ..RunOptions::default()
        },
    );
    assert_running_then_done(&report);

    let records = target.assert_topic_holds(&topic, &expected_json(&history), "after the run");
    let messages: usize = expected_json(&history).values().map(Vec::len).sum();
    assert_eq!(
        report.total.messages_committed as usize, messages,
        "{report:#?}"
    );
    assert_eq!(target.partition_count(&topic), 3);
    for record in &records {
        let time = record
            .headers
            .iter()
            .find(|(n, _)| n == "outflow-time")
            .and_then(|(_, v)| v.clone());
        assert!(
            time.is_some(),
            "message without its time header: {record:?}"
        );
    }
}

fn debezium_history_round_trips(target: Target) {
    let topic = unique_name("debezium");
    let prefix = unique_name("tx");
    let sql = format!(
        "{}
         CREATE SINK \"{topic}\" FROM t INTO KAFKA CONNECTION k (TOPIC '{topic}', TRANSACTIONAL ID PREFIX '{prefix}',
             PROGRESS GROUP ID PREFIX '{prefix}')
           FORMAT JSON ENVELOPE DEBEZIUM;",
        history_catalog_sql(&target.bootstrap())
    );
    let history = random_history(11, 20, 8, 10);
    let report = run_sink(
        plan(target, &sql, &topic),
        history.clone(),
        RunOptions {
            workers: 1,
            ..RunOptions::default()
        },
    );
    assert_running_then_done(&report);

    let records = target.read_committed(&topic);
    // Per key, the before/after pairs must chain: each before is the previous after.
    let mut seen: BTreeMap<i64, Vec<Option<String>>> = BTreeMap::new();
    for record in &records {
        assert!(
            record.key.is_none(),
            "a Debezium sink without KEY writes no message key"
        );
        let value: serde_json::Value =
            serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        let side = |name: &str| (!value[name].is_null()).then(|| value[name].clone());
        let (before, after) = (side("before"), side("after"));
        let id = after.as_ref().or(before.as_ref()).unwrap()["id"]
            .as_i64()
            .unwrap();
        let chain = seen.entry(id).or_default();
        let previous = chain.last().cloned().flatten();
        assert_eq!(
            before.map(|b| b.to_string()),
            previous.map(|p| serde_json::from_str::<serde_json::Value>(&p)
                .unwrap()
                .to_string()),
            "key {id}"
        );
        chain.push(after.map(|a| a.to_string()));
    }
    let expected: BTreeMap<i64, Vec<Option<String>>> = expected_json(&history)
        .into_iter()
        .map(|(id, values)| {
            let values = values
                .into_iter()
                .map(|v| {
                    v.map(|text| {
                        serde_json::from_str::<serde_json::Value>(&text)
                            .unwrap()
                            .to_string()
                    })
                })
                .collect();
            (id, values)
        })
        .collect();
    assert_eq!(seen, expected);
}

fn restart_with_another_worker_count(target: Target) {
    let topic = unique_name("restart");
    let prefix = unique_name("tx");
    let sql = upsert_sink_sql(target, &topic, &prefix);
    let history = random_history(23, 30, 10, 12);
    let first: Vec<Update> = history.iter().filter(|u| u.time <= 5).cloned().collect();
    let stop = RunOptions {
        workers: 2,
        stop_at: Some(6),
        ..RunOptions::default()
    };
    let report = run_sink(plan(target, &sql, &topic), history.clone(), stop);
    assert_running_then_done(&report);
    target.assert_topic_holds(&topic, &expected_json(&first), "after the first run");

    // The second run replays the whole history on 3 workers: what the first committed is
    // skipped, the rest is written once.
    let report = run_sink(
        plan(target, &sql, &topic),
        history.clone(),
        RunOptions {
            workers: 3,
            ..RunOptions::default()
        },
    );
    assert_running_then_done(&report);
    let records = target.assert_topic_holds(&topic, &expected_json(&history), "after the run");

    // And a third, on one worker, with nothing new: nothing is written.
    let report = run_sink(
        plan(target, &sql, &topic),
        history.clone(),
        RunOptions {
            workers: 1,
            ..RunOptions::default()
        },
    );
    assert_running_then_done(&report);
    assert_eq!(report.total.messages_committed, 0);
    let again = target.read_committed(&topic);
    assert_eq!(again.len(), records.len());
}

fn key_not_unique(target: Target) {
    let topic = unique_name("violation");
    let prefix = unique_name("tx");
    let history = vec![
        Update {
            time: 1,
            row: row(1, "a"),
            diff: 1,
        },
        Update {
            time: 2,
            row: row(1, "b"),
            diff: 1,
        },
    ];
    let report = run_sink(
        plan(target, &upsert_sink_sql(target, &topic, &prefix), &topic),
        history,
        RunOptions::default(),
    );
    let SinkStatus::Failed { error } = &report.status else {
        panic!("sink did not fail: {report:#?}")
    };
    assert!(error.contains("NOT ENFORCED"), "{error}");
    // Time 1 is complete and correct; it is committed, time 2 is not.
    let records = target.read_committed(&topic);
    assert!(records.len() <= 1, "{records:?}");
}

fn row(id: i64, value: &str) -> Row {
    use outflow::dataflow::relation::Numeric;
    use outflow::dataflow::Datum;
    Row::pack_slice(&[
        Datum::Int64(id),
        Datum::String(value),
        Datum::Numeric(Numeric::new(100, 2)),
    ])
}

/// A backlog: many times fed before the sink runs at all, so that combining reads them in one
/// batch and, past its buffer limit, emits their pairs key by key rather than time by time. The
/// sink must still write each key's changes in time order and every time exactly once.
fn backlog_in_one_batch(target: Target) {
    let topic = unique_name("backlog");
    let prefix = unique_name("tx");
    let history = random_history(5, 8_000, 4, 12_000);
    assert!(
        history.len() > 30_000,
        "the backlog must exceed combining's buffers: {}",
        history.len()
    );
    let report = run_sink(
        plan(target, &upsert_sink_sql(target, &topic, &prefix), &topic),
        history.clone(),
        RunOptions {
            workers: 1,
            ..RunOptions::default()
        },
    );
    assert_running_then_done(&report);
    target.assert_topic_holds(&topic, &expected_json(&history), "after the run");
}
