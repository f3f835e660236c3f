//! Runs the tests' Apache Kafka broker (`outflow_tests::kafka`) on free loopback ports until
//! Ctrl-C, for trying `outflow run` and the examples against the reference broker by hand:
//! `just kafka` prints its listeners and credentials, and stops it gracefully on Ctrl-C.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use outflow_tests::kafka::{Kafka, Listener, KAFKA_VERSION, SSL_CLIENT_PRINCIPAL};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn main() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let mut kafka = Kafka::start();
    println!(
        "Apache Kafka {KAFKA_VERSION}, started in {:.1?}: bootstrap.servers={}",
        kafka.started_in(),
        kafka.bootstrap()
    );
    println!(
        "  PLAINTEXT  {}  (User:ANONYMOUS, a super user)",
        kafka.bootstrap()
    );
    println!(
        "  SASL_SSL   {}  SCRAM-SHA-256 / SCRAM-SHA-512, users: {}",
        kafka.bootstrap_for(Listener::SaslSsl),
        kafka
            .scram_users()
            .iter()
            .map(|u| format!("{}/{}", u.name, u.password))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  SSL        {}  client certificate required: {} with key {} ({SSL_CLIENT_PRINCIPAL})",
        kafka.bootstrap_for(Listener::Ssl),
        kafka.client_certificate_path().display(),
        kafka.client_key_path().display()
    );
    println!("  CA         {}", kafka.ca_path().display());
    println!(
        "  ACLs on (super users ANONYMOUS and admin); no topic auto-creation; log {}",
        kafka.log_path().display()
    );
    println!("Ctrl-C stops it.");
    while !INTERRUPTED.load(Ordering::SeqCst) {
        if !kafka.is_running() {
            eprintln!("the broker exited; its log: {}", kafka.log_path().display());
            std::process::exit(1);
        }
        thread::sleep(Duration::from_millis(200));
    }
    let took = kafka.stop();
    println!("stopped in {took:.1?}");
}
