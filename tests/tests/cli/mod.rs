//! Running the `outflow` program from the tests: the binary (built once per test process),
//! feeds, and the FORMAT JSON text of the rows they write.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use outflow_tests::broker::workspace_root;

/// The `outflow` binary of this workspace, built on first use. Integration tests of another
/// package cannot name it with `CARGO_BIN_EXE_`, so it is built here with the same cargo.
pub fn outflow_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let status = Command::new(cargo)
                .args(["build", "-p", "outflow-cli", "--bin", "outflow"])
                .current_dir(workspace_root())
                .stdout(Stdio::null())
                .status()
                .expect("cargo runs");
            assert!(
                status.success(),
                "cargo build -p outflow-cli --bin outflow failed"
            );
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| workspace_root().join("target"), PathBuf::from);
            let binary = target.join("debug").join("outflow");
            assert!(binary.exists(), "no binary at {}", binary.display());
            binary
        })
        .clone()
}

/// Runs `outflow ARGS` to its end.
pub fn outflow(args: &[&str]) -> Output {
    Command::new(outflow_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("outflow starts")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes `contents` to `name` in `dir` and returns the path as a string.
pub fn write_file(dir: &tempfile::TempDir, name: &str, contents: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

/// An order row `(order_id bigint, customer text, amount numeric(10,2))` as a feed's `row` and
/// as FORMAT JSON writes it (they are the same text).
pub fn order_json(id: i64, customer: &str, cents: i64) -> String {
    format!(
        r#"{{"order_id":{id},"customer":"{customer}","amount":{}.{:02}}}"#,
        cents / 100,
        cents % 100
    )
}

/// A feed line updating `table`.
pub fn update_line(table: &str, time: u64, diff: i64, row: &str) -> String {
    format!(r#"{{"table":"{table}","time":{time},"diff":{diff},"row":{row}}}"#)
}
