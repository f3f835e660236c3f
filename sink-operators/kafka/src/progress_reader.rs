//! Reading what previous runs committed: the progress topic, the progress groups' offsets, and
//! the startup read that fences retired producers and turns both into a [`Recovery`].

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::acl;
use crate::producer::DeliveryMode;
use crate::topic::{self, redacted, TopicError};
use outflow_protocol::{ProgressScan, ProtocolError, Recovery, SinkNames};

/// How long reading the progress topic to its end may take. A transaction another sink left
/// open on a shared progress topic holds `read_committed` readers back until it ends, at the
/// latest after that producer's `transaction.timeout.ms` (60 s by default in librdkafka); the
/// default waits a little longer than that rather than failing a restart.
pub const DEFAULT_PROGRESS_READ_TIMEOUT: Duration = Duration::from_secs(90);

/// How long one request (offset fetch, `init_transactions` of a fencing producer) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The progress topic has one partition.
const PROGRESS_PARTITION: i32 = 0;

/// librdkafka's `RD_KAFKA_OFFSET_INVALID`: no cached watermark yet.
const OFFSET_INVALID: i64 = -1001;

/// How often a fenced id can turn up in a later read before recovery gives up: each round fences
/// at least one id the previous rounds did not, and only a run racing this one adds ids.
const MAX_FENCING_ROUNDS: usize = 8;

/// Why the state of previous runs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProgressReadError {
    /// The progress topic is missing or has the wrong shape.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// A client could not be built from the connection's options.
    #[error("cannot build a Kafka {purpose}: {reason}")]
    Client {
        /// What the client was for, naming the topic, group or transactional id.
        purpose: String,
        /// librdkafka's reason, with option values left out.
        reason: String,
    },
    /// Reading the progress topic failed for good.
    #[error("reading progress topic {topic} failed at offset {position}: {reason}")]
    Read {
        /// The topic.
        topic: String,
        /// The next offset the reader wanted.
        position: i64,
        /// librdkafka's reason.
        reason: String,
    },
    /// The progress topic's end was not reached in time.
    #[error(
        "timed out after {waited:?} reading progress topic {topic}: reached offset {position} of \
         {end}{last_error}; a transaction left open on the topic (by another sink sharing it, or \
         a producer that died) holds read_committed readers back until it ends or its \
         transaction.timeout.ms passes"
    )]
    Timeout {
        /// The topic.
        topic: String,
        /// How far the reader got.
        position: i64,
        /// The end it was reading to, as text ("an end not yet known" before the first fetch).
        end: String,
        /// How long it tried.
        waited: Duration,
        /// The last transient error seen, as `"; last error: …"`, or empty.
        last_error: String,
    },
    /// A record under one of this sink's keys cannot be trusted.
    #[error("progress topic {topic}, offset {offset}: {source}")]
    Record {
        /// The topic.
        topic: String,
        /// The record's offset.
        offset: i64,
        /// What is wrong with it.
        source: Box<ProtocolError>,
    },
    /// A progress group's committed offset could not be read.
    #[error("reading the committed offset of group {group} on progress topic {topic}: {reason}")]
    OffsetFetch {
        /// The group.
        group: String,
        /// The topic.
        topic: String,
        /// librdkafka's reason.
        reason: String,
    },
    /// A transactional id of a retired worker could not be fenced.
    #[error("fencing transactional id {transactional_id}: {reason}")]
    Fence {
        /// The id.
        transactional_id: String,
        /// librdkafka's reason.
        reason: String,
    },
    /// New retired ids kept turning up, so some other run of the sink is starting concurrently.
    #[error(
        "sink {sink_id}: retired transactional ids kept appearing in progress topic {topic} \
         after {rounds} rounds of fencing; is another run of this sink starting at the same time?"
    )]
    FencingDidNotSettle {
        /// The sink.
        sink_id: String,
        /// The topic.
        topic: String,
        /// How many rounds were tried.
        rounds: usize,
    },
}

/// Result of the progress reader's functions.
pub type Result<T, E = ProgressReadError> = std::result::Result<T, E>;

/// How [`recover`] and [`read_progress`] read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecoverOptions {
    /// How the sink delivers. Without transactions there are no producers to fence.
    pub mode: DeliveryMode,
    /// How long each read of the progress topic may take.
    pub read_timeout: Duration,
    /// Whether the broker may hand records of aborted transactions to `read_committed`
    /// readers (Tansu does: its Fetch sends no aborted-transaction list). Recovery then reads the
    /// progress topic's raw log and applies the control batches itself, trusting exactly the
    /// committed records; where the raw reader cannot be used (TLS, SASL, a broker it cannot
    /// speak to) it trusts only records a committed group offset names. Off by default: Kafka
    /// filters aborted records itself.
    pub reader_shows_aborted: bool,
}

impl Default for RecoverOptions {
    fn default() -> Self {
        RecoverOptions {
            mode: DeliveryMode::ExactlyOnce,
            read_timeout: DEFAULT_PROGRESS_READ_TIMEOUT,
            reader_shows_aborted: false,
        }
    }
}

/// Steps 2 and 3 of the startup order in [`outflow_protocol`], to run once every worker's
/// producer has initialized transactions: reads the progress topic to its end, fences the ids of
/// retired workers, rereads if it fenced any, reads the committed offsets of the progress groups,
/// and computes where a run of `new_workers` resumes. The caller hands the result to worker 0's
/// machine.
pub fn recover(
    config: &ClientConfig,
    names: &SinkNames,
    progress_topic: &str,
    new_workers: u32,
    options: RecoverOptions,
) -> Result<Recovery> {
    let mut fenced = BTreeSet::new();
    for _ in 0..MAX_FENCING_ROUNDS {
        let before = fenced.len();
        let scan = read_progress_fencing(
            config,
            names,
            progress_topic,
            &options,
            new_workers,
            &mut fenced,
        )?;
        // A retired producer may have committed between the read and its fencing; only a read
        // that fenced nothing new is final.
        if fenced.len() == before {
            let offsets =
                committed_seqs(config, names, progress_topic, &scan.workers_with_records())?;
            return Ok(scan.recover(&offsets, new_workers));
        }
    }
    Err(ProgressReadError::FencingDidNotSettle {
        sink_id: names.sink_id.clone(),
        topic: progress_topic.to_string(),
        rounds: MAX_FENCING_ROUNDS,
    })
}

/// [`read_progress`], fencing each retired transactional id (for a run of `new_workers`) as soon
/// as a record names it, and adding it to `fenced`.
///
/// Fencing on sight matters: a retired worker killed inside a transaction that touched the
/// progress topic holds `read_committed` readers back until that transaction ends, and only
/// fencing (or its `transaction.timeout.ms`) ends it. The retired worker's run announced its
/// worker count in worker 0's first transaction, which committed before that worker produced,
/// so the record naming the id is always readable before the transaction that blocks the read.
fn read_progress_fencing(
    config: &ClientConfig,
    names: &SinkNames,
    topic: &str,
    options: &RecoverOptions,
    new_workers: u32,
    fenced: &mut BTreeSet<String>,
) -> Result<ProgressScan> {
    let raw = crate::rawlog::plaintext_bootstrap(config).filter(|_| options.reader_shows_aborted);
    if let Some(bootstrap) = raw {
        match read_progress_raw(
            &bootstrap,
            config,
            names,
            topic,
            options,
            new_workers,
            fenced,
        ) {
            // A broker the raw reader cannot speak to (librdkafka's mock cluster answers its
            // ApiVersions with UnsupportedVersion) is read through librdkafka instead.
            Err(ProgressReadError::Read { reason, .. }) => {
                tracing::debug!(topic, %reason, "raw progress read failed; reading through librdkafka");
            }
            result => return result,
        }
    }
    let mut scan = if options.reader_shows_aborted {
        ProgressScan::showing_aborted(names)
    } else {
        ProgressScan::new(names)
    };
    // librdkafka assigns partitions only to a consumer with a group; this one never joins it
    // or commits, and its name falls under the sink's group prefix, which the sink's ACLs
    // already cover.
    let reader_group = names.progress_reader_group();
    let fences = options.mode == DeliveryMode::ExactlyOnce;
    read_to_end(
        config,
        topic,
        &reader_group,
        &names.progress_group_id_prefix,
        options.read_timeout,
        |offset, key, value| {
            scan.push(key.unwrap_or_default(), value)
                .map_err(|source| ProgressReadError::Record {
                    topic: topic.to_string(),
                    offset,
                    source: Box::new(source),
                })?;
            if fences {
                for transactional_id in scan.retired_transactional_ids(new_workers) {
                    if !fenced.contains(&transactional_id) {
                        fence(config, &transactional_id)?;
                        fenced.insert(transactional_id);
                    }
                }
            }
            Ok(())
        },
    )?;
    Ok(scan)
}

/// The progress read for brokers whose fetches show aborted records: the raw log, with
/// `read_committed` applied from the control batches (see [`crate::rawlog`]), so that recovery
/// sees exactly the committed records and needs no help from group offsets.
///
/// Every retired id that any of this sink's records names, committed or not, is fenced first,
/// which aborts what a killed worker left open; the read repeats until it fences nothing new
/// and no record of this sink belongs to an open transaction.
fn read_progress_raw(
    bootstrap: &str,
    config: &ClientConfig,
    names: &SinkNames,
    topic: &str,
    options: &RecoverOptions,
    new_workers: u32,
    fenced: &mut BTreeSet<String>,
) -> Result<ProgressScan> {
    let prefix = format!("{}/", names.sink_id);
    let ours = |key: &Option<Vec<u8>>| {
        key.as_deref()
            .is_some_and(|k| k.starts_with(prefix.as_bytes()))
    };
    let fences = options.mode == DeliveryMode::ExactlyOnce;
    let started = std::time::Instant::now();
    loop {
        let log = crate::rawlog::read_topic(bootstrap, topic).map_err(|error| {
            ProgressReadError::Read {
                topic: topic.to_string(),
                position: 0,
                reason: error.to_string(),
            }
        })?;
        let records: Vec<crate::rawlog::RawRecord> = log
            .raw()
            .into_iter()
            .filter(|r| ours(&r.record.key))
            .collect();
        let mut fenced_now = false;
        if fences {
            let mut everything = ProgressScan::showing_aborted(names);
            for raw in &records {
                // A record that does not parse is reported below if it was committed.
                let _ = everything.push(
                    raw.record.key.as_deref().unwrap_or_default(),
                    raw.record.value.as_deref(),
                );
            }
            for transactional_id in everything.retired_transactional_ids(new_workers) {
                if fenced.insert(transactional_id.clone()) {
                    fence(config, &transactional_id)?;
                    fenced_now = true;
                }
            }
        }
        let open = records
            .iter()
            .any(|r| r.outcome == crate::rawlog::Outcome::Open);
        if !fenced_now && !open {
            let mut scan = ProgressScan::committed_exactly(names);
            for raw in records.iter().filter(|r| r.outcome.is_visible()) {
                scan.push(
                    raw.record.key.as_deref().unwrap_or_default(),
                    raw.record.value.as_deref(),
                )
                .map_err(|source| ProgressReadError::Record {
                    topic: topic.to_string(),
                    offset: raw.record.offset,
                    source: Box::new(source),
                })?;
            }
            return Ok(scan);
        }
        if started.elapsed() > options.read_timeout {
            return Err(ProgressReadError::Timeout {
                topic: topic.to_string(),
                position: records.iter().map(|r| r.record.offset).max().unwrap_or(0),
                end: "the end of an open transaction of this sink".to_string(),
                waited: started.elapsed(),
                last_error: String::new(),
            });
        }
        if open && !fenced_now {
            // A transaction of one of this run's own ids that `init_transactions` is about to
            // abort, or a zombie's that the broker's transaction timeout will end.
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Reads the progress topic from its start to its end with `isolation.level=read_committed`
/// and collects this sink's records.
///
/// The end is the high watermark of the first Fetch answer, taken from librdkafka's cache of
/// Fetch responses: `ListOffsets` is not trusted (Tansu answers it with the last batch's base
/// offset + 1), and a `read_committed` reader's end-of-partition event comes at the last stable
/// offset, which a transaction another sink holds open keeps below records committed after it.
/// The read ends when the reader's position (which counts control records) reaches that end.
pub fn read_progress(
    config: &ClientConfig,
    names: &SinkNames,
    topic: &str,
    options: &RecoverOptions,
) -> Result<ProgressScan> {
    // No run has this many workers, so no id is retired and nothing is fenced.
    read_progress_fencing(
        config,
        names,
        topic,
        options,
        u32::MAX,
        &mut BTreeSet::new(),
    )
}

/// How many times [`committed_seqs`] asks for a group's offset that keeps timing out.
const OFFSET_FETCH_ATTEMPTS: u32 = 4;

/// The committed offset of each listed worker's progress group on partition 0 of the progress
/// topic: the `seq` of that worker's last committed progress record. Workers whose group has no
/// committed offset are left out.
pub fn committed_seqs(
    config: &ClientConfig,
    names: &SinkNames,
    topic: &str,
    workers: &[u32],
) -> Result<BTreeMap<u32, u64>> {
    let mut seqs = BTreeMap::new();
    for &worker in workers {
        let group = names.progress_group_id(worker);
        let failed = |reason: String| ProgressReadError::OffsetFetch {
            group: group.clone(),
            topic: topic.to_string(),
            reason,
        };
        let mut group_config = config.clone();
        group_config
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "false");
        let consumer: BaseConsumer =
            group_config
                .create()
                .map_err(|error| ProgressReadError::Client {
                    purpose: format!("consumer for group {group}"),
                    reason: redacted(&error),
                })?;
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition(topic, PROGRESS_PARTITION);
        let described = |error: KafkaError| match error.rdkafka_error_code() {
            Some(code) if acl::is_authorization_failure(code) => {
                format!(
                    "{} ({})",
                    reader_denial(code, topic, &group, &names.progress_group_id_prefix),
                    redacted(&error)
                )
            }
            _ => redacted(&error),
        };
        // An offset committed in a transaction that is still open (a producer that died
        // mid-transaction, until the broker times it out) is unstable: the broker withholds it
        // and librdkafka asks again until the call times out. Ask a few times before giving up.
        let mut attempts = 0;
        let committed = loop {
            attempts += 1;
            match consumer.committed_offsets(partitions.clone(), REQUEST_TIMEOUT) {
                Err(error)
                    if attempts < OFFSET_FETCH_ATTEMPTS
                        && error.rdkafka_error_code()
                            == Some(RDKafkaErrorCode::OperationTimedOut) =>
                {
                    tracing::info!(%group, %error, attempts, "the committed offset is not stable yet; asking again");
                }
                Err(error)
                    if error
                        .rdkafka_error_code()
                        .is_some_and(acl::is_authorization_failure) =>
                {
                    return Err(failed(described(error)))
                }
                Err(error) => {
                    return Err(failed(format!(
                        "{} (after {attempts} attempts of {} s; a transaction left open with this \
                         group's offset holds it back until it ends or times out)",
                        redacted(&error),
                        REQUEST_TIMEOUT.as_secs()
                    )))
                }
                Ok(committed) => break committed,
            }
        };
        let Some(entry) = committed.find_partition(topic, PROGRESS_PARTITION) else {
            return Err(failed("the answer did not name partition 0".to_string()));
        };
        entry.error().map_err(|error| failed(described(error)))?;
        match entry.offset() {
            Offset::Offset(offset) => {
                let seq = u64::try_from(offset)
                    .map_err(|_| failed(format!("the committed offset {offset} is negative")))?;
                seqs.insert(worker, seq);
            }
            Offset::Invalid => {}
            other => return Err(failed(format!("unexpected committed offset {other:?}"))),
        }
    }
    Ok(seqs)
}

/// Fences `transactional_id`: a throwaway producer takes it over with `init_transactions`,
/// which bumps its epoch (so the previous holder can no longer produce or commit) and aborts
/// whatever transaction it left open.
pub fn fence(config: &ClientConfig, transactional_id: &str) -> Result<()> {
    let mut fencing_config = config.clone();
    fencing_config
        .set("transactional.id", transactional_id)
        .set("enable.idempotence", "true");
    let producer: BaseProducer =
        fencing_config
            .create()
            .map_err(|error| ProgressReadError::Client {
                purpose: format!("producer to fence transactional id {transactional_id}"),
                reason: redacted(&error),
            })?;
    producer
        .init_transactions(REQUEST_TIMEOUT)
        .map_err(|error| ProgressReadError::Fence {
            transactional_id: transactional_id.to_string(),
            reason: match error.rdkafka_error_code() {
                Some(code) if acl::is_authorization_failure(code) => format!(
                    "{}; grant Write on the sink's TRANSACTIONAL ID PREFIX (pattern type \
                     PREFIXED) ({})",
                    acl::not_authorized("Write", acl::Resource::TransactionalId(transactional_id)),
                    redacted(&error)
                ),
                _ => redacted(&error),
            },
        })
}

/// Reads partition 0 of `topic` from its start to the end described at [`read_progress`],
/// handing each record to `record` in offset order.
/// `group` is the reader's, under the sink's `group_prefix`.
fn read_to_end(
    config: &ClientConfig,
    topic: &str,
    group: &str,
    group_prefix: &str,
    timeout: Duration,
    mut record: impl FnMut(i64, Option<&[u8]>, Option<&[u8]>) -> Result<()>,
) -> Result<()> {
    let started = Instant::now();
    let deadline = started + timeout;
    let reader_config = topic::committed_reader_config(config, group);
    let consumer: BaseConsumer =
        reader_config
            .create()
            .map_err(|error| ProgressReadError::Client {
                purpose: format!("reader of progress topic {topic}"),
                reason: redacted(&error),
            })?;

    let metadata = consumer
        .fetch_metadata(Some(topic), timeout.min(topic::ADMIN_TIMEOUT))
        .map_err(|error| {
            ProgressReadError::Topic(TopicError::Request {
                operation: "reading metadata",
                topic: topic.to_string(),
                reason: redacted(&error),
            })
        })?;
    let (partitions, _) = topic::shape_from_metadata(&metadata, topic)?;
    if partitions != 1 {
        return Err(TopicError::ProgressTopicPartitions {
            topic: topic.to_string(),
            partitions,
        }
        .into());
    }

    topic::from_offset_zero(topic, [PROGRESS_PARTITION])
        .and_then(|assignment| consumer.assign(&assignment))
        .map_err(|error| ProgressReadError::Read {
            topic: topic.to_string(),
            position: 0,
            reason: redacted(&error),
        })?;

    let topic_name = CString::new(topic).map_err(|_| ProgressReadError::Read {
        topic: topic.to_string(),
        position: 0,
        reason: "the topic name contains a NUL byte".to_string(),
    })?;
    let mut end: Option<i64> = None;
    let mut position: i64 = 0;
    let mut last_error: Option<String> = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(ProgressReadError::Timeout {
                topic: topic.to_string(),
                position,
                end: end.map_or_else(|| "an end not yet known".to_string(), |end| end.to_string()),
                waited: now - started,
                last_error: last_error
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default(),
            });
        }
        let Some(polled) = consumer.poll((deadline - now).min(Duration::from_millis(200))) else {
            continue;
        };
        if end.is_none() {
            end = cached_high_watermark(&consumer, &topic_name);
        }
        match polled {
            Ok(message) => {
                let offset = message.offset();
                if end.is_some_and(|end| offset >= end) {
                    // Committed after the end was fixed: not from a previous run of this sink,
                    // whose producers were all fenced before this read.
                    return Ok(());
                }
                record(offset, message.key(), message.payload())?;
                position = offset + 1;
                if end.is_some_and(|end| position >= end) {
                    return Ok(());
                }
            }
            Err(KafkaError::PartitionEOF(_)) => {
                // Control records move the position without being handed out; an empty log
                // that starts above 0 leaves it unset, and then its start is the position.
                position = match reader_position(&consumer, topic) {
                    Some(offset) => offset,
                    None => cached_low_watermark(&consumer, &topic_name).unwrap_or(position),
                }
                .max(position);
                if end.is_some_and(|end| position >= end) {
                    return Ok(());
                }
            }
            Err(
                error @ (KafkaError::MessageConsumptionFatal(_)
                | KafkaError::MessageConsumption(
                    RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::GroupAuthorizationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed,
                )),
            ) => {
                let reason = match error.rdkafka_error_code() {
                    Some(code) if acl::is_authorization_failure(code) => format!(
                        "{} ({})",
                        reader_denial(code, topic, group, group_prefix),
                        redacted(&error)
                    ),
                    _ => redacted(&error),
                };
                return Err(ProgressReadError::Read {
                    topic: topic.to_string(),
                    position,
                    reason,
                });
            }
            Err(error) => {
                // librdkafka retries transient errors itself and reports them along the way.
                tracing::warn!(%topic, position, %error, "transient error reading progress topic");
                last_error = Some(redacted(&error));
            }
        }
    }
}

/// What the progress reader lacked when the broker refused it with `code`: it fetches the
/// topic (Read) as a consumer of `group`, which it only looks up (Describe).
fn reader_denial(code: RDKafkaErrorCode, topic: &str, group: &str, group_prefix: &str) -> String {
    match code {
        RDKafkaErrorCode::GroupAuthorizationFailed => format!(
            "{}; {}, which includes Describe",
            acl::not_authorized("Describe", acl::Resource::Group(group)),
            acl::grant("Read", acl::Resource::Group(group), Some(group_prefix))
        ),
        RDKafkaErrorCode::ClusterAuthorizationFailed => {
            acl::not_authorized("ClusterAction", acl::Resource::Cluster)
        }
        _ => format!(
            "{}; grant Read and Write on topic '{topic}'",
            acl::not_authorized("Read", acl::Resource::Topic(topic))
        ),
    }
}

fn reader_position(consumer: &BaseConsumer, topic: &str) -> Option<i64> {
    let positions = consumer.position().ok()?;
    match positions
        .find_partition(topic, PROGRESS_PARTITION)?
        .offset()
    {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

fn cached_high_watermark(consumer: &BaseConsumer, topic: &CString) -> Option<i64> {
    cached_watermarks(consumer, topic).1
}

fn cached_low_watermark(consumer: &BaseConsumer, topic: &CString) -> Option<i64> {
    cached_watermarks(consumer, topic).0
}

/// The log start and high watermark of the progress partition as the last Fetch answer gave
/// them (`rd_kafka_get_watermark_offsets`, which rdkafka does not wrap): no request is sent, and
/// unlike `ListOffsets` the Fetch answer's high watermark is right on Tansu.
fn cached_watermarks(consumer: &BaseConsumer, topic: &CString) -> (Option<i64>, Option<i64>) {
    let mut low = OFFSET_INVALID;
    let mut high = OFFSET_INVALID;
    // SAFETY: the client handle lives as long as `consumer`, which outlives the call; `topic`
    // is NUL-terminated and outlives the call; `low` and `high` are valid for writes.
    let error = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            PROGRESS_PARTITION,
            &mut low,
            &mut high,
        )
    };
    if error != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return (None, None);
    }
    let known = |offset: i64| (offset >= 0).then_some(offset);
    (known(low), known(high))
}
