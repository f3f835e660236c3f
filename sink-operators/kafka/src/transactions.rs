//! A sink's transactional ids as the transaction coordinators see them: which exist, their
//! state, epoch and open time (ListTransactions, DescribeTransactions), and ending the ones a
//! dead process left open (fencing them with `init_transactions`).
//!
//! A producer killed inside a transaction leaves it open until the broker times it out
//! (`transaction.timeout.ms`); until then every `read_committed` reader of the partitions it
//! wrote stops at its first offset (the last stable offset). The ids of a sink are
//! `{TRANSACTIONAL ID PREFIX}{sink}-{worker}`: those of every worker count a run ever had, read
//! from the progress records (a record names its run's worker count), and those the brokers'
//! ListTransactions reports under the sink's pattern (a run that died before its first commit
//! left no record).
//!
//! The Kafka requests are spoken directly (the `kafka-protocol` crate, as [`crate::rawlog`]),
//! over plain TCP or TLS, so listing needs a `PLAINTEXT` or `SSL` connection (SASL is not
//! spoken); fencing goes through librdkafka and works on any. ListTransactions, FindCoordinator and DescribeTransactions need
//! Describe on each TransactionalId (Write includes it); a principal without it sees no ids in
//! ListTransactions, and DescribeTransactions refuses each by name.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::{
    DescribeTransactionsRequest, FindCoordinatorRequest, ListTransactionsRequest, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use outflow_protocol::{ProgressScan, ProtocolError, SinkNames};
use serde::Serialize;

use crate::acl;
use crate::progress_reader::{fence, ProgressReadError};
use crate::rawlog::{self, Connection, RawLogError, Security};
use crate::sink::SinkPlan;
use crate::spec::DeliveryGuarantee;

/// FindCoordinator's key type of a transactional id.
const COORDINATOR_TRANSACTION: i8 = 1;
/// FindCoordinator 4 looks up several keys at once.
const FIND_COORDINATOR_BATCHED: i16 = 4;
const FIND_COORDINATOR_MAX: i16 = 6;
/// Version 2 filters by a transactional id pattern on the broker.
const LIST_TRANSACTIONS_MAX: i16 = 2;
const LIST_TRANSACTIONS_PATTERN: i16 = 2;

/// Why a sink's transactions could not be listed or aborted.
#[derive(Debug, thiserror::Error)]
pub enum TransactionsError {
    #[error(
        "sink \"{sink}\": cannot list transactions over connection \"{connection}\": {message}"
    )]
    Connection {
        sink: String,
        connection: String,
        message: String,
    },
    #[error("sink \"{sink}\": {source}")]
    RawLog { sink: String, source: RawLogError },
    #[error("sink \"{sink}\": progress topic {topic}: {source}")]
    Progress {
        sink: String,
        topic: String,
        source: Box<ProtocolError>,
    },
    #[error("sink \"{sink}\": {api} for TransactionalId '{transactional_id}': {message}")]
    Refused {
        sink: String,
        api: &'static str,
        transactional_id: String,
        message: String,
    },
    #[error("sink \"{sink}\": {api} answered {error:?} (code {})", error.code())]
    Broker {
        sink: String,
        api: &'static str,
        error: ResponseError,
    },
    #[error(
        "sink \"{sink}\": broker {address} does not answer DescribeTransactions (Kafka 3.0 and \
         later do), so its transactions cannot be listed"
    )]
    Unsupported { sink: String, address: String },
    #[error("sink \"{sink}\": {source}")]
    Fence {
        sink: String,
        source: ProgressReadError,
    },
}

/// Where a transactional id of the sink was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FoundIn {
    /// A progress record names the worker, or a run with that many workers.
    ProgressTopic,
    /// Only the brokers' ListTransactions reports it.
    Broker,
}

/// One transactional id of a sink, as its coordinator describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransactionalIdState {
    pub transactional_id: String,
    pub worker: u32,
    pub found_in: FoundIn,
    /// Kafka's name of the state: `Empty`, `Ongoing`, `PrepareCommit`, `PrepareAbort`,
    /// `CompleteCommit`, `CompleteAbort`, `Dead`, `PrepareEpochFence`; `None` when the
    /// coordinator does not know the id (never initialized, or expired after
    /// `transactional.id.expiration.ms`).
    pub state: Option<String>,
    pub producer_id: Option<i64>,
    pub producer_epoch: Option<i16>,
    /// The transaction timeout the producer asked for.
    pub transaction_timeout_ms: Option<i32>,
    /// When the open transaction began at the coordinator (its first partition added), in
    /// milliseconds since the Unix epoch; `None` when none is open.
    pub transaction_started_at_ms: Option<i64>,
    /// The partitions the open transaction wrote to, as `topic[p, …]`.
    pub partitions: Vec<String>,
}

impl TransactionalIdState {
    /// Whether a transaction of this id is open: it holds `read_committed` readers back.
    pub fn is_open(&self) -> bool {
        self.state.as_deref().is_some_and(is_open_state)
    }

    /// Whether the open transaction can only end by an abort or the broker's timeout: `Ongoing`.
    /// (The `Prepare…` states end by themselves.)
    pub fn is_hanging(&self) -> bool {
        self.state.as_deref() == Some("Ongoing")
    }
}

/// The transactional ids of the sink `plan` describes, in worker order, each as its coordinator
/// describes it. Reads the progress topic raw (records of every outcome, since an aborted
/// run's workers had ids too) and asks every broker for ListTransactions; touches nothing.
///
/// An at-least-once sink has no transactions: its list is empty.
pub fn list(plan: &SinkPlan) -> Result<Vec<TransactionalIdState>, TransactionsError> {
    let sink = plan.spec.name.clone();
    if plan.spec.delivery == DeliveryGuarantee::AtLeastOnce {
        return Ok(Vec::new());
    }
    let connection_error = |message: String| TransactionsError::Connection {
        sink: sink.clone(),
        connection: plan.spec.connection.clone(),
        message,
    };
    let config = plan.connection.client_config();
    let security = Security::of(config).map_err(connection_error)?;
    let bootstrap = config
        .get("bootstrap.servers")
        .and_then(|servers| servers.split(',').map(str::trim).find(|s| !s.is_empty()))
        .ok_or_else(|| connection_error("it names no broker".to_string()))?
        .to_string();
    let raw = |source| TransactionsError::RawLog {
        sink: sink.clone(),
        source,
    };
    let names = SinkNames::new(
        plan.spec.name.clone(),
        plan.spec.transactional_id_prefix.clone(),
        plan.spec.progress_group_id_prefix.clone(),
    );

    let mut workers: BTreeMap<u32, FoundIn> =
        progress_workers(plan, &names, &bootstrap, &security)?
            .into_iter()
            .map(|w| (w, FoundIn::ProgressTopic))
            .collect();

    let mut bootstrap_connection = Connection::open_with(&bootstrap, &security).map_err(raw)?;
    let brokers = bootstrap_connection.brokers().map_err(raw)?;
    let id_prefix = format!("{}{}-", names.transactional_id_prefix, names.sink_id);
    for address in brokers.values() {
        let mut connection = Connection::open_with(address, &security).map_err(raw)?;
        for id in list_on(&mut connection, &id_prefix, &sink)? {
            if let Some(worker) = worker_of_id(&id_prefix, &id) {
                workers.entry(worker).or_insert(FoundIn::Broker);
            }
        }
    }

    let ids: Vec<String> = workers.keys().map(|&w| names.transactional_id(w)).collect();
    let described = describe(
        &mut bootstrap_connection,
        &security,
        &brokers,
        &ids,
        &names,
        &sink,
    )?;
    Ok(workers
        .into_iter()
        .map(|(worker, found_in)| {
            let transactional_id = names.transactional_id(worker);
            match described.get(&transactional_id) {
                Some(state) => TransactionalIdState {
                    worker,
                    found_in,
                    ..state.clone()
                },
                None => TransactionalIdState {
                    transactional_id,
                    worker,
                    found_in,
                    state: None,
                    producer_id: None,
                    producer_epoch: None,
                    transaction_timeout_ms: None,
                    transaction_started_at_ms: None,
                    partitions: Vec::new(),
                },
            }
        })
        .collect())
}

/// Fences `transactional_id` with `init_transactions` on the sink's connection: its epoch is
/// bumped, so the previous holder can neither produce nor commit, and its open transaction is
/// aborted. Blocks until the coordinator has written the abort markers.
pub fn abort(plan: &SinkPlan, transactional_id: &str) -> Result<(), TransactionsError> {
    fence(plan.connection.client_config(), transactional_id).map_err(|source| {
        TransactionsError::Fence {
            sink: plan.spec.name.clone(),
            source,
        }
    })
}

/// Whether a coordinator's state names an open transaction.
fn is_open_state(state: &str) -> bool {
    matches!(
        state,
        "Ongoing" | "PrepareCommit" | "PrepareAbort" | "PrepareEpochFence"
    )
}

/// The worker of `id` when it is `{id_prefix}{digits}`.
fn worker_of_id(id_prefix: &str, id: &str) -> Option<u32> {
    let digits = id.strip_prefix(id_prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The worker indexes the progress topic shows the sink used, from records of every outcome.
fn progress_workers(
    plan: &SinkPlan,
    names: &SinkNames,
    bootstrap: &str,
    security: &Security,
) -> Result<BTreeSet<u32>, TransactionsError> {
    let topic = &plan.connection.progress_topic;
    let log = match rawlog::read_topic_with(bootstrap, topic, security) {
        Ok(log) => log,
        // No sink of the connection ever ran.
        Err(RawLogError::UnknownTopic { .. }) => return Ok(BTreeSet::new()),
        Err(source) => {
            return Err(TransactionsError::RawLog {
                sink: plan.spec.name.clone(),
                source,
            })
        }
    };
    let mut scan = ProgressScan::new(names);
    for record in log.raw() {
        if let Some(key) = &record.record.key {
            scan.push(key, record.record.value.as_deref())
                .map_err(|source| TransactionsError::Progress {
                    sink: plan.spec.name.clone(),
                    topic: topic.clone(),
                    source: Box::new(source),
                })?;
        }
    }
    Ok(scan.workers_used())
}

/// The transactional ids one broker coordinates that start with `id_prefix`.
fn list_on(
    connection: &mut Connection,
    id_prefix: &str,
    sink: &str,
) -> Result<Vec<String>, TransactionsError> {
    let raw = |source| TransactionsError::RawLog {
        sink: sink.to_string(),
        source,
    };
    let version = match connection
        .version::<ListTransactionsRequest>("ListTransactions", LIST_TRANSACTIONS_MAX)
    {
        Ok(version) => version,
        // Brokers before Kafka 3.0 (KIP-664) cannot list; the progress topic still names
        // every worker that committed.
        Err(RawLogError::UnsupportedVersion { .. }) => return Ok(Vec::new()),
        Err(error) => return Err(raw(error)),
    };
    let mut request = ListTransactionsRequest::default().with_duration_filter(-1);
    if version >= LIST_TRANSACTIONS_PATTERN {
        request = request.with_transactional_id_pattern(Some(StrBytes::from_string(format!(
            "^{}[0-9]+$",
            java_regex_quote(id_prefix)
        ))));
    }
    let response = connection
        .call(&request, version, "ListTransactions")
        .map_err(raw)?;
    if let Some(error) = ResponseError::try_from_code(response.error_code) {
        return Err(TransactionsError::Broker {
            sink: sink.to_string(),
            api: "ListTransactions",
            error,
        });
    }
    Ok(response
        .transaction_states
        .iter()
        .map(|t| t.transactional_id.0.to_string())
        .filter(|id| id.starts_with(id_prefix))
        .collect())
}

/// `text` as a Java regular expression that matches it literally.
fn java_regex_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted
}

/// Each of `ids` that its coordinator knows, as DescribeTransactions answers.
fn describe(
    bootstrap: &mut Connection,
    security: &Security,
    brokers: &BTreeMap<i32, String>,
    ids: &[String],
    names: &SinkNames,
    sink: &str,
) -> Result<BTreeMap<String, TransactionalIdState>, TransactionsError> {
    let raw = |source| TransactionsError::RawLog {
        sink: sink.to_string(),
        source,
    };
    let refused = |api, id: &str, code: i16| {
        let message = match ResponseError::try_from_code(code) {
            Some(ResponseError::TransactionalIdAuthorizationFailed) => describe_denial(id, names),
            Some(error) => format!("{error:?} (code {code})"),
            None => format!("error code {code}"),
        };
        TransactionsError::Refused {
            sink: sink.to_string(),
            api,
            transactional_id: id.to_string(),
            message,
        }
    };
    let mut by_coordinator: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in ids {
        let coordinator = find_coordinator(bootstrap, brokers, id)
            .map_err(raw)?
            .map_err(|code| refused("FindCoordinator", id, code))?;
        by_coordinator
            .entry(coordinator)
            .or_default()
            .push(id.clone());
    }
    let mut described = BTreeMap::new();
    for (address, ids) in by_coordinator {
        let mut connection = Connection::open_with(&address, security).map_err(raw)?;
        let version = connection
            .version::<DescribeTransactionsRequest>("DescribeTransactions", 0)
            .map_err(|error| match error {
                RawLogError::UnsupportedVersion { address, .. } => TransactionsError::Unsupported {
                    sink: sink.to_string(),
                    address,
                },
                other => raw(other),
            })?;
        let request = DescribeTransactionsRequest::default().with_transactional_ids(
            ids.iter()
                .map(|id| TransactionalId(StrBytes::from_string(id.clone())))
                .collect(),
        );
        let response = connection
            .call(&request, version, "DescribeTransactions")
            .map_err(raw)?;
        for state in response.transaction_states {
            let id = state.transactional_id.0.to_string();
            match ResponseError::try_from_code(state.error_code) {
                None => {}
                Some(ResponseError::TransactionalIdNotFound) => continue,
                Some(_) => return Err(refused("DescribeTransactions", &id, state.error_code)),
            }
            let open = state.transaction_start_time_ms >= 0
                && is_open_state(state.transaction_state.as_str());
            described.insert(
                id.clone(),
                TransactionalIdState {
                    transactional_id: id,
                    worker: 0,
                    found_in: FoundIn::ProgressTopic,
                    state: Some(state.transaction_state.to_string()),
                    producer_id: Some(state.producer_id.0),
                    producer_epoch: Some(state.producer_epoch),
                    transaction_timeout_ms: Some(state.transaction_timeout_ms),
                    transaction_started_at_ms: open.then_some(state.transaction_start_time_ms),
                    partitions: state
                        .topics
                        .iter()
                        .map(|t| {
                            let partitions: Vec<String> =
                                t.partitions.iter().map(i32::to_string).collect();
                            format!("{}[{}]", t.topic.0.as_str(), partitions.join(", "))
                        })
                        .collect(),
                },
            );
        }
    }
    Ok(described)
}

/// The address of the coordinator of `id`, or the error code the broker answered.
fn find_coordinator(
    connection: &mut Connection,
    brokers: &BTreeMap<i32, String>,
    id: &str,
) -> Result<Result<String, i16>, RawLogError> {
    let version =
        connection.version::<FindCoordinatorRequest>("FindCoordinator", FIND_COORDINATOR_MAX)?;
    let mut request = FindCoordinatorRequest::default().with_key_type(COORDINATOR_TRANSACTION);
    if version >= FIND_COORDINATOR_BATCHED {
        request = request.with_coordinator_keys(vec![StrBytes::from_string(id.to_string())]);
    } else {
        request = request.with_key(StrBytes::from_string(id.to_string()));
    }
    // A coordinator still loading its partition of the transaction log answers so for a while.
    for _ in 0..50 {
        let response = connection.call(&request, version, "FindCoordinator")?;
        let (code, node, host, port) = match response.coordinators.first() {
            Some(c) if version >= FIND_COORDINATOR_BATCHED => {
                (c.error_code, c.node_id.0, c.host.to_string(), c.port)
            }
            _ => (
                response.error_code,
                response.node_id.0,
                response.host.to_string(),
                response.port,
            ),
        };
        match ResponseError::try_from_code(code) {
            None => {
                return Ok(Ok(brokers
                    .get(&node)
                    .cloned()
                    .unwrap_or_else(|| format!("{host}:{port}"))))
            }
            Some(
                ResponseError::CoordinatorLoadInProgress | ResponseError::CoordinatorNotAvailable,
            ) => std::thread::sleep(std::time::Duration::from_millis(100)),
            Some(_) => return Ok(Err(code)),
        }
    }
    Err(connection.protocol_error(
        "FindCoordinator",
        format!("no coordinator of TransactionalId '{id}' became available"),
    ))
}

/// What a principal without Describe on a sink's transactional ids is told.
pub fn describe_denial(transactional_id: &str, names: &SinkNames) -> String {
    format!(
        "{}; grant Describe on TransactionalId prefix '{}' (pattern type PREFIXED), or Write, \
         which includes it and which the sink itself needs",
        acl::not_authorized("Describe", acl::Resource::TransactionalId(transactional_id)),
        names.transactional_id_prefix
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_the_sink_are_its_prefix_and_a_worker_number() {
        assert_eq!(worker_of_id("outflow-s-", "outflow-s-12"), Some(12));
        assert_eq!(worker_of_id("outflow-s-", "outflow-s-"), None);
        assert_eq!(worker_of_id("outflow-s-", "outflow-s-1-2"), None);
        assert_eq!(worker_of_id("outflow-s-", "outflow-sx-1"), None);
        assert_eq!(java_regex_quote("a.b-c$"), "a\\.b-c\\$");
    }

    #[test]
    fn a_refused_describe_names_the_id_and_the_acl() {
        let names = SinkNames::new("orders", "app-", "app-");
        assert_eq!(
            describe_denial("app-orders-0", &names),
            "not authorized to Describe TransactionalId 'app-orders-0'; grant Describe on \
             TransactionalId prefix 'app-' (pattern type PREFIXED), or Write, which includes it \
             and which the sink itself needs"
        );
    }
}
