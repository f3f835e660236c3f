//! Sink-side dataflow operators: key rows, arrange them by key on the worker that owns each
//! key, and combine each key's updates at each time into `DiffPair { before, after }`.
//!
//! ```text
//! VecCollection<Row>        ── key_by(&key) ──────────────▶ VecCollection<(key, row)>
//! VecCollection<(key, row)> ── arrange_by_sink_key() ─────▶ Arranged (placed by stable_key_hash)
//! Arranged / (key, row)     ── combine_at_timestamp(&key) ▶ Combined { pairs, violations, violation_count }
//! ```
//!
//! # Consuming the output (what a sink operator relies on)
//!
//! On each worker, `pairs` carries `(key, time, DiffPair)` for exactly the keys that worker
//! owns (`worker_for_key(key, peers)`), each in a message whose timely time is the pair's
//! `time`. Within one time, a worker's pairs arrive in ascending key order; a key's pairs
//! arrive in ascending time order; the several pairs of one key at one time (only under
//! `NOT ENFORCED` violations or for duplicate rows of a keyless sink) arrive together, in the
//! documented pairing order. Taken over all workers, the pairs do not depend on the number
//! of workers.
//!
//! The frontier of `pairs` is the promise a sink commits against: once it is beyond `t`,
//! this worker has emitted every pair at times up to `t` (the combiner holds its capability
//! while a batch is only partly emitted). A sink therefore stashes or produces pairs as they
//! arrive and commits a transaction through `t` when its input frontier passes `t`.
//!
//! `violations` carries a [`KeyViolation`] for each key and time at which the key is not
//! unique, at that time and on the key's worker, with the same frontier promise. Under an
//! enforced key the key's pairs at that time are withheld: a sink must not commit that time
//! and should fail with the violation's message. `violation_count` counts them as they are
//! found.
//!
//! A violation with a [`Refusal`] is a change no message can express, enforced or not (also
//! under a keyless sink): a multiplicity beyond the 64-bit range, or more copies than
//! [`CombineOptions::with_max_copies`] allows one key at one time. Its pairs were withheld;
//! a sink must fail with it. Multiplicities are counted in `i128` throughout, so none wraps.
//!
//! Pairs skipped by [`CombineOptions::without_snapshot`] are skipped together with their
//! violations. (A restarted sink skips what it committed by the protocol's claims, in the
//! sink, not here.)

pub mod arrange;
pub mod combine;
pub mod credit;
pub mod key;
pub mod violation;

pub use arrange::{ArrangeBySinkKey, SinkArrangement, SinkSpine};
pub use combine::{
    CombineAtTimestamp, CombineOptions, Combined, KeyedPair, Multiplicity, DEFAULT_MAX_COPIES,
};
pub use credit::PairCredit;
pub use key::{KeyBy, SinkKey, Uniqueness};
pub use violation::{KeyViolation, Refusal, ViolationCount};
