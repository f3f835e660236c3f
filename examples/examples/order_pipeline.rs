//! The guide's e-commerce order pipeline: orders joined with order_items, grouped into
//! order_summaries, sunk to `order_updates` (ENVELOPE UPSERT) and `order_changes`
//! (ENVELOPE DEBEZIUM). The dataflow is in `outflow_examples::orders`; `just demo` runs it too.
//!
//! `cargo run -p outflow-examples --example order_pipeline -- [--broker HOST:PORT] [--seed N]`

use clap::Parser;
use outflow_examples::orders::{run, OrderOptions};

#[derive(Parser)]
struct Args {
    /// `host:port` of a Kafka broker; without it, an embedded broker runs in this process.
    #[arg(long)]
    broker: Option<String>,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[arg(long, default_value_t = 1000)]
    orders: usize,
    #[arg(long, default_value_t = 10)]
    rounds: u64,
    /// The same seed writes the same history: run it twice against one broker and the second
    /// run resumes from the progress topic and writes nothing again.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Messages of each topic to print.
    #[arg(long, default_value_t = 10)]
    show: usize,
}

fn main() {
    let args = Args::parse();
    let options = OrderOptions {
        broker: args.broker,
        workers: args.workers,
        orders: args.orders,
        rounds: args.rounds,
        seed: args.seed,
        show: args.show,
    };
    if let Err(error) = run(&options) {
        eprintln!("order pipeline failed: {error}");
        std::process::exit(1);
    }
}
