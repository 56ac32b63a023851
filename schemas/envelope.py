"""The envelope every event travels in, whatever its producer.

An event on a topic is the JSON of an `Envelope`; its `payload` is the JSON of one of the payload
models in `schemas.events`, chosen by `type` and `schema_version`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID
    type: str = Field(min_length=1)
    schema_version: int = Field(ge=1)
    occurred_at: datetime
    producer: str = Field(min_length=1)
    key: str = Field(min_length=1)
    payload: dict[str, Any]

    @field_validator("occurred_at")
    @classmethod
    def _utc_only(cls, value: datetime) -> datetime:
        # A naive or local timestamp would make the audit log ambiguous across DST changes.
        if value.tzinfo is None or value.utcoffset() != UTC.utcoffset(None):
            raise ValueError("occurred_at must be a UTC timestamp")
        return value

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate_json(raw)
