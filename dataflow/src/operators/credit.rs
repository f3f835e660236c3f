//! `PairCredit`: how many more pairs a worker's consumer will take before combining pauses.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use timely::scheduling::Activator;

/// A per-worker allowance of pairs that [`combine_at_timestamp`] may emit before it waits.
///
/// Timely channels have no back pressure: an operator that emits faster than its consumer
/// drains would pile the difference up in the channel, and for a large snapshot that pile is a
/// second copy of the snapshot. A consumer that cannot keep up (a producer whose queue is
/// full) hands the combiner a credit instead: combining emits while credit remains, then parks
/// holding its capabilities, and [`PairCredit::grant`] wakes it when the consumer has made room.
///
/// The credit is spent key by key: a key's pairs at one time are never split by a pause, so the
/// balance can dip below zero by at most one key's pairs, which then delays the next key.
///
/// Grant credit when pairs leave the consumer's queue (handed to the producer), never when
/// their time commits: the combiner holds the frontier at a batch's times until it has emitted
/// the whole batch, so a grant that waits for the frontier would never come.
///
/// A credit lives on one worker (it is not `Send`); build it inside the worker closure and give
/// a clone to the consumer. A consumer that never grants stalls the combiner, by design.
///
/// [`combine_at_timestamp`]: crate::operators::CombineAtTimestamp::combine_at_timestamp
#[derive(Clone)]
pub struct PairCredit {
    inner: Rc<Inner>,
}

struct Inner {
    balance: Cell<i64>,
    waiting: RefCell<Option<Activator>>,
}

impl PairCredit {
    /// A credit of `pairs` pairs, typically the capacity of the consumer's queue.
    pub fn new(pairs: usize) -> PairCredit {
        PairCredit {
            inner: Rc::new(Inner {
                balance: Cell::new(clamp(pairs)),
                waiting: RefCell::new(None),
            }),
        }
    }

    /// Pairs that may still be emitted before combining pauses (zero when overdrawn).
    pub fn available(&self) -> usize {
        self.inner.balance.get().max(0) as usize
    }

    /// Returns `pairs` to the allowance (the consumer has passed them on) and wakes a combiner
    /// waiting for credit.
    pub fn grant(&self, pairs: usize) {
        let balance = self.inner.balance.get().saturating_add(clamp(pairs));
        self.inner.balance.set(balance);
        if balance > 0 {
            if let Some(activator) = self.inner.waiting.borrow().as_ref() {
                activator.activate();
            }
        }
    }

    pub(crate) fn spend(&self, pairs: usize) {
        self.inner
            .balance
            .set(self.inner.balance.get().saturating_sub(clamp(pairs)));
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.inner.balance.get() <= 0
    }

    /// Registers the operator that `grant` wakes. One credit drives one combiner.
    pub(crate) fn attach(&self, activator: Activator) {
        let previous = self.inner.waiting.borrow_mut().replace(activator);
        assert!(
            previous.is_none(),
            "a PairCredit was given to two combine_at_timestamp operators; give each its own"
        );
    }
}

fn clamp(pairs: usize) -> i64 {
    i64::try_from(pairs).unwrap_or(i64::MAX)
}

impl fmt::Debug for PairCredit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairCredit")
            .field("balance", &self.inner.balance.get())
            .finish()
    }
}
