//! Topic administration: creating the data and progress topics, and checking existing ones
//! against what the sink asked for.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication, TopicResult,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::acl;

/// How long one admin request (create, describe, metadata) may take before it is an error.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Partition count and replication factor sent when the user leaves them unset: the broker's
/// `num.partitions` and `default.replication.factor` apply (KIP-464, Kafka 2.4 and later;
/// Tansu accepts it and uses its default of 3 partitions). Older brokers are asked for those
/// two configs instead.
const BROKER_DEFAULT: i32 = -1;

/// What the sink wants its data topic to look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSettings {
    /// The topic.
    pub name: String,
    /// `TOPIC PARTITION COUNT`; `None` leaves it to the broker.
    pub partitions: Option<i32>,
    /// `TOPIC REPLICATION FACTOR`; `None` leaves it to the broker.
    pub replication_factor: Option<i32>,
    /// `TOPIC CONFIG`: topic-level configs such as `retention.ms`.
    pub configs: BTreeMap<String, String>,
}

impl TopicSettings {
    /// Settings for `name` that leave everything to the broker.
    pub fn new(name: impl Into<String>) -> Self {
        TopicSettings {
            name: name.into(),
            partitions: None,
            replication_factor: None,
            configs: BTreeMap::new(),
        }
    }
}

/// A way an existing topic differs from the settings the sink was given. The sink still writes
/// to it; these go into its status so that the user can alter the topic or the sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicDifference {
    /// The topic has another partition count.
    PartitionCount {
        /// The partition count asked for.
        requested: i32,
        /// The topic's partition count.
        actual: i32,
    },
    /// The topic's partitions have another number of replicas.
    ReplicationFactor {
        /// The replication factor asked for.
        requested: i32,
        /// The replica count of the topic's first partition.
        actual: i32,
    },
    /// A topic config has another value, or none the broker reports.
    Config {
        /// The config's name.
        name: String,
        /// The value asked for.
        requested: String,
        /// The value the broker reports; `None` when it reports none (some brokers, Tansu
        /// among them, report only the configs set when the topic was created).
        actual: Option<String>,
    },
    /// The broker cannot describe topic configs (it has no reachable controller, as
    /// librdkafka's mock cluster has none), so the requested configs were not checked.
    ConfigsNotDescribed,
    /// The broker answered DescribeConfigs with no configs at all. Kafka refuses a principal
    /// without DescribeConfigs on the topic so, and rust-rdkafka drops the per-resource error
    /// code, leaving an empty answer: every config would otherwise look unset.
    ConfigsNotAuthorized {
        /// The topic.
        topic: String,
    },
}

impl fmt::Display for TopicDifference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicDifference::PartitionCount { requested, actual } => {
                write!(f, "has {actual} partitions, not the {requested} requested")
            }
            TopicDifference::ReplicationFactor { requested, actual } => {
                write!(
                    f,
                    "has replication factor {actual}, not the {requested} requested"
                )
            }
            TopicDifference::Config {
                name,
                requested,
                actual: Some(actual),
            } => {
                write!(f, "has {name}={actual:?}, not the {requested:?} requested")
            }
            TopicDifference::Config {
                name,
                requested,
                actual: None,
            } => {
                write!(
                    f,
                    "reports no value for {name}; {requested:?} was requested"
                )
            }
            TopicDifference::ConfigsNotDescribed => write!(
                f,
                "was not checked against the requested configs: the broker has no controller to describe them"
            ),
            TopicDifference::ConfigsNotAuthorized { topic } => write!(
                f,
                "was not checked against the requested configs: the broker described none of \
                 them, as Kafka does for a principal {}; {}",
                acl::not_authorized("DescribeConfigs", acl::Resource::Topic(topic)),
                acl::grant("DescribeConfigs", acl::Resource::Topic(topic), None)
            ),
        }
    }
}

/// What [`ensure_data_topic`] and [`ensure_progress_topic`] found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicReport {
    /// The topic.
    pub topic: String,
    /// Whether this call created it.
    pub created: bool,
    /// Its partition count, from the broker's metadata.
    pub partitions: i32,
    /// The replica count of its first partition, from the broker's metadata.
    pub replication_factor: i32,
    /// How an existing topic differs from the settings; empty for a topic this call created.
    pub differences: Vec<TopicDifference>,
}

impl fmt::Display for TopicReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.created { "created" } else { "exists" };
        write!(
            f,
            "topic {} {verb} with {} partitions, replication factor {}",
            self.topic, self.partitions, self.replication_factor
        )?;
        for difference in &self.differences {
            write!(f, "; it {difference}")?;
        }
        Ok(())
    }
}

/// Why a topic could not be created, checked or described.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The admin client could not be built from the connection's options.
    #[error("cannot build a Kafka admin client to manage topic {topic}: {reason}")]
    Client {
        /// The topic it was meant to manage.
        topic: String,
        /// librdkafka's reason, with option values left out.
        reason: String,
    },
    /// A request failed as a whole (no broker answered in time, the connection failed).
    #[error("{operation} for topic {topic} failed: {reason}")]
    Request {
        /// What was asked: "creating", "describing the configs", "reading metadata".
        operation: &'static str,
        /// The topic.
        topic: String,
        /// librdkafka's reason.
        reason: String,
    },
    /// The broker refused the request for this topic.
    #[error("the broker refused {operation} for topic {topic}: {code}{hint}")]
    Refused {
        /// What was asked.
        operation: &'static str,
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
        /// What the user can do about it, if anything specific.
        hint: &'static str,
    },
    /// The broker's authorizer refused the request: `denial` names the operation and the
    /// topic (see [`crate::acl`]).
    #[error("{denial} ({during}); {hint}")]
    NotAuthorized {
        /// "not authorized to Create topic 'orders'".
        denial: String,
        /// What the sink was doing: "creating the topic", "reading metadata".
        during: &'static str,
        /// The ACL that grants it.
        hint: String,
    },
    /// The topic does not exist.
    #[error("topic {topic} does not exist")]
    Missing {
        /// The topic.
        topic: String,
    },
    /// The broker describes the topic with no partitions.
    #[error("topic {topic} has an impossible partition count of zero")]
    NoPartitions {
        /// The topic.
        topic: String,
    },
    /// The broker cannot pick a default and does not say what its default is.
    #[error(
        "cannot create topic {topic}: the broker predates default partition counts and \
         replication factors (KIP-464) and does not report its {config}; set {option}"
    )]
    NoBrokerDefault {
        /// The topic.
        topic: String,
        /// The sink option to set.
        option: &'static str,
        /// The broker config that was looked for.
        config: &'static str,
    },
    /// The progress topic has more than one partition, so records of one worker could be spread
    /// over several and their order lost.
    #[error(
        "progress topic {topic} should contain a single partition, but instead contains \
         {partitions} partitions; point the connection's PROGRESS TOPIC at a topic with one \
         partition"
    )]
    ProgressTopicPartitions {
        /// The topic.
        topic: String,
        /// Its partition count.
        partitions: i32,
    },
}

/// Result of the topic functions.
pub type Result<T, E = TopicError> = std::result::Result<T, E>;

/// Creates the sink's data topic if it is missing, with the settings given (the broker's
/// defaults where unset), and otherwise reports how the existing topic differs from them:
/// partition count and replication factor from metadata, the given configs from DescribeConfigs.
pub fn ensure_data_topic(config: &ClientConfig, settings: &TopicSettings) -> Result<TopicReport> {
    ensure_topic(
        config,
        &settings.name,
        settings.partitions,
        settings.replication_factor,
        &settings.configs,
    )
}

/// Creates the progress topic if it is missing, with one partition and
/// `cleanup.policy=compact`, and refuses an existing one with more than one partition. An
/// existing topic that is not compacted is used, and reported as a difference.
/// What a progress topic is created with: one partition, compacted, and the connection's
/// `PROGRESS TOPIC REPLICATION FACTOR` (else the broker's default).
pub fn progress_topic_settings(name: &str, replication_factor: Option<i32>) -> TopicSettings {
    TopicSettings {
        name: name.to_string(),
        partitions: Some(1),
        replication_factor,
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
    }
}

pub fn ensure_progress_topic(
    config: &ClientConfig,
    name: &str,
    replication_factor: Option<i32>,
) -> Result<TopicReport> {
    let settings = progress_topic_settings(name, replication_factor);
    let report = ensure_topic(
        config,
        name,
        settings.partitions,
        settings.replication_factor,
        &settings.configs,
    )?;
    if report.partitions != 1 {
        return Err(TopicError::ProgressTopicPartitions {
            topic: name.to_string(),
            partitions: report.partitions,
        });
    }
    Ok(report)
}

/// The partition count of `topic`, from the broker's metadata; for the periodic
/// `TOPIC METADATA REFRESH INTERVAL` and for checks before reading.
pub fn partition_count(config: &ClientConfig, topic: &str) -> Result<i32> {
    let admin = admin_client(config, topic)?;
    let (partitions, _) = topic_shape(&admin, topic)?;
    Ok(partitions)
}

/// The partition count of a topic, re-read from the broker's metadata every refresh interval
/// on a thread of its own, so that readers get the current count without waiting for a broker.
/// Dropping the watch stops the thread.
pub struct PartitionWatch {
    count: Arc<AtomicI32>,
    // Dropping the sender wakes the thread, which then ends.
    _stop: mpsc::Sender<()>,
}

impl PartitionWatch {
    /// Starts watching `topic`, which has `initial` partitions now. `on_change(old, new)` is
    /// called on the watching thread whenever the count changes. A refresh that fails keeps the
    /// last count and is logged: the sink keeps writing to the partitions it knows.
    pub fn start(
        config: &ClientConfig,
        topic: &str,
        initial: i32,
        interval: Duration,
        on_change: Box<dyn Fn(i32, i32) + Send>,
    ) -> Result<PartitionWatch> {
        let admin = admin_client(config, topic)?;
        let count = Arc::new(AtomicI32::new(initial));
        let (stop, stopped) = mpsc::channel::<()>();
        let shared = Arc::clone(&count);
        let name = topic.to_string();
        let topic = topic.to_string();
        thread::Builder::new()
            .name(format!("outflow-partitions-{topic}"))
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    match topic_shape(&admin, &topic) {
                        Ok((partitions, _)) => {
                            let old = shared.swap(partitions, Ordering::Relaxed);
                            if old != partitions {
                                tracing::info!(%topic, old, new = partitions, "partition count changed");
                                on_change(old, partitions);
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%topic, %error, "cannot refresh the partition count; keeping the last one")
                        }
                    }
                }
            })
            .map_err(|error| TopicError::Request {
                operation: "starting the partition count refresh",
                topic: name,
                reason: error.to_string(),
            })?;
        Ok(PartitionWatch { count, _stop: stop })
    }

    /// The partition count as last read.
    pub fn current(&self) -> i32 {
        self.count.load(Ordering::Relaxed)
    }
}

fn ensure_topic(
    config: &ClientConfig,
    topic: &str,
    partitions: Option<i32>,
    replication_factor: Option<i32>,
    configs: &BTreeMap<String, String>,
) -> Result<TopicReport> {
    let admin = admin_client(config, topic)?;
    // An existing topic is used as it is, without a CreateTopics request: that needs a Create
    // permission the sink may lack, and some brokers (librdkafka's mock cluster) have no
    // CreateTopics at all.
    let existing = match topic_shape(&admin, topic) {
        Ok(shape) => Some(shape),
        Err(TopicError::Missing { .. }) => None,
        Err(other) => return Err(other),
    };
    let created =
        existing.is_none() && create_topic(&admin, topic, partitions, replication_factor, configs)?;
    let (actual_partitions, actual_replication) = match existing {
        Some(shape) => shape,
        // Kafka propagates a new topic's metadata to the brokers asynchronously, also when
        // someone else created it between the metadata request and ours (another sink of the
        // same connection preparing its progress topic at the same moment): CreateTopics then
        // answers TopicAlreadyExists while Metadata may still say it is missing.
        None => wait_for_topic(&admin, topic)?,
    };
    let mut differences = Vec::new();
    if !created {
        if let Some(requested) = partitions {
            if requested != actual_partitions {
                differences.push(TopicDifference::PartitionCount {
                    requested,
                    actual: actual_partitions,
                });
            }
        }
        if let Some(requested) = replication_factor {
            if requested != actual_replication {
                differences.push(TopicDifference::ReplicationFactor {
                    requested,
                    actual: actual_replication,
                });
            }
        }
        if !configs.is_empty() && !controller_reachable(&admin, topic)? {
            differences.push(TopicDifference::ConfigsNotDescribed);
        } else if !configs.is_empty() {
            let actual = describe_topic_configs(&admin, topic)?;
            if actual.is_empty() {
                differences.push(TopicDifference::ConfigsNotAuthorized {
                    topic: topic.to_string(),
                });
            }
            for (name, requested) in configs.iter().filter(|_| !actual.is_empty()) {
                let value = actual.get(name);
                if value != Some(requested) {
                    differences.push(TopicDifference::Config {
                        name: name.clone(),
                        requested: requested.clone(),
                        actual: value.cloned(),
                    });
                }
            }
        }
    }
    Ok(TopicReport {
        topic: topic.to_string(),
        created,
        partitions: actual_partitions,
        replication_factor: actual_replication,
        differences,
    })
}

fn admin_client(config: &ClientConfig, topic: &str) -> Result<AdminClient<DefaultClientContext>> {
    let mut config = config.clone();
    // A metadata request for a missing topic must not create it with the broker's defaults
    // (librdkafka's producer-side default allows it, and Tansu obliges).
    config.set("allow.auto.create.topics", "false");
    config.create().map_err(|error| TopicError::Client {
        topic: topic.to_string(),
        reason: redacted(&error),
    })
}

/// Creates the topic; `false` when it already exists.
fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    partitions: Option<i32>,
    replication_factor: Option<i32>,
    configs: &BTreeMap<String, String>,
) -> Result<bool> {
    const OPERATION: &str = "creating the topic";
    let requested = (
        partitions.unwrap_or(BROKER_DEFAULT),
        replication_factor.unwrap_or(BROKER_DEFAULT),
    );
    let results = match request_creation(admin, topic, requested, configs) {
        // librdkafka refuses -1 itself when the broker predates KIP-464 (Kafka 2.4); such a
        // broker still tells its defaults through DescribeConfigs.
        Err(KafkaError::AdminOp(RDKafkaErrorCode::UnsupportedFeature))
            if partitions.is_none() || replication_factor.is_none() =>
        {
            let (default_partitions, default_replication) = broker_defaults(admin, topic)?;
            let missing =
                |option: &'static str, config: &'static str| TopicError::NoBrokerDefault {
                    topic: topic.to_string(),
                    option,
                    config,
                };
            let resolved = (
                partitions
                    .or(default_partitions)
                    .ok_or_else(|| missing("TOPIC PARTITION COUNT", "num.partitions"))?,
                replication_factor.or(default_replication).ok_or_else(|| {
                    missing("TOPIC REPLICATION FACTOR", "default.replication.factor")
                })?,
            );
            tracing::info!(
                %topic,
                partitions = resolved.0,
                replication_factor = resolved.1,
                "the broker predates KIP-464; creating the topic with its configured defaults"
            );
            request_creation(admin, topic, resolved, configs)
        }
        other => other,
    }
    .map_err(|error| request_failed(OPERATION, topic, &error))?;
    let Some(result) = results.into_iter().next() else {
        return Err(TopicError::Request {
            operation: OPERATION,
            topic: topic.to_string(),
            reason: "the broker's answer named no topic".to_string(),
        });
    };
    match result {
        Ok(_) => Ok(true),
        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => Ok(false),
        Err((_, code)) if acl::is_authorization_failure(code) => Err(TopicError::NotAuthorized {
            denial: acl::not_authorized("Create", acl::Resource::Topic(topic)),
            during: OPERATION,
            hint: format!(
                "{}, or create the topic beforehand",
                acl::grant("Create", acl::Resource::Topic(topic), None)
            ),
        }),
        Err((_, code)) => {
            let hint = match code {
                RDKafkaErrorCode::InvalidReplicationFactor => {
                    "; set TOPIC REPLICATION FACTOR to at most the number of brokers"
                }
                RDKafkaErrorCode::InvalidPartitions => {
                    "; set TOPIC PARTITION COUNT to a positive number"
                }
                RDKafkaErrorCode::InvalidConfig => "; check the names and values in TOPIC CONFIG",
                _ => "",
            };
            Err(TopicError::Refused {
                operation: OPERATION,
                topic: topic.to_string(),
                code,
                hint,
            })
        }
    }
}

fn request_creation(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    (partitions, replication_factor): (i32, i32),
    configs: &BTreeMap<String, String>,
) -> std::result::Result<Vec<TopicResult>, KafkaError> {
    let mut new_topic = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(replication_factor),
    );
    for (name, value) in configs {
        new_topic = new_topic.set(name, value);
    }
    let options = AdminOptions::new()
        .request_timeout(Some(ADMIN_TIMEOUT))
        .operation_timeout(Some(ADMIN_TIMEOUT));
    block_on(admin.create_topics([&new_topic], &options))
}

/// The broker's `num.partitions` and `default.replication.factor`, where it reports them.
fn broker_defaults(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<(Option<i32>, Option<i32>)> {
    const OPERATION: &str = "reading the broker's topic defaults";
    let metadata = admin
        .inner()
        .fetch_metadata(None, ADMIN_TIMEOUT)
        .map_err(|error| request_failed(OPERATION, topic, &error))?;
    let Some(broker) = metadata.brokers().first() else {
        return Ok((None, None));
    };
    let options = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
    let results =
        block_on(admin.describe_configs([&ResourceSpecifier::Broker(broker.id())], &options))
            .map_err(|error| request_failed(OPERATION, topic, &error))?;
    let mut defaults = (None, None);
    for resource in results.into_iter().flatten() {
        let number = |name: &str| resource.get(name)?.value.as_deref()?.parse::<i32>().ok();
        defaults.0 = defaults.0.or(number("num.partitions"));
        defaults.1 = defaults.1.or(number("default.replication.factor"));
    }
    Ok(defaults)
}

/// Partition count and replica count of the first partition.
fn topic_shape(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<(i32, i32)> {
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
        .map_err(|error| request_failed("reading metadata", topic, &error))?;
    shape_from_metadata(&metadata, topic)
}

pub(crate) fn shape_from_metadata(metadata: &Metadata, topic: &str) -> Result<(i32, i32)> {
    let Some(entry) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(TopicError::Missing {
            topic: topic.to_string(),
        });
    };
    if let Some(error) = entry.error() {
        let code = RDKafkaErrorCode::from(error);
        return Err(match code {
            RDKafkaErrorCode::UnknownTopicOrPartition => TopicError::Missing {
                topic: topic.to_string(),
            },
            // Kafka answers so for a topic the principal may not Describe, whether or not it
            // exists.
            RDKafkaErrorCode::TopicAuthorizationFailed => TopicError::NotAuthorized {
                denial: acl::not_authorized("Describe", acl::Resource::Topic(topic)),
                during: "reading metadata",
                hint: format!(
                    "{} or an operation that includes it: the sink's data topic needs Write, its \
                     progress topic Read and Write",
                    acl::grant("Describe", acl::Resource::Topic(topic), None)
                ),
            },
            code => TopicError::Refused {
                operation: "reading metadata",
                topic: topic.to_string(),
                code,
                hint: "",
            },
        });
    }
    let partitions = entry.partitions();
    let Some(first) = partitions.iter().min_by_key(|p| p.id()) else {
        return Err(TopicError::NoPartitions {
            topic: topic.to_string(),
        });
    };
    let count = i32::try_from(partitions.len()).expect("a topic has fewer than 2^31 partitions");
    let replicas = i32::try_from(first.replicas().len()).expect("fewer than 2^31 replicas");
    Ok((count, replicas))
}

fn wait_for_topic(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<(i32, i32)> {
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    let mut pause = Duration::from_millis(20);
    loop {
        match topic_shape(admin, topic) {
            Err(TopicError::Missing { .. } | TopicError::NoPartitions { .. })
                if Instant::now() + pause < deadline =>
            {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// Whether the cluster's controller is one of its brokers. DescribeConfigs of a topic goes to
/// the controller; librdkafka's mock cluster names a controller that does not exist, and the
/// request would wait out its whole timeout.
fn controller_reachable(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Result<bool> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, ADMIN_TIMEOUT)
        .map_err(|error| request_failed("reading metadata", topic, &error))?;
    // SAFETY: the handle is the admin client's own and outlives the call, which only reads the
    // metadata cache that the request above filled.
    let controller =
        unsafe { rdkafka::bindings::rd_kafka_controllerid(admin.inner().native_ptr(), 1000) };
    Ok(metadata
        .brokers()
        .iter()
        .any(|broker| broker.id() == controller))
}

fn describe_topic_configs(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<BTreeMap<String, String>> {
    const OPERATION: &str = "describing the configs";
    let options = AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT));
    let results = block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options))
        .map_err(|error| request_failed(OPERATION, topic, &error))?;
    let mut configs = BTreeMap::new();
    for result in results {
        let resource = result.map_err(|code| {
            if acl::is_authorization_failure(code) {
                TopicError::NotAuthorized {
                    denial: acl::not_authorized("DescribeConfigs", acl::Resource::Topic(topic)),
                    during: OPERATION,
                    hint: acl::grant("DescribeConfigs", acl::Resource::Topic(topic), None),
                }
            } else {
                TopicError::Refused {
                    operation: OPERATION,
                    topic: topic.to_string(),
                    code,
                    hint: "",
                }
            }
        })?;
        for entry in resource.entries {
            if let (false, Some(value)) = (entry.is_sensitive, entry.value) {
                configs.insert(entry.name, value);
            }
        }
    }
    Ok(configs)
}

fn request_failed(operation: &'static str, topic: &str, error: &KafkaError) -> TopicError {
    TopicError::Request {
        operation,
        topic: topic.to_string(),
        reason: redacted(error),
    }
}

/// `config` set up for a consumer of `group` that reads committed records to the end of each
/// assigned partition and commits nothing: `read_committed`, end-of-partition events, no
/// automatic commits or stores, no topic creation.
pub fn committed_reader_config(config: &ClientConfig, group: &str) -> ClientConfig {
    let mut reader = config.clone();
    reader
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false")
        // Tansu answers a Fetch that may not wait with nothing at all; a short wait keeps the
        // end-of-partition answer of a caught-up reader quick.
        .set("fetch.wait.max.ms", "100");
    reader
}

/// An assignment of `partitions` of `topic`, each from offset 0 rather than
/// `Offset::Beginning`: Tansu answers the earliest-offset query from its batches' modification
/// times and can name a batch past the log start when producers race. A log that no longer
/// starts at 0 answers out of range, and the reader's `auto.offset.reset` moves to its start.
pub fn from_offset_zero(
    topic: &str,
    partitions: impl IntoIterator<Item = i32>,
) -> std::result::Result<TopicPartitionList, KafkaError> {
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        assignment.add_partition_offset(topic, partition, Offset::Offset(0))?;
    }
    Ok(assignment)
}

/// A librdkafka error as text that never carries an option's value: a rejected option may be a
/// password, and librdkafka repeats the rejected value in its message.
pub fn redacted(error: &KafkaError) -> String {
    match error {
        KafkaError::ClientConfig(_, description, key, value) => {
            let description = if value.is_empty() {
                description.clone()
            } else {
                description.replace(value.as_str(), "<redacted>")
            };
            format!("invalid value for client option {key:?}: {description}")
        }
        other => other.to_string(),
    }
}

/// Runs an admin future to completion on the calling thread. rdkafka is built without an async
/// runtime; its admin futures are completed from librdkafka's own threads, so parking until
/// woken is all they need.
/// Runs a future of rdkafka's admin client to completion on this thread (rdkafka is built
/// without an async runtime here).
pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Unparker(Thread);
    impl Wake for Unparker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unparker(thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_read_as_sentences_about_the_topic() {
        let report = TopicReport {
            topic: "orders".into(),
            created: false,
            partitions: 3,
            replication_factor: 1,
            differences: vec![
                TopicDifference::PartitionCount {
                    requested: 6,
                    actual: 3,
                },
                TopicDifference::Config {
                    name: "retention.ms".into(),
                    requested: "1000".into(),
                    actual: None,
                },
            ],
        };
        assert_eq!(
            report.to_string(),
            "topic orders exists with 3 partitions, replication factor 1; it has 3 partitions, \
             not the 6 requested; it reports no value for retention.ms; \"1000\" was requested"
        );
    }

    #[test]
    fn rejected_option_values_never_reach_the_message() {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1");
        config.set("security.protocol", "hunter2-not-a-protocol");
        let error = config
            .create::<AdminClient<DefaultClientContext>>()
            .err()
            .unwrap();
        assert!(
            error.to_string().contains("hunter2"),
            "librdkafka repeats the value: {error}"
        );
        let text = redacted(&error);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("security.protocol"), "{text}");
    }
}
