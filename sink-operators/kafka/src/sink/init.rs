//! `OutflowSinkInit`: step 1 of the startup order, on every worker. The worker's producer
//! initializes its transactions (fencing the previous holder of its transactional id); the
//! operator then tells worker 0, once, whether that worked.

use std::cell::RefCell;
use std::rc::Rc;

use timely::dataflow::operators::generic::operator::source;
use timely::dataflow::{Scope, Stream};

use super::worker::{Wakers, WorkerSink};
use super::STARTUP_POLL;

/// Each worker's report: its index and whether its producer is ready.
pub(super) type Readiness = (usize, Result<(), String>);

pub(super) fn init<'scope>(
    scope: Scope<'scope, u64>,
    init_state: Rc<RefCell<WorkerSink>>,
    wakers: &Wakers,
) -> Stream<'scope, u64, Vec<Readiness>> {
    source::<_, timely::container::CapacityContainerBuilder<Vec<(usize, Result<(), String>)>>, _, _>(
        scope,
        "OutflowSinkInit",
        |capability, info| {
            wakers.register(scope, &info.address);
            // Another of this worker's sink operators may take the driver's answer; the
            // startup operators look again shortly rather than rely on being woken.
            let activator = scope.activator_for(info.address.clone());
            let mut capability = Some(capability);
            move |output| {
                let mut state = init_state.borrow_mut();
                state.pump();
                let outcome = if let Some(error) = &state.failed {
                    Some(Err(error.clone()))
                } else if state.driver.is_initialized() {
                    Some(Ok(()))
                } else {
                    None
                };
                match (outcome, capability.take()) {
                    (Some(outcome), Some(cap)) => {
                        output.session(&cap).give((state.worker, outcome))
                    }
                    (None, cap @ Some(_)) => {
                        capability = cap;
                        activator.activate_after(STARTUP_POLL);
                    }
                    _ => {}
                }
            }
        },
    )
}
