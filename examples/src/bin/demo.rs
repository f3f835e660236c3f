//! `just demo`: the guide's e-commerce order pipeline on 2 workers, writing an UPSERT and a
//! DEBEZIUM topic on an embedded broker (or the one `--broker` names), then reading both topics
//! back and printing a few messages, the committed frontier and each sink's statistics.

use clap::Parser;
use outflow_examples::orders::{run, OrderOptions};

#[derive(Parser)]
#[command(about = "The order pipeline of the Kafka sinks guide, end to end")]
struct Args {
    /// `host:port` of a Kafka broker; without it, an embedded broker runs in this process.
    #[arg(long)]
    broker: Option<String>,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Orders in the snapshot.
    #[arg(long, default_value_t = 200)]
    orders: usize,
    /// Rounds of changes after the snapshot.
    #[arg(long, default_value_t = 5)]
    rounds: u64,
}

fn main() {
    let args = Args::parse();
    let options = OrderOptions {
        broker: args.broker,
        workers: args.workers,
        orders: args.orders,
        rounds: args.rounds,
        ..OrderOptions::default()
    };
    if let Err(error) = run(&options) {
        eprintln!("demo failed: {error}");
        std::process::exit(1);
    }
}
