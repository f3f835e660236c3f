//! What the guide's pipelines share: where the broker is (one given with `--broker`, or an
//! embedded one in this process), waiting for sinks to commit, reading topics back, and
//! printing a sink's status and statistics.

pub mod orders;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use outflow::embedded::EmbeddedBroker;
use outflow::statement::Catalog;
use outflow::{PreparedSink, SinkMonitor, SinkPlan, SinkReport, SinkStatus};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

/// How long a program waits for its sinks before it gives up.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The Kafka cluster a program writes to.
pub struct Target {
    embedded: Option<EmbeddedBroker>,
    bootstrap: String,
}

impl Target {
    /// The broker at `broker` (`host:port`), or, with none, an embedded one started here.
    pub fn new(broker: Option<String>) -> Result<Target, String> {
        match broker {
            Some(bootstrap) => Ok(Target {
                embedded: None,
                bootstrap,
            }),
            None => {
                let embedded = EmbeddedBroker::start().map_err(|e| e.to_string())?;
                Ok(Target {
                    bootstrap: embedded.bootstrap(),
                    embedded: Some(embedded),
                })
            }
        }
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    pub fn describe(&self) -> String {
        match self.embedded {
            Some(_) => format!(
                "embedded broker (librdkafka's mock cluster) at {}",
                self.bootstrap
            ),
            None => format!("broker at {}", self.bootstrap),
        }
    }

    /// The plan of sink `name`, ready for this target: on the embedded broker its topics are
    /// created here, as that broker cannot create topics on request.
    /// The plan of sink `name`, prepared against the target (topics created, schemas
    /// registered).
    pub fn plan(&self, catalog: &Catalog, name: &str) -> Result<PreparedSink, String> {
        let mut plan =
            SinkPlan::from_catalog(catalog, name).map_err(|e| format!("sink {name}: {e}"))?;
        match &self.embedded {
            Some(embedded) => embedded.prepare(&mut plan).map_err(|e| e.to_string())?,
            // Recovery then reads the progress topic's raw log and applies its control
            // batches itself: right on every broker, and needed on those whose read_committed
            // readers see aborted records (Tansu).
            None => plan.broker_shows_aborted_records = true,
        }
        // Short transactions, so that each round of changes shows up within a moment.
        plan.cadence.commit_interval = Duration::from_millis(200);
        plan.cadence.idle_progress_interval = Duration::from_millis(500);
        plan.preflight().map_err(|e| format!("sink {name}: {e}"))
    }
}

/// Parses `sql`, naming the program's statements in errors.
pub fn catalog(sql: &str) -> Result<Catalog, String> {
    Catalog::from_sql(sql).map_err(|e| e.render("statements"))
}

/// Steps `worker` until every probe has passed `time` (`None`: until the sinks are done),
/// failing when a sink fails or after [`DEADLINE`].
pub fn wait_for_commit(
    worker: &mut Worker,
    probes: &[ProbeHandle<u64>],
    monitors: &[&SinkMonitor],
    time: Option<u64>,
    started: Instant,
) -> Result<(), String> {
    let pending = |probe: &ProbeHandle<u64>| time.map_or(!probe.done(), |t| probe.less_than(&t));
    while probes.iter().any(pending) {
        for monitor in monitors {
            if let SinkStatus::Failed { error } = monitor.status() {
                return Err(format!("sink {} failed: {error}", monitor.report().name));
            }
        }
        if started.elapsed() > DEADLINE {
            return Err(format!(
                "the sinks did not commit time {time:?} within {DEADLINE:?}"
            ));
        }
        worker.step_or_park(Some(Duration::from_millis(5)));
    }
    Ok(())
}

/// One message read back from a topic.
#[derive(Clone, Debug)]
pub struct ReadMessage {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

impl ReadMessage {
    pub fn key_text(&self) -> String {
        self.key
            .as_deref()
            .map_or_else(|| "(no key)".to_string(), text)
    }

    pub fn value_text(&self) -> String {
        self.value
            .as_deref()
            .map_or_else(|| "(tombstone)".to_string(), text)
    }
}

/// UTF-8 text as it is, anything else (Avro) as its length and leading bytes.
fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => {
            let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!("<{} bytes: {} …>", bytes.len(), head.join(" "))
        }
    }
}

/// Every message of `topic` up to its end as the read starts, in partition and offset order,
/// read with `isolation.level=read_committed`.
pub fn read_topic(bootstrap: &str, topic: &str) -> Result<Vec<ReadMessage>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "outflow-examples-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| format!("cannot build a consumer for topic {topic}: {e}"))?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| format!("cannot read the metadata of topic {topic}: {e}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    // Every partition from offset 0 to the end the reader reports (`enable.partition.eof`),
    // not between the offsets a ListOffsets query names: Tansu answers that query from its
    // batches' modification times, which can skip the first records or stop short of the end.
    let mut assignment = TopicPartitionList::new();
    for &partition in &partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(0))
            .map_err(|e| format!("topic {topic} partition {partition}: {e}"))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("cannot read topic {topic}: {e}"))?;
    let mut reading: BTreeSet<i32> = partitions.iter().copied().collect();
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reading.is_empty() {
        if Instant::now() > deadline {
            return Err(format!(
                "reading topic {topic} took more than 30 s; {} partitions left",
                reading.len()
            ));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                reading.remove(&partition);
            }
            Some(Err(e)) => return Err(format!("reading topic {topic}: {e}")),
            Some(Ok(message)) => messages.push(ReadMessage {
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().map(<[u8]>::to_vec),
            }),
        }
    }
    messages.sort_by_key(|m| (m.partition, m.offset));
    Ok(messages)
}

/// Prints a sink's status, committed frontier and statistics.
pub fn print_report(report: &SinkReport) {
    let total = &report.total;
    let frontier = match total.committed_frontier {
        Some(u64::MAX) => "every time (the input is done)".to_string(),
        Some(t) => format!("every time before {t}"),
        None => "nothing yet".to_string(),
    };
    let ran = report
        .history
        .iter()
        .any(|change| change.status == SinkStatus::Running);
    match &report.status {
        SinkStatus::Dropped if ran => println!(
            "sink {}: ran, and was dropped when its dataflow finished",
            report.name
        ),
        status => println!("sink {}: {}", report.name, status.name()),
    }
    if let SinkStatus::Failed { error } | SinkStatus::Stalled { error, .. } = &report.status {
        println!("  error: {error}");
    }
    println!("  committed: {frontier}");
    println!(
        "  {} messages ({} bytes) committed in {} transactions, {} aborted; {} staged",
        total.messages_committed,
        total.bytes_committed,
        total.transactions_committed,
        total.transactions_aborted,
        total.messages_staged
    );
    if let Some(ms) = total.frontier_to_commit_ms {
        println!("  frontier-to-commit latency of the last commit: {ms} ms");
    }
    for note in &report.notes {
        println!("  note: {note}");
    }
    for (worker, statistics) in &report.workers {
        println!(
            "  worker {worker}: {} messages, {} transactions",
            statistics.messages_committed, statistics.transactions_committed
        );
    }
}

/// Prints up to `count` messages of `topic`, and how many it holds in each partition.
pub fn print_messages(topic: &str, messages: &[ReadMessage], count: usize) {
    let mut per_partition: BTreeMap<i32, usize> = BTreeMap::new();
    for message in messages {
        *per_partition.entry(message.partition).or_default() += 1;
    }
    let spread: Vec<String> = per_partition
        .iter()
        .map(|(p, n)| format!("p{p}: {n}"))
        .collect();
    println!(
        "topic {topic}: {} messages ({})",
        messages.len(),
        spread.join(", ")
    );
    for message in messages.iter().take(count) {
        println!(
            "  p{}@{} {} => {}",
            message.partition,
            message.offset,
            message.key_text(),
            message.value_text()
        );
    }
}
