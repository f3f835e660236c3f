//! Runs a sink over an update history on a timely computation, and computes what a topic must
//! hold afterwards, for the tests of the sink against a real broker.

use std::collections::BTreeMap;
use std::time::Duration;

use differential_dataflow::input::Input;
use outflow::dataflow::{Datum, Row};
use outflow::rawlog::LogRecord;
use outflow::{PreparedSink, SinkKafka, SinkPlan, SinkReport};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One update of the input: `row` gains `diff` copies at `time`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub time: u64,
    pub row: Row,
    pub diff: isize,
}

/// How [`run_sink`] feeds the history.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub workers: usize,
    /// A pause after each time is fed, so that a run can be interrupted part way.
    pub pace: Option<Duration>,
    /// Give up waiting for the sink after this long.
    pub timeout: Duration,
    /// Stop as a crashed run would: feed the updates before this time, wait until the sink has
    /// committed them, and drop the dataflow without closing the input.
    pub stop_at: Option<u64>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            workers: 1,
            pace: None,
            timeout: Duration::from_secs(60),
            stop_at: None,
        }
    }
}

/// Feeds `history` (on worker 0) to a collection sunk by `plan` on `options.workers` workers,
/// closes the input after the last time, and waits until every worker's sink has committed
/// everything or failed. Returns the sink's report.
pub fn run_sink(plan: SinkPlan, history: Vec<Update>, options: RunOptions) -> SinkReport {
    let sink = plan
        .preflight()
        .unwrap_or_else(|e| panic!("cannot prepare sink: {e}"));
    run_prepared(sink, history, options)
}

/// As [`run_sink`], for a sink already prepared (whose monitor the caller may be watching).
pub fn run_prepared(sink: PreparedSink, history: Vec<Update>, options: RunOptions) -> SinkReport {
    let monitor = sink.monitor().clone();
    let config = timely::Config::process(options.workers);
    let guards = timely::execute(config, move |worker| {
        let sink = sink.clone();
        let monitor = sink.monitor().clone();
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let handle = rows
                .sink_kafka(&sink)
                .unwrap_or_else(|e| panic!("cannot build sink: {e}"));
            (input, handle.probe)
        });
        let deadline = std::time::Instant::now() + options.timeout;
        let mut by_time: BTreeMap<u64, Vec<(Row, isize)>> = BTreeMap::new();
        if worker.index() == 0 {
            for update in &history {
                by_time
                    .entry(update.time)
                    .or_default()
                    .push((update.row.clone(), update.diff));
            }
        }
        for (time, updates) in by_time {
            if options.stop_at.is_some_and(|stop| time >= stop) {
                break;
            }
            input.advance_to(time);
            for (row, diff) in updates {
                input.update(row, diff);
            }
            if let Some(pace) = options.pace {
                input.advance_to(time + 1);
                input.flush();
                let until = std::time::Instant::now() + pace;
                while std::time::Instant::now() < until {
                    worker.step_or_park(Some(Duration::from_millis(1)));
                }
            }
        }
        let stopping = options.stop_at.inspect(|&stop| {
            input.advance_to(stop);
            input.flush();
        });
        if stopping.is_none() {
            input.close();
        }
        let debug = std::env::var_os("OUTFLOW_TEST_DEBUG").is_some();
        let mut last_print = std::time::Instant::now();
        while stopping.map_or(!probe.done(), |stop| probe.less_than(&stop)) {
            if debug && last_print.elapsed() > Duration::from_secs(2) {
                last_print = std::time::Instant::now();
                eprintln!("worker {}: {:?}", worker.index(), monitor.report());
            }
            if monitor.status().is_failed() || std::time::Instant::now() > deadline {
                break;
            }
            worker.step_or_park(Some(Duration::from_millis(5)));
        }
        if stopping.is_some() || monitor.status().is_failed() {
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
        }
    })
    .expect("timely computation starts");
    drop(guards);
    monitor.report()
}

/// A random history over `keys` keys of rows `(id int8, value text, amount numeric(10,2))`:
/// inserts, updates and deletes at times 1..=`times`, at most one change per key and time, so
/// the key stays unique.
pub fn random_history(seed: u64, keys: i64, times: u64, changes_per_time: usize) -> Vec<Update> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut current: BTreeMap<i64, Row> = BTreeMap::new();
    let mut history = Vec::new();
    for time in 1..=times {
        let mut touched = std::collections::BTreeSet::new();
        for _ in 0..changes_per_time {
            let id = rng.gen_range(0..keys);
            if !touched.insert(id) {
                continue;
            }
            let old = current.remove(&id);
            let delete = old.is_some() && rng.gen_bool(0.2);
            if let Some(old) = old {
                history.push(Update {
                    time,
                    row: old,
                    diff: -1,
                });
            }
            if !delete {
                let amount =
                    outflow::dataflow::relation::Numeric::new(rng.gen_range(0..100_000), 2);
                let value = format!("v{time}-{}", rng.gen_range(0..1000));
                let row = Row::pack_slice(&[
                    Datum::Int64(id),
                    Datum::String(&value),
                    Datum::Numeric(amount),
                ]);
                history.push(Update {
                    time,
                    row: row.clone(),
                    diff: 1,
                });
                current.insert(id, row);
            }
        }
    }
    history
}

/// What each key's messages must be under ENVELOPE UPSERT: per key (its first column), in time
/// order, the row after each time at which it changed (`None` for a delete).
pub fn expected_upserts(history: &[Update]) -> BTreeMap<i64, Vec<Option<Row>>> {
    let mut by_time: BTreeMap<u64, BTreeMap<i64, Option<Row>>> = BTreeMap::new();
    for update in history {
        let id = match update.row.unpack_first() {
            Datum::Int64(id) => id,
            other => panic!("history rows start with an int8 id, not {other:?}"),
        };
        let entry = by_time
            .entry(update.time)
            .or_default()
            .entry(id)
            .or_insert(None);
        if update.diff > 0 {
            *entry = Some(update.row.clone());
        }
    }
    let mut state: BTreeMap<i64, Option<Row>> = BTreeMap::new();
    let mut out: BTreeMap<i64, Vec<Option<Row>>> = BTreeMap::new();
    for changes in by_time.into_values() {
        for (id, after) in changes {
            let before = state.get(&id).cloned().flatten();
            if before != after {
                out.entry(id).or_default().push(after.clone());
                state.insert(id, after);
            }
        }
    }
    out
}

/// The JSON text FORMAT JSON writes for a history row `(id, value, amount)`.
pub fn history_row_json(row: &Row) -> String {
    let datums = row.unpack();
    let (Datum::Int64(id), Datum::String(value), Datum::Numeric(amount)) =
        (datums[0], datums[1], datums[2])
    else {
        panic!("not a history row: {row:?}");
    };
    format!(r#"{{"id":{id},"value":"{value}","amount":{amount}}}"#)
}

/// The `CREATE` statements of a history table `t (id int8 primary key, value text, amount
/// numeric(10,2))` and a plaintext connection `k` to `bootstrap`.
pub fn history_catalog_sql(bootstrap: &str) -> String {
    format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{bootstrap}', SECURITY PROTOCOL PLAINTEXT);
         CREATE TABLE t (id bigint PRIMARY KEY, value text NOT NULL, amount numeric(10,2) NOT NULL);"
    )
}

/// The `id` of a record's JSON key, if it has one.
pub fn key_id(record: &LogRecord) -> Option<i64> {
    let key: serde_json::Value = serde_json::from_slice(record.key.as_deref()?).ok()?;
    key["id"].as_i64()
}

/// Per key (the JSON key's `id`), the values of an UPSERT JSON topic in offset order, `None` for
/// tombstones. Panics if a key sits on two partitions.
pub fn upserts_by_key(records: &[LogRecord]) -> BTreeMap<i64, Vec<Option<String>>> {
    let mut out: BTreeMap<i64, Vec<Option<String>>> = BTreeMap::new();
    let mut partition_of: BTreeMap<i64, i32> = BTreeMap::new();
    for record in records {
        let id = key_id(record).unwrap_or_else(|| panic!("not a JSON key with an id: {record:?}"));
        let previous = partition_of.insert(id, record.partition);
        assert!(
            previous.is_none() || previous == Some(record.partition),
            "key {id} in two partitions"
        );
        let value = record
            .value
            .as_ref()
            .map(|v| String::from_utf8(v.clone()).unwrap());
        out.entry(id).or_default().push(value);
    }
    out
}

/// [`expected_upserts`] as the JSON texts FORMAT JSON writes.
pub fn expected_json(history: &[Update]) -> BTreeMap<i64, Vec<Option<String>>> {
    expected_upserts(history)
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
        .collect()
}

/// Asserts that the UPSERT JSON topic `topic` holds `expected` (see [`upserts_by_key`]) once
/// its transactions in flight are decided. On a mismatch the panic names each differing key
/// and lists every raw record of those keys — aborted and open ones too — with its producer,
/// epoch and outcome, and the control markers of those producers in those partitions: enough
/// to tell a lost write from a late or missing marker. Returns the committed records.
pub fn assert_topic_holds(
    bootstrap: &str,
    topic: &str,
    expected: &BTreeMap<i64, Vec<Option<String>>>,
    context: &str,
) -> Vec<LogRecord> {
    let log = outflow::rawlog::read_settled(bootstrap, topic, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("reading {topic}: {e}"));
    let committed = log.committed();
    let actual = upserts_by_key(&committed);
    if &actual == expected {
        return committed;
    }
    let mut report = format!("topic {topic} does not hold the expected upserts ({context})\n");
    let keys: std::collections::BTreeSet<i64> =
        actual.keys().chain(expected.keys()).copied().collect();
    let mut differing = std::collections::BTreeSet::new();
    for id in keys {
        if actual.get(&id) != expected.get(&id) {
            differing.insert(id);
            report.push_str(&format!(
                "key {id}:\n  expected {:?}\n  actual   {:?}\n",
                expected.get(&id),
                actual.get(&id)
            ));
        }
    }
    let mut involved = std::collections::BTreeSet::new();
    report.push_str("raw records of those keys:\n");
    for raw in log.raw() {
        let id = key_id(&raw.record);
        if id.is_some_and(|id| differing.contains(&id)) {
            involved.insert((raw.record.partition, raw.producer_id));
            report.push_str(&format!(
                "  p{} @{} producer {} epoch {} {:?} value {:?}\n",
                raw.record.partition,
                raw.record.offset,
                raw.producer_id,
                raw.producer_epoch,
                raw.outcome,
                raw.record
                    .value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            ));
        }
    }
    report.push_str("markers of those producers in those partitions:\n");
    for marker in log.markers() {
        if involved.contains(&(marker.partition, marker.producer_id)) {
            report.push_str(&format!("  {marker:?}\n"));
        }
    }
    for partition in &log.partitions {
        report.push_str(&format!(
            "partition {}: log start {}, {} records, {} markers, last stable offset {}\n",
            partition.partition,
            partition.log_start_offset,
            partition.records.len(),
            partition.markers.len(),
            partition.last_stable_offset()
        ));
    }
    panic!("{report}");
}

/// As [`assert_topic_holds`], for committed records read by another reader (such as
/// [`crate::committed::read_committed`] on a broker whose `read_committed` is trustworthy). On
/// a mismatch the panic names each differing key, its committed records, and those `others`
/// (e.g. a `read_uncommitted` read of the topic) holds of it. Returns `committed`.
pub fn assert_records_hold(
    topic: &str,
    committed: Vec<LogRecord>,
    others: &[LogRecord],
    expected: &BTreeMap<i64, Vec<Option<String>>>,
    context: &str,
) -> Vec<LogRecord> {
    let actual = upserts_by_key(&committed);
    if &actual == expected {
        return committed;
    }
    let mut report = format!("topic {topic} does not hold the expected upserts ({context})\n");
    let keys: std::collections::BTreeSet<i64> =
        actual.keys().chain(expected.keys()).copied().collect();
    let mut differing = std::collections::BTreeSet::new();
    for id in keys {
        if actual.get(&id) != expected.get(&id) {
            differing.insert(id);
            report.push_str(&format!(
                "key {id}:\n  expected {:?}\n  actual   {:?}\n",
                expected.get(&id),
                actual.get(&id)
            ));
        }
    }
    for (name, records) in [("committed", committed.as_slice()), ("other", others)] {
        report.push_str(&format!("{name} records of those keys:\n"));
        for record in records {
            if key_id(record).is_some_and(|id| differing.contains(&id)) {
                report.push_str(&format!(
                    "  p{} @{} value {:?}\n",
                    record.partition,
                    record.offset,
                    record
                        .value
                        .as_ref()
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                ));
            }
        }
    }
    panic!("{report}");
}
