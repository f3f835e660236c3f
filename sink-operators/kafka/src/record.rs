//! The messages a worker keeps until they commit, packed into one append-only buffer.
//!
//! A worker keeps every message of its open transaction (the machine resends them after an
//! abort) and hands each to librdkafka, which copies it. Kept as separate objects, that is a
//! handful of allocations per message and a long run of frees when a large transaction commits.
//! Packed, a message is a slice of a shared buffer ([`bytes::Bytes`]): appending allocates only
//! when the buffer is full (one allocation per [`CHUNK`] bytes), cloning a message for the
//! machine is a reference count, and a committed transaction frees its buffers whole.
//!
//! A packed message holds, in order: the key's sort position within its time (for the
//! machine), the key, the value, and the headers, each header as its name's length (2 bytes,
//! little-endian), the name, its value's length (4 bytes, little-endian; `u32::MAX` for a null
//! value) and the value.

use bytes::{Bytes, BytesMut};

use crate::producer::OutgoingRecord;

/// What one buffer holds before the next is allocated; a larger message gets a buffer of its
/// own size.
pub const CHUNK: usize = 256 * 1024;

/// The length recorded for an absent key or value, or a null header value.
const ABSENT: u32 = u32::MAX;

/// A message of the sink, packed into an [`Arena`].
#[derive(Clone)]
pub struct PackedRecord {
    bytes: Bytes,
    partition: Option<i32>,
    position_len: u32,
    key_len: u32,
    value_len: u32,
    headers: u16,
}

impl PackedRecord {
    /// The key's sort position within its time, as the machine orders messages.
    pub fn position(&self) -> Bytes {
        self.bytes.slice(..self.position_len as usize)
    }

    /// Bytes of key, value, and header names and values: what the machine counts for it.
    pub fn payload_bytes(&self) -> usize {
        // All the packed bytes but the position and each header's two lengths (6 bytes).
        self.bytes.len() - self.position_len as usize - 6 * self.headers as usize
    }

    fn part(&self, start: usize, len: u32) -> Option<&[u8]> {
        (len != ABSENT).then(|| &self.bytes[start..start + len as usize])
    }
}

impl std::fmt::Debug for PackedRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedRecord")
            .field("partition", &self.partition)
            .field("key_bytes", &self.key().map(<[u8]>::len))
            .field("value_bytes", &self.value().map(<[u8]>::len))
            .field("headers", &self.headers)
            .finish()
    }
}

fn present(len: u32) -> usize {
    if len == ABSENT {
        0
    } else {
        len as usize
    }
}

impl OutgoingRecord for PackedRecord {
    fn partition(&self) -> Option<i32> {
        self.partition
    }

    fn key(&self) -> Option<&[u8]> {
        self.part(self.position_len as usize, self.key_len)
    }

    fn value(&self) -> Option<&[u8]> {
        let start = self.position_len as usize + present(self.key_len);
        self.part(start, self.value_len)
    }

    fn headers(&self, add: &mut dyn FnMut(&str, Option<&[u8]>)) {
        let mut at = self.position_len as usize + present(self.key_len) + present(self.value_len);
        let bytes = &self.bytes[..];
        for _ in 0..self.headers {
            let name_len = u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
            at += 2;
            let name = std::str::from_utf8(&bytes[at..at + name_len])
                .expect("header names are packed from &str");
            at += name_len;
            let value_len = u32::from_le_bytes(
                bytes[at..at + 4]
                    .try_into()
                    .expect("a header value's length is 4 bytes"),
            );
            at += 4;
            let value = (value_len != ABSENT).then(|| {
                let value = &bytes[at..at + value_len as usize];
                at += value_len as usize;
                value
            });
            add(name, value);
        }
    }
}

/// The append-only buffer a worker packs its messages into.
#[derive(Default)]
pub struct Arena {
    buffer: BytesMut,
    /// The position is written here first (its encoder appends to a `Vec`).
    scratch: Vec<u8>,
}

/// What goes into one packed message.
pub struct Parts<'a, H> {
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: H,
}

impl Arena {
    pub fn new() -> Arena {
        Arena::default()
    }

    /// A buffer the caller fills with the message's sort position before [`Arena::pack`].
    pub fn position_buffer(&mut self) -> &mut Vec<u8> {
        self.scratch.clear();
        &mut self.scratch
    }

    /// The position written so far.
    pub fn position_buffer_contents(&self) -> &[u8] {
        &self.scratch
    }

    /// Packs a message whose position is in [`Arena::position_buffer`].
    ///
    /// # Panics
    /// When a part is 4 GiB or longer, or a header name 64 KiB or longer: Kafka refuses far
    /// smaller messages, and the sink's transaction bound is below that.
    pub fn pack<'h, H>(&mut self, parts: Parts<'_, H>) -> PackedRecord
    where
        H: Iterator<Item = (&'h str, Option<&'h [u8]>)> + Clone,
    {
        let length = |part: Option<&[u8]>| match part {
            None => ABSENT,
            Some(part) => u32::try_from(part.len())
                .ok()
                .filter(|len| *len != ABSENT)
                .expect("a message part is shorter than 4 GiB"),
        };
        let mut size = self.scratch.len()
            + parts.key.map_or(0, <[u8]>::len)
            + parts.value.map_or(0, <[u8]>::len);
        let mut headers = 0u16;
        for (name, value) in parts.headers.clone() {
            size += 6 + name.len() + value.map_or(0, <[u8]>::len);
            headers = headers.checked_add(1).expect("fewer than 65,536 headers");
        }
        if self.buffer.capacity() - self.buffer.len() < size {
            // The full buffer stays alive in the messages packed into it; the next is new.
            self.buffer = BytesMut::with_capacity(size.max(CHUNK));
        }
        let position_len = u32::try_from(self.scratch.len()).expect("a position is short");
        self.buffer.extend_from_slice(&self.scratch);
        let key_len = length(parts.key);
        let value_len = length(parts.value);
        for part in [parts.key, parts.value].into_iter().flatten() {
            self.buffer.extend_from_slice(part);
        }
        for (name, value) in parts.headers {
            let name_len = u16::try_from(name.len()).expect("a header name is shorter than 64 KiB");
            self.buffer.extend_from_slice(&name_len.to_le_bytes());
            self.buffer.extend_from_slice(name.as_bytes());
            self.buffer.extend_from_slice(&length(value).to_le_bytes());
            if let Some(value) = value {
                self.buffer.extend_from_slice(value);
            }
        }
        PackedRecord {
            bytes: self.buffer.split().freeze(),
            partition: parts.partition,
            position_len,
            key_len,
            value_len,
            headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_of(record: &PackedRecord) -> Vec<(String, Option<Vec<u8>>)> {
        let mut all = Vec::new();
        record.headers(&mut |name, value| all.push((name.to_string(), value.map(<[u8]>::to_vec))));
        all
    }

    #[test]
    fn a_packed_message_reads_back_whole() {
        let mut arena = Arena::new();
        arena.position_buffer().extend_from_slice(b"pos");
        let headers = [
            ("outflow-time", Some(&b"7"[..])),
            ("empty", None),
            ("", Some(&b""[..])),
        ];
        let record = arena.pack(Parts {
            partition: Some(3),
            key: Some(b"{\"id\":1}"),
            value: None,
            headers: headers.iter().copied(),
        });
        assert_eq!(&record.position()[..], b"pos");
        assert_eq!(record.partition(), Some(3));
        assert_eq!(record.key(), Some(&b"{\"id\":1}"[..]));
        assert_eq!(record.value(), None);
        assert_eq!(
            headers_of(&record),
            [
                ("outflow-time".to_string(), Some(b"7".to_vec())),
                ("empty".to_string(), None),
                (String::new(), Some(Vec::new())),
            ]
        );
        assert_eq!(record.payload_bytes(), 8 + 12 + 1 + 5);
    }

    #[test]
    fn messages_share_a_buffer_until_it_is_full() {
        let mut arena = Arena::new();
        let value = vec![7u8; 1000];
        let records: Vec<PackedRecord> = (0..600)
            .map(|i: u32| {
                arena.position_buffer().extend_from_slice(&i.to_be_bytes());
                arena.pack(Parts {
                    partition: None,
                    key: Some(&i.to_le_bytes()),
                    value: Some(&value),
                    headers: std::iter::empty(),
                })
            })
            .collect();
        // 600 messages of 1,008 bytes fill three buffers of 256 KiB: each message starts where
        // the one before it ended, except at the two buffer changes.
        let breaks = records
            .windows(2)
            .filter(|pair| {
                let end = pair[0].bytes.as_ptr() as usize + pair[0].bytes.len();
                end != pair[1].bytes.as_ptr() as usize
            })
            .count();
        assert_eq!(breaks, 2);
        for (i, record) in records.iter().enumerate() {
            assert_eq!(record.key(), Some(&(i as u32).to_le_bytes()[..]));
            assert_eq!(record.value(), Some(&value[..]));
            assert_eq!(&record.position()[..], &(i as u32).to_be_bytes());
        }
        // A message larger than a buffer gets one of its own.
        let big = vec![1u8; CHUNK * 2];
        arena.position_buffer();
        let record = arena.pack(Parts {
            partition: None,
            key: None,
            value: Some(&big),
            headers: std::iter::empty(),
        });
        assert_eq!(record.value().map(<[u8]>::len), Some(CHUNK * 2));
        assert_eq!(record.key(), None);
    }
}
