//! A reader of a topic's raw log that applies `read_committed` itself: how a sink recovers its
//! progress on brokers whose fetches show aborted records, and how tests audit topics.
//!
//! Tansu writes correct COMMIT/ABORT control batches but answers Fetch with an empty
//! aborted-transactions list, so librdkafka's `read_committed` consumers see aborted records
//! (`docs/protocol.md`). This reader speaks the Kafka protocol
//! over a plain TCP stream, fetches every record batch of every partition from the log start
//! to the high watermark with `read_uncommitted`, and decides visibility from the control
//! batches, as a Kafka consumer does: a transactional record becomes visible when a COMMIT
//! marker of its producer id follows it, an ABORT marker discards it, and a transaction
//! without a marker yet is open and not visible.
//!
//! Limitation inherited from `kafka-protocol`: headers are decoded into a map, so a record that
//! repeats a header key shows only the last value of that key.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiVersionsRequest, BrokerId, FetchRequest, ListOffsetsRequest, MetadataRequest, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{Record, RecordBatchDecoder};
use kafka_protocol::ResponseError;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

use crate::encoders::registry::tls_client_config;
use crate::topic::block_on;

const CLIENT_ID: &str = "outflow-rawlog";
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Newest versions this reader speaks. Fetch and ListOffsets stop before the versions that
/// address topics by id only; Metadata 12 still accepts names.
const METADATA_MAX: i16 = 12;
const LIST_OFFSETS_MAX: i16 = 7;
const FETCH_MAX: i16 = 12;

const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
const READ_UNCOMMITTED: i8 = 0;

/// Tansu answers a Fetch that allows no wait with no partitions at all; with `min_bytes` 0 the
/// wait bounds the answer without delaying it.
const FETCH_MAX_WAIT_MS: i32 = 500;
const FIRST_FETCH_BYTES: i32 = 16 << 20;
const LARGEST_FETCH_BYTES: i32 = 256 << 20;
const EMPTY_FETCHES_BEFORE_GIVING_UP: u32 = 50;

const CONTROL_ABORT: i16 = 0;
const CONTROL_COMMIT: i16 = 1;

/// Why a raw read failed.
#[derive(Debug, thiserror::Error)]
pub enum RawLogError {
    #[error("connecting to broker {address}: {source}")]
    Connect { address: String, source: io::Error },
    #[error("{api} exchange with broker {address}: {source}")]
    Io {
        address: String,
        api: &'static str,
        source: io::Error,
    },
    #[error("{api} with broker {address}: {message}")]
    Protocol {
        address: String,
        api: &'static str,
        message: String,
    },
    #[error(
        "broker {address} speaks {api} versions {broker_min}..={broker_max}, \
         this reader {reader_min}..={reader_max}"
    )]
    UnsupportedVersion {
        address: String,
        api: &'static str,
        broker_min: i16,
        broker_max: i16,
        reader_min: i16,
        reader_max: i16,
    },
    #[error("topic {topic} does not exist on {bootstrap}")]
    UnknownTopic { topic: String, bootstrap: String },
    #[error(
        "{api} for topic {topic}{}: {error:?} (code {})",
        partition.map(|p| format!(" partition {p}")).unwrap_or_default(),
        error.code()
    )]
    Broker {
        api: &'static str,
        topic: String,
        partition: Option<i32>,
        error: ResponseError,
    },
    #[error("topic {topic} partition {partition} has no leader (leader id {leader})")]
    NoLeader {
        topic: String,
        partition: i32,
        leader: i32,
    },
    #[error("record batch of topic {topic} partition {partition} at offset {offset}: {message}")]
    Batch {
        topic: String,
        partition: i32,
        offset: i64,
        message: String,
    },
    #[error(
        "reading topic {topic} partition {partition} stalled at offset {offset}, \
         below the high watermark {high_watermark}"
    )]
    Stalled {
        topic: String,
        partition: i32,
        offset: i64,
        high_watermark: i64,
    },
    #[error("describing the configs of topic {topic} on {bootstrap}: {message}")]
    DescribeConfigs {
        topic: String,
        bootstrap: String,
        message: String,
    },
}

/// A data record as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Milliseconds since the epoch, as the batch records it (create or log-append time).
    pub timestamp: i64,
}

/// What became of the transaction a data record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Written outside any transaction: visible at once.
    NonTransactional,
    /// A COMMIT marker of its producer id follows it.
    Committed,
    /// An ABORT marker of its producer id follows it.
    Aborted,
    /// No marker of its producer id follows it yet.
    Open,
}

impl Outcome {
    /// Whether a `read_committed` consumer sees the record once its transaction has ended.
    pub fn is_visible(self) -> bool {
        matches!(self, Outcome::NonTransactional | Outcome::Committed)
    }
}

/// A data record with the batch attributes that decide its visibility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    pub record: LogRecord,
    pub transactional: bool,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub outcome: Outcome,
}

/// The kind of a control record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MarkerKind {
    Commit,
    Abort,
    /// A control type other than a transaction marker (e.g. KRaft's leader change); it
    /// decides no record's visibility.
    Other(i16),
}

/// A control record: the end of one producer's transaction in one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlMarker {
    pub partition: i32,
    pub offset: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub kind: MarkerKind,
}

/// One partition's log between the log start and the high watermark at the time of the read.
#[derive(Debug, Clone)]
pub struct PartitionLog {
    pub partition: i32,
    pub log_start_offset: i64,
    pub high_watermark: i64,
    /// Every data record, aborted and open ones included, in offset order.
    pub records: Vec<RawRecord>,
    /// Every control record, in offset order.
    pub markers: Vec<ControlMarker>,
}

impl PartitionLog {
    /// The records a `read_committed` consumer sees once every transaction in this log has
    /// ended: non-transactional and committed ones, in offset order. Records of committed
    /// transactions behind a still-open one are included; a consumer reading right now would
    /// stop at [`PartitionLog::last_stable_offset`] before them.
    pub fn committed(&self) -> impl Iterator<Item = &LogRecord> {
        self.records
            .iter()
            .filter(|r| r.outcome.is_visible())
            .map(|r| &r.record)
    }

    /// Kafka's last stable offset: the first offset of the oldest open transaction, or the
    /// high watermark when none is open. Computed from the log, not taken from the broker
    /// (Tansu's is more conservative when transactions overlap).
    pub fn last_stable_offset(&self) -> i64 {
        self.records
            .iter()
            .find(|r| r.outcome == Outcome::Open)
            .map_or(self.high_watermark, |r| r.record.offset)
    }

    /// The records a `read_committed` consumer would have been given by now: the committed
    /// ones below the last stable offset.
    pub fn visible_now(&self) -> impl Iterator<Item = &LogRecord> {
        let stable = self.last_stable_offset();
        self.committed().filter(move |r| r.offset < stable)
    }
}

/// Every partition of a topic, read raw.
#[derive(Debug, Clone)]
pub struct TopicLog {
    pub topic: String,
    /// Indexed by partition number.
    pub partitions: Vec<PartitionLog>,
}

impl TopicLog {
    /// The `read_committed` view (see [`PartitionLog::committed`]), in partition, then offset
    /// order.
    pub fn committed(&self) -> Vec<LogRecord> {
        self.partitions
            .iter()
            .flat_map(|p| p.committed().cloned())
            .collect()
    }

    /// Every data record, aborted and open ones included, in partition, then offset order.
    pub fn raw(&self) -> Vec<RawRecord> {
        self.partitions
            .iter()
            .flat_map(|p| p.records.iter().cloned())
            .collect()
    }

    /// Every control record, in partition, then offset order.
    pub fn markers(&self) -> Vec<ControlMarker> {
        self.partitions
            .iter()
            .flat_map(|p| p.markers.iter().copied())
            .collect()
    }

    /// How many committed records each partition holds, indexed by partition number.
    pub fn committed_counts(&self) -> Vec<usize> {
        self.partitions
            .iter()
            .map(|p| p.committed().count())
            .collect()
    }

    /// How many data records, of any outcome, each partition holds.
    pub fn raw_counts(&self) -> Vec<usize> {
        self.partitions.iter().map(|p| p.records.len()).collect()
    }

    /// Data records whose transaction has no marker yet.
    pub fn open(&self) -> Vec<RawRecord> {
        self.raw()
            .into_iter()
            .filter(|r| r.outcome == Outcome::Open)
            .collect()
    }
}

/// Reads every partition of `topic` to its current high watermark.
pub fn read_topic(bootstrap: &str, topic: &str) -> Result<TopicLog, RawLogError> {
    read_topic_with(bootstrap, topic, &Security::default())
}

/// [`read_topic`] over connections of `security`.
pub(crate) fn read_topic_with(
    bootstrap: &str,
    topic: &str,
    security: &Security,
) -> Result<TopicLog, RawLogError> {
    let mut bootstrap_connection = Connection::open_with(bootstrap, security)?;
    let metadata = bootstrap_connection.topic_metadata(topic, bootstrap)?;
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (partition, leader) in metadata.leaders.iter().enumerate() {
        by_leader.entry(*leader).or_default().push(partition as i32);
    }
    let mut partitions = Vec::with_capacity(metadata.leaders.len());
    for (leader, leader_partitions) in by_leader {
        let address = metadata
            .brokers
            .get(&leader)
            .ok_or_else(|| RawLogError::NoLeader {
                topic: topic.to_string(),
                partition: leader_partitions[0],
                leader,
            })?;
        let mut connection = Connection::open_with(address, security)?;
        let starts = connection.list_offsets(topic, &leader_partitions, EARLIEST)?;
        let ends = connection.list_offsets(topic, &leader_partitions, LATEST)?;
        for &partition in &leader_partitions {
            // Tansu answers ListOffsets from its batches' modification times, not their
            // offsets: when two producers append to a partition at once and the later offsets
            // are stored first, "earliest" names a batch past the log start and "latest" one
            // short of the end. Neither is trusted beyond a hint: the Fetch answer's log start
            // and high watermark decide. Only a log that no batch was ever appended to (latest
            // 0 on every broker) is skipped, as Tansu holds a Fetch of it for the whole wait.
            let (entries, log_start_offset, high_watermark) = if ends[&partition] <= 0 {
                (Vec::new(), 0, 0)
            } else {
                connection.fetch_partition(topic, partition, starts[&partition])?
            };
            let (records, markers) = resolve_transactions(entries);
            partitions.push(PartitionLog {
                partition,
                log_start_offset,
                high_watermark,
                records,
                markers,
            });
        }
    }
    partitions.sort_by_key(|p| p.partition);
    Ok(TopicLog {
        topic: topic.to_string(),
        partitions,
    })
}

/// The `read_committed` view of `topic`, in partition, then offset order, once the
/// transactions in flight are decided (waiting up to 10 s; see [`read_settled`]).
pub fn read_committed(bootstrap: &str, topic: &str) -> Result<Vec<LogRecord>, RawLogError> {
    Ok(read_settled(bootstrap, topic, Duration::from_secs(10))?.committed())
}

/// The log of `topic` once no record belongs to an open transaction, or as it is after
/// `patience`: Tansu may write a transaction's markers a little after its commit returned. A
/// transaction left open by a dead producer stays open, and its records invisible.
pub fn read_settled(
    bootstrap: &str,
    topic: &str,
    patience: Duration,
) -> Result<TopicLog, RawLogError> {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let log = read_topic(bootstrap, topic)?;
        if log.open().is_empty() || std::time::Instant::now() >= deadline {
            return Ok(log);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The first bootstrap broker of a client configuration, when the raw reader can speak to it:
/// it speaks plaintext only.
pub fn plaintext_bootstrap(config: &ClientConfig) -> Option<String> {
    let plaintext = config
        .get("security.protocol")
        .is_none_or(|p| p.eq_ignore_ascii_case("plaintext"));
    let first = config.get("bootstrap.servers")?.split(',').next()?.trim();
    (plaintext && !first.is_empty()).then(|| first.to_string())
}

/// The number of partitions of `topic`, from a Metadata request.
pub fn partition_count(bootstrap: &str, topic: &str) -> Result<usize, RawLogError> {
    let mut connection = Connection::open(bootstrap)?;
    Ok(connection.topic_metadata(topic, bootstrap)?.leaders.len())
}

/// The configs the broker reports for `topic` (name → value), through rdkafka's AdminClient.
/// Entries without a value (sensitive ones) are left out. Tansu reports only the keys that were
/// set at creation, each marked as a default.
pub fn describe_configs(
    bootstrap: &str,
    topic: &str,
) -> Result<BTreeMap<String, String>, RawLogError> {
    let failed = |message: String| RawLogError::DescribeConfigs {
        topic: topic.to_string(),
        bootstrap: bootstrap.to_string(),
        message,
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| failed(e.to_string()))?;
    let options = AdminOptions::new().request_timeout(Some(IO_TIMEOUT));
    let results = block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options))
        .map_err(|e| failed(e.to_string()))?;
    let mut configs = BTreeMap::new();
    for result in results {
        let resource = result.map_err(|code| failed(code.to_string()))?;
        for entry in resource.entries {
            if let Some(value) = entry.value {
                configs.insert(entry.name, value);
            }
        }
    }
    Ok(configs)
}

/// A record as decoded from a batch, before its transaction's outcome is known.
#[derive(Debug, Clone)]
struct Entry {
    partition: i32,
    record: Record,
}

/// Decides each data record's outcome from the control markers that follow it, per producer
/// id, as Kafka's consumers do (markers carry the producer id of the transaction they end;
/// Tansu also keeps the data's epoch on fencing aborts, Kafka bumps it, so the epoch is not
/// matched).
fn resolve_transactions(entries: Vec<Entry>) -> (Vec<RawRecord>, Vec<ControlMarker>) {
    let mut records: Vec<RawRecord> = Vec::with_capacity(entries.len());
    let mut markers = Vec::new();
    let mut pending: HashMap<i64, Vec<usize>> = HashMap::new();
    for Entry { partition, record } in entries {
        if record.control {
            let kind = marker_kind(record.key.as_ref());
            let outcome = match kind {
                MarkerKind::Commit => Some(Outcome::Committed),
                MarkerKind::Abort => Some(Outcome::Aborted),
                MarkerKind::Other(_) => None,
            };
            if let Some(outcome) = outcome {
                for index in pending.remove(&record.producer_id).unwrap_or_default() {
                    records[index].outcome = outcome;
                }
            }
            markers.push(ControlMarker {
                partition,
                offset: record.offset,
                producer_id: record.producer_id,
                producer_epoch: record.producer_epoch,
                kind,
            });
            continue;
        }
        let outcome = if record.transactional {
            pending
                .entry(record.producer_id)
                .or_default()
                .push(records.len());
            Outcome::Open
        } else {
            Outcome::NonTransactional
        };
        records.push(RawRecord {
            transactional: record.transactional,
            producer_id: record.producer_id,
            producer_epoch: record.producer_epoch,
            outcome,
            record: LogRecord {
                partition,
                offset: record.offset,
                key: record.key.map(|k| k.to_vec()),
                value: record.value.map(|v| v.to_vec()),
                headers: record
                    .headers
                    .into_iter()
                    .map(|(name, value)| (name.to_string(), value.map(|v| v.to_vec())))
                    .collect(),
                timestamp: record.timestamp,
            },
        });
    }
    (records, markers)
}

/// A control record's key is `(version: i16, type: i16)`; type 0 ends a transaction with an
/// abort, 1 with a commit.
fn marker_kind(key: Option<&Bytes>) -> MarkerKind {
    match key.filter(|k| k.len() >= 4) {
        Some(key) => match i16::from_be_bytes([key[2], key[3]]) {
            CONTROL_ABORT => MarkerKind::Abort,
            CONTROL_COMMIT => MarkerKind::Commit,
            other => MarkerKind::Other(other),
        },
        None => MarkerKind::Other(-1),
    }
}

/// One complete v2 record batch cut from a Fetch response.
struct RawBatch {
    base_offset: i64,
    /// The offset after the batch's last, from `lastOffsetDelta`: compaction can empty a batch
    /// or leave gaps, so the records alone do not say where the next batch starts.
    next_offset: i64,
    bytes: Bytes,
}

/// Splits a Fetch response's records into complete batches. A broker may cut the last batch
/// short at the size limit; that tail is dropped and fetched again.
fn split_batches(records: &Bytes) -> Result<Vec<RawBatch>, String> {
    const HEADER: usize = 8 + 4; // baseOffset, batchLength
    const MAGIC_AT: usize = 16;
    const LAST_OFFSET_DELTA_AT: usize = 23;
    let mut batches = Vec::new();
    let mut position = 0;
    while records.len() - position >= HEADER {
        let mut header = &records[position..position + HEADER];
        let base_offset = header.get_i64();
        let length = header.get_i32();
        if length < 0 {
            return Err(format!(
                "negative batch length {length} at base offset {base_offset}"
            ));
        }
        let end = position + HEADER + length as usize;
        if end > records.len() {
            break;
        }
        let batch = records.slice(position..end);
        if batch.len() < LAST_OFFSET_DELTA_AT + 4 {
            return Err(format!(
                "batch at base offset {base_offset} is only {length} bytes long"
            ));
        }
        let magic = batch[MAGIC_AT] as i8;
        if magic != 2 {
            return Err(format!(
                "batch at base offset {base_offset} has magic {magic}, not 2"
            ));
        }
        let last_offset_delta = (&batch[LAST_OFFSET_DELTA_AT..LAST_OFFSET_DELTA_AT + 4]).get_i32();
        batches.push(RawBatch {
            base_offset,
            next_offset: base_offset + i64::from(last_offset_delta) + 1,
            bytes: batch,
        });
        position = end;
    }
    Ok(batches)
}

struct TopicMetadata {
    /// Leader broker id of each partition, indexed by partition number.
    leaders: Vec<i32>,
    brokers: HashMap<i32, String>,
}

/// A blocking connection to one broker, with the API versions it negotiated.
/// How raw connections reach the brokers: over plain TCP, or TLS (`SSL` connections).
#[derive(Clone, Default)]
pub(crate) struct Security {
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Security {
    /// The security of a client configuration, when a raw connection can speak it: `PLAINTEXT`,
    /// or `SSL` with the connection's certificate authority and client certificate. SASL is not
    /// spoken here; `Err` says so, or which TLS option is invalid.
    pub(crate) fn of(config: &ClientConfig) -> Result<Security, String> {
        let protocol = config.get("security.protocol").unwrap_or("plaintext");
        if protocol.eq_ignore_ascii_case("plaintext") {
            return Ok(Security::default());
        }
        if !protocol.eq_ignore_ascii_case("ssl") {
            return Err(format!(
                "it uses SECURITY PROTOCOL {}, and raw Kafka requests are spoken over PLAINTEXT \
                 and SSL only",
                protocol.to_ascii_uppercase()
            ));
        }
        let tls = tls_client_config(
            config.get("ssl.ca.pem"),
            config.get("ssl.certificate.pem"),
            config.get("ssl.key.pem"),
        )
        .map_err(|(setting, reason)| format!("invalid {setting}: {reason}"))?;
        Ok(Security { tls: Some(tls) })
    }
}

/// A connection's byte stream.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// One connection to a broker, with the API versions it speaks.
pub(crate) struct Connection {
    address: String,
    stream: Stream,
    next_correlation_id: i32,
    versions: HashMap<i16, (i16, i16)>,
}

impl Connection {
    pub(crate) fn open(address: &str) -> Result<Connection, RawLogError> {
        Connection::open_with(address, &Security::default())
    }

    pub(crate) fn open_with(address: &str, security: &Security) -> Result<Connection, RawLogError> {
        let connect_error = |source| RawLogError::Connect {
            address: address.to_string(),
            source,
        };
        let resolved = address
            .to_socket_addrs()
            .map_err(connect_error)?
            .collect::<Vec<_>>();
        let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address resolved");
        let mut stream = None;
        for socket_address in resolved {
            match TcpStream::connect_timeout(&socket_address, IO_TIMEOUT) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_error = e,
            }
        }
        let stream = stream.ok_or_else(|| connect_error(last_error))?;
        let configure = |s: &TcpStream| {
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            s.set_nodelay(true)
        };
        configure(&stream).map_err(connect_error)?;
        let stream = match &security.tls {
            None => Stream::Plain(stream),
            Some(tls) => {
                let host = address
                    .rsplit_once(':')
                    .map_or(address, |(host, _)| host)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| connect_error(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
                let session = rustls::ClientConnection::new(Arc::clone(tls), name)
                    .map_err(|e| connect_error(io::Error::other(e)))?;
                Stream::Tls(Box::new(rustls::StreamOwned::new(session, stream)))
            }
        };
        let mut connection = Connection {
            address: address.to_string(),
            stream,
            next_correlation_id: 1,
            versions: HashMap::new(),
        };
        connection.negotiate_versions()?;
        Ok(connection)
    }

    fn negotiate_versions(&mut self) -> Result<(), RawLogError> {
        // Version 3 is the first that lets the broker see who asks; every broker since
        // Kafka 2.4 and Tansu answer it.
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = self.call(&request, 3, "ApiVersions")?;
        if let Some(error) = ResponseError::try_from_code(response.error_code) {
            return Err(self.protocol_error("ApiVersions", format!("{error:?}")));
        }
        self.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(())
    }

    /// The newest version both sides speak, capped at `reader_max`.
    pub(crate) fn version<R: Request>(
        &self,
        api: &'static str,
        reader_max: i16,
    ) -> Result<i16, RawLogError> {
        let reader_min = R::VERSIONS.min;
        let reader_max = reader_max.min(R::VERSIONS.max);
        let unsupported = |broker_min, broker_max| RawLogError::UnsupportedVersion {
            address: self.address.clone(),
            api,
            broker_min,
            broker_max,
            reader_min,
            reader_max,
        };
        let Some(&(broker_min, broker_max)) = self.versions.get(&R::KEY) else {
            return Err(unsupported(-1, -1));
        };
        let version = broker_max.min(reader_max);
        if version < broker_min.max(reader_min) {
            return Err(unsupported(broker_min, broker_max));
        }
        Ok(version)
    }

    pub(crate) fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        api: &'static str,
    ) -> Result<R::Response, RawLogError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[0; 4]);
        header
            .encode(&mut frame, R::header_version(version))
            .and_then(|()| request.encode(&mut frame, version))
            .map_err(|e| self.protocol_error(api, format!("encoding request v{version}: {e:#}")))?;
        let length = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        let io_error = |source| RawLogError::Io {
            address: self.address.clone(),
            api,
            source,
        };
        self.stream.write_all(&frame).map_err(io_error)?;

        let mut length = [0u8; 4];
        self.stream.read_exact(&mut length).map_err(io_error)?;
        let length = i32::from_be_bytes(length);
        if length < 0 {
            return Err(self.protocol_error(api, format!("negative response length {length}")));
        }
        let mut body = vec![0u8; length as usize];
        self.stream.read_exact(&mut body).map_err(io_error)?;
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version))
            .map_err(|e| self.protocol_error(api, format!("decoding response header: {e:#}")))?;
        if header.correlation_id != correlation_id {
            return Err(self.protocol_error(
                api,
                format!(
                    "response correlation id {} answers no request (expected {correlation_id})",
                    header.correlation_id
                ),
            ));
        }
        R::Response::decode(&mut body, version)
            .map_err(|e| self.protocol_error(api, format!("decoding response v{version}: {e:#}")))
    }

    /// Every broker of the cluster, by node id, as `host:port`.
    pub(crate) fn brokers(&mut self) -> Result<BTreeMap<i32, String>, RawLogError> {
        let version = self.version::<MetadataRequest>("Metadata", METADATA_MAX)?;
        let request = MetadataRequest::default()
            .with_topics(Some(Vec::new()))
            .with_allow_auto_topic_creation(false);
        let response = self.call(&request, version, "Metadata")?;
        Ok(response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect())
    }

    pub(crate) fn protocol_error(&self, api: &'static str, message: String) -> RawLogError {
        RawLogError::Protocol {
            address: self.address.clone(),
            api,
            message,
        }
    }

    fn topic_metadata(
        &mut self,
        topic: &str,
        bootstrap: &str,
    ) -> Result<TopicMetadata, RawLogError> {
        let version = self.version::<MetadataRequest>("Metadata", METADATA_MAX)?;
        let request = MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
            ]))
            .with_allow_auto_topic_creation(false);
        let response = self.call(&request, version, "Metadata")?;
        let brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        let found = response
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic));
        let Some(found) = found else {
            return Err(RawLogError::UnknownTopic {
                topic: topic.to_string(),
                bootstrap: bootstrap.to_string(),
            });
        };
        match ResponseError::try_from_code(found.error_code) {
            None => {}
            Some(ResponseError::UnknownTopicOrPartition) => {
                return Err(RawLogError::UnknownTopic {
                    topic: topic.to_string(),
                    bootstrap: bootstrap.to_string(),
                })
            }
            Some(error) => {
                return Err(RawLogError::Broker {
                    api: "Metadata",
                    topic: topic.to_string(),
                    partition: None,
                    error,
                })
            }
        }
        let mut leaders = vec![-1; found.partitions.len()];
        for partition in &found.partitions {
            let index = partition.partition_index;
            if index < 0 || index as usize >= leaders.len() {
                return Err(self.protocol_error(
                    "Metadata",
                    format!(
                        "topic {topic} reports partition {index} among {} partitions",
                        leaders.len()
                    ),
                ));
            }
            if let Some(error) = ResponseError::try_from_code(partition.error_code) {
                return Err(RawLogError::Broker {
                    api: "Metadata",
                    topic: topic.to_string(),
                    partition: Some(index),
                    error,
                });
            }
            leaders[index as usize] = partition.leader_id.0;
        }
        if let Some(partition) = leaders.iter().position(|&leader| leader < 0) {
            return Err(RawLogError::NoLeader {
                topic: topic.to_string(),
                partition: partition as i32,
                leader: leaders[partition],
            });
        }
        Ok(TopicMetadata { leaders, brokers })
    }

    /// The earliest offset (`timestamp` -2) or latest (-1) of each partition.
    fn list_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<HashMap<i32, i64>, RawLogError> {
        let version = self.version::<ListOffsetsRequest>("ListOffsets", LIST_OFFSETS_MAX)?;
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(READ_UNCOMMITTED)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|&p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(p)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )]);
        let response = self.call(&request, version, "ListOffsets")?;
        let mut offsets = HashMap::new();
        for answered in response
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
        {
            for partition in &answered.partitions {
                if let Some(error) = ResponseError::try_from_code(partition.error_code) {
                    return Err(RawLogError::Broker {
                        api: "ListOffsets",
                        topic: topic.to_string(),
                        partition: Some(partition.partition_index),
                        error,
                    });
                }
                offsets.insert(partition.partition_index, partition.offset);
            }
        }
        if let Some(missing) = partitions.iter().find(|p| !offsets.contains_key(p)) {
            return Err(self.protocol_error(
                "ListOffsets",
                format!("no offset for topic {topic} partition {missing}"),
            ));
        }
        Ok(offsets)
    }

    /// Every record of one partition from `start` to the high watermark the first Fetch
    /// reports, in offset order as decoded, and that high watermark.
    ///
    /// The target comes from Fetch, not ListOffsets: Tansu answers ListOffsets(latest) with
    /// the last batch's base offset + 1, which falls short when that batch holds several
    /// records.
    /// Every entry of one partition from its log start to the high watermark of the first
    /// answer, with that log start and high watermark. `hint` is where the log is believed to
    /// start; when the broker's answer reports an earlier log start, reading starts there.
    fn fetch_partition(
        &mut self,
        topic: &str,
        partition: i32,
        hint: i64,
    ) -> Result<(Vec<Entry>, i64, i64), RawLogError> {
        let version = self.version::<FetchRequest>("Fetch", FETCH_MAX)?;
        let batch_error = |offset, message| RawLogError::Batch {
            topic: topic.to_string(),
            partition,
            offset,
            message,
        };
        let mut entries = Vec::new();
        let mut start = hint;
        let mut next = start;
        let mut high_watermark = None;
        let mut fetch_bytes = FIRST_FETCH_BYTES;
        let mut empty_fetches = 0;
        loop {
            if high_watermark.is_some_and(|end| next >= end) {
                break;
            }
            let request = FetchRequest::default()
                .with_max_wait_ms(FETCH_MAX_WAIT_MS)
                .with_min_bytes(0)
                .with_max_bytes(fetch_bytes)
                .with_isolation_level(READ_UNCOMMITTED)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(next)
                        .with_partition_max_bytes(fetch_bytes)])]);
            let response = self.call(&request, version, "Fetch")?;
            if let Some(error) = ResponseError::try_from_code(response.error_code) {
                return Err(RawLogError::Broker {
                    api: "Fetch",
                    topic: topic.to_string(),
                    partition: None,
                    error,
                });
            }
            let answered: Vec<(String, i32)> = response
                .responses
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| (t.topic.0.to_string(), p.partition_index))
                })
                .collect();
            let data = response
                .responses
                .iter()
                .filter(|t| t.topic.0.as_str() == topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == partition)
                .ok_or_else(|| {
                    self.protocol_error(
                        "Fetch",
                        format!(
                            "no data for topic {topic} partition {partition} in a response \
                             for {answered:?}"
                        ),
                    )
                })?;
            if let Some(error) = ResponseError::try_from_code(data.error_code) {
                return Err(RawLogError::Broker {
                    api: "Fetch",
                    topic: topic.to_string(),
                    partition: Some(partition),
                    error,
                });
            }
            if entries.is_empty()
                && next == start
                && data.log_start_offset >= 0
                && data.log_start_offset < start
            {
                start = data.log_start_offset;
                next = start;
                high_watermark = None;
                continue;
            }
            let end = *high_watermark.get_or_insert(data.high_watermark);
            if next >= end {
                break;
            }
            let records = data.records.clone().unwrap_or_default();
            let batches = split_batches(&records).map_err(|message| batch_error(next, message))?;
            if batches.is_empty() {
                if !records.is_empty() && fetch_bytes < LARGEST_FETCH_BYTES {
                    // One batch is larger than the limit; Kafka returns it whole only when it
                    // is the first, other brokers may not.
                    fetch_bytes = fetch_bytes.saturating_mul(2);
                    continue;
                }
                empty_fetches += 1;
                if empty_fetches >= EMPTY_FETCHES_BEFORE_GIVING_UP {
                    return Err(RawLogError::Stalled {
                        topic: topic.to_string(),
                        partition,
                        offset: next,
                        high_watermark: end,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            empty_fetches = 0;
            for batch in batches {
                if batch.next_offset <= next {
                    continue;
                }
                let set = RecordBatchDecoder::decode(&mut batch.bytes.clone())
                    .map_err(|e| batch_error(batch.base_offset, format!("{e:#}")))?;
                // A fetch may start inside a batch; the records before the asked offset were
                // taken from the previous response or lie below the log start.
                entries.extend(
                    set.records
                        .into_iter()
                        .filter(|r| r.offset >= next && r.offset < end)
                        .map(|record| Entry { partition, record }),
                );
                next = batch.next_offset;
            }
        }
        Ok((entries, start, high_watermark.unwrap_or(start)))
    }
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn data(offset: i64, producer_id: i64, transactional: bool, key: &str) -> Record {
        Record {
            transactional,
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: offset as i32,
            timestamp: 1_700_000_000_000 + offset,
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
            delete_horizon: false,
        }
    }

    fn marker(offset: i64, producer_id: i64, control_type: i16) -> Record {
        let mut key = BytesMut::new();
        key.extend_from_slice(&0i16.to_be_bytes());
        key.extend_from_slice(&control_type.to_be_bytes());
        Record {
            control: true,
            transactional: true,
            key: Some(key.freeze()),
            value: Some(Bytes::from_static(&[0; 6])),
            sequence: -1,
            ..data(offset, producer_id, true, "")
        }
    }

    fn entries(records: Vec<Record>) -> Vec<Entry> {
        records
            .into_iter()
            .map(|record| Entry {
                partition: 0,
                record,
            })
            .collect()
    }

    fn keys(records: &[RawRecord], outcome: Outcome) -> Vec<String> {
        records
            .iter()
            .filter(|r| r.outcome == outcome)
            .map(|r| String::from_utf8(r.record.key.clone().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn markers_decide_by_producer_id_across_interleaving() {
        let (records, markers) = resolve_transactions(entries(vec![
            data(0, 2, true, "x1"),
            data(1, 3, true, "y1"),
            data(2, 4, false, "n1"),
            data(3, 2, true, "x2"),
            marker(4, 3, CONTROL_ABORT),
            data(5, 4, false, "n2"),
            marker(6, 2, CONTROL_COMMIT),
            data(7, 3, true, "y2"),
            marker(8, 3, CONTROL_COMMIT),
            data(9, 2, true, "x3"),
        ]));
        assert_eq!(keys(&records, Outcome::Committed), ["x1", "x2", "y2"]);
        assert_eq!(keys(&records, Outcome::Aborted), ["y1"]);
        assert_eq!(keys(&records, Outcome::NonTransactional), ["n1", "n2"]);
        assert_eq!(keys(&records, Outcome::Open), ["x3"]);
        let kinds: Vec<_> = markers
            .iter()
            .map(|m| (m.offset, m.producer_id, m.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                (4, 3, MarkerKind::Abort),
                (6, 2, MarkerKind::Commit),
                (8, 3, MarkerKind::Commit)
            ]
        );
    }

    #[test]
    fn last_stable_offset_is_the_oldest_open_transaction() {
        let (records, markers) = resolve_transactions(entries(vec![
            data(0, 1, true, "a"),
            data(1, 2, true, "b"),
            marker(2, 1, CONTROL_COMMIT),
            data(3, 5, false, "n"),
        ]));
        let log = PartitionLog {
            partition: 0,
            log_start_offset: 0,
            high_watermark: 4,
            records,
            markers,
        };
        assert_eq!(log.last_stable_offset(), 1);
        let committed: Vec<i64> = log.committed().map(|r| r.offset).collect();
        assert_eq!(committed, [0, 3]);
        let now: Vec<i64> = log.visible_now().map(|r| r.offset).collect();
        assert_eq!(now, [0]);
    }

    #[test]
    fn unknown_control_types_decide_nothing() {
        let (records, markers) =
            resolve_transactions(entries(vec![data(0, 7, true, "a"), marker(1, 7, 3)]));
        assert_eq!(keys(&records, Outcome::Open), ["a"]);
        assert_eq!(markers[0].kind, MarkerKind::Other(3));
    }

    fn encoded(records: &[Record], compression: Compression) -> Bytes {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn split_keeps_complete_batches_and_drops_a_cut_tail() {
        let first = encoded(
            &[data(10, 1, false, "a"), data(11, 1, false, "b")],
            Compression::None,
        );
        let second = encoded(&[data(12, 1, false, "c")], Compression::Zstd);
        let mut joined = BytesMut::new();
        joined.extend_from_slice(&first);
        joined.extend_from_slice(&second[..second.len() - 3]);
        let batches = split_batches(&joined.freeze()).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!((batches[0].base_offset, batches[0].next_offset), (10, 12));
    }

    #[test]
    fn split_reads_every_codec() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bytes = encoded(
                &[data(0, 1, false, "a"), data(1, 1, false, "b")],
                compression,
            );
            let batches = split_batches(&bytes).unwrap();
            assert_eq!(batches.len(), 1, "{compression:?}");
            let set = RecordBatchDecoder::decode(&mut batches[0].bytes.clone()).unwrap();
            let keys: Vec<_> = set.records.iter().map(|r| r.key.clone().unwrap()).collect();
            assert_eq!(
                keys,
                [Bytes::from_static(b"a"), Bytes::from_static(b"b")],
                "{compression:?}"
            );
        }
    }
}
