"""After a whole flow, no token appears in Redis, a response, a log line or an admin page."""

from __future__ import annotations

import json
import logging

import pytest

from connectors import cache
from connectors.models import PlatformConnection
from extraction import services as extraction_services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def test_tokens_never_leave_the_database(alice, alice_id, oauth_provider, admin_client, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("connectors", "extraction", "django", "django_redis"):
        caplog.set_level(logging.DEBUG, logger=name)  # LOGGING pins these to LOG_LEVEL
    responses = []
    state = alice.get("/api/connectors/github/authorize").json()["data"]["state"]
    tokens = oauth_provider.succeed()
    responses.append(
        alice.post(
            "/api/connectors/callback",
            {"provider": "github", "code": "c", "state": state},
            format="json",
        )
    )
    responses.append(alice.get(f"/api/connectors/status/{alice_id}"))
    responses.append(alice.get(f"/api/connectors/status/{alice_id}"))
    job = alice.post("/api/extraction/jobs", {"provider": "github"}, format="json")
    responses.append(job)
    job_id = job.json()["data"]["id"]
    extraction_services.extraction_job_start(job_id=job_id)
    responses.append(alice.get(f"/api/extraction/jobs/{job_id}"))
    responses.append(alice.get(f"/api/extraction/jobs/{job_id}"))
    responses.append(alice.get(f"/api/connectors/status/{alice_id}"))
    row = PlatformConnection.objects.get(user_id=alice_id)
    pages = [
        admin_client.get("/admin/connectors/platformconnection/"),
        admin_client.get(f"/admin/connectors/platformconnection/{row.pk}/change/"),
    ]
    r = cache.maintenance_client()
    # Read each value as stored (DUMP's format is compressed and could hide a match).
    redis_values = [
        r.get(key) or b"" if r.type(key) == b"string" else repr(r.hgetall(key)).encode()
        for key in r.scan_iter(match=cache.full_key("*"))
    ]
    assert len(redis_values) >= 2  # the status and the job are cached
    responses.append(alice.delete(f"/api/connectors/github/{alice_id}"))
    assert all(resp.status_code < 400 for resp in responses)

    bearer = alice._credentials["HTTP_AUTHORIZATION"].removeprefix("Bearer ")
    secrets = [tokens["access_token"], tokens["refresh_token"], bearer]
    haystacks = (
        [resp.content.decode() for resp in responses]
        + [page.content.decode() for page in pages]
        + [value.decode("latin-1") for value in redis_values]
        + [record.getMessage() for record in caplog.records]
    )
    assert len(caplog.records) > 0
    for secret in secrets:
        assert not [text for text in haystacks if secret in text]


@pytest.mark.parametrize(
    ("status", "body_template"),
    [
        (400, {"error": "invalid_grant", "error_description": "token {token} was revoked"}),
        (400, {"error": "{token}"}),
        (200, {"error": "{token}", "access_token": "{token}x"}),
        (401, "plain text mentioning {token}"),
        (500, {"error": "server_error", "trace": "{token}"}),
        (200, {"access_token": "", "refresh_token": "{token}"}),
    ],
)
def test_provider_error_bodies_never_leak_what_they_contain(
    alice, oauth_provider, caplog, status, body_template
):
    """A provider that echoes a token in its error must not get it into our response or logs."""
    caplog.set_level(logging.DEBUG)
    for name in ("connectors", "extraction", "django"):
        caplog.set_level(logging.DEBUG, logger=name)
    token = "ghp_" + "Z9" * 18  # alphanumeric, like a real provider's token
    text = json.dumps(body_template) if not isinstance(body_template, str) else body_template
    oauth_provider.answer(status, text.replace("{token}", token).encode())
    state = alice.get("/api/connectors/github/authorize").json()["data"]["state"]
    response = alice.post(
        "/api/connectors/callback",
        {"provider": "github", "code": "c", "state": state},
        format="json",
    )
    assert response.status_code in (400, 502)
    assert token not in response.content.decode()
    assert not [r for r in caplog.records if token in r.getMessage() or token in str(r.exc_info)]
    assert cache.enabled()
    r = cache.maintenance_client()
    for key in r.scan_iter(match=cache.full_key("*")):
        value = r.get(key) if r.type(key) == b"string" else b""
        assert token.encode() not in (value or b"")
