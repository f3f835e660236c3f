//! Shared by the operator tests: update histories, a run of the operators on a timely
//! process of any number of workers, and a plain sequential model of what they must emit.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use differential_dataflow::input::Input;
use outflow_dataflow::operators::{
    CombineAtTimestamp, CombineOptions, KeyBy, KeyViolation, KeyedPair, SinkKey,
};
use outflow_dataflow::{worker_for_key, Datum, DiffPair, Row};
use proptest::prelude::*;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::probe::{Handle as ProbeHandle, Probe};
use timely::dataflow::Stream;

pub const MAX_TIME: u64 = 6;

/// A row of the test relation `(id int8, v int8)`; `id` is its key.
pub fn row(id: i64, v: i64) -> Row {
    Row::pack_slice(&[Datum::Int64(id), Datum::Int64(v)])
}

#[derive(Clone, Debug)]
pub struct Update {
    pub row: Row,
    pub time: u64,
    pub diff: isize,
}

/// Arbitrary updates: keys often hold several rows, rows are retracted that were never
/// inserted, copies pile up.
pub fn arbitrary_history() -> impl Strategy<Value = Vec<Update>> {
    prop::collection::vec(
        (
            0..5i64,
            0..3i64,
            0..=MAX_TIME,
            prop_oneof![Just(-2isize), Just(-1), Just(1), Just(2)],
        ),
        0..40,
    )
    .prop_map(|updates| {
        updates
            .into_iter()
            .map(|(id, v, time, diff)| Update {
                row: row(id, v),
                time,
                diff,
            })
            .collect()
    })
}

/// Histories of a well-keyed relation: at each step a key changes to a new value or goes away.
pub fn keyed_history() -> impl Strategy<Value = Vec<Update>> {
    prop::collection::vec((0..=MAX_TIME, 0..6i64, prop::option::of(0..4i64)), 0..40).prop_map(
        |steps| {
            let mut steps = steps;
            steps.sort_by_key(|s| s.0);
            let mut current: BTreeMap<i64, i64> = BTreeMap::new();
            let mut changed: BTreeSet<(i64, u64)> = BTreeSet::new();
            let mut updates = Vec::new();
            for (time, id, value) in steps {
                // One change per key and time keeps the history unique at every time.
                if !changed.insert((id, time)) {
                    continue;
                }
                if let Some(old) = current.remove(&id) {
                    updates.push(Update {
                        row: row(id, old),
                        time,
                        diff: -1,
                    });
                }
                if let Some(new) = value {
                    updates.push(Update {
                        row: row(id, new),
                        time,
                        diff: 1,
                    });
                    current.insert(id, new);
                }
            }
            updates
        },
    )
}

pub fn any_history() -> impl Strategy<Value = Vec<Update>> {
    prop_oneof![arbitrary_history(), keyed_history()]
}

pub fn any_key() -> impl Strategy<Value = SinkKey> {
    prop_oneof![
        Just(SinkKey::Declared {
            columns: vec![0],
            enforced: true
        }),
        Just(SinkKey::Declared {
            columns: vec![0],
            enforced: false
        }),
        Just(SinkKey::Relation { columns: vec![0] }),
        Just(SinkKey::WholeRow),
    ]
}

pub fn any_workers() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), Just(2), Just(4)]
}

/// When the input advances, and whether the worker waits for the operators to catch up
/// there: waiting cuts the history into several batches, not waiting lets one batch span
/// several times.
pub fn any_schedule() -> impl Strategy<Value = Vec<(u64, bool)>> {
    prop::collection::btree_map(1..=MAX_TIME, any::<bool>(), 0..4).prop_map(|steps| {
        let mut steps: Vec<(u64, bool)> = steps.into_iter().collect();
        steps.push((MAX_TIME + 1, true));
        steps
    })
}

/// What the workers emitted, each record with the worker that emitted it, in emission order.
#[derive(Debug, Default)]
pub struct Emitted {
    pub pairs: Vec<(usize, KeyedPair<u64>)>,
    pub violations: Vec<(usize, KeyViolation<u64>)>,
}

impl Emitted {
    /// The pairs of all workers by time and then key; the pairs of one key at one time keep
    /// their emission order.
    pub fn pairs_in_order(&self) -> Vec<KeyedPair<u64>> {
        let mut pairs: Vec<KeyedPair<u64>> = self.pairs.iter().map(|(_, p)| p.clone()).collect();
        pairs.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        pairs
    }

    pub fn violations_in_order(&self) -> Vec<KeyViolation<u64>> {
        let mut violations: Vec<KeyViolation<u64>> =
            self.violations.iter().map(|(_, v)| v.clone()).collect();
        violations.sort_by(|a, b| (a.time, &a.key).cmp(&(b.time, &b.key)));
        violations
    }

    /// Checks what a sink relies on: keys on their owners, each worker's pairs in key order
    /// within a time, each key's pairs in time order.
    pub fn check_placement_and_order(&self, workers: usize) {
        for (worker, (key, time, _)) in &self.pairs {
            assert_eq!(
                worker_for_key(key, workers),
                *worker,
                "pair of {key:?} at {time} emitted by worker {worker}"
            );
        }
        for worker in 0..workers {
            let mine: Vec<&KeyedPair<u64>> = self
                .pairs
                .iter()
                .filter(|(w, _)| *w == worker)
                .map(|(_, p)| p)
                .collect();
            let mut last_key_at: BTreeMap<u64, &Row> = BTreeMap::new();
            let mut last_time_of: BTreeMap<&Row, u64> = BTreeMap::new();
            for (key, time, _) in mine {
                if let Some(previous) = last_key_at.insert(*time, key) {
                    assert!(
                        previous <= key,
                        "worker {worker} emitted key {key:?} after {previous:?} at time {time}"
                    );
                }
                if let Some(previous) = last_time_of.insert(key, *time) {
                    assert!(
                        previous <= *time,
                        "worker {worker} emitted {key:?} at {time} after time {previous}"
                    );
                }
            }
        }
    }
}

/// Runs `key_by`, `combine_at_timestamp_with` on `workers` workers of one process. Update `i`
/// enters at worker `i % workers`, so the arrangement's exchange does the placing.
pub fn run<F>(
    workers: usize,
    updates: &[Update],
    schedule: &[(u64, bool)],
    key: &SinkKey,
    options: F,
) -> Emitted
where
    F: Fn() -> CombineOptions<u64> + Send + Sync + 'static,
{
    let emitted = Arc::new(Mutex::new(Emitted::default()));
    let updates = Arc::new(updates.to_vec());
    let schedule = schedule.to_vec();
    let key = key.clone();
    let shared = Arc::clone(&emitted);
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let combined = rows.key_by(&key).combine_at_timestamp_with(&key, options());
            let pairs = combined.pairs.probe_with(&probe);
            capture(
                pairs,
                index,
                Arc::clone(&shared),
                |p| p.1,
                |e, w, p| e.pairs.push((w, p)),
            );
            capture(
                combined.violations,
                index,
                Arc::clone(&shared),
                |v| v.time,
                |e, w, v| e.violations.push((w, v)),
            );
            input
        });
        let mut from = 0;
        for &(upto, wait) in &schedule {
            for (_, update) in updates
                .iter()
                .enumerate()
                .filter(|(i, u)| i % peers == index && u.time >= from && u.time < upto)
            {
                input.update_at(update.row.clone(), update.time, update.diff);
            }
            input.advance_to(upto);
            input.flush();
            if wait {
                while probe.less_than(&upto) {
                    worker.step();
                }
            }
            from = upto;
        }
    })
    .expect("timely starts");
    for result in guards.join() {
        result.expect("worker finished");
    }
    Arc::try_unwrap(emitted)
        .map_err(|_| "workers still hold the capture")
        .unwrap()
        .into_inner()
        .unwrap()
}

/// Records what reaches a stream's consumer, checking that each record comes at its own time
/// and before the consumer's frontier passes that time.
pub fn capture<'scope, D: Clone + 'static>(
    stream: Stream<'scope, u64, Vec<D>>,
    worker: usize,
    into: Arc<Mutex<Emitted>>,
    time_of: fn(&D) -> u64,
    record: fn(&mut Emitted, usize, D),
) {
    stream.sink(Pipeline, "Capture", move |(input, frontier)| {
        input.for_each(|capability, data| {
            let stamp = capability.stamp().elements().to_vec();
            let mut emitted = into.lock().unwrap();
            for datum in data.drain(..) {
                let time = time_of(&datum);
                assert_eq!(
                    stamp,
                    vec![time],
                    "record at time {time} sent under stamp {stamp:?}"
                );
                assert!(
                    frontier.less_equal(&time),
                    "record at time {time} arrived after the frontier passed it"
                );
                record(&mut emitted, worker, datum);
            }
        });
    });
}

/// The sequential model: consolidate, then walk times in order and keys in order, keeping each
/// key's rows, and pair as the operator documents.
pub fn model(
    updates: &[Update],
    key: &SinkKey,
    skip: impl Fn(&Row, u64) -> bool,
) -> (Vec<KeyedPair<u64>>, Vec<KeyViolation<u64>>) {
    let mut consolidated: BTreeMap<(u64, Row, Row), isize> = BTreeMap::new();
    for update in updates {
        let (k, v) = match key.columns() {
            Some(columns) => (update.row.project(columns), update.row.clone()),
            None => (update.row.clone(), Row::default()),
        };
        *consolidated.entry((update.time, k, v)).or_default() += update.diff;
    }
    consolidated.retain(|_, diff| *diff != 0);

    let mut groups: BTreeMap<(u64, Row), Vec<(Row, isize)>> = BTreeMap::new();
    for ((time, k, v), diff) in consolidated {
        groups.entry((time, k)).or_default().push((v, diff));
    }

    let mut state: BTreeMap<Row, BTreeMap<Row, isize>> = BTreeMap::new();
    let (mut pairs, mut violations) = (Vec::new(), Vec::new());
    for ((time, k), vals) in groups {
        if key.columns().is_none() {
            let net: isize = vals.iter().map(|(_, d)| d).sum();
            if !skip(&k, time) {
                for _ in 0..net.unsigned_abs() {
                    let pair = if net < 0 {
                        DiffPair::delete(k.clone())
                    } else {
                        DiffPair::insert(k.clone())
                    };
                    pairs.push((k.clone(), time, pair));
                }
            }
            continue;
        }
        let held = state.entry(k.clone()).or_default();
        for (v, d) in &vals {
            *held.entry(v.clone()).or_default() += d;
        }
        held.retain(|_, count| *count != 0);
        let expand = |negative: bool| -> Vec<Row> {
            vals.iter()
                .filter(|(_, d)| (*d < 0) == negative)
                .flat_map(|(v, d)| std::iter::repeat_n(v.clone(), d.unsigned_abs()))
                .collect()
        };
        let (befores, afters) = (expand(true), expand(false));
        let violated = befores.len() > 1
            || afters.len() > 1
            || held.values().sum::<isize>() > 1
            || held.values().any(|c| *c < 0);
        if skip(&k, time) {
            continue;
        }
        let enforced = !matches!(
            key,
            SinkKey::Declared {
                enforced: false,
                ..
            }
        );
        if violated {
            let side = |negative: bool| {
                vals.iter()
                    .filter(|(_, d)| (*d < 0) == negative)
                    .map(|(v, d)| (v.clone(), d.unsigned_abs()))
                    .collect()
            };
            violations.push(KeyViolation {
                key: k.clone(),
                time,
                retracted: side(true),
                inserted: side(false),
                held: held.iter().map(|(v, c)| (v.clone(), *c)).collect(),
                enforced,
                refusal: None,
            });
            if enforced {
                continue;
            }
        }
        for i in 0..befores.len().max(afters.len()) {
            pairs.push((
                k.clone(),
                time,
                DiffPair {
                    before: befores.get(i).cloned(),
                    after: afters.get(i).cloned(),
                },
            ));
        }
    }
    (pairs, violations)
}
