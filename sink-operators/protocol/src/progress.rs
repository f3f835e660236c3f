//! Progress records: what each committed transaction says about the keys of the worker that wrote it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{hex, unhex, ProtocolError};

/// The format version this build writes, and the newest it reads.
pub const PROGRESS_RECORD_VERSION: u64 = 1;

/// How far a set of keys is known to be in the data topic.
///
/// Points are totally ordered: by time, then (at one time) a point with a position is further
/// than one without, positions compare as bytes, and [`Point::Done`] is beyond every time.
#[derive(
    serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum Point {
    /// Every update at a time before `time` is in the topic; with a `position`, so is every
    /// update at `time` whose sort position is at most `position` (a time committed in chunks).
    At {
        /// The frontier: the first time not (wholly) written.
        time: u64,
        /// The sort position of the last message written at `time`, for a chunked time.
        position: Option<Vec<u8>>,
    },
    /// Every update is in the topic: the input was done.
    Done,
}

impl Point {
    /// Nothing written yet.
    pub const START: Point = Point::At {
        time: 0,
        position: None,
    };

    /// The point of a frontier: `Some(t)` means every time before `t`, `None` means done.
    pub fn frontier(frontier: Option<u64>) -> Point {
        match frontier {
            Some(time) => Point::At {
                time,
                position: None,
            },
            None => Point::Done,
        }
    }

    /// The frontier this point guarantees whole: its time, or `None` when done.
    pub fn time(&self) -> Option<u64> {
        match self {
            Point::At { time, .. } => Some(*time),
            Point::Done => None,
        }
    }

    /// Whether the update of a key at `time`, whose sort position is `position`, is behind this
    /// point (already in the topic).
    pub fn covers(&self, time: u64, position: &[u8]) -> bool {
        match self {
            Point::Done => true,
            Point::At {
                time: frontier,
                position: last,
            } => {
                time < *frontier
                    || (time == *frontier && last.as_deref().is_some_and(|last| position <= last))
            }
        }
    }
}

/// What a sink writes, as its progress records name it: the facts that decide what the data
/// topic holds (`"topic"`, `"key"`, `"key format"`, `"value format"`, `"envelope"`, as the
/// sink describes them). Recovery trusts a record only for the definition that wrote it: the
/// claims of a record that names another definition say nothing about what this one wrote.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct Definition(pub BTreeMap<String, String>);

impl Definition {
    /// A definition of these facts.
    pub fn new<K: Into<String>, V: Into<String>>(facts: impl IntoIterator<Item = (K, V)>) -> Self {
        Definition(
            facts
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// How `self` (what a record names) differs from `now`, fact by fact:
    /// `topic "x1" → "x2"`, or `None` when they are the same.
    pub fn changes_to(&self, now: &Definition) -> Option<String> {
        let names: std::collections::BTreeSet<&String> =
            self.0.keys().chain(now.0.keys()).collect();
        let shown =
            |value: Option<&String>| value.map_or("(none)".to_string(), |v| format!("{v:?}"));
        let changes: Vec<String> = names
            .into_iter()
            .filter(|name| self.0.get(*name) != now.0.get(*name))
            .map(|name| {
                format!(
                    "{name} {} → {}",
                    shown(self.0.get(name)),
                    shown(now.0.get(name))
                )
            })
            .collect();
        (!changes.is_empty()).then(|| changes.join(", "))
    }
}

/// A committed statement about one worker's keys: every update of a key whose stable hash is
/// `worker` modulo `workers` is in the topic up to `point`.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Claim {
    /// The worker count of the run that wrote the claim.
    pub workers: u32,
    /// The worker, below `workers`.
    pub worker: u32,
    /// How far those keys are written.
    pub point: Point,
}

impl Claim {
    /// Whether the claim is about the key with this stable hash.
    pub fn covers_key(&self, key_hash: u64) -> bool {
        key_hash % u64::from(self.workers) == u64::from(self.worker)
    }

    /// Whether every key this claim is about is also one `other` is about.
    pub(crate) fn keys_within(&self, other: &Claim) -> bool {
        self.workers.is_multiple_of(other.workers) && self.worker % other.workers == other.worker
    }
}

/// One progress record: key `{sink_id}/{worker}`, value JSON
/// `{"version":1,"seq":n,"frontier":[t],"workers":N,"worker":w}` (an empty `frontier` means
/// done), plus `"position"` (hex) when the frontier time was committed in chunks, in worker
/// 0's records `"base"`: the claims the run started from, each
/// `{"workers":N,"worker":w,"frontier":[t],"position":hex}`, and `"definition"`: what the sink
/// writes, an object of strings (see [`Definition`]).
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ProgressRecord {
    /// Unique per transaction attempt of this key; the worker's group offset names the last
    /// committed one.
    pub seq: u64,
    /// The worker count of the run that wrote the record.
    pub workers: u32,
    /// The worker that wrote it.
    pub worker: u32,
    /// How far the worker's keys are written.
    pub point: Point,
    /// The claims the run started from (worker 0 only; empty otherwise).
    pub base: Vec<Claim>,
    /// What the sink that wrote the record writes; `None` in records of builds that did not
    /// name it (they are trusted for any definition).
    pub definition: Option<Definition>,
}

#[derive(Serialize, Deserialize)]
struct WireRecord {
    version: u64,
    seq: u64,
    frontier: Vec<u64>,
    workers: u32,
    worker: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    position: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    base: Vec<WireClaim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    definition: Option<Definition>,
}

#[derive(Serialize, Deserialize)]
struct WireClaim {
    workers: u32,
    worker: u32,
    frontier: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    position: Option<String>,
}

fn point_to_wire(point: &Point) -> (Vec<u64>, Option<String>) {
    match point {
        Point::At { time, position } => (vec![*time], position.as_deref().map(hex)),
        Point::Done => (Vec::new(), None),
    }
}

fn point_from_wire(frontier: &[u64], position: Option<&str>) -> Result<Point, String> {
    match (frontier, position) {
        ([], None) => Ok(Point::Done),
        ([], Some(_)) => Err("a position needs a non-empty frontier".to_string()),
        ([time], position) => Ok(Point::At {
            time: *time,
            position: position.map(unhex).transpose()?,
        }),
        (times, _) => Err(format!(
            "frontier has {} elements; times are totally ordered, so it holds at most one",
            times.len()
        )),
    }
}

fn check_worker(workers: u32, worker: u32) -> Result<(), String> {
    if workers == 0 {
        Err("worker count is 0".to_string())
    } else if worker >= workers {
        Err(format!(
            "worker {worker} is not below the worker count {workers}"
        ))
    } else {
        Ok(())
    }
}

impl ProgressRecord {
    /// The claim the record makes about its own worker's keys.
    pub fn claim(&self) -> Claim {
        Claim {
            workers: self.workers,
            worker: self.worker,
            point: self.point.clone(),
        }
    }

    /// The record's value as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let (frontier, position) = point_to_wire(&self.point);
        let wire = WireRecord {
            version: PROGRESS_RECORD_VERSION,
            seq: self.seq,
            frontier,
            workers: self.workers,
            worker: self.worker,
            position,
            base: self
                .base
                .iter()
                .map(|claim| {
                    let (frontier, position) = point_to_wire(&claim.point);
                    WireClaim {
                        workers: claim.workers,
                        worker: claim.worker,
                        frontier,
                        position,
                    }
                })
                .collect(),
            definition: self.definition.clone(),
        };
        serde_json::to_vec(&wire).expect("a progress record always serializes")
    }

    /// Parses the value stored at `key`. `key` is only used to name the record in errors.
    pub fn parse(key: &str, value: &[u8]) -> Result<ProgressRecord, ProtocolError> {
        let malformed = |problem: String| ProtocolError::MalformedRecord {
            key: key.to_string(),
            problem,
        };
        let wire: WireRecord = serde_json::from_slice(value).map_err(|error| {
            malformed(format!("{error} in {:?}", String::from_utf8_lossy(value)))
        })?;
        if wire.version > PROGRESS_RECORD_VERSION {
            return Err(ProtocolError::UnsupportedVersion {
                key: key.to_string(),
                version: wire.version,
                supported: PROGRESS_RECORD_VERSION,
            });
        }
        if wire.version == 0 {
            return Err(malformed(
                "version 0 was never written by outflow".to_string(),
            ));
        }
        check_worker(wire.workers, wire.worker).map_err(&malformed)?;
        let point =
            point_from_wire(&wire.frontier, wire.position.as_deref()).map_err(&malformed)?;
        let base = wire
            .base
            .iter()
            .enumerate()
            .map(|(index, claim)| {
                check_worker(claim.workers, claim.worker)
                    .and_then(|()| point_from_wire(&claim.frontier, claim.position.as_deref()))
                    .map(|point| Claim {
                        workers: claim.workers,
                        worker: claim.worker,
                        point,
                    })
                    .map_err(|problem| malformed(format!("base claim {index}: {problem}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ProgressRecord {
            seq: wire.seq,
            workers: wire.workers,
            worker: wire.worker,
            point,
            base,
            definition: wire.definition,
        })
    }
}

/// The worker a progress-topic key belongs to, if it is one of `sink_id`'s keys. Keys of other
/// sinks sharing the topic (including sinks whose id extends this one, like `a/b` for `a`) are
/// `None`.
pub(crate) fn worker_of_key(sink_id: &str, key: &[u8]) -> Option<u32> {
    let key = std::str::from_utf8(key).ok()?;
    let suffix = key.strip_prefix(sink_id)?.strip_prefix('/')?;
    let worker: u32 = suffix.parse().ok()?;
    (worker.to_string() == suffix).then_some(worker)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time: u64, position: Option<&[u8]>) -> Point {
        Point::At {
            time,
            position: position.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn points_order_by_time_then_position_then_done() {
        assert!(at(3, None) < at(3, Some(b"")));
        assert!(at(3, Some(b"a")) < at(3, Some(b"b")));
        assert!(at(3, Some(b"zzz")) < at(4, None));
        assert!(at(u64::MAX, Some(b"z")) < Point::Done);
        assert_eq!(Point::START, at(0, None));
    }

    #[test]
    fn covers_skips_before_the_frontier_and_up_to_the_chunk_position() {
        let chunked = at(5, Some(b"k"));
        assert!(chunked.covers(4, b"zz"));
        assert!(chunked.covers(5, b"a"));
        assert!(chunked.covers(5, b"k"));
        assert!(!chunked.covers(5, b"ka"));
        assert!(!chunked.covers(6, b"a"));
        assert!(!at(5, None).covers(5, b""));
        assert!(Point::Done.covers(u64::MAX, b"z"));
    }

    #[test]
    fn record_json_matches_the_documented_format() {
        let record = ProgressRecord {
            seq: 12,
            workers: 3,
            worker: 1,
            point: at(40, None),
            base: Vec::new(),
            definition: None,
        };
        assert_eq!(
            String::from_utf8(record.to_json()).unwrap(),
            r#"{"version":1,"seq":12,"frontier":[40],"workers":3,"worker":1}"#
        );
        let done = ProgressRecord {
            point: Point::Done,
            ..record
        };
        assert_eq!(
            String::from_utf8(done.to_json()).unwrap(),
            r#"{"version":1,"seq":12,"frontier":[],"workers":3,"worker":1}"#
        );
    }

    #[test]
    fn chunked_record_with_base_round_trips() {
        let record = ProgressRecord {
            seq: 7,
            workers: 2,
            worker: 0,
            point: at(9, Some(&[0, 0xfe, b'k'])),
            base: vec![
                Claim {
                    workers: 1,
                    worker: 0,
                    point: at(4, None),
                },
                Claim {
                    workers: 3,
                    worker: 2,
                    point: at(6, Some(b"q")),
                },
                Claim {
                    workers: 3,
                    worker: 1,
                    point: Point::Done,
                },
            ],
            definition: Some(Definition::new([
                ("topic", "orders"),
                ("envelope", "upsert"),
            ])),
        };
        let json = record.to_json();
        assert!(String::from_utf8_lossy(&json).contains(r#""position":"00fe6b""#));
        assert_eq!(ProgressRecord::parse("s/0", &json).unwrap(), record);
    }

    #[test]
    fn malformed_records_name_the_key_and_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("not json", "expected"),
            (
                r#"{"version":1,"frontier":[1],"workers":1,"worker":0}"#,
                "missing field `seq`",
            ),
            (
                r#"{"version":1,"seq":1,"frontier":[1,2],"workers":1,"worker":0}"#,
                "at most one",
            ),
            (
                r#"{"version":1,"seq":1,"frontier":[1],"workers":2,"worker":2}"#,
                "not below",
            ),
            (
                r#"{"version":1,"seq":1,"frontier":[1],"workers":0,"worker":0}"#,
                "worker count is 0",
            ),
            (
                r#"{"version":1,"seq":1,"frontier":[],"workers":1,"worker":0,"position":"00"}"#,
                "non-empty frontier",
            ),
            (
                r#"{"version":1,"seq":1,"frontier":[1],"workers":1,"worker":0,"position":"0g"}"#,
                "not a hex",
            ),
            (
                r#"{"version":1,"seq":1,"frontier":[1],"workers":1,"worker":0,"base":[{"workers":2,"worker":5,"frontier":[]}]}"#,
                "base claim 0",
            ),
            (
                r#"{"version":0,"seq":1,"frontier":[1],"workers":1,"worker":0}"#,
                "version 0",
            ),
        ];
        for (value, problem) in cases {
            let error = ProgressRecord::parse("sink-9/0", value.as_bytes()).unwrap_err();
            let text = error.to_string();
            assert!(text.contains("\"sink-9/0\""), "{text}");
            assert!(text.contains(problem), "{value}: {text}");
        }
    }

    #[test]
    fn newer_versions_are_refused_with_advice() {
        let error = ProgressRecord::parse(
            "s/0",
            br#"{"version":2,"seq":1,"frontier":[1],"workers":1,"worker":0}"#,
        )
        .unwrap_err();
        assert_eq!(
            error,
            ProtocolError::UnsupportedVersion {
                key: "s/0".into(),
                version: 2,
                supported: 1
            }
        );
        assert!(error.to_string().contains("upgrade outflow"));
    }

    #[test]
    fn definitions_name_what_changed_and_old_records_have_none() {
        let old = Definition::new([("topic", "x1"), ("key", "id"), ("envelope", "upsert")]);
        let new = Definition::new([("topic", "x2"), ("key", "id"), ("envelope", "debezium")]);
        assert_eq!(
            old.changes_to(&new).unwrap(),
            r#"envelope "upsert" → "debezium", topic "x1" → "x2""#
        );
        assert_eq!(old.changes_to(&old), None);
        let record = ProgressRecord::parse(
            "s/0",
            br#"{"version":1,"seq":3,"frontier":[8],"workers":1,"worker":0}"#,
        )
        .unwrap();
        assert_eq!(record.definition, None);
        let with = ProgressRecord {
            definition: Some(old.clone()),
            ..record
        };
        let json = String::from_utf8(with.to_json()).unwrap();
        assert_eq!(
            json,
            r#"{"version":1,"seq":3,"frontier":[8],"workers":1,"worker":0,"definition":{"envelope":"upsert","key":"id","topic":"x1"}}"#
        );
        assert_eq!(ProgressRecord::parse("s/0", json.as_bytes()).unwrap(), with);
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let record = ProgressRecord::parse(
            "s/0",
            br#"{"version":1,"seq":3,"frontier":[8],"workers":1,"worker":0,"note":"x"}"#,
        )
        .unwrap();
        assert_eq!(record.point, at(8, None));
    }

    #[test]
    fn keys_belong_to_a_sink_only_when_the_suffix_is_a_worker_number() {
        assert_eq!(worker_of_key("a", b"a/0"), Some(0));
        assert_eq!(worker_of_key("a", b"a/17"), Some(17));
        assert_eq!(worker_of_key("a", b"a/b/0"), None);
        assert_eq!(worker_of_key("a", b"ab/0"), None);
        assert_eq!(worker_of_key("a", b"a/01"), None);
        assert_eq!(worker_of_key("a", b"a/"), None);
        assert_eq!(worker_of_key("a", b"a/-1"), None);
        assert_eq!(worker_of_key("a", &[b'a', b'/', 0xff]), None);
        assert_eq!(worker_of_key("a/b", b"a/b/2"), Some(2));
    }
}
