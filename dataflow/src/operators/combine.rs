//! The `combine_at_timestamp` operator: each key's updates at each time become
//! `DiffPair { before, after }`s, and keys that hold several rows are reported.

use std::collections::{BTreeMap, VecDeque};

use differential_dataflow::lattice::Lattice;
use differential_dataflow::operators::arrange::Arranged;
use differential_dataflow::trace::cursor::{cursor_list, CursorList};
use differential_dataflow::trace::{BatchCursor, Cursor, Navigable, TraceReader};
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::channels::pushers::Output;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;
use timely::order::TotalOrder;
use timely::progress::{Antichain, Timestamp};

use crate::hash::worker_for_key;
use crate::operators::arrange::ArrangeBySinkKey;
use crate::operators::credit::PairCredit;
use crate::operators::key::{SinkKey, Uniqueness};
use crate::operators::violation::{KeyViolation, Refusal, ViolationCount};
use crate::pair::DiffPair;
use crate::relation::Row;

/// One key's change at one time.
pub type KeyedPair<T> = (Row, T, DiffPair<Row>);

/// Records per output message; a message is sent as soon as one time has this many.
const MESSAGE_LEN: usize = 1024;
/// Records buffered across all times of a batch before every buffer is sent, so that a batch
/// spanning many times never holds more than this many records back.
const BUFFERED_LIMIT: usize = 16 * MESSAGE_LEN;
/// Updates read plus records emitted per activation before combining yields to the rest of
/// the worker (and so to the consumer of the pairs).
const DEFAULT_FUEL: usize = 64 * 1024;
/// The most messages one key may need at one time (copies of a row under a keyless or
/// `NOT ENFORCED` key) before its change there is refused: one key's messages at one time go
/// out together, in one transaction, so their number must stay bounded.
pub const DEFAULT_MAX_COPIES: u64 = 10_000;

/// A difference type the combiner reads as an exact count. It counts in `i128`, so that no sum
/// of 64-bit multiplicities wraps inside it; a count beyond the 64-bit range is refused.
pub trait Multiplicity: Copy {
    fn count(self) -> i128;
}

impl Multiplicity for isize {
    fn count(self) -> i128 {
        self as i128
    }
}

impl Multiplicity for i64 {
    fn count(self) -> i128 {
        self as i128
    }
}

impl Multiplicity for i128 {
    fn count(self) -> i128 {
        self
    }
}

/// How `combine_at_timestamp` skips what must not be emitted, and how it paces itself.
pub struct CombineOptions<T> {
    as_of: Option<T>,
    credit: Option<PairCredit>,
    violation_count: Option<ViolationCount>,
    fuel: usize,
    collapse_repeats: bool,
    max_copies: u64,
}

impl<T> Default for CombineOptions<T> {
    fn default() -> Self {
        CombineOptions {
            as_of: None,
            credit: None,
            violation_count: None,
            fuel: DEFAULT_FUEL,
            collapse_repeats: false,
            max_copies: DEFAULT_MAX_COPIES,
        }
    }
}

impl<T: Ord> CombineOptions<T> {
    /// `SNAPSHOT = false`: emits nothing at times up to `as_of`, the time of the input's
    /// snapshot (the updates at and before it describe the state the sink starts from).
    pub fn without_snapshot(mut self, as_of: T) -> Self {
        self.as_of = Some(as_of);
        self
    }

    /// Emits only while `credit` lasts (see [`PairCredit`]).
    pub fn with_credit(mut self, credit: PairCredit) -> Self {
        self.credit = Some(credit);
        self
    }

    /// Counts violations into `count` instead of a counter of the operator's own.
    pub fn count_violations_in(mut self, count: ViolationCount) -> Self {
        self.violation_count = Some(count);
        self
    }

    /// Work (updates read plus records emitted) per activation before yielding to the rest
    /// of the worker.
    pub fn with_fuel(mut self, fuel: usize) -> Self {
        self.fuel = fuel.max(1);
        self
    }

    /// Emits one pair where a key's change at one time would repeat the same pair (copies of
    /// a row under a `NOT ENFORCED` key): under an upsert envelope the copies say nothing more.
    pub fn collapse_repeats(mut self) -> Self {
        self.collapse_repeats = true;
        self
    }

    /// The most pairs one key may need at one time before its change there is refused (see
    /// [`Refusal::TooManyCopies`]); default [`DEFAULT_MAX_COPIES`].
    pub fn with_max_copies(mut self, max_copies: u64) -> Self {
        self.max_copies = max_copies;
        self
    }

    fn skips(&self, time: &T) -> bool {
        self.as_of.as_ref().is_some_and(|as_of| time <= as_of)
    }
}

/// The outputs of `combine_at_timestamp`; see the [module docs](crate::operators) for what a
/// consumer may rely on.
pub struct Combined<'scope, T: Timestamp> {
    pub pairs: Stream<'scope, T, Vec<KeyedPair<T>>>,
    pub violations: Stream<'scope, T, Vec<KeyViolation<T>>>,
    pub violation_count: ViolationCount,
}

/// Pairs each key's retractions with its insertions at each time.
///
/// For each key, and each time at which it has updates, in order of time:
/// - one retraction and one insertion: an update `(Some(before), Some(after))`;
/// - one insertion: `(None, Some(after))`; one retraction: `(Some(before), None)`;
/// - a retraction and insertion of the same row cancel in the arrangement: nothing.
///
/// The key is *violated* at a time when, after that time, it holds more than one row (several
/// rows, several copies of one, or a negative count), or when that time retracts or inserts
/// more than one row for it. The operator keeps the key's accumulated rows from the
/// arrangement's history to know. A violation is reported on `violations` and counted; then:
/// - `NOT ENFORCED`: the retracted rows (in row order, copies repeated) are paired with the
///   inserted rows (likewise) position by position; the longer side's extra rows come out as
///   deletes or inserts. Deterministic, though which rows pair is arbitrary by nature.
/// - enforced (validated `KEY`, or the relation's key): the key's pairs at that time are
///   withheld. They cannot be written correctly, and the sink must not commit that time.
/// - no key (whole rows): never a violation. `n` copies of a row come out as `n` inserts
///   (or deletes), and no two different rows ever pair.
///
/// Pairs leave as each batch of the arrangement is read, key by key, straight from the batch's
/// cursor: a snapshot is never collected a second time beside the arrangement. The operator
/// yields every few tens of thousands of updates, and pauses when a [`PairCredit`] runs out.
///
/// Implemented for a keyed collection (arranged here by [`ArrangeBySinkKey`]) and for an
/// existing arrangement (no second copy). An existing arrangement must place its keys by
/// [`worker_for_key`], as `arrange_by_sink_key` does, and its stream must start with the
/// first batch of its trace (an arrangement built in this dataflow, not imported); the
/// operator panics on a key found on the wrong worker. For a whole-row key it is read as
/// `(row, anything)`, the row being the key.
///
/// ```
/// use differential_dataflow::input::Input;
/// use outflow_dataflow::operators::{CombineAtTimestamp, KeyBy, SinkKey};
/// use outflow_dataflow::{DiffPair, Datum, Row};
/// use timely::dataflow::operators::capture::{Capture, Extract};
///
/// let row = |id: i64, name: &str| Row::pack_slice(&[Datum::Int64(id), Datum::String(name)]);
/// let key = SinkKey::Declared { columns: vec![0], enforced: true };
/// let captured = timely::example(move |scope| {
///     let (mut input, rows) = scope.new_collection::<Row, isize>();
///     input.insert(row(1, "a"));
///     input.advance_to(1);
///     input.remove(row(1, "a"));
///     input.insert(row(1, "b"));
///     rows.key_by(&key).combine_at_timestamp(&key).pairs.capture()
/// });
/// let id = Row::pack_slice(&[Datum::Int64(1)]);
/// assert_eq!(captured.extract(), vec![
///     (0, vec![(id.clone(), 0, DiffPair::insert(row(1, "a")))]),
///     (1, vec![(id.clone(), 1, DiffPair::update(row(1, "a"), row(1, "b")))]),
/// ]);
/// ```
pub trait CombineAtTimestamp<'scope, T: Timestamp + TotalOrder + Lattice>: Sized {
    /// Combines with the defaults: everything emitted, no credit, a counter of its own.
    fn combine_at_timestamp(self, key: &SinkKey) -> Combined<'scope, T> {
        self.combine_at_timestamp_with(key, CombineOptions::default())
    }

    /// Combines, skipping and pacing as `options` say.
    fn combine_at_timestamp_with(
        self,
        key: &SinkKey,
        options: CombineOptions<T>,
    ) -> Combined<'scope, T>;
}

impl<'scope, T> CombineAtTimestamp<'scope, T> for VecCollection<'scope, T, (Row, Row), isize>
where
    T: Timestamp + TotalOrder + Lattice,
{
    fn combine_at_timestamp_with(
        self,
        key: &SinkKey,
        options: CombineOptions<T>,
    ) -> Combined<'scope, T> {
        // Arranged right here by the sink key's hash: no key can be misplaced. Counted in
        // `i128` from here on, so that no consolidation of 64-bit multiplicities wraps.
        let wide: VecCollection<'scope, T, (Row, Row), i128> = self
            .inner
            .map(|(data, time, diff)| (data, time, diff as i128))
            .as_collection();
        combine_arranged(wide.arrange_by_sink_key(), key, options, false)
    }
}

impl<'scope, T, Tr> CombineAtTimestamp<'scope, T> for Arranged<'scope, Tr>
where
    T: Timestamp + TotalOrder + Lattice,
    Tr: TraceReader<Time = T, Batch: Navigable> + 'static,
    for<'a> BatchCursor<Tr>: Cursor<Key<'a> = &'a Row, Val<'a> = &'a Row, Time = T>,
    <BatchCursor<Tr> as Cursor>::Diff: Multiplicity,
{
    fn combine_at_timestamp_with(
        self,
        key: &SinkKey,
        options: CombineOptions<T>,
    ) -> Combined<'scope, T> {
        combine_arranged(self, key, options, true)
    }
}

/// Builds the operator; `check_placement` asserts that each key is on the worker that owns it.
fn combine_arranged<'scope, T, Tr>(
    arranged: Arranged<'scope, Tr>,
    key: &SinkKey,
    options: CombineOptions<T>,
    check_placement: bool,
) -> Combined<'scope, T>
where
    T: Timestamp + TotalOrder + Lattice,
    Tr: TraceReader<Time = T, Batch: Navigable> + 'static,
    for<'a> BatchCursor<Tr>: Cursor<Key<'a> = &'a Row, Val<'a> = &'a Row, Time = T>,
    <BatchCursor<Tr> as Cursor>::Diff: Multiplicity,
{
    let uniqueness = key.uniqueness();
    let scope = arranged.stream.scope();
    let mut builder = OperatorBuilder::new("CombineAtTimestamp".to_owned(), scope);
    let mut input = builder.new_input(arranged.stream, Pipeline);
    let (mut pairs_output, pairs) = builder.new_output::<Vec<KeyedPair<T>>>();
    let (mut violations_output, violations) = builder.new_output::<Vec<KeyViolation<T>>>();

    let address = builder.operator_info().address;
    let activator = scope.activator_for(address.clone());
    if let Some(credit) = &options.credit {
        credit.attach(scope.activator_for(address));
    }
    let violation_count = options.violation_count.clone().unwrap_or_default();

    // A whole-row key needs no history, so it lets go of the trace: nothing beyond the
    // batches in flight stays in memory unless the caller keeps a handle.
    let trace = (uniqueness != Uniqueness::Multiset).then_some(arranged.trace);
    let mut combiner = Combiner {
        uniqueness,
        placement: check_placement.then(|| (scope.index(), scope.peers())),
        options,
        count: violation_count.clone(),
        trace,
        processed_upper: Antichain::from_elem(T::minimum()),
        queue: VecDeque::new(),
        active: None,
        pairs: Outbox::new(),
        violations: Outbox::new(),
    };

    builder.build(move |initial_capabilities| {
        // Output flows only from input batches, under their capabilities.
        drop(initial_capabilities);
        move |_frontiers| {
            input.for_each(|capability, spans| {
                for span in spans.drain(..) {
                    let (Some(pairs_cap), Some(violations_cap)) =
                        (capability.retain_least(0), capability.retain_least(1))
                    else {
                        assert!(
                            span.inner.is_none(),
                            "an arrangement sent a batch of updates under no capability"
                        );
                        continue;
                    };
                    combiner.queue.push_back(Work {
                        caps: (pairs_cap, violations_cap),
                        lower: span.lower().clone(),
                        upper: span.upper().clone(),
                        batch: span.inner,
                    });
                }
            });
            let mut pairs_session = pairs_output.activate();
            let mut violations_session = violations_output.activate();
            // Waiting for credit, the combiner is woken by the grant.
            if let Some(Pause::OutOfFuel) =
                combiner.work(&mut pairs_session, &mut violations_session)
            {
                activator.activate();
            }
        }
    });

    Combined {
        pairs,
        violations,
        violation_count,
    }
}

/// A span of the arrangement waiting to be combined, with the capabilities that let its pairs
/// and violations out. `batch` is taken when combining starts.
struct Work<T: Timestamp, B> {
    caps: (Capability<T>, Capability<T>),
    lower: Antichain<T>,
    upper: Antichain<T>,
    batch: Option<B>,
}

/// The batch being combined, and where in it combining stands.
struct Active<T: Timestamp, B: Navigable> {
    work: Work<T, B>,
    batch: B,
    cursor: B::Cursor,
    /// The history before the batch, for the keys' accumulated rows.
    history: Option<(CursorList<B::Cursor>, Vec<B>)>,
}

/// Why combining stopped before the end of its batch.
enum Pause {
    OutOfFuel,
    AwaitingCredit,
}

struct Combiner<T: Timestamp, Tr: TraceReader<Batch: Navigable>> {
    uniqueness: Uniqueness,
    /// This worker's index and the number of workers, when keys' placement is to be checked.
    placement: Option<(usize, usize)>,
    options: CombineOptions<T>,
    count: ViolationCount,
    trace: Option<Tr>,
    processed_upper: Antichain<T>,
    queue: VecDeque<Work<T, Tr::Batch>>,
    active: Option<Active<T, Tr::Batch>>,
    pairs: Outbox<T, KeyedPair<T>>,
    violations: Outbox<T, KeyViolation<T>>,
}

impl<T, Tr> Combiner<T, Tr>
where
    T: Timestamp + TotalOrder + Lattice,
    Tr: TraceReader<Time = T, Batch: Navigable>,
    for<'a> BatchCursor<Tr>: Cursor<Key<'a> = &'a Row, Val<'a> = &'a Row, Time = T>,
    <BatchCursor<Tr> as Cursor>::Diff: Multiplicity,
{
    /// Combines queued batches until none is left (`None`) or combining pauses.
    fn work(
        &mut self,
        pairs_out: &mut Output<T, Vec<KeyedPair<T>>>,
        violations_out: &mut Output<T, Vec<KeyViolation<T>>>,
    ) -> Option<Pause> {
        let mut fuel = self.options.fuel;
        loop {
            if self.active.is_none() {
                let Some(mut work) = self.queue.pop_front() else {
                    break;
                };
                match work.batch.take() {
                    None => self.finish(work.upper),
                    Some(batch) => self.active = Some(self.start(work, batch)),
                }
                continue;
            }
            let outcome = self.combine_active(&mut fuel, pairs_out, violations_out);
            self.pairs.send_all(pairs_out);
            self.violations.send_all(violations_out);
            if let Err(pause) = outcome {
                return Some(pause);
            }
            let active = self
                .active
                .take()
                .expect("combining finished a batch it did not have");
            // Dropping the buffers' capabilities, then the batch's, lets the frontier pass the
            // batch's times.
            self.pairs.release();
            self.violations.release();
            self.finish(active.work.upper);
        }
        if let Some(trace) = &mut self.trace {
            // Intervals without updates reach the trace but not the stream; step over them
            // so that the trace may compact its history up to what was combined.
            trace.advance_upper(&mut self.processed_upper);
            trace.set_logical_compaction(self.processed_upper.borrow());
            trace.set_physical_compaction(self.processed_upper.borrow());
        }
        None
    }

    fn start(&mut self, work: Work<T, Tr::Batch>, batch: Tr::Batch) -> Active<T, Tr::Batch> {
        let history = self.trace.as_mut().map(|trace| {
            let batches = trace.batches_through(work.lower.borrow()).unwrap_or_else(|| {
                panic!(
                    "the trace cannot show its history through {:?}: the arrangement given to combine_at_timestamp \
                     must be read from its first batch (not imported after compaction)",
                    work.lower
                )
            });
            cursor_list(batches)
        });
        let cursor = batch.cursor();
        Active {
            work,
            batch,
            cursor,
            history,
        }
    }

    /// Records that everything before `upper` has been combined, letting the trace compact.
    fn finish(&mut self, upper: Antichain<T>) {
        self.processed_upper = upper;
        if let Some(trace) = &mut self.trace {
            trace.set_logical_compaction(self.processed_upper.borrow());
            trace.set_physical_compaction(self.processed_upper.borrow());
        }
    }

    /// Combines keys of the active batch until it is done (`Ok`), or the fuel or the credit is
    /// spent.
    fn combine_active(
        &mut self,
        fuel: &mut usize,
        pairs_out: &mut Output<T, Vec<KeyedPair<T>>>,
        violations_out: &mut Output<T, Vec<KeyViolation<T>>>,
    ) -> Result<(), Pause> {
        let Combiner {
            uniqueness,
            placement,
            options,
            count,
            active,
            pairs,
            violations,
            ..
        } = self;
        let Active {
            work,
            batch,
            cursor,
            history,
        } = active.as_mut().expect("no batch to combine");
        let (mut history_cursor, history_batches) = match history {
            Some((cursor, batches)) => (Some(cursor), Some(&*batches)),
            None => (None, None),
        };
        let batch = &*batch;

        let mut updates: Vec<(T, &Row, i128)> = Vec::new();
        let mut held: Vec<(&Row, i128)> = Vec::new();
        while let Some(key) = cursor.get_key(batch) {
            if *fuel == 0 {
                return Err(Pause::OutOfFuel);
            }
            if options.credit.as_ref().is_some_and(PairCredit::exhausted) {
                return Err(Pause::AwaitingCredit);
            }
            if let Some((index, peers)) = *placement {
                let owner = worker_for_key(key, peers);
                assert_eq!(
                    owner, index,
                    "key {key:?} is arranged on worker {index} of {peers}, but stable_key_hash places it on worker {owner}: \
                     combine_at_timestamp needs an arrangement made by arrange_by_sink_key"
                );
            }

            updates.clear();
            while let Some(val) = cursor.get_val(batch) {
                cursor.map_times(batch, |time, diff| {
                    updates.push((
                        <BatchCursor<Tr> as Cursor>::owned_time(time),
                        val,
                        <BatchCursor<Tr> as Cursor>::owned_diff(diff).count(),
                    ))
                });
                cursor.step_val(batch);
            }
            // Stable: within a time, values stay in the cursor's (row) order.
            updates.sort_by(|a, b| a.0.cmp(&b.0));

            held.clear();
            if let (Some(history_cursor), Some(history_batches)) =
                (history_cursor.as_deref_mut(), history_batches)
            {
                seek_forward(history_cursor, history_batches, key);
                if history_cursor.get_key(history_batches) == Some(key) {
                    while let Some(val) = history_cursor.get_val(history_batches) {
                        let mut copies = 0;
                        history_cursor.map_times(history_batches, |_, diff| {
                            copies +=
                                <CursorList<BatchCursor<Tr>> as Cursor>::owned_diff(diff).count()
                        });
                        if copies != 0 {
                            held.push((val, copies));
                        }
                        history_cursor.step_val(history_batches);
                    }
                }
            }

            let mut emitted = 0;
            for group in updates.chunk_by(|a, b| a.0 == b.0) {
                let time = &group[0].0;
                if *uniqueness == Uniqueness::Multiset {
                    if options.skips(time) {
                        continue;
                    }
                    let net: i128 = group.iter().map(|u| u.2).sum();
                    let refusal = overflow(group, &[])
                        .or_else(|| too_many(net.unsigned_abs(), options.max_copies));
                    if let Some(refusal) = refusal {
                        let violation = report(key, time, group, &held, false, Some(refusal));
                        violations.push(&work.caps.1, time, violation, violations_out);
                        continue;
                    }
                    emitted += emit_copies(key, time, net, &work.caps.0, pairs, pairs_out);
                    continue;
                }
                for &(_, val, diff) in group {
                    accumulate(&mut held, val, diff);
                }
                if options.skips(time) {
                    continue;
                }
                let retracted: i128 = group.iter().filter(|u| u.2 < 0).map(|u| -u.2).sum();
                let inserted: i128 = group.iter().filter(|u| u.2 > 0).map(|u| u.2).sum();
                let held_rows: i128 = held.iter().map(|h| h.1).sum();
                let violated =
                    retracted > 1 || inserted > 1 || held_rows > 1 || held.iter().any(|h| h.1 < 0);
                let enforced = *uniqueness == Uniqueness::Enforced;
                let copies = if options.collapse_repeats || enforced {
                    0
                } else {
                    retracted.max(inserted).unsigned_abs()
                };
                let refusal =
                    overflow(group, &held).or_else(|| too_many(copies, options.max_copies));
                if violated || refusal.is_some() {
                    if violated {
                        count.add(1);
                    }
                    let refused = refusal.is_some();
                    let violation = KeyViolation {
                        refusal,
                        ..report(key, time, group, &held, enforced, None)
                    };
                    violations.push(&work.caps.1, time, violation, violations_out);
                    *fuel = fuel.saturating_sub(1);
                    if enforced || refused {
                        continue;
                    }
                }
                emitted += emit_pairs(
                    key,
                    time,
                    group,
                    options.collapse_repeats,
                    &work.caps.0,
                    pairs,
                    pairs_out,
                );
            }
            if let Some(credit) = &options.credit {
                credit.spend(emitted);
            }
            *fuel = fuel.saturating_sub(updates.len() + emitted);
            cursor.step_key(batch);
        }
        Ok(())
    }
}

/// Moves a cursor to `key` or the first key after it. Batches often touch most keys of their
/// history, so the next key is usually a step or two ahead: stepping costs one comparison a
/// step, where `seek_key` compares a fixed handful of keys in every batch of the history.
fn seek_forward<C>(cursor: &mut C, storage: &C::Storage, key: &Row)
where
    for<'a> C: Cursor<Key<'a> = &'a Row>,
{
    const STEPS: usize = 4;
    for _ in 0..STEPS {
        match cursor.get_key(storage) {
            Some(current) if current < key => cursor.step_key(storage),
            _ => return,
        }
    }
    cursor.seek_key(storage, key);
}

/// Adds `diff` copies of `val` to a key's accumulated rows, kept in row order without zeros.
fn accumulate<'a>(held: &mut Vec<(&'a Row, i128)>, val: &'a Row, diff: i128) {
    match held.binary_search_by(|probe| probe.0.cmp(val)) {
        Ok(at) => {
            held[at].1 += diff;
            if held[at].1 == 0 {
                held.remove(at);
            }
        }
        Err(at) => held.insert(at, (val, diff)),
    }
}

/// The first row whose change at this time, or whose accumulated count, leaves the 64-bit
/// range of a multiplicity.
fn overflow<T>(group: &[(T, &Row, i128)], held: &[(&Row, i128)]) -> Option<Refusal> {
    let wide = |count: i128| i64::try_from(count).is_err();
    held.iter()
        .copied()
        .chain(group.iter().map(|u| (u.1, u.2)))
        .find(|&(_, count)| wide(count))
        .map(|(row, count)| Refusal::Overflow {
            row: row.clone(),
            count,
        })
}

fn too_many(messages: u128, limit: u64) -> Option<Refusal> {
    (messages > limit as u128).then_some(Refusal::TooManyCopies { messages, limit })
}

/// The report of a key's change at one time; counts beyond the report's integer types (only
/// in refused changes, whose refusal gives the exact count) are clamped.
fn report<T: Clone>(
    key: &Row,
    time: &T,
    group: &[(T, &Row, i128)],
    held: &[(&Row, i128)],
    enforced: bool,
    refusal: Option<Refusal>,
) -> KeyViolation<T> {
    KeyViolation {
        key: key.clone(),
        time: time.clone(),
        retracted: copies_of(group, |d| d < 0),
        inserted: copies_of(group, |d| d > 0),
        held: held
            .iter()
            .map(|&(row, copies)| {
                let clamped = copies.clamp(isize::MIN as i128, isize::MAX as i128) as isize;
                (row.clone(), clamped)
            })
            .collect(),
        enforced,
        refusal,
    }
}

fn copies_of<T>(group: &[(T, &Row, i128)], side: impl Fn(i128) -> bool) -> Vec<(Row, usize)> {
    group
        .iter()
        .filter(|u| side(u.2))
        .map(|u| {
            let copies = usize::try_from(u.2.unsigned_abs()).unwrap_or(usize::MAX);
            (u.1.clone(), copies)
        })
        .collect()
}

/// Emits a key's pairs at one time: retracted rows paired position by position with inserted
/// rows, both in row order with copies repeated, the longer side's extras alone. With
/// `collapse`, each run of identical pairs comes out once. Walks runs, never single copies,
/// so the cost is in what is emitted.
fn emit_pairs<T: Timestamp>(
    key: &Row,
    time: &T,
    group: &[(T, &Row, i128)],
    collapse: bool,
    cap: &Capability<T>,
    outbox: &mut Outbox<T, KeyedPair<T>>,
    out: &mut Output<T, Vec<KeyedPair<T>>>,
) -> usize {
    let side = |keep: fn(i128) -> bool| -> Vec<(&Row, u128)> {
        group
            .iter()
            .filter(|u| keep(u.2))
            .map(|u| (u.1, u.2.unsigned_abs()))
            .collect()
    };
    let (befores, afters) = (side(|d| d < 0), side(|d| d > 0));
    let (mut b, mut a) = (0, 0);
    let (mut b_left, mut a_left) = (
        befores.first().map_or(0, |r| r.1),
        afters.first().map_or(0, |r| r.1),
    );
    let mut emitted = 0;
    loop {
        let (before, after) = (befores.get(b).map(|r| r.0), afters.get(a).map(|r| r.0));
        let run = match (before, after) {
            (None, None) => return emitted,
            (Some(_), Some(_)) => b_left.min(a_left),
            (Some(_), None) => b_left,
            (None, Some(_)) => a_left,
        };
        let pair = DiffPair {
            before: before.cloned(),
            after: after.cloned(),
        };
        let copies = if collapse { 1 } else { run };
        for _ in 0..copies {
            outbox.push(cap, time, (key.clone(), time.clone(), pair.clone()), out);
            emitted += 1;
        }
        if before.is_some() {
            b_left -= run;
            if b_left == 0 {
                b += 1;
                b_left = befores.get(b).map_or(0, |r| r.1);
            }
        }
        if after.is_some() {
            a_left -= run;
            if a_left == 0 {
                a += 1;
                a_left = afters.get(a).map_or(0, |r| r.1);
            }
        }
    }
}

/// Emits a whole-row key's net change at one time as that many deletes or inserts of the row.
fn emit_copies<T: Timestamp>(
    row: &Row,
    time: &T,
    net: i128,
    cap: &Capability<T>,
    outbox: &mut Outbox<T, KeyedPair<T>>,
    out: &mut Output<T, Vec<KeyedPair<T>>>,
) -> usize {
    let copies = net.unsigned_abs() as usize;
    for _ in 0..copies {
        let pair = if net < 0 {
            DiffPair::delete(row.clone())
        } else {
            DiffPair::insert(row.clone())
        };
        outbox.push(cap, time, (row.clone(), time.clone(), pair), out);
    }
    copies
}

/// Per-time output buffers of the batch being combined. A batch may span several times, and
/// each record must leave under its own time; keys are read in order, so each time's buffer
/// receives its records in key order.
struct Outbox<T: Timestamp, D> {
    by_time: BTreeMap<T, (Capability<T>, Vec<D>)>,
    buffered: usize,
}

impl<T: Timestamp, D: Clone + 'static> Outbox<T, D> {
    fn new() -> Self {
        Outbox {
            by_time: BTreeMap::new(),
            buffered: 0,
        }
    }

    fn push(&mut self, cap: &Capability<T>, time: &T, record: D, out: &mut Output<T, Vec<D>>) {
        let (time_cap, buffer) = self
            .by_time
            .entry(time.clone())
            .or_insert_with(|| (cap.delayed(time), Vec::with_capacity(MESSAGE_LEN)));
        buffer.push(record);
        self.buffered += 1;
        if buffer.len() >= MESSAGE_LEN {
            self.buffered -= buffer.len();
            out.give(time_cap, buffer);
            buffer.clear();
        } else if self.buffered >= BUFFERED_LIMIT {
            self.send_all(out);
        }
    }

    fn send_all(&mut self, out: &mut Output<T, Vec<D>>) {
        for (time_cap, buffer) in self.by_time.values_mut() {
            out.give(time_cap, buffer);
            buffer.clear();
        }
        self.buffered = 0;
    }

    /// Drops the per-time capabilities; call once everything was sent.
    fn release(&mut self) {
        debug_assert_eq!(self.buffered, 0, "releasing capabilities of unsent records");
        self.by_time.clear();
    }
}
