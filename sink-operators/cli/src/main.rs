//! `outflow`: the command-line front end. `outflow check FILE` validates a file of
//! `CREATE …` statements and prints the normalized spec of every object it creates;
//! `outflow run FILE` runs its sinks over a change feed of its tables; `outflow read FILE
//! --sink NAME` prints what a sink's topic holds at its committed frontier; `outflow txn list`
//! and `outflow txn abort` show and end the transactions of a sink's transactional ids.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand};
use outflow::statement::{parse_statements, Catalog};

mod explain;
mod feed;
mod observe;
mod read;
mod run;
mod txn;

use read::{read_sink, ReadOptions};
use run::{run, FeedSource, RunError, RunOptions, RunPlan};

/// The sink allocates for every message and frees a committed transaction's messages at once;
/// glibc's malloc spends much of a worker's time there, jemalloc little. The `outflow` library
/// leaves the choice to the program that uses it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A C string that jemalloc reads at startup.
#[repr(transparent)]
struct MallocConf(*const std::ffi::c_char);

// SAFETY: the pointer is to a string literal, never written.
unsafe impl Sync for MallocConf {}

/// jemalloc's options: pages freed go back to the system over 50 ms once they fall idle,
/// returned by a background thread, rather than over jemalloc's default 10 s. Sealing a large
/// snapshot frees the batcher's sorted chain while the batch fills; with the default those
/// pages stay resident beside the batch (a 5 M-row snapshot peaked at 1.40x its arrangement,
/// 1.19-1.28x with this). Returning them at once (`dirty_decay_ms:0`) cost the sink a third of
/// its throughput.
#[allow(non_upper_case_globals)]
#[no_mangle]
static malloc_conf: MallocConf = MallocConf(c"background_thread:true,dirty_decay_ms:50".as_ptr());

#[derive(Parser)]
#[command(
    name = "outflow",
    version,
    about = "Stream differential dataflow collections into Kafka, exactly once"
)]
struct Cli {
    /// Log more: -v for what the sinks do, -vv for the details. RUST_LOG overrides it.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and validate a file of CREATE statements; print each object's spec as a line of
    /// JSON (secrets redacted), or the first error as FILE:LINE:COL: error: …
    Check {
        /// The statements file.
        file: PathBuf,
        /// Indent the JSON, one document per object.
        #[arg(long)]
        pretty: bool,
    },
    /// Run every sink of the statements file over a change feed of its tables (JSON lines
    /// `{"table", "time", "diff", "row"}` and `{"advance": t}`), until every sink has committed
    /// every time the feed completed: the times before its last one. A time is complete once a
    /// later line (an update at a later time, or `{"advance": t}` past it) follows it, so end a
    /// finished feed with an advance; a feed that ends with updates at its last time leaves
    /// them unwritten and fails, saying so. The end of a feed never marks a sink done:
    /// restarted on the same or a longer feed, the sinks resume where they committed.
    ///
    /// The feed's snapshot is its updates at times up to --snapshot-time (default 0): they
    /// describe the state the sinks start from. A sink with SNAPSHOT = false writes nothing at
    /// those times and starts with the first later time, so with the default a feed whose
    /// first rows are at time 1 is written whole even under SNAPSHOT = false.
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Print what a sink's topic holds at its committed frontier: one JSON row per line, in
    /// key order, then a line with the frontier.
    Read {
        /// The statements file.
        file: PathBuf,
        /// The sink to read.
        #[arg(long)]
        sink: String,
        /// The broker's read_committed fetches return records of aborted transactions (Tansu):
        /// read the raw logs and apply the control batches instead.
        #[arg(long)]
        broker_shows_aborted: bool,
        /// Give up reading after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        #[command(flatten)]
        redirect: Redirect,
    },
    /// Print what a sink will do, without a broker or a registry: the Avro schemas it would
    /// register and their subjects, the topics it would create, its partitioning, its
    /// transactional ids and groups (the ACL resources), and one example message per change
    /// (insert, update, delete) made from the declared types.
    Explain {
        /// The statements file.
        file: PathBuf,
        /// The sink.
        #[arg(long)]
        sink: String,
        /// The worker count to name the transactional ids and groups for; default: the size of
        /// the sink's cluster, else 1.
        #[arg(short = 'w', long)]
        workers: Option<u32>,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        redirect: Redirect,
    },
    /// The transactions of sinks' transactional ids: list them, or abort the ones a process
    /// that is gone left open (they hold read_committed readers of the topics back until the
    /// broker's transaction timeout).
    #[command(subcommand)]
    Txn(TxnCommand),
}

#[derive(Subcommand)]
enum TxnCommand {
    /// Show each transactional id of the sinks (every worker index ever used, from the progress
    /// topic, and those the brokers list under the sink's prefix): its state, producer id and
    /// epoch, and when its open transaction began.
    List {
        /// The statements file.
        file: PathBuf,
        /// Only this sink (default: every sink of the file).
        #[arg(long)]
        sink: Option<String>,
        /// One JSON document per transactional id.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        redirect: Redirect,
    },
    /// Abort every open transaction of a sink's transactional ids, by fencing each with
    /// init_transactions. Fencing also stops a process still using the id, so this refuses
    /// unless the run's status file shows its process gone, or --force is given.
    Abort {
        /// The statements file.
        file: PathBuf,
        /// The sink.
        #[arg(long)]
        sink: String,
        /// The status file of the sink's run (`outflow run --status FILE`): the process it names
        /// must be gone (not running on this host, or the file not updated for 10 s).
        #[arg(long)]
        status: Option<PathBuf>,
        /// Abort without knowing that the sink's process is gone.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        redirect: Redirect,
    },
}

/// Local peers to use instead of the statements' connections.
#[derive(clap::Args, Clone, Default)]
struct Redirect {
    /// Use this broker (`host:port`, plaintext, no credentials) for every Kafka connection, and
    /// the brokers' default replication factors.
    #[arg(long, value_name = "HOST:PORT")]
    broker: Option<String>,
    /// Use this schema registry (no credentials) for every schema registry connection.
    #[arg(long, value_name = "URL")]
    registry: Option<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The statements file.
    file: PathBuf,
    #[command(flatten)]
    redirect: Redirect,
    /// The change feed: a file, or - for standard input (the default).
    #[arg(long, default_value = "-")]
    feed: String,
    /// Worker threads per process; default: the size of the sinks' cluster, else 1.
    #[arg(short = 'w', long)]
    workers: Option<usize>,
    /// Processes in the timely cluster (with --process and --hostfile).
    #[arg(short = 'n', long, default_value_t = 1)]
    processes: usize,
    /// This process's index in the cluster; process 0 reads the feed.
    #[arg(short = 'p', long, default_value_t = 0)]
    process: usize,
    /// A file with one host:port per line, one line per process.
    #[arg(short = 'h', long)]
    hostfile: Option<PathBuf>,
    /// The brokers' read_committed fetches return records of aborted transactions (Tansu):
    /// recovery reads the progress topic's raw log and applies the control batches itself.
    #[arg(long)]
    broker_shows_aborted: bool,
    /// How often a sink commits, in milliseconds (default 1000).
    #[arg(long)]
    commit_interval_ms: Option<u64>,
    /// The producers' transaction.timeout.ms: how long the broker lets a transaction stay open
    /// before aborting it (default 60000; the broker caps it at its
    /// transaction.max.timeout.ms). A process that dies inside a transaction holds
    /// read_committed readers back this long, unless `outflow txn abort` ends it.
    #[arg(long, value_name = "MS")]
    transaction_timeout_ms: Option<u64>,
    /// Keep a JSON file with each sink's status, history and statistics, rewritten every
    /// second and at exit.
    #[arg(long)]
    status: Option<PathBuf>,
    /// Serve the statistics in Prometheus's text format on this loopback address, e.g.
    /// 127.0.0.1:9464 or localhost:9464 (port 0 picks a free port). Each connection is answered
    /// on its own within 5 seconds; a slower client is cut off.
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<String>,
    /// The time of the feed's snapshot: updates at this time and before are the state the
    /// sinks start from, and a sink with SNAPSHOT = false skips them.
    #[arg(long, value_name = "T", default_value_t = 0)]
    snapshot_time: u64,
    /// Stop every sink of the run as soon as one fails. By default the others go on to the end
    /// of the feed, and the run exits with the failed sink's error once they are done.
    #[arg(long)]
    fail_fast: bool,
    /// Pause this many milliseconds each time the feed's time moves forward.
    #[arg(long, hide = true)]
    pace_ms: Option<u64>,
    /// Print help.
    #[arg(long, action = ArgAction::HelpLong)]
    help: Option<bool>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match cli.command {
        Command::Check { file, pretty } => check(&file, pretty),
        Command::Run(args) => run_command(args),
        Command::Read {
            file,
            sink,
            broker_shows_aborted,
            timeout_s,
            redirect,
        } => read_command(
            &file,
            &redirect,
            &sink,
            ReadOptions {
                broker_shows_aborted_records: broker_shows_aborted,
                timeout: Duration::from_secs(timeout_s),
            },
        ),
        Command::Explain {
            file,
            sink,
            workers,
            json,
            redirect,
        } => explain_command(&file, &redirect, &sink, workers, json),
        Command::Txn(TxnCommand::List {
            file,
            sink,
            json,
            redirect,
        }) => txn_list_command(&file, &redirect, sink.as_deref(), json),
        Command::Txn(TxnCommand::Abort {
            file,
            sink,
            status,
            force,
            redirect,
        }) => txn_abort_command(&file, &redirect, &sink, status.as_deref(), force),
    }
}

fn explain_command(
    file: &PathBuf,
    redirect: &Redirect,
    sink: &str,
    workers: Option<u32>,
    json: bool,
) -> ExitCode {
    let catalog = match load_catalog(file, redirect) {
        Ok(catalog) => catalog,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let plan = match txn::sink_plans(&catalog, Some(sink)) {
        Ok(mut plans) => plans.remove(0),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cluster_workers = plan
        .spec
        .cluster
        .as_ref()
        .and_then(|c| catalog.cluster(c))
        .map(|c| c.workers as u32);
    let workers = workers.or(cluster_workers).unwrap_or(1);
    if workers == 0 {
        eprintln!("error: --workers must be at least 1");
        return ExitCode::FAILURE;
    }
    let explanation = match plan.explain(workers) {
        Ok(explanation) => explanation,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = if json {
        serde_json::to_string_pretty(&explanation).expect("an explanation serializes") + "\n"
    } else {
        explain::text(&explanation)
    };
    if let Err(e) = std::io::stdout().lock().write_all(text.as_bytes()) {
        eprintln!("error: cannot print: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn txn_list_command(
    file: &PathBuf,
    redirect: &Redirect,
    sink: Option<&str>,
    json: bool,
) -> ExitCode {
    let plans = match load_catalog(file, redirect).and_then(|c| txn::sink_plans(&c, sink)) {
        Ok(plans) => plans,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    for plan in &plans {
        let states = match outflow::transactions::list(plan) {
            Ok(states) => states,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let now = observe::now_ms();
        let written = if plan.spec.delivery == outflow::spec::DeliveryGuarantee::AtLeastOnce {
            if json {
                Ok(())
            } else {
                writeln!(
                    out,
                    "sink {}: delivers at least once, without transactions",
                    plan.spec.name
                )
            }
        } else if json {
            states.iter().try_for_each(|state| {
                writeln!(out, "{}", txn::describe_json(&plan.spec.name, state, now))
            })
        } else {
            let open = states.iter().filter(|s| s.is_open()).count();
            writeln!(
                out,
                "sink {}: {} transactional id(s), {open} with an open transaction",
                plan.spec.name,
                states.len()
            )
            .and_then(|()| {
                states
                    .iter()
                    .try_for_each(|state| writeln!(out, "  {}", txn::describe_line(state, now)))
            })
        };
        if let Err(e) = written {
            eprintln!("error: cannot print: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn txn_abort_command(
    file: &PathBuf,
    redirect: &Redirect,
    sink: &str,
    status: Option<&std::path::Path>,
    force: bool,
) -> ExitCode {
    let plan = match load_catalog(file, redirect).and_then(|c| txn::sink_plans(&c, Some(sink))) {
        Ok(mut plans) => plans.remove(0),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let states = match outflow::transactions::list(&plan) {
        Ok(states) => states,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = observe::now_ms();
    let open: Vec<_> = states.iter().filter(|s| s.is_open()).collect();
    if open.is_empty() {
        println!("sink {sink}: no transaction is open");
        return ExitCode::SUCCESS;
    }
    if !force {
        if let Err(why) = txn::process_gone(status, sink) {
            eprintln!(
                "error: sink \"{sink}\": not aborting {}: {why}",
                open.iter()
                    .map(|s| txn::describe_line(s, now))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            return ExitCode::FAILURE;
        }
    }
    let mut failed = false;
    for state in open {
        match outflow::transactions::abort(&plan, &state.transactional_id) {
            Ok(()) => println!("aborted {}", txn::describe_line(state, now)),
            Err(e) => {
                eprintln!("error: {e}");
                failed = true;
            }
        }
    }
    match outflow::transactions::list(&plan) {
        Ok(states) => {
            let now = observe::now_ms();
            for state in &states {
                println!("  now {}", txn::describe_line(state, now));
            }
        }
        Err(e) => eprintln!("error: listing again after the abort: {e}"),
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Quiet by default: warnings and errors only. Secrets never reach the log: the connection
/// types redact them in `Debug`, and client errors are redacted before they are reported.
fn init_logging(verbose: u8) {
    let default = match verbose {
        // librdkafka reports reaching a partition's end as an error; the readers ask for it.
        0 => "warn,rdkafka::client=off",
        1 => "info,rdkafka::client=off",
        _ => "debug,rdkafka=info,rdkafka::client=off",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The statements of `file` as a catalog, or the error rendered as FILE:LINE:COL.
fn load_catalog(file: &PathBuf, redirect: &Redirect) -> Result<Catalog, String> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("{name}: error: cannot read the file: {e}"))?;
    let mut catalog = Catalog::from_sql(&text).map_err(|e| e.render(&name))?;
    catalog.redirect(redirect.broker.as_deref(), redirect.registry.as_deref());
    Ok(catalog)
}

fn timely_config(args: &RunArgs, plan: &RunPlan) -> Result<timely::Config, String> {
    let threads = args.workers.or(plan.cluster_workers).unwrap_or(1);
    if threads == 0 {
        return Err("--workers must be at least 1".to_string());
    }
    if args.processes <= 1 {
        return Ok(timely::Config::process(threads));
    }
    if args.process >= args.processes {
        return Err(format!(
            "--process {} is not below --processes {}",
            args.process, args.processes
        ));
    }
    let hostfile = args
        .hostfile
        .as_ref()
        .ok_or("--processes above 1 needs --hostfile")?;
    let text = std::fs::read_to_string(hostfile)
        .map_err(|e| format!("cannot read the hostfile {}: {e}", hostfile.display()))?;
    let addresses: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(args.processes)
        .map(String::from)
        .collect();
    if addresses.len() < args.processes {
        return Err(format!(
            "the hostfile {} has {} addresses, but --processes is {}",
            hostfile.display(),
            addresses.len(),
            args.processes
        ));
    }
    Ok(timely::Config {
        communication: timely::CommunicationConfig::Cluster {
            threads,
            process: args.process,
            addresses,
            report: false,
            zerocopy: false,
        },
        worker: timely::WorkerConfig::default(),
    })
}

fn run_command(args: RunArgs) -> ExitCode {
    let catalog = match load_catalog(&args.file, &args.redirect) {
        Ok(catalog) => catalog,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut plan = match RunPlan::from_catalog(&catalog) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("{}: error: {e}", args.file.display());
            return ExitCode::FAILURE;
        }
    };
    plan.configure(
        args.broker_shows_aborted,
        args.commit_interval_ms.map(Duration::from_millis),
        args.transaction_timeout_ms.map(Duration::from_millis),
    );
    for sink in &mut plan.sinks {
        sink.as_of = args.snapshot_time;
    }
    let timely = match timely_config(&args, &plan) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let feed = if args.feed == "-" {
        FeedSource::Stdin
    } else {
        FeedSource::File(PathBuf::from(&args.feed))
    };
    let metrics = match args
        .metrics
        .as_deref()
        .map(observe::metrics_address)
        .transpose()
    {
        Ok(metrics) => metrics,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = RunOptions {
        timely,
        feed,
        pace: args.pace_ms.map(Duration::from_millis),
        status_file: args.status.clone(),
        metrics,
        progress_line: true,
        fail_fast: args.fail_fast,
    };
    match run(plan, options) {
        Ok(summary) => {
            print!("{summary}");
            ExitCode::SUCCESS
        }
        Err(RunError::Feed {
            error,
            committed_before,
            summary,
        }) => {
            print!("{summary}");
            eprintln!("{}: error: {error} (every time before {committed_before} is committed; nothing of that time or later was fed)", feed_name(&args.feed));
            ExitCode::FAILURE
        }
        Err(error @ RunError::EndedInside { .. }) => {
            if let RunError::EndedInside { summary, .. } = &error {
                print!("{summary}");
            }
            eprintln!("{}: error: {error}", feed_name(&args.feed));
            ExitCode::FAILURE
        }
        Err(error @ RunError::SinkFailed { .. }) => {
            if let RunError::SinkFailed { summary, .. } = &error {
                print!("{summary}");
            }
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn feed_name(feed: &str) -> &str {
    if feed == "-" {
        "<stdin>"
    } else {
        feed
    }
}

fn read_command(file: &PathBuf, redirect: &Redirect, sink: &str, options: ReadOptions) -> ExitCode {
    let catalog = match load_catalog(file, redirect) {
        Ok(catalog) => catalog,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match read_sink(&catalog, sink, options) {
        Ok(contents) => {
            let mut out = std::io::stdout().lock();
            let written = contents
                .rows
                .iter()
                .try_for_each(|row| writeln!(out, "{row}"))
                .and_then(|()| writeln!(out, "{}", contents.frontier_line()));
            if let Err(e) = written {
                eprintln!("error: cannot print: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(file: &PathBuf, pretty: bool) -> ExitCode {
    let name = file.display().to_string();
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{name}: error: cannot read the file: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut catalog = Catalog::new();
    let result = parse_statements(&text).and_then(|statements| {
        for statement in &statements {
            for notice in catalog.execute(statement)? {
                match notice.position {
                    Some(p) => {
                        eprintln!("{name}:{}:{}: notice: {}", p.line, p.column, notice.message)
                    }
                    None => eprintln!("{name}: notice: {}", notice.message),
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        eprintln!("{}", e.render(&name));
        return ExitCode::FAILURE;
    }
    let mut out = std::io::stdout().lock();
    for object in catalog.objects() {
        let json = if pretty {
            serde_json::to_string_pretty(&object)
        } else {
            serde_json::to_string(&object)
        };
        let written = json
            .map_err(|e| e.to_string())
            .and_then(|j| writeln!(out, "{j}").map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!(
                "{name}: error: cannot print the spec of {}: {e}",
                object.name()
            );
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
