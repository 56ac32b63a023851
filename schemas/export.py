"""Writes the JSON Schema of the envelope and of every payload to schemas/json/.

Run `python -m schemas.export` (or `make schemas`) after changing a model; a unit test fails
while the files are out of date."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.envelope import Envelope
from schemas.events import PAYLOAD_MODELS

OUT = Path(__file__).parent / "json"


def schema_documents() -> dict[str, str]:
    docs = {"Envelope.json": Envelope.model_json_schema()}
    docs.update({f"{m.TYPE}.v{m.VERSION}.json": m.model_json_schema() for m in PAYLOAD_MODELS})
    return {
        name: json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, doc in docs.items()
    }


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in schema_documents().items():
        (OUT / name).write_text(text)
    print(f"wrote {len(schema_documents())} schemas to {OUT}")


if __name__ == "__main__":
    main()
