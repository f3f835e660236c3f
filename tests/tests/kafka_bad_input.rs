//! The bad-input catalogue: what `outflow run` does with each kind of input it cannot write
//! faithfully, against Apache Kafka. One case per line of [`cases`]: the feed (or statements),
//! the exact error line and exit status, and what the topics hold afterwards, read at
//! `read_committed` up to the last stable offset (a failed sink's open transaction is never
//! committed, and is not waited for).
//!
//! Every feed starts alike: rows of `t` and `u` at time 1, then `{"advance":2}` and
//! `{"advance":3}`, so time 1 is committed before a case's own lines (at time 3) are read; a
//! line at time 4 and `{"advance":5}` come last, and a failing case never writes time 4.

mod cli;

use cli::{outflow, text, write_file};
use outflow_tests::broker::unique_name;
use outflow_tests::committed;
use outflow_tests::kafka::Kafka;

/// A sink of a case's statements file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sink {
    /// `t` by its primary key, UPSERT: the key is enforced.
    TUpsert,
    /// `u` by `k` NOT ENFORCED, UPSERT.
    UUpsert,
    /// `u` by `k` NOT ENFORCED, DEBEZIUM.
    UDebezium,
}

const ALL: &[Sink] = &[Sink::TUpsert, Sink::UUpsert, Sink::UDebezium];

/// The lines every feed starts with (lines 1–5).
const PREFIX: &[&str] = &[
    r#"{"table":"t","time":1,"row":{"id":1,"name":"a","amt":1.005,"v":"abc  ","c":"x","f":1.5}}"#,
    r#"{"table":"t","time":1,"row":{"id":2}}"#,
    r#"{"table":"u","time":1,"row":{"k":1,"val":"one"}}"#,
    r#"{"advance":2}"#,
    r#"{"advance":3}"#,
];
/// The lines every feed ends with: an update at time 4, after the case's lines, never
/// written by a failing case (the succeeding ones have no sink of `t`), and an advance that
/// completes the feed.
const LAST: &str = r#"{"table":"t","time":4,"row":{"id":99,"name":"never"}}"#;
const END: &str = r#"{"advance":5}"#;

/// What time 1 leaves in each topic: (key, value) as FORMAT JSON writes them. `amt` is rounded
/// to numeric(5,2)'s scale, `v` lost the blanks beyond varchar(3), `c` is padded (char(3)).
fn time_one(sink: Sink) -> Vec<(String, String)> {
    let pairs: &[(&str, &str)] = match sink {
        Sink::TUpsert => &[
            (
                r#"{"id":1}"#,
                r#"{"id":1,"name":"a","amt":1.01,"big":null,"v":"abc","c":"x  ","f":1.5}"#,
            ),
            (
                r#"{"id":2}"#,
                r#"{"id":2,"name":null,"amt":null,"big":null,"v":null,"c":null,"f":null}"#,
            ),
        ],
        Sink::UUpsert => &[(r#"{"k":1}"#, r#"{"k":1,"val":"one"}"#)],
        Sink::UDebezium => &[(
            r#"{"k":1}"#,
            r#"{"before":null,"after":{"k":1,"val":"one"}}"#,
        )],
    };
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One line of the catalogue.
struct Case {
    name: &'static str,
    sinks: &'static [Sink],
    /// The feed's own lines (lines 6 and on), raw bytes.
    lines: Vec<Vec<u8>>,
    /// The feed waits at each move of its time, so that time 1 is committed before the case's
    /// lines come (a sink that fails has committed what it committed; a feed error commits
    /// every time before its line anyway).
    paced: bool,
    /// The exit status.
    exit: i32,
    /// The error line on stderr, with `{feed}` for the feed's path and `{SINK}` for a sink's
    /// topic (`{t}`, `{u_up}`, `{u_dbz}`); `None` when the run succeeds.
    error: Option<&'static str>,
    /// What each sink's topic holds beyond time 1 (`None`: only time 1).
    beyond_time_one: Vec<(Sink, Vec<(&'static str, &'static str)>)>,
    /// Lines stderr must hold once each (with the same placeholders).
    warnings: Vec<&'static str>,
}

fn line(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

fn cases() -> Vec<Case> {
    let feed_error = |name, lines: Vec<Vec<u8>>, error| Case {
        name,
        sinks: ALL,
        lines,
        paced: false,
        exit: 1,
        error: Some(error),
        beyond_time_one: Vec::new(),
        warnings: Vec::new(),
    };
    let max = i64::MAX;
    vec![
        feed_error(
            "malformed JSON",
            vec![line(r#"{"table":"t","time":3,"row":{"id":3"#)],
            "{feed}: error: feed line 6: not a feed line: EOF while parsing an object at line 1 column 35 (every time before 3 is committed; nothing of that time or later was fed)",
        ),
        feed_error(
            "wrong type",
            vec![line(r#"{"table":"t","time":3,"row":{"id":"three"}}"#)],
            r#"{feed}: error: feed line 6: table t: column "id" (bigint): expected a bigint, found three (every time before 3 is committed; nothing of that time or later was fed)"#,
        ),
        feed_error(
            "missing NOT NULL",
            vec![line(r#"{"table":"u","time":3,"row":{"val":"x"}}"#)],
            r#"{feed}: error: feed line 6: table u: column "k" (bigint): null in a NOT NULL column (every time before 3 is committed; nothing of that time or later was fed)"#,
        ),
        feed_error(
            "unknown table",
            vec![line(r#"{"table":"w","time":3,"row":{"id":3}}"#)],
            r#"{feed}: error: feed line 6: unknown table "w" (the tables are t, u) (every time before 3 is committed; nothing of that time or later was fed)"#,
        ),
        feed_error(
            "unknown column",
            vec![line(r#"{"table":"t","time":3,"row":{"id":3,"colour":"red"}}"#)],
            r#"{feed}: error: feed line 6: table t: unknown column "colour" (the columns are id, name, amt, big, v, c, f) (every time before 3 is committed; nothing of that time or later was fed)"#,
        ),
        feed_error(
            "time going back",
            vec![line(r#"{"table":"t","time":2,"row":{"id":3}}"#)],
            "{feed}: error: feed line 6: time 2 goes back in time: the feed is already at time 3 (set by line 5) (every time before 3 is committed; nothing of that time or later was fed)",
        ),
        feed_error(
            "invalid UTF-8",
            vec![b"{\"table\":\"t\",\"time\":3,\"row\":{\"id\":3,\"name\":\"\xff\"}}".to_vec()],
            "{feed}: error: feed line 6: cannot read the feed: stream did not contain valid UTF-8 (every time before 3 is committed; nothing of that time or later was fed)",
        ),
        feed_error(
            "numeric overflow",
            vec![line(r#"{"table":"t","time":3,"row":{"id":3,"amt":123456.78}}"#)],
            r#"{feed}: error: feed line 6: table t: column "amt" (numeric(5,2)): numeric field overflow: a field with precision 5, scale 2 must round to an absolute value less than 10^3 (every time before 3 is committed; nothing of that time or later was fed)"#,
        ),
        feed_error(
            "numeric overflow after rounding",
            vec![line(r#"{"table":"t","time":3,"row":{"id":3,"amt":999.995}}"#)],
            r#"{feed}: error: feed line 6: table t: column "amt" (numeric(5,2)): numeric field overflow: a field with precision 5, scale 2 must round to an absolute value less than 10^3 (every time before 3 is committed; nothing of that time or later was fed)"#,
        ),
        feed_error(
            "varchar too long",
            vec![line(r#"{"table":"t","time":3,"row":{"id":3,"v":"abcdef"}}"#)],
            r#"{feed}: error: feed line 6: table t: column "v" (character varying(3)): value too long for type character varying(3) (every time before 3 is committed; nothing of that time or later was fed)"#,
        ),
        feed_error(
            "char too long",
            vec![line(r#"{"table":"t","time":3,"row":{"id":3,"c":"abcd"}}"#)],
            r#"{feed}: error: feed line 6: table t: column "c" (character(3)): value too long for type character(3) (every time before 3 is committed; nothing of that time or later was fed)"#,
        ),
        feed_error(
            "real out of range",
            vec![line(r#"{"table":"t","time":3,"row":{"id":3,"f":1e300}}"#)],
            r#"{feed}: error: feed line 6: table t: column "f" (real): "1e300" is out of range for type real (every time before 3 is committed; nothing of that time or later was fed)"#,
        ),
        feed_error(
            "diff beyond i64",
            vec![line(
                r#"{"table":"u","time":3,"diff":9223372036854775808,"row":{"k":3}}"#,
            )],
            "{feed}: error: feed line 6: not a feed line: invalid value: integer `9223372036854775808`, expected i64 at line 1 column 48 (every time before 3 is committed; nothing of that time or later was fed)",
        ),
        feed_error(
            "duplicate JSON column",
            vec![line(r#"{"table":"t","time":3,"row":{"id":3,"name":"x","name":"y"}}"#)],
            r#"{feed}: error: feed line 6: table t: column "name" appears twice (every time before 3 is committed; nothing of that time or later was fed)"#,
        ),
        feed_error(
            "NUL in text",
            vec![line(r#"{"table":"t","time":3,"row":{"id":3,"name":"a\u0000b"}}"#)],
            r#"{feed}: error: feed line 6: table t: column "name" (text): invalid byte sequence for encoding "UTF8": 0x00 (every time before 3 is committed; nothing of that time or later was fed)"#,
        ),
        Case {
            name: "duplicate key (enforced)",
            sinks: &[Sink::TUpsert],
            lines: vec![
                line(r#"{"table":"t","time":3,"row":{"id":7,"name":"a"}}"#),
                line(r#"{"table":"t","time":3,"row":{"id":7,"name":"b"}}"#),
            ],
            paced: true,
            exit: 1,
            error: Some(
                r#"error: sink {t}: key {"id":7} is not unique at time 3: it holds 2 rows afterwards [1 × {"id":7,"name":"a","amt":null,"big":null,"v":null,"c":null,"f":null}, 1 × {"id":7,"name":"b","amt":null,"big":null,"v":null,"c":null,"f":null}]; the KEY is not unique in the data, so its change at time 3 is not written (use KEY (...) NOT ENFORCED to write such keys anyway)"#,
            ),
            beyond_time_one: Vec::new(),
            warnings: Vec::new(),
        },
        Case {
            // Fed without pauses: the failing sink still commits time 1 before it stops, and
            // the run's other sinks go on to the end of the feed.
            name: "duplicate key (enforced) beside sinks that go on",
            sinks: ALL,
            lines: vec![
                line(r#"{"table":"t","time":3,"row":{"id":7,"name":"a"}}"#),
                line(r#"{"table":"t","time":3,"row":{"id":7,"name":"b"}}"#),
                line(r#"{"table":"u","time":3,"row":{"k":3,"val":"three"}}"#),
            ],
            paced: false,
            exit: 1,
            error: Some(
                r#"error: sink {t}: key {"id":7} is not unique at time 3: it holds 2 rows afterwards [1 × {"id":7,"name":"a","amt":null,"big":null,"v":null,"c":null,"f":null}, 1 × {"id":7,"name":"b","amt":null,"big":null,"v":null,"c":null,"f":null}]; the KEY is not unique in the data, so its change at time 3 is not written (use KEY (...) NOT ENFORCED to write such keys anyway)"#,
            ),
            beyond_time_one: vec![
                (Sink::UUpsert, vec![(r#"{"k":3}"#, r#"{"k":3,"val":"three"}"#)]),
                (
                    Sink::UDebezium,
                    vec![(
                        r#"{"k":3}"#,
                        r#"{"before":null,"after":{"k":3,"val":"three"}}"#,
                    )],
                ),
            ],
            warnings: Vec::new(),
        },
        Case {
            name: "multiplicity beyond i64 (enforced)",
            sinks: &[Sink::TUpsert],
            lines: vec![
                line(&format!(r#"{{"table":"t","time":3,"diff":{max},"row":{{"id":9}}}}"#)),
                line(&format!(r#"{{"table":"t","time":3,"diff":{max},"row":{{"id":9}}}}"#)),
            ],
            paced: true,
            exit: 1,
            error: Some(
                r#"error: sink {t}: row {"id":9,"name":null,"amt":null,"big":null,"v":null,"c":null,"f":null} has 18446744073709551614 copies at time 3, beyond the 64-bit range of a multiplicity; nothing of time 3 or later is written"#,
            ),
            beyond_time_one: Vec::new(),
            warnings: Vec::new(),
        },
        Case {
            name: "multiplicity beyond i64 (NOT ENFORCED)",
            sinks: &[Sink::UUpsert],
            lines: vec![
                line(&format!(r#"{{"table":"u","time":3,"diff":{max},"row":{{"k":5,"val":"x"}}}}"#)),
                line(&format!(r#"{{"table":"u","time":3,"diff":{max},"row":{{"k":5,"val":"x"}}}}"#)),
                line(r#"{"table":"u","time":3,"diff":3,"row":{"k":5,"val":"x"}}"#),
            ],
            paced: true,
            exit: 1,
            error: Some(
                r#"error: sink {u_up}: row {"k":5,"val":"x"} has 18446744073709551617 copies at time 3, beyond the 64-bit range of a multiplicity; nothing of time 3 or later is written"#,
            ),
            beyond_time_one: Vec::new(),
            warnings: Vec::new(),
        },
        Case {
            name: "huge multiplicity under DEBEZIUM",
            sinks: &[Sink::UDebezium],
            lines: vec![line(
                r#"{"table":"u","time":3,"diff":1000000000000,"row":{"k":6,"val":"many"}}"#,
            )],
            paced: true,
            exit: 1,
            error: Some(
                r#"error: sink {u_dbz}: key {"k":6} needs 1000000000000 messages at time 3 (one per copy of a row), more than the limit of 10000 one key may write at one time; nothing of time 3 or later is written"#,
            ),
            beyond_time_one: Vec::new(),
            warnings: Vec::new(),
        },
        Case {
            name: "huge multiplicity under UPSERT (one message)",
            sinks: &[Sink::UUpsert],
            lines: vec![line(
                r#"{"table":"u","time":3,"diff":1000000000000,"row":{"k":6,"val":"many"}}"#,
            )],
            paced: true,
            exit: 0,
            error: None,
            beyond_time_one: vec![(
                Sink::UUpsert,
                vec![(r#"{"k":6}"#, r#"{"k":6,"val":"many"}"#)],
            )],
            warnings: vec![
                r#"WARN sink {u_up}: key {"k":6} is not unique at time 3 (NOT ENFORCED: written anyway): it holds 1000000000000 rows afterwards [1000000000000 × {"k":6,"val":"many"}]"#,
            ],
        },
        Case {
            name: "duplicate keys (NOT ENFORCED) warn once per key",
            sinks: &[Sink::UUpsert],
            lines: vec![
                line(r#"{"table":"u","time":3,"row":{"k":8,"val":"a"}}"#),
                line(r#"{"table":"u","time":3,"row":{"k":8,"val":"b"}}"#),
                line(r#"{"table":"u","time":4,"row":{"k":8,"val":"c"}}"#),
            ],
            paced: true,
            exit: 0,
            error: None,
            beyond_time_one: vec![(
                Sink::UUpsert,
                vec![
                    (r#"{"k":8}"#, r#"{"k":8,"val":"a"}"#),
                    (r#"{"k":8}"#, r#"{"k":8,"val":"b"}"#),
                    (r#"{"k":8}"#, r#"{"k":8,"val":"c"}"#),
                ],
            )],
            warnings: vec![
                r#"WARN sink {u_up}: key {"k":8} is not unique at time 3 (NOT ENFORCED: written anyway): it holds 2 rows afterwards [1 × {"k":8,"val":"a"}, 1 × {"k":8,"val":"b"}]"#,
            ],
        },
    ]
}

/// The statements of a case: its sinks, on fresh topics, transactional ids and progress.
struct Setup {
    dir: tempfile::TempDir,
    statements: String,
    topics: Vec<(Sink, String)>,
}

fn setup(sinks: &[Sink], with: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut sql = format!(
        "CREATE CONNECTION k TO KAFKA (BROKER '{}', SECURITY PROTOCOL PLAINTEXT);
         CREATE TABLE t (id bigint PRIMARY KEY, name text, amt numeric(5,2), big numeric(38,2),
             v varchar(3), c char(3), f real);
         CREATE TABLE u (k bigint NOT NULL, val text);\n",
        Kafka::shared().bootstrap()
    );
    let mut topics = Vec::new();
    for &sink in sinks {
        let (stem, from, key, envelope) = match sink {
            Sink::TUpsert => ("bad-t", "t", "KEY (id)", "UPSERT"),
            Sink::UUpsert => ("bad-u-up", "u", "KEY (k) NOT ENFORCED", "UPSERT"),
            Sink::UDebezium => ("bad-u-dbz", "u", "KEY (k) NOT ENFORCED", "DEBEZIUM"),
        };
        let topic = unique_name(stem);
        sql.push_str(&format!(
            "CREATE SINK \"{topic}\" FROM {from} INTO KAFKA CONNECTION k (TOPIC '{topic}',
                 TOPIC PARTITION COUNT 1,
                 TRANSACTIONAL ID PREFIX '{topic}-', PROGRESS GROUP ID PREFIX '{topic}-')
               {key} FORMAT JSON ENVELOPE {envelope}{with};\n"
        ));
        topics.push((sink, topic));
    }
    let statements = write_file(&dir, "statements.sql", &sql);
    Setup {
        dir,
        statements,
        topics,
    }
}

impl Setup {
    fn status_file(&self) -> String {
        self.dir.path().join("status.json").display().to_string()
    }

    fn topic(&self, sink: Sink) -> &str {
        &self.topics.iter().find(|(s, _)| *s == sink).unwrap().1
    }

    /// `text` with `{feed}` and the sinks' placeholders filled in.
    fn fill(&self, text: &str, feed: &str) -> String {
        let mut text = text.replace("{feed}", feed);
        for (sink, topic) in &self.topics {
            let placeholder = match sink {
                Sink::TUpsert => "{t}",
                Sink::UUpsert => "{u_up}",
                Sink::UDebezium => "{u_dbz}",
            };
            text = text.replace(placeholder, topic);
        }
        text
    }
}

/// What a sink's topic holds at `read_committed`, up to the last stable offset: (key, value).
fn holds(topic: &str) -> Vec<(String, String)> {
    let utf8 = |bytes: Option<Vec<u8>>| String::from_utf8(bytes.unwrap_or_default()).unwrap();
    let records: Vec<(String, String)> =
        committed::read_stable(&Kafka::shared().bootstrap(), topic)
            .unwrap_or_else(|e| panic!("reading {topic}: {e}"))
            .into_iter()
            .map(|record| (utf8(record.key), utf8(record.value)))
            .collect();
    records
}

/// stderr's lines without the log's timestamp and target, so that a warning reads
/// `WARN sink …`.
fn stderr_lines(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .map(|line| {
            let plain = strip_ansi(line);
            // `TIMESTAMP  WARN target: message`
            match plain.find(" WARN ").map(|at| &plain[at + 6..]) {
                Some(rest) => match rest.split_once(": ") {
                    Some((_target, message)) => format!("WARN {message}"),
                    None => format!("WARN {rest}"),
                },
                None => plain,
            }
        })
        .collect()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn run(setup: &Setup, feed: &str, paced: bool) -> std::process::Output {
    let status = setup.status_file();
    let mut args = vec![
        "run",
        setup.statements.as_str(),
        "--feed",
        feed,
        "--commit-interval-ms",
        "20",
        "--status",
        &status,
    ];
    if paced {
        args.extend(["--pace-ms", "300"]);
    }
    outflow(&args)
}

/// Cases run this many at a time, each with its own topics.
const PARALLEL: usize = 4;

#[test]
fn the_bad_input_catalogue() {
    let started = std::time::Instant::now();
    let cases = cases();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(case) = cases.get(index) else {
                    return;
                };
                if let Err(failure) = check(case) {
                    failures.lock().unwrap().push(failure);
                }
            });
        }
    });
    eprintln!(
        "catalogue: {} cases in {:.1?}",
        cases.len(),
        started.elapsed()
    );
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Runs one case: the feed, the exit status, the error and warning lines, the topics.
fn check(case: &Case) -> Result<(), String> {
    let setup = setup(case.sinks, "");
    let mut feed_bytes = Vec::new();
    for line in PREFIX {
        feed_bytes.extend_from_slice(line.as_bytes());
        feed_bytes.push(b'\n');
    }
    for line in &case.lines {
        feed_bytes.extend_from_slice(line);
        feed_bytes.push(b'\n');
    }
    // The feed ends complete: a run that does not fail writes every time of it.
    for line in [LAST, END] {
        feed_bytes.extend_from_slice(line.as_bytes());
        feed_bytes.push(b'\n');
    }
    let feed = setup.dir.path().join("feed.jsonl");
    std::fs::write(&feed, &feed_bytes).unwrap();
    let feed = feed.display().to_string();
    let case_started = std::time::Instant::now();
    let output = run(&setup, &feed, case.paced);
    let stderr = text(&output.stderr);
    let lines = stderr_lines(&stderr);
    let mut problems = Vec::new();
    if output.status.code() != Some(case.exit) {
        problems.push(format!(
            "exit status {:?}, expected {}",
            output.status.code(),
            case.exit
        ));
    }
    if let Some(error) = case.error {
        let expected = setup.fill(error, &feed);
        let found: Vec<&String> = lines.iter().filter(|l| l.contains("error: ")).collect();
        if found.len() != 1 || *found[0] != expected {
            problems.push(format!("error lines {found:#?}, expected\n{expected}"));
        }
    }
    for warning in &case.warnings {
        let expected = setup.fill(warning, &feed);
        let count = lines.iter().filter(|l| **l == expected).count();
        if count != 1 {
            problems.push(format!(
                "warning seen {count} times, expected once:\n{expected}"
            ));
        }
        // The same warning is a note in the sink's status: `WARN sink NAME: note`.
        let (sink, note) = expected["WARN sink ".len()..].split_once(": ").unwrap();
        let status: serde_json::Value =
            serde_json::from_slice(&std::fs::read(setup.status_file()).unwrap()).unwrap();
        let notes: Vec<&serde_json::Value> = status["sinks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["name"] == sink)
            .flat_map(|s| s["notes"].as_array().unwrap())
            .collect();
        if notes.iter().filter(|n| **n == note).count() != 1 {
            problems.push(format!(
                "the status notes of {sink} are {notes:?}, expected {note:?} once"
            ));
        }
    }
    for &sink in case.sinks {
        let mut expected = time_one(sink);
        if let Some((_, more)) = case.beyond_time_one.iter().find(|(s, _)| *s == sink) {
            expected.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        }
        let held = holds(setup.topic(sink));
        if held != expected {
            problems.push(format!("{sink:?} holds {held:#?}, expected {expected:#?}"));
        }
    }
    eprintln!(
        "{:<48} exit {:?} in {:.1?}",
        case.name,
        output.status.code(),
        case_started.elapsed()
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}:\n  {}\n  stderr:\n{stderr}",
            case.name,
            problems.join("\n  ")
        ))
    }
}

/// Statements that cannot run: the error names the option (or hides the secret), the exit
/// status is 1 and no topic is created.
#[test]
fn bad_statements_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique_name("bad-options");
    let bootstrap = Kafka::shared().bootstrap();
    let feed = write_file(&dir, "feed.jsonl", &(PREFIX.join("\n") + "\n"));
    let cases = [
        (
            "unknown option",
            format!(
                "CREATE CONNECTION k TO KAFKA (BROKER '{bootstrap}', SECURITY PROTOCOL PLAINTEXT);
CREATE TABLE t (id bigint PRIMARY KEY);
CREATE SINK s FROM t INTO KAFKA CONNECTION k (TOPIC '{topic}', TOPICS 'other') KEY (id) FORMAT JSON ENVELOPE UPSERT;"
            ),
            "{file}:3:{col}: error: unknown KAFKA CONNECTION option: TOPICS",
        ),
        (
            "unquoted secret",
            format!(
                "CREATE SECRET pw AS Hunter2;
CREATE CONNECTION k TO KAFKA (BROKER '{bootstrap}', SECURITY PROTOCOL SASL_PLAINTEXT, SASL MECHANISMS 'PLAIN', SASL USERNAME 'u', SASL PASSWORD SECRET pw);"
            ),
            "{file}:1:21: error: CREATE SECRET pw: the secret's value must be a string literal (the text written is not shown)",
        ),
    ];
    for (name, sql, expected) in cases {
        let file = write_file(&dir, "statements.sql", &sql);
        let output = outflow(&["run", &file, "--feed", &feed]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        let column = sql
            .lines()
            .nth(2)
            .and_then(|l| l.find("TOPICS"))
            .map_or(0, |c| c + 1);
        let expected = expected
            .replace("{file}", &file)
            .replace("{col}", &column.to_string());
        assert_eq!(
            stderr.lines().next(),
            Some(expected.as_str()),
            "{name}: {stderr}"
        );
        let everything = format!("{stderr}{}", text(&output.stdout));
        assert!(!everything.contains("Hunter2"), "{name}: {everything}");
        assert!(
            committed::partition_count(&bootstrap, &topic).is_err(),
            "{name}: the topic {topic} was created"
        );
    }
}

/// The feed's snapshot is time 0 unless `--snapshot-time` says otherwise: `SNAPSHOT = false`
/// then skips the times up to it, and writes what follows.
#[test]
fn snapshot_false_skips_the_feed_snapshot_time() {
    let setup = setup(&[Sink::UUpsert], " WITH (SNAPSHOT = false)");
    let mut lines: Vec<String> = PREFIX.iter().map(|l| l.to_string()).collect();
    lines.push(r#"{"table":"u","time":3,"row":{"k":2,"val":"two"}}"#.to_string());
    lines.push(END.to_string());
    let feed = write_file(&setup.dir, "feed.jsonl", &(lines.join("\n") + "\n"));
    let output = outflow(&[
        "run",
        &setup.statements,
        "--feed",
        &feed,
        "--commit-interval-ms",
        "20",
        "--snapshot-time",
        "1",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        holds(setup.topic(Sink::UUpsert)),
        vec![(
            r#"{"k":2}"#.to_string(),
            r#"{"k":2,"val":"two"}"#.to_string()
        )]
    );
    let help = outflow(&["run", "--help"]);
    let help = text(&help.stdout);
    assert!(
        help.contains(
            "The feed's snapshot is its updates at times up to --snapshot-time (default 0)"
        ),
        "{help}"
    );
}
