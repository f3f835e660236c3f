//! The options each clause of a statement takes, as enums: one table per clause giving each
//! option its canonical name (whose words are its keywords) and the kind of value it takes.
//!
//! The parser reads its option tables from [`OptionName::ALL`], and the planner matches each
//! enum exhaustively, so a new option is a new variant here and the compiler names every place
//! that must handle it.
//!
//! ```
//! use outflow_sql::options::{OptionName, SinkOption, ValueKind};
//!
//! let option = SinkOption::TopicPartitionCount;
//! assert_eq!(option.name(), "TOPIC PARTITION COUNT");
//! assert_eq!(option.words().collect::<Vec<_>>(), ["TOPIC", "PARTITION", "COUNT"]);
//! assert_eq!(option.value_kind(), ValueKind::Int);
//! assert!(SinkOption::ALL.contains(&SinkOption::PartitionBy));
//! ```

use std::fmt;
use std::hash::Hash;

/// The value an option takes, which decides how it is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueKind {
    Str,
    Int,
    /// A string, or `SECRET name`.
    StrOrSecret,
    /// `SECRET name` only.
    Secret,
    /// A bare word or a string, e.g. `gzip` or `'SCRAM-SHA-256'`.
    Word,
    /// `true`/`false`; the value may be left out, meaning true.
    Bool,
    /// `('a', 'b')`.
    StrList,
    /// `MAP['k' => 'v', …]`.
    Map,
    /// `('key' = 'value' | SECRET name, …)`.
    Settings,
    /// A scalar expression.
    Expr,
    /// A string, optionally preceded by `INTERVAL`.
    Interval,
}

/// The options of one clause.
pub trait OptionName: Copy + Eq + Hash + fmt::Debug + fmt::Display + 'static {
    /// Every option of the clause, in the order an error's hint lists them.
    const ALL: &'static [Self];

    /// The canonical spelling, e.g. `TOPIC PARTITION COUNT`, as messages name the option.
    fn name(self) -> &'static str;

    /// The kind of value the option takes.
    fn value_kind(self) -> ValueKind;

    /// The keywords that introduce the option: the words of its name.
    fn words(self) -> impl Iterator<Item = &'static str> {
        self.name().split(' ')
    }
}

/// Defines an option enum from its table: `Variant = "CANONICAL NAME": ValueKind`.
macro_rules! options {
    (
        $(#[$doc:meta])*
        pub enum $enum:ident {
            $($variant:ident = $name:literal: $kind:ident,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $enum {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl OptionName for $enum {
            const ALL: &'static [$enum] = &[$($enum::$variant,)*];

            fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => $name,)*
                }
            }

            fn value_kind(self) -> ValueKind {
                match self {
                    $($enum::$variant => ValueKind::$kind,)*
                }
            }
        }

        impl fmt::Display for $enum {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

options! {
    /// `CREATE CONNECTION … TO KAFKA (…)`.
    pub enum KafkaConnectionOption {
        Broker = "BROKER": Str,
        Brokers = "BROKERS": StrList,
        SecurityProtocol = "SECURITY PROTOCOL": Word,
        SaslMechanisms = "SASL MECHANISMS": Word,
        SaslUsername = "SASL USERNAME": StrOrSecret,
        SaslPassword = "SASL PASSWORD": Secret,
        SaslOauthbearerTokenEndpoint = "SASL OAUTHBEARER TOKEN ENDPOINT": Str,
        SaslOauthbearerClientId = "SASL OAUTHBEARER CLIENT ID": StrOrSecret,
        SaslOauthbearerClientSecret = "SASL OAUTHBEARER CLIENT SECRET": Secret,
        SaslOauthbearerScope = "SASL OAUTHBEARER SCOPE": Str,
        SslKey = "SSL KEY": Secret,
        SslCertificate = "SSL CERTIFICATE": StrOrSecret,
        SslCertificateAuthority = "SSL CERTIFICATE AUTHORITY": StrOrSecret,
        ProgressTopic = "PROGRESS TOPIC": Str,
        ProgressTopicReplicationFactor = "PROGRESS TOPIC REPLICATION FACTOR": Int,
        LibrdkafkaOptions = "LIBRDKAFKA OPTIONS": Settings,
    }
}

options! {
    /// `CREATE CONNECTION … TO CONFLUENT SCHEMA REGISTRY (…)`.
    pub enum RegistryConnectionOption {
        Url = "URL": Str,
        Username = "USERNAME": StrOrSecret,
        Password = "PASSWORD": Secret,
        SslKey = "SSL KEY": Secret,
        SslCertificate = "SSL CERTIFICATE": StrOrSecret,
        SslCertificateAuthority = "SSL CERTIFICATE AUTHORITY": StrOrSecret,
    }
}

options! {
    /// `CREATE SINK … INTO KAFKA CONNECTION c (…)`.
    pub enum SinkOption {
        Topic = "TOPIC": Str,
        TopicPartitionCount = "TOPIC PARTITION COUNT": Int,
        TopicReplicationFactor = "TOPIC REPLICATION FACTOR": Int,
        TopicConfig = "TOPIC CONFIG": Map,
        TopicMetadataRefreshInterval = "TOPIC METADATA REFRESH INTERVAL": Interval,
        PartitionBy = "PARTITION BY": Expr,
        CompressionType = "COMPRESSION TYPE": Word,
        TransactionalIdPrefix = "TRANSACTIONAL ID PREFIX": Str,
        ProgressGroupIdPrefix = "PROGRESS GROUP ID PREFIX": Str,
    }
}

options! {
    /// `FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION c (…)`, besides the
    /// `[KEY | VALUE] DOC ON …` options, which name their target before the `=`.
    pub enum AvroFormatOption {
        KeyCompatibilityLevel = "KEY COMPATIBILITY LEVEL": Word,
        ValueCompatibilityLevel = "VALUE COMPATIBILITY LEVEL": Word,
        KeySubjectNameStrategy = "KEY SUBJECT NAME STRATEGY": Word,
        ValueSubjectNameStrategy = "VALUE SUBJECT NAME STRATEGY": Word,
        AvroKeyFullname = "AVRO KEY FULLNAME": Str,
        AvroValueFullname = "AVRO VALUE FULLNAME": Str,
        NullDefaults = "NULL DEFAULTS": Bool,
    }
}

options! {
    /// `FORMAT JSON (…)`.
    pub enum JsonFormatOption {
        SchemasEnabled = "SCHEMAS ENABLED": Bool,
    }
}

options! {
    /// `ENVELOPE DEBEZIUM (…)`.
    pub enum DebeziumEnvelopeOption {
        Full = "FULL": Bool,
        TombstonesOnDelete = "TOMBSTONES ON DELETE": Bool,
    }
}

options! {
    /// `CREATE SINK … WITH (…)`.
    pub enum SinkWithOption {
        Snapshot = "SNAPSHOT": Bool,
        DeliveryGuarantee = "DELIVERY GUARANTEE": Word,
    }
}

options! {
    /// `CREATE CLUSTER name [(]…[)]`.
    pub enum ClusterOption {
        Size = "SIZE": Str,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<O: OptionName>() {
        for (i, option) in O::ALL.iter().enumerate() {
            assert!(
                option
                    .words()
                    .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase())),
                "{option:?}"
            );
            assert!(
                !O::ALL[..i].iter().any(|o| o.name() == option.name()),
                "{option} listed twice"
            );
        }
    }

    #[test]
    fn names_are_keywords_and_unique() {
        check::<KafkaConnectionOption>();
        check::<RegistryConnectionOption>();
        check::<SinkOption>();
        check::<AvroFormatOption>();
        check::<SinkWithOption>();
        check::<JsonFormatOption>();
        check::<DebeziumEnvelopeOption>();
        check::<ClusterOption>();
    }
}
