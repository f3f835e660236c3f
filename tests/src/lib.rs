//! Outflow integration test support: Apache Kafka and Tansu brokers, a schema registry, an OAuth token endpoint and raw log readers.

pub mod acl;
pub mod broker;
pub mod committed;
pub mod driver;
pub mod kafka;
pub mod oauth;
pub mod pipeline;
pub mod rawlog;
pub mod registry;
pub mod target;
pub mod tls;
