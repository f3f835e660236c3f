//! `outflow txn list` and `outflow txn abort`: a sink's transactional ids as the brokers see
//! them, and ending the transactions a dead process left open.
//!
//! Aborting fences the id (`init_transactions`), which also fences a process still using it: it
//! fails at its next send or commit. So `abort` refuses unless it knows the sink's process is
//! gone, or `--force` says the caller knows. What it trusts is the status file of the run
//! (`outflow run --status FILE`), rewritten every second with the writer's pid and host: the
//! process is gone when the file says its run ended, when it names this host and no such pid
//! runs here (a zombie counts as gone), or, for another host, when the file has not been
//! rewritten for [`STALE_AFTER`]. Without a status file nothing proves the process gone.

use std::path::Path;
use std::time::Duration;

use outflow::dataflow::relation::Timestamp;
use outflow::sink::SinkPlan;
use outflow::statement::Catalog;
use outflow::transactions::{self, TransactionalIdState};

use crate::observe::{host_name, now_ms};

/// A status file not rewritten for this long (it is rewritten every second) was left by a
/// process that stopped writing it.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// The sinks `sink` names (all of the file's when `None`), each with its plan.
pub fn sink_plans(catalog: &Catalog, sink: Option<&str>) -> Result<Vec<SinkPlan>, String> {
    let names: Vec<String> = match sink {
        Some(name) => {
            if catalog.sink(name).is_none() {
                return Err(format!("unknown sink \"{name}\""));
            }
            vec![name.to_string()]
        }
        None => catalog.sinks().map(|s| s.name.clone()).collect(),
    };
    if names.is_empty() {
        return Err("the statements file creates no sink".to_string());
    }
    names
        .iter()
        .map(|name| SinkPlan::from_catalog(catalog, name).map_err(|e| e.to_string()))
        .collect()
}

/// One line of `outflow txn list`.
pub fn describe_line(state: &TransactionalIdState, now_ms: u64) -> String {
    let mut line = format!(
        "{}  worker {}  {}",
        state.transactional_id,
        state.worker,
        state.state.as_deref().unwrap_or("unknown to the broker")
    );
    if let (Some(id), Some(epoch)) = (state.producer_id, state.producer_epoch) {
        line.push_str(&format!("  producer id {id} epoch {epoch}"));
    }
    if let Some(started) = state.transaction_started_at_ms {
        line.push_str(&format!(
            "  open since {} ({})",
            utc(started),
            seconds(now_ms.saturating_sub(started as u64))
        ));
    }
    if let Some(timeout) = state.transaction_timeout_ms.filter(|_| state.is_open()) {
        line.push_str(&format!("  timeout {}", seconds(timeout as u64)));
    }
    if !state.partitions.is_empty() {
        line.push_str(&format!("  writing {}", state.partitions.join(" ")));
    }
    if state.found_in == transactions::FoundIn::Broker {
        line.push_str("  (no progress record names this worker)");
    }
    line
}

/// The JSON line of `outflow txn list --json`.
pub fn describe_json(sink: &str, state: &TransactionalIdState, now_ms: u64) -> String {
    let mut value = serde_json::to_value(state).expect("a transaction state serializes");
    value["sink"] = serde_json::Value::from(sink);
    value["open"] = serde_json::Value::from(state.is_open());
    value["open_for_ms"] = match state.transaction_started_at_ms {
        Some(started) => serde_json::Value::from(now_ms.saturating_sub(started as u64)),
        None => serde_json::Value::Null,
    };
    value.to_string()
}

fn utc(ms: i64) -> String {
    format!("{} UTC", Timestamp(ms.saturating_mul(1000)))
}

fn seconds(ms: u64) -> String {
    format!("{}.{} s", ms / 1000, (ms % 1000) / 100)
}

/// Whether the process that ran sink `sink` may still be alive, by the status file at
/// `status`: `Ok(reason it is gone)`, or `Err(why it may be alive, or why this cannot be told)`.
pub fn process_gone(status: Option<&Path>, sink: &str) -> Result<String, String> {
    let Some(path) = status else {
        return Err(
            "nothing says the sink's process is gone: give the status file of its run \
             (--status FILE, as given to outflow run) or, once you know it is stopped, --force"
                .to_string(),
        );
    };
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the status file {shown}: {e}"))?;
    let document: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("the status file {shown} is not a status document: {e}"))?;
    let names_sink = document["sinks"]
        .as_array()
        .is_some_and(|sinks| sinks.iter().any(|s| s["name"] == sink));
    if !names_sink {
        return Err(format!(
            "the status file {shown} is not of a run of sink \"{sink}\""
        ));
    }
    let pid = document["pid"].as_u64().ok_or_else(|| {
        format!("the status file {shown} names no process (written by an older outflow)")
    })?;
    if let Some(ended) = document["ended_at_ms"].as_u64() {
        return Ok(format!(
            "the status file {shown} says process {pid}'s run ended at {}",
            utc(ended as i64)
        ));
    }
    let updated = document["updated_at_ms"].as_u64().unwrap_or(0);
    let age = Duration::from_millis(now_ms().saturating_sub(updated));
    let host = document["host"].as_str();
    let here = host_name();
    if host.is_some() && host == here.as_deref() {
        match process_state(pid) {
            Some(ProcessState::Running) => {
                return Err(format!(
                    "process {pid}, which the status file {shown} names, is running on this \
                     host (the file was updated {} ago): stop it first, or give --force if that \
                     pid is another program now",
                    seconds(age.as_millis() as u64)
                ))
            }
            Some(ProcessState::Gone) => {
                return Ok(format!(
                    "process {pid}, which the status file {shown} names, no longer runs"
                ))
            }
            None => {}
        }
    }
    if age >= STALE_AFTER {
        Ok(format!(
            "the status file {shown} was last updated {} ago by process {pid} on host {}",
            seconds(age.as_millis() as u64),
            host.unwrap_or("(unknown)")
        ))
    } else {
        Err(format!(
            "the status file {shown} was updated {} ago by process {pid} on host {}: its run may \
             still be going (a file not updated for {} s is taken as left behind)",
            seconds(age.as_millis() as u64),
            host.unwrap_or("(unknown)"),
            STALE_AFTER.as_secs()
        ))
    }
}

enum ProcessState {
    Running,
    Gone,
}

/// Whether `pid` runs on this host, from `/proc`; `None` where there is no `/proc`.
fn process_state(pid: u64) -> Option<ProcessState> {
    if !Path::new("/proc/self/stat").exists() {
        return None;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Some(ProcessState::Gone);
    };
    // `pid (comm) S …`: the state follows the last parenthesis (comm may hold any).
    let state = stat
        .rfind(')')
        .and_then(|at| stat[at + 1..].split_whitespace().next());
    Some(match state {
        Some("Z" | "X" | "x") => ProcessState::Gone,
        _ => ProcessState::Running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_file(dir: &tempfile::TempDir, document: serde_json::Value) -> std::path::PathBuf {
        let path = dir.path().join("status.json");
        std::fs::write(&path, document.to_string()).unwrap();
        path
    }

    #[test]
    fn a_running_process_on_this_host_may_be_alive_and_a_finished_one_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let sinks = serde_json::json!([{ "name": "s" }]);
        let alive = status_file(
            &dir,
            serde_json::json!({
                "updated_at_ms": now_ms(), "pid": std::process::id(), "host": host_name(),
                "ended_at_ms": null, "sinks": sinks,
            }),
        );
        let why = process_gone(Some(&alive), "s").unwrap_err();
        assert!(
            why.contains(&format!("process {}", std::process::id()))
                && why.contains("is running on this host"),
            "{why}"
        );
        assert!(process_gone(Some(&alive), "other")
            .unwrap_err()
            .contains("is not of a run of sink \"other\""));

        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = status_file(
            &dir,
            serde_json::json!({
                "updated_at_ms": now_ms(), "pid": pid, "host": host_name(),
                "ended_at_ms": null, "sinks": sinks,
            }),
        );
        let reason = process_gone(Some(&gone), "s").unwrap();
        assert!(reason.contains("no longer runs"), "{reason}");
    }

    #[test]
    fn another_hosts_file_counts_as_left_behind_once_stale() {
        let dir = tempfile::tempdir().unwrap();
        let sinks = serde_json::json!([{ "name": "s" }]);
        let fresh = status_file(
            &dir,
            serde_json::json!({
                "updated_at_ms": now_ms(), "pid": 1, "host": "elsewhere.example",
                "ended_at_ms": null, "sinks": sinks,
            }),
        );
        let why = process_gone(Some(&fresh), "s").unwrap_err();
        assert!(why.contains("its run may still be going"), "{why}");
        let stale = status_file(
            &dir,
            serde_json::json!({
                "updated_at_ms": now_ms() - 60_000, "pid": 1, "host": "elsewhere.example",
                "ended_at_ms": null, "sinks": sinks,
            }),
        );
        assert!(process_gone(Some(&stale), "s")
            .unwrap()
            .contains("was last updated 60"));
        let ended = status_file(
            &dir,
            serde_json::json!({
                "updated_at_ms": now_ms(), "pid": 1, "host": "elsewhere.example",
                "ended_at_ms": now_ms(), "sinks": sinks,
            }),
        );
        assert!(process_gone(Some(&ended), "s")
            .unwrap()
            .contains("run ended"));
        let why = process_gone(None, "s").unwrap_err();
        assert!(
            why.contains("--status FILE") && why.contains("--force"),
            "{why}"
        );
    }
}
