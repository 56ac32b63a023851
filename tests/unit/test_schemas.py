"""The event contracts: examples keep parsing, exported JSON Schemas stay current, no personal data."""

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas.envelope import Envelope
from schemas.events import PAYLOAD_MODELS, ProgrammeRegistered, parse_payload
from schemas.export import OUT, schema_documents

EXAMPLES = sorted((Path(__file__).parents[2] / "schemas" / "examples").glob("*.json"))
# Field names that would mean personal data or bank details travel on Kafka (invariant 6).
FORBIDDEN_FIELDS = {
    "email",
    "contact_email",
    "birth_date",
    "first_name",
    "last_name",
    "phone",
    "address",
    "iban",
    "bic",
    "beneficiary_name",
}


def test_every_event_type_has_an_example() -> None:
    assert {p.stem for p in EXAMPLES} == {f"{m.TYPE}.v{m.VERSION}" for m in PAYLOAD_MODELS}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_keep_parsing(path: Path) -> None:
    envelope = Envelope.model_validate_json(path.read_text())
    payload = parse_payload(envelope)
    assert f"{payload.TYPE}.v{payload.VERSION}" == path.stem


def test_exported_json_schemas_are_current() -> None:
    for name, text in schema_documents().items():
        assert (OUT / name).read_text() == text, f"{name} is stale: run `make schemas`"


@pytest.mark.parametrize("model", PAYLOAD_MODELS, ids=lambda m: m.TYPE)
def test_no_payload_carries_personal_data(model: type) -> None:
    text = json.dumps(model.model_json_schema()).lower()
    for field in FORBIDDEN_FIELDS:
        assert f'"{field}"' not in text


def test_envelope_timestamps_must_be_utc() -> None:
    example = json.loads(EXAMPLES[0].read_text())
    paris = datetime(2026, 11, 24, 12, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(ValidationError):
        Envelope.model_validate({**example, "occurred_at": paris.isoformat()})


def test_payloads_refuse_unknown_fields() -> None:
    example = json.loads((OUT.parent / "examples" / "ProgrammeRegistered.v1.json").read_text())
    with pytest.raises(ValidationError):
        ProgrammeRegistered.model_validate({**example["payload"], "beneficiary": "Jeanne"})


def test_programme_shares_must_sum_to_ten_thousand() -> None:
    example = json.loads((OUT.parent / "examples" / "ProgrammeRegistered.v1.json").read_text())["payload"]
    example["funders"][0]["share_bp"] -= 1
    with pytest.raises(ValidationError, match="10000"):
        ProgrammeRegistered.model_validate(example)
