//! `outflow explain`: the text form of [`outflow::sink::Explanation`].

use std::fmt::Write as _;

use outflow::sink::{Explanation, TopicPlan, EXAMPLE_SCHEMA_ID};

fn topic_line(topic: &TopicPlan) -> String {
    let or_default =
        |value: Option<i32>| value.map_or("the broker's default".to_string(), |v| v.to_string());
    let configs = if topic.configs.is_empty() {
        "none".to_string()
    } else {
        topic
            .configs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "{}: partitions {}, replication factor {}, configs {configs}",
        topic.name,
        or_default(topic.partitions),
        or_default(topic.replication_factor)
    )
}

/// What `outflow explain` prints.
pub fn text(e: &Explanation) -> String {
    let mut out = String::new();
    let key = match (&e.key, e.key_format) {
        (Some(columns), Some(format)) => format!("KEY ({}) FORMAT {format}", columns.join(", ")),
        _ => "no KEY".to_string(),
    };
    let _ = writeln!(
        out,
        "sink {} FROM {}: ENVELOPE {}, {key}, VALUE FORMAT {}, {}, compression {}",
        e.sink, e.from, e.envelope, e.value_format, e.delivery, e.compression
    );
    let _ = writeln!(out, "\ntopic {}", topic_line(&e.topic));
    let _ = writeln!(out, "progress topic {}", topic_line(&e.progress_topic));
    let _ = writeln!(out, "partitioning: {}", e.partitioning);
    // The schema text exactly as it is registered.
    for schema in &e.schemas {
        let _ = writeln!(
            out,
            "\n{} schema, subject {} (compatibility {}):\n{}",
            schema.part,
            schema.subject,
            schema.compatibility.unwrap_or("the registry's default"),
            schema.schema
        );
    }
    let _ = writeln!(out, "\nfor {} worker(s):", e.workers);
    if !e.transactional_ids.is_empty() {
        let _ = writeln!(
            out,
            "  transactional ids: {}",
            e.transactional_ids.join(", ")
        );
    }
    let _ = writeln!(out, "  progress groups: {}", e.progress_groups.join(", "));
    let _ = writeln!(out, "  progress reader group: {}", e.progress_reader_group);
    let _ = writeln!(out, "\nACLs:");
    for acl in &e.acls {
        let _ = writeln!(
            out,
            "  {} {} ({}): {} — {}",
            acl.resource_type, acl.name, acl.pattern_type, acl.operations, acl.used_for
        );
    }
    if e.schemas.is_empty() {
        let _ = writeln!(out, "\nexample messages:");
    } else {
        let _ = writeln!(
            out,
            "\nexample messages (their Avro parts carry schema id {EXAMPLE_SCHEMA_ID}; the registry assigns the real one):"
        );
    }
    for example in &e.examples {
        let _ = writeln!(
            out,
            "  {} at time {}, partition {}:",
            example.case, example.time, example.partition
        );
        if let Some(key) = &example.key {
            let _ = writeln!(out, "    key   ({}): {}", key.format, key.text);
        }
        match &example.value {
            Some(value) => {
                let _ = writeln!(out, "    value ({}): {}", value.format, value.text);
            }
            None => {
                let _ = writeln!(out, "    value: none (a tombstone)");
            }
        }
        let headers: Vec<String> = example
            .headers
            .iter()
            .map(|(name, value)| match value {
                Some(value) => format!("{name}={value}"),
                None => format!("{name} (null)"),
            })
            .collect();
        let _ = writeln!(out, "    headers: {}", headers.join(", "));
    }
    out
}
