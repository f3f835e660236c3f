//! Partitioners: the hash functions `PARTITION BY` may call (`kafka_murmur2`, `crc32`,
//! `seahash`), typed `PARTITION BY` expressions evaluated on rows, and the mapping from a
//! hash to a partition.
//!
//! ```
//! use outflow_dataflow::{Datum, RelationDesc, Row, ScalarType};
//! use outflow_sql::partition::{kafka_murmur2, partition_for, PartitionExpr};
//!
//! let desc = RelationDesc::empty()
//!     .with_column("order_id", ScalarType::Int64, false)
//!     .with_column("region", ScalarType::Text, true);
//! let expr = PartitionExpr::parse("kafka_murmur2(region)", &desc).unwrap();
//! let row = Row::pack([Datum::Int64(7), Datum::String("emea")]);
//! let hash = expr.partition_hash(&row);
//! assert_eq!(hash, Some(kafka_murmur2(b"emea") as u64));
//! // The Java client's partition for the key bytes "emea".
//! assert_eq!(partition_for(hash, 6), (kafka_murmur2(b"emea") % 6) as i32);
//! ```

use outflow_dataflow::{Datum, ScalarType};

mod expr;

pub use expr::{EvalError, PartitionExpr, Value};

/// Kafka's MurmurHash2 (`org.apache.kafka.common.utils.Utils.murmur2`): 32 bits, seed
/// `0x9747b28c`, little-endian words. Returns the raw, possibly negative, value.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, &byte) in tail.iter().enumerate() {
            h ^= u32::from(byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// `kafka_murmur2(x)`: the Java client's `toPositive(murmur2(bytes))`, so that
/// `kafka_murmur2(key) % partitions` is the partition the Java producer picks for `key`.
pub fn kafka_murmur2(data: &[u8]) -> i32 {
    murmur2(data) & 0x7fff_ffff
}

/// `crc32(x)`: CRC-32 (IEEE 802.3).
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// `seahash(x)`: SeaHash with the crate's default seeds.
pub fn seahash(data: &[u8]) -> u64 {
    seahash::hash(data)
}

/// The partition for a hash: `hash % partition_count`, and partition 0 when there is no hash
/// (a NULL or negative `PARTITION BY` value, an evaluation error, a message without a key) or
/// no partitions are known yet.
pub fn partition_for(hash: Option<u64>, partition_count: i32) -> i32 {
    match (hash, u64::try_from(partition_count)) {
        (Some(hash), Ok(count)) if count > 0 => (hash % count) as i32,
        _ => 0,
    }
}

/// The hash of a message when the sink has no `PARTITION BY`: `kafka_murmur2` of the key's
/// encoded bytes without the 5-byte Confluent header of an Avro key
/// (`EncodedMessage::key_payload`). A key therefore never moves partition when its Avro
/// schema id changes, and JSON, TEXT and BYTES keys land where the Java client would put
/// them. Keyless messages have no hash here; the sink spreads them by the stable hash of the
/// row's pairing key (see the `outflow` crate's sink).
pub fn key_partition_hash(key_payload: Option<&[u8]>) -> Option<u64> {
    key_payload.map(|key| kafka_murmur2(key) as u64)
}

/// The hash functions a `PARTITION BY` expression may call. Each takes `text` (its UTF-8
/// bytes) or `bytea`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashFunction {
    /// Returns `integer`.
    KafkaMurmur2,
    /// Returns `uint4`.
    Crc32,
    /// Returns `uint8`.
    Seahash,
}

impl HashFunction {
    pub fn name(&self) -> &'static str {
        match self {
            HashFunction::KafkaMurmur2 => "kafka_murmur2",
            HashFunction::Crc32 => "crc32",
            HashFunction::Seahash => "seahash",
        }
    }

    fn by_name(name: &str) -> Option<HashFunction> {
        [
            HashFunction::KafkaMurmur2,
            HashFunction::Crc32,
            HashFunction::Seahash,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }

    fn return_type(&self) -> ScalarType {
        match self {
            HashFunction::KafkaMurmur2 => ScalarType::Int32,
            HashFunction::Crc32 => ScalarType::UInt32,
            HashFunction::Seahash => ScalarType::UInt64,
        }
    }

    fn apply(&self, data: &[u8]) -> Datum<'static> {
        match self {
            HashFunction::KafkaMurmur2 => Datum::Int32(kafka_murmur2(data)),
            HashFunction::Crc32 => Datum::UInt32(crc32(data)),
            HashFunction::Seahash => Datum::UInt64(seahash(data)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Kafka's UtilsTest.testMurmur2.
        let vectors: [(&str, i32); 6] = [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            ("abc", 479470107),
        ];
        for (input, expected) in vectors {
            assert_eq!(murmur2(input.as_bytes()), expected, "{input}");
            assert_eq!(
                kafka_murmur2(input.as_bytes()),
                expected & 0x7fff_ffff,
                "{input}"
            );
        }
        assert!(kafka_murmur2(b"21") >= 0);
    }

    #[test]
    fn crc32_and_seahash_vectors() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414f_a339
        );
        // The seahash crate's own reference vector.
        assert_eq!(seahash(b"to be or not to be"), 1988685042348123509);
    }

    #[test]
    fn partitions_from_hashes() {
        assert_eq!(partition_for(Some(10), 4), 2);
        assert_eq!(partition_for(Some(u64::MAX), 7), (u64::MAX % 7) as i32);
        assert_eq!(partition_for(None, 4), 0);
        assert_eq!(partition_for(Some(10), 0), 0);
        assert_eq!(partition_for(Some(10), -3), 0);
        assert_eq!(key_partition_hash(None), None);
        assert_eq!(
            key_partition_hash(Some(b"21")),
            Some(kafka_murmur2(b"21") as u64)
        );
    }
}
