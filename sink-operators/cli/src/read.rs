//! `outflow read`: a sink's topic read back as the relation it holds at its committed frontier.
//!
//! The committed frontier comes from the progress topic and the progress groups' committed
//! offsets, exactly as recovery computes it, but read-only: nothing is fenced, no offset is
//! committed. The data topic is read with `isolation.level=read_committed`, and only messages
//! at times before the frontier (their `outflow-time` header) count. UPSERT keeps the latest
//! value of each key, a tombstone removing it; DEBEZIUM applies `before`/`after` in offset order
//! (with a KEY, the latest `after` of each key). Rows come out in FORMAT JSON, in key order.
//!
//! On brokers whose `read_committed` fetches return records of aborted transactions (Tansu;
//! `ReadOptions::broker_shows_aborted_records`), both topics are read from their raw logs with
//! `read_committed` applied from the control batches (`outflow::rawlog`, plaintext only), after
//! waiting for transactions in flight to be decided.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use apache_avro::Schema;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};

use outflow::dataflow::{DiffPair, RelationDesc, Row};
use outflow::encoders::decode;
use outflow::encoders::{
    DecodeError, EncodedMessage, EncoderConfig, Envelope, FormatSpec, SchemaRegistryClient,
    SinkEncoder, TIME_HEADER,
};
use outflow::progress_reader::{committed_seqs, read_progress, RecoverOptions};
use outflow::sink::SinkPlan;
use outflow::statement::Catalog;
use outflow::topic::{committed_reader_config, from_offset_zero, partition_count, redacted};
use outflow_protocol::SinkNames;

const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How `read` reads.
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions {
    /// The broker's `read_committed` fetches return records of aborted transactions (Tansu):
    /// read the raw logs and apply the control batches instead.
    pub broker_shows_aborted_records: bool,
    /// How long reading the progress topic, and then the data topic, may take.
    pub timeout: Duration,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            broker_shows_aborted_records: false,
            timeout: DEFAULT_READ_TIMEOUT,
        }
    }
}

/// What a sink's topic holds at its committed frontier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkContents {
    /// The rows, in key order (the whole row's order without a KEY), each in FORMAT JSON; a row
    /// held several times appears that many times.
    pub rows: Vec<String>,
    /// Every update before this time is in the topic; `None`: all of them are.
    pub frontier: Option<u64>,
    /// Each previous worker's committed frontier (`None`: done), as the progress topic says.
    pub workers: BTreeMap<u32, Option<u64>>,
    /// Messages read, and those left out for being at or after the frontier.
    pub messages: u64,
    pub skipped: u64,
}

impl SinkContents {
    /// The line printed after the rows: `{"frontier":[7],"workers":{"0":[7],"1":[9]}}`, an
    /// empty frontier meaning everything is committed.
    pub fn frontier_line(&self) -> String {
        let frontier = |f: &Option<u64>| f.map_or_else(Vec::new, |t| vec![t]);
        let workers: BTreeMap<String, Vec<u64>> = self
            .workers
            .iter()
            .map(|(w, f)| (w.to_string(), frontier(f)))
            .collect();
        serde_json::json!({ "frontier": frontier(&self.frontier), "workers": workers }).to_string()
    }
}

/// Why a sink could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("unknown sink \"{0}\"")]
    UnknownSink(String),
    #[error("sink {sink}: {message}")]
    Sink { sink: String, message: String },
    #[error("topic {topic}, partition {partition}, offset {offset}: {message}")]
    Message {
        topic: String,
        partition: i32,
        offset: i64,
        message: String,
    },
}

/// Reads sink `name` of `catalog` back.
pub fn read_sink(
    catalog: &Catalog,
    name: &str,
    options: ReadOptions,
) -> Result<SinkContents, ReadError> {
    if catalog.sink(name).is_none() {
        return Err(ReadError::UnknownSink(name.to_string()));
    }
    let plan = SinkPlan::from_catalog(catalog, name).map_err(|e| sink_error(name, e))?;
    let spec = &plan.spec;
    let client = plan.connection.client_config().clone();

    let names = SinkNames::new(
        spec.name.clone(),
        spec.transactional_id_prefix.clone(),
        spec.progress_group_id_prefix.clone(),
    );
    let recover_options = RecoverOptions {
        reader_shows_aborted: options.broker_shows_aborted_records,
        read_timeout: options.timeout,
        ..RecoverOptions::default()
    };
    let scan = read_progress(
        &client,
        &names,
        &plan.connection.progress_topic,
        &recover_options,
    )
    .map_err(|e| sink_error(name, e))?;
    let offsets = committed_seqs(
        &client,
        &names,
        &plan.connection.progress_topic,
        &scan.workers_with_records(),
    )
    .map_err(|e| sink_error(name, e))?;
    // The worker count only decides what a new run would take over; the resume point is the
    // same for any.
    let recovery = scan.recover(&offsets, 1);
    let frontier = recovery.resume_time();
    let workers = recovery
        .previous
        .iter()
        .map(|p| (p.worker, p.point.time()))
        .collect();

    let decoder = Decoder::new(&plan).map_err(|message| ReadError::Sink {
        sink: name.to_string(),
        message,
    })?;
    let mut contents = SinkContents {
        rows: Vec::new(),
        frontier,
        workers,
        messages: 0,
        skipped: 0,
    };
    let mut state = State::default();
    let on_message = |partition: i32,
                      offset: i64,
                      key: Option<&[u8]>,
                      value: Option<&[u8]>,
                      time: Option<u64>|
     -> Result<(), ReadError> {
        let located = |message: String| ReadError::Message {
            topic: spec.topic.clone(),
            partition,
            offset,
            message,
        };
        let time =
            time.ok_or_else(|| located(format!("the message has no {TIME_HEADER} header")))?;
        contents.messages += 1;
        if frontier.is_some_and(|f| time >= f) {
            contents.skipped += 1;
            return Ok(());
        }
        decoder.apply(&mut state, key, value).map_err(located)
    };
    let raw = outflow::rawlog::plaintext_bootstrap(&client)
        .filter(|_| options.broker_shows_aborted_records);
    if let Some(bootstrap) = raw {
        read_topic_raw(&bootstrap, &spec.topic, options.timeout, on_message)?;
    } else {
        read_topic(&client, &spec.topic, options.timeout, on_message)?;
    }
    contents.rows = decoder.render(&state).map_err(|message| ReadError::Sink {
        sink: name.to_string(),
        message,
    })?;
    Ok(contents)
}

fn sink_error(sink: &str, error: impl std::fmt::Display) -> ReadError {
    ReadError::Sink {
        sink: sink.to_string(),
        message: error.to_string(),
    }
}

/// The relation as the messages so far make it: by key (order key of the key row), or as a
/// multiset of rows without a key.
#[derive(Default)]
struct State {
    keyed: BTreeMap<Vec<u8>, Row>,
    rows: BTreeMap<Vec<u8>, (Row, isize)>,
}

impl State {
    fn add(&mut self, row: Row, diff: isize) {
        let entry = self.rows.entry(row.order_key()).or_insert((row, 0));
        entry.1 += diff;
    }
}

/// Decodes one sink's messages.
struct Decoder {
    desc: RelationDesc,
    key_desc: Option<RelationDesc>,
    envelope: Envelope,
    /// Whether a keyed message without a value is the tombstone after a delete.
    tombstones_on_delete: bool,
    key_format: FormatSpec,
    value_format: FormatSpec,
    registry: Option<SchemaRegistryClient>,
    schemas: std::cell::RefCell<HashMap<i32, Schema>>,
    /// Writes rows in FORMAT JSON, for printing.
    printer: SinkEncoder,
}

impl Decoder {
    fn new(plan: &SinkPlan) -> Result<Decoder, String> {
        let spec = &plan.spec;
        let registry = plan
            .registry
            .clone()
            .map(SchemaRegistryClient::new)
            .transpose()
            .map_err(|e| e.to_string())?;
        let printer = SinkEncoder::new(
            EncoderConfig {
                desc: spec.desc.clone(),
                relation: spec.from.clone().unwrap_or_else(|| spec.name.clone()),
                key_columns: None,
                envelope: Envelope::Upsert,
                debezium: Default::default(),
                sink: spec.name.clone(),
                key_format: FormatSpec::Json,
                value_format: FormatSpec::Json,
                headers_column: None,
                topic: spec.topic.clone(),
            },
            None,
        )
        .map_err(|e| e.to_string())?;
        Ok(Decoder {
            desc: spec.desc.clone(),
            key_desc: spec.key.as_ref().map(|k| spec.desc.project(&k.indices)),
            envelope: spec.envelope,
            tombstones_on_delete: spec.debezium.tombstones_on_delete,
            key_format: spec
                .key_format
                .clone()
                .unwrap_or_else(|| spec.value_format.clone()),
            value_format: spec.value_format.clone(),
            registry,
            schemas: Default::default(),
            printer,
        })
    }

    fn apply(
        &self,
        state: &mut State,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<(), String> {
        let key = match (&self.key_desc, key) {
            (Some(desc), Some(bytes)) => Some(
                self.decode_row(desc, &self.key_format, bytes)
                    .map_err(|e| format!("cannot decode the key: {e}"))?,
            ),
            (Some(_), None) => {
                return Err("the message has no key, but the sink has a KEY".to_string())
            }
            (None, _) => None,
        };
        match self.envelope {
            Envelope::Upsert => {
                let after = match value {
                    Some(bytes) => Some(
                        self.decode_row(&self.desc, &self.value_format, bytes)
                            .map_err(|e| format!("cannot decode the value: {e}"))?,
                    ),
                    None => None,
                };
                match (key, after) {
                    (Some(key), Some(row)) => drop(state.keyed.insert(key.order_key(), row)),
                    (Some(key), None) => drop(state.keyed.remove(&key.order_key())),
                    (None, Some(row)) => state.add(row, 1),
                    (None, None) => return Err("a keyless message without a value".to_string()),
                }
            }
            Envelope::Debezium => {
                // The tombstone after a delete (TOMBSTONES ON DELETE) follows the delete
                // itself, which already removed the key.
                let bytes = match (value, &key) {
                    (Some(bytes), _) => bytes,
                    (None, Some(_)) if self.tombstones_on_delete => return Ok(()),
                    (None, _) => return Err("a DEBEZIUM message without a value".to_string()),
                };
                let pair = self
                    .decode_debezium(bytes)
                    .map_err(|e| format!("cannot decode the value: {e}"))?;
                match key {
                    Some(key) => match pair.after {
                        Some(row) => drop(state.keyed.insert(key.order_key(), row)),
                        None => drop(state.keyed.remove(&key.order_key())),
                    },
                    None => {
                        if let Some(row) = pair.before {
                            state.add(row, -1);
                        }
                        if let Some(row) = pair.after {
                            state.add(row, 1);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn render(&self, state: &State) -> Result<Vec<String>, String> {
        let mut lines = Vec::new();
        let mut message = EncodedMessage::new();
        let mut print = |row: &Row| -> Result<String, String> {
            let pair = DiffPair {
                before: None,
                after: Some(row.clone()),
            };
            self.printer
                .encode(&Row::default(), &pair, 0, &mut message)
                .map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(message.value().unwrap_or_default()).into_owned())
        };
        for row in state.keyed.values() {
            lines.push(print(row)?);
        }
        for (row, count) in state.rows.values() {
            if *count < 0 {
                return Err(format!(
                    "the topic deletes a row it never added: {}",
                    print(row)?
                ));
            }
            for _ in 0..*count {
                lines.push(print(row)?);
            }
        }
        Ok(lines)
    }

    fn decode_row(
        &self,
        desc: &RelationDesc,
        format: &FormatSpec,
        bytes: &[u8],
    ) -> Result<Row, String> {
        match format {
            FormatSpec::Json => decode::row_from_json(desc, json_text(bytes)?),
            FormatSpec::JsonWithSchema => decode::row_from_connect_json(desc, json_text(bytes)?),
            FormatSpec::Text => decode::row_from_text(desc, bytes),
            FormatSpec::Bytes => decode::row_from_bytes(desc, bytes),
            FormatSpec::Avro(_) => {
                return self.with_writer_schema(bytes, |schema, body| {
                    decode::row_from_avro(desc, schema, body)
                })
            }
        }
        .map_err(|e| e.to_string())
    }

    fn decode_debezium(&self, bytes: &[u8]) -> Result<DiffPair<Row>, String> {
        match &self.value_format {
            FormatSpec::Json => {
                decode::debezium_from_json(&self.desc, json_text(bytes)?).map_err(|e| e.to_string())
            }
            FormatSpec::Avro(_) => self.with_writer_schema(bytes, |schema, body| {
                decode::debezium_from_avro(&self.desc, schema, body)
            }),
            FormatSpec::JsonWithSchema => {
                decode::debezium_from_connect_json(&self.desc, json_text(bytes)?)
                    .map_err(|e| e.to_string())
            }
            other => Err(format!("FORMAT {} has no DEBEZIUM envelope", other.name())),
        }
    }

    /// Decodes a Confluent-framed Avro message with its writer schema, fetched from the
    /// registry by the id in its header (once per id).
    fn with_writer_schema<T>(
        &self,
        bytes: &[u8],
        decode: impl FnOnce(&Schema, &[u8]) -> Result<T, DecodeError>,
    ) -> Result<T, String> {
        let (id, body) = decode::confluent_schema_id(bytes).map_err(|e| e.to_string())?;
        let mut schemas = self.schemas.borrow_mut();
        if let std::collections::hash_map::Entry::Vacant(vacant) = schemas.entry(id) {
            let registry = self
                .registry
                .as_ref()
                .ok_or("an Avro message, but the sink names no schema registry")?;
            let text = registry
                .schema_by_id(id)
                .map_err(|e| format!("cannot fetch schema {id}: {e}"))?;
            let schema =
                Schema::parse_str(&text).map_err(|e| format!("schema {id} does not parse: {e}"))?;
            vacant.insert(schema);
        }
        decode(&schemas[&id], body).map_err(|e| format!("{e} (writer schema {id})"))
    }
}

fn json_text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("a JSON message that is not UTF-8 ({e})"))
}

/// Reads `topic` from its start to its end with `read_committed`, handing each message's
/// partition, offset, key, value and `outflow-time` header to `record`.
/// `read_topic` for brokers whose fetches show aborted records: the raw log with
/// `read_committed` applied from the control batches. Such a broker (Tansu) may also write a
/// transaction's markers a little after the commit returned, so the read waits until no record
/// of the topic belongs to an open transaction.
fn read_topic_raw(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    mut record: impl FnMut(i32, i64, Option<&[u8]>, Option<&[u8]>, Option<u64>) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let failed = |message: String| ReadError::Sink {
        sink: topic.to_string(),
        message,
    };
    let log = outflow::rawlog::read_settled(bootstrap, topic, timeout)
        .map_err(|e| failed(e.to_string()))?;
    let open = log.open().len();
    if open > 0 {
        return Err(failed(format!(
            "timed out after {timeout:?} waiting for {open} records of open transactions to be decided"
        )));
    }
    for message in log.committed() {
        let time = message
            .headers
            .iter()
            .find(|(name, _)| name == TIME_HEADER)
            .and_then(|(_, value)| value.as_deref())
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok());
        record(
            message.partition,
            message.offset,
            message.key.as_deref(),
            message.value.as_deref(),
            time,
        )?;
    }
    Ok(())
}

fn read_topic(
    config: &rdkafka::ClientConfig,
    topic: &str,
    timeout: Duration,
    mut record: impl FnMut(i32, i64, Option<&[u8]>, Option<&[u8]>, Option<u64>) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let failed = |message: String| ReadError::Sink {
        sink: topic.to_string(),
        message,
    };
    let partitions = partition_count(config, topic).map_err(|e| failed(e.to_string()))?;
    let reader_config =
        committed_reader_config(config, &format!("outflow-read-{}", std::process::id()));
    let consumer: BaseConsumer = reader_config
        .create()
        .map_err(|e| failed(format!("cannot create a reader: {}", redacted(&e))))?;
    let assignment = from_offset_zero(topic, 0..partitions).map_err(|e| failed(redacted(&e)))?;
    consumer
        .assign(&assignment)
        .map_err(|e| failed(redacted(&e)))?;

    // A partition is read once it reached its end after its last message.
    let mut at_end = vec![false; partitions as usize];
    let deadline = Instant::now() + timeout;
    while at_end.iter().any(|done| !done) {
        if Instant::now() >= deadline {
            let pending: Vec<String> = at_end
                .iter()
                .enumerate()
                .filter(|(_, d)| !**d)
                .map(|(p, _)| p.to_string())
                .collect();
            return Err(failed(format!(
                "timed out after {timeout:?} reading partitions {} to their end",
                pending.join(", ")
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                if let Some(done) = at_end.get_mut(partition as usize) {
                    *done = true;
                }
            }
            Some(Err(e)) => tracing::debug!("reading {topic}: {}", redacted(&e)),
            Some(Ok(message)) => {
                let partition = message.partition();
                if let Some(done) = at_end.get_mut(partition as usize) {
                    *done = false;
                }
                let time = message.headers().and_then(|headers| {
                    headers
                        .iter()
                        .find(|h| h.key == TIME_HEADER)
                        .and_then(|h| h.value)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.parse().ok())
                });
                record(
                    partition,
                    message.offset(),
                    message.key(),
                    message.payload(),
                    time,
                )?;
            }
        }
    }
    Ok(())
}
