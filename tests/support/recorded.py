"""Recorded provider payloads: tests/fixtures/<provider>/<endpoint>__<scenario>.json.

Each file holds one HTTP answer: `status`, optional `headers`, and the body as
`json` (a JSON document) or `text` (anything else, malformed bodies included).
"""

from __future__ import annotations

import json

import httpx

from tests import support

FIXTURES = support.FIXTURES


def recorded(provider: str, name: str) -> httpx.Response:
    """The recorded answer `name` ("cdrs__page1") of `provider`, as an httpx.Response."""
    doc = json.loads((FIXTURES / provider / f"{name}.json").read_text(encoding="utf-8"))
    status = doc.get("status", 200)
    headers = doc.get("headers", {})
    if "json" in doc:
        return httpx.Response(status, json=doc["json"], headers=headers)
    return httpx.Response(status, text=doc.get("text", ""), headers=headers)


def recorded_json(provider: str, name: str):
    """The JSON body of a recorded answer."""
    doc = json.loads((FIXTURES / provider / f"{name}.json").read_text(encoding="utf-8"))
    return doc["json"]
