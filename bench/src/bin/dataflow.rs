//! Throughput and memory of the sink-side dataflow operators: keying, arranging by sink key
//! and combining into `DiffPair`s, with no Kafka involved.
//!
//! Prints, in one run:
//! - updates per second through `key_by` + `arrange_by_sink_key` (+ `combine_at_timestamp`)
//!   with 1 and 2 workers, over a snapshot followed by rounds that update every key;
//! - for a 5 M-row snapshot through the whole path, the process's peak resident memory
//!   (`VmHWM`) against the arrangement's own heap size, measured by a counting allocator once
//!   the snapshot has been combined and only the arrangement remains, beside the heap and
//!   resident memory of the batcher's sorted chain just before the batch is sealed (the peak
//!   is the chain and the batch side by side, as the seal fills one while it frees the other);
//! - differential's ordered `ValSpine` of `Row`s beside its columnar spine, which cannot hold
//!   `Row` itself and is measured on the rows' packed bytes (`Vec<u8>`).
//!
//! Each memory figure comes from a fresh process (this binary started again with `--phase`),
//! as `VmHWM` only ever grows. The allocator is the `outflow` program's jemalloc, with its
//! options (`--no-default-features`: the system's).

#[cfg(not(feature = "jemalloc"))]
use std::alloc::System;
use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use differential_dataflow::batcher::merge::chunker::ContainerChunker;
use differential_dataflow::columnar::trace::{ColChunk, Spine as ColumnarSpine};
use differential_dataflow::input::Input;
use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::trace::chunk::ChunkBatcher;
use differential_dataflow::trace::TraceReader;
use differential_dataflow::VecCollection;
use outflow_dataflow::operators::{ArrangeBySinkKey, CombineAtTimestamp, KeyBy, SinkKey};
use outflow_dataflow::{Datum, Row};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::probe::{Handle as ProbeHandle, Probe};
use timely::progress::Antichain;

#[path = "../allocator.rs"]
mod allocator;

/// The allocator the counting one passes each call to: the `outflow` program's jemalloc, or
/// with `--no-default-features` the system's.
#[cfg(feature = "jemalloc")]
const INNER: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(not(feature = "jemalloc"))]
const INNER: System = System;

/// Counts live heap bytes and their high-water mark.
struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { INNER.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { INNER.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { INNER.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                    - layout.size();
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const MIB: f64 = 1024.0 * 1024.0;
const SNAPSHOT_ROWS: u64 = 5_000_000;
const THROUGHPUT_KEYS: u64 = 250_000;
const THROUGHPUT_ROUNDS: u64 = 8;

/// A row of `(id int8, name text, balance int8)`, 41 packed bytes; its key is `id`.
fn customer(id: u64, version: u64) -> Row {
    let name = format!("customer-{id:08}");
    Row::pack_slice(&[
        Datum::Int64(id as i64),
        Datum::String(&name),
        Datum::Int64((id * 31 + version) as i64),
    ])
}

fn key() -> SinkKey {
    SinkKey::Declared {
        columns: vec![0],
        enforced: true,
    }
}

/// `VmHWM` or `VmRSS` of this process, in bytes.
fn proc_status(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad line {line:?}"));
    kib * 1024
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.as_slice() {
        [_] => {}
        [_, flag, phase] if flag == "--phase" && phase == "throughput" => return throughputs(),
        [_, flag, phase] if flag == "--phase" => return memory_phase(phase),
        _ => panic!("usage: dataflow [--phase throughput|combine|arrange-val|arrange-columnar]"),
    }

    println!("# outflow dataflow operators: key_by + arrange_by_sink_key + combine_at_timestamp");
    throughputs();
    println!("# memory: a {SNAPSHOT_ROWS}-row snapshot at one time, 1 worker, each figure from a fresh process");
    let exe = std::env::current_exe().expect("own path");
    for phase in ["combine", "arrange-val", "arrange-columnar"] {
        let output = Command::new(&exe)
            .args(["--phase", phase])
            .output()
            .expect("start a memory phase");
        assert!(
            output.status.success(),
            "phase {phase} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        print!("{}", String::from_utf8_lossy(&output.stdout));
    }
}

fn throughputs() {
    println!(
        "# throughput: {THROUGHPUT_KEYS} keys inserted at time 0, then {} rounds that update every key \
         (a retraction and an insertion each), one round per time, each round waited for",
        THROUGHPUT_ROUNDS - 1
    );
    for workers in [1, 2] {
        for combine in [false, true] {
            throughput(workers, combine);
        }
    }
}

/// Updates per second through keying and arranging (and combining, if `combine`).
fn throughput(workers: usize, combine: bool) {
    let barrier = Arc::new(Barrier::new(workers));
    let elapsed = Arc::new(Mutex::new(Duration::ZERO));
    let pairs = Arc::new(AtomicUsize::new(0));
    let (elapsed_out, pairs_out) = (Arc::clone(&elapsed), Arc::clone(&pairs));
    let updates_fed = timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        // Rows are made before the clock starts: the figure is the operators', not the packing's.
        let rounds: Vec<Vec<(Row, isize)>> = (0..THROUGHPUT_ROUNDS)
            .map(|round| {
                (index as u64..THROUGHPUT_KEYS)
                    .step_by(peers)
                    .flat_map(|id| {
                        let insert = (customer(id, round), 1);
                        if round == 0 {
                            vec![insert]
                        } else {
                            vec![(customer(id, round - 1), -1), insert]
                        }
                    })
                    .collect()
            })
            .collect();
        let updates: usize = rounds.iter().map(Vec::len).sum();
        let probe = ProbeHandle::new();
        let pairs = Arc::clone(&pairs_out);
        let (mut input, mut kept) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let arranged = rows.key_by(&key()).arrange_by_sink_key();
            if combine {
                let counted = Rc::new(Cell::new(0usize));
                arranged
                    .combine_at_timestamp(&key())
                    .pairs
                    .probe_with(&probe)
                    .sink(Pipeline, "CountPairs", move |(input, frontier)| {
                        input.for_each(|_, data| counted.set(counted.get() + data.len()));
                        if frontier.is_empty() {
                            pairs.fetch_add(counted.replace(0), Ordering::Relaxed);
                        }
                    });
                (input, None)
            } else {
                // A caller that maintains the arrangement: the trace is kept and compacted as
                // the rounds complete, so the spine's merging is paid in both variants.
                arranged.stream.probe_with(&probe);
                (input, Some(arranged.trace))
            }
        });
        barrier.wait();
        let start = Instant::now();
        for (time, round) in rounds.into_iter().enumerate() {
            for (row, diff) in round {
                input.update(row, diff);
            }
            input.advance_to(time as u64 + 1);
            input.flush();
            while probe.less_than(input.time()) {
                worker.step();
            }
            if let Some(trace) = &mut kept {
                trace.set_logical_compaction(Antichain::from_elem(time as u64 + 1).borrow());
                trace.set_physical_compaction(Antichain::from_elem(time as u64 + 1).borrow());
            }
        }
        drop(kept);
        drop(input);
        while worker.step_or_park(None) {}
        let took = start.elapsed();
        let mut slowest = elapsed_out.lock().unwrap();
        *slowest = (*slowest).max(took);
        updates
    })
    .expect("timely starts")
    .join()
    .into_iter()
    .map(|r| r.expect("worker finished"))
    .sum::<usize>();
    let seconds = elapsed.lock().unwrap().as_secs_f64();
    let what = if combine {
        "key + arrange + combine      "
    } else {
        "key + arrange (trace kept)   "
    };
    let pairs = pairs.load(Ordering::Relaxed);
    let pairs = if combine {
        format!(
            ", {pairs} pairs ({:.2} M pairs/s)",
            pairs as f64 / seconds / 1e6
        )
    } else {
        String::new()
    };
    println!(
        "{what}  workers={workers}: {updates_fed} updates in {seconds:.2} s = {:.2} M updates/s{pairs}",
        updates_fed as f64 / seconds / 1e6
    );
}

/// The heap and resident memory once the whole snapshot is in the batcher, before its batch is
/// sealed: the batcher's sorted chain of updates.
struct Chain {
    heap: usize,
    rss: usize,
}

/// Inserts the snapshot in pieces, as a source would, and advances past it.
fn feed_snapshot(
    worker: &mut timely::worker::Worker,
    input: &mut differential_dataflow::input::InputSession<u64, Row, isize>,
    probe: &ProbeHandle<u64>,
) -> Chain {
    const PIECE: u64 = 100_000;
    for start in (0..SNAPSHOT_ROWS).step_by(PIECE as usize) {
        for id in start..(start + PIECE).min(SNAPSHOT_ROWS) {
            input.insert(customer(id, 0));
        }
        input.flush();
        worker.step();
    }
    // Let the batcher take in the last piece, then note what its sorted chains hold before the
    // batch is sealed.
    for _ in 0..20 {
        worker.step();
    }
    let chain = Chain {
        heap: LIVE.load(Ordering::Relaxed),
        rss: proc_status("VmRSS:"),
    };
    input.advance_to(1);
    input.flush();
    while probe.less_than(&1) {
        worker.step();
    }
    chain
}

fn memory_phase(phase: &str) {
    let baseline_rss = proc_status("VmRSS:");
    let baseline_heap = LIVE.load(Ordering::Relaxed);
    let start = Instant::now();
    let phase_name = phase.to_owned();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        // The arrangement's handle, kept once the dataflow is done so that its size can be taken.
        let (mut input, kept): (_, Box<dyn std::any::Any>) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            match phase_name.as_str() {
                "combine" => {
                    let arranged = rows.key_by(&key()).arrange_by_sink_key();
                    let trace = arranged.trace.clone();
                    // The consumer drops each pair as it comes, as a producer would pass it on.
                    arranged.combine_at_timestamp(&key()).pairs.probe_with(&probe).sink(
                        Pipeline,
                        "DropPairs",
                        |(input, _)| {
                            input.for_each(|_, data| data.clear());
                        },
                    );
                    (input, Box::new(trace) as Box<dyn std::any::Any>)
                }
                "arrange-val" => {
                    let arranged = rows.key_by(&key()).arrange_by_sink_key();
                    arranged.stream.probe_with(&probe);
                    (input, Box::new(arranged.trace) as Box<dyn std::any::Any>)
                }
                "arrange-columnar" => {
                    // The columnar spine needs `columnar::Columnar` keys and values ordered by
                    // their borrowed form; `Row` has no such implementation, its packed bytes do.
                    type Update = (Vec<u8>, Vec<u8>, u64, isize);
                    type Batcher = ChunkBatcher<ContainerChunker<ColChunk<Update>>, ColChunk<Update>>;
                    let keyed: VecCollection<'_, u64, (Vec<u8>, Vec<u8>), isize> =
                        rows.key_by(&key()).map(|(k, v)| (k.data().to_vec(), v.data().to_vec()));
                    let arranged = arrange_core::<_, _, Batcher, ColumnarSpine<Vec<u8>, Vec<u8>, u64, isize>>(
                        keyed.inner,
                        Pipeline,
                        "ArrangeColumnar",
                        Batcher::new,
                    );
                    arranged.stream.probe_with(&probe);
                    (input, Box::new(arranged.trace) as Box<dyn std::any::Any>)
                }
                other => panic!("unknown phase {other:?}: expected combine, arrange-val or arrange-columnar"),
            }
        });
        let chain = feed_snapshot(worker, &mut input, &probe);
        drop(input);
        while worker.step_or_park(None) {}
        report(&phase_name, start, baseline_rss, baseline_heap, &chain);
        drop(kept);
    });
}

/// Prints one memory phase's figures while its arrangement is still held.
fn report(phase: &str, start: Instant, baseline_rss: usize, baseline_heap: usize, chain: &Chain) {
    let seconds = start.elapsed().as_secs_f64();
    let arrangement = LIVE.load(Ordering::Relaxed).saturating_sub(baseline_heap);
    let peak_rss = proc_status("VmHWM:");
    let peak_heap = PEAK.load(Ordering::Relaxed).saturating_sub(baseline_heap);
    // The ordered spine's contents, counted: each update's key and value `Row` (24 bytes each
    // plus their packed bytes), time, diff, and two offsets.
    let sample = customer(SNAPSHOT_ROWS / 2, 0);
    let key_bytes = sample.project(&[0]).byte_len();
    let estimate = SNAPSHOT_ROWS as usize
        * (2 * std::mem::size_of::<Row>() + key_bytes + sample.byte_len() + 8 + 8 + 2 * 8);
    let label = match phase {
        "combine" => "snapshot through key + arrange (ValSpine) + combine",
        "arrange-val" => "arrange only, ordered ValSpine<Row, Row>",
        _ => "arrange only, columnar Spine<Vec<u8>, Vec<u8>>",
    };
    println!(
        "{label}: {:.1} s; arrangement heap {:.0} MiB (measured{}); batcher's chain before the seal: heap {:.0} MiB, \
         RSS {:.0} MiB; peak heap {:.0} MiB; peak RSS (VmHWM) {:.0} MiB over a {:.0} MiB baseline = {:.2}x the arrangement",
        seconds,
        arrangement as f64 / MIB,
        if phase == "arrange-columnar" {
            String::new()
        } else {
            format!("; rows x bytes estimate {:.0} MiB", estimate as f64 / MIB)
        },
        chain.heap.saturating_sub(baseline_heap) as f64 / MIB,
        chain.rss.saturating_sub(baseline_rss) as f64 / MIB,
        peak_heap as f64 / MIB,
        peak_rss as f64 / MIB,
        baseline_rss as f64 / MIB,
        (peak_rss - baseline_rss) as f64 / arrangement as f64,
    );
}
