"""The claim-status portal demo, as a provider's portal would see it.

Publishes every X12 277 file of a folder to Switchyard's REST API as an
`edi.x12-received` event, and prints, live, what subscribers on the
providers' portal streams receive over Server-Sent Events: one line per
claim status. Files that are not valid 277s are reported with the reason
the transformer gave (read from the dead-letter stream).

Each file is published with a W3C `traceparent` of its own. At the end, the
trip of the first file that produced claim statuses is read back from
Jaeger's query API and printed as a span tree: the publish call, the
transformer, every status it wrote, the portal router, the aggregator and
the deliveries to the portal streams.

Only the Python standard library is used, so it runs anywhere.

usage: portal_demo.py BASE_URL FOLDER [JAEGER_QUERY_URL]
"""

import http.client
import json
import os
import sys
import threading
import time
import urllib.parse
import urllib.request

# X12 claim status category codes (code list 507), the common ones.
CATEGORIES = {
    "A0": "acknowledged, forwarded",
    "A1": "acknowledged, received",
    "A2": "acknowledged, accepted into adjudication",
    "A3": "acknowledged, returned as unprocessable",
    "A4": "acknowledged, not found",
    "A6": "acknowledged, rejected for missing information",
    "A7": "acknowledged, rejected for invalid information",
    "A8": "acknowledged, rejected for relational field in error",
    "P0": "pending, adjudication details",
    "P1": "pending, in process",
    "P2": "pending, payer review",
    "P3": "pending, provider requested information",
    "P4": "pending, patient requested information",
    "P5": "pending, payer administrative hold",
    "F0": "finalized",
    "F1": "finalized, payment",
    "F2": "finalized, denial",
    "F3": "finalized, revised",
    "F4": "finalized, adjudication complete, no payment",
    "E0": "response not possible, error in request",
    "E1": "response not possible, system unavailable",
}

lock = threading.Lock()
published = {}  # edi event id -> file name
lines_by_file = {}
dead_by_file = {}
claims = set()  # claim ids seen on the portals
trace_by_file = {}
last_activity = [time.time()]


def say(text):
    with lock:
        print(text, flush=True)
        last_activity[0] = time.time()


def sse(base, path, on_frame, ready=None):
    """Reads an SSE stream forever, calling on_frame(event, data) per frame."""
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=None)
    connection.request("GET", path, headers={"Accept": "text/event-stream"})
    response = connection.getresponse()
    if response.status != 200:
        raise SystemExit(f"subscribing to {path} failed: {response.status} {response.read()!r}")
    event, data = None, []
    for raw in response:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if event == "subscribed" and ready is not None:
                ready.set()
            elif data:
                on_frame(event, "\n".join(data))
            event, data = None, []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


def watch_portal(base, topic):
    provider = topic.rsplit(".", 1)[-1]

    def on_frame(event, data):
        if event != "claim.status-changed":
            return
        delivered = json.loads(data)
        file = published.get(delivered.get("extensions", {}).get("causationid"))
        if file is None:
            return  # an older run's event, still on the stream
        o = delivered["object"]
        category = o["status_category_code"]
        meaning = CATEGORIES.get(category, "see code list 507")
        billed = o.get("total_charge") or "-"
        paid = o.get("payment_amount") or "-"
        line = (f"[portal {provider:>13}] claim {o['claim_id']:<14} {category}:{o['status_code']:<4} "
                f"{meaning:<45} billed {billed:>8}  paid {paid:>8}  ({file})")
        lines_by_file.setdefault(file, []).append(line)
        claims.add(o["claim_id"])
        say(line)

    sse(base, f"/v1/topics/{topic}/events?start=earliest", on_frame)


def discover_portals(base, started):
    while True:
        with urllib.request.urlopen(f"{base}/v1/topics?prefix=portal.provider.") as response:
            topics = json.load(response)["topics"]
        for topic in topics:
            if topic not in started:
                started.add(topic)
                threading.Thread(target=watch_portal, args=(base, topic), daemon=True).start()
        time.sleep(0.3)


def main():
    base, folder = sys.argv[1].rstrip("/"), sys.argv[2]
    files = sorted(f for f in os.listdir(folder) if not f.startswith("."))

    # The dead-letter stream tells which files the transformer refused.
    def on_dead(event, data):
        delivered = json.loads(data)
        file = published.get(delivered.get("id"))
        if file is None:
            return
        reason = delivered.get("extensions", {}).get("switchyard-dlq-reason", "unknown reason")
        dead_by_file[file] = reason
        say(f"[refused              ] {file}: {reason}")

    ready = threading.Event()
    threading.Thread(target=sse, args=(base, "/v1/topics/switchyard.dead-letter/events", on_dead, ready),
                     daemon=True).start()
    if not ready.wait(30):
        raise SystemExit("the dead-letter stream did not start")
    threading.Thread(target=discover_portals, args=(base, set()), daemon=True).start()

    say(f"publishing {len(files)} files from {folder} as edi.x12-received events\n")
    for file in files:
        with open(os.path.join(folder, file), "rb") as handle:
            interchange = handle.read().decode("utf-8", errors="replace")
        body = json.dumps({"key": file, "source": "/demo/portal",
                           "object": {"interchange": interchange, "filename": file}}).encode()
        trace_id = os.urandom(16).hex()
        trace_by_file[file] = trace_id
        request = urllib.request.Request(f"{base}/v1/events/edi/x12-received", data=body,
                                         headers={"Content-Type": "application/json",
                                                  "traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"})
        try:
            with urllib.request.urlopen(request) as response:
                result = json.load(response)
        except urllib.error.HTTPError as error:
            say(f"[rejected by the API  ] {file}: {error.code} {error.read().decode()}")
            continue
        with lock:
            published[result["id"]] = file

    # Live output until the streams have been quiet for a while, once
    # something came back. Until then, keep waiting: the pipelines may still
    # be joining their consumer groups (a member an earlier host left behind
    # without leaving, such as a test's killed host, holds a join back until
    # its session times out).
    published_at = time.time()
    deadline = published_at + 90
    while time.time() < deadline and (last_activity[0] < published_at
                                       or time.time() - last_activity[0] < 6):
        time.sleep(0.2)

    print("\nsummary")
    total = 0
    for file in files:
        if file in dead_by_file:
            print(f"  {file}: not a valid 277 ({dead_by_file[file]})")
        elif file in lines_by_file:
            total += len(lines_by_file[file])
            print(f"  {file}: {len(lines_by_file[file])} claim status(es)")
        elif file in published.values():
            print(f"  {file}: valid, but reports no claim-level status")
    print(f"  {total} claim statuses reached the providers' portals")

    # The claim appeal aggregator folds every status into a per-claim view;
    # any instance answers for any claim.
    print("\nclaim appeals (from the aggregator's state)")
    for claim in sorted(claims):
        url = f"{base}/v1/aggregates/claim-appeal-aggregator/{urllib.parse.quote(claim, safe='')}"
        for _ in range(50):
            try:
                with urllib.request.urlopen(url) as response:
                    state = json.load(response)["states"][0]["state"]
                break
            except urllib.error.HTTPError:
                time.sleep(0.2)
        else:
            print(f"  {claim}: no state yet")
            continue
        history = state.get("history", [])
        last = history[-1] if history else {}
        spent = ", ".join(f"{k} {v // 60000} min" for k, v in state.get("millis_in_status", {}).items())
        print(f"  {claim:<14} now {last.get('category', '-')}:{last.get('code', '-'):<4} "
              f"after {len(history)} status report(s), {state.get('reconsiderations', 0)} reconsideration(s)"
              + (f"; time in earlier statuses: {spent}" if spent else ""))


    if len(sys.argv) > 3:
        traced = next((f for f in files if f in lines_by_file), None)
        if traced is not None:
            show_trace(sys.argv[3].rstrip("/"), traced, trace_by_file[traced])


def show_trace(jaeger, file, trace_id):
    """Prints one file's trace from Jaeger as a tree of spans."""
    url = f"{jaeger}/api/v3/traces/{trace_id}"
    spans, seen, quiet_since = [], -1, time.time()
    # Spans reach Jaeger in batches every few seconds; wait until the
    # count stops growing.
    deadline = time.time() + 60
    while time.time() < deadline and (len(spans) == 0 or time.time() - quiet_since < 6):
        try:
            with urllib.request.urlopen(url) as response:
                result = json.load(response)["result"]
            spans = [span for resource in result.get("resourceSpans", [])
                     for scope in resource.get("scopeSpans", []) for span in scope.get("spans", [])]
        except (urllib.error.URLError, KeyError, ValueError):
            spans = []
        if len(spans) != seen:
            seen, quiet_since = len(spans), time.time()
        time.sleep(1)
    print(f"\nthe trip of {file} in Jaeger: trace {trace_id}, {len(spans)} spans")
    print(f"  {url}")
    if not spans:
        print("  (no spans arrived; is Jaeger up? `bash scripts/stack.sh status`)")
        return
    ids = {span["spanId"] for span in spans}
    children = {}
    for span in spans:
        parent = span.get("parentSpanId") or ""
        children.setdefault(parent if parent in ids else "", []).append(span)

    def attribute(span, key):
        for item in span.get("attributes", []):
            if item["key"] == key:
                return next(iter(item["value"].values()), None)
        return None

    def show(parent, depth):
        for span in sorted(children.get(parent, []), key=lambda s: int(s["startTimeUnixNano"])):
            millis = (int(span["endTimeUnixNano"]) - int(span["startTimeUnixNano"])) / 1e6
            detail = attribute(span, "plugin.version")
            detail = f" ({attribute(span, 'plugin.name')}@{detail})" if detail else ""
            print(f"  {'  ' * depth}{span['name']}{detail}  {millis:.1f} ms")
            show(span["spanId"], depth + 1)

    show("", 0)


if __name__ == "__main__":
    main()
