//! Reading a whole topic through librdkafka as an ordinary consumer would: `isolation.level`
//! `read_committed` (or `read_uncommitted`, for diagnostics), assigned from offset 0 on every
//! partition and read up to the high watermark each partition had when the read began.
//!
//! This is the reader for brokers whose `read_committed` is trustworthy (Apache Kafka): the
//! broker, not the test, decides what is committed. A `read_committed` consumer stops at the
//! last stable offset, so a partition with a transaction still open cannot be read to its high
//! watermark; the read then waits, and fails after its patience with the offsets it reached.
//! Records come in the shape of the raw-log reader's ([`LogRecord`]), partition by partition in
//! offset order, so the audits of [`crate::pipeline`] take either.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

pub use outflow::rawlog::LogRecord;
use outflow::topic::{self, committed_reader_config};

use crate::broker::unique_name;
use crate::kafka::Isolation;

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read waits for the partitions to reach their high watermarks.
pub const PATIENCE: Duration = Duration::from_secs(30);

fn config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config
}

/// The sink's own committed-reader settings (`outflow::topic::committed_reader_config`), at the
/// isolation level asked for.
fn consumer(bootstrap: &str, isolation: Isolation) -> Result<BaseConsumer, String> {
    committed_reader_config(&config(bootstrap), &unique_name("committed-reader"))
        .set("isolation.level", isolation.name())
        .create()
        .map_err(|e| format!("creating a consumer: {e}"))
}

/// The number of partitions of `topic`.
pub fn partition_count(bootstrap: &str, topic: &str) -> Result<usize, String> {
    topic::partition_count(&config(bootstrap), topic)
        .map(|count| count as usize)
        .map_err(|e| format!("partitions of {topic}: {e}"))
}

/// Every committed record of `topic` (`read_committed`), partition by partition in offset
/// order, read up to the high watermarks the partitions had when the read began.
pub fn read_committed(bootstrap: &str, topic: &str) -> Result<Vec<LogRecord>, String> {
    read_topic(bootstrap, topic, Isolation::ReadCommitted, PATIENCE)
}

/// What a `read_committed` consumer sees of `topic` now: each partition read up to the first
/// end of partition it reports, which is the last stable offset. Unlike [`read_committed`] it
/// does not wait for transactions still open (those of a killed producer, say) to be decided.
pub fn read_stable(bootstrap: &str, topic: &str) -> Result<Vec<LogRecord>, String> {
    read(bootstrap, topic, Isolation::ReadCommitted, PATIENCE, true)
}

/// As [`read_committed`], with the isolation level and patience given.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    isolation: Isolation,
    patience: Duration,
) -> Result<Vec<LogRecord>, String> {
    read(bootstrap, topic, isolation, patience, false)
}

fn read(
    bootstrap: &str,
    topic: &str,
    isolation: Isolation,
    patience: Duration,
    stop_at_end_of_partition: bool,
) -> Result<Vec<LogRecord>, String> {
    let consumer = consumer(bootstrap, isolation)?;
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for partition in 0..partition_count(bootstrap, topic)? as i32 {
        let (_low, high) = consumer
            .fetch_watermarks(topic, partition, METADATA_TIMEOUT)
            .map_err(|e| format!("watermarks of {topic}/{partition}: {e}"))?;
        ends.insert(partition, high);
    }
    let mut assignment = TopicPartitionList::new();
    for &partition in ends.keys() {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("assigning {topic}: {e}"))?;

    let mut records: BTreeMap<i32, Vec<LogRecord>> = BTreeMap::new();
    // Where each partition's reading has got to: past its last record, or where an EOF left it
    // (control markers and aborted records take offsets a read_committed reader never sees).
    let mut reached: BTreeMap<i32, i64> = ends.keys().map(|&p| (p, 0)).collect();
    let deadline = Instant::now() + patience;
    let done = |reached: &BTreeMap<i32, i64>| ends.iter().all(|(p, end)| reached[p] >= *end);
    while !done(&reached) {
        if Instant::now() > deadline {
            return Err(format!(
                "{topic} ({}): after {patience:?} reading reached {reached:?} of the high \
                 watermarks {ends:?} (a transaction still open holds read_committed readers at \
                 the last stable offset)",
                isolation.name()
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(message)) => {
                let partition = message.partition();
                let offset = message.offset();
                let headers = message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default();
                let record = LogRecord {
                    partition,
                    offset,
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().map(<[u8]>::to_vec),
                    headers,
                    timestamp: message.timestamp().to_millis().unwrap_or(-1),
                };
                if offset < ends[&partition] {
                    records.entry(partition).or_default().push(record);
                }
                let at = reached.get_mut(&partition).unwrap();
                *at = (*at).max(offset + 1);
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                if stop_at_end_of_partition {
                    let at = reached.get_mut(&partition).unwrap();
                    *at = (*at).max(ends[&partition]);
                    continue;
                }
                let position = consumer.position().map_err(|e| e.to_string())?;
                if let Some(Offset::Offset(offset)) = position
                    .find_partition(topic, partition)
                    .map(|e| e.offset())
                {
                    let at = reached.get_mut(&partition).unwrap();
                    *at = (*at).max(offset);
                }
            }
            Some(Err(error)) => return Err(format!("reading {topic}: {error}")),
        }
    }
    Ok(records.into_values().flatten().collect())
}

/// [`crate::pipeline::assert_topic_holds`] with this reader: asserts that the committed
/// records of the UPSERT JSON topic `topic` hold `expected`; on a mismatch the panic also lists
/// a `read_uncommitted` read of the differing keys (aborted and open records included).
/// Returns the committed records.
pub fn assert_topic_holds(
    bootstrap: &str,
    topic: &str,
    expected: &BTreeMap<i64, Vec<Option<String>>>,
    context: &str,
) -> Vec<LogRecord> {
    let committed =
        read_committed(bootstrap, topic).unwrap_or_else(|e| panic!("reading {topic}: {e}"));
    if &crate::pipeline::upserts_by_key(&committed) == expected {
        return committed;
    }
    let uncommitted = read_topic(bootstrap, topic, Isolation::ReadUncommitted, PATIENCE)
        .unwrap_or_else(|e| panic!("reading {topic} read_uncommitted: {e}"));
    crate::pipeline::assert_records_hold(topic, committed, &uncommitted, expected, context)
}
