//! The guide's real-time analytics pipeline: orders aggregated per hour and region, written in
//! Avro with the schemas in a Confluent schema registry, partitioned by `kafka_murmur2(region)`
//! so that a consumer of one partition sees whole regions.
//!
//! ```sql
//! CREATE MATERIALIZED VIEW hourly_sales AS
//! SELECT date_trunc('hour', order_timestamp) AS hour, region,
//!        COUNT(*) AS order_count, SUM(total) AS revenue, AVG(total) AS avg_order_value
//! FROM orders GROUP BY hour, region;
//!
//! CREATE SINK sales_metrics FROM hourly_sales
//!   INTO KAFKA CONNECTION kafka_connection (TOPIC 'sales_metrics', PARTITION BY = kafka_murmur2(region))
//!   KEY (hour, region)
//!   FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr_connection
//!   ENVELOPE UPSERT;
//! ```
//!
//! Without `--registry URL`, the schema registry server of Outflow's tests runs in this
//! process, so the example needs no network; without `--broker`, neither does the broker.
//!
//! `cargo run -p outflow-examples --example hourly_sales -- [--broker HOST:PORT] [--registry URL]`

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use differential_dataflow::input::Input;
use outflow::dataflow::relation::{Numeric, Timestamp};
use outflow::dataflow::{Datum, Row};
use outflow::SinkKafka;
use outflow_examples::{catalog, print_report, read_topic, wait_for_commit, Target};
use outflow_tests::registry::SchemaRegistry;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Parser)]
struct Args {
    /// `host:port` of a Kafka broker; without it, an embedded broker runs in this process.
    #[arg(long)]
    broker: Option<String>,
    /// URL of a Confluent-API schema registry; without it, one runs in this process.
    #[arg(long)]
    registry: Option<String>,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Orders per round; each round is one timestamp and moves the clock on by 20 minutes.
    #[arg(long, default_value_t = 300)]
    orders: usize,
    #[arg(long, default_value_t = 8)]
    rounds: u64,
    #[arg(long, default_value_t = 3)]
    seed: u64,
}

const REGIONS: [&str; 5] = ["emea", "apac", "north-america", "latam", "oceania"];
const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// `(order_id, (order_timestamp in microseconds, region as an index of REGIONS, total in cents))`.
type Order = (i64, (i64, u8, i64));

/// Rounds of orders, each 20 minutes after the previous; some earlier orders are corrected
/// (their total changes) or cancelled.
fn history(per_round: usize, rounds: u64, seed: u64) -> Vec<Vec<(Order, isize)>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Timestamp::parse("2024-05-06 08:00:00")
        .expect("a valid timestamp")
        .0;
    let mut placed: Vec<Order> = Vec::new();
    let mut history = Vec::new();
    for round in 0..rounds {
        let mut updates = Vec::new();
        let from = start + round as i64 * MICROS_PER_HOUR / 3;
        for _ in 0..per_round {
            let id = placed.len() as i64 + 1;
            let at = from + rng.gen_range(0..MICROS_PER_HOUR / 3);
            let order = (
                id,
                (
                    at,
                    rng.gen_range(0..REGIONS.len() as u8),
                    rng.gen_range(500..50_000),
                ),
            );
            updates.push((order, 1));
            placed.push(order);
        }
        for _ in 0..per_round / 30 {
            let index = rng.gen_range(0..placed.len());
            let old = placed[index];
            updates.push((old, -1));
            if rng.gen_bool(0.5) {
                let corrected = (old.0, (old.1 .0, old.1 .1, old.1 .2 / 2 + 100));
                updates.push((corrected, 1));
                placed[index] = corrected;
            }
        }
        history.push(updates);
    }
    history
}

fn main() {
    let args = Args::parse();
    if let Err(error) = run(&args) {
        eprintln!("hourly_sales failed: {error}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let target = Target::new(args.broker.clone())?;
    let local_registry = args.registry.is_none().then(SchemaRegistry::start);
    let registry_url = args
        .registry
        .clone()
        .unwrap_or_else(|| local_registry.as_ref().expect("started").url().to_string());
    println!(
        "hourly sales on {} workers, {}, schema registry at {registry_url}",
        args.workers,
        target.describe()
    );
    let catalog = catalog(&format!(
        "CREATE CONNECTION kafka_connection TO KAFKA (BROKER '{}', SECURITY PROTOCOL PLAINTEXT);
         CREATE CONNECTION csr_connection TO CONFLUENT SCHEMA REGISTRY (URL '{registry_url}');
         CREATE TABLE hourly_sales (
             hour timestamp NOT NULL,
             region text NOT NULL,
             order_count bigint NOT NULL,
             revenue numeric(14, 2) NOT NULL,
             avg_order_value numeric(14, 2) NOT NULL,
             PRIMARY KEY (hour, region)
         );
         CREATE SINK sales_metrics FROM hourly_sales
           INTO KAFKA CONNECTION kafka_connection (
             TOPIC 'sales_metrics',
             TOPIC PARTITION COUNT 4,
             PARTITION BY = kafka_murmur2(region)
           )
           KEY (hour, region)
           FORMAT AVRO USING CONFLUENT SCHEMA REGISTRY CONNECTION csr_connection
           ENVELOPE UPSERT;",
        target.bootstrap()
    ))?;
    let plan = target.plan(&catalog, "sales_metrics")?;
    let history = Arc::new(history(args.orders, args.rounds, args.seed));
    let started = Instant::now();
    let sink_plan = plan.clone();
    let outcomes = timely::execute(timely::Config::process(args.workers), move |worker| {
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, orders) = scope.new_collection::<Order, isize>();
            let hourly = orders
                .map(|(_id, (at, region, total))| {
                    (
                        (at.div_euclid(MICROS_PER_HOUR) * MICROS_PER_HOUR, region),
                        total,
                    )
                })
                .reduce(
                    |_hour_region, totals, output: &mut Vec<((i64, i64), isize)>| {
                        let count: i64 = totals.iter().map(|(_, n)| *n as i64).sum();
                        let revenue: i64 =
                            totals.iter().map(|(total, n)| **total * *n as i64).sum();
                        output.push(((count, revenue), 1));
                    },
                )
                .map(|((hour, region), (count, revenue))| {
                    // AVG of cents, rounded half away from zero to the cent, as numeric division does.
                    let average = (2 * revenue + count) / (2 * count);
                    Row::pack_slice(&[
                        Datum::Timestamp(Timestamp(hour)),
                        Datum::String(REGIONS[usize::from(region)]),
                        Datum::Int64(count),
                        Datum::Numeric(Numeric::new(revenue as i128, 2)),
                        Datum::Numeric(Numeric::new(average as i128, 2)),
                    ])
                });
            hourly
                .sink_kafka(&sink_plan)
                .map(|handle| (input, handle.probe))
                .map_err(|e| e.to_string())
        })?;
        for (time, round) in history.iter().enumerate() {
            if worker.index() == 0 {
                for (order, diff) in round {
                    input.update(*order, *diff);
                }
            }
            input.advance_to(time as u64 + 1);
            input.flush();
            wait_for_commit(
                worker,
                &[probe.clone()],
                &[sink_plan.monitor()],
                Some(time as u64 + 1),
                started,
            )?;
        }
        drop(input);
        wait_for_commit(worker, &[probe], &[sink_plan.monitor()], None, started)
    })
    .map_err(|e| format!("cannot start the timely workers: {e}"))?
    .join();
    for outcome in outcomes {
        outcome.map_err(|e| format!("a worker stopped: {e}"))??;
    }

    let messages = read_topic(target.bootstrap(), &plan.plan().spec.topic)?;
    println!(
        "topic {}: {} messages",
        plan.plan().spec.topic,
        messages.len()
    );
    let mut regions_of: BTreeMap<i32, BTreeSet<String>> = BTreeMap::new();
    let mut schema_ids = BTreeSet::new();
    for (index, message) in messages.iter().enumerate() {
        let key = message
            .key
            .as_deref()
            .ok_or("an upsert message without a key")?;
        let (schema_id, hour, region) =
            decode_key(key).ok_or_else(|| format!("an undecodable key: {key:?}"))?;
        schema_ids.insert(schema_id);
        if let Some(value) = &message.value {
            schema_ids.insert(i32::from_be_bytes(
                value[1..5]
                    .try_into()
                    .map_err(|_| "a value shorter than its header")?,
            ));
        }
        if index < 4 {
            println!(
                "  p{}@{} key (hour {}, region {region}) => {}",
                message.partition,
                message.offset,
                Timestamp(hour),
                message.value_text()
            );
        }
        regions_of
            .entry(message.partition)
            .or_default()
            .insert(region);
    }
    // kafka_murmur2(region) puts every hour of a region on one partition.
    for (partition, regions) in &regions_of {
        println!("  partition {partition}: regions {regions:?}");
    }
    let mut seen = BTreeSet::new();
    for regions in regions_of.values() {
        for region in regions {
            if !seen.insert(region) {
                return Err(format!("region {region} is on more than one partition"));
            }
        }
    }
    println!("  schema ids in the messages: {schema_ids:?}");
    if let Some(registry) = &local_registry {
        for subject in registry.subjects() {
            println!(
                "  registry subject {subject}: {} version(s)",
                registry.versions(&subject).len()
            );
        }
    }
    println!();
    print_report(&plan.monitor().report());
    Ok(())
}

/// The Confluent header's schema id and the `(hour, region)` of an Avro key: a record of a
/// `long` (timestamp-micros) and a `string`.
fn decode_key(key: &[u8]) -> Option<(i32, i64, String)> {
    if key.first() != Some(&0) || key.len() < 5 {
        return None;
    }
    let schema_id = i32::from_be_bytes(key[1..5].try_into().ok()?);
    let mut rest = &key[5..];
    let hour = zigzag(&mut rest)?;
    let length = usize::try_from(zigzag(&mut rest)?).ok()?;
    let region = std::str::from_utf8(rest.get(..length)?).ok()?.to_string();
    Some((schema_id, hour, region))
}

/// Avro's variable-length zigzag `long`.
fn zigzag(bytes: &mut &[u8]) -> Option<i64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    None
}
