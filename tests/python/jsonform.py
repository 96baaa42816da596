"""The JSON forms Switchyard gives Avro values, for comparing what Python's
Avro libraries produce or read with what Switchyard's API shows."""

import datetime
import decimal


def plain(value):
    """Turns Python values of Avro logical types (fastavro's) into Switchyard's
    JSON forms: decimals as strings, timestamps as RFC 3339 UTC with
    milliseconds, dates as ISO dates."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value
