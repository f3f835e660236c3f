//! The broker a test body runs against, for suites whose bodies run on both: Apache Kafka (the
//! reference: its `read_committed` is trusted, topics are read by a librdkafka consumer) and
//! Tansu (its `read_committed` shows aborted records: the sink recovers from the raw log of its
//! progress topic, and topics are read by the raw-log reader, which applies the control
//! batches itself).
//!
//! Each target is the shared broker of the test process ([`Kafka::shared`],
//! [`crate::broker::shared_broker`]), so bodies name their topics with
//! [`crate::broker::unique_name`].

use std::collections::BTreeMap;
use std::time::Duration;

use outflow::SinkPlan;
use rdkafka::config::ClientConfig;

use crate::broker::shared_broker;
use crate::committed;
use crate::kafka::Kafka;
use crate::rawlog::{self, LogRecord};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Apache Kafka ([`Kafka::shared`]).
    Kafka,
    /// Tansu ([`shared_broker`]).
    Tansu,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Kafka => "Apache Kafka",
            Target::Tansu => "Tansu",
        }
    }

    /// The plaintext bootstrap address of the shared broker (started on first use).
    pub fn bootstrap(self) -> String {
        match self {
            Target::Kafka => Kafka::shared().bootstrap(),
            Target::Tansu => shared_broker().bootstrap(),
        }
    }

    /// A librdkafka configuration with `bootstrap.servers` only.
    pub fn client_config(self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap());
        config
    }

    /// Whether the broker's `read_committed` fetches show aborted records (Tansu): the sink is
    /// then told so (`SinkPlan::broker_shows_aborted_records`, `outflow run
    /// --broker-shows-aborted`, `sink_process` without `--broker-hides-aborted`).
    pub fn shows_aborted(self) -> bool {
        self == Target::Tansu
    }

    /// `plan` set up for this broker and for tests: the aborted-records setting, a 50 ms
    /// commit interval and 200 ms idle progress.
    pub fn test_plan(self, mut plan: SinkPlan) -> SinkPlan {
        plan.broker_shows_aborted_records = self.shows_aborted();
        plan.cadence.commit_interval = Duration::from_millis(50);
        plan.cadence.idle_progress_interval = Duration::from_millis(200);
        plan
    }

    /// Every committed record of `topic`, partition by partition in offset order, once the
    /// transactions in flight are decided: Kafka's `read_committed` up to the high watermarks,
    /// or the raw log with the control batches applied.
    pub fn read_committed(self, topic: &str) -> Vec<LogRecord> {
        match self {
            Target::Kafka => committed::read_committed(&self.bootstrap(), topic),
            Target::Tansu => {
                rawlog::read_committed(&self.bootstrap(), topic).map_err(|e| e.to_string())
            }
        }
        .unwrap_or_else(|e| panic!("reading {topic} on {}: {e}", self.name()))
    }

    /// What a `read_committed` reader sees of `topic` now, without waiting for transactions a
    /// killed producer left open (on Kafka they hold the reader at the last stable offset).
    pub fn read_stable(self, topic: &str) -> Vec<LogRecord> {
        match self {
            Target::Kafka => committed::read_stable(&self.bootstrap(), topic),
            Target::Tansu => {
                rawlog::read_committed(&self.bootstrap(), topic).map_err(|e| e.to_string())
            }
        }
        .unwrap_or_else(|e| panic!("reading {topic} on {}: {e}", self.name()))
    }

    /// Asserts that the committed records of the UPSERT JSON topic `topic` hold `expected`
    /// (per key, its values in order); the panic lists what else the log holds of the keys
    /// that differ. Returns the committed records.
    pub fn assert_topic_holds(
        self,
        topic: &str,
        expected: &BTreeMap<i64, Vec<Option<String>>>,
        context: &str,
    ) -> Vec<LogRecord> {
        let context = format!("{context}, on {}", self.name());
        match self {
            Target::Kafka => {
                committed::assert_topic_holds(&self.bootstrap(), topic, expected, &context)
            }
            Target::Tansu => {
                crate::pipeline::assert_topic_holds(&self.bootstrap(), topic, expected, &context)
            }
        }
    }

    /// The number of partitions of `topic`, from a Metadata request.
    pub fn partition_count(self, topic: &str) -> usize {
        committed::partition_count(&self.bootstrap(), topic)
            .unwrap_or_else(|e| panic!("on {}: {e}", self.name()))
    }

    /// Creates `topic` with replication factor 1 and `configs`.
    pub fn create_topic(self, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
        crate::broker::create_topic(&self.bootstrap(), topic, partitions, configs)
    }

    /// The configs DescribeConfigs reports for `topic` (name → value).
    pub fn describe_configs(self, topic: &str) -> BTreeMap<String, String> {
        rawlog::describe_configs(&self.bootstrap(), topic)
            .unwrap_or_else(|e| panic!("on {}: {e}", self.name()))
    }
}
