//! The operators on a timely cluster of two processes (two workers each) over loopback emit
//! the same pairs and violations as one process.
//!
//! Runs without the test harness: the binary starts itself twice as cluster processes, with
//! timely's own `-w 2 -n 2 -p <i> -h <hostfile>` arguments, each writing what its workers
//! emitted to a file, and compares the union with a single-process run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use differential_dataflow::input::Input;
use outflow_dataflow::operators::{CombineAtTimestamp, KeyBy, KeyViolation, KeyedPair, SinkKey};
use outflow_dataflow::{worker_for_key, Datum, Row};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

/// Set in a cluster process: the file it writes its workers' output to.
const OUTPUT_ENV: &str = "OUTFLOW_CLUSTER_TEST_OUTPUT";
const PROCESS_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Default, Serialize, Deserialize)]
struct Emitted {
    /// Per record, the global index of the worker that emitted it, in emission order.
    pairs: Vec<(usize, KeyedPair<u64>)>,
    violations: Vec<(usize, KeyViolation<u64>)>,
}

/// A fixed history: 300 keys over 12 times, mostly updates, with keys that come to hold
/// several rows so that violations and their pairing travel between processes too.
fn history() -> Vec<(Row, u64, isize)> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let mut current: Vec<Option<i64>> = vec![None; 300];
    let mut updates = Vec::new();
    for time in 0..12u64 {
        for _ in 0..400 {
            let id = next(300) as usize;
            let value = next(50) as i64;
            let row = |v: i64| {
                Row::pack_slice(&[
                    Datum::Int64(id as i64),
                    Datum::Int64(v),
                    Datum::String("payload"),
                ])
            };
            match (current[id], next(10)) {
                (Some(old), 0) => {
                    updates.push((row(old), time, -1));
                    current[id] = None;
                }
                // A second row for the key, without retracting the first.
                (Some(_), 1) => updates.push((row(value), time, 1)),
                (Some(old), _) => {
                    updates.push((row(old), time, -1));
                    updates.push((row(value), time, 1));
                    current[id] = Some(value);
                }
                (None, _) => {
                    updates.push((row(value), time, 1));
                    current[id] = Some(value);
                }
            }
        }
    }
    updates
}

fn run(config: timely::Config) -> Emitted {
    let guards = timely::execute(config, |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let emitted = Arc::new(Mutex::new(Emitted::default()));
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            let key = SinkKey::Declared {
                columns: vec![0],
                enforced: false,
            };
            let combined = rows.key_by(&key).combine_at_timestamp(&key);
            let pairs = Arc::clone(&emitted);
            combined.pairs.sink(Pipeline, "Pairs", move |(input, _)| {
                input.for_each(|_, data| {
                    pairs
                        .lock()
                        .unwrap()
                        .pairs
                        .extend(data.drain(..).map(|p| (index, p)))
                });
            });
            let violations = Arc::clone(&emitted);
            combined
                .violations
                .sink(Pipeline, "Violations", move |(input, _)| {
                    input.for_each(|_, data| {
                        violations
                            .lock()
                            .unwrap()
                            .violations
                            .extend(data.drain(..).map(|v| (index, v)))
                    });
                });
            input
        });
        for (i, (row, time, diff)) in history().into_iter().enumerate() {
            if i % peers == index {
                input.update_at(row, time, diff);
            }
        }
        drop(input);
        while worker.step_or_park(None) {}
        let emitted = std::mem::take(&mut *emitted.lock().unwrap());
        emitted
    })
    .expect("timely starts");
    let mut all = Emitted::default();
    for result in guards.join() {
        let emitted = result.expect("worker finished");
        all.pairs.extend(emitted.pairs);
        all.violations.extend(emitted.violations);
    }
    all
}

/// What any worker count must agree on: pairs and violations by time and key, the records
/// of one key at one time in emission order.
fn canonical(emitted: &Emitted, workers: usize) -> (Vec<KeyedPair<u64>>, Vec<KeyViolation<u64>>) {
    for (worker, (key, time, _)) in &emitted.pairs {
        assert_eq!(
            worker_for_key(key, workers),
            *worker,
            "pair of {key:?} at {time} emitted by worker {worker}"
        );
    }
    let mut pairs: Vec<KeyedPair<u64>> = emitted.pairs.iter().map(|(_, p)| p.clone()).collect();
    pairs.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let mut violations: Vec<KeyViolation<u64>> =
        emitted.violations.iter().map(|(_, v)| v.clone()).collect();
    violations.sort_by(|a, b| (a.time, &a.key).cmp(&(b.time, &b.key)));
    (pairs, violations)
}

fn cluster_process(output: &Path) {
    let config =
        timely::Config::from_args(std::env::args().skip(1)).expect("timely cluster arguments");
    let emitted = run(config);
    std::fs::write(output, serde_json::to_vec(&emitted).unwrap()).expect("write cluster output");
}

fn free_loopback_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Starts the two processes and waits for both; `Err` says why an attempt failed.
fn run_cluster(dir: &Path) -> Result<Emitted, String> {
    let hostfile = dir.join("hosts");
    std::fs::write(
        &hostfile,
        format!(
            "127.0.0.1:{}\n127.0.0.1:{}\n",
            free_loopback_port(),
            free_loopback_port()
        ),
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    let outputs: Vec<PathBuf> = (0..2)
        .map(|p| dir.join(format!("process-{p}.json")))
        .collect();
    let mut children: Vec<Child> = (0..2)
        .map(|process| {
            Command::new(&exe)
                .args([
                    "-w",
                    "2",
                    "-n",
                    "2",
                    "-p",
                    &process.to_string(),
                    "-h",
                    hostfile.to_str().unwrap(),
                ])
                .env(OUTPUT_ENV, &outputs[process])
                .stdout(Stdio::null())
                // A file, not a pipe: a process blocked on a full pipe would look hung.
                .stderr(
                    std::fs::File::create(dir.join(format!("process-{process}.stderr"))).unwrap(),
                )
                .spawn()
                .expect("start a cluster process")
        })
        .collect();
    let deadline = Instant::now() + PROCESS_DEADLINE;
    let mut failure = None;
    for (process, child) in children.iter_mut().enumerate() {
        loop {
            match child.try_wait().unwrap() {
                Some(status) if status.success() => break,
                Some(status) => {
                    let stderr =
                        std::fs::read_to_string(dir.join(format!("process-{process}.stderr")))
                            .unwrap_or_default();
                    failure
                        .get_or_insert(format!("process {process} exited with {status}: {stderr}"));
                    break;
                }
                None if Instant::now() > deadline => {
                    failure.get_or_insert(format!(
                        "process {process} still running after {PROCESS_DEADLINE:?}"
                    ));
                    break;
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        if failure.is_some() {
            break;
        }
    }
    if let Some(failure) = failure {
        for child in &mut children {
            child.kill().ok();
            child.wait().ok();
        }
        return Err(failure);
    }
    let mut all = Emitted::default();
    for output in &outputs {
        let emitted: Emitted = serde_json::from_slice(&std::fs::read(output).unwrap()).unwrap();
        all.pairs.extend(emitted.pairs);
        all.violations.extend(emitted.violations);
    }
    Ok(all)
}

fn main() {
    if let Some(output) = std::env::var_os(OUTPUT_ENV) {
        cluster_process(Path::new(&output));
        return;
    }
    let started = Instant::now();
    let single = canonical(&run(timely::Config::process(1)), 1);
    assert!(
        !single.0.is_empty() && !single.1.is_empty(),
        "the history should give pairs and violations"
    );

    let dir = std::env::temp_dir().join(format!("outflow-cluster-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Another program may take a port between choosing it and binding it; try again then.
    let mut attempts = Vec::new();
    let cluster = loop {
        match run_cluster(&dir) {
            Ok(emitted) => break emitted,
            Err(failure) if attempts.len() < 2 => attempts.push(failure),
            Err(failure) => panic!("the cluster failed three times: {attempts:?}, then {failure}"),
        }
    };
    std::fs::remove_dir_all(&dir).ok();
    let cluster = canonical(&cluster, 4);
    assert!(
        cluster.0 == single.0,
        "2 processes emitted other pairs than 1 process"
    );
    assert!(
        cluster.1 == single.1,
        "2 processes emitted other violations than 1 process"
    );
    println!(
        "cluster: 2 processes x 2 workers emitted the same {} pairs and {} violations as 1 process ({:.1?})",
        single.0.len(),
        single.1.len(),
        started.elapsed()
    );
}
