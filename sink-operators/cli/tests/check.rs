//! `outflow check` as a user meets it: the example file and the guide accepted, the first
//! error printed like a compiler's, secrets never printed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sql/tests/fixtures")
        .join(name)
}

fn example_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/statements.sql")
}

fn run_check(file: &Path) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_outflow"))
        .arg("check")
        .arg(file)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn outflow_check_accepts_the_example_and_the_guide() {
    let (code, stdout, stderr) = run_check(&example_file());
    assert_eq!(code, 0, "{stderr}");
    let objects: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = objects
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "kafka_password",
            "csr_password",
            "kafka_connection",
            "csr_connection",
            "orders",
            "order_items",
            "order_summaries",
            "sink_cluster",
            "order_updates",
            "order_changes",
            "regional_summaries",
        ]
    );
    let regional = &objects[10];
    assert_eq!(regional["partition_by"], "kafka_murmur2(region)");
    assert_eq!(regional["value_format"]["format"], "avro");
    assert_eq!(objects[9]["envelope"], "debezium");
    assert_eq!(objects[0]["value"], "<redacted>");
    assert!(!stdout.contains("change-me"));

    let (code, stdout, stderr) = run_check(&fixture("guide.sql"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 47);
    assert!(
        stderr.contains(": notice: KEY (key_col) is not a known unique key"),
        "{stderr}"
    );
}

#[test]
fn outflow_check_reports_the_first_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.sql");
    std::fs::write(
        &bad,
        "CREATE SECRET pw AS 'hunter2';\n\
         CREATE CONNECTION k TO KAFKA (BROKER 'b:9092', SECURITY PROTOCOL PLAINTEXT);\n\
         CREATE TABLE my_view (id bigint PRIMARY KEY, key_col text);\n\
         CREATE SINK my_sink\n  FROM my_view\n  INTO KAFKA CONNECTION k (TOPIC 'topic')\n  KEY (key_col)\n  FORMAT JSON\n  ENVELOPE UPSERT;\n\
         CREATE TABLE never_reached (a nosuchtype);\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run_check(&bad);
    assert_eq!(code, 1);
    assert_eq!(stdout, "");
    let mut lines = stderr.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!(
            "{}:7:3: error: upsert key could not be validated as unique",
            bad.display()
        )
    );
    assert!(lines
        .next()
        .unwrap()
        .starts_with("DETAIL: Outflow could not prove"));
    assert_eq!(lines.next().unwrap(), "  (\"id\")");
    assert!(lines.next().unwrap().starts_with("HINT: "));
    assert!(!stderr.contains("hunter2"));

    let (code, _, stderr) = run_check(&dir.path().join("missing.sql"));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("missing.sql: error: cannot read the file"),
        "{stderr}"
    );
}

/// A secret's value is never printed, quoted or not: `CREATE SECRET pw AS Hunter2` names the
/// statement and where the value starts, never the value.
#[test]
fn an_unquoted_secret_is_not_echoed() {
    let dir = std::env::temp_dir().join(format!("outflow-check-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret.sql");
    for sql in [
        "CREATE SECRET pw AS Hunter2;",
        "CREATE SECRET pw AS 'Hunter2' Hunter2;",
    ] {
        std::fs::write(&file, sql).unwrap();
        let (code, stdout, stderr) = run_check(&file);
        assert_eq!(code, 1, "{sql}: {stderr}");
        assert!(
            !format!("{stdout}{stderr}").contains("Hunter2"),
            "{sql}: {stderr}"
        );
        assert!(
            stderr.starts_with(&format!("{}:1:", file.display())),
            "{sql}: {stderr}"
        );
    }
    std::fs::write(&file, "CREATE SECRET pw AS Hunter2;").unwrap();
    let (_, _, stderr) = run_check(&file);
    assert_eq!(
        stderr.lines().next().unwrap(),
        format!(
            "{}:1:21: error: CREATE SECRET pw: the secret's value must be a string literal (the text written is not shown)",
            file.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A `PARTITION BY` expression's type errors point at the expression, or at the operator,
/// in the file; a good one prints normalized, with the casts its types imply.
#[test]
fn outflow_check_types_partition_by_expressions() {
    let dir = tempfile::tempdir().unwrap();
    let prelude = "CREATE CONNECTION k TO KAFKA (BROKER 'b:9092', SECURITY PROTOCOL PLAINTEXT);\n\
                   CREATE TABLE t (id bigint PRIMARY KEY, region text);\n";
    let sink = |expr: &str| {
        format!(
            "{prelude}CREATE SINK s FROM t INTO KAFKA CONNECTION k (TOPIC 't',\n    PARTITION BY = {expr})\n  KEY (id) FORMAT JSON ENVELOPE UPSERT;\n"
        )
    };
    let check = |name: &str, expr: &str| {
        let file = dir.path().join(name);
        std::fs::write(&file, sink(expr)).unwrap();
        let (code, stdout, stderr) = run_check(&file);
        (
            code,
            stdout,
            stderr.replace(&file.display().to_string(), "FILE"),
        )
    };
    let (code, _, stderr) = check("text.sql", "lower(region)");
    assert_eq!(code, 1);
    assert_eq!(
        stderr.lines().next().unwrap(),
        "FILE:4:20: error: PARTITION BY must yield uint8, but the expression has type text"
    );
    let (code, _, stderr) = check("operator.sql", "region + 1");
    assert_eq!(code, 1);
    assert_eq!(
        stderr.lines().next().unwrap(),
        "FILE:4:27: error: operator does not exist: text + integer"
    );
    let (code, stdout, stderr) = check(
        "good.sql",
        "CASE WHEN region = 'eu' THEN 0 ELSE seahash(region) END",
    );
    assert_eq!(code, 0, "{stderr}");
    let sink: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        sink["partition_by"],
        "CASE WHEN region = 'eu' THEN 0::numeric ELSE seahash(region)::numeric END"
    );
}

#[test]
fn outflow_check_prints_the_debezium_and_json_options() {
    let dir = std::env::temp_dir().join(format!("outflow-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("cdc.sql");
    std::fs::write(
        &file,
        "CREATE CONNECTION k TO KAFKA (BROKER 'localhost:9092', SECURITY PROTOCOL PLAINTEXT);
         CREATE TABLE t (id bigint PRIMARY KEY, name text);
         CREATE SINK cdc FROM t INTO KAFKA CONNECTION k (TOPIC 'cdc')
           KEY (id) KEY FORMAT JSON VALUE FORMAT JSON (SCHEMAS ENABLED)
           ENVELOPE DEBEZIUM (FULL, TOMBSTONES ON DELETE);
         CREATE SINK bad FROM t INTO KAFKA CONNECTION k (TOPIC 'bad')
           KEY (id) FORMAT JSON ENVELOPE UPSERT (FULL);",
    )
    .unwrap();
    let (code, stdout, stderr) = run_check(&file);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stderr.contains(":7:50: error: FULL is an option of ENVELOPE DEBEZIUM; ENVELOPE UPSERT takes no options"),
        "{stderr}"
    );
    // Without the refused sink the file checks, and the spec names the options.
    let text = std::fs::read_to_string(&file).unwrap();
    let good = &text[..text.find("CREATE SINK bad").unwrap()];
    std::fs::write(&file, good).unwrap();
    let (code, stdout, stderr) = run_check(&file);
    assert_eq!(code, 0, "{stderr}");
    let cdc: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(cdc["name"], "cdc");
    assert_eq!(cdc["envelope"], "debezium");
    assert_eq!(
        cdc["debezium"],
        serde_json::json!({"full": true, "tombstones_on_delete": true})
    );
    assert_eq!(cdc["key_format"]["format"], "json");
    assert_eq!(cdc["value_format"]["format"], "json_with_schema");
    std::fs::remove_dir_all(&dir).unwrap();
}
