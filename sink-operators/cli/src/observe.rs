//! What `outflow run` shows while it runs: a status file rewritten every second, a Prometheus
//! endpoint on a loopback address, and a progress line on a terminal's stderr.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    rows_fed: u64,
    sinks: Vec<SinkReport>,
}

/// Writes the status of every sink to `path` as one JSON document, through a temporary file
/// renamed over it, so that a reader never sees half a document.
pub fn write_status(path: &Path, state: &RunState) -> std::io::Result<()> {
    let document = StatusDocument {
        updated_at_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
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
            write_status(path, &state).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot write the status file {}: {e}", path.display()),
                )
            })?;
            let (path, state, stop) = (path.clone(), state.clone(), Arc::clone(&stop));
            threads.push(std::thread::spawn(move || {
                while !sleep_unless_stopped(&stop, REFRESH) {
                    if let Err(e) = write_status(&path, &state) {
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
                serve_metrics(listener, state, stop)
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
            Some(path) => write_status(path, &self.state),
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

fn serve_metrics(listener: TcpListener, state: RunState, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, &state) {
                    tracing::debug!("metrics request failed: {e}");
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

/// Answers one HTTP/1.x request: `/metrics` (or `/`) with the Prometheus text, anything else
/// with 404.
fn answer(stream: TcpStream, state: &RunState) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // The headers are read and ignored; a request has no body.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
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
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

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
