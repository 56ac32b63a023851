"""The event log as files, for an auditor working offline.

One gzip JSON-lines file per topic and partition (`<topic>.p<partition>.jsonl.gz`), each line
`{"offset", "key", "value"}`; key and value are the record's bytes as UTF-8 text, or base64
under `key_b64` / `value_b64` when they are not UTF-8. A `manifest.json` says how many records
each file holds. Replaying the files gives the same records as replaying Kafka."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson

from schemas.topics import Topic
from services.auditor.kafka_log import REPLAY_TOPICS
from services.auditor.replay import LogRecord

MANIFEST = "manifest.json"


def _file(topic: Topic, partition: int) -> str:
    return f"{topic.value}.p{partition}.jsonl.gz"


def _field(name: str, raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        return {name: None}
    try:
        return {name: raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_b64": base64.b64encode(raw).decode()}


def _bytes(line: dict[str, Any], name: str) -> bytes | None:
    if f"{name}_b64" in line:
        return base64.b64decode(line[f"{name}_b64"])
    text = line.get(name)
    return None if text is None else str(text).encode("utf-8")


def export_log(records: Iterable[LogRecord], directory: Path) -> dict[str, int]:
    """Writes every record; returns the manifest (file name -> records)."""
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    counts: dict[str, int] = {}
    with ExitStack() as stack:
        for r in records:
            name = _file(r.topic, r.partition)
            out = files.get(name)
            if out is None:
                out = files[name] = stack.enter_context(gzip.open(directory / name, "wb", 6))
            out.write(
                orjson.dumps({"offset": r.offset, **_field("key", r.key), **_field("value", r.value)}) + b"\n"
            )
            counts[name] = counts.get(name, 0) + 1
    (directory / MANIFEST).write_text(json.dumps(dict(sorted(counts.items())), indent=2))
    return counts


class FileLog:
    """The same interface as `KafkaLog`: `size()` and `records()` in REPLAY_TOPICS order."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        manifest = directory / MANIFEST
        if not manifest.exists():
            raise FileNotFoundError(f"{manifest} not found: not an exported event log")
        self.counts: dict[str, int] = json.loads(manifest.read_text())

    def size(self) -> int:
        return sum(self.counts.values())

    def records(self) -> Iterator[LogRecord]:
        for topic in REPLAY_TOPICS:
            for path in sorted(self.directory.glob(f"{topic.value}.p*.jsonl.gz"), key=_partition):
                with gzip.open(path, "rb") as f:
                    for raw in f:
                        line = orjson.loads(raw)
                        value = _bytes(line, "value") or b""
                        yield LogRecord(topic, _partition(path), line["offset"], value, _bytes(line, "key"))


def _partition(path: Path) -> int:
    return int(path.name.rsplit(".p", 1)[1].split(".", 1)[0])
