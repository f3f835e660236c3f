//! The stable key hash that assigns keys to workers.
//!
//! `stable_key_hash(row) = seahash(row's packed bytes)`: SeaHash 4.1 (the `seahash` crate's
//! `hash` function, whose output is specified and portable across platforms), over the
//! version-1 packed encoding of the key row described in [`crate::relation::row`]. The worker
//! that owns a key among `peers` workers is `stable_key_hash(key) % peers`.
//!
//! This is part of the recovery contract: the progress topic records, per worker, how far
//! that worker's keys are committed, and a restarted sink finds a key's previous owner by
//! recomputing this hash. Changing the algorithm or the packed encoding would make a restart
//! skip or duplicate updates, so neither may ever change; the test vectors below pin them.

use crate::relation::Row;

/// The stable hash of a key row. See the module docs; never change it.
pub fn stable_key_hash(key: &Row) -> u64 {
    seahash::hash(key.data())
}

/// The worker among `peers` that owns `key`.
pub fn worker_for_key(key: &Row, peers: usize) -> usize {
    assert!(peers > 0, "worker_for_key with no workers");
    (stable_key_hash(key) % peers as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relation::{Datum, Numeric, Row};

    /// Fixed vectors: if one of these changes, recovery of existing sinks breaks.
    #[test]
    fn fixed_vectors() {
        let cases: Vec<(Row, u64)> = vec![
            (Row::pack_slice(&[]), 0xc920_ca43_256f_dcb9),
            (Row::pack_slice(&[Datum::Int64(1)]), 0x42ac_cf4d_85c5_3010),
            (Row::pack_slice(&[Datum::Int64(123)]), 0x22b4_eb5c_c11f_328c),
            (
                Row::pack_slice(&[Datum::String("order-42")]),
                0xe551_d204_8847_3a61,
            ),
            (
                Row::pack_slice(&[Datum::Int32(7), Datum::String("eu-west")]),
                0x6020_2402_e6f6_56fe,
            ),
            (Row::pack_slice(&[Datum::Null]), 0x78d3_db1f_028a_c5fd),
            (
                Row::pack_slice(&[Datum::Numeric(Numeric::new(9950, 2))]),
                0x0616_f74c_2afb_3ac7,
            ),
        ];
        let got: Vec<u64> = cases.iter().map(|(row, _)| stable_key_hash(row)).collect();
        let expected: Vec<u64> = cases.iter().map(|(_, h)| *h).collect();
        assert_eq!(
            got, expected,
            "stable key hash vectors changed: {got:#018x?}"
        );
    }

    /// SeaHash's own reference vector, so that a change of the crate's algorithm shows
    /// apart from a change of the packed encoding.
    #[test]
    fn seahash_reference_vector() {
        assert_eq!(seahash::hash(b"to be or not to be"), 0x1b99_3a82_6f4a_e575);
    }

    #[test]
    fn workers_in_range() {
        for i in 0..1000i64 {
            let key = Row::pack_slice(&[Datum::Int64(i)]);
            for peers in 1..8 {
                assert!(worker_for_key(&key, peers) < peers);
            }
        }
    }
}
