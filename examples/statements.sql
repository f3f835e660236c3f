-- The order pipeline of the Kafka sinks guide, as `outflow` reads it.
--
--   outflow check examples/statements.sql
--
-- validates every statement and prints the normalized spec of each object as JSON, with
-- secrets redacted. The tables are the relations the sinks read; the dataflow that keeps
-- them up to date (the guide's materialized views) is written in Rust.

-- Credentials live in secrets; specs and errors only ever name them.
CREATE SECRET kafka_password AS 'change-me';
CREATE SECRET csr_password AS 'change-me-too';

CREATE CONNECTION kafka_connection TO KAFKA (
    BROKERS ('broker-1.kafka.example.com:9092', 'broker-2.kafka.example.com:9092'),
    SECURITY PROTOCOL = 'SASL_SSL',
    SASL MECHANISMS = 'SCRAM-SHA-256',
    SASL USERNAME = 'outflow',
    SASL PASSWORD = SECRET kafka_password,
    -- One progress topic for every sink on this connection: one partition, compacted.
    PROGRESS TOPIC '_outflow-progress-orders'
);

CREATE CONNECTION csr_connection TO CONFLUENT SCHEMA REGISTRY (
    URL 'https://schema-registry.example.com',
    USERNAME = 'outflow',
    PASSWORD = SECRET csr_password
);

CREATE TABLE orders (
    order_id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    order_date date NOT NULL,
    region text NOT NULL,
    status text NOT NULL
);

CREATE TABLE order_items (
    order_id bigint NOT NULL,
    line_number integer NOT NULL,
    product_id bigint NOT NULL,
    quantity integer NOT NULL,
    price numeric(12, 2) NOT NULL,
    PRIMARY KEY (order_id, line_number)
);

-- Maintained in Rust from orders joined with order_items.
CREATE TABLE order_summaries (
    order_id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    order_date date NOT NULL,
    region text NOT NULL,
    total_amount numeric(14, 2) NOT NULL,
    item_count bigint NOT NULL,
    status text NOT NULL
);

-- Sinks run on their own workers, away from the dataflow that computes the summaries.
CREATE CLUSTER sink_cluster SIZE = 'medium';

-- The latest summary of each order; a deleted order becomes a tombstone, so compaction
-- keeps one message per order.
CREATE SINK order_updates
  IN CLUSTER sink_cluster
  FROM order_summaries
  INTO KAFKA CONNECTION kafka_connection (
    TOPIC 'order_updates',
    TOPIC PARTITION COUNT 6,
    TOPIC REPLICATION FACTOR 3,
    TOPIC CONFIG MAP['cleanup.policy' => 'compact']
  )
  KEY (order_id)
  FORMAT JSON
  ENVELOPE UPSERT;

-- Every change to an order, with the row before and after it. Under DEBEZIUM, PARTITION BY
-- may only read key columns; hashing the text of order_id matches a Java producer that keys
-- its messages by that text.
CREATE SINK order_changes
  IN CLUSTER sink_cluster
  FROM orders
  INTO KAFKA CONNECTION kafka_connection (
    TOPIC 'order_changes',
    PARTITION BY = kafka_murmur2(order_id::text),
    COMPRESSION TYPE = zstd
  )
  KEY (order_id)
  FORMAT JSON
  ENVELOPE DEBEZIUM;

-- Summaries in Avro, with their schemas in the registry, partitioned by region so that a
-- consumer per partition sees whole regions.
CREATE SINK regional_summaries
  IN CLUSTER sink_cluster
  FROM order_summaries
  INTO KAFKA CONNECTION kafka_connection (
    TOPIC 'regional_order_summaries',
    PARTITION BY = kafka_murmur2(region)
  )
  KEY (order_id)
  FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr_connection (
    KEY COMPATIBILITY LEVEL 'BACKWARD',
    VALUE COMPATIBILITY LEVEL 'BACKWARD',
    DOC ON TYPE order_summaries = 'One row per order, with its total and item count',
    VALUE DOC ON COLUMN order_summaries.region = 'Sales region of the order'
  )
  ENVELOPE UPSERT;
