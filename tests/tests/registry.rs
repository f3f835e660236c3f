//! The schema registry client against the test registry over real HTTP: registration and ids,
//! caching, compatibility levels and their enforcement, and basic authentication.

use outflow::encoders::{
    CompatibilityLevel, RegistryConfig, RegistryError, SchemaRegistryClient, Secret,
    VersionSelector,
};
use outflow_tests::registry::{SchemaRegistry, TlsSettings};

fn client(registry: &SchemaRegistry) -> SchemaRegistryClient {
    SchemaRegistryClient::new(RegistryConfig::new(registry.url())).expect("a valid registry URL")
}

/// A record named `row` with the given field definitions (JSON, comma-separated).
fn row(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"row","fields":[{fields}]}}"#)
}

const KEY: &str = r#"{"type":"record","name":"row","fields":[{"name":"id","type":"long"}]}"#;

/// The Debezium value shape, with the `id` column of the given Avro type.
fn envelope(id_type: &str) -> String {
    format!(
        r#"{{"type":"record","name":"envelope","fields":[{{"name":"before","type":["null",{{"type":"record","name":"row","fields":[{{"name":"id","type":"{id_type}"}},{{"name":"name","type":["null","string"]}}]}}]}},{{"name":"after","type":["null","row"]}}]}}"#
    )
}

fn registrations(registry: &SchemaRegistry, subject: &str) -> usize {
    let register = format!("POST /subjects/{subject}/versions");
    registry
        .requests()
        .iter()
        .filter(|r| **r == register)
        .count()
}

#[test]
fn key_and_value_subjects_get_ids_and_schemas_read_back() {
    let registry = SchemaRegistry::start();
    let client = client(&registry);
    let value = envelope("long");

    let key_id = client.publish("orders-key", KEY, None).unwrap();
    let value_id = client.publish("orders-value", &value, None).unwrap();
    assert_ne!(key_id, value_id);
    assert_eq!(registry.subjects(), ["orders-key", "orders-value"]);

    // A fresh client has nothing cached, so these go to the registry.
    let reader = self::client(&registry);
    assert_eq!(reader.schema_by_id(key_id).unwrap(), KEY);
    assert_eq!(reader.schema_by_id(value_id).unwrap(), value);
    let latest = reader
        .latest_version("orders-value")
        .unwrap()
        .expect("orders-value has a version");
    assert_eq!(
        (latest.subject.as_str(), latest.version, latest.id),
        ("orders-value", 1, value_id)
    );
    assert_eq!(latest.schema, value);
    assert_eq!(reader.latest_version("no-such-subject").unwrap(), None);

    // Ids are global: the same schema under another subject keeps its id, even laid out
    // differently, as Confluent does.
    let relaid = KEY.replace(',', ", ").replace(':', ": ");
    assert_eq!(client.register("customers-key", &relaid).unwrap(), key_id);
    assert_eq!(registry.versions("customers-key")[0].id, key_id);

    match reader.schema_by_id(9999) {
        Err(RegistryError::SchemaNotFound { id: 9999, url }) => assert_eq!(url, registry.url()),
        other => panic!("expected SchemaNotFound for id 9999, got {other:?}"),
    }
}

#[test]
fn registrations_and_lookups_are_cached() {
    let registry = SchemaRegistry::start();
    let client = client(&registry);

    let id = client.register("t-key", KEY).unwrap();
    assert_eq!(client.register("t-key", KEY).unwrap(), id);
    assert_eq!(
        client
            .publish("t-key", KEY, Some(CompatibilityLevel::Full))
            .unwrap(),
        id
    );
    assert_eq!(client.cached_id("t-key", KEY), Some(id));
    assert_eq!(
        registrations(&registry, "t-key"),
        1,
        "{:?}",
        registry.requests()
    );
    // The cache is per subject: another subject is a new registration.
    assert_eq!(client.cached_id("u-key", KEY), None);

    let before = registry.requests().len();
    assert_eq!(
        client.schema_by_id(id).unwrap(),
        KEY,
        "the registering client knows the id's schema"
    );
    assert_eq!(
        registry.requests().len(),
        before,
        "{:?}",
        registry.requests()
    );

    let reader = self::client(&registry);
    reader.schema_by_id(id).unwrap();
    reader.schema_by_id(id).unwrap();
    let fetches = registry
        .requests()
        .iter()
        .filter(|r| **r == format!("GET /schemas/ids/{id}"))
        .count();
    assert_eq!(fetches, 1);
}

#[test]
fn compatibility_levels_are_set_and_read() {
    let registry = SchemaRegistry::start();
    let client = client(&registry);

    assert_eq!(
        client.global_compatibility_level().unwrap(),
        CompatibilityLevel::Backward
    );
    assert_eq!(client.subject_compatibility_level("t-value").unwrap(), None);
    for level in CompatibilityLevel::ALL {
        client.set_compatibility_level("t-value", level).unwrap();
        assert_eq!(
            client.subject_compatibility_level("t-value").unwrap(),
            Some(level)
        );
    }
    assert_eq!(
        client.global_compatibility_level().unwrap(),
        CompatibilityLevel::Backward
    );
}

#[test]
fn publish_sets_a_level_only_where_the_subject_has_none() {
    let registry = SchemaRegistry::start();
    let client = client(&registry);

    client
        .publish(
            "fresh-value",
            &row(r#"{"name":"a","type":"long"}"#),
            Some(CompatibilityLevel::Forward),
        )
        .unwrap();
    assert_eq!(
        client.subject_compatibility_level("fresh-value").unwrap(),
        Some(CompatibilityLevel::Forward)
    );

    // An operator's level in the registry wins over the sink's.
    client
        .set_compatibility_level("kept-value", CompatibilityLevel::Full)
        .unwrap();
    client
        .publish(
            "kept-value",
            &row(r#"{"name":"a","type":"long"}"#),
            Some(CompatibilityLevel::None),
        )
        .unwrap();
    assert_eq!(
        client.subject_compatibility_level("kept-value").unwrap(),
        Some(CompatibilityLevel::Full)
    );
    let err = client
        .publish(
            "kept-value",
            &row(r#"{"name":"a","type":"string"}"#),
            Some(CompatibilityLevel::None),
        )
        .unwrap_err();
    assert!(err.to_string().contains("'FULL'"), "{err}");
}

#[test]
fn backward_accepts_a_nullable_field_with_a_null_default() {
    let registry = SchemaRegistry::start();
    let client = client(&registry);
    let level = Some(CompatibilityLevel::Backward);

    let v1 = client
        .publish("orders-value", &envelope("long"), level)
        .unwrap();
    let evolved = envelope("long").replace(
        r#"{"name":"name","type":["null","string"]}"#,
        r#"{"name":"name","type":["null","string"]},{"name":"note","type":["null","string"],"default":null}"#,
    );
    let v2 = client.publish("orders-value", &evolved, level).unwrap();
    assert_ne!(v1, v2);
    let versions: Vec<(i32, i32)> = registry
        .versions("orders-value")
        .iter()
        .map(|v| (v.version, v.id))
        .collect();
    assert_eq!(versions, [(1, v1), (2, v2)]);
}

/// Asserts that `publish` refused `schema` for `subject` before registering anything, naming
/// the subject and quoting a reason that contains `reason`.
fn assert_refused(
    registry: &SchemaRegistry,
    client: &SchemaRegistryClient,
    subject: &str,
    schema: &str,
    reason: &str,
) {
    let versions_before = registry.versions(subject);
    let registrations_before = registrations(registry, subject);
    let err = client
        .publish(subject, schema, Some(CompatibilityLevel::Backward))
        .unwrap_err();
    match &err {
        RegistryError::Incompatible {
            subject: refused,
            reasons,
        } => {
            assert_eq!(refused, subject);
            assert!(
                reasons.iter().any(|r| r.contains(reason)),
                "reason {reason:?} not in {reasons:?}"
            );
        }
        other => panic!("expected Incompatible for {subject}, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&format!("{subject:?}")) && text.contains(reason),
        "{text}"
    );
    assert_eq!(registry.versions(subject), versions_before);
    assert_eq!(
        registrations(registry, subject),
        registrations_before,
        "publish tried to register"
    );
}

#[test]
fn backward_refuses_a_field_without_default_and_a_type_change() {
    let registry = SchemaRegistry::start();
    let client = client(&registry);
    let v1 = row(
        r#"{"name":"id","type":"long"},{"name":"note","type":["null","string"],"default":null}"#,
    );
    client
        .publish("items-value", &v1, Some(CompatibilityLevel::Backward))
        .unwrap();

    // Dropping the default leaves readers of the new schema nothing to fill in for old data.
    let without_default = row(
        r#"{"name":"id","type":"long"},{"name":"note","type":["null","string"]},{"name":"qty","type":"int"}"#,
    );
    assert_refused(
        &registry,
        &client,
        "items-value",
        &without_default,
        "Field 'qty' in reader schema must have a default value",
    );

    let retyped = row(
        r#"{"name":"id","type":"string"},{"name":"note","type":["null","string"],"default":null}"#,
    );
    assert_refused(
        &registry,
        &client,
        "items-value",
        &retyped,
        "Field 'id' in reader schema does not match the type",
    );
}

#[test]
fn a_type_change_inside_the_nullable_row_union_is_refused() {
    let registry = SchemaRegistry::start();
    let client = client(&registry);
    client
        .publish(
            "orders-value",
            &envelope("long"),
            Some(CompatibilityLevel::Backward),
        )
        .unwrap();
    // apache-avro rates this `Partial`, not an error; the registry must still refuse it.
    assert_refused(
        &registry,
        &client,
        "orders-value",
        &envelope("string"),
        "only part of the writer's data can be read",
    );

    let check = client
        .check_compatibility("orders-value", &envelope("string"))
        .unwrap();
    assert!(!check.is_compatible);
    assert_eq!(registry.versions("orders-value").len(), 1);
}

#[test]
fn the_registry_enforces_the_level_on_registration_too() {
    let registry = SchemaRegistry::start();
    let client = client(&registry);
    client
        .register("t-value", &row(r#"{"name":"a","type":"long"}"#))
        .unwrap();
    match client.register("t-value", &row(r#"{"name":"a","type":"string"}"#)) {
        Err(RegistryError::Incompatible { subject, reasons }) => {
            assert_eq!(subject, "t-value");
            assert!(
                reasons[0].starts_with("Schema being registered is incompatible with an earlier schema for subject \"t-value\""),
                "{reasons:?}"
            );
        }
        other => panic!("expected a 409 refusal, got {other:?}"),
    }
    assert_eq!(registry.versions("t-value").len(), 1);
}

#[test]
fn invalid_schemas_are_refused_with_the_registry_message() {
    let registry = SchemaRegistry::start();
    let client = client(&registry);
    let broken = r#"{"type":"record","name":"row","fields":[{"name":"a","type":"integer"}]}"#;
    match client.publish("t-value", broken, None) {
        Err(RegistryError::InvalidSchema { subject, message }) => {
            assert_eq!(subject, "t-value");
            assert!(message.starts_with("Invalid schema"), "{message}");
        }
        other => panic!("expected InvalidSchema, got {other:?}"),
    }
    assert!(registry.subjects().is_empty());
}

/// One schema change, the versions registered before it, and the levels that must refuse it.
struct Evolution {
    name: &'static str,
    history: Vec<String>,
    next: String,
    refused_by: &'static [CompatibilityLevel],
}

#[test]
fn each_level_accepts_and_refuses_what_confluent_does() {
    use CompatibilityLevel::*;
    let a = r#"{"name":"a","type":"long"}"#;
    let b_required = r#"{"name":"b","type":"string"}"#;
    let b_defaulted = r#"{"name":"b","type":"string","default":"x"}"#;
    let b_optional = r#"{"name":"b","type":["null","string"],"default":null}"#;
    let cases = [
        Evolution {
            name: "add-optional",
            history: vec![row(a)],
            next: row(&format!("{a},{b_optional}")),
            refused_by: &[],
        },
        Evolution {
            name: "add-required",
            history: vec![row(a)],
            next: row(&format!("{a},{b_required}")),
            refused_by: &[Backward, BackwardTransitive, Full, FullTransitive],
        },
        Evolution {
            name: "remove-required",
            history: vec![row(&format!("{a},{b_required}"))],
            next: row(a),
            refused_by: &[Forward, ForwardTransitive, Full, FullTransitive],
        },
        Evolution {
            name: "change-type",
            history: vec![row(a)],
            next: row(r#"{"name":"a","type":"string"}"#),
            refused_by: &[
                Backward,
                BackwardTransitive,
                Forward,
                ForwardTransitive,
                Full,
                FullTransitive,
            ],
        },
        // Compatible with the latest version, not with the first.
        Evolution {
            name: "drop-default-added-later",
            history: vec![row(a), row(&format!("{a},{b_defaulted}"))],
            next: row(&format!("{a},{b_required}")),
            refused_by: &[BackwardTransitive, FullTransitive],
        },
        Evolution {
            name: "remove-field-defaulted-later",
            history: vec![
                row(&format!("{a},{b_required}")),
                row(&format!("{a},{b_defaulted}")),
            ],
            next: row(a),
            refused_by: &[ForwardTransitive, FullTransitive],
        },
    ];

    let registry = SchemaRegistry::start();
    let client = client(&registry);
    let mut failures = Vec::new();
    for case in &cases {
        for level in CompatibilityLevel::ALL {
            let subject = format!("{}-{}", case.name, level.as_str().to_lowercase());
            for schema in &case.history {
                client
                    .publish(&subject, schema, Some(level))
                    .unwrap_or_else(|e| panic!("history of {subject} must be accepted: {e}"));
            }
            let expect_refusal = case.refused_by.contains(&level);
            match (
                client.publish(&subject, &case.next, Some(level)),
                expect_refusal,
            ) {
                (Ok(_), false) => {
                    assert_eq!(registry.versions(&subject).len(), case.history.len() + 1)
                }
                (Err(RegistryError::Incompatible { reasons, .. }), true) => {
                    assert_eq!(registry.versions(&subject).len(), case.history.len());
                    let quoted = format!("compatibility: '{}'", level.as_str());
                    assert!(
                        reasons.iter().all(|r| r.contains(&quoted)),
                        "{subject}: {reasons:?}"
                    );
                    // The registry's own gate agrees with its check endpoint.
                    assert!(
                        matches!(
                            client.register(&subject, &case.next),
                            Err(RegistryError::Incompatible { .. })
                        ),
                        "{subject}: registration went through where the check refused"
                    );
                }
                (outcome, _) => failures.push(format!(
                    "{subject}: expected refusal {expect_refusal}, got {outcome:?}"
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn a_check_against_one_version_ignores_the_transitive_part() {
    let registry = SchemaRegistry::start();
    let client = client(&registry);
    let a = r#"{"name":"a","type":"long"}"#;
    client
        .set_compatibility_level("t-value", CompatibilityLevel::BackwardTransitive)
        .unwrap();
    client.publish("t-value", &row(a), None).unwrap();
    client
        .publish(
            "t-value",
            &row(&format!(
                r#"{a},{{"name":"b","type":"string","default":"x"}}"#
            )),
            None,
        )
        .unwrap();
    let next = row(&format!(r#"{a},{{"name":"b","type":"string"}}"#));

    assert!(
        client
            .check_compatibility_with("t-value", VersionSelector::Latest, &next)
            .unwrap()
            .is_compatible
    );
    let against_first = client
        .check_compatibility_with("t-value", VersionSelector::Number(1), &next)
        .unwrap();
    assert!(!against_first.is_compatible);
    assert!(
        against_first.messages[0].contains("Field 'b' in reader schema must have a default value")
    );
    assert!(
        !client
            .check_compatibility("t-value", &next)
            .unwrap()
            .is_compatible
    );

    match client.check_compatibility_with("t-value", VersionSelector::Number(7), &next) {
        Err(RegistryError::Status {
            status: 404,
            error_code: Some(40402),
            ..
        }) => {}
        other => panic!("expected version 7 not found, got {other:?}"),
    }
}

#[test]
fn basic_auth_is_accepted_and_refused_without_revealing_the_password() {
    let registry = SchemaRegistry::start_with_auth("alice", "correct-horse");

    let authorized = SchemaRegistryClient::new(
        RegistryConfig::new(registry.url())
            .with_basic_auth("alice", Some(Secret::new("correct-horse"))),
    )
    .unwrap();
    let id = authorized
        .publish("t-key", KEY, Some(CompatibilityLevel::Full))
        .unwrap();
    assert_eq!(authorized.schema_by_id(id).unwrap(), KEY);

    let wrong = SchemaRegistryClient::new(
        RegistryConfig::new(registry.url())
            .with_basic_auth("alice", Some(Secret::new("battery-staple"))),
    )
    .unwrap();
    let err = wrong.publish("t-key", KEY, None).unwrap_err();
    match &err {
        RegistryError::AuthenticationFailed { url, username } => {
            assert!(url.starts_with(registry.url()), "{url}");
            assert_eq!(username.as_deref(), Some("alice"));
        }
        other => panic!("expected AuthenticationFailed, got {other:?}"),
    }
    for text in [err.to_string(), format!("{err:?}"), format!("{wrong:?}")] {
        assert!(
            !text.contains("battery-staple") && !text.contains("correct-horse"),
            "{text}"
        );
    }
    assert!(
        err.to_string().contains("\"alice\"") && err.to_string().contains(registry.url()),
        "{err}"
    );

    let anonymous = client(&registry);
    match anonymous.schema_by_id(id) {
        Err(RegistryError::AuthenticationFailed { username: None, .. }) => {}
        other => panic!("expected AuthenticationFailed without a user, got {other:?}"),
    }
    assert_eq!(registry.versions("t-key").len(), 1);
}

#[test]
fn a_stopped_registry_is_reported_unreachable_by_url() {
    let registry = SchemaRegistry::start();
    let url = registry.url().to_string();
    let client = client(&registry);
    drop(registry);
    match client.latest_version("t-value") {
        Err(err @ RegistryError::Unreachable { .. }) => {
            let expected =
                format!("schema registry at {url}/subjects/t-value/versions/latest is unreachable");
            assert!(err.to_string().starts_with(&expected), "{err}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/registry-tls/",
            $name
        ))
    };
}

fn tls_registry(require_client_certificate: bool) -> SchemaRegistry {
    SchemaRegistry::start_tls(TlsSettings {
        certificate_chain_pem: fixture!("server.pem").to_string(),
        private_key_pem: fixture!("server.key").to_string(),
        client_ca_pem: require_client_certificate.then(|| fixture!("ca.pem").to_string()),
    })
}

fn tls_config(registry: &SchemaRegistry, certificate_authority: Option<&str>) -> RegistryConfig {
    let mut config = RegistryConfig::new(registry.url());
    config.ssl_certificate_authority = certificate_authority.map(str::to_string);
    config
}

fn assert_handshake_refused(config: RegistryConfig, what: &str, expected_reason: &str) {
    let client = SchemaRegistryClient::new(config).unwrap();
    match client.publish("t-key", KEY, None) {
        Err(RegistryError::Unreachable { url, reason }) => {
            assert!(url.starts_with("https://127.0.0.1:"), "{what}: {url}");
            assert!(reason.contains(expected_reason), "{what}: {reason}");
        }
        other => panic!("{what}: expected the TLS handshake to fail, got {other:?}"),
    }
}

#[test]
fn tls_with_a_custom_certificate_authority() {
    let registry = tls_registry(false);
    assert!(registry.url().starts_with("https://"));

    let client =
        SchemaRegistryClient::new(tls_config(&registry, Some(fixture!("ca.pem")))).unwrap();
    let id = client
        .publish("t-key", KEY, Some(CompatibilityLevel::Full))
        .unwrap();
    // Several requests on one agent: kept-alive connections must keep working.
    assert_eq!(
        self::client_reading(&registry, fixture!("ca.pem"))
            .schema_by_id(id)
            .unwrap(),
        KEY
    );
    assert_eq!(
        client.subject_compatibility_level("t-key").unwrap(),
        Some(CompatibilityLevel::Full)
    );
    assert_eq!(registry.versions("t-key").len(), 1);

    assert_handshake_refused(
        tls_config(&registry, None),
        "the built-in web roots do not know the test CA",
        "UnknownIssuer",
    );
    assert_handshake_refused(
        tls_config(&registry, Some(fixture!("other-ca.pem"))),
        "an unrelated CA",
        "UnknownIssuer",
    );
    assert!(
        registry.subjects() == ["t-key"],
        "{:?}",
        registry.subjects()
    );
}

fn client_reading(registry: &SchemaRegistry, certificate_authority: &str) -> SchemaRegistryClient {
    SchemaRegistryClient::new(tls_config(registry, Some(certificate_authority))).unwrap()
}

#[test]
fn tls_with_a_client_certificate() {
    let registry = tls_registry(true);

    let mut config = tls_config(&registry, Some(fixture!("ca.pem")));
    config.ssl_certificate = Some(fixture!("client.pem").to_string());
    config.ssl_key = Some(Secret::new(fixture!("client.key")));
    let client = SchemaRegistryClient::new(config.clone()).unwrap();
    let id = client.publish("t-key", KEY, None).unwrap();
    assert_eq!(
        client.latest_version("t-key").unwrap().map(|v| v.id),
        Some(id)
    );
    assert!(!format!("{config:?}").contains(fixture!("client.key").lines().nth(1).unwrap()));

    assert_handshake_refused(
        tls_config(&registry, Some(fixture!("ca.pem"))),
        "no client certificate",
        "CertificateRequired",
    );
}
