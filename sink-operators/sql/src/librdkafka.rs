//! Which librdkafka settings `LIBRDKAFKA OPTIONS (…)` may pass through to a Kafka connection's
//! clients: an allow-list of client-level settings that change how a client reaches and
//! authenticates to the brokers, never how the sink produces. Settings Outflow sets itself are
//! refused with the option (or the part of Outflow) that sets them, so that a connection cannot
//! quietly undo exactly-once delivery, partitioning or topic creation.
//!
//! ```
//! use outflow_sql::librdkafka::{check_setting, is_secret_setting};
//!
//! assert!(check_setting("client.id").is_ok());
//! let refused = check_setting("transactional.id").unwrap_err();
//! assert_eq!(
//!     refused.message,
//!     "LIBRDKAFKA OPTIONS cannot set 'transactional.id': Outflow sets it from the sink's \
//!      TRANSACTIONAL ID PREFIX"
//! );
//! assert!(is_secret_setting("ssl.key.password"));
//! ```

use crate::error::SpecError;

/// The settings a connection may pass through, with what each is for (shown in no message;
/// it documents the choice). Client-level settings only: a connection's options reach its
/// producers, its admin client and its progress readers alike.
pub const ALLOWED: &[(&str, &str)] = &[
    // Identity, seen by the brokers (quotas, logs, Confluent Cloud's client metrics).
    (
        "client.id",
        "the client id the brokers log and apply quotas to",
    ),
    ("client.rack", "the rack, for rack-aware brokers"),
    // Reaching the brokers.
    (
        "client.dns.lookup",
        "use_all_dns_ips or resolve_canonical_bootstrap_servers_only",
    ),
    ("broker.address.family", "any, v4 or v6"),
    (
        "broker.address.ttl",
        "how long resolved addresses are cached",
    ),
    ("socket.timeout.ms", "the timeout of network requests"),
    (
        "socket.connection.setup.timeout.ms",
        "the timeout of a TCP and TLS setup",
    ),
    (
        "socket.keepalive.enable",
        "TCP keep-alives, for load balancers that drop idle connections",
    ),
    ("socket.nagle.disable", "TCP_NODELAY"),
    ("socket.send.buffer.bytes", "the socket's send buffer"),
    ("socket.receive.buffer.bytes", "the socket's receive buffer"),
    (
        "connections.max.idle.ms",
        "closes idle connections before a proxy does",
    ),
    ("reconnect.backoff.ms", "the first reconnect backoff"),
    ("reconnect.backoff.max.ms", "the longest reconnect backoff"),
    ("retry.backoff.ms", "the first retry backoff"),
    ("retry.backoff.max.ms", "the longest retry backoff"),
    ("metadata.max.age.ms", "how old cached metadata may get"),
    (
        "topic.metadata.refresh.interval.ms",
        "librdkafka's own metadata refresh",
    ),
    (
        "api.version.request.timeout.ms",
        "the timeout of the ApiVersions request",
    ),
    ("message.max.bytes", "the largest request the client sends"),
    (
        "receive.message.max.bytes",
        "the largest response the client accepts",
    ),
    // TLS, from files instead of the PEM texts of SSL KEY / SSL CERTIFICATE / SSL CERTIFICATE
    // AUTHORITY (the certificate checks themselves stay on).
    (
        "ssl.ca.location",
        "a CA file or folder, or 'probe' for the system's",
    ),
    ("ssl.certificate.location", "the client certificate's file"),
    ("ssl.key.location", "the client key's file"),
    (
        "ssl.key.password",
        "the passphrase of an encrypted client key (a SECRET)",
    ),
    ("ssl.keystore.location", "a PKCS#12 keystore"),
    (
        "ssl.keystore.password",
        "the keystore's password (a SECRET)",
    ),
    ("ssl.crl.location", "a certificate revocation list"),
    ("ssl.cipher.suites", "the TLS cipher suites"),
    ("ssl.curves.list", "the TLS curves"),
    ("ssl.sigalgs.list", "the TLS signature algorithms"),
    // OAUTHBEARER beyond the client-credentials settings Outflow names.
    (
        "sasl.oauthbearer.extensions",
        "SASL extensions, e.g. Confluent Cloud's logicalCluster and identityPoolId",
    ),
    (
        "sasl.oauthbearer.config",
        "librdkafka's unsecured-token settings, e.g. principal=… (a SECRET)",
    ),
    (
        "enable.sasl.oauthbearer.unsecure.jwt",
        "unsigned tokens made by the client, for development brokers",
    ),
    ("https.ca.location", "the CA of the token endpoint"),
    ("https.ca.pem", "the CA of the token endpoint, as PEM text"),
    // Diagnosis.
    ("debug", "librdkafka's debug contexts, e.g. security,broker"),
];

/// Settings Outflow sets itself, with what sets them.
const OWNED: &[(&str, &str)] = &[
    ("bootstrap.servers", "the connection's BROKER or BROKERS"),
    ("metadata.broker.list", "the connection's BROKER or BROKERS"),
    ("security.protocol", "the connection's SECURITY PROTOCOL"),
    ("sasl.mechanisms", "the connection's SASL MECHANISMS"),
    ("sasl.mechanism", "the connection's SASL MECHANISMS"),
    ("sasl.username", "the connection's SASL USERNAME"),
    ("sasl.password", "the connection's SASL PASSWORD"),
    ("ssl.key.pem", "the connection's SSL KEY"),
    ("ssl.certificate.pem", "the connection's SSL CERTIFICATE"),
    ("ssl.ca.pem", "the connection's SSL CERTIFICATE AUTHORITY"),
    (
        "sasl.oauthbearer.method",
        "the connection's SASL OAUTHBEARER TOKEN ENDPOINT (which selects oidc)",
    ),
    (
        "sasl.oauthbearer.token.endpoint.url",
        "the connection's SASL OAUTHBEARER TOKEN ENDPOINT",
    ),
    (
        "sasl.oauthbearer.client.id",
        "the connection's SASL OAUTHBEARER CLIENT ID",
    ),
    (
        "sasl.oauthbearer.client.secret",
        "the connection's SASL OAUTHBEARER CLIENT SECRET",
    ),
    (
        "sasl.oauthbearer.scope",
        "the connection's SASL OAUTHBEARER SCOPE",
    ),
    ("transactional.id", "the sink's TRANSACTIONAL ID PREFIX"),
    (
        "transaction.timeout.ms",
        "the sink's commit cadence (SinkPlan::cadence)",
    ),
    ("enable.idempotence", "the sink's DELIVERY GUARANTEE"),
    ("acks", "the sink's DELIVERY GUARANTEE"),
    ("request.required.acks", "the sink's DELIVERY GUARANTEE"),
    ("compression.type", "the sink's COMPRESSION TYPE"),
    ("compression.codec", "the sink's COMPRESSION TYPE"),
    (
        "partitioner",
        "the sink's PARTITION BY (or the key's murmur2 hash)",
    ),
    ("group.id", "the sink's PROGRESS GROUP ID PREFIX"),
    (
        "isolation.level",
        "Outflow's recovery, which reads progress read_committed",
    ),
    (
        "enable.auto.commit",
        "Outflow's recovery, which commits no consumer offsets",
    ),
    (
        "allow.auto.create.topics",
        "Outflow, which creates topics only as TOPIC PARTITION COUNT, TOPIC REPLICATION FACTOR \
         and TOPIC CONFIG say",
    ),
    (
        "linger.ms",
        "the sink's producer (its batching is part of the commit cadence)",
    ),
    (
        "queue.buffering.max.ms",
        "the sink's producer (its batching is part of the commit cadence)",
    ),
    ("batch.size", "the sink's producer"),
    ("batch.num.messages", "the sink's producer"),
    (
        "queue.buffering.max.kbytes",
        "the sink's producer (its queue bound keeps memory bounded)",
    ),
    (
        "queue.buffering.max.messages",
        "the sink's producer (its queue bound keeps memory bounded)",
    ),
    (
        "max.in.flight.requests.per.connection",
        "the sink's producer (idempotence bounds it)",
    ),
    (
        "max.in.flight",
        "the sink's producer (idempotence bounds it)",
    ),
    ("message.timeout.ms", "the sink's producer"),
    ("delivery.timeout.ms", "the sink's producer"),
    ("statistics.interval.ms", "Outflow's statistics"),
];

/// Settings whose values are passwords, keys or tokens: they must be given as `SECRET name`.
const SECRET: &[&str] = &[
    "ssl.key.password",
    "ssl.keystore.password",
    "sasl.oauthbearer.config",
];

/// Whether `key` holds a secret and must therefore be given as `SECRET name`.
pub fn is_secret_setting(key: &str) -> bool {
    SECRET.contains(&key)
}

/// Whether `LIBRDKAFKA OPTIONS` may set `key`; an error names the key and, for a setting
/// Outflow sets itself, the option that does.
pub fn check_setting(key: &str) -> Result<(), SpecError> {
    if ALLOWED.iter().any(|(allowed, _)| *allowed == key) {
        return Ok(());
    }
    if let Some((_, owner)) = OWNED.iter().find(|(owned, _)| *owned == key) {
        return Err(SpecError::new(format!(
            "LIBRDKAFKA OPTIONS cannot set '{key}': Outflow sets it from {owner}"
        )));
    }
    let allowed: Vec<&str> = ALLOWED.iter().map(|(name, _)| *name).collect();
    Err(SpecError::new(format!(
        "LIBRDKAFKA OPTIONS cannot set '{key}': it is not one of the settings a connection may pass through"
    ))
    .hint(format!("the settings are {}", allowed.join(", "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_setting_is_both_allowed_and_owned() {
        for (key, _) in ALLOWED {
            assert!(!OWNED.iter().any(|(owned, _)| owned == key), "{key}");
        }
        for key in SECRET {
            assert!(ALLOWED.iter().any(|(allowed, _)| allowed == key), "{key}");
        }
    }

    #[test]
    fn refusals_name_the_key_and_what_sets_it() {
        let error = check_setting("enable.idempotence").unwrap_err();
        assert_eq!(
            error.message,
            "LIBRDKAFKA OPTIONS cannot set 'enable.idempotence': Outflow sets it from the sink's \
             DELIVERY GUARANTEE"
        );
        let error = check_setting("bootstrap.servers").unwrap_err();
        assert!(error.message.contains("BROKER or BROKERS"), "{error}");
        let error = check_setting("sasl.oauthbearer.client.secret").unwrap_err();
        assert!(
            error.message.contains("SASL OAUTHBEARER CLIENT SECRET"),
            "{error}"
        );
        let error = check_setting("enable.ssl.certificate.verification").unwrap_err();
        assert_eq!(
            error.message,
            "LIBRDKAFKA OPTIONS cannot set 'enable.ssl.certificate.verification': it is not one of \
             the settings a connection may pass through"
        );
        assert!(error.hint.unwrap().contains("client.id"));
    }
}
