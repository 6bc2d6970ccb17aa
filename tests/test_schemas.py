"""The topic contracts: schemas are valid, Faust Records mirror them, produced events conform."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pytest

from stream_app.app import dead_letter
from stream_app.events import RECORD_FOR_SCHEMA
from stream_app.parsing import parse_tweet

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def load(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def object_schema(name: str) -> dict:
    schema = load(name)
    return schema["$defs"]["flat"] if name == "tweet" else schema


@pytest.mark.parametrize("name", sorted(RECORD_FOR_SCHEMA))
def test_schema_is_valid_2020_12(name):
    schema = load(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", sorted(RECORD_FOR_SCHEMA))
def test_record_mirrors_schema(name):
    record = RECORD_FOR_SCHEMA[name]
    schema = object_schema(name)
    fields = set(record._options.fields)
    assert fields == set(schema["properties"]), f"{record.__name__} fields differ from {name}.schema.json"
    # Faust makes Optional fields non-required; the schema lists them as required-but-nullable.
    required_in_record = {f for f, d in record._options.descriptors.items() if d.required}
    nullable = {f for f, p in schema["properties"].items() if "null" in _types(p)}
    required_in_schema = set(schema["required"]) - nullable
    if name == "dead-letter":  # payload | payload_base64 is a oneOf in the schema
        required_in_schema -= {"payload", "payload_base64"}
    assert required_in_record == required_in_schema, name


def _types(prop: dict) -> set[str]:
    t = prop.get("type", [])
    found = {t} if isinstance(t, str) else set(t)
    if "enum" in prop and None in prop["enum"]:
        found.add("null")
    return found


def test_every_schema_has_a_record():
    assert {p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json")} == set(RECORD_FOR_SCHEMA)


def test_enriched_events_conform(enricher):
    validator = jsonschema.Draft202012Validator(load("enriched"), format_checker=jsonschema.FormatChecker())
    tweets = [
        parse_tweet(orjson.dumps({"id": "1", "text": "Lost my bag in Paris, @united refund me now!!", "brand": "united",
                                  "author": {"id": "a", "handle": "h", "followers": 50_000}})),
        parse_tweet(orjson.dumps({"id": "2", "text": "Panne de la freebox depuis 3 jours, inadmissible",
                                  "brand": "free", "lang": "fr"})),
        parse_tweet(orjson.dumps({"id": "3", "text": "😡😡😡"})),
    ]
    for event in enricher.enrich(tweets):
        validator.validate(orjson.loads(orjson.dumps(event)))


def test_dead_letters_conform():
    validator = jsonschema.Draft202012Validator(load("dead-letter"))
    text = dead_letter(b"not json", "invalid_json", "boom", topic="tweets", partition=1, offset=5,
                       timestamp_ms=1, key=b"k")
    binary = dead_letter(b"\xff\xfe", "not_utf8", "boom", topic="tweets", partition=0, offset=6,
                         timestamp_ms=None, key=None)
    validator.validate(text)
    validator.validate(binary)
    assert text["payload"] == "not json" and binary["payload_base64"] == "//4="
