"""Reads whole topics from offset 0 without joining a consumer group or committing anything.

Read-only by construction: no producer is ever created; partitions are `assign`ed (never
`subscribe`d, so no group is ever joined), auto-commit and the offset store are off and nothing
calls `commit`, so no offset is ever written. The end offsets are fixed at the start, so a replay
reads a fixed log. Record CRCs are checked (`check.crcs`): an audit must not fold a corrupted
record.

confluent-kafka (librdkafka), not aiokafka, by measurement on the 1M-redemption bench log
(1,110,018 records, 1,086 MB, CRCs checked): aiokafka read it in 7.26 s, librdkafka in 5.30 s,
and librdkafka fetches, decompresses and checks CRCs in its own C threads, off the GIL, so the
read overlaps the fold instead of competing with it. Its Python binding refuses a consumer
without a `group.id`; the one given is only a label: a group exists on the broker only once a
member joins it or commits to it, and this consumer does neither (an integration test checks
the broker knows no such group after a replay)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from functools import partial
from itertools import chain
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from schemas.topics import Topic, topic_name
from services.auditor.replay import LogRecord

# Reference data, dead letters and redemptions before statements and notifications when read
# from files; from Kafka every partition is read at once. Any order of partitions gives the same
# report: the fold only needs each partition in offset order.
REPLAY_TOPICS = (Topic.ISSUER, Topic.DEAD_LETTERS, Topic.REDEMPTIONS, Topic.CLEARING, Topic.NOTIFICATIONS)
_BATCH = 10_000
# Never joined, never committed to: see the module docstring.
_UNJOINED_GROUP = "passclear-auditor-assign-only"
# A NamedTuple's own __new__ is Python code (~0.3 µs a call): records are built as tuples.
_record = partial(tuple.__new__, LogRecord)


def _config(bootstrap: str) -> dict[str, object]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": _UNJOINED_GROUP,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "check.crcs": True,
        "enable.partition.eof": True,
        # Fetch ahead of the fold (the prefetch queue is what lets the read overlap it), but
        # within 128 MB: the fetch buffers are freed as the fold takes their records, and a
        # bounded queue reuses that memory where a 512 MB one faulted fresh pages in for nearly
        # the whole log (~200k page faults fewer per 1M-redemption replay). A full queue waits
        # 20 ms before fetching again, not librdkafka's default 1 s, which left one reader idle.
        "fetch.max.bytes": 16 * 1024 * 1024,
        "max.partition.fetch.bytes": 4 * 1024 * 1024,
        "queued.max.messages.kbytes": 128 * 1024,
        "queued.min.messages": 1_000_000,
        "fetch.queue.backoff.ms": 20,
    }


class KafkaLog:
    def __init__(self, bootstrap: str, prefix: str, topics: tuple[Topic, ...] = REPLAY_TOPICS) -> None:
        self.bootstrap = bootstrap
        self.names = {topic_name(t, prefix): t for t in topics}
        self.starts: dict[tuple[str, int], int] = {}
        self.ends: dict[tuple[str, int], int] = {}
        self._offsets()

    def _offsets(self) -> None:
        consumer = Consumer(_config(self.bootstrap))
        try:
            metadata = consumer.list_topics(timeout=10)
            for name in self.names:
                topic = metadata.topics.get(name)
                if topic is None or topic.error is not None:
                    continue
                for p in sorted(topic.partitions):
                    low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)
                    self.starts[(name, p)], self.ends[(name, p)] = low, high
        finally:
            consumer.close()

    def size(self) -> int:
        """How many records the replay will read (the progress bar's total)."""
        return sum(self.ends[tp] - self.starts[tp] for tp in self.ends)

    def partitions(self, topic: Topic) -> list[tuple[str, int]]:
        return sorted(tp for tp in self.ends if self.names[tp[0]] is topic)

    def records(self, only: Iterable[tuple[str, int]] | None = None) -> Iterator[LogRecord]:
        """Every record below the end offsets seen at start (of the `only` partitions if given),
        each partition in offset order."""
        return chain.from_iterable(self.batches(only))

    def batches(self, only: Iterable[tuple[str, int]] | None = None) -> Iterator[list[LogRecord]]:
        """`records`, as the lists the consumer hands over (up to 10,000 records each)."""
        wanted = self.ends.keys() if only is None else set(only)
        todo = {tp for tp in wanted if self.ends[tp] > self.starts[tp]}
        if not todo:
            return
        consumer = Consumer(_config(self.bootstrap))
        try:
            consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for name, p in sorted(todo)])
            while todo:
                batch = self._batch(consumer.consume(_BATCH, timeout=1.0), todo)
                if batch:
                    yield batch
        finally:
            consumer.close()

    def _batch(self, messages: list[Any], todo: set[tuple[str, int]]) -> list[LogRecord]:
        out: list[LogRecord] = []
        append = out.append
        topics = self.names
        ends: dict[str, dict[int, int]] = defaultdict(dict)  # by topic name, then partition
        for (name, p), end in self.ends.items():
            ends[name][p] = end
        for m in messages:
            error = m.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                todo.discard(
                    (m.topic(), m.partition())
                )  # at the high watermark: control records may sit below `end`
                continue
            name, p, offset = m.topic(), m.partition(), m.offset()
            end = ends[name][p]
            if offset < end:
                append(_record((topics[name], p, offset, m.value(), m.key())))
            if offset >= end - 1:
                todo.discard((name, p))
        return out


def read_log(bootstrap: str, prefix: str, topics: list[Topic]) -> Iterator[LogRecord]:
    """Every record of `topics`, up to the end offsets seen at the start."""
    return KafkaLog(bootstrap, prefix, tuple(topics)).records()
