//! Outflow integration test support: a real Kafka-API broker, a schema registry and raw log readers.

pub mod broker;
pub mod pipeline;
pub mod rawlog;
pub mod registry;
pub mod tls;
