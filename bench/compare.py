#!/usr/bin/env python3
"""Side-by-side benchmark: Kafka Streams and Switchyard on one broker.

Called by bench/compare.sh, which starts the broker and the Python
environment first; run that, not this:

    bash bench/compare.sh [--events N] [--claims K] [--rounds R] ...

What it does, on the broker at --bootstrap (its own, on loopback):

1. setup: creates the input topic `claim` (--partitions), starts a
   Switchyard host so its embedded registry answers, has
   bench/kstreams/generate.py write N events over K claims into `claim`
   (schemas registered at that registry) and the expected result, stops the
   host; creates every output topic; starts one more host with the plugins
   so their compiled code is in the cache, as on any restart of a deployed
   host.
2. runs, one after another, on the same input (restored between rounds):
   a   Kafka Streams routing + aggregation (bench/kstreams/run.sh)
   c   Switchyard routing only, native filter
   d   Switchyard routing only, the portal-router Wasm plugin
   e   Switchyard routing only, native, every status-changed (a baseline
       with the same events forwarded as d, to one topic)
   b   Switchyard routing + the claim appeal aggregator
   b goes last in a round; the input is checked (and rebuilt from a
   snapshot if anything was appended to `claim`) before the next round.
   Before each run it waits (up to --quiet-max s) for a moment when other
   processes on the machine use less than --quiet-share of its CPUs.
   Every run: wall time from process start until the consumer groups'
   committed offsets reach the input's end offsets (as they were before the
   run), peak RSS (VmHWM and VmRSS sampled every 200 ms), CPU time (utime +
   stime from /proc/PID/stat) at that moment; then its outputs are checked.
3. writes the report (--report, default bench/COMPARISON.md) and the raw
   results (results.json in the work folder).
"""

import argparse
import collections
import datetime as dt
import http.client
import json
import os
import pickle
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from confluent_kafka import (Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic
from fastavro import parse_schema, schemaless_reader

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
KSTREAMS = BENCH / "kstreams"
sys.path.insert(0, str(KSTREAMS))
import runtools  # noqa: E402  (read_committed, rss)

CLK_TCK = os.sysconf("SC_CLK_TCK")
AGGREGATOR = "claim-appeal-aggregator"
ROUTER = "portal-router"
# The Wasm router that makes the native filter's decision (bench/plugins).
FILTER_ROUTER = "status-category-router"
STATUS_TYPE = "claim.status-changed"
# The aggregator's summaries go to a noun of their own, as Kafka Streams'
# go to `bench.summaries`: appended to `claim`, they would be read again by
# the routing engine and the aggregator itself (which would then also wait
# on its own open transactions in the partitions it reads).
SUMMARY_NOUN = "appeal"
SUMMARY_TYPE = f"{SUMMARY_NOUN}.appeal-summary-updated"
FILTER = {"status_category_code": [{"prefix": "F"}]}
ROUTED_SY = "bench.routed.sy"        # b, c and d
ALL_SY = "bench.all.sy"              # e
PORTAL_PREFIX = "bench.portal"       # p
LABELS = {
    "a": "Kafka Streams: routing + aggregation",
    "b": "Switchyard: routing + aggregation",
    "c": "Switchyard: routing only, native filter",
    "d": "Switchyard: routing only, Wasm router with c's decision (status-category-router)",
    "e": "Switchyard: routing only, native, every status-changed (baseline for p)",
    "p": "Switchyard: routing only, Wasm router fanning out per provider (portal-router)",
}
ORDER = ["a", "c", "d", "e", "p", "b"]
SYSTEMS = "".join(ORDER)


def log(message):
    print(f"compare: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# /proc


def proc_ticks(pid):
    """utime + stime of the whole process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def vm(pid):
    """VmRSS, VmHWM, RssAnon, RssFile, RssShmem of a process, in bytes."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                values[name] = int(rest.split()[0]) * 1024
    return values


def thread_ticks(pid):
    """CPU ticks per thread name (digits folded to #, as thread pools number them)."""
    out = collections.Counter()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[re.sub(r"\d+", "#", name)] += int(fields[11]) + int(fields[12])
    return out


def system_ticks():
    """(busy, total) jiffies of all CPUs."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return total - idle, total


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append((int(entry), name))
    return found


class Background(threading.Thread):
    """Samples, every 250 ms for the life of the benchmark: the broker's CPU
    ticks and the machine's busy/total jiffies, so each run's window can be
    cut out afterwards."""

    def __init__(self, broker_pid):
        super().__init__(daemon=True)
        self.broker_pid = broker_pid
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                b = proc_ticks(self.broker_pid) if self.broker_pid else 0
            except (FileNotFoundError, ProcessLookupError):
                b = 0
            busy, total = system_ticks()
            self.samples.append((time.time(), b, busy, total))
            self.stop.wait(0.25)

    def window(self, t0, t1):
        inside = [s for s in self.samples if t0 - 0.3 <= s[0] <= t1 + 0.3]
        if len(inside) < 2:
            return {}
        first, last = inside[0], inside[-1]
        seconds = last[0] - first[0]
        total = last[3] - first[3]
        busy = last[2] - first[2]
        ncpu = os.cpu_count() or 1
        return {
            "broker_cpu_seconds": round((last[1] - first[1]) / CLK_TCK, 2),
            "machine_busy_share": round(busy / total, 3) if total else None,
            "machine_cpu_seconds": round(busy / CLK_TCK, 2),
            "window_seconds": round(seconds, 2),
            "cores": ncpu,
        }


def machine_window(ctx, start, done, own_cpu):
    """The machine during a run; `others_share` is the share of all CPUs
    used by processes other than the system under test and the broker."""
    w = ctx["background"].window(start, done)
    if w and w.get("window_seconds"):
        others = w["machine_cpu_seconds"] - own_cpu - w["broker_cpu_seconds"]
        w["others_share"] = round(max(others, 0) / (w["window_seconds"] * w["cores"]), 3)
    return w


def wait_quiet(args, ctx):
    """Waits (at most --quiet-max seconds) until, over 3 s, processes other
    than the broker use less than --quiet-share of all CPUs; returns
    (seconds waited, the share when it went on)."""
    t0 = time.time()
    while True:
        b0 = proc_ticks(args.broker_pid) if args.broker_pid else 0
        busy0, total0 = system_ticks()
        time.sleep(3)
        b1 = proc_ticks(args.broker_pid) if args.broker_pid else 0
        busy1, total1 = system_ticks()
        share = max((busy1 - busy0) - (b1 - b0), 0) / max(total1 - total0, 1)
        if share < args.quiet_share or time.time() - t0 >= args.quiet_max:
            return round(time.time() - t0, 1), round(share, 3)
        log(f"  the machine is busy ({share * 100:.0f} % of all CPUs used by other processes); waiting")


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------------------
# Kafka


class Broker:
    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def topics(self):
        return self.admin.list_topics(timeout=30).topics

    def partitions(self, topic):
        meta = self.topics().get(topic)
        if meta is None or meta.error is not None:
            return 0
        return len(meta.partitions)

    def create(self, names, partitions):
        existing = self.topics()
        missing = [n for n in names if n not in existing]
        for start in range(0, len(missing), 100):
            chunk = missing[start:start + 100]
            futures = self.admin.create_topics([NewTopic(n, partitions, 1) for n in chunk],
                                               operation_timeout=60)
            for name, future in futures.items():
                try:
                    future.result()
                except KafkaException as e:
                    if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise
        return missing

    def delete_topics(self, names):
        if not names:
            return
        for name, future in self.admin.delete_topics(list(names), operation_timeout=60).items():
            try:
                future.result()
            except KafkaException as e:
                log(f"delete topic {name}: {e.args[0].str()}")
        deadline = time.time() + 60
        while any(n in self.topics() for n in names) and time.time() < deadline:
            time.sleep(0.2)

    def delete_groups(self, groups):
        groups = [g for g in groups if g]
        if not groups:
            return []
        deleted = []
        for group, future in self.admin.delete_consumer_groups(groups, request_timeout=30).items():
            try:
                future.result()
                deleted.append(group)
            except KafkaException as e:
                if e.args[0].code() not in (KafkaError.GROUP_ID_NOT_FOUND,):
                    log(f"delete group {group}: {e.args[0].str()}")
        return deleted

    def ends(self, topic):
        n = self.partitions(topic)
        return runtools.end_offsets(self.bootstrap, topic, n) if n else {}

    def committed(self, group, topic, partitions):
        request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])]
        result = self.admin.list_consumer_group_offsets(request, request_timeout=5)[group].result()
        return {tp.partition: tp.offset for tp in result.topic_partitions if tp.error is None}


def read_records(bootstrap, topic, start, want_values=True):
    """Committed records of topic from start ({partition: offset}) to the end
    as it is now: list of (partition, key, value or None, headers)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "switchyard-compare-reader",
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "enable.partition.eof": True})
    out = []
    try:
        parts = [TopicPartition(topic, int(p), int(o)) for p, o in start.items()]
        if not parts:
            return out
        c.assign(parts)
        pending = {tp.partition for tp in parts}
        idle_since = time.time()
        while pending:
            msgs = c.consume(10_000, 1.0)
            if not msgs and time.time() - idle_since > 60:
                raise RuntimeError(f"no end of {topic} partitions {sorted(pending)} within 60 s")
            for m in msgs:
                idle_since = time.time()
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(m.partition())
                        continue
                    raise RuntimeError(f"reading {topic}: {m.error()}")
                out.append((m.partition(), m.key(), m.value() if want_values else None, m.headers() or []))
    finally:
        c.close()
    return out


def header(headers, name):
    for n, v in headers:
        if n == name:
            return v
    return None


# ---------------------------------------------------------------------------
# Switchyard hosts


class Host:
    """One `switchyard serve` process with a config file of its own."""

    def __init__(self, args, name, settings):
        self.args = args
        self.name = name
        self.dir = Path(args.work) / "hosts" / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "switchyard.toml"
        self.log_path = self.dir / "host.log"
        self.config_path.write_text(toml(settings))
        self.proc = None
        self.started = None

    def env(self):
        # Only this file configures the host: no SWITCHYARD__* or RUST_LOG
        # from the caller's environment leaks in.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SWITCHYARD__") and k not in ("RUST_LOG", "SWITCHYARD_CONFIG")}
        return env

    def effective_config(self):
        out = subprocess.run([self.args.bin, "check-config", "--config", str(self.config_path)],
                             capture_output=True, text=True, env=self.env(), cwd=self.dir)
        return out.stdout if out.returncode == 0 else out.stderr

    def start(self):
        self.log_file = open(self.log_path, "wb")
        self.started = time.time()
        self.proc = subprocess.Popen([self.args.bin, "serve", "--config", str(self.config_path)],
                                     stdout=self.log_file, stderr=subprocess.STDOUT, env=self.env(),
                                     cwd=self.dir)
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def url(self, path):
        return f"http://{self.args.http}{path}"

    def wait_ready(self, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.alive():
                raise RuntimeError(f"host {self.name} exited during start-up:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url("/healthz"), timeout=2) as r:
                    if r.status == 200:
                        return time.time()
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"host {self.name} did not answer /healthz within {timeout} s:\n{self.tail()}")

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url(path), data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def stop(self, timeout=60):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"host {self.name} did not stop within {timeout} s; killing it")
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        return self.proc.returncode

    def tail(self, n=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def log_lines(self, needle):
        try:
            return [line for line in self.log_path.read_text(errors="replace").splitlines() if needle in line]
        except FileNotFoundError:
            return []


def toml(settings):
    lines = []
    for section, values in settings.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, int):
                text = str(value)
            elif isinstance(value, list):
                text = "[" + ", ".join(json.dumps(str(v)) for v in value) + "]"
            else:
                text = json.dumps(str(value))
            lines.append(f"{key} = {text}")
        lines.append("")
    return "\n".join(lines)


def host_settings(args, *, plugins_dir=None, routing=True, aggregation=True, tag="setup"):
    settings = {
        "http": {"listen": args.http},
        "grpc": {"listen": args.grpc},
        "kafka": {"bootstrap_servers": args.bootstrap, "partitions": args.partitions},
        "registry": {"listen": args.registry, "schemas_dir": str(bench_schemas(args))},
        "plugins": {"compiled_cache_dir": str(Path(args.work) / "compiled-plugins"),
                    "artifacts_dir": str(Path(args.work) / "plugin-artifacts")},
        # The routing engine reads `claim` only, as the Kafka Streams
        # topology does: the routes read nothing else, and otherwise the
        # engine would also fetch (and skip) the summaries in `appeal`.
        "routing": {"enabled": routing, "topic": f"_bench_routes.{tag}", "group": f"bench.sy.routing.{tag}",
                    "start": "earliest", "nouns": ["claim"]},
        "aggregation": {"enabled": aggregation, "group_prefix": f"bench.sy.aggregate.{tag}",
                        "threads": args.threads},
        # Kafka Streams exports no traces here; neither does Switchyard (its
        # spans stay log context, trace headers pass unchanged).
        # `--host-set telemetry.otlp_endpoint=...` measures with export.
        "telemetry": {"otlp_endpoint": ""},
    }
    if plugins_dir is not None:
        settings["plugins"]["dir"] = str(plugins_dir)
    for item in getattr(args, "host_set", None) or []:
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        if value.lstrip("-").isdigit():
            value = int(value)
        elif value in ("true", "false"):
            value = value == "true"
        settings.setdefault(section, {})[name] = value
    return settings


def bench_schemas(args):
    """The repository's schemas, plus the summary schema under its own noun."""
    folder = Path(args.work) / "schemas"
    if not folder.exists():
        shutil.copytree(ROOT / "schemas", folder)
        (folder / SUMMARY_NOUN).mkdir(exist_ok=True)
        shutil.copy(ROOT / "schemas" / "claim" / "appeal-summary-updated.avsc",
                    folder / SUMMARY_NOUN / "appeal-summary-updated.avsc")
    return folder


def plugin_dir(args, name, plugins):
    """A plugins folder with copies of the named plugins; manifests get an
    explicit `start` (the aggregator from the earliest offset; the router's
    own pipeline, which a route's plugin needs beside it, from the latest,
    so it stays idle and the route is the only thing that calls it)."""
    folder = Path(args.work) / "plugins" / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for plugin in plugins:
        shutil.copy(Path(args.plugins) / f"{plugin}.wasm", folder / f"{plugin}.wasm")
        manifest = (Path(args.plugins) / f"{plugin}.toml").read_text()
        start = "earliest" if plugin == AGGREGATOR else "latest"
        if re.search(r"^start\s*=", manifest, re.M):
            manifest = re.sub(r"^start\s*=.*$", f'start = "{start}"', manifest, flags=re.M)
        else:
            # Top-level keys go before the first table.
            m = re.search(r"^\[", manifest, re.M)
            at = m.start() if m else len(manifest)
            manifest = manifest[:at].rstrip("\n") + f'\nstart = "{start}"\n\n' + manifest[at:]
        if plugin == AGGREGATOR:
            if "[config]" in manifest:
                manifest = manifest.replace("[config]", f'[config]\noutput_noun = "{SUMMARY_NOUN}"', 1)
            else:
                manifest = manifest.rstrip("\n") + f'\n\n[config]\noutput_noun = "{SUMMARY_NOUN}"\n'
        (folder / f"{plugin}.toml").write_text(manifest)
    return folder


# ---------------------------------------------------------------------------
# Expected results and checks


def summary_object(state):
    """The reference aggregator's state (its Summary as JSON) in the form of
    its `to_object`, which is what generate.py's expected file holds."""
    history = state.get("history") or []
    last = history[-1] if history else None
    millis = state.get("millis_in_status") or {}
    return {
        "claim_id": state.get("claim_id"),
        "provider_id": state.get("provider_id"),
        "current_status": None if last is None else
        {"category": last["category"], "code": last["code"], "since": last["reported_at"]},
        "history": [{"category": h["category"], "code": h["code"], "reported_at": h["reported_at"],
                     "effective_date": h.get("effective_date")} for h in history],
        "time_in_status": [{"status": s, "millis": millis[s]} for s in sorted(millis, key=lambda s: s.encode())],
        "status_changes": len(history),
        "reconsiderations": state.get("reconsiderations"),
    }


def query_states(args, keys):
    """GET /v1/aggregates/<aggregator>/<key> for every key, on one connection."""
    host, port = args.http.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    states, errors = {}, collections.Counter()
    try:
        for key in keys:
            for attempt in range(20):
                conn.request("GET", f"/v1/aggregates/{AGGREGATOR}/{key}")
                response = conn.getresponse()
                body = response.read()
                if response.status == 200:
                    doc = json.loads(body)
                    found = doc.get("states") or []
                    states[key] = found[0].get("state") if found else None
                    break
                if response.status == 503 and attempt < 19:
                    time.sleep(0.5)
                    continue
                errors[response.status] += 1
                break
    finally:
        conn.close()
    return states, dict(errors)


def check_routed(args, topic, start, route_id, expected):
    records = read_records(args.bootstrap, topic, start, want_values=False)
    tagged = sum(1 for _, _, _, h in records if header(h, "switchyard-route") == route_id.encode()
                 and header(h, "ce_type") == STATUS_TYPE.encode())
    return {"topic": topic, "records": len(records), "expected": expected, "tagged": tagged,
            "ok": len(records) == expected and tagged == len(records)}


def check_aggregates(args, expect, claim_start, summary_start):
    """The aggregator's states (queried) and its summaries (in the summary
    noun's topic) against the expected result; nothing is appended to
    `claim`."""
    want = expect["summaries"]
    out = {}
    t0 = time.time()
    states, errors = query_states(args, sorted(want))
    mismatched = [k for k in want if k not in states or states[k] is None or summary_object(states[k]) != want[k]]
    out["states_queried"] = len(want)
    out["states_found"] = sum(1 for v in states.values() if v is not None)
    out["states_mismatched"] = len(mismatched)
    out["query_errors"] = errors
    out["query_seconds"] = round(time.time() - t0, 1)
    if mismatched:
        k = mismatched[0]
        out["first_mismatch"] = {"key": k, "expected": want[k],
                                 "got": summary_object(states[k]) if states.get(k) else None}
    records = read_records(args.bootstrap, SUMMARY_NOUN, summary_start)
    summaries = [(key, value) for _, key, value, h in records if header(h, "ce_type") == SUMMARY_TYPE.encode()]
    other = len(records) - len(summaries) + len(read_records(args.bootstrap, "claim", claim_start,
                                                             want_values=False))
    last = {}
    for key, value in summaries:
        last[key.decode()] = value
    schemas = {}
    decoded_bad = 0
    for key, value in last.items():
        schema_id = int.from_bytes(value[1:5], "big")
        if schema_id not in schemas:
            with urllib.request.urlopen(f"http://{args.registry}/schemas/ids/{schema_id}", timeout=10) as r:
                schemas[schema_id] = parse_schema(json.loads(json.load(r)["schema"]))
        import io
        obj = schemaless_reader(io.BytesIO(value[5:]), schemas[schema_id], None)
        if obj != want.get(key):
            decoded_bad += 1
    out["summary_records"] = len(summaries)
    out["summary_records_expected"] = expect["summary_records"]
    out["other_records_after_input"] = other
    out["last_summary_mismatched"] = decoded_bad + sum(1 for k in want if k not in last)
    out["ok"] = (not mismatched and not errors and len(summaries) == expect["summary_records"]
                 and out["last_summary_mismatched"] == 0 and other == 0)
    return out


# ---------------------------------------------------------------------------
# The runs


def watch_groups(broker, groups, ends, pid, timeout):
    """Blocks until every group's committed offset on `claim` is at least the
    recorded end on every partition; samples VmRSS every 200 ms. Returns
    (done time or None, max sampled RSS, reason)."""
    partitions = sorted(ends)
    max_rss, next_sample, last_report = 0, 0.0, time.time()
    deadline = time.time() + timeout
    while True:
        now = time.time()
        if now >= next_sample:
            try:
                max_rss = max(max_rss, vm(pid)["VmRSS"])
            except (FileNotFoundError, ProcessLookupError, KeyError):
                return None, max_rss, "the process exited"
            next_sample = now + 0.2
        lag = 0
        for group in groups:
            try:
                committed = broker.committed(group, "claim", partitions)
            except Exception:  # the group does not exist until it commits
                committed = {}
            lag += sum(max(end - max(committed.get(p, 0), 0), 0) for p, end in ends.items())
        if lag == 0:
            done = time.time()
            try:
                max_rss = max(max_rss, vm(pid)["VmRSS"])
            except (FileNotFoundError, KeyError):
                pass
            return done, max_rss, "done"
        if time.time() - last_report > 10:
            log(f"  lag {lag} (over {len(groups)} group(s))")
            last_report = time.time()
        if time.time() > deadline:
            return None, max_rss, f"lag still {lag} after {timeout} s"
        time.sleep(max(0.0, min(0.1, next_sample - time.time())))


def run_kstreams(args, ctx, rnd):
    """Run a: bench/kstreams/run.sh, which measures the same way."""
    env = dict(os.environ)
    env["PYTHON"] = sys.executable
    env.setdefault("JVM_OPTS", "")
    cmd = ["bash", str(KSTREAMS / "run.sh"), "--bootstrap", args.bootstrap, "--topic", "claim",
           "--expect", ctx["expect_path"], "--threads", str(args.threads)]
    log(f"round {rnd}, a: {' '.join(cmd)} (JVM_OPTS='{env['JVM_OPTS']}')")
    load = loadavg()
    t_launch = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stderr_lines = []
    reader = threading.Thread(target=lambda: stderr_lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        java_pid, java_seen, snapshots = watch_jvm(proc)
    finally:
        if proc.poll() is None:
            proc.terminate()  # run.sh's trap stops the JVM and cleans up
            proc.wait(120)
    out = proc.stdout.read()
    reader.join(5)
    line = next((l for l in out.splitlines() if l.startswith("{")), None)
    if proc.returncode != 0 or line is None:
        return {"system": "a", "round": rnd, "ok": False, "error": f"run.sh exit {proc.returncode}",
                "stderr": "".join(stderr_lines[-40:])}
    result = json.loads(line)
    start = java_seen or t_launch
    done = start + result["seconds"]
    before = [(t, m) for when, t, m in snapshots if when <= done]
    if not before and snapshots:
        before = [snapshots[-1][1:]]
    threads, memory = before[-1] if before else (collections.Counter(), {})
    return {
        "system": "a", "round": rnd, "events": result["events"], "seconds": result["seconds"],
        "events_per_second": result["events_per_second"],
        "seconds_after_ready": result.get("seconds_after_running"),
        "cpu_seconds": result["cpu_seconds"], "peak_rss_bytes": result["peak_rss_bytes"],
        "vmhwm_bytes": result["vmhwm_bytes"], "max_sampled_rss_bytes": result["max_sampled_rss_bytes"],
        "correct": result["correct"], "check": "".join(l for l in stderr_lines if "check:" in l).strip(),
        "rss_anon_bytes": memory.get("RssAnon"), "rss_file_bytes": memory.get("RssFile"),
        "threads": top_threads(threads), "loadavg_before": load,
        "machine": machine_window(ctx, start, done, result["cpu_seconds"]),
        "jvm_opts": result.get("jvm_opts"), "jvm_ergonomic_flags": result.get("jvm_ergonomic_flags"),
        "java": result.get("java"),
        "settings": {"num_stream_threads": result.get("num_stream_threads"),
                     "commit_interval_ms": result.get("commit_interval_ms"),
                     "processing.guarantee": "exactly_once_v2"},
    }


def watch_jvm(proc):
    """Until run.sh ends: finds its JVM (the `java` child) and samples the
    JVM's CPU per thread and its memory every 500 ms. Returns (pid, when it
    was first seen, [(time, thread ticks, memory)])."""
    java_pid, java_seen, snapshots = None, None, []
    while proc.poll() is None:
        if java_pid is None:
            for pid, name in children(proc.pid):
                if name == "java":
                    java_pid, java_seen = pid, time.time()
        else:
            t = thread_ticks(java_pid)
            if t:
                try:
                    snapshots.append((time.time(), t, vm(java_pid)))
                except (FileNotFoundError, ProcessLookupError):
                    pass
        time.sleep(0.05 if java_pid is None else 0.5)
    return java_pid, java_seen, snapshots


def top_threads(counter, n=8):
    total = sum(counter.values()) or 1
    return [{"thread": name, "cpu_seconds": round(t / CLK_TCK, 2), "share": round(t / total, 3)}
            for name, t in counter.most_common(n)]


def route_for(system, expect):
    """(route id, route body, what to check) for a Switchyard run."""
    if system in ("b", "c"):
        rid = "bench-finalized"
        body = {"owner": "bench", "description": "finalized statuses, native filter",
                "source": {"nouns": ["claim"], "verbs": ["status-changed"]},
                "filter": FILTER, "destinations": [ROUTED_SY]}
    elif system == "d":
        # The same records to the same topic as c, decided in Wasm.
        rid = "bench-finalized"
        body = {"owner": "bench", "description": "finalized statuses, Wasm router",
                "source": {"nouns": ["claim"], "verbs": ["status-changed"]},
                "plugin": {"name": FILTER_ROUTER, "config": {"prefixes": "F", "topic": ROUTED_SY}},
                "destinations": [ROUTED_SY]}
    elif system == "p":
        rid = "bench-portal"
        body = {"owner": "bench", "description": "every status to its provider's topic, Wasm router",
                "source": {"nouns": ["claim"], "verbs": ["status-changed"]},
                "plugin": {"name": ROUTER, "config": {"prefix": PORTAL_PREFIX}},
                "destinations": [f"{PORTAL_PREFIX}.*"]}
    else:
        rid = "bench-all-status"
        body = {"owner": "bench", "description": "every status to one topic, native",
                "source": {"nouns": ["claim"], "verbs": ["status-changed"]},
                "destinations": [ALL_SY]}
    return rid, body


def run_switchyard(args, ctx, system, rnd):
    broker = ctx["broker"]
    expect = ctx["expect"]
    tag = f"{system}{rnd}-{int(time.time())}"
    plugins = {"b": [AGGREGATOR], "d": [FILTER_ROUTER], "p": [ROUTER]}.get(system, [])
    folder = plugin_dir(args, f"{system}{rnd}", plugins)
    settings = host_settings(args, plugins_dir=folder, tag=tag)
    routing_group = settings["routing"]["group"]
    routes_topic = settings["routing"]["topic"]
    agg_prefix = settings["aggregation"]["group_prefix"]
    agg_group = f"{agg_prefix}.{AGGREGATOR}"
    rid, route = route_for(system, expect)
    if plugins and system != "b":
        # The router's own (idle) pipeline pins its group at the end of
        # `claim` when the group is new; make it new.
        broker.delete_groups([f"switchyard.plugin.{plugins[0]}"])

    # The route goes into this run's routes topic before the measured host
    # starts, through a host that does not route: the measured host then
    # reads it at start-up, before its engine reads any event.
    prep_settings = host_settings(args, plugins_dir=folder, routing=False, aggregation=False, tag=tag)
    prep = Host(args, f"{tag}-prep", prep_settings)
    prep.start()
    try:
        prep.wait_ready()
        status, body = prep.request("PUT", f"/v1/routes/{rid}", route)
        if status not in (200, 201):
            raise RuntimeError(f"PUT /v1/routes/{rid}: {status} {body}")
    finally:
        prep.stop()

    # The routing engine follows every noun topic from its beginning, so it
    # would read (and skip) every summary earlier b runs left in `appeal`,
    # more in each round; every Switchyard run starts with an empty one.
    broker.delete_topics([SUMMARY_NOUN])
    broker.create([SUMMARY_NOUN], args.partitions)

    # Where every output ends before the run.
    claim_ends = broker.ends("claim")
    if claim_ends != ctx["input_ends"]:
        raise RuntimeError(f"`claim` ends at {claim_ends}, not at the input's end {ctx['input_ends']}")
    outputs = {ROUTED_SY: broker.ends(ROUTED_SY), ALL_SY: broker.ends(ALL_SY),
               "switchyard.dead-letter": broker.ends("switchyard.dead-letter"),
               SUMMARY_NOUN: broker.ends(SUMMARY_NOUN)}
    if system == "p":
        for topic in ctx["portal_topics"]:
            outputs[topic] = broker.ends(topic)

    host = Host(args, tag, settings)
    groups = [routing_group] + ([agg_group] if system == "b" else [])
    log(f"round {rnd}, {system}: {LABELS[system]} (groups {', '.join(groups)})")
    load = loadavg()
    start = time.time()
    pid = host.start()
    perf = None
    if args.perf:
        perf = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-p", str(pid), "-o",
                                 str(host.dir / "perf.data")], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    threads = collections.Counter()
    result = {"system": system, "round": rnd, "events": sum(ctx["input_ends"].values()),
              "loadavg_before": load, "route": {"id": rid, **route}, "groups": groups, "tag": tag}
    try:
        ready_box = {}
        waiter = threading.Thread(target=lambda: ready_box.setdefault("t", safe_ready(host)), daemon=True)
        waiter.start()
        done, max_rss, reason = watch_groups(broker, groups, ctx["input_ends"], pid, args.timeout)
        if done is None:
            result.update(ok=False, correct=False, error=reason, log=host.tail(40))
            return result
        status = vm(pid)
        ticks = proc_ticks(pid)
        threads = thread_ticks(pid)
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
            report = subprocess.run(["perf", "report", "-i", str(host.dir / "perf.data"), "--no-children",
                                     "--sort", "comm,dso,sym", "--stdio", "-g", "none", "--percent-limit", "0.7"],
                                    capture_output=True, text=True)
            (host.dir / "perf.txt").write_text(report.stdout)
            result["perf"] = str(host.dir / "perf.txt")
        seconds = done - start
        ready = ready_box.get("t")
        result.update({
            "seconds": round(seconds, 3),
            "events_per_second": round(result["events"] / seconds, 1),
            "seconds_after_ready": None if not ready else round(done - ready, 3),
            "startup_seconds": None if not ready else round(ready - start, 3),
            "cpu_seconds": round(ticks / CLK_TCK, 2),
            "peak_rss_bytes": max(status["VmHWM"], max_rss),
            "vmhwm_bytes": status["VmHWM"], "max_sampled_rss_bytes": max_rss,
            "rss_anon_bytes": status.get("RssAnon"), "rss_file_bytes": status.get("RssFile"),
            "threads": top_threads(threads),
            "machine": machine_window(ctx, start, done, round(ticks / CLK_TCK, 2)),
        })
        # Status as the host reports it.
        _, result["routing_status"] = host.request("GET", "/v1/routing")
        if system == "b":
            _, result["aggregator_status"] = host.request("GET", "/v1/admin/aggregators")

        # Checks (the host still runs: the state queries need it).
        checks = {}
        if system in ("b", "c", "d"):
            checks["routed"] = check_routed(args, ROUTED_SY, outputs[ROUTED_SY], rid, expect["routed_records"])
        if system == "e":
            checks["routed"] = check_routed(args, ALL_SY, outputs[ALL_SY], rid, expect["status_changed_records"])
        if system == "p":
            per_topic_bad, total = [], 0
            for provider, count in expect["status_by_provider"].items():
                topic = f"{PORTAL_PREFIX}.{provider}"
                c = check_routed(args, topic, outputs[topic], rid, count)
                total += c["records"]
                if not c["ok"]:
                    per_topic_bad.append(c)
            dlq = read_records(args.bootstrap, "switchyard.dead-letter", outputs["switchyard.dead-letter"],
                               want_values=False)
            dead = sum(1 for _, _, _, h in dlq if header(h, "switchyard-dlq-route") == rid.encode())
            expected_total = expect["status_changed_records"] - expect["status_without_provider_id"]
            checks["routed"] = {"topics": len(expect["status_by_provider"]), "records": total,
                                "expected": expected_total, "topics_wrong": len(per_topic_bad),
                                "first_wrong": per_topic_bad[:1],
                                "dead_lettered": dead, "dead_letters_expected": expect["status_without_provider_id"],
                                "ok": not per_topic_bad and total == expected_total
                                and dead == expect["status_without_provider_id"]}
        if system == "b":
            checks["aggregates"] = check_aggregates(args, expect, ctx["input_ends"], outputs[SUMMARY_NOUN])
        result["checks"] = checks
        result["correct"] = all(c["ok"] for c in checks.values())
        result["ok"] = True
        result["warnings_in_log"] = len(host.log_lines(" WARN ")) + len(host.log_lines("\"WARN\""))
        result["errors_in_log"] = len(host.log_lines(" ERROR ")) + len(host.log_lines("\"ERROR\""))
        return result
    finally:
        code = host.stop()
        result["exit_code"] = code
        # This run's internals: its routes topic, changelog, groups.
        internal = [t for t in broker.topics() if t == routes_topic or t.startswith(agg_prefix + ".")]
        broker.delete_topics(internal)
        broker.delete_groups([g for g in groups])
        log(f"round {rnd}, {system}: {summarize(result)}")


def safe_ready(host):
    try:
        return host.wait_ready(timeout=300)
    except Exception:
        return None


def summarize(r):
    if not r.get("ok", True) and "seconds" not in r:
        return f"FAILED: {r.get('error')}"
    return (f"{r.get('events_per_second')} events/s, {r.get('seconds')} s, CPU {r.get('cpu_seconds')} s, "
            f"peak RSS {mb(r.get('peak_rss_bytes'))}, correct {r.get('correct')}")


def mb(n):
    return "—" if n is None else f"{n / 1e6:.0f} MB"


# ---------------------------------------------------------------------------
# Setup and input snapshots


def warm_broker(args, broker):
    """Makes the broker create its internal topics (__consumer_offsets,
    __transaction_state) now, so the first measured run does not pay for it."""
    broker.create(["bench.warmup"], 1)
    p = Producer({"bootstrap.servers": args.bootstrap, "transactional.id": "switchyard-compare-warmup"})
    p.init_transactions(60)
    p.begin_transaction()
    p.produce("bench.warmup", key=b"k", value=b"v")
    p.commit_transaction(60)
    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "switchyard-compare-warmup",
                  "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("bench.warmup", 0, 1)], asynchronous=False)
    c.close()
    broker.delete_groups(["switchyard-compare-warmup"])


def setup(args, ctx):
    broker = ctx["broker"]
    warm_broker(args, broker)
    expect_path = str(Path(args.work) / "expect.json")
    if "claim" in broker.topics():
        log("deleting the old `claim` topic")
        broker.delete_topics(["claim"])
    broker.create(["claim"], args.partitions)
    log(f"created `claim` with {args.partitions} partitions")
    host = Host(args, "setup", host_settings(args, routing=False, aggregation=False, tag="setup"))
    host.start()
    try:
        host.wait_ready()
        cmd = [sys.executable, str(KSTREAMS / "generate.py"), "--bootstrap", args.bootstrap,
               "--events", str(args.events), "--claims", str(args.claims), "--seed", str(args.seed),
               "--registry", f"http://{args.registry}", "--partitions", str(args.partitions),
               "--expect", expect_path]
        if args.providers:
            cmd += ["--providers", str(args.providers)]
        log(" ".join(cmd))
        subprocess.run(cmd, check=True)
        ctx["effective_config_setup"] = host.effective_config()
    finally:
        host.stop()
    ctx["expect_path"] = expect_path
    ctx["expect"] = json.load(open(expect_path, encoding="utf-8"))
    ctx["generate_cmd"] = " ".join(cmd[1:]).replace(str(ROOT) + "/", "")
    ctx["input_ends"] = broker.ends("claim")
    if sum(ctx["input_ends"].values()) != ctx["expect"]["events"]:
        raise RuntimeError(f"`claim` holds {sum(ctx['input_ends'].values())} records, "
                           f"expected {ctx['expect']['events']}")
    # Outputs exist before any run, so no run pays for making them.
    ctx["portal_topics"] = [f"{PORTAL_PREFIX}.{p}" for p in ctx["expect"]["status_by_provider"]]
    made = broker.create(["bench.routed", "bench.summaries", ROUTED_SY, ALL_SY, SUMMARY_NOUN] + ctx["portal_topics"],
                         args.partitions)
    log(f"created {len(made)} output topics ({args.partitions} partitions each)")
    # Compile the plugins once into the cache, as any restart would find them.
    warm = Host(args, "warm-cache", host_settings(
        args, plugins_dir=plugin_dir(args, "warm", [AGGREGATOR, ROUTER, FILTER_ROUTER]), routing=False, aggregation=False,
        tag="warm"))
    t0 = time.time()
    warm.start()
    try:
        warm.wait_ready(timeout=600)
    finally:
        warm.stop()
    ctx["warm_seconds"] = round(time.time() - t0, 1)
    log(f"plugin cache warmed in {ctx['warm_seconds']} s")
    if args.rounds > 1:
        snapshot_input(args, ctx)


def snapshot_input(args, ctx):
    records = []
    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "switchyard-compare-reader",
                  "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        c.assign([TopicPartition("claim", p, 0) for p in ctx["input_ends"]])
        pending = set(ctx["input_ends"])
        while pending:
            for m in c.consume(10_000, 1.0):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(m.partition())
                        continue
                    raise RuntimeError(str(m.error()))
                if m.offset() < ctx["input_ends"][m.partition()]:
                    records.append((m.partition(), m.key(), m.value(), m.headers() or []))
    finally:
        c.close()
    path = Path(args.work) / "input.pickle"
    with open(path, "wb") as f:
        pickle.dump(records, f)
    ctx["snapshot"] = path
    log(f"input snapshot: {len(records)} records in {path}")


def restore_input(args, ctx):
    broker = ctx["broker"]
    if broker.ends("claim") == ctx["input_ends"]:
        return
    log("restoring `claim` from the snapshot (something was appended to it)")
    with open(ctx["snapshot"], "rb") as f:
        records = pickle.load(f)
    broker.delete_topics(["claim"])
    deadline = time.time() + 60
    while True:
        try:
            broker.create(["claim"], args.partitions)
            break
        except KafkaException:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    p = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 20, "queue.buffering.max.messages": 200_000})
    for partition, key, value, headers in records:
        while True:
            try:
                p.produce("claim", key=key, value=value, headers=headers, partition=partition)
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(120):
        raise RuntimeError("restore: records undelivered")
    ends = broker.ends("claim")
    if ends != ctx["input_ends"]:
        raise RuntimeError(f"restored `claim` ends at {ends}, not {ctx['input_ends']}")


# ---------------------------------------------------------------------------
# The report


def file_sha256(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def anon_file(r):
    a, f = r.get("rss_anon_bytes"), r.get("rss_file_bytes")
    if a is None or f is None:
        return "—"
    return f"{a / 1e6:.0f} / {f / 1e6:.0f} MB"


def pct(v):
    return "—" if v is None else f"{v * 100:.0f} %"


def fmt_int(v):
    return "—" if v is None else f"{v:,.0f}"


def write_report(args, ctx, results):
    by = collections.defaultdict(list)
    for r in results:
        if "seconds" in r:
            by[r["system"]].append(r)
    med = {}
    for s, runs in by.items():
        med[s] = {k: median([r.get(k) for r in runs]) for k in
                  ("events_per_second", "seconds", "cpu_seconds", "peak_rss_bytes", "seconds_after_ready")}
        med[s]["correct"] = all(r.get("correct") for r in runs) and len(runs) == args.rounds
        med[s]["runs"] = len(runs)
        med[s]["eps_range"] = (min(r["events_per_second"] for r in runs), max(r["events_per_second"] for r in runs))
        med[s]["rss_range"] = (min(r["peak_rss_bytes"] for r in runs), max(r["peak_rss_bytes"] for r in runs))
        med[s]["broker_cpu"] = median([r.get("machine", {}).get("broker_cpu_seconds") for r in runs])
        med[s]["busy"] = median([r.get("machine", {}).get("machine_busy_share") for r in runs])
        med[s]["others"] = median([r.get("machine", {}).get("others_share") for r in runs])

    def ratio(x, y, key):
        if x in med and y in med and med[y][key]:
            return med[x][key] / med[y][key]
        return None

    tput_ba = ratio("b", "a", "events_per_second")
    mem_ba = ratio("b", "a", "peak_rss_bytes")
    tput_dc = ratio("d", "c", "events_per_second")
    tput_pe = ratio("p", "e", "events_per_second")
    cpu_ba = ratio("b", "a", "cpu_seconds")
    expect = ctx["expect"]
    now = dt.datetime.now(dt.timezone.utc)
    cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem_total = next((int(l.split()[1]) * 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    a_runs = by.get("a", [])
    jvm_flags = a_runs[0].get("jvm_ergonomic_flags") if a_runs else "?"
    java = a_runs[0].get("java") if a_runs else "?"

    L = []
    w = L.append
    w("# Switchyard against Kafka Streams, side by side")
    w("")
    w(f"Generated by `{os.environ.get('COMPARE_COMMAND', 'bash bench/compare.sh')}` "
      f"on {now:%Y-%m-%d %H:%M} UTC; raw results in `{Path(args.work) / 'results.json'}` (not committed).")
    w("")
    w("```sh")
    w("bash bench/compare.sh            # the whole benchmark: its own Kafka, every run, this report")
    w("bash bench/compare.sh --rounds 1 --events 20000 --claims 1000   # a quicker look")
    w("```")
    w("")
    if ctx.get("interrupted"):
        w(f"**The benchmark stopped early** ({ctx['interrupted']}) after {len(results)} run(s); what follows "
          "covers those only.")
        w("")
    if args.host_set or args.perf:
        w(f"**Experiment, not the benchmark's defaults:** "
          + (f"Switchyard hosts ran with {', '.join('`' + x + '`' for x in args.host_set)}. " if args.host_set else "")
          + ("Switchyard hosts ran under `perf record`, which slows them down. " if args.perf else ""))
        w("")
    w("## Machine")
    w("")
    w(f"- {os.cpu_count()} CPUs (`nproc`), {cpu_model}, {mem_total / 2**30:.1f} GiB RAM, Linux {os.uname().release}")
    w(f"- Load average when the benchmark started: {ctx['loadavg_start']}; when it ended: {loadavg()}.")
    w("- The broker (`scripts/stack.sh`: Apache Kafka 4.1 in KRaft mode, one node, `-Xms256m -Xmx768m`, "
      "G1) runs on the same machine, as do the systems under test, one at a time.")
    w("")
    w("## Results")
    w("")
    w(f"{expect['events']:,} events ({expect['status_changed_records']:,} `claim.status-changed`, "
      f"{expect['events'] - expect['status_changed_records']:,} `claim.reconsideration-received`) over "
      f"{expect['claims']:,} claims, seed {expect['seed']}, topic `claim` with {args.partitions} partitions; "
      f"{args.rounds} round(s), medians (range in brackets when more than one run). "
      "Throughput is events of the input per second of wall time from process start until the "
      "system's consumer group(s) committed the input's end offsets; it includes start-up "
      "(the JVM, the host's start-up and group joins), as a restart would see it. "
      f"Both systems process with {args.threads} thread(s): Kafka Streams' `num.stream.threads` and "
      "Switchyard's `aggregation.threads` (Switchyard's routing engine is one more loop of its own).")
    w("")
    w("| Run | events/s | seconds | CPU seconds | peak RSS | broker CPU s | machine busy | other load | correct |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for s in ORDER:
        if s not in med:
            failed = [r for r in results if r["system"] == s]
            if failed:
                w(f"| {s}. {LABELS[s]} | failed | | | | | | | {failed[0].get('error', '')} |")
            continue
        m = med[s]
        rng = ""
        if m["runs"] > 1:
            rng = f" [{m['eps_range'][0]:,.0f}–{m['eps_range'][1]:,.0f}]"
        rrng = ""
        if m["runs"] > 1:
            rrng = f" [{m['rss_range'][0] / 1e6:.0f}–{m['rss_range'][1] / 1e6:.0f}]"
        w(f"| {s}. {LABELS[s]} | {fmt_int(m['events_per_second'])}{rng} | {m['seconds']:.2f} | "
          f"{m['cpu_seconds']:.2f} | {m['peak_rss_bytes'] / 1e6:.0f} MB{rrng} | "
          f"{m['broker_cpu'] if m['broker_cpu'] is not None else '—'} | "
          f"{pct(m['busy'])} | {pct(m['others'])} | "
          f"{'yes' if m['correct'] else 'NO'} |")
    w("")
    w("*broker CPU s*: CPU time the Kafka broker used during the run; *machine busy*: share of all "
      f"{os.cpu_count()} CPUs busy during the run (everything on the machine); *other load*: the share "
      "of all CPUs used meanwhile by processes other than the system under test and the broker (other "
      "work on this shared machine, plus the benchmark's own watcher).")
    w("")
    w("### Ratios and targets")
    w("")

    def verdict(value, target, higher_is_better=True):
        if value is None:
            return "not measured"
        ok = value >= target if higher_is_better else value <= target
        return "**met**" if ok else "**not met**"

    w("| Ratio | measured | target | verdict |")
    w("| --- | ---: | ---: | --- |")
    if tput_ba is not None:
        w(f"| Switchyard / Kafka Streams throughput (b/a) | {tput_ba:.2f}× | ≥ 2× | {verdict(tput_ba, 2.0)} |")
    if mem_ba is not None:
        w(f"| Switchyard / Kafka Streams peak RSS (b/a) | {mem_ba:.3f} ({mem_ba * 100:.1f} %) | ≤ 0.25 | "
          f"{verdict(mem_ba, 0.25, False)} |")
    if tput_dc is not None:
        w(f"| Wasm router / native filter throughput (d/c) | {tput_dc * 100:.1f} % | ≥ 85 % | "
          f"{verdict(tput_dc, 0.85)} |")
    if tput_pe is not None:
        w(f"| Wasm portal router fanning out / native route of the same events to one topic (p/e), "
          f"context only | {tput_pe * 100:.1f} % | — | — |")
    if cpu_ba is not None:
        w(f"| CPU time, Switchyard / Kafka Streams (b/a), context only | {cpu_ba:.2f} | — | — |")
    w("")
    ctx["ratios"] = {"b_over_a_throughput": tput_ba, "b_over_a_peak_rss": mem_ba, "d_over_c_throughput": tput_dc,
                     "p_over_e_throughput": tput_pe, "b_over_a_cpu": cpu_ba}
    for line in verdict_text(med, tput_ba, mem_ba, tput_dc, tput_pe):
        w(line)
    w("")
    w("## Correctness")
    w("")
    w(f"Expected, from `generate.py --expect` (the reference aggregator's fold, in Python): "
      f"{expect['routed_records']:,} routed records (status-changed with a category starting `F`), "
      f"{expect['summary_records']:,} summaries, {expect['claims']:,} final summaries; "
      f"{expect['status_changed_records'] - expect['status_without_provider_id']:,} status-changed with a "
      f"provider id over {len(expect['status_by_provider'])} providers and "
      f"{expect['status_without_provider_id']:,} without one.")
    w("")
    for s in ORDER:
        for r in [r for r in results if r["system"] == s]:
            w(f"- {s}, round {r.get('round')}: " + correctness_line(r))
    w("")
    w("## Settings")
    w("")
    w("Common: broker on `127.0.0.1:29092` (`SWITCHYARD_STACK_DIR=/tmp/compare-stack`, started fresh by "
      f"`compare.sh` unless `--keep-stack`); input `{ctx['generate_cmd']}` (schemas registered at the "
      "embedded registry of a Switchyard host that ran only for the generation); every output topic made "
      f"beforehand with {args.partitions} partitions.")
    w("")
    w(f"**a. Kafka Streams** — `bench/kstreams/run.sh --bootstrap {args.bootstrap} --topic claim --expect …`: "
      f"Kafka Streams 4.1.1, `processing.guarantee=exactly_once_v2`, {args.threads} stream thread(s), `commit.interval.ms=100`, "
      "RocksDB store with its changelog, record cache off, a fresh `application.id` and state directory per "
      f"run; JVM: {java}, `JVM_OPTS='{a_runs[0].get('jvm_opts') if a_runs else ''}'` (the JVM's own "
      f"defaults), which chose `{jvm_flags}`. Outputs: routed records to `bench.routed`, one JSON summary "
      "per event to `bench.summaries`.")
    w("")
    st = os.stat(args.bin)
    w(f"**Switchyard** — the release binary `{args.bin}` (copied from "
      f"`target-bench/release/switchyard`, built {dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc):%Y-%m-%d %H:%M} UTC "
      f"from the work tree of that moment, sha256 `{file_sha256(args.bin)[:16]}…`), "
      "`switchyard serve --config <file>`; every key not in the file at "
      "its default (no `SWITCHYARD__*` variables reach the host). The file of run b:")
    w("")
    b_runs = [r for r in results if r["system"] == "b"]
    sample = b_runs[0] if b_runs else next((r for r in results if r["system"] != "a"), None)
    if sample:
        w("```toml")
        w((Path(args.work) / "hosts" / sample["tag"] / "switchyard.toml").read_text().strip())
        w("```")
        w("")
    w("The other runs differ only in the tag (each run has a fresh `routing.group`, `routing.topic` and "
      "`aggregation.group_prefix`) and the plugins folder: b holds the claim appeal aggregator "
      "(manifest as built, plus `start = \"earliest\"`), d the status category router and p the portal "
      "router (each plus `start = \"latest\"`: "
      "a route can only call a router the host runs, and a folder router always runs its own pipeline "
      "too, so that pipeline is made to start at the end of `claim` and stays idle), c and e an empty "
      "folder. Defaults that matter here: `routing.commit_interval_ms = 100`, "
      "`routing.max_transaction_records = 5000`, the same two for aggregation, `routing.start = "
      "\"earliest\"`, `plugins.call_timeout_ms = 1000`, `plugins.memory_limit_bytes = 64 MiB`, "
      "`plugins.pool_instances = 256`, `log.filter = \"info\"`. The compiled-plugin cache was warmed once "
      f"before the runs ({ctx.get('warm_seconds')} s for the three plugins), so hosts load compiled code as on a "
      "restart; the JVM starts cold every time.")
    w("")
    w("Routes (each PUT through `PUT /v1/routes/{id}` into the run's fresh routes topic by a short-lived "
      "host that does not route, before the measured host starts, so the measured host has its route from "
      "its first record on):")
    w("")
    seen = set()
    for r in results:
        if r["system"] != "a" and r.get("route") and r["system"] not in seen:
            seen.add(r["system"])
            w(f"- {r['system']}: `{json.dumps(r['route'], separators=(',', ':'))}`")
    w("")
    w("Done when: a — the application's group; b — the routing group **and** the aggregator's group "
      "(`<group_prefix>.claim-appeal-aggregator`); c, d, e, p — the routing group; each at or past the end "
      "offsets `claim` had before the run on every partition.")
    w("")
    w("## Per run")
    w("")
    w("| Run | round | events/s | seconds | after ready | CPU s | peak RSS | VmHWM | RSS anon / file at the end | broker CPU s | other load | load avg before | correct |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for r in results:
        if "seconds" not in r:
            w(f"| {r['system']} | {r.get('round')} | failed: {r.get('error')} | | | | | | | | | | |")
            continue
        after = r.get("seconds_after_ready")
        w(f"| {r['system']} | {r['round']} | {r['events_per_second']:,.0f} | {r['seconds']:.2f} | "
          f"{'—' if after is None else f'{after:.2f}'} | {r['cpu_seconds']:.2f} | {r['peak_rss_bytes'] / 1e6:.0f} MB | "
          f"{r['vmhwm_bytes'] / 1e6:.0f} MB | {anon_file(r)} | {r.get('machine', {}).get('broker_cpu_seconds', '—')} | "
          f"{pct(r.get('machine', {}).get('others_share'))} | "
          f"{r.get('loadavg_before')} | {'yes' if r.get('correct') else 'NO'} |")
    w("")
    waits = [r.get("quiet_wait", {}) for r in results]
    if waits:
        long_waits = [w_ for w_ in waits if w_.get("seconds", 0) >= args.quiet_max]
        w(f"Before each run the benchmark waited until other processes used less than "
          f"{args.quiet_share * 100:.0f} % of all CPUs over 3 s (at most {args.quiet_max:.0f} s): it waited "
          f"{sum(w_.get('seconds', 0) for w_ in waits):.0f} s in all"
          + (f", and {len(long_waits)} run(s) started without the machine getting that quiet." if long_waits else ".")
          + " That only chooses a quiet moment to start; other work may still start during a run (*other load*).")
        w("")
    w("*after ready*: a — from the app's first RUNNING state; Switchyard — from the moment `/healthz` "
      "first answered. *RSS anon / file*: anonymous memory (heaps, buffers) and file-backed pages (the "
      "program and its libraries) resident when the run was done (for a, from the last sample before it).")
    w("")
    w("## Where the CPU went (last round, CPU seconds by thread name)")
    w("")
    for s in ORDER:
        runs = [r for r in results if r["system"] == s and r.get("threads")]
        if not runs:
            continue
        r = runs[-1]
        parts = ", ".join(f"`{t['thread']}` {t['cpu_seconds']} s ({t['share'] * 100:.0f} %)" for t in r["threads"])
        w(f"- {s}: {parts}")
    w("")
    for line in notes_text(args, ctx, med):
        w(line)
    w("")
    text = "\n".join(L) + "\n"
    return text


def verdict_text(med, tput_ba, mem_ba, tput_dc, tput_pe):
    out = []
    if tput_ba is not None:
        a, b = med["a"]["events_per_second"], med["b"]["events_per_second"]
        if tput_ba >= 2:
            out.append(f"- Throughput: Switchyard did {tput_ba:.2f}× Kafka Streams' events/s "
                       f"({b:,.0f} against {a:,.0f}); the 2× target is met.")
        else:
            out.append(f"- Throughput: Switchyard did {tput_ba:.2f}× Kafka Streams' events/s "
                       f"({b:,.0f} against {a:,.0f}); the 2× target is **not met**: it would take "
                       f"{2 * a:,.0f} events/s, {2 * a / b:.2f}× what b did"
                       + (" (b is slower than a)." if tput_ba < 1 else "."))
    if mem_ba is not None:
        a, b = med["a"]["peak_rss_bytes"], med["b"]["peak_rss_bytes"]
        if mem_ba <= 0.25:
            out.append(f"- Memory: b peaked at {b / 1e6:.0f} MB RSS against a's {a / 1e6:.0f} MB, "
                       f"{mem_ba * 100:.1f} % of it; the ≤ 25 % target is met.")
        else:
            out.append(f"- Memory: b peaked at {b / 1e6:.0f} MB RSS against a's {a / 1e6:.0f} MB, "
                       f"{mem_ba * 100:.1f} % of it; the ≤ 25 % target (≤ {a / 4e6:.0f} MB) is **not met**, "
                       f"by {(b - a / 4) / 1e6:.0f} MB.")
    if tput_dc is not None:
        c, d = med["c"]["events_per_second"], med["d"]["events_per_second"]
        met = "met" if tput_dc >= 0.85 else "**not met**"
        line = (f"- Wasm routing: d kept {tput_dc * 100:.1f} % of c's throughput ({d:,.0f} against "
                f"{c:,.0f} events/s); the ≥ 85 % target is {met}")
        if tput_dc < 0.85:
            line += f", by {(0.85 - tput_dc) * 100:.1f} points"
        line += "."
        out.append(line)
    if tput_pe is not None:
        e, p = med["e"]["events_per_second"], med["p"]["events_per_second"]
        out.append(f"- Fan-out, for context: p, the portal router sending each status to its provider's topic, "
                   f"kept {tput_pe * 100:.1f} % of e ({p:,.0f} against {e:,.0f} events/s), which forwards the "
                   "same events natively to one topic; see the notes for what p does besides the Wasm call.")
    return out


def notes_text(args, ctx, med):
    expect = ctx["expect"]
    with_id = expect["status_changed_records"] - expect["status_without_provider_id"]
    return [
        "## What differs between the runs, besides the system",
        "",
        "- **Outputs of the aggregation.** Kafka Streams writes each summary as compact JSON to "
        f"`bench.summaries`. Switchyard's aggregator emits `{SUMMARY_TYPE}` events, which the "
        f"host validates, encodes in Avro (Confluent wire format, CloudEvents headers) and appends to the "
        f"noun topic `{SUMMARY_NOUN}` (the aggregator's `output_noun`). Both write one summary per event and "
        f"a changelog record per event.",
        "- **Two consumers in b, one in a.** The Kafka Streams topology reads `claim` once and both routes "
        "and aggregates each record. In b the routing engine and the aggregator are separate consumer "
        "groups, each with its own transactional producer, so `claim` is read twice. The run is done "
        "when both groups have passed the input's end offsets measured before the run.",
        f"- **c and d make the same decision.** d's route has no filter; its router plugin "
        f"(`bench/plugins/{FILTER_ROUTER}`, Rust compiled to a Wasm component) parses each status-changed "
        "object and returns the route's destination when `status_category_code` starts with `F`, as c's "
        f"filter does; both forward the same {expect['routed_records']:,} records to `{ROUTED_SY}`. d/c is "
        "the cost of deciding in a sandboxed plugin instead of in the host.",
        f"- **p does more than e.** p's portal router sends *every* status-changed to "
        f"`{PORTAL_PREFIX}.<provider id>`: {with_id:,} forwards over "
        f"{len(expect['status_by_provider'])} topics ({len(expect['status_by_provider']) * args.partitions} "
        f"partitions) plus {expect['status_without_provider_id']:,} dead letters (no `provider.id`: the "
        "plugin fails on them, and each failure is logged at WARN). e forwards the same status-changed "
        "events natively to a single topic, so p/e prices the Wasm call together with p's many destination "
        "partitions per transaction (each commit writes a marker to every partition it touched) and its "
        "dead letters.",
        f"- **Providers.** The generator normally gives every claim a provider of its own, which would "
        f"make p create one topic per claim ({expect['claims']:,}). Here claims draw their provider from "
        f"a pool of {args.providers} (`generate.py --providers {args.providers}`, a generator of its own, "
        "so every other field is what it would be without the pool), and every destination topic exists "
        "before the runs.",
        "- **The routing engine reads `claim` only** (`routing.nouns = [\"claim\"]`), as the Kafka Streams "
        f"topology does. By default it follows every noun topic, and would also fetch and skip the summaries "
        f"in `{SUMMARY_NOUN}`: those of its own run in b, and in c, d, e and p every summary earlier b runs "
        "left there, 100,000 large records more each round (a report made that way showed c, d, e and p at "
        "a third of their round-1 speed by round 3, bound neither by CPU nor by commits). The benchmark "
        f"also empties `{SUMMARY_NOUN}` before each Switchyard run, so every round starts alike.",
        "- **Start-up** is inside every measurement: the JVM, Kafka Streams' group join, transactional "
        "producer initialization and store opening for a; the host's start (registry and route tables "
        "read from Kafka, plugins loaded from the compiled cache, topics checked), the group joins and "
        "the transactional producers for Switchyard.",
        "- **The machine is shared.** The broker runs on the same CPUs as the system under test, and "
        "the *machine busy* column shows how much of the machine was in use during each run, including "
        "other work on this machine that has nothing to do with the benchmark. Numbers from a busy "
        "machine understate both systems; compare runs by their ratios more than by absolute values.",
    ]


def correctness_line(r):
    if "seconds" not in r:
        return f"not finished ({r.get('error')})"
    if r["system"] == "a":
        verdict = "correct" if r.get("correct") else "NOT correct"
        text = r.get("check", "")
        try:
            v = json.loads(text[text.index("{"):])
        except ValueError:
            return f"{verdict} — run.sh said: {text}"
        return (f"{verdict} — `bench.routed`: {v['routed_records']:,} of {v['routed_records_expected']:,} records; "
                f"`bench.summaries`: {v['summary_records']:,} of {v['summary_records_expected']:,} records, last "
                f"summary per claim different from the expected in {v['claims_mismatched']} of "
                f"{v['claims_expected']:,} ({v['byte_identical']:,} byte for byte identical), read by run.sh")
    parts = []
    c = r.get("checks", {})
    if "routed" in c:
        x = c["routed"]
        if r["system"] == "p":
            parts.append(f"{x['records']:,} of {x['expected']:,} forwarded over {x['topics']} provider topics "
                         f"({x['topics_wrong']} topics off), {x['dead_lettered']:,} of "
                         f"{x['dead_letters_expected']:,} dead-lettered (no `provider.id`)")
        else:
            parts.append(f"`{x['topic']}`: {x['records']:,} of {x['expected']:,} records, {x['tagged']:,} with the "
                         "route header")
    if "aggregates" in c:
        x = c["aggregates"]
        parts.append(f"states: {x['states_found']:,} of {x['states_queried']:,} found by "
                     f"`GET /v1/aggregates/{AGGREGATOR}/<key>`, {x['states_mismatched']} different from the "
                     f"expected; summaries in `{SUMMARY_NOUN}`: {x['summary_records']:,} of "
                     f"{x['summary_records_expected']:,}, last one per claim (Avro, decoded with the "
                     f"registry's schema) different in {x['last_summary_mismatched']}")
        if x.get("first_mismatch"):
            parts.append(f"first mismatch: {json.dumps(x['first_mismatch'])[:600]}")
    return ("correct" if r.get("correct") else "NOT correct") + " — " + "; ".join(parts)


# ---------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:29092")
    ap.add_argument("--broker-pid", type=int, default=0, help="the broker's pid, to measure its CPU time")
    ap.add_argument("--bin", required=True, help="the switchyard binary")
    ap.add_argument("--plugins", default="/root/.cache/switchyard/target/switchyard-test-plugins",
                    help="folder with the built plugins (<name>.wasm + <name>.toml)")
    ap.add_argument("--work", default="/tmp/compare/work")
    ap.add_argument("--http", default="127.0.0.1:28080")
    ap.add_argument("--registry", default="127.0.0.1:28081")
    ap.add_argument("--grpc", default="127.0.0.1:28051")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--claims", type=int, default=5_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2,
                    help="processing threads of both systems: Kafka Streams' num.stream.threads and "
                         "Switchyard's aggregation.threads (default 2, one per core here)")
    ap.add_argument("--providers", type=int, default=50,
                    help="providers the claims are spread over (d makes one topic per provider)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--systems", default="acdepb", help="which runs, in this order (default acdepb)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--settle", type=float, default=5, help="seconds of pause before each run")
    ap.add_argument("--quiet-share", type=float, default=0.25,
                    help="before each run, wait until other processes use less than this share of all "
                         "CPUs (default 0.25)")
    ap.add_argument("--quiet-max", type=float, default=300, help="but at most this many seconds (default 300)")
    ap.add_argument("--host-set", action="append", metavar="SECTION.KEY=VALUE",
                    help="a Switchyard setting for the measured hosts (repeatable; for experiments: "
                         "the report then does not show defaults)")
    ap.add_argument("--perf", action="store_true",
                    help="record each Switchyard host with `perf record` (slows it down; for diagnosis, "
                         "not for the numbers)")
    ap.add_argument("--report", default=str(BENCH / "COMPARISON.md"))
    args = ap.parse_args()

    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ctx = {"broker": Broker(args.bootstrap), "loadavg_start": loadavg()}
    background = Background(args.broker_pid)
    background.start()
    ctx["background"] = background
    results = []

    def terminated(signum, _frame):
        raise SystemExit(128 + signum)

    # A SIGTERM unwinds like an error: hosts are stopped, the report says
    # what finished.
    signal.signal(signal.SIGTERM, terminated)
    interrupted = None
    try:
        setup(args, ctx)
        for rnd in range(1, args.rounds + 1):
            for system in args.systems:
                if rnd > 1 or system != args.systems[0]:
                    if "snapshot" in ctx:
                        restore_input(args, ctx)
                    elif ctx["broker"].ends("claim") != ctx["input_ends"]:
                        raise RuntimeError("`claim` has grown and there is no snapshot to restore it from; "
                                           "put b last or use --rounds > 1")
                time.sleep(args.settle)
                waited, share = wait_quiet(args, ctx)
                if system == "a":
                    r = run_kstreams(args, ctx, rnd)
                    log(f"round {rnd}, a: {summarize(r)}")
                else:
                    r = run_switchyard(args, ctx, system, rnd)
                r["quiet_wait"] = {"seconds": waited, "others_share_before": share}
                results.append(r)
                with open(work / "results.json", "w") as f:
                    json.dump({"results": results, "expect_summary": {k: v for k, v in ctx["expect"].items()
                                                                       if k not in ("summaries",)}},
                              f, indent=1, default=str)
    except (Exception, SystemExit, KeyboardInterrupt) as e:
        interrupted = f"{type(e).__name__}: {e}"
        log(f"stopped early: {interrupted}")
        if "expect" not in ctx:
            raise
    finally:
        background.stop.set()
    ctx["interrupted"] = interrupted
    text = write_report(args, ctx, results)
    (work / "report-draft.md").write_text(text)
    with open(work / "results.json", "w") as f:
        json.dump({"results": results, "ratios": ctx.get("ratios"),
                   "expect_summary": {k: v for k, v in ctx["expect"].items() if k != "summaries"}},
                  f, indent=1, default=str)
    Path(args.report).write_text(text)
    log(f"report written to {args.report}")
    for k, v in (ctx.get("ratios") or {}).items():
        log(f"  {k}: {v}")
    if interrupted:
        return 1
    return 0 if all(r.get("correct") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
