//! Recovery: from the progress topic and the workers' committed group offsets, where a new run
//! resumes and which updates each key skips.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::progress::{worker_of_key, Claim, Point, ProgressRecord};
use super::{ProtocolError, SinkNames};

/// The progress records of one sink, read from the progress topic in offset order.
///
/// Feed it every record of the topic ([`ProgressScan::push`] ignores other sinks' keys), then
/// read the group offsets of [`ProgressScan::workers_with_records`] and call
/// [`ProgressScan::recover`]. See the module documentation for when to read and what to fence.
#[derive(Clone, Debug)]
pub struct ProgressScan {
    names: SinkNames,
    records: BTreeMap<u32, Vec<ProgressRecord>>,
    highest_seq: Option<u64>,
    highest_workers: u32,
    shows_aborted: bool,
    exact: bool,
}

/// The committed state of one previous worker, as recovery trusted it.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PreviousWorker {
    /// The worker index (the `w` of its key).
    pub worker: u32,
    /// The worker count of the run that wrote the record.
    pub workers: u32,
    /// The record's sequence number.
    pub seq: u64,
    /// Its committed frontier and, for a chunked time, the last position written at it.
    pub point: Point,
}

/// A place where the progress records and the group offsets do not tell the same story. Recovery
/// still picks a record; the sink should show these in its status.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Disagreement {
    /// With a reader that sees exactly the committed records, the worker's committed offset
    /// names another record than its newest (or there is no offset). Recovery trusted the
    /// newest record.
    OffsetDisagrees {
        /// The worker.
        worker: u32,
        /// The committed offset, if any.
        offset: Option<u64>,
        /// The sequence number of the newest record, which recovery used.
        record: Option<u64>,
    },
    /// The worker's committed offset names a sequence number no record carries. Recovery fell
    /// back to the newest record below it, if any (records above it belong to aborted
    /// transactions), unless the reader may show aborted records: then nothing of the worker is
    /// trusted, and its keys resume from the claims of the others.
    MissingRecord {
        /// The worker.
        worker: u32,
        /// The committed offset.
        offset: u64,
        /// The sequence number of the record used instead.
        fallback: Option<u64>,
    },
    /// The worker has records but no committed offset: it expired
    /// (`offsets.retention.minutes`), or, where the reader shows aborted records, the worker never
    /// committed. Recovery trusted the newest record, unless the reader may show aborted records:
    /// then none (the keys may be written again rather than lost).
    MissingOffset {
        /// The worker.
        worker: u32,
        /// The sequence number of the record used.
        fallback: Option<u64>,
    },
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disagreement::OffsetDisagrees {
                worker,
                offset,
                record,
            } => write!(
                f,
                "worker {worker}: the progress group offset names record {}, but its newest \
                 committed record is {}; resumed from the newest record",
                offset.map_or("none".to_string(), |o| o.to_string()),
                record.map_or("none".to_string(), |r| r.to_string()),
            ),
            Disagreement::MissingRecord {
                worker,
                offset,
                fallback: Some(seq),
            } => write!(
                f,
                "worker {worker}: the progress group offset names record {offset}, which is not in \
                 the progress topic; resumed from record {seq}"
            ),
            Disagreement::MissingRecord {
                worker,
                offset,
                fallback: None,
            } => write!(
                f,
                "worker {worker}: the progress group offset names record {offset}, which is not in \
                 the progress topic, and no earlier record exists; its keys resume from the start"
            ),
            Disagreement::MissingOffset {
                worker,
                fallback: Some(seq),
            } => write!(
                f,
                "worker {worker}: no committed progress group offset (expired?); resumed from its \
                 newest record {seq}"
            ),
            Disagreement::MissingOffset {
                worker,
                fallback: None,
            } => write!(
                f,
                "worker {worker}: no committed progress group offset, and the progress reader may \
                 show aborted records, so none of its records is trusted; its keys may be written \
                 again"
            ),
        }
    }
}

/// Where a new run resumes: everything recovery learned from the previous runs.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The new run's worker count.
    pub workers: u32,
    /// The worker count of the last announced run, `None` for a new sink.
    pub previous_workers: Option<u32>,
    /// The record trusted for each worker index that has one.
    pub previous: Vec<PreviousWorker>,
    /// Which updates each key skips, and the resume point.
    pub resume: Resume,
    /// The first sequence number the new run may use: above every record and offset seen.
    pub next_seq: u64,
    /// Transactional ids of previous workers at or above the new worker count; no new worker
    /// will take them over, so they must be fenced before the final read of the progress topic.
    pub retired_transactional_ids: Vec<String>,
    /// Where records and offsets disagreed.
    pub disagreements: Vec<Disagreement>,
    /// Records ignored because their sequence number is above their worker's committed offset:
    /// they come from aborted transactions on brokers that show aborted records.
    pub ignored_records: usize,
    /// How the definition the last run's records name differs from the sink's (`topic "x1" →
    /// "x2"`): the sink starts from the beginning, as a new one, since nothing those records
    /// claim was written by what it now writes.
    #[serde(default)]
    pub definition_changed: Option<String>,
}

impl Recovery {
    /// The first time the inputs must reproduce exactly, `None` if the sink is done. Updates
    /// before it may be consolidated (an `as_of` of one less).
    pub fn resume_time(&self) -> Option<u64> {
        self.resume.resume_time()
    }
}

impl ProgressScan {
    /// An empty scan for the sink `names` describes, fed by a reader that shows only committed
    /// records (`read_committed` on Kafka, or a reader that applies the control batches itself).
    pub fn new(names: &SinkNames) -> Self {
        ProgressScan {
            names: names.clone(),
            records: BTreeMap::new(),
            highest_seq: None,
            highest_workers: 0,
            shows_aborted: false,
            exact: false,
        }
    }

    /// An empty scan fed by a reader that sees exactly the committed records, having applied
    /// the control batches itself (see `outflow::rawlog`). The records are then the truth: each
    /// worker resumes from its newest record, and a group offset that names another one is only
    /// reported. This is what brokers whose fetches show aborted records need: their group
    /// offsets were seen to lag the committed records, which would make a restart write a
    /// committed transaction again.
    pub fn committed_exactly(names: &SinkNames) -> Self {
        ProgressScan {
            exact: true,
            ..Self::new(names)
        }
    }

    /// An empty scan fed by a reader that may show records of aborted transactions: librdkafka's
    /// `read_committed` consumer on a broker whose fetch sends no aborted-transaction list
    /// (Tansu). Only records named by a committed offset are trusted then.
    pub fn showing_aborted(names: &SinkNames) -> Self {
        ProgressScan {
            shows_aborted: true,
            ..Self::new(names)
        }
    }

    /// Adds the next record of the progress topic. A `None` value (a tombstone) forgets the
    /// key's earlier records, as compaction will.
    pub fn push(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), ProtocolError> {
        let Some(worker) = worker_of_key(&self.names.sink_id, key) else {
            return Ok(());
        };
        let Some(value) = value else {
            self.records.remove(&worker);
            return Ok(());
        };
        let key = String::from_utf8_lossy(key);
        let record = ProgressRecord::parse(&key, value)?;
        if record.worker != worker {
            return Err(ProtocolError::MalformedRecord {
                key: key.into_owned(),
                problem: format!("the record says it was written by worker {}", record.worker),
            });
        }
        self.highest_seq = self.highest_seq.max(Some(record.seq));
        self.highest_workers = self.highest_workers.max(record.workers);
        self.records.entry(worker).or_default().push(record);
        Ok(())
    }

    /// The workers whose progress group offsets recovery needs.
    pub fn workers_with_records(&self) -> Vec<u32> {
        self.records.keys().copied().collect()
    }

    /// Every worker index the records show in use: `0..workers` of each run a record names, and
    /// each record's own worker. Each is a transactional id some run initialized.
    pub fn workers_used(&self) -> BTreeSet<u32> {
        (0..self.highest_workers)
            .chain(self.records.keys().copied())
            .collect()
    }

    /// The transactional ids of previous workers that a run of `new_workers` will not take over:
    /// fence them (`init_transactions` with a throwaway producer) before reading again.
    pub fn retired_transactional_ids(&self, new_workers: u32) -> Vec<String> {
        (new_workers..self.highest_workers)
            .map(|w| self.names.transactional_id(w))
            .collect()
    }

    /// Computes where a run of `new_workers` resumes, given the committed offset (a `seq`) of
    /// each worker's progress group; a worker missing from `offsets` has none.
    pub fn recover(&self, offsets: &BTreeMap<u32, u64>, new_workers: u32) -> Recovery {
        assert!(new_workers > 0, "a sink runs with at least one worker");
        let mut previous = Vec::new();
        let mut disagreements = Vec::new();
        let mut ignored_records = 0;
        let mut claims = Vec::new();
        let mut trusted_records: Vec<&ProgressRecord> = Vec::new();
        let workers: BTreeSet<u32> = self.records.keys().chain(offsets.keys()).copied().collect();
        for worker in workers {
            let records = self.records.get(&worker).map(Vec::as_slice).unwrap_or(&[]);
            let trusted = match offsets.get(&worker) {
                _ if self.exact => {
                    let newest = records.iter().max_by_key(|r| r.seq);
                    let offset = offsets.get(&worker).copied();
                    if offset != newest.map(|r| r.seq) {
                        disagreements.push(Disagreement::OffsetDisagrees {
                            worker,
                            offset,
                            record: newest.map(|r| r.seq),
                        });
                    }
                    newest
                }
                Some(&offset) => {
                    ignored_records += records.iter().filter(|r| r.seq > offset).count();
                    match records.iter().rev().find(|r| r.seq == offset) {
                        Some(record) => Some(record),
                        None => {
                            let fallback = records
                                .iter()
                                .filter(|r| r.seq < offset && !self.shows_aborted)
                                .max_by_key(|r| r.seq);
                            disagreements.push(Disagreement::MissingRecord {
                                worker,
                                offset,
                                fallback: fallback.map(|r| r.seq),
                            });
                            fallback
                        }
                    }
                }
                None if records.is_empty() => None,
                None => {
                    let newest = records
                        .iter()
                        .filter(|_| !self.shows_aborted)
                        .max_by_key(|r| r.seq);
                    disagreements.push(Disagreement::MissingOffset {
                        worker,
                        fallback: newest.map(|r| r.seq),
                    });
                    newest
                }
            };
            if let Some(record) = trusted {
                trusted_records.push(record);
            }
        }
        // The record that announced the last run (worker 0's, else the newest) tells what it
        // wrote. When that differs from what the sink writes now, nothing is trusted: the sink
        // starts as a new one. Otherwise records of an earlier definition (workers the last run
        // no longer had) are left out one by one.
        let differs = |record: &ProgressRecord| match (&record.definition, &self.names.definition) {
            (Some(then), Some(now)) => then.changes_to(now),
            _ => None,
        };
        let last_run = trusted_records
            .iter()
            .find(|r| r.worker == 0)
            .or_else(|| trusted_records.iter().max_by_key(|r| r.seq));
        let definition_changed = last_run.and_then(|record| differs(record));
        for record in trusted_records {
            if definition_changed.is_some() || differs(record).is_some() {
                continue;
            }
            claims.push(record.claim());
            claims.extend(record.base.iter().cloned());
            previous.push(PreviousWorker {
                worker: record.worker,
                workers: record.workers,
                seq: record.seq,
                point: record.point.clone(),
            });
        }
        // Worker 0 announces every run, so its record tells the last run's size; the others
        // can only be older or equal.
        let previous_workers = previous
            .iter()
            .find(|p| p.worker == 0)
            .or_else(|| previous.iter().max_by_key(|p| p.seq))
            .map(|p| p.workers);
        let highest_offset = offsets.values().copied().max();
        let next_seq = self
            .highest_seq
            .max(highest_offset)
            .map_or(1, |seq| seq + 1);
        Recovery {
            workers: new_workers,
            previous_workers,
            previous,
            resume: Resume::new(claims),
            next_seq,
            retired_transactional_ids: self.retired_transactional_ids(new_workers),
            disagreements,
            ignored_records,
            definition_changed,
        }
    }
}

/// Which updates the topic already holds, as a set of claims: a key is written up to the
/// furthest point of the claims about it.
///
/// The claims come from the previous workers' records and the claims the previous run started
/// from, so the filter stays exact however the worker count changed and wherever a run stopped.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Resume {
    claims: Vec<Claim>,
    min: Point,
}

static START: Point = Point::START;

// Claims are periodic in the key hash with the least common multiple of their worker counts;
// beyond this many residues the minimum is estimated (from below) instead of enumerated.
const MAX_RESIDUES: u64 = 1 << 16;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn point_for(claims: &[Claim], key_hash: u64) -> &Point {
    claims
        .iter()
        .filter(|claim| claim.covers_key(key_hash))
        .map(|claim| &claim.point)
        .max()
        .unwrap_or(&START)
}

/// The least point of the keys whose hash is `worker` modulo `workers`.
fn min_over_class(claims: &[Claim], workers: u32, worker: u32) -> Point {
    let class = Claim {
        workers,
        worker,
        point: Point::START,
    };
    let mut modulus = u64::from(workers);
    for claim in claims {
        let other = u64::from(claim.workers);
        modulus = modulus / gcd(modulus, other) * other;
        if modulus > MAX_RESIDUES {
            return claims
                .iter()
                .filter(|claim| class.keys_within(claim))
                .map(|claim| &claim.point)
                .max()
                .unwrap_or(&START)
                .clone();
        }
    }
    (u64::from(worker)..modulus)
        .step_by(workers as usize)
        .map(|residue| point_for(claims, residue))
        .min()
        .unwrap_or(&START)
        .clone()
}

impl Resume {
    /// The resume state these claims describe, with the claims that add nothing removed.
    pub fn new(claims: impl IntoIterator<Item = Claim>) -> Resume {
        let mut best: BTreeMap<(u32, u32), Point> = BTreeMap::new();
        for claim in claims {
            let entry = best
                .entry((claim.workers, claim.worker))
                .or_insert(Point::START);
            if claim.point > *entry {
                *entry = claim.point;
            }
        }
        let mut claims: Vec<Claim> = best
            .into_iter()
            .filter(|(_, point)| *point > Point::START)
            .map(|((workers, worker), point)| Claim {
                workers,
                worker,
                point,
            })
            .collect();
        let min = min_over_class(&claims, 1, 0);
        if min > Point::START {
            // A claim about every key lets every claim at or below the minimum go.
            claims.retain(|claim| claim.workers != 1);
            claims.push(Claim {
                workers: 1,
                worker: 0,
                point: min.clone(),
            });
        }
        let dominated: Vec<bool> = claims
            .iter()
            .map(|claim| {
                claims.iter().any(|other| {
                    (other.workers, other.worker) != (claim.workers, claim.worker)
                        && claim.keys_within(other)
                        && other.point >= claim.point
                })
            })
            .collect();
        let mut dominated = dominated.into_iter();
        claims.retain(|_| !dominated.next().unwrap_or(false));
        claims.sort_by_key(|claim| (claim.workers, claim.worker));
        Resume { claims, min }
    }

    /// Nothing written: a new sink.
    pub fn fresh() -> Resume {
        Resume {
            claims: Vec::new(),
            min: Point::START,
        }
    }

    /// The claims, least worker count first. Worker 0 of the new run records them as its `base`.
    pub fn claims(&self) -> &[Claim] {
        &self.claims
    }

    /// How far the key with this stable hash is written.
    pub fn point_for(&self, key_hash: u64) -> &Point {
        point_for(&self.claims, key_hash)
    }

    /// Whether the update of the key with this stable hash, at `time` and with sort position
    /// `key_position`, is already in the topic.
    pub fn should_skip(&self, key_hash: u64, time: u64, key_position: &[u8]) -> bool {
        self.point_for(key_hash).covers(time, key_position)
    }

    /// The least point over all keys: the resume point `R`.
    pub fn min(&self) -> &Point {
        &self.min
    }

    /// The first time the inputs must reproduce exactly, `None` if every key is done.
    pub fn resume_time(&self) -> Option<u64> {
        self.min.time()
    }

    /// The least point over the keys worker `worker` of `workers` owns: where its own progress
    /// starts.
    pub fn start_for_worker(&self, worker: u32, workers: u32) -> Point {
        assert!(
            worker < workers,
            "worker {worker} is not below the worker count {workers}"
        );
        min_over_class(&self.claims, workers, worker)
    }
}

/// The resume filter: whether the update of a key at `time` is already in the topic and must be
/// dropped. A key skips every update before the point of the worker that owned it in the
/// previous run (`key_hash % old_workers`), and at that point's time the updates whose position
/// is at most the chunk position; when earlier runs with other worker counts stopped short, their
/// claims count as well.
pub fn should_skip(key_hash: u64, time: u64, key_position: &[u8], resume: &Resume) -> bool {
    resume.should_skip(key_hash, time, key_position)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Definition;

    fn names() -> SinkNames {
        SinkNames::new("s1", "tx-", "pg-")
    }

    fn at(time: u64) -> Point {
        Point::At {
            time,
            position: None,
        }
    }

    fn chunk(time: u64, position: &[u8]) -> Point {
        Point::At {
            time,
            position: Some(position.to_vec()),
        }
    }

    fn record(seq: u64, workers: u32, worker: u32, point: Point, base: Vec<Claim>) -> Vec<u8> {
        ProgressRecord {
            seq,
            workers,
            worker,
            point,
            base,
            definition: None,
        }
        .to_json()
    }

    fn claim(workers: u32, worker: u32, point: Point) -> Claim {
        Claim {
            workers,
            worker,
            point,
        }
    }

    fn scan(records: &[(&str, Vec<u8>)]) -> ProgressScan {
        let mut scan = ProgressScan::new(&names());
        for (key, value) in records {
            scan.push(key.as_bytes(), Some(value)).unwrap();
        }
        scan
    }

    fn offsets(pairs: &[(u32, u64)]) -> BTreeMap<u32, u64> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_new_sink_starts_from_nothing() {
        let recovery = scan(&[]).recover(&BTreeMap::new(), 2);
        assert_eq!(recovery.previous_workers, None);
        assert_eq!(recovery.resume_time(), Some(0));
        assert_eq!(recovery.next_seq, 1);
        assert!(recovery.retired_transactional_ids.is_empty());
        assert!(recovery.disagreements.is_empty());
        assert!(recovery.resume.claims().is_empty());
        assert!(!should_skip(5, 0, b"k", &recovery.resume));
    }

    #[test]
    fn the_offset_names_the_trusted_record_and_higher_seqs_are_ignored() {
        let scan = scan(&[
            ("s1/0", record(5, 1, 0, at(10), vec![])),
            // Aborted, but shown by a broker whose read_committed fetch shows aborted records.
            ("s1/0", record(6, 1, 0, at(20), vec![])),
        ]);
        let recovery = scan.recover(&offsets(&[(0, 5)]), 1);
        assert_eq!(recovery.resume_time(), Some(10));
        assert_eq!(recovery.ignored_records, 1);
        assert_eq!(recovery.next_seq, 7);
        assert_eq!(recovery.previous_workers, Some(1));
        assert!(recovery.disagreements.is_empty());
        assert!(should_skip(3, 9, b"", &recovery.resume));
        assert!(!should_skip(3, 10, b"", &recovery.resume));
    }

    #[test]
    fn an_expired_offset_falls_back_to_the_newest_record() {
        let scan = scan(&[
            ("s1/0", record(5, 1, 0, at(10), vec![])),
            ("s1/0", record(6, 1, 0, at(20), vec![])),
        ]);
        let recovery = scan.recover(&BTreeMap::new(), 1);
        assert_eq!(recovery.resume_time(), Some(20));
        assert_eq!(
            recovery.disagreements,
            vec![Disagreement::MissingOffset {
                worker: 0,
                fallback: Some(6)
            }]
        );
        assert!(recovery.disagreements[0].to_string().contains("expired"));
    }

    #[test]
    fn a_reader_showing_aborted_records_trusts_only_what_an_offset_names() {
        let mut scan = ProgressScan::showing_aborted(&names());
        for (key, value) in [
            ("s1/0", record(5, 2, 0, at(10), vec![])),
            ("s1/0", record(6, 2, 0, at(20), vec![])),
            // Worker 1 never committed: its only record is from an aborted transaction.
            ("s1/1", record(5, 2, 1, at(30), vec![])),
        ] {
            scan.push(key.as_bytes(), Some(&value)).unwrap();
        }
        let recovery = scan.recover(&offsets(&[(0, 5)]), 2);
        assert_eq!(recovery.resume_time(), Some(0));
        assert!(should_skip(0, 9, b"", &recovery.resume));
        assert!(!should_skip(1, 0, b"", &recovery.resume));
        assert_eq!(
            recovery.disagreements,
            vec![Disagreement::MissingOffset {
                worker: 1,
                fallback: None
            }]
        );
        let recovery = scan.recover(&offsets(&[(0, 9), (1, 5)]), 2);
        assert_eq!(
            recovery.disagreements,
            vec![Disagreement::MissingRecord {
                worker: 0,
                offset: 9,
                fallback: None
            }]
        );
        assert!(!should_skip(0, 0, b"", &recovery.resume));
    }

    #[test]
    fn an_offset_naming_a_missing_record_falls_back_below_it() {
        let scan = scan(&[
            ("s1/0", record(5, 1, 0, at(10), vec![])),
            ("s1/0", record(6, 1, 0, at(20), vec![])),
            ("s1/0", record(12, 1, 0, at(30), vec![])),
        ]);
        let recovery = scan.recover(&offsets(&[(0, 9)]), 1);
        assert_eq!(recovery.resume_time(), Some(20));
        assert_eq!(recovery.ignored_records, 1);
        assert_eq!(recovery.next_seq, 13);
        assert_eq!(
            recovery.disagreements,
            vec![Disagreement::MissingRecord {
                worker: 0,
                offset: 9,
                fallback: Some(6)
            }]
        );
        let lonely = ProgressScan::new(&names()).recover(&offsets(&[(1, 4)]), 1);
        assert_eq!(
            lonely.disagreements,
            vec![Disagreement::MissingRecord {
                worker: 1,
                offset: 4,
                fallback: None
            }]
        );
        assert_eq!(lonely.next_seq, 5);
    }

    #[test]
    fn fewer_workers_retire_ids_and_each_key_keeps_its_old_owners_frontier() {
        let scan = scan(&[
            ("s1/0", record(3, 3, 0, at(10), vec![])),
            ("s1/1", record(4, 3, 1, at(4), vec![])),
            ("s1/2", record(8, 3, 2, at(7), vec![])),
        ]);
        assert_eq!(
            scan.retired_transactional_ids(2),
            vec!["tx-s1-2".to_string()]
        );
        assert!(scan.retired_transactional_ids(3).is_empty());
        assert_eq!(scan.workers_with_records(), vec![0, 1, 2]);
        let recovery = scan.recover(&offsets(&[(0, 3), (1, 4), (2, 8)]), 2);
        assert_eq!(recovery.previous_workers, Some(3));
        assert_eq!(
            recovery.retired_transactional_ids,
            vec!["tx-s1-2".to_string()]
        );
        assert_eq!(recovery.resume_time(), Some(4));
        assert_eq!(recovery.next_seq, 9);
        for hash in 0..30u64 {
            let frontier = [10, 4, 7][(hash % 3) as usize];
            assert!(should_skip(hash, frontier - 1, b"k", &recovery.resume));
            assert!(!should_skip(hash, frontier, b"k", &recovery.resume));
        }
        // New worker 0 owns even hashes: residues 0, 2, 4 mod 6 map to old owners 0, 2, 1.
        assert_eq!(recovery.resume.start_for_worker(0, 2), at(4));
        assert_eq!(recovery.resume.start_for_worker(0, 1), at(4));
    }

    #[test]
    fn a_run_that_stopped_early_keeps_the_claims_it_started_from() {
        // Run 1 had one worker and reached 10. Run 2 had three: worker 0 announced the run
        // with run 1's claim as its base, worker 1 reached 15, worker 2 committed nothing.
        let scan = scan(&[
            ("s1/0", record(1, 1, 0, at(10), vec![])),
            ("s1/0", record(2, 3, 0, at(10), vec![claim(1, 0, at(10))])),
            ("s1/1", record(2, 3, 1, at(15), vec![])),
        ]);
        let recovery = scan.recover(&offsets(&[(0, 2), (1, 2)]), 2);
        assert_eq!(recovery.previous_workers, Some(3));
        assert_eq!(recovery.resume_time(), Some(10));
        for hash in 0..12u64 {
            let frontier = if hash % 3 == 1 { 15 } else { 10 };
            assert!(
                should_skip(hash, frontier - 1, b"", &recovery.resume),
                "hash {hash}"
            );
            assert!(
                !should_skip(hash, frontier, b"", &recovery.resume),
                "hash {hash}"
            );
        }
        assert_eq!(
            recovery.resume.claims(),
            &[claim(1, 0, at(10)), claim(3, 1, at(15))]
        );
    }

    fn defined(seq: u64, workers: u32, worker: u32, point: Point, topic: Option<&str>) -> Vec<u8> {
        ProgressRecord {
            seq,
            workers,
            worker,
            point,
            base: Vec::new(),
            definition: topic.map(|t| Definition::new([("topic", t), ("envelope", "upsert")])),
        }
        .to_json()
    }

    #[test]
    fn records_of_another_definition_are_not_trusted() {
        let now =
            names().with_definition(Definition::new([("topic", "x2"), ("envelope", "upsert")]));
        let recover = |records: &[(&str, Vec<u8>)], workers| {
            let mut scan = ProgressScan::new(&now);
            for (key, value) in records {
                scan.push(key.as_bytes(), Some(value)).unwrap();
            }
            let offsets: BTreeMap<u32, u64> = records
                .iter()
                .map(|(key, value)| {
                    let record = ProgressRecord::parse(key, value).unwrap();
                    (record.worker, record.seq)
                })
                .collect();
            scan.recover(&offsets, workers)
        };

        // The last run wrote topic x1: nothing it claims counts for x2, the sink starts anew,
        // and sequence numbers still go up.
        let renamed = recover(&[("s1/0", defined(4, 1, 0, Point::Done, Some("x1")))], 1);
        assert_eq!(
            renamed.definition_changed,
            Some(r#"topic "x1" → "x2""#.to_string())
        );
        assert_eq!(renamed.resume_time(), Some(0));
        assert!(renamed.previous.is_empty() && renamed.resume.claims().is_empty());
        assert_eq!((renamed.previous_workers, renamed.next_seq), (None, 5));

        // The same definition, or records written before definitions were recorded: trusted.
        for topic in [Some("x2"), None] {
            let same = recover(&[("s1/0", defined(4, 1, 0, at(7), topic))], 1);
            assert_eq!(same.definition_changed, None);
            assert_eq!(same.resume_time(), Some(7));
        }

        // Worker 0's record (the last run) is of this definition; worker 1's is left from a run
        // of the earlier one with more workers: it is left out, not trusted.
        let stale = recover(
            &[
                ("s1/1", defined(2, 2, 1, at(20), Some("x1"))),
                ("s1/0", defined(6, 1, 0, at(9), Some("x2"))),
            ],
            1,
        );
        assert_eq!(stale.definition_changed, None);
        assert_eq!(stale.resume.claims(), &[claim(1, 0, at(9))]);
        assert_eq!(stale.retired_transactional_ids, vec!["tx-s1-1".to_string()]);
    }

    #[test]
    fn chunked_times_skip_up_to_the_position() {
        let scan = scan(&[("s1/0", record(1, 1, 0, chunk(5, b"k"), vec![]))]);
        let recovery = scan.recover(&offsets(&[(0, 1)]), 1);
        assert_eq!(recovery.resume_time(), Some(5));
        assert!(should_skip(9, 4, b"z", &recovery.resume));
        assert!(should_skip(9, 5, b"j", &recovery.resume));
        assert!(should_skip(9, 5, b"k", &recovery.resume));
        assert!(!should_skip(9, 5, b"l", &recovery.resume));
        assert!(!should_skip(9, 6, b"a", &recovery.resume));
    }

    #[test]
    fn done_workers_skip_everything() {
        let scan = scan(&[
            ("s1/0", record(4, 2, 0, Point::Done, vec![])),
            ("s1/1", record(4, 2, 1, Point::Done, vec![])),
        ]);
        let recovery = scan.recover(&offsets(&[(0, 4), (1, 4)]), 2);
        assert_eq!(recovery.resume_time(), None);
        assert!(should_skip(1, u64::MAX, b"", &recovery.resume));
        assert_eq!(recovery.resume.claims(), &[claim(1, 0, Point::Done)]);
    }

    #[test]
    fn other_sinks_are_ignored_and_bad_records_are_errors() {
        let mut scan = ProgressScan::new(&names());
        scan.push(b"s10/0", Some(b"garbage")).unwrap();
        scan.push(b"s1/x", Some(b"garbage")).unwrap();
        scan.push(b"other", Some(b"garbage")).unwrap();
        assert!(scan.workers_with_records().is_empty());
        let error = scan.push(b"s1/0", Some(b"garbage")).unwrap_err();
        assert!(error.to_string().contains("\"s1/0\""), "{error}");
        let error = scan
            .push(b"s1/1", Some(&record(1, 2, 0, at(3), vec![])))
            .unwrap_err();
        assert!(error.to_string().contains("written by worker 0"), "{error}");
    }

    #[test]
    fn a_tombstone_forgets_the_key() {
        let mut scan = scan(&[("s1/0", record(5, 1, 0, at(10), vec![]))]);
        scan.push(b"s1/0", None).unwrap();
        let recovery = scan.recover(&BTreeMap::new(), 1);
        assert_eq!(recovery.resume_time(), Some(0));
        assert_eq!(recovery.next_seq, 6);
    }

    #[test]
    fn dominated_claims_are_pruned_without_changing_any_key() {
        let claims = vec![
            claim(1, 0, at(5)),
            claim(3, 1, at(4)),
            claim(3, 2, at(9)),
            claim(6, 5, at(8)),
            claim(6, 4, at(12)),
            claim(2, 0, at(3)),
        ];
        let resume = Resume::new(claims.clone());
        assert_eq!(resume.min(), &at(5));
        for hash in 0..60u64 {
            let expected = claims
                .iter()
                .filter(|c| c.covers_key(hash))
                .map(|c| c.point.clone())
                .max()
                .unwrap();
            assert_eq!(resume.point_for(hash), &expected, "hash {hash}");
        }
        assert_eq!(
            resume.claims(),
            &[claim(1, 0, at(5)), claim(3, 2, at(9)), claim(6, 4, at(12))]
        );
    }

    #[test]
    fn huge_worker_counts_estimate_the_minimum_from_below() {
        let claims = vec![
            claim(1, 0, at(2)),
            claim(65_537, 0, at(9)),
            claim(65_539, 0, at(9)),
        ];
        let resume = Resume::new(claims);
        assert_eq!(resume.min(), &at(2));
        assert_eq!(resume.start_for_worker(0, 65_537), at(9));
        assert_eq!(resume.start_for_worker(1, 65_537), at(2));
    }
}
