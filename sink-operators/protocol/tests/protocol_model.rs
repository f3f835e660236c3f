//! Seeded crash-and-fault schedules of the exactly-once protocol, run against the in-memory
//! transactional log.
//!
//! Each schedule draws an update history over a few keys, runs the sink through a sequence of
//! runs (worker counts 1, 3, 2, then random), crashes runs at random steps (their workers vanish
//! or keep acting as zombies), injects broker errors and commit timeouts, and at the end checks
//! that a `read_committed` reader sees every update exactly once in per-key time order. On the
//! way it checks that every recovery describes the topic exactly, that durable and reported
//! frontiers never move back, and at the end that progress records and group offsets agree.
//!
//! `OUTFLOW_SEED=1234 cargo test -p outflow-protocol --test protocol_model -- --nocapture` replays one
//! schedule and prints it; `OUTFLOW_SCHEDULES=n` sets how many run (default 10 000).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use outflow_protocol::model::{
    Fault, Isolation, ModelMessage, ModelTopics, ModelWorker, Observation, Op, TxnLog,
};
use outflow_protocol::{
    Cadence, ErrorKind, Event, Machine, Point, ProgressRecord, ProgressScan, Recovery, SinkNames,
    Status,
};

const DATA: &str = "data";
const PROGRESS: &str = "progress";
const PARTITIONS: u32 = 2;
const STEP_LIMIT: usize = 100_000;

/// What the schedules exercised, so a reader can see the suite reaches the cases it is for.
struct Coverage {
    runs: AtomicU64,
    worker_count_changes: AtomicU64,
    crashes: AtomicU64,
    zombie_commits: AtomicU64,
    zombies_fenced: AtomicU64,
    commit_timeouts: AtomicU64,
    aborts: AtomicU64,
    chunk_commits: AtomicU64,
    resumes_mid_chunk: AtomicU64,
    disagreements: AtomicU64,
    ignored_records: AtomicU64,
}

static COVERAGE: Coverage = Coverage {
    runs: AtomicU64::new(0),
    worker_count_changes: AtomicU64::new(0),
    crashes: AtomicU64::new(0),
    zombie_commits: AtomicU64::new(0),
    zombies_fenced: AtomicU64::new(0),
    commit_timeouts: AtomicU64::new(0),
    aborts: AtomicU64::new(0),
    chunk_commits: AtomicU64::new(0),
    resumes_mid_chunk: AtomicU64::new(0),
    disagreements: AtomicU64::new(0),
    ignored_records: AtomicU64::new(0),
};

fn count(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// SplitMix64: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// The key hash of the schedules (FNV-1a): stable, as the on-disk contract requires.
fn key_hash(key: &[u8]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Clone, Debug)]
struct Msg {
    partition: u32,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl ModelMessage for Msg {
    fn partition(&self) -> u32 {
        self.partition
    }
    fn key(&self) -> &[u8] {
        &self.key
    }
    fn value(&self) -> &[u8] {
        &self.value
    }
}

struct Update {
    time: u64,
    key: usize,
    value: Vec<u8>,
}

/// What a schedule is made of, drawn from its seed.
struct Scenario {
    keys: Vec<Vec<u8>>,
    hashes: Vec<u64>,
    /// By time, then key.
    updates: Vec<Update>,
    max_time: u64,
    crashes: u32,
    showing_aborted: bool,
    expire_offsets: bool,
    fault_per_mille: u64,
    crash_per_mille: u64,
    cadence: Cadence,
}

impl Scenario {
    fn draw(rng: &mut Rng) -> Scenario {
        let key_count = 2 + rng.below(3) as usize;
        let mut keys: Vec<Vec<u8>> = (0..key_count)
            .map(|index| format!("{}{}", (b'a' + index as u8) as char, rng.below(100)).into_bytes())
            .collect();
        keys.sort();
        let hashes = keys.iter().map(|key| key_hash(key)).collect();
        let max_time = 1 + rng.below(4);
        let mut updates = Vec::new();
        for time in 0..=max_time {
            for key in 0..key_count {
                // Time 0 is the snapshot: every key is in it.
                if time == 0 || rng.chance(400) {
                    let padding = "x".repeat(rng.below(8) as usize);
                    let value = format!("{time}:{}:{padding}", updates.len()).into_bytes();
                    updates.push(Update { time, key, value });
                }
            }
        }
        let showing_aborted = rng.chance(300);
        Scenario {
            keys,
            hashes,
            updates,
            max_time,
            crashes: rng.below(4) as u32,
            showing_aborted,
            expire_offsets: !showing_aborted && rng.chance(300),
            fault_per_mille: rng.pick(&[0, 20, 60, 120]),
            crash_per_mille: 5 + rng.below(25),
            cadence: Cadence {
                commit_interval: Duration::from_millis(30),
                // Messages are 8 to 20 bytes, so snapshots often exceed this and go in chunks.
                max_transaction_bytes: 12 + rng.below(30) as usize,
                max_in_flight_bytes: 20 + rng.below(40) as usize,
                idle_progress_interval: Duration::from_millis(100),
                retry_backoff: Duration::from_millis(5),
                max_retry_backoff: Duration::from_millis(40),
                ..Cadence::default()
            },
        }
    }

    fn partition(&self, key: usize) -> u32 {
        (self.hashes[key] % u64::from(PARTITIONS)) as u32
    }

    /// The updates of `key` that `point` says are in the topic, in time order.
    fn expected(&self, key: usize, point: &Point) -> Vec<Vec<u8>> {
        self.updates
            .iter()
            .filter(|update| update.key == key && point.covers(update.time, &self.keys[key]))
            .map(|update| update.value.clone())
            .collect()
    }
}

enum Input {
    Message { update: usize },
    Frontier(Option<u64>),
}

struct Actor {
    run: usize,
    worker: u32,
    driver: ModelWorker<Msg>,
    input: VecDeque<Input>,
    started: bool,
    paused: bool,
    finished: bool,
    zombie: bool,
    reported: Option<Option<u64>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Setup {
    /// Waiting for every worker's `init_transactions`.
    Initializing,
    /// Reading the progress topic again after fencing, then recovering.
    Reading,
    /// Waiting for worker 0's announcement.
    Announcing,
    /// Handing the recovery to the other workers.
    Releasing,
    Running,
}

#[derive(Clone, Copy)]
enum Move {
    Coordinate,
    Execute(usize),
    Deliver(usize),
    Feed(usize),
    Tick(usize),
    Clock,
}

struct Sim<'a> {
    scenario: &'a Scenario,
    rng: Rng,
    log: TxnLog,
    names: SinkNames,
    topics: ModelTopics,
    now: Duration,
    actors: Vec<Actor>,
    run: usize,
    workers: u32,
    most_workers: u32,
    setup: Setup,
    fenced: BTreeSet<String>,
    recovery: Option<Arc<Recovery>>,
    crashes_left: u32,
    final_faults_left: u32,
    durable: Vec<Point>,
    trace: bool,
}

fn worker_count(run: usize, rng: &mut Rng) -> u32 {
    match run {
        1 => 1,
        2 => 3,
        3 => 2,
        _ => 1 + rng.below(3) as u32,
    }
}

fn choose_fault(rng: &mut Rng, op: Op, per_mille: u64, allow_fatal: bool) -> Fault {
    use ErrorKind::{Abortable, Fatal, Retriable, TimedOut};
    if !rng.chance(per_mille) {
        return Fault::None;
    }
    if allow_fatal && rng.chance(50) {
        return Fault::Fail(Fatal);
    }
    match op {
        Op::Init | Op::Abort => Fault::Fail(rng.pick(&[Retriable, TimedOut])),
        Op::Begin => Fault::Fail(Retriable),
        Op::Produce | Op::ProduceProgress => {
            let kind = rng.pick(&[Retriable, TimedOut, Abortable]);
            if rng.chance(500) {
                Fault::Fail(kind)
            } else {
                Fault::FailAfterWrite(kind)
            }
        }
        Op::SendOffsets => Fault::Fail(rng.pick(&[Retriable, TimedOut, Abortable])),
        Op::Commit => match rng.below(4) {
            0 => Fault::CommitTimeout { committed: true },
            1 => Fault::CommitTimeout { committed: false },
            2 => Fault::Fail(Retriable),
            _ => Fault::Fail(Abortable),
        },
    }
}

impl<'a> Sim<'a> {
    fn new(scenario: &'a Scenario, rng: Rng, trace: bool) -> Self {
        let mut log = TxnLog::new();
        log.create_topic(DATA, PARTITIONS);
        log.create_topic(PROGRESS, 1);
        let mut sim = Sim {
            scenario,
            rng,
            log,
            names: SinkNames::new("s7", "txn-", "progress-"),
            topics: ModelTopics {
                data: DATA.into(),
                progress: PROGRESS.into(),
            },
            now: Duration::ZERO,
            actors: Vec::new(),
            run: 0,
            workers: 0,
            most_workers: 0,
            setup: Setup::Initializing,
            fenced: BTreeSet::new(),
            recovery: None,
            crashes_left: scenario.crashes,
            final_faults_left: 40,
            durable: vec![Point::START; scenario.keys.len()],
            trace,
        };
        if trace {
            let keys: Vec<String> = scenario
                .keys
                .iter()
                .zip(&scenario.hashes)
                .map(|(key, hash)| format!("{}#{hash}", String::from_utf8_lossy(key)))
                .collect();
            eprintln!(
                "keys {keys:?}, times 0..={}, {} updates, crashes {}, faults {}/1000, crash \
                 {}/1000 per step, aborted records shown: {}, offsets expire: {}, {:?}",
                scenario.max_time,
                scenario.updates.len(),
                scenario.crashes,
                scenario.fault_per_mille,
                scenario.crash_per_mille,
                scenario.showing_aborted,
                scenario.expire_offsets,
                scenario.cadence,
            );
        }
        sim.start_run();
        sim
    }

    fn note(&self, line: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{:>6}ms {}", self.now.as_millis(), line());
        }
    }

    fn who(actor: &Actor) -> String {
        format!(
            "run {} worker {}{}",
            actor.run,
            actor.worker,
            if actor.zombie { " (zombie)" } else { "" }
        )
    }

    fn start_run(&mut self) {
        self.run += 1;
        let previous = self.workers;
        self.workers = worker_count(self.run, &mut self.rng);
        self.most_workers = self.most_workers.max(self.workers);
        count(&COVERAGE.runs, 1);
        count(
            &COVERAGE.worker_count_changes,
            u64::from(previous != 0 && previous != self.workers),
        );
        self.setup = Setup::Initializing;
        self.fenced.clear();
        self.recovery = None;
        if self.scenario.expire_offsets && self.rng.chance(400) {
            let groups = self.log.groups();
            if !groups.is_empty() {
                let group = groups[self.rng.below(groups.len() as u64) as usize].clone();
                self.log.expire_offset(&group);
                self.note(|| format!("offset of group {group} expires"));
            }
        }
        let (run, workers) = (self.run, self.workers);
        self.note(|| format!("run {run} starts with {workers} workers"));
        for worker in 0..self.workers {
            let machine = Machine::new(
                self.names.clone(),
                self.scenario.cadence.clone(),
                worker,
                self.workers,
            );
            self.actors.push(Actor {
                run: self.run,
                worker,
                driver: ModelWorker::new(machine, self.topics.clone()),
                input: VecDeque::new(),
                started: false,
                paused: false,
                finished: false,
                zombie: false,
                reported: None,
            });
        }
    }

    /// The current run stops: each worker vanishes, or keeps acting as a zombie if it holds a
    /// producer (one that never initialized cannot take its id over later).
    fn crash(&mut self) {
        let run = self.run;
        self.note(|| format!("run {run} crashes"));
        count(&COVERAGE.crashes, 1);
        let mut actors = std::mem::take(&mut self.actors);
        for actor in &mut actors {
            if actor.run == run {
                actor.zombie = actor.driver.initialized() && self.rng.chance(500);
            }
        }
        actors.retain(|actor| actor.run != run || actor.zombie);
        self.actors = actors;
        self.start_run();
    }

    fn current(&self) -> impl Iterator<Item = &Actor> {
        self.actors
            .iter()
            .filter(move |actor| actor.run == self.run)
    }

    fn scan(&self) -> Result<ProgressScan, String> {
        let (isolation, mut scan) = if self.scenario.showing_aborted {
            (
                Isolation::ReadCommittedShowingAborted,
                ProgressScan::showing_aborted(&self.names),
            )
        } else {
            (Isolation::ReadCommitted, ProgressScan::new(&self.names))
        };
        for record in self.log.read(PROGRESS, 0, isolation) {
            scan.push(&record.key, record.value.as_deref())
                .map_err(|error| error.to_string())?;
        }
        Ok(scan)
    }

    fn fence(&mut self, ids: Vec<String>) {
        for id in ids {
            if self.fenced.insert(id.clone()) {
                self.log.init_transactions(&id);
                self.note(|| format!("coordinator fences {id}"));
            }
        }
    }

    fn topic_values(&self, key: usize) -> Vec<Vec<u8>> {
        self.log
            .read(DATA, self.scenario.partition(key), Isolation::ReadCommitted)
            .into_iter()
            .filter(|record| record.key == self.scenario.keys[key])
            .map(|record| record.value.expect("data messages have values"))
            .collect()
    }

    fn coordinate(&mut self) -> Result<(), String> {
        match self.setup {
            Setup::Initializing => {
                let scan = self.scan()?;
                self.fence(scan.retired_transactional_ids(self.workers));
                self.setup = Setup::Reading;
            }
            Setup::Reading => {
                let scan = self.scan()?;
                let unfenced: Vec<String> = scan
                    .retired_transactional_ids(self.workers)
                    .into_iter()
                    .filter(|id| !self.fenced.contains(id))
                    .collect();
                if !unfenced.is_empty() {
                    // Cannot happen when runs announce themselves; checked below all the same.
                    self.fence(unfenced);
                    return Ok(());
                }
                let offsets: BTreeMap<u32, u64> = scan
                    .workers_with_records()
                    .into_iter()
                    .filter_map(|w| {
                        self.log
                            .committed_offset(&self.names.progress_group_id(w))
                            .map(|o| (w, o))
                    })
                    .collect();
                let recovery = scan.recover(&offsets, self.workers);
                self.note(|| format!("coordinator recovers {recovery:?}"));
                count(&COVERAGE.disagreements, recovery.disagreements.len() as u64);
                count(&COVERAGE.ignored_records, recovery.ignored_records as u64);
                let mid_chunk = recovery.resume.claims().iter().any(|claim| {
                    matches!(
                        claim.point,
                        Point::At {
                            position: Some(_),
                            ..
                        }
                    )
                });
                count(&COVERAGE.resumes_mid_chunk, u64::from(mid_chunk));
                self.check_recovery(&recovery)?;
                let recovery = Arc::new(recovery);
                self.recovery = Some(recovery.clone());
                self.build_inputs(&recovery);
                self.start_worker(0, &recovery)?;
                self.setup = Setup::Announcing;
            }
            Setup::Releasing => {
                let recovery = self.recovery.clone().expect("released after recovery");
                for worker in 1..self.workers {
                    self.start_worker(worker, &recovery)?;
                }
                self.setup = Setup::Running;
            }
            Setup::Announcing | Setup::Running => unreachable!("no coordinator move offered"),
        }
        Ok(())
    }

    /// Every recovery must describe the data topic exactly: a key's point covers precisely the
    /// updates a `read_committed` reader sees, in order, and points never move back.
    fn check_recovery(&mut self, recovery: &Recovery) -> Result<(), String> {
        let open = self.log.open_transactions();
        if !open.is_empty() {
            return Err(format!("transactions still open after fencing: {open:?}"));
        }
        for key in 0..self.scenario.keys.len() {
            let point = recovery.resume.point_for(self.scenario.hashes[key]).clone();
            let seen = self.topic_values(key);
            let expected = self.scenario.expected(key, &point);
            if seen != expected {
                return Err(format!(
                    "run {}: key {} is recovered at {point:?}, which covers {} but the topic holds {}",
                    self.run,
                    String::from_utf8_lossy(&self.scenario.keys[key]),
                    show(&expected),
                    show(&seen)
                ));
            }
            if point < self.durable[key] {
                return Err(format!(
                    "run {}: key {} regressed from {:?} to {point:?}",
                    self.run,
                    String::from_utf8_lossy(&self.scenario.keys[key]),
                    self.durable[key]
                ));
            }
            self.durable[key] = point;
        }
        Ok(())
    }

    fn build_inputs(&mut self, recovery: &Recovery) {
        let scenario = self.scenario;
        for actor in self.actors.iter_mut().filter(|actor| actor.run == self.run) {
            let mut input = VecDeque::new();
            for time in 0..=scenario.max_time {
                // Updates of one time are sorted by key, which is their position.
                for (index, update) in scenario
                    .updates
                    .iter()
                    .enumerate()
                    .filter(|(_, u)| u.time == time)
                {
                    let hash = scenario.hashes[update.key];
                    if hash % u64::from(self.workers) == u64::from(actor.worker)
                        && !recovery
                            .resume
                            .should_skip(hash, time, &scenario.keys[update.key])
                    {
                        input.push_back(Input::Message { update: index });
                    }
                }
                input.push_back(Input::Frontier(Some(time + 1)));
            }
            input.push_back(Input::Frontier(None));
            actor.input = input;
        }
    }

    fn start_worker(&mut self, worker: u32, recovery: &Arc<Recovery>) -> Result<(), String> {
        let (run, now) = (self.run, self.now);
        let actor = self
            .actors
            .iter_mut()
            .find(|actor| actor.run == run && actor.worker == worker)
            .expect("every worker of the current run exists");
        actor.started = true;
        actor
            .driver
            .handle(now, Event::Recovered(recovery.clone()))
            .map_err(|e| e.to_string())?;
        self.note(|| format!("run {run} worker {worker} gets the recovery"));
        Ok(())
    }

    fn moves(&self) -> Vec<Move> {
        let mut moves = vec![Move::Clock];
        let coordinator_ready = match self.setup {
            Setup::Initializing => self.current().all(|actor| actor.driver.initialized()),
            Setup::Reading | Setup::Releasing => true,
            Setup::Announcing | Setup::Running => false,
        };
        if coordinator_ready {
            moves.push(Move::Coordinate);
        }
        for (index, actor) in self.actors.iter().enumerate() {
            if actor.driver.has_action() {
                moves.push(Move::Execute(index));
            }
            if actor.driver.has_delivery() {
                moves.push(Move::Deliver(index));
            }
            if actor.started && !actor.paused && !actor.input.is_empty() {
                moves.push(Move::Feed(index));
            }
            if actor
                .driver
                .machine()
                .next_wakeup()
                .is_some_and(|at| at <= self.now)
            {
                moves.push(Move::Tick(index));
            }
        }
        moves
    }

    fn finished(&self) -> bool {
        self.setup == Setup::Running && self.current().all(|actor| actor.finished)
    }

    fn run(mut self) -> Result<(), String> {
        for _ in 0..STEP_LIMIT {
            if self.finished() {
                if self.crashes_left > 0 && self.rng.chance(300) {
                    self.crashes_left -= 1;
                    self.crash();
                    continue;
                }
                let checked = self.final_checks();
                self.note(|| format!("the schedule ends: {checked:?}"));
                return checked;
            }
            if self.crashes_left > 0 && self.rng.chance(self.scenario.crash_per_mille) {
                self.crashes_left -= 1;
                self.crash();
                continue;
            }
            let moves = self.moves();
            let chosen = moves[self.rng.below(moves.len() as u64) as usize];
            if let Err(error) = self.step(chosen) {
                self.note(|| format!("FAILED: {error}"));
                return Err(error);
            }
        }
        Err(format!(
            "the schedule did not finish within {STEP_LIMIT} steps"
        ))
    }

    fn step(&mut self, chosen: Move) -> Result<(), String> {
        let now = self.now;
        match chosen {
            Move::Clock => {
                self.now += Duration::from_millis(1 + self.rng.below(25));
            }
            Move::Coordinate => self.coordinate()?,
            Move::Tick(index) => {
                self.note(|| format!("{} ticks", Self::who(&self.actors[index])));
                self.actors[index]
                    .driver
                    .handle(now, Event::Tick)
                    .map_err(|e| e.to_string())?;
            }
            Move::Deliver(index) => {
                self.note(|| format!("{} gets a delivery report", Self::who(&self.actors[index])));
                self.actors[index]
                    .driver
                    .deliver(now)
                    .map_err(|e| e.to_string())?;
            }
            Move::Feed(index) => {
                let scenario = self.scenario;
                let actor = &mut self.actors[index];
                let event = match actor.input.pop_front().expect("offered only with input") {
                    Input::Message { update } => {
                        let update = &scenario.updates[update];
                        let key = scenario.keys[update.key].clone();
                        let message = Msg {
                            partition: scenario.partition(update.key),
                            key: key.clone(),
                            value: update.value.clone(),
                        };
                        Event::Message {
                            time: update.time,
                            position: key.clone().into(),
                            bytes: key.len() + update.value.len(),
                            message,
                        }
                    }
                    Input::Frontier(frontier) => Event::Frontier(frontier),
                };
                let description = self.trace.then(|| match &event {
                    Event::Message { time, message, .. } => format!(
                        "feeds {}@{time} = {}",
                        String::from_utf8_lossy(&message.key),
                        String::from_utf8_lossy(&message.value)
                    ),
                    other => format!("feeds {other:?}"),
                });
                let actor = &mut self.actors[index];
                actor.driver.handle(now, event).map_err(|e| e.to_string())?;
                let who = Self::who(&self.actors[index]);
                self.note(|| format!("{who} {}", description.unwrap_or_default()));
            }
            Move::Execute(index) => self.execute(index)?,
        }
        Ok(())
    }

    fn execute(&mut self, index: usize) -> Result<(), String> {
        let current = self.actors[index].run == self.run;
        let in_final_run = self.crashes_left == 0 && current;
        let allow_fatal = self.crashes_left > 0;
        let per_mille = if in_final_run && self.final_faults_left == 0 {
            0
        } else {
            self.scenario.fault_per_mille
        };
        let Sim {
            actors,
            log,
            rng,
            now,
            ..
        } = self;
        let mut injected = 0;
        let mut faults = |op: Op| {
            let fault = choose_fault(rng, op, per_mille, allow_fatal);
            injected += u32::from(fault != Fault::None);
            fault
        };
        let executed = actors[index]
            .driver
            .execute(log, *now, &mut faults)
            .map_err(|e| e.to_string())?;
        if in_final_run {
            self.final_faults_left = self.final_faults_left.saturating_sub(injected);
        }
        let who = Self::who(&self.actors[index]);
        self.note(|| format!("{who} {executed}"));
        let zombie = self.actors[index].zombie;
        match (executed.op, &executed.result, executed.fault) {
            (Some(Op::Commit), Some(Ok(())), _) if zombie => count(&COVERAGE.zombie_commits, 1),
            (Some(Op::Abort), Some(Ok(())), _) => count(&COVERAGE.aborts, 1),
            (_, _, Fault::CommitTimeout { .. }) => count(&COVERAGE.commit_timeouts, 1),
            _ => {}
        }
        let Some(observation) = executed.observation else {
            return Ok(());
        };
        let actor = &mut self.actors[index];
        match observation {
            Observation::Frontier(frontier) => {
                let regressed = actor
                    .reported
                    .is_some_and(|old| Point::frontier(frontier) < Point::frontier(old));
                if regressed {
                    return Err(format!(
                        "{who} reported frontier {frontier:?} after {:?}",
                        actor.reported
                    ));
                }
                actor.reported = Some(frontier);
                actor.finished |= frontier.is_none();
            }
            Observation::Pause => actor.paused = true,
            Observation::Resume => actor.paused = false,
            Observation::Announced => {
                if current && actor.worker == 0 && self.setup == Setup::Announcing {
                    self.setup = Setup::Releasing;
                }
            }
            Observation::Status(Status::Failed { error }) => {
                if actor.zombie {
                    if !error.contains("fenced") && !error.contains("fatal") {
                        return Err(format!("{who} failed for an unexpected reason: {error}"));
                    }
                    count(
                        &COVERAGE.zombies_fenced,
                        u64::from(error.contains("fenced")),
                    );
                    self.actors.remove(index);
                } else if self.crashes_left > 0 {
                    self.crashes_left -= 1;
                    self.crash();
                } else {
                    return Err(format!("{who} failed in the last run: {error}"));
                }
            }
            Observation::Status(_) => {}
        }
        Ok(())
    }

    fn final_checks(&self) -> Result<(), String> {
        let open = self.log.open_transactions();
        if !open.is_empty() {
            return Err(format!("transactions left open at the end: {open:?}"));
        }
        for key in 0..self.scenario.keys.len() {
            let seen = self.topic_values(key);
            let expected = self.scenario.expected(key, &Point::Done);
            if seen != expected {
                return Err(format!(
                    "key {}: expected every update once, in time order: {} but the topic holds {}",
                    String::from_utf8_lossy(&self.scenario.keys[key]),
                    show(&expected),
                    show(&seen)
                ));
            }
        }
        // Progress records and group offsets agree: each worker's group offset names its last
        // committed record. (A worker whose keys were all done when its run started writes no
        // record, so a key's last record may be an older run's: the final recovery below checks
        // that the claims together say done.)
        let committed = self.log.read(PROGRESS, 0, Isolation::ReadCommitted);
        let mut last: BTreeMap<Vec<u8>, &[u8]> = BTreeMap::new();
        for record in &committed {
            last.insert(
                record.key.clone(),
                record.value.as_deref().unwrap_or_default(),
            );
            let key = String::from_utf8_lossy(&record.key);
            let parsed = ProgressRecord::parse(&key, record.value.as_deref().unwrap_or_default());
            let chunk = parsed.is_ok_and(|r| {
                matches!(
                    r.point,
                    Point::At {
                        position: Some(_),
                        ..
                    }
                )
            });
            count(&COVERAGE.chunk_commits, u64::from(chunk));
        }
        for worker in 0..self.most_workers {
            let key = self.names.progress_key(worker);
            let offset = self
                .log
                .committed_offset(&self.names.progress_group_id(worker));
            let Some(value) = last.get(key.as_bytes()) else {
                if offset.is_some() {
                    return Err(format!(
                        "worker {worker} has group offset {offset:?} but no record"
                    ));
                }
                continue;
            };
            let record = ProgressRecord::parse(&key, value).map_err(|error| error.to_string())?;
            let agrees =
                offset == Some(record.seq) || (offset.is_none() && self.scenario.expire_offsets);
            if !agrees {
                return Err(format!(
                    "worker {worker}: last committed record {record:?} but group offset {offset:?}"
                ));
            }
        }
        let mut scan = ProgressScan::new(&self.names);
        for record in &committed {
            scan.push(&record.key, record.value.as_deref())
                .map_err(|error| error.to_string())?;
        }
        let offsets: BTreeMap<u32, u64> = scan
            .workers_with_records()
            .into_iter()
            .filter_map(|w| {
                self.log
                    .committed_offset(&self.names.progress_group_id(w))
                    .map(|o| (w, o))
            })
            .collect();
        let recovery = scan.recover(&offsets, self.workers);
        if recovery.resume_time().is_some() {
            return Err(format!(
                "a restart after the end would resume at {:?}",
                recovery.resume.min()
            ));
        }
        if !self.scenario.expire_offsets {
            if let Some(disagreement) = recovery.disagreements.first() {
                return Err(format!(
                    "records and offsets disagree at the end: {disagreement}"
                ));
            }
        }
        Ok(())
    }
}

fn show(values: &[Vec<u8>]) -> String {
    let values: Vec<String> = values
        .iter()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    format!("[{}]", values.join(", "))
}

fn schedule(seed: u64, trace: bool) -> Result<(), String> {
    let mut rng = Rng(seed);
    let scenario = Scenario::draw(&mut rng);
    Sim::new(&scenario, rng, trace).run()
}

/// Runs one seed, turning a panic inside the protocol into a failure of that seed.
fn run_seed(seed: u64, trace: bool) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| schedule(seed, trace))) {
        Ok(result) => result,
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .map_or_else(
                || "a panic".to_string(),
                |message| format!("panic: {message}"),
            )),
    }
}

/// Replays `seed` with its schedule printed (cargo shows it with the failure), then fails.
fn replay_failure(seed: u64, error: String) -> ! {
    eprintln!("schedule {seed}:");
    let replayed = run_seed(seed, true);
    panic!(
        "schedule {seed} failed: {error}{}\nreplay it: OUTFLOW_SEED={seed} cargo test -p outflow-protocol \
         --test protocol_model -- --nocapture",
        if replayed.is_ok() {
            " (but passed when replayed)"
        } else {
            ""
        }
    );
}

#[test]
fn seeded_schedules_keep_every_update_exactly_once() {
    if let Ok(seed) = std::env::var("OUTFLOW_SEED") {
        let seed: u64 = seed.parse().expect("OUTFLOW_SEED is a number");
        eprintln!("schedule {seed}:");
        if let Err(error) = run_seed(seed, true) {
            panic!("schedule {seed} failed: {error}");
        }
        return;
    }
    let schedules: u64 = std::env::var("OUTFLOW_SCHEDULES")
        .map(|n| n.parse().expect("OUTFLOW_SCHEDULES is a number"))
        .unwrap_or(10_000);
    let started = Instant::now();
    let next = AtomicU64::new(0);
    let failure = std::sync::Mutex::new(None::<(u64, String)>);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= schedules || failure.lock().unwrap().is_some() {
                    return;
                }
                if let Err(error) = run_seed(seed, false) {
                    let mut failure = failure.lock().unwrap();
                    if failure.as_ref().is_none_or(|(first, _)| seed < *first) {
                        *failure = Some((seed, error));
                    }
                }
            });
        }
    });
    if let Some((seed, error)) = failure.into_inner().unwrap() {
        replay_failure(seed, error);
    }
    let c = &COVERAGE;
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    println!(
        "{schedules} schedules passed in {:.1?}: {} runs, {} worker-count changes, {} crashes, \
         {} commits by zombies, {} zombies fenced, {} commit timeouts, {} aborts, {} chunk \
         commits, {} resumes inside a chunked time, {} disagreements reported, {} aborted \
         records ignored",
        started.elapsed(),
        get(&c.runs),
        get(&c.worker_count_changes),
        get(&c.crashes),
        get(&c.zombie_commits),
        get(&c.zombies_fenced),
        get(&c.commit_timeouts),
        get(&c.aborts),
        get(&c.chunk_commits),
        get(&c.resumes_mid_chunk),
        get(&c.disagreements),
        get(&c.ignored_records),
    );
}
