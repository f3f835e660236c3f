//! Kafka's authorization refusals in the user's terms: which operation on which resource the
//! broker refused, and which ACL of the README's table grants it.
//!
//! Kafka answers a refused request with a bare code (`TOPIC_AUTHORIZATION_FAILED`, …) that
//! names neither the operation nor the resource; the sink knows both from the request it made,
//! so each place that meets such a code says them.

use std::fmt;

use rdkafka::types::RDKafkaErrorCode;

/// A resource an ACL applies to, with the exact name the sink used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource<'a> {
    Topic(&'a str),
    Group(&'a str),
    TransactionalId(&'a str),
    Cluster,
}

impl fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Topic(name) => write!(f, "topic '{name}'"),
            Resource::Group(name) => write!(f, "group '{name}'"),
            Resource::TransactionalId(name) => write!(f, "TransactionalId '{name}'"),
            Resource::Cluster => write!(f, "the cluster"),
        }
    }
}

/// Whether `code` is one of Kafka's authorization refusals.
pub fn is_authorization_failure(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
    )
}

/// "not authorized to Write to topic 'orders'", "not authorized to Read group 'outflow-s-0'":
/// `operation` is Kafka's name for it (`Read`, `Write`, `Create`, `Describe`, …).
pub fn not_authorized(operation: &str, resource: Resource<'_>) -> String {
    let preposition = match (operation, resource) {
        ("Write", _) => " to",
        (_, Resource::Cluster) => " on",
        _ => "",
    };
    format!("not authorized to {operation}{preposition} {resource}")
}

/// The ACL that grants what a sink needs of `resource`, for the end of a message:
/// "grant Write on TransactionalId prefix 'outflow-' (pattern type PREFIXED)".
pub fn grant(operation: &str, resource: Resource<'_>, prefix: Option<&str>) -> String {
    match (resource, prefix) {
        (Resource::Group(_), Some(prefix)) => {
            format!("grant {operation} on Group prefix '{prefix}' (pattern type PREFIXED)")
        }
        (Resource::TransactionalId(_), Some(prefix)) => format!(
            "grant {operation} on TransactionalId prefix '{prefix}' (pattern type PREFIXED)"
        ),
        (resource, _) => format!("grant {operation} on {resource}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_sentences() {
        assert_eq!(
            not_authorized("Write", Resource::Topic("orders")),
            "not authorized to Write to topic 'orders'"
        );
        assert_eq!(
            not_authorized("Read", Resource::Group("outflow-s-0")),
            "not authorized to Read group 'outflow-s-0'"
        );
        assert_eq!(
            not_authorized("DescribeConfigs", Resource::Cluster),
            "not authorized to DescribeConfigs on the cluster"
        );
        assert_eq!(
            grant(
                "Write",
                Resource::TransactionalId("outflow-s-0"),
                Some("outflow-")
            ),
            "grant Write on TransactionalId prefix 'outflow-' (pattern type PREFIXED)"
        );
        assert_eq!(
            grant("Create", Resource::Topic("orders"), None),
            "grant Create on topic 'orders'"
        );
    }
}
