//! The `arrange_by_sink_key` operator: arranges `(key, row)` updates on the worker that owns
//! each key by the stable key hash.

use differential_dataflow::difference::Semigroup;
use differential_dataflow::lattice::Lattice;
use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::implementations::{ValBatcher, ValSpine};
use differential_dataflow::{ExchangeData, VecCollection};
use timely::dataflow::channels::pact::Exchange;
use timely::progress::Timestamp;

use crate::hash::stable_key_hash;
use crate::relation::Row;

/// The spine of a sink's arrangement: differential's ordered key-value spine of rows, with
/// differences of type `R` (`combine_at_timestamp` arranges with `i128`, so that no sum of
/// 64-bit multiplicities wraps).
pub type SinkSpine<T, R = isize> = ValSpine<Row, Row, T, R>;

/// An arrangement of `(key, row)` by sink key, as `combine_at_timestamp` reads it.
pub type SinkArrangement<'scope, T, R = isize> = Arranged<'scope, TraceAgent<SinkSpine<T, R>>>;

/// Arranges a keyed collection by key, placing each key on worker
/// `stable_key_hash(key) % peers`.
///
/// Differential's own `arrange_by_key` places keys by its `Hashable` hash, which may change
/// between versions and is not the hash the progress records of a sink are written against;
/// a restarted sink finds a key's previous owner by [`worker_for_key`](crate::worker_for_key),
/// so the arrangement must put keys exactly there. Timely's exchange sends a record with hash
/// `h` to worker `h % peers`, which is that function.
pub trait ArrangeBySinkKey<'scope, T: Timestamp + Lattice, R: Semigroup + Ord + 'static = isize> {
    /// ```
    /// use differential_dataflow::input::Input;
    /// use outflow_dataflow::operators::{ArrangeBySinkKey, KeyBy, SinkKey};
    /// use outflow_dataflow::{Datum, Row};
    ///
    /// timely::example(|scope| {
    ///     let rows = (0..10).map(|i| Row::pack_slice(&[Datum::Int64(i)]));
    ///     let arranged = scope.new_collection_from(rows).1
    ///         .key_by(&SinkKey::WholeRow)
    ///         .arrange_by_sink_key();
    ///     // `arranged.trace` can be shared with other operators; `combine_at_timestamp`
    ///     // reads `arranged` without a second copy.
    ///     drop(arranged);
    /// });
    /// ```
    fn arrange_by_sink_key(self) -> SinkArrangement<'scope, T, R>;
}

impl<'scope, T, R> ArrangeBySinkKey<'scope, T, R> for VecCollection<'scope, T, (Row, Row), R>
where
    T: Timestamp + Lattice,
    R: Semigroup + ExchangeData + Ord,
{
    fn arrange_by_sink_key(self) -> SinkArrangement<'scope, T, R> {
        let pact = Exchange::new(|update: &((Row, Row), T, R)| stable_key_hash(&(update.0).0));
        arrange_core::<_, _, ValBatcher<Row, Row, T, R>, SinkSpine<T, R>>(
            self.inner,
            pact,
            "ArrangeBySinkKey",
            ValBatcher::new,
        )
    }
}
