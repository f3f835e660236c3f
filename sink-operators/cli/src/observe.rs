//! What `outflow run` shows while it runs: a status file rewritten every second, a Prometheus
//! endpoint on a loopback address, and a progress line on a terminal's stderr.

use std::io::{IsTerminal, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use outflow::status::{SinkMonitor, SinkReport};

const REFRESH: Duration = Duration::from_secs(1);

/// The sinks of a run and how many feed updates it has read, shared with the observers.
#[derive(Clone, Debug, Default)]
pub struct RunState {
    pub monitors: Vec<SinkMonitor>,
    /// Updates read from the feed and handed to the dataflow.
    pub rows_fed: Arc<AtomicU64>,
}

impl RunState {
    pub fn reports(&self) -> Vec<SinkReport> {
        self.monitors.iter().map(SinkMonitor::report).collect()
    }
}

#[derive(serde::Serialize)]
struct StatusDocument {
    updated_at_ms: u64,
    /// The process that writes the file, so that `outflow txn abort --status` can tell whether
    /// it still runs.
    pid: u32,
    host: Option<String>,
    /// Set in the last document a run writes, as it ends.
    ended_at_ms: Option<u64>,
    rows_fed: u64,
    sinks: Vec<SinkReport>,
}

/// The name of this machine, as the kernel knows it; `None` where it cannot be read.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes the status of every sink to `path` as one JSON document, through a temporary file
/// renamed over it, so that a reader never sees half a document. `ended` marks the run's last
/// document.
pub fn write_status(path: &Path, state: &RunState, ended: bool) -> std::io::Result<()> {
    let now = now_ms();
    let document = StatusDocument {
        updated_at_ms: now,
        pid: std::process::id(),
        host: host_name(),
        ended_at_ms: ended.then_some(now),
        rows_fed: state.rows_fed.load(Ordering::Relaxed),
        sinks: state.reports(),
    };
    let json = serde_json::to_vec_pretty(&document).map_err(std::io::Error::other)?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, json)?;
    std::fs::rename(&temporary, path)
}

/// The observers of one run; [`Observers::finish`] stops them and writes the last status.
pub struct Observers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    status_path: Option<PathBuf>,
    state: RunState,
    progress_line: bool,
    /// Where the metrics server listens, when it runs.
    pub metrics_address: Option<SocketAddr>,
}

impl Observers {
    /// Starts what was asked for: the status file at `status`, the metrics server on
    /// `metrics` (a loopback address; port 0 picks a free one), and the progress line when
    /// `progress` is set and stderr is a terminal.
    pub fn start(
        state: RunState,
        status: Option<PathBuf>,
        metrics: Option<SocketAddr>,
        progress: bool,
    ) -> std::io::Result<Observers> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        if let Some(path) = &status {
            write_status(path, &state, false).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot write the status file {}: {e}", path.display()),
                )
            })?;
            let (path, state, stop) = (path.clone(), state.clone(), Arc::clone(&stop));
            threads.push(std::thread::spawn(move || {
                while !sleep_unless_stopped(&stop, REFRESH) {
                    if let Err(e) = write_status(&path, &state, false) {
                        tracing::warn!("cannot write the status file {}: {e}", path.display());
                    }
                }
            }));
        }
        let mut metrics_address = None;
        if let Some(address) = metrics {
            if !address.ip().is_loopback() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("--metrics {address}: the metrics server listens only on a loopback address (127.0.0.1 or [::1])"),
                ));
            }
            let listener = TcpListener::bind(address).map_err(|e| {
                std::io::Error::new(e.kind(), format!("--metrics {address}: cannot listen: {e}"))
            })?;
            listener.set_nonblocking(true)?;
            metrics_address = Some(listener.local_addr()?);
            let (state, stop) = (state.clone(), Arc::clone(&stop));
            threads.push(std::thread::spawn(move || {
                serve_metrics(listener, state, stop, METRICS_DEADLINE)
            }));
        }
        let progress_line = progress && std::io::stderr().is_terminal();
        if progress_line {
            let (state, stop) = (state.clone(), Arc::clone(&stop));
            threads.push(std::thread::spawn(move || {
                let started = Instant::now();
                while !sleep_unless_stopped(&stop, REFRESH) {
                    eprint!("\r{}\x1b[K", progress_text(&state, started.elapsed()));
                }
            }));
        }
        Ok(Observers {
            stop,
            threads,
            status_path: status,
            state,
            progress_line,
            metrics_address,
        })
    }

    /// Stops the observers and writes the final status file.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if self.progress_line {
            eprintln!();
        }
        match &self.status_path {
            Some(path) => write_status(path, &self.state, true),
            None => Ok(()),
        }
    }
}

/// Sleeps `period` in short steps; true once `stop` is set.
fn sleep_unless_stopped(stop: &AtomicBool, period: Duration) -> bool {
    let until = Instant::now() + period;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.load(Ordering::Relaxed)
}

/// `rows fed 1200 | order_updates: committed through 14, 830 msg/s | …`
pub fn progress_text(state: &RunState, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64().max(0.001);
    let mut parts = vec![format!(
        "rows fed {}",
        state.rows_fed.load(Ordering::Relaxed)
    )];
    for report in state.reports() {
        let frontier = match report.total.committed_frontier {
            None => "nothing committed".to_string(),
            Some(u64::MAX) => "all committed".to_string(),
            Some(t) => format!("committed before {t}"),
        };
        let rate = report.total.messages_committed as f64 / seconds;
        parts.push(format!(
            "{}: {} ({}), {rate:.0} msg/s",
            report.name,
            frontier,
            report.status.name()
        ));
    }
    parts.join(" | ")
}

/// How long one metrics connection may take to send its request and read the answer; a client
/// slower than this (a byte a second) is cut off, and never holds up another.
const METRICS_DEADLINE: Duration = Duration::from_secs(5);
/// Metrics connections served at once; more are closed at once.
const METRICS_CONNECTIONS: usize = 16;
/// The longest request head (request line and headers) read.
const METRICS_REQUEST_BYTES: usize = 16 * 1024;

/// The address `--metrics` names: `host:port` with a literal loopback address or a name that
/// resolves to one (`localhost:9464`).
pub fn metrics_address(text: &str) -> Result<SocketAddr, String> {
    let addresses: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("--metrics {text}: not a host:port that resolves: {e}"))?
        .collect();
    // IPv4 first: `localhost` often resolves to both, and not every host has IPv6.
    addresses
        .iter()
        .filter(|a| a.ip().is_loopback())
        .min_by_key(|a| a.is_ipv6())
        .copied()
        .ok_or_else(|| match addresses.first() {
            Some(address) => format!(
                "--metrics {text}: resolves to {address}; the metrics server listens only on a loopback address (127.0.0.1, [::1] or localhost)"
            ),
            None => format!("--metrics {text}: the name resolves to no address"),
        })
}

/// Accepts metrics connections until `stop`, each answered on a thread of its own within
/// [`METRICS_DEADLINE`], so a slow client neither blocks another nor the end of the run (the
/// threads are not waited for).
fn serve_metrics(
    listener: TcpListener,
    state: RunState,
    stop: Arc<AtomicBool>,
    deadline: Duration,
) {
    let open = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if open.load(Ordering::Relaxed) >= METRICS_CONNECTIONS {
                    tracing::debug!("metrics request from {peer} refused: {METRICS_CONNECTIONS} connections are open");
                    continue;
                }
                open.fetch_add(1, Ordering::Relaxed);
                let (state, open) = (state.clone(), Arc::clone(&open));
                let spawned = std::thread::Builder::new()
                    .name("outflow-metrics-client".to_string())
                    .spawn(move || {
                        if let Err(e) = answer(stream, &state, Instant::now() + deadline) {
                            tracing::debug!("metrics request from {peer} failed: {e}");
                        }
                        open.fetch_sub(1, Ordering::Relaxed);
                    });
                if let Err(e) = spawned {
                    tracing::warn!("cannot answer a metrics request: {e}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                tracing::warn!("the metrics server stopped accepting: {e}");
                return;
            }
        }
    }
}

/// Reads a request head from `stream` until its empty line, all of it by `deadline`.
fn read_request_head(stream: &mut TcpStream, deadline: Instant) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request did not arrive in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
        if head.len() > METRICS_REQUEST_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the request head is too long",
            ));
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Answers one HTTP/1.x request: `/metrics` (or `/`) with the Prometheus text, anything else
/// with 404; gives up at `deadline`.
fn answer(mut stream: TcpStream, state: &RunState, deadline: Instant) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let head = read_request_head(&mut stream, deadline)?;
    // The headers are ignored; a request has no body.
    let path = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("/");
    let (status, content_type, body) = if path == "/metrics" || path == "/" {
        (
            "200 OK",
            "text/plain; version=0.0.4",
            SinkReport::prometheus(&state.reports()),
        )
    } else {
        (
            "404 Not Found",
            "text/plain",
            format!("no such path {path}; the metrics are at /metrics\n"),
        )
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let left = deadline.saturating_duration_since(Instant::now());
    stream.set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
    stream.write_all(response.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_served_and_status_is_written() {
        let monitor = SinkMonitor::new("orders");
        monitor.update(0, |s| s.messages_committed = 5);
        let state = RunState {
            monitors: vec![monitor],
            rows_fed: Arc::new(AtomicU64::new(9)),
        };
        let dir = tempfile::tempdir().unwrap();
        let status = dir.path().join("status.json");
        let observers = Observers::start(
            state,
            Some(status.clone()),
            Some("127.0.0.1:0".parse().unwrap()),
            false,
        )
        .unwrap();
        let address = observers.metrics_address.unwrap();
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(
            response.contains("outflow_messages_committed_total{sink=\"orders\",worker=\"0\"} 5"),
            "{response}"
        );
        observers.finish().unwrap();
        let document: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
        assert_eq!(document["rows_fed"], 9);
        assert_eq!(document["sinks"][0]["name"], "orders");
        assert_eq!(document["sinks"][0]["total"]["messages_committed"], 5);
    }

    fn scrape(address: SocketAddr) -> String {
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    /// Sends a request head that never ends, a byte at a time, `pause` apart, on a thread; the
    /// thread returns when the server cut it off.
    fn trickle(address: SocketAddr, pause: Duration) -> JoinHandle<Instant> {
        let mut stream = TcpStream::connect(address).unwrap();
        std::thread::spawn(move || {
            let head = b"GET /metrics HTTP/1.1\r\nX-Slow: ".iter();
            for byte in head.chain(std::iter::repeat(&b'a')) {
                if stream.write_all(&[*byte]).is_err() {
                    break;
                }
                // The server closing the connection shows as a read of 0 bytes.
                stream.set_nonblocking(true).unwrap();
                let mut buffer = [0u8; 64];
                let closed = matches!(stream.read(&mut buffer), Ok(0));
                stream.set_nonblocking(false).unwrap();
                if closed {
                    break;
                }
                std::thread::sleep(pause);
            }
            Instant::now()
        })
    }

    #[test]
    fn a_slow_client_neither_blocks_scrapes_nor_the_end_of_the_run() {
        let monitor = SinkMonitor::new("orders");
        monitor.update(0, |s| s.messages_committed = 2);
        let state = RunState {
            monitors: vec![monitor],
            rows_fed: Arc::new(AtomicU64::new(0)),
        };
        let observers =
            Observers::start(state, None, Some("127.0.0.1:0".parse().unwrap()), false).unwrap();
        let address = observers.metrics_address.unwrap();
        let _slow = trickle(address, Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        let response = scrape(address);
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(
            response.contains("outflow_messages_committed_total{sink=\"orders\",worker=\"0\"} 2"),
            "{response}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let finishing = Instant::now();
        observers.finish().unwrap();
        assert!(
            finishing.elapsed() < Duration::from_secs(1),
            "finish waited {:?} on a slow client",
            finishing.elapsed()
        );
    }

    #[test]
    fn a_slow_client_is_cut_off_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let server = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                serve_metrics(
                    listener,
                    RunState::default(),
                    stop,
                    Duration::from_millis(500),
                )
            })
        };
        let started = Instant::now();
        let cut_off = trickle(address, Duration::from_millis(100)).join().unwrap();
        let took = cut_off - started;
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(3),
            "cut off after {took:?}"
        );
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
    }

    #[test]
    fn metrics_accept_a_name_that_resolves_to_loopback() {
        let address = metrics_address("localhost:9464").unwrap();
        assert!(address.ip().is_loopback(), "{address}");
        assert_eq!(address.port(), 9464);
        assert_eq!(
            metrics_address("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse::<SocketAddr>().unwrap()
        );
        let error = metrics_address("localhost").unwrap_err();
        assert!(error.starts_with("--metrics localhost: "), "{error}");
        let error = metrics_address("0.0.0.0:9464").unwrap_err();
        assert!(error.contains("loopback"), "{error}");
    }

    #[test]
    fn metrics_refuse_other_than_loopback() {
        let error = Observers::start(
            RunState::default(),
            None,
            Some("0.0.0.0:0".parse().unwrap()),
            false,
        )
        .err()
        .unwrap();
        assert!(error.to_string().contains("loopback"), "{error}");
    }
}
