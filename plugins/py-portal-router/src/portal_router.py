"""Routes claim status events to the portal stream of the provider they are
about, so each provider's portal subscribes to one topic and sees only its
own claims. The Python twin of plugins/portal-router.

Configuration:
- `prefix` (default `portal.provider`): destination topics are
  `<prefix>.<provider id>`.

Built into a `router`-world component by componentize-py (see build.sh), which
generates the `wit_world` bindings from ../../wit at build time. Mapping of the
WIT contract to Python:
- `route` is the `route` method of the `WitWorld` class below; returning a
  list is `ok`, raising `Err(<plugin-error case>)` is `err`.
- `plugin-error` cases are `PluginError_InvalidEvent(value)`,
  `PluginError_InvalidConfig(value)` and `PluginError_Failed(value)`.
"""

import json
import re
from typing import List, Optional

import wit_world
from componentize_py_types import Err
from wit_world.imports import log
from wit_world.imports.types import (
    ConfigEntry,
    Event,
    PluginError_InvalidConfig,
    PluginError_InvalidEvent,
)

DEFAULT_PREFIX = "portal.provider"
"""Default first part of every portal topic name."""

MAX_TOPIC_LENGTH = 249
"""Longest topic name Kafka accepts."""

_PROVIDER_ID = re.compile(r"[A-Za-z0-9-]+")


def _invalid_event(message: str) -> Err:
    return Err(PluginError_InvalidEvent(message))


def config_value(config: List[ConfigEntry], name: str) -> Optional[str]:
    """The value of the first config entry with this name, if any."""
    for entry in config:
        if entry.name == name:
            return entry.value
    return None


def claim_status(event: Event) -> "tuple[str, Optional[str]]":
    """Parses the object of a claim status event into (claim id, provider id)."""
    what = f"`{event.metadata.noun}.{event.metadata.verb}`"
    try:
        status = json.loads(event.object)
    except ValueError as error:
        raise _invalid_event(f"object of {what} is not JSON: {error}") from None
    if not isinstance(status, dict):
        raise _invalid_event(f"object of {what} is not a JSON object")
    claim_id = status.get("claim_id")
    if not isinstance(claim_id, str):
        raise _invalid_event(f"object of {what} has no string `claim_id`")
    provider = status.get("provider")
    if not isinstance(provider, dict):
        raise _invalid_event(f"object of {what} has no `provider` object")
    provider_id = provider.get("id")
    if provider_id is not None and not isinstance(provider_id, str):
        raise _invalid_event("`provider.id` is not a string")
    return claim_id, provider_id


def portal_topic(prefix: str, provider_id: Optional[str]) -> str:
    """Builds the portal topic of a provider, refusing ids that would make an
    invalid or surprising Kafka topic name."""
    if not provider_id:
        raise _invalid_event("claim status has no `provider.id`")
    if not _PROVIDER_ID.fullmatch(provider_id):
        raise _invalid_event(
            f"`provider.id` `{provider_id}` may only hold letters, digits and `-` "
            "to name a portal topic"
        )
    topic = f"{prefix}.{provider_id}"
    if len(topic) > MAX_TOPIC_LENGTH:
        raise Err(
            PluginError_InvalidConfig(
                f"portal topic `{topic}` is longer than Kafka's {MAX_TOPIC_LENGTH} "
                "characters; shorten `prefix`"
            )
        )
    return topic


class WitWorld(wit_world.WitWorld):
    """The exports of the `router` world."""

    def route(self, event: Event, config: List[ConfigEntry]) -> List[str]:
        if event.metadata.noun != "claim":
            return []
        prefix = config_value(config, "prefix")
        if prefix is None:
            prefix = DEFAULT_PREFIX
        claim_id, provider_id = claim_status(event)
        topic = portal_topic(prefix, provider_id)
        log.emit(
            log.Level.DEBUG,
            "routed claim status to portal",
            [("claim_id", claim_id), ("topic", topic)],
        )
        return [topic]
