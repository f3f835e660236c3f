//! The blocking admin work a sink does once per process, before its dataflow is built: the
//! connection check, the data and progress topics, and the Avro schemas.

use std::sync::Arc;

use super::{SinkError, SinkPlan};
use crate::encoders::{SchemaRegistryClient, SinkEncoder};
use crate::producer::DeliveryMode;
use crate::status::{SinkMonitor, SinkStatus};
use crate::topic::{ensure_data_topic, ensure_progress_topic, PartitionWatch};

/// A sink whose broker-side preparations are done: what `sink_kafka` renders on each worker.
/// Cheap to clone into every worker of a process (`timely::execute`'s closure); the workers of
/// one process share its partition watch and its monitor.
#[derive(Clone)]
pub struct PreparedSink {
    pub(crate) plan: SinkPlan,
    pub(crate) encoder: SinkEncoder,
    pub(crate) partitions: Arc<PartitionWatch>,
    monitor: SinkMonitor,
}

impl std::fmt::Debug for PreparedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedSink")
            .field("sink", &self.plan.spec.name)
            .field("partitions", &self.partitions.current())
            .finish_non_exhaustive()
    }
}

impl PreparedSink {
    /// Where the workers of this process report the sink's status and statistics; the same
    /// monitor is on every worker's [`SinkHandle`](super::SinkHandle).
    pub fn monitor(&self) -> &SinkMonitor {
        &self.monitor
    }

    pub fn plan(&self) -> &SinkPlan {
        &self.plan
    }
}

impl SinkPlan {
    /// Does what must talk to the broker and the registry before the sink's operators exist,
    /// and fails fast with the user's mistakes, naming the connection: checks the connection (a
    /// wrong address, certificate or password), creates or checks the data topic (differences
    /// of an existing topic become notes in the status) and the progress topic, starts the
    /// partition count's refresh, and registers the Avro schemas. Blocking; call it once per
    /// process, outside the dataflow.
    pub fn preflight(&self) -> Result<PreparedSink, SinkError> {
        self.preflight_with(SinkMonitor::new(self.spec.name.clone()))
    }

    /// [`SinkPlan::preflight`], reporting to `monitor` (which becomes the prepared sink's): a
    /// failure is recorded there as the sink's `failed` status, so that a status file or
    /// metrics endpoint started before shows it.
    pub fn preflight_with(&self, monitor: SinkMonitor) -> Result<PreparedSink, SinkError> {
        monitor.set_at_least_once(self.delivery_mode() == DeliveryMode::AtLeastOnce);
        tracing::info!(
            sink = %self.spec.name,
            topic = %self.spec.topic,
            delivery = ?self.spec.delivery,
            "starting: checking the connection, topics and schemas"
        );
        self.prepare(monitor.clone()).inspect_err(|error| {
            monitor.set_status(
                0,
                SinkStatus::Failed {
                    error: error.to_string(),
                },
            );
        })
    }

    fn prepare(&self, monitor: SinkMonitor) -> Result<PreparedSink, SinkError> {
        let spec = &self.spec;
        let client = self.connection.client_config();
        let cadence = &self.cadence;
        if cadence.commit_interval.saturating_mul(2) > cadence.transaction_timeout {
            return Err(SinkError::CommitIntervalTooLong {
                sink: spec.name.clone(),
                commit_interval_ms: cadence.commit_interval.as_millis(),
                transaction_timeout_ms: cadence.transaction_timeout.as_millis(),
            });
        }

        self.connection.check()?;
        let report = ensure_data_topic(client, &self.topic_settings())?;
        if !report.differences.is_empty() {
            tracing::warn!(sink = %spec.name, "{report}");
            monitor.note(report.to_string());
        }
        // Partitions added to the topic while the sink runs are used from the next refresh on;
        // the refresh runs on a thread of its own so that a slow broker never holds up a worker.
        let partitions = {
            let monitor = monitor.clone();
            let topic_name = spec.topic.clone();
            PartitionWatch::start(
                client,
                &spec.topic,
                report.partitions,
                spec.topic_metadata_refresh_interval,
                Box::new(move |old, new| {
                    monitor.note(format!(
                        "topic {topic_name} went from {old} to {new} partitions"
                    ));
                }),
            )?
        };
        let progress = ensure_progress_topic(
            client,
            &self.connection.progress_topic,
            self.connection.progress_topic_replication_factor,
        )?;
        if !progress.differences.is_empty() {
            tracing::warn!(sink = %spec.name, "{progress}");
            monitor.note(progress.to_string());
        }
        let registry = self
            .registry
            .clone()
            .map(SchemaRegistryClient::new)
            .transpose()?;
        let encoder = SinkEncoder::new(self.encoder_config(), registry.as_ref())?;
        tracing::info!(
            sink = %spec.name,
            topic = %spec.topic,
            partitions = report.partitions,
            "sink prepared"
        );
        Ok(PreparedSink {
            plan: self.clone(),
            encoder,
            partitions: Arc::new(partitions),
            monitor,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::statement::Catalog;
    use crate::{SinkError, SinkPlan};

    #[test]
    fn a_commit_interval_the_transaction_timeout_would_cut_short_is_refused_before_any_io() {
        // Nothing listens on port 9; the cadence is checked before the connection.
        let catalog = Catalog::from_sql(
            "CREATE CONNECTION k TO KAFKA (BROKER '127.0.0.1:9', SECURITY PROTOCOL PLAINTEXT);
             CREATE TABLE t (id bigint PRIMARY KEY);
             CREATE SINK s FROM t INTO KAFKA CONNECTION k (TOPIC 't') KEY (id) FORMAT JSON ENVELOPE UPSERT;",
        )
        .unwrap();
        let mut plan = SinkPlan::from_catalog(&catalog, "s").unwrap();
        plan.cadence.commit_interval = Duration::from_secs(40);
        let error = plan.preflight().unwrap_err();
        assert!(
            matches!(error, SinkError::CommitIntervalTooLong { .. }),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "sink \"s\": the commit interval (40000 ms) must be below half the transaction timeout \
             (60000 ms), or the broker aborts transactions before they commit: shorten the commit \
             interval or lengthen the transaction timeout"
        );
    }
}
