//! `DiffPair`: what one key's value was before a time and is after it.

use serde::{Deserialize, Serialize};

/// The change of one key at one time: insert `(None, Some)`, delete `(Some, None)`,
/// update `(Some, Some)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DiffPair<T> {
    pub before: Option<T>,
    pub after: Option<T>,
}

impl<T> DiffPair<T> {
    pub fn insert(after: T) -> DiffPair<T> {
        DiffPair {
            before: None,
            after: Some(after),
        }
    }

    pub fn delete(before: T) -> DiffPair<T> {
        DiffPair {
            before: Some(before),
            after: None,
        }
    }

    pub fn update(before: T, after: T) -> DiffPair<T> {
        DiffPair {
            before: Some(before),
            after: Some(after),
        }
    }
}
