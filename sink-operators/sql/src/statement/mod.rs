//! The `CREATE …` statement front end: the SQL of the Kafka sinks guide, parsed (by
//! [`crate::syntax`]) and validated into the specs of [`crate::spec`] and collected in a
//! [`Catalog`]. This layer knows where a statement wrote each piece that validation may blame,
//! and turns the [`Site`](crate::error::Site) of an error into its line and column.
//!
//! Statements: `CREATE SECRET`, `CREATE CONNECTION … TO KAFKA` and
//! `… TO CONFLUENT SCHEMA REGISTRY`, `CREATE TABLE`, `CREATE CLUSTER … SIZE` and
//! `CREATE SINK`. Views are not statements here: they are differential dataflow written in
//! Rust (see `examples/`). Identifiers fold to lowercase unless double-quoted; keywords are
//! case-insensitive; options may be written with or without `=`. Errors carry the line and
//! column of the offending token.
//!
//! ```
//! use outflow_sql::statement::Catalog;
//!
//! let catalog = Catalog::from_sql(
//!     "CREATE CONNECTION kafka_connection TO KAFKA (BROKER 'localhost:9092', SECURITY PROTOCOL PLAINTEXT);
//!      CREATE TABLE orders (order_id bigint PRIMARY KEY, status text);
//!      CREATE SINK order_updates FROM orders
//!        INTO KAFKA CONNECTION kafka_connection (TOPIC 'order_updates')
//!        KEY (order_id) FORMAT JSON ENVELOPE UPSERT;",
//! )
//! .unwrap();
//! assert_eq!(catalog.sink("order_updates").unwrap().topic, "order_updates");
//!
//! let err = Catalog::from_sql("CREATE TABLE t (a int);\nCREATE SINK s FROM nope INTO KAFKA CONNECTION k (TOPIC 't') FORMAT JSON ENVELOPE DEBEZIUM;")
//!     .unwrap_err();
//! assert_eq!(err.message, "unknown catalog item 'nope'");
//! assert_eq!(err.position.map(|p| (p.line, p.column)), Some((2, 20)));
//! ```

mod catalog;
mod plan;

pub use crate::syntax::{ast, parse_expr, parse_statements};
pub use catalog::{Catalog, CatalogObject};
