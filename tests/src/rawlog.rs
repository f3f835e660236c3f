//! The raw-log reader that applies `read_committed` from the control batches, which the tests
//! audit topics with; it lives in the sink crate, whose recovery reads progress the same way.

pub use outflow::rawlog::*;
