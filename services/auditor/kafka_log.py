"""Reads whole topics from offset 0 without joining a consumer group or committing anything.

Read-only by construction: no producer is ever created, `group_id=None` means no group and no
offset commit, and the end offsets are fixed at the start so a replay reads a fixed log."""

from __future__ import annotations

from collections.abc import Iterator

from kafka import KafkaConsumer, TopicPartition

from schemas.topics import Topic, topic_name
from services.auditor.replay import LogRecord

# Reference data, dead letters and redemptions before statements and notifications: the
# replay does not need it, but it keeps memory low (a window's lines go once it closes).
REPLAY_TOPICS = (Topic.ISSUER, Topic.DEAD_LETTERS, Topic.REDEMPTIONS, Topic.CLEARING, Topic.NOTIFICATIONS)


class KafkaLog:
    def __init__(self, bootstrap: str, prefix: str, topics: tuple[Topic, ...] = REPLAY_TOPICS) -> None:
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=20_000,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=32 * 1024 * 1024,
            receive_buffer_bytes=4 * 1024 * 1024,
            check_crcs=False,
        )
        self.names = {topic_name(t, prefix): t for t in topics}
        self.partitions = [
            TopicPartition(name, p)
            for name in self.names
            for p in sorted(self.consumer.partitions_for_topic(name) or ())
        ]
        self.ends = self.consumer.end_offsets(self.partitions) if self.partitions else {}
        self.starts = self.consumer.beginning_offsets(self.partitions) if self.partitions else {}

    def size(self) -> int:
        """How many records the replay will read (the progress bar's total)."""
        return sum(self.ends[tp] - self.starts[tp] for tp in self.partitions)

    def records(self) -> Iterator[LogRecord]:
        """Topic by topic, in REPLAY_TOPICS order; every record below the end offsets seen at start."""
        try:
            for name, topic in self.names.items():
                yield from self._topic(name, topic)
        finally:
            self.consumer.close()

    def _topic(self, name: str, topic: Topic) -> Iterator[LogRecord]:
        partitions = [tp for tp in self.partitions if tp.topic == name and self.ends[tp] > self.starts[tp]]
        if not partitions:
            return
        self.consumer.assign(partitions)
        self.consumer.seek_to_beginning(*partitions)
        remaining = set(partitions)
        while remaining:
            for tp, messages in self.consumer.poll(timeout_ms=1000).items():
                end = self.ends[tp]
                for m in messages:
                    if m.offset < end:
                        yield LogRecord(topic, tp.partition, m.offset, m.value, m.key)
                if self.consumer.position(tp) >= end:
                    remaining.discard(tp)
                    self.consumer.pause(tp)


def read_log(bootstrap: str, prefix: str, topics: list[Topic]) -> Iterator[LogRecord]:
    """Every record of `topics`, up to the end offsets seen at the start."""
    return KafkaLog(bootstrap, prefix, tuple(topics)).records()
