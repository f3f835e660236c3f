//! `combine_at_timestamp` against the sequential model, on 1, 2 and 4 workers.

mod common;

use common::*;
use outflow_dataflow::operators::{CombineOptions, SinkKey};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Pairs and violations equal the model's whatever the worker count and batching, keys
    /// stay on their owners, and each worker emits in key order within a time.
    #[test]
    fn pairs_and_violations_match_the_model(
        updates in any_history(),
        key in any_key(),
        workers in any_workers(),
        schedule in any_schedule(),
    ) {
        let emitted = run(workers, &updates, &schedule, &key, CombineOptions::default);
        emitted.check_placement_and_order(workers);
        let (pairs, violations) = model(&updates, &key, |_, _| false);
        prop_assert_eq!(emitted.pairs_in_order(), pairs);
        prop_assert_eq!(emitted.violations_in_order(), violations);
    }

    /// SNAPSHOT = false drops everything at and before the as-of time, and nothing else; the
    /// key check still counts the skipped state.
    #[test]
    fn without_snapshot_drops_the_as_of_time(
        updates in any_history(),
        key in any_key(),
        workers in any_workers(),
        as_of in 0..=MAX_TIME,
    ) {
        let schedule = [(as_of + 1, true), (MAX_TIME + 1, true)];
        let emitted = run(workers, &updates, &schedule, &key, move || CombineOptions::default().without_snapshot(as_of));
        let (pairs, violations) = model(&updates, &key, |_, time| time <= as_of);
        prop_assert_eq!(emitted.pairs_in_order(), pairs);
        prop_assert_eq!(emitted.violations_in_order(), violations);
    }

    /// A unique relation never violates its key, and each key's update at a time is one pair.
    #[test]
    fn keyed_histories_pair_without_violations(updates in keyed_history(), workers in any_workers()) {
        let key = SinkKey::Declared { columns: vec![0], enforced: true };
        let emitted = run(workers, &updates, &[(MAX_TIME + 1, true)], &key, CombineOptions::default);
        prop_assert!(emitted.violations.is_empty(), "{:?}", emitted.violations);
        let pairs = emitted.pairs_in_order();
        for window in pairs.windows(2) {
            prop_assert!((window[0].1, &window[0].0) != (window[1].1, &window[1].0), "two pairs for one key and time: {:?}", window);
        }
        prop_assert_eq!(pairs, model(&updates, &key, |_, _| false).0);
    }
}

#[test]
fn update_delete_insert_and_cancelled_changes() {
    let updates = [
        Update {
            row: row(1, 10),
            time: 0,
            diff: 1,
        },
        Update {
            row: row(2, 20),
            time: 0,
            diff: 1,
        },
        Update {
            row: row(3, 30),
            time: 0,
            diff: 1,
        },
        Update {
            row: row(1, 10),
            time: 1,
            diff: -1,
        },
        Update {
            row: row(1, 11),
            time: 1,
            diff: 1,
        },
        Update {
            row: row(2, 20),
            time: 1,
            diff: -1,
        },
        Update {
            row: row(3, 30),
            time: 1,
            diff: -1,
        },
        Update {
            row: row(3, 30),
            time: 1,
            diff: 1,
        },
        Update {
            row: row(4, 40),
            time: 1,
            diff: 1,
        },
    ];
    let key = SinkKey::Declared {
        columns: vec![0],
        enforced: true,
    };
    let emitted = run(2, &updates, &[(2, true)], &key, CombineOptions::default);
    let id = |i: i64| outflow_dataflow::Row::pack_slice(&[outflow_dataflow::Datum::Int64(i)]);
    use outflow_dataflow::DiffPair;
    assert_eq!(
        emitted.pairs_in_order(),
        vec![
            (id(1), 0, DiffPair::insert(row(1, 10))),
            (id(2), 0, DiffPair::insert(row(2, 20))),
            (id(3), 0, DiffPair::insert(row(3, 30))),
            (id(1), 1, DiffPair::update(row(1, 10), row(1, 11))),
            (id(2), 1, DiffPair::delete(row(2, 20))),
            (id(4), 1, DiffPair::insert(row(4, 40))),
        ]
    );
    assert!(emitted.violations.is_empty());
}

/// A key that comes to hold a second row by a lone insertion is caught through the key's
/// history, not only when one time brings several rows.
#[test]
fn violations_are_found_across_times_and_enforced_keys_withhold_their_pairs() {
    let updates = [
        Update {
            row: row(1, 10),
            time: 0,
            diff: 1,
        },
        Update {
            row: row(1, 11),
            time: 1,
            diff: 1,
        },
        Update {
            row: row(1, 10),
            time: 2,
            diff: -1,
        },
    ];
    for (enforced, expected_pairs) in [(true, 2), (false, 3)] {
        let key = SinkKey::Declared {
            columns: vec![0],
            enforced,
        };
        let count = outflow_dataflow::operators::ViolationCount::new();
        let counter = count.clone();
        let emitted = run(1, &updates, &[(3, true)], &key, move || {
            CombineOptions::default().count_violations_in(counter.clone())
        });
        assert_eq!(emitted.violations.len(), 1, "{:?}", emitted.violations);
        let violation = &emitted.violations[0].1;
        assert_eq!(
            (violation.time, violation.held_rows(), violation.enforced),
            (1, 2, enforced)
        );
        assert!(
            violation.to_string().contains("not unique at time 1"),
            "{violation}"
        );
        assert_eq!(count.get(), 1);
        assert_eq!(emitted.pairs.len(), expected_pairs, "{:?}", emitted.pairs);
    }
}

/// A caller that keeps its own arrangement hands it to the combiner (no second arrangement)
/// and still reads the whole collection from its trace afterwards.
#[test]
fn combines_a_shared_arrangement() {
    use std::sync::{Arc, Mutex};

    use differential_dataflow::input::Input;
    use differential_dataflow::trace::cursor::cursor_list;
    use differential_dataflow::trace::{Cursor, TraceReader};
    use outflow_dataflow::operators::{ArrangeBySinkKey, CombineAtTimestamp, KeyBy};
    use outflow_dataflow::Row;
    use timely::progress::Antichain;

    // Seven keys, each updated to a new value at every time.
    let mut updates = Vec::new();
    for i in 0..42i64 {
        let (id, time) = (i % 7, (i / 7) as u64);
        if i >= 7 {
            updates.push(Update {
                row: row(id, i - 7),
                time,
                diff: -1,
            });
        }
        updates.push(Update {
            row: row(id, i),
            time,
            diff: 1,
        });
    }
    let key = SinkKey::Declared {
        columns: vec![0],
        enforced: true,
    };
    let emitted = Arc::new(Mutex::new(Emitted::default()));
    let shared = Arc::clone(&emitted);
    let input_updates = updates.clone();
    let sink_key = key.clone();
    let final_rows = timely::execute(timely::Config::process(2), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let (mut input, mut trace) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let arranged = rows.key_by(&sink_key).arrange_by_sink_key();
            let trace = arranged.trace.clone();
            let combined = arranged.combine_at_timestamp(&sink_key);
            capture(
                combined.pairs,
                index,
                Arc::clone(&shared),
                |p| p.1,
                |e, w, p| e.pairs.push((w, p)),
            );
            (input, trace)
        });
        for (_, update) in input_updates
            .iter()
            .enumerate()
            .filter(|(i, _)| i % peers == index)
        {
            input.update_at(update.row.clone(), update.time, update.diff);
        }
        drop(input);
        while worker.step_or_park(None) {}
        let (mut cursor, storage) = cursor_list(
            trace
                .batches_through(Antichain::new().borrow())
                .expect("whole trace"),
        );
        let mut rows = Vec::new();
        while let Some(key) = cursor.get_key(&storage) {
            while let Some(row) = cursor.get_val(&storage) {
                let mut copies = 0;
                cursor.map_times(&storage, |_, diff| copies += *diff);
                if copies != 0 {
                    rows.push((key.clone(), row.clone(), copies));
                }
                cursor.step_val(&storage);
            }
            cursor.step_key(&storage);
        }
        rows
    })
    .unwrap()
    .join()
    .into_iter()
    .flat_map(|rows| rows.unwrap())
    .count();
    assert_eq!(
        final_rows, 7,
        "the caller's trace holds the last row of each of the 7 keys"
    );
    let emitted = Arc::try_unwrap(emitted).ok().unwrap().into_inner().unwrap();
    emitted.check_placement_and_order(2);
    assert!(emitted.violations.is_empty());
    assert_eq!(
        emitted.pairs_in_order(),
        model(&updates, &key, |_, _| false).0
    );
}

/// A later batch touching a few keys far apart in a large history: the combiner must find each
/// key's history by seeking, not only by stepping.
#[test]
fn sparse_changes_find_their_history() {
    let mut updates: Vec<Update> = (0..200)
        .map(|id| Update {
            row: row(id, 0),
            time: 0,
            diff: 1,
        })
        .collect();
    for id in [3, 50, 51, 199] {
        updates.push(Update {
            row: row(id, 0),
            time: 1,
            diff: -1,
        });
        updates.push(Update {
            row: row(id, 1),
            time: 1,
            diff: 1,
        });
    }
    updates.push(Update {
        row: row(120, 7),
        time: 1,
        diff: 1,
    });
    updates.push(Update {
        row: row(180, 7),
        time: 2,
        diff: 1,
    });
    let key = SinkKey::Declared {
        columns: vec![0],
        enforced: false,
    };
    for workers in [1, 2] {
        let emitted = run(
            workers,
            &updates,
            &[(1, true), (2, true), (3, true)],
            &key,
            CombineOptions::default,
        );
        let (pairs, violations) = model(&updates, &key, |_, _| false);
        assert_eq!(emitted.pairs_in_order(), pairs);
        assert_eq!(emitted.violations_in_order(), violations);
        let found: Vec<(u64, i64)> = violations
            .iter()
            .map(|v| {
                (
                    v.time,
                    match v.key.unpack_first() {
                        outflow_dataflow::Datum::Int64(id) => id,
                        other => panic!("{other:?}"),
                    },
                )
            })
            .collect();
        assert_eq!(found, [(1, 120), (2, 180)]);
    }
}

/// Multiplicities are counted exactly: two updates of `i64::MAX` copies of one row at one time
/// (or across times) are refused naming the row, enforced or not, where 64-bit sums wrapped.
#[test]
fn multiplicities_beyond_64_bits_are_refused_naming_the_row() {
    use outflow_dataflow::operators::Refusal;
    let max = isize::MAX;
    for (times, enforced) in [([1, 1], false), ([1, 1], true), ([1, 2], false)] {
        let updates = [
            Update {
                row: row(7, 1),
                time: times[0],
                diff: max,
            },
            Update {
                row: row(7, 1),
                time: times[1],
                diff: max,
            },
            Update {
                row: row(7, 1),
                time: times[1],
                diff: 3,
            },
        ];
        let key = SinkKey::Declared {
            columns: vec![0],
            enforced,
        };
        let emitted = run(1, &updates, &[(3, true)], &key, || {
            CombineOptions::default().collapse_repeats()
        });
        let refused: Vec<_> = emitted
            .violations
            .iter()
            .filter_map(|(_, v)| v.refusal.clone().map(|r| (v.time, r)))
            .collect();
        let expected = (max as i128) * 2 + 3;
        assert_eq!(
            refused,
            vec![(
                times[1],
                Refusal::Overflow {
                    row: row(7, 1),
                    count: expected
                }
            )],
            "{times:?} enforced {enforced}: {:?}",
            emitted.violations
        );
        assert!(
            emitted.pairs.iter().all(|(_, p)| p.1 < times[1]),
            "nothing is emitted at the refused time: {:?}",
            emitted.pairs
        );
    }
}

/// A NOT ENFORCED key (or a keyless sink) with a huge multiplicity: under an upsert envelope
/// the copies collapse into one pair; otherwise more copies than the limit are refused, and
/// nothing is emitted for them (no pair per copy is ever built).
#[test]
fn huge_multiplicities_collapse_or_are_refused() {
    use outflow_dataflow::operators::Refusal;
    use outflow_dataflow::DiffPair;
    let updates = [Update {
        row: row(1, 5),
        time: 1,
        diff: 1_000_000_000_000,
    }];
    let not_enforced = SinkKey::Declared {
        columns: vec![0],
        enforced: false,
    };
    let id = outflow_dataflow::Row::pack_slice(&[outflow_dataflow::Datum::Int64(1)]);
    let upsert = run(2, &updates, &[(2, true)], &not_enforced, || {
        CombineOptions::default().collapse_repeats()
    });
    assert_eq!(
        upsert.pairs_in_order(),
        vec![(id.clone(), 1, DiffPair::insert(row(1, 5)))]
    );
    for key in [not_enforced, SinkKey::WholeRow] {
        let emitted = run(2, &updates, &[(2, true)], &key, || {
            CombineOptions::default().with_max_copies(1000)
        });
        assert!(emitted.pairs.is_empty(), "{key:?}");
        let refusals: Vec<_> = emitted
            .violations
            .iter()
            .filter_map(|(_, v)| v.refusal.clone())
            .collect();
        assert_eq!(
            refusals,
            vec![Refusal::TooManyCopies {
                messages: 1_000_000_000_000,
                limit: 1000
            }],
            "{key:?}"
        );
    }
    // Within the limit, every copy is a pair, as before.
    let few = [Update {
        row: row(1, 5),
        time: 1,
        diff: 3,
    }];
    let emitted = run(1, &few, &[(2, true)], &SinkKey::WholeRow, || {
        CombineOptions::default().with_max_copies(3)
    });
    assert_eq!(emitted.pairs.len(), 3);
}
