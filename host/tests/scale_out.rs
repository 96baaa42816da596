//! Scale-out with real processes: two host instances share the routing and
//! aggregation work through Kafka consumer groups (each instance runs the
//! aggregator on two loops, `aggregation.threads = 2`); while 100,000 events
//! stream in, one is killed with SIGKILL and a third is started, then the
//! survivor is stopped past its session timeout and let go on. Every
//! routed event and every aggregate summary must appear exactly once (in
//! `read_committed` mode), and every final aggregate must equal what is
//! computed offline from the input.
//!
//! The inputs and the aggregator's summaries go to a noun of the test's
//! own (a copy of `claim`'s schemas under another name, and the
//! aggregator's `output_noun`), so the 200,000 records do not land in the
//! `claim` topic that other tests' pipelines read.
//!
//! Needs the local stack's Kafka (`scripts/stack.sh up`) and the plugins
//! that the tests crate builds (`scripts/test.sh` builds both).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Host, get, kafka, plugin_dir, send, signal, start, wait_working};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};

const EVENTS: usize = 100_000;
const CLAIMS: usize = 10_000;
const BATCH: usize = 500;
/// How long the survivor is stopped: past the loops' 10 s session timeout.
const STALL: Duration = Duration::from_secs(16);

/// One input event: claim `c`, step `n` of its life.
fn event(run: &str, noun: &str, c: usize, n: usize) -> (Value, Option<&'static str>) {
    let key = format!("{run}-{c:05}");
    let time = format!(
        "2026-01-{:02}T{:02}:{:02}:00Z",
        1 + n / 24 % 28,
        n % 24,
        c % 60
    );
    if n % 10 == 3 {
        let object = json!({"claim_id": key, "provider_id": "1234567890", "reason": "r", "received_at": "2026-01-01T00:00:00Z"});
        (
            json!({"noun": noun, "verb": "reconsideration-received", "key": key, "time": time, "object": object}),
            None,
        )
    } else {
        let category = ["A1", "P1", "F1", "F2"][(c + n) % 4];
        let object = json!({
            "claim_id": key,
            "payer": {"name": "ACME HEALTH", "id": "12345"},
            "provider": {"name": "DR SMITH", "id_qualifier": "XX", "id": "1234567890"},
            "status_category_code": category,
            "status_code": "20",
            "interchange_control_number": "000000001",
            "transaction_set": "005010X212"
        });
        (
            json!({"noun": noun, "verb": "status-changed", "key": key, "time": time, "object": object}),
            Some(category),
        )
    }
}

fn ends(consumer: &BaseConsumer, topic: &str) -> BTreeMap<i32, i64> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            (p.id(), high)
        })
        .collect()
}

fn header(message: &rdkafka::message::BorrowedMessage<'_>, name: &str) -> Option<String> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Reads committed records of a topic from `from` until `wanted` records
/// pass `keep`, or nothing arrives for `idle`.
fn read_committed(
    topic: &str,
    from: &BTreeMap<i32, i64>,
    wanted: usize,
    idle: Duration,
    mut keep: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> bool,
) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", "switchyard-scale-out-check")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for (partition, offset) in from {
        assignment
            .add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut kept = 0;
    let mut last = Instant::now();
    while kept < wanted || last.elapsed() < Duration::from_secs(3) {
        if last.elapsed() > idle {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                last = Instant::now();
                if keep(&message) {
                    kept += 1;
                }
            }
            Some(Err(error)) => panic!("cannot read {topic}: {error}"),
            None => {}
        }
    }
    kept
}

#[test]
fn routing_and_aggregation_stay_exactly_once_when_an_instance_is_killed() {
    let run = format!("so{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    let dir = std::env::temp_dir().join(format!("switchyard-scale-{run}"));
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let aggregator = format!("appeals-{run}");
    std::fs::copy(
        plugin_dir().join("claim-appeal-aggregator.wasm"),
        plugins.join(format!("{aggregator}.wasm")),
    )
    .expect("the test plugins are built (run scripts/test.sh)");
    let noun = format!("claims-{run}");
    let manifest = std::fs::read_to_string(plugin_dir().join("claim-appeal-aggregator.toml"))
        .unwrap()
        .replace(
            "name = \"claim-appeal-aggregator\"",
            &format!("name = \"{aggregator}\""),
        )
        .replace("\"claim.", &format!("\"{noun}."));
    assert!(manifest.contains(&noun), "{manifest}");
    let schemas = dir.join("schemas");
    let claim_schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/claim");
    for folder in ["claim".to_string(), noun.clone()] {
        std::fs::create_dir_all(schemas.join(&folder)).unwrap();
        for file in std::fs::read_dir(&claim_schemas).unwrap() {
            let file = file.unwrap().path();
            std::fs::copy(&file, schemas.join(&folder).join(file.file_name().unwrap())).unwrap();
        }
    }
    let schemas = schemas.display().to_string();
    std::fs::write(
        plugins.join(format!("{aggregator}.toml")),
        format!("{manifest}\nstart = \"latest\"\n[config]\noutput_noun = \"{noun}\"\n"),
    )
    .unwrap();
    let config = dir.join("host.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbootstrap_servers = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\nmax_batch_events = {BATCH}\nmax_body_bytes = 4194304\n\
             [grpc]\nlisten = \"127.0.0.1:0\"\n[registry]\nlisten = \"127.0.0.1:0\"\nschemas_dir = \"{schemas}\"\n\
             [plugins]\ndir = \"{}\"\n[routing]\ntopic = \"_switchyard_routes.{run}\"\ngroup = \"switchyard.routing.{run}\"\nstart = \"latest\"\n\
             [aggregation]\ngroup_prefix = \"switchyard.aggregate.{run}\"\nthreads = 2\n[telemetry]\notlp_endpoint = \"\"\n[log]\nformat = \"json\"\nfilter = \"warn,switchyard=info,switchyard::exactly_once=debug\"\n",
            kafka(),
            plugins.display()
        ),
    )
    .unwrap();

    let first = start(&config);
    let second = start(&config);
    wait_working(&first, &aggregator);
    wait_working(&second, &aggregator);

    let destination = format!("scale.{run}");
    let route = json!({
        "owner": "tests",
        "source": {"nouns": [noun], "verbs": ["status-changed"]},
        "filter": {"claim_id": [{"prefix": format!("{run}-")}], "status_category_code": [{"prefix": "F"}]},
        "destinations": [destination]
    });
    let (code, body) = send(
        "PUT",
        &format!("{}/v1/routes/finalized-{run}", first.http),
        &route,
    );
    assert_eq!(code, 201, "{body}");
    std::thread::sleep(Duration::from_secs(2));

    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .unwrap();
    let summary_start = ends(&probe, &noun);
    let destination_start = ends(&probe, &destination);

    // Offline: what every claim's aggregate must end as.
    let mut expected_routed = 0;
    let mut expected: HashMap<String, (usize, usize, &'static str)> = HashMap::new();
    let mut events = Vec::with_capacity(EVENTS);
    for n in 0..EVENTS / CLAIMS {
        for c in 0..CLAIMS {
            let (event, category) = event(&run, &noun, c, n);
            let entry = expected
                .entry(event["key"].as_str().unwrap().to_string())
                .or_insert((0, 0, ""));
            match category {
                Some(category) => {
                    entry.0 += 1;
                    entry.2 = category;
                    if category.starts_with('F') {
                        expected_routed += 1;
                    }
                }
                None => entry.1 += 1,
            }
            events.push(event);
        }
    }

    // Stream them in; a third of the way, kill one instance and start
    // another; two thirds of the way, stop the survivor (SIGSTOP) for
    // longer than the group's session timeout, so it is thrown out of the
    // groups while it holds open transactions, and let it go on (SIGCONT)
    // as a zombie: it must not commit for partitions it lost.
    let mut hosts = vec![first, second];
    let mut third: Option<Host> = None;
    let mut resumer = None;
    let mut published = 0;
    for (index, chunk) in events.chunks(BATCH).enumerate() {
        if index == EVENTS / BATCH / 3 {
            let killed = hosts.remove(0);
            signal(&killed, "KILL");
            third = Some(start(&config));
        }
        if index == EVENTS / BATCH * 2 / 3 {
            let third = third.as_ref().unwrap();
            wait_working(third, &aggregator);
            signal(&hosts[0], "STOP");
            let pid = hosts[0].child.id().to_string();
            resumer = Some(std::thread::spawn(move || {
                std::thread::sleep(STALL);
                let status = Command::new("kill").args(["-CONT", &pid]).status();
                assert!(status.unwrap().success());
            }));
        }
        let host = if resumer.is_some() {
            third.as_ref().unwrap()
        } else {
            &hosts[0]
        };
        let (code, body) = send(
            "POST",
            &format!("{}/v1/events:batch", host.http),
            &json!({"events": chunk}),
        );
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["failed"], 0, "{body}");
        published += chunk.len();
    }
    assert_eq!(published, EVENTS);
    resumer.unwrap().join().unwrap();
    let third = third.unwrap();
    wait_working(&third, &aggregator);

    // Every routed event exactly once.
    let mut routed: HashMap<String, usize> = HashMap::new();
    let kept = read_committed(
        &destination,
        &destination_start,
        expected_routed,
        Duration::from_secs(240),
        |message| {
            let id = header(message, "ce_id").unwrap();
            *routed.entry(id).or_default() += 1;
            true
        },
    );
    let twice = routed.values().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "{twice} events routed more than once");
    assert_eq!(kept, expected_routed, "routed events");

    // Every input folded once: one summary per input, none twice.
    let label = format!("{aggregator}@");
    let mut summarized: HashMap<String, usize> = HashMap::new();
    let kept = read_committed(
        &noun,
        &summary_start,
        EVENTS,
        Duration::from_secs(240),
        |message| {
            let ours = header(message, "switchyard-plugin").is_some_and(|p| p.starts_with(&label));
            if ours {
                let cause = header(message, "causationid").unwrap();
                *summarized.entry(cause).or_default() += 1;
            }
            ours
        },
    );
    let twice = summarized.values().filter(|n| **n > 1).count();
    assert_eq!(twice, 0, "{twice} inputs summarized more than once");
    assert_eq!(kept, EVENTS, "summaries");

    // Final aggregates equal the offline ones, read through either
    // instance.
    for (index, (key, (statuses, reconsiderations, last))) in expected.iter().enumerate() {
        let host = if index % 2 == 0 { &hosts[0] } else { &third };
        let deadline = Instant::now() + Duration::from_secs(30);
        let state = loop {
            let (code, body) = get(&format!("{}/v1/aggregates/{aggregator}/{key}", host.http));
            if code == 200 {
                break body["states"][0]["state"].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no state for {key}: {code} {body}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let history = state["history"].as_array().unwrap();
        assert_eq!(history.len(), *statuses, "{key}: {state}");
        assert_eq!(state["reconsiderations"], *reconsiderations, "{key}");
        assert_eq!(history.last().unwrap()["category"], *last, "{key}");
    }
}
