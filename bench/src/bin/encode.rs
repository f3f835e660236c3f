//! Encoding throughput: Outflow's JSON and Avro encoders on a 10-column row of mixed types,
//! next to a bare `serde_json::to_writer` of an equivalent derived struct over the same data,
//! in the same run.
//!
//! The serde struct gets its timestamp and uuid as ready-made strings and its numeric as an
//! `f64`, so it does less work than the encoders (which format both and write the numeric
//! exactly); the ratio is therefore a conservative one. The encoders' figures include the
//! `outflow-time` header each message carries; all figures count the bytes of key and value.
//!
//! `cargo run --release -p outflow-bench --bin encode [-- --messages N --rounds R]`
//!
//! `--only NAME` runs one measurement (`serde`, `json`, `avro`, `json-keyed`, `avro-keyed`),
//! for an instruction count of that path alone: the difference between two runs under
//! `valgrind --tool=callgrind` with `--rounds 1` and `--messages` N and 2N, over N, is the
//! path's instructions per message, setup excluded.

use std::hint::black_box;
use std::time::{Duration, Instant};

use clap::Parser;
use outflow_dataflow::relation::{Datum, Numeric, RelationDesc, Row, ScalarType, Timestamp};
use outflow_dataflow::DiffPair;
use outflow_encoders::{
    AvroFormatSpec, EncodedMessage, EncoderConfig, Envelope, FormatSpec, SinkEncoder,
};
use serde::Serialize;

#[derive(Parser)]
struct Args {
    /// Messages encoded per measurement.
    #[arg(long, default_value_t = 2_000_000)]
    messages: usize,
    /// Distinct rows cycled through (all built before timing).
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Measurements per encoder; the fastest is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Run only this measurement: serde, json, avro, json-keyed or avro-keyed.
    #[arg(long, value_parser = ["serde", "json", "avro", "json-keyed", "avro-keyed"])]
    only: Option<String>,
}

const NAMES: [&str; 6] = [
    "alice",
    "bob",
    "carol-anne",
    "dmitri",
    "eve",
    "frederick the great",
];

fn desc() -> RelationDesc {
    let parse = |t: &str| ScalarType::parse(t).expect("benchmark column types parse");
    RelationDesc::empty()
        .with_column("id", ScalarType::Int64, false)
        .with_column("customer_id", ScalarType::Int32, false)
        .with_column("name", ScalarType::Text, false)
        .with_column("price", parse("numeric(10,2)"), false)
        .with_column("quantity", ScalarType::Int32, false)
        .with_column("discount", ScalarType::Float64, false)
        .with_column("active", ScalarType::Bool, false)
        .with_column("created_at", parse("timestamp"), false)
        .with_column("note", ScalarType::Text, true)
        .with_column("order_uuid", ScalarType::Uuid, false)
        .with_key(vec![0])
}

/// The serde counterpart of one row.
#[derive(Serialize)]
struct Order {
    id: i64,
    customer_id: i32,
    name: &'static str,
    price: f64,
    quantity: i32,
    discount: f64,
    active: bool,
    created_at: String,
    note: Option<&'static str>,
    order_uuid: String,
}

fn uuid_of(i: u64) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    bytes[8..].copy_from_slice(&(!i).to_be_bytes());
    bytes
}

fn data(rows: usize) -> (Vec<Row>, Vec<Order>) {
    let base = Timestamp::parse("2024-05-06 07:08:09")
        .expect("a valid timestamp")
        .0;
    let mut packed = Vec::with_capacity(rows);
    let mut structs = Vec::with_capacity(rows);
    for i in 0..rows as u64 {
        let name = NAMES[(i % NAMES.len() as u64) as usize];
        let price = Numeric::new((i % 100_000) as i128 + 1, 2);
        let created_at = Timestamp(base + i as i64 * 1_234_567);
        let note = (i % 3 != 0).then_some("leave at the door");
        let uuid = uuid_of(i);
        packed.push(Row::pack_slice(&[
            Datum::Int64(i as i64),
            Datum::Int32((i % 1000) as i32),
            Datum::String(name),
            Datum::Numeric(price),
            Datum::Int32((i % 17) as i32),
            Datum::Float64(i as f64 * 0.001),
            Datum::from_bool(i % 2 == 0),
            Datum::Timestamp(created_at),
            note.map_or(Datum::Null, Datum::String),
            Datum::Uuid(uuid),
        ]));
        let ts = created_at.to_string();
        structs.push(Order {
            id: i as i64,
            customer_id: (i % 1000) as i32,
            name,
            price: price.to_f64(),
            quantity: (i % 17) as i32,
            discount: i as f64 * 0.001,
            active: i % 2 == 0,
            created_at: ts.replacen(' ', "T", 1),
            note,
            order_uuid: outflow_dataflow::relation::values::format_uuid(&uuid),
        });
    }
    (packed, structs)
}

struct Figures {
    elapsed: Duration,
    bytes: usize,
}

/// The fastest of `rounds` runs of `messages` calls of `step`, which returns the bytes it wrote.
fn measure(messages: usize, rounds: usize, mut step: impl FnMut(usize) -> usize) -> Figures {
    let mut best: Option<Figures> = None;
    for _ in 0..rounds {
        let start = Instant::now();
        let mut bytes = 0;
        for i in 0..messages {
            bytes += step(i);
        }
        let elapsed = start.elapsed();
        if best.as_ref().is_none_or(|b| elapsed < b.elapsed) {
            best = Some(Figures { elapsed, bytes });
        }
    }
    best.expect("at least one round")
}

fn report(label: &str, messages: usize, figures: &Figures, baseline: Option<&Figures>) {
    let secs = figures.elapsed.as_secs_f64();
    let rows_per_sec = messages as f64 / secs;
    let mb_per_sec = figures.bytes as f64 / secs / 1e6;
    let ratio = baseline
        .map(|b| format!("{:.2}x serde_json rows/s", b.elapsed.as_secs_f64() / secs))
        .unwrap_or_default();
    println!(
        "{label:<34} {rows_per_sec:>12.0} rows/s {mb_per_sec:>9.1} MB/s {:>6.1} B/row   {ratio}",
        figures.bytes as f64 / messages as f64
    );
}

fn config(key: Option<Vec<usize>>, format: FormatSpec) -> EncoderConfig {
    EncoderConfig {
        desc: desc(),
        relation: "orders".to_string(),
        key_columns: key,
        envelope: Envelope::Upsert,
        debezium: Default::default(),
        sink: "orders".to_string(),
        key_format: format.clone(),
        value_format: format,
        headers_column: None,
        topic: "orders".to_string(),
    }
}

fn main() {
    let args = Args::parse();
    assert!(
        args.rows > 0 && args.messages > 0 && args.rounds > 0,
        "--rows, --messages and --rounds must be positive"
    );
    let (rows, structs) = data(args.rows);
    let keys: Vec<Row> = rows.iter().map(|r| r.project(&[0])).collect();
    let pairs: Vec<DiffPair<Row>> = rows.into_iter().map(DiffPair::insert).collect();
    let avro = FormatSpec::Avro(AvroFormatSpec {
        registry: "none".to_string(),
        key_compatibility: None,
        value_compatibility: None,
        key_subject_name_strategy: Default::default(),
        value_subject_name_strategy: Default::default(),
        key_fullname: None,
        value_fullname: None,
        null_defaults: false,
        docs: Vec::new(),
    });
    let encoder = |key: Option<Vec<usize>>, format: &FormatSpec| {
        SinkEncoder::with_schema_ids(config(key, format.clone()), Some(1), Some(2))
            .expect("the benchmark sink is valid")
    };

    println!(
        "encoding {} messages per round, best of {}, cycling over {} distinct 10-column rows",
        args.messages, args.rounds, args.rows
    );

    let wanted = |name: &str| args.only.as_deref().is_none_or(|only| only == name);
    let mut buf = Vec::with_capacity(512);
    let serde = wanted("serde").then(|| {
        measure(args.messages, args.rounds, |i| {
            buf.clear();
            serde_json::to_writer(&mut buf, black_box(&structs[i % structs.len()]))
                .expect("serializing to a Vec");
            black_box(&buf);
            buf.len()
        })
    });

    // What every encoder pays before writing a byte: walking the packed row's datums.
    let decode_only = args.only.is_none().then(|| {
        measure(args.messages, args.rounds, |i| {
            let row = pairs[i % pairs.len()]
                .after
                .as_ref()
                .expect("inserts have an after row");
            black_box(row)
                .iter()
                .map(|d| black_box(d).is_null() as usize)
                .sum::<usize>()
        })
    });

    let mut out = EncodedMessage::new();
    let mut run = |encoder: &SinkEncoder| {
        measure(args.messages, args.rounds, |i| {
            let n = i % pairs.len();
            encoder
                .encode(
                    black_box(&keys[n]),
                    black_box(&pairs[n]),
                    i as u64,
                    &mut out,
                )
                .expect("benchmark rows encode");
            black_box(&out);
            out.key().map_or(0, <[u8]>::len) + out.value().map_or(0, <[u8]>::len)
        })
    };
    let json_value = wanted("json").then(|| run(&encoder(None, &FormatSpec::Json)));
    let avro_value = wanted("avro").then(|| run(&encoder(None, &avro)));
    let json_keyed = wanted("json-keyed").then(|| run(&encoder(Some(vec![0]), &FormatSpec::Json)));
    let avro_keyed = wanted("avro-keyed").then(|| run(&encoder(Some(vec![0]), &avro)));

    if let Some(serde) = &serde {
        report("serde_json::to_writer (value)", args.messages, serde, None);
    }
    if let Some(decode_only) = &decode_only {
        println!(
            "{:<34} {:>12.0} rows/s   (packed-row datum iteration alone, included in every outflow line)",
            "row.iter() only",
            args.messages as f64 / decode_only.elapsed.as_secs_f64()
        );
    }
    for (label, figures) in [
        ("outflow JSON (value)", &json_value),
        ("outflow Avro (value)", &avro_value),
        ("outflow JSON (key + value)", &json_keyed),
        ("outflow Avro (key + value)", &avro_keyed),
    ] {
        if let Some(figures) = figures {
            report(label, args.messages, figures, serde.as_ref());
        }
    }
}
