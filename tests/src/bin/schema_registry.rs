//! Runs the test schema registry (a Confluent-API server) on a free loopback port until killed,
//! for trying `outflow run` with Avro sinks by hand: `just registry` prints its URL.

fn main() {
    let registry = outflow_tests::registry::SchemaRegistry::start();
    println!("schema registry at {}", registry.url());
    loop {
        std::thread::park();
    }
}
