//! The statement front end as a user meets it: every statement form and option of the
//! guide, every validation error with its position, the builders producing the same specs,
//! secrets that never print.

use std::path::{Path, PathBuf};
use std::time::Duration;

use outflow_dataflow::{Datum, RelationDesc, Row, ScalarType};
use outflow_encoders::{
    AvroFormatSpec, CompatibilityLevel, DebeziumOptions, DocComment, DocScope, DocTarget, Envelope,
    FormatSpec, Part, Secret, SubjectNameStrategy,
};
use outflow_sql::error::Site;
use outflow_sql::options::{DebeziumEnvelopeOption, KafkaConnectionOption, SinkOption};
use outflow_sql::partition::{kafka_murmur2, partition_for};
use outflow_sql::spec::{
    ClusterSpec, Compression, ConnectionSpec, DeliveryGuarantee, OAuthBearerSpec, RegistrySpec,
    SaslMechanism, SecretSpec, SecurityProtocol, SinkSpec, SpecError, StringOrSecret, TableSpec,
};
use outflow_sql::statement::{parse_statements, Catalog, CatalogObject};
use proptest::prelude::*;

/// Objects most tests refer to. The secret values are distinctive so that a leak is found.
const PRELUDE: &str = "
CREATE SECRET kafka_password AS 'hunter2-kafka';
CREATE SECRET csr_password AS 'hunter2-csr';
CREATE SECRET client_key AS 'hunter2-key';
CREATE CONNECTION kafka_connection TO KAFKA (BROKER 'broker:9092', SECURITY PROTOCOL PLAINTEXT);
CREATE CONNECTION csr_connection TO CONFLUENT SCHEMA REGISTRY (URL 'http://registry:8081');
CREATE TABLE orders (
    order_id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    region text,
    status text,
    total numeric(12, 2),
    headers map[text => text],
    binary_headers map[text => bytea],
    tags text list,
    UNIQUE (customer_id, region)
);
CREATE TABLE events (id bigint, payload text);
CREATE TABLE single (v text);
CREATE CLUSTER sink_cluster SIZE 'small';
";

const SECRET_VALUES: [&str; 4] = ["hunter2", "hunter2-kafka", "hunter2-csr", "hunter2-key"];

fn catalog() -> Catalog {
    Catalog::from_sql(PRELUDE).expect("the prelude is valid")
}

/// The sink that `sql` (one CREATE SINK, after the prelude) creates.
fn sink(sql: &str) -> SinkSpec {
    let mut catalog = catalog();
    let statements =
        parse_statements(sql).unwrap_or_else(|e| panic!("{sql}\n{}", e.render("test")));
    catalog
        .execute_sql(sql)
        .unwrap_or_else(|e| panic!("{sql}\n{}", e.render("test")));
    let outflow_sql::statement::ast::Statement::CreateSink(created) =
        statements.last().expect("a statement")
    else {
        panic!("not a sink: {sql}")
    };
    catalog
        .sink(&created.name.name)
        .expect("the sink was created")
        .clone()
}

/// The line and column at which `marker` first appears in `sql`.
fn position_of(sql: &str, marker: &str) -> (u32, u32) {
    let offset = sql
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} is not in {sql:?}"));
    let before = &sql[..offset];
    let line = before.matches('\n').count() as u32 + 1;
    let column = before
        .rsplit('\n')
        .next()
        .expect("rsplit yields once")
        .chars()
        .count() as u32
        + 1;
    (line, column)
}

/// Runs `sql` after the prelude and checks that it fails with `message` at the first
/// occurrence of `at`.
fn assert_error(sql: &str, message: &str, at: &str) -> SpecError {
    let mut catalog = catalog();
    let err = match catalog.execute_sql(sql) {
        Ok(_) => panic!("accepted: {sql}"),
        Err(err) => err,
    };
    assert_eq!(err.message, message, "{sql}");
    let position = err.position.map(|p| (p.line, p.column));
    assert_eq!(
        position,
        Some(position_of(sql, at)),
        "position of {message:?} in {sql}"
    );
    for secret in SECRET_VALUES {
        assert!(
            !err.render("f.sql").contains(secret),
            "{sql} leaks a secret: {}",
            err.render("f.sql")
        );
    }
    err
}

const JSON_UPSERT: &str = "KEY (order_id) FORMAT JSON ENVELOPE UPSERT";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn every_guide_statement_is_accepted() {
    let text = std::fs::read_to_string(fixture("guide.sql")).unwrap();
    let mut catalog = Catalog::new();
    let notices = catalog
        .execute_sql(&text)
        .unwrap_or_else(|e| panic!("{}", e.render("guide.sql")));
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0]
        .message
        .starts_with("KEY (key_col) is not a known unique key of \"my_view\""));

    let sinks: Vec<&str> = catalog.sinks().map(|s| s.name.as_str()).collect();
    assert_eq!(
        sinks,
        [
            "json_sink",
            "avro_sink",
            "orders_json_sink",
            "orders_avro_sink",
            "mixed_format_sink",
            "upsert_sink",
            "debezium_sink",
            "configured_sink",
            "partitioned_sink",
            "compatibility_sink",
            "isolated_sink",
            "order_updates",
            "sales_metrics",
            "customer_cdc",
            "my_sink",
            "deduped_sink",
            "my_unenforced_sink",
            "large_dataset_sink",
            "production_orders_sink",
            "compacted_sink",
            "evolving_schema_sink",
            "redpanda_sink",
        ]
    );

    let mixed = catalog.sink("mixed_format_sink").unwrap();
    assert_eq!(mixed.key_format, Some(FormatSpec::Json));
    assert!(matches!(&mixed.value_format, FormatSpec::Avro(a) if a.registry == "csr_connection"));

    let configured = catalog.sink("configured_sink").unwrap();
    assert_eq!(configured.topic_partition_count, Some(6));
    assert_eq!(configured.topic_replication_factor, Some(3));
    assert_eq!(
        configured
            .topic_config
            .get("retention.ms")
            .map(String::as_str),
        Some("86400000")
    );
    assert_eq!(configured.topic_config.len(), 3);

    let partitioned = catalog.sink("partitioned_sink").unwrap();
    assert_eq!(
        partitioned.partition_by.as_ref().unwrap().to_string(),
        "kafka_murmur2(customer_id::text)"
    );

    let FormatSpec::Avro(avro) = &catalog.sink("compatibility_sink").unwrap().value_format else {
        panic!("not avro")
    };
    assert_eq!(avro.key_compatibility, Some(CompatibilityLevel::Backward));
    assert_eq!(
        avro.value_compatibility,
        Some(CompatibilityLevel::BackwardTransitive)
    );

    assert_eq!(
        catalog.sink("isolated_sink").unwrap().cluster.as_deref(),
        Some("sink_cluster")
    );
    assert_eq!(catalog.cluster("large_sink_cluster").unwrap().workers, 16);
    assert_eq!(
        catalog
            .sink("sales_metrics")
            .unwrap()
            .key
            .as_ref()
            .unwrap()
            .columns,
        ["hour", "region"]
    );
    assert_eq!(
        catalog.sink("customer_cdc").unwrap().envelope,
        Envelope::Debezium
    );
    assert!(catalog.sink("debezium_sink").unwrap().key.is_none());
    assert!(
        catalog
            .sink("my_unenforced_sink")
            .unwrap()
            .key
            .as_ref()
            .unwrap()
            .not_enforced
    );

    let ssl = catalog.connection("kafka_ssl_connection").unwrap();
    assert_eq!(ssl.security_protocol, SecurityProtocol::Ssl);
    let sasl = catalog.connection("kafka_connection").unwrap();
    assert_eq!(sasl.security_protocol, SecurityProtocol::SaslSsl);
    assert_eq!(
        sasl.sasl.as_ref().unwrap().mechanism,
        SaslMechanism::ScramSha256
    );
    assert_eq!(sasl.progress_topic, "_outflow-progress-kafka_connection");
    assert_eq!(
        catalog
            .connection("kafka_progress_connection")
            .unwrap()
            .progress_topic,
        "my_progress_topic"
    );
}

#[test]
fn the_guides_bad_key_fails_with_the_guides_error() {
    let mut catalog =
        Catalog::from_sql(&std::fs::read_to_string(fixture("guide.sql")).unwrap()).unwrap();
    // Option 3 of the guide without NOT ENFORCED.
    let sql = "CREATE SINK my_sink_2\n  FROM my_view\n  INTO KAFKA CONNECTION kafka_connection (TOPIC 'topic')\n  KEY (key_col)\n  FORMAT JSON\n  ENVELOPE UPSERT;";
    let err = catalog.execute_sql(sql).unwrap_err();
    assert_eq!(err.message, "upsert key could not be validated as unique");
    assert_eq!(err.position.map(|p| (p.line, p.column)), Some((4, 3)));
    assert_eq!(
        err.detail.as_deref(),
        Some(
            "Outflow could not prove that the specified upsert envelope key (\"key_col\") was a unique key of the \
             underlying relation \"my_view\". The following keys are known to be unique for the underlying relation:\n  \
             (\"id\")\n  (\"primary_key_col\")"
        )
    );
    assert!(err.hint.unwrap().contains("NOT ENFORCED"));

    // The guide's materialized views are Rust here.
    let view = "CREATE MATERIALIZED VIEW order_summaries AS\nSELECT o.order_id, COUNT(*) as item_count\nFROM orders o\nGROUP BY o.order_id;";
    let err = Catalog::new().execute_sql(view).unwrap_err();
    assert_eq!(err.message, "CREATE MATERIALIZED VIEW is not supported");
    assert_eq!(
        err.hint.as_deref(),
        Some("see examples/ for pipelines written in Rust")
    );
    assert_eq!(err.position.map(|p| (p.line, p.column)), Some((1, 1)));
    let err = Catalog::new()
        .execute_sql("SELECT * FROM mz_sinks WHERE name = 'my_sink';")
        .unwrap_err();
    assert_eq!(err.message, "unsupported statement: SELECT");
}

#[test]
fn secrets_and_connections() {
    let mut catalog = catalog();
    catalog
        .execute_sql(
            "CREATE SECRET cert AS '-----BEGIN CERTIFICATE-----';
             CREATE CONNECTION all_options TO KAFKA (
                 BROKERS ('a:9092', 'b:9093'),
                 SECURITY PROTOCOL = SASL_SSL,
                 SASL MECHANISMS 'scram-sha-512',
                 SASL USERNAME SECRET kafka_password,
                 SASL PASSWORD = SECRET kafka_password,
                 SSL KEY = SECRET client_key,
                 SSL CERTIFICATE SECRET cert,
                 SSL CERTIFICATE AUTHORITY = '-----BEGIN CA-----',
                 PROGRESS TOPIC = 'progress',
                 PROGRESS TOPIC REPLICATION FACTOR = 3
             );
             CREATE CONNECTION tls_only TO KAFKA (BROKER 'a:9092', SSL CERTIFICATE AUTHORITY '-----BEGIN CA-----');
             CREATE CONNECTION defaults TO KAFKA (BROKER 'a:9092');
             CREATE CONNECTION sasl_plain TO KAFKA (BROKER 'a:9092', SECURITY PROTOCOL 'sasl_plaintext',
                 SASL MECHANISMS PLAIN, SASL USERNAME 'u', SASL PASSWORD SECRET kafka_password);
             CREATE CONNECTION registry TO CONFLUENT SCHEMA REGISTRY (
                 URL = 'https://registry.example.com/prefix',
                 USERNAME SECRET csr_password,
                 PASSWORD = SECRET csr_password,
                 SSL KEY = SECRET client_key,
                 SSL CERTIFICATE = '-----BEGIN CERTIFICATE-----',
                 SSL CERTIFICATE AUTHORITY = SECRET cert
             );",
        )
        .unwrap();
    assert_eq!(
        catalog.secret("kafka_password").unwrap().value.expose(),
        "hunter2-kafka"
    );

    let all = catalog.connection("all_options").unwrap();
    let expected = ConnectionSpec::builder("all_options")
        .brokers(["a:9092", "b:9093"])
        .security_protocol(SecurityProtocol::SaslSsl)
        .sasl_mechanism(SaslMechanism::ScramSha512)
        .sasl_username(StringOrSecret::secret("kafka_password"))
        .sasl_password("kafka_password")
        .ssl_key("client_key")
        .ssl_certificate(StringOrSecret::secret("cert"))
        .ssl_certificate_authority("-----BEGIN CA-----")
        .progress_topic("progress")
        .progress_topic_replication_factor(3)
        .build()
        .unwrap();
    assert_eq!(all, &expected);
    assert_eq!(
        catalog
            .reveal(&all.sasl.as_ref().unwrap().username)
            .unwrap(),
        "hunter2-kafka"
    );

    assert_eq!(
        catalog.connection("tls_only").unwrap().security_protocol,
        SecurityProtocol::Ssl
    );
    let defaults = catalog.connection("defaults").unwrap();
    assert_eq!(defaults.security_protocol, SecurityProtocol::Ssl);
    assert_eq!(defaults.progress_topic, "_outflow-progress-defaults");
    assert_eq!(defaults.progress_topic_replication_factor, None);
    assert_eq!(
        catalog.connection("sasl_plain").unwrap().security_protocol,
        SecurityProtocol::SaslPlaintext
    );

    let registry = catalog.registry("registry").unwrap();
    let expected = RegistrySpec::builder("registry", "https://registry.example.com/prefix")
        .username(StringOrSecret::secret("csr_password"))
        .password("csr_password")
        .ssl_key("client_key")
        .ssl_certificate("-----BEGIN CERTIFICATE-----")
        .ssl_certificate_authority(StringOrSecret::secret("cert"))
        .build()
        .unwrap();
    assert_eq!(registry, &expected);
}

#[test]
fn tables_and_clusters() {
    let mut catalog = Catalog::new();
    catalog.execute_sql("CREATE TABLE Shop (a int);").unwrap();
    catalog
        .execute_sql(
            r#"CREATE TABLE IF NOT EXISTS "Mixed" (
                   "Id" BIGINT PRIMARY KEY,
                   Amount NUMERIC(10, 2) NOT NULL,
                   note CHARACTER VARYING(20) NULL,
                   at TIMESTAMP(3) WITH TIME ZONE UNIQUE,
                   tags text[],
                   attrs map[text => int8],
                   a int, b int,
                   CONSTRAINT ab UNIQUE (a, b)
               );
               CREATE TABLE composite (x int, y int, PRIMARY KEY (x, y));
               CREATE CLUSTER c1 SIZE = 'xsmall';
               CREATE CLUSTER c2 SIZE '400cc';
               CREATE CLUSTER c3 (SIZE = 'Large');
               CREATE CLUSTER IF NOT EXISTS c1 SIZE 'small';"#,
        )
        .unwrap();
    assert!(
        catalog.table("shop").is_some(),
        "unquoted names fold to lowercase"
    );
    let mixed = catalog.table("Mixed").unwrap();
    let expected = TableSpec::builder("Mixed")
        .column("Id", ScalarType::Int64, true)
        .column(
            "amount",
            ScalarType::Numeric {
                precision: Some(10),
                scale: Some(2),
            },
            false,
        )
        .column(
            "note",
            ScalarType::VarChar {
                max_length: Some(20),
            },
            true,
        )
        .column("at", ScalarType::TimestampTz { precision: Some(3) }, true)
        .column(
            "tags",
            ScalarType::List {
                element: Box::new(ScalarType::Text),
            },
            true,
        )
        .column(
            "attrs",
            ScalarType::Map {
                value: Box::new(ScalarType::Int64),
            },
            true,
        )
        .column("a", ScalarType::Int32, true)
        .column("b", ScalarType::Int32, true)
        .primary_key(["Id"])
        .unique(["at"])
        .unique(["a", "b"])
        .build()
        .unwrap();
    assert_eq!(mixed, &expected);
    assert!(
        !mixed.desc.column(0).typ.nullable,
        "PRIMARY KEY implies NOT NULL"
    );
    assert_eq!(mixed.desc.keys(), &[vec![0], vec![3], vec![6, 7]]);
    assert_eq!(
        catalog.table("composite").unwrap().desc.keys(),
        &[vec![0, 1]]
    );

    let workers: Vec<(String, usize)> = ["c1", "c2", "c3"]
        .iter()
        .map(|c| {
            catalog
                .cluster(c)
                .map(|c| (c.size.clone(), c.workers))
                .unwrap()
        })
        .collect();
    assert_eq!(
        workers,
        [
            ("xsmall".to_string(), 1),
            ("400cc".to_string(), 8),
            ("large".to_string(), 8)
        ]
    );
    assert_eq!(
        catalog.cluster("c3").unwrap(),
        &ClusterSpec::new("c3", "LARGE").unwrap()
    );
}

#[test]
fn sink_options_and_defaults() {
    let defaults = sink(&format!(
        "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 'orders') {JSON_UPSERT}"
    ));
    assert_eq!(defaults.compression, Compression::Lz4);
    assert_eq!(defaults.transactional_id_prefix, "outflow-");
    assert_eq!(defaults.transactional_id(2), "outflow-s-2");
    assert_eq!(defaults.progress_group_id(0), "outflow-s-0");
    assert_eq!(
        defaults.topic_metadata_refresh_interval,
        Duration::from_secs(300)
    );
    assert!(defaults.snapshot);
    assert_eq!(defaults.delivery, DeliveryGuarantee::ExactlyOnce);
    assert_eq!(defaults.topic_partition_count, None);
    assert_eq!(defaults.cluster, None);
    assert_eq!(defaults.key_format, Some(FormatSpec::Json));

    let all = sink(
        "CREATE SINK IF NOT EXISTS s IN CLUSTER sink_cluster FROM orders INTO KAFKA CONNECTION kafka_connection (
            TOPIC = 'orders',
            TOPIC PARTITION COUNT = 12,
            TOPIC REPLICATION FACTOR 2,
            TOPIC CONFIG MAP['cleanup.policy' => 'compact'],
            PARTITION BY = crc32(region || '/' || customer_id),
            COMPRESSION TYPE = 'GZIP',
            TRANSACTIONAL ID PREFIX 'tx-',
            PROGRESS GROUP ID PREFIX = 'group-',
            TOPIC METADATA REFRESH INTERVAL = INTERVAL '30s'
        )
        HEADERS headers
        ENVELOPE UPSERT
        FORMAT JSON
        KEY (order_id)
        WITH (SNAPSHOT = false, DELIVERY GUARANTEE = 'at-least-once')",
    );
    assert_eq!(all.cluster.as_deref(), Some("sink_cluster"));
    assert_eq!(all.topic_partition_count, Some(12));
    assert_eq!(all.topic_replication_factor, Some(2));
    assert_eq!(
        all.partition_by.as_ref().unwrap().to_string(),
        "crc32(region || '/' || customer_id::text)"
    );
    assert_eq!(all.compression, Compression::Gzip);
    assert_eq!(all.transactional_id(0), "tx-s-0");
    assert_eq!(all.progress_group_id(1), "group-s-1");
    assert_eq!(all.topic_metadata_refresh_interval, Duration::from_secs(30));
    assert_eq!(
        all.headers.as_ref().map(|h| (h.index, h.name.as_str())),
        Some((5, "headers"))
    );
    assert!(!all.snapshot);
    assert_eq!(all.delivery, DeliveryGuarantee::AtLeastOnce);

    for (text, compression) in [
        ("none", Compression::None),
        ("snappy", Compression::Snappy),
        ("zstd", Compression::Zstd),
        ("lz4", Compression::Lz4),
    ] {
        let s = sink(&format!(
            "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't', COMPRESSION TYPE {text}) {JSON_UPSERT}"
        ));
        assert_eq!(s.compression, compression);
    }
    for (with, snapshot) in [
        ("SNAPSHOT", true),
        ("SNAPSHOT = true", true),
        ("SNAPSHOT false", false),
    ] {
        let s = sink(&format!(
            "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') {JSON_UPSERT} WITH ({with})"
        ));
        assert_eq!(s.snapshot, snapshot, "{with}");
    }
    let bytea_headers = sink(&format!(
        "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') HEADERS binary_headers {JSON_UPSERT}"
    ));
    assert_eq!(bytea_headers.headers.map(|h| h.index), Some(6));

    // A superset of a unique key is unique; NOT ENFORCED skips the check.
    sink("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (region, customer_id, status) FORMAT JSON ENVELOPE UPSERT");
    let unenforced = sink("CREATE SINK s FROM events INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (id) NOT ENFORCED FORMAT JSON ENVELOPE UPSERT");
    assert!(unenforced.key.unwrap().not_enforced);
    // DEBEZIUM takes any key, and none.
    sink("CREATE SINK s FROM events INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (payload) FORMAT JSON ENVELOPE DEBEZIUM");
    sink("CREATE SINK s FROM events INTO KAFKA CONNECTION kafka_connection (TOPIC 't') FORMAT JSON ENVELOPE DEBEZIUM");
}

#[test]
fn sink_formats() {
    let text = sink("CREATE SINK s FROM single INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (v) NOT ENFORCED FORMAT TEXT ENVELOPE UPSERT");
    assert_eq!(
        (text.key_format, text.value_format),
        (Some(FormatSpec::Text), FormatSpec::Text)
    );
    let bytes = sink("CREATE SINK s FROM single INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (v) NOT ENFORCED KEY FORMAT BYTES VALUE FORMAT JSON ENVELOPE UPSERT");
    assert_eq!(
        (bytes.key_format, bytes.value_format),
        (Some(FormatSpec::Bytes), FormatSpec::Json)
    );
    let text_key = sink("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) KEY FORMAT TEXT VALUE FORMAT JSON ENVELOPE DEBEZIUM");
    assert_eq!(text_key.key_format, Some(FormatSpec::Text));

    let avro = sink(
        "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't')
         KEY (order_id)
         FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr_connection (
             KEY COMPATIBILITY LEVEL = 'full_transitive',
             VALUE COMPATIBILITY LEVEL NONE,
             AVRO KEY FULLNAME 'com.example.OrderKey',
             AVRO VALUE FULLNAME = 'com.example.Order',
             NULL DEFAULTS,
             DOC ON TYPE orders = 'An order',
             KEY DOC ON COLUMN orders.order_id = 'The order''s id',
             VALUE DOC ON COLUMN orders.status = 'Where the order is'
         )
         ENVELOPE UPSERT",
    );
    let expected = AvroFormatSpec {
        registry: "csr_connection".into(),
        key_compatibility: Some(CompatibilityLevel::FullTransitive),
        value_compatibility: Some(CompatibilityLevel::None),
        key_subject_name_strategy: Default::default(),
        value_subject_name_strategy: Default::default(),
        key_fullname: Some("com.example.OrderKey".into()),
        value_fullname: Some("com.example.Order".into()),
        null_defaults: true,
        docs: vec![
            DocComment {
                target: DocTarget::Type("orders".into()),
                scope: DocScope::Both,
                text: "An order".into(),
            },
            DocComment {
                target: DocTarget::Column {
                    relation: "orders".into(),
                    column: "order_id".into(),
                },
                scope: DocScope::Key,
                text: "The order's id".into(),
            },
            DocComment {
                target: DocTarget::Column {
                    relation: "orders".into(),
                    column: "status".into(),
                },
                scope: DocScope::Value,
                text: "Where the order is".into(),
            },
        ],
    };
    assert_eq!(avro.key_format, Some(FormatSpec::Avro(expected.clone())));
    assert_eq!(avro.value_format, FormatSpec::Avro(expected));

    let no_defaults = sink(
        "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id)
         KEY FORMAT JSON VALUE FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr_connection (NULL DEFAULTS = false)
         ENVELOPE UPSERT",
    );
    assert!(matches!(
        no_defaults.value_format,
        FormatSpec::Avro(AvroFormatSpec {
            null_defaults: false,
            ..
        })
    ));
}

#[test]
fn key_errors() {
    let base = "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't')";
    let err = assert_error(
        &format!("{base}\n  KEY (status) FORMAT JSON ENVELOPE UPSERT"),
        "upsert key could not be validated as unique",
        "KEY (status)",
    );
    let detail = err.detail.unwrap();
    assert!(detail.ends_with(
        "The following keys are known to be unique for the underlying relation:\n  (\"order_id\")\n  (\"customer_id\", \"region\")"
    ));
    let err = assert_error(
        "CREATE SINK s FROM events INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (id, payload) FORMAT JSON ENVELOPE UPSERT",
        "upsert key could not be validated as unique",
        "KEY (id",
    );
    assert_eq!(
        err.detail.as_deref(),
        Some("Outflow could not prove that the specified upsert envelope key (\"id\", \"payload\") was a unique key of the underlying relation \"events\". There are no known valid unique keys for the underlying relation.")
    );
    assert_error(
        "CREATE SINK s FROM events INTO KAFKA CONNECTION kafka_connection (TOPIC 't') FORMAT JSON ENVELOPE UPSERT",
        "upsert sinks must specify a key",
        "UPSERT",
    );
    assert_error(
        &format!("{base} KEY (order_id, nope) FORMAT JSON ENVELOPE UPSERT"),
        "column referenced in KEY does not exist: nope",
        "nope",
    );
    assert_error(
        &format!("{base} KEY (order_id, ORDER_ID) FORMAT JSON ENVELOPE UPSERT"),
        "duplicate column referenced in KEY: order_id",
        "ORDER_ID",
    );
    assert_error(
        &format!("{base} KEY (order_id) KEY (order_id) FORMAT JSON ENVELOPE UPSERT"),
        "KEY specified more than once",
        "KEY (order_id) F",
    );
}

#[test]
fn format_errors() {
    let base = "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id)";
    let multi = "BYTES or TEXT format with multiple columns not yet supported";
    assert_error(
        &format!("{base} FORMAT TEXT ENVELOPE UPSERT"),
        multi,
        "FORMAT TEXT",
    );
    assert_error(
        "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (customer_id, region) KEY FORMAT BYTES VALUE FORMAT JSON ENVELOPE UPSERT",
        multi,
        "KEY FORMAT",
    );
    assert_error(
        "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (tags) NOT ENFORCED KEY FORMAT BYTES VALUE FORMAT JSON ENVELOPE UPSERT",
        "BYTES format with non-encodable type: key column \"tags\" has type text list; BYTES writes bytea columns \
         as their bytes and text columns as UTF-8, so cast the column to bytea or text, or use FORMAT TEXT",
        "KEY FORMAT",
    );
    assert_error(
        "CREATE SINK s FROM single INTO KAFKA CONNECTION kafka_connection (TOPIC 't') FORMAT TEXT ENVELOPE DEBEZIUM",
        "TEXT value format is not supported with ENVELOPE DEBEZIUM: the before/after pair has no TEXT form; use \
         FORMAT JSON or AVRO for the value, or ENVELOPE UPSERT",
        "FORMAT",
    );
    assert_error(
        &format!("{base} ENVELOPE UPSERT"),
        "sink without format not yet supported",
        "CREATE",
    );
    assert_error(
        &format!("{base} FORMAT JSON"),
        "ENVELOPE clause is required",
        "CREATE",
    );
    assert_error(
        &format!("{base} FORMAT PROTOBUF ENVELOPE UPSERT"),
        "sink format PROTOBUF not yet supported",
        "PROTOBUF",
    );
    assert_error(
        &format!("{base} FORMAT JSON ARRAY ENVELOPE UPSERT"),
        "JSON ARRAY format in sinks not yet supported",
        "JSON",
    );
    assert_error(
        &format!("{base} FORMAT JSON FORMAT JSON ENVELOPE UPSERT"),
        "FORMAT specified more than once",
        "FORMAT JSON ENV",
    );
    assert_error(
        &format!("{base} VALUE FORMAT JSON ENVELOPE UPSERT"),
        "VALUE FORMAT must follow KEY FORMAT",
        "VALUE",
    );
    assert_error(
        &format!("{base} FORMAT JSON ENVELOPE APPEND"),
        "expected UPSERT or DEBEZIUM, found identifier \"append\"",
        "APPEND",
    );

    let avro = "FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr_connection";
    assert_error(
        &format!("{base} {avro} (KEY COMPATIBILITY LEVEL 'SIDEWAYS') ENVELOPE UPSERT"),
        "invalid KEY COMPATIBILITY LEVEL: SIDEWAYS",
        "'SIDEWAYS'",
    );
    assert_error(
        &format!("{base} {avro} (VALUE COMPATIBILITY LEVEL 'FULL', VALUE COMPATIBILITY LEVEL 'NONE') ENVELOPE UPSERT"),
        "VALUE COMPATIBILITY LEVEL specified more than once",
        "VALUE COMPATIBILITY LEVEL 'NONE'",
    );
    assert_error(
        &format!("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') {avro} (AVRO KEY FULLNAME 'k') ENVELOPE DEBEZIUM"),
        "Cannot specify AVRO KEY FULLNAME without a corresponding KEY field",
        "'k'",
    );
    assert_error(
        &format!("{base} {avro} (AVRO VALUE FULLNAME 'v') ENVELOPE UPSERT"),
        "Must specify both AVRO KEY FULLNAME and AVRO VALUE FULLNAME when specifying generated schema names",
        "'v'",
    );
    assert_error(
        &format!(
            "{base} {avro} (AVRO KEY FULLNAME 'my-key', AVRO VALUE FULLNAME 'v') ENVELOPE UPSERT"
        ),
        "invalid AVRO KEY FULLNAME 'my-key'",
        "'my-key'",
    );
    assert_error(
        &format!("{base} {avro} (DOC ON COLUMN orders.nope = 'x') ENVELOPE UPSERT"),
        "DOC ON COLUMN orders.nope does not name the sink's relation \"orders\" or one of its columns",
        "DOC ON",
    );
    assert_error(
        &format!("{base} {avro} (DOC ON TYPE orders = 'a', KEY DOC ON TYPE single = 'x') ENVELOPE UPSERT"),
        "KEY DOC ON TYPE single does not name the sink's relation \"orders\" or one of its columns",
        "KEY DOC",
    );
    assert_error(
        &format!("{base} {avro} (VALUE DOC ON TYPE orders = '') ENVELOPE UPSERT"),
        "VALUE DOC ON TYPE orders cannot be empty",
        "VALUE DOC",
    );
    assert_error(
        &format!(
            "{base} {avro} (DOC ON TYPE orders = 'a', DOC ON TYPE orders = 'b') ENVELOPE UPSERT"
        ),
        "DOC ON TYPE orders specified more than once",
        "DOC ON TYPE orders = 'b'",
    );
    // The encoders' own rules apply too, blamed on the option they are about.
    assert_error(
        &format!("{base} {avro} (AVRO KEY FULLNAME 'k', AVRO VALUE FULLNAME 'com.example.row') ENVELOPE DEBEZIUM"),
        "AVRO VALUE FULLNAME \"com.example.row\" is not a valid Avro full name: under ENVELOPE DEBEZIUM the value \
         record holds a record named \"row\", so the value record needs another name",
        "'com.example.row'",
    );
    assert_error(
        &format!("{base} FORMAT BYTES ENVELOPE UPSERT")
            .replace("FROM orders", "FROM events")
            .replace("(order_id)", "(id) NOT ENFORCED"),
        "BYTES format with non-encodable type: key column \"id\" has type bigint; BYTES writes bytea columns as their \
         bytes and text columns as UTF-8, so cast the column to bytea or text, or use FORMAT TEXT",
        "FORMAT BYTES",
    );
    assert_error(
        &format!("{base} {avro} SEED KEY SCHEMA '{{}}' ENVELOPE UPSERT"),
        "SEED option does not make sense with sinks",
        "SEED",
    );
    assert_error(
        &format!("{base} {avro} (KEY STRATEGY INLINE) ENVELOPE UPSERT"),
        "unknown AVRO option: KEY STRATEGY INLINE",
        "KEY STRATEGY",
    );
}

#[test]
fn headers_errors() {
    let base = "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id)";
    assert_error(
        &format!("{base} HEADERS status FORMAT JSON ENVELOPE UPSERT"),
        "HEADERS column must have type map[text => text] or map[text => bytea]; column \"status\" has type text",
        "status",
    );
    assert_error(
        &format!("{base} HEADERS nope FORMAT JSON ENVELOPE UPSERT"),
        "HEADERS column (nope) is unknown",
        "nope",
    );
    assert_error(
        &format!("{base} HEADERS headers FORMAT JSON ENVELOPE DEBEZIUM"),
        "HEADERS option is not supported with ENVELOPE DEBEZIUM",
        "headers F",
    );
}

#[test]
fn reference_errors() {
    let tail = "(TOPIC 't') KEY (order_id) FORMAT JSON ENVELOPE UPSERT";
    assert_error(
        &format!("CREATE SINK s FROM orders INTO KAFKA CONNECTION nope {tail}"),
        "unknown catalog item 'nope'",
        "nope",
    );
    assert_error(
        &format!("CREATE SINK s FROM nope INTO KAFKA CONNECTION kafka_connection {tail}"),
        "unknown catalog item 'nope'",
        "nope",
    );
    assert_error(
        &format!("CREATE SINK s IN CLUSTER nope FROM orders INTO KAFKA CONNECTION kafka_connection {tail}"),
        "unknown cluster 'nope'",
        "nope",
    );
    assert_error(
        &format!("CREATE SINK s FROM orders INTO KAFKA CONNECTION csr_connection {tail}"),
        "\"csr_connection\" is not a kafka connection",
        "csr_connection",
    );
    assert_error(
        "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION kafka_connection ENVELOPE UPSERT",
        "\"kafka_connection\" is not a schema registry connection",
        "kafka_connection ENVELOPE",
    );
    assert_error(
        &format!(
            "CREATE SINK s FROM kafka_connection INTO KAFKA CONNECTION kafka_connection {tail}"
        ),
        "kafka_connection is a connection, which cannot be exported as a sink",
        "kafka_connection INTO",
    );
    assert_error(
        "CREATE CONNECTION k TO KAFKA (BROKER 'b:1', SASL MECHANISMS PLAIN, SASL USERNAME 'u', SASL PASSWORD SECRET nope)",
        "unknown catalog item 'nope'",
        "nope",
    );
    assert_error(
        "CREATE CONNECTION k TO KAFKA (BROKER 'b:1', SSL KEY SECRET orders, SSL CERTIFICATE 'c')",
        "\"orders\" is not a secret",
        "orders",
    );
    assert_error(
        "CREATE CONNECTION r TO CONFLUENT SCHEMA REGISTRY (URL 'http://r', USERNAME 'u', PASSWORD SECRET missing_password)",
        "unknown catalog item 'missing_password'",
        "missing_password",
    );
}

#[test]
fn option_errors() {
    let sink_with = |options: &str| {
        format!("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection ({options}) {JSON_UPSERT}")
    };
    assert_error(
        &sink_with("TOPIC 't', TOPIC PARTITION COUNT 0"),
        "TOPIC PARTITION COUNT must be a positive integer",
        "0",
    );
    assert_error(
        &sink_with("TOPIC 't', TOPIC PARTITION COUNT -1"),
        "TOPIC PARTITION COUNT must be a positive integer",
        "-1",
    );
    assert_error(
        &sink_with("TOPIC 't', TOPIC PARTITION COUNT = 3000000000"),
        "TOPIC PARTITION COUNT must be a positive integer",
        "3000000000",
    );
    assert_error(
        &sink_with("TOPIC 't', TOPIC REPLICATION FACTOR 0"),
        "TOPIC REPLICATION FACTOR must be a positive integer",
        "0",
    );
    assert_error(
        &sink_with("TOPIC 't', COMPRESSION TYPE = brotli"),
        "invalid COMPRESSION TYPE: brotli",
        "brotli",
    );
    assert_error(
        &sink_with("TOPIC 't', TOPIC METADATA REFRESH INTERVAL '2 hours'"),
        "TOPIC METADATA REFRESH INTERVAL cannot be greater than 1 hour",
        "'2 hours'",
    );
    assert_error(
        &sink_with("TOPIC 't', TOPIC METADATA REFRESH INTERVAL 'soon'"),
        "invalid TOPIC METADATA REFRESH INTERVAL: 'soon' is not a duration",
        "'soon'",
    );
    assert_error(
        &sink_with("TOPIC 'a', TOPIC 'b'"),
        "TOPIC specified more than once",
        "TOPIC 'b'",
    );
    let err = assert_error(
        &sink_with("TOPIC 't', RETENTION MS 5"),
        "unknown KAFKA CONNECTION option: RETENTION MS",
        "RETENTION",
    );
    assert!(err.hint.unwrap().contains("TOPIC PARTITION COUNT"));
    assert_error(
        &sink_with("TOPIC 'bad topic'"),
        "invalid TOPIC 'bad topic'",
        "'bad topic'",
    );
    assert_error(
        &sink_with("TOPIC 't', TOPIC CONFIG MAP['a' => '1', 'a' => '2']"),
        "TOPIC CONFIG key 'a' specified more than once",
        "'a' => '2'",
    );
    assert_error(
        &sink_with("TOPIC 't', TOPIC CONFIG 'a'"),
        "expected MAP['key' => 'value', …] for TOPIC CONFIG, found a string literal",
        "'a'",
    );
    assert_error(
        &format!("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection {JSON_UPSERT}"),
        "KAFKA CONNECTION must specify TOPIC",
        "kafka_connection",
    );
    assert_error(
        &format!("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') {JSON_UPSERT} WITH (SNAPSHOT, SNAPSHOT = false)"),
        "SNAPSHOT specified more than once",
        "SNAPSHOT = false",
    );
    assert_error(
        &format!("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') {JSON_UPSERT} WITH (VERSION = 1)"),
        "unknown WITH option: VERSION",
        "VERSION",
    );
    assert_error(
        &format!("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') {JSON_UPSERT} WITH (DELIVERY GUARANTEE = 'maybe-once')"),
        "invalid DELIVERY GUARANTEE: maybe-once",
        "'maybe-once'",
    );
    assert_error(
        &format!("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') {JSON_UPSERT} envelope upsert"),
        "ENVELOPE specified more than once",
        "envelope",
    );
    assert_error(
        &format!("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') {JSON_UPSERT} LIMIT 5"),
        "expected KEY, HEADERS, FORMAT, KEY FORMAT, ENVELOPE, WITH or the end of the statement, found identifier \"limit\"",
        "LIMIT",
    );
}

#[test]
fn partition_by_errors() {
    let debezium = |expr: &str| {
        format!("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't', PARTITION BY = {expr}) KEY (order_id) FORMAT JSON ENVELOPE DEBEZIUM")
    };
    let err = assert_error(
        &debezium("kafka_murmur2(order_id::text || region)"),
        "PARTITION BY expression cannot refer to non-key column \"region\"",
        "region)",
    );
    assert_eq!(
        err.detail.as_deref(),
        Some("When using ENVELOPE DEBEZIUM, only columns in the key can be referenced in the PARTITION BY expression.")
    );
    sink(&debezium("kafka_murmur2(order_id::text)"));
    let upsert = |expr: &str| {
        format!("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't', PARTITION BY = {expr}) {JSON_UPSERT}")
    };
    assert_error(
        &upsert("region"),
        "PARTITION BY must yield uint8, but the expression has type text",
        "region)",
    );
    assert_error(
        &upsert("seahash(nope)"),
        "column \"nope\" does not exist",
        "nope",
    );
    assert_error(
        &upsert("seahash(total)"),
        "function seahash(numeric(12,2)) does not exist",
        "seahash",
    );
    assert_error(
        &upsert("md5(region)"),
        "function md5(text) does not exist",
        "md5",
    );
    assert_error(
        &upsert("crc32(region::geometry)"),
        "type \"geometry\" does not exist",
        "geometry",
    );
    assert_error(
        &upsert("crc32(headers::int8)"),
        "CAST does not support casting from map[text=>text] to bigint",
        "int8",
    );
    sink(&upsert("customer_id"));
    sink(&upsert("total"));
    sink(&upsert("seahash(region::bytea || '\\x00')"));

    // Expressions beyond calls: typed at check time, with Postgres's errors at their token.
    assert_error(
        &upsert("region + 1"),
        "operator does not exist: text + integer",
        "+ 1",
    );
    assert_error(
        &upsert("lower(region)"),
        "PARTITION BY must yield uint8, but the expression has type text",
        "lower",
    );
    assert_error(
        &upsert("CASE WHEN region = 'eu' THEN 0 ELSE region END"),
        "CASE types integer and text cannot be matched",
        "region END",
    );
    assert_error(
        &upsert("CASE WHEN customer_id THEN 0 END"),
        "argument of CASE/WHEN must be type boolean, not type bigint",
        "customer_id THEN",
    );
    assert_error(
        &upsert("coalesce(region, 0)"),
        "COALESCE types text and integer cannot be matched",
        "0)",
    );
    // A constant part is evaluated at check time; a row's part only on the row.
    assert_error(
        &upsert("order_id + 2147483647 * 2"),
        "integer out of range",
        "2147483647",
    );
    assert_error(&upsert("order_id % (1 / 0)"), "division by zero", "1 / 0");
    sink(&upsert("order_id % (1 - 1)"));
    assert_error(
        &upsert("order_id < 1 < 2"),
        "syntax error at or near \"<\"",
        "< 2",
    );
    assert_error(
        &debezium("CASE WHEN status = 'x' THEN 0 ELSE order_id END"),
        "PARTITION BY expression cannot refer to non-key column \"status\"",
        "status =",
    );
    for (written, normalized) in [
        ("(order_id % 3)::uint8", "(order_id % 3)::uint8"),
        (
            "CASE WHEN region = 'eu' THEN 0 ELSE seahash(region) END",
            "CASE WHEN region = 'eu' THEN 0::numeric ELSE seahash(region)::numeric END",
        ),
        (
            "coalesce(kafka_murmur2(lower(trim(region))), 0)",
            "coalesce(kafka_murmur2(lower(btrim(region))), 0)",
        ),
        (
            "crc32(substring(status FROM 1 FOR 2) || customer_id::text) % 16",
            "crc32(substring(status, 1, 2) || customer_id::text)::bigint % 16",
        ),
        (
            "CAST(total * 100 AS bigint)",
            "(total * 100::numeric)::bigint",
        ),
    ] {
        let spec = sink(&upsert(written));
        assert_eq!(
            spec.partition_by.unwrap().to_string(),
            normalized,
            "{written}"
        );
    }
    sink(&debezium("CASE WHEN order_id > 0 THEN order_id ELSE 0 END"));
}

#[test]
fn connection_and_table_errors() {
    assert_error(
        "CREATE CONNECTION k TO KAFKA (SECURITY PROTOCOL PLAINTEXT)",
        "must set one of BROKER or BROKERS",
        "CREATE",
    );
    assert_error(
        "CREATE CONNECTION k TO KAFKA (BROKER 'a:1', BROKERS ('b:1'))",
        "cannot specify both BROKER and BROKERS",
        "BROKERS",
    );
    assert_error(
        "CREATE CONNECTION k TO KAFKA (BROKER 'a:1,b:1')",
        "invalid broker address 'a:1,b:1': it lists several brokers",
        "'a:1,b:1'",
    );
    assert_error(
        "CREATE CONNECTION k TO KAFKA (BROKER 'a:1', SECURITY PROTOCOL 'TLS')",
        "unknown SECURITY PROTOCOL: TLS",
        "'TLS'",
    );
    assert_error(
        "CREATE CONNECTION k TO KAFKA (BROKER 'a:1', SASL MECHANISMS 'GSSAPI', SASL USERNAME 'u', SASL PASSWORD SECRET kafka_password)",
        "unknown SASL MECHANISMS: GSSAPI",
        "'GSSAPI'",
    );
    assert_error(
        "CREATE CONNECTION k TO KAFKA (BROKER 'a:1', SECURITY PROTOCOL PLAINTEXT, SASL MECHANISMS PLAIN, SASL USERNAME 'u', SASL PASSWORD SECRET kafka_password)",
        "SASL MECHANISMS cannot be used with SECURITY PROTOCOL PLAINTEXT",
        "PLAIN,",
    );
    assert_error(
        "CREATE CONNECTION k TO KAFKA (BROKER 'a:1', SASL MECHANISMS PLAIN, SASL USERNAME 'u')",
        "SASL authentication requires SASL PASSWORD",
        "PLAIN",
    );
    assert_error(
        "CREATE CONNECTION k TO KAFKA (BROKER 'a:1', SSL KEY SECRET client_key)",
        "SSL KEY requires SSL CERTIFICATE",
        "client_key",
    );
    assert_error(
        "CREATE CONNECTION k TO KAFKA (BROKER 'a:1', SECURITY PROTOCOL SASL_PLAINTEXT, SASL MECHANISMS PLAIN, SASL USERNAME 'u', SASL PASSWORD SECRET kafka_password, SSL CERTIFICATE AUTHORITY 'ca')",
        "SSL CERTIFICATE AUTHORITY cannot be used with SECURITY PROTOCOL SASL_PLAINTEXT",
        "'ca'",
    );
    assert_error(
        "CREATE CONNECTION k TO KAFKA (BROKER 'a:1', PROGRESS TOPIC REPLICATION FACTOR 0)",
        "invalid CONNECTION: PROGRESS TOPIC REPLICATION FACTOR must be greater than 0",
        "0)",
    );
    assert_error(
        "CREATE CONNECTION k TO KAFKA (BROKER 'a:1', BROKER 'b:1')",
        "BROKER specified more than once",
        "BROKER 'b",
    );
    assert_error(
        "CREATE CONNECTION k TO KAFKA (BROKER 'a:1', TIMEOUT 5)",
        "unknown KAFKA CONNECTION option: TIMEOUT",
        "TIMEOUT",
    );
    assert_error(
        "CREATE CONNECTION k TO POSTGRES (HOST 'h')",
        "expected KAFKA or CONFLUENT SCHEMA REGISTRY, found identifier \"postgres\"",
        "POSTGRES",
    );
    assert_error(
        "CREATE CONNECTION r TO CONFLUENT SCHEMA REGISTRY (USERNAME 'u')",
        "must specify URL",
        "CREATE",
    );
    assert_error(
        "CREATE CONNECTION r TO CONFLUENT SCHEMA REGISTRY (URL 'registry:8081')",
        "invalid URL 'registry:8081': it must start with http:// or https://",
        "'registry",
    );
    assert_error(
        "CREATE CONNECTION r TO CONFLUENT SCHEMA REGISTRY (URL 'http://r', PASSWORD SECRET csr_password)",
        "PASSWORD requires USERNAME",
        "csr_password",
    );

    assert_error(
        "CREATE TABLE t (a bigintt)",
        "type \"bigintt\" does not exist",
        "bigintt",
    );
    assert_error(
        "CREATE TABLE t (a int, b text, A text)",
        "column \"a\" specified more than once",
        "A text",
    );
    assert_error(
        "CREATE TABLE t (a int, PRIMARY KEY (b))",
        "column \"b\" named in key does not exist",
        "b))",
    );
    assert_error(
        "CREATE TABLE t (a int PRIMARY KEY, b int, PRIMARY KEY (b))",
        "multiple primary keys for table \"t\" are not allowed",
        "PRIMARY KEY (b)",
    );
    assert_error(
        "CREATE TABLE t (a int DEFAULT 1)",
        "DEFAULT is not supported in CREATE TABLE",
        "DEFAULT",
    );
    assert_error(
        "CREATE CLUSTER c SIZE = 'huge'",
        "unknown cluster size 'huge'",
        "'huge'",
    );
    assert_error(
        "CREATE CLUSTER c (REPLICATION FACTOR 2)",
        "unknown CLUSTER option: REPLICATION FACTOR",
        "REPLICATION",
    );
}

#[test]
fn duplicate_names_unless_if_not_exists() {
    assert_error(
        "CREATE TABLE orders (a int)",
        "table \"orders\" already exists",
        "orders",
    );
    assert_error(
        "CREATE SECRET orders AS 'hunter2'",
        "table \"orders\" already exists",
        "orders",
    );
    assert_error(
        &format!("CREATE SINK orders FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') {JSON_UPSERT}"),
        "table \"orders\" already exists",
        "orders",
    );
    assert_error(
        "CREATE CONNECTION kafka_connection TO KAFKA (BROKER 'a:1')",
        "connection \"kafka_connection\" already exists",
        "kafka_connection",
    );
    assert_error(
        "CREATE CLUSTER sink_cluster SIZE 'small'",
        "cluster \"sink_cluster\" already exists",
        "sink_cluster",
    );

    let mut catalog = catalog();
    let sql = "CREATE TABLE IF NOT EXISTS orders (a int);\nCREATE SECRET IF NOT EXISTS kafka_password AS 'other';";
    let notices = catalog.execute_sql(sql).unwrap();
    let messages: Vec<(&str, u32, u32)> = notices
        .iter()
        .map(|n| {
            (
                n.message.as_str(),
                n.position.unwrap().line,
                n.position.unwrap().column,
            )
        })
        .collect();
    assert_eq!(
        messages,
        [
            ("table \"orders\" already exists, skipping", 1, 28),
            ("secret \"kafka_password\" already exists, skipping", 2, 29)
        ]
    );
    assert_eq!(
        catalog.secret("kafka_password").unwrap().value.expose(),
        "hunter2-kafka",
        "the first definition stays"
    );
    assert!(catalog.table("orders").unwrap().desc.arity() > 1);
}

#[test]
fn lexical_and_syntax_errors() {
    assert_error(
        "CREATE TABLE t (a text);\nCREATE SECRET s AS 'never closed",
        "unterminated quoted string",
        "'never",
    );
    assert_error(
        "CREATE SINK s FROM orders INTO KAFKA (TOPIC 't')",
        "expected CONNECTION, found \"(\"",
        "(TOPIC",
    );
    assert_error(
        "CREATE SOURCE s FROM KAFKA CONNECTION k (TOPIC 't')",
        "unsupported statement: CREATE SOURCE",
        "CREATE",
    );
    assert_error(
        "CREATE VIEW v AS SELECT 1",
        "CREATE VIEW is not supported",
        "CREATE",
    );
    assert_error("DROP SINK s", "unsupported statement: DROP", "DROP");
    assert_error(
        "CREATE TABLE t (a int) CREATE TABLE u (b int)",
        "expected \";\" at the end of the statement, found identifier \"create\"",
        "CREATE TABLE u",
    );
}

#[test]
fn secrets_never_print() {
    let mut catalog = catalog();
    catalog
        .execute_sql(
            "CREATE SECRET pem AS 'hunter2';
             CREATE CONNECTION tls TO KAFKA (BROKER 'b:1', SSL KEY = SECRET pem, SSL CERTIFICATE = SECRET pem,
                 SASL MECHANISMS PLAIN, SASL USERNAME SECRET pem, SASL PASSWORD SECRET pem);",
        )
        .unwrap();
    let printed_debug = format!("{catalog:?}");
    let printed_json: Vec<String> = catalog
        .objects()
        .map(|o| serde_json::to_string(&o).unwrap())
        .collect();
    let statements = format!(
        "{:?}",
        parse_statements("CREATE SECRET s AS 'hunter2';").unwrap()
    );
    let spec = format!(
        "{:?} {}",
        catalog.secret("pem").unwrap(),
        catalog.secret("pem").unwrap().value
    );
    for printed in [&printed_debug, &printed_json.join("\n"), &statements, &spec] {
        for secret in SECRET_VALUES {
            assert!(!printed.contains(secret), "{printed}");
        }
    }
    assert!(printed_json
        .iter()
        .any(|j| j.contains("\"ssl_key\":{\"secret\":\"pem\"}")));
    assert_eq!(catalog.secret("pem").unwrap().value.expose(), "hunter2");

    // Errors about secret-bearing statements name the option, never the value.
    for sql in [
        "CREATE SECRET s 'hunter2'",
        "CREATE SECRET s AS 'hunter2' 'hunter2'",
        "CREATE SECRET kafka_password AS 'hunter2'",
        "CREATE CONNECTION k TO KAFKA (BROKER 'b:1', SASL PASSWORD = 'hunter2')",
        "CREATE CONNECTION k TO KAFKA (BROKER 'b:1', SSL KEY = 'hunter2')",
        "CREATE CONNECTION r TO CONFLUENT SCHEMA REGISTRY (URL 'http://r', PASSWORD 'hunter2')",
    ] {
        let err = catalog.execute_sql(sql).unwrap_err();
        let rendered = format!("{} {err:?}", err.render("f.sql"));
        assert!(!rendered.contains("hunter2"), "{rendered}");
    }
    let err = catalog
        .execute_sql("CREATE CONNECTION k TO KAFKA (BROKER 'b:1', SASL PASSWORD = 'hunter2')")
        .unwrap_err();
    assert_eq!(err.message, "SASL PASSWORD must be a SECRET");
}

fn orders_desc() -> RelationDesc {
    catalog().table("orders").unwrap().desc.clone()
}

#[test]
fn builders_produce_the_statements_specs() {
    let from_sql = sink(
        "CREATE SINK regional IN CLUSTER sink_cluster FROM orders INTO KAFKA CONNECTION kafka_connection (
            TOPIC 'regional', TOPIC PARTITION COUNT 6, TOPIC CONFIG MAP['cleanup.policy' => 'compact'],
            PARTITION BY = kafka_murmur2(region), COMPRESSION TYPE zstd, TRANSACTIONAL ID PREFIX 'tx-',
            TOPIC METADATA REFRESH INTERVAL '1 minute')
         KEY (customer_id, region)
         HEADERS headers
         FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr_connection (
            VALUE COMPATIBILITY LEVEL 'BACKWARD', DOC ON COLUMN orders.region = 'Sales region')
         ENVELOPE UPSERT
         WITH (DELIVERY GUARANTEE 'at-least-once')",
    );
    let avro = FormatSpec::Avro(AvroFormatSpec {
        registry: "csr_connection".into(),
        key_compatibility: None,
        value_compatibility: Some(CompatibilityLevel::Backward),
        key_subject_name_strategy: Default::default(),
        value_subject_name_strategy: Default::default(),
        key_fullname: None,
        value_fullname: None,
        null_defaults: false,
        docs: vec![DocComment {
            target: DocTarget::Column {
                relation: "orders".into(),
                column: "region".into(),
            },
            scope: DocScope::Both,
            text: "Sales region".into(),
        }],
    });
    let built = SinkSpec::builder("regional", orders_desc())
        .from_relation("orders")
        .in_cluster("sink_cluster")
        .connection("kafka_connection")
        .topic("regional")
        .topic_partition_count(6)
        .topic_config("cleanup.policy", "compact")
        .partition_by("kafka_murmur2(region)")
        .compression(Compression::Zstd)
        .transactional_id_prefix("tx-")
        .topic_metadata_refresh_interval(Duration::from_secs(60))
        .key(["customer_id", "region"])
        .headers("headers")
        .format(avro)
        .envelope(Envelope::Upsert)
        .delivery(DeliveryGuarantee::AtLeastOnce)
        .build()
        .unwrap();
    assert_eq!(built, from_sql);
    assert_eq!(
        serde_json::to_value(&built).unwrap(),
        serde_json::to_value(&from_sql).unwrap()
    );

    // A catalog accepts the built spec after the same reference checks.
    let mut catalog = catalog();
    catalog.add_sink(built.clone()).unwrap();
    let err = catalog.add_sink(built.clone()).unwrap_err();
    assert_eq!(err.message, "sink \"regional\" already exists");
    let mut elsewhere = built;
    elsewhere.name = "elsewhere".into();
    elsewhere.connection = "csr_connection".into();
    assert_eq!(
        catalog.add_sink(elsewhere).unwrap_err().message,
        "\"csr_connection\" is not a kafka connection"
    );

    // The builder runs the statement's validation, without positions.
    let err = SinkSpec::builder("s", orders_desc())
        .connection("kafka_connection")
        .topic("t")
        .key(["status"])
        .format(FormatSpec::Json)
        .envelope(Envelope::Upsert)
        .build()
        .unwrap_err();
    assert_eq!(err.message, "upsert key could not be validated as unique");
    assert_eq!(err.position, None);
    assert!(err
        .detail
        .unwrap()
        .contains("key (\"status\") was a unique key of the underlying relation."));
    let err = SinkSpec::builder("s", orders_desc())
        .connection("kafka_connection")
        .topic("t")
        .key(["order_id"])
        .partition_by("kafka_murmur2(region)")
        .format(FormatSpec::Json)
        .envelope(Envelope::Debezium)
        .build()
        .unwrap_err();
    assert_eq!(
        err.message,
        "PARTITION BY expression cannot refer to non-key column \"region\""
    );
    assert_eq!(
        err.position.map(|p| p.column),
        Some(15),
        "counted in the expression's own text"
    );
    let err = SinkSpec::builder("s", orders_desc())
        .topic("t")
        .format(FormatSpec::Json)
        .envelope(Envelope::Debezium)
        .build();
    assert_eq!(
        err.unwrap_err().message,
        "sink must name a KAFKA CONNECTION"
    );

    // The other objects, built and added in Rust.
    let mut rust = Catalog::new();
    rust.add_secret(SecretSpec::new("pw", Secret::new("hunter2")))
        .unwrap();
    let connection = ConnectionSpec::builder("k")
        .broker("b:9092")
        .sasl_mechanism(SaslMechanism::Plain)
        .sasl_username("u")
        .sasl_password("pw")
        .build()
        .unwrap();
    rust.add_connection(connection.clone()).unwrap();
    rust.add_cluster(ClusterSpec::new("c", "small").unwrap())
        .unwrap();
    let table = TableSpec::builder("t")
        .column("id", ScalarType::Int64, false)
        .primary_key(["id"])
        .build()
        .unwrap();
    rust.add_table(table.clone()).unwrap();
    let unknown_secret = ConnectionSpec::builder("k2")
        .broker("b:1")
        .ssl_key("nope")
        .ssl_certificate("c")
        .build()
        .unwrap();
    assert_eq!(
        rust.add_connection(unknown_secret).unwrap_err().message,
        "unknown catalog item 'nope'"
    );

    let sql = Catalog::from_sql(
        "CREATE SECRET pw AS 'hunter2';
         CREATE CONNECTION k TO KAFKA (BROKER 'b:9092', SASL MECHANISMS PLAIN, SASL USERNAME 'u', SASL PASSWORD SECRET pw);
         CREATE CLUSTER c SIZE 'small';
         CREATE TABLE t (id bigint PRIMARY KEY);",
    )
    .unwrap();
    let as_json = |c: &Catalog| {
        c.objects()
            .map(|o| serde_json::to_string(&o).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(as_json(&rust), as_json(&sql));
    assert_eq!(sql.connection("k"), Some(&connection));
    assert_eq!(sql.table("t"), Some(&table));
}

/// Validation names what it blames; only a statement has the text to place it in.
#[test]
fn errors_name_their_site_and_statements_place_it() {
    let built = SinkSpec::builder("s", orders_desc())
        .connection("kafka_connection")
        .topic("t")
        .topic_partition_count(0)
        .format(FormatSpec::Json)
        .envelope(Envelope::Debezium)
        .build()
        .unwrap_err();
    assert_eq!(
        built.site,
        Some(Site::SinkOption(SinkOption::TopicPartitionCount))
    );
    assert_eq!(built.position, None);
    let sql = "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection \
               (TOPIC 't', TOPIC PARTITION COUNT 0) FORMAT JSON ENVELOPE DEBEZIUM";
    let err = assert_error(sql, &built.message, "0)");
    assert_eq!(err.site, built.site);

    for (builder, option) in [
        (
            ConnectionSpec::builder("k").broker("a:1,b:2"),
            KafkaConnectionOption::Broker,
        ),
        (
            ConnectionSpec::builder("k").brokers(["a:1", "b:"]),
            KafkaConnectionOption::Brokers,
        ),
    ] {
        let err = builder.build().unwrap_err();
        assert_eq!(err.site, Some(Site::KafkaOption(option)), "{}", err.message);
        assert_eq!(err.position, None);
    }

    let mut catalog = catalog();
    let missing = ConnectionSpec::builder("k2")
        .broker("b:9092")
        .sasl_mechanism(SaslMechanism::Plain)
        .sasl_username("u")
        .sasl_password("nope")
        .build()
        .unwrap();
    let err = catalog.add_connection(missing).unwrap_err();
    assert_eq!(err.message, "unknown catalog item 'nope'");
    assert_eq!(
        err.site,
        Some(Site::KafkaOption(KafkaConnectionOption::SaslPassword))
    );
    assert_eq!(err.position, None);
}

#[test]
fn partition_by_evaluates_on_rows() {
    let text = std::fs::read_to_string(fixture("guide.sql")).unwrap();
    let catalog = Catalog::from_sql(&text).unwrap();
    let partitioned = catalog.sink("partitioned_sink").unwrap();
    let expr = partitioned.partition_by.as_ref().unwrap();
    // orders: order_id, customer_id, order_date, order_timestamp, region, total, status
    let desc = &partitioned.desc;
    assert_eq!(desc.arity(), 7);
    let row = Row::pack([
        Datum::Int64(1001),
        Datum::Int64(456),
        Datum::Null,
        Datum::Null,
        Datum::String("emea"),
        Datum::Null,
        Datum::String("completed"),
    ]);
    let hash = expr.partition_hash(&row);
    assert_eq!(hash, Some(kafka_murmur2(b"456") as u64));
    assert_eq!(partition_for(hash, 6), kafka_murmur2(b"456") % 6);
    assert_eq!(expr.columns(), [1]);

    let by_region = catalog
        .sink("sales_metrics")
        .unwrap()
        .partition_by
        .clone()
        .unwrap();
    let null_region = Row::pack([
        Datum::Null,
        Datum::Null,
        Datum::Int64(3),
        Datum::Null,
        Datum::Null,
    ]);
    assert_eq!(by_region.partition_hash(&null_region), None);
    assert_eq!(partition_for(by_region.partition_hash(&null_region), 6), 0);
}

#[test]
fn catalog_objects_print_in_creation_order() {
    let catalog = catalog();
    let kinds: Vec<(String, String)> = catalog
        .objects()
        .map(|o| {
            let json = serde_json::to_value(o).unwrap();
            (
                json["kind"].as_str().unwrap().to_string(),
                o.name().to_string(),
            )
        })
        .collect();
    let expected = [
        ("secret", "kafka_password"),
        ("secret", "csr_password"),
        ("secret", "client_key"),
        ("kafka_connection", "kafka_connection"),
        ("schema_registry_connection", "csr_connection"),
        ("table", "orders"),
        ("table", "events"),
        ("table", "single"),
        ("cluster", "sink_cluster"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, n)| (k.to_string(), n.to_string()))
        .collect();
    assert_eq!(kinds, expected);
    assert!(matches!(
        catalog.objects().nth(5),
        Some(CatalogObject::Table(_))
    ));
}

/// Every prefix of the guide, cut at any character, is either accepted or an error with a
/// position: never a panic.
#[test]
fn truncated_statements_are_errors_not_panics() {
    let text = std::fs::read_to_string(fixture("guide.sql")).unwrap();
    let cuts: Vec<usize> = text.char_indices().map(|(i, _)| i).step_by(7).collect();
    for cut in cuts {
        if let Err(err) = Catalog::new().execute_sql(&text[..cut]) {
            assert!(
                err.position.is_some(),
                "no position for {:?} at {cut}",
                err.message
            );
        }
    }
}

const WORDS: &[&str] = &[
    "CREATE",
    "SINK",
    "TABLE",
    "SECRET",
    "CONNECTION",
    "CLUSTER",
    "TO",
    "KAFKA",
    "CONFLUENT",
    "SCHEMA",
    "REGISTRY",
    "FROM",
    "INTO",
    "KEY",
    "FORMAT",
    "VALUE",
    "ENVELOPE",
    "UPSERT",
    "DEBEZIUM",
    "WITH",
    "TOPIC",
    "PARTITION",
    "BY",
    "COUNT",
    "AVRO",
    "JSON",
    "TEXT",
    "BYTES",
    "USING",
    "DOC",
    "ON",
    "TYPE",
    "COLUMN",
    "NOT",
    "NULL",
    "PRIMARY",
    "UNIQUE",
    "SIZE",
    "AS",
    "MAP",
    "SECRET",
    "orders",
    "order_id",
    "region",
    "kafka_connection",
    "csr_connection",
    "bigint",
    "text",
    "kafka_murmur2",
    "crc32",
    "'t'",
    "'x'",
    "''",
    "0",
    "-1",
    "6",
    "1.5",
    "(",
    ")",
    "[",
    "]",
    ",",
    ";",
    "=",
    "=>",
    "::",
    "||",
    ".",
    "\"q\"",
    "*",
    "'",
];

/// Beginnings that get the parser past the statement keyword, so the soup reaches options.
const STARTS: &[&str] = &[
    "",
    "CREATE TABLE t (",
    "CREATE CONNECTION c TO KAFKA (",
    "CREATE CONNECTION c TO CONFLUENT SCHEMA REGISTRY (",
    "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't',",
    "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id)",
    "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't', PARTITION BY =",
    "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr_connection (",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random token soup after the prelude never panics, and an error always has a position.
    #[test]
    fn random_statements_never_panic(start in 0..STARTS.len(), tokens in proptest::collection::vec(0..WORDS.len(), 0..40)) {
        let sql: Vec<&str> = std::iter::once(STARTS[start]).chain(tokens.iter().map(|&i| WORDS[i])).collect();
        let sql = sql.join(" ");
        if let Err(err) = catalog().execute_sql(&sql) {
            prop_assert!(err.position.is_some(), "{sql}: {}", err.message);
        }
    }

    /// Valid sinks with one token removed are rejected or accepted, never a panic.
    #[test]
    fn damaged_sinks_never_panic(skip in 0usize..40) {
        let sql = "CREATE SINK s IN CLUSTER sink_cluster FROM orders INTO KAFKA CONNECTION kafka_connection ( TOPIC 't' , PARTITION BY = crc32 ( region || order_id :: text ) ) KEY ( order_id ) HEADERS headers FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr_connection ( DOC ON COLUMN orders . region = 'r' ) ENVELOPE UPSERT";
        let words: Vec<&str> = sql.split(' ').collect();
        let damaged: Vec<&str> = words.iter().enumerate().filter(|(i, _)| *i != skip % words.len()).map(|(_, w)| *w).collect();
        let damaged = damaged.join(" ");
        if let Err(err) = catalog().execute_sql(&damaged) {
            prop_assert!(err.position.is_some(), "{damaged}: {}", err.message);
        }
    }
}

const OAUTH_PRELUDE: &str = "CREATE SECRET oauth_secret AS 'hunter2';
CREATE SECRET key_passphrase AS 'hunter2';";

#[test]
fn oauthbearer_connections() {
    let mut catalog = catalog();
    catalog
        .execute_sql(&format!(
            "{OAUTH_PRELUDE}
             CREATE CONNECTION cloud TO KAFKA (
                 BROKER 'pkc-1.example.com:9092',
                 SASL MECHANISMS = 'OAUTHBEARER',
                 SASL OAUTHBEARER TOKEN ENDPOINT = 'https://idp.example.com/oauth2/token',
                 SASL OAUTHBEARER CLIENT ID = 'outflow',
                 SASL OAUTHBEARER CLIENT SECRET = SECRET oauth_secret,
                 SASL OAUTHBEARER SCOPE = 'kafka'
             );"
        ))
        .unwrap();
    let connection = catalog.connection("cloud").unwrap();
    assert_eq!(connection.security_protocol, SecurityProtocol::SaslSsl);
    assert!(connection.sasl.is_none());
    let Some(OAuthBearerSpec::ClientCredentials(oauth)) = &connection.oauthbearer else {
        panic!("no client credentials: {connection:?}")
    };
    assert_eq!(oauth.token_endpoint, "https://idp.example.com/oauth2/token");
    assert_eq!(oauth.client_id, StringOrSecret::Value("outflow".into()));
    assert_eq!(oauth.client_secret.name(), "oauth_secret");
    assert_eq!(oauth.scope.as_deref(), Some("kafka"));
    let built = ConnectionSpec::builder("cloud")
        .broker("pkc-1.example.com:9092")
        .sasl_mechanism(SaslMechanism::OAuthBearer)
        .oauthbearer_token_endpoint("https://idp.example.com/oauth2/token")
        .oauthbearer_client_id("outflow")
        .oauthbearer_client_secret("oauth_secret")
        .oauthbearer_scope("kafka")
        .build()
        .unwrap();
    assert_eq!(&built, connection);
    let json = serde_json::to_string(&CatalogObject::KafkaConnection(connection)).unwrap();
    assert!(
        json.contains("\"client_secret\":{\"secret\":\"oauth_secret\"}"),
        "{json}"
    );
    assert!(!json.contains("hunter2"), "{json}");

    let with = |options: &str| {
        format!(
            "{OAUTH_PRELUDE}\nCREATE CONNECTION k TO KAFKA (BROKER 'b:1', SASL MECHANISMS = 'OAUTHBEARER', {options})"
        )
    };
    assert_error(
        &with("SASL OAUTHBEARER CLIENT ID 'c', SASL OAUTHBEARER CLIENT SECRET SECRET oauth_secret"),
        "SASL MECHANISMS OAUTHBEARER requires SASL OAUTHBEARER TOKEN ENDPOINT",
        "'OAUTHBEARER'",
    );
    assert_error(
        &with("SASL OAUTHBEARER TOKEN ENDPOINT 'https://idp/t', SASL OAUTHBEARER CLIENT ID 'c'"),
        "SASL MECHANISMS OAUTHBEARER requires SASL OAUTHBEARER CLIENT SECRET",
        "'OAUTHBEARER'",
    );
    assert_error(
        &with("SASL OAUTHBEARER TOKEN ENDPOINT 'https://idp/t', SASL OAUTHBEARER CLIENT ID 'c', SASL OAUTHBEARER CLIENT SECRET 'in-the-clear'"),
        "SASL OAUTHBEARER CLIENT SECRET must be a SECRET",
        "'in-the-clear'",
    );
    assert_error(
        &with("SASL OAUTHBEARER TOKEN ENDPOINT 'idp/token', SASL OAUTHBEARER CLIENT ID 'c', SASL OAUTHBEARER CLIENT SECRET SECRET oauth_secret"),
        "invalid SASL OAUTHBEARER TOKEN ENDPOINT 'idp/token': expected an http:// or https:// URL",
        "'idp/token'",
    );
    assert_error(
        &with("SASL OAUTHBEARER TOKEN ENDPOINT 'https://idp/t', SASL OAUTHBEARER CLIENT ID 'c', SASL OAUTHBEARER CLIENT SECRET SECRET nope"),
        "unknown catalog item 'nope'",
        "nope",
    );
    assert_error(
        &with("SASL USERNAME 'u', SASL OAUTHBEARER TOKEN ENDPOINT 'https://idp/t'"),
        "SASL USERNAME cannot be used with SASL MECHANISMS OAUTHBEARER",
        "'u'",
    );
    assert_error(
        &format!("{OAUTH_PRELUDE}\nCREATE CONNECTION k TO KAFKA (BROKER 'b:1', SASL MECHANISMS = 'SCRAM-SHA-256', SASL USERNAME 'u', SASL PASSWORD SECRET oauth_secret, SASL OAUTHBEARER SCOPE 'kafka')"),
        "SASL OAUTHBEARER SCOPE cannot be used with SASL MECHANISMS SCRAM-SHA-256",
        "'kafka'",
    );
    assert_error(
        &format!("{OAUTH_PRELUDE}\nCREATE CONNECTION k TO KAFKA (BROKER 'b:1', SECURITY PROTOCOL SSL, SASL OAUTHBEARER TOKEN ENDPOINT 'https://idp/t')"),
        "SASL OAUTHBEARER TOKEN ENDPOINT cannot be used with SECURITY PROTOCOL SSL",
        "'https://idp/t'",
    );
    // Unsigned tokens made by librdkafka itself, for development brokers: no endpoint then.
    catalog
        .execute_sql(
            "CREATE SECRET principal AS 'principal=admin';
             CREATE CONNECTION dev TO KAFKA (BROKER 'b:1', SECURITY PROTOCOL SASL_PLAINTEXT,
                 SASL MECHANISMS OAUTHBEARER,
                 LIBRDKAFKA OPTIONS ('enable.sasl.oauthbearer.unsecure.jwt' = 'true',
                                     'sasl.oauthbearer.config' = SECRET principal));",
        )
        .unwrap();
    assert_eq!(
        catalog.connection("dev").unwrap().oauthbearer,
        Some(OAuthBearerSpec::Unsecured)
    );
    assert_error(
        &with("SASL OAUTHBEARER TOKEN ENDPOINT 'https://idp/t', LIBRDKAFKA OPTIONS ('enable.sasl.oauthbearer.unsecure.jwt' = 'true')"),
        "SASL OAUTHBEARER TOKEN ENDPOINT cannot be used with LIBRDKAFKA OPTIONS 'enable.sasl.oauthbearer.unsecure.jwt' = 'true'",
        "'https://idp/t'",
    );
}

#[test]
fn librdkafka_options_pass_allowed_settings_and_refuse_outflows_own() {
    let mut catalog = catalog();
    catalog
        .execute_sql(&format!(
            "{OAUTH_PRELUDE}
             CREATE CONNECTION k TO KAFKA (BROKER 'b:1',
                 LIBRDKAFKA OPTIONS ('client.id' = 'outflow-orders', 'socket.keepalive.enable' = 'true',
                                     'ssl.key.password' = SECRET key_passphrase));"
        ))
        .unwrap();
    let connection = catalog.connection("k").unwrap();
    let options: Vec<(&str, &StringOrSecret)> = connection
        .librdkafka_options
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    assert_eq!(
        options,
        [
            ("client.id", &StringOrSecret::Value("outflow-orders".into())),
            (
                "socket.keepalive.enable",
                &StringOrSecret::Value("true".into())
            ),
            (
                "ssl.key.password",
                &StringOrSecret::secret("key_passphrase")
            ),
        ]
    );
    let built = ConnectionSpec::builder("k")
        .broker("b:1")
        .librdkafka_option("socket.keepalive.enable", "true")
        .librdkafka_option("client.id", "outflow-orders")
        .librdkafka_option("ssl.key.password", StringOrSecret::secret("key_passphrase"))
        .build()
        .unwrap();
    assert_eq!(&built, connection);
    // `outflow check` prints the secret's name, never its value.
    let json = serde_json::to_string(&CatalogObject::KafkaConnection(connection)).unwrap();
    assert!(
        json.contains(
            "\"librdkafka_options\":{\"client.id\":\"outflow-orders\",\"socket.keepalive.enable\":\"true\",\"ssl.key.password\":{\"secret\":\"key_passphrase\"}}"
        ),
        "{json}"
    );
    assert!(!format!("{json} {catalog:?}").contains("hunter2"));
    // `outflow run --broker` points the connection at a local plaintext broker: settings about
    // TLS and SASL go, the others stay.
    let mut redirected = catalog.clone();
    redirected.redirect(Some("127.0.0.1:9092"), None);
    let options: Vec<&str> = redirected
        .connection("k")
        .unwrap()
        .librdkafka_options
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(options, ["client.id", "socket.keepalive.enable"]);

    let with = |settings: &str| {
        format!("{OAUTH_PRELUDE}\nCREATE CONNECTION k2 TO KAFKA (BROKER 'b:1', LIBRDKAFKA OPTIONS ({settings}))")
    };
    let err = assert_error(
        &with("'client.id' = 'x', 'transactional.id' = 'mine'"),
        "LIBRDKAFKA OPTIONS cannot set 'transactional.id': Outflow sets it from the sink's TRANSACTIONAL ID PREFIX",
        "'transactional.id'",
    );
    assert_eq!(err.site, None);
    assert_error(
        &with("'enable.idempotence' = 'false'"),
        "LIBRDKAFKA OPTIONS cannot set 'enable.idempotence': Outflow sets it from the sink's DELIVERY GUARANTEE",
        "'enable.idempotence'",
    );
    assert_error(
        &with("'bootstrap.servers' = 'elsewhere:9092'"),
        "LIBRDKAFKA OPTIONS cannot set 'bootstrap.servers': Outflow sets it from the connection's BROKER or BROKERS",
        "'bootstrap.servers'",
    );
    assert_error(
        &with("'sasl.oauthbearer.client.secret' = SECRET oauth_secret"),
        "LIBRDKAFKA OPTIONS cannot set 'sasl.oauthbearer.client.secret': Outflow sets it from the connection's SASL OAUTHBEARER CLIENT SECRET",
        "'sasl.oauthbearer.client.secret'",
    );
    let err = assert_error(
        &with("'enable.ssl.certificate.verification' = 'false'"),
        "LIBRDKAFKA OPTIONS cannot set 'enable.ssl.certificate.verification': it is not one of the settings a connection may pass through",
        "'enable.ssl.certificate.verification'",
    );
    assert!(err.hint.unwrap().contains("client.id, client.rack"));
    assert_error(
        &with("'ssl.key.password' = 'hunter2'"),
        "LIBRDKAFKA OPTIONS 'ssl.key.password' must be a SECRET",
        "'ssl.key.password'",
    );
    assert_error(
        &with("'client.id' = 'a', 'client.id' = 'b'"),
        "LIBRDKAFKA OPTIONS sets 'client.id' more than once",
        "'client.id' = 'b'",
    );
    assert_error(
        &with("'client.id' = SECRET missing"),
        "unknown catalog item 'missing'",
        "missing",
    );
    assert_error(
        &with("'socket.timeout.ms' = 30000"),
        "expected a string or SECRET name for 'socket.timeout.ms' in LIBRDKAFKA OPTIONS, found number 30000",
        "30000",
    );
    assert_error(
        &with("client.id = 'x'"),
        "expected a quoted setting name for LIBRDKAFKA OPTIONS, found identifier \"client\"",
        "client.id",
    );
    // The builder runs the same checks, blaming the option.
    let err = ConnectionSpec::builder("k")
        .broker("b:1")
        .librdkafka_option("linger.ms", "100")
        .build()
        .unwrap_err();
    assert_eq!(
        err.message,
        "LIBRDKAFKA OPTIONS cannot set 'linger.ms': Outflow sets it from the sink's producer (its batching is part of the commit cadence)"
    );
    assert_eq!(
        err.site,
        Some(Site::KafkaOption(KafkaConnectionOption::LibrdkafkaOptions))
    );
}

#[test]
fn subject_name_strategies() {
    let spec = sink(
        "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 'orders') KEY (order_id)
         FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr_connection (
             KEY SUBJECT NAME STRATEGY = 'RecordNameStrategy',
             VALUE SUBJECT NAME STRATEGY = 'topic-record',
             AVRO KEY FULLNAME = 'com.shop.OrderKey',
             AVRO VALUE FULLNAME = 'com.shop.Order',
             VALUE COMPATIBILITY LEVEL = 'FULL'
         ) ENVELOPE UPSERT",
    );
    let FormatSpec::Avro(avro) = &spec.value_format else {
        panic!("not Avro")
    };
    assert_eq!(avro.key_subject_name_strategy, SubjectNameStrategy::Record);
    assert_eq!(
        avro.value_subject_name_strategy,
        SubjectNameStrategy::TopicRecord
    );
    assert_eq!(
        spec.registry_subjects(),
        [
            (Part::Key, "com.shop.OrderKey".to_string()),
            (Part::Value, "orders-com.shop.Order".to_string())
        ]
    );
    // The default is Confluent's TopicNameStrategy.
    let plain = sink(
        "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 'orders') KEY (order_id)
         FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr_connection ENVELOPE UPSERT",
    );
    assert_eq!(
        plain.registry_subjects(),
        [
            (Part::Key, "orders-key".to_string()),
            (Part::Value, "orders-value".to_string())
        ]
    );
    for (text, strategy) in [
        ("topic", SubjectNameStrategy::Topic),
        ("TopicNameStrategy", SubjectNameStrategy::Topic),
        ("RECORD", SubjectNameStrategy::Record),
        ("topic_record", SubjectNameStrategy::TopicRecord),
        ("TopicRecordNameStrategy", SubjectNameStrategy::TopicRecord),
    ] {
        let spec = sink(&format!(
            "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 'orders') KEY (order_id)
             KEY FORMAT JSON VALUE FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr_connection
             (VALUE SUBJECT NAME STRATEGY '{text}') ENVELOPE UPSERT"
        ));
        let FormatSpec::Avro(avro) = &spec.value_format else {
            panic!("not Avro")
        };
        assert_eq!(avro.value_subject_name_strategy, strategy, "{text}");
    }
    let err = assert_error(
        "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 'orders') KEY (order_id)
         FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr_connection (KEY SUBJECT NAME STRATEGY 'subject')
         ENVELOPE UPSERT",
        "invalid KEY SUBJECT NAME STRATEGY: subject",
        "'subject'",
    );
    assert_eq!(
        err.hint.as_deref(),
        Some("the strategies are topic (TopicNameStrategy), record (RecordNameStrategy), topic-record (TopicRecordNameStrategy)")
    );
}

#[test]
fn debezium_envelope_options() {
    let plain = sink("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) FORMAT JSON ENVELOPE DEBEZIUM");
    assert_eq!(plain.debezium, DebeziumOptions::default());
    assert_eq!(plain.debezium_clause(), "DEBEZIUM");

    let full = sink("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) FORMAT JSON ENVELOPE DEBEZIUM (FULL)");
    assert_eq!(
        full.debezium,
        DebeziumOptions {
            full: true,
            tombstones_on_delete: false
        }
    );
    assert_eq!(full.debezium_clause(), "DEBEZIUM (FULL)");

    let both = sink("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) FORMAT JSON ENVELOPE DEBEZIUM (FULL = true, TOMBSTONES ON DELETE) WITH (SNAPSHOT = false)");
    assert_eq!(
        both.debezium,
        DebeziumOptions {
            full: true,
            tombstones_on_delete: true
        }
    );
    assert_eq!(
        both.debezium_clause(),
        "DEBEZIUM (FULL, TOMBSTONES ON DELETE)"
    );
    assert!(!both.snapshot);

    let off = sink("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) FORMAT JSON ENVELOPE DEBEZIUM (FULL = false, TOMBSTONES ON DELETE = false)");
    assert_eq!(off.debezium, DebeziumOptions::default());

    // The same through the builder.
    let built = SinkSpec::builder("s", orders_desc())
        .from_relation("orders")
        .connection("kafka_connection")
        .topic("t")
        .key(["order_id"])
        .format(FormatSpec::Json)
        .envelope(Envelope::Debezium)
        .debezium_options(DebeziumOptions {
            full: true,
            tombstones_on_delete: true,
        })
        .snapshot(false)
        .build()
        .unwrap();
    assert_eq!(built.debezium, both.debezium);

    // The options name themselves in the normalized spec only when set.
    let printed = serde_json::to_value(&both).unwrap();
    assert_eq!(
        printed["debezium"],
        serde_json::json!({"full": true, "tombstones_on_delete": true})
    );
    assert!(serde_json::to_value(&plain)
        .unwrap()
        .get("debezium")
        .is_none());
}

#[test]
fn debezium_envelope_option_errors() {
    let sql = "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) FORMAT JSON ENVELOPE UPSERT (FULL)";
    let err = assert_error(
        sql,
        "FULL is an option of ENVELOPE DEBEZIUM; ENVELOPE UPSERT takes no options",
        "FULL)",
    );
    assert!(err
        .hint
        .as_deref()
        .unwrap_or("")
        .contains("ENVELOPE DEBEZIUM"));
    // Even an option set to false: UPSERT has none.
    let sql = "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) FORMAT JSON ENVELOPE UPSERT (TOMBSTONES ON DELETE = false)";
    assert_error(
        sql,
        "TOMBSTONES ON DELETE is an option of ENVELOPE DEBEZIUM; ENVELOPE UPSERT takes no options",
        "TOMBSTONES",
    );
    let sql = "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') FORMAT JSON ENVELOPE DEBEZIUM (TOMBSTONES ON DELETE)";
    assert_error(
        sql,
        "TOMBSTONES ON DELETE needs a KEY: a tombstone is a message with a key and a null value",
        "TOMBSTONES",
    );
    let sql = "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) FORMAT JSON ENVELOPE DEBEZIUM (FULLER)";
    let err = assert_error(sql, "unknown ENVELOPE option: FULLER", "FULLER");
    assert_eq!(
        err.hint.as_deref(),
        Some("the ENVELOPE options are FULL, TOMBSTONES ON DELETE")
    );
    let sql = "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) FORMAT JSON ENVELOPE DEBEZIUM (FULL, FULL)";
    assert_error(sql, "FULL specified more than once", "FULL)");
    let sql = "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) FORMAT JSON ENVELOPE DEBEZIUM (FULL = 'yes')";
    assert_error(
        sql,
        "expected true or false for FULL, found a string literal",
        "'yes'",
    );

    // The builder blames the option.
    for (options, option, message) in [
        (
            DebeziumOptions {
                full: true,
                tombstones_on_delete: false,
            },
            DebeziumEnvelopeOption::Full,
            "FULL is an option of ENVELOPE DEBEZIUM; ENVELOPE UPSERT takes no options",
        ),
        (
            DebeziumOptions {
                full: false,
                tombstones_on_delete: true,
            },
            DebeziumEnvelopeOption::TombstonesOnDelete,
            "TOMBSTONES ON DELETE is an option of ENVELOPE DEBEZIUM; ENVELOPE UPSERT takes no options",
        ),
    ] {
        let err = SinkSpec::builder("s", orders_desc())
            .connection("kafka_connection")
            .topic("t")
            .key(["order_id"])
            .format(FormatSpec::Json)
            .envelope(Envelope::Upsert)
            .debezium_options(options)
            .build()
            .unwrap_err();
        assert_eq!(err.message, message);
        assert_eq!(err.site, Some(Site::EnvelopeOption(option)));
    }
    let err = SinkSpec::builder("s", orders_desc())
        .connection("kafka_connection")
        .topic("t")
        .format(FormatSpec::Json)
        .envelope(Envelope::Debezium)
        .debezium_options(DebeziumOptions {
            full: true,
            tombstones_on_delete: true,
        })
        .build()
        .unwrap_err();
    assert_eq!(
        err.site,
        Some(Site::EnvelopeOption(
            DebeziumEnvelopeOption::TombstonesOnDelete
        ))
    );
}

#[test]
fn json_with_an_embedded_schema() {
    let both = sink("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) FORMAT JSON (SCHEMAS ENABLED) ENVELOPE UPSERT");
    assert_eq!(
        (both.key_format, both.value_format),
        (Some(FormatSpec::JsonWithSchema), FormatSpec::JsonWithSchema)
    );
    let value_only = sink("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) KEY FORMAT JSON VALUE FORMAT JSON (SCHEMAS ENABLED = true) ENVELOPE DEBEZIUM (FULL)");
    assert_eq!(
        (value_only.key_format, value_only.value_format),
        (Some(FormatSpec::Json), FormatSpec::JsonWithSchema)
    );
    let off = sink("CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) FORMAT JSON (SCHEMAS ENABLED = false) ENVELOPE UPSERT");
    assert_eq!(off.value_format, FormatSpec::Json);
    assert_eq!(
        FormatSpec::JsonWithSchema.describe(),
        "JSON (SCHEMAS ENABLED)"
    );
    assert_eq!(
        serde_json::to_value(&FormatSpec::JsonWithSchema).unwrap(),
        serde_json::json!({"format": "json_with_schema"})
    );

    let sql = "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) FORMAT JSON (SCHEMA ENABLED) ENVELOPE UPSERT";
    let err = assert_error(sql, "unknown JSON option: SCHEMA ENABLED", "SCHEMA ENABLED");
    assert_eq!(
        err.hint.as_deref(),
        Some("the JSON options are SCHEMAS ENABLED")
    );
    let sql = "CREATE SINK s FROM orders INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (order_id) FORMAT JSON (SCHEMAS ENABLED 3) ENVELOPE UPSERT";
    assert_error(
        sql,
        "expected true or false for SCHEMAS ENABLED, found number 3",
        "3)",
    );
    // TEXT values still have no Debezium form, with or without a JSON key.
    let sql = "CREATE SINK s FROM single INTO KAFKA CONNECTION kafka_connection (TOPIC 't') KEY (v) KEY FORMAT JSON (SCHEMAS ENABLED) VALUE FORMAT TEXT ENVELOPE DEBEZIUM";
    assert!(catalog().execute_sql(sql).is_err());
}
