#!/usr/bin/env python3
"""Load generator for the claim benchmark.

Writes N claim events for K claims to the input topic as Switchyard publishes
them: key = claim id, value = Avro in the Confluent wire format (magic byte 0,
4-byte big-endian schema id, Avro binary body), CloudEvents binary-mode
headers. Most events are `claim.status-changed`, some are
`claim.reconsideration-received`; each claim's events have increasing
`ce_time`. The same seed gives the same events (ids, times, values).

Schema ids come from registering both schemas at a Confluent-compatible
registry (`--registry URL`, topic-record subject naming), or are fixed at 1
(status-changed) and 2 (reconsideration-received) with `--offline-ids`.

With `--expect FILE` it also writes what a correct run must end with: the
final summary per claim (folded offline with the semantics of
plugins/claim-appeal-aggregator), the number of summary records (one per
event) and of routed records (status-changed with a category starting `F`).

    python generate.py --bootstrap 127.0.0.1:29092 --events 100000 --claims 5000 \\
        --offline-ids --partitions 6 --expect /tmp/expect.json
"""

import argparse
import collections
import datetime as dt
import io
import json
import random
import sys
import time
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from fastavro import parse_schema, schemaless_writer

HERE = Path(__file__).resolve().parent
DEFAULT_SCHEMAS = HERE.parent.parent / "schemas" / "claim"
STATUS_TYPE = "claim.status-changed"
RECON_TYPE = "claim.reconsideration-received"
UTC = dt.timezone.utc
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
# Claims start within 30 days of this instant.
BASE = dt.datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)
CENT = Decimal("0.01")

# ---------------------------------------------------------------------------
# Sample data. Payer ids, status codes and procedure codes follow the shapes
# of X12 277 / 277CA content; names are made up.

PAYERS = [
    ("ACME HEALTH PLAN", "60054"),
    ("NORTHWIND MUTUAL", "87726"),
    ("BLUE RIVER HEALTH", "84980"),
    ("CONTOSO CARE", "62308"),
    ("FABRIKAM BENEFITS", "61101"),
    ("STATE MEDICAID", "77027"),
]
SURNAMES = ["GARCIA", "SMITH", "NGUYEN", "JOHNSON", "PATEL", "KIM", "BROWN", "LOPEZ",
            "MILLER", "DAVIS", "WILSON", "ANDERSON", "THOMAS", "MOORE", "MARTIN", "LEE",
            "O'BRIEN", "JACKSON", "WHITE", "HARRIS", "CLARK", "LEWIS", "WALKER", "YOUNG"]
GIVEN = ["MARIA", "JAMES", "LINDA", "ROBERT", "AISHA", "WEI", "PRIYA", "JOHN", "SOFIA",
         "DAVID", "FATIMA", "MICHAEL", "ELENA", "CARLOS", "GRACE", "OMAR"]
PRACTICES = ["FAMILY MEDICINE", "ORTHOPEDIC ASSOCIATES", "PEDIATRICS", "IMAGING CENTER",
             "CARDIOLOGY GROUP", "URGENT CARE", "PHYSICAL THERAPY", "DERMATOLOGY"]
PROCEDURES = [("HC:99213", "95.00", "180.00"), ("HC:99214", "140.00", "260.00"),
              ("HC:99203", "110.00", "220.00"), ("HC:71046", "45.00", "120.00"),
              ("HC:93000", "25.00", "80.00"), ("HC:97110", "35.00", "90.00"),
              ("HC:80053", "15.00", "60.00"), ("HC:20610", "90.00", "300.00"),
              ("HC:73721", "400.00", "1500.00"), ("HC:36415", "5.00", "20.00")]
# (category, code, entity) by phase.
ACK_RECEIVED = ("A1", "19", "PR")      # acknowledgement/receipt
ACK_ACCEPTED = ("A2", "20", None)      # accepted into adjudication
ACK_REJECTED = ("A3", "21", "85")      # returned as unprocessable, fixable
PENDING = [("P1", "20", None), ("P2", "17", None), ("P3", "21", "85"),
           ("P4", "21", "QC"), ("P1", "15", None)]
REVIEW = [("P2", "17", None), ("P1", "20", None)]
FINAL = [(("F1", "65", None), 50), (("F2", "88", None), 20), (("F4", "3", None), 8),
         (("F0", "3", None), 12), (("F2", "109", "IL"), 10)]
REVISED = [("F3", "65", None), ("F3", "88", None), ("F1", "65", None), ("F2", "88", None)]
DENIALS = {"F2", "F4"}
REASONS = ["Medical necessity documented in attached records",
           "Timely filing: original submission accepted by clearinghouse",
           "Incorrect bundling of procedure codes",
           "Payment below contracted rate",
           "Prior authorization was obtained",
           "Coordination of benefits: patient has no other coverage",
           "Duplicate denial in error: services on different dates"]


def npi(rng):
    """A 10-digit NPI with a valid check digit (Luhn over 80840 + 9 digits)."""
    body = "1" + "".join(str(rng.randrange(10)) for _ in range(8))
    digits = [int(c) for c in "80840" + body]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def money(rng, low, high):
    return Decimal(rng.uniform(float(low), float(high))).quantize(CENT)


def rfc3339(millis):
    t = EPOCH + dt.timedelta(milliseconds=millis)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (millis % 1000)


def to_millis(t):
    return (t - EPOCH) // dt.timedelta(milliseconds=1)


# ---------------------------------------------------------------------------
# The events.


def lifecycle(rng, n):
    """n steps of one claim's life: ('S', (category, code, entity), set) or ('R',)."""
    steps = []
    phase, left, last_final = "new", 0, None
    while len(steps) < n:
        if phase == "new":
            steps.append(("S", ACK_RECEIVED, "005010X214"))
            phase = "rejected" if rng.random() < 0.05 else "ack"
        elif phase == "rejected":
            steps.append(("S", ACK_REJECTED, "005010X214"))
            phase = "new"
        elif phase == "ack":
            steps.append(("S", ACK_ACCEPTED, "005010X214"))
            phase, left = "pending", rng.randint(1, 4)
        elif phase == "pending":
            if left > 0:
                steps.append(("S", rng.choice(PENDING), "005010X212"))
                left -= 1
            else:
                status = rng.choices([s for s, _ in FINAL], [w for _, w in FINAL])[0]
                steps.append(("S", status, "005010X212"))
                phase, last_final = "final", status
        elif phase == "final":
            appeal = 0.7 if last_final[0] in DENIALS else 0.3
            if rng.random() < appeal:
                steps.append(("R",))
                phase, left = "review", rng.randint(1, 2)
            else:
                # The payer reports the final status again (a later 277).
                steps.append(("S", last_final, "005010X212"))
        elif phase == "review":
            if left > 0:
                steps.append(("S", rng.choice(REVIEW), "005010X212"))
                left -= 1
            else:
                status = rng.choice(REVISED)
                steps.append(("S", status, "005010X212"))
                phase, last_final = "final", status
    return steps


def make_claim(rng, index):
    payer = rng.choice(PAYERS)
    if rng.random() < 0.6:
        provider_name = f"{rng.choice(SURNAMES)} {rng.choice(PRACTICES)}"
    else:
        provider_name = f"{rng.choice(SURNAMES)}, {rng.choice(GIVEN)}"
    service_from = (BASE - dt.timedelta(days=rng.randint(3, 60))).date()
    lines = []
    for _ in range(rng.choices([1, 2, 3, 4], [50, 30, 15, 5])[0]):
        code, low, high = rng.choice(PROCEDURES)
        lines.append((code, money(rng, low, high)))
    return {
        "claim_id": f"PCN{index:07d}",
        "payer": payer,
        "provider": (provider_name, npi(rng)),
        "patient": (f"{rng.choice(SURNAMES)}, {rng.choice(GIVEN)}", f"M{rng.randrange(10**9, 10**10)}"),
        "patient_account_number": f"PA{rng.randrange(10**7, 10**8)}" if rng.random() < 0.8 else None,
        "payer_ccn": f"{rng.randrange(10**13, 10**14)}",
        "service_from": service_from,
        "service_to": service_from + dt.timedelta(days=rng.choice([0, 0, 0, 1, 2])),
        "lines": lines,
        "charge": sum((c for _, c in lines), Decimal("0.00")),
    }


def status_value(rng, claim, status, transaction_set, at_millis):
    category, code, entity = status
    day = (EPOCH + dt.timedelta(milliseconds=at_millis)).date()
    finalized = category.startswith("F")
    paid = category in ("F1", "F3") and code == "65"
    service_lines = []
    payment = Decimal("0.00")
    for procedure, charge in claim["lines"]:
        line_paid = (charge * Decimal(rng.uniform(0.45, 0.9))).quantize(CENT) if paid else None
        if line_paid is not None:
            payment += line_paid
        service_lines.append({
            "procedure_code": procedure,
            "charge": charge,
            "payment": line_paid if finalized else None,
            "status_category_code": category if finalized else None,
            "status_code": code if finalized else None,
        })
    provider_name, provider_npi = claim["provider"]
    # Now and then a payer names the provider without an identifier.
    named_only = rng.random() < 0.04
    patient_name, member_id = claim["patient"]
    acknowledgement = transaction_set == "005010X214"
    return {
        "claim_id": claim["claim_id"],
        "payer_claim_control_number": None if acknowledgement else claim["payer_ccn"],
        "patient_account_number": claim["patient_account_number"],
        "payer": {"name": claim["payer"][0], "id_qualifier": "PI", "id": claim["payer"][1]},
        "provider": {"name": provider_name,
                     "id_qualifier": None if named_only else "XX",
                     "id": None if named_only else provider_npi},
        "patient": None if rng.random() < 0.1 else
                   {"name": patient_name, "id_qualifier": "MI", "id": member_id},
        "status_category_code": category,
        "status_code": code,
        "entity_code": entity,
        "status_effective_date": None if rng.random() < 0.15 else day - dt.timedelta(days=rng.randint(0, 2)),
        "total_charge": claim["charge"],
        "payment_amount": (payment if paid else Decimal("0.00")) if finalized else None,
        "service_date_from": claim["service_from"],
        "service_date_to": claim["service_to"],
        "service_lines": [] if acknowledgement else service_lines,
        "interchange_control_number": f"{rng.randrange(1, 10**9):09d}",
        "transaction_set": transaction_set,
    }


def reconsideration_value(rng, claim, at_millis):
    return {
        "claim_id": claim["claim_id"],
        "provider_id": claim["provider"][1],
        "reason": rng.choice(REASONS),
        # Received by the payer a little before the event was published.
        "received_at": EPOCH + dt.timedelta(milliseconds=at_millis - rng.randint(0, 3_600_000)),
        "disputed_amount": (claim["charge"] * Decimal(rng.uniform(0.2, 1.0))).quantize(CENT)
        if rng.random() < 0.8 else None,
    }


def gap_millis(rng, step):
    """Time from the previous event of the claim to this one."""
    if step[0] == "S" and step[1][0].startswith("A"):
        return rng.randint(30_000, 4 * 3_600_000)           # acknowledgements: minutes to hours
    if step[0] == "R":
        return rng.randint(2 * 86_400_000, 30 * 86_400_000)  # appeals: days to weeks after a decision
    return rng.randint(3_600_000, 10 * 86_400_000)           # payer updates: hours to days


def provider_pool(seed, size):
    """size providers (name, NPI) with distinct NPIs, from a generator of
    their own so the rest of the data does not depend on the pool."""
    rng = random.Random(seed * 7919 + 17)
    pool, npis = [], set()
    while len(pool) < size:
        number = npi(rng)
        if number in npis:
            continue
        npis.add(number)
        name = f"{rng.choice(SURNAMES)} {rng.choice(PRACTICES)}"
        pool.append((name, number))
    return pool


def generate(events, claims, seed, duplicate_rate=0.0, providers=0):
    """The records in publish order: global ce_time order, redeliveries (if any) later.

    providers > 0 draws each claim's provider from a pool of that many
    instead of giving every claim a provider of its own; everything else
    stays the same as without it."""
    rng = random.Random(seed)
    pool = provider_pool(seed, providers) if providers > 0 else None
    pick = random.Random(seed * 7919 + 18)
    k = min(claims, events)
    per_claim = [1] * k
    for _ in range(events - k):
        per_claim[rng.randrange(k)] += 1
    out = []
    for index in range(k):
        claim = make_claim(rng, index)
        if pool is not None:
            claim["provider"] = pool[pick.randrange(len(pool))]
        at = to_millis(BASE) + rng.randrange(30 * 86_400_000)
        for seq, step in enumerate(lifecycle(rng, per_claim[index])):
            if seq > 0:
                at += gap_millis(rng, step)
            event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            if step[0] == "S":
                value = status_value(rng, claim, step[1], step[2], at)
                out.append((at, index, seq, STATUS_TYPE, claim["claim_id"], event_id, value))
            else:
                value = reconsideration_value(rng, claim, at)
                out.append((at, index, seq, RECON_TYPE, claim["claim_id"], event_id, value))
    if duplicate_rate > 0:
        # Redeliveries: the same record again (same ce_id, ce_time, value),
        # published up to two days after the original, so it may land after
        # later events of its claim. The aggregator must ignore it.
        copies = []
        for e in out:
            if rng.random() < duplicate_rate:
                copies.append((e[0] + rng.randint(1, 2 * 86_400_000), e[1], e[2] + 0.5) + e[3:] + (e[0],))
        out = [e + (e[0],) for e in out] + copies
    else:
        out = [e + (e[0],) for e in out]
    out.sort(key=lambda e: (e[0], e[1], e[2]))
    # (publish order key, claim, seq, type, key, id, value, ce_time millis)
    return out


# ---------------------------------------------------------------------------
# The expected result: the reference aggregator's fold, offline.

SEEN_IDS = 64
# Status-changed records per provider id, and without one (what a router
# that picks a topic per provider sends where), filled by expected().
COUNTS = {"status_without_provider_id": 0, "by_provider": collections.Counter()}


class Summary:
    def __init__(self):
        self.claim_id = ""
        self.provider_id = None
        self.history = []          # (category, code, reported_at, millis, effective_date)
        self.millis_in_status = {}
        self.reconsiderations = 0
        self.seen = collections.deque()

    def _seen_before(self, event_id):
        if event_id in self.seen:
            return True
        self.seen.append(event_id)
        if len(self.seen) > SEEN_IDS:
            self.seen.popleft()
        return False

    def record_status(self, event_id, claim_id, provider_id, category, code, reported_at, millis, effective):
        if self._seen_before(event_id):
            return
        self.claim_id = claim_id
        if provider_id is not None:
            self.provider_id = provider_id
        if self.history:
            prev = self.history[-1]
            key = f"{prev[0]}:{prev[1]}"
            self.millis_in_status[key] = self.millis_in_status.get(key, 0) + max(millis - prev[3], 0)
        self.history.append((category, code, reported_at, millis, effective))

    def record_reconsideration(self, event_id, claim_id, provider_id):
        if self._seen_before(event_id):
            return
        self.claim_id = claim_id
        self.provider_id = provider_id
        self.reconsiderations += 1

    def to_object(self):
        last = self.history[-1] if self.history else None
        return {
            "claim_id": self.claim_id,
            "provider_id": self.provider_id,
            "current_status": None if last is None else
            {"category": last[0], "code": last[1], "since": last[2]},
            "history": [{"category": c, "code": k, "reported_at": at, "effective_date": eff}
                        for c, k, at, _, eff in self.history],
            # BTreeMap order: by the keys' UTF-8 bytes.
            "time_in_status": [{"status": s, "millis": self.millis_in_status[s]}
                               for s in sorted(self.millis_in_status, key=lambda s: s.encode())],
            "status_changes": len(self.history),
            "reconsiderations": self.reconsiderations,
        }


def expected(evs):
    summaries = {}
    routed = 0
    for _, _, _, kind, key, event_id, value, millis in evs:
        s = summaries.setdefault(key, Summary())
        if kind == STATUS_TYPE:
            provider_id = value["provider"]["id"]
            if provider_id is None:
                COUNTS["status_without_provider_id"] += 1
            else:
                COUNTS["by_provider"][provider_id] += 1
            eff = value["status_effective_date"]
            s.record_status(event_id, value["claim_id"], value["provider"]["id"],
                            value["status_category_code"], value["status_code"],
                            rfc3339(millis), millis, None if eff is None else eff.isoformat())
            if value["status_category_code"].startswith("F"):
                routed += 1
        else:
            s.record_reconsideration(event_id, value["claim_id"], value["provider_id"])
    return summaries, routed


# ---------------------------------------------------------------------------
# Kafka and the registry.


def register(registry, topic, schema_text):
    parsed = json.loads(schema_text)
    subject = f"{topic}-{parsed['namespace']}.{parsed['name']}"
    body = json.dumps({"schema": json.dumps(parsed, separators=(",", ":"))}).encode()
    request = urllib.request.Request(
        f"{registry.rstrip('/')}/subjects/{subject}/versions", data=body, method="POST",
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json",
                 "Accept": "application/vnd.schemaregistry.v1+json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        schema_id = json.load(response)["id"]
    print(f"generate: {subject} has schema id {schema_id}", file=sys.stderr)
    return schema_id


def ensure_topic(bootstrap, topic, partitions, recreate):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=30).topics
    if topic in existing and recreate:
        admin.delete_topics([topic], operation_timeout=30)[topic].result()
        deadline = time.time() + 60
        while topic in admin.list_topics(timeout=30).topics:
            if time.time() > deadline:
                raise SystemExit(f"generate: topic {topic} was not deleted within 60 s")
            time.sleep(0.2)
        existing = {}
    if topic in existing:
        have = len(existing[topic].partitions)
        if have != partitions:
            print(f"generate: topic {topic} exists with {have} partitions (asked {partitions}); using it",
                  file=sys.stderr)
        return
    deadline = time.time() + 60
    while True:
        try:
            admin.create_topics([NewTopic(topic, partitions, 1)], operation_timeout=30)[topic].result()
            print(f"generate: created topic {topic} with {partitions} partitions", file=sys.stderr)
            return
        except KafkaException as e:
            # Right after a delete the broker may still refuse the name for a moment.
            if time.time() > deadline:
                raise
            print(f"generate: create {topic}: {e}; retrying", file=sys.stderr)
            time.sleep(0.5)


def produce(bootstrap, topic, evs, ids, schemas):
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "compression.type": "none",
        # The Java client's partitioner, so keys land where a Java producer would put them.
        "partitioner": "murmur2_random",
        "queue.buffering.max.messages": 200_000,
    })
    failures = []

    def delivered(err, _msg):
        if err is not None:
            failures.append(err)

    buf = io.BytesIO()
    for n, (_, _, _, kind, key, event_id, value, millis) in enumerate(evs):
        buf.seek(0)
        buf.truncate()
        buf.write(b"\x00")
        buf.write(ids[kind].to_bytes(4, "big"))
        schemaless_writer(buf, schemas[kind], value)
        headers = [
            ("ce_specversion", b"1.0"),
            ("ce_id", event_id.encode()),
            ("ce_source", b"/switchyard/bench/generate"),
            ("ce_type", kind.encode()),
            ("ce_time", rfc3339(millis).encode()),
            ("ce_subject", key.encode()),
            ("content-type", b"application/avro"),
        ]
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=buf.getvalue(), headers=headers,
                                 on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(120)
    if remaining or failures:
        raise SystemExit(f"generate: {remaining} records undelivered, {len(failures)} failed "
                         f"(first: {failures[:1]})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="127.0.0.1:29092")
    ap.add_argument("--topic", default="claim")
    ap.add_argument("--events", "-n", type=int, required=True, help="number of events N")
    ap.add_argument("--claims", "-k", type=int, required=True, help="number of claims K")
    ap.add_argument("--seed", type=int, default=1)
    ids = ap.add_mutually_exclusive_group(required=True)
    ids.add_argument("--registry", help="Confluent-compatible schema registry URL")
    ids.add_argument("--offline-ids", action="store_true",
                     help="use schema ids 1 (status-changed) and 2 (reconsideration-received)")
    ap.add_argument("--expect", help="write the expected result here (JSON)")
    ap.add_argument("--schemas", default=str(DEFAULT_SCHEMAS), help="folder with the claim .avsc files")
    ap.add_argument("--partitions", type=int, default=6, help="partitions if the topic is created")
    ap.add_argument("--recreate", action="store_true", help="delete and recreate the topic first")
    ap.add_argument("--duplicate-rate", type=float, default=0.0,
                    help="also publish this fraction of events a second time, later (default 0)")
    ap.add_argument("--providers", type=int, default=0,
                    help="draw each claim's provider from a pool of this many "
                         "(default 0: every claim has a provider of its own)")
    ap.add_argument("--dry-run", action="store_true", help="generate (and --expect) without Kafka")
    args = ap.parse_args()
    if args.events < 1 or args.claims < 1:
        ap.error("--events and --claims must be positive")

    texts = {STATUS_TYPE: (Path(args.schemas) / "status-changed.avsc").read_text(),
             RECON_TYPE: (Path(args.schemas) / "reconsideration-received.avsc").read_text()}
    schemas = {kind: parse_schema(json.loads(text)) for kind, text in texts.items()}

    started = time.time()
    evs = generate(args.events, args.claims, args.seed, args.duplicate_rate, args.providers)
    kinds = collections.Counter(e[3] for e in evs)
    print(f"generate: {len(evs)} records for {min(args.claims, args.events)} claims "
          f"({kinds[STATUS_TYPE]} status-changed, {kinds[RECON_TYPE]} reconsideration-received, "
          f"{len(evs) - args.events} of them redeliveries) "
          f"in {time.time() - started:.1f} s", file=sys.stderr)

    if args.expect:
        summaries, routed = expected(evs)
        with open(args.expect, "w", encoding="utf-8") as f:
            json.dump({"events": len(evs), "claims": len(summaries), "seed": args.seed,
                       "topic": args.topic, "summary_records": len(evs), "routed_records": routed,
                       "providers": args.providers,
                       "status_changed_records": kinds[STATUS_TYPE],
                       "status_without_provider_id": COUNTS["status_without_provider_id"],
                       "status_by_provider": dict(sorted(COUNTS["by_provider"].items())),
                       "summaries": {k: s.to_object() for k, s in summaries.items()}},
                      f, ensure_ascii=False, separators=(",", ":"))
        print(f"generate: expected result in {args.expect} ({routed} routed)", file=sys.stderr)
    if args.dry_run:
        return

    if args.offline_ids:
        ids = {STATUS_TYPE: 1, RECON_TYPE: 2}
    else:
        ids = {kind: register(args.registry, args.topic, text) for kind, text in texts.items()}
    ensure_topic(args.bootstrap, args.topic, args.partitions, args.recreate)
    started = time.time()
    produce(args.bootstrap, args.topic, evs, ids, schemas)
    print(f"generate: produced {len(evs)} events to {args.topic} in {time.time() - started:.1f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
