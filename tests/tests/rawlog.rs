//! The audit reader against logs written by librdkafka on the test broker: open transactions,
//! interleaved producers, the abort a fencing producer forces, and every compression codec.

use std::time::Duration;

use outflow_tests::broker::{create_topic, shared_broker, unique_name};
use outflow_tests::rawlog::{self, MarkerKind, Outcome, RawLogError, TopicLog};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const TIMEOUT: Duration = Duration::from_secs(30);

type TestProducer = ThreadedProducer<DefaultProducerContext>;

fn producer(bootstrap: &str, settings: &[(&str, &str)]) -> TestProducer {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in settings {
        config.set(*key, *value);
    }
    config
        .create()
        .unwrap_or_else(|e| panic!("producer with {settings:?}: {e}"))
}

fn transactional(bootstrap: &str, transactional_id: &str) -> TestProducer {
    let producer = producer(bootstrap, &[("transactional.id", transactional_id)]);
    producer
        .init_transactions(TIMEOUT)
        .unwrap_or_else(|e| panic!("init_transactions of {transactional_id}: {e}"));
    producer
}

fn send(producer: &TestProducer, topic: &str, partition: i32, key: &str) {
    producer
        .send(
            BaseRecord::to(topic)
                .partition(partition)
                .key(key)
                .payload(key),
        )
        .unwrap_or_else(|(e, _)| panic!("sending {key} to {topic}/{partition}: {e}"));
}

fn flush(producer: &TestProducer) {
    producer.flush(TIMEOUT).expect("flush");
}

fn read(topic: &str) -> TopicLog {
    rawlog::read_topic(&shared_broker().bootstrap(), topic)
        .unwrap_or_else(|e| panic!("reading {topic}: {e}"))
}

/// Keys of the committed view of one partition, in offset order.
fn committed_keys(log: &TopicLog, partition: usize) -> Vec<String> {
    log.partitions[partition]
        .committed()
        .map(|r| String::from_utf8(r.key.clone().unwrap()).unwrap())
        .collect()
}

/// Keys of one partition's data records with the given outcome, in offset order.
fn keys_with(log: &TopicLog, partition: usize, outcome: Outcome) -> Vec<String> {
    log.partitions[partition]
        .records
        .iter()
        .filter(|r| r.outcome == outcome)
        .map(|r| String::from_utf8(r.record.key.clone().unwrap()).unwrap())
        .collect()
}

#[test]
fn an_open_transaction_is_invisible_until_it_commits() {
    let bootstrap = shared_broker().bootstrap();
    let topic = unique_name("raw-open");
    create_topic(&bootstrap, &topic, 1, &[]);
    let producer = transactional(&bootstrap, &unique_name("raw-open-tx"));

    producer.begin_transaction().unwrap();
    send(&producer, &topic, 0, "before");
    producer.commit_transaction(TIMEOUT).unwrap();

    producer.begin_transaction().unwrap();
    send(&producer, &topic, 0, "pending-1");
    send(&producer, &topic, 0, "pending-2");
    flush(&producer);

    let open = read(&topic);
    assert_eq!(committed_keys(&open, 0), ["before"]);
    assert_eq!(
        keys_with(&open, 0, Outcome::Open),
        ["pending-1", "pending-2"]
    );
    let partition = &open.partitions[0];
    let first_pending = partition.records[1].record.offset;
    assert_eq!(partition.last_stable_offset(), first_pending);
    assert!(partition.high_watermark > first_pending);
    assert_eq!(partition.visible_now().count(), 1);

    producer.commit_transaction(TIMEOUT).unwrap();
    let committed = read(&topic);
    assert_eq!(
        committed_keys(&committed, 0),
        ["before", "pending-1", "pending-2"]
    );
    assert!(committed.open().is_empty());
    let partition = &committed.partitions[0];
    assert_eq!(partition.last_stable_offset(), partition.high_watermark);
    let kinds: Vec<MarkerKind> = partition.markers.iter().map(|m| m.kind).collect();
    assert_eq!(kinds, [MarkerKind::Commit, MarkerKind::Commit]);
}

#[test]
fn interleaved_transactions_of_two_producers_resolve_by_producer_id() {
    let bootstrap = shared_broker().bootstrap();
    let topic = unique_name("raw-interleaved");
    create_topic(&bootstrap, &topic, 2, &[]);
    let x = transactional(&bootstrap, &unique_name("raw-x"));
    let y = transactional(&bootstrap, &unique_name("raw-y"));
    let plain = producer(&bootstrap, &[("enable.idempotence", "true")]);

    x.begin_transaction().unwrap();
    y.begin_transaction().unwrap();
    send(&x, &topic, 0, "x1");
    flush(&x);
    send(&y, &topic, 0, "y1");
    send(&y, &topic, 1, "y2");
    flush(&y);
    send(&plain, &topic, 0, "n1");
    flush(&plain);
    send(&x, &topic, 0, "x2");
    send(&x, &topic, 1, "x3");
    flush(&x);
    y.abort_transaction(TIMEOUT).unwrap();
    send(&plain, &topic, 0, "n2");
    flush(&plain);
    x.commit_transaction(TIMEOUT).unwrap();
    y.begin_transaction().unwrap();
    send(&y, &topic, 1, "y3");
    y.commit_transaction(TIMEOUT).unwrap();

    let log = read(&topic);
    assert_eq!(committed_keys(&log, 0), ["x1", "n1", "x2", "n2"]);
    assert_eq!(committed_keys(&log, 1), ["x3", "y3"]);
    assert_eq!(keys_with(&log, 0, Outcome::Aborted), ["y1"]);
    assert_eq!(keys_with(&log, 1, Outcome::Aborted), ["y2"]);
    assert_eq!(keys_with(&log, 0, Outcome::NonTransactional), ["n1", "n2"]);
    assert!(log.open().is_empty());

    let producer_of = |key: &str| {
        log.raw()
            .into_iter()
            .find(|r| r.record.key.as_deref() == Some(key.as_bytes()))
            .unwrap_or_else(|| panic!("record {key} missing from {topic}"))
            .producer_id
    };
    let (x_id, y_id) = (producer_of("x1"), producer_of("y1"));
    assert_ne!(x_id, y_id);
    let markers: Vec<(i32, i64, MarkerKind)> = log
        .markers()
        .iter()
        .map(|m| (m.partition, m.producer_id, m.kind))
        .collect();
    assert_eq!(
        markers,
        [
            (0, y_id, MarkerKind::Abort),
            (0, x_id, MarkerKind::Commit),
            (1, y_id, MarkerKind::Abort),
            (1, x_id, MarkerKind::Commit),
            (1, y_id, MarkerKind::Commit),
        ]
    );
}

#[test]
fn a_fencing_producer_aborts_its_predecessors_open_transaction() {
    let bootstrap = shared_broker().bootstrap();
    let topic = unique_name("raw-fence");
    create_topic(&bootstrap, &topic, 2, &[]);
    let transactional_id = unique_name("raw-fence-tx");

    let zombie = transactional(&bootstrap, &transactional_id);
    zombie.begin_transaction().unwrap();
    send(&zombie, &topic, 0, "zombie-0");
    send(&zombie, &topic, 1, "zombie-1");
    flush(&zombie);
    assert_eq!(read(&topic).open().len(), 2);

    let successor = transactional(&bootstrap, &transactional_id);
    let fenced = read(&topic);
    assert_eq!(keys_with(&fenced, 0, Outcome::Aborted), ["zombie-0"]);
    assert_eq!(keys_with(&fenced, 1, Outcome::Aborted), ["zombie-1"]);
    assert!(fenced.committed().is_empty());
    let zombie_id = fenced.partitions[0].records[0].producer_id;
    for partition in &fenced.partitions {
        let kinds: Vec<(i64, MarkerKind)> = partition
            .markers
            .iter()
            .map(|m| (m.producer_id, m.kind))
            .collect();
        assert_eq!(
            kinds,
            [(zombie_id, MarkerKind::Abort)],
            "partition {}",
            partition.partition
        );
    }

    successor.begin_transaction().unwrap();
    send(&successor, &topic, 0, "successor");
    successor.commit_transaction(TIMEOUT).unwrap();

    // The zombie must not get anything in. Tansu fails its produce with ProducerFenced but
    // answers its EndTxn by closing the connection, so the commit ends in a timeout here,
    // where Kafka would report fencing.
    let _ = zombie.send(
        BaseRecord::to(&topic)
            .partition(1)
            .key("late")
            .payload("late"),
    );
    assert!(
        zombie.commit_transaction(Duration::from_secs(5)).is_err(),
        "a fenced producer committed"
    );

    let log = read(&topic);
    assert_eq!(committed_keys(&log, 0), ["successor"]);
    assert!(committed_keys(&log, 1).is_empty());
    assert!(
        log.raw()
            .iter()
            .all(|r| r.record.key.as_deref() != Some(b"late".as_slice())),
        "the fenced producer's late record reached the log of {topic}"
    );
    let successor_record = &log.partitions[0].records[1];
    assert_eq!(
        successor_record.producer_id, zombie_id,
        "fencing keeps the producer id"
    );
    assert!(successor_record.producer_epoch > fenced.partitions[0].records[0].producer_epoch);
}

#[test]
fn batches_of_every_codec_decode() {
    let bootstrap = shared_broker().bootstrap();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = unique_name(&format!("raw-{codec}"));
        create_topic(&bootstrap, &topic, 1, &[]);
        let producer = producer(
            &bootstrap,
            &[
                ("transactional.id", &unique_name(&format!("raw-{codec}-tx"))),
                ("compression.type", codec),
                ("linger.ms", "50"),
            ],
        );
        producer.init_transactions(TIMEOUT).unwrap();
        producer.begin_transaction().unwrap();
        // Repetitive values so every codec actually shrinks the batch.
        let keys: Vec<String> = (0..200).map(|i| format!("{codec}-{i:03}")).collect();
        for key in &keys {
            producer
                .send(
                    BaseRecord::to(&topic)
                        .partition(0)
                        .key(key)
                        .payload(&"abc".repeat(40)),
                )
                .unwrap_or_else(|(e, _)| panic!("sending {key}: {e}"));
        }
        producer.commit_transaction(TIMEOUT).unwrap();

        let log = read(&topic);
        assert_eq!(committed_keys(&log, 0), keys, "codec {codec}");
        let offsets: Vec<i64> = log.partitions[0].committed().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..200).collect::<Vec<i64>>(), "codec {codec}");
        assert_eq!(
            log.partitions[0].high_watermark, 201,
            "codec {codec}: data and one marker"
        );
    }
}

#[test]
fn an_empty_topic_and_a_missing_topic() {
    let bootstrap = shared_broker().bootstrap();
    let topic = unique_name("raw-empty");
    create_topic(&bootstrap, &topic, 3, &[]);
    let log = read(&topic);
    assert_eq!(log.partitions.len(), 3);
    assert_eq!(log.committed_counts(), [0, 0, 0]);
    assert!(log
        .partitions
        .iter()
        .all(|p| p.high_watermark == 0 && p.markers.is_empty()));

    let missing = unique_name("raw-missing");
    match rawlog::read_topic(&bootstrap, &missing) {
        Err(RawLogError::UnknownTopic { topic, .. }) => assert_eq!(topic, missing),
        other => panic!("reading missing topic {missing}: {other:?}"),
    }
}
