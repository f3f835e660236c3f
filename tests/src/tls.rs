//! A Tansu broker behind a TLS-terminating proxy (stunnel), for tests of secure connections.
//!
//! Tansu cannot serve TLS itself, so the proxy accepts TLS on port Q and forwards plaintext
//! to Tansu on port P, and Tansu advertises Q: clients that reconnect after reading metadata
//! come back through the proxy. The certificates are in `tests/fixtures/kafka-tls/` (see its
//! `generate.sh`): the proxy presents `server.pem` (SAN `IP:127.0.0.1`), and, when it requires
//! client certificates, trusts those signed by `ca.pem`.

use std::env;
use std::fs::{self, File};
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::broker::{workspace_root, Broker};

/// Printed by stunnel once its configuration is loaded and its listener bound.
const PROXY_READY_LINE: &str = "Configuration successful";
const PROXY_READY_TIMEOUT: Duration = Duration::from_secs(15);
const START_ATTEMPTS: usize = 3;

/// How the proxy treats clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// Refuse clients without a certificate signed by `ca.pem` (stunnel's `verify = 2`).
    pub require_client_certificate: bool,
}

/// A Tansu broker reachable only through TLS, both killed on drop.
pub struct TlsBroker {
    proxy: Child,
    proxy_port: u16,
    proxy_log: PathBuf,
    broker: Broker,
    dir: Option<tempfile::TempDir>,
}

impl TlsBroker {
    /// Starts a broker and its proxy on free loopback ports.
    ///
    /// # Panics
    ///
    /// When stunnel or Tansu cannot be found or does not come up; the message carries the
    /// reason and the proxy's log.
    pub fn start(settings: ProxySettings) -> TlsBroker {
        match TlsBroker::try_start(settings) {
            Ok(broker) => broker,
            Err(error) => panic!("could not start a Tansu broker behind stunnel: {error}"),
        }
    }

    /// Like [`TlsBroker::start`], returning the failure instead of panicking.
    pub fn try_start(settings: ProxySettings) -> io::Result<TlsBroker> {
        let stunnel = stunnel_binary()?;
        let mut failures = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("outflow-stunnel-")
                .tempdir()?;
            // Tansu must know the proxy's port before the proxy can know Tansu's.
            let proxy_port = free_loopback_port()?;
            let broker = Broker::try_start_advertising(Some(&format!("127.0.0.1:{proxy_port}")))?;
            let config = dir.path().join("stunnel.conf");
            fs::write(&config, stunnel_config(settings, proxy_port, broker.port()))?;
            let proxy_log = dir.path().join("stunnel.log");
            let mut proxy = spawn_proxy(&stunnel, &config, &proxy_log)?;
            match wait_until_ready(&mut proxy, proxy_port, &proxy_log) {
                Ok(()) => {
                    return Ok(TlsBroker {
                        proxy,
                        proxy_port,
                        proxy_log,
                        broker,
                        dir: Some(dir),
                    })
                }
                Err(reason) => {
                    let _ = proxy.kill();
                    let _ = proxy.wait();
                    let log = read_log(&proxy_log);
                    failures.push(format!(
                        "attempt {attempt}, proxy on 127.0.0.1:{proxy_port}: {reason}\n{log}"
                    ));
                    // Only losing the port to another process is worth another try.
                    if !log.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        Err(io::Error::other(failures.join("\n")))
    }

    /// The `bootstrap.servers` value for TLS clients: the proxy.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.proxy_port)
    }

    /// The broker behind the proxy, reachable in plaintext.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// What the proxy has logged so far (handshake failures, client certificate checks).
    pub fn proxy_log(&self) -> String {
        read_log(&self.proxy_log)
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self.proxy.kill();
        let _ = self.proxy.wait();
        if thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!(
                    "stunnel log kept at {}:\n{}",
                    kept.join("stunnel.log").display(),
                    read_log(&self.proxy_log)
                );
            }
        }
    }
}

/// The folder of the test certificates.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/kafka-tls")
}

/// A test certificate or key as PEM text, e.g. `fixture("ca.pem")`.
///
/// # Panics
///
/// When the file is missing, naming it.
pub fn fixture(name: &str) -> String {
    let path = fixtures_dir().join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// stunnel: `STUNNEL_BIN`, else `stunnel4` or `stunnel` on the `PATH` (Debian's package
/// `stunnel4`, installed by `.ci/setup`).
pub fn stunnel_binary() -> io::Result<PathBuf> {
    if let Some(path) = env::var_os("STUNNEL_BIN").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let path = env::var_os("PATH").unwrap_or_default();
    for name in ["stunnel4", "stunnel"] {
        for dir in env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        "stunnel4 is not installed: run .ci/setup (apt package stunnel4) or set STUNNEL_BIN",
    ))
}

fn stunnel_config(settings: ProxySettings, proxy_port: u16, broker_port: u16) -> String {
    let fixtures = fixtures_dir();
    let mut config = format!(
        "foreground = yes\n\
         pid =\n\
         debug = info\n\
         [kafka]\n\
         accept = 127.0.0.1:{proxy_port}\n\
         connect = 127.0.0.1:{broker_port}\n\
         cert = {}\n\
         key = {}\n",
        fixtures.join("server.pem").display(),
        fixtures.join("server.key").display(),
    );
    if settings.require_client_certificate {
        config.push_str(&format!(
            "verify = 2\nCAfile = {}\n",
            fixtures.join("ca.pem").display()
        ));
    }
    config
}

fn spawn_proxy(stunnel: &Path, config: &Path, log_path: &Path) -> io::Result<Child> {
    let log = File::create(log_path)?;
    let mut command = Command::new(stunnel);
    command
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
    // functions (prctl, getppid, _exit). The proxy lives no longer than the test thread that
    // starts it, so the thread-scoped death signal is the right one.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    command
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("spawning {}: {e}", stunnel.display())))
}

fn wait_until_ready(child: &mut Child, port: u16, log_path: &Path) -> Result<(), String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + PROXY_READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("stunnel exited before it was ready ({status})"));
        }
        if read_log(log_path).contains(PROXY_READY_LINE)
            && TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("stunnel not ready within {PROXY_READY_TIMEOUT:?}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn free_loopback_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn read_log(path: &Path) -> String {
    let mut text = Vec::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}
