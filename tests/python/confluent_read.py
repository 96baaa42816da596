"""Reads Switchyard records with Confluent's own Python client.

An independent check of the wire format: confluent-kafka's Consumer reads the
record, its AvroDeserializer (fastavro underneath) strips the magic byte and
schema id, fetches the writer schema from Switchyard's embedded registry over
Confluent's REST API, and decodes the body. Prints one JSON line per record
whose `ce_id` header is asked for, with the headers and the decoded object.

usage: confluent_read.py BOOTSTRAP REGISTRY_URL TOPIC EVENT_ID [EVENT_ID...]
"""

import json
import sys
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from jsonform import plain


def main():
    bootstrap, registry_url, topic, *wanted = sys.argv[1:]
    wanted = set(wanted)
    registry = SchemaRegistryClient({"url": registry_url})
    deserializer = AvroDeserializer(registry)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "switchyard-python-check",
        "enable.auto.commit": False,
    })
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = [TopicPartition(topic, p, 0) for p in metadata.topics[topic].partitions]
    # Start at the beginning of every partition.
    for tp in partitions:
        low, _ = consumer.get_watermark_offsets(tp, timeout=10)
        tp.offset = low
    consumer.assign(partitions)
    deadline = time.time() + 60
    while wanted and time.time() < deadline:
        message = consumer.poll(1.0)
        if message is None or message.error():
            continue
        headers = {k: (v.decode() if v is not None else None) for k, v in (message.headers() or [])}
        if headers.get("ce_id") not in wanted:
            continue
        wanted.discard(headers["ce_id"])
        value = message.value()
        obj = deserializer(value, SerializationContext(topic, MessageField.VALUE))
        print(json.dumps({
            "headers": headers,
            "key": message.key().decode(),
            "magic": value[0],
            "schema_id": int.from_bytes(value[1:5], "big"),
            "object": plain(obj),
        }))
        sys.stdout.flush()
    consumer.close()
    if wanted:
        sys.exit(f"records not found: {sorted(wanted)}")


if __name__ == "__main__":
    main()
