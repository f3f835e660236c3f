//! A snapshot streams out of the arrangement in bounded pieces, and the frontier does not pass
//! the snapshot's time before its last pair.

use std::cell::RefCell;
use std::rc::Rc;

use differential_dataflow::input::Input;
use outflow_dataflow::operators::{CombineAtTimestamp, CombineOptions, KeyBy, PairCredit, SinkKey};
use outflow_dataflow::{Datum, Row};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

const SNAPSHOT_ROWS: i64 = 30_000;

#[derive(Debug, Default)]
struct Consumption {
    received: usize,
    activations_with_data: usize,
    most_in_one_activation: usize,
    /// Pairs received while the frontier was already past the snapshot's time.
    late: usize,
    /// Whether the frontier passed the snapshot's time before every pair had arrived.
    frontier_passed_early: bool,
}

/// Feeds a snapshot of distinct keys at time 0 to one worker and consumes the pairs in a sink
/// that returns credit for what it received, if given a credit.
fn consume_snapshot(
    options: impl FnOnce() -> (CombineOptions<u64>, Option<PairCredit>) + Send + Sync + 'static,
) -> Consumption {
    timely::execute_directly(move |worker| {
        let consumption = Rc::new(RefCell::new(Consumption::default()));
        let seen = Rc::clone(&consumption);
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let key = SinkKey::Declared {
                columns: vec![0],
                enforced: true,
            };
            let (options, credit) = options();
            rows.key_by(&key)
                .combine_at_timestamp_with(&key, options)
                .pairs
                .sink(Pipeline, "Consumer", move |(input, frontier)| {
                    let mut seen = seen.borrow_mut();
                    let mut now = 0;
                    input.for_each(|_, pairs| now += pairs.len());
                    if now > 0 {
                        seen.received += now;
                        seen.activations_with_data += 1;
                        seen.most_in_one_activation = seen.most_in_one_activation.max(now);
                        if !frontier.less_equal(&0) {
                            seen.late += now;
                        }
                        if let Some(credit) = &credit {
                            credit.grant(now);
                        }
                    }
                    if !frontier.less_equal(&0) && seen.received < SNAPSHOT_ROWS as usize {
                        seen.frontier_passed_early = true;
                    }
                });
            input
        });
        for id in 0..SNAPSHOT_ROWS {
            input.insert(Row::pack_slice(&[
                Datum::Int64(id),
                Datum::String("payload"),
            ]));
        }
        input.advance_to(1);
        input.flush();
        drop(input);
        while worker.step_or_park(None) {}
        Rc::try_unwrap(consumption)
            .expect("dataflow finished")
            .into_inner()
    })
}

#[test]
fn credit_bounds_the_pairs_in_flight() {
    let seen = consume_snapshot(|| {
        let credit = PairCredit::new(1_000);
        (
            CombineOptions::default().with_credit(credit.clone()),
            Some(credit),
        )
    });
    eprintln!("{seen:?}");
    assert_eq!(seen.received, SNAPSHOT_ROWS as usize);
    assert!(
        seen.most_in_one_activation <= 1_000,
        "{} pairs reached the consumer at once",
        seen.most_in_one_activation
    );
    assert!(
        seen.activations_with_data >= 30,
        "only {} deliveries",
        seen.activations_with_data
    );
    assert_eq!(seen.late, 0);
    assert!(!seen.frontier_passed_early);
}

#[test]
fn fuel_yields_to_the_consumer_during_a_snapshot() {
    let seen = consume_snapshot(|| (CombineOptions::default().with_fuel(4_096), None));
    eprintln!("{seen:?}");
    assert_eq!(seen.received, SNAPSHOT_ROWS as usize);
    assert!(
        seen.most_in_one_activation <= 4_096,
        "{} pairs reached the consumer at once",
        seen.most_in_one_activation
    );
    assert!(
        seen.activations_with_data >= 10,
        "only {} deliveries",
        seen.activations_with_data
    );
    assert!(!seen.frontier_passed_early);
}
