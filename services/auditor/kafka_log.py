"""Reads whole topics from offset 0 without joining a consumer group or committing anything."""

from __future__ import annotations

from collections.abc import Iterator

from kafka import KafkaConsumer, TopicPartition

from schemas.topics import Topic, topic_name
from services.auditor.replay import LogRecord


def read_log(bootstrap: str, prefix: str, topics: list[Topic]) -> Iterator[LogRecord]:
    """Every record up to the end offsets seen at the start, partition by partition."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    try:
        names = {topic_name(t, prefix): t for t in topics}
        partitions = [
            TopicPartition(name, p)
            for name in names
            for p in sorted(consumer.partitions_for_topic(name) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            for tp, messages in consumer.poll(timeout_ms=1000).items():
                for m in messages:
                    if m.offset < ends[tp]:
                        yield LogRecord(names[tp.topic], tp.partition, m.offset, m.value)
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        consumer.close()
