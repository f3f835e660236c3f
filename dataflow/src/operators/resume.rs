//! `ResumePoint`: what a previous run of a sink already committed, and which pairs that skips.

use serde::{Deserialize, Serialize};

use crate::hash::worker_for_key;
use crate::operators::OperatorError;
use crate::relation::Row;

/// The progress a previous run of a sink committed, per worker of that run.
///
/// Worker `w` of the previous run (of `old_workers`) owned the keys with
/// `stable_key_hash(key) % old_workers == w`, and its last committed progress record said:
/// every pair of its keys at a time before `frontiers[w]` is in the topic (`None`: all of
/// them, the run had finished). When that worker committed a snapshot in chunks,
/// `positions[w]` is the last key it committed at exactly the time `frontiers[w]`: keys up to
/// and including it (in row order, the order pairs leave `combine_at_timestamp` within a
/// time) are in the topic at that time too. A chunk boundary therefore never splits a key.
///
/// `positions` may be empty (no chunked snapshot anywhere). Build it with [`ResumePoint::new`],
/// or check a deserialized one with [`ResumePoint::validate`].
///
/// ```
/// use outflow_dataflow::operators::ResumePoint;
/// use outflow_dataflow::{worker_for_key, Datum, Row};
///
/// let key = Row::pack_slice(&[Datum::Int64(7)]);
/// let owner = worker_for_key(&key, 2);
/// let mut frontiers = vec![Some(10), Some(10)];
/// frontiers[owner] = Some(5);
/// let resume = ResumePoint::new(2, frontiers, Vec::new()).unwrap();
/// assert!(resume.skip(&key, &4));
/// assert!(!resume.skip(&key, &5));
/// assert_eq!(resume.resume_time(), Some(&5));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResumePoint<T = u64> {
    pub old_workers: usize,
    pub frontiers: Vec<Option<T>>,
    #[serde(default)]
    pub positions: Vec<Option<Row>>,
}

impl<T: Ord> ResumePoint<T> {
    pub fn new(
        old_workers: usize,
        frontiers: Vec<Option<T>>,
        positions: Vec<Option<Row>>,
    ) -> Result<ResumePoint<T>, OperatorError> {
        let point = ResumePoint {
            old_workers,
            frontiers,
            positions,
        };
        point.validate()?;
        Ok(point)
    }

    /// Checks that there is one frontier per previous worker, at most one position per previous
    /// worker, and a position only where that worker had not finished.
    pub fn validate(&self) -> Result<(), OperatorError> {
        if self.old_workers == 0 {
            return Err(OperatorError::ResumeWithoutWorkers);
        }
        if self.frontiers.len() != self.old_workers {
            return Err(OperatorError::ResumeFrontierCount {
                workers: self.old_workers,
                frontiers: self.frontiers.len(),
            });
        }
        if !self.positions.is_empty() && self.positions.len() != self.old_workers {
            return Err(OperatorError::ResumePositionCount {
                workers: self.old_workers,
                positions: self.positions.len(),
            });
        }
        for (worker, (frontier, position)) in self.frontiers.iter().zip(&self.positions).enumerate()
        {
            if frontier.is_none() && position.is_some() {
                return Err(OperatorError::ResumePositionWithoutFrontier { worker });
            }
        }
        Ok(())
    }

    /// Whether the previous run already committed the pairs of `key` at `time`.
    pub fn skip(&self, key: &Row, time: &T) -> bool {
        let owner = worker_for_key(key, self.old_workers);
        match &self.frontiers[owner] {
            None => true,
            Some(frontier) => {
                time < frontier
                    || (time == frontier
                        && matches!(self.positions.get(owner), Some(Some(position)) if key <= position))
            }
        }
    }

    /// The least frontier `R` of the previous run, `None` when every worker had finished. The
    /// inputs of the resumed run must reproduce every update at times from `R` on exactly, and
    /// may consolidate the history before `R`.
    pub fn resume_time(&self) -> Option<&T> {
        self.frontiers.iter().flatten().min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relation::Datum;

    fn key(i: i64) -> Row {
        Row::pack_slice(&[Datum::Int64(i)])
    }

    #[test]
    fn positions_skip_keys_up_to_the_last_committed_at_the_frontier_time() {
        let keys: Vec<Row> = (0..40)
            .map(key)
            .filter(|k| worker_for_key(k, 3) == 1)
            .collect();
        let position = keys[keys.len() / 2].clone();
        let resume = ResumePoint::new(
            3,
            vec![Some(2), Some(7), None],
            vec![None, Some(position.clone()), None],
        )
        .unwrap();
        for k in &keys {
            assert!(resume.skip(k, &6));
            assert_eq!(resume.skip(k, &7), k <= &position, "key {k:?}");
            assert!(!resume.skip(k, &8));
        }
        let done = (0..40)
            .map(key)
            .find(|k| worker_for_key(k, 3) == 2)
            .unwrap();
        assert!(resume.skip(&done, &1_000));
        assert_eq!(resume.resume_time(), Some(&2));
    }

    #[test]
    fn malformed_points_are_refused_naming_the_mismatch() {
        let err = ResumePoint::<u64>::new(2, vec![Some(1)], Vec::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "resume point for 2 previous workers has 1 frontiers"
        );
        let err =
            ResumePoint::<u64>::new(2, vec![Some(1), None], vec![None, Some(key(1))]).unwrap_err();
        assert!(err.to_string().contains("worker 1"), "{err}");
        assert!(ResumePoint::<u64>::new(0, vec![], vec![]).is_err());
    }

    #[test]
    fn serde_round_trip_without_positions() {
        let json = r#"{"old_workers":2,"frontiers":[5,null]}"#;
        let point: ResumePoint = serde_json::from_str(json).unwrap();
        assert_eq!(
            point,
            ResumePoint::new(2, vec![Some(5), None], Vec::new()).unwrap()
        );
        let back: ResumePoint =
            serde_json::from_str(&serde_json::to_string(&point).unwrap()).unwrap();
        assert_eq!(back, point);
    }
}
