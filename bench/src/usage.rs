//! What a phase of a scenario costs beyond wall-clock time: allocations through Rust's global
//! allocator, and CPU time per thread, grouped by what the thread does. Both are stable where
//! wall-clock rates are not (the machines are shared).
//!
//! Allocations are counted process-wide (every thread that allocates through the global
//! allocator: the timely workers, the producer's I/O thread, rdkafka's Rust callbacks). C code
//! allocates with `malloc` and is not counted: librdkafka's copy of each message, its header
//! lists, the mock cluster's log.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts allocations (and reallocations, which may move) made through `A`.
pub struct Counting<A>(pub A);

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed on to `A` unchanged; the counter has no effect on memory.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { self.0.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

/// Allocations so far, process-wide.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// The group a thread's CPU time is reported under, from its name.
fn thread_group(name: &str) -> &'static str {
    if name.starts_with("timely:work") {
        "worker"
    } else if name.starts_with("outflow-produce") {
        // `outflow-producer-N`, cut to the 15 bytes a thread name keeps.
        "producer I/O"
    } else if name.starts_with("rdk:") {
        // librdkafka's own threads; the mock cluster's brokers run on such threads too.
        "librdkafka"
    } else {
        "other"
    }
}

/// CPU time in ns of every thread of process `pid` (`self` or a number), by group; threads of
/// another process are all `broker`.
pub fn cpu_by_group(pid: &str) -> BTreeMap<&'static str, u64> {
    let mut groups = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return groups;
    };
    for task in tasks.flatten() {
        let path = task.path();
        // The first field of schedstat is the time spent on a CPU, in ns.
        let Some(ns) = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        else {
            continue;
        };
        let group = if pid == "self" {
            let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            thread_group(name.trim())
        } else {
            "broker"
        };
        *groups.entry(group).or_insert(0) += ns;
    }
    groups
}

/// The CPU time per group between two readings, in ns (threads that ended in between are
/// lost; the groups measured here live through a scenario).
pub fn cpu_delta(
    before: &BTreeMap<&'static str, u64>,
    after: &BTreeMap<&'static str, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(group, ns)| {
            let start = before.get(group).copied().unwrap_or(0);
            (group.to_string(), ns.saturating_sub(start))
        })
        .collect()
}
