use std::time::Duration;
use outflow_tests::broker::{block_on, shared_broker, unique_name};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

#[test]
fn probe() {
    let b = shared_broker().bootstrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &b).set("allow.auto.create.topics","false").create().unwrap();
    let t = unique_name("probe");
    let nt = NewTopic::new(&t, -1, TopicReplication::Fixed(-1));
    let r = block_on(admin.create_topics([&nt], &AdminOptions::new()));
    eprintln!("create -1: {r:?}");
    let md = admin.inner().fetch_metadata(Some(&t), Duration::from_secs(10));
    match md { Ok(md) => for tp in md.topics() { eprintln!("topic {} err {:?} parts {}", tp.name(), tp.error(), tp.partitions().len()); for p in tp.partitions() { eprintln!("  p{} leader {} replicas {:?} err {:?}", p.id(), p.leader(), p.replicas(), p.error()); } }, Err(e) => eprintln!("md err {e}") }
    let md = admin.inner().fetch_metadata(Some(&unique_name("missing")), Duration::from_secs(10));
    match md { Ok(md) => for tp in md.topics() { eprintln!("missing topic {} err {:?} parts {}", tp.name(), tp.error(), tp.partitions().len()); }, Err(e) => eprintln!("md err {e}") }
    let r = block_on(admin.describe_configs([&ResourceSpecifier::Broker(111), &ResourceSpecifier::Topic(&t)], &AdminOptions::new().request_timeout(Some(Duration::from_secs(5)))));
    eprintln!("describe: {r:?}");
    let md = admin.inner().fetch_metadata(None, Duration::from_secs(10)).unwrap();
    for br in md.brokers() { eprintln!("broker {} {}:{}", br.id(), br.host(), br.port()); }
    let c: Result<BaseConsumer, _> = ClientConfig::new().set("bootstrap.servers", &b).create();
    eprintln!("consumer without group: {:?}", c.is_ok());
    let c = c.unwrap();
    eprintln!("gm none: {:?}", c.group_metadata().is_none());
}
