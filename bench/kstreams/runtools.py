#!/usr/bin/env python3
"""Kafka-side helpers for run.sh (needs confluent-kafka).

    runtools.py prepare --bootstrap B --input T --outputs O1 O2...
        make the output topics if missing (as many partitions as the input);
        print JSON: input end offsets and the outputs' current end offsets
    runtools.py watch --bootstrap B --group G --input T --ends FILE --pid P
        sample P's VmRSS every 200 ms and the group's committed offsets on T
        every 100 ms until they reach the input's end offsets; print JSON
    runtools.py verify --bootstrap B --expect FILE --start FILE
        read the outputs from the recorded start offsets in read_committed
        mode and compare with the expected result; print JSON
    runtools.py cleanup --bootstrap B --group G [--stale-prefix P]
        delete G's internal topics (G-*), G if it is empty by now, and other
        empty groups whose id starts with P (earlier runs)
"""

import argparse
import json
import sys
import time

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def log(message):
    print(f"runtools: {message}", file=sys.stderr, flush=True)


def end_offsets(bootstrap, topic, partitions):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "kstreams-bench-runtools",
                  "enable.auto.commit": False})
    try:
        ends = {}
        for p in range(partitions):
            deadline = time.time() + 30
            while True:
                try:
                    ends[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                    break
                except KafkaException as e:
                    # A topic made a moment ago may have no leader yet; the
                    # client does not flag every such answer as retriable.
                    settling = e.args[0].code() in (KafkaError.NOT_LEADER_FOR_PARTITION,
                                                    KafkaError.LEADER_NOT_AVAILABLE,
                                                    KafkaError.UNKNOWN_TOPIC_OR_PART)
                    if time.time() > deadline or not (e.args[0].retriable() or settling):
                        raise
                    time.sleep(0.2)
        return ends
    finally:
        c.close()


def partition_count(admin, topic):
    topics = admin.list_topics(topic=topic, timeout=30).topics
    meta = topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise SystemExit(f"runtools: topic {topic} does not exist")
    return len(meta.partitions)


def prepare(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    n = partition_count(admin, args.input)
    existing = admin.list_topics(timeout=30).topics
    missing = [t for t in args.outputs if t not in existing]
    if missing:
        for topic, future in admin.create_topics([NewTopic(t, n, 1) for t in missing]).items():
            future.result()
            log(f"created topic {topic} with {n} partitions")
    out = {"input": {"topic": args.input, "ends": end_offsets(args.bootstrap, args.input, n)}, "outputs": {}}
    for topic in args.outputs:
        out["outputs"][topic] = end_offsets(args.bootstrap, topic, partition_count(admin, topic))
    print(json.dumps(out))


def rss(pid):
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, kb, _ = line.split()
                values[name[:-1]] = int(kb) * 1024
    return values


def watch(args):
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    ends = {int(p): o for p, o in json.load(open(args.ends))["input"]["ends"].items()}
    partitions = [TopicPartition(args.input, p) for p in sorted(ends)]
    request = [ConsumerGroupTopicPartitions(args.group, partitions)]
    max_rss, samples = 0, 0
    next_sample = 0.0
    deadline = time.time() + args.timeout
    last_report = time.time()
    while True:
        now = time.time()
        if now >= next_sample:
            try:
                max_rss = max(max_rss, rss(args.pid)["VmRSS"])
                samples += 1
            except (FileNotFoundError, ProcessLookupError, KeyError):
                print(json.dumps({"done": False, "reason": "the app exited", "max_rss_bytes": max_rss}))
                return 1
            next_sample = now + 0.2
        committed = {}
        try:
            result = admin.list_consumer_group_offsets(request, request_timeout=5)[args.group].result()
            committed = {tp.partition: tp.offset for tp in result.topic_partitions if tp.error is None}
        except Exception as e:  # the group does not exist until the app joins
            if time.time() - last_report > 5:
                log(f"committed offsets not readable yet: {e}")
        lag = sum(max(end - max(committed.get(p, 0), 0), 0) for p, end in ends.items())
        if lag == 0:
            done = time.time()
            try:
                max_rss = max(max_rss, rss(args.pid)["VmRSS"])
                samples += 1
            except (FileNotFoundError, KeyError):
                pass
            print(json.dumps({"done": True, "done_ms": int(done * 1000), "max_rss_bytes": max_rss,
                              "rss_samples": samples}))
            return 0
        if time.time() - last_report > 5:
            log(f"lag {lag} of {sum(ends.values())}")
            last_report = time.time()
        if time.time() > deadline:
            print(json.dumps({"done": False, "reason": f"lag still {lag} after {args.timeout} s",
                              "max_rss_bytes": max_rss}))
            return 1
        time.sleep(max(0.0, min(0.1, next_sample - time.time())))


def read_committed(bootstrap, topic, start):
    """All committed records of topic from the start offsets: list of (key, value, headers)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "kstreams-bench-runtools",
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "enable.partition.eof": True})
    records = []
    try:
        parts = [TopicPartition(topic, int(p), int(o)) for p, o in start.items()]
        c.assign(parts)
        pending = {tp.partition for tp in parts}
        idle_since = time.time()
        while pending:
            msgs = c.consume(10_000, 1.0)
            if not msgs and time.time() - idle_since > 60:
                raise SystemExit(f"runtools: no end of {topic} partitions {sorted(pending)} within 60 s")
            for m in msgs:
                idle_since = time.time()
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(m.partition())
                        continue
                    raise SystemExit(f"runtools: reading {topic}: {m.error()}")
                records.append((m.key(), m.value(), m.headers() or []))
    finally:
        c.close()
    return records


def verify(args):
    expect = json.load(open(args.expect, encoding="utf-8"))
    start = json.load(open(args.start))
    out = {}
    ok = True

    summaries = read_committed(args.bootstrap, args.summaries, start["outputs"][args.summaries])
    last, last_raw = {}, {}
    bad_json = 0
    for key, value, _ in summaries:
        try:
            k = key.decode("utf-8")
            last[k] = json.loads(value.decode("utf-8"))
            last_raw[k] = value
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            bad_json += 1
    want = expect["summaries"]
    mismatched = [k for k in want if last.get(k) != want[k]]
    unexpected = [k for k in last if k not in want]
    # Same field order as the reference's to_object, too.
    order_ok = all(list(last[k]) == list(want[k]) for k in want if k in last)
    out["summary_records"] = len(summaries)
    out["summary_records_expected"] = expect["summary_records"]
    out["claims_expected"] = len(want)
    out["claims_mismatched"] = len(mismatched)
    out["claims_unexpected"] = len(unexpected)
    if mismatched:
        k = mismatched[0]
        out["first_mismatch"] = {"key": k, "expected": want[k], "got": last.get(k)}
    ok &= (not mismatched and not unexpected and not bad_json and order_ok
           and len(summaries) == expect["summary_records"])
    out["field_order_ok"] = order_ok
    # Compact JSON as serde_json writes it (Python's compact form with
    # ensure_ascii off escapes the same characters the same way).
    out["byte_identical"] = sum(
        1 for k in want
        if last_raw.get(k) == json.dumps(want[k], separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    out["bad_json"] = bad_json

    routed = read_committed(args.bootstrap, args.routed, start["outputs"][args.routed])
    tagged = sum(1 for _, _, h in routed if ("switchyard-route", b"finalized-statuses") in h
                 and any(name == "ce_type" and v == b"claim.status-changed" for name, v in h))
    out["routed_records"] = len(routed)
    out["routed_records_expected"] = expect["routed_records"]
    ok &= len(routed) == expect["routed_records"] and tagged == len(routed)
    out["correct"] = bool(ok)
    print(json.dumps(out))
    return 0 if ok else 1


def cleanup(args):
    """Deletes the run's internal topics, and the consumer groups of earlier
    runs (same prefix) that have emptied by now. The run's own group usually
    cannot go yet: Kafka Streams does not leave the group on close, so the
    broker keeps the member until its session times out (45 s)."""
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    internal = [t for t in admin.list_topics(timeout=30).topics if t.startswith(args.group + "-")]
    if internal:
        for topic, future in admin.delete_topics(internal, operation_timeout=30).items():
            try:
                future.result()
            except Exception as e:
                log(f"delete topic {topic}: {e}")
    groups = [args.group]
    if args.stale_prefix:
        listed = admin.list_consumer_groups(request_timeout=30).result().valid
        groups += [g.group_id for g in listed
                   if g.group_id.startswith(args.stale_prefix) and g.group_id != args.group]
    deleted = []
    for group, future in admin.delete_consumer_groups(groups, request_timeout=30).items():
        try:
            future.result()
            deleted.append(group)
        except Exception as e:
            if group == args.group:
                log(f"group {group} stays until its session expires ({e.args[0].name()})")
    log(f"deleted {len(internal)} internal topic(s) and {len(deleted)} group(s)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--outputs", nargs="+", required=True)
    p = sub.add_parser("watch")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--ends", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--timeout", type=float, default=1800)
    p = sub.add_parser("verify")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--expect", required=True)
    p.add_argument("--start", required=True)
    p.add_argument("--summaries", default="bench.summaries")
    p.add_argument("--routed", default="bench.routed")
    p = sub.add_parser("cleanup")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--stale-prefix", help="also delete empty groups whose id starts with this")
    args = ap.parse_args()
    return {"prepare": prepare, "watch": watch, "verify": verify, "cleanup": cleanup}[args.command](args) or 0


if __name__ == "__main__":
    sys.exit(main())
