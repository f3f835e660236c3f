# Outflow's tasks. `just test` is the test command the README and CI (.ci/run) use.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Tools that .ci/setup installs (just itself, fastavro for the encoder tests) come first.
export PATH := justfile_directory() + "/.tools/venv/bin:" + env_var("PATH")

# List the recipes.
default:
    @just --list

# Every test of the workspace. Broker tests start their brokers themselves: Apache Kafka from
# the jars in .tools/kafka/libs (KAFKA_LIBS overrides; .ci/setup installs them with Maven, else
# the first test does), and Tansu from TANSU_BIN, else .tools/ (installed on first use).
test:
    cargo test --workspace

# The guide's order pipeline on 2 workers against an embedded broker (no network needed):
# an UPSERT and a DEBEZIUM topic, read back and printed with the sinks' statistics.
# `just demo --broker HOST:PORT` writes to a real broker instead.
demo *ARGS:
    cargo run -p outflow-examples --bin demo -- {{ARGS}}

# The throughput harness's standard suite (under 5 minutes on 2 cores): broker-free and
# mock-cluster scenarios, then exactly-once and at-least-once sinks on the test harness's Apache
# Kafka broker beside raw producers with the sink's settings on the same broker; prints the
# tables, writes target/bench/results.json and a plot, target/bench/results.svg. Extra flags
# pass through (`just bench --broker HOST:PORT` for a running broker, `--broker none` for no
# real broker, or `--stage sink --workers 2 …` for one scenario).
bench *ARGS:
    mkdir -p target/bench
    cargo run --release -p outflow-bench -- --json-out target/bench/results.json {{ARGS}}

# Start a Tansu broker on a free loopback port for manual use; Ctrl-C stops it.
broker:
    #!/usr/bin/env bash
    set -euo pipefail
    tansu="${TANSU_BIN:-$("{{justfile_directory()}}/.ci/install-tansu")}"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    echo "Tansu at 127.0.0.1:$port (bootstrap.servers=127.0.0.1:$port), memory storage"
    exec "$tansu" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine memory://tansu/

# Start Apache Kafka, the tests' reference broker, on free loopback ports for manual use: prints
# its PLAINTEXT, SASL_SSL (SCRAM) and SSL (client certificate) listeners; Ctrl-C stops it.
kafka:
    cargo run -q -p outflow-tests --bin kafka

# The long process-level fault run: `outflow run` killed with SIGKILL and restarted many times
# (OUTFLOW_FAULT_ROUNDS, default 30; OUTFLOW_FAULT_SEED replays a seed the run printed).
faults:
    OUTFLOW_FAULT_ROUNDS="${OUTFLOW_FAULT_ROUNDS:-30}" cargo test -p outflow-tests --test cli_faults -- --nocapture

# Start the test schema registry on a free loopback port for manual use; Ctrl-C stops it.
registry:
    cargo run -q -p outflow-tests --bin schema_registry
