"""Hostile input is harmless: no key injection, registry-only providers, bounded and well-formed
bodies, JSON errors (never a 500, never HTML)."""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest

from connectors import cache
from connectors.errors import InvalidUserId

pytestmark = pytest.mark.django_db

HOSTILE_IDS = [
    "abc",
    "*",
    "a:b",
    "7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3a:*",
    "7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3*",
    "{7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3a}",
    "7f9c24e8 3b1a 4b8e 9a52 1c6f4c1e2d3a",
    " 7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3",
    "7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3a\n",
    "7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d\u0663\u0664",  # Arabic-Indic digits int() would accept
    "７f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3a",  # fullwidth 7
    "\u00e9" * 36,
    "7f9c24e8-3b1a-4b8e-9a52-1c6f4c1e2d3a" * 100,
    "x" * 5000,
    "%00",
    "..",
]


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_no_hostile_user_id_reaches_a_cache_key(bad):
    """Keys are built from the canonical UUID only: input is refused or canonicalized, never
    copied. (The API is stricter still: anything but the plain 8-4-4-4-12 form is a 400.)"""
    for make_key in (cache.platform_status_key, cache.user_profile_key):
        try:
            key = make_key(bad)
        except InvalidUserId:
            continue
        prefix, _, rest = key.partition(":{")
        assert rest.endswith("}") and str(uuid.UUID(rest[:-1])) == rest[:-1], key
        assert prefix.isidentifier()


def test_an_uppercase_uuid_is_one_key_not_two():
    user = uuid.uuid4()
    assert cache.platform_status_key(str(user).upper()) == cache.platform_status_key(str(user))


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_hostile_user_ids_are_json_400s_on_every_route(service, bad):
    path_id = quote(bad, safe="")
    responses = [
        service.get(f"/api/connectors/status/{path_id}"),
        service.delete(f"/api/connectors/github/{path_id}"),
        service.post(f"/api/connectors/reset/{path_id}"),
        service.get(f"/api/connectors/github/authorize?user_id={path_id}"),
        service.post("/api/extraction/jobs", {"provider": "github", "user_id": bad}, format="json"),
        service.get(f"/api/extraction/jobs/{path_id}"),
        service.post(
            "/api/connectors/callback",
            {"provider": "github", "code": "c", "state": "s", "user_id": bad},
            format="json",
        ),
    ]
    for response in responses:
        assert response.status_code in (400, 404), (bad, response.status_code, response.content)
        assert response["Content-Type"] == "application/json"
        assert response.json()["success"] is False
    if cache.enabled():
        assert list(cache.maintenance_client().scan_iter(match=cache.full_key("*"))) == []


@pytest.mark.parametrize(
    "provider", ["myspace", "GITHUB", "github ", "__class__", "..", "git%2Fhub", "g" * 300, "*"]
)
def test_only_registry_providers_are_accepted(alice, alice_id, provider):
    name = quote(provider, safe="%")
    for response in (
        alice.get(f"/api/connectors/{name}/authorize"),
        alice.delete(f"/api/connectors/{name}/{alice_id}"),
        alice.post("/api/extraction/jobs", {"provider": provider}, format="json"),
    ):
        assert response.status_code in (400, 404), response.content
        assert response.json()["success"] is False


@pytest.mark.parametrize("debug", [False, True])
def test_an_oversized_body_is_a_json_413(alice, settings, debug):
    settings.DEBUG = debug
    body = json.dumps({"provider": "github", "code": "x" * 200_000, "state": "s"})
    for url in ("/api/connectors/callback", "/api/extraction/jobs"):
        response = alice.generic("POST", url, body, content_type="application/json")
        assert response.status_code == 413, response.content
        assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "body",
    [
        "{nope",
        "",
        "[" * 20_000 + "]" * 20_000,  # fits the size limit, exhausts the decoder's recursion
        '{"provider": "github", "code": "c", "state": "s"',
        "\xff\xfe",
        "NaN",
    ],
)
def test_malformed_json_is_a_json_400(alice, body):
    for url in ("/api/connectors/callback", "/api/extraction/jobs"):
        response = alice.generic(
            "POST", url, body.encode("utf-8", "surrogateescape"), content_type="application/json"
        )
        assert response.status_code == 400, response.content
        assert response.json()["success"] is False


@pytest.mark.parametrize(
    "body", ["[1, 2]", "null", '"text"', "42", '{"provider": {"a": 1}, "code": [], "state": null}']
)
def test_json_of_the_wrong_shape_is_a_400(alice, body):
    for url in ("/api/connectors/callback", "/api/extraction/jobs"):
        response = alice.generic("POST", url, body, content_type="application/json")
        assert response.status_code == 400, response.content
        assert response.json()["error"]["code"] == "invalid_request"


def test_a_body_that_is_not_json_is_a_415(alice):
    response = alice.generic(
        "POST", "/api/connectors/callback", "provider=github", content_type="text/plain"
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
