//! The librdkafka driver of one worker's [`Machine`]: a producer per worker, whose blocking
//! transactional calls run on an I/O thread of their own while the worker thread only enqueues.

use std::cell::Cell;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::acl;
use crate::spec::Compression;
use crate::topic::redacted;
use outflow_protocol::{
    Action, Cadence, ErrorKind, Event, Machine, ProtocolError, SinkNames, TxnError,
};

/// The progress topic has one partition.
const PROGRESS_PARTITION: i32 = 0;

/// How the sink delivers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    /// Transactions: data, progress record and group offset commit together, and a restart
    /// fences the previous producers. Needs a broker with transactions.
    #[default]
    ExactlyOnce,
    /// An idempotent producer without transactions: a batch's progress record and group offset
    /// are written only after all of its data was acknowledged, so a restart may write some
    /// updates again but loses none. For brokers or permissions without transactions.
    AtLeastOnce,
}

/// `transaction.timeout.ms` of a sink's producers unless its cadence says otherwise.
pub use outflow_protocol::DEFAULT_TRANSACTION_TIMEOUT;
/// How long one blocking producer call may take before it is retried, unless the plan says
/// otherwise.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What one worker's producer needs beyond the connection's options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerSettings {
    /// The sink's names; the worker's transactional id and group come from them.
    pub names: SinkNames,
    /// This worker's index.
    pub worker: u32,
    /// Where data goes.
    pub data_topic: String,
    /// Where progress records and group offsets go.
    pub progress_topic: String,
    /// Transactions or at-least-once.
    pub mode: DeliveryMode,
    /// `compression.type`, named for librdkafka only when the producer is configured.
    pub compression: Compression,
    /// `transaction.timeout.ms`: how long the broker keeps a transaction of a silent producer
    /// open. An open transaction holds back `read_committed` readers of its partitions, the
    /// progress reader of a restarting sink included, so shorter is kinder; it must exceed the
    /// commit interval plus the time to send a transaction's bytes.
    pub transaction_timeout: Duration,
    /// How long one blocking call (init, send offsets, commit with its flush, abort) may take
    /// before it is reported as timed out; the machine then repeats it.
    pub call_timeout: Duration,
    /// `linger.ms`: how long librdkafka waits to fill a batch.
    pub linger: Duration,
    /// The most bytes of messages this worker can have handed to librdkafka and not yet had
    /// acknowledged; librdkafka's queue is sized above it so that a send never finds it full.
    pub max_queued_bytes: usize,
}

impl ProducerSettings {
    /// Settings for worker `worker` with the default [`Compression`], the cadence's transaction
    /// timeout, 30 s calls, 5 ms linger, and a queue bound derived from the machine's `cadence`.
    pub fn new(
        names: SinkNames,
        worker: u32,
        data_topic: impl Into<String>,
        progress_topic: impl Into<String>,
        cadence: &Cadence,
    ) -> Self {
        ProducerSettings {
            names,
            worker,
            data_topic: data_topic.into(),
            progress_topic: progress_topic.into(),
            mode: DeliveryMode::ExactlyOnce,
            compression: Compression::default(),
            transaction_timeout: cadence.transaction_timeout,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            linger: Duration::from_millis(5),
            max_queued_bytes: queue_bound(cadence),
        }
    }

    /// The transactional id this worker uses.
    pub fn transactional_id(&self) -> String {
        self.names.transactional_id(self.worker)
    }
}

/// The bytes a machine with `cadence` can have in librdkafka at once: an aborted transaction is
/// resent whole (up to twice `max_transaction_bytes`, per [`Cadence`]) while messages fed before
/// the machine paused its input (`max_in_flight_bytes`) are still queued.
pub fn queue_bound(cadence: &Cadence) -> usize {
    cadence
        .max_transaction_bytes
        .saturating_mul(2)
        .saturating_add(cadence.max_in_flight_bytes)
}

/// The librdkafka configuration of a worker's producer: the connection's options plus these,
/// which override any the connection sets.
///
/// - `enable.idempotence=true`: no duplicates or reordering from librdkafka's own retries (also
///   sets `acks=all` and at most 5 requests in flight).
/// - `transactional.id` and `transaction.timeout.ms` (exactly-once only).
/// - `compression.type`, `linger.ms` from the settings; `batch.num.messages=10000` and
///   `batch.size=1000000`: large batches, the setting measured at 1 M msg/s against Tansu.
/// - `queue.buffering.max.kbytes` at twice the queue bound and `queue.buffering.max.messages=0`
///   (no count limit): the machine's byte bound is the only limit, so a send never meets a full
///   queue, whatever the message size.
/// - `partitioner=murmur2_random`: messages without an explicit partition go where the Java
///   client would put them.
pub fn producer_config(config: &ClientConfig, settings: &ProducerSettings) -> ClientConfig {
    let mut producer = config.clone();
    let queue_kbytes =
        (settings.max_queued_bytes.saturating_mul(2) / 1024).clamp(1, i32::MAX as usize);
    producer
        .set("enable.idempotence", "true")
        .set("compression.type", settings.compression.as_str())
        .set("linger.ms", settings.linger.as_millis().to_string())
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", queue_kbytes.to_string())
        .set("queue.buffering.max.messages", "0")
        .set("partitioner", "murmur2_random");
    if settings.mode == DeliveryMode::ExactlyOnce {
        producer
            .set("transactional.id", settings.transactional_id())
            .set(
                "transaction.timeout.ms",
                settings.transaction_timeout.as_millis().to_string(),
            );
    } else {
        producer.remove("transactional.id");
    }
    producer
}

/// A message the sink writes to its data topic.
pub trait OutgoingRecord: Send + 'static {
    /// The partition; `None` leaves it to the producer's `murmur2_random` partitioner.
    fn partition(&self) -> Option<i32>;
    /// The key bytes, if any.
    fn key(&self) -> Option<&[u8]>;
    /// The value bytes; `None` is a tombstone.
    fn value(&self) -> Option<&[u8]>;
    /// Calls `add` for each header, in order.
    fn headers(&self, add: &mut dyn FnMut(&str, Option<&[u8]>));
    /// The record's timestamp in milliseconds since the epoch; `None` lets the producer stamp it.
    fn timestamp(&self) -> Option<i64> {
        None
    }
}

/// An encoded message with its partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkRecord {
    /// The partition; `None` leaves it to the producer.
    pub partition: Option<i32>,
    /// The key bytes.
    pub key: Option<Vec<u8>>,
    /// The value bytes; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    /// Header names and values, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Milliseconds since the epoch, or `None`.
    pub timestamp: Option<i64>,
}

impl OutgoingRecord for SinkRecord {
    fn partition(&self) -> Option<i32> {
        self.partition
    }
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }
    fn value(&self) -> Option<&[u8]> {
        self.value.as_deref()
    }
    fn headers(&self, add: &mut dyn FnMut(&str, Option<&[u8]>)) {
        for (name, value) in &self.headers {
            add(name, value.as_deref());
        }
    }
    fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }
}

/// Shared records: the machine keeps a copy of each message of the open transaction for a
/// resend, and an `Arc` makes that copy free.
impl<T: OutgoingRecord + Sync> OutgoingRecord for Arc<T> {
    fn partition(&self) -> Option<i32> {
        (**self).partition()
    }
    fn key(&self) -> Option<&[u8]> {
        (**self).key()
    }
    fn value(&self) -> Option<&[u8]> {
        (**self).value()
    }
    fn headers(&self, add: &mut dyn FnMut(&str, Option<&[u8]>)) {
        (**self).headers(add)
    }
    fn timestamp(&self) -> Option<i64> {
        (**self).timestamp()
    }
}

/// Why a worker's producer could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// librdkafka refused the configuration.
    #[error("cannot build the producer of worker {worker} (transactional id {transactional_id}): {reason}")]
    Client {
        /// The worker.
        worker: u32,
        /// Its transactional id.
        transactional_id: String,
        /// librdkafka's reason, with option values left out.
        reason: String,
    },
    /// The I/O thread could not be started.
    #[error("cannot start the producer thread of worker {worker}: {source}")]
    Thread {
        /// The worker.
        worker: u32,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A topic name librdkafka cannot take (it holds a NUL byte).
    #[error("topic name {topic:?} holds a NUL byte")]
    TopicName {
        /// The name.
        topic: String,
    },
}

/// Counters of one worker's producer, for the sink's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// Messages handed to librdkafka and not yet acknowledged or failed.
    pub messages_in_flight: i64,
    /// Their bytes, as the machine counts them.
    pub bytes_in_flight: i64,
    /// Messages the broker acknowledged (data and progress records).
    pub delivered_messages: u64,
    /// Their bytes.
    pub delivered_bytes: u64,
    /// Messages that failed (they are resent in a later transaction).
    pub failed_messages: u64,
    /// Commits (and at-least-once batch ends) whose deliveries had all been reported before the
    /// commit call began, and those that began with messages still in flight. rust-rdkafka's
    /// own pre-commit flush polls in 100 ms slices that run to their end while anything is in
    /// flight, so every commit is meant to be of the first kind.
    pub commits_after_deliveries: u64,
    pub commits_with_messages_in_flight: u64,
    /// How long the last commit took, from the delivery wait to the broker's answer.
    pub last_commit_micros: u64,
}

/// How often, and for how long, a failing worker checks its progress topic for lost data.
const LOST_DATA_CHECK_INTERVAL: Duration = Duration::from_secs(5);
const LOST_DATA_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Classifies a librdkafka error into what the machine does about it, and describes it.
pub fn classify(error: &KafkaError) -> TxnError {
    let kind = match error {
        KafkaError::Transaction(rd) => {
            let code = rd.code();
            if is_fenced(code) {
                ErrorKind::Fenced
            } else if is_unsupported(code) {
                // A broker without transactions: the at-least-once mode still works there, and
                // the machine's message says so.
                ErrorKind::Unsupported
            } else if acl::is_authorization_failure(code) {
                // A missing ACL: retrying meets the same refusal, and the message names it.
                ErrorKind::Fatal
            } else if rd.is_fatal() {
                ErrorKind::Fatal
            } else if rd.txn_requires_abort() {
                ErrorKind::Abortable
            } else if is_unsupported(code) {
                ErrorKind::Unsupported
            } else if is_timeout(code) {
                ErrorKind::TimedOut
            } else if rd.is_retriable() {
                ErrorKind::Retriable
            } else {
                // Neither retriable nor abortable: a state the client will not leave.
                ErrorKind::Fatal
            }
        }
        KafkaError::MessageProduction(code) => match code {
            code if is_fenced(*code) => ErrorKind::Fenced,
            code if is_unsupported(*code) => ErrorKind::Unsupported,
            RDKafkaErrorCode::MessageTimedOut => ErrorKind::TimedOut,
            RDKafkaErrorCode::QueueFull
            | RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed => ErrorKind::Fatal,
            RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition => ErrorKind::Retriable,
            // The transaction cannot commit with a lost message; a new one resends it.
            _ => ErrorKind::Abortable,
        },
        KafkaError::Flush(code) if is_timeout(*code) => ErrorKind::TimedOut,
        KafkaError::Flush(_) => ErrorKind::Retriable,
        KafkaError::ConsumerCommit(code) if is_timeout(*code) => ErrorKind::TimedOut,
        KafkaError::ConsumerCommit(code) if is_fatal_for_group(*code) => ErrorKind::Fatal,
        KafkaError::ConsumerCommit(_) => ErrorKind::Retriable,
        _ => ErrorKind::Fatal,
    };
    let mut message = redacted(error);
    if let Some(code) = error.rdkafka_error_code() {
        message.push_str(&format!(" [{code:?}]"));
        if let Some(hint) = hint(code) {
            message.push_str("; ");
            message.push_str(hint);
        }
    }
    TxnError::new(kind, message)
}

/// A message's key as an error shows it: its text when it is printable UTF-8 (JSON and TEXT
/// keys), else its bytes in hex; long keys are cut.
fn describe_key(key: Option<&[u8]>) -> String {
    const SHOWN: usize = 120;
    let Some(key) = key else {
        return "no key".to_string();
    };
    match std::str::from_utf8(key) {
        Ok(text) if !text.chars().any(char::is_control) => {
            let cut: String = text.chars().take(SHOWN).collect();
            let more = if cut.len() < text.len() { "…" } else { "" };
            format!("key {cut}{more}")
        }
        _ => {
            let hex: String = key
                .iter()
                .take(SHOWN / 2)
                .map(|b| format!("{b:02x}"))
                .collect();
            let more = if key.len() > SHOWN / 2 { "…" } else { "" };
            format!("key 0x{hex}{more}")
        }
    }
}

fn is_fenced(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::Fenced
    )
}

fn is_timeout(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::MessageTimedOut
            | RDKafkaErrorCode::TimedOutQueue
    )
}

fn is_unsupported(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnsupportedFeature
            | RDKafkaErrorCode::UnsupportedVersion
            | RDKafkaErrorCode::UnsupportedForMessageFormat
    )
}

fn is_fatal_for_group(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::InvalidGroupId
    )
}

/// The operation and resource an authorization refusal of `call` (or of a delivery to
/// `topic`) was about, with the ACL that grants it; `None` for other errors.
fn denial(
    code: RDKafkaErrorCode,
    settings: &ProducerSettings,
    call: &str,
    topic: Option<&str>,
) -> Option<String> {
    use acl::{grant, not_authorized, Resource};
    let names = &settings.names;
    Some(match code {
        RDKafkaErrorCode::TransactionalIdAuthorizationFailed => {
            let id = settings.transactional_id();
            let resource = Resource::TransactionalId(&id);
            format!(
                "{}; {}",
                not_authorized("Write", resource),
                grant("Write", resource, Some(&names.transactional_id_prefix))
            )
        }
        RDKafkaErrorCode::GroupAuthorizationFailed => {
            let group = names.progress_group_id(settings.worker);
            let resource = Resource::Group(&group);
            format!(
                "{}; {}",
                not_authorized("Read", resource),
                grant("Read", resource, Some(&names.progress_group_id_prefix))
            )
        }
        // A transactional offset commit needs Read on the topic of the offsets.
        RDKafkaErrorCode::TopicAuthorizationFailed if call == SEND_OFFSETS => {
            let resource = Resource::Topic(&settings.progress_topic);
            format!(
                "{}; {}",
                not_authorized("Read", resource),
                grant("Read", resource, None)
            )
        }
        RDKafkaErrorCode::TopicAuthorizationFailed => match topic {
            Some(topic) => {
                let resource = Resource::Topic(topic);
                format!(
                    "{}; {}",
                    not_authorized("Write", resource),
                    grant("Write", resource, None)
                )
            }
            None => format!(
                "not authorized to Write to topic '{}' or to topic '{}'; grant Write on both",
                settings.data_topic, settings.progress_topic
            ),
        },
        RDKafkaErrorCode::ClusterAuthorizationFailed => format!(
            "{}; grant IdempotentWrite on the cluster, or Write on topic '{}'",
            not_authorized("IdempotentWrite", Resource::Cluster),
            settings.data_topic
        ),
        _ => return None,
    })
}

/// Puts the refusal `denial` names before `failure`'s message, and makes it fatal: the same
/// request meets the same refusal until someone grants the ACL.
fn name_denial(failure: &mut TxnError, denial: Option<String>) {
    if let Some(denial) = denial {
        failure.kind = ErrorKind::Fatal;
        failure.message = format!("{denial} ({})", failure.message);
    }
}

/// What librdkafka's log said the broker refused, when a transactional request (adding a
/// partition to the transaction) was refused without a call or delivery reporting the code:
/// the topic named in `Failed to add partition "T" [0] to transaction: Broker: Topic
/// authorization failed`.
fn logged_denial(message: &str) -> Option<String> {
    if !message.contains("Topic authorization failed") {
        return None;
    }
    let (_, rest) = message.split_once("partition \"")?;
    let (topic, _) = rest.split_once("\" [")?;
    Some(format!(
        "{}; {}",
        acl::not_authorized("Write", acl::Resource::Topic(topic)),
        acl::grant("Write", acl::Resource::Topic(topic), None)
    ))
}

const SEND_OFFSETS: &str = "send_offsets_to_transaction";

fn hint(code: RDKafkaErrorCode) -> Option<&'static str> {
    Some(match code {
        RDKafkaErrorCode::InvalidTransactionTimeout => {
            "the transaction timeout exceeds the broker's transaction.max.timeout.ms"
        }
        RDKafkaErrorCode::MessageSizeTooLarge => {
            "a message exceeds the topic's max.message.bytes or the client's message.max.bytes"
        }
        RDKafkaErrorCode::QueueFull => {
            "librdkafka's queue is sized above the sink's in-flight bound, so this is a bug in \
             outflow's back-pressure; please report it"
        }
        _ => return None,
    })
}

/// The result events of one worker, pushed by the I/O thread and by delivery reports, drained by
/// the worker thread. Consecutive successful deliveries of one transaction are merged into one
/// event, and the wake-up callback runs only when the queue goes from empty to not empty, so a
/// burst of acknowledgements costs the worker one activation.
struct EventQueue<M> {
    events: Mutex<VecDeque<Event<M>>>,
    wake: Mutex<Box<dyn Fn() + Send>>,
}

impl<M> EventQueue<M> {
    fn push(&self, event: Event<M>) {
        let was_empty = {
            let mut events = self
                .events
                .lock()
                .expect("the event queue's lock is never poisoned");
            if let (
                Event::Delivered {
                    transaction,
                    bytes,
                    result: Ok(()),
                },
                Some(Event::Delivered {
                    transaction: last,
                    bytes: merged,
                    result: Ok(()),
                }),
            ) = (&event, events.back_mut())
            {
                if transaction == last {
                    *merged += bytes;
                    return;
                }
            }
            let was_empty = events.is_empty();
            events.push_back(event);
            was_empty
        };
        if was_empty {
            (self
                .wake
                .lock()
                .expect("the wake callback's lock is never poisoned"))();
        }
    }

    fn pop(&self) -> Option<Event<M>> {
        self.events
            .lock()
            .expect("the event queue's lock is never poisoned")
            .pop_front()
    }
}

#[derive(Default)]
struct Counters {
    messages_in_flight: AtomicI64,
    bytes_in_flight: AtomicI64,
    delivered_messages: AtomicU64,
    delivered_bytes: AtomicU64,
    failed_messages: AtomicU64,
    /// The highest transaction attempt with a failed message (0: none); at-least-once commits
    /// check it because no coordinator does.
    last_failed_transaction: AtomicU64,
    commits_after_deliveries: AtomicU64,
    commits_with_messages_in_flight: AtomicU64,
    last_commit_micros: AtomicU64,
    /// Commit durations not yet taken by [`ProducerDriver::take_commit_micros`], the newest
    /// [`KEPT_COMMIT_TIMES`] at most.
    commit_times: Mutex<VecDeque<u64>>,
    /// The transaction attempt and offset of the last progress record the broker acknowledged.
    progress_transaction: AtomicU64,
    progress_offset: AtomicI64,
}

/// How many untaken commit durations a driver keeps.
const KEPT_COMMIT_TIMES: usize = 1024;

impl Counters {
    fn commit_took(&self, micros: u64) {
        let mut times = self
            .commit_times
            .lock()
            .expect("the commit times' lock is never poisoned");
        if times.len() == KEPT_COMMIT_TIMES {
            times.pop_front();
        }
        times.push_back(micros);
    }

    fn sending(&self, bytes: usize) {
        self.messages_in_flight.fetch_add(1, Ordering::Relaxed);
        self.bytes_in_flight
            .fetch_add(bytes as i64, Ordering::Relaxed);
    }

    fn settled(&self, transaction: u64, bytes: usize, delivered: bool) {
        self.messages_in_flight.fetch_sub(1, Ordering::Relaxed);
        self.bytes_in_flight
            .fetch_sub(bytes as i64, Ordering::Relaxed);
        if delivered {
            self.delivered_messages.fetch_add(1, Ordering::Relaxed);
            self.delivered_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
        } else {
            self.failed_messages.fetch_add(1, Ordering::Relaxed);
            self.last_failed_transaction
                .fetch_max(transaction, Ordering::AcqRel);
        }
    }
}

/// What a delivery report needs to answer the machine.
struct Delivery {
    transaction: u64,
    bytes: usize,
}

/// A message's [`Delivery`] as the pointer-sized opaque librdkafka carries to its report: packed
/// into an odd integer (so never a pointer) when it fits, which it does unless a worker made
/// 2³¹ transactions or a message is 4 GiB, else boxed. Packing spares an allocation per message.
enum DeliveryTag {
    Packed(u64),
    Boxed(Box<Delivery>),
}

impl DeliveryTag {
    fn new(transaction: u64, bytes: usize) -> DeliveryTag {
        if usize::BITS >= 64 && transaction < 1 << 31 && (bytes as u64) < 1 << 32 {
            DeliveryTag::Packed((transaction << 33) | ((bytes as u64) << 1) | 1)
        } else {
            DeliveryTag::Boxed(Box::new(Delivery { transaction, bytes }))
        }
    }

    fn delivery(self) -> Delivery {
        match self {
            DeliveryTag::Packed(tag) => Delivery {
                transaction: tag >> 33,
                bytes: ((tag >> 1) & 0xffff_ffff) as usize,
            },
            DeliveryTag::Boxed(delivery) => *delivery,
        }
    }
}

impl rdkafka::util::IntoOpaque for DeliveryTag {
    fn into_ptr(self) -> *mut std::ffi::c_void {
        match self {
            DeliveryTag::Packed(tag) => tag as usize as *mut std::ffi::c_void,
            DeliveryTag::Boxed(delivery) => Box::into_raw(delivery).cast(),
        }
    }

    unsafe fn from_ptr(ptr: *mut std::ffi::c_void) -> DeliveryTag {
        if ptr as usize & 1 == 1 {
            DeliveryTag::Packed(ptr as usize as u64)
        } else {
            // SAFETY: an even opaque is a `Box<Delivery>` made by `into_ptr`, given back once.
            DeliveryTag::Boxed(unsafe { Box::from_raw(ptr.cast()) })
        }
    }
}

struct DriverContext<M> {
    transactional_id: String,
    settings: ProducerSettings,
    progress_topic: String,
    events: Arc<EventQueue<M>>,
    counters: Arc<Counters>,
    /// An authorization refusal librdkafka only logged (see [`logged_denial`]), named in the
    /// errors that follow it.
    logged_denial: Mutex<Option<String>>,
}

impl<M> DriverContext<M> {
    fn logged_denial(&self) -> Option<String> {
        self.logged_denial
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl<M: Send + 'static> ClientContext for DriverContext<M> {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as Level;
        if let Some(denial) = logged_denial(message) {
            *self.logged_denial.lock().unwrap_or_else(|p| p.into_inner()) = Some(denial);
        }
        match level {
            Level::Emerg | Level::Alert | Level::Critical | Level::Error => {
                tracing::error!(target: "librdkafka", "librdkafka: {facility} {message}")
            }
            Level::Warning => {
                tracing::warn!(target: "librdkafka", "librdkafka: {facility} {message}")
            }
            Level::Notice | Level::Info => {
                tracing::info!(target: "librdkafka", "librdkafka: {facility} {message}")
            }
            Level::Debug => {
                tracing::debug!(target: "librdkafka", "librdkafka: {facility} {message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Errors that matter reach the machine through a call or a delivery report; these are
        // librdkafka's running commentary (a broker went away, a retry), worth a log line.
        tracing::warn!(transactional_id = %self.transactional_id, %error, reason, "producer");
    }
}

impl<M: Send + 'static> ProducerContext for DriverContext<M> {
    type DeliveryOpaque = DeliveryTag;

    fn delivery(&self, result: &DeliveryResult<'_>, delivery: DeliveryTag) {
        let Delivery { transaction, bytes } = delivery.delivery();
        let result = match result {
            Ok(message) => {
                if message.topic() == self.progress_topic {
                    self.counters
                        .progress_offset
                        .store(message.offset(), Ordering::Relaxed);
                    self.counters
                        .progress_transaction
                        .store(transaction, Ordering::Release);
                }
                Ok(())
            }
            Err((error, message)) => {
                let mut failure = classify(error);
                let denied = error
                    .rdkafka_error_code()
                    .and_then(|code| denial(code, &self.settings, "", Some(message.topic())));
                name_denial(&mut failure, denied.or_else(|| self.logged_denial()));
                failure.message = format!(
                    "delivery to {}[{}] of the message with {} ({} bytes) failed: {}",
                    message.topic(),
                    message.partition(),
                    describe_key(message.key()),
                    message.payload_len() + message.key().map_or(0, <[u8]>::len),
                    failure.message
                );
                Err(failure)
            }
        };
        self.counters.settled(transaction, bytes, result.is_ok());
        self.events.push(Event::Delivered {
            transaction,
            bytes,
            result,
        });
    }
}

type KafkaProducer<M> = ThreadedProducer<DriverContext<M>>;

/// The calls that block; the I/O thread makes them in order.
enum Call {
    Init,
    Begin,
    SendOffsets {
        group: String,
        offset: u64,
    },
    Commit {
        transaction: u64,
    },
    Abort,
    /// At-least-once: the batch's progress record, written at commit after its data.
    HoldProgress {
        transaction: u64,
        bytes: usize,
        key: String,
        value: Vec<u8>,
    },
}

impl Call {
    /// The event that answers this call with `error`.
    fn failed<M>(self, error: TxnError) -> Event<M> {
        match self {
            Call::Init => Event::Initialized(Err(error)),
            Call::Begin => Event::Began(Err(error)),
            Call::SendOffsets { .. } => Event::OffsetsSent(Err(error)),
            Call::Commit { .. } => Event::Committed(Err(error)),
            Call::Abort => Event::Aborted(Err(error)),
            Call::HoldProgress {
                transaction, bytes, ..
            } => Event::Delivered {
                transaction,
                bytes,
                result: Err(error),
            },
        }
    }
}

/// The librdkafka side of one worker's [`Machine`].
///
/// Carry out each action of the machine with [`ProducerDriver::execute`] and feed it the
/// events of [`ProducerDriver::poll_event`] (or let [`ProducerDriver::step`] do both). Sends
/// are enqueued in librdkafka from the calling thread, which never waits: a send needs no
/// network, and librdkafka's queue is sized above what the machine can have in flight. The
/// transactional calls, which wait for brokers, run on the driver's I/O thread, and their
/// results come back as events, as do delivery reports; each batch of new events calls the
/// wake-up callback (a timely operator passes its `SyncActivator`).
pub struct ProducerDriver<M: OutgoingRecord> {
    // Dropped before `calls`, so that the I/O thread, not the worker, drops the last handle
    // and with it waits for librdkafka to purge its queue.
    producer: KafkaProducer<M>,
    calls: Sender<Call>,
    events: Arc<EventQueue<M>>,
    counters: Arc<Counters>,
    settings: ProducerSettings,
    last_transaction: Cell<u64>,
    initialized: Cell<bool>,
    io_thread: Option<JoinHandle<()>>,
    /// The topics' names as librdkafka takes them, made once rather than for every message.
    data_topic: CString,
    progress_topic: CString,
}

impl<M: OutgoingRecord> ProducerDriver<M> {
    /// Builds the worker's producer from the connection's options and starts its I/O thread.
    /// Nothing is sent until the machine asks for `InitTransactions`.
    pub fn start(
        config: &ClientConfig,
        settings: ProducerSettings,
        wake: Box<dyn Fn() + Send>,
    ) -> Result<Self, ProducerError> {
        let topic_name = |topic: &str| {
            CString::new(topic).map_err(|_| ProducerError::TopicName {
                topic: topic.to_string(),
            })
        };
        let data_topic = topic_name(&settings.data_topic)?;
        let progress_topic = topic_name(&settings.progress_topic)?;
        let transactional_id = settings.transactional_id();
        let events = Arc::new(EventQueue {
            events: Mutex::new(VecDeque::new()),
            wake: Mutex::new(wake),
        });
        let counters = Arc::new(Counters::default());
        let context = DriverContext {
            transactional_id: transactional_id.clone(),
            settings: settings.clone(),
            progress_topic: settings.progress_topic.clone(),
            events: Arc::clone(&events),
            counters: Arc::clone(&counters),
            logged_denial: Mutex::new(None),
        };
        let producer: KafkaProducer<M> = producer_config(config, &settings)
            .create_with_context(context)
            .map_err(|error| ProducerError::Client {
                worker: settings.worker,
                transactional_id: transactional_id.clone(),
                reason: redacted(&error),
            })?;
        let (calls, incoming) = mpsc::channel();
        let io = IoThread {
            producer: producer.clone(),
            config: config.clone(),
            settings: settings.clone(),
            events: Arc::clone(&events),
            counters: Arc::clone(&counters),
            groups: HashMap::new(),
            held_progress: None,
            pending_offset: None,
            ending_timing_out_since: None,
            committed_progress_offset: None,
            lost_data_checked: None,
        };
        let io_thread = thread::Builder::new()
            .name(format!("outflow-producer-{}", settings.worker))
            .spawn(move || io.run(incoming))
            .map_err(|source| ProducerError::Thread {
                worker: settings.worker,
                source,
            })?;
        Ok(ProducerDriver {
            data_topic,
            progress_topic,
            producer,
            calls,
            events,
            counters,
            settings,
            last_transaction: Cell::new(0),
            initialized: Cell::new(false),
            io_thread: Some(io_thread),
        })
    }

    /// Carries out `action`: sends are enqueued at once, blocking calls go to the I/O thread.
    /// The actions that concern the caller (`Pause`, `Resume`, `Status`, `Frontier`,
    /// `Announced`) are handed back.
    pub fn execute(&self, action: Action<M>) -> Option<Action<M>> {
        match action {
            Action::InitTransactions => self.call(Call::Init),
            Action::BeginTransaction => self.call(Call::Begin),
            Action::SendOffsets { group, offset } => self.call(Call::SendOffsets { group, offset }),
            Action::CommitTransaction => self.call(Call::Commit {
                transaction: self.last_transaction.get(),
            }),
            Action::AbortTransaction => self.call(Call::Abort),
            Action::Produce {
                transaction,
                bytes,
                message,
            } => {
                self.last_transaction.set(transaction);
                self.send_data(transaction, bytes, &message);
            }
            Action::ProduceProgress {
                transaction,
                bytes,
                key,
                value,
            } => {
                self.last_transaction.set(transaction);
                match self.settings.mode {
                    DeliveryMode::ExactlyOnce => self.send(
                        Topic::Progress,
                        Some(PROGRESS_PARTITION),
                        Some(key.as_bytes()),
                        Some(&value),
                        Headers::default(),
                        None,
                        transaction,
                        bytes,
                    ),
                    DeliveryMode::AtLeastOnce => self.call(Call::HoldProgress {
                        transaction,
                        bytes,
                        key,
                        value,
                    }),
                }
            }
            for_caller @ (Action::Announced
            | Action::Pause
            | Action::Resume
            | Action::Status(_)
            | Action::Frontier(_)) => return Some(for_caller),
        }
        None
    }

    /// The next result, if one has come.
    pub fn poll_event(&self) -> Option<Event<M>> {
        let event = self.events.pop();
        if let Some(Event::Initialized(Ok(()))) = &event {
            self.initialized.set(true);
        }
        event
    }

    /// Whether `init_transactions` has succeeded (and its result was handed out by
    /// [`ProducerDriver::poll_event`]): step 1 of the startup order in [`outflow_protocol`] is
    /// done for this worker, and the previous holder of its transactional id is fenced.
    pub fn is_initialized(&self) -> bool {
        self.initialized.get()
    }

    /// Feeds `machine` every result that has come and carries out every action it asks for,
    /// until neither is left; returns the actions that concern the caller, in order.
    pub fn step(
        &self,
        machine: &mut Machine<M>,
        now: Duration,
    ) -> Result<Vec<Action<M>>, ProtocolError>
    where
        M: Clone,
    {
        let mut for_caller = Vec::new();
        loop {
            let mut progressed = false;
            while let Some(action) = machine.poll_action() {
                progressed = true;
                for_caller.extend(self.execute(action));
            }
            while let Some(event) = self.poll_event() {
                progressed = true;
                machine.handle(now, event)?;
            }
            if !progressed {
                return Ok(for_caller);
            }
        }
    }

    /// The producer's counters.
    pub fn stats(&self) -> ProducerStats {
        let c = &self.counters;
        ProducerStats {
            messages_in_flight: c.messages_in_flight.load(Ordering::Relaxed),
            bytes_in_flight: c.bytes_in_flight.load(Ordering::Relaxed),
            delivered_messages: c.delivered_messages.load(Ordering::Relaxed),
            delivered_bytes: c.delivered_bytes.load(Ordering::Relaxed),
            failed_messages: c.failed_messages.load(Ordering::Relaxed),
            commits_after_deliveries: c.commits_after_deliveries.load(Ordering::Relaxed),
            commits_with_messages_in_flight: c
                .commits_with_messages_in_flight
                .load(Ordering::Relaxed),
            last_commit_micros: c.last_commit_micros.load(Ordering::Relaxed),
        }
    }

    /// How long each commit (and at-least-once batch end) since the last call took, from the
    /// delivery wait to the broker's answer, in microseconds, oldest first; the newest 1024 at
    /// most.
    pub fn take_commit_micros(&self) -> Vec<u64> {
        self.counters
            .commit_times
            .lock()
            .expect("the commit times' lock is never poisoned")
            .drain(..)
            .collect()
    }

    /// The settings the driver runs with.
    pub fn settings(&self) -> &ProducerSettings {
        &self.settings
    }

    /// Stops the I/O thread once it has finished its current call, and waits for it and for
    /// librdkafka to drop whatever is still queued. For tests and orderly shutdown; dropping the
    /// driver does the same without waiting.
    pub fn shutdown(mut self) {
        let io_thread = self.io_thread.take();
        drop(self);
        if let Some(handle) = io_thread {
            let _ = handle.join();
        }
    }

    fn call(&self, call: Call) {
        if let Err(mpsc::SendError(call)) = self.calls.send(call) {
            // The I/O thread ends only when the driver is dropped, or by a panic.
            let error = TxnError::new(
                ErrorKind::Fatal,
                format!(
                    "the producer thread of transactional id {} has stopped",
                    self.settings.transactional_id()
                ),
            );
            self.events.push(call.failed(error));
        }
    }

    fn send_data(&self, transaction: u64, bytes: usize, message: &M) {
        let mut headers = Headers::default();
        message.headers(&mut |name, value| headers.add(name, value));
        self.send(
            Topic::Data,
            message.partition(),
            message.key(),
            message.value(),
            headers,
            message.timestamp(),
            transaction,
            bytes,
        );
    }

    /// Enqueues one message with librdkafka (which copies it), its delivery reported to the
    /// machine; a send refused at once is reported the same way.
    ///
    /// This calls `rd_kafka_producev` itself rather than through rust-rdkafka's `send`, which
    /// makes a C string of the topic's name for every message: the names are made once, in
    /// [`ProducerDriver::start`]. The delivery report still comes through rust-rdkafka's
    /// callback, which turns the opaque back into a [`DeliveryTag`].
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        topic: Topic,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Headers,
        timestamp: Option<i64>,
        transaction: u64,
        bytes: usize,
    ) {
        use rdkafka::bindings::rd_kafka_vtype_t::*;
        use rdkafka::util::IntoOpaque;
        let (topic_name, topic_c) = match topic {
            Topic::Data => (&self.settings.data_topic, &self.data_topic),
            Topic::Progress => (&self.settings.progress_topic, &self.progress_topic),
        };
        let part = |bytes: Option<&[u8]>| match bytes {
            None => (std::ptr::null_mut::<std::ffi::c_void>(), 0usize),
            Some(b) => (b.as_ptr() as *mut std::ffi::c_void, b.len()),
        };
        let (key_ptr, key_len) = part(key);
        let (value_ptr, value_len) = part(value);
        let opaque = DeliveryTag::new(transaction, bytes).into_ptr();
        self.counters.sending(bytes);
        // SAFETY: every pointer is valid for the call (librdkafka copies key and value, and the
        // topic name is a C string held by the driver); on success librdkafka owns the headers,
        // on failure they stay ours and `headers` frees them.
        let code = unsafe {
            rdkafka::bindings::rd_kafka_producev(
                self.producer.client().native_ptr(),
                RD_KAFKA_VTYPE_TOPIC,
                topic_c.as_ptr(),
                RD_KAFKA_VTYPE_PARTITION,
                partition.unwrap_or(-1),
                RD_KAFKA_VTYPE_MSGFLAGS,
                rdkafka::bindings::RD_KAFKA_MSG_F_COPY,
                RD_KAFKA_VTYPE_VALUE,
                value_ptr,
                value_len,
                RD_KAFKA_VTYPE_KEY,
                key_ptr,
                key_len,
                RD_KAFKA_VTYPE_OPAQUE,
                opaque,
                RD_KAFKA_VTYPE_TIMESTAMP,
                timestamp.unwrap_or(0),
                RD_KAFKA_VTYPE_HEADERS,
                headers.as_ptr(),
                RD_KAFKA_VTYPE_END,
            )
        };
        if code == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            headers.given_to_librdkafka();
            return;
        }
        // SAFETY: librdkafka refused the message, so the opaque is still ours, given back once.
        drop(unsafe { DeliveryTag::from_ptr(opaque) });
        let error = KafkaError::MessageProduction(RDKafkaErrorCode::from(code));
        self.counters.settled(transaction, bytes, false);
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) {
            tracing::error!(
                transactional_id = %self.settings.transactional_id(),
                bound = self.settings.max_queued_bytes,
                "librdkafka's queue is full although it is sized above the in-flight bound"
            );
        }
        let mut failure = classify(&error);
        let denied = error
            .rdkafka_error_code()
            .and_then(|code| denial(code, &self.settings, "", Some(topic_name)));
        name_denial(&mut failure, denied);
        failure.message = format!(
            "sending the message with {} ({} bytes) to {topic_name} failed: {}",
            describe_key(key),
            key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len),
            failure.message
        );
        self.events.push(Event::Delivered {
            transaction,
            bytes,
            result: Err(failure),
        });
    }
}

/// Which of its two topics a driver sends to.
#[derive(Clone, Copy)]
enum Topic {
    Data,
    Progress,
}

/// A message's headers as librdkafka keeps them (`rd_kafka_headers_t`), made only when there is
/// a header; freed here unless librdkafka took them with the message.
#[derive(Default)]
struct Headers(Option<std::ptr::NonNull<rdkafka::bindings::rd_kafka_headers_t>>);

impl Headers {
    fn add(&mut self, name: &str, value: Option<&[u8]>) {
        let headers = *self.0.get_or_insert_with(|| {
            // SAFETY: a plain constructor; it never returns null.
            let made = unsafe { rdkafka::bindings::rd_kafka_headers_new(4) };
            std::ptr::NonNull::new(made).expect("rd_kafka_headers_new returns a list")
        });
        let (value_ptr, value_len) = match value {
            None => (std::ptr::null(), 0),
            Some(v) => (v.as_ptr() as *const std::ffi::c_void, v.len() as isize),
        };
        // SAFETY: librdkafka copies the name and value; the list is ours until sent.
        let code = unsafe {
            rdkafka::bindings::rd_kafka_header_add(
                headers.as_ptr(),
                name.as_ptr() as *const std::ffi::c_char,
                name.len() as isize,
                value_ptr,
                value_len,
            )
        };
        assert_eq!(
            code,
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR,
            "a new header list is writable"
        );
    }

    fn as_ptr(&self) -> *mut rdkafka::bindings::rd_kafka_headers_t {
        self.0
            .map_or(std::ptr::null_mut(), std::ptr::NonNull::as_ptr)
    }

    fn given_to_librdkafka(mut self) {
        self.0 = None;
    }
}

impl Drop for Headers {
    fn drop(&mut self) {
        if let Some(headers) = self.0.take() {
            // SAFETY: the list is ours (librdkafka did not take it) and freed once.
            unsafe { rdkafka::bindings::rd_kafka_headers_destroy(headers.as_ptr()) };
        }
    }
}

impl<M: OutgoingRecord> fmt::Debug for ProducerDriver<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProducerDriver")
            .field("transactional_id", &self.settings.transactional_id())
            .field("mode", &self.settings.mode)
            .field("stats", &self.stats())
            .finish()
    }
}

/// The I/O thread's state: the producer's blocking calls, and the at-least-once bookkeeping.
struct IoThread<M: OutgoingRecord> {
    producer: KafkaProducer<M>,
    config: ClientConfig,
    settings: ProducerSettings,
    events: Arc<EventQueue<M>>,
    counters: Arc<Counters>,
    /// Per progress group: its metadata for `send_offsets_to_transaction` (exactly-once), or a
    /// consumer of the group to commit with (at-least-once).
    groups: HashMap<String, GroupHandle>,
    held_progress: Option<(u64, usize, String, Vec<u8>)>,
    pending_offset: Option<(String, u64)>,
    /// Where the last committed progress record of this worker is (exactly-once).
    committed_progress_offset: Option<i64>,
    /// When the progress topic was last checked for lost data.
    lost_data_checked: Option<std::time::Instant>,
    /// When the current run of timed-out commits and aborts began.
    ending_timing_out_since: Option<std::time::Instant>,
}

enum GroupHandle {
    Metadata(ConsumerGroupMetadata),
    Consumer(BaseConsumer),
}

impl<M: OutgoingRecord> IoThread<M> {
    fn run(mut self, calls: Receiver<Call>) {
        for call in calls {
            let committing = match &call {
                Call::Commit { transaction } => Some(*transaction),
                _ => None,
            };
            let event = match self.settings.mode {
                DeliveryMode::ExactlyOnce => self.transactional(call),
                DeliveryMode::AtLeastOnce => self.at_least_once(call),
            };
            if let Some(mut event) = event {
                if self.settings.mode == DeliveryMode::ExactlyOnce {
                    self.watch_committed_progress(committing, &mut event);
                }
                self.events.push(event);
            }
        }
    }

    /// Remembers where this worker's last committed progress record is, and when a call fails
    /// other than by a timeout, checks that the progress topic still reaches it: a broker that
    /// restarted without its log (or a deleted progress topic) answers with errors that look
    /// like fencing or unknown producers, and the worker's error should say what happened.
    fn watch_committed_progress(&mut self, committing: Option<u64>, event: &mut Event<M>) {
        let result = match event {
            Event::Committed(Ok(())) => {
                let acknowledged = self.counters.progress_transaction.load(Ordering::Acquire);
                if committing == Some(acknowledged) {
                    self.committed_progress_offset =
                        Some(self.counters.progress_offset.load(Ordering::Relaxed));
                }
                return;
            }
            Event::Initialized(result)
            | Event::Began(result)
            | Event::OffsetsSent(result)
            | Event::Committed(result)
            | Event::Aborted(result) => result,
            _ => return,
        };
        let (Err(error), Some(offset)) = (result.as_ref(), self.committed_progress_offset) else {
            return;
        };
        if error.kind == ErrorKind::TimedOut
            || self
                .lost_data_checked
                .is_some_and(|at| at.elapsed() < LOST_DATA_CHECK_INTERVAL)
        {
            return;
        }
        self.lost_data_checked = Some(std::time::Instant::now());
        let topic = &self.settings.progress_topic;
        let found = match self.config.create::<BaseConsumer>() {
            Ok(consumer) => consumer
                .fetch_watermarks(topic, PROGRESS_PARTITION, LOST_DATA_CHECK_TIMEOUT)
                .map(|(_, high)| high),
            Err(_) => return,
        };
        let lost = match found {
            Ok(high) if high <= offset => format!(
                "partition {PROGRESS_PARTITION} of progress topic {topic} now ends at offset \
                 {high}, before this worker's last committed progress record at offset {offset}"
            ),
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::UnknownTopicOrPartition
                            | RDKafkaErrorCode::UnknownPartition
                            | RDKafkaErrorCode::UnknownTopic
                    )
                ) =>
            {
                format!("progress topic {topic} no longer exists")
            }
            _ => return,
        };
        *result = Err(TxnError::new(
            ErrorKind::Fatal,
            format!(
                "the broker lost committed data: {lost} (a broker restarted without its log, \
                 or the topic was deleted); {}",
                error.message
            ),
        ));
    }

    fn transactional(&mut self, call: Call) -> Option<Event<M>> {
        let timeout = self.settings.call_timeout;
        Some(match call {
            Call::Init => Event::Initialized(
                self.producer
                    .init_transactions(timeout)
                    .map_err(|e| self.failed("init_transactions", &e))
                    .and_then(|()| self.start_group()),
            ),
            Call::Begin => Event::Began(
                self.producer
                    .begin_transaction()
                    .map_err(|e| self.failed("begin_transaction", &e)),
            ),
            Call::SendOffsets { group, offset } => {
                Event::OffsetsSent(self.send_offsets(&group, offset))
            }
            Call::Commit { .. } => Event::Committed(self.commit()),
            Call::Abort => Event::Aborted(self.abort()),
            Call::HoldProgress { .. } => {
                unreachable!("exactly-once progress records are sent by the worker")
            }
        })
    }

    fn commit(&mut self) -> Result<(), TxnError> {
        let started = std::time::Instant::now();
        let result = self.await_deliveries("commit").and_then(|()| {
            self.count_commit();
            self.producer
                .commit_transaction(self.settings.call_timeout)
                .map_err(|e| self.failed("commit_transaction", &e))
        });
        let micros = started.elapsed().as_micros() as u64;
        self.counters
            .last_commit_micros
            .store(micros, Ordering::Relaxed);
        self.counters.commit_took(micros);
        if result.is_ok() {
            // A refusal logged before this commit was not about this transaction.
            *self
                .producer
                .context()
                .logged_denial
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = None;
        }
        self.past_the_transaction_timeout("commit_transaction", started, result)
    }

    fn abort(&mut self) -> Result<(), TxnError> {
        let started = std::time::Instant::now();
        let result = self
            .producer
            .abort_transaction(self.settings.call_timeout)
            .map_err(|e| self.failed("abort_transaction", &e));
        self.past_the_transaction_timeout("abort_transaction", started, result)
    }

    /// An end of transaction (commit or abort) that keeps timing out past the transaction
    /// timeout can no longer succeed: the coordinator has aborted the transaction and fenced
    /// this producer's epoch. Tansu answers a fenced producer's EndTxn by closing the
    /// connection, so without this the sink would retry for ever, stalled.
    fn past_the_transaction_timeout(
        &mut self,
        call: &str,
        started: std::time::Instant,
        result: Result<(), TxnError>,
    ) -> Result<(), TxnError> {
        match &result {
            Err(error) if error.kind == ErrorKind::TimedOut => {
                let since = *self.ending_timing_out_since.get_or_insert(started);
                if since.elapsed() >= self.settings.transaction_timeout {
                    return Err(TxnError::new(
                        ErrorKind::Fenced,
                        format!(
                            "{call} of transactional id {} has timed out for {} ms, longer than \
                             the transaction timeout of {} ms: the broker has aborted the \
                             transaction or fenced this producer (a broker may answer a fenced \
                             end of transaction by closing the connection) ({error})",
                            self.settings.transactional_id(),
                            since.elapsed().as_millis(),
                            self.settings.transaction_timeout.as_millis(),
                        ),
                    ));
                }
            }
            _ => self.ending_timing_out_since = None,
        }
        result
    }

    fn send_offsets(&mut self, group: &str, offset: u64) -> Result<(), TxnError> {
        let offsets = self.progress_offsets(offset)?;
        self.ensure_group(group)?;
        let metadata = match &self.groups[group] {
            GroupHandle::Metadata(metadata) => metadata,
            GroupHandle::Consumer(_) => unreachable!("exactly-once groups hold metadata"),
        };
        self.producer
            .send_offsets_to_transaction(&offsets, metadata, self.settings.call_timeout)
            .map_err(|e| self.failed(SEND_OFFSETS, &e))
    }

    fn at_least_once(&mut self, call: Call) -> Option<Event<M>> {
        Some(match call {
            Call::Init => Event::Initialized(self.start_group()),
            Call::Begin => {
                self.held_progress = None;
                self.pending_offset = None;
                Event::Began(Ok(()))
            }
            Call::HoldProgress {
                transaction,
                bytes,
                key,
                value,
            } => {
                self.held_progress = Some((transaction, bytes, key, value));
                return None;
            }
            Call::SendOffsets { group, offset } => {
                self.pending_offset = Some((group, offset));
                Event::OffsetsSent(Ok(()))
            }
            Call::Commit { transaction } => Event::Committed(self.commit_batch(transaction)),
            Call::Abort => {
                // Sent messages cannot be taken back without transactions; waiting for their
                // reports keeps them out of the next batch's accounting.
                let result = self.flush("abort");
                self.held_progress = None;
                self.pending_offset = None;
                Event::Aborted(result)
            }
        })
    }

    /// At-least-once commit: data acknowledged first, then the progress record, then the group
    /// offset, so that a recorded frontier never covers an undelivered message.
    fn commit_batch(&mut self, transaction: u64) -> Result<(), TxnError> {
        let started = std::time::Instant::now();
        let result = self.end_batch(transaction);
        let micros = started.elapsed().as_micros() as u64;
        self.counters
            .last_commit_micros
            .store(micros, Ordering::Relaxed);
        self.counters.commit_took(micros);
        result
    }

    fn end_batch(&mut self, transaction: u64) -> Result<(), TxnError> {
        self.flush("commit")?;
        self.count_commit();
        self.check_delivered(transaction)?;
        if let Some((transaction, bytes, key, value)) = self.held_progress.take() {
            let record: BaseRecord<'_, [u8], [u8], DeliveryTag> = BaseRecord::with_opaque_to(
                &self.settings.progress_topic,
                DeliveryTag::new(transaction, bytes),
            )
            .partition(PROGRESS_PARTITION)
            .key(key.as_bytes())
            .payload(&value);
            self.counters.sending(bytes);
            if let Err((error, _)) = self.producer.send(record) {
                self.counters.settled(transaction, bytes, false);
                return Err(self.failed("sending the progress record", &error));
            }
            self.flush("commit")?;
            self.check_delivered(transaction)?;
        }
        if let Some((group, offset)) = self.pending_offset.take() {
            let offsets = self.progress_offsets(offset)?;
            self.ensure_group(&group)?;
            let GroupHandle::Consumer(consumer) = &self.groups[&group] else {
                unreachable!("at-least-once groups hold a consumer");
            };
            if let Err(error) = consumer.commit(&offsets, CommitMode::Sync) {
                self.pending_offset = Some((group.clone(), offset));
                return Err(failed_call(
                    &self.settings,
                    &format!("committing the offset of group {group}"),
                    &error,
                ));
            }
        }
        Ok(())
    }

    fn check_delivered(&self, transaction: u64) -> Result<(), TxnError> {
        if self
            .counters
            .last_failed_transaction
            .load(Ordering::Acquire)
            >= transaction
        {
            Err(TxnError::new(
                ErrorKind::Abortable,
                format!(
                    "a message of batch {transaction} of {} was not delivered; the batch is sent again",
                    self.settings.transactional_id()
                ),
            ))
        } else {
            Ok(())
        }
    }

    fn flush(&self, during: &str) -> Result<(), TxnError> {
        self.await_deliveries(during)
    }

    /// Waits until librdkafka has reported every message handed to it. librdkafka's own
    /// `rd_kafka_flush` does this for a producer whose delivery reports arrive as events (as
    /// the threaded producer's do): it waits for the message count to reach zero while the poll
    /// thread serves the reports, and returns as soon as it does. rust-rdkafka's `flush` and the
    /// one inside its `commit_transaction` instead poll in 100 ms slices that run to their end,
    /// which made every commit cost 100 ms; after this wait they find nothing in flight.
    fn await_deliveries(&self, during: &str) -> Result<(), TxnError> {
        let timeout_ms = self.settings.call_timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: the pointer is the live producer handle this thread owns, and
        // `rd_kafka_flush` is safe to call from any thread.
        let code = unsafe {
            rdkafka::bindings::rd_kafka_flush(self.producer.client().native_ptr(), timeout_ms)
        };
        match RDKafkaErrorCode::from(code) {
            RDKafkaErrorCode::NoError => Ok(()),
            code => Err(failed_call(
                &self.settings,
                &format!("waiting for deliveries during {during}"),
                &KafkaError::Flush(code),
            )),
        }
    }

    fn count_commit(&self) {
        let counter = if self.producer.in_flight_count() == 0 {
            &self.counters.commits_after_deliveries
        } else {
            &self.counters.commits_with_messages_in_flight
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn progress_offsets(&self, offset: u64) -> Result<TopicPartitionList, TxnError> {
        let mut offsets = TopicPartitionList::new();
        let offset = i64::try_from(offset).map_err(|_| {
            TxnError::new(
                ErrorKind::Fatal,
                format!("progress sequence number {offset} does not fit a Kafka offset"),
            )
        })?;
        offsets
            .add_partition_offset(
                &self.settings.progress_topic,
                PROGRESS_PARTITION,
                Offset::Offset(offset),
            )
            .map_err(|e| failed_call(&self.settings, "building the progress offsets", &e))?;
        Ok(offsets)
    }

    /// The group's handle, built on first use: a consumer with that `group.id` (no
    /// subscription, so it joins nothing) yields the metadata transactions need, or commits
    /// offsets itself.
    /// The progress group's client, made at startup: librdkafka starts looking for the group's
    /// coordinator as the client is made, so that the first commit does not wait for it.
    fn start_group(&mut self) -> Result<(), TxnError> {
        let group = self.settings.names.progress_group_id(self.settings.worker);
        self.ensure_group(&group)
    }

    fn ensure_group(&mut self, group: &str) -> Result<(), TxnError> {
        match self.groups.entry(group.to_string()) {
            Entry::Occupied(_) => Ok(()),
            Entry::Vacant(entry) => {
                let mut consumer_config = self.config.clone();
                consumer_config
                    .set("group.id", group)
                    .set("enable.auto.commit", "false")
                    .set("allow.auto.create.topics", "false");
                let consumer: BaseConsumer = consumer_config.create().map_err(|error| {
                    TxnError::new(
                        ErrorKind::Fatal,
                        format!(
                            "cannot build a consumer for progress group {group}: {}",
                            redacted(&error)
                        ),
                    )
                })?;
                let handle = match self.settings.mode {
                    DeliveryMode::ExactlyOnce => {
                        GroupHandle::Metadata(consumer.group_metadata().ok_or_else(|| {
                            TxnError::new(
                                ErrorKind::Fatal,
                                format!("librdkafka gave no metadata for progress group {group}"),
                            )
                        })?)
                    }
                    DeliveryMode::AtLeastOnce => GroupHandle::Consumer(consumer),
                };
                entry.insert(handle);
                Ok(())
            }
        }
    }

    fn failed(&self, call: &str, error: &KafkaError) -> TxnError {
        let mut failure = failed_call(&self.settings, call, error);
        if !failure.message.contains("not authorized") {
            // The refusal that put the transaction in this state, if librdkafka only logged it.
            if let Some(logged) = self.producer.context().logged_denial() {
                failure.kind = ErrorKind::Fatal;
                failure.message = format!("{logged} ({})", failure.message);
            }
        }
        failure
    }
}

fn failed_call(settings: &ProducerSettings, call: &str, error: &KafkaError) -> TxnError {
    let mut failure = classify(error);
    let denied = error
        .rdkafka_error_code()
        .and_then(|code| denial(code, settings, call, None));
    name_denial(&mut failure, denied);
    failure.message = format!(
        "{call} of {} failed: {}",
        settings.transactional_id(),
        failure.message
    );
    failure
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: DeliveryMode) -> ProducerSettings {
        let mut settings = ProducerSettings::new(
            SinkNames::new("s1", "tx-", "pg-"),
            2,
            "data",
            "progress",
            &Cadence::default(),
        );
        settings.mode = mode;
        settings
    }

    #[test]
    fn exactly_once_config_names_the_worker_and_bounds_nothing_below_the_machine() {
        let mut connection = ClientConfig::new();
        connection
            .set("bootstrap.servers", "b:9092")
            .set("transactional.id", "user-set");
        let config = producer_config(&connection, &settings(DeliveryMode::ExactlyOnce));
        assert_eq!(config.get("transactional.id"), Some("tx-s1-2"));
        assert_eq!(config.get("enable.idempotence"), Some("true"));
        assert_eq!(config.get("compression.type"), Some("lz4"));
        assert_eq!(config.get("transaction.timeout.ms"), Some("60000"));
        assert_eq!(config.get("queue.buffering.max.messages"), Some("0"));
        let kbytes: usize = config
            .get("queue.buffering.max.kbytes")
            .unwrap()
            .parse()
            .unwrap();
        assert!(kbytes * 1024 > queue_bound(&Cadence::default()));
        assert_eq!(config.get("bootstrap.servers"), Some("b:9092"));
    }

    #[test]
    fn at_least_once_config_has_no_transactional_id() {
        let mut connection = ClientConfig::new();
        connection.set("transactional.id", "user-set");
        let config = producer_config(&connection, &settings(DeliveryMode::AtLeastOnce));
        assert_eq!(config.get("transactional.id"), None);
        assert_eq!(config.get("transaction.timeout.ms"), None);
        assert_eq!(config.get("enable.idempotence"), Some("true"));
    }

    #[test]
    fn delivery_errors_map_to_what_the_machine_does() {
        let kind = |code| classify(&KafkaError::MessageProduction(code)).kind;
        assert_eq!(kind(RDKafkaErrorCode::ProducerFenced), ErrorKind::Fenced);
        assert_eq!(
            kind(RDKafkaErrorCode::InvalidProducerEpoch),
            ErrorKind::Fenced
        );
        assert_eq!(kind(RDKafkaErrorCode::MessageTimedOut), ErrorKind::TimedOut);
        assert_eq!(kind(RDKafkaErrorCode::PurgeQueue), ErrorKind::Abortable);
        assert_eq!(
            kind(RDKafkaErrorCode::UnknownTopicOrPartition),
            ErrorKind::Retriable
        );
        assert_eq!(
            kind(RDKafkaErrorCode::MessageSizeTooLarge),
            ErrorKind::Fatal
        );
        let full = classify(&KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull));
        assert_eq!(full.kind, ErrorKind::Fatal);
        assert!(full.message.contains("bug"), "{}", full.message);
        assert_eq!(
            classify(&KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)).kind,
            ErrorKind::TimedOut
        );
    }

    #[test]
    fn authorization_refusals_are_fatal_and_name_the_permission() {
        let settings = settings(DeliveryMode::ExactlyOnce);
        let failed =
            |code, call| failed_call(&settings, call, &KafkaError::MessageProduction(code));
        let txn = failed(
            RDKafkaErrorCode::TransactionalIdAuthorizationFailed,
            "init_transactions",
        );
        assert_eq!(txn.kind, ErrorKind::Fatal);
        assert!(
            txn.message.starts_with(
                "init_transactions of tx-s1-2 failed: not authorized to Write to TransactionalId \
                 'tx-s1-2'; grant Write on TransactionalId prefix 'tx-' (pattern type PREFIXED), \
                 or run the sink WITH (DELIVERY GUARANTEE = 'at-least-once'), which needs no \
                 transactions ("
            ),
            "{}",
            txn.message
        );
        let group = failed(RDKafkaErrorCode::GroupAuthorizationFailed, SEND_OFFSETS);
        assert!(
            group.message.contains(
                "not authorized to Read group 'pg-s1-2'; grant Read on Group prefix 'pg-'"
            ),
            "{}",
            group.message
        );
        let offsets_topic = failed(RDKafkaErrorCode::TopicAuthorizationFailed, SEND_OFFSETS);
        assert!(
            offsets_topic
                .message
                .contains("not authorized to Read topic 'progress'"),
            "{}",
            offsets_topic.message
        );
        assert_eq!(
            logged_denial(
                "TxnCoordinator/1: Failed to add partition \"progress\" [0] to transaction: \
                 Broker: Topic authorization failed"
            )
            .as_deref(),
            Some("not authorized to Write to topic 'progress'; grant Write on topic 'progress'")
        );
        assert_eq!(
            logged_denial("Failed to add partition \"p\" [0]: timed out"),
            None
        );
    }

    #[test]
    fn a_delivery_survives_its_opaque() {
        use rdkafka::util::IntoOpaque;
        for (transaction, bytes) in [
            (0, 0),
            (1, 170),
            ((1 << 31) - 1, u32::MAX as usize),
            (1 << 31, 5),
            (7, 1 << 32),
        ] {
            let tag = DeliveryTag::new(transaction, bytes);
            let packed = matches!(tag, DeliveryTag::Packed(_));
            assert_eq!(packed, transaction < 1 << 31 && bytes < 1 << 32);
            // SAFETY: the pointer comes from `into_ptr` and is given back once.
            let back = unsafe { DeliveryTag::from_ptr(tag.into_ptr()) }.delivery();
            assert_eq!((back.transaction, back.bytes), (transaction, bytes));
        }
    }

    #[test]
    fn merged_deliveries_wake_the_worker_once() {
        let wakes = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&wakes);
        let queue: EventQueue<SinkRecord> = EventQueue {
            events: Mutex::new(VecDeque::new()),
            wake: Mutex::new(Box::new(move || {
                counted.fetch_add(1, Ordering::Relaxed);
            })),
        };
        for _ in 0..3 {
            queue.push(Event::Delivered {
                transaction: 7,
                bytes: 10,
                result: Ok(()),
            });
        }
        queue.push(Event::Delivered {
            transaction: 8,
            bytes: 1,
            result: Ok(()),
        });
        assert_eq!(wakes.load(Ordering::Relaxed), 1);
        match queue.pop() {
            Some(Event::Delivered {
                transaction: 7,
                bytes: 30,
                result: Ok(()),
            }) => {}
            other => panic!("expected 30 merged bytes of transaction 7, got {other:?}"),
        }
        assert!(matches!(
            queue.pop(),
            Some(Event::Delivered {
                transaction: 8,
                bytes: 1,
                ..
            })
        ));
        assert!(queue.pop().is_none());
        queue.push(Event::Began(Ok(())));
        assert_eq!(wakes.load(Ordering::Relaxed), 2);
    }
}
