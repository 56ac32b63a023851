"""Every topic of the system, in one place: name, partitions, retention, and what keys it.

Topic names carry a prefix (`KAFKA_TOPIC_PREFIX`) so that test modules and environments can
share a broker without seeing each other's events.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# -1: the event log is the audit trail; nothing on it ever expires.
RETAIN_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}


class Topic(StrEnum):
    ISSUER = "issuer.events"
    REDEMPTIONS = "redemption.events"
    CLEARING = "clearing.events"
    NOTIFICATIONS = "notifier.events"
    DEAD_LETTERS = "dead-letters"


@dataclass(frozen=True)
class TopicSpec:
    topic: Topic
    partitions: int
    keyed_by: str
    configs: dict[str, str]

    def name(self, prefix: str) -> str:
        return f"{prefix}{self.topic.value}"


TOPICS: dict[Topic, TopicSpec] = {
    # One partition: issuer events are low volume reference data (programmes, sites, booklets)
    # whose consumers need them in the order they happened (a booklet after its programme).
    Topic.ISSUER: TopicSpec(Topic.ISSUER, 1, "programme id or site id", RETAIN_FOREVER),
    # A site's ledger is one partition's business: redemptions are keyed by site id.
    Topic.REDEMPTIONS: TopicSpec(Topic.REDEMPTIONS, 4, "site id", RETAIN_FOREVER),
    Topic.CLEARING: TopicSpec(Topic.CLEARING, 4, "site id or funder id", RETAIN_FOREVER),
    Topic.NOTIFICATIONS: TopicSpec(Topic.NOTIFICATIONS, 2, "site id", RETAIN_FOREVER),
    Topic.DEAD_LETTERS: TopicSpec(Topic.DEAD_LETTERS, 1, "consumer name", RETAIN_FOREVER),
}


def topic_name(topic: Topic, prefix: str) -> str:
    return TOPICS[topic].name(prefix)
