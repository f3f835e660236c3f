//! An in-process Kafka broker for demos, examples and benchmarks: librdkafka's mock cluster,
//! with a sink's topics created up front.
//!
//! The mock cluster speaks the Kafka protocol on real loopback ports, so every client of this
//! process (and of others, while it lives) reaches it through [`EmbeddedBroker::bootstrap`].
//! It handles produce, fetch, consumer groups and transactions, which is all a sink needs once
//! its topics exist. Know its limits before trusting what it shows:
//!
//! - no CreateTopics and no DescribeConfigs: [`EmbeddedBroker::prepare`] creates the sink's
//!   data and progress topics itself, without configs (`cleanup.policy` is not applied);
//! - no fencing of zombie producers, and `read_committed` readers see aborted records;
//! - it keeps at most 100,000 messages or 5 MiB per partition, dropping the oldest, so a
//!   demo that reads its topics back must stay below that;
//! - everything lives in memory and ends with the process.
//!
//! ```no_run
//! use outflow::embedded::EmbeddedBroker;
//!
//! let broker = EmbeddedBroker::start().expect("the mock cluster starts");
//! let connection = broker.connection("kafka_connection");
//! broker.create_topic("orders", 3).unwrap();
//! println!("bootstrap.servers={}", broker.bootstrap());
//! # drop(connection);
//! ```

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::connection::KafkaConnection;
use crate::sink::SinkPlan;

/// Partitions of a data topic whose sink leaves `TOPIC PARTITION COUNT` unset, as a broker's
/// `num.partitions` would.
pub const DEFAULT_PARTITIONS: i32 = 3;

/// An in-process broker (librdkafka's mock cluster of one broker). Dropping it stops it.
///
/// Not `Send`: the cluster is owned by the thread that started it, while timely workers and
/// other clients on any thread reach it over loopback.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

/// Why the embedded broker could not start or create a topic.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot start the embedded broker (librdkafka's mock cluster): {0}")]
    Start(KafkaError),
    #[error(
        "the embedded broker cannot create topic {topic} with {partitions} partitions: {error}"
    )]
    CreateTopic {
        topic: String,
        partitions: i32,
        error: KafkaError,
    },
    #[error("topic {topic}: TOPIC PARTITION COUNT {partitions} is not a positive number")]
    Partitions { topic: String, partitions: i32 },
}

impl EmbeddedBroker {
    /// Starts a cluster of one broker on a free loopback port.
    pub fn start() -> Result<EmbeddedBroker, EmbeddedError> {
        let cluster = MockCluster::new(1).map_err(EmbeddedError::Start)?;
        Ok(EmbeddedBroker { cluster })
    }

    /// `bootstrap.servers` for clients of this broker.
    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// A plaintext connection named `name` to this broker, with the default progress topic.
    pub fn connection(&self, name: &str) -> KafkaConnection {
        KafkaConnection::plaintext(name, self.bootstrap())
    }

    /// Creates `topic` with `partitions` partitions; an existing topic is left as it is,
    /// whatever its partition count.
    pub fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), EmbeddedError> {
        if partitions < 1 {
            return Err(EmbeddedError::Partitions {
                topic: topic.to_string(),
                partitions,
            });
        }
        match self.cluster.create_topic(topic, partitions, 1) {
            // Sinks on one connection share its progress topic.
            Ok(()) | Err(KafkaError::MockCluster(RDKafkaErrorCode::TopicAlreadyExists)) => Ok(()),
            Err(error) => Err(EmbeddedError::CreateTopic {
                topic: topic.to_string(),
                partitions,
                error,
            }),
        }
    }

    /// Creates the topics `plan`'s sink writes: its data topic (with `TOPIC PARTITION COUNT`,
    /// else [`DEFAULT_PARTITIONS`]) and its connection's progress topic (one partition). The
    /// sink then finds both and never asks the broker to create or describe them.
    ///
    /// Recovery reads the progress topic as a `read_committed` consumer
    /// (`broker_shows_aborted_records = false`): the mock writes no control batches, so the
    /// raw-log reader that applies them has nothing to apply (and the mock refuses its
    /// ApiVersions request). That is right as long as no transaction on the topic was aborted,
    /// which holds for a broker that starts empty with its process and sees no faults.
    pub fn prepare(&self, plan: &mut SinkPlan) -> Result<(), EmbeddedError> {
        let partitions = plan
            .spec
            .topic_partition_count
            .unwrap_or(DEFAULT_PARTITIONS);
        self.create_topic(&plan.spec.topic, partitions)?;
        self.create_topic(&plan.connection.progress_topic, 1)?;
        plan.broker_shows_aborted_records = false;
        Ok(())
    }
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap", &self.bootstrap())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::{ensure_data_topic, ensure_progress_topic, TopicDifference, TopicSettings};
    use std::time::{Duration, Instant};

    #[test]
    fn topics_made_up_front_are_accepted_by_the_sink_without_admin_requests() {
        let broker = EmbeddedBroker::start().unwrap();
        let connection = broker.connection("k");
        broker.create_topic("data", 4).unwrap();
        broker.create_topic(&connection.progress_topic, 1).unwrap();
        let started = Instant::now();
        let mut settings = TopicSettings::new("data");
        settings.partitions = Some(4);
        let data = ensure_data_topic(connection.client_config(), &settings).unwrap();
        assert!(!data.created);
        assert_eq!(data.partitions, 4);
        assert!(data.differences.is_empty(), "{data}");
        let progress =
            ensure_progress_topic(connection.client_config(), &connection.progress_topic, None)
                .unwrap();
        assert_eq!(progress.partitions, 1);
        // The compaction it asks for cannot be checked on the mock: a note, not an error.
        assert_eq!(
            progress.differences,
            vec![TopicDifference::ConfigsNotDescribed]
        );
        // Without CreateTopics or DescribeConfigs requests, nothing waits for an admin timeout.
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn creating_a_topic_twice_keeps_the_first() {
        let broker = EmbeddedBroker::start().unwrap();
        broker.create_topic("shared", 1).unwrap();
        broker.create_topic("shared", 5).unwrap();
        let connection = broker.connection("k");
        assert_eq!(
            crate::topic::partition_count(connection.client_config(), "shared").unwrap(),
            1
        );
    }

    #[test]
    fn a_partition_count_below_one_names_the_topic() {
        let broker = EmbeddedBroker::start().unwrap();
        let error = broker.create_topic("orders", 0).unwrap_err();
        assert_eq!(
            error.to_string(),
            "topic orders: TOPIC PARTITION COUNT 0 is not a positive number"
        );
    }
}
