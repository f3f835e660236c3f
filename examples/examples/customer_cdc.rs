//! The guide's change data capture pipeline: every change to `customers`, with the row before
//! and after it, in the `customer_changes` topic (ENVELOPE DEBEZIUM, JSON).
//!
//! ```sql
//! CREATE SINK customer_cdc
//!   FROM customers
//!   INTO KAFKA CONNECTION kafka_connection (TOPIC 'customer_changes')
//!   KEY (customer_id)
//!   FORMAT JSON
//!   ENVELOPE DEBEZIUM;
//! ```
//!
//! `cargo run -p outflow-examples --example customer_cdc -- [--broker HOST:PORT]`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use differential_dataflow::input::Input;
use outflow::dataflow::{Datum, Row};
use outflow::SinkKafka;
use outflow_examples::{
    catalog, print_messages, print_report, read_topic, wait_for_commit, Target,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Parser)]
struct Args {
    /// `host:port` of a Kafka broker; without it, an embedded broker runs in this process.
    #[arg(long)]
    broker: Option<String>,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[arg(long, default_value_t = 100)]
    customers: i64,
    #[arg(long, default_value_t = 6)]
    rounds: u64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

const TIERS: [&str; 3] = ["bronze", "silver", "gold"];

#[derive(Clone, Debug, PartialEq, Eq)]
struct Customer {
    name: String,
    email: String,
    tier: usize,
}

fn row(id: i64, customer: &Customer) -> Row {
    Row::pack_slice(&[
        Datum::Int64(id),
        Datum::String(&customer.name),
        Datum::String(&customer.email),
        Datum::String(TIERS[customer.tier]),
    ])
}

/// The snapshot, then rounds in which customers change their email, move up a tier, leave,
/// and join. Each round is `(row, diff)` updates at one time.
fn history(customers: i64, rounds: u64, seed: u64) -> Vec<Vec<(Row, isize)>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut state: BTreeMap<i64, Customer> = BTreeMap::new();
    let mut next_id = 1;
    let mut join = |state: &mut BTreeMap<i64, Customer>, round: &mut Vec<(Row, isize)>| {
        let id = next_id;
        next_id += 1;
        let customer = Customer {
            name: format!("Customer {id}"),
            email: format!("c{id}@example.com"),
            tier: 0,
        };
        round.push((row(id, &customer), 1));
        state.insert(id, customer);
    };
    let mut snapshot = Vec::new();
    for _ in 0..customers {
        join(&mut state, &mut snapshot);
    }
    let mut history = vec![snapshot];
    for time in 1..=rounds {
        let mut round = Vec::new();
        let ids: Vec<i64> = state.keys().copied().collect();
        let mut touched = std::collections::BTreeSet::new();
        for _ in 0..(customers / 5).max(1) {
            let id = ids[rng.gen_range(0..ids.len())];
            if !touched.insert(id) {
                continue;
            }
            let before = state.remove(&id).expect("ids come from the state");
            round.push((row(id, &before), -1));
            let after = match rng.gen_range(0..10) {
                0 => continue,
                1..=4 => Customer {
                    email: format!("c{id}.{time}@example.org"),
                    ..before
                },
                _ => Customer {
                    tier: (before.tier + 1).min(TIERS.len() - 1),
                    ..before
                },
            };
            round.push((row(id, &after), 1));
            state.insert(id, after);
        }
        for _ in 0..(customers / 20).max(1) {
            join(&mut state, &mut round);
        }
        history.push(round);
    }
    history
}

fn main() {
    let args = Args::parse();
    if let Err(error) = run(&args) {
        eprintln!("customer_cdc failed: {error}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let target = Target::new(args.broker.clone())?;
    println!(
        "customer CDC on {} workers, {}",
        args.workers,
        target.describe()
    );
    let catalog = catalog(&format!(
        "CREATE CONNECTION kafka_connection TO KAFKA (BROKER '{}', SECURITY PROTOCOL PLAINTEXT);
         CREATE TABLE customers (customer_id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL,
                                 tier text NOT NULL);
         CREATE SINK customer_cdc FROM customers
           INTO KAFKA CONNECTION kafka_connection (TOPIC 'customer_changes')
           KEY (customer_id) FORMAT JSON ENVELOPE DEBEZIUM;",
        target.bootstrap()
    ))?;
    let plan = target.plan(&catalog, "customer_cdc")?;
    let history = Arc::new(history(args.customers, args.rounds, args.seed));
    let started = Instant::now();
    let sink_plan = plan.clone();
    let outcomes = timely::execute(timely::Config::process(args.workers), move |worker| {
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, customers) = scope.new_collection::<Row, isize>();
            customers
                .sink_kafka(&sink_plan)
                .map(|handle| (input, handle.probe))
                .map_err(|e| e.to_string())
        })?;
        for (time, round) in history.iter().enumerate() {
            if worker.index() == 0 {
                for (row, diff) in round {
                    input.update(row.clone(), *diff);
                }
            }
            input.advance_to(time as u64 + 1);
            input.flush();
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
    print_messages(&plan.plan().spec.topic, &messages, 3);
    // A customer's changes chain: each message's `before` is the previous message's `after`.
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_key: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for message in &messages {
        let value: serde_json::Value =
            serde_json::from_slice(message.value.as_deref().unwrap_or(b"null"))
                .map_err(|e| format!("a message of {} is not JSON: {e}", plan.plan().spec.topic))?;
        let kind = match (value["before"].is_null(), value["after"].is_null()) {
            (true, false) => "create",
            (false, false) => "update",
            (false, true) => "delete",
            (true, true) => "empty",
        };
        *kinds.entry(kind).or_default() += 1;
        by_key.entry(message.key_text()).or_default().push(value);
    }
    println!("  changes: {kinds:?}");
    if let Some((key, changes)) = by_key.iter().max_by_key(|(_, changes)| changes.len()) {
        println!("  the history of {key}:");
        for change in changes {
            println!(
                "    before {} → after {}",
                change["before"], change["after"]
            );
        }
        for pair in changes.windows(2) {
            if pair[0]["after"] != pair[1]["before"] {
                return Err(format!(
                    "the changes of {key} do not chain: {} then {}",
                    pair[0], pair[1]
                ));
            }
        }
    }
    println!();
    print_report(&plan.monitor().report());
    Ok(())
}
