//! The guide's e-commerce order pipeline: `orders` joined with `order_items`, grouped into
//! `order_summaries` (total amount and item count per order), written to an UPSERT topic
//! (the latest summary of each order) and a DEBEZIUM topic (every change, before and after).
//!
//! ```sql
//! CREATE MATERIALIZED VIEW order_summaries AS
//! SELECT o.order_id, o.customer_id, o.order_date,
//!        SUM(oi.quantity * oi.price) AS total_amount, COUNT(*) AS item_count, o.status
//! FROM orders o JOIN order_items oi ON o.order_id = oi.order_id
//! GROUP BY o.order_id, o.customer_id, o.order_date, o.status;
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use differential_dataflow::input::Input;
use outflow::dataflow::relation::{Date, Numeric};
use outflow::dataflow::{Datum, Row};
use outflow::SinkKafka;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{catalog, print_messages, print_report, read_topic, wait_for_commit, Target};

/// What to run.
#[derive(Clone, Debug)]
pub struct OrderOptions {
    /// `host:port` of a broker; `None` starts the embedded one.
    pub broker: Option<String>,
    pub workers: usize,
    /// Orders in the initial snapshot.
    pub orders: usize,
    /// Rounds of changes after the snapshot, one timestamp each.
    pub rounds: u64,
    pub seed: u64,
    /// Messages of each topic to print.
    pub show: usize,
}

impl Default for OrderOptions {
    fn default() -> Self {
        OrderOptions {
            broker: None,
            workers: 2,
            orders: 200,
            rounds: 5,
            seed: 42,
            show: 4,
        }
    }
}

/// The statements of the pipeline's sinks; the summaries themselves are computed in Rust.
fn statements(bootstrap: &str) -> String {
    format!(
        "CREATE CONNECTION kafka_connection TO KAFKA (BROKER '{bootstrap}', SECURITY PROTOCOL PLAINTEXT);
         CREATE TABLE order_summaries (
             order_id bigint PRIMARY KEY,
             customer_id bigint NOT NULL,
             order_date date NOT NULL,
             total_amount numeric(14, 2) NOT NULL,
             item_count bigint NOT NULL,
             status text NOT NULL
         );
         CREATE SINK order_updates FROM order_summaries
           INTO KAFKA CONNECTION kafka_connection (TOPIC 'order_updates')
           KEY (order_id) FORMAT JSON ENVELOPE UPSERT;
         CREATE SINK order_changes FROM order_summaries
           INTO KAFKA CONNECTION kafka_connection (TOPIC 'order_changes')
           KEY (order_id) FORMAT JSON ENVELOPE DEBEZIUM;"
    )
}

/// `(order_id, (customer_id, order_date as days since 1970, status))`.
type Order = (i64, (i64, i32, String));
/// `(order_id, (line_number, quantity, price in cents))`.
type Item = (i64, (i32, i64, i64));

/// The changes of one timestamp.
#[derive(Clone, Debug, Default)]
pub struct Round {
    pub orders: Vec<(Order, isize)>,
    pub items: Vec<(Item, isize)>,
}

#[derive(Clone, Debug)]
struct OrderState {
    customer: i64,
    date: i32,
    status: &'static str,
    items: Vec<(i32, i64, i64)>,
}

/// A seeded history: the snapshot at time 0, then rounds in which orders move from pending to
/// shipped to delivered, gain items, are deleted, and new orders arrive. Returns it with the
/// number of orders that have items at the end (the summaries the upsert topic must hold).
pub fn history(orders: usize, rounds: u64, seed: u64) -> (Vec<Round>, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let first_day = Date::from_ymd(2024, 5, 1).expect("a valid date").0;
    let mut state: BTreeMap<i64, OrderState> = BTreeMap::new();
    let mut next_id = 1000i64;
    let mut new_order =
        |rng: &mut StdRng, round: &mut Round, state: &mut BTreeMap<i64, OrderState>, day: i32| {
            let id = next_id;
            next_id += 1;
            let order = OrderState {
                customer: rng.gen_range(1..=50),
                date: first_day + day,
                status: "pending",
                items: (1..=rng.gen_range(1..=4))
                    .map(|line| (line, rng.gen_range(1..=5), rng.gen_range(199..=19_999)))
                    .collect(),
            };
            round.orders.push((
                (id, (order.customer, order.date, order.status.to_string())),
                1,
            ));
            for &(line, quantity, price) in &order.items {
                round.items.push(((id, (line, quantity, price)), 1));
            }
            state.insert(id, order);
        };
    let mut history = Vec::new();
    let mut snapshot = Round::default();
    for _ in 0..orders {
        new_order(&mut rng, &mut snapshot, &mut state, 0);
    }
    history.push(snapshot);
    for time in 1..=rounds {
        let mut round = Round::default();
        let ids: Vec<i64> = state.keys().copied().collect();
        let mut touched = std::collections::BTreeSet::new();
        for _ in 0..orders.div_ceil(8) {
            let id = ids[rng.gen_range(0..ids.len())];
            if !touched.insert(id) {
                continue;
            }
            let order = state.get_mut(&id).expect("ids come from the state");
            match rng.gen_range(0..10) {
                // Deleted: the order and its items go, and its summary becomes a tombstone.
                0 => {
                    let order = state.remove(&id).expect("present");
                    round.orders.push((
                        (id, (order.customer, order.date, order.status.to_string())),
                        -1,
                    ));
                    for (line, quantity, price) in order.items {
                        round.items.push(((id, (line, quantity, price)), -1));
                    }
                }
                // Another item: the total and the count change.
                1..=3 => {
                    let line = order.items.len() as i32 + 1;
                    let item = (line, rng.gen_range(1..=5), rng.gen_range(199..=19_999));
                    order.items.push(item);
                    round.items.push(((id, item), 1));
                }
                // The next status.
                _ => {
                    let next = match order.status {
                        "pending" => "shipped",
                        "shipped" => "delivered",
                        _ => continue,
                    };
                    round.orders.push((
                        (id, (order.customer, order.date, order.status.to_string())),
                        -1,
                    ));
                    order.status = next;
                    round
                        .orders
                        .push(((id, (order.customer, order.date, next.to_string())), 1));
                }
            }
        }
        for _ in 0..orders.div_ceil(20) {
            new_order(&mut rng, &mut round, &mut state, time as i32);
        }
        history.push(round);
    }
    let summaries = state.values().filter(|o| !o.items.is_empty()).count();
    (history, summaries)
}

/// A summary as the `order_summaries` row.
fn summary_row(
    order_id: i64,
    customer: i64,
    date: i32,
    status: &str,
    total_cents: i64,
    items: i64,
) -> Row {
    Row::pack_slice(&[
        Datum::Int64(order_id),
        Datum::Int64(customer),
        Datum::Date(Date(date)),
        Datum::Numeric(Numeric::new(total_cents as i128, 2)),
        Datum::Int64(items),
        Datum::String(status),
    ])
}

/// Runs the pipeline, reads both topics back and prints them with the sinks' reports.
pub fn run(options: &OrderOptions) -> Result<(), String> {
    let target = Target::new(options.broker.clone())?;
    println!(
        "order pipeline on {} workers, {}",
        options.workers,
        target.describe()
    );
    let catalog = catalog(&statements(target.bootstrap()))?;
    let upserts = target.plan(&catalog, "order_updates")?;
    let changes = target.plan(&catalog, "order_changes")?;
    let (history, expected_summaries) = history(options.orders, options.rounds, options.seed);
    let history = Arc::new(history);
    let started = Instant::now();

    let (upsert_plan, change_plan) = (upserts.clone(), changes.clone());
    let outcomes = timely::execute(timely::Config::process(options.workers), move |worker| {
        let (mut orders, mut items, probes) = worker.dataflow::<u64, _, _>(|scope| {
            let (orders_input, orders) = scope.new_collection::<Order, isize>();
            let (items_input, items) = scope.new_collection::<Item, isize>();
            let summaries = orders
                .join(items)
                .map(
                    |(id, ((customer, date, status), (_line, quantity, price)))| {
                        ((id, customer, date, status), quantity * price)
                    },
                )
                .reduce(|_order, amounts, output: &mut Vec<((i64, i64), isize)>| {
                    let total: i64 = amounts
                        .iter()
                        .map(|(amount, count)| **amount * *count as i64)
                        .sum();
                    let count: i64 = amounts.iter().map(|(_, count)| *count as i64).sum();
                    output.push(((total, count), 1));
                })
                .map(|((id, customer, date, status), (total, count))| {
                    summary_row(id, customer, date, &status, total, count)
                });
            let upserted = summaries.clone().sink_kafka(&upsert_plan);
            let changed = summaries.sink_kafka(&change_plan);
            match (upserted, changed) {
                (Ok(u), Ok(c)) => Ok((orders_input, items_input, vec![u.probe, c.probe])),
                (Err(e), _) | (_, Err(e)) => Err(e.to_string()),
            }
        })?;
        let monitors = [upsert_plan.monitor(), change_plan.monitor()];
        for (time, round) in history.iter().enumerate() {
            let time = time as u64;
            if worker.index() == 0 {
                for (order, diff) in &round.orders {
                    orders.update(order.clone(), *diff);
                }
                for (item, diff) in &round.items {
                    items.update(*item, *diff);
                }
            }
            orders.advance_to(time + 1);
            items.advance_to(time + 1);
            orders.flush();
            items.flush();
            wait_for_commit(worker, &probes, &monitors, Some(time + 1), started)?;
            if worker.index() == 0 {
                let what = if time == 0 { "snapshot" } else { "round" };
                println!(
                    "  time {time} ({what}) committed to both topics after {:.2} s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        drop(orders);
        drop(items);
        wait_for_commit(worker, &probes, &monitors, None, started)
    })
    .map_err(|e| format!("cannot start the timely workers: {e}"))?
    .join();
    for outcome in outcomes {
        outcome.map_err(|e| format!("a worker stopped: {e}"))??;
    }

    println!();
    let updates = read_topic(target.bootstrap(), &upserts.plan().spec.topic)?;
    print_messages(&upserts.plan().spec.topic, &updates, options.show);
    let mut latest: BTreeMap<String, bool> = BTreeMap::new();
    for message in &updates {
        latest.insert(message.key_text(), message.value.is_some());
    }
    let live = latest.values().filter(|present| **present).count();
    println!(
        "  read as a table (latest message per key, tombstones deleting): {live} orders; the dataflow's \
         order_summaries holds {expected_summaries}"
    );
    let debezium = read_topic(target.bootstrap(), &changes.plan().spec.topic)?;
    print_messages(&changes.plan().spec.topic, &debezium, options.show);
    println!();
    print_report(&upserts.monitor().report());
    print_report(&changes.monitor().report());
    if live != expected_summaries && target.is_embedded() {
        return Err(format!(
            "topic {} holds {live} orders, not the {expected_summaries} of order_summaries",
            upserts.plan().spec.topic
        ));
    }
    Ok(())
}
