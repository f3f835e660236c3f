//! Resuming: a run stopped at per-worker frontiers (and snapshot chunk positions), resumed with
//! another worker count over a consolidated history, emits exactly what was not committed.

mod common;

use common::*;
use outflow_dataflow::operators::{CombineOptions, KeyViolation, KeyedPair, ResumePoint};
use outflow_dataflow::Row;
use proptest::prelude::*;

/// Whether the previous run's worker had committed a record of `key` at `time`, going by what
/// its progress record says.
fn committed(resume: &ResumePoint, worker: usize, key: &Row, time: u64) -> bool {
    match resume.frontiers[worker] {
        None => true,
        Some(frontier) => {
            time < frontier
                || (time == frontier
                    && matches!(resume.positions.get(worker), Some(Some(p)) if key <= p))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn resuming_emits_exactly_what_was_not_committed(
        updates in any_history(),
        key in any_key(),
        old_workers in any_workers(),
        new_workers in any_workers(),
        stops in prop::collection::vec((prop::option::weighted(0.9, 0..=MAX_TIME + 1), any::<prop::sample::Index>(), any::<bool>()), 4),
    ) {
        let first = run(old_workers, &updates, &[(MAX_TIME + 1, true)], &key, CombineOptions::default);

        // Stop each previous worker at a frontier; a worker that was writing a snapshot in
        // chunks stops after some key at exactly its frontier time.
        let mut frontiers = Vec::new();
        let mut positions = Vec::new();
        for (worker, (frontier, cut, chunked)) in stops.iter().take(old_workers).enumerate() {
            frontiers.push(*frontier);
            let mut keys_at_frontier: Vec<&Row> = first
                .pairs
                .iter()
                .filter(|(w, (_, time, _))| *w == worker && Some(*time) == *frontier)
                .map(|(_, (key, _, _))| key)
                .collect();
            keys_at_frontier.dedup();
            let position = (*chunked && !keys_at_frontier.is_empty()).then(|| cut.get(&keys_at_frontier).to_owned().clone());
            positions.push(position);
        }
        let resume = ResumePoint::new(old_workers, frontiers, positions).unwrap();

        // The resumed run's input may consolidate everything before the resume time.
        let resume_time = resume.resume_time().copied();
        let consolidated: Vec<Update> = updates
            .iter()
            .map(|u| match resume_time {
                Some(r) if r > 0 && u.time < r => Update { time: r - 1, ..u.clone() },
                _ => u.clone(),
            })
            .collect();
        let point = resume.clone();
        let second = run(new_workers, &consolidated, &[(MAX_TIME + 1, true)], &key, move || {
            CombineOptions::default().resume_from(point.clone()).unwrap()
        });
        second.check_placement_and_order(new_workers);

        let mut pairs: Vec<KeyedPair<u64>> = first
            .pairs
            .iter()
            .filter(|(w, (key, time, _))| committed(&resume, *w, key, *time))
            .map(|(_, pair)| pair.clone())
            .collect();
        pairs.extend(second.pairs.iter().map(|(_, pair)| pair.clone()));
        pairs.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        prop_assert_eq!(pairs, first.pairs_in_order());

        let mut violations: Vec<KeyViolation<u64>> = first
            .violations
            .iter()
            .filter(|(w, v)| committed(&resume, *w, &v.key, v.time))
            .map(|(_, v)| v.clone())
            .collect();
        violations.extend(second.violations.iter().map(|(_, v)| v.clone()));
        violations.sort_by(|a, b| (a.time, &a.key).cmp(&(b.time, &b.key)));
        prop_assert_eq!(violations, first.violations_in_order());
    }
}
