//! `OutflowSinkRecover`: steps 2 to 4 of the startup order, on worker 0. Once every worker's
//! producer is ready, it reads the progress topic (on a thread of its own, so the worker keeps
//! stepping), fences retired transactional ids, recovers, announces the run in its first
//! transaction, and broadcasts the recovery to every worker.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{mpsc, Arc};

use outflow_protocol::{Event, Recovery};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Operator;
use timely::dataflow::{Scope, Stream};

use super::init::Readiness;
use super::worker::{Wakers, WorkerSink};
use super::{SinkPlan, STARTUP_POLL};
use crate::progress_reader::{recover, RecoverOptions};

/// The recovery every worker starts from, as JSON (it crosses process boundaries), or the
/// error that stops the sink.
pub(super) type Recovered = Result<String, String>;

pub(super) fn recover_on_worker_zero<'scope>(
    scope: Scope<'scope, u64>,
    plan: &SinkPlan,
    readiness: Stream<'scope, u64, Vec<Readiness>>,
    recover_state: Rc<RefCell<WorkerSink>>,
    wakers: &Wakers,
) -> Stream<'scope, u64, Vec<Recovered>> {
    let worker = scope.index();
    let workers = scope.peers();
    let names = plan.names();
    let recover_client = plan.connection.client_config().clone();
    let progress_topic = plan.connection.progress_topic.clone();
    let sink_name = plan.spec.name.clone();
    let topic = plan.spec.topic.clone();
    let options = RecoverOptions {
        mode: plan.delivery_mode(),
        reader_shows_aborted: plan.broker_shows_aborted_records,
        ..RecoverOptions::default()
    };
    readiness
        .unary_frontier::<timely::container::CapacityContainerBuilder<Vec<Result<String, String>>>, _, _, _>(
            Exchange::new(|_: &(usize, Result<(), String>)| 0u64),
            "OutflowSinkRecover",
            |capability, info| {
                wakers.register(scope, &info.address);
                let activator = scope.worker().sync_activator_for(info.address.to_vec());
                let poll = scope.activator_for(info.address.clone());
                let mut capability = Some(capability);
                let mut errors: Vec<String> = Vec::new();
                let mut reported = 0usize;
                let mut pending: Option<mpsc::Receiver<Result<Recovery, String>>> = None;
                let mut recovery: Option<Arc<Recovery>> = None;
                move |(input, _frontier), output| {
                    input.for_each(|_, data| {
                        for (worker, outcome) in data.drain(..) {
                            reported += 1;
                            if let Err(error) = outcome {
                                errors.push(format!("worker {worker}: {error}"));
                            }
                        }
                    });
                    let Some(cap) = capability.as_ref() else { return };
                    if worker != 0 {
                        capability = None;
                        return;
                    }
                    // Every worker reports once, success or error. The reports are counted rather
                    // than read off the frontier, which is empty until progress first reaches this
                    // operator.
                    if reported < workers {
                        return;
                    }
                    if !errors.is_empty() {
                        output.session(cap).give(Err(errors.join("; ")));
                        capability = None;
                        return;
                    }
                    if recovery.is_none() && pending.is_none() {
                        let (send, receive) = mpsc::channel();
                        let (client, names, topic, activator) =
                            (recover_client.clone(), names.clone(), progress_topic.clone(), activator.clone());
                        std::thread::spawn(move || {
                            let result = recover(&client, &names, &topic, workers as u32, options)
                                .map_err(|error| format!("cannot recover from the progress topic: {error}"));
                            let _ = send.send(result);
                            let _ = activator.activate();
                        });
                        pending = Some(receive);
                    }
                    let mut state = recover_state.borrow_mut();
                    if let Some(receive) = &pending {
                        match receive.try_recv() {
                            Ok(Ok(found)) => {
                                for disagreement in &found.disagreements {
                                    tracing::warn!(sink = %sink_name, "progress recovery: {disagreement}");
                                    state.monitor.note(format!("progress recovery: {disagreement:?}"));
                                }
                                if let Some(changes) = &found.definition_changed {
                                    let note = format!(
                                        "the progress records were written by another definition of the sink ({changes}); it starts from the beginning and writes its whole input to topic {topic}"
                                    );
                                    tracing::warn!(sink = %sink_name, "{note}");
                                    state.monitor.note(note);
                                }
                                match found.resume_time() {
                                    _ if found.previous.is_empty() => tracing::info!(
                                        sink = %sink_name,
                                        workers,
                                        "recovered: no committed progress; starting from the beginning"
                                    ),
                                    Some(time) => tracing::info!(
                                        sink = %sink_name,
                                        workers,
                                        previous_workers = ?found.previous_workers,
                                        "recovered: resuming at time {time}"
                                    ),
                                    None => tracing::info!(
                                        sink = %sink_name,
                                        workers,
                                        "recovered: everything is committed"
                                    ),
                                }
                                let found = Arc::new(found);
                                recovery = Some(Arc::clone(&found));
                                pending = None;
                                                state.handle(Event::Recovered(found));
                            }
                            Ok(Err(error)) => {
                                pending = None;
                                state.fail(error.clone());
                                output.session(cap).give(Err(error));
                                capability = None;
                                return;
                            }
                            Err(_) => {
                                poll.activate_after(STARTUP_POLL);
                                return;
                            }
                        }
                    }
                    state.pump();
                    if let Some(error) = state.failed.clone() {
                        output.session(cap).give(Err(error));
                        capability = None;
                    } else if !state.announced {
                        poll.activate_after(STARTUP_POLL);
                    } else {
                        let recovery = recovery.as_ref().expect("announced only after recovering");
                        let json = serde_json::to_string(&**recovery).expect("recoveries serialize");
                        output.session(cap).give(Ok(json));
                        capability = None;
                    }
                }
            },
        )
        .broadcast()
}
