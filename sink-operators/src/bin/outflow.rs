//! `outflow`: the command-line front end. `outflow check FILE` validates a file of
//! `CREATE …` statements and prints the normalized spec of every object it creates.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use outflow::statement::{parse_statements, Catalog};

#[derive(Parser)]
#[command(name = "outflow", version, about = "Stream differential dataflow collections into Kafka, exactly once")]
struct Cli {
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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Check { file, pretty } => check(&file, pretty),
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
                    Some(p) => eprintln!("{name}:{}:{}: notice: {}", p.line, p.column, notice.message),
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
        let json = if pretty { serde_json::to_string_pretty(&object) } else { serde_json::to_string(&object) };
        let written = json.map_err(|e| e.to_string()).and_then(|j| writeln!(out, "{j}").map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("{name}: error: cannot print the spec of {}: {e}", object.name());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
