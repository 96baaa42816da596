"""Drives Switchyard's embedded registry and Kafka with Confluent's own
Python client, as a team's existing Python service would.

usage:
  confluent_client.py registry REGISTRY_URL SUBJECT
      Registers, fetches, looks up, checks compatibility, configures and
      deletes through SchemaRegistryClient; prints one JSON report.
  confluent_client.py produce BOOTSTRAP REGISTRY_URL KEY
      Produces two claim status events with AvroSerializer (the schema id
      found by looking the schema up in the registry, as a producer with
      auto-registration off does) and CloudEvents headers; prints one JSON
      line per event with its id and the object in Switchyard's JSON form.
"""

import datetime
import decimal
import json
import sys
import urllib.request
import uuid

from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from jsonform import plain


def record(fields):
    return json.dumps({"type": "record", "name": "Probe", "namespace": "org.example.python", "fields": fields})


def registry_report(url, subject):
    client = SchemaRegistryClient({"url": url})
    report = {}
    v1 = Schema(record([{"name": "a", "type": "string"}]), "AVRO")
    v2 = Schema(record([{"name": "a", "type": "string"},
                        {"name": "b", "type": ["null", "int"], "default": None}]), "AVRO")
    bad = Schema(record([{"name": "a", "type": "string"}, {"name": "c", "type": "int"}]), "AVRO")

    report["v1_id"] = client.register_schema(subject, v1)
    report["v1_again_id"] = client.register_schema(subject, v1)
    fetched = client.get_schema(report["v1_id"])
    report["fetched_equal"] = json.loads(fetched.schema_str) == json.loads(v1.schema_str)
    report["fetched_type"] = fetched.schema_type
    latest = client.get_latest_version(subject)
    report["latest"] = {"version": latest.version, "id": latest.schema_id}
    found = client.lookup_schema(subject, v1)
    report["lookup"] = {"version": found.version, "id": found.schema_id}
    report["subject_listed"] = subject in client.get_subjects()

    report["v2_compatible"] = client.test_compatibility(subject, v2)
    report["bad_compatible"] = client.test_compatibility(subject, bad)
    try:
        client.register_schema(subject, bad)
        report["bad_register"] = "accepted"
    except SchemaRegistryError as error:
        report["bad_register"] = {"status": error.http_status_code, "code": error.error_code,
                                  "message": error.error_message}
    report["v2_id"] = client.register_schema(subject, v2)
    report["versions"] = client.get_versions(subject)

    report["set_level"] = client.set_compatibility(subject_name=subject, level="FULL")
    report["level"] = client.get_compatibility(subject)
    report["global_level"] = client.get_compatibility()

    report["deleted_version"] = client.delete_version(subject, 1)
    report["versions_after"] = client.get_versions(subject)
    report["soft_deleted"] = client.delete_subject(subject)
    report["hard_deleted"] = client.delete_subject(subject, permanent=True)
    try:
        client.get_versions(subject)
        report["after_delete"] = "still there"
    except SchemaRegistryError as error:
        report["after_delete"] = {"status": error.http_status_code, "code": error.error_code}
    # Schemas stay readable by id after their subject is gone, as in
    # Confluent's registry: old records can still be decoded.
    report["v1_still_by_id"] = json.loads(client.get_schema(report["v1_id"]).schema_str) == json.loads(v1.schema_str)
    print(json.dumps(report))


def produce(bootstrap, url, key):
    subject = "claim-switchyard.claim.StatusChanged"
    with urllib.request.urlopen(f"{url}/subjects/{subject}/versions/latest") as response:
        schema_str = json.load(response)["schema"]
    client = SchemaRegistryClient({"url": url})
    serializer = AvroSerializer(client, schema_str, conf={
        "auto.register.schemas": False,
        "subject.name.strategy": lambda ctx, name: subject,
    })
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    objects = [
        {"claim_id": key, "payer": {"name": "ACME HEALTH", "id_qualifier": "PI", "id": "12345"},
         "provider": {"name": "DR SMITH", "id_qualifier": "XX", "id": "1666666661"},
         "status_category_code": "A2", "status_code": "20",
         "status_effective_date": datetime.date(2026, 11, 30),
         "total_charge": decimal.Decimal("125.50"),
         "service_lines": [{"procedure_code": "HC:99203", "charge": decimal.Decimal("0.05")}],
         "interchange_control_number": "000000907", "transaction_set": "005010X214"},
        {"claim_id": key, "payer": {"name": "ACME HEALTH"},
         "provider": {"name": "DR SMITH"},
         "status_category_code": "F1", "status_code": "65",
         "interchange_control_number": "000000908", "transaction_set": "005010X212"},
    ]
    for obj in objects:
        event_id = str(uuid.uuid4())
        value = serializer(obj, SerializationContext("claim", MessageField.VALUE))
        headers = [
            ("ce_specversion", b"1.0"), ("ce_id", event_id.encode()),
            ("ce_source", b"/tests/python"), ("ce_type", b"claim.status-changed"),
            ("ce_time", b"2026-11-30T12:00:00.000Z"), ("ce_subject", key.encode()),
            ("content-type", b"application/avro"),
        ]
        producer.produce("claim", key=key.encode(), value=value, headers=headers)
        print(json.dumps({"id": event_id, "schema_id": int.from_bytes(value[1:5], "big"),
                          "object": plain(obj)}))
    if producer.flush(30) != 0:
        sys.exit("records were not delivered")


def main():
    command, *args = sys.argv[1:]
    if command == "registry":
        registry_report(*args)
    elif command == "produce":
        produce(*args)
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
